//! The command line, against the real binary: `--version`, `--help`, `check-config`,
//! `hash-password`, `new-api-token` and unknown arguments. None of these needs PostgreSQL.

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
