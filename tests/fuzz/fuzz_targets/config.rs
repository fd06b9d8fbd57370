//! `config::from_sources` with arbitrary TOML text and environment variables.
//!
//! Input format (text, so seeds are written by hand): the TOML file, then `NAME=VALUE`
//! environment pairs, all separated by NUL bytes. An empty first field means "no file".
//!
//! The configuration is input too: an operator's typo must end in a one-line error naming
//! the problem, never a panic at start-up. So besides `from_sources` itself, an accepted
//! configuration is fed to everything `oxitraffic::run` builds from it before serving
//! (without the network or the database), which must not panic either.
#![no_main]

use std::time::Duration;

use hyper::header::HeaderValue;
use libfuzzer_sys::fuzz_target;
use oxitraffic::config::{self, Origin};
use oxitraffic::paths::Registry;
use oxitraffic::paths::check::PathChecker;
use oxitraffic::script::Script;
use oxitraffic::slots::Slots;
use oxitraffic_fuzz::{fields, tolerated};

/// An accepted origin must be one a browser could send: the serialised form is what CORS
/// compares with the `Origin` header, and the host is what the path check connects to. So
/// the host is a name or an IPv4 address (no `:`, `[`, `]`) or a bracketed IPv6 address,
/// and serialising and parsing again gives the same origin.
fn check_origin(origin: &Origin) {
    let text = origin.as_str();
    assert!(
        text.starts_with(if origin.tls { "https://" } else { "http://" }),
        "{origin:?}"
    );
    assert!(!origin.host.is_empty() && origin.port != 0, "{origin:?}");
    let host = &origin.host;
    let well_formed = match host.strip_prefix('[') {
        Some(inner) => inner
            .strip_suffix(']')
            .is_some_and(|ip| !ip.contains(['[', ']'])),
        None => !host.contains([':', '[', ']']),
    };
    if !(well_formed && Origin::parse(text).as_ref() == Ok(origin))
        && !tolerated("config-origin-host")
    {
        panic!(
            "accepted origin {text:?} has host {host:?}; parsed again: {:?}",
            Origin::parse(text)
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let fields = fields(data);
    let file = fields.first().copied().filter(|f| !f.is_empty());
    let env: Vec<(String, String)> = fields
        .iter()
        .skip(1)
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (name.to_string(), value.to_string())
        })
        .collect();

    let config = match config::from_sources(file, env.iter().cloned()) {
        Ok(config) => config,
        Err(errors) => {
            // Printed at start-up, one problem a line; the spec promises each names its key.
            assert!(!errors.is_empty());
            for error in &errors {
                let message = error.to_string();
                assert!(!message.is_empty());
                if message.contains(['\n', '\r']) && !tolerated("config-multiline-error") {
                    panic!("multi-line configuration error: {message:?}");
                }
            }
            return;
        }
    };

    // Logged at start-up: formatting must not panic.
    let _ = format!("{config:?}");
    assert!(
        config.base_url.starts_with("http://") || config.base_url.starts_with("https://"),
        "{:?}",
        config.base_url
    );
    assert!(!config.base_url.ends_with('/'), "{:?}", config.base_url);
    check_origin(&config.tracked_origin);
    check_origin(&config.tracked_origin_callback);
    let offset = config.utc_offset.to_string();
    assert!(
        offset.len() == 6 && offset.starts_with(['+', '-']) && &offset[3..4] == ":",
        "{offset:?}"
    );
    assert!(
        config.utc_offset.total_minutes().abs() < 24 * 60,
        "{offset}"
    );
    assert!(config.min_delay_secs <= 3600);
    assert!(config.path_check_timeout >= Duration::from_millis(1));

    // What `oxitraffic::run` builds before serving; each of these has an `expect` or an
    // `assert` that a bad configuration could reach.
    if HeaderValue::from_str(config.tracked_origin.as_str()).is_err()
        && !tolerated("config-origin-header")
    {
        panic!(
            "accepted tracked_origin {:?} is not a valid header value: `run` panics",
            config.tracked_origin.as_str()
        );
    }
    let callback_host = config
        .tracked_origin_callback
        .as_str()
        .split_once("://")
        .map_or("", |(_, authority)| authority);
    // PathChecker::new `expect`s this; failing here first gives the finding a clear name.
    let callback_ok = HeaderValue::from_str(callback_host).is_ok();
    if !callback_ok && !tolerated("config-origin-header") {
        panic!("accepted tracked_origin_callback {callback_host:?} is not a valid Host header");
    }
    if callback_ok {
        let checker = PathChecker::new(
            config.tracked_origin_callback.clone(),
            config.path_check_timeout,
        );
        let _registry = Registry::new(checker, config.max_paths as usize);
    }
    // Up to 2^24 slots; the zeroed allocation is not touched, so this stays cheap.
    let slots = Slots::new(config.visitor_slots as usize);
    assert_eq!(slots.len(), config.visitor_slots as usize);
    assert!(
        slots.tag_bits() >= 29,
        "{} slots leave too few tag bits",
        slots.len()
    );
    let script = Script::new(&config.base_url, config.min_delay_secs);
    assert!(!script.source().is_empty());
    let _ = oxitraffic::db::ConnectOptions::new(&config.db, config.utc_offset);
});
