//! The foundation: configuration at start-up, migrations, `/health` across a database outage,
//! and graceful shutdown — all against the real binary and a real PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use common::{PgCluster, Tracker, TrackerConfig};
use oxitraffic::config::UtcOffset;

/// Everything a migration could change, as text: tables, columns, indexes, functions,
/// triggers and the recorded versions.
async fn schema_snapshot(client: &tokio_postgres::Client) -> String {
    let rows = client
        .query(
            "SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type
               FROM information_schema.columns WHERE table_schema = 'oxitraffic'
             UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'oxitraffic'
             UNION ALL SELECT 'function ' || p.proname || ' ' || md5(p.prosrc)
               FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'oxitraffic'
             UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'oxitraffic' AND NOT t.tgisinternal
             UNION ALL SELECT 'version ' || version || ' ' || description FROM oxitraffic.schema_version
             UNION ALL SELECT 'settings ' || utc_offset_minutes FROM oxitraffic.settings
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|row| row.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_apply_once_and_running_them_again_changes_nothing() {
    let cluster = PgCluster::shared();
    let database = cluster.create_database().await;
    let mut client = cluster.connect(&database).await;

    let first = oxitraffic::db::migrate(&mut client, UtcOffset::default())
        .await
        .unwrap();
    assert_eq!(first.applied, vec![1]);
    assert!(!first.counters_rebuilt);
    let before = schema_snapshot(&client).await;
    assert!(
        before.contains("column visits.registered_at timestamp with time zone"),
        "{before}"
    );
    assert!(before.contains("trigger visits_inserted"), "{before}");

    let second = oxitraffic::db::migrate(&mut client, UtcOffset::default())
        .await
        .unwrap();
    assert!(second.applied.is_empty());
    assert_eq!(schema_snapshot(&client).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_migrations_apply_each_version_exactly_once() {
    let cluster = PgCluster::shared();
    let database = cluster.create_database().await;
    let mut runs = Vec::new();
    for _ in 0..4 {
        let mut client = cluster.connect(&database).await;
        runs.push(tokio::spawn(async move {
            oxitraffic::db::migrate(&mut client, UtcOffset::default())
                .await
                .unwrap()
        }));
    }
    let mut applied = Vec::new();
    for run in runs {
        applied.extend(run.await.unwrap().applied);
    }
    assert_eq!(
        applied,
        vec![1],
        "exactly one of the four instances applied the migration"
    );
}

async fn daily(client: &tokio_postgres::Client) -> Vec<(i32, String, i64)> {
    let rows = client
        .query(
            "SELECT scope, day::text, visits FROM daily_visits WHERE visits <> 0 ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_follow_visits_and_are_rebuilt_when_the_offset_changes() {
    let cluster = PgCluster::shared();
    let database = cluster.create_database().await;
    let mut client = cluster.connect(&database).await;
    oxitraffic::db::migrate(&mut client, UtcOffset::default())
        .await
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO paths (path) VALUES ('/a'), ('/b');
             INSERT INTO visits (path_id, registered_at, referrer, spent_time_seconds, token) VALUES
               (1, '2024-01-28 23:30:00+00', 'https://news.example', NULL, 1),
               (1, '2024-01-28 12:00:00+00', NULL, 25, 2),
               (2, '2024-01-29 00:10:00+00', 'https://news.example', 700, 3);
             UPDATE visits SET spent_time_seconds = 50 WHERE token = 1;",
        )
        .await
        .unwrap();
    let utc = daily(&client).await;
    assert_eq!(
        utc,
        vec![
            (0, "2024-01-28".into(), 2),
            (0, "2024-01-29".into(), 1),
            (1, "2024-01-28".into(), 2),
            (2, "2024-01-29".into(), 1)
        ]
    );
    let spent: Vec<(i32, i16, i64)> = client
        .query(
            "SELECT scope, bucket, visits FROM daily_spent_time WHERE visits <> 0 ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    // 25 s → [20, 30) is bucket 2; 50 s → [45, 60) is bucket 4; 700 s → [600, 1200) is bucket 10.
    assert_eq!(
        spent,
        vec![
            (0, 2, 1),
            (0, 4, 1),
            (0, 10, 1),
            (1, 2, 1),
            (1, 4, 1),
            (2, 10, 1)
        ]
    );
    let totals: Vec<i64> = client
        .query("SELECT visits FROM paths ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(totals, vec![2, 1]);

    // At +01:00 the 23:30 UTC visit belongs to the 29th.
    let outcome = oxitraffic::db::migrate(&mut client, UtcOffset::from_minutes(60))
        .await
        .unwrap();
    assert!(outcome.counters_rebuilt);
    assert_eq!(
        daily(&client).await,
        vec![
            (0, "2024-01-28".into(), 1),
            (0, "2024-01-29".into(), 2),
            (1, "2024-01-28".into(), 1),
            (1, "2024-01-29".into(), 1),
            (2, "2024-01-29".into(), 1)
        ]
    );
    let totals: Vec<i64> = client
        .query("SELECT visits FROM paths ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(totals, vec![2, 1], "totals survive the rebuild");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_is_503_during_a_database_outage_and_recovers_without_a_restart() {
    let cluster = PgCluster::start();
    let database = cluster.create_database().await;
    let site = common::Site::start();
    let tracker = Tracker::start(&TrackerConfig::new(&cluster, &database, &site.origin()));
    tracker.wait_for_health(200, Duration::from_secs(15)).await;

    cluster.stop();
    let stopped = Instant::now();
    tracker.wait_for_health(503, Duration::from_secs(5)).await;
    // While the database is down, answers come at once instead of hanging.
    let started = Instant::now();
    assert_eq!(tracker.get("/health").await.status, 503);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a 503 took {:?}",
        started.elapsed()
    );

    cluster.restart();
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    assert!(stopped.elapsed() < Duration::from_secs(30));
    let logs = tracker.logs();
    assert!(
        logs.contains("lost the database connection") || logs.contains("closed the connection"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn starts_without_a_database_and_becomes_healthy_when_it_appears() {
    let cluster = PgCluster::start();
    let database = cluster.create_database().await;
    cluster.stop();
    let site = common::Site::start();
    let tracker = Tracker::start(&TrackerConfig::new(&cluster, &database, &site.origin()));
    assert_eq!(tracker.get("/health").await.status, 503);
    cluster.restart();
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_setting_stops_the_start_with_one_clear_line() {
    let (database, site, config) = common::setup().await;
    let _ = (database, site);
    let (status, output) = Tracker::run_to_exit(&config.unset("OXITRAFFIC_BASE_URL"));
    assert!(!status.success());
    assert_eq!(
        output.trim(),
        "oxitraffic: missing required setting `base_url`: set it as `base_url` in the config file named by \
         OXITRAFFIC_CONFIG_FILE, or with the environment variable OXITRAFFIC_BASE_URL"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_setting_stops_the_start_without_a_panic() {
    let (_database, _site, config) = common::setup().await;
    let (status, output) = Tracker::run_to_exit(&config.set("OXITRAFFIC_MIN_DELAY", "3"));
    assert_eq!(status.code(), Some(1));
    assert!(
        output.starts_with("oxitraffic: unknown environment variable OXITRAFFIC_MIN_DELAY"),
        "{output}"
    );
    assert!(
        !output.contains("panicked") && !output.contains("backtrace"),
        "{output}"
    );
    assert_eq!(output.lines().count(), 1, "{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_the_config_file_named_by_the_environment() {
    let (_database, _site, config) = common::setup().await;
    let file = std::env::temp_dir().join(format!("oxitraffic-config-{}.toml", std::process::id()));
    std::fs::write(&file, "min_delay_secs = 2\n[utc_offset]\nhours = 25\n").unwrap();
    let (status, output) =
        Tracker::run_to_exit(&config.set("OXITRAFFIC_CONFIG_FILE", file.to_str().unwrap()));
    std::fs::remove_file(&file).unwrap();
    assert!(!status.success());
    assert!(
        output.contains("`utc_offset.hours` in the config file"),
        "the file was read: {output}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_shuts_down_gracefully_with_exit_code_0() {
    let (_database, _site, config) = common::setup().await;
    let mut tracker = Tracker::start(&config);
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    // An idle keep-alive connection must not hold the shutdown up.
    let idle = tokio::net::TcpStream::connect(tracker.addr).await.unwrap();
    let status = tracker.terminate(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    assert!(
        tracker.logs().contains("received SIGTERM"),
        "{}",
        tracker.logs()
    );
    assert!(
        tokio::net::TcpStream::connect(tracker.addr).await.is_err(),
        "the listener is closed"
    );
    drop(idle);
}
