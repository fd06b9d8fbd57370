//! Who may see what (SPEC §10): the `[access]` table.
//!
//! Invariants of a loaded [`Access`]: `username` is non-empty and has no `:` (HTTP Basic
//! splits at the first one) and no control character; `password_hash`, when set, is an
//! argon2id PHC string whose parameters the `argon2` crate accepts, so a login can always be
//! verified; `api_tokens` are SHA-256 digests, never tokens; and a `Private` dashboard or API
//! always has a credential that could open it (checked by [`missing_credentials`]).

use std::fmt;

use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    Public,
    Private,
}

impl Visibility {
    /// The error is the end of a sentence starting with the setting's name.
    pub fn parse(text: &str) -> Result<Visibility, String> {
        match text {
            "public" => Ok(Visibility::Public),
            "private" => Ok(Visibility::Private),
            _ => Err(format!("(`{text}`) must be `public` or `private`")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Access {
    /// The HTML pages.
    pub dashboard: Visibility,
    /// `/api/*`.
    pub api: Visibility,
    /// `/metrics`.
    pub metrics: Visibility,
    pub username: String,
    /// An argon2id PHC string (`$argon2id$v=19$m=…`).
    pub password_hash: Option<String>,
    /// SHA-256 digests of the accepted bearer tokens (see [`token_digest`]).
    pub api_tokens: Vec<[u8; 32]>,
}

/// Neither the hash nor the digests are printed: they are not secrets, but there is no need
/// for logs to carry what an offline guesser would start from.
impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("dashboard", &self.dashboard)
            .field("api", &self.api)
            .field("metrics", &self.metrics)
            .field("username", &self.username)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "api_tokens",
                &format_args!("{} digests", self.api_tokens.len()),
            )
            .finish()
    }
}

/// The digest `api_tokens` lists for a bearer token: SHA-256 of the token's text as sent.
pub fn token_digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// The error is the end of a sentence starting with the setting's name.
pub fn check_username(text: &str) -> Result<(), String> {
    if text.is_empty() {
        Err("must not be empty".into())
    } else if text.contains(':') {
        Err(format!(
            "(`{text}`) must not contain `:` (HTTP Basic authentication splits at it)"
        ))
    } else if text.chars().any(char::is_control) {
        Err(format!("(`{text}`) must not contain control characters"))
    } else {
        Ok(())
    }
}

/// Accepts an argon2id PHC string that the `argon2` crate can verify against. The hash is
/// not repeated in the error.
pub fn check_password_hash(text: &str) -> Result<(), String> {
    const HOW: &str = "create one with `oxitraffic hash-password`";
    let hash = argon2::PasswordHash::new(text).map_err(|error| {
        let hint = if text.starts_with("$argon2id$") {
            ""
        } else {
            " (it starts with `$argon2id$`; a compose file needs each `$` written as `$$`)"
        };
        format!("is not a password hash in the PHC format: {error}{hint}; {HOW}")
    })?;
    if hash.algorithm != argon2::Algorithm::Argon2id.ident() {
        return Err(format!(
            "must be an argon2id hash, not {}; {HOW}",
            hash.algorithm
        ));
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(format!("lacks its salt or its hash; {HOW}"));
    }
    argon2::Params::try_from(&hash)
        .map_err(|error| format!("has parameters argon2 cannot use: {error}; {HOW}"))?;
    Ok(())
}

/// One item of `api_tokens`: 64 hexadecimal digits. The item is not repeated in the error,
/// since a mistaken item may well be a token itself.
pub fn parse_token_digest(text: &str) -> Result<[u8; 32], String> {
    let mut digest = [0; 32];
    let valid = text.len() == 64
        && text
            .as_bytes()
            .chunks(2)
            .zip(&mut digest)
            .all(
                |(pair, byte)| match (hex_value(pair[0]), hex_value(pair[1])) {
                    (Some(high), Some(low)) => {
                        *byte = high << 4 | low;
                        true
                    }
                    _ => false,
                },
            );
    if valid {
        return Ok(digest);
    }
    let looks_like_a_token = text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    Err(format!(
        "must list SHA-256 digests of tokens, 64 hexadecimal digits each, as \
         `oxitraffic new-api-token` prints them; one has {} characters{}",
        text.chars().count(),
        if looks_like_a_token {
            " and looks like a token itself: list its digest instead"
        } else {
            ""
        }
    ))
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// What a private dashboard or API lacks to be opened at all, one message per resource.
/// `metrics` may stay closed: its default is private and most sites never scrape it.
pub fn missing_credentials(
    dashboard: Visibility,
    api: Visibility,
    has_password: bool,
    has_tokens: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let password = "`password_hash` under `[access]` (from `oxitraffic hash-password`) in the \
                    config file or OXITRAFFIC_ACCESS__PASSWORD_HASH";
    if dashboard == Visibility::Private && !has_password {
        problems.push(format!(
            "setting `access.dashboard` is `private`, which needs `access.password_hash` to log \
             in, and it is not set: set {password}, or make the dashboard public"
        ));
    }
    if api == Visibility::Private && !has_password && !has_tokens {
        problems.push(format!(
            "setting `access.api` is `private`, which needs `access.password_hash` or \
             `access.api_tokens`, and neither is set: set {password}, or list token digests in \
             `api_tokens` (from `oxitraffic new-api-token`), or make the API public"
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordHasher;

    fn argon2_hash(algorithm: argon2::Algorithm) -> String {
        let salt = argon2::password_hash::SaltString::encode_b64(&[7; 16]).unwrap();
        // Small parameters: the test checks the format, not the cost.
        let params = argon2::Params::new(64, 1, 1, None).unwrap();
        argon2::Argon2::new(algorithm, argon2::Version::V0x13, params)
            .hash_password(b"hunter2", &salt)
            .unwrap()
            .to_string()
    }

    #[test]
    fn visibility_is_public_or_private() {
        assert_eq!(Visibility::parse("public"), Ok(Visibility::Public));
        assert_eq!(Visibility::parse("private"), Ok(Visibility::Private));
        assert_eq!(Visibility::Private.as_str(), "private");
        for bad in ["Public", "yes", "", "private "] {
            assert_eq!(
                Visibility::parse(bad),
                Err(format!("(`{bad}`) must be `public` or `private`"))
            );
        }
    }

    #[test]
    fn usernames_must_survive_http_basic() {
        assert_eq!(check_username("admin"), Ok(()));
        assert_eq!(check_username("Ada Lovelace"), Ok(()));
        assert_eq!(check_username(""), Err("must not be empty".into()));
        assert!(check_username("a:b").unwrap_err().contains("`:`"));
        assert!(check_username("a\nb").unwrap_err().contains("control"));
    }

    #[test]
    fn only_argon2id_phc_strings_are_password_hashes() {
        assert_eq!(
            check_password_hash(&argon2_hash(argon2::Algorithm::Argon2id)),
            Ok(())
        );
        let error = check_password_hash(&argon2_hash(argon2::Algorithm::Argon2i)).unwrap_err();
        assert!(
            error.starts_with("must be an argon2id hash, not argon2i"),
            "{error}"
        );
        for bad in [
            "",
            "hunter2",
            "argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
            "$argon2id$v=19$",
        ] {
            let error = check_password_hash(bad).unwrap_err();
            assert!(error.contains("oxitraffic hash-password"), "{bad}: {error}");
        }
        let error = check_password_hash("=19=19456,t=2,p=1").unwrap_err();
        assert!(
            error.contains("`$$`"),
            "the compose pitfall is named: {error}"
        );
        let without_hash = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA";
        assert!(
            check_password_hash(without_hash)
                .unwrap_err()
                .contains("lacks")
        );
        let bad_params = "$argon2id$v=19$m=1,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(
            check_password_hash(bad_params)
                .unwrap_err()
                .contains("parameters")
        );
    }

    #[test]
    fn token_digests_are_64_hex_digits() {
        let digest = token_digest(b"abc");
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "SHA-256 test vector"
        );
        assert_eq!(parse_token_digest(&hex), Ok(digest));
        assert_eq!(parse_token_digest(&hex.to_ascii_uppercase()), Ok(digest));
        for bad in [
            &hex[1..],
            &format!("{hex}0"),
            &hex.replace('b', "g"),
            "",
            "é".repeat(32).as_str(),
        ] {
            let error = parse_token_digest(bad).unwrap_err();
            assert!(error.contains("64 hexadecimal digits"), "{bad}: {error}");
            assert!(
                !error.contains(bad) || bad.is_empty(),
                "the item is not echoed"
            );
        }
        let token = "q3yX0c2Pq8bVJ0wWcVYbOQ2yBd5kQy8m3s8FvXo6x0E";
        assert!(
            parse_token_digest(token)
                .unwrap_err()
                .contains("looks like a token itself")
        );
    }

    #[test]
    fn a_private_dashboard_or_api_needs_a_credential_that_opens_it() {
        use Visibility::{Private, Public};
        assert!(missing_credentials(Public, Public, false, false).is_empty());
        assert!(missing_credentials(Private, Private, true, false).is_empty());
        assert!(missing_credentials(Public, Private, false, true).is_empty());
        let problems = missing_credentials(Private, Public, false, true);
        assert_eq!(problems.len(), 1, "tokens do not open the dashboard");
        assert!(problems[0].starts_with("setting `access.dashboard` is `private`"));
        assert!(problems[0].contains("`access.password_hash`"));
        let problems = missing_credentials(Private, Private, false, false);
        assert_eq!(problems.len(), 2);
        assert!(problems[1].starts_with("setting `access.api` is `private`"));
        assert!(problems[1].contains("`access.password_hash`"));
    }

    #[test]
    fn debug_output_hides_the_hash() {
        let access = Access {
            dashboard: Visibility::Private,
            api: Visibility::Public,
            metrics: Visibility::Private,
            username: "admin".into(),
            password_hash: Some(argon2_hash(argon2::Algorithm::Argon2id)),
            api_tokens: vec![[0; 32]],
        };
        let printed = format!("{access:?}");
        assert!(
            !printed.contains("argon2id") && printed.contains("1 digests"),
            "{printed}"
        );
    }
}
