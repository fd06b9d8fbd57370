//! Hostile clients and strange tracked sites: every case gets a clear 4xx (or a bounded
//! wait), changes nothing, and leaves the tracker serving everyone else.
//!
//! Also adversarial, and kept next to the flow they attack in tests/counting.rs: forged,
//! stale, guessed and racing tokens; SSRF-shaped paths with a canary listener; redirecting,
//! slow and unreachable sites; CORS from a foreign origin. Outages and SIGTERM under load are
//! in tests/outages.rs.

mod common;

use std::time::{Duration, Instant};

use common::client::{self, encode};
use common::{PgCluster, Site, Tracker, TrackerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Writes raw bytes and returns the status line of the answer ("" if the server closed).
async fn raw(tracker: &Tracker, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(tracker.addr).await.unwrap();
    // The server may answer (and close) before it has read everything we send.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !answer.windows(2).any(|w| w == b"\r\n") && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    text.lines().next().unwrap_or("").to_string()
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn counted_rows(db: &tokio_postgres::Client) -> (i64, i64) {
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM paths), (SELECT count(*) FROM visits)",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_clients_are_cut_off_while_others_are_served() {
    let (_database, _site, config) = common::setup().await;
    let tracker = Tracker::start(&config.set("OXITRAFFIC_CLIENT_TIMEOUT_MS", "1000"));
    tracker.wait_for_health(200, Duration::from_secs(15)).await;

    let started = Instant::now();
    let mut slow = JoinSet::new();
    for _ in 0..200 {
        let addr = tracker.addr;
        slow.spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            // Trickle a header line at a time, never finishing the head.
            for i in 0..100 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if stream
                    .write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            let mut buf = [0u8; 1024];
            // The server has closed (or answered 408 and closed) by now.
            let closed =
                match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
                    Ok(Ok(n)) => {
                        n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408")
                    }
                    Ok(Err(_)) => true,
                    Err(_) => false,
                };
            (closed, started.elapsed())
        });
    }
    // Meanwhile, ordinary requests are answered promptly.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..20 {
        let asked = Instant::now();
        assert_eq!(tracker.get("/health").await.status, 200);
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "{:?}",
            asked.elapsed()
        );
    }
    for (closed, after) in slow.join_all().await {
        assert!(closed, "a slow client was not cut off");
        // The trickle would go on for 10 s; the 1 s limit (plus scheduling on a busy
        // machine) ends it much sooner.
        assert!(
            after < Duration::from_secs(5),
            "cut off only after {after:?}"
        );
    }
}

/// Sends one request on `stream` and reads its whole (small) answer.
async fn keep_alive_request(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"ok\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed while a request was answered");
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_connections_are_closed_after_a_quiet_client_timeout_and_not_before() {
    let (_database, _site, config) = common::setup().await;
    let tracker = Tracker::start(&config.set("OXITRAFFIC_CLIENT_TIMEOUT_MS", "1000"));
    tracker.wait_for_health(200, Duration::from_secs(15)).await;

    // A client asking every 0.4 s for 3 s is never cut off: each request counts as activity.
    let mut busy = TcpStream::connect(tracker.addr).await.unwrap();
    for _ in 0..8 {
        keep_alive_request(&mut busy).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    keep_alive_request(&mut busy).await;

    // Once quiet, it is closed between 1 and 1.25 client timeouts later (plus scheduling).
    let quiet_since = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), busy.read(&mut buf)).await;
    let closed_after = quiet_since.elapsed();
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "an idle keep-alive connection stayed open: {read:?}"
    );
    assert!(
        closed_after >= Duration::from_millis(950) && closed_after < Duration::from_millis(2500),
        "closed {closed_after:?} after its last answer"
    );

    // A connection that never sends a head is closed the same way.
    let opened = Instant::now();
    let mut silent = TcpStream::connect(tracker.addr).await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert!(
        opened.elapsed() < Duration::from_millis(2500),
        "{:?}",
        opened.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_releases_its_stream() {
    let (database, _site, config) = common::setup().await;
    let db = PgCluster::shared().connect(&database).await;
    let tracker = Tracker::start(&config.set("OXITRAFFIC_CLIENT_TIMEOUT_MS", "1000"));
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    db.batch_execute(
        "INSERT INTO paths (path) VALUES ('/big');
         INSERT INTO visits (path_id, registered_at)
         SELECT 1, now() - i * interval '1 second' FROM generate_series(1, 100000) i;",
    )
    .await
    .unwrap();
    // History downloads that are never read hold every stream permit…
    let mut stalled = Vec::new();
    for _ in 0..oxitraffic::streams::PER_CLIENT {
        let mut stream = TcpStream::connect(tracker.addr).await.unwrap();
        stream
            .write_all(b"GET /api/history?path=%2Fbig HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        stalled.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        tracker.get("/api/history?path=%2Fbig").await.status,
        503,
        "all permits taken"
    );
    // …until the stall limit cuts them off and the permits come back.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = tracker.get("/api/history?path=%2Fbig").await;
        if reply.status == 200 {
            assert_eq!(reply.json()["visits"].as_array().unwrap().len(), 100_000);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled streams were never released"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread")]
async fn excess_connections_wait_for_a_free_slot() {
    let (_database, _site, config) = common::setup().await;
    let tracker = Tracker::start(&config.set("OXITRAFFIC_MAX_CONNECTIONS", "4"));
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(tracker.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let addr = tracker.addr;
    let mut waiting = tokio::spawn(async move { client::get(addr, "/health").await.status });
    assert!(
        tokio::time::timeout(Duration::from_millis(700), &mut waiting)
            .await
            .is_err(),
        "a fifth connection was served beyond the cap"
    );
    drop(idle.pop());
    let status = tokio::time::timeout(Duration::from_secs(3), waiting)
        .await
        .expect("served once a slot frees");
    assert_eq!(status.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_and_malformed_requests_get_clear_statuses() {
    let (database, _site, config) = common::setup().await;
    let tracker = Tracker::start(&config);
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    let db = PgCluster::shared().connect(&database).await;

    let huge_header = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    assert_eq!(
        raw(&tracker, huge_header.as_bytes()).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    let many: String = (0..100).map(|i| format!("X-{i}: y\r\n")).collect();
    let many_headers = format!("GET /health HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    assert_eq!(
        raw(&tracker, many_headers.as_bytes()).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    let long_target = format!(
        "GET /register?path=%2F{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(9000)
    );
    assert_eq!(
        raw(&tracker, long_target.as_bytes()).await,
        "HTTP/1.1 414 URI Too Long"
    );
    let big_body = "POST /page-left/1/5 HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\nxxxx";
    assert_eq!(
        raw(&tracker, big_body.as_bytes()).await,
        "HTTP/1.1 413 Payload Too Large"
    );
    for target in [
        &b"/register?path=/\xff"[..],
        b"/register?path=/\x00",
        b"/stats?path=/a\x7f",
    ] {
        let mut request = b"GET ".to_vec();
        request.extend_from_slice(target);
        request.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            raw(&tracker, &request).await,
            "HTTP/1.1 400 Bad Request",
            "{target:?}"
        );
    }
    assert_eq!(
        raw(&tracker, b"NOT HTTP AT ALL\r\n\r\n").await,
        "HTTP/1.1 400 Bad Request"
    );
    assert_eq!(counted_rows(&db).await, (0, 0), "nothing was written");
    assert_eq!(
        tracker.get("/health").await.status,
        200,
        "and the tracker is fine"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_encoding_in_any_parameter_is_400_and_changes_nothing() {
    let (database, site, config) = common::setup().await;
    site.every_path_exists();
    let tracker = Tracker::start(&config);
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    let db = PgCluster::shared().connect(&database).await;
    let token = tracker.get("/register?path=%2Fok").await.text();
    let before = counted_rows(&db).await;
    let bad_values = [
        "%00",
        "%0A",
        "%0D%0A",
        "%7F",
        "%C2%85",
        "%FF",
        "%C3",
        "%E2%80%AE",
        "%",
        "%G1",
    ];
    for value in bad_values {
        for target in [
            format!("/register?path=%2Fa{value}"),
            format!("/post-sleep/{token}?referrer=https%3A%2F%2Fe.example%2F{value}"),
            format!("/stats?path=%2Fok{value}"),
            format!("/api/count?path=%2Fok{value}"),
            format!("/api/history?path=%2Fok{value}"),
            format!("/stats?path=%2Fok&range={value}"),
        ] {
            let reply = tracker.get(&target).await;
            assert_eq!(reply.status, 400, "{target}: {}", reply.text());
            assert!(
                !reply.text().contains('\u{FFFD}'),
                "no silent replacement: {}",
                reply.text()
            );
        }
    }
    assert_eq!(counted_rows(&db).await, before, "nothing changed");
    assert_eq!(
        tracker.post(&format!("/post-sleep/{token}")).await.status,
        200,
        "the token still works"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_made_up_paths_cost_the_site_one_request_each_and_bounded_memory() {
    let (_database, site, config) = common::setup().await;
    let tracker = Tracker::start(&config);
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    let flood = |round: u32| {
        let addr = tracker.addr;
        async move {
            let mut requests = JoinSet::new();
            for worker in 0..32u32 {
                requests.spawn(async move {
                    for i in (worker..10_000).step_by(32) {
                        let reply =
                            client::get(addr, &format!("/register?path=%2Fmade-up%2F{i}")).await;
                        assert_eq!(reply.status, 404, "round {round}");
                    }
                });
            }
            requests.join_all().await;
        }
    };
    flood(1).await;
    let after_first = rss_kib(tracker.pid());
    assert_eq!(
        site.requests().len(),
        10_000,
        "one request per made-up path"
    );
    flood(2).await;
    assert_eq!(site.requests().len(), 10_000, "none on repeat");
    let after_second = rss_kib(tracker.pid());
    assert!(
        after_second <= after_first + 1024,
        "memory grew on repeat: {after_first} → {after_second} KiB"
    );
    assert!(
        after_first < 64 * 1024,
        "the debug build stays small: {after_first} KiB"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_site_that_answers_every_path_fills_at_most_max_paths() {
    let (database, site, config) = common::setup().await;
    site.every_path_exists();
    let tracker = Tracker::start(&config.set("OXITRAFFIC_MAX_PATHS", "50"));
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    let mut statuses = Vec::new();
    for i in 0..80 {
        statuses.push(tracker.get(&format!("/register?path=%2Fp{i}")).await.status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 50);
    assert!(statuses[50..].iter().all(|s| *s == 404), "{statuses:?}");
    assert_eq!(
        site.requests().len(),
        50,
        "no checks once the limit is reached"
    );
    assert_eq!(
        tracker.get("/register?path=%2Fp3").await.status,
        200,
        "known paths still count"
    );
    let logs = tracker.logs();
    assert_eq!(
        logs.matches("path limit reached").count(),
        1,
        "one clear line, not a flood: {logs}"
    );
    let db = PgCluster::shared().connect(&database).await;
    assert_eq!(counted_rows(&db).await.0, 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_and_markup_payloads_are_stored_as_plain_text() {
    let (database, site, config) = common::setup().await;
    site.every_path_exists();
    let tracker = Tracker::start(&config);
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    let db = PgCluster::shared().connect(&database).await;
    let payloads = [
        "/'; DROP TABLE visits; --",
        "/x' OR '1'='1",
        "/\"; DELETE FROM paths; --",
        "/<script>alert(1)</script>",
        "/$1 $$ :memory:",
    ];
    for path in &payloads {
        let token = tracker
            .get(&format!("/register?path={}", encode(path)))
            .await;
        assert_eq!(token.status, 200, "{path}: {}", token.text());
        let referrer = encode("https://evil.example/'); DELETE FROM visits; --");
        let counted = tracker
            .post(&format!("/post-sleep/{}?referrer={referrer}", token.text()))
            .await;
        assert_eq!(counted.status, 200);
    }
    let stored: Vec<String> = db
        .query("SELECT path FROM paths ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, payloads);
    assert_eq!(
        counted_rows(&db).await,
        (payloads.len() as i64, payloads.len() as i64),
        "nothing dropped"
    );
    let referrers: Vec<String> = db
        .query("SELECT referrer FROM visits", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        referrers
            .iter()
            .all(|r| r == "https://evil.example/'); DELETE FROM visits; --"),
        "{referrers:?}"
    );
    let counts = tracker.get("/api/counts").await.json();
    let listed: Vec<&str> = counts
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    for path in &payloads {
        assert!(listed.contains(path), "{path} in {listed:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_database_answers_503_within_the_deadline_and_the_retry_counts_once() {
    let cluster = PgCluster::start();
    let database = cluster.create_database().await;
    let site = Site::start();
    site.add_page("/a");
    let tracker = Tracker::start(
        &TrackerConfig::new(&cluster, &database, &site.origin())
            .set("OXITRAFFIC_REQUEST_TIMEOUT_MS", "1000"),
    );
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    let token = tracker.get("/register?path=%2Fa").await.text();

    cluster.pause();
    for target in ["/api/count?path=%2Fa", "/"] {
        let asked = Instant::now();
        assert_eq!(tracker.get(target).await.status, 503, "{target}");
        assert!(
            asked.elapsed() < Duration::from_millis(2500),
            "{target} took {:?}",
            asked.elapsed()
        );
    }
    let asked = Instant::now();
    assert_eq!(tracker.get("/health").await.status, 503);
    assert!(
        asked.elapsed() < Duration::from_millis(3500),
        "{:?}",
        asked.elapsed()
    );
    let asked = Instant::now();
    assert_eq!(
        tracker.post(&format!("/post-sleep/{token}")).await.status,
        503
    );
    assert!(
        asked.elapsed() < Duration::from_millis(2500),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(
        tracker.get("/register?path=%2Fa").await.status,
        200,
        "registration needs no database"
    );

    cluster.resume();
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    // The write that timed out may have committed after all; the retry must not count twice.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = tracker.post(&format!("/post-sleep/{token}")).await.status;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let db = cluster.connect(&database).await;
    assert_eq!(counted_rows(&db).await.1, 1, "counted exactly once");
}
