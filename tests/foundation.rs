//! The foundation: configuration at start-up, migrations, `/health` across a database outage,
//! and graceful shutdown — all against the real binary and a real PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use common::{PgCluster, Tracker, TrackerConfig};
use oxitraffic::zone::Zone;

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

const ALL_VERSIONS: [i32; 4] = [1, 2, 3, 4];

fn utc() -> Zone {
    Zone::Fixed(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_apply_once_and_running_them_again_changes_nothing() {
    let cluster = PgCluster::shared();
    let database = cluster.create_database().await;
    let mut client = cluster.connect(&database).await;

    let first = oxitraffic::db::migrate(&mut client, "oxitraffic", &utc())
        .await
        .unwrap();
    assert_eq!(first.applied, ALL_VERSIONS);
    let before = schema_snapshot(&client).await;
    assert!(
        before.contains("column visits.registered_at timestamp with time zone"),
        "{before}"
    );
    assert!(before.contains("trigger visits_inserted"), "{before}");
    assert!(
        !before.contains("daily_visits"),
        "version 1 counters are gone"
    );

    let second = oxitraffic::db::migrate(&mut client, "oxitraffic", &utc())
        .await
        .unwrap();
    assert!(second.applied.is_empty());
    assert!(!second.zone_changed);
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
            oxitraffic::db::migrate(&mut client, "oxitraffic", &utc())
                .await
                .unwrap()
        }));
    }
    let mut applied = Vec::new();
    for run in runs {
        applied.extend(run.await.unwrap().applied);
    }
    assert_eq!(
        applied, ALL_VERSIONS,
        "exactly one of the four instances applied the migrations"
    );
}

/// A new database on the shared cluster, migrated to the newest schema in UTC.
async fn migrated_database() -> (&'static PgCluster, String, tokio_postgres::Client) {
    let cluster = PgCluster::shared();
    let database = cluster.create_database().await;
    let mut client = cluster.connect(&database).await;
    oxitraffic::db::migrate(&mut client, "oxitraffic", &utc())
        .await
        .unwrap();
    (cluster, database, client)
}

async fn path_days(client: &tokio_postgres::Client) -> Vec<(i32, String, i64)> {
    let rows = client
        .query(
            "SELECT path_id, day::text, visits::int8 FROM path_days ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn roll_ups_follow_visits_and_a_new_zone_counts_new_days_only() {
    let (_, _, mut client) = migrated_database().await;
    client
        .batch_execute(
            "INSERT INTO paths (path) VALUES ('/a'), ('/b');
             INSERT INTO visits (path_id, registered_at, referrer, spent_time_seconds) VALUES
               (1, '2024-01-28 23:30:00+00', 'https://news.example/', NULL),
               (1, '2024-01-28 12:00:00+00', NULL, 25),
               (2, '2024-01-29 00:10:00+00', 'https://news.example/', 700);
             UPDATE visits SET spent_time_seconds = 50 WHERE registered_at = '2024-01-28 23:30:00+00';",
        )
        .await
        .unwrap();
    assert_eq!(
        path_days(&client).await,
        vec![(1, "2024-01-28".into(), 2), (2, "2024-01-29".into(), 1)]
    );
    let site: Vec<(String, i64, Vec<i32>)> = client
        .query(
            "SELECT day::text, visits, ARRAY[spent_2, spent_4, spent_10] FROM site_days ORDER BY day",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    // 25 s → [20, 30) is bucket 2; 50 s → [45, 60) is bucket 4; 700 s → [600, 1200) is bucket 10.
    assert_eq!(
        site,
        vec![
            ("2024-01-28".into(), 2, vec![1, 1, 0]),
            ("2024-01-29".into(), 1, vec![0, 0, 1])
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

    // At +01:00 a visit at 23:30 UTC belongs to the next day; days already counted stay.
    let outcome = oxitraffic::db::migrate(&mut client, "oxitraffic", &Zone::Fixed(3600))
        .await
        .unwrap();
    assert!(outcome.zone_changed);
    assert_eq!(
        path_days(&client).await,
        vec![(1, "2024-01-28".into(), 2), (2, "2024-01-29".into(), 1)],
        "nothing is rebuilt"
    );
    client
        .batch_execute(
            "INSERT INTO visits (path_id, registered_at) VALUES (2, '2024-01-29 23:30:00+00')",
        )
        .await
        .unwrap();
    assert_eq!(
        path_days(&client).await,
        vec![
            (1, "2024-01-28".into(), 2),
            (2, "2024-01-29".into(), 1),
            (2, "2024-01-30".into(), 1)
        ]
    );
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

/// Four writers, as four instances are: each adds a visit to every path (paths in its own
/// order, some on yesterday), moves times on page of its own visits and flushes views of
/// every path, as separate statements like the tracker's. Roll-up rows are shared by all of
/// them; PostgreSQL must never find a deadlock (before sql/0004 it did, in every benchmark
/// run with two instances) and the totals must add up.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_never_deadlock_and_add_up() {
    let (cluster, database, client) = migrated_database().await;
    client
        .batch_execute("INSERT INTO paths (path) SELECT '/p' || i FROM generate_series(1, 24) i")
        .await
        .unwrap();
    const WRITERS: i64 = 4;
    const ROUNDS: i64 = 40;
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let client = cluster.connect(&database).await;
        writers.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let order = if (writer + round) % 2 == 0 { "ASC" } else { "DESC" };
                let statements = [
                    format!(
                        "INSERT INTO visits (path_id, registered_at, referrer, utm_source)
                         SELECT id, now() - (id % 2) * interval '1 day',
                                'https://r' || ((id + {round}) % 3) || '.example/', 'news'
                         FROM paths ORDER BY id {order}"
                    ),
                    format!(
                        "UPDATE visits SET spent_time_seconds = {round} * 37 % 4000
                         WHERE id % {WRITERS} = {writer}"
                    ),
                    format!(
                        "SELECT flush_views(array_agg(id ORDER BY id {order}),
                                            array_agg(current_date - DATE '1970-01-01' ORDER BY id {order}),
                                            array_agg(1::int8 ORDER BY id {order}),
                                            array_agg(1::int8 ORDER BY id {order}),
                                            ARRAY[current_date - DATE '1970-01-01', current_date - DATE '1970-01-02'],
                                            ARRAY[1, 1]::int8[], ARRAY[1, 1]::int8[])
                         FROM paths"
                    ),
                ];
                for statement in &statements {
                    client.simple_query(statement).await.map_err(|error| {
                        format!("writer {writer}, round {round}: {error:?}")
                    })?;
                }
            }
            Ok::<(), String>(())
        }));
    }
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    let row = client
        .query_one(
            "SELECT (SELECT sum(visits)::int8 FROM path_days), (SELECT sum(visits)::int8 FROM site_days),
                    (SELECT sum(views)::int8 FROM path_days), (SELECT count(*) FROM visits),
                    (SELECT sum(spent_0 + spent_1 + spent_2 + spent_3 + spent_4 + spent_5 + spent_6
                              + spent_7 + spent_8 + spent_9 + spent_10 + spent_11 + spent_12
                              + spent_13)::int8 FROM site_days),
                    (SELECT count(*) FROM visits WHERE spent_time_seconds IS NOT NULL)",
            &[],
        )
        .await
        .unwrap();
    let visits = WRITERS * ROUNDS * 24;
    assert_eq!(row.get::<_, i64>(3), visits);
    assert_eq!(row.get::<_, i64>(0), visits, "path_days visits");
    assert_eq!(row.get::<_, i64>(1), visits, "site_days visits");
    assert_eq!(row.get::<_, i64>(2), visits, "one view per path per flush");
    assert_eq!(
        row.get::<_, i64>(4),
        row.get::<_, i64>(5),
        "every reported time is in exactly one histogram bucket"
    );
}
