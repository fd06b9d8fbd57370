//! Who is on the site right now (SPEC §9 `/api/live`): pages registered in the last five
//! minutes and not reported left, counted from the visitor slots without a database query.
//!
//! Several instances share a site: each publishes its own counts every few seconds (on the
//! maintenance connection, in the background) and keeps what the others published, so every
//! instance answers for the whole site. An instance that stops publishing drops out after
//! [`FRESH`].

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Mutex;
use std::time::Duration;

use crate::App;
use crate::clock::TICKS_PER_SEC;

/// Registered this recently and not left: open now.
pub const WINDOW: Duration = Duration::from_secs(300);
/// How often counts are published and the others' fetched.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(5);
/// Published counts older than this are ignored (their instance stopped).
pub const FRESH: Duration = Duration::from_secs(15);
/// The busiest paths an instance publishes.
const PUBLISHED_PATHS: usize = 100;
/// Paths shown.
const SHOWN_PATHS: usize = 100;

/// Open pages by path index.
type PathCounts = HashMap<u32, i64, BuildHasherDefault<crate::keyed::Multiplied>>;

/// Pages open now, busiest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveView {
    pub visitors: i64,
    pub paths: Vec<(String, i64)>,
}

/// What the other instances published last.
#[derive(Default)]
pub struct Live {
    others: Mutex<LiveView>,
}

fn window_ticks() -> u32 {
    WINDOW.as_secs() as u32 * TICKS_PER_SEC
}

impl Live {
    /// This instance's open pages: `(path index, count)` for each path with any.
    ///
    /// Path indexes are ours (dense, never chosen by a client), so the map hashes them with
    /// a multiplication: with millions of open pages, SipHash for each was most of the scan.
    pub fn own(app: &App) -> Vec<(u32, i64)> {
        let mut open: PathCounts = HashMap::default();
        app.slots.live(app.clock.ticks(), window_ticks(), |path| {
            *open.entry(path).or_default() += 1;
        });
        open.into_iter().collect()
    }

    /// The whole site's open pages: this instance's, and what the others published.
    pub fn now(&self, app: &App) -> LiveView {
        let own = Live::own(app);
        let others = self
            .others
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut visitors = others.visitors;
        let mut paths: HashMap<String, i64> = others.paths.into_iter().collect();
        for (index, count) in own {
            visitors += count;
            // A path registered long ago whose text was forgotten (a flood of other paths
            // since) is counted in the total only.
            if let Some(name) = app.registry.name(index) {
                *paths.entry(name.into_string()).or_default() += count;
            }
        }
        let mut paths: Vec<(String, i64)> = paths.into_iter().collect();
        paths.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        paths.truncate(SHOWN_PATHS);
        LiveView { visitors, paths }
    }

    /// Publishes this instance's counts and fetches the others'.
    pub async fn exchange(&self, app: &App) -> Result<(), crate::db::Unavailable> {
        let own = Live::own(app);
        let total: i64 = own.iter().map(|&(_, count)| count).sum();
        let mut busiest: Vec<(i32, i32)> = own
            .iter()
            .filter_map(|&(index, count)| Some((app.registry.db_id(index)?, count as i32)))
            .collect();
        busiest.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        busiest.truncate(PUBLISHED_PATHS);
        let conn = app.db.maintenance()?;
        let instance = i16::from(app.config.instance);
        conn.publish_live(instance, total as i32, &busiest).await?;
        let (visitors, paths) = conn.others_live(instance, FRESH).await?;
        *self.others.lock().unwrap_or_else(|e| e.into_inner()) = LiveView { visitors, paths };
        Ok(())
    }
}
