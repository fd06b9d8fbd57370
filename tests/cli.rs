//! The command line, against the real binary: `--version`, `--help`, `check-config`,
//! `hash-password` (piped, and typed at a pseudo-terminal), `new-api-token` and unknown
//! arguments. None of these needs PostgreSQL; `healthcheck` is in `tests/healthcheck.rs`.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

use argon2::{PasswordHash, PasswordVerifier};
use oxitraffic::config::settings::SETTINGS;
use sha2::{Digest, Sha256};

/// Runs the binary with `args`, only `env` in its environment, and `stdin` piped in.
fn run(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxitraffic"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run oxitraffic");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait for oxitraffic")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 stderr")
}

/// The value after `prefix` on the line starting with it.
fn line_after<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
}

const REQUIRED: &[(&str, &str)] = &[
    ("OXITRAFFIC_BASE_URL", "https://tracker.example.org"),
    ("OXITRAFFIC_TRACKED_ORIGIN", "https://example.org"),
    ("OXITRAFFIC_DB__HOST", "127.0.0.1"),
    ("OXITRAFFIC_DB__USERNAME", "oxitraffic"),
    ("OXITRAFFIC_DB__DATABASE", "oxitraffic"),
];

fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = REQUIRED.to_vec();
    env.extend_from_slice(extra);
    env
}

#[test]
fn version_prints_the_package_version() {
    for flag in ["--version", "-V"] {
        let output = run(&[flag], &[], b"");
        assert_eq!(output.status.code(), Some(0), "{flag}");
        assert_eq!(
            stdout(&output),
            format!("oxitraffic {}\n", env!("CARGO_PKG_VERSION"))
        );
        assert!(output.stderr.is_empty());
    }
}

#[test]
fn help_names_every_subcommand_and_every_setting() {
    for flag in ["--help", "-h"] {
        let output = run(&[flag], &[], b"");
        assert_eq!(output.status.code(), Some(0), "{flag}");
        let help = stdout(&output);
        for command in [
            "healthcheck",
            "check-config",
            "hash-password",
            "new-api-token",
            "--version",
        ] {
            assert!(
                help.contains(&format!("oxitraffic {command}")),
                "{command}:\n{help}"
            );
        }
        assert!(!SETTINGS.is_empty());
        for setting in SETTINGS {
            assert!(
                help.lines().any(|line| {
                    let mut words = line.split_whitespace();
                    words.next() == Some(setting.key)
                        && words.next() == Some(setting.env_var().as_str())
                }),
                "{} with its variable:\n{help}",
                setting.key
            );
        }
        for key in [
            "time_zone",
            "exclude_paths",
            "access.password_hash",
            "trusted_proxies",
            "db.schema",
        ] {
            assert!(help.contains(key), "{key}");
        }
        assert!(help.contains("README's Configuration section"), "{help}");
        assert!(help.contains("OXITRAFFIC_CONFIG_FILE"), "{help}");
    }
}

#[test]
fn check_config_accepts_a_good_configuration_without_connecting_anywhere() {
    // The database and the site both point at a listener that must see no connection.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let callback = format!("http://127.0.0.1:{port}");
    let file = std::env::temp_dir().join(format!("oxitraffic-cli-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "socket_address = \"127.0.0.1:9\"\nexclude_paths = [\"/admin/**\"]\n[access]\nmetrics = \"public\"\n",
    )
    .unwrap();
    let output = run(
        &["check-config"],
        &with(&[
            ("OXITRAFFIC_CONFIG_FILE", file.to_str().unwrap()),
            ("OXITRAFFIC_DB__PORT", &port),
            ("OXITRAFFIC_TRACKED_ORIGIN_CALLBACK", &callback),
        ]),
        b"",
    );
    std::fs::remove_file(&file).unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.starts_with(&format!(
            "oxitraffic: the configuration from the config file {}",
            file.display()
        )) && text.contains("is valid")
            && text.contains("127.0.0.1:9"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
    listener.set_nonblocking(true).unwrap();
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "check-config connected to the database or the site"
    );
}

#[test]
fn check_config_lists_every_problem_one_per_line() {
    let output = run(
        &["check-config"],
        &[
            ("OXITRAFFIC_BASE_URL", "ftp://tracker"),
            ("OXITRAFFIC_TRACKED_ORIGIN", "https://example.org"),
            ("OXITRAFFIC_DB__USERNAME", "u"),
            ("OXITRAFFIC_DB__DATABASE", "d"),
            ("OXITRAFFIC_INSTANCE", "99"),
            ("OXITRAFFIC_MIN_DELAY", "3"),
            ("OXITRAFFIC_ACCESS__DASHBOARD", "private"),
            ("OXITRAFFIC_TIME_ZONE", "UTC"),
            ("OXITRAFFIC_UTC_OFFSET__HOURS", "2"),
        ],
        b"",
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "{}", stdout(&output));
    let text = stderr(&output);
    let lines: Vec<&str> = text.lines().collect();
    let expected = [
        "oxitraffic: unknown environment variable OXITRAFFIC_MIN_DELAY",
        "oxitraffic: missing required setting `db.host`",
        "oxitraffic: setting `base_url` from the environment variable OXITRAFFIC_BASE_URL",
        "oxitraffic: setting `instance` from the environment variable OXITRAFFIC_INSTANCE must be between 0 and 31",
        "oxitraffic: `time_zone` and `utc_offset` are both set",
        "oxitraffic: setting `access.dashboard` is `private`",
    ];
    assert_eq!(lines.len(), expected.len(), "{text}");
    for (line, start) in lines.iter().zip(expected) {
        assert!(line.starts_with(start), "expected {start:?}, got {line:?}");
    }
    assert!(lines[5].contains("`access.password_hash`"), "{text}");
}

#[test]
fn hash_password_hashes_the_first_line_of_stdin() {
    let output = run(&["hash-password"], &[], b"correct horse battery\nignored\n");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    let hash = text.trim_end();
    assert_eq!(text.lines().count(), 1, "only the hash on stdout: {text}");
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    let parsed = PasswordHash::new(hash).unwrap();
    let argon2 = argon2::Argon2::default();
    assert!(
        argon2
            .verify_password(b"correct horse battery", &parsed)
            .is_ok()
    );
    assert!(
        argon2
            .verify_password(b"correct horse battery\n", &parsed)
            .is_err()
    );
    assert!(argon2.verify_password(b"wrong", &parsed).is_err());

    let again = run(&["hash-password"], &[], b"correct horse battery\r\n");
    let again = stdout(&again);
    assert_ne!(again.trim_end(), hash, "a new salt every time");
    let parsed = PasswordHash::new(again.trim_end()).unwrap();
    assert!(
        argon2
            .verify_password(b"correct horse battery", &parsed)
            .is_ok(),
        "CRLF ending dropped"
    );

    // The hash is what the configuration accepts for a private dashboard.
    let check = run(
        &["check-config"],
        &with(&[
            ("OXITRAFFIC_ACCESS__DASHBOARD", "private"),
            ("OXITRAFFIC_ACCESS__PASSWORD_HASH", hash),
        ]),
        b"",
    );
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
}

#[test]
fn hash_password_refuses_an_empty_password() {
    for input in [&b""[..], b"\n", b"\r\nsecond"] {
        let output = run(&["hash-password"], &[], input);
        assert_eq!(output.status.code(), Some(1), "{input:?}");
        assert!(output.stdout.is_empty());
        assert!(
            stderr(&output).contains("the password is empty"),
            "{}",
            stderr(&output)
        );
    }
}

#[test]
fn new_api_token_prints_a_token_and_the_sha256_digest_to_configure() {
    let output = run(&["new-api-token"], &[], b"");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    let token = line_after(&text, "token: ");
    assert_eq!(token.len(), 43, "32 bytes in unpadded base64url: {token}");
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{token}"
    );
    let digest: String = Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        line_after(&text, "digest (SHA-256 of the token, hex): "),
        digest
    );
    assert_eq!(
        line_after(&text, "api_tokens = "),
        format!("[\"{digest}\"]")
    );
    assert_eq!(line_after(&text, "OXITRAFFIC_ACCESS__API_TOKENS="), digest);

    let other = stdout(&run(&["new-api-token"], &[], b""));
    assert_ne!(line_after(&other, "token: "), token, "random every time");

    // What it prints is what the configuration accepts for a private API.
    let check = run(
        &["check-config"],
        &with(&[
            ("OXITRAFFIC_ACCESS__API", "private"),
            ("OXITRAFFIC_ACCESS__API_TOKENS", &digest),
        ]),
        b"",
    );
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    let file =
        std::env::temp_dir().join(format!("oxitraffic-cli-token-{}.toml", std::process::id()));
    let line = text
        .lines()
        .find(|l| l.starts_with("api_tokens = "))
        .unwrap();
    std::fs::write(&file, format!("[access]\napi = \"private\"\n{line}\n")).unwrap();
    let check = run(
        &["check-config"],
        &with(&[("OXITRAFFIC_CONFIG_FILE", file.to_str().unwrap())]),
        b"",
    );
    std::fs::remove_file(&file).unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
}

#[test]
fn unknown_arguments_print_the_usage_and_exit_2() {
    for args in [
        &["serve"][..],
        &["--verbose"],
        &["check-config", "now"],
        &["hash-password", "hunter2"],
        &["--version", "--help"],
        &["help"],
    ] {
        let output = run(args, &[], b"");
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {text}");
        assert!(
            text.starts_with(&format!(
                "oxitraffic: unexpected arguments `{}`\nusage: oxitraffic",
                args.join(" ")
            )),
            "{text}"
        );
        assert!(text.contains("oxitraffic new-api-token"), "{text}");
        assert!(output.stdout.is_empty());
    }
}

/// A pseudo-terminal: the parent writes what is "typed" into `master` and reads what the
/// terminal shows; the child gets `slave` as its terminal.
struct Pty {
    master: std::fs::File,
    slave: std::fs::File,
}

impl Pty {
    fn open() -> Pty {
        use std::os::fd::FromRawFd;
        // SAFETY: plain libc calls on a descriptor this function owns; each result is checked
        // before the next call, and the name buffer is NUL-terminated by ptsname_r.
        unsafe {
            let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            assert!(
                master >= 0,
                "posix_openpt: {}",
                std::io::Error::last_os_error()
            );
            assert_eq!(libc::grantpt(master), 0);
            assert_eq!(libc::unlockpt(master), 0);
            let mut name = [0 as libc::c_char; 128];
            assert_eq!(libc::ptsname_r(master, name.as_mut_ptr(), name.len()), 0);
            let flags = libc::fcntl(master, libc::F_GETFL);
            assert_eq!(
                libc::fcntl(master, libc::F_SETFL, flags | libc::O_NONBLOCK),
                0
            );
            let name = std::ffi::CStr::from_ptr(name.as_ptr()).to_str().unwrap();
            let slave = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(name)
                .expect("open the terminal's slave side");
            Pty {
                master: std::fs::File::from_raw_fd(master),
                slave,
            }
        }
    }

    /// Reads what the terminal shows until `needle` appears in `seen`; fails after 10 s.
    fn read_until(&mut self, seen: &mut String, needle: &str) {
        use std::io::Read;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut buffer = [0u8; 1024];
        while !seen.contains(needle) {
            match self.master.read(&mut buffer) {
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buffer[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{needle:?} never shown; the terminal shows {seen:?}"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("read the terminal: {e}"),
            }
        }
    }

    /// Reads what the terminal has shown and not been read yet.
    fn drain(&mut self, seen: &mut String) {
        use std::io::Read;
        let mut buffer = [0u8; 1024];
        loop {
            match self.master.read(&mut buffer) {
                Ok(0) => return,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buffer[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => panic!("read the terminal: {e}"),
            }
        }
    }

    fn type_line(&mut self, line: &str) {
        self.master
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    fn echoes(&self) -> bool {
        use std::os::fd::AsRawFd;
        let mut settings = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr fills the struct, read only after it succeeded.
        let settings = unsafe {
            assert_eq!(
                libc::tcgetattr(self.slave.as_raw_fd(), settings.as_mut_ptr()),
                0
            );
            settings.assume_init()
        };
        settings.c_lflag & libc::ECHO != 0
    }
}

/// `hash-password` at a terminal (stdin and stderr), typed twice.
fn hash_at_a_terminal(first: &str, second: &str) -> (Output, String, bool) {
    let mut pty = Pty::open();
    assert!(pty.echoes(), "a new terminal echoes");
    let child = Command::new(env!("CARGO_BIN_EXE_oxitraffic"))
        .arg("hash-password")
        .env_clear()
        .stdin(pty.slave.try_clone().unwrap())
        .stderr(pty.slave.try_clone().unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run oxitraffic");
    let mut shown = String::new();
    // Typed only once asked: the prompt comes after the echo is off.
    pty.read_until(&mut shown, "Password: ");
    let echoing_while_asked = pty.echoes();
    pty.type_line(first);
    pty.read_until(&mut shown, "Repeat the password: ");
    pty.type_line(second);
    let output = child.wait_with_output().unwrap();
    // The child has exited: everything it wrote to the terminal is waiting in the master.
    pty.drain(&mut shown);
    assert!(
        !echoing_while_asked,
        "the echo is off while the password is typed"
    );
    (output, shown, pty.echoes())
}

#[test]
fn hash_password_at_a_terminal_asks_twice_without_echo() {
    let password = "tr0ub4dor & 3";
    let (output, shown, echoes_after) = hash_at_a_terminal(password, password);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    let hash = stdout(&output);
    let parsed = PasswordHash::new(hash.trim_end()).unwrap();
    assert!(
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    );
    assert!(
        !shown.contains(password),
        "the password was shown: {shown:?}"
    );
    assert!(!shown.contains("tr0ub"), "part of it was shown: {shown:?}");
    // At a terminal the next step is said too, with the compose pitfall.
    assert!(
        shown.contains("set it as `password_hash` under `[access]`")
            && shown.contains("OXITRAFFIC_ACCESS__PASSWORD_HASH")
            && shown.contains("`$$`"),
        "{shown:?}"
    );
    assert!(echoes_after, "the terminal echoes again afterwards");

    let (output, shown, echoes_after) = hash_at_a_terminal(password, "tr0ub4dor & 4");
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(output.stdout.is_empty(), "nothing is hashed");
    assert!(shown.contains("the two passwords differ"), "{shown:?}");
    assert!(echoes_after, "the terminal echoes again after a mistake");
}
