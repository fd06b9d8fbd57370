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
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::visits::NewVisit;
use super::{Conn, Db};
use crate::metrics::{BatchKind, Metrics};

/// Most jobs written in one statement.
const MAX_BATCH: usize = 512;
/// Jobs waiting for the writer; beyond this, handlers wait (back-pressure).
const QUEUE: usize = 8192;

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
    pub fn start(db: Db, metrics: Arc<Metrics>) -> (VisitWriter, JoinHandle<()>) {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(db, queue, metrics));
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

    /// Lets the writer finish what was queued, then stop. The caller bounds the wait: a hung
    /// database must not hold a shutdown forever.
    pub async fn stop(&self) {
        let _ = self.jobs.send(Job::Stop).await;
    }

    /// Jobs waiting for the writer right now.
    pub fn queued(&self) -> usize {
        QUEUE - self.jobs.capacity()
    }
}

async fn run(db: Db, mut queue: mpsc::Receiver<Job>, metrics: Arc<Metrics>) {
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
            match outcomes.iter().all(Result::is_ok) {
                true => metrics.writer_batch(BatchKind::Visits, visits.len()),
                false => metrics.writer_failure(),
            }
            for ((_, reply), outcome) in visits.drain(..).zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
        if !spent.is_empty() {
            let outcome = match &conn {
                Ok(conn) => write_spent_times(conn, spent.iter().map(|(id, s, _)| (*id, *s))).await,
                Err(_) => Err(WriteError::Unavailable),
            };
            match outcome {
                Ok(()) => metrics.writer_batch(BatchKind::SpentTimes, spent.len()),
                Err(_) => metrics.writer_failure(),
            }
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

/// A deadlock or serialization failure: another instance's writer locked the same roll-up
/// rows in between; the same statement succeeds when run again.
fn is_transient(error: &tokio_postgres::Error) -> bool {
    error
        .code()
        .is_some_and(|code| code.code().starts_with("40"))
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
/// earlier attempt already stored; a transient conflict with another writer is retried once.
async fn insert_batch<'a>(
    conn: &Conn,
    visits: impl Iterator<Item = &'a NewVisit>,
) -> Result<Vec<Option<i64>>, tokio_postgres::Error> {
    let visits: Vec<&NewVisit> = visits.collect();
    match conn.insert_visits(&visits).await {
        Err(error) if is_transient(&error) => conn.insert_visits(&visits).await,
        outcome => outcome,
    }
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
    let outcome = match conn.set_spent_times(&ids, &seconds).await {
        Err(error) if is_transient(&error) => conn.set_spent_times(&ids, &seconds).await,
        outcome => outcome,
    };
    outcome.map(drop).map_err(|error| {
        tracing::warn!(error = %crate::logging::Chain(&error), "could not write spent times");
        classify(&error)
    })
}
