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

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use hyper::header::HeaderValue;
use libfuzzer_sys::fuzz_target;
use oxitraffic::access::{Credentials, Gate, Policy};
use oxitraffic::config::{self, IpNet, Origin, Visibility};
use oxitraffic::keyed::Key;
use oxitraffic::metrics::Metrics;
use oxitraffic::paths::Registry;
use oxitraffic::paths::check::PathChecker;
use oxitraffic::paths::exclude::PathPattern;
use oxitraffic::routes;
use oxitraffic::script::count_js;
use oxitraffic::slots::{SlotKeys, Slots};
use oxitraffic::zone::Zone;
use oxitraffic_fuzz::{fields, tolerated};

/// One metrics registry for every run: `run` builds one per process, and it is not what
/// this target examines.
static METRICS: LazyLock<Arc<Metrics>> = LazyLock::new(|| Arc::new(Metrics::new(routes::names())));

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
    let reparses = Origin::parse(text).as_ref() == Ok(origin);
    if !(well_formed && reparses || tolerated("config-origin-host")) {
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

    // What `oxitraffic::run` builds before serving; each of these has an `expect`, an
    // `assert` or an error that a configuration `check-config` accepted must not reach.
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
        let _registry = Registry::new(
            checker,
            config.max_paths as usize,
            config.exclude_paths.clone(),
            METRICS.clone(),
        );
    }
    // `run` refuses to start (after `check-config` said yes) if the gate cannot be built:
    // the configuration must have refused such access settings already.
    let gate = Gate::new(
        Policy {
            dashboard: config.access.dashboard == Visibility::Private,
            api: config.access.api == Visibility::Private,
            metrics: config.access.metrics == Visibility::Private,
        },
        Credentials {
            username: config.access.username.clone(),
            password_hash: config.access.password_hash.clone(),
            api_tokens: config.access.api_tokens.clone(),
        },
    );
    if let Err(error) = gate {
        panic!("accepted access settings fail at start-up: {error}");
    }
    // Up to 2^24 slots; the zeroed allocation is not touched, so this stays cheap.
    let keys = SlotKeys {
        tag: Key { k0: 1, k1: 2 },
        order: Key { k0: 3, k1: 4 },
    };
    let slots = Slots::new(config.visitor_slots as usize, config.instance, 1, keys);
    assert_eq!(slots.len(), config.visitor_slots as usize);
    assert!(
        slots.tag_bits() >= 24,
        "{} slots leave too few tag bits",
        slots.len()
    );
    let script = count_js(&config.base_url, config.min_delay_secs);
    drop(script);
    let zone = match &config.time_zone {
        Some(name) => Zone::Named(name.clone()),
        None => Zone::Fixed(config.utc_offset.total_minutes() * 60),
    };
    let _ = oxitraffic::db::ConnectOptions::new(
        &config.db,
        &config.db.schema,
        zone,
        config.request_timeout,
    );
    for net in &config.trusted_proxies {
        assert_eq!(IpNet::parse(&net.to_string()).as_ref(), Ok(net), "{net}");
    }
    for pattern in &config.exclude_paths {
        assert_eq!(PathPattern::parse(pattern.as_str()).as_ref(), Ok(pattern));
    }
});
