//! Shared test harness: a real PostgreSQL, a fake tracked website, the real binary and an
//! HTTP client. Each test binary uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code, unused_imports)]

pub mod browser;
pub mod client;
pub mod pg;
pub mod site;
pub mod tracker;

pub use client::{Reply, RequestSpec};
pub use pg::PgCluster;
pub use site::Site;
pub use tracker::{Tracker, TrackerConfig};

/// A database on the shared cluster, a fake site and a configuration tying them together.
pub async fn setup() -> (String, Site, TrackerConfig) {
    let cluster = PgCluster::shared();
    let database = cluster.create_database().await;
    let site = Site::start();
    let config = TrackerConfig::new(cluster, &database, &site.origin());
    (database, site, config)
}
