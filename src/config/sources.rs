//! Reading the TOML file and the environment into raw values, one per setting, remembering
//! where each came from. Only the shape is checked here (known key, right kind); what the
//! values mean is [`super::validate`]'s business.
//!
//! Nothing stops at the first problem: every unknown key and every value of the wrong kind
//! is recorded, and a setting whose given value was unusable is marked *broken* so that it
//! is neither reported missing nor replaced by its default (either would hide the problem
//! behind a second, misleading one).

use std::collections::{BTreeMap, BTreeSet};

use super::settings::{self, Kind, Setting};
use super::{CONFIG_FILE_VAR, ConfigError};

/// Where a value came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Source {
    File,
    Env(String),
    Default,
}

impl Source {
    /// "in the config file (OXITRAFFIC_CONFIG_FILE)", "from the environment variable X".
    pub(super) fn describe(&self) -> String {
        match self {
            Source::File => format!("in the config file ({CONFIG_FILE_VAR})"),
            Source::Env(name) => format!("from the environment variable {name}"),
            Source::Default => "(default)".to_string(),
        }
    }
}

#[derive(Clone, Debug)]
pub(super) enum Value {
    Text(String),
    Integer(i64),
    List(Vec<String>),
}

#[derive(Default)]
pub(super) struct Raw {
    pub(super) values: BTreeMap<&'static str, (Value, Source)>,
    /// Given, but not usable: already reported.
    pub(super) broken: BTreeSet<&'static str>,
}

impl Raw {
    pub(super) fn get(&self, key: &str) -> Option<&(Value, Source)> {
        self.values.get(key)
    }

    /// Given by the file or the environment (not a default), even if unusable.
    pub(super) fn is_given(&self, key: &str) -> bool {
        self.broken.contains(key)
            || self
                .values
                .get(key)
                .is_some_and(|(_, source)| *source != Source::Default)
    }

    fn store(&mut self, setting: &'static Setting, value: Value, source: Source) {
        self.broken.remove(setting.key);
        self.values.insert(setting.key, (value, source));
    }

    fn mark_broken(&mut self, setting: &'static Setting) {
        self.values.remove(setting.key);
        self.broken.insert(setting.key);
    }
}

/// Reads the TOML file's settings into `raw`. On a syntax error nothing of the file is used,
/// and the answer is false.
pub(super) fn read_file(text: &str, raw: &mut Raw, errors: &mut Vec<ConfigError>) -> bool {
    let table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(error) => {
            let error: toml::de::Error = error;
            errors.push(ConfigError::new(format!(
                "the config file ({CONFIG_FILE_VAR}) is not valid TOML: {}",
                error.message().trim()
            )));
            return false;
        }
    };
    for (name, value) in table {
        match value {
            toml::Value::Table(inner) if settings::is_table(&name) => {
                for (leaf, value) in inner {
                    store_file_value(&format!("{name}.{leaf}"), value, raw, errors);
                }
            }
            value => store_file_value(&name, value, raw, errors),
        }
    }
    true
}

fn store_file_value(key: &str, value: toml::Value, raw: &mut Raw, errors: &mut Vec<ConfigError>) {
    let Some(setting) = settings::find(key) else {
        errors.push(ConfigError::new(format!(
            "unknown setting `{key}` in the config file ({CONFIG_FILE_VAR}); {}",
            settings::known_settings()
        )));
        return;
    };
    let value = match (setting.kind, value) {
        (Kind::Text, toml::Value::String(s)) => Ok(Value::Text(s)),
        (Kind::Integer, toml::Value::Integer(i)) => Ok(Value::Integer(i)),
        (Kind::List, toml::Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                toml::Value::String(s) => Ok(s),
                other => Err(format!(
                    "setting `{key}` in the config file must be an array of strings, but it holds {}",
                    other.type_str()
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::List),
        (Kind::List, toml::Value::String(text)) => Err(format!(
            "setting `{key}` in the config file must be an array of strings: write {} \
             (commas separate items only in the environment variable {})",
            array_suggestion(key, &text),
            setting.env_var()
        )),
        (kind, other) => Err(format!(
            "setting `{key}` in the config file must be {}, got {}",
            kind.name(),
            other.type_str()
        )),
    };
    match value {
        Ok(value) => raw.store(setting, value, Source::File),
        Err(message) => {
            errors.push(ConfigError::new(message));
            raw.mark_broken(setting);
        }
    }
}

/// The line that should have been written: `exclude_paths = ["/a", "/b"]`, with
/// "under `[access]`" for a key inside a table.
fn array_suggestion(key: &str, text: &str) -> String {
    let items: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| format!("\"{item}\""))
        .collect();
    match key.split_once('.') {
        Some((table, leaf)) => format!("`{leaf} = [{}]` under `[{table}]`", items.join(", ")),
        None => format!("`{key} = [{}]`", items.join(", ")),
    }
}

/// Reads one environment variable into `raw`; variables without our prefix are ignored.
pub(super) fn read_env(name: String, value: String, raw: &mut Raw, errors: &mut Vec<ConfigError>) {
    if name == CONFIG_FILE_VAR {
        return;
    }
    let Some(key) = settings::key_of_env_var(&name) else {
        return;
    };
    let Some(setting) = settings::find(&key) else {
        errors.push(ConfigError::new(format!(
            "unknown environment variable {name}: no setting `{key}`; {}",
            settings::known_settings()
        )));
        return;
    };
    match parse_text(setting.kind, &value) {
        Some(parsed) => raw.store(setting, parsed, Source::Env(name)),
        None => {
            errors.push(ConfigError::new(format!(
                "environment variable {name} must be {}, got `{value}`",
                setting.kind.name()
            )));
            raw.mark_broken(setting);
        }
    }
}

/// Fills in the defaults of settings given nowhere, and reports the required ones missing
/// (unless `report_missing` is false: when the file could not be read, its settings are
/// unknown, and "missing" would be a guess).
pub(super) fn apply_defaults(raw: &mut Raw, report_missing: bool, errors: &mut Vec<ConfigError>) {
    for setting in settings::SETTINGS {
        if raw.values.contains_key(setting.key) || raw.broken.contains(setting.key) {
            continue;
        }
        match setting.default {
            settings::IfAbsent::Required => {
                if report_missing {
                    errors.push(ConfigError::new(format!(
                        "missing required setting `{}`: {}",
                        setting.key,
                        settings::how_to_set(setting.key)
                    )));
                }
            }
            settings::IfAbsent::Unset(_) => {}
            settings::IfAbsent::Value(text) => {
                let value = parse_text(setting.kind, text).expect("defaults are well-formed");
                raw.values.insert(setting.key, (value, Source::Default));
            }
        }
    }
}

/// A value as the environment spells it. Lists are comma-separated: items are trimmed and
/// empty ones skipped, so an empty variable is an empty list.
fn parse_text(kind: Kind, text: &str) -> Option<Value> {
    match kind {
        Kind::Text => Some(Value::Text(text.to_string())),
        Kind::Integer => text.trim().parse().ok().map(Value::Integer),
        Kind::List => Some(Value::List(
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_string)
                .collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(file: Option<&str>, env: &[(&str, &str)]) -> (Raw, Vec<String>) {
        let mut raw = Raw::default();
        let mut errors = Vec::new();
        if let Some(text) = file {
            assert!(read_file(text, &mut raw, &mut errors));
        }
        for (name, value) in env {
            read_env(name.to_string(), value.to_string(), &mut raw, &mut errors);
        }
        apply_defaults(&mut raw, true, &mut errors);
        (raw, errors.iter().map(ToString::to_string).collect())
    }

    fn list(raw: &Raw, key: &str) -> Vec<String> {
        match raw.get(key) {
            Some((Value::List(items), _)) => items.clone(),
            other => panic!("{key}: {other:?}"),
        }
    }

    #[test]
    fn environment_lists_are_comma_separated_trimmed_and_skip_empty_items() {
        let (raw, _) = read(
            None,
            &[
                ("OXITRAFFIC_EXCLUDE_PATHS", " /admin/** , ,/drafts/*,"),
                ("OXITRAFFIC_TRUSTED_PROXIES", ""),
            ],
        );
        assert_eq!(list(&raw, "exclude_paths"), ["/admin/**", "/drafts/*"]);
        assert!(list(&raw, "trusted_proxies").is_empty());
        assert!(raw.is_given("trusted_proxies"));
        assert!(list(&raw, "access.api_tokens").is_empty(), "default");
        assert!(!raw.is_given("access.api_tokens"));
    }

    #[test]
    fn file_lists_are_arrays_of_strings() {
        let (raw, errors) = read(
            Some("exclude_paths = [\"/a\", \"/b/**\"]\n[access]\napi_tokens = []\n"),
            &[],
        );
        assert_eq!(list(&raw, "exclude_paths"), ["/a", "/b/**"]);
        assert!(raw.is_given("access.api_tokens"));
        assert!(
            errors.iter().all(|e| e.starts_with("missing")),
            "{errors:?}"
        );
    }

    #[test]
    fn a_string_where_a_list_belongs_says_to_use_an_array() {
        let (raw, errors) = read(Some("exclude_paths = \"/a,/b\"\n"), &[]);
        let error = errors.iter().find(|e| e.contains("exclude_paths")).unwrap();
        assert_eq!(
            error,
            "setting `exclude_paths` in the config file must be an array of strings: write \
             `exclude_paths = [\"/a\", \"/b\"]` (commas separate items only in the environment \
             variable OXITRAFFIC_EXCLUDE_PATHS)"
        );
        assert!(raw.is_given("exclude_paths") && raw.get("exclude_paths").is_none());

        let (_, errors) = read(Some("[access]\napi_tokens = [1]\n"), &[]);
        assert!(
            errors.iter().any(|e| e.starts_with(
                "setting `access.api_tokens` in the config file must be an array of strings, but it holds integer"
            )),
            "{errors:?}"
        );
    }

    #[test]
    fn a_broken_value_is_neither_missing_nor_defaulted() {
        let (raw, errors) = read(Some("base_url = 3\n"), &[("OXITRAFFIC_DB__PORT", "five")]);
        assert!(raw.get("base_url").is_none() && raw.get("db.port").is_none());
        assert!(
            !errors
                .iter()
                .any(|e| e.contains("missing required setting `base_url`")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("`base_url` in the config file must be a string, got integer"))
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("OXITRAFFIC_DB__PORT must be a whole number"))
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("missing required setting `db.host`"))
        );
    }

    #[test]
    fn a_good_environment_value_repairs_a_broken_file_value() {
        let (raw, errors) = read(
            Some("min_delay_secs = \"3\"\n"),
            &[("OXITRAFFIC_MIN_DELAY_SECS", "4")],
        );
        assert!(matches!(
            raw.get("min_delay_secs"),
            Some((Value::Integer(4), Source::Env(_)))
        ));
        assert!(
            errors.iter().any(|e| e.contains("min_delay_secs")),
            "still reported"
        );
    }
}
