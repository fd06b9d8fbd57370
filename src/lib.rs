//! oxitraffic: a self-hosted, privacy-respecting website traffic tracker.
//!
//! The binary is a thin shell around [`run`]; tests and benchmarks drive the same code.

pub mod access;
pub mod api;
pub mod clients;
pub mod clock;
pub mod config;
pub mod cors;
pub mod counting;
pub mod dashboard;
pub mod db;
pub mod forwarded;
pub mod http;
pub mod keyed;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod paths;
pub mod query;
pub mod referrer;
pub mod routes;
pub mod script;
pub mod server;
pub mod slots;
pub mod time;

use std::sync::Arc;

use hyper::header::HeaderValue;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use config::Config;
use db::writer::{self, VisitWriter};

/// Everything a request handler can reach.
pub struct App {
    pub config: Config,
    pub db: db::Db,
    pub routes: routes::Routes,
    pub slots: slots::Slots,
    /// Pending registrations per client address (SPEC §11).
    pub clients: clients::ClientLimiter,
    pub registry: paths::Registry,
    pub writer: VisitWriter,
    pub clock: clock::Clock,
    /// `count.js`, with this tracker's base URL and delay baked in.
    pub script: http::Cached,
    /// `Access-Control-Allow-Origin` for the script endpoints.
    pub cors_origin: HeaderValue,
    pub dashboard: dashboard::Pages,
    /// Permits for `/api/history` streams, each of which holds a database connection.
    pub history_streams: Arc<Semaphore>,
    /// Permits to hold a full path list (see [`App::all_paths`]).
    pub path_lists: Arc<Semaphore>,
}

/// This instance's number in tokens (SPEC §11 `instance`; a setting to come).
const INSTANCE: u8 = 0;
/// Pending registrations a client may hold (SPEC §11 `max_pending_per_client`; a setting to
/// come).
const MAX_PENDING_PER_CLIENT: u32 = 256;
/// How long a pending visit is safe from eviction, and the time a client's pending budget
/// takes to drain.
const PENDING_PROTECT: std::time::Duration = std::time::Duration::from_secs(300);
const PENDING_PROTECT_TICKS: u32 = PENDING_PROTECT.as_secs() as u32 * clock::TICKS_PER_SEC;

/// Pages that list every path at once; each holds the whole list until its response is sent.
/// Memory all full path lists together may use, counted in units; the lists of a small site
/// take one unit each, so many load at once (and share the database connection's pipeline),
/// while those of a site with tens of thousands of paths take many and queue.
const PATH_LIST_UNITS: u32 = 64;
const PATH_LIST_UNIT_BYTES: usize = 64 * 1024;
/// A path in a list (its text and entry) plus the response's chunk buffers, generously.
const PATH_LIST_BYTES_PER_PATH: usize = 96;
const PATH_LIST_RESPONSE_BYTES: usize = 64 * 1024;

impl App {
    /// Every path with its visits, for `/` and `/api/counts`. The lists in memory at once fit
    /// a fixed budget, so a crowd loading the dashboard of a large site waits a moment
    /// instead of multiplying memory; the permit must be kept until the list is dropped.
    pub async fn all_paths(&self) -> Result<(db::PathList, OwnedSemaphorePermit), http::HttpError> {
        let bytes = self.registry.len() * PATH_LIST_BYTES_PER_PATH + PATH_LIST_RESPONSE_BYTES;
        let units = bytes
            .div_ceil(PATH_LIST_UNIT_BYTES)
            .clamp(1, PATH_LIST_UNITS as usize) as u32;
        let permit = self
            .path_lists
            .clone()
            .acquire_many_owned(units)
            .await
            .expect("the semaphore is never closed");
        let conn = self.db.reads()?;
        let list = db::PathList::load(&conn).await.map_err(|error| {
            tracing::warn!(error = %logging::Chain(&error), "could not list the paths");
            http::HttpError::from(db::Unavailable)
        })?;
        Ok((list, permit))
    }
}

/// Serves on `listener` until `shutdown` completes, then finishes in-flight requests and
/// writes every visit they accepted. The database is connected in the background: the
/// server answers (with 503 where the database is needed) while PostgreSQL is unreachable.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) {
    let db = db::Db::start(db::ConnectOptions::new(&config.db, config.utc_offset));
    let (writer, writer_task) = VisitWriter::start(db.clone());
    let checker = paths::check::PathChecker::new(
        config.tracked_origin_callback.clone(),
        config.path_check_timeout,
    );
    let app = Arc::new(App {
        db: db.clone(),
        routes: routes::Routes::new(),
        slots: slots::Slots::new(
            config.visitor_slots as usize,
            INSTANCE,
            PENDING_PROTECT_TICKS,
            slots::SlotKeys::random(),
        ),
        clients: clients::ClientLimiter::new(
            MAX_PENDING_PER_CLIENT,
            PENDING_PROTECT,
            keyed::Key::random(),
        ),
        registry: paths::Registry::new(checker, config.max_paths as usize),
        writer: writer.clone(),
        clock: clock::Clock::new(),
        script: script::count_js(&config.base_url, config.min_delay_secs),
        dashboard: dashboard::Pages::new(),
        history_streams: Arc::new(Semaphore::new(api::MAX_HISTORY_STREAMS)),
        path_lists: Arc::new(Semaphore::new(PATH_LIST_UNITS as usize)),
        cors_origin: HeaderValue::from_str(config.tracked_origin.as_str())
            .expect("a validated origin is a valid header"),
        config,
    });
    let loader = tokio::spawn(load_paths_on_connect(app.clone()));

    server::serve(listener, app, shutdown).await;

    loader.abort();
    writer.stop().await;
    if tokio::time::timeout(writer::STOP_GRACE, writer_task)
        .await
        .is_err()
    {
        tracing::warn!("the visit writer did not finish in time");
    }
    tracing::info!("stopped");
}

/// Fills the path registry from the database each time the connection is (re)established,
/// so known paths are answered from memory without asking the site again.
async fn load_paths_on_connect(app: Arc<App>) {
    let mut connected = app.db.connected();
    loop {
        if connected.changed().await.is_err() {
            return;
        }
        let Ok(conn) = app.db.reads() else { continue };
        match load_paths(&app, &conn).await {
            Ok(()) => tracing::info!(paths = app.registry.len(), "loaded known paths"),
            Err(error) => {
                tracing::warn!(error = %crate::logging::Chain(&error), "could not load the known paths")
            }
        }
    }
}

/// Reads the paths row by row, so a site with many paths never holds them all as rows.
async fn load_paths(app: &App, conn: &db::Conn) -> Result<(), tokio_postgres::Error> {
    let rows = conn
        .client
        .query_raw(&conn.statements.all_paths, std::iter::empty::<i32>())
        .await?;
    let mut rows = std::pin::pin!(rows);
    while let Some(row) = db::next_row(rows.as_mut()).await {
        let row = row?;
        app.registry
            .remember([(row.get::<_, &str>(1), row.get::<_, i32>(0))]);
    }
    Ok(())
}
