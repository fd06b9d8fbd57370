//! Configuration: a TOML file named by `OXITRAFFIC_CONFIG_FILE`, overridden key by key by
//! `OXITRAFFIC_*` environment variables (nested keys joined with `__`).
//!
//! Every setting is declared once in [`SETTINGS`]; that table drives the unknown-key check,
//! the parsing of environment values, the defaults and the error messages, so a new setting
//! cannot be documented in one place and forgotten in another. Loading takes the environment
//! as an argument: tests pass a list and never touch the process environment.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The environment variable naming the TOML file.
pub const CONFIG_FILE_VAR: &str = "OXITRAFFIC_CONFIG_FILE";
const ENV_PREFIX: &str = "OXITRAFFIC_";

/// Token bits are shared between the slot index and the per-registration tag, and a token
/// must stay below 2^53; 2^24 slots still leaves 29 tag bits (one guess in half a billion).
pub const MAX_VISITOR_SLOTS: u64 = 1 << 24;
/// Pending visits refer to a path by its index in memory, stored in 24 bits of a slot.
pub const MAX_PATHS_LIMIT: u64 = (1 << 24) - 1;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Integer,
}

enum Default {
    Required,
    Optional,
    Value(&'static str),
}

struct Setting {
    key: &'static str,
    kind: Kind,
    default: Default,
}

const fn setting(key: &'static str, kind: Kind, default: Default) -> Setting {
    Setting { key, kind, default }
}

/// Every accepted key, in the order the README documents them.
const SETTINGS: &[Setting] = &[
    setting("socket_address", Kind::Text, Default::Value("0.0.0.0:80")),
    setting("base_url", Kind::Text, Default::Required),
    setting("tracked_origin", Kind::Text, Default::Required),
    setting("tracked_origin_callback", Kind::Text, Default::Optional),
    setting("min_delay_secs", Kind::Integer, Default::Value("19")),
    setting("db.host", Kind::Text, Default::Required),
    setting("db.port", Kind::Integer, Default::Value("5432")),
    setting("db.username", Kind::Text, Default::Required),
    setting("db.password", Kind::Text, Default::Value("")),
    setting("db.database", Kind::Text, Default::Required),
    setting("utc_offset.hours", Kind::Integer, Default::Value("0")),
    setting("utc_offset.minutes", Kind::Integer, Default::Value("0")),
    setting("visitor_slots", Kind::Integer, Default::Value("65536")),
    setting("max_paths", Kind::Integer, Default::Value("100000")),
    setting("max_connections", Kind::Integer, Default::Value("1024")),
    setting(
        "path_check_timeout_ms",
        Kind::Integer,
        Default::Value("5000"),
    ),
    setting("client_timeout_ms", Kind::Integer, Default::Value("30000")),
    setting("request_timeout_ms", Kind::Integer, Default::Value("10000")),
];

#[derive(Clone)]
pub struct Config {
    pub socket_address: SocketAddr,
    /// Public URL of the tracker, without a trailing slash.
    pub base_url: String,
    /// Origin allowed to call the script endpoints (CORS).
    pub tracked_origin: Origin,
    /// Origin asked whether a new path exists.
    pub tracked_origin_callback: Origin,
    pub min_delay_secs: u32,
    pub db: DbConfig,
    pub utc_offset: UtcOffset,
    pub visitor_slots: u32,
    pub max_paths: u32,
    pub max_connections: u32,
    pub path_check_timeout: Duration,
    /// A client must send a request head, and accept response bytes, within this time.
    pub client_timeout: Duration,
    /// Longest a handler may work on a request before answering 503.
    pub request_timeout: Duration,
}

#[derive(Clone)]
pub struct DbConfig {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    pub database: String,
}

impl fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("database", &self.database)
            .finish()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("socket_address", &self.socket_address)
            .field("base_url", &self.base_url)
            .field("tracked_origin", &self.tracked_origin.as_str())
            .field(
                "tracked_origin_callback",
                &self.tracked_origin_callback.as_str(),
            )
            .field("min_delay_secs", &self.min_delay_secs)
            .field("db", &self.db)
            .field("utc_offset", &self.utc_offset.to_string())
            .field("visitor_slots", &self.visitor_slots)
            .field("max_paths", &self.max_paths)
            .field("max_connections", &self.max_connections)
            .field("path_check_timeout", &self.path_check_timeout)
            .field("client_timeout", &self.client_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// A web origin: `scheme://host[:port]`, nothing after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    serialized: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl Origin {
    pub fn parse(text: &str) -> Result<Origin, String> {
        // Scheme and host are case-insensitive, and nothing else may follow them.
        let text = text.trim().to_ascii_lowercase();
        let (tls, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err("must start with http:// or https://".into());
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() {
            return Err("has no host".into());
        }
        if authority.contains(['/', '?', '#', '@', '\\'])
            || authority
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(
                "must be an origin: scheme and host (and port) only, no path, query or user".into(),
            );
        }
        let (host, port) = split_host_port(authority)?;
        let default_port = if tls { 443 } else { 80 };
        let port = port.unwrap_or(default_port);
        let scheme = if tls { "https" } else { "http" };
        let serialized = if port == default_port {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{host}:{port}")
        };
        Ok(Origin {
            serialized,
            tls,
            host: host.to_string(),
            port,
        })
    }

    /// The origin as a browser sends it in the `Origin` header.
    pub fn as_str(&self) -> &str {
        &self.serialized
    }
}

/// Splits an authority (`host[:port]`, userinfo already removed) and checks both parts: a
/// host is a DNS name or IPv4 address (letters, digits, `-`, `.`, `_`) or a bracketed IPv6
/// address; a port is 1 to 65535 in plain digits. Shared by origins and referrers, so that
/// neither can carry a host that reads two ways.
pub fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let end = bracketed
            .find(']')
            .ok_or("has an unclosed `[` in its IPv6 host")?;
        if bracketed[..end].parse::<std::net::Ipv6Addr>().is_err() {
            return Err("has an invalid IPv6 host".into());
        }
        let after = &bracketed[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err("has characters after its IPv6 host".into()),
        };
        (&authority[..end + 2], port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err("has no host".into());
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err("has an invalid host name".into());
        }
        (host, port)
    };
    let port = match port {
        Some(port) => Some(
            Some(port)
                .filter(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|&p| p != 0)
                .ok_or("has an invalid port")?,
        ),
        None => None,
    };
    Ok((host, port))
}

/// The offset used for dates in the dashboard and the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct UtcOffset {
    minutes: i32,
}

impl UtcOffset {
    /// `minutes` takes the sign of `hours` when `hours` is negative, so `-3` hours and `30`
    /// minutes is `-03:30`, as people write it. Errors name the offending key.
    pub fn from_hours_minutes(
        hours: i64,
        minutes: i64,
    ) -> Result<UtcOffset, (&'static str, String)> {
        if !(-23..=23).contains(&hours) {
            return Err((
                "utc_offset.hours",
                format!("must be between -23 and 23, got {hours}"),
            ));
        }
        if !(-59..=59).contains(&minutes) {
            return Err((
                "utc_offset.minutes",
                format!("must be between -59 and 59, got {minutes}"),
            ));
        }
        if hours > 0 && minutes < 0 {
            return Err((
                "utc_offset.minutes",
                format!("must not be negative when the hours ({hours}) are positive"),
            ));
        }
        let minutes = if hours < 0 { -minutes.abs() } else { minutes };
        Ok(UtcOffset {
            minutes: (hours * 60 + minutes) as i32,
        })
    }

    pub fn from_minutes(minutes: i32) -> UtcOffset {
        UtcOffset { minutes }
    }

    pub fn total_minutes(self) -> i32 {
        self.minutes
    }

    pub fn total_seconds(self) -> i64 {
        i64::from(self.minutes) * 60
    }
}

/// RFC 3339 form: `+02:00`, `-03:30`, `+00:00`.
impl fmt::Display for UtcOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.minutes < 0 { '-' } else { '+' };
        let abs = self.minutes.unsigned_abs();
        write!(f, "{sign}{:02}:{:02}", abs / 60, abs % 60)
    }
}

/// Why the configuration could not be loaded: one line naming the key and how to set it.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(String);

/// Always one line: control characters in quoted names and values (a stray newline in an
/// environment variable) are shown escaped.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The environment variable that sets `key`: `db.host` → `OXITRAFFIC_DB__HOST`.
pub fn env_var_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

/// How to write `key` in the TOML file: `db.host` → "`host` under `[db]`".
fn file_spelling(key: &str) -> String {
    match key.split_once('.') {
        Some((table, leaf)) => format!("`{leaf}` under `[{table}]`"),
        None => format!("`{key}`"),
    }
}

fn how_to_set(key: &str) -> String {
    format!(
        "set it as {} in the config file named by {CONFIG_FILE_VAR}, or with the environment variable {}",
        file_spelling(key),
        env_var_name(key)
    )
}

/// Where a value came from, for error messages.
#[derive(Clone)]
enum Source {
    File,
    Env(String),
    Default,
}

#[derive(Clone)]
enum Value {
    Text(String),
    Integer(i64),
}

struct Raw {
    values: BTreeMap<&'static str, (Value, Source)>,
}

/// Loads the configuration from the file named by `OXITRAFFIC_CONFIG_FILE` (if that variable
/// is present in `env`) and from the `OXITRAFFIC_*` variables in `env`.
pub fn load<I, K, V>(env: I) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    let env: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    let file = env
        .iter()
        .find(|(k, _)| k == CONFIG_FILE_VAR)
        .map(|(_, v)| PathBuf::from(v));
    let text = match &file {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "cannot read the config file {} ({CONFIG_FILE_VAR}): {e}",
                path.display()
            ))
        })?),
        None => None,
    };
    from_sources(text.as_deref(), env)
}

/// Builds the configuration from the text of a TOML file (if any) and environment pairs.
pub fn from_sources<I, K, V>(file_text: Option<&str>, env: I) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    let mut raw = Raw {
        values: BTreeMap::new(),
    };
    if let Some(text) = file_text {
        read_file(text, &mut raw)?;
    }
    for (name, value) in env {
        read_env(name.into(), value.into(), &mut raw)?;
    }
    for setting in SETTINGS {
        if raw.values.contains_key(setting.key) {
            continue;
        }
        match setting.default {
            Default::Required => {
                return Err(ConfigError(format!(
                    "missing required setting `{}`: {}",
                    setting.key,
                    how_to_set(setting.key)
                )));
            }
            Default::Optional => {}
            Default::Value(text) => {
                let value = parse_text(setting.kind, text).expect("defaults are well-formed");
                raw.values.insert(setting.key, (value, Source::Default));
            }
        }
    }
    raw.build()
}

fn find_setting(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

fn is_table(name: &str) -> bool {
    SETTINGS.iter().any(|s| {
        s.key
            .split_once('.')
            .is_some_and(|(table, _)| table == name)
    })
}

fn read_file(text: &str, raw: &mut Raw) -> Result<(), ConfigError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let reason = e.message().trim().to_string();
        ConfigError(format!(
            "the config file ({CONFIG_FILE_VAR}) is not valid TOML: {reason}"
        ))
    })?;
    for (name, value) in table {
        match value {
            toml::Value::Table(inner) if is_table(&name) => {
                for (leaf, value) in inner {
                    store_file_value(&format!("{name}.{leaf}"), value, raw)?;
                }
            }
            value => store_file_value(&name, value, raw)?,
        }
    }
    Ok(())
}

fn known_settings() -> String {
    let known: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
    format!("known settings: {}", known.join(", "))
}

fn store_file_value(key: &str, value: toml::Value, raw: &mut Raw) -> Result<(), ConfigError> {
    let Some(setting) = find_setting(key) else {
        return Err(ConfigError(format!(
            "unknown setting `{key}` in the config file ({CONFIG_FILE_VAR}); {}",
            known_settings()
        )));
    };
    let value = match (setting.kind, value) {
        (Kind::Text, toml::Value::String(s)) => Value::Text(s),
        (Kind::Integer, toml::Value::Integer(i)) => Value::Integer(i),
        (kind, other) => {
            return Err(ConfigError(format!(
                "setting `{key}` in the config file must be {}, got {}",
                kind_name(kind),
                other.type_str()
            )));
        }
    };
    raw.values.insert(setting.key, (value, Source::File));
    Ok(())
}

fn read_env(name: String, value: String, raw: &mut Raw) -> Result<(), ConfigError> {
    let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
        return Ok(());
    };
    if name == CONFIG_FILE_VAR {
        return Ok(());
    }
    let key = rest.to_ascii_lowercase().replace("__", ".");
    let Some(setting) = find_setting(&key) else {
        return Err(ConfigError(format!(
            "unknown environment variable {name}: no setting `{key}`; {}",
            known_settings()
        )));
    };
    let parsed = parse_text(setting.kind, &value).ok_or_else(|| {
        ConfigError(format!(
            "environment variable {name} must be {}, got `{value}`",
            kind_name(setting.kind)
        ))
    })?;
    raw.values.insert(setting.key, (parsed, Source::Env(name)));
    Ok(())
}

fn parse_text(kind: Kind, text: &str) -> Option<Value> {
    match kind {
        Kind::Text => Some(Value::Text(text.to_string())),
        Kind::Integer => text.trim().parse().ok().map(Value::Integer),
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Text => "a string",
        Kind::Integer => "a whole number",
    }
}

impl Raw {
    fn text(&self, key: &str) -> Option<(&str, &Source)> {
        match self.values.get(key) {
            Some((Value::Text(text), source)) => Some((text, source)),
            _ => None,
        }
    }

    fn required_text(&self, key: &str) -> (&str, &Source) {
        self.text(key)
            .expect("required settings were checked before building")
    }

    fn integer(&self, key: &str) -> (i64, &Source) {
        match self.values.get(key) {
            Some((Value::Integer(i), source)) => (*i, source),
            _ => unreachable!("integer settings always have a value"),
        }
    }

    fn invalid(&self, key: &str, source: &Source, reason: impl fmt::Display) -> ConfigError {
        let origin = match source {
            Source::File => format!("in the config file ({CONFIG_FILE_VAR})"),
            Source::Env(name) => format!("from the environment variable {name}"),
            Source::Default => "(default)".to_string(),
        };
        ConfigError(format!("setting `{key}` {origin} {reason}"))
    }

    fn integer_in<T: TryFrom<i64>>(&self, key: &str, min: i64, max: i64) -> Result<T, ConfigError> {
        let (value, source) = self.integer(key);
        if value < min || value > max {
            return Err(self.invalid(
                key,
                source,
                format_args!("must be between {min} and {max}, got {value}"),
            ));
        }
        T::try_from(value).map_err(|_| self.invalid(key, source, "is out of range"))
    }

    fn origin(&self, key: &str) -> Result<Origin, ConfigError> {
        let (text, source) = self.required_text(key);
        Origin::parse(text)
            .map_err(|reason| self.invalid(key, source, format_args!("(`{text}`) {reason}")))
    }

    fn non_empty(&self, key: &str) -> Result<String, ConfigError> {
        let (text, source) = self.required_text(key);
        if text.trim().is_empty() {
            return Err(self.invalid(key, source, "must not be empty"));
        }
        Ok(text.to_string())
    }

    fn build(self) -> Result<Config, ConfigError> {
        let (address, source) = self.required_text("socket_address");
        let socket_address = address.parse().map_err(|_| {
            self.invalid(
                "socket_address",
                source,
                format_args!(
                    "(`{address}`) must be an IP address and port such as 0.0.0.0:80 or [::]:8080"
                ),
            )
        })?;

        let (base_url, source) = self.required_text("base_url");
        let base_url = base_url.trim_end_matches('/').to_string();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://"))
            || base_url.contains(['?', '#', '"', '\'', '<', '>', '\\', '`'])
            || base_url
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(self.invalid(
                "base_url",
                source,
                format_args!("(`{base_url}`) must be an http:// or https:// URL without query, fragment or quotes"),
            ));
        }

        let tracked_origin = self.origin("tracked_origin")?;
        let tracked_origin_callback = match self.text("tracked_origin_callback") {
            Some(_) => self.origin("tracked_origin_callback")?,
            None => tracked_origin.clone(),
        };

        let db = DbConfig {
            host: self.non_empty("db.host")?,
            port: self.integer_in("db.port", 1, 65535)?,
            username: self.non_empty("db.username")?,
            password: self.required_text("db.password").0.to_string(),
            database: self.non_empty("db.database")?,
        };

        let utc_offset = UtcOffset::from_hours_minutes(
            self.integer("utc_offset.hours").0,
            self.integer("utc_offset.minutes").0,
        )
        .map_err(|(key, reason)| self.invalid(key, self.integer(key).1, reason))?;

        Ok(Config {
            socket_address,
            base_url,
            tracked_origin,
            tracked_origin_callback,
            min_delay_secs: self.integer_in("min_delay_secs", 0, 3600)?,
            db,
            utc_offset,
            visitor_slots: self.integer_in("visitor_slots", 16, MAX_VISITOR_SLOTS as i64)?,
            max_paths: self.integer_in("max_paths", 1, MAX_PATHS_LIMIT as i64)?,
            max_connections: self.integer_in("max_connections", 1, 1_000_000)?,
            path_check_timeout: Duration::from_millis(self.integer_in(
                "path_check_timeout_ms",
                1,
                60_000,
            )?),
            client_timeout: Duration::from_millis(self.integer_in(
                "client_timeout_ms",
                100,
                3_600_000,
            )?),
            request_timeout: Duration::from_millis(self.integer_in(
                "request_timeout_ms",
                100,
                600_000,
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUIRED: &[(&str, &str)] = &[
        ("OXITRAFFIC_BASE_URL", "https://tracker.example.org/"),
        ("OXITRAFFIC_TRACKED_ORIGIN", "https://example.org"),
        ("OXITRAFFIC_DB__HOST", "/run/postgresql"),
        ("OXITRAFFIC_DB__USERNAME", "oxitraffic"),
        ("OXITRAFFIC_DB__DATABASE", "oxitraffic"),
    ];

    const FULL_FILE: &str = r#"
        socket_address = "127.0.0.1:8080"
        base_url = "https://tracker.example.org"
        tracked_origin = "https://example.org"
        tracked_origin_callback = "http://website:8000"
        min_delay_secs = 7

        [db]
        host = "db.internal"
        port = 5433
        username = "tracker"
        password = "secret"
        database = "traffic"

        [utc_offset]
        hours = 2
        minutes = 30
    "#;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn error(file: Option<&str>, pairs: &[(&str, &str)]) -> String {
        from_sources(file, env(pairs)).unwrap_err().to_string()
    }

    #[test]
    fn file_alone_sets_everything() {
        let config = from_sources(Some(FULL_FILE), env(&[])).unwrap();
        assert_eq!(config.socket_address, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.base_url, "https://tracker.example.org");
        assert_eq!(config.tracked_origin.as_str(), "https://example.org");
        assert_eq!(
            config.tracked_origin_callback.as_str(),
            "http://website:8000"
        );
        assert!(!config.tracked_origin_callback.tls);
        assert_eq!(config.tracked_origin_callback.port, 8000);
        assert_eq!(config.min_delay_secs, 7);
        assert_eq!(config.db.host, "db.internal");
        assert_eq!(config.db.port, 5433);
        assert_eq!(config.db.username, "tracker");
        assert_eq!(config.db.password, "secret");
        assert_eq!(config.db.database, "traffic");
        assert_eq!(config.utc_offset.to_string(), "+02:30");
    }

    #[test]
    fn defaults_apply_when_only_required_keys_are_given() {
        let config = from_sources(None, env(REQUIRED)).unwrap();
        assert_eq!(config.socket_address, "0.0.0.0:80".parse().unwrap());
        assert_eq!(
            config.base_url, "https://tracker.example.org",
            "trailing slash dropped"
        );
        assert_eq!(config.tracked_origin_callback, config.tracked_origin);
        assert_eq!(config.tracked_origin_callback.port, 443);
        assert_eq!(config.min_delay_secs, 19);
        assert_eq!(config.db.port, 5432);
        assert_eq!(config.db.password, "");
        assert_eq!(config.utc_offset, UtcOffset::default());
        assert_eq!(config.visitor_slots, 65536);
    }

    #[test]
    fn environment_overrides_the_file() {
        let config = from_sources(
            Some(FULL_FILE),
            env(&[
                ("OXITRAFFIC_MIN_DELAY_SECS", "3"),
                ("OXITRAFFIC_SOCKET_ADDRESS", "[::1]:9000"),
                ("PATH", "/usr/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(config.min_delay_secs, 3);
        assert_eq!(config.socket_address, "[::1]:9000".parse().unwrap());
        assert_eq!(
            config.db.host, "db.internal",
            "untouched keys keep the file's value"
        );
    }

    #[test]
    fn nested_keys_are_set_with_double_underscores() {
        let config = from_sources(
            Some(FULL_FILE),
            env(&[
                ("OXITRAFFIC_DB__PORT", "6543"),
                ("OXITRAFFIC_DB__PASSWORD", "12345"),
                ("OXITRAFFIC_UTC_OFFSET__HOURS", "-3"),
                ("OXITRAFFIC_UTC_OFFSET__MINUTES", "30"),
            ]),
        )
        .unwrap();
        assert_eq!(config.db.port, 6543);
        assert_eq!(
            config.db.password, "12345",
            "a numeric-looking password stays text"
        );
        assert_eq!(config.utc_offset.to_string(), "-03:30");
        assert_eq!(config.utc_offset.total_minutes(), -210);
    }

    #[test]
    fn missing_required_key_names_the_key_and_both_ways_to_set_it() {
        let pairs: Vec<_> = REQUIRED
            .iter()
            .copied()
            .filter(|(k, _)| *k != "OXITRAFFIC_DB__HOST")
            .collect();
        let message = error(None, &pairs);
        assert_eq!(
            message,
            "missing required setting `db.host`: set it as `host` under `[db]` in the config file named by \
             OXITRAFFIC_CONFIG_FILE, or with the environment variable OXITRAFFIC_DB__HOST"
        );
        let message = error(None, &[]);
        assert!(
            message.contains("`base_url`") && message.contains("OXITRAFFIC_BASE_URL"),
            "{message}"
        );
    }

    #[test]
    fn unknown_keys_are_rejected_wherever_they_appear() {
        let message = error(Some("min_delay = 3\n"), REQUIRED);
        assert!(
            message.starts_with("unknown setting `min_delay` in the config file"),
            "{message}"
        );
        assert!(
            message.contains("min_delay_secs"),
            "lists the known keys: {message}"
        );

        let message = error(Some("[db]\nhots = \"x\"\n"), REQUIRED);
        assert!(
            message.starts_with("unknown setting `db.hots`"),
            "{message}"
        );

        let message = error(Some("[dbb]\nhost = \"x\"\n"), REQUIRED);
        assert!(message.starts_with("unknown setting `dbb`"), "{message}");

        let mut pairs = REQUIRED.to_vec();
        pairs.push(("OXITRAFFIC_DB_HOST", "x"));
        let message = error(None, &pairs);
        assert!(
            message.starts_with(
                "unknown environment variable OXITRAFFIC_DB_HOST: no setting `db_host`"
            ),
            "{message}"
        );
    }

    #[test]
    fn wrong_types_and_ranges_are_explained() {
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("OXITRAFFIC_MIN_DELAY_SECS", "soon"));
        assert_eq!(
            error(None, &pairs),
            "environment variable OXITRAFFIC_MIN_DELAY_SECS must be a whole number, got `soon`"
        );

        assert!(
            error(Some("min_delay_secs = \"19\"\n"), REQUIRED).contains("must be a whole number")
        );

        let mut pairs = REQUIRED.to_vec();
        pairs.push(("OXITRAFFIC_DB__PORT", "70000"));
        assert!(error(None, &pairs).contains("`db.port` from the environment variable OXITRAFFIC_DB__PORT must be between 1 and 65535"));

        let mut pairs = REQUIRED.to_vec();
        pairs.push(("OXITRAFFIC_TRACKED_ORIGIN", "https://example.org/blog"));
        assert!(error(None, &pairs).contains("must be an origin"));

        let mut pairs = REQUIRED.to_vec();
        pairs.push(("OXITRAFFIC_SOCKET_ADDRESS", "localhost"));
        assert!(error(None, &pairs).contains("`socket_address`"));

        assert!(error(Some("base_url = "), REQUIRED).contains("not valid TOML"));
    }

    #[test]
    fn origins_are_normalised() {
        let origin = Origin::parse("HTTPS://Example.org:443/").unwrap();
        assert_eq!(origin.as_str(), "https://example.org");
        let origin = Origin::parse("http://[::1]:8080").unwrap();
        assert_eq!((origin.host.as_str(), origin.port), ("[::1]", 8080));
        for bad in [
            "ftp://x",
            "http://",
            "http://a@b",
            "http://a:0",
            "http://a:x",
            "https://a/b",
            "http://a b",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_with_hosts_that_read_two_ways_are_refused() {
        // Found by fuzzing (tests/fuzz/regressions/config): a control character used to
        // reach the Host header and panic at start-up.
        for bad in [
            "https://exam\u{1}ple.org",
            "http://s::1]:80",
            "https://a:b:8443",
            "http://a:+80",
            "http://a:080000",
            "http://[zz::1]",
            "http://exa mple.org",
            "http://ex%41mple.org",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad:?}");
        }
        for good in [
            "http://localhost:8080",
            "https://Example.ORG",
            "http://[::1]:80",
            "http://10.0.0.1",
            "http://web_site",
        ] {
            let origin = Origin::parse(good).unwrap();
            assert!(
                hyper::header::HeaderValue::from_str(origin.as_str()).is_ok(),
                "{good}"
            );
            assert_eq!(
                Origin::parse(origin.as_str()).unwrap(),
                origin,
                "{good} re-parses to itself"
            );
        }
    }

    #[test]
    fn errors_stay_on_one_line_whatever_the_input() {
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("OXITRAFFIC_MIN_DELAY_SECS", "1\n2"));
        pairs.push(("OXITRAFFIC_TRACKED_ORIGIN", "https://a\nb"));
        let message = error(None, &pairs);
        assert!(!message.contains('\n'), "{message}");
        assert!(
            message.contains("1\\n2"),
            "the value is shown escaped: {message}"
        );
        let message = error(Some("\"a\\nb\" = 1\n"), REQUIRED);
        assert!(message.starts_with("unknown setting `a\\nb`"), "{message}");
    }

    #[test]
    fn offsets_format_as_rfc3339() {
        let offset = |h, m| UtcOffset::from_hours_minutes(h, m).unwrap().to_string();
        assert_eq!(offset(0, 0), "+00:00");
        assert_eq!(offset(5, 45), "+05:45");
        assert_eq!(offset(-3, 30), "-03:30");
        assert_eq!(offset(-3, -30), "-03:30");
        assert_eq!(offset(0, -30), "-00:30");
        assert!(UtcOffset::from_hours_minutes(24, 0).is_err());
        assert!(UtcOffset::from_hours_minutes(3, -30).is_err());
    }

    #[test]
    fn debug_output_hides_the_password() {
        let config = from_sources(Some(FULL_FILE), env(&[])).unwrap();
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("secret") && printed.contains("<redacted>"),
            "{printed}"
        );
    }
}
