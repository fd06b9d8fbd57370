//! An ephemeral PostgreSQL cluster started from the system's server binaries.
//!
//! `initdb` runs once per machine into a template in the system temp dir (guarded by a file
//! lock, keyed by the server version); each cluster copies the template and starts
//! `postgres` on a private Unix socket directory, so no port is shared with anything. As root,
//! the server runs as the `postgres` user, as PostgreSQL requires. A watchdog process stops
//! the cluster and deletes its files when the test process exits, however it exits.
//!
//! A cluster that cannot start is a test failure with a message saying what to install,
//! never a skip.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The socket file is named after this port; nothing listens on TCP.
pub const PORT: u16 = 5432;
pub const USER: &str = "postgres";

pub struct PgCluster {
    root: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    bin: PathBuf,
    as_postgres_user: bool,
}

static SHARED: OnceLock<PgCluster> = OnceLock::new();
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

impl PgCluster {
    /// The cluster shared by every test in this test binary.
    pub fn shared() -> &'static PgCluster {
        SHARED.get_or_init(PgCluster::start)
    }

    /// A cluster of one's own, for tests that stop and restart the database.
    pub fn start() -> PgCluster {
        let bin = find_bindir();
        let as_postgres_user = running_as_root();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        // Short path: Unix socket paths are limited to about 100 bytes.
        let root = std::env::temp_dir().join(format!("oxt-{}-{id}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("create the cluster directory");
        let data = root.join("data");
        let socket_dir = root.join("sock");
        fs::create_dir_all(&socket_dir).unwrap();
        let template = template_dir(&bin, as_postgres_user);
        run(
            Command::new("cp").arg("-a").arg(&template).arg(&data),
            "copy the template cluster",
        );
        if as_postgres_user {
            run(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&root),
                "chown the cluster to postgres",
            );
        }
        let cluster = PgCluster {
            root,
            data,
            socket_dir,
            bin,
            as_postgres_user,
        };
        cluster.spawn_watchdog();
        cluster.start_server();
        cluster
    }

    /// Where clients connect: the socket directory, used as `db.host`.
    pub fn host(&self) -> String {
        self.socket_dir
            .to_str()
            .expect("temp paths are UTF-8")
            .to_string()
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn start_server(&self) {
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -p {PORT} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 \
             -c shared_buffers=32MB",
            self.socket_dir.display()
        );
        run(
            self.command("pg_ctl")
                .arg("start")
                .arg("-w")
                .args(["-t", "60"])
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(self.root.join("server.log"))
                .args(["-o", &options]),
            "start postgres",
        );
    }

    /// Stops the server (fast shutdown: connections are terminated), as an outage would.
    pub fn stop(&self) {
        run(
            self.command("pg_ctl")
                .args(["stop", "-w", "-m", "fast", "-D"])
                .arg(&self.data),
            "stop postgres",
        );
    }

    /// Freezes every server process (SIGSTOP): connections stay open but nothing answers,
    /// like a database host that hangs.
    pub fn pause(&self) {
        self.signal_all("-STOP");
    }

    /// Thaws the processes frozen by [`PgCluster::pause`].
    pub fn resume(&self) {
        self.signal_all("-CONT");
    }

    fn signal_all(&self, signal: &str) {
        let pid_file =
            fs::read_to_string(self.data.join("postmaster.pid")).expect("postmaster.pid");
        let postmaster = pid_file
            .lines()
            .next()
            .expect("the pid line")
            .trim()
            .to_string();
        // The postmaster first, so it cannot start a new backend in between.
        run(
            Command::new("kill").args([signal, &postmaster]),
            "signal the postmaster",
        );
        let _ = Command::new("pkill")
            .args([signal, "-P", &postmaster])
            .status();
    }

    /// Starts the server again after [`PgCluster::stop`].
    pub fn restart(&self) {
        self.start_server();
    }

    /// A fresh, empty database for one test.
    pub async fn create_database(&self) -> String {
        let name = format!("test_{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
        let client = self.connect("postgres").await;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        name
    }

    /// A client for checking what the tracker stored.
    pub async fn connect(&self, database: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::Config::new()
            .host_path(&self.socket_dir)
            .port(PORT)
            .user(USER)
            .dbname(database)
            .options("-c search_path=oxitraffic")
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to the test cluster: {e}"));
        tokio::spawn(connection);
        client
    }

    // The watchdog must outlive this process, so nobody here ever waits for it.
    #[allow(clippy::zombie_processes)]
    fn spawn_watchdog(&self) {
        let stop = format!(
            "{} '{}' stop -m immediate -D '{}'",
            if self.as_postgres_user {
                "runuser -u postgres --"
            } else {
                ""
            },
            self.bin.join("pg_ctl").display(),
            self.data.display()
        );
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{root}'",
            pid = std::process::id(),
            root = self.root.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the cluster watchdog");
    }
}

/// Runs a command to completion; fails the test, with its output, unless it succeeds.
pub fn run(command: &mut Command, what: &str) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn running_as_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        .is_some_and(|effective| effective == "0")
}

/// The PostgreSQL server binaries: `OXITRAFFIC_TEST_PG_BINDIR`, else the newest
/// `/usr/lib/postgresql/*/bin`, else whatever `initdb` is on `PATH`.
fn find_bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OXITRAFFIC_TEST_PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).find(|dir| dir.join("initdb").exists()))
        .unwrap_or_default();
    on_path.unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found. Install them \
             (Debian/Ubuntu: apt-get install postgresql) or run .ci/test, which installs them, \
             or set OXITRAFFIC_TEST_PG_BINDIR."
        )
    })
}

/// An initialised data directory to copy, made once per machine and server version.
fn template_dir(bin: &Path, as_postgres_user: bool) -> PathBuf {
    let version = Command::new(bin.join("postgres"))
        .arg("--version")
        .output()
        .expect("run postgres --version");
    let version = String::from_utf8_lossy(&version.stdout);
    let version: String = version
        .split_whitespace()
        .last()
        .unwrap_or("unknown")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    // Not under the checkout: as root, the postgres user may be unable to enter it (/root).
    let base = std::env::temp_dir().join("oxitraffic-test-templates");
    fs::create_dir_all(&base).unwrap();
    let template = base.join(format!("pg-template-{version}"));
    let lock = fs::File::create(base.join(format!("pg-template-{version}.lock"))).unwrap();
    lock.lock().expect("lock the template");
    if !template.join("PG_VERSION").exists() {
        let building = base.join(format!("pg-template-{version}.building"));
        let _ = fs::remove_dir_all(&building);
        fs::create_dir_all(&building).unwrap();
        let mut command = if as_postgres_user {
            // The postgres user must be able to reach the directory it initialises.
            run(
                Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&building),
                "chown the template",
            );
            let mut command = Command::new("runuser");
            command
                .args(["-u", "postgres", "--"])
                .arg(bin.join("initdb"));
            command
        } else {
            Command::new(bin.join("initdb"))
        };
        run(
            command
                .args([
                    "-A",
                    "trust",
                    "-U",
                    USER,
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                    "-D",
                ])
                .arg(&building),
            "initdb",
        );
        fs::rename(&building, &template).expect("publish the template");
    }
    template
}
