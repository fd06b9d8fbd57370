use std::process::ExitCode;

use oxitraffic::{config, logging};

mod cli;
mod healthcheck;

enum Command {
    Serve,
    Healthcheck,
    CheckConfig,
}

fn main() -> ExitCode {
    // Arguments select what to do; everything else is configuration, read the same way by
    // every command that needs it.
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let command = match args.as_slice() {
        [] => Command::Serve,
        [arg] if arg == "healthcheck" => Command::Healthcheck,
        [arg] if arg == "check-config" => Command::CheckConfig,
        [arg] if arg == "hash-password" => return cli::hash_password(),
        [arg] if arg == "new-api-token" => return cli::new_api_token(),
        [arg] if arg == "--help" || arg == "-h" => {
            print!("{}", cli::help());
            return ExitCode::SUCCESS;
        }
        [arg] if arg == "--version" || arg == "-V" => {
            println!("oxitraffic {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        [..] => {
            let args: Vec<_> = args.iter().map(|arg| arg.to_string_lossy()).collect();
            eprintln!(
                "oxitraffic: unexpected arguments `{}`\n{}",
                args.join(" "),
                cli::USAGE
            );
            return ExitCode::from(2);
        }
    };
    let env = match environment() {
        Ok(env) => env,
        Err(message) => return fail(&message),
    };
    match command {
        Command::Serve => serve(env),
        Command::Healthcheck => healthcheck::main(env),
        Command::CheckConfig => cli::check_config(env),
    }
}

fn serve(env: Vec<(String, String)>) -> ExitCode {
    let rust_log = env
        .iter()
        .find(|(k, _)| k == "RUST_LOG")
        .map(|(_, v)| v.as_str());
    logging::init(rust_log);
    let config = match config::load(env.iter().cloned()) {
        Ok(config) => config,
        Err(errors) => {
            for error in &errors {
                eprintln!("oxitraffic: {error}");
            }
            return ExitCode::FAILURE;
        }
    };

    oxitraffic::memory::tune_allocator();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(oxitraffic::memory::worker_threads())
        // Blocking threads only resolve the callback origin's host name for path checks.
        .max_blocking_threads(4)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start the async runtime: {error}")),
    };
    let code = runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(config.socket_address).await {
            Ok(listener) => listener,
            Err(error) => {
                return fail(&format!(
                    "cannot listen on {} (socket_address): {error}",
                    config.socket_address
                ));
            }
        };
        match listener.local_addr() {
            Ok(address) => tracing::info!("listening on http://{address}"),
            Err(error) => return fail(&format!("cannot read the listening address: {error}")),
        }
        match oxitraffic::run(listener, config, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                tracing::error!("{message}");
                fail(&message)
            }
        }
    });
    // A blocking task still running (a path check's name lookup, a password check) must not
    // hold the exit: the shutdown is bounded (SPEC §12: 15 s even when the database hangs).
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}

/// The process environment as text. A non-UTF-8 value is only an error for our own variables.
fn environment() -> Result<Vec<(String, String)>, String> {
    let mut env = Vec::new();
    for (key, value) in std::env::vars_os() {
        match (key.into_string(), value.into_string()) {
            (Ok(key), Ok(value)) => env.push((key, value)),
            (Ok(key), Err(_)) if key.starts_with("OXITRAFFIC_") || key == "RUST_LOG" => {
                return Err(format!("environment variable {key} is not valid UTF-8"));
            }
            _ => {}
        }
    }
    Ok(env)
}

fn fail(message: &str) -> ExitCode {
    eprintln!("oxitraffic: {message}");
    ExitCode::FAILURE
}

/// Completes on Ctrl-C or SIGTERM (what container runtimes and systemd send). The handlers
/// are installed at once, before the start-up restores the last run's visitors: a signal
/// arriving then is kept for the server instead of killing the process (which would lose
/// the restored tokens). Must be called inside the runtime.
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    async move {
        let received = |signal: &mut Option<tokio::signal::unix::Signal>| {
            let signal = signal.take();
            async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
        };
        tokio::select! {
            () = received(&mut interrupt) => tracing::info!("received Ctrl-C"),
            () = received(&mut terminate) => tracing::info!("received SIGTERM"),
        }
    }
}
