//! The container image, built and run for real from the `Containerfile`.
//!
//! No Docker daemon runs here and the builder's base image (`rust:1-bookworm`) cannot be
//! pulled, but buildah builds `FROM scratch` images and runs them with chroot isolation. So:
//!
//! 1. The builder stage's instructions are read from the Containerfile and carried out on this
//!    machine, which stands in for the base image (Debian bookworm with a Rust toolchain):
//!    its `WORKDIR`, `ENV`, `COPY` and `RUN` lines, in order, in a private directory. The
//!    binary the image gets is the one those exact commands produce.
//! 2. The final stage is read from the Containerfile and built with buildah, every
//!    instruction kept verbatim except that `COPY --from=builder` takes its files from step 1
//!    (paths the builder did not create come from this machine, as they would from the base
//!    image). One test certificate authority is appended to the CA bundle.
//! 3. The image runs the way Docker or Podman would run it: in its own network namespace
//!    (reached over a veth pair, with `ip_unprivileged_port_start=0` as those runtimes set),
//!    as the image's user, with its entrypoint and environment, the config file mounted at
//!    `/volumes/config.toml`, and PostgreSQL's socket directory mounted in. The test then
//!    checks `/health` from outside, the image's own `HEALTHCHECK` command, a path check
//!    over https to a host name that only the container's /etc/hosts knows (certificates and
//!    name resolution), a counted visit (the database), and graceful shutdown.
//!
//! Needs root, buildah, iproute2 and openssl; `.ci/test` installs the packages. A missing
//! prerequisite is a test failure naming it, never a skip.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::PgCluster;
use common::pg::run;
use common::tracker::wait_for_health;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

const CONTAINERFILE: &str = include_str!("../Containerfile");
/// Where rustls-native-certs looks first on Linux; the test CA is appended to that file.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The tracked site's name: only the container's /etc/hosts (`--add-host`) knows it.
const SITE_NAME: &str = "website.test";

// ---------------------------------------------------------------------------------------
// The Containerfile, as the instructions Docker would see.

#[derive(Debug, Clone, PartialEq)]
struct Instruction {
    keyword: String,
    args: String,
}

#[derive(Debug)]
struct Stage {
    from: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

/// Splits a Containerfile into stages of instructions, as Docker's parser does for the
/// subset used here: `\` continues a line, and comment lines are dropped, also inside a
/// continued instruction.
fn parse(text: &str) -> Vec<Stage> {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        // Docker also skips blank lines inside a continued instruction.
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim_end());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    assert!(
        current.is_empty(),
        "the Containerfile ends inside a continued line"
    );

    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let keyword = keyword.to_ascii_uppercase();
        let args = args.trim().to_string();
        if keyword == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            let name = match words.as_slice() {
                [_] => None,
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => panic!("unsupported FROM line: FROM {args}"),
            };
            stages.push(Stage {
                from: words[0].to_string(),
                name,
                instructions: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .unwrap_or_else(|| panic!("{keyword} before the first FROM"))
                .instructions
                .push(Instruction { keyword, args });
        }
    }
    stages
}

/// `KEY=value KEY2="value 2"` as pairs (the only `ENV` form used here).
fn env_pairs(args: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = args.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .unwrap_or_else(|| panic!("unsupported ENV form (use KEY=value): ENV {args}"));
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted
                .find('"')
                .unwrap_or_else(|| panic!("unclosed quote in ENV {args}"));
            (&quoted[..end], &quoted[end + 1..])
        } else {
            after.split_once(' ').unwrap_or((after, ""))
        };
        pairs.push((key.trim().to_string(), value.to_string()));
        rest = after.trim();
    }
    pairs
}

/// A `COPY` line: its `--flags`, sources and destination (shell form only).
fn copy_parts(args: &str) -> (Vec<&str>, Vec<&str>, &str) {
    assert!(!args.starts_with('['), "unsupported COPY form: COPY {args}");
    let words: Vec<&str> = args.split_whitespace().collect();
    let flags: Vec<&str> = words
        .iter()
        .copied()
        .take_while(|w| w.starts_with("--"))
        .collect();
    let paths = &words[flags.len()..];
    assert!(
        paths.len() >= 2,
        "COPY needs a source and a destination: COPY {args}"
    );
    let (destination, sources) = paths.split_last().unwrap();
    for source in sources {
        assert!(
            !source.contains(['*', '?']),
            "globs are not supported: COPY {args}"
        );
    }
    (flags, sources.to_vec(), destination)
}

// ---------------------------------------------------------------------------------------
// Files.

/// Copies a file or a directory's contents, keeping modification times: BuildKit keeps them
/// too, and the builder's cache trick depends on them.
fn copy_tree(from: &Path, to: &Path) {
    let metadata = std::fs::metadata(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    if metadata.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
        let file = std::fs::File::options().write(true).open(to).unwrap();
        file.set_modified(metadata.modified().unwrap()).unwrap();
    }
}

/// Empties `dir`, except `keep` (a path inside it) and the directories leading to it.
fn clean_except(dir: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path == keep {
            continue;
        }
        if keep.starts_with(&path) {
            clean_except(&path, keep);
        } else if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
}

fn combined(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

// ---------------------------------------------------------------------------------------
// Step 1: the builder stage, carried out on this machine.

/// The builder's file system: `root` holds what its instructions created (under their
/// absolute paths); everything else is this machine's, standing in for the base image.
struct BuilderFs {
    root: PathBuf,
}

impl BuilderFs {
    fn resolve(&self, path: &str) -> PathBuf {
        assert!(
            path.starts_with('/'),
            "builder paths must be absolute: {path}"
        );
        let inside = self.root.join(path.trim_start_matches('/'));
        if inside.exists() {
            inside
        } else {
            PathBuf::from(path)
        }
    }
}

fn run_builder(stage: &Stage, context: &Path, root: &Path) -> BuilderFs {
    let workdir = stage
        .instructions
        .iter()
        .find(|i| i.keyword == "WORKDIR")
        .map(|i| i.args.clone())
        .expect("the builder stage sets a WORKDIR");
    // Cargo's target directory survives between runs, as Docker's layer cache would keep
    // the dependency layer; everything else starts empty.
    let cache = root.join(workdir.trim_start_matches('/')).join("target");
    clean_except(root, &cache);

    // The environment a RUN line sees: this machine's (PATH, cargo and rustup homes, proxy
    // settings), without what would redirect or alter cargo's build, plus the stage's ENV.
    let mut env: BTreeMap<String, String> = std::env::vars()
        .filter(|(key, _)| {
            !(key.starts_with("CARGO_TARGET_")
                || key.starts_with("CARGO_BUILD_")
                || key.starts_with("CARGO_PROFILE_")
                || key == "CARGO_ENCODED_RUSTFLAGS"
                || key == "RUSTFLAGS")
        })
        .collect();
    let mut cwd = root.to_path_buf();
    for instruction in &stage.instructions {
        let args = instruction.args.as_str();
        match instruction.keyword.as_str() {
            "WORKDIR" => {
                assert!(args.starts_with('/'), "WORKDIR must be absolute: {args}");
                cwd = root.join(args.trim_start_matches('/'));
                std::fs::create_dir_all(&cwd).unwrap();
            }
            "ENV" => env.extend(env_pairs(args)),
            "COPY" => {
                let (flags, sources, destination) = copy_parts(args);
                assert!(
                    flags.is_empty(),
                    "unsupported COPY flags in the builder: {args}"
                );
                let into_directory = sources.len() > 1 || destination.ends_with('/');
                let destination = if destination.starts_with('/') {
                    root.join(destination.trim_start_matches('/'))
                } else {
                    cwd.join(destination)
                };
                for source in sources {
                    let from = context.join(source);
                    let to = if from.is_file() && into_directory {
                        destination.join(from.file_name().unwrap())
                    } else {
                        destination.clone()
                    };
                    copy_tree(&from, &to);
                }
            }
            "RUN" => {
                assert!(!args.starts_with('['), "unsupported RUN form: RUN {args}");
                assert!(cwd.starts_with(root));
                let started = Instant::now();
                let output = Command::new("/bin/sh")
                    .args(["-c", args])
                    .current_dir(&cwd)
                    .env_clear()
                    .envs(&env)
                    .stdin(Stdio::null())
                    .output()
                    .expect("run /bin/sh");
                assert!(
                    output.status.success(),
                    "the builder's RUN failed ({}): {args}\n{}",
                    output.status,
                    combined(&output)
                );
                let summary: String = args.chars().take(100).collect();
                eprintln!("builder: RUN took {:.1?}: {summary}", started.elapsed());
            }
            other => panic!("the test cannot carry out {other} in the builder stage; teach it"),
        }
    }
    BuilderFs {
        root: root.to_path_buf(),
    }
}

// ---------------------------------------------------------------------------------------
// Step 2: the final stage, built with buildah.

/// The final stage as a Containerfile buildah can build from `context`, with the files it
/// copies from the builder placed there. Returns it and the destinations of every COPY.
fn final_stage(
    stage: &Stage,
    builder_name: &str,
    builder: &BuilderFs,
    project: &Path,
    context: &Path,
    test_ca: &str,
) -> (String, Vec<String>) {
    assert_eq!(
        stage.from, "scratch",
        "the final stage must start FROM scratch (nothing but what it copies)"
    );
    std::fs::create_dir_all(context).unwrap();
    let mut containerfile = String::from("FROM scratch\n");
    let mut destinations = Vec::new();
    let mut bundle_found = false;
    for (index, instruction) in stage.instructions.iter().enumerate() {
        if instruction.keyword != "COPY" {
            containerfile.push_str(&format!("{} {}\n", instruction.keyword, instruction.args));
            continue;
        }
        let (flags, sources, destination) = copy_parts(&instruction.args);
        let from_builder = flags.contains(&format!("--from={builder_name}").as_str());
        let kept_flags: Vec<&str> = flags
            .iter()
            .copied()
            .filter(|f| !f.starts_with("--from="))
            .collect();
        assert!(
            from_builder || flags.iter().all(|f| !f.starts_with("--from=")),
            "COPY from an unknown stage: {}",
            instruction.args
        );
        let mut local = Vec::new();
        for (n, source) in sources.iter().enumerate() {
            let (from, name) = if from_builder {
                (builder.resolve(source), format!("builder/{index}-{n}"))
            } else {
                (project.join(source), format!("project/{source}"))
            };
            copy_tree(&from, &context.join(&name));
            if destination == CA_BUNDLE && from.is_file() {
                let mut file = std::fs::File::options()
                    .append(true)
                    .open(context.join(&name))
                    .unwrap();
                write!(file, "\n{test_ca}").unwrap();
                bundle_found = true;
            }
            local.push(name);
        }
        destinations.push(destination.to_string());
        containerfile.push_str(&format!(
            "COPY {} {} {destination}\n",
            kept_flags.join(" "),
            local.join(" ")
        ));
    }
    assert!(
        bundle_found,
        "the final stage no longer installs {CA_BUNDLE}, where rustls-native-certs looks \
         first: https path checks would have no trust store"
    );
    (containerfile, destinations)
}

/// buildah with a private storage (vfs needs no kernel support), removed when dropped.
struct Buildah {
    storage: PathBuf,
    image: String,
}

impl Buildah {
    fn command(&self) -> Command {
        let mut command = Command::new("buildah");
        self.add_global_flags(&mut command);
        command
    }

    /// buildah inside the container's network namespace (chroot isolation keeps the
    /// caller's namespaces, so this is how the container gets its own network).
    fn command_in(&self, netns: &NetNs) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &netns.name, "buildah"]);
        self.add_global_flags(&mut command);
        command
    }

    fn add_global_flags(&self, command: &mut Command) {
        command
            .arg("--root")
            .arg(self.storage.join("root"))
            .arg("--runroot")
            .arg(self.storage.join("runroot"))
            .args(["--storage-driver", "vfs"]);
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        let _ = self.command().args(["rm", "--all"]).output();
        let _ = std::fs::remove_dir_all(&self.storage);
    }
}

// ---------------------------------------------------------------------------------------
// Step 3: a network like a container runtime's, a tracked site over https, the container.

/// A network namespace joined to this one by a veth pair, as Docker's bridge network gives
/// a container its own address; removed (with the veth pair) when dropped.
struct NetNs {
    name: String,
    host_ip: Ipv4Addr,
    container_ip: Ipv4Addr,
}

impl NetNs {
    fn create() -> NetNs {
        let pid = std::process::id();
        // 198.18.0.0/15 is reserved for network tests (RFC 2544): it clashes with no real
        // network. One /30 per test process, so concurrent runs do not collide.
        let base = Ipv4Addr::new(198, 18, (pid % 256) as u8, ((pid / 256) % 64 * 4) as u8);
        let host_ip = Ipv4Addr::from(u32::from(base) + 1);
        let container_ip = Ipv4Addr::from(u32::from(base) + 2);
        let netns = NetNs {
            name: format!("oxitraffic-test-{pid}"),
            host_ip,
            container_ip,
        };
        let (host_if, container_if) = (format!("oxh{pid}"), format!("oxc{pid}"));
        // Arguments separated by spaces; none of them contains one.
        let ip = |args: &str| {
            let args: Vec<&str> = args.split(' ').collect();
            run(
                Command::new("ip").args(&args),
                &format!("ip {}", args.join(" ")),
            );
        };
        let name = &netns.name;
        ip(&format!("netns add {name}"));
        ip(&format!(
            "link add {host_if} type veth peer name {container_if}"
        ));
        ip(&format!("link set {container_if} netns {name}"));
        ip(&format!("addr add {host_ip}/30 dev {host_if}"));
        ip(&format!("link set {host_if} up"));
        ip(&format!(
            "netns exec {name} ip addr add {container_ip}/30 dev {container_if}"
        ));
        ip(&format!("netns exec {name} ip link set {container_if} up"));
        ip(&format!("netns exec {name} ip link set lo up"));
        // What Docker (20.10+) and Podman set in every container's network namespace, and
        // what lets the image's non-root user listen on port 80.
        ip(&format!(
            "netns exec {name} sysctl -qw net.ipv4.ip_unprivileged_port_start=0"
        ));
        netns
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A throw-away certificate authority and a certificate for [`SITE_NAME`] signed by it.
struct TestPki {
    ca_pem: String,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

fn make_pki(dir: &Path) -> TestPki {
    std::fs::create_dir_all(dir).unwrap();
    // Arguments separated by spaces; none of them contains one.
    let openssl = |args: &str| {
        let args: Vec<&str> = args.split(' ').collect();
        run(
            Command::new("openssl").args(&args).current_dir(dir),
            &format!("openssl {}", args.join(" ")),
        );
    };
    let p256 = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    openssl(&format!(
        "req -x509 {p256} -keyout ca.key -out ca.pem -days 2 -subj /CN=oxitraffic-test-CA \
         -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign"
    ));
    openssl(&format!(
        "req {p256} -keyout site.key -out site.csr -subj /CN={SITE_NAME}"
    ));
    std::fs::write(
        dir.join("site.ext"),
        format!(
            "subjectAltName=DNS:{SITE_NAME}\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    openssl(
        "x509 -req -in site.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
         -extfile site.ext -out site.pem",
    );
    TestPki {
        ca_pem: std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
        cert_pem: std::fs::read(dir.join("site.pem")).unwrap(),
        key_pem: std::fs::read(dir.join("site.key")).unwrap(),
    }
}

/// The tracked website over https: `/page` exists, nothing else does. Records every
/// request target it is asked for.
struct TlsSite {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

async fn start_tls_site(ip: Ipv4Addr, pki: &TestPki) -> TlsSite {
    let certs = CertificateDer::pem_slice_iter(&pki.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(&pki.key_pem).unwrap();
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let recorded = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buffer = [0; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let target = head.split(' ').nth(1).unwrap_or("").to_string();
                let status = if target == "/page" {
                    "200 OK"
                } else {
                    "404 Not Found"
                };
                recorded.lock().unwrap().push(target);
                let response =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    TlsSite { addr, requests }
}

/// The image's entrypoint running in a container; killed when dropped.
struct Container {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Container {
    fn start(mut command: Command) -> Container {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start buildah run");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let streams: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for stream in streams {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Container { child, lines }
    }

    fn logs(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    async fn wait_for_log(&mut self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.logs().contains(needle) {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the output threads catch the last lines.
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!(
                    "the container exited ({status}) before logging `{needle}`; its output:\n{}",
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the container did not log `{needle}` within {within:?}; its output:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server process itself: buildah runs it as a descendant and does not forward
    /// signals to it (it kills it), so a `docker stop` is imitated by signalling it directly.
    fn server_pid(&self) -> u32 {
        descendants(self.child.id())
            .into_iter()
            .find(|&pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "oxitraffic")
            })
            .expect("the oxitraffic process runs under buildah")
    }

    fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the container did not exit within {within:?}; its output:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        for pid in descendants(self.child.id()) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .output();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every process below `pid`, read from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let child: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // The command name may contain spaces and parentheses; the fields after the
            // last `)` are state, then the parent's pid.
            let parent = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((child, parent))
        })
        .collect();
    let mut found = vec![pid];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        index += 1;
    }
    found.remove(0);
    found
}

// ---------------------------------------------------------------------------------------

/// What the test needs from this machine, or why it cannot run.
fn missing_prerequisites() -> Vec<String> {
    let mut missing = Vec::new();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        .is_some_and(|effective| effective == "0");
    if !root {
        missing.push("root (network namespaces and buildah's chroot isolation)".to_string());
    }
    for (program, package) in [
        ("buildah", "buildah"),
        ("ip", "iproute2"),
        ("openssl", "openssl"),
    ] {
        let found = Command::new(program)
            .arg(if program == "ip" { "-V" } else { "version" })
            .output()
            .is_ok();
        if !found {
            missing.push(format!("{program} (Debian package {package})"));
        }
    }
    if !Path::new(CA_BUNDLE).is_file() {
        missing.push(format!("{CA_BUNDLE} (Debian package ca-certificates)"));
    }
    missing
}

/// `buildah inspect` of the built image: the configuration a runtime would use.
struct ImageConfig {
    user: String,
    env: Vec<String>,
    entrypoint: Vec<String>,
    healthcheck: Vec<String>,
    exposed_ports: Vec<String>,
}

fn inspect(buildah: &Buildah) -> ImageConfig {
    let output = run(
        buildah
            .command()
            .args(["inspect", "--type", "image", &buildah.image]),
        "buildah inspect",
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let config = &json["Docker"]["config"];
    let strings = |value: &serde_json::Value| -> Vec<String> {
        value
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    ImageConfig {
        user: config["User"].as_str().unwrap_or("").to_string(),
        env: strings(&config["Env"]),
        entrypoint: strings(&config["Entrypoint"]),
        healthcheck: strings(&config["Healthcheck"]["Test"]),
        exposed_ports: config["ExposedPorts"]
            .as_object()
            .map(|ports| ports.keys().cloned().collect())
            .unwrap_or_default(),
    }
}

/// Every file in the image with its size, from the mounted root file system.
fn image_files(buildah: &Buildah, container: &str) -> Vec<(String, u64)> {
    let output = run(
        buildah.command().args(["mount", container]),
        "buildah mount",
    );
    let mount = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
    fn walk(dir: &Path, base: &Path, files: &mut Vec<(String, u64)>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let metadata = std::fs::symlink_metadata(&path).unwrap();
            if metadata.is_dir() {
                walk(&path, base, files);
            } else {
                let name = format!("/{}", path.strip_prefix(base).unwrap().display());
                files.push((name, metadata.len()));
            }
        }
    }
    let mut files = Vec::new();
    walk(&mount, &mount, &mut files);
    files.sort();
    let _ = buildah.command().args(["umount", container]).output();
    files
}

/// The image built from the Containerfile (steps 1 and 2), with what the test learned.
struct BuiltImage {
    buildah: Buildah,
    config: ImageConfig,
    /// Where the final stage's COPY lines put files.
    destinations: Vec<String>,
    size: String,
}

fn build_image(work: &Path, test_ca: &str) -> BuiltImage {
    let project = Path::new(env!("CARGO_MANIFEST_DIR"));
    let stages = parse(CONTAINERFILE);
    let (last, earlier) = stages.split_last().expect("the Containerfile has stages");
    let builder_name = last
        .instructions
        .iter()
        .filter(|i| i.keyword == "COPY")
        .find_map(|i| {
            let (flags, _, _) = copy_parts(&i.args);
            flags
                .iter()
                .find_map(|f| f.strip_prefix("--from=").map(str::to_string))
        })
        .expect("the final stage copies from a builder stage");
    let builder_stage = earlier
        .iter()
        .find(|s| s.name.as_deref() == Some(builder_name.as_str()))
        .unwrap_or_else(|| panic!("no stage is named {builder_name}"));
    eprintln!(
        "builder: carrying out the `{builder_name}` stage on this machine instead of in {}",
        builder_stage.from
    );
    let builder = run_builder(builder_stage, project, &work.join("builder"));

    let context = work.join("context");
    let _ = std::fs::remove_dir_all(&context);
    let (containerfile, destinations) =
        final_stage(last, &builder_name, &builder, project, &context, test_ca);
    std::fs::write(context.join("Containerfile"), &containerfile).unwrap();
    let buildah = Buildah {
        storage: work.join(format!("storage-{}", std::process::id())),
        image: format!("localhost/oxitraffic-test:{}", std::process::id()),
    };
    run(
        buildah
            .command()
            .args(["build", "--isolation", "chroot", "--format", "docker", "-t"])
            .arg(&buildah.image)
            .arg("-f")
            .arg(context.join("Containerfile"))
            .arg(&context),
        "buildah build",
    );
    let config = inspect(&buildah);
    let size = run(
        buildah
            .command()
            .args(["images", "--format", "{{.Size}}", &buildah.image]),
        "buildah images",
    );
    BuiltImage {
        config,
        destinations,
        size: String::from_utf8_lossy(&size.stdout).trim().to_string(),
        buildah,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_built_from_the_containerfile_serves_and_checks_its_health() {
    // A machine without them fails the test rather than skipping it: a skipped test would
    // report ok for an image nobody built.
    let missing = missing_prerequisites();
    assert!(
        missing.is_empty(),
        "the container test needs {} (.ci/test installs the packages)",
        missing.join(", ")
    );
    let started = Instant::now();
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("container");
    let pki = make_pki(&work.join("pki"));
    let image = build_image(&work, &pki.ca_pem);
    let built = started.elapsed();
    let (buildah, config) = (&image.buildah, &image.config);

    // What a runtime will do with it.
    let uid = config.user.split(':').next().unwrap_or("");
    assert!(
        !["", "0", "root"].contains(&uid),
        "the image must not run as root; its USER is `{}`",
        config.user
    );
    assert!(
        (config.env.iter()).any(|v| v == "OXITRAFFIC_CONFIG_FILE=/volumes/config.toml"),
        "{:?}",
        config.env
    );
    assert_eq!(config.exposed_ports, vec!["80/tcp".to_string()]);
    assert!(!config.entrypoint.is_empty(), "the image has an entrypoint");
    let (kind, healthcheck) = (config.healthcheck.split_first()).expect("a HEALTHCHECK");
    assert_eq!(
        kind, "CMD",
        "the exec form: there is no shell for CMD-SHELL"
    );

    // Its own network, and the tracked site at a name only its /etc/hosts knows.
    let netns = NetNs::create();
    let site = start_tls_site(netns.host_ip, &pki).await;
    let container = run(
        buildah
            .command()
            .args(["from", "--pull=never", "--add-host"])
            .arg(format!("{SITE_NAME}:{}", netns.host_ip))
            .arg(&buildah.image),
        "buildah from",
    );
    let container = String::from_utf8(container.stdout)
        .unwrap()
        .trim()
        .to_string();

    // Nothing in the image but what the final stage copies.
    eprintln!("image {} ({}):", buildah.image, image.size);
    for (name, bytes) in image_files(buildah, &container) {
        eprintln!("  {bytes:>10}  {name}");
        let copied = (image.destinations.iter())
            .any(|d| *d == name || (d.ends_with('/') && name.starts_with(d.as_str())));
        assert!(copied, "{name} is in the image but no COPY put it there");
    }

    let cluster = PgCluster::start();
    let database = cluster.create_database().await;
    let config_file = work.join(format!("config-{}.toml", std::process::id()));
    // No socket_address: the default, 0.0.0.0:80, is the port the image documents.
    std::fs::write(
        &config_file,
        format!(
            "base_url = \"http://{}\"\n\
             tracked_origin = \"https://{SITE_NAME}:{}\"\n\
             min_delay_secs = 1\n\
             [db]\n\
             host = \"/run/postgresql\"\n\
             username = \"{}\"\n\
             database = \"{database}\"\n",
            netns.container_ip,
            site.addr.port(),
            common::pg::USER,
        ),
    )
    .unwrap();
    // `docker run -v ./config.toml:/volumes/config.toml:ro`, plus PostgreSQL's socket.
    let run_in_container = |args: &[String]| -> Command {
        let mut command = buildah.command_in(&netns);
        command
            .args(["run", "--isolation", "chroot", "-v"])
            .arg(format!("{}:/volumes/config.toml:ro", config_file.display()))
            .arg("-v")
            .arg(format!("{}:/run/postgresql", cluster.host()))
            .arg(&container)
            .arg("--")
            .args(args);
        command
    };
    let healthcheck = || {
        let output = (run_in_container(healthcheck).stdin(Stdio::null()).output())
            .expect("run the healthcheck");
        (output.status.code(), combined(&output))
    };

    let mut server = Container::start(run_in_container(&config.entrypoint));
    server
        .wait_for_log("listening on http://0.0.0.0:80", Duration::from_secs(30))
        .await;
    let outside = SocketAddr::new(IpAddr::V4(netns.container_ip), 80);
    wait_for_health(outside, 200, Duration::from_secs(30), || server.logs()).await;
    let (code, output) = healthcheck();
    assert_eq!(
        code,
        Some(0),
        "HEALTHCHECK failed with /health at 200:\n{output}"
    );
    assert!(output.contains("200 OK"), "{output}");

    // A new path is checked over https against the image's CA bundle, at a name resolved
    // through the container's /etc/hosts; then a visit is counted in PostgreSQL.
    let reply = common::client::get(outside, "/register?path=/page").await;
    assert_eq!(
        reply.status,
        200,
        "{}; logs:\n{}",
        reply.text(),
        server.logs()
    );
    assert_eq!(*site.requests.lock().unwrap(), vec!["/page".to_string()]);
    let token = reply.json().as_u64().expect("a visitor token");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let reply = common::client::post(outside, &format!("/post-sleep/{token}")).await;
    assert_eq!(
        reply.status,
        200,
        "{}; logs:\n{}",
        reply.text(),
        server.logs()
    );
    let visits: i64 = (cluster.connect(&database).await)
        .query_one(
            "SELECT count(*) FROM visits JOIN paths ON paths.id = visits.path_id \
             WHERE paths.path = '/page'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(visits, 1);

    // The database goes away: /health and the healthcheck say so.
    cluster.stop();
    wait_for_health(outside, 503, Duration::from_secs(30), || server.logs()).await;
    let (code, output) = healthcheck();
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("503"), "{output}");

    // `docker stop` sends SIGTERM to the entrypoint: it stops cleanly, and the healthcheck
    // then reports that nothing answers.
    let pid = server.server_pid().to_string();
    run(Command::new("kill").args(["-TERM", &pid]), "kill -TERM");
    let status = server.wait(Duration::from_secs(30));
    assert!(status.success(), "{status}; logs:\n{}", server.logs());
    assert!(server.logs().contains("stopped"), "{}", server.logs());
    let (code, output) = healthcheck();
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("cannot connect"), "{output}");

    let _ = std::fs::remove_file(&config_file);
    eprintln!(
        "container test: image built in {built:.1?} (builder stage included), whole test \
         {:.1?}, image size {}",
        started.elapsed(),
        image.size
    );
}

#[test]
fn the_parser_reads_continuations_comments_and_stages() {
    let stages = parse(
        "# syntax note\nFROM base:1 AS builder\nWORKDIR /src\nENV A=\"x y\" B=z\n\
         RUN one \\\n\n  # a comment inside\n  && two\n\nFROM scratch\n\
         COPY --from=builder --chmod=755 /a /b /dest/\n",
    );
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0].from, "base:1");
    assert_eq!(stages[0].name.as_deref(), Some("builder"));
    assert_eq!(
        stages[0].instructions[2],
        Instruction {
            keyword: "RUN".into(),
            args: "one && two".into()
        }
    );
    assert_eq!(
        env_pairs(&stages[0].instructions[1].args),
        vec![("A".into(), "x y".into()), ("B".into(), "z".into())]
    );
    assert_eq!(stages[1].from, "scratch");
    assert_eq!(
        copy_parts(&stages[1].instructions[0].args),
        (
            vec!["--from=builder", "--chmod=755"],
            vec!["/a", "/b"],
            "/dest/"
        )
    );
}
