//! Counting visits end to end over real HTTP: the real binary, a real PostgreSQL, a fake
//! tracked site (and a canary that must never be contacted).

mod common;

use std::time::{Duration, Instant};

use common::client::{self, RequestSpec, encode};
use common::{PgCluster, Site, Tracker, TrackerConfig};
use hyper::Method;
use tokio::task::JoinSet;

/// A tracker (min_delay_secs = 1) for a site with the given pages, and a client for its DB.
async fn tracker_for(pages: &[&str]) -> (Tracker, Site, tokio_postgres::Client) {
    tracker_with_delay(pages, 0).await
}

async fn tracker_with_delay(
    pages: &[&str],
    min_delay_secs: u32,
) -> (Tracker, Site, tokio_postgres::Client) {
    let (database, site, config) = common::setup().await;
    for page in pages {
        site.add_page(page);
    }
    let tracker =
        Tracker::start(&config.set("OXITRAFFIC_MIN_DELAY_SECS", min_delay_secs.to_string()));
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    let db = PgCluster::shared().connect(&database).await;
    (tracker, site, db)
}

async fn register(tracker: &Tracker, path: &str) -> u64 {
    let reply = tracker
        .get(&format!("/register?path={}", encode(path)))
        .await;
    assert_eq!(reply.status, 200, "register {path}: {}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let token = reply.json().as_u64().expect("the token is a JSON integer");
    assert!(token < 1 << 53, "JavaScript reads the token exactly");
    token
}

async fn visits(db: &tokio_postgres::Client) -> Vec<(String, Option<String>, Option<i32>)> {
    db.query(
        "SELECT p.path, v.referrer, v.spent_time_seconds FROM visits v JOIN paths p ON p.id = v.path_id
         ORDER BY v.id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1), row.get(2)))
    .collect()
}

/// Waits out min_delay_secs = 1 (plus the tick rounding) after a registration.
async fn past_the_delay() {
    tokio::time::sleep(Duration::from_millis(1300)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_visit_is_counted_once_with_its_referrer_and_spent_time() {
    // The one test of the delay itself: 425 before it, counted after.
    let (tracker, site, db) = tracker_with_delay(&["/blog/rust"], 1).await;
    let token = register(&tracker, "/blog/rust").await;

    let early = tracker.post(&format!("/post-sleep/{token}")).await;
    assert_eq!(early.status, 425, "{}", early.text());
    assert!(early.header("retry-after").is_some());
    assert!(
        visits(&db).await.is_empty(),
        "nothing is written before the delay"
    );

    past_the_delay().await;
    let referrer = encode("https://news.example/item?id=7#comments");
    let counted = tracker
        .post(&format!("/post-sleep/{token}?referrer={referrer}"))
        .await;
    assert_eq!(
        counted.status,
        200,
        "the early call did not consume the token: {}",
        counted.text()
    );
    assert_eq!(
        tracker.post(&format!("/post-sleep/{token}")).await.status,
        404,
        "counts once"
    );

    assert_eq!(
        tracker.post(&format!("/page-left/{token}/31")).await.status,
        200
    );
    assert_eq!(
        tracker.get(&format!("/page-left/{token}/45")).await.status,
        200,
        "GET works too"
    );
    assert_eq!(
        tracker.post(&format!("/page-left/{token}/40")).await.status,
        200
    );

    assert_eq!(
        visits(&db).await,
        vec![(
            "/blog/rust".into(),
            Some("https://news.example/item".into()),
            Some(40)
        )],
        "one visit, referrer without query or fragment, the latest spent time"
    );
    assert_eq!(site.hits("/blog/rust"), 1, "the path was checked once");
    let counters: i64 = db
        .query_one("SELECT visits FROM site_days", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(counters, 1, "the dashboard counters follow");
}

#[tokio::test(flavor = "multi_thread")]
async fn known_paths_are_answered_from_memory_even_after_a_restart() {
    let (database, site, config) = common::setup().await;
    site.add_page("/");
    let tracker = Tracker::start(&config);
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    for _ in 0..5 {
        register(&tracker, "/").await;
    }
    drop(tracker);
    let tracker = Tracker::start(&config);
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    // The registry is loaded right after connecting; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tracker.logs().contains("loaded known paths paths=1") {
        assert!(Instant::now() < deadline, "{}", tracker.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    register(&tracker, "/").await;
    assert_eq!(
        site.hits("/"),
        1,
        "asked once in the first run, never again"
    );
    let db = PgCluster::shared().connect(&database).await;
    let paths: i64 = db
        .query_one("SELECT count(*) FROM paths", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(paths, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_status_of_the_script_endpoints() {
    let (tracker, site, db) = tracker_for(&["/a"]).await;
    let status = |target: &'static str| {
        let tracker = &tracker;
        async move { tracker.get(target).await.status }
    };
    // /register
    assert_eq!(status("/register").await, 400, "missing path");
    assert_eq!(status("/register?path=").await, 400, "empty path");
    assert_eq!(status("/register?path=a").await, 400, "relative");
    assert_eq!(
        status("/register?path=%2F%2Fevil.example").await,
        400,
        "scheme-relative"
    );
    assert_eq!(
        status("/register?path=%2Fa%2F..%2Fb").await,
        400,
        "dot segment"
    );
    assert_eq!(status("/register?path=%2Fa%2500").await, 400, "NUL");
    assert_eq!(status("/register?path=%2Fa%25ff").await, 400, "not UTF-8");
    assert_eq!(status("/register?path=%ZZ").await, 400, "bad escape");
    assert_eq!(
        status("/register?path=%2Fa&path=%2Fb").await,
        400,
        "repeated"
    );
    assert_eq!(
        status("/register?path=%2Fmissing").await,
        404,
        "not on the site"
    );
    // /post-sleep
    for bad in [
        "abc",
        "-1",
        "1.5",
        "9007199254740992",
        "00000000000000000001",
    ] {
        assert_eq!(
            tracker.post(&format!("/post-sleep/{bad}")).await.status,
            400,
            "{bad}"
        );
    }
    assert_eq!(
        tracker.post("/post-sleep/12345").await.status,
        404,
        "unknown token"
    );
    let token = register(&tracker, "/a").await;
    let bad_referrer = tracker
        .post(&format!("/post-sleep/{token}?referrer=%FF"))
        .await;
    assert_eq!(bad_referrer.status, 400, "a referrer that is not UTF-8");
    // /page-left
    assert_eq!(
        tracker.post(&format!("/page-left/{token}/5")).await.status,
        404,
        "not yet counted"
    );
    assert_eq!(
        tracker.post(&format!("/post-sleep/{token}")).await.status,
        200
    );
    for bad in ["abc", "-1", "1.5", "86401", "99999999999999999999", "+5"] {
        let reply = tracker.post(&format!("/page-left/{token}/{bad}")).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text());
    }
    assert_eq!(
        tracker
            .post(&format!("/page-left/{token}/86400"))
            .await
            .status,
        200,
        "a day is fine"
    );
    assert_eq!(
        tracker.post("/page-left/12345/5").await.status,
        404,
        "unknown token"
    );
    assert_eq!(
        tracker.post("/page-left/abc/5").await.status,
        400,
        "malformed token"
    );
    // Methods
    let wrong = client::send(
        tracker.addr,
        RequestSpec::new(Method::DELETE, "/register?path=%2Fa"),
    )
    .await;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("GET, OPTIONS"));
    assert_eq!(tracker.post("/register?path=%2Fa").await.status, 405);
    assert_eq!(tracker.post("/health").await.status, 405);
    let unrouted = tracker.get("/nothing-here").await;
    assert_eq!(unrouted.status, 404);
    assert_eq!(
        unrouted.header("x-content-type-options"),
        Some("nosniff"),
        "early answers too"
    );
    // Errors are short plain text, and nothing above changed the data but the one visit.
    let reply = tracker.get("/register").await;
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.text(), "missing query parameter: path\n");
    assert_eq!(visits(&db).await, vec![("/a".into(), None, Some(86400))]);
    assert_eq!(site.hits("/missing"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_allows_the_tracked_origin_only() {
    let (tracker, site, db) = tracker_for(&["/a"]).await;
    let preflight = client::send(
        tracker.addr,
        RequestSpec::new(Method::OPTIONS, "/post-sleep/1")
            .header("origin", site.origin())
            .header("access-control-request-method", "POST"),
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some(site.origin().as_str())
    );
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("GET, POST, OPTIONS")
    );
    assert_eq!(preflight.header("vary"), Some("Origin"));

    let from_site = client::send(
        tracker.addr,
        RequestSpec::new(Method::GET, "/register?path=%2Fa").header("origin", site.origin()),
    )
    .await;
    assert_eq!(from_site.status, 200);
    assert_eq!(
        from_site.header("access-control-allow-origin"),
        Some(site.origin().as_str())
    );
    assert_eq!(from_site.header("vary"), Some("Origin"));
    assert_eq!(
        from_site.header("access-control-expose-headers"),
        Some("Retry-After"),
        "count.js may read how long to wait"
    );
    assert!(from_site.header("set-cookie").is_none());

    let foreign = client::send(
        tracker.addr,
        RequestSpec::new(Method::GET, "/register?path=%2Fb")
            .header("origin", "https://evil.example"),
    )
    .await;
    assert_eq!(foreign.status, 403);
    assert_eq!(
        foreign.header("access-control-allow-origin"),
        Some(site.origin().as_str()),
        "never echoed"
    );
    assert_eq!(
        site.hits("/b"),
        0,
        "a foreign page cannot make the tracker ask the site"
    );

    let token = register(&tracker, "/a").await;
    let foreign_count = client::send(
        tracker.addr,
        RequestSpec::new(Method::POST, &format!("/post-sleep/{token}")).header("origin", "null"),
    )
    .await;
    assert_eq!(foreign_count.status, 403);
    assert!(
        visits(&db).await.is_empty(),
        "nothing counted from a foreign origin"
    );

    let error = tracker.get("/register").await;
    assert_eq!(
        error.header("access-control-allow-origin"),
        Some(site.origin().as_str()),
        "errors too"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn count_js_has_the_base_url_and_revalidates_with_its_etag() {
    let (database, site, config) = common::setup().await;
    let _ = database;
    let tracker = Tracker::start(
        &config
            .set("OXITRAFFIC_BASE_URL", "https://stats.example.org/")
            .set("OXITRAFFIC_MIN_DELAY_SECS", "7"),
    );
    let script = tracker.get("/count.js").await;
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        script.header("access-control-allow-origin"),
        Some(site.origin().as_str())
    );
    assert!(script.header("cache-control").unwrap().contains("max-age"));
    let source = script.text();
    assert!(
        source.contains("const base = \"https://stats.example.org\";"),
        "{source}"
    );
    assert!(
        source.contains("const delay = 8000;"),
        "min_delay_secs + 1 seconds"
    );
    assert!(!source.contains("cookie") && !source.contains("localStorage"));

    let etag = script.header("etag").unwrap().to_string();
    let revalidated = client::send(
        tracker.addr,
        RequestSpec::new(Method::GET, "/count.js").header("if-none-match", etag),
    )
    .await;
    assert_eq!(revalidated.status, 304);
    assert!(revalidated.body.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn forty_racing_post_sleeps_count_one_visit() {
    let (tracker, _site, db) = tracker_for(&["/race"]).await;
    let token = register(&tracker, "/race").await;
    let mut racers = JoinSet::new();
    for _ in 0..40 {
        let addr = tracker.addr;
        racers.spawn(async move {
            client::post(addr, &format!("/post-sleep/{token}"))
                .await
                .status
        });
    }
    let statuses = racers.join_all().await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 404).count(),
        39,
        "{statuses:?}"
    );
    assert_eq!(visits(&db).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_slot_rejects_the_stale_token_instead_of_misattributing() {
    let (database, site, config) = common::setup().await;
    site.add_page("/old").add_page("/new");
    let tracker = Tracker::start(&config.set("OXITRAFFIC_VISITOR_SLOTS", "16"));
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    let db = PgCluster::shared().connect(&database).await;
    // Pending visits are never evicted early, but a counted visit's slot is free to reuse.
    let stale = register(&tracker, "/old").await;
    assert_eq!(
        tracker.post(&format!("/post-sleep/{stale}")).await.status,
        200
    );
    let mut newer = Vec::new();
    for _ in 0..16 {
        newer.push(register(&tracker, "/new").await);
    }
    assert_eq!(
        tracker.get("/register?path=%2Fnew").await.status,
        503,
        "every slot holds a pending visit"
    );
    assert_eq!(
        tracker.post(&format!("/page-left/{stale}/30")).await.status,
        404
    );
    assert_eq!(
        tracker.post(&format!("/post-sleep/{stale}")).await.status,
        404
    );
    for token in &newer {
        assert_eq!(
            tracker.post(&format!("/post-sleep/{token}")).await.status,
            200
        );
    }
    let mut expected = vec![("/old".to_string(), None, None)];
    expected.extend(vec![("/new".to_string(), None, None); 16]);
    assert_eq!(
        visits(&db).await,
        expected,
        "no visit was given to /old, no time to another visit"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn guessed_tokens_count_nothing() {
    let (tracker, _site, db) = tracker_for(&["/a"]).await;
    let real = register(&tracker, "/a").await;
    let mut guesses = JoinSet::new();
    for i in 0..500u64 {
        let addr = tracker.addr;
        // Neighbours of a real token (below the instance bits, 48–52: another instance's
        // token is 421) and arbitrary numbers.
        let guess = if i < 250 {
            real ^ (1 << (16 + i % 32))
        } else {
            i * 1_000_003
        };
        guesses.spawn(async move {
            client::post(addr, &format!("/post-sleep/{guess}"))
                .await
                .status
        });
    }
    assert!(guesses.join_all().await.iter().all(|s| *s == 404));
    assert!(visits(&db).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_paths_never_reach_another_host() {
    let (tracker, site, db) = tracker_for(&[]).await;
    site.every_path_exists();
    let canary = Site::start();
    let canary_host = canary.addr.to_string();
    let hostile = [
        format!("//{canary_host}/x"),
        format!("/%2F{canary_host}/x"),
        format!("http://{canary_host}/"),
        format!("/@{canary_host}/"),
        format!("/x@{canary_host}"),
        format!("/\\\\{canary_host}/x"),
        format!("/..//{canary_host}"),
        format!("/%2e%2e/%2e%2e/{canary_host}"),
        format!("/x%0D%0AHost:%20{canary_host}"),
        format!("https:{canary_host}"),
    ];
    for path in &hostile {
        let reply = tracker
            .get(&format!("/register?path={}", encode(path)))
            .await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text());
    }
    // Accepted paths that look like hosts are only ever paths on the tracked site.
    for path in [
        format!("/{canary_host}"),
        format!("/{canary_host}:80/x"),
        "/%3A%3Ax".to_string(),
    ] {
        let reply = tracker
            .get(&format!("/register?path={}", encode(&path)))
            .await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }
    assert!(
        canary.requests().is_empty(),
        "the canary was contacted: {:?}",
        canary.requests()
    );
    let asked = site.requests();
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert!(
        asked
            .iter()
            .all(|target| target.starts_with('/') && !target.starts_with("//")),
        "{asked:?}"
    );
    assert!(visits(&db).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn made_up_paths_cost_the_site_one_request_each_and_nothing_on_repeat() {
    let (tracker, site, _db) = tracker_for(&["/real"]).await;
    for round in 0..3 {
        for i in 0..20 {
            let reply = tracker.get(&format!("/register?path=%2Fmade-up-{i}")).await;
            assert_eq!(reply.status, 404, "round {round}");
        }
    }
    for i in 0..20 {
        assert_eq!(site.hits(&format!("/made-up-{i}")), 1);
    }
    assert_eq!(site.requests().len(), 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_first_registrations_share_one_check() {
    let (tracker, site, _db) = tracker_for(&["/slow"]).await;
    site.delay(Duration::from_millis(500));
    let mut registrations = JoinSet::new();
    for _ in 0..20 {
        let addr = tracker.addr;
        registrations
            .spawn(async move { client::get(addr, "/register?path=%2Fslow").await.status });
    }
    assert!(registrations.join_all().await.iter().all(|s| *s == 200));
    assert_eq!(site.hits("/slow"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_not_followed_and_unreachable_sites_are_503() {
    let (tracker, site, _db) = tracker_for(&["/target"]).await;
    let canary = Site::start();
    canary.every_path_exists();
    site.redirect("/moved", &canary.url("/moved"));
    assert_eq!(tracker.get("/register?path=%2Fmoved").await.status, 404);
    assert!(canary.requests().is_empty(), "the redirect was followed");

    let (database, _site, config) = common::setup().await;
    let _ = database;
    let unreachable =
        Tracker::start(&config.set("OXITRAFFIC_TRACKED_ORIGIN_CALLBACK", "http://127.0.0.1:9"));
    unreachable
        .wait_for_health(200, Duration::from_secs(15))
        .await;
    let reply = unreachable.get("/register?path=%2Fa").await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.header("retry-after"), Some("2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_site_gets_a_bounded_wait() {
    let (database, site, config) = common::setup().await;
    let _ = database;
    site.add_page("/slow").delay(Duration::from_secs(5));
    let tracker = Tracker::start(&config.set("OXITRAFFIC_PATH_CHECK_TIMEOUT_MS", "300"));
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    let started = Instant::now();
    assert_eq!(tracker.get("/register?path=%2Fslow").await.status, 503);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn https_callback_origins_work() {
    let (database, _plain, config) = common::setup().await;
    let site = Site::start_https();
    site.add_page("/secure");
    let tracker = Tracker::start(
        &config
            .set("OXITRAFFIC_TRACKED_ORIGIN_CALLBACK", site.origin())
            .set("SSL_CERT_FILE", Site::CA_FILE),
    );
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    register(&tracker, "/secure").await;
    assert_eq!(tracker.get("/register?path=%2Fnope").await.status, 404);
    assert_eq!(site.hits("/secure"), 1);
    let db = PgCluster::shared().connect(&database).await;
    let paths: i64 = db
        .query_one("SELECT count(*) FROM paths", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(paths, 1);

    // Without the test CA, the certificate is not trusted: no verdict, so 503.
    let (_database, _plain, config) = common::setup().await;
    let untrusting = Tracker::start(
        &config
            .set("OXITRAFFIC_TRACKED_ORIGIN_CALLBACK", site.origin())
            .set(
                "SSL_CERT_FILE",
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/localhost.pem"),
            ),
    );
    untrusting
        .wait_for_health(200, Duration::from_secs(15))
        .await;
    assert_eq!(untrusting.get("/register?path=%2Fsecure").await.status, 503);
}

#[tokio::test(flavor = "multi_thread")]
async fn referrer_rules() {
    let (tracker, site, db) = tracker_for(&["/r"]).await;
    let long = format!("https://search.example/{}", "q".repeat(3000));
    let cases = [
        (None, None),
        (Some(site.url("/elsewhere?x=1")), None),
        (
            Some("https://example.net/a/b?utm=1#f".to_string()),
            Some("https://example.net/a/b"),
        ),
        (
            Some("http://user:pw@blog.example/p".to_string()),
            Some("http://blog.example/p"),
        ),
        (Some("not a url".to_string()), None),
        (Some(long), Some("https://search.example/")),
    ];
    for (referrer, _) in &cases {
        let token = register(&tracker, "/r").await;
        let query = referrer
            .as_ref()
            .map(|r| format!("?referrer={}", encode(r)))
            .unwrap_or_default();
        let reply = tracker.post(&format!("/post-sleep/{token}{query}")).await;
        assert_eq!(
            reply.status,
            200,
            "the visit is never lost over its referrer: {}",
            reply.text()
        );
    }
    let stored: Vec<Option<String>> = visits(&db).await.into_iter().map(|(_, r, _)| r).collect();
    let expected: Vec<Option<String>> = cases.iter().map(|(_, e)| e.map(str::to_string)).collect();
    assert_eq!(stored, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_answers_503_and_the_retry_counts_once() {
    let cluster = PgCluster::start();
    let database = cluster.create_database().await;
    let site = Site::start();
    site.add_page("/a");
    let tracker = Tracker::start(&TrackerConfig::new(&cluster, &database, &site.origin()));
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    let token = register(&tracker, "/a").await;
    let counted_before = register(&tracker, "/a").await;
    assert_eq!(
        tracker
            .post(&format!("/post-sleep/{counted_before}"))
            .await
            .status,
        200
    );

    cluster.stop();
    let started = Instant::now();
    let reply = tracker.post(&format!("/post-sleep/{token}")).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        tracker
            .post(&format!("/page-left/{counted_before}/9"))
            .await
            .status,
        503
    );
    let reply = tracker.get("/register?path=%2Fa").await;
    assert_eq!(
        reply.status, 200,
        "known paths register from memory during an outage"
    );

    cluster.restart();
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    assert_eq!(
        tracker.post(&format!("/post-sleep/{token}")).await.status,
        200,
        "the token survived"
    );
    assert_eq!(
        tracker.post(&format!("/post-sleep/{token}")).await.status,
        404
    );
    let db = cluster.connect(&database).await;
    assert_eq!(visits(&db).await.len(), 2, "each visit exactly once");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_an_in_flight_registration_finish() {
    let (_database, site, config) = common::setup().await;
    site.add_page("/slow").delay(Duration::from_millis(1500));
    let mut tracker = Tracker::start(&config);
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    let addr = tracker.addr;
    let in_flight = tokio::spawn(async move { client::get(addr, "/register?path=%2Fslow").await });
    while site.hits("/slow") == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = tracker.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let reply = in_flight.await.unwrap();
    assert_eq!(
        reply.status,
        200,
        "the request accepted before SIGTERM was answered: {}",
        reply.text()
    );
}
