//! Criterion benches for the access gate and the metrics: what an authorised request costs
//! next to a public one, at the gate and as a whole request through the real server, and
//! what recording and scraping cost.
//!
//! `cargo bench --bench access` measures; `cargo test --benches` runs each once. The whole
//! requests need no database: the servers start without one, which takes the 10 s the start
//! waits for PostgreSQL to restore the last run's visitors.

use std::future::Future;
use std::hint::black_box;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use oxitraffic::access::{Class, Credentials, Denied, Gate, Policy};
use oxitraffic::metrics::{BatchKind, Gauges, Metrics, PathCheck, Registration};
use sha2::{Digest, Sha256};

const TOKEN: &str = "oxt_5b0c2f3e9d8a7c6b5a4f3e2d1c0b9a8f";
/// "admin:correct horse battery staple"
const BASIC: &str = "Basic YWRtaW46Y29ycmVjdCBob3JzZSBiYXR0ZXJ5IHN0YXBsZQ==";

/// The server's default argon2 parameters (m = 19 MiB, t = 2, p = 1): what a real login
/// costs when it is not remembered.
fn password_hash() -> String {
    let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
        .hash_password(b"correct horse battery staple", &salt)
        .unwrap()
        .to_string()
}

fn gate() -> Gate {
    let credentials = Credentials {
        username: "admin".into(),
        password_hash: Some(password_hash()),
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

/// A real server (`oxitraffic::run`) on a free port with `api` public or private and the
/// credentials of [`gate`], on the runtime the caller drives. Its database is a socket
/// directory that does not exist, so it serves without one after the start's wait.
fn server(runtime: &tokio::runtime::Runtime, api: &str) -> SocketAddr {
    let digest: String = Sha256::digest(TOKEN)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let config = oxitraffic::config::load([
        ("OXITRAFFIC_SOCKET_ADDRESS", "127.0.0.1:0".to_string()),
        ("OXITRAFFIC_BASE_URL", "https://tracker.example.org".into()),
        ("OXITRAFFIC_TRACKED_ORIGIN", "https://example.org".into()),
        (
            "OXITRAFFIC_DB__HOST",
            "/nonexistent/oxitraffic-bench".into(),
        ),
        ("OXITRAFFIC_DB__USERNAME", "oxitraffic".into()),
        ("OXITRAFFIC_DB__DATABASE", "oxitraffic".into()),
        ("OXITRAFFIC_ACCESS__API", api.into()),
        ("OXITRAFFIC_ACCESS__USERNAME", "admin".into()),
        ("OXITRAFFIC_ACCESS__PASSWORD_HASH", password_hash()),
        ("OXITRAFFIC_ACCESS__API_TOKENS", digest),
    ])
    .unwrap_or_else(|errors| panic!("{errors}"));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let address = listener.local_addr().unwrap();
    runtime.spawn(async move {
        let serving = oxitraffic::run(listener, config, std::future::pending());
        serving.await.unwrap();
    });
    address
}

/// One keep-alive connection, as a browser or a scraper holds.
async fn connect(address: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

async fn get(
    sender: &mut SendRequest<Empty<Bytes>>,
    target: &str,
    headers: &[(header::HeaderName, &HeaderValue)],
) -> (StatusCode, HeaderMap) {
    let mut request = Request::get(target).header(header::HOST, "tracker.example.org");
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    sender.ready().await.unwrap();
    let response = sender
        .send_request(request.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    response.into_body().collect().await.unwrap();
    (status, headers)
}

/// Whole requests through the real server (parsing, routing, the gate, the handler, the
/// metrics, the response on the wire, over loopback), for the same resource public and
/// private: `/api/openapi.json` revalidated with its ETag, so the 304 is small and the
/// difference is the gate's.
fn requests(c: &mut Criterion) {
    // The tracker's own shape: a multi-threaded runtime of two workers; the client drives
    // it from this thread.
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let public = server(&server_runtime, "public");
    let private = server(&server_runtime, "private");
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let basic = HeaderValue::from_static(BASIC);
    let bearer = HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap();
    let (mut public, mut private, etag) = client.block_on(async {
        let (mut public, mut private) = tokio::join!(connect(public), connect(private));
        // The first answers come once the servers have given up waiting for the database.
        let (status, headers) = get(&mut public, "/api/openapi.json", &[]).await;
        assert_eq!(status, StatusCode::OK);
        let etag = headers[header::ETAG].clone();
        // The password is verified once (argon2) and then remembered, as for a browser.
        let login = [(header::AUTHORIZATION, &basic)];
        let (status, _) = get(&mut private, "/api/openapi.json", &login).await;
        assert_eq!(status, StatusCode::OK);
        // Both servers and connections warm alike before anything is measured, so the
        // order of the benches below does not favour the later ones.
        for _ in 0..2000 {
            get(&mut public, "/api/openapi.json", &[]).await;
            get(&mut private, "/api/openapi.json", &login).await;
        }
        (public, private, etag)
    });

    let mut group = c.benchmark_group("request");
    let mut bench = |name: &str,
                     sender: &mut SendRequest<Empty<Bytes>>,
                     authorization: Option<&HeaderValue>,
                     expected: StatusCode| {
        let mut headers = vec![(header::IF_NONE_MATCH, &etag)];
        headers.extend(authorization.map(|value| (header::AUTHORIZATION, value)));
        group.bench_function(name, |b| {
            b.iter(|| {
                let (status, _) = client.block_on(get(sender, "/api/openapi.json", &headers));
                assert_eq!(status, expected);
            })
        });
    };
    bench("public", &mut public, None, StatusCode::NOT_MODIFIED);
    bench(
        "private_remembered_basic",
        &mut private,
        Some(&basic),
        StatusCode::NOT_MODIFIED,
    );
    bench(
        "private_bearer",
        &mut private,
        Some(&bearer),
        StatusCode::NOT_MODIFIED,
    );
    bench(
        "private_refused",
        &mut private,
        None,
        StatusCode::UNAUTHORIZED,
    );
    group.finish();
}

criterion_group!(benches, access, requests, metrics);
criterion_main!(benches);
