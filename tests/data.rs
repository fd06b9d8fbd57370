//! The data layer v2 over real HTTP and a real PostgreSQL (SPEC §8): upgrading a round-1
//! database in place, permanent roll-ups (deletes change nothing, hand inserts count),
//! views and visitors, retention, time zones across a daylight-saving change, schemas side by
//! side in one database, and excluded paths.

mod common;

use std::time::Duration;

use common::client::encode;
use common::{PgCluster, Tracker, TrackerConfig};
use serde_json::{Value, json};

/// A database holding the round-1 schema (`sql/0001_initial.sql`: migrations are never edited
/// once released), filled through its own triggers: what an upgrade starts from.
async fn round1_database(cluster: &PgCluster) -> (String, tokio_postgres::Client) {
    let database = cluster.create_database().await;
    let db = cluster.connect(&database).await;
    db.batch_execute(&format!(
        "CREATE SCHEMA oxitraffic;
         SET search_path TO oxitraffic;
         {}
         CREATE TABLE schema_version (
             version integer PRIMARY KEY,
             description text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );
         INSERT INTO schema_version (version, description) VALUES (1, 'initial schema');",
        include_str!("../sql/0001_initial.sql")
    ))
    .await
    .unwrap();
    (database, db)
}

/// Every query parameter of `/api/*` for all time.
const ALL_TIME: &str = "from=2020-01-01&to=2029-01-01";

async fn api(tracker: &Tracker, target: &str) -> Value {
    let reply = tracker.get(target).await;
    assert_eq!(reply.status, 200, "{target}: {}", reply.text());
    reply.json()
}

/// Polls `target` until `done` holds for its JSON (the views flush runs every second).
async fn eventually(tracker: &Tracker, target: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let value = api(tracker, target).await;
        if done(&value) {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{target} never got there: {value}\n{}",
            tracker.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn config(cluster: &PgCluster, database: &str) -> TrackerConfig {
    // The tracked site is never asked in these tests: paths come from the database.
    TrackerConfig::new(cluster, database, "http://127.0.0.1:9")
        .set("OXITRAFFIC_MIN_DELAY_SECS", "0")
}

async fn started(config: &TrackerConfig) -> Tracker {
    let tracker = Tracker::start(config);
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    tracker
}

#[tokio::test(flavor = "multi_thread")]
async fn a_round1_database_upgrades_in_place_with_identical_totals_histories_and_referrers() {
    let cluster = PgCluster::shared();
    let (database, db) = round1_database(cluster).await;
    db.batch_execute(
        "INSERT INTO paths (path) VALUES ('/'), ('/blog/rust'), ('/quiet');
         INSERT INTO visits (path_id, registered_at, referrer, spent_time_seconds, token)
         SELECT 1 + i % 3, now() - (i % 400) * interval '1 day' - i * interval '1 second',
                CASE i % 4 WHEN 0 THEN 'https://news.example/item' WHEN 1 THEN 'https://search.example/' END,
                CASE WHEN i % 5 <> 0 THEN i % 900 END, i
         FROM generate_series(1, 3000) i;
         -- Round 1's DELETE trigger subtracted: these totals went down with the rows.
         DELETE FROM visits WHERE id % 50 = 0;",
    )
    .await
    .unwrap();
    // What round 1 shows, read from its own counters.
    let totals: Vec<(String, i64)> = db
        .query("SELECT path, visits FROM paths ORDER BY path", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let site_days: i64 = db
        .query_one(
            "SELECT count(*) FROM daily_visits WHERE scope = 0 AND visits <> 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let referrers: Vec<(String, i64)> = db
        .query(
            "SELECT referrer, sum(visits)::int8 FROM daily_referrers WHERE scope = 0
             GROUP BY referrer HAVING sum(visits) <> 0 ORDER BY referrer",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let histories: Vec<(String, i64)> = db
        .query(
            "SELECT p.path, count(v.*) FROM paths p LEFT JOIN visits v ON v.path_id = p.id
             GROUP BY p.path ORDER BY p.path",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();

    let tracker = started(&config(cluster, &database)).await;
    assert!(
        tracker.logs().contains("applied migration version=2"),
        "{}",
        tracker.logs()
    );

    let counts = api(&tracker, "/api/counts").await;
    let upgraded: Vec<(String, i64)> = counts
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_string(),
                c["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(upgraded, totals, "totals per path");
    let all: i64 = totals.iter().map(|t| t.1).sum();
    let summary = api(&tracker, &format!("/api/summary?{ALL_TIME}")).await;
    assert_eq!(summary["current"]["visits"], all, "{summary}");
    assert_eq!(summary["current"]["views"], 0, "round 1 kept no views");
    assert_eq!(summary["current"]["engagement"], Value::Null);
    let daily = api(&tracker, &format!("/api/daily?{ALL_TIME}")).await;
    let days_with_visits = daily
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["visits"].as_i64().unwrap() > 0)
        .count();
    assert_eq!(days_with_visits as i64, site_days, "the same days");

    let hosts = api(&tracker, &format!("/api/referrers?{ALL_TIME}")).await;
    let mut upgraded: Vec<(String, i64)> = hosts
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|h| h["referrers"].as_array().unwrap().clone())
        .map(|r| {
            (
                r["referrer"].as_str().unwrap().to_string(),
                r["visits"].as_i64().unwrap(),
            )
        })
        .collect();
    upgraded.sort();
    assert_eq!(upgraded, referrers, "referrers");

    for (path, visits) in histories {
        let history = api(&tracker, &format!("/api/history?path={}", encode(&path))).await;
        assert_eq!(
            history["visits"].as_array().unwrap().len() as i64,
            visits,
            "the history of {path}"
        );
    }
    // Time on page: the round-1 histograms came along.
    let with_times: i64 = db
        .query_one(
            "SELECT count(*) FROM visits WHERE spent_time_seconds IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(with_times > 0);
    assert!(
        summary["current"]["median_spent_seconds"]
            .as_i64()
            .is_some()
    );

    // Starting again migrates nothing.
    drop(tracker);
    let again = started(&config(cluster, &database)).await;
    assert!(
        !again.logs().contains("applied migration"),
        "{}",
        again.logs()
    );
}

/// A tracker on a fresh database whose paths `/`, `/a` and `/b` exist (ids 1–3).
async fn fresh(extra: &[(&str, &str)]) -> (Tracker, tokio_postgres::Client, String) {
    let cluster = PgCluster::shared();
    let database = cluster.create_database().await;
    let mut config = config(cluster, &database);
    for (key, value) in extra {
        config = config.set(key, *value);
    }
    let tracker = started(&config).await;
    let db = cluster.connect(&database).await;
    db.batch_execute("INSERT INTO paths (path) VALUES ('/'), ('/a'), ('/b')")
        .await
        .unwrap();
    (tracker, db, database)
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_raw_visits_changes_no_roll_up_and_hand_inserts_count() {
    let (tracker, db, _) = fresh(&[]).await;
    db.batch_execute(
        "INSERT INTO visits (path_id, registered_at, referrer, spent_time_seconds, utm_source, utm_campaign)
         SELECT 2, now() - i * interval '1 hour', 'https://news.example/x', 40, 'mail', 'spring'
         FROM generate_series(1, 24) i;",
    )
    .await
    .unwrap();
    let path_summary = format!("/api/summary?path=%2Fa&{ALL_TIME}");
    let before = api(&tracker, &path_summary).await;
    assert_eq!(
        before["current"]["visits"], 24,
        "hand inserts count: {before}"
    );
    // 40 s falls in the bucket [30, 45): the median is estimated inside it.
    let median = before["current"]["median_spent_seconds"].as_i64().unwrap();
    assert!((30..45).contains(&median), "{before}");
    let campaigns = api(&tracker, &format!("/api/campaigns?{ALL_TIME}")).await;
    assert_eq!(
        campaigns,
        json!([{"source": "mail", "medium": null, "campaign": "spring", "visits": 24}])
    );
    assert_eq!(api(&tracker, "/api/count?path=%2Fa").await, 24);

    db.batch_execute("DELETE FROM visits").await.unwrap();
    assert_eq!(
        api(&tracker, &path_summary).await,
        before,
        "deletes change nothing"
    );
    assert_eq!(api(&tracker, "/api/count?path=%2Fa").await, 24);
    let history = api(&tracker, "/api/history?path=%2Fa").await;
    assert_eq!(history["visits"], json!([]), "raw visits are gone");
    let referrers = api(&tracker, &format!("/api/referrers?{ALL_TIME}")).await;
    assert_eq!(referrers[0]["visits"], 24);

    // A changed time on page moves its histogram bucket, nothing else.
    db.batch_execute(
        "INSERT INTO visits (path_id, registered_at, spent_time_seconds) VALUES (3, now(), 5);
         UPDATE visits SET spent_time_seconds = 700 WHERE path_id = 3;",
    )
    .await
    .unwrap();
    let moved = api(&tracker, &format!("/api/summary?path=%2Fb&{ALL_TIME}")).await;
    assert_eq!(moved["current"]["visits"], 1);
    let median = moved["current"]["median_spent_seconds"].as_i64().unwrap();
    assert!((600..1200).contains(&median), "{moved}");
}

#[tokio::test(flavor = "multi_thread")]
async fn registrations_are_views_and_the_day_marker_counts_visitors() {
    let (tracker, _db, _) = fresh(&[]).await;
    let register = |marker: Option<String>| {
        let tracker = &tracker;
        async move {
            let mut spec = common::RequestSpec::new(hyper::Method::GET, "/register?path=%2Fa");
            if let Some(marker) = marker {
                spec = spec.header("if-modified-since", marker);
            }
            common::client::send(tracker.addr, spec).await
        }
    };
    let first = register(None).await;
    assert_eq!(first.status, 200);
    let marker = first
        .header("last-modified")
        .expect("a day marker")
        .to_string();
    assert!(
        first.header("cache-control").unwrap().contains("no-cache"),
        "the browser revalidates, so it sends the marker back"
    );
    // The same browser again today: a view, not a new visitor.
    for _ in 0..3 {
        assert_eq!(register(Some(marker.clone())).await.status, 200);
    }
    // A marker from an earlier day: a new visitor today.
    assert_eq!(
        register(Some("Mon, 01 Jan 2001 00:00:00 GMT".into()))
            .await
            .status,
        200
    );
    let today = api(&tracker, "/api/summary?path=%2Fa").await;
    let summary = eventually(&tracker, "/api/summary?path=%2Fa", |s| {
        s["current"]["views"] == 5
    })
    .await;
    assert_eq!(
        summary["current"]["visitors"], 2,
        "{summary} (before: {today})"
    );
    assert_eq!(summary["current"]["visits"], 0);
    assert_eq!(summary["current"]["engagement"], 0.0);

    // The site marker: once per browser and day, whatever the page.
    let site = common::client::get(tracker.addr, "/visitor").await;
    assert_eq!(site.status, 200, "{}", site.text());
    let marker = site.header("last-modified").unwrap().to_string();
    let again = common::client::send(
        tracker.addr,
        common::RequestSpec::new(hyper::Method::GET, "/visitor")
            .header("if-modified-since", marker),
    )
    .await;
    assert_eq!(again.status, 304);
    eventually(&tracker, "/api/summary", |s| s["current"]["visitors"] == 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_deletes_old_raw_visits_and_every_token_after_a_day() {
    let cluster = PgCluster::shared();
    let database = cluster.create_database().await;
    // Let the tracker create the schema, then seed it and start again with retention on.
    drop(started(&config(cluster, &database)).await);
    let db = cluster.connect(&database).await;
    db.batch_execute(
        "INSERT INTO paths (path) VALUES ('/old');
         INSERT INTO visits (path_id, registered_at)
         SELECT 1, now() - interval '10 days' - i * interval '1 minute' FROM generate_series(1, 5000) i;
         INSERT INTO visits (path_id, registered_at)
         SELECT 1, now() - i * interval '1 minute' FROM generate_series(1, 30) i;
         INSERT INTO visit_tokens (registered_at, token, visit_id)
         SELECT now() - interval '3 days', i, i FROM generate_series(1, 100) i;
         INSERT INTO visit_tokens (registered_at, token, visit_id)
         SELECT now() - interval '1 hour', i, i FROM generate_series(1, 7) i;",
    )
    .await
    .unwrap();
    let tracker = started(&config(cluster, &database).set("OXITRAFFIC_RETENTION_DAYS", "7")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left: i64 = db
            .query_one("SELECT count(*) FROM visits", &[])
            .await
            .unwrap()
            .get(0);
        let tokens: i64 = db
            .query_one("SELECT count(*) FROM visit_tokens", &[])
            .await
            .unwrap()
            .get(0);
        if left == 30 && tokens == 7 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "visits {left}, tokens {tokens}\n{}",
            tracker.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let summary = api(&tracker, &format!("/api/summary?{ALL_TIME}")).await;
    assert_eq!(
        summary["current"]["visits"], 5030,
        "roll-ups keep the history"
    );
    assert_eq!(api(&tracker, "/api/count?path=%2Fold").await, 5030);
}

async fn daily_of(tracker: &Tracker, from: &str, to: &str) -> Vec<(String, i64)> {
    api(tracker, &format!("/api/daily?from={from}&to={to}"))
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["date"].as_str().unwrap().to_string(),
                d["visits"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn days_follow_a_named_time_zone_across_daylight_saving() {
    let (tracker, db, _) = fresh(&[("OXITRAFFIC_TIME_ZONE", "Europe/Berlin")]).await;
    // Berlin moved to summer time on 2024-03-31 at 02:00 (+01:00 → +02:00).
    db.batch_execute(
        "INSERT INTO visits (path_id, registered_at) VALUES
             (2, '2024-03-30 22:59:00+00'),   -- 23:59 +01:00 on the 30th
             (2, '2024-03-30 23:30:00+00'),   -- 00:30 +01:00 on the 31st
             (2, '2024-03-31 01:30:00+00'),   -- 03:30 +02:00 on the 31st
             (2, '2024-03-31 21:59:00+00'),   -- 23:59 +02:00 on the 31st
             (2, '2024-03-31 22:00:00+00');   -- 00:00 +02:00 on April 1st",
    )
    .await
    .unwrap();
    assert_eq!(
        daily_of(&tracker, "2024-03-30", "2024-04-01").await,
        vec![
            ("2024-03-30".into(), 1),
            ("2024-03-31".into(), 3),
            ("2024-04-01".into(), 1)
        ]
    );
    let history = api(&tracker, "/api/history?path=%2Fa").await;
    assert_eq!(history["time_zone"], "Europe/Berlin");
    let times: Vec<&str> = history["visits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["registered_at"].as_str().unwrap())
        .collect();
    assert_eq!(
        times,
        vec![
            "2024-03-30T23:59:00+01:00",
            "2024-03-31T00:30:00+01:00",
            "2024-03-31T03:30:00+02:00",
            "2024-03-31T23:59:00+02:00",
            "2024-04-01T00:00:00+02:00",
        ],
        "each instant carries its own offset"
    );
    // An export of the 31st holds exactly that local day's visits.
    let export = tracker
        .get("/api/export?from=2024-03-31&to=2024-03-31&format=ndjson")
        .await;
    assert_eq!(export.status, 200);
    assert_eq!(export.text().lines().count(), 3, "{}", export.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn days_follow_a_fixed_offset_and_both_settings_at_once_are_refused() {
    let (tracker, db, database) = fresh(&[
        ("OXITRAFFIC_UTC_OFFSET__HOURS", "-3"),
        ("OXITRAFFIC_UTC_OFFSET__MINUTES", "30"),
    ])
    .await;
    db.batch_execute(
        "INSERT INTO visits (path_id, registered_at) VALUES
             (2, '2024-03-31 03:29:00+00'),   -- 23:59 -03:30 on the 30th
             (2, '2024-03-31 03:30:00+00');   -- 00:00 -03:30 on the 31st",
    )
    .await
    .unwrap();
    assert_eq!(
        daily_of(&tracker, "2024-03-30", "2024-03-31").await,
        vec![("2024-03-30".into(), 1), ("2024-03-31".into(), 1)]
    );
    let history = api(&tracker, "/api/history?path=%2Fa").await;
    assert_eq!(history["utc_offset"], "-03:30");
    assert_eq!(
        history["visits"][0]["registered_at"],
        "2024-03-30T23:59:00-03:30"
    );

    let both = config(PgCluster::shared(), &database)
        .set("OXITRAFFIC_TIME_ZONE", "Europe/Berlin")
        .set("OXITRAFFIC_UTC_OFFSET__HOURS", "2");
    let (status, output) = Tracker::run_to_exit(&both);
    assert!(!status.success());
    assert!(
        output.contains("time_zone") && output.contains("utc_offset"),
        "{output}"
    );
    let unknown =
        config(PgCluster::shared(), &database).set("OXITRAFFIC_TIME_ZONE", "Mars/Olympus_Mons");
    let (status, output) = Tracker::run_to_exit(&unknown);
    assert!(!status.success(), "{output}");
    assert!(output.contains("time_zone"), "{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_schemas_share_a_database_without_seeing_each_other() {
    let cluster = PgCluster::shared();
    let database = cluster.create_database().await;
    let first = started(&config(cluster, &database).set("OXITRAFFIC_DB__SCHEMA", "site_one")).await;
    let second =
        started(&config(cluster, &database).set("OXITRAFFIC_DB__SCHEMA", "site_two")).await;
    let db = cluster.connect(&database).await;
    db.batch_execute(
        "INSERT INTO site_one.paths (path) VALUES ('/one');
         INSERT INTO site_one.visits (path_id, registered_at) VALUES (1, now()), (1, now());
         INSERT INTO site_two.paths (path) VALUES ('/two');
         INSERT INTO site_two.visits (path_id, registered_at) VALUES (1, now());",
    )
    .await
    .unwrap();
    assert_eq!(
        api(&first, "/api/counts").await,
        json!([{"path": "/one", "count": 2}])
    );
    assert_eq!(
        api(&second, "/api/counts").await,
        json!([{"path": "/two", "count": 1}])
    );
    let schemas: i64 = db
        .query_one(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'oxitraffic'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(schemas, 0, "nothing was created in the default schema");
}

#[tokio::test(flavor = "multi_thread")]
async fn excluded_paths_are_never_checked_stored_or_counted() {
    let (database, site, config) = common::setup().await;
    site.every_path_exists();
    let tracker = started(
        &config
            .set("OXITRAFFIC_EXCLUDE_PATHS", "/admin/**, /preview/*/draft")
            .set("OXITRAFFIC_MIN_DELAY_SECS", "0"),
    )
    .await;
    for path in ["/admin", "/admin/users", "/admin/a/b", "/preview/42/draft"] {
        let reply = tracker
            .get(&format!("/register?path={}", encode(path)))
            .await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.text().trim(), "path excluded", "{path}");
    }
    for path in ["/administrator", "/preview/42/final", "/blog"] {
        let reply = tracker
            .get(&format!("/register?path={}", encode(path)))
            .await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }
    assert!(
        site.requests()
            .iter()
            .all(|r| r != "/admin" && !r.starts_with("/admin/") && !r.contains("draft")),
        "the site was never asked: {:?}",
        site.requests()
    );
    let db = PgCluster::shared().connect(&database).await;
    let stored: Vec<String> = db
        .query("SELECT path FROM paths ORDER BY path", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, vec!["/administrator", "/blog", "/preview/42/final"]);
}
