//! Configuration: a TOML file named by `OXITRAFFIC_CONFIG_FILE`, overridden key by key by
//! `OXITRAFFIC_*` environment variables (nested keys joined with `__`, lists comma-separated).
//!
//! Every setting is declared once in [`settings::SETTINGS`]; that table drives the
//! unknown-key check, the parsing of environment values, the defaults, the error messages
//! and `--help`. Loading takes the environment as an argument: tests pass a list and never
//! touch the process environment.
//!
//! The way through: [`sources`] reads the file and the environment into raw values,
//! [`validate`] turns them into a [`Config`]. Neither stops at the first problem: a failed
//! load reports all of them ([`ConfigErrors`]), each on one line naming the key.
//!
//! Value types live beside: [`origin`], [`zone`] (offsets and zone names), [`net`] (trusted
//! proxy networks), [`access`]; path patterns are [`crate::paths::exclude`]'s.

pub mod access;
pub mod net;
pub mod origin;
pub mod settings;
mod sources;
mod validate;
pub mod zone;

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use access::{Access, Visibility};
pub use net::IpNet;
pub use origin::{Origin, split_host_port};
pub use settings::env_var_name;
pub use zone::UtcOffset;

use crate::paths::exclude::PathPattern;

/// The environment variable naming the TOML file.
pub const CONFIG_FILE_VAR: &str = "OXITRAFFIC_CONFIG_FILE";

/// Token bits are shared between the slot index and the per-registration tag, and a token
/// must stay below 2^53 with the instance in bits 48–52; 2^24 slots still leave 24 tag bits.
pub const MAX_VISITOR_SLOTS: u64 = 1 << 24;
/// Pending visits refer to a path by its index in memory, stored in 24 bits of a slot.
pub const MAX_PATHS_LIMIT: u64 = (1 << 24) - 1;

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
    /// Zero when `time_zone` is set: the two are never both given.
    pub utc_offset: UtcOffset,
    /// A well-formed IANA name, known to the system's zone database when it has one.
    pub time_zone: Option<String>,
    /// Raw visits older than this are deleted; 0 keeps them forever.
    pub retention_days: u32,
    /// Paths never checked, stored or counted.
    pub exclude_paths: Vec<PathPattern>,
    pub access: Access,
    /// This instance's number, 0 to 31, carried in its tokens.
    pub instance: u8,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
    /// Pending registrations one client address (an IPv6 /64) may hold.
    pub max_pending_per_client: u32,
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
    /// A lower-case PostgreSQL identifier that needs no quoting, not starting with `pg_`.
    pub schema: String,
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
            .field("schema", &self.schema)
            .finish()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |items: &[String]| format!("[{}]", items.join(", "));
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
            .field("time_zone", &self.time_zone)
            .field("retention_days", &self.retention_days)
            .field(
                "exclude_paths",
                &format_args!(
                    "{}",
                    list(
                        &self
                            .exclude_paths
                            .iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                    )
                ),
            )
            .field("access", &self.access)
            .field("instance", &self.instance)
            .field(
                "trusted_proxies",
                &format_args!(
                    "{}",
                    list(
                        &self
                            .trusted_proxies
                            .iter()
                            .map(|n| n.to_string())
                            .collect::<Vec<_>>()
                    )
                ),
            )
            .field("max_pending_per_client", &self.max_pending_per_client)
            .field("visitor_slots", &self.visitor_slots)
            .field("max_paths", &self.max_paths)
            .field("max_connections", &self.max_connections)
            .field("path_check_timeout", &self.path_check_timeout)
            .field("client_timeout", &self.client_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// One problem with the configuration: one line naming the key and how to set it.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(String);

impl ConfigError {
    fn new(message: String) -> ConfigError {
        ConfigError(message)
    }
}

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

/// Every problem found while loading, in the order found: the file, the environment, the
/// missing settings, then each setting's value and the rules between settings. Never empty.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// At least 1.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false; for symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// One problem a line.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_char('\n')?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Loads the configuration from the file named by `OXITRAFFIC_CONFIG_FILE` (if that variable
/// is present in `env`) and from the `OXITRAFFIC_*` variables in `env`.
pub fn load<I, K, V>(env: I) -> Result<Config, ConfigErrors>
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
        Some(path) => std::fs::read_to_string(path).map(Some).map_err(|e| {
            ConfigError::new(format!(
                "cannot read the config file {} ({CONFIG_FILE_VAR}): {e}",
                path.display()
            ))
        }),
        None => Ok(None),
    };
    match text {
        Ok(text) => assemble(Ok(text.as_deref()), env),
        Err(error) => assemble(Err(error), env),
    }
}

/// Builds the configuration from the text of a TOML file (if any) and environment pairs.
pub fn from_sources<I, K, V>(file_text: Option<&str>, env: I) -> Result<Config, ConfigErrors>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    assemble(
        Ok(file_text),
        env.into_iter().map(|(k, v)| (k.into(), v.into())),
    )
}

/// `file` is the file's text (`None` without a file), or why it could not be read.
fn assemble(
    file: Result<Option<&str>, ConfigError>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut raw = sources::Raw::default();
    let file_read = match file {
        Ok(Some(text)) => sources::read_file(text, &mut raw, &mut errors),
        Ok(None) => true,
        Err(error) => {
            errors.push(error);
            false
        }
    };
    for (name, value) in env {
        sources::read_env(name, value, &mut raw, &mut errors);
    }
    sources::apply_defaults(&mut raw, file_read, &mut errors);
    let config = validate::build(&raw, file_read, Path::new(zone::ZONEINFO_DIR), &mut errors);
    match config {
        Some(config) if errors.is_empty() => Ok(config),
        _ => {
            assert!(
                !errors.is_empty(),
                "a configuration without problems is complete"
            );
            Err(ConfigErrors(errors))
        }
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

    /// An argon2id hash (of "hunter2") with small parameters, so tests stay fast.
    const PASSWORD_HASH: &str = "$argon2id$v=19$m=64,t=1,p=1$BwcHBwcHBwcHBwcHBwcHBw$tzPRh7BdvOVz6UKxEIv3gEFzzMZ9FAXd4e5eAvy2EFs";
    const DIGEST: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn with(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut pairs = env(REQUIRED);
        pairs.extend(env(extra));
        pairs
    }

    fn error(file: Option<&str>, pairs: &[(&str, &str)]) -> String {
        from_sources(file, env(pairs)).unwrap_err().to_string()
    }

    /// Every problem, one string each.
    fn errors(file: Option<&str>, pairs: Vec<(String, String)>) -> Vec<String> {
        from_sources(file, pairs)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// The one problem with `extra` added to the required settings.
    fn only_error(file: Option<&str>, extra: &[(&str, &str)]) -> String {
        let errors = errors(file, with(extra));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        errors.into_iter().next().unwrap()
    }

    fn config(file: Option<&str>, extra: &[(&str, &str)]) -> Config {
        from_sources(file, with(extra)).unwrap_or_else(|e| panic!("{e}"))
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
    fn round_two_settings_have_their_defaults() {
        let config = from_sources(None, env(REQUIRED)).unwrap();
        assert_eq!(config.time_zone, None);
        assert_eq!(config.retention_days, 0);
        assert!(config.exclude_paths.is_empty());
        assert_eq!(config.db.schema, "oxitraffic");
        assert_eq!(config.access.dashboard, Visibility::Public);
        assert_eq!(config.access.api, Visibility::Public);
        assert_eq!(config.access.metrics, Visibility::Private);
        assert_eq!(config.access.username, "admin");
        assert_eq!(config.access.password_hash, None);
        assert!(config.access.api_tokens.is_empty());
        assert_eq!(config.instance, 0);
        assert!(config.trusted_proxies.is_empty());
        assert_eq!(config.max_pending_per_client, 256);
    }

    #[test]
    fn round_two_settings_are_read_from_the_file() {
        let file = format!(
            r#"
            time_zone = "UTC"
            retention_days = 400
            exclude_paths = ["/admin/**", "/*.php"]
            instance = 31
            trusted_proxies = ["10.0.0.0/8", "::1"]
            max_pending_per_client = 65535

            [db]
            schema = "site_2"

            [access]
            dashboard = "private"
            api = "private"
            metrics = "public"
            username = "ada"
            password_hash = "{PASSWORD_HASH}"
            api_tokens = ["{DIGEST}", "{}"]
            "#,
            DIGEST.to_ascii_uppercase()
        );
        let config = config(Some(&file), &[]);
        assert_eq!(config.time_zone.as_deref(), Some("UTC"));
        assert_eq!(config.retention_days, 400);
        let patterns: Vec<_> = config.exclude_paths.iter().map(|p| p.as_str()).collect();
        assert_eq!(patterns, ["/admin/**", "/*.php"]);
        assert!(config.exclude_paths[0].matches("/admin/users"));
        assert_eq!(config.instance, 31);
        let proxies: Vec<_> = config
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(proxies, ["10.0.0.0/8", "::1"]);
        assert_eq!(config.max_pending_per_client, 65_535);
        assert_eq!(config.db.schema, "site_2");
        let access = &config.access;
        assert_eq!(
            (access.dashboard, access.api, access.metrics),
            (Visibility::Private, Visibility::Private, Visibility::Public)
        );
        assert_eq!(access.username, "ada");
        assert_eq!(access.password_hash.as_deref(), Some(PASSWORD_HASH));
        let abc = access::token_digest(b"abc");
        assert_eq!(access.api_tokens, [abc, abc]);
    }

    #[test]
    fn round_two_settings_are_read_from_the_environment() {
        let config = config(
            None,
            &[
                ("OXITRAFFIC_TIME_ZONE", "UTC"),
                ("OXITRAFFIC_RETENTION_DAYS", "36500"),
                ("OXITRAFFIC_EXCLUDE_PATHS", "/admin/**, /drafts/*"),
                ("OXITRAFFIC_DB__SCHEMA", "_tracker"),
                ("OXITRAFFIC_ACCESS__DASHBOARD", "private"),
                ("OXITRAFFIC_ACCESS__API", "private"),
                ("OXITRAFFIC_ACCESS__METRICS", "public"),
                ("OXITRAFFIC_ACCESS__USERNAME", "root"),
                ("OXITRAFFIC_ACCESS__PASSWORD_HASH", PASSWORD_HASH),
                (
                    "OXITRAFFIC_ACCESS__API_TOKENS",
                    &format!("{DIGEST},{DIGEST}"),
                ),
                ("OXITRAFFIC_INSTANCE", "7"),
                ("OXITRAFFIC_TRUSTED_PROXIES", "127.0.0.1, fd00::/8"),
                ("OXITRAFFIC_MAX_PENDING_PER_CLIENT", "1"),
            ],
        );
        assert_eq!(config.time_zone.as_deref(), Some("UTC"));
        assert_eq!(config.retention_days, 36500);
        assert_eq!(config.exclude_paths.len(), 2);
        assert!(config.exclude_paths[1].matches("/drafts/x"));
        assert_eq!(config.db.schema, "_tracker");
        assert_eq!(config.access.dashboard, Visibility::Private);
        assert_eq!(config.access.metrics, Visibility::Public);
        assert_eq!(config.access.username, "root");
        assert_eq!(config.access.api_tokens.len(), 2);
        assert_eq!(config.instance, 7);
        assert!(config.trusted_proxies[0].contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(config.trusted_proxies[1].contains("fd00::5".parse().unwrap()));
        assert_eq!(config.max_pending_per_client, 1);
    }

    #[test]
    fn the_environment_replaces_a_whole_list_and_may_empty_it() {
        let file = "exclude_paths = [\"/a\", \"/b\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\n";
        let config = config(
            Some(file),
            &[
                ("OXITRAFFIC_EXCLUDE_PATHS", "/c"),
                ("OXITRAFFIC_TRUSTED_PROXIES", ""),
            ],
        );
        assert_eq!(config.exclude_paths.len(), 1);
        assert_eq!(config.exclude_paths[0].as_str(), "/c");
        assert!(config.trusted_proxies.is_empty());
    }

    #[test]
    fn round_two_values_are_validated() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "OXITRAFFIC_RETENTION_DAYS",
                "36501",
                "must be between 0 and 36500, got 36501",
            ),
            (
                "OXITRAFFIC_RETENTION_DAYS",
                "-1",
                "must be between 0 and 36500",
            ),
            (
                "OXITRAFFIC_INSTANCE",
                "32",
                "must be between 0 and 31, got 32",
            ),
            (
                "OXITRAFFIC_MAX_PENDING_PER_CLIENT",
                "0",
                "must be between 1 and 65535",
            ),
            (
                "OXITRAFFIC_MAX_PENDING_PER_CLIENT",
                "1000001",
                "must be between 1 and 65535",
            ),
            (
                "OXITRAFFIC_TIME_ZONE",
                "Europe/../etc",
                "must be an IANA time zone name",
            ),
            ("OXITRAFFIC_TIME_ZONE", "", "must be an IANA time zone name"),
            (
                "OXITRAFFIC_EXCLUDE_PATHS",
                "admin/**",
                "(`admin/**`) that does not start with /",
            ),
            ("OXITRAFFIC_EXCLUDE_PATHS", "/a/**/b", "`**`"),
            (
                "OXITRAFFIC_DB__SCHEMA",
                "Tracker",
                "must be a PostgreSQL name",
            ),
            ("OXITRAFFIC_DB__SCHEMA", "1st", "must be a PostgreSQL name"),
            ("OXITRAFFIC_DB__SCHEMA", "a-b", "must be a PostgreSQL name"),
            ("OXITRAFFIC_DB__SCHEMA", "", "must be a PostgreSQL name"),
            (
                "OXITRAFFIC_DB__SCHEMA",
                "pg_catalog",
                "must not start with `pg_`",
            ),
            (
                "OXITRAFFIC_ACCESS__DASHBOARD",
                "hidden",
                "(`hidden`) must be `public` or `private`",
            ),
            (
                "OXITRAFFIC_ACCESS__API",
                "Private",
                "must be `public` or `private`",
            ),
            (
                "OXITRAFFIC_ACCESS__METRICS",
                "",
                "must be `public` or `private`",
            ),
            ("OXITRAFFIC_ACCESS__USERNAME", "", "must not be empty"),
            ("OXITRAFFIC_ACCESS__USERNAME", "a:b", "must not contain `:`"),
            ("OXITRAFFIC_ACCESS__USERNAME", "a\tb", "control characters"),
            (
                "OXITRAFFIC_ACCESS__PASSWORD_HASH",
                "hunter2",
                "is not a password hash",
            ),
            (
                "OXITRAFFIC_ACCESS__API_TOKENS",
                "abc",
                "64 hexadecimal digits",
            ),
            (
                "OXITRAFFIC_TRUSTED_PROXIES",
                "10.0.0.1/8",
                "has bits set after its /8 prefix",
            ),
            (
                "OXITRAFFIC_TRUSTED_PROXIES",
                "proxy.local",
                "must be an IP address or a CIDR block",
            ),
        ];
        for (name, value, expected) in cases {
            let message = only_error(None, &[(name, value)]);
            let key = settings::key_of_env_var(name).unwrap();
            assert!(
                message.starts_with(&format!(
                    "setting `{key}` from the environment variable {name} "
                )),
                "{name}={value:?}: {message}"
            );
            assert!(message.contains(expected), "{name}={value:?}: {message}");
        }
        let schema = "a".repeat(63);
        assert_eq!(
            config(None, &[("OXITRAFFIC_DB__SCHEMA", &schema)])
                .db
                .schema,
            schema
        );
        let message = only_error(None, &[("OXITRAFFIC_DB__SCHEMA", &format!("{schema}a"))]);
        assert!(message.contains("1 to 63 characters"), "{message}");
    }

    #[test]
    fn every_bad_list_item_is_reported() {
        let errors = errors(
            None,
            with(&[
                ("OXITRAFFIC_EXCLUDE_PATHS", "/ok/**, bad, /also/**/bad"),
                ("OXITRAFFIC_TRUSTED_PROXIES", "10.0.0.0/8, nope"),
            ]),
        );
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].contains("(`bad`)") && errors[1].contains("(`/also/**/bad`)"));
        assert!(errors[2].contains("`trusted_proxies`") && errors[2].contains("(`nope`)"));
    }

    #[test]
    fn a_string_for_a_list_in_the_file_says_to_write_an_array() {
        let message = only_error(Some("[access]\napi_tokens = \"abc\"\n"), &[]);
        assert!(
            message.starts_with(
                "setting `access.api_tokens` in the config file must be an array of strings: \
                 write `api_tokens = [\"abc\"]` under `[access]`"
            ),
            "{message}"
        );
    }

    #[test]
    fn time_zone_and_utc_offset_together_are_refused_naming_both() {
        let message = only_error(
            Some("time_zone = \"UTC\"\n"),
            &[("OXITRAFFIC_UTC_OFFSET__MINUTES", "30")],
        );
        assert!(
            message.starts_with("`time_zone` and `utc_offset` are both set; set only one: "),
            "{message}"
        );
        assert!(
            message.contains(
                "`time_zone` (a zone, with its daylight saving time) is set in the config file"
            ) && message.contains(
                "`utc_offset.minutes` from the environment variable OXITRAFFIC_UTC_OFFSET__MINUTES"
            ),
            "says where each was set: {message}"
        );

        let message = only_error(
            Some("[utc_offset]\nhours = 0\n"),
            &[("OXITRAFFIC_TIME_ZONE", "UTC")],
        );
        assert!(
            message.contains("`time_zone` and `utc_offset` are both set"),
            "an explicit zero counts: {message}"
        );

        // An unusable offset still counts as set: the zone is not silently preferred.
        let errors = errors(
            None,
            with(&[
                ("OXITRAFFIC_TIME_ZONE", "UTC"),
                ("OXITRAFFIC_UTC_OFFSET__HOURS", "two"),
            ]),
        );
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors[1].contains("`utc_offset.hours` (with an unusable value)"),
            "{errors:#?}"
        );

        let config = config(None, &[("OXITRAFFIC_TIME_ZONE", "UTC")]);
        assert_eq!(config.utc_offset, UtcOffset::default());
    }

    #[test]
    fn a_private_dashboard_or_api_without_credentials_names_password_hash() {
        let message = only_error(None, &[("OXITRAFFIC_ACCESS__DASHBOARD", "private")]);
        assert!(
            message.starts_with("setting `access.dashboard` is `private`")
                && message.contains("`access.password_hash`")
                && message.contains("OXITRAFFIC_ACCESS__PASSWORD_HASH"),
            "{message}"
        );
        let message = only_error(None, &[("OXITRAFFIC_ACCESS__API", "private")]);
        assert!(
            message.starts_with("setting `access.api` is `private`")
                && message.contains("`access.password_hash`"),
            "{message}"
        );
        // Tokens open the API but not the dashboard.
        let tokens = ("OXITRAFFIC_ACCESS__API_TOKENS", DIGEST);
        config(None, &[("OXITRAFFIC_ACCESS__API", "private"), tokens]);
        let message = only_error(None, &[("OXITRAFFIC_ACCESS__DASHBOARD", "private"), tokens]);
        assert!(message.contains("`access.dashboard`"), "{message}");
        // A private /metrics with nothing to open it is fine: it stays closed.
        config(None, &[("OXITRAFFIC_ACCESS__METRICS", "private")]);
        // A hash that is given but unusable gets its own message, not "not set".
        let message = only_error(
            None,
            &[
                ("OXITRAFFIC_ACCESS__DASHBOARD", "private"),
                ("OXITRAFFIC_ACCESS__PASSWORD_HASH", "x"),
            ],
        );
        assert!(
            message.starts_with("setting `access.password_hash`"),
            "{message}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let file = "min_delay = 3\nretention_days = \"long\"\n[db]\nport = 0\n[access]\ndashboard = \"private\"\n";
        let errors = errors(
            Some(file),
            env(&[
                ("OXITRAFFIC_BASE_URL", "ftp://x"),
                ("OXITRAFFIC_TRACKED_ORIGIN", "https://example.org"),
                ("OXITRAFFIC_DB__USERNAME", "u"),
                ("OXITRAFFIC_INSTANCE", "40"),
                ("OXITRAFFIC_NOPE", "1"),
                ("OXITRAFFIC_TIME_ZONE", "UTC"),
                ("OXITRAFFIC_UTC_OFFSET__HOURS", "1"),
            ]),
        );
        let expected = [
            "unknown setting `min_delay` in the config file",
            "setting `retention_days` in the config file must be a whole number, got string",
            "unknown environment variable OXITRAFFIC_NOPE",
            "missing required setting `db.host`",
            "missing required setting `db.database`",
            "setting `base_url` from the environment variable OXITRAFFIC_BASE_URL (`ftp://x`)",
            "setting `db.port` in the config file (OXITRAFFIC_CONFIG_FILE) must be between 1 and 65535",
            "setting `instance` from the environment variable OXITRAFFIC_INSTANCE must be between 0 and 31",
            "`time_zone` and `utc_offset` are both set",
            "setting `access.dashboard` is `private`",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (error, start) in errors.iter().zip(expected) {
            assert!(
                error.starts_with(start),
                "expected {start:?}, got {error:?}"
            );
        }
        let all = from_sources(Some(file), env(REQUIRED)).unwrap_err();
        let text = all.to_string();
        assert_eq!(
            text.lines().count(),
            all.len(),
            "one problem a line: {text}"
        );
    }

    #[test]
    fn an_unreadable_file_does_not_make_its_settings_missing() {
        let errors = errors(Some("base_url = "), env(&[("OXITRAFFIC_INSTANCE", "99")]));
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].contains("is not valid TOML"));
        assert!(
            errors[1].contains("`instance`"),
            "settings given elsewhere are still checked"
        );

        let path = std::env::temp_dir().join("oxitraffic-no-such-config.toml");
        let errors: Vec<String> = load(env(&[
            ("OXITRAFFIC_CONFIG_FILE", path.to_str().unwrap()),
            ("OXITRAFFIC_ACCESS__DASHBOARD", "private"),
        ]))
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            errors.len(),
            1,
            "the file may hold what is missing: {errors:#?}"
        );
        assert!(
            errors[0].starts_with("cannot read the config file "),
            "{errors:#?}"
        );
    }

    #[test]
    fn load_reads_the_file_named_in_the_environment() {
        let path = std::env::temp_dir().join(format!(
            "oxitraffic-config-unit-{}.toml",
            std::process::id()
        ));
        std::fs::write(&path, FULL_FILE).unwrap();
        let loaded = load(env(&[
            ("OXITRAFFIC_CONFIG_FILE", path.to_str().unwrap()),
            ("OXITRAFFIC_DB__SCHEMA", "other"),
        ]));
        std::fs::remove_file(&path).unwrap();
        let config = loaded.unwrap();
        assert_eq!(
            (config.db.host.as_str(), config.db.schema.as_str()),
            ("db.internal", "other")
        );
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
    fn both_parts_of_a_bad_offset_are_reported() {
        let errors = errors(
            Some("[utc_offset]\nhours = 24\nminutes = 60\n"),
            env(REQUIRED),
        );
        assert_eq!(
            errors,
            [
                "setting `utc_offset.hours` in the config file (OXITRAFFIC_CONFIG_FILE) must be between -23 and 23, got 24",
                "setting `utc_offset.minutes` in the config file (OXITRAFFIC_CONFIG_FILE) must be between -59 and 59, got 60",
            ]
        );
        let message = only_error(
            None,
            &[
                ("OXITRAFFIC_UTC_OFFSET__HOURS", "3"),
                ("OXITRAFFIC_UTC_OFFSET__MINUTES", "-30"),
            ],
        );
        assert_eq!(
            message,
            "setting `utc_offset.minutes` from the environment variable OXITRAFFIC_UTC_OFFSET__MINUTES \
             must not be negative when the hours (3) are positive"
        );
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
        assert_eq!(
            from_sources(None, env(&[])).unwrap_err().len(),
            5,
            "every required setting: {message}"
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

        let message = error(Some("[access]\npassword = \"x\"\n"), REQUIRED);
        assert!(
            message.starts_with("unknown setting `access.password`"),
            "{message}"
        );

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
    fn errors_stay_on_one_line_whatever_the_input() {
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("OXITRAFFIC_MIN_DELAY_SECS", "1\n2"));
        pairs.push(("OXITRAFFIC_TRACKED_ORIGIN", "https://a\nb"));
        pairs.push(("OXITRAFFIC_TIME_ZONE", "Europe/\nBerlin"));
        pairs.push(("OXITRAFFIC_EXCLUDE_PATHS", "/a\rb"));
        let all = from_sources(None, env(&pairs)).unwrap_err();
        assert_eq!(all.len(), 4, "{all}");
        for error in &all {
            let message = error.to_string();
            assert!(!message.contains(['\n', '\r']), "{message}");
        }
        let message = all.to_string();
        assert!(
            message.contains("1\\n2"),
            "the value is shown escaped: {message}"
        );
        let message = error(Some("\"a\\nb\" = 1\n"), REQUIRED);
        assert!(message.starts_with("unknown setting `a\\nb`"), "{message}");
    }

    #[test]
    fn debug_output_hides_the_password() {
        let config = from_sources(Some(FULL_FILE), env(&[])).unwrap();
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("secret") && printed.contains("<redacted>"),
            "{printed}"
        );
        let config = config_with_hash();
        let printed = format!("{config:?}");
        assert!(!printed.contains(PASSWORD_HASH), "{printed}");
        assert!(printed.contains("exclude_paths: [/admin/**]"), "{printed}");
    }

    fn config_with_hash() -> Config {
        config(
            None,
            &[
                ("OXITRAFFIC_ACCESS__PASSWORD_HASH", PASSWORD_HASH),
                ("OXITRAFFIC_EXCLUDE_PATHS", "/admin/**"),
            ],
        )
    }
}
