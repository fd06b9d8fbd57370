//! `oxitraffic healthcheck`: asks the running server's `/health` and turns the answer into
//! an exit status, for a container's `HEALTHCHECK`.
//!
//! The image has no shell and no curl (it holds little more than this binary), so the binary
//! checks itself. It reads the same configuration as the server (the config file named by
//! `OXITRAFFIC_CONFIG_FILE` and the `OXITRAFFIC_*` variables, which a container runtime also
//! passes to health-check commands), so it finds the server wherever `socket_address` puts
//! it, and `/health` already says whether the database answers.
//!
//! Exit status: 0 when `/health` answers 200, 1 for anything else (another status, no
//! answer within [`TIMEOUT`], nothing listening, a configuration that does not load). Docker
//! reserves 2 in health checks, so usage errors (which `main` reports) are the only 2.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use oxitraffic::config;

/// The whole check: connecting, sending and receiving the status line. `/health` answers at
/// once (503 while the database is away), so a slower answer means the server is stuck. The
/// Containerfile gives the check a longer timeout than this, so a slow server is reported by
/// our message rather than by the runtime killing the process.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// Runs the check with the given environment and prints one line saying what happened
/// (container runtimes keep that output in the health log, e.g. `docker inspect`).
pub fn main(env: Vec<(String, String)>) -> ExitCode {
    let config = match config::load(env) {
        Ok(config) => config,
        Err(errors) => {
            for error in &errors {
                eprintln!("oxitraffic healthcheck: {error}");
            }
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("oxitraffic healthcheck: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let targets = targets(config.socket_address);
    match runtime.block_on(check(&targets, TIMEOUT)) {
        Ok((address, StatusCode::OK)) => {
            println!("oxitraffic healthcheck: http://{address}/health answered 200 OK");
            ExitCode::SUCCESS
        }
        Ok((address, status)) => {
            eprintln!("oxitraffic healthcheck: http://{address}/health answered {status}");
            ExitCode::FAILURE
        }
        Err(message) => {
            eprintln!("oxitraffic healthcheck: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Where to reach a server listening on `socket_address`, in the order to try.
///
/// A wildcard address (`0.0.0.0`, `[::]`) is not something to connect to: the server is
/// reachable on loopback. `[::]` is dual-stack on Linux unless the system says otherwise, and
/// containers often have IPv6 switched off, so IPv4 loopback is tried after `::1`.
pub fn targets(socket_address: SocketAddr) -> Vec<SocketAddr> {
    let port = socket_address.port();
    match socket_address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            vec![SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)]
        }
        IpAddr::V6(ip) if ip.is_unspecified() => vec![
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port),
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
        ],
        _ => vec![socket_address],
    }
}

/// `GET /health` on the first target that accepts a connection, all within `timeout`.
/// Returns the address that answered and its status.
pub async fn check(
    targets: &[SocketAddr],
    timeout: Duration,
) -> Result<(SocketAddr, StatusCode), String> {
    match tokio::time::timeout(timeout, request(targets)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer from {} within {timeout:?}",
            describe(targets)
        )),
    }
}

async fn request(targets: &[SocketAddr]) -> Result<(SocketAddr, StatusCode), String> {
    let mut refused = Vec::new();
    for &address in targets {
        let stream = match TcpStream::connect(address).await {
            Ok(stream) => stream,
            Err(error) => {
                refused.push(format!("{address}: {error}"));
                continue;
            }
        };
        let failed = |e: hyper::Error| format!("HTTP exchange with {address} failed: {e}");
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(failed)?;
        let connection = tokio::spawn(connection);
        let host = HeaderValue::from_str(&address.to_string())
            .expect("a socket address is a valid Host header");
        let request = Request::get("/health")
            .header(header::HOST, host)
            .header(
                header::USER_AGENT,
                HeaderValue::from_static("oxitraffic healthcheck"),
            )
            .body(Empty::new())
            .expect("a static request is valid");
        let status = sender.send_request(request).await.map_err(failed)?.status();
        // Only the status matters; the short body is not worth waiting for.
        connection.abort();
        return Ok((address, status));
    }
    Err(format!(
        "cannot connect to the server ({}): is it running, and does socket_address match?",
        refused.join("; ")
    ))
}

fn describe(targets: &[SocketAddr]) -> String {
    targets
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn wildcard_addresses_are_reached_on_loopback() {
        assert_eq!(targets(addr("0.0.0.0:80")), vec![addr("127.0.0.1:80")]);
        assert_eq!(
            targets(addr("[::]:8080")),
            vec![addr("[::1]:8080"), addr("127.0.0.1:8080")]
        );
        assert_eq!(targets(addr("10.1.2.3:80")), vec![addr("10.1.2.3:80")]);
        assert_eq!(targets(addr("[::1]:81")), vec![addr("[::1]:81")]);
    }

    /// A server that answers every connection with `response` after reading the request head.
    async fn answering(response: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0; 1024];
                    while !head.ends_with(b"\r\n\r\n") {
                        let n = stream.read(&mut buffer).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        head.extend_from_slice(&buffer[..n]);
                    }
                    let head = String::from_utf8(head).unwrap();
                    assert!(head.starts_with("GET /health HTTP/1.1\r\n"), "{head}");
                    stream.write_all(response.as_bytes()).await.unwrap();
                });
            }
        });
        address
    }

    /// An address nothing listens on: bound, then closed again.
    async fn closed_port() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    }

    #[tokio::test]
    async fn reports_the_status_of_the_first_target_that_accepts() {
        let ok = answering("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n").await;
        let closed = closed_port().await;
        assert_eq!(
            check(&[closed, ok], TIMEOUT).await.unwrap(),
            (ok, StatusCode::OK)
        );

        let down = answering("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n").await;
        assert_eq!(
            check(&[down], TIMEOUT).await.unwrap(),
            (down, StatusCode::SERVICE_UNAVAILABLE)
        );
    }

    #[tokio::test]
    async fn nothing_listening_is_an_error_naming_the_addresses() {
        let closed = closed_port().await;
        let error = check(&[closed], TIMEOUT).await.unwrap_err();
        assert!(error.contains(&closed.to_string()), "{error}");
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        // Accepts the connection (the kernel does that) but never reads or answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = listener.local_addr().unwrap();
        let error = check(&[silent], Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(error.starts_with("no answer from"), "{error}");
        drop(listener);
    }
}
