//! Background upkeep: the views flush (every second), the local day of a named zone (at each
//! midnight), retention of raw visits and idempotency tokens, and live counts shared with
//! other instances.
//!
//! Pruning runs on the maintenance connection in small batches with pauses in between (it
//! works at most a seventh of the time), under an advisory lock so that one instance prunes
//! a schema at a time. Deleting raw visits changes no roll-up: the history stays.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::App;
use crate::db::Unavailable;
use crate::live;
use crate::time;

/// How often tallied views are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often pruning looks for work.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How often the tables' planner statistics are checked (see `db::statistics`).
const STATISTICS_EVERY: Duration = Duration::from_secs(5);
/// Rows deleted per statement: a batch takes milliseconds, so ingest never waits long.
const PRUNE_BATCH: i64 = 2000;
/// After a batch that took `t`, pause `PAUSE_FACTOR × t`: pruning uses at most a seventh of
/// a database core, however much there is to delete. (A quarter, measured with benches/load
/// on two cores while 10M old rows went, cost ingest 24 %; the bar is 20 %. A backlog of
/// 10M rows still goes in well under an hour.)
const PAUSE_FACTOR: u32 = 6;
/// A visit's token is kept this long: after it the visit can no longer change (a page-left
/// reports at most a day of visible time).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(86_400 + 3600);

/// Runs the periodic jobs until `stop` turns true.
pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut exchange = tokio::time::interval(live::PUBLISH_EVERY);
    exchange.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut statistics = tokio::time::interval(STATISTICS_EVERY);
    statistics.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let pruning = tokio::spawn(prune_forever(app.clone()));
    loop {
        tokio::select! {
            _ = flush.tick() => {
                refresh_day(&app).await;
                let _ = flush_views(&app).await;
            }
            _ = exchange.tick() => {
                if let Err(Unavailable) = app.live.exchange(&app).await {
                    tracing::debug!("could not exchange live counts");
                }
            }
            _ = statistics.tick() => refresh_statistics(&app).await,
            _ = stop.changed() => break,
        }
    }
    pruning.abort();
}

/// Asks PostgreSQL for the named zone's current day when it is due (at start and after each
/// local midnight).
async fn refresh_day(app: &App) {
    if !app.days.needs_refresh(time::now_unix()) {
        return;
    }
    let Ok(conn) = app.db.maintenance() else {
        return;
    };
    match conn.local_today().await {
        Ok(day) => app.days.set(day),
        Err(error) => {
            tracing::warn!(error = %crate::logging::Chain(&error), "could not ask for the local day")
        }
    }
}

/// Writes the views and visitors tallied since the last flush; on failure they stay in
/// memory for the next one.
pub async fn flush_views(app: &App) -> Result<(), Unavailable> {
    let flush = app
        .views
        .take(app.days.today().day, |index| app.registry.db_id(index));
    if flush.tally.is_empty() {
        return Ok(());
    }
    let conn = app.db.writes()?;
    match conn.flush_views(&flush.tally).await {
        Ok(()) => {
            app.views.saved(&flush);
            app.metrics
                .writer_batch(crate::metrics::BatchKind::Views, flush.tally.paths.len());
            Ok(())
        }
        Err(error) => {
            tracing::warn!(error = %crate::logging::Chain(&error), "could not write views; keeping them for the next try");
            Err(Unavailable)
        }
    }
}

async fn refresh_statistics(app: &App) {
    let Ok(conn) = app.db.maintenance() else {
        return;
    };
    match conn.refresh_statistics().await {
        Ok(tables) if !tables.is_empty() => tracing::debug!(?tables, "analysed"),
        Ok(_) => {}
        Err(error) => {
            tracing::debug!(error = %crate::logging::Chain(&error), "could not refresh statistics")
        }
    }
}

async fn prune_forever(app: Arc<App>) {
    loop {
        if let Err(Unavailable) = prune(&app).await {
            tracing::debug!("pruning postponed: database unavailable");
        }
        tokio::time::sleep(PRUNE_EVERY).await;
    }
}

/// One round: expired tokens, then visits past the retention period, batch by batch.
async fn prune(app: &App) -> Result<(), Unavailable> {
    let conn = app.db.maintenance()?;
    if !conn.try_lock_pruning().await? {
        return Ok(());
    }
    let token_cutoff = SystemTime::now() - TOKEN_LIFETIME;
    let tokens = prune_in_batches(|| conn.prune_tokens(token_cutoff, PRUNE_BATCH)).await;
    let visits = match app.config.retention_days {
        0 => Ok(0),
        days => {
            let cutoff = SystemTime::now() - Duration::from_secs(u64::from(days) * 86_400);
            prune_in_batches(|| conn.prune_visits(cutoff, PRUNE_BATCH)).await
        }
    };
    let _ = conn.unlock_pruning().await;
    let (tokens, visits) = (tokens?, visits?);
    if visits > 0 {
        tracing::info!(visits, "deleted raw visits past the retention period");
    }
    if tokens > 0 {
        tracing::debug!(tokens, "deleted expired visit tokens");
    }
    Ok(())
}

/// Runs `batch` until it deletes less than a full batch, pausing between batches.
async fn prune_in_batches<F, Fut>(mut batch: F) -> Result<u64, Unavailable>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, tokio_postgres::Error>>,
{
    let mut total = 0;
    loop {
        let started = Instant::now();
        let deleted = batch().await?;
        total += deleted;
        if deleted < PRUNE_BATCH as u64 {
            return Ok(total);
        }
        tokio::time::sleep(started.elapsed() * PAUSE_FACTOR).await;
    }
}
