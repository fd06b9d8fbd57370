//! Turning raw values into a [`Config`], collecting every problem on the way.
//!
//! Each setting is checked on its own and yields `None` when it is unusable (the reason is
//! recorded, naming the key and where the value came from); the rules between settings run
//! after that. A `Config` is only assembled when no problem was found, so every value is
//! present then. A setting that [`super::sources`] already found broken is absent here and
//! yields `None` without a second message.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::access::{self, Access, Visibility};
use super::net::IpNet;
use super::sources::{Raw, Source, Value};
use super::zone::{self, UtcOffset};
use super::{Config, ConfigError, DbConfig, MAX_PATHS_LIMIT, MAX_VISITOR_SLOTS, Origin};
use crate::paths::exclude::PathPattern;

/// `complete` is false when the config file could not be read: its settings are unknown,
/// so the rules between settings, which could blame a setting the file may well hold, are
/// skipped (each setting given elsewhere is still checked on its own).
pub(super) fn build(
    raw: &Raw,
    complete: bool,
    zoneinfo: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<Config> {
    let mut check = Check { raw, errors };

    let socket_address = check.parsed("socket_address", |address| {
        address.parse().map_err(|_| {
            format!("(`{address}`) must be an IP address and port such as 0.0.0.0:80 or [::]:8080")
        })
    });
    let base_url = check.parsed("base_url", base_url);
    let tracked_origin = check.parsed("tracked_origin", origin);
    let tracked_origin_callback = match check.text("tracked_origin_callback") {
        Some(_) => check.parsed("tracked_origin_callback", origin),
        None => tracked_origin.clone(),
    };
    let min_delay_secs = check.integer_in("min_delay_secs", 0, 3600);

    let db_host = check.non_empty("db.host");
    let db_port = check.integer_in("db.port", 1, 65535);
    let db_username = check.non_empty("db.username");
    let db_password = check.text("db.password").map(|(text, _)| text.to_string());
    let db_database = check.non_empty("db.database");
    let db_schema = check.parsed("db.schema", schema_name);

    let utc_offset = check.utc_offset();
    let time_zone = match check.text("time_zone") {
        Some(_) => check
            .parsed("time_zone", |name| {
                zone::check_time_zone(name, zoneinfo).map(|()| name.to_string())
            })
            .map(Some),
        None => Some(None),
    };
    let retention_days = check.integer_in("retention_days", 0, 36_500);
    let exclude_paths = check.list("exclude_paths", PathPattern::parse);

    let dashboard = check.parsed("access.dashboard", Visibility::parse);
    let api = check.parsed("access.api", Visibility::parse);
    let metrics = check.parsed("access.metrics", Visibility::parse);
    let username = check.parsed("access.username", |name| {
        access::check_username(name).map(|()| name.to_string())
    });
    let password_hash = match check.text("access.password_hash") {
        Some(_) => check
            .parsed("access.password_hash", |hash| {
                access::check_password_hash(hash).map(|()| hash.to_string())
            })
            .map(Some),
        None => Some(None),
    };
    let api_tokens = check.list("access.api_tokens", access::parse_token_digest);

    let instance = check.integer_in("instance", 0, 31);
    let trusted_proxies = check.list("trusted_proxies", IpNet::parse);
    let max_pending_per_client = check.integer_in(
        "max_pending_per_client",
        1,
        i64::from(crate::clients::MAX_PENDING_LIMIT),
    );
    let visitor_slots = check.integer_in("visitor_slots", 16, MAX_VISITOR_SLOTS as i64);
    let max_paths = check.integer_in("max_paths", 1, MAX_PATHS_LIMIT as i64);
    let max_connections = check.integer_in("max_connections", 1, 1_000_000);
    let path_check_timeout = check.millis("path_check_timeout_ms", 1, 60_000);
    let client_timeout = check.millis("client_timeout_ms", 100, 3_600_000);
    let request_timeout = check.millis("request_timeout_ms", 100, 600_000);

    if complete {
        check.one_kind_of_local_time();
        if let (Some(dashboard), Some(api)) = (dashboard, api) {
            // Whether a credential was given, even an unusable one (that one has its own
            // message; "not set" would be wrong).
            let has_password = raw.is_given("access.password_hash");
            let has_tokens = raw.broken.contains("access.api_tokens")
                || matches!(raw.get("access.api_tokens"), Some((Value::List(l), _)) if !l.is_empty());
            for problem in access::missing_credentials(dashboard, api, has_password, has_tokens) {
                check.errors.push(ConfigError::new(problem));
            }
        }
    }

    if !check.errors.is_empty() {
        return None;
    }
    Some(Config {
        socket_address: socket_address?,
        base_url: base_url?,
        tracked_origin: tracked_origin?,
        tracked_origin_callback: tracked_origin_callback?,
        min_delay_secs: min_delay_secs?,
        db: DbConfig {
            host: db_host?,
            port: db_port?,
            username: db_username?,
            password: db_password?,
            database: db_database?,
            schema: db_schema?,
        },
        utc_offset: utc_offset?,
        time_zone: time_zone?,
        retention_days: retention_days?,
        exclude_paths: exclude_paths?,
        access: Access {
            dashboard: dashboard?,
            api: api?,
            metrics: metrics?,
            username: username?,
            password_hash: password_hash?,
            api_tokens: api_tokens?,
        },
        instance: instance?,
        trusted_proxies: trusted_proxies?,
        max_pending_per_client: max_pending_per_client?,
        visitor_slots: visitor_slots?,
        max_paths: max_paths?,
        max_connections: max_connections?,
        path_check_timeout: path_check_timeout?,
        client_timeout: client_timeout?,
        request_timeout: request_timeout?,
    })
}

fn base_url(text: &str) -> Result<String, String> {
    let base_url = text.trim_end_matches('/');
    if !(base_url.starts_with("https://") || base_url.starts_with("http://"))
        || base_url.contains(['?', '#', '"', '\'', '<', '>', '\\', '`'])
        || base_url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "(`{base_url}`) must be an http:// or https:// URL without query, fragment or quotes"
        ));
    }
    Ok(base_url.to_string())
}

fn origin(text: &str) -> Result<Origin, String> {
    Origin::parse(text).map_err(|reason| format!("(`{text}`) {reason}"))
}

/// An unquoted PostgreSQL identifier that needs no quoting anywhere (lower case, at most
/// 63 bytes) and is not in the `pg_` namespace PostgreSQL reserves for itself.
fn schema_name(text: &str) -> Result<String, String> {
    let well_formed = (1..=63).contains(&text.len())
        && text.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !well_formed {
        return Err(format!(
            "(`{text}`) must be a PostgreSQL name of 1 to 63 characters: lower-case letters, \
             digits and `_`, not starting with a digit"
        ));
    }
    if text.starts_with("pg_") {
        return Err(format!(
            "(`{text}`) must not start with `pg_`, which PostgreSQL reserves"
        ));
    }
    Ok(text.to_string())
}

struct Check<'a> {
    raw: &'a Raw,
    errors: &'a mut Vec<ConfigError>,
}

impl<'a> Check<'a> {
    fn invalid(&mut self, key: &str, source: &Source, reason: impl fmt::Display) {
        self.errors.push(ConfigError::new(format!(
            "setting `{key}` {} {reason}",
            source.describe()
        )));
    }

    fn text(&self, key: &str) -> Option<(&'a str, &'a Source)> {
        match self.raw.get(key) {
            Some((Value::Text(text), source)) => Some((text, source)),
            _ => None,
        }
    }

    fn integer(&self, key: &str) -> Option<(i64, &'a Source)> {
        match self.raw.get(key) {
            Some((Value::Integer(i), source)) => Some((*i, source)),
            _ => None,
        }
    }

    /// A text setting through `parse`, whose error ends a sentence naming the setting.
    fn parsed<T>(&mut self, key: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let (text, source) = self.text(key)?;
        parse(text)
            .map_err(|reason| self.invalid(key, source, reason))
            .ok()
    }

    fn non_empty(&mut self, key: &str) -> Option<String> {
        self.parsed(key, |text| {
            if text.trim().is_empty() {
                Err("must not be empty".to_string())
            } else {
                Ok(text.to_string())
            }
        })
    }

    fn integer_in<T: TryFrom<i64>>(&mut self, key: &str, min: i64, max: i64) -> Option<T> {
        let (value, source) = self.integer(key)?;
        if value < min || value > max {
            self.invalid(
                key,
                source,
                format_args!("must be between {min} and {max}, got {value}"),
            );
            return None;
        }
        T::try_from(value)
            .map_err(|_| self.invalid(key, source, "is out of range"))
            .ok()
    }

    fn millis(&mut self, key: &str, min: i64, max: i64) -> Option<Duration> {
        self.integer_in(key, min, max).map(Duration::from_millis)
    }

    /// Every item through `parse`; each bad item is its own problem.
    fn list<T>(&mut self, key: &str, parse: impl Fn(&str) -> Result<T, String>) -> Option<Vec<T>> {
        let (items, source) = match self.raw.get(key) {
            Some((Value::List(items), source)) => (items, source),
            _ => return None,
        };
        let mut parsed = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match parse(item) {
                Ok(value) => parsed.push(value),
                Err(reason) => {
                    self.invalid(key, source, reason);
                    ok = false;
                }
            }
        }
        ok.then_some(parsed)
    }

    /// Both parts are checked on their own first, so both are reported when both are wrong;
    /// `from_hours_minutes` then adds the rule between them (the sign).
    fn utc_offset(&mut self) -> Option<UtcOffset> {
        let hours = self.integer_in::<i64>("utc_offset.hours", -23, 23);
        let minutes = self.integer_in::<i64>("utc_offset.minutes", -59, 59);
        UtcOffset::from_hours_minutes(hours?, minutes?)
            .map_err(|(key, reason)| {
                let source = self.integer(key).map_or(&Source::Default, |(_, s)| s);
                self.invalid(key, source, reason);
            })
            .ok()
    }

    /// `time_zone` and `utc_offset` say the same thing two ways; given both, neither can be
    /// trusted to be the one meant.
    fn one_kind_of_local_time(&mut self) {
        if !self.raw.is_given("time_zone") {
            return;
        }
        let offsets: Vec<String> = ["utc_offset.hours", "utc_offset.minutes"]
            .into_iter()
            .filter(|key| self.raw.is_given(key))
            .map(|key| format!("`{key}` {}", self.where_given(key)))
            .collect();
        if offsets.is_empty() {
            return;
        }
        self.errors.push(ConfigError::new(format!(
            "`time_zone` and `utc_offset` are both set; set only one: `time_zone` (a zone, with \
             its daylight saving time) is set {}, and {} (a fixed offset)",
            self.where_given("time_zone"),
            offsets.join(" and ")
        )));
    }

    fn where_given(&self, key: &str) -> String {
        match self.raw.get(key) {
            Some((_, source)) => source.describe(),
            None => "(with an unusable value)".to_string(),
        }
    }
}
