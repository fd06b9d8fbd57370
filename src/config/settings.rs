//! THE table: every setting declared once, with its kind, default and the one line `--help`
//! shows. The unknown-key check, the parsing of environment values, the defaults, the error
//! messages and the help text are all read from [`SETTINGS`], so a setting cannot be
//! documented in one place and forgotten in another.

use super::CONFIG_FILE_VAR;

const ENV_PREFIX: &str = "OXITRAFFIC_";

/// What a setting's value looks like before validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    Integer,
    /// A TOML array of strings in the file; comma-separated in the environment.
    List,
}

impl Kind {
    /// As error messages say it: "must be a whole number".
    pub fn name(self) -> &'static str {
        match self {
            Kind::Text => "a string",
            Kind::Integer => "a whole number",
            Kind::List => "an array of strings",
        }
    }
}

/// What happens when a setting is given nowhere.
#[derive(Clone, Copy, Debug)]
pub enum IfAbsent {
    /// Loading fails, naming the key and both ways to set it.
    Required,
    /// The setting stays unset; the text says what that means (for `--help`).
    Unset(&'static str),
    /// This text, parsed as if it came from the environment.
    Value(&'static str),
}

#[derive(Debug)]
pub struct Setting {
    /// Dotted for settings inside a TOML table: `db.host`.
    pub key: &'static str,
    pub kind: Kind,
    pub default: IfAbsent,
    /// One line for `--help`.
    pub description: &'static str,
}

impl Setting {
    pub fn env_var(&self) -> String {
        env_var_name(self.key)
    }

    /// The default as `--help` shows it.
    pub fn default_text(&self) -> String {
        match self.default {
            IfAbsent::Required => "required".to_string(),
            IfAbsent::Unset(meaning) => meaning.to_string(),
            IfAbsent::Value("") if self.kind == Kind::List => "[]".to_string(),
            IfAbsent::Value("") => "empty".to_string(),
            IfAbsent::Value(value) => value.to_string(),
        }
    }
}

const fn setting(
    key: &'static str,
    kind: Kind,
    default: IfAbsent,
    description: &'static str,
) -> Setting {
    Setting {
        key,
        kind,
        default,
        description,
    }
}

use IfAbsent::{Required, Unset, Value};
use Kind::{Integer, List, Text};

/// Every accepted key, related ones together (the order of `--help`).
pub const SETTINGS: &[Setting] = &[
    setting(
        "socket_address",
        Text,
        Value("0.0.0.0:80"),
        "where to listen: an IP address and port",
    ),
    setting(
        "base_url",
        Text,
        Required,
        "public URL of this tracker, baked into count.js",
    ),
    setting(
        "tracked_origin",
        Text,
        Required,
        "origin of the tracked site, for CORS",
    ),
    setting(
        "tracked_origin_callback",
        Text,
        Unset("tracked_origin"),
        "origin asked whether a new path exists, e.g. http://website in a private network",
    ),
    setting(
        "min_delay_secs",
        Integer,
        Value("19"),
        "seconds between registration and counting (0-3600)",
    ),
    setting(
        "db.host",
        Text,
        Required,
        "PostgreSQL host, or a Unix socket directory",
    ),
    setting("db.port", Integer, Value("5432"), "PostgreSQL port"),
    setting("db.username", Text, Required, "PostgreSQL user"),
    setting("db.password", Text, Value(""), "PostgreSQL password"),
    setting("db.database", Text, Required, "PostgreSQL database"),
    setting(
        "db.schema",
        Text,
        Value("oxitraffic"),
        "PostgreSQL schema, so several instances or sites can share one database",
    ),
    setting(
        "utc_offset.hours",
        Integer,
        Value("0"),
        "offset for dates in the dashboard and API (-23 to 23); not with time_zone",
    ),
    setting(
        "utc_offset.minutes",
        Integer,
        Value("0"),
        "takes the sign of the hours: -3 and 30 is -03:30",
    ),
    setting(
        "time_zone",
        Text,
        Unset("unset"),
        "IANA time zone (Europe/Berlin) for local days, daylight saving included; not with utc_offset",
    ),
    setting(
        "retention_days",
        Integer,
        Value("0"),
        "raw visits older than this many days are deleted; 0 keeps them forever (0-36500)",
    ),
    setting(
        "exclude_paths",
        List,
        Value(""),
        "path patterns never checked, stored or counted: * within a segment, trailing /** for everything below",
    ),
    setting(
        "access.dashboard",
        Text,
        Value("public"),
        "public, or private: the HTML pages need a login",
    ),
    setting(
        "access.api",
        Text,
        Value("public"),
        "public, or private: /api/* needs a login or a bearer token",
    ),
    setting(
        "access.metrics",
        Text,
        Value("private"),
        "private, or public: /metrics answers scrapers without credentials",
    ),
    setting(
        "access.username",
        Text,
        Value("admin"),
        "user name for the login",
    ),
    setting(
        "access.password_hash",
        Text,
        Unset("unset"),
        "argon2id hash of the login password, from `oxitraffic hash-password`",
    ),
    setting(
        "access.api_tokens",
        List,
        Value(""),
        "SHA-256 digests (hex) of the API bearer tokens, from `oxitraffic new-api-token`",
    ),
    setting(
        "instance",
        Integer,
        Value("0"),
        "this instance's number when several share a database (0-31)",
    ),
    setting(
        "trusted_proxies",
        List,
        Value(""),
        "addresses or CIDRs of proxies whose X-Forwarded-For names the client",
    ),
    setting(
        "max_pending_per_client",
        Integer,
        Value("256"),
        "pending registrations one client address (IPv6: its /64) may hold (1-65535)",
    ),
    setting(
        "visitor_slots",
        Integer,
        Value("65536"),
        "visitors that can be pending at once (24 B each)",
    ),
    setting(
        "max_paths",
        Integer,
        Value("100000"),
        "most distinct paths ever registered",
    ),
    setting(
        "max_connections",
        Integer,
        Value("1024"),
        "concurrent client connections; more wait in the kernel's backlog",
    ),
    setting(
        "path_check_timeout_ms",
        Integer,
        Value("5000"),
        "how long a new path's check may take",
    ),
    setting(
        "client_timeout_ms",
        Integer,
        Value("30000"),
        "a client must send a request head, and accept response bytes, within this time",
    ),
    setting(
        "request_timeout_ms",
        Integer,
        Value("10000"),
        "longest a request may be worked on before it is answered 503",
    ),
];

pub(super) fn find(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// Whether `name` is a TOML table holding settings (`db`, `utc_offset`, `access`).
pub(super) fn is_table(name: &str) -> bool {
    SETTINGS.iter().any(|s| {
        s.key
            .split_once('.')
            .is_some_and(|(table, _)| table == name)
    })
}

/// The environment variable that sets `key`: `db.host` → `OXITRAFFIC_DB__HOST`.
pub fn env_var_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

/// The key an `OXITRAFFIC_*` variable names (`OXITRAFFIC_DB__HOST` → `db.host`), whether or
/// not there is such a setting; `None` for other variables.
pub(super) fn key_of_env_var(name: &str) -> Option<String> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    Some(rest.to_ascii_lowercase().replace("__", "."))
}

/// How to write `key` in the TOML file: `db.host` → "`host` under `[db]`".
pub(super) fn file_spelling(key: &str) -> String {
    match key.split_once('.') {
        Some((table, leaf)) => format!("`{leaf}` under `[{table}]`"),
        None => format!("`{key}`"),
    }
}

pub(super) fn how_to_set(key: &str) -> String {
    format!(
        "set it as {} in the config file named by {CONFIG_FILE_VAR}, or with the environment variable {}",
        file_spelling(key),
        env_var_name(key)
    )
}

pub(super) fn known_settings() -> String {
    let known: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
    format!("known settings: {}", known.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_well_formed_for_its_kind() {
        for setting in SETTINGS {
            if let IfAbsent::Value(text) = setting.default
                && setting.kind == Kind::Integer
            {
                assert!(text.parse::<i64>().is_ok(), "{}", setting.key);
            }
            assert!(!setting.description.is_empty(), "{}", setting.key);
            assert!(!setting.description.contains('\n'), "{}", setting.key);
        }
    }

    #[test]
    fn every_key_is_declared_once_and_reads_back_from_its_variable() {
        for (i, setting) in SETTINGS.iter().enumerate() {
            assert!(
                SETTINGS[i + 1..].iter().all(|s| s.key != setting.key),
                "{} is declared twice",
                setting.key
            );
            assert_eq!(
                key_of_env_var(&setting.env_var()).as_deref(),
                Some(setting.key)
            );
        }
        assert_eq!(env_var_name("db.schema"), "OXITRAFFIC_DB__SCHEMA");
        assert_eq!(
            env_var_name("access.api_tokens"),
            "OXITRAFFIC_ACCESS__API_TOKENS"
        );
        assert!(is_table("access") && is_table("db") && !is_table("instance"));
    }

    #[test]
    fn defaults_read_as_help_shows_them() {
        let text = |key| find(key).unwrap().default_text();
        assert_eq!(text("base_url"), "required");
        assert_eq!(text("db.password"), "empty");
        assert_eq!(text("exclude_paths"), "[]");
        assert_eq!(text("time_zone"), "unset");
        assert_eq!(text("tracked_origin_callback"), "tracked_origin");
        assert_eq!(text("access.metrics"), "private");
    }
}
