//! Restarts that lose nothing (SPEC §11): tokens issued before a graceful restart still
//! count (pending ones once, counted ones can still report their time), a crash loses only
//! the pending visits, and a token of another instance is refused with 421.

mod common;

use std::time::Duration;

use common::{PgCluster, Tracker, TrackerConfig};

async fn started(config: &TrackerConfig) -> Tracker {
    let tracker = Tracker::start(config);
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    tracker
}

async fn register(tracker: &Tracker) -> String {
    let reply = tracker.get("/register?path=%2F").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

async fn visits(db: &tokio_postgres::Client) -> Vec<Option<i32>> {
    db.query("SELECT spent_time_seconds FROM visits ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_issued_before_a_graceful_restart_work_after_it_once() {
    let (database, site, config) = common::setup().await;
    site.add_page("/");
    let config = config.set("OXITRAFFIC_MIN_DELAY_SECS", "1");
    let mut tracker = started(&config).await;
    let pending = register(&tracker).await;
    let counted = register(&tracker).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        tracker.post(&format!("/post-sleep/{counted}")).await.status,
        200
    );
    let early = register(&tracker).await;

    assert!(tracker.terminate(Duration::from_secs(20)).success());
    assert!(
        tracker
            .logs()
            .contains("saved the pending visitors for the next start saved=3"),
        "{}",
        tracker.logs()
    );
    let tracker = started(&config).await;
    assert!(
        tracker
            .logs()
            .contains("restored the pending visitors of the last run restored=3"),
        "{}",
        tracker.logs()
    );
    assert_eq!(
        tracker.post(&format!("/post-sleep/{pending}")).await.status,
        200
    );
    assert_eq!(
        tracker.post(&format!("/post-sleep/{pending}")).await.status,
        404,
        "once"
    );
    assert_eq!(
        tracker
            .post(&format!("/page-left/{counted}/33"))
            .await
            .status,
        200
    );
    // The last registration keeps its age across the restart: too early still, if the
    // restart took less than the delay, then counted.
    let first_try = tracker.post(&format!("/post-sleep/{early}")).await.status;
    if first_try == 425 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            tracker.post(&format!("/post-sleep/{early}")).await.status,
            200
        );
    } else {
        assert_eq!(first_try, 200);
    }
    let db = PgCluster::shared().connect(&database).await;
    let mut stored = visits(&db).await;
    stored.sort();
    assert_eq!(stored, vec![None, None, Some(33)]);
    // New tokens after the restart never collide with the restored ones.
    let fresh = register(&tracker).await;
    assert!(![&pending, &counted, &early].contains(&&fresh));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_loses_only_the_pending_visits() {
    let (database, site, config) = common::setup().await;
    site.add_page("/");
    let config = config.set("OXITRAFFIC_MIN_DELAY_SECS", "0");
    let tracker = started(&config).await;
    let counted = register(&tracker).await;
    assert_eq!(
        tracker.post(&format!("/post-sleep/{counted}")).await.status,
        200
    );
    let pending = register(&tracker).await;
    drop(tracker); // SIGKILL: nothing saved
    let tracker = started(&config).await;
    assert_eq!(
        tracker.post(&format!("/post-sleep/{pending}")).await.status,
        404
    );
    assert_eq!(
        tracker
            .post(&format!("/page-left/{counted}/5"))
            .await
            .status,
        404
    );
    let db = PgCluster::shared().connect(&database).await;
    assert_eq!(visits(&db).await, vec![None], "the counted visit is stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_of_another_instance_is_misdirected() {
    let (_database, site, config) = common::setup().await;
    site.add_page("/");
    let zero = started(&config.clone().set("OXITRAFFIC_MIN_DELAY_SECS", "0")).await;
    let one = started(
        &config
            .set("OXITRAFFIC_MIN_DELAY_SECS", "0")
            .set("OXITRAFFIC_INSTANCE", "1"),
    )
    .await;
    let token = register(&zero).await;
    assert_eq!(token.parse::<u64>().unwrap() >> 48, 0);
    let misdirected = one.post(&format!("/post-sleep/{token}")).await;
    assert_eq!(misdirected.status, 421, "{}", misdirected.text());
    assert_eq!(one.post(&format!("/page-left/{token}/5")).await.status, 421);
    // It counted nothing: the right instance still counts it.
    assert_eq!(zero.post(&format!("/post-sleep/{token}")).await.status, 200);
    let theirs = register(&one).await;
    assert_eq!(theirs.parse::<u64>().unwrap() >> 48, 1);
    assert_eq!(
        site.hits("/"),
        1,
        "instance 1 found the path in the database"
    );
}
