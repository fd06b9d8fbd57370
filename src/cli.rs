//! The subcommands other than serving and `healthcheck`: `--help`, `check-config`,
//! `hash-password` and `new-api-token`.
//!
//! None of them connects anywhere. Randomness (salts, tokens) comes from `/dev/urandom`,
//! which exists wherever the server runs, containers included, and never blocks once the
//! system has booted.

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::ExitCode;

use argon2::PasswordHasher;
use argon2::password_hash::SaltString;
use oxitraffic::config::{self, CONFIG_FILE_VAR, access, settings};

pub const USAGE: &str = "\
usage: oxitraffic                 run the server
       oxitraffic healthcheck     exit 0 if the configured server's /health answers 200, else 1
       oxitraffic check-config    load the configuration as the server would and print every problem
       oxitraffic hash-password   read a password on stdin, print its hash for access.password_hash
       oxitraffic new-api-token   print a new API token and its digest for access.api_tokens
       oxitraffic --help | -h     print this help and every setting
       oxitraffic --version | -V  print the version";

/// The usage, then every setting from the settings table.
pub fn help() -> String {
    let mut text = format!(
        "oxitraffic {}: a self-hosted, privacy-respecting website traffic tracker\n\n{USAGE}\n\n\
         Settings come from the TOML file named by the environment variable {CONFIG_FILE_VAR},\n\
         and each can be set or overridden by its environment variable: keys with a dot are\n\
         tables in the file ([db], [access], [utc_offset]); lists are arrays of strings in the\n\
         file and comma-separated in the environment. The README's Configuration section\n\
         documents every setting.\n\n",
        env!("CARGO_PKG_VERSION")
    );
    let settings = settings::SETTINGS;
    let key_width = settings.iter().map(|s| s.key.len()).max().unwrap_or(0);
    let env_width = settings
        .iter()
        .map(|s| s.env_var().len())
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        text,
        "  {:key_width$}  {:env_width$}  default",
        "key", "environment variable"
    );
    for setting in settings {
        let _ = writeln!(
            text,
            "  {:key_width$}  {:env_width$}  {}\n      {}",
            setting.key,
            setting.env_var(),
            setting.default_text(),
            setting.description
        );
    }
    text
}

/// Loads the configuration like the server and says whether it would start.
pub fn check_config(env: Vec<(String, String)>) -> ExitCode {
    let file = env
        .iter()
        .find(|(name, _)| name == CONFIG_FILE_VAR)
        .map(|(_, path)| path.clone());
    match config::load(env) {
        Ok(config) => {
            let from = match file {
                Some(path) => format!("the config file {path} and the environment"),
                None => format!("the environment ({CONFIG_FILE_VAR} is not set)"),
            };
            println!(
                "oxitraffic: the configuration from {from} is valid; the server would listen on {}",
                config.socket_address
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for error in &errors {
                eprintln!("oxitraffic: {error}");
            }
            ExitCode::FAILURE
        }
    }
}

/// A password longer than this is more likely a wrong file on stdin than a password.
const MAX_PASSWORD_BYTES: usize = 4096;

pub fn hash_password() -> ExitCode {
    let password = match read_password() {
        Ok(password) => password,
        Err(message) => return fail(&message),
    };
    let hash = match random_bytes::<16>().and_then(|salt| hash_with_salt(&password, &salt)) {
        Ok(hash) => hash,
        Err(message) => return fail(&message),
    };
    println!("{hash}");
    if std::io::stderr().is_terminal() {
        eprintln!(
            "oxitraffic: set it as `password_hash` under `[access]` in the config file, or as {} \
             (a compose file needs each `$` written as `$$`)",
            config::env_var_name("access.password_hash")
        );
    }
    ExitCode::SUCCESS
}

/// The argon2id PHC string of `password` with the `argon2` crate's default parameters
/// (m=19456 KiB, t=2, p=1, OWASP's recommendation).
fn hash_with_salt(password: &[u8], salt: &[u8; 16]) -> Result<String, String> {
    let salt = SaltString::encode_b64(salt).map_err(|e| format!("cannot encode the salt: {e}"))?;
    argon2::Argon2::default()
        .hash_password(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// From a terminal: asked twice without echo. Otherwise: the first line of stdin.
fn read_password() -> Result<Vec<u8>, String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return read_line(&mut stdin.lock());
    }
    let _quiet = terminal::EchoOff::new()
        .map_err(|e| format!("cannot turn off the terminal's echo: {e}"))?;
    let ask = |prompt: &str| {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        read_line(&mut stdin.lock())
    };
    let first = ask("Password: ")?;
    let second = ask("Repeat the password: ")?;
    if first != second {
        return Err("the two passwords differ; nothing was hashed".into());
    }
    Ok(first)
}

/// One line without its line ending (`\n` or `\r\n`); an empty one is an error.
fn read_line(input: &mut impl BufRead) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    input
        .take(MAX_PASSWORD_BYTES as u64 + 2)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("cannot read the password: {e}"))?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password is longer than {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    if line.is_empty() {
        return Err("the password is empty (it is the first line of stdin)".into());
    }
    Ok(line)
}

/// A token is 32 random bytes in unpadded base64url (43 characters, safe in a header and a
/// shell), so it cannot be mistaken for its digest, which is hex.
pub fn new_api_token() -> ExitCode {
    let bytes = match random_bytes::<32>() {
        Ok(bytes) => bytes,
        Err(message) => return fail(&message),
    };
    let token = base64url(&bytes);
    let digest = hex(&access::token_digest(token.as_bytes()));
    println!("token: {token}");
    println!("digest (SHA-256 of the token, hex): {digest}");
    println!();
    println!(
        "Give the token to the API client (`Authorization: Bearer <token>`) and keep it safe:"
    );
    println!("the tracker only keeps its digest, so it cannot be shown again.");
    println!("Allow it with its digest, in the config file under [access]:");
    println!("api_tokens = [\"{digest}\"]");
    println!("or in the environment (several digests comma-separated):");
    println!("{}={digest}", config::env_var_name("access.api_tokens"));
    ExitCode::SUCCESS
}

fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read random bytes from /dev/urandom: {e}"))?;
    Ok(bytes)
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let group = chunk
            .iter()
            .enumerate()
            .fold(0u32, |group, (i, &b)| group | u32::from(b) << (16 - 8 * i));
        // 1 byte gives 2 characters, 2 give 3, 3 give 4; no padding.
        for i in 0..=chunk.len() {
            text.push(char::from(ALPHABET[(group >> (18 - 6 * i)) as usize & 63]));
        }
    }
    text
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut text, b| {
        let _ = write!(text, "{b:02x}");
        text
    })
}

fn fail(message: &str) -> ExitCode {
    eprintln!("oxitraffic: {message}");
    ExitCode::FAILURE
}

/// Echo off while a password is typed, and back on however the prompt ends: normally, on an
/// error (the guard's drop), or by a signal (Ctrl-C, a kill), whose handler restores the
/// terminal and then dies of the same signal.
mod terminal {
    use std::io;
    use std::mem::MaybeUninit;
    use std::sync::OnceLock;

    const STDIN: libc::c_int = 0;
    const SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

    /// The settings to restore; written once, before any handler can read it.
    static SAVED: OnceLock<libc::termios> = OnceLock::new();

    /// Holds what each signal did before, to put it back.
    pub struct EchoOff {
        previous: [libc::sighandler_t; SIGNALS.len()],
    }

    impl EchoOff {
        pub fn new() -> io::Result<EchoOff> {
            let mut settings = MaybeUninit::<libc::termios>::uninit();
            // SAFETY: tcgetattr fills the struct, and it is read only after it succeeded.
            let saved = unsafe {
                if libc::tcgetattr(STDIN, settings.as_mut_ptr()) != 0 {
                    return Err(io::Error::last_os_error());
                }
                settings.assume_init()
            };
            let saved = *SAVED.get_or_init(|| saved);
            let mut guard = EchoOff {
                previous: [libc::SIG_DFL; SIGNALS.len()],
            };
            for (signal, previous) in SIGNALS.into_iter().zip(&mut guard.previous) {
                let handler = restore_and_die as *const () as libc::sighandler_t;
                // SAFETY: the handler only calls async-signal-safe functions. A signal the
                // caller ignores (nohup) stays ignored.
                unsafe {
                    *previous = libc::signal(signal, handler);
                    if *previous == libc::SIG_IGN {
                        libc::signal(signal, libc::SIG_IGN);
                    }
                }
            }
            let mut quiet = saved;
            // The typed characters are not shown; the Enter that ends the line still is.
            quiet.c_lflag &= !libc::ECHO;
            quiet.c_lflag |= libc::ECHONL;
            // SAFETY: a valid termios for the terminal it was read from.
            if unsafe { libc::tcsetattr(STDIN, libc::TCSANOW, &quiet) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(guard)
        }
    }

    impl Drop for EchoOff {
        fn drop(&mut self) {
            if let Some(saved) = SAVED.get() {
                // SAFETY: restoring the settings read from this terminal.
                unsafe {
                    libc::tcsetattr(STDIN, libc::TCSANOW, saved);
                }
            }
            for (signal, previous) in SIGNALS.into_iter().zip(self.previous) {
                // SAFETY: what the signal did before `new`.
                unsafe {
                    libc::signal(signal, previous);
                }
            }
        }
    }

    extern "C" fn restore_and_die(signal: libc::c_int) {
        // SAFETY: tcsetattr, signal and raise are async-signal-safe; SAVED was set before
        // the handler was installed, so `get` is a plain load.
        unsafe {
            if let Some(saved) = SAVED.get() {
                libc::tcsetattr(STDIN, libc::TCSANOW, saved);
            }
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{PasswordHash, PasswordVerifier};

    #[test]
    fn help_lists_every_setting_with_its_variable_and_default() {
        let help = help();
        for setting in settings::SETTINGS {
            let line = help
                .lines()
                .find(|line| line.trim_start().starts_with(&format!("{} ", setting.key)))
                .unwrap_or_else(|| panic!("{} is missing:\n{help}", setting.key));
            assert!(line.contains(&setting.env_var()), "{line}");
            assert!(line.trim_end().ends_with(&setting.default_text()), "{line}");
            assert!(help.contains(setting.description), "{}", setting.key);
        }
        for command in [
            "healthcheck",
            "check-config",
            "hash-password",
            "new-api-token",
        ] {
            assert!(help.contains(&format!("oxitraffic {command}")), "{command}");
        }
        assert!(help.contains("README") && help.contains(CONFIG_FILE_VAR));
    }

    #[test]
    fn the_password_is_the_first_line_without_its_ending() {
        let read = |input: &[u8]| read_line(&mut &input[..]);
        assert_eq!(read(b"hunter2\nsecond line\n"), Ok(b"hunter2".to_vec()));
        assert_eq!(read(b"hunter2\r\n"), Ok(b"hunter2".to_vec()));
        assert_eq!(read(b"hunter2"), Ok(b"hunter2".to_vec()));
        assert_eq!(
            read(b" spaced \n"),
            Ok(b" spaced ".to_vec()),
            "spaces count"
        );
        assert!(read(b"\nhunter2\n").unwrap_err().contains("empty"));
        assert!(read(b"").unwrap_err().contains("empty"));
        let longest = vec![b'x'; MAX_PASSWORD_BYTES];
        assert_eq!(read(&[&longest[..], b"\r\n"].concat()), Ok(longest.clone()));
        let too_long = [&longest[..], b"x\n"].concat();
        assert!(
            read(&too_long)
                .unwrap_err()
                .contains("longer than 4096 bytes")
        );
        assert!(read(&too_long[..too_long.len() - 1]).is_err());
    }

    #[test]
    fn hashes_are_argon2id_with_the_default_parameters_and_verify() {
        let hash = hash_with_salt(b"hunter2", &[7; 16]).unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert_eq!(config::access::check_password_hash(&hash), Ok(()));
        let parsed = PasswordHash::new(&hash).unwrap();
        let argon2 = argon2::Argon2::default();
        assert!(argon2.verify_password(b"hunter2", &parsed).is_ok());
        assert!(argon2.verify_password(b"hunter3", &parsed).is_err());
        assert_ne!(
            hash,
            hash_with_salt(b"hunter2", &[8; 16]).unwrap(),
            "salted"
        );
    }

    #[test]
    fn tokens_are_base64url_and_digests_hex() {
        // RFC 4648 test vectors, without padding.
        for (bytes, text) in [
            (&b""[..], ""),
            (b"f", "Zg"),
            (b"fo", "Zm8"),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg"),
            (b"fooba", "Zm9vYmE"),
            (b"foobar", "Zm9vYmFy"),
            (&[0xfb, 0xff, 0xbf], "-_-_"),
        ] {
            assert_eq!(base64url(bytes), text);
        }
        assert_eq!(base64url(&[0; 32]).len(), 43);
        assert_eq!(hex(&[0x00, 0xab, 0x0f]), "00ab0f");
        let a = random_bytes::<32>().unwrap();
        assert_ne!(a, random_bytes::<32>().unwrap());
    }
}
