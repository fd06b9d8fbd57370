//! The counting flow in a real browser: headless Chromium visits pages of a fake tracked site
//! that carry the script tag, runs the `count.js` the real tracker serves, and this test
//! checks what the tracker stored in a real PostgreSQL and what its JSON API answers: visits
//! with their time and referrer, views and visitors (two browsers), campaigns, live pages,
//! single-page-app navigations (also while a post-sleep is on its way), and nothing at all
//! from a page shown inside another site's frame.
//!
//! The browser is driven by `tests/browser/flow.mjs` (Node.js and playwright-core, installed
//! by `.ci/test`). Missing tools fail the test, locally as in CI: a browser test that skips
//! itself would let a broken counting flow pass unnoticed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::browser::{Tools, run_script, tools};
use common::{PgCluster, Site, Tracker, TrackerConfig};
use serde_json::{Value, json};

// Paths of the tracked site, one per thing a visitor does (see flow.mjs).
const STAY: &str = "/article";
const NEXT: &str = "/";
const BOUNCE: &str = "/bounce";
const SPA: &str = "/app";
const SPA_NEXT: &str = "/app/settings";
const LANDING: &str = "/landing";
const COME_BACK: &str = "/return";
const VISITORS_ONE: &str = "/team";
const VISITORS_TWO: &str = "/pricing";
const OFFER: &str = "/offer";
const OFFER_LONG: &str = "/offer/long";
const LIVE: &str = "/live";
const GAP: &str = "/gap";
const GAP_NEXT: &str = "/gap/next";
/// Shown only inside another site's frame, so never registered.
const FRAMED: &str = "/framed";

/// Every page the browsers register.
const TRACKED: [&str; 14] = [
    STAY,
    NEXT,
    BOUNCE,
    SPA,
    SPA_NEXT,
    LANDING,
    COME_BACK,
    VISITORS_ONE,
    VISITORS_TWO,
    OFFER,
    OFFER_LONG,
    LIVE,
    GAP,
    GAP_NEXT,
];
/// The pages stayed on past the delay by one browser, each counted once (the visitors
/// scenario's pages are counted once per browser; the bounce is left before the delay).
const COUNTED: [&str; 11] = [
    STAY, NEXT, SPA, SPA_NEXT, LANDING, COME_BACK, OFFER, OFFER_LONG, LIVE, GAP, GAP_NEXT,
];
/// History API navigations to another path (pushState and Back in `spa`, pushState in the
/// SPA gap): registrations without a page load.
const SPA_NAVIGATIONS: usize = 3;

/// (views, visitors) per path: a view per registration, a visitor per browser.
fn expected_views() -> BTreeMap<String, (i64, i64)> {
    TRACKED
        .iter()
        .map(|path| {
            let counts = match *path {
                // Registered again after Back, by the same browser.
                SPA => (2, 1),
                // Opened by both browsers.
                VISITORS_ONE | VISITORS_TWO => (2, 2),
                _ => (1, 1),
            };
            (path.to_string(), counts)
        })
        .collect()
}

/// Opened on OFFER: the three campaign parameters, and one count.js must not forward.
const CAMPAIGN_QUERY: &str = "?utm_source=news&utm_medium=email&utm_campaign=spring&other=x";

/// count.js posts after `min_delay_secs + 1` = 2 s visible.
const DELAY_MS: u64 = 2_000;
/// How long the visitor stays on pages that must be counted: twice the delay makes the
/// reported time clearly more than the delay.
const STAY_MS: u64 = 4_000;
/// Well under the 1 s minimum delay.
const BOUNCE_MS: u64 = 500;
/// How long the SPA-gap scenario holds the first post-sleep while the visitor navigates: long
/// enough that a time measured until the answer would differ from the time until pushState.
const HOLD_MS: u64 = 2_000;

/// A port nobody listens on right now. The tracker must know its own URL before it starts
/// (it is baked into count.js), so it cannot simply take port 0 and report it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a free port")
        .port()
}

/// Runs flow.mjs with `config` and returns its JSON report.
fn run_flow(tools: &Tools, config: &Value) -> Value {
    run_script(tools, "flow.mjs", config)
}

#[derive(Debug)]
struct Visit {
    id: i64,
    referrer: Option<String>,
    spent_time_seconds: Option<i32>,
    campaign: [Option<String>; 3],
}

/// Every registered path with its counted visits, as the tracker stored them.
async fn stored(client: &tokio_postgres::Client) -> BTreeMap<String, Vec<Visit>> {
    let rows = client
        .query(
            "SELECT p.path, v.id, v.referrer, v.spent_time_seconds,
                    v.utm_source, v.utm_medium, v.utm_campaign
               FROM paths p LEFT JOIN visits v ON v.path_id = p.id
              ORDER BY p.path, v.id",
            &[],
        )
        .await
        .unwrap();
    let mut paths = BTreeMap::<String, Vec<Visit>>::new();
    for row in rows {
        let visits = paths.entry(row.get(0)).or_default();
        if let Some(id) = row.get::<_, Option<i64>>(1) {
            visits.push(Visit {
                id,
                referrer: row.get(2),
                spent_time_seconds: row.get(3),
                campaign: [row.get(4), row.get(5), row.get(6)],
            });
        }
    }
    paths
}

/// Views and visitors of every registered path, summed over the days (the run stays within
/// one day, unless it crosses midnight).
async fn views(client: &tokio_postgres::Client) -> BTreeMap<String, (i64, i64)> {
    client
        .query(
            "SELECT p.path, coalesce(sum(d.views), 0)::int8, coalesce(sum(d.visitors), 0)::int8
               FROM paths p LEFT JOIN path_days d ON d.path_id = p.id
              GROUP BY p.path",
            &[],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect()
}

/// The one visit of `path`, which must have been counted exactly once.
fn only_visit<'a>(paths: &'a BTreeMap<String, Vec<Visit>>, path: &str) -> &'a Visit {
    match paths.get(path).map(Vec::as_slice) {
        Some([visit]) => visit,
        other => panic!("expected exactly one visit of {path}, found {other:?}; all: {paths:#?}"),
    }
}

/// The spent time reported for `visit` matches how long the browser stayed: count.js measures
/// from when it ran (before `load`) to `pagehide`, so it is at least `stayed_ms` (measured from
/// `load` to the start of leaving) and not much more.
fn assert_spent_time(path: &str, visit: &Visit, stayed_ms: &Value) {
    let stayed = stayed_ms.as_f64().expect("a measured stay") / 1000.0;
    let spent = visit
        .spent_time_seconds
        .unwrap_or_else(|| panic!("no spent time was stored for {path} (stayed {stayed:.1} s)"));
    assert!(
        stayed - 1.0 <= f64::from(spent) && f64::from(spent) <= stayed + 2.0,
        "{path}: stored {spent} s, the browser stayed {stayed:.1} s"
    );
}

fn some(text: &str) -> Option<String> {
    Some(text.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_browser_is_counted_end_to_end() {
    let tools = tools();
    let cluster = PgCluster::shared();
    let database = cluster.create_database().await;

    let site = Site::start();
    for path in TRACKED.iter().chain([&FRAMED]) {
        site.add_page(path);
    }
    // Another website, reached as `localhost` so that its host differs from the tracked
    // site's (127.0.0.1): the tracker drops referrers from the tracked host, whatever the port.
    let other = Site::start();
    let other_origin = format!("http://localhost:{}", other.addr.port());
    // unsafe-url lets the full referring URL, query included, reach document.referrer, so the
    // test sees whether the query is dropped before it is stored.
    other.add_raw_page(
        "/from",
        &format!(
            "<!doctype html><html><head><meta charset=\"utf-8\">\
             <meta name=\"referrer\" content=\"unsafe-url\"><title>Links</title></head>\
             <body><a id=\"link\" href=\"{}\">an article</a></body></html>",
            site.url(LANDING)
        ),
    );
    other.add_raw_page(
        "/elsewhere",
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Elsewhere</title></head>\
         <body><p>Another website.</p></body></html>",
    );
    // A site that shows a tracked page to its own visitors, unseen, to be counted for it.
    other.add_raw_page(
        "/framing",
        &format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Framing</title></head>\
             <body><p>Nothing to see.</p><iframe src=\"{}\" title=\"hidden\" \
             style=\"position:absolute;width:1px;height:1px;border:0;opacity:0\"></iframe>\
             </body></html>",
            site.url(FRAMED)
        ),
    );

    let port = free_port();
    let base_url = format!("http://127.0.0.1:{port}");
    site.set_tracker_url(&base_url);
    let tracker = Tracker::start(
        &TrackerConfig::new(cluster, &database, &site.origin())
            .set("OXITRAFFIC_SOCKET_ADDRESS", format!("127.0.0.1:{port}"))
            .set("OXITRAFFIC_BASE_URL", &base_url)
            .set("OXITRAFFIC_MIN_DELAY_SECS", "1"),
    );
    assert_eq!(tracker.addr.port(), port);
    tracker.wait_for_health(200, Duration::from_secs(15)).await;

    // A value of 100 characters (each two bytes in UTF-8) is kept; one of 101 is dropped.
    let kept_campaign = "é".repeat(100);
    let long_campaign_query = format!(
        "?utm_source={}&utm_medium=email&utm_campaign={}",
        "a".repeat(101),
        "%C3%A9".repeat(100)
    );
    let config = json!({
        "tracker": base_url,
        "site": site.origin(),
        "elsewhere": format!("{other_origin}/elsewhere"),
        "referring": format!("{other_origin}/from?q=secret#top"),
        "framing": format!("{other_origin}/framing"),
        "paths": {
            "stay": STAY, "next": NEXT, "bounce": BOUNCE,
            "spa": SPA, "spaNext": SPA_NEXT, "landing": LANDING, "comeBack": COME_BACK,
            "visitorsOne": VISITORS_ONE, "visitorsTwo": VISITORS_TWO,
            "offer": OFFER, "offerLong": OFFER_LONG, "live": LIVE,
            "gap": GAP, "gapNext": GAP_NEXT, "framed": FRAMED,
        },
        "campaignQuery": CAMPAIGN_QUERY,
        "longCampaignQuery": long_campaign_query,
        "delayMs": DELAY_MS,
        "stayMs": STAY_MS,
        "bounceMs": BOUNCE_MS,
        "holdMs": HOLD_MS,
    });
    let started = Instant::now();
    let report = tokio::task::spawn_blocking(move || run_flow(&tools, &config))
        .await
        .unwrap();
    // Kept for whoever has to find out why an assertion below failed.
    let report_file = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-flow.json");
    std::fs::write(&report_file, format!("{report:#}")).expect("write the browser report");
    eprintln!(
        "browser run took {:.1} s ({}); its report is in {}",
        started.elapsed().as_secs_f64(),
        report["browser"],
        report_file.display()
    );
    let scenarios = &report["scenarios"];
    let stay = &scenarios["stay"];
    let bounce = &scenarios["bounce"];
    let spa = &scenarios["spa"];
    let gap = &scenarios["spaGap"];
    let referred = &scenarios["referred"];
    let come_back = &scenarios["comeBack"];
    let campaign = &scenarios["campaign"];
    let long_campaign = &scenarios["longCampaign"];
    let live = &scenarios["live"];
    let framed = &scenarios["framed"];

    // count.js loaded, ran and talked to the tracker in every tab: a broken setup (wrong
    // base URL, CORS refusal, script error) fails here rather than as a confusing count.
    assert_eq!(report["pageErrors"], json!([]), "{report:#}");
    let exchanges = report["exchanges"].as_array().expect("exchanges");
    assert!(
        exchanges.iter().any(|e| e["target"] == "/count.js"
            && e["status"] == 200
            && e["contentType"]
                .as_str()
                .is_some_and(|t| t.starts_with("text/javascript"))),
        "count.js was never served: {exchanges:#?}"
    );
    for (name, page) in [
        ("stay", &stay["first"]),
        ("stay, next page", &stay["next"]),
        ("bounce", bounce),
        ("spa", &spa["first"]),
        ("spa, after pushState", &spa["next"]),
        ("spa, after Back", &spa["back"]),
        ("spa gap", gap),
        ("referred", referred),
        ("come back", come_back),
        ("campaign", campaign),
        ("long campaign", long_campaign),
        ("live", live),
    ] {
        assert_eq!(page["registerStatus"], 200, "{name}: {page}");
        // count.js counts visible time only; a page that headless Chromium kept hidden would
        // make every count below fail for a reason that has nothing to do with the tracker.
        assert_eq!(page["visibility"], "visible", "{name}: {page}");
        // Nothing in the tracked site's storage either: count.js runs in its origin.
        assert_eq!(page["cookie"], "", "{name}: {page}");
        assert_eq!(page["localStorage"], 0, "{name}: {page}");
        assert_eq!(page["sessionStorage"], 0, "{name}: {page}");
    }
    assert_eq!(
        site.hits("/count.js"),
        0,
        "the script comes from the tracker"
    );

    // d. No cookie, neither in the browsers' jars nor offered in any tracker response.
    assert_eq!(report["cookies"], json!([]), "{report:#}");
    assert_eq!(report["trackerCookies"], json!([]), "{report:#}");
    assert_eq!(
        scenarios["secondBrowser"]["cookies"],
        json!([]),
        "{report:#}"
    );
    for exchange in exchanges {
        assert_eq!(exchange["headersRead"], true, "{exchange}");
        assert_eq!(exchange["setCookie"], Value::Null, "{exchange}");
        assert!(
            exchange["status"] == 200 || exchange["status"] == 304,
            "a tracker request failed: {exchange}; all: {exchanges:#?}\nlogs:\n{}",
            tracker.logs()
        );
    }
    // DevTools reports a request as aborted once its document goes away: keepalive ones
    // (count.js's post-sleep fetch, sendBeacon) as soon as they are handed over, delivered or
    // not, and any other whose answer was still being read when the visitor left (the SPA tab
    // leaves right after its last registration: seen once in CI as `/register` "aborted" with
    // its answer in). So every failure must have had its answer, whose status the exchanges
    // above checked, or be a page-left beacon, which the database below checks.
    for failure in report["failures"].as_array().expect("failures") {
        let answered = failure["responded"] == true;
        let beacon = failure["method"] == "POST"
            && failure["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("/page-left/"));
        assert!(
            answered || beacon,
            "a tracker request failed: {failure}\nlogs:\n{}",
            tracker.logs()
        );
    }
    // Beacons sent while a document unloads are invisible to the browser's DevTools; those
    // sent by a living page (SPA navigation) are seen, so page-left answers are checked too.
    for prefix in ["/register?", "/visitor", "/post-sleep/", "/page-left/"] {
        assert!(
            exchanges
                .iter()
                .any(|e| e["target"].as_str().unwrap().starts_with(prefix)),
            "the browser saw no {prefix} exchange: {exchanges:#?}"
        );
    }

    // Spent times arrive by beacon as pages unload, possibly just after the browser run; views
    // and visitors reach the database about once a second.
    let client = cluster.connect(&database).await;
    let expected_views = expected_views();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (paths, counted_views) = loop {
        let (paths, counted_views) = (stored(&client).await, views(&client).await);
        let reported = COUNTED.iter().all(|path| {
            paths
                .get(*path)
                .is_some_and(|v| v.iter().all(|v| v.spent_time_seconds.is_some()))
        });
        if (reported && counted_views == expected_views) || Instant::now() > deadline {
            break (paths, counted_views);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let registered: Vec<&str> = paths.keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = TRACKED.to_vec();
    expected.sort();
    assert_eq!(
        registered, expected,
        "every visited page of the tracked site was registered, nothing else"
    );
    let counted: BTreeMap<&str, usize> = paths
        .iter()
        .map(|(path, visits)| (path.as_str(), visits.len()))
        .filter(|(_, visits)| *visits > 0)
        .collect();
    let expected_counted: BTreeMap<&str, usize> = COUNTED
        .iter()
        .map(|path| (*path, 1))
        .chain([(VISITORS_ONE, 2), (VISITORS_TWO, 2)])
        .collect();
    assert_eq!(
        counted, expected_counted,
        "the pages stayed on past the delay were counted, nothing else: {paths:#?}\n\
         (pages left at once were gone {} ms ({BOUNCE}) and {} ms ({SPA}, after Back) after \
         they opened; if that is past the {DELAY_MS} ms delay, the machine was too slow for \
         this test)",
        bounce["goneAfterMs"], spa["back"]["goneAfterMs"]
    );
    let total_visits: usize = expected_counted.values().sum();

    // a. Stayed past the delay, then followed a link: counted once, with the time stayed.
    let article = only_visit(&paths, STAY);
    assert_eq!(article.referrer, None, "opened directly: no referrer");
    assert_spent_time(STAY, article, &stay["first"]["stayedMs"]);
    // The link came from the tracked site itself, which is no referrer.
    assert_eq!(stay["next"]["referrer"], site.url(STAY));
    let home = only_visit(&paths, NEXT);
    assert_eq!(home.referrer, None, "{home:?}");
    assert_spent_time(NEXT, home, &stay["next"]["stayedMs"]);

    // b. Left before the delay: registered (count.js ran) but never counted.
    assert!(bounce["stayedMs"].as_u64().unwrap() < 1_000, "{bounce}");
    assert!(paths[BOUNCE].is_empty(), "{:?}", paths[BOUNCE]);

    // c. pushState to another path: the old path reports its time, the new one is counted.
    // Back (popstate) does the same; the visitor then leaves at once, so the second visit of
    // the first path is registered but not counted.
    for step in ["first", "next"] {
        assert!(
            spa[step]["pageLeftTarget"]
                .as_str()
                .is_some_and(|t| t.starts_with("/page-left/")),
            "the SPA navigation away from {} sent no page-left beacon: {spa}",
            spa[step]["path"]
        );
    }
    assert_eq!(spa["next"]["path"], SPA_NEXT);
    assert_eq!(spa["back"]["path"], SPA);
    assert_eq!(spa["back"]["registerTarget"], "/register?path=%2Fapp");
    assert!(spa["back"]["stayedMs"].as_u64().unwrap() < 1_000, "{spa}");
    let app = only_visit(&paths, SPA);
    assert_spent_time(SPA, app, &spa["first"]["stayedMs"]);
    let settings = only_visit(&paths, SPA_NEXT);
    assert_eq!(settings.referrer, None, "{settings:?}");
    assert_spent_time(SPA_NEXT, settings, &spa["next"]["stayedMs"]);

    // The SPA gap: pushState while the old path's post-sleep was held on its way. Its answer
    // (200, counted) came after the navigation, and the old path still reported, under its
    // own token, the visible time it had when the visitor moved on, not the time until the
    // answer came.
    assert_eq!(gap["postSleepStatus"], 200, "{gap}");
    let held_ms = gap["releasedAfterMs"].as_f64().unwrap() - gap["stayedMs"].as_f64().unwrap();
    assert!(
        // Timers may fire a millisecond early by the wall clock.
        held_ms >= HOLD_MS as f64 - 50.0,
        "the post-sleep was not held across the navigation: {gap}"
    );
    let held_token = gap["heldTarget"]
        .as_str()
        .and_then(|t| t.strip_prefix("/post-sleep/"))
        .and_then(|t| t.split('?').next())
        .expect("the held post-sleep's token")
        .to_string();
    let reported = gap["pageLeftTarget"].as_str().unwrap_or_else(|| {
        panic!("the old path sent no page-left beacon once its late post-sleep succeeded: {gap}")
    });
    let reported_seconds: f64 = reported
        .strip_prefix(&format!("/page-left/{held_token}/"))
        .unwrap_or_else(|| panic!("{reported} is not for the old token {held_token}: {gap}"))
        .parse()
        .unwrap();
    // The post-sleep left after the delay, so the view was visible at least that long; it
    // ended at pushState, before the answer came.
    let stayed_at_most = gap["stayedAtMostMs"].as_f64().unwrap() / 1000.0;
    let answered = gap["answeredAfterMs"].as_f64().unwrap() / 1000.0;
    assert!(
        (DELAY_MS as f64 / 1000.0..=stayed_at_most.round()).contains(&reported_seconds)
            && reported_seconds < answered - 1.0,
        "reported {reported_seconds} s; visible at most {stayed_at_most:.1} s until pushState, \
         answered after {answered:.1} s"
    );
    let old = only_visit(&paths, GAP);
    assert_eq!(
        old.spent_time_seconds.map(f64::from),
        Some(reported_seconds),
        "{old:?}"
    );
    let token_visit: i64 = client
        .query_one(
            "SELECT visit_id FROM visit_tokens WHERE token = $1",
            &[&held_token.parse::<i64>().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(token_visit, old.id, "the held token counted the old path");
    assert_eq!(
        gap["next"]["registerTarget"],
        "/register?path=%2Fgap%2Fnext"
    );
    assert_eq!(gap["next"]["postSleepStatus"], 200, "{gap}");
    assert_spent_time(
        GAP_NEXT,
        only_visit(&paths, GAP_NEXT),
        &gap["next"]["stayedMs"],
    );

    // e. Came from another site: the referrer is stored, without query or fragment.
    assert_eq!(
        referred["referrer"],
        format!("{other_origin}/from?q=secret"),
        "the browser exposed the full referring URL"
    );
    // count.js promises that the query never even reaches the tracker.
    let sent = referred["postSleepTarget"].as_str().unwrap();
    assert!(
        sent.contains("referrer=") && !sent.contains("secret"),
        "{sent}"
    );
    let landing = only_visit(&paths, LANDING);
    assert_eq!(
        landing.referrer.as_deref(),
        Some(format!("{other_origin}/from").as_str())
    );
    assert_spent_time(LANDING, landing, &referred["stayedMs"]);

    // Only visible time counts: the time the page spent hidden in the back/forward cache is
    // left out, and the report sent after coming back replaces the first one.
    assert_eq!(
        come_back["restored"], true,
        "Back did not restore {COME_BACK} from the back/forward cache, so the scenario did not \
         run: {come_back}"
    );
    let returned = only_visit(&paths, COME_BACK);
    assert_spent_time(COME_BACK, returned, &come_back["visibleMs"]);
    let visible = come_back["visibleMs"].as_f64().unwrap() / 1000.0;
    let hidden = come_back["hiddenMs"].as_f64().unwrap() / 1000.0;
    let spent = f64::from(returned.spent_time_seconds.unwrap());
    assert!(
        spent < visible + hidden - 1.0,
        "{COME_BACK}: stored {spent} s, visible {visible:.1} s, hidden {hidden:.1} s"
    );

    // Campaigns: exactly the three utm_* parameters of the page's own URL reach the tracker
    // and are stored; others never leave the browser. One too long is dropped, the visit and
    // the other parameters kept.
    let sent = campaign["postSleepTarget"].as_str().unwrap();
    assert!(
        sent.ends_with("?utm_source=news&utm_medium=email&utm_campaign=spring"),
        "{sent}"
    );
    assert_eq!(
        only_visit(&paths, OFFER).campaign,
        [some("news"), some("email"), some("spring")]
    );
    let sent = long_campaign["postSleepTarget"].as_str().unwrap();
    assert!(
        !sent.contains("utm_source") && sent.contains("utm_medium=email"),
        "{sent}"
    );
    assert_eq!(
        only_visit(&paths, OFFER_LONG).campaign,
        [None, some("email"), Some(kept_campaign.clone())]
    );
    let campaigns = tracker.get("/api/campaigns").await;
    assert_eq!(campaigns.status, 200, "{}", campaigns.text());
    let mut campaigns = campaigns.json().as_array().unwrap().clone();
    campaigns.sort_by_key(|c| c["source"].is_null());
    assert_eq!(
        Value::Array(campaigns),
        json!([
            {"source": "news", "medium": "email", "campaign": "spring", "visits": 1},
            {"source": null, "medium": "email", "campaign": kept_campaign, "visits": 1},
        ])
    );

    // Live: listed while registered and while counted, gone soon after the page was left.
    assert_eq!(live["postSleepStatus"], 200, "{live}");
    assert_eq!(live["liveWhileRegistered"], 1, "{live}");
    assert_eq!(live["liveWhileCounted"], 1, "{live}");
    assert_eq!(live["liveAfterLeaving"], 0, "{live}");

    // Framing: the tracked page ran inside another site's invisible frame, visible and well
    // past the delay, and count.js sent nothing at all; its path was never even registered.
    assert_eq!(framed["scriptStatus"], 200, "{framed}");
    assert_eq!(framed["framed"], true, "{framed}");
    assert_eq!(framed["path"], FRAMED, "{framed}");
    assert_eq!(framed["visibility"], "visible", "{framed}");
    let from_frame: Vec<&Value> = report["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["tab"] == "framing" && r["target"] != "/count.js")
        .collect();
    assert!(from_frame.is_empty(), "{from_frame:#?}");
    assert!(!paths.contains_key(FRAMED), "{paths:#?}");

    // Visitors: the first browser opened /team before any other tab and got the site's day
    // marker with /visitor; every other page of that browser, in any tab, sent the marker
    // back and was not a new site visitor. The second browser is the second visitor. Each
    // path has one visitor per browser that opened it, and one view per registration.
    let first = &scenarios["visitorsFirstPage"];
    let second_browser = &scenarios["secondBrowser"];
    let second_page = &scenarios["visitorsSecondPage"];
    for page in [
        first,
        second_page,
        &second_browser["one"],
        &second_browser["two"],
    ] {
        assert_eq!(page["registerStatus"], 200, "{page}");
    }
    assert_eq!(second_page["postSleepStatuses"], json!([200, 200]));
    assert_eq!(second_browser["one"]["postSleepStatus"], 200);
    assert_eq!(second_browser["two"]["postSleepStatus"], 200);
    assert_eq!(first["visitorStatus"], 200, "{first}");
    assert_eq!(
        second_browser["one"]["visitorStatus"], 200,
        "{second_browser}"
    );
    let total_views: i64 = expected_views.values().map(|v| v.0).sum();
    let visitor_requests = report["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["target"] == "/visitor")
        .count();
    assert_eq!(
        visitor_requests,
        total_views as usize - SPA_NAVIGATIONS,
        "one /visitor per page load, none for History API navigations: {:#?}",
        report["requests"]
    );
    assert_eq!(counted_views, expected_views, "(views, visitors) per path");
    let summary = tracker.get("/api/summary").await;
    assert_eq!(summary.status, 200, "{}", summary.text());
    let current = &summary.json()["current"];
    assert_eq!(current["views"], total_views, "{current}");
    assert_eq!(current["visits"], total_visits, "{current}");
    assert_eq!(current["visitors"], 2, "two browsers: {current}");
}
