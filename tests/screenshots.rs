//! The dashboard as a browser renders it, on a realistic site: a few hundred paths, a year of
//! visits with referrers and campaigns, and visitors on the site right now. Headless
//! Chromium (driven by `tests/browser/dashboard.mjs`, JavaScript off as for a reader who
//! disabled it) shoots `/` and `/stats` in light and dark mode on a desktop and a phone into
//! `target/screenshots/` for people to look at, and reports what a reader's browser noticed:
//! this test checks that the stylesheet loaded under the CSP, nothing failed, nothing scrolls
//! sideways, dark differs from light, and that on a phone the daily chart opens on its most
//! recent day.
//!
//! Missing tools fail the test (see `tests/browser.rs`): a screenshot test that skips itself
//! would let a broken page pass unnoticed.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::browser::{run_script, tools};
use common::{PgCluster, Site, Tracker, TrackerConfig};
use serde_json::{Value, json};

/// A site with a history: 300 paths whose popularity falls off like a real site's, a year of
/// visits growing over time with a weekly rhythm, referrers from a few dozen places, some
/// campaigns, times on page from seconds to an hour; views and visitors added to the
/// roll-ups as the tracker's flush adds them. Seeded random numbers: the same site each run.
const SEED: &str = "
SELECT setseed(0.42);
INSERT INTO paths (path)
SELECT CASE
         WHEN i = 1 THEN '/'
         WHEN i = 2 THEN '/about'
         WHEN i = 3 THEN '/blog/'
         WHEN i % 3 = 0 THEN '/docs/' || (ARRAY['install', 'configure', 'upgrade', 'api', 'privacy'])[1 + i % 5] || '-' || i
         ELSE '/blog/' || (ARRAY['rust', 'postgres', 'privacy', 'self-hosting', 'performance', 'notes'])[1 + i % 6] || '-' || i
       END
FROM generate_series(1, 300) i;

CREATE TEMPORARY TABLE ranked AS SELECT row_number() OVER (ORDER BY id) AS rank, id FROM paths;

INSERT INTO visits (path_id, registered_at, referrer, spent_time_seconds, utm_source, utm_medium, utm_campaign)
SELECT r.id,
       t.at,
       CASE WHEN x.kind < 0.42 THEN NULL
            WHEN x.kind < 0.60 THEN 'https://www.google.com/'
            WHEN x.kind < 0.66 THEN 'https://duckduckgo.com/'
            WHEN x.kind < 0.74 THEN 'https://news.ycombinator.com/item'
            WHEN x.kind < 0.80 THEN 'https://www.reddit.com/r/' || (ARRAY['rust', 'selfhosted', 'privacy'])[1 + (x.pick * 2.99)::int] || '/comments/'
            WHEN x.kind < 0.85 THEN 'https://mastodon.social/@' || (ARRAY['ferris', 'alice', 'bob'])[1 + (x.pick * 2.99)::int]
            WHEN x.kind < 0.95 THEN 'https://blog' || (x.pick * 30)::int || '.example/posts/' || (x.pick2 * 4)::int
            ELSE 'android-app://com.google.android.gm/' END,
       CASE WHEN x.spent < 0.88 THEN least(5400, exp(1.5 + x.spent2 * 6.5))::int END,
       CASE WHEN x.campaign < 0.06 THEN (ARRAY['newsletter', 'mastodon', 'partner'])[1 + (x.pick * 2.99)::int] END,
       CASE WHEN x.campaign < 0.045 THEN (ARRAY['email', 'social'])[1 + (x.pick2 * 1.99)::int] END,
       CASE WHEN x.campaign < 0.05 THEN (ARRAY['spring-launch', 'release-2-0', 'weekly-digest'])[1 + (x.pick2 * 2.99)::int] END
FROM generate_series(1, 40000) g
CROSS JOIN LATERAL (SELECT g + random() - g AS kind, random() AS pick, random() AS pick2,
                           random() AS spent, random() AS spent2, random() AS campaign,
                           -- Zipf: a path's share falls with its rank.
                           least(300, floor(exp(random() * ln(301))))::int AS rank,
                           -- More traffic lately; fewer visits at weekends.
                           365 * 86400 * power(random(), 1.3) AS ago
                    OFFSET 0) x
CROSS JOIN LATERAL (SELECT now() - x.ago * interval '1 second' AS at OFFSET 0) t
JOIN ranked r ON r.rank = x.rank
WHERE extract(isodow FROM t.at) < 6 OR x.pick < 0.55;

UPDATE path_days SET views = (visits * (2.2 + random()))::bigint,
                     visitors = greatest(1, (visits * (0.7 + 0.25 * random()))::bigint);
UPDATE site_days s SET views = p.views, visitors = (p.visitors * 0.85)::bigint
FROM (SELECT day, sum(views) AS views, sum(visitors) AS visitors FROM path_days GROUP BY day) p
WHERE s.day = p.day;
UPDATE rollup_state SET version = version + 1;
";

/// Pages opened right now (so "Live" shows something): registered, not yet left.
const OPEN_NOW: [&str; 7] = [
    "/",
    "/",
    "/",
    "/blog/postgres-7",
    "/blog/postgres-7",
    "/docs/install-15",
    "/about",
];

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_looks_right_in_a_browser() {
    let tools = tools();
    let cluster = PgCluster::shared();
    let database = cluster.create_database().await;
    let site = Site::start();
    site.every_path_exists();
    // The site's public name, while the path checks go to the fake site.
    let tracker = Tracker::start(
        &TrackerConfig::new(cluster, &database, "https://www.example.org")
            .set("OXITRAFFIC_TRACKED_ORIGIN_CALLBACK", site.origin())
            .set("OXITRAFFIC_BASE_URL", "https://stats.example.org")
            .set("OXITRAFFIC_MIN_DELAY_SECS", "19"),
    );
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    let db = cluster.connect(&database).await;
    let started = Instant::now();
    db.batch_execute(SEED).await.expect("seed the site");
    let visits: i64 = db
        .query_one("SELECT count(*) FROM visits", &[])
        .await
        .unwrap()
        .get(0);
    eprintln!(
        "seeded {visits} visits in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for path in OPEN_NOW {
        let reply = tracker
            .get(&format!("/register?path={}", common::client::encode(path)))
            .await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }
    // The views of these registrations are flushed within about a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let stats_target = "/stats?path=%2Fblog%2Fpostgres-7&range=90d";
    for target in ["/", stats_target, "/?range=365d&sort=views"] {
        let reply = tracker.get(target).await;
        assert_eq!(reply.status, 200, "{target}: {}", reply.text());
    }
    let index = tracker.get("/").await.text();
    assert!(
        index.contains("7 visitors on the site now"),
        "live visitors from the registrations"
    );
    let year = tracker.get("/?range=365d&sort=views").await.text();
    assert!(year.contains("Page 1 of 3"), "300 paths in a year: 3 pages");

    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../screenshots");
    let config = json!({
        "tracker": tracker.url(""),
        "pages": [
            {"name": "index", "target": "/"},
            {"name": "stats", "target": stats_target},
            {"name": "index-year", "target": "/?range=365d&sort=views"},
        ],
        "outDir": out_dir,
    });
    let shots = tokio::task::spawn_blocking(move || run_script(&tools, "dashboard.mjs", &config))
        .await
        .unwrap();
    let shots = shots.as_array().expect("a list of screenshots");
    assert_eq!(shots.len(), 12, "{shots:#?}");
    for shot in shots {
        assert_eq!(shot["status"], 200, "{shot}");
        assert_eq!(
            shot["stylesheetLoaded"], true,
            "the CSP let our stylesheet in: {shot}"
        );
        assert_eq!(
            shot["consoleErrors"],
            json!([]),
            "no CSP violation or other error: {shot}"
        );
        assert_eq!(shot["failedRequests"], json!([]), "{shot}");
        assert!(
            shot["overflowX"].as_i64().unwrap() <= 0,
            "the page scrolls sideways: {shot}"
        );
        assert_eq!(
            shot["charts"], 2,
            "the daily chart and the histogram: {shot}"
        );
        assert_eq!(
            shot["tableRows"].as_u64().unwrap() > 0,
            shot["name"] != "stats",
            "{shot}"
        );
        let daily = &shot["daily"];
        assert_eq!(
            daily["lastLabelVisible"], true,
            "the daily chart shows its most recent day: {shot}"
        );
        assert_eq!(daily["lastColumnVisible"], true, "{shot}");
        if shot["device"] == "phone" {
            assert_eq!(
                daily["scrollable"], true,
                "on a phone the chart keeps a legible width and scrolls: {shot}"
            );
            assert_eq!(
                daily["firstColumnVisible"], false,
                "…and opens on its end, not its start: {shot}"
            );
        } else {
            assert_eq!(daily["scrollable"], false, "{shot}");
        }
        let file = Path::new(shot["file"].as_str().unwrap());
        assert!(
            std::fs::metadata(file).is_ok_and(|m| m.len() > 20_000),
            "{}",
            file.display()
        );
    }
    for name in ["index", "stats"] {
        for device in ["desktop", "phone"] {
            let pick = |scheme: &str| {
                shots
                    .iter()
                    .find(|s| s["name"] == name && s["scheme"] == scheme && s["device"] == device)
                    .unwrap()
            };
            let (light, dark) = (pick("light"), pick("dark"));
            assert_ne!(
                light["background"], dark["background"],
                "dark mode follows the system: {name} {device}"
            );
            assert_ne!(light["text"], dark["text"], "{name} {device}");
            assert_ne!(light["barFill"], Value::Null, "{name} has bars");
            assert_ne!(light["barFill"], dark["barFill"], "{name} {device}");
        }
    }
    eprintln!("dashboard screenshots in {}", out_dir.display());
}
