//! Criterion benches for the access gate and the metrics: what an authorised request costs
//! next to a public one, and what recording and scraping cost.
//!
//! `cargo bench --bench access` measures; `cargo test --benches` runs each once.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use criterion::{Criterion, criterion_group, criterion_main};
use hyper::StatusCode;
use hyper::header::{self, HeaderMap, HeaderValue};
use oxitraffic::access::{Class, Credentials, Denied, Gate, Policy};
use oxitraffic::metrics::{BatchKind, Gauges, Metrics, PathCheck, Registration};
use sha2::{Digest, Sha256};

const TOKEN: &str = "oxt_5b0c2f3e9d8a7c6b5a4f3e2d1c0b9a8f";
/// "admin:correct horse battery staple"
const BASIC: &str = "Basic YWRtaW46Y29ycmVjdCBob3JzZSBiYXR0ZXJ5IHN0YXBsZQ==";

/// The server's default argon2 parameters (m = 19 MiB, t = 2, p = 1): what a real login
/// costs when it is not remembered.
fn gate() -> Gate {
    let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
        .hash_password(b"correct horse battery staple", &salt)
        .unwrap()
        .to_string();
    let credentials = Credentials {
        username: "admin".into(),
        password_hash: Some(hash),
        api_tokens: (0..4)
            .map(|i| Sha256::digest(format!("token {i}")).into())
            .chain([Sha256::digest(TOKEN).into()])
            .collect(),
    };
    let policy = Policy {
        dashboard: true,
        api: true,
        metrics: true,
    };
    Gate::new(policy, credentials).unwrap()
}

fn headers(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
    headers
}

/// Polls a check once: public, bearer and remembered checks never wait, so this measures
/// them without an executor's own overhead.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the check waited"),
    }
}

fn access(c: &mut Criterion) {
    let gate = gate();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let basic = headers(BASIC);
    // The first request with these credentials runs argon2 and remembers them.
    assert_eq!(
        runtime.block_on(gate.check(Class::Dashboard, &basic)),
        Ok(())
    );
    let bearer = headers(&format!("Bearer {TOKEN}"));
    let wrong_bearer = headers("Bearer oxt_0000000000000000000000000000000000");
    let none = HeaderMap::new();

    let mut group = c.benchmark_group("gate");
    group.bench_function("public", |b| {
        b.iter(|| ready(gate.check(black_box(Class::Public), black_box(&basic))))
    });
    group.bench_function("private_remembered_basic", |b| {
        b.iter(|| {
            let outcome = ready(gate.check(black_box(Class::Dashboard), black_box(&basic)));
            assert_eq!(outcome, Ok(()));
        })
    });
    group.bench_function("private_bearer_5_tokens", |b| {
        b.iter(|| {
            let outcome = ready(gate.check(black_box(Class::Api), black_box(&bearer)));
            assert_eq!(outcome, Ok(()));
        })
    });
    group.bench_function("private_wrong_bearer", |b| {
        b.iter(|| {
            let outcome = ready(gate.check(black_box(Class::Api), black_box(&wrong_bearer)));
            assert_eq!(outcome, Err(Denied::Unauthorized));
        })
    });
    group.bench_function("private_no_header", |b| {
        b.iter(|| ready(gate.check(black_box(Class::Metrics), black_box(&none))))
    });
    group.finish();

    // A new wrong password each time: one argon2 run with the default parameters, the cost
    // a guess imposes and the reason for the concurrency bound.
    println!("before the argon2 runs: {}", memory_status());
    let mut group = c.benchmark_group("gate_argon2");
    group.sample_size(10);
    let mut guess = 0u64;
    group.bench_function("unremembered_login_default_params", |b| {
        b.iter(|| {
            guess += 1;
            let value = format!(
                "Basic {}",
                base64(format!("admin:guess {guess}").as_bytes())
            );
            let outcome = runtime.block_on(gate.check(Class::Dashboard, &headers(&value)));
            assert_eq!(outcome, Err(Denied::Unauthorized));
        })
    });
    group.finish();
    // Each run's memory is unmapped when it ends (`ALWAYS_MAPPED_BYTES` in src/access.rs), so
    // after all those runs the resident size is back near where it started.
    println!("after the argon2 runs: {}", memory_status());
}

fn memory_status() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let lines: Vec<_> = status
        .lines()
        .filter(|line| line.starts_with("VmRSS") || line.starts_with("VmHWM"))
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    lines.join(", ")
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let word = chunk
            .iter()
            .enumerate()
            .fold(0u32, |w, (i, &b)| w | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            let symbol = ALPHABET[(word >> (18 - 6 * i) & 63) as usize] as char;
            out.push(if i <= chunk.len() { symbol } else { '=' });
        }
    }
    out
}

/// About the size of the server's route table in round 2.
const ROUTES: &[&str] = &[
    "index",
    "stats",
    "style",
    "api_counts",
    "api_count",
    "api_history",
    "api_summary",
    "api_daily",
    "api_pages",
    "api_referrers",
    "api_campaigns",
    "api_live",
    "api_export",
    "api_openapi",
    "metrics",
    "health",
    "script",
    "register",
    "post_sleep",
    "page_left",
];

fn metrics(c: &mut Criterion) {
    let metrics = Metrics::new(ROUTES);
    let mut group = c.benchmark_group("metrics");
    group.bench_function("record", |b| {
        b.iter(|| {
            metrics.record(
                black_box(17),
                black_box(StatusCode::OK),
                black_box(Duration::from_micros(180)),
            )
        })
    });
    group.bench_function("record_unlisted_status", |b| {
        b.iter(|| {
            metrics.record(
                black_box(3),
                black_box(StatusCode::IM_A_TEAPOT),
                black_box(Duration::from_millis(3)),
            )
        })
    });
    // A scrape of a server that has seen every route with a few statuses.
    for (route, _) in ROUTES.iter().enumerate() {
        for (status, millis) in [(StatusCode::OK, 1), (StatusCode::NOT_FOUND, 2)] {
            metrics.record(route, status, Duration::from_millis(millis));
        }
        metrics.record(
            route,
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(4),
        );
    }
    metrics.registration(Registration::Ok);
    metrics.writer_batch(BatchKind::Visits, 40);
    metrics.path_check(PathCheck::Exists, Duration::from_millis(30));
    let gauges = Gauges {
        pending_visitors: 1200,
        live_visitors: 800,
        writer_queue_depth: 3,
        database_up: true,
        visitor_slots: 65536,
        known_paths: 5000,
    };
    let mut out = String::new();
    metrics.render(&gauges, &mut out);
    println!(
        "rendered exposition: {} bytes, {} lines",
        out.len(),
        out.lines().count()
    );
    group.bench_function("render_20_routes", |b| {
        b.iter(|| {
            out.clear();
            metrics.render(black_box(&gauges), &mut out);
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, access, metrics);
criterion_main!(benches);
