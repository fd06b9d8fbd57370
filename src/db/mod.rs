//! PostgreSQL: supervised connections, migrations and prepared statements.
//!
//! A tokio-postgres `Client` never reconnects by itself, so each connection is owned by a
//! supervisor task that connects, migrates, prepares every statement, publishes the ready
//! connection, and when the connection dies withdraws it and reconnects with capped
//! exponential backoff. Request handlers never wait for a connection: they take the current
//! one or get [`Unavailable`] at once (a 503), so an outage cannot pile up hung requests.

mod migrate;
mod path_list;
mod statements;
pub mod writer;

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::{Client, NoTls};

pub use migrate::{MigrationError, Outcome as MigrationOutcome, SCHEMA, migrate};
pub use path_list::PathList;
pub use statements::Statements;

use crate::config::{DbConfig, UtcOffset};

/// Backoff between reconnection attempts: doubles from the first value up to the cap, so a
/// restarted database is picked up within a couple of seconds without hammering it.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(2);
/// How long `/health` waits for the database to answer.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The database cannot be reached right now; the supervisor is reconnecting.
#[derive(Debug, Clone, Copy)]
pub struct Unavailable;

/// A ready connection with its statements prepared.
pub struct Conn {
    pub client: Client,
    pub statements: Statements,
    /// Lower bounds in seconds of the time-on-page buckets, from the schema itself.
    pub spent_time_bounds: Vec<i32>,
}

/// The next row of a result read one row at a time (`query_raw`).
pub async fn next_row(
    mut rows: std::pin::Pin<&mut tokio_postgres::RowStream>,
) -> Option<Result<tokio_postgres::Row, tokio_postgres::Error>> {
    std::future::poll_fn(|cx| futures_core::Stream::poll_next(rows.as_mut(), cx)).await
}

impl Conn {
    /// The id and total visits of a registered path.
    pub async fn find_path(&self, path: &str) -> Result<Option<(i32, i64)>, tokio_postgres::Error> {
        let row = self
            .client
            .query_opt(&self.statements.path_by_name, &[&path])
            .await?;
        Ok(row.map(|row| (row.get(0), row.get(1))))
    }
}

/// Settings every connection is opened with.
#[derive(Clone)]
pub struct ConnectOptions {
    pg: tokio_postgres::Config,
    utc_offset: UtcOffset,
}

impl ConnectOptions {
    pub fn new(db: &DbConfig, utc_offset: UtcOffset) -> ConnectOptions {
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
            .options(format!("-c search_path={SCHEMA}"))
            .connect_timeout(Duration::from_secs(5))
            .keepalives(true)
            // A vanished server (power loss, a cut network) is noticed within about a minute.
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3);

        ConnectOptions { pg, utc_offset }
    }

    /// Opens a connection, migrates the schema and prepares the statements. The returned
    /// future drives the connection and ends when it is lost.
    pub async fn open(
        &self,
    ) -> Result<
        (
            Conn,
            impl Future<Output = Result<(), tokio_postgres::Error>> + use<>,
        ),
        MigrationError,
    > {
        let (mut client, connection) = self.pg.connect(NoTls).await?;
        let driver = tokio::spawn(connection);
        let ready = async {
            migrate(&mut client, self.utc_offset).await?;
            let statements = Statements::prepare(&client).await?;
            let bounds = client
                .query_one("SELECT spent_time_bucket_bounds()", &[])
                .await?;
            Ok::<_, MigrationError>((statements, bounds.get(0)))
        }
        .await;
        match ready {
            Ok((statements, spent_time_bounds)) => {
                let driver = async move { driver.await.unwrap_or(Ok(())) };
                Ok((
                    Conn {
                        client,
                        statements,
                        spent_time_bounds,
                    },
                    driver,
                ))
            }
            Err(error) => {
                driver.abort();
                Err(error)
            }
        }
    }
}

/// One supervised connection.
struct Lane {
    name: &'static str,
    current: RwLock<Option<Arc<Conn>>>,
    /// Bumped on every successful (re)connection, so other parts can react to it.
    connected: watch::Sender<u64>,
}

impl Lane {
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
///
/// Two connections: the visit writer's batches never queue behind a dashboard query on the
/// same connection, and the dashboard never waits for a batch to commit.
#[derive(Clone)]
pub struct Db {
    reads: Arc<Lane>,
    writes: Arc<Lane>,
    options: ConnectOptions,
}

impl Db {
    /// Starts supervising the connections; returns at once, connected or not.
    pub fn start(options: ConnectOptions) -> Db {
        let lane = |name| {
            Arc::new(Lane {
                name,
                current: RwLock::new(None),
                connected: watch::Sender::new(0),
            })
        };
        let (reads, writes) = (lane("reads"), lane("writes"));
        tokio::spawn(supervise(Arc::downgrade(&reads), options.clone()));
        tokio::spawn(supervise(Arc::downgrade(&writes), options.clone()));
        Db {
            reads,
            writes,
            options,
        }
    }

    /// A connection of its own for one long stream, so that a slow reader holds up nobody
    /// else (tokio-postgres stops reading a connection while a result is not consumed).
    /// It closes when the client is dropped.
    pub async fn dedicated(&self) -> Result<Client, Unavailable> {
        if self.reads().is_err() {
            return Err(Unavailable);
        }
        let (client, connection) = self.options.pg.connect(NoTls).await.map_err(|error| {
            tracing::warn!(error = %crate::logging::Chain(&error), "could not open a connection for a stream");
            Unavailable
        })?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// The connection for queries and occasional writes, if the database is reachable.
    pub fn reads(&self) -> Result<Arc<Conn>, Unavailable> {
        self.reads.get()
    }

    /// The visit writer's connection.
    pub fn writes(&self) -> Result<Arc<Conn>, Unavailable> {
        self.writes.get()
    }

    /// Changes each time the reads connection is (re)established.
    pub fn connected(&self) -> watch::Receiver<u64> {
        self.reads.connected.subscribe()
    }

    /// True when both connections are up and the database answers within a short time.
    pub async fn is_healthy(&self) -> bool {
        if self.writes().is_err() {
            return false;
        }
        let Ok(conn) = self.reads() else { return false };
        let ping = conn.client.query_one(&conn.statements.ping, &[]);
        matches!(tokio::time::timeout(PING_TIMEOUT, ping).await, Ok(Ok(_)))
    }
}

async fn supervise(lane: Weak<Lane>, options: ConnectOptions) {
    let mut retry = FIRST_RETRY;
    let mut failures: u32 = 0;
    loop {
        let name = match lane.upgrade() {
            Some(lane) => lane.name,
            None => return,
        };
        match options.open().await {
            Ok((conn, driver)) => {
                let Some(strong) = lane.upgrade() else { return };
                tracing::info!(connection = name, "connected to the database");
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
