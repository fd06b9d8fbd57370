//! oxitraffic: a self-hosted, privacy-respecting website traffic tracker.
//!
//! The binary is a thin shell around [`run`]; tests and benchmarks drive the same code.

pub mod config;
pub mod db;
pub mod http;
pub mod logging;
pub mod routes;
pub mod server;

use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::Config;

/// Everything a request handler can reach.
pub struct App {
    pub config: Config,
    pub db: db::Db,
    pub routes: routes::Routes,
}

/// Serves on `listener` until `shutdown` completes, then finishes in-flight requests.
/// The database is connected in the background: the server answers (with 503 where the
/// database is needed) while PostgreSQL is still unreachable.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) {
    let db = db::Db::start(db::ConnectOptions::new(&config.db, config.utc_offset));
    let app = Arc::new(App {
        config,
        db,
        routes: routes::Routes::new(),
    });
    server::serve(listener, app, shutdown).await;
    tracing::info!("stopped");
}
