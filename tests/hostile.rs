//! Hostile input, second round (SPEC §12, issue 13): each attack a security review found,
//! reproduced against the real binary and a real PostgreSQL, and shown to fail.
//! Figures (rates, times, sizes) are printed with `--nocapture`.

mod common;

use std::time::{Duration, Instant};

use common::client::{self, RequestSpec, encode};
use common::{PgCluster, Tracker, TrackerConfig};
use hyper::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn started(config: &TrackerConfig) -> Tracker {
    let tracker = Tracker::start(config);
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    tracker
}

/// `/register` as the client `address` behind the trusted proxy (the test itself).
async fn register_as(tracker: &Tracker, address: &str, path: &str) -> client::Reply {
    let target = format!("/register?path={}", encode(path));
    client::send(
        tracker.addr,
        RequestSpec::new(Method::GET, &target).header("x-forwarded-for", address),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registration_flood_from_one_address_evicts_nobody_and_stops_nobody_else() {
    let (_database, site, config) = common::setup().await;
    site.add_page("/");
    let tracker = started(
        &config
            .set("OXITRAFFIC_VISITOR_SLOTS", "64")
            .set("OXITRAFFIC_MAX_PENDING_PER_CLIENT", "16")
            .set("OXITRAFFIC_TRUSTED_PROXIES", "127.0.0.1, ::1"),
    )
    .await;
    let visitor = register_as(&tracker, "203.0.113.7", "/").await;
    assert_eq!(visitor.status, 200);
    let token = visitor.text();

    // One address floods: its first 16 registrations pass, the rest are refused at once.
    let started_at = Instant::now();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut retry_after = None;
    for _ in 0..2000 {
        let reply = register_as(&tracker, "198.51.100.9", "/").await;
        *statuses.entry(reply.status).or_default() += 1;
        if reply.status == 429 {
            retry_after = reply.header("retry-after").map(str::to_string);
        }
    }
    let elapsed = started_at.elapsed();
    eprintln!(
        "flood: {statuses:?} in {elapsed:.2?} ({:.0} req/s), Retry-After {retry_after:?}",
        2000.0 / elapsed.as_secs_f64()
    );
    assert_eq!(statuses.get(&200), Some(&16), "{statuses:?}");
    assert_eq!(statuses.get(&429), Some(&1984), "{statuses:?}");
    assert!(retry_after.is_some_and(|s| s.parse::<u32>().is_ok_and(|s| s >= 1)));

    // Other addresses still register (an IPv6 /64 is one client, other /64s are others).
    for i in 0..40 {
        let address = format!("2001:db8:{i:x}::1");
        let reply = register_as(&tracker, &address, "/").await;
        assert_eq!(reply.status, 200, "{address}: {}", reply.text());
    }
    let same_prefix = register_as(&tracker, "2001:db8:0::ffff", "/").await;
    assert_eq!(same_prefix.status, 200, "a second device of the same /64");

    // The table is full of protected visits now: newcomers get 503, nobody is evicted.
    let mut refused = 0;
    for i in 0..20 {
        let reply = register_as(&tracker, &format!("192.0.2.{i}"), "/").await;
        if reply.status == 503 {
            refused += 1;
        }
    }
    assert!(refused > 0, "64 slots cannot hold 78 pending visits");
    let counted = tracker.post(&format!("/post-sleep/{token}")).await;
    assert_eq!(
        counted.status,
        200,
        "the real visitor was not evicted: {}",
        counted.text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn x_forwarded_for_counts_only_from_trusted_proxies() {
    let (_database, site, config) = common::setup().await;
    site.add_page("/");
    // No trusted proxy: every request is the test's own address, whatever the header says.
    let tracker = started(&config.set("OXITRAFFIC_MAX_PENDING_PER_CLIENT", "5")).await;
    let mut ok = 0;
    for i in 0..20 {
        if register_as(&tracker, &format!("10.0.0.{i}"), "/")
            .await
            .status
            == 200
        {
            ok += 1;
        }
    }
    assert_eq!(ok, 5, "spoofed addresses do not multiply the budget");
}

#[tokio::test(flavor = "multi_thread")]
async fn consecutive_tokens_reveal_nothing_about_the_registrations_in_between() {
    let (_database, site, config) = common::setup().await;
    site.add_page("/");
    let tracker = started(
        &config
            .set("OXITRAFFIC_MAX_PENDING_PER_CLIENT", "5000")
            .set("OXITRAFFIC_INSTANCE", "5"),
    )
    .await;
    let mut tokens = Vec::new();
    for _ in 0..2000 {
        let reply = tracker.get("/register?path=%2F").await;
        assert_eq!(reply.status, 200);
        tokens.push(reply.json().as_u64().unwrap());
    }
    assert!(
        tokens.iter().all(|t| t >> 48 == 5),
        "the instance is in bits 48–52"
    );
    // The slot index is the low 16 bits (65,536 slots). Handed out in turn, consecutive
    // tokens would differ by one there; in a secret order the steps look random.
    let steps: Vec<i64> = tokens
        .windows(2)
        .map(|w| (w[1] & 0xFFFF) as i64 - (w[0] & 0xFFFF) as i64)
        .collect();
    let unit_steps = steps.iter().filter(|s| **s == 1).count();
    let distinct: std::collections::HashSet<i64> = steps.iter().copied().collect();
    eprintln!(
        "2000 tokens: {unit_steps} steps of +1, {} distinct steps",
        distinct.len()
    );
    assert!(unit_steps < 20, "{unit_steps} consecutive slots");
    assert!(distinct.len() > 1500, "{} distinct steps", distinct.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn dot_segments_with_parameters_and_encoded_slashes_are_refused() {
    let (_database, site, config) = common::setup().await;
    site.every_path_exists();
    let tracker = started(&config).await;
    for path in [
        "/x/..;/admin",
        "/x/..%3B/admin",
        "/x/%2e%2e;jsessionid=1/admin",
        "/x/.;/y",
        "/a%2Fb",
        "/a%2fb",
    ] {
        let reply = tracker
            .get(&format!("/register?path={}", encode(path)))
            .await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text());
    }
    assert!(
        site.requests().is_empty(),
        "the site was never asked: {:?}",
        site.requests()
    );
    // A path with parameters that is not a dot-segment is an ordinary path.
    let reply = tracker.get("/register?path=%2Fa%3Bb%2Fc").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// Connections of the tracker holding a transaction open or an old snapshot.
async fn held_snapshots(db: &tokio_postgres::Client) -> (i64, Option<f64>) {
    let row = db
        .query_one(
            "SELECT count(*) FILTER (WHERE state LIKE 'idle in transaction%'),
                    max(extract(epoch FROM now() - xact_start))::float8
             FROM pg_stat_activity WHERE application_name = 'oxitraffic' AND backend_xmin IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_readers_hold_no_snapshot_and_are_cut_below_the_minimum_rate() {
    let (database, _site, config) = common::setup().await;
    let tracker = started(
        &config
            .set("OXITRAFFIC_CLIENT_TIMEOUT_MS", "3000")
            .set("OXITRAFFIC_TRUSTED_PROXIES", "127.0.0.1"),
    )
    .await;
    let db = PgCluster::shared().connect(&database).await;
    db.batch_execute(
        "INSERT INTO paths (path) VALUES ('/big');
         INSERT INTO visits (path_id, registered_at, referrer)
         SELECT 1, now() - i * interval '1 second', 'https://news.example/' || i
         FROM generate_series(1, 200000) i;",
    )
    .await
    .unwrap();
    let download = |client: &'static str| {
        let addr = tracker.addr;
        async move {
            client::send(
                addr,
                RequestSpec::new(Method::GET, "/api/history?path=%2Fbig")
                    .header("x-forwarded-for", client),
            )
            .await
        }
    };
    // One client opens many downloads and reads them slowly but steadily: about 2.8 KB/s
    // (the review's attack) and 10 KB/s, both below the minimum of 16 KiB/s.
    let readers = 2 * usize::from(oxitraffic::streams::PER_CLIENT);
    let mut tasks = Vec::new();
    for reader in 0..readers {
        let pause = Duration::from_millis(if reader % 2 == 0 { 350 } else { 100 });
        let addr = tracker.addr;
        tasks.push(tokio::spawn(async move {
            // A small receive window, as a slow client's kernel keeps it.
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            let mut stream = socket.connect(addr).await.unwrap();
            stream
                .write_all(
                    b"GET /api/history?path=%2Fbig HTTP/1.1\r\nHost: x\r\n\
                      X-Forwarded-For: 198.51.100.1\r\n\r\n",
                )
                .await
                .unwrap();
            let mut received = Vec::new();
            let mut buffer = [0u8; 1024];
            while let Ok(n) = stream.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                received.extend_from_slice(&buffer[..n]);
                tokio::time::sleep(pause).await;
            }
            received
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        download("198.51.100.1").await.status,
        503,
        "the slow client holds its share"
    );
    // While they trickle, no connection of the tracker holds a transaction or a snapshot,
    // and everybody else is served: the dashboard's lists, and a whole download.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (idle_in_transaction, oldest) = held_snapshots(&db).await;
        assert_eq!(idle_in_transaction, 0);
        assert!(
            oldest.is_none_or(|age| age < 1.0),
            "a snapshot {oldest:?} s old"
        );
        assert_eq!(tracker.get("/api/counts").await.status, 200);
        assert_eq!(tracker.get("/").await.status, 200);
    }
    let other = download("203.0.113.5").await;
    assert_eq!(other.status, 200);
    assert_eq!(other.json()["visits"].as_array().unwrap().len(), 200_000);
    // The server cuts them: the slow client's share comes back. (What the kernels had
    // buffered still reaches the readers afterwards, at their pace.)
    let started = Instant::now();
    loop {
        let reply = download("198.51.100.1").await;
        if reply.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the slow downloads were never cut\n{}",
            tracker.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let logs = tracker.logs();
    let too_slow = logs.matches("reads too slowly").count();
    let stalled = logs.matches("stopped reading").count();
    let cut = too_slow + stalled;
    eprintln!(
        "{readers} slow downloads of one client: {cut} served and cut ({too_slow} below the \
         minimum rate, {stalled} stalled), the client's share back after {:.1?}",
        started.elapsed()
    );
    assert_eq!(cut, usize::from(oxitraffic::streams::PER_CLIENT));
    for task in tasks {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn millions_of_distinct_referrers_neither_slow_the_dashboard_nor_fail_health() {
    let (database, _site, config) = common::setup().await;
    let tracker = started(&config).await;
    let db = PgCluster::shared().connect(&database).await;
    db.batch_execute("INSERT INTO paths (path) SELECT '/p' || i FROM generate_series(1, 50) i")
        .await
        .unwrap();
    let started_at = Instant::now();
    for batch in 0..10 {
        db.execute(
            "INSERT INTO visits (path_id, registered_at, referrer)
             SELECT 1 + i % 50, now() - (i % 3) * interval '1 day',
                    'https://spam' || ($1 * 100000 + i) || '.example/' || i
             FROM generate_series(1, 100000) i",
            &[&batch],
        )
        .await
        .unwrap();
    }
    eprintln!(
        "1,000,000 visits with distinct referrers written in {:.1?}",
        started_at.elapsed()
    );
    let kept: Vec<(String, i64)> = db
        .query(
            "SELECT 'site', max(n) FROM (SELECT count(*) n FROM site_sources GROUP BY day) s
             UNION ALL SELECT 'path', max(n) FROM (SELECT count(*) n FROM path_sources GROUP BY path_id, day) p
             UNION ALL SELECT 'paths', max(n) FROM (SELECT count(*) n FROM path_sources GROUP BY day) d",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    eprintln!("distinct referrers kept per day: {kept:?}");
    assert!(
        kept[0].1 <= 1001 && kept[1].1 <= 101 && kept[2].1 <= 20_001,
        "{kept:?}"
    );
    let size: String = db
        .query_one(
            "SELECT pg_size_pretty(pg_total_relation_size('site_sources') + pg_total_relation_size('path_sources'))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    eprintln!("referrer roll-ups: {size}");

    // Eight dashboards at once, and /health beside them.
    let mut loads = Vec::new();
    for _ in 0..8 {
        let addr = tracker.addr;
        loads.push(tokio::spawn(async move {
            let started = Instant::now();
            let reply = client::get(addr, "/").await;
            (reply.status, started.elapsed())
        }));
    }
    let health_started = Instant::now();
    let health = tracker.get("/health").await;
    let health_time = health_started.elapsed();
    let mut slowest = Duration::ZERO;
    for load in loads {
        let (status, elapsed) = load.await.unwrap();
        assert_eq!(status, 200);
        slowest = slowest.max(elapsed);
    }
    eprintln!("8 concurrent dashboards: slowest {slowest:?}; /health {health_time:?}");
    assert_eq!(health.status, 200);
    assert!(health_time < Duration::from_secs(1), "{health_time:?}");
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    let referrers = tracker.get("/api/referrers").await;
    assert_eq!(referrers.status, 200);
    let hosts = referrers.json();
    assert!(
        hosts
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["host"].is_null() && h["visits"].as_i64().unwrap() > 900_000),
        "the visits past the bound are counted as others"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_within_15_seconds_even_when_the_database_hangs() {
    let cluster = PgCluster::start();
    let database = cluster.create_database().await;
    let site = common::Site::start();
    site.add_page("/");
    let mut tracker = started(
        &TrackerConfig::new(&cluster, &database, &site.origin())
            .set("OXITRAFFIC_MIN_DELAY_SECS", "0"),
    )
    .await;
    let token = tracker.get("/register?path=%2F").await.text();
    assert_eq!(
        tracker.post(&format!("/post-sleep/{token}")).await.status,
        200
    );
    let pending = tracker.get("/register?path=%2F").await.text();

    cluster.pause();
    // A visit whose write now hangs: it must never be answered 200.
    let addr = tracker.addr;
    let hanging =
        tokio::spawn(
            async move { client::try_post(addr, &format!("/post-sleep/{pending}")).await },
        );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let status = tracker.terminate(Duration::from_secs(20));
    let took = started.elapsed();
    cluster.resume();
    eprintln!("SIGTERM with a frozen database: exited {status} after {took:.1?}");
    assert!(
        took < Duration::from_secs(15),
        "{took:?}\n{}",
        tracker.logs()
    );
    assert!(status.success(), "{status}");
    if let Ok(Ok(reply)) = hanging.await {
        assert_ne!(
            reply.status, 200,
            "a visit that was not stored was answered 200"
        );
    }
    let db = cluster.connect(&database).await;
    let stored: i64 = db
        .query_one("SELECT count(*) FROM visits", &[])
        .await
        .unwrap()
        .get(0);
    assert!(stored >= 1, "the visit answered 200 is stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn visit_times_follow_the_system_clock_after_it_jumps() {
    // Debian installs it under the architecture's library directory.
    let library = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("faketime/libfaketimeMT.so.1"))
        .find(|path| path.exists())
        .expect(
            "libfaketime is missing: run .ci/test, which installs it (apt-get install faketime)",
        );
    let library = library.to_str().unwrap();
    let (database, site, config) = common::setup().await;
    site.add_page("/");
    let clock_file = std::env::temp_dir().join(format!("oxt-faketime-{}", std::process::id()));
    std::fs::write(&clock_file, "+0\n").unwrap();
    // The tracker's system clock is whatever the file says; its monotonic clock is real.
    let tracker = started(
        &config
            .set("OXITRAFFIC_MIN_DELAY_SECS", "0")
            .set("LD_PRELOAD", library)
            .set("FAKETIME_TIMESTAMP_FILE", clock_file.to_str().unwrap())
            .set("FAKETIME_NO_CACHE", "1")
            .set("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    )
    .await;
    let count_one = || async {
        let token = tracker.get("/register?path=%2F").await.text();
        assert_eq!(
            tracker.post(&format!("/post-sleep/{token}")).await.status,
            200
        );
    };
    count_one().await;
    // A correction of the system clock (NTP, a resumed VM) by two days back.
    std::fs::write(&clock_file, "-2d\n").unwrap();
    count_one().await;
    let db = PgCluster::shared().connect(&database).await;
    let ages: Vec<f64> = db
        .query(
            "SELECT extract(epoch FROM now() - registered_at)::float8 FROM visits ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let _ = std::fs::remove_file(&clock_file);
    eprintln!("visit ages by the database's clock: {ages:?}");
    assert!(ages[0].abs() < 5.0, "{ages:?}");
    assert!(
        (ages[1] - 2.0 * 86_400.0).abs() < 5.0,
        "dated by the clock it was registered at: {ages:?}"
    );
}
