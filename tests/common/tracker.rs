//! Runs the real `oxitraffic` binary on port 0 with a given configuration and reads its
//! logs, so tests talk to exactly what users run.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::client::{self, Reply};
use super::pg::{self, PgCluster};

/// The environment the tracker is started with; only these variables are set.
#[derive(Clone)]
pub struct TrackerConfig {
    vars: BTreeMap<String, String>,
}

impl TrackerConfig {
    /// A configuration for `database` on `cluster`, tracking `site_origin`.
    pub fn new(cluster: &PgCluster, database: &str, site_origin: &str) -> TrackerConfig {
        let mut vars = BTreeMap::new();
        for (key, value) in [
            ("OXITRAFFIC_SOCKET_ADDRESS", "127.0.0.1:0".to_string()),
            ("OXITRAFFIC_BASE_URL", "http://127.0.0.1:1".to_string()),
            ("OXITRAFFIC_TRACKED_ORIGIN", site_origin.to_string()),
            // Visits count at once unless a test is about the delay itself.
            ("OXITRAFFIC_MIN_DELAY_SECS", "0".to_string()),
            ("OXITRAFFIC_DB__HOST", cluster.host()),
            ("OXITRAFFIC_DB__PORT", pg::PORT.to_string()),
            ("OXITRAFFIC_DB__USERNAME", pg::USER.to_string()),
            ("OXITRAFFIC_DB__DATABASE", database.to_string()),
            ("RUST_LOG", "debug".to_string()),
        ] {
            vars.insert(key.to_string(), value);
        }
        TrackerConfig { vars }
    }

    pub fn set(mut self, key: &str, value: impl Into<String>) -> TrackerConfig {
        self.vars.insert(key.to_string(), value.into());
        self
    }

    pub fn unset(mut self, key: &str) -> TrackerConfig {
        self.vars.remove(key);
        self
    }
}

#[derive(Default)]
struct Output {
    lines: Vec<String>,
    address: Option<SocketAddr>,
    closed: bool,
}

/// A running tracker process; killed when dropped.
pub struct Tracker {
    child: Child,
    pub addr: SocketAddr,
    output: Arc<(Mutex<Output>, Condvar)>,
}

impl Tracker {
    /// Starts the binary and waits until it listens.
    pub fn start(config: &TrackerConfig) -> Tracker {
        let (child, output) = spawn(config);
        let deadline = Instant::now() + Duration::from_secs(20);
        let (lock, ready) = &*output;
        let mut state = lock.lock().unwrap();
        while state.address.is_none() {
            if state.closed || Instant::now() > deadline {
                panic!(
                    "the tracker did not start listening; its output:\n{}",
                    state.lines.join("\n")
                );
            }
            state = ready
                .wait_timeout(state, Duration::from_millis(100))
                .unwrap()
                .0;
        }
        let addr = state.address.unwrap();
        drop(state);
        Tracker {
            child,
            addr,
            output,
        }
    }

    /// Runs the binary to completion (for configurations that must be refused).
    pub fn run_to_exit(config: &TrackerConfig) -> (std::process::ExitStatus, String) {
        let (mut child, output) = spawn(config);
        let status = wait_with_timeout(&mut child, Duration::from_secs(20))
            .expect("the tracker did not exit");
        let (lock, ready) = &*output;
        let mut state = lock.lock().unwrap();
        while !state.closed {
            state = ready.wait(state).unwrap();
        }
        (status, state.lines.join("\n"))
    }

    pub fn url(&self, target: &str) -> String {
        format!("http://{}{target}", self.addr)
    }

    pub async fn get(&self, target: &str) -> Reply {
        client::get(self.addr, target).await
    }

    pub async fn post(&self, target: &str) -> Reply {
        client::post(self.addr, target).await
    }

    /// Everything the process printed so far.
    pub fn logs(&self) -> String {
        self.output.0.lock().unwrap().lines.join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `/health` until it answers `status` or fails the test after `within`.
    pub async fn wait_for_health(&self, status: u16, within: Duration) {
        wait_for_health(self.addr, status, within, || self.logs()).await;
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
        let status = wait_with_timeout(&mut self.child, within).unwrap_or_else(|| {
            panic!(
                "the tracker did not exit within {within:?}; logs:\n{}",
                self.logs()
            )
        });
        // The process is gone, but the threads copying its output may not have read the
        // last lines yet: wait until both pipes are drained, so logs() is complete.
        let (lock, drained) = &*self.output;
        let mut state = lock.lock().unwrap();
        while !state.closed {
            state = drained.wait(state).unwrap();
        }
        status
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(config: &TrackerConfig) -> (Child, Arc<(Mutex<Output>, Condvar)>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_oxitraffic"));
    command
        .env_clear()
        .envs(&config.vars)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn the oxitraffic binary");
    let output = Arc::new((Mutex::new(Output::default()), Condvar::new()));
    let streams = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ];
    let open_streams = Arc::new(Mutex::new(streams.len()));
    for stream in streams {
        let output = output.clone();
        let open_streams = open_streams.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let (lock, ready) = &*output;
                let mut state = lock.lock().unwrap();
                if let Some(address) = line.split("listening on http://").nth(1) {
                    state.address = address.trim().parse().ok();
                }
                state.lines.push(line);
                ready.notify_all();
            }
            let mut open = open_streams.lock().unwrap();
            *open -= 1;
            if *open == 0 {
                let (lock, ready) = &*output;
                lock.lock().unwrap().closed = true;
                ready.notify_all();
            }
        });
    }
    (child, output)
}

fn wait_with_timeout(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the tracker") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `/health` at `addr` until it answers `status`; fails the test after `within`,
/// showing `logs()`.
pub async fn wait_for_health(
    addr: SocketAddr,
    status: u16,
    within: Duration,
    logs: impl Fn() -> String,
) {
    let deadline = Instant::now() + within;
    loop {
        let reply = client::get(addr, "/health").await;
        if reply.status == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/health stayed {} instead of {status}; logs:\n{}",
            reply.status,
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
