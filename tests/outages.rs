//! Failures under load: PostgreSQL restarted while visitors are being counted, and SIGTERM
//! while requests are in flight. The promise: every visit acknowledged with 200 is stored
//! exactly once, and a visit the script retried after a 503 counts exactly once.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::client;
use common::{PgCluster, Site, Tracker, TrackerConfig};
use tokio::task::JoinSet;

#[derive(Default)]
struct Outcomes {
    /// Tokens whose post-sleep was answered 200.
    acknowledged: Vec<u64>,
    /// Post-sleeps answered 503 (then retried).
    unavailable: usize,
    /// Anything else a visitor saw: must stay empty.
    unexpected: Vec<String>,
}

/// A visitor behaving like count.js: register, wait out the delay, post-sleep with retries
/// while the answer is 503 (or the connection fails).
async fn visitor(addr: SocketAddr, until: Instant, outcomes: Arc<Mutex<Outcomes>>) {
    while Instant::now() < until {
        let Ok(register) = tokio::time::timeout(
            Duration::from_secs(5),
            client::try_get(addr, "/register?path=%2F"),
        )
        .await
        else {
            continue;
        };
        let token = match register {
            Ok(reply) if reply.status == 200 => reply.text(),
            Ok(reply) if reply.status == 503 => continue,
            Ok(reply) => {
                outcomes
                    .lock()
                    .unwrap()
                    .unexpected
                    .push(format!("register {}", reply.status));
                continue;
            }
            // The server is shutting down.
            Err(_) => return,
        };
        // Visitors stay a moment, as people do; the delay is 0 here.
        tokio::time::sleep(Duration::from_millis(100)).await;
        for _ in 0..100 {
            match client::try_post(addr, &format!("/post-sleep/{token}")).await {
                Ok(reply) if reply.status == 200 => {
                    outcomes
                        .lock()
                        .unwrap()
                        .acknowledged
                        .push(token.parse().unwrap());
                    break;
                }
                Ok(reply) if reply.status == 503 => {
                    outcomes.lock().unwrap().unavailable += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(reply) => {
                    outcomes.lock().unwrap().unexpected.push(format!(
                        "post-sleep {}: {}",
                        reply.status,
                        reply.text()
                    ));
                    break;
                }
                Err(_) => return,
            }
        }
    }
}

/// The token of every stored visit (a visit's token is kept beside it for a day); a visit
/// without one would be a duplicate written around the idempotency check.
async fn stored_tokens(db: &tokio_postgres::Client) -> Vec<u64> {
    let tokens: Vec<u64> = db
        .query(
            "SELECT t.token FROM visits v JOIN visit_tokens t ON t.visit_id = v.id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i64>(0) as u64)
        .collect();
    let visits: i64 = db
        .query_one("SELECT count(*) FROM visits", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(visits as usize, tokens.len(), "every visit has its token");
    tokens
}

fn assert_each_acknowledged_visit_stored_once(acknowledged: &[u64], stored: &[u64]) {
    let stored_set: HashSet<u64> = stored.iter().copied().collect();
    assert_eq!(stored_set.len(), stored.len(), "a visit was stored twice");
    let acknowledged_set: HashSet<u64> = acknowledged.iter().copied().collect();
    assert_eq!(
        acknowledged_set.len(),
        acknowledged.len(),
        "a token was acknowledged twice"
    );
    let lost: Vec<_> = acknowledged_set.difference(&stored_set).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_restart_under_load_loses_nothing_acknowledged() {
    let cluster = PgCluster::start();
    let database = cluster.create_database().await;
    let site = Site::start();
    site.add_page("/");
    let tracker = Tracker::start(&TrackerConfig::new(&cluster, &database, &site.origin()));
    tracker.wait_for_health(200, Duration::from_secs(15)).await;

    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let until = Instant::now() + Duration::from_secs(7);
    let mut visitors = JoinSet::new();
    for _ in 0..40 {
        visitors.spawn(visitor(tracker.addr, until, outcomes.clone()));
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    cluster.stop();
    tracker.wait_for_health(503, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.restart();
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    visitors.join_all().await;

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    assert!(outcomes.unexpected.is_empty(), "{:?}", outcomes.unexpected);
    assert!(
        outcomes.unavailable > 0,
        "the outage was felt (and retried)"
    );
    assert!(
        outcomes.acknowledged.len() > 40,
        "visits were counted: {}",
        outcomes.acknowledged.len()
    );
    let db = cluster.connect(&database).await;
    let stored = stored_tokens(&db).await;
    assert_each_acknowledged_visit_stored_once(&outcomes.acknowledged, &stored);
    assert_eq!(
        stored.len(),
        outcomes.acknowledged.len(),
        "nothing unacknowledged was stored either"
    );
    let total: i64 = db
        .query_one("SELECT visits FROM paths WHERE path = '/'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, stored.len() as i64, "the counters agree");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_loses_nothing_acknowledged() {
    let (database, site, config) = common::setup().await;
    site.add_page("/");
    let mut tracker = Tracker::start(&config);
    tracker.wait_for_health(200, Duration::from_secs(15)).await;

    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let until = Instant::now() + Duration::from_secs(30);
    let mut visitors = JoinSet::new();
    for _ in 0..40 {
        visitors.spawn(visitor(tracker.addr, until, outcomes.clone()));
    }
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let status = tracker.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    visitors.join_all().await;

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    assert!(outcomes.unexpected.is_empty(), "{:?}", outcomes.unexpected);
    assert!(
        outcomes.acknowledged.len() >= 40,
        "visits were counted: {}",
        outcomes.acknowledged.len()
    );
    let db = PgCluster::shared().connect(&database).await;
    assert_each_acknowledged_visit_stored_once(&outcomes.acknowledged, &stored_tokens(&db).await);
}
