//! PostgreSQL: supervised connections, migrations, and every statement the tracker runs.
//!
//! All SQL lives under this module, one file per table family ([`paths`], [`visits`],
//! [`rollups`], [`snapshots`]), each owning its statements and its row decoding; handlers get
//! typed values, never a `Row`.
//!
//! A tokio-postgres `Client` never reconnects by itself, so each connection is owned by a
//! supervisor task that connects, migrates, prepares every statement, publishes the ready
//! connection, and when the connection dies withdraws it and reconnects with capped
//! exponential backoff. Request handlers never wait for a connection: they take the current
//! one or get [`Unavailable`] at once (a 503), so an outage cannot pile up hung requests.
//!
//! Connections are lanes by kind of work, because tokio-postgres runs one connection's
//! statements in order: a slow dashboard query must not delay a visit batch, a `/health`
//! ping or a path check, and a retention batch must not delay anything a visitor waits for.
//! - `writes`: the visit writer's batches, the views flush, path registration, `/health`.
//! - `reads` (two): dashboard and API queries; the less busy one is taken, so two heavy
//!   queries use both of PostgreSQL's cores instead of queueing.
//! - `maintenance`: retention, token pruning, live counts of other instances.

mod migrate;
pub mod paths;
pub mod rollups;
pub mod snapshots;
mod statistics;
pub mod visits;
pub mod writer;

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_postgres::{Client, NoTls};

pub use migrate::{MigrationError, Outcome as MigrationOutcome, migrate};

use crate::config::DbConfig;
use crate::metrics::Metrics;
use crate::zone::Zone;

/// Backoff between reconnection attempts: doubles from the first value up to the cap, so a
/// restarted database is picked up within a couple of seconds without hammering it.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(2);
/// How long `/health` waits for the database to answer.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a maintenance statement may run (a retention batch is meant to take milliseconds).
const MAINTENANCE_STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The database cannot be reached right now; the supervisor is reconnecting.
#[derive(Debug, Clone, Copy)]
pub struct Unavailable;

/// A query failed: logged where it happened, a 503 for the client.
impl From<tokio_postgres::Error> for Unavailable {
    fn from(error: tokio_postgres::Error) -> Unavailable {
        tracing::warn!(error = %crate::logging::Chain(&error), "a database query failed");
        Unavailable
    }
}

/// A ready connection with its statements prepared.
pub struct Conn {
    client: Client,
    paths: paths::Statements,
    visits: visits::Statements,
    rollups: rollups::Statements,
    snapshots: snapshots::Statements,
    statistics: statistics::Statements,
}

impl Conn {
    async fn prepare(client: Client) -> Result<Conn, tokio_postgres::Error> {
        Ok(Conn {
            paths: paths::Statements::prepare(&client).await?,
            visits: visits::Statements::prepare(&client).await?,
            rollups: rollups::Statements::prepare(&client).await?,
            snapshots: snapshots::Statements::prepare(&client).await?,
            statistics: statistics::Statements::prepare(&client).await?,
            client,
        })
    }

    /// Answers when the database does.
    pub async fn ping(&self) -> Result<(), tokio_postgres::Error> {
        self.client.simple_query("").await.map(drop)
    }
}

/// The next row of a result read one row at a time (`query_raw`).
async fn next_row(
    mut rows: std::pin::Pin<&mut tokio_postgres::RowStream>,
) -> Option<Result<tokio_postgres::Row, tokio_postgres::Error>> {
    std::future::poll_fn(|cx| futures_core::Stream::poll_next(rows.as_mut(), cx)).await
}

/// The configuration stopped the start-up at the database (a zone PostgreSQL does not know, a
/// schema newer than this binary): retrying cannot help, the operator must act.
#[derive(Debug)]
pub struct Fatal(pub String);

/// Settings every connection is opened with.
#[derive(Clone)]
pub struct ConnectOptions {
    pg: tokio_postgres::Config,
    schema: String,
    zone: Zone,
    statement_timeout: Duration,
}

impl ConnectOptions {
    /// `statement_timeout` bounds every statement a request waits for.
    pub fn new(
        db: &DbConfig,
        schema: &str,
        zone: Zone,
        statement_timeout: Duration,
    ) -> ConnectOptions {
        let mut pg = tokio_postgres::Config::new();
        if db.host.starts_with('/') {
            pg.host_path(&db.host);
        } else {
            pg.host(&db.host);
        }
        pg.port(db.port)
            .user(&db.username)
            .password(&db.password)
            .dbname(&db.database)
            .application_name("oxitraffic")
            .connect_timeout(Duration::from_secs(5))
            .keepalives(true)
            // A vanished server (power loss, a cut network) is noticed within about a minute.
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3);
        ConnectOptions {
            pg,
            schema: schema.to_string(),
            zone,
            statement_timeout,
        }
    }

    /// The schema (validated by the configuration as a plain lower-case identifier).
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Opens a connection for `lane`, migrates the schema and prepares the statements. The
    /// returned future drives the connection and ends when it is lost.
    async fn open(
        &self,
        lane: Kind,
    ) -> Result<
        (
            Conn,
            impl Future<Output = Result<(), tokio_postgres::Error>> + use<>,
        ),
        MigrationError,
    > {
        let mut pg = self.pg.clone();
        let timeout = match lane {
            Kind::Reads | Kind::Writes => self.statement_timeout,
            Kind::Maintenance => MAINTENANCE_STATEMENT_TIMEOUT,
        };
        // JIT compilation costs more than it saves on statements of milliseconds. The pages
        // table aggregates a year of every path at once: memory enough that its hash table
        // stays off the disk (PostgreSQL takes it only while such a query runs).
        let work_mem = match lane {
            Kind::Reads => " -c work_mem=32MB",
            Kind::Writes | Kind::Maintenance => "",
        };
        pg.options(format!(
            "-c search_path={} -c statement_timeout={} -c jit=off{work_mem}",
            self.schema,
            timeout.as_millis()
        ));
        let (mut client, connection) = pg.connect(NoTls).await?;
        let driver = tokio::spawn(connection);
        let ready = async {
            migrate(&mut client, &self.schema, &self.zone).await?;
            Ok::<_, MigrationError>(Conn::prepare(client).await?)
        }
        .await;
        match ready {
            Ok(conn) => {
                let driver = async move { driver.await.unwrap_or(Ok(())) };
                Ok((conn, driver))
            }
            Err(error) => {
                driver.abort();
                Err(error)
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Writes,
    Reads,
    Maintenance,
}

/// One supervised connection.
struct Lane {
    name: &'static str,
    kind: Kind,
    current: RwLock<Option<Arc<Conn>>>,
    /// Bumped on every successful (re)connection, so other parts can react to it.
    connected: watch::Sender<u64>,
}

impl Lane {
    fn new(name: &'static str, kind: Kind) -> Arc<Lane> {
        Arc::new(Lane {
            name,
            kind,
            current: RwLock::new(None),
            connected: watch::Sender::new(0),
        })
    }

    fn get(&self) -> Result<Arc<Conn>, Unavailable> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(Unavailable)
    }

    fn set(&self, conn: Option<Arc<Conn>>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = conn;
    }
}

/// Handle to the database; cheap to clone. The supervisors stop when the last handle is dropped.
#[derive(Clone)]
pub struct Db {
    writes: Arc<Lane>,
    reads: [Arc<Lane>; 2],
    maintenance: Arc<Lane>,
}

impl Db {
    /// Starts supervising the connections; returns at once, connected or not. A problem that
    /// retrying cannot solve is sent on `fatal`.
    pub fn start(
        options: ConnectOptions,
        metrics: Arc<Metrics>,
        fatal: mpsc::UnboundedSender<Fatal>,
    ) -> Db {
        let db = Db {
            writes: Lane::new("writes", Kind::Writes),
            reads: [
                Lane::new("reads", Kind::Reads),
                Lane::new("reads", Kind::Reads),
            ],
            maintenance: Lane::new("maintenance", Kind::Maintenance),
        };
        for lane in [&db.writes, &db.reads[0], &db.reads[1], &db.maintenance] {
            tokio::spawn(supervise(
                Arc::downgrade(lane),
                options.clone(),
                metrics.clone(),
                fatal.clone(),
            ));
        }
        db
    }

    /// A connection for dashboard and API queries: the one fewer requests are using.
    pub fn reads(&self) -> Result<Arc<Conn>, Unavailable> {
        let [a, b] = &self.reads;
        match (a.get(), b.get()) {
            (Ok(a), Ok(b)) => Ok(if Arc::strong_count(&a) <= Arc::strong_count(&b) {
                a
            } else {
                b
            }),
            (Ok(conn), Err(_)) | (Err(_), Ok(conn)) => Ok(conn),
            (Err(error), Err(_)) => Err(error),
        }
    }

    /// The connection of the visit writer, path registration and `/health`.
    pub fn writes(&self) -> Result<Arc<Conn>, Unavailable> {
        self.writes.get()
    }

    /// The connection for background upkeep.
    pub fn maintenance(&self) -> Result<Arc<Conn>, Unavailable> {
        self.maintenance.get()
    }

    /// Changes each time the first reads connection is (re)established.
    pub fn connected(&self) -> watch::Receiver<u64> {
        self.reads[0].connected.subscribe()
    }

    /// True when every lane is connected and the database answers within a short time, on
    /// the maintenance lane: neither a dashboard query keeping the reads busy nor a batch of
    /// visits waiting for a row another instance holds makes it unhealthy (a load balancer
    /// would take a working instance out of service for it).
    pub async fn is_healthy(&self) -> bool {
        let lanes = [&self.reads[0], &self.reads[1], &self.writes];
        if lanes.iter().any(|lane| lane.get().is_err()) {
            return false;
        }
        let Ok(conn) = self.maintenance() else {
            return false;
        };
        matches!(
            tokio::time::timeout(PING_TIMEOUT, conn.ping()).await,
            Ok(Ok(()))
        )
    }
}

async fn supervise(
    lane: Weak<Lane>,
    options: ConnectOptions,
    metrics: Arc<Metrics>,
    fatal: mpsc::UnboundedSender<Fatal>,
) {
    let mut retry = FIRST_RETRY;
    let mut failures: u32 = 0;
    let mut connected_before = false;
    loop {
        let (name, kind) = match lane.upgrade() {
            Some(lane) => (lane.name, lane.kind),
            None => return,
        };
        match options.open(kind).await {
            Ok((conn, driver)) => {
                let Some(strong) = lane.upgrade() else { return };
                tracing::info!(connection = name, "connected to the database");
                if connected_before {
                    metrics.database_reconnect();
                }
                connected_before = true;
                strong.set(Some(Arc::new(conn)));
                strong.connected.send_modify(|generation| *generation += 1);
                // Hold only the weak reference while the connection runs, so dropping the
                // last `Db` closes the client, which ends the driver and this task.
                drop(strong);
                retry = FIRST_RETRY;
                failures = 0;
                let outcome = driver.await;
                let Some(strong) = lane.upgrade() else { return };
                strong.set(None);
                match outcome {
                    Ok(()) => tracing::warn!(
                        connection = name,
                        "the database closed the connection; reconnecting"
                    ),
                    Err(error) => {
                        tracing::warn!(connection = name, error = %crate::logging::Chain(&error), "lost the database connection; reconnecting")
                    }
                }
            }
            Err(error) if error.is_fatal() => {
                let _ = fatal.send(Fatal(error.to_string()));
                return;
            }
            Err(error) => {
                failures += 1;
                // Say it loudly once, then quietly while the outage lasts.
                if failures == 1 {
                    tracing::warn!(connection = name, error = %crate::logging::Chain(&error), "cannot connect to the database; retrying");
                } else {
                    tracing::debug!(connection = name, error = %crate::logging::Chain(&error), attempt = failures, "still cannot connect");
                }
            }
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(MAX_RETRY);
    }
}
