//! The visit writer: application-level group commit.
//!
//! Handlers hand visits and spent times to one task through a bounded channel and wait for
//! the answer. The task takes everything that is waiting (up to a batch limit), writes it
//! with one multi-row statement per kind, and only then answers each request — so a `200`
//! always means "committed", and a busy tracker commits hundreds of visits per round trip
//! instead of one. A visit is idempotent on its token and registration time, so a retry
//! after a lost answer finds the stored row instead of counting it again. One bad row (a
//! constraint violation) cannot fail its neighbours: the batch is retried row by row.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Conn, Db};

/// Most jobs written in one statement.
const MAX_BATCH: usize = 512;
/// Jobs waiting for the writer; beyond this, handlers wait (back-pressure).
const QUEUE: usize = 8192;

/// A visit to store.
#[derive(Debug, Clone)]
pub struct NewVisit {
    pub token: i64,
    pub path_id: i32,
    pub registered_at: SystemTime,
    pub referrer: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The database cannot be reached now; retrying later is right.
    Unavailable,
    /// The database refused this row (a constraint); retrying will not help.
    Refused,
}

enum Job {
    Visit(NewVisit, oneshot::Sender<Result<i64, WriteError>>),
    SpentTime {
        visit_id: i64,
        seconds: i32,
        reply: oneshot::Sender<Result<(), WriteError>>,
    },
    /// Everything queued before this is written; then the task ends.
    Stop,
}

#[derive(Clone)]
pub struct VisitWriter {
    jobs: mpsc::Sender<Job>,
}

impl VisitWriter {
    pub fn start(db: Db) -> (VisitWriter, JoinHandle<()>) {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(db, queue));
        (VisitWriter { jobs }, task)
    }

    /// Stores a visit and returns its id once committed.
    pub async fn insert(&self, visit: NewVisit) -> Result<i64, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Visit(visit, reply))
            .await
            .map_err(|_| WriteError::Unavailable)?;
        answer.await.unwrap_or(Err(WriteError::Unavailable))
    }

    /// Stores the time spent on a counted visit; the latest value wins.
    pub async fn set_spent_time(&self, visit_id: i64, seconds: i32) -> Result<(), WriteError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::SpentTime {
                visit_id,
                seconds,
                reply,
            })
            .await
            .map_err(|_| WriteError::Unavailable)?;
        answer.await.unwrap_or(Err(WriteError::Unavailable))
    }

    /// Lets the writer finish what was queued, then stop.
    pub async fn stop(&self) {
        let _ = self.jobs.send(Job::Stop).await;
    }
}

async fn run(db: Db, mut queue: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut visits = Vec::new();
    let mut spent = Vec::new();
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let mut stop = false;
        for job in jobs.drain(..) {
            match job {
                Job::Visit(visit, reply) => visits.push((visit, reply)),
                Job::SpentTime {
                    visit_id,
                    seconds,
                    reply,
                } => spent.push((visit_id, seconds, reply)),
                Job::Stop => stop = true,
            }
        }
        let conn = db.writes();
        if !visits.is_empty() {
            let outcomes = match &conn {
                Ok(conn) => write_visits(conn, visits.iter().map(|(v, _)| v)).await,
                Err(_) => vec![Err(WriteError::Unavailable); visits.len()],
            };
            for ((_, reply), outcome) in visits.drain(..).zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
        if !spent.is_empty() {
            let outcome = match &conn {
                Ok(conn) => write_spent_times(conn, spent.iter().map(|(id, s, _)| (*id, *s))).await,
                Err(_) => Err(WriteError::Unavailable),
            };
            for (_, _, reply) in spent.drain(..) {
                let _ = reply.send(outcome);
            }
        }
        if stop {
            break;
        }
    }
}

/// Classifies a failed statement: integrity and data errors belong to the rows, anything
/// else (connection lost, server shutting down) to the moment.
fn classify(error: &tokio_postgres::Error) -> WriteError {
    match error.code().map(|code| &code.code()[..2]) {
        Some("22" | "23") => WriteError::Refused,
        _ => WriteError::Unavailable,
    }
}

async fn write_visits<'a>(
    conn: &Conn,
    visits: impl ExactSizeIterator<Item = &'a NewVisit> + Clone,
) -> Vec<Result<i64, WriteError>> {
    match insert_batch(conn, visits.clone()).await {
        Ok(ids) => ids.into_iter().map(stored).collect(),
        Err(error) if classify(&error) == WriteError::Refused && visits.len() > 1 => {
            tracing::warn!(error = %crate::logging::Chain(&error), "a batch of visits was refused; writing its rows one by one");
            let mut outcomes = Vec::with_capacity(visits.len());
            for visit in visits {
                let outcome = match insert_batch(conn, std::iter::once(visit)).await {
                    Ok(ids) => stored(ids[0]),
                    Err(error) => {
                        tracing::error!(error = %crate::logging::Chain(&error), path_id = visit.path_id, "the database refused a visit");
                        Err(classify(&error))
                    }
                };
                outcomes.push(outcome);
            }
            outcomes
        }
        Err(error) => {
            tracing::warn!(error = %crate::logging::Chain(&error), visits = visits.len(), "could not write visits");
            vec![classify(&error); visits.len()]
                .into_iter()
                .map(Err)
                .collect()
        }
    }
}

/// A row that was neither inserted nor found was deleted in between: say so, don't invent an id.
fn stored(id: Option<i64>) -> Result<i64, WriteError> {
    id.ok_or(WriteError::Unavailable)
}

/// Inserts visits and returns their ids in input order, including the ids of rows an
/// earlier attempt already stored.
async fn insert_batch<'a>(
    conn: &Conn,
    visits: impl Iterator<Item = &'a NewVisit> + Clone,
) -> Result<Vec<Option<i64>>, tokio_postgres::Error> {
    let tokens: Vec<i64> = visits.clone().map(|v| v.token).collect();
    let path_ids: Vec<i32> = visits.clone().map(|v| v.path_id).collect();
    let times: Vec<SystemTime> = visits.clone().map(|v| v.registered_at).collect();
    let referrers: Vec<Option<&str>> = visits.map(|v| v.referrer.as_deref()).collect();
    let rows = conn
        .client
        .query(
            &conn.statements.insert_visits,
            &[&tokens, &path_ids, &times, &referrers],
        )
        .await?;
    let mut ids: HashMap<i64, i64> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    if ids.len() < tokens.len() {
        let (missing_tokens, missing_times): (Vec<i64>, Vec<SystemTime>) = tokens
            .iter()
            .zip(&times)
            .filter(|(token, _)| !ids.contains_key(token))
            .map(|(t, r)| (*t, *r))
            .unzip();
        let rows = conn
            .client
            .query(
                &conn.statements.find_visits,
                &[&missing_tokens, &missing_times],
            )
            .await?;
        ids.extend(
            rows.iter()
                .map(|row| (row.get::<_, i64>(0), row.get::<_, i64>(1))),
        );
    }
    // A token is unique among pending visits, so it identifies its row within a batch.
    Ok(tokens.iter().map(|token| ids.get(token).copied()).collect())
}

async fn write_spent_times(
    conn: &Conn,
    updates: impl Iterator<Item = (i64, i32)>,
) -> Result<(), WriteError> {
    // The latest report for a visit wins; earlier ones in the same batch are dropped.
    let mut latest: HashMap<i64, i32> = HashMap::new();
    for (id, seconds) in updates {
        latest.insert(id, seconds);
    }
    let (ids, seconds): (Vec<i64>, Vec<i32>) = latest.into_iter().unzip();
    conn.client
        .execute(&conn.statements.update_spent_times, &[&ids, &seconds])
        .await
        .map(drop)
        .map_err(|error| {
            tracing::warn!(error = %crate::logging::Chain(&error), "could not write spent times");
            classify(&error)
        })
}

/// How long a stopped writer may take to finish its queue.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
