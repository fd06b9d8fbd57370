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
pub mod insights;
pub mod keyed;
pub mod live;
pub mod logging;
pub mod maintenance;
pub mod memory;
pub mod metrics;
pub mod paths;
pub mod query;
pub mod referrer;
pub mod routes;
pub mod script;
pub mod server;
pub mod slots;
pub mod streams;
pub mod time;
pub mod views;
pub mod zone;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hyper::header::HeaderValue;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

pub use config::Config;
use db::snapshots::{SavedSlot, SavedState, SlotSnapshot};
use db::writer::VisitWriter;
use db::{Db, Fatal};

/// Everything a request handler can reach.
pub struct App {
    pub config: Config,
    pub db: Db,
    pub routes: routes::Routes,
    pub slots: slots::Slots,
    pub clients: clients::ClientLimiter,
    pub registry: paths::Registry,
    pub views: views::Views,
    pub writer: VisitWriter,
    /// Monotonic ticks, for delays.
    pub clock: clock::Clock,
    /// The local day, for views, visitors and default ranges.
    pub days: zone::DayClock,
    /// `count.js`, with this tracker's base URL and delay baked in.
    pub script: http::Cached,
    pub openapi: http::Cached,
    /// `Access-Control-Allow-Origin` for the script endpoints.
    pub cors_origin: HeaderValue,
    pub access: access::Gate,
    pub metrics: Arc<metrics::Metrics>,
    pub dashboard: dashboard::Pages,
    pub pages: Arc<insights::pages::PagesCache>,
    /// Referrers and campaigns of long ranges, kept while the roll-ups are unchanged.
    pub insights: insights::cache::ResultCache,
    pub live: live::Live,
    /// Permits for streamed downloads.
    pub streams: streams::StreamPermits,
}

impl App {
    /// The client-limiter bucket of a request's client: the peer, or the address a trusted
    /// proxy forwarded for.
    pub fn client_bucket(&self, headers: &hyper::HeaderMap, peer: forwarded::Peer) -> u16 {
        let trusted = &self.config.trusted_proxies;
        let client = forwarded::client_ip(peer.0, headers, |address| {
            trusted.iter().any(|net| net.contains(address))
        });
        self.clients.bucket(client)
    }
}

/// A header value for the life of the process, from configuration. Script responses carry
/// the tracked origin, and cloning a value made at run time bumps a reference count that
/// every core updates on every response; a static value clones for free. Leaked once per
/// app: a few dozen bytes.
fn static_header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).expect("a validated origin is a valid header");
    HeaderValue::from_static(Box::leak(value.to_owned().into_boxed_str()))
}

/// A pending visit is never evicted for another before this much time has passed (SPEC
/// §12), longer when the delay itself is longer: a visitor who opened the page keeps the
/// slot until counted.
fn pending_protection(config: &Config) -> Duration {
    live::WINDOW.max(Duration::from_secs(
        2 * (u64::from(config.min_delay_secs) + 1),
    ))
}

/// How long the start waits for the database to restore the tokens of the last run before
/// serving without them.
const RESTORE_WAIT: Duration = Duration::from_secs(10);
/// Each final database step of a shutdown may take this long: with the in-flight requests'
/// grace (see `server`), a shutdown ends within 15 s even when the database hangs.
const FINAL_STEP: Duration = Duration::from_secs(1);
/// From the shutdown signal to the end of the last database step (`server::SHUTDOWN_GRACE`
/// and five final steps at most). Saving the visitor slots may use what the steps before it
/// left: a busy instance saves its whole slot table, and 65,536 rows can take more than a
/// second.
const SHUTDOWN_WITHIN: Duration = Duration::from_secs(14);

/// Serves on `listener` until `shutdown` completes, then finishes in-flight requests, writes
/// what they accepted and saves the pending visitors for the next start. The database is
/// connected in the background: the server answers (with 503 where the database is needed)
/// while PostgreSQL is unreachable. An error is a problem with the configuration that the
/// database revealed (an unknown time zone); the process should exit with it.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let zone = match &config.time_zone {
        Some(name) => zone::Zone::Named(name.clone()),
        None => zone::Zone::Fixed(config.utc_offset.total_minutes() * 60),
    };
    let (fatal_tx, mut fatal) = mpsc::unbounded_channel::<Fatal>();
    let metrics = Arc::new(metrics::Metrics::new(routes::names()));
    let db = Db::start(
        db::ConnectOptions::new(
            &config.db,
            &config.db.schema,
            zone.clone(),
            config.request_timeout,
        ),
        metrics.clone(),
        fatal_tx,
    );
    let (writer, writer_task) = VisitWriter::start(db.clone(), metrics.clone());
    let checker = paths::check::PathChecker::new(
        config.tracked_origin_callback.clone(),
        config.path_check_timeout,
    );
    let registry = paths::Registry::new(
        checker,
        config.max_paths as usize,
        config.exclude_paths.clone(),
        metrics.clone(),
    );
    let clock = clock::Clock::new();
    // Subscribed before the first connection can happen, so no (re)connection is missed.
    let mut connected = db.connected();
    let (slots, paths_loaded) = tokio::select! {
        restored = restore_slots(&config, &db, &registry, &clock) => restored,
        Some(Fatal(message)) = fatal.recv() => return Err(message),
    };
    if paths_loaded {
        // The connections the start waited for are loaded already; reload on the next.
        connected.borrow_and_update();
    }
    let protection = pending_protection(&config);
    let access = access::Gate::new(
        access::Policy {
            dashboard: config.access.dashboard == config::Visibility::Private,
            api: config.access.api == config::Visibility::Private,
            metrics: config.access.metrics == config::Visibility::Private,
        },
        access::Credentials {
            username: config.access.username.clone(),
            password_hash: config.access.password_hash.clone(),
            api_tokens: config.access.api_tokens.clone(),
        },
    )?;
    let app = Arc::new(App {
        db: db.clone(),
        routes: routes::Routes::new(),
        clients: clients::ClientLimiter::new(
            config.max_pending_per_client,
            protection,
            keyed::Key::random(),
        ),
        views: views::Views::new(config.max_paths as usize),
        slots,
        registry,
        writer: writer.clone(),
        clock,
        days: zone::DayClock::new(zone),
        script: script::count_js(&config.base_url, config.min_delay_secs),
        openapi: api::openapi_document(),
        cors_origin: static_header(config.tracked_origin.as_str()),
        access,
        metrics,
        dashboard: dashboard::Pages::new(),
        pages: Arc::new(insights::pages::PagesCache::new()),
        insights: insights::cache::ResultCache::default(),
        live: live::Live::default(),
        streams: streams::StreamPermits::default(),
        config,
    });
    let loader = tokio::spawn(load_paths_on_connect(app.clone(), connected));
    let (stop_maintenance, maintenance_stop) = watch::channel(false);
    let maintenance = tokio::spawn(maintenance::run(app.clone(), maintenance_stop));

    let stopping = std::sync::OnceLock::new();
    let shutdown = async {
        shutdown.await;
        let _ = stopping.set(Instant::now());
    };
    let outcome = tokio::select! {
        () = server::serve(listener, app.clone(), shutdown) => Ok(()),
        Some(Fatal(message)) = fatal.recv() => Err(message),
    };

    loader.abort();
    let _ = stop_maintenance.send(true);
    // A flush stuck on a hung database must not hold the shutdown.
    let maintenance_abort = maintenance.abort_handle();
    if tokio::time::timeout(FINAL_STEP, maintenance).await.is_err() {
        maintenance_abort.abort();
    }
    if tokio::time::timeout(FINAL_STEP, maintenance::flush_views(&app))
        .await
        .is_err()
    {
        tracing::warn!("could not write the last views in time");
    }
    // Two steps follow the save.
    let since_stop = stopping.get().map_or(Duration::ZERO, Instant::elapsed);
    let save_within = SHUTDOWN_WITHIN
        .saturating_sub(since_stop + 2 * FINAL_STEP)
        .max(FINAL_STEP);
    match tokio::time::timeout(save_within, save_slots(&app)).await {
        Ok(Ok(saved)) => tracing::info!(saved, "saved the pending visitors for the next start"),
        Ok(Err(db::Unavailable)) | Err(_) => {
            tracing::warn!("could not save the pending visitors; their visits will not count")
        }
    }
    let _ = tokio::time::timeout(FINAL_STEP, writer.stop()).await;
    if tokio::time::timeout(FINAL_STEP, writer_task).await.is_err() {
        tracing::warn!("the visit writer did not finish in time");
    }
    tracing::info!("stopped");
    outcome
}

/// The slots of the last run of this instance (saved at its graceful shutdown), or empty
/// ones, and whether the known paths were loaded. Waits a little for the database, then
/// loads the known paths first: saved slots name paths by database id, the slot array by
/// this process's index.
async fn restore_slots(
    config: &Config,
    db: &Db,
    registry: &paths::Registry,
    clock: &clock::Clock,
) -> (slots::Slots, bool) {
    let count = config.visitor_slots as usize;
    let protect = ticks(pending_protection(config));
    let fresh = || slots::Slots::new(count, config.instance, protect, slots::SlotKeys::random());
    // Polled: the lanes connect in any order and only the first reads lane announces its
    // connections (`Db::connected`), so a change there says nothing about the writes lane.
    let waited = tokio::time::timeout(RESTORE_WAIT, async {
        while db.writes().is_err() || db.reads().is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if waited.is_err() {
        tracing::warn!(
            "the database is not reachable yet: starting without the pending visitors of the last run"
        );
        return (fresh(), false);
    }
    let loaded = load_paths(registry, db).await.is_ok();
    if loaded {
        tracing::info!(paths = registry.len(), "loaded known paths");
    }
    // Saved slots name paths by database id; the slot array by this process's index.
    let mut indexes = registry.indexes_by_id();
    indexes.sort_unstable();
    let mut saved: Vec<slots::SavedSlot> = Vec::new();
    let mut since = None;
    let restored = async {
        if !loaded {
            return Err(db::Unavailable);
        }
        db.writes()?
            .take_slots(i16::from(config.instance), |header, slot| {
                // Time passed since the snapshot, by the wall clock (the only clock two
                // processes share), read once.
                let since = *since.get_or_insert_with(|| {
                    SystemTime::now()
                        .duration_since(header.saved_at)
                        .unwrap_or_default()
                });
                let Ok(at) = indexes.binary_search_by_key(&slot.path_id, |&(id, _)| id) else {
                    return;
                };
                saved.push(slots::SavedSlot {
                    index: slot.slot,
                    tag: slot.tag,
                    path: indexes[at].1,
                    age_ticks: ticks(slot.age + since),
                    visit: match slot.state {
                        SavedState::Pending { registered_at } => slots::SavedVisit::Pending {
                            wall_secs: time::unix_seconds(registered_at) as u32,
                            client: 0,
                        },
                        SavedState::Counted {
                            visit_id,
                            page_left,
                        } => slots::SavedVisit::Counted {
                            visit_id,
                            left: page_left,
                        },
                    },
                });
            })
            .await
            .map_err(db::Unavailable::from)
    }
    .await;
    drop(indexes);
    let header = match restored {
        Ok(Some(header)) => header,
        Ok(None) => return (fresh(), loaded),
        Err(db::Unavailable) => {
            tracing::warn!("could not read the pending visitors of the last run");
            return (fresh(), loaded);
        }
    };
    let Some(keys) = keys_from(&header.keys) else {
        tracing::warn!("the saved pending visitors are unreadable; starting without them");
        return (fresh(), loaded);
    };
    let restored = saved.len();
    let slots = slots::Slots::restore(
        count,
        config.instance,
        protect,
        slots::Snapshot {
            count: count as u32,
            instance: config.instance,
            keys,
            next_ticket: header.next_ticket as u64,
            slots: saved,
        },
        clock.ticks(),
        ticks(maintenance::TOKEN_LIFETIME),
    );
    tracing::info!(restored, "restored the pending visitors of the last run");
    memory::release_free();
    (slots, loaded)
}

fn ticks(duration: Duration) -> u32 {
    (duration.as_millis() * u128::from(clock::TICKS_PER_SEC) / 1000).min(u128::from(u32::MAX))
        as u32
}

fn keys_from(words: &[i64]) -> Option<slots::SlotKeys> {
    let &[tag0, tag1, order0, order1] = words else {
        return None;
    };
    Some(slots::SlotKeys {
        tag: keyed::Key {
            k0: tag0 as u64,
            k1: tag1 as u64,
        },
        order: keyed::Key {
            k0: order0 as u64,
            k1: order1 as u64,
        },
    })
}

/// Writes the pending and counted-not-left visitors for the next start of this instance.
async fn save_slots(app: &App) -> Result<usize, db::Unavailable> {
    let now = app.clock.ticks();
    let snapshot = app.slots.snapshot(now);
    let wall_now = SystemTime::now();
    let tick = Duration::from_millis(1000 / u64::from(clock::TICKS_PER_SEC));
    let slots: Vec<SavedSlot> = snapshot
        .slots
        .iter()
        .filter_map(|saved| {
            Some(SavedSlot {
                slot: saved.index,
                tag: saved.tag,
                path_id: app.registry.db_id(saved.path)?,
                age: tick * saved.age_ticks,
                state: match saved.visit {
                    slots::SavedVisit::Pending { wall_secs, .. } => SavedState::Pending {
                        registered_at: SystemTime::UNIX_EPOCH
                            + Duration::from_secs(u64::from(wall_secs)),
                    },
                    slots::SavedVisit::Counted { visit_id, left } => SavedState::Counted {
                        visit_id,
                        page_left: left,
                    },
                },
            })
        })
        .collect();
    let keys = snapshot.keys;
    let saved = slots.len();
    app.db
        .writes()?
        .save_slots(
            i16::from(app.config.instance),
            &SlotSnapshot {
                saved_at: wall_now,
                keys: vec![
                    keys.tag.k0 as i64,
                    keys.tag.k1 as i64,
                    keys.order.k0 as i64,
                    keys.order.k1 as i64,
                ],
                next_ticket: snapshot.next_ticket as i64,
                slots,
            },
        )
        .await?;
    Ok(saved)
}

/// Fills the path registry from the database each time the connection is (re)established,
/// so known paths are answered from memory without asking the site again.
async fn load_paths_on_connect(app: Arc<App>, mut connected: watch::Receiver<u64>) {
    loop {
        if connected.changed().await.is_err() {
            return;
        }
        match load_paths(&app.registry, &app.db).await {
            Ok(()) => {
                memory::release_free();
                tracing::info!(paths = app.registry.len(), "loaded known paths")
            }
            Err(db::Unavailable) => tracing::warn!("could not load the known paths"),
        }
    }
}

/// Reads the paths in chunks by id, so a site with many paths never holds them all as rows.
async fn load_paths(registry: &paths::Registry, db: &Db) -> Result<(), db::Unavailable> {
    let mut after = 0;
    loop {
        // Small chunks: the rows of one chunk are in memory at once.
        let chunk = db.reads()?.paths_after_id(after, 2_000).await?;
        let Some(&(last, _)) = chunk.last() else {
            return Ok(());
        };
        registry.remember_all(&chunk);
        after = last;
    }
}
