//! The counting flow in a real browser: headless Chromium visits pages of a fake tracked site
//! that carry the script tag, runs the `count.js` the real tracker serves, and this test
//! checks what the tracker stored in a real PostgreSQL.
//!
//! The browser is driven by `tests/browser/flow.mjs` (Node.js and playwright-core, installed
//! by `.ci/test`). Missing tools fail the test, locally as in CI: a browser test that skips
//! itself would let a broken counting flow pass unnoticed.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// How long the visitor stays on pages that must be counted. count.js posts after
/// `min_delay_secs + 1` = 2 s visible; staying twice that makes the reported time clearly
/// more than the delay.
const STAY_MS: u64 = 4_000;
/// Well under the 1 s minimum delay.
const BOUNCE_MS: u64 = 500;

const INSTALL_HINT: &str = "run .ci/test, which installs Chromium, Node.js and the npm packages \
     of tests/browser (or set OXITRAFFIC_TEST_CHROMIUM / OXITRAFFIC_TEST_NODE)";

struct Tools {
    node: PathBuf,
    chromium: PathBuf,
    dir: PathBuf,
}

/// Finds Node.js, Chromium and an up-to-date `npm ci` of tests/browser, or fails the test.
fn tools() -> Tools {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let node = PathBuf::from(std::env::var_os("OXITRAFFIC_TEST_NODE").unwrap_or("node".into()));
    let chromium = PathBuf::from(
        std::env::var_os("OXITRAFFIC_TEST_CHROMIUM").unwrap_or("/usr/bin/chromium".into()),
    );
    let node_works = Command::new(&node)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        node_works,
        "Node.js (`{}`) is missing: {INSTALL_HINT}",
        node.display()
    );
    assert!(
        chromium.is_file(),
        "Chromium ({}) is missing: {INSTALL_HINT}",
        chromium.display()
    );
    let version = |file: &Path, pointer: &str| -> Option<String> {
        let text = std::fs::read_to_string(file).ok()?;
        let value: Value = serde_json::from_str(&text).ok()?;
        value.pointer(pointer)?.as_str().map(str::to_string)
    };
    let wanted = version(&dir.join("package.json"), "/dependencies/playwright-core")
        .expect("tests/browser/package.json names playwright-core");
    let installed = version(
        &dir.join("node_modules/playwright-core/package.json"),
        "/version",
    );
    assert_eq!(
        installed.as_deref(),
        Some(wanted.as_str()),
        "playwright-core {wanted} is not installed in tests/browser/node_modules: {INSTALL_HINT}"
    );
    Tools {
        node,
        chromium,
        dir,
    }
}

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

/// Runs a script of tests/browser with a JSON argument and returns the JSON it prints.
fn run_script(tools: &Tools, script: &str, config: &Value) -> Value {
    let mut child = Command::new(&tools.node)
        .arg(script)
        .arg(config.to_string())
        .current_dir(&tools.dir)
        .env("OXITRAFFIC_TEST_CHROMIUM", &tools.chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", tools.node.display()));
    let read = |mut stream: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    // flow.mjs gives up by itself after 60 s; this only guards against Node itself hanging.
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{script} did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(
        status.success(),
        "{script} failed ({status}):\n{stderr}\n{stdout}"
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

#[derive(Debug)]
struct Visit {
    referrer: Option<String>,
    spent_time_seconds: Option<i32>,
}

/// Every registered path with its counted visits, as the tracker stored them.
async fn stored(client: &tokio_postgres::Client) -> BTreeMap<String, Vec<Visit>> {
    let rows = client
        .query(
            "SELECT p.path, v.id, v.referrer, v.spent_time_seconds
               FROM paths p LEFT JOIN visits v ON v.path_id = p.id
              ORDER BY p.path, v.id",
            &[],
        )
        .await
        .unwrap();
    let mut paths = BTreeMap::<String, Vec<Visit>>::new();
    for row in rows {
        let visits = paths.entry(row.get(0)).or_default();
        if row.get::<_, Option<i64>>(1).is_some() {
            visits.push(Visit {
                referrer: row.get(2),
                spent_time_seconds: row.get(3),
            });
        }
    }
    paths
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

#[tokio::test(flavor = "multi_thread")]
async fn a_real_browser_is_counted_end_to_end() {
    let tools = tools();
    let cluster = PgCluster::shared();
    let database = cluster.create_database().await;

    let site = Site::start();
    for path in [STAY, NEXT, BOUNCE, SPA, SPA_NEXT, LANDING, COME_BACK] {
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

    let config = json!({
        "tracker": base_url,
        "site": site.origin(),
        "elsewhere": format!("{other_origin}/elsewhere"),
        "referring": format!("{other_origin}/from?q=secret#top"),
        "paths": {
            "stay": STAY, "next": NEXT, "bounce": BOUNCE,
            "spa": SPA, "spaNext": SPA_NEXT, "landing": LANDING, "comeBack": COME_BACK,
        },
        "stayMs": STAY_MS,
        "bounceMs": BOUNCE_MS,
    });
    let started = Instant::now();
    let report = tokio::task::spawn_blocking(move || run_flow(&tools, &config))
        .await
        .unwrap();
    eprintln!(
        "browser run took {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        report["browser"]
    );
    let scenarios = &report["scenarios"];
    let stay = &scenarios["stay"];
    let bounce = &scenarios["bounce"];
    let spa = &scenarios["spa"];
    let referred = &scenarios["referred"];
    let come_back = &scenarios["comeBack"];

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
        ("referred", referred),
        ("come back", come_back),
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

    // d. No cookie, neither in the browser's jar nor offered in any tracker response.
    assert_eq!(report["cookies"], json!([]), "{report:#}");
    assert_eq!(report["trackerCookies"], json!([]), "{report:#}");
    for exchange in exchanges {
        assert_eq!(exchange["headersRead"], true, "{exchange}");
        assert_eq!(exchange["setCookie"], Value::Null, "{exchange}");
        assert!(
            exchange["status"] == 200 || exchange["status"] == 304,
            "a tracker request failed: {exchange}; all: {exchanges:#?}\nlogs:\n{}",
            tracker.logs()
        );
    }
    // DevTools reports keepalive requests (count.js's post-sleep fetch, sendBeacon) as aborted
    // once their document hands them over or goes away, delivered or not. So a post-sleep
    // must have got its answer, and page-left beacons are checked in the database below.
    for failure in report["failures"].as_array().expect("failures") {
        let post = failure["method"] == "POST";
        let answered = failure["responded"] == true;
        let beacon = failure["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("/page-left/"));
        assert!(
            post && (answered || beacon),
            "a tracker request failed: {failure}\nlogs:\n{}",
            tracker.logs()
        );
    }
    // Beacons sent while a document unloads are invisible to the browser's DevTools; those
    // sent by a living page (SPA navigation) are seen, so page-left answers are checked too.
    for prefix in ["/register?", "/post-sleep/", "/page-left/"] {
        assert!(
            exchanges
                .iter()
                .any(|e| e["target"].as_str().unwrap().starts_with(prefix)),
            "the browser saw no {prefix} exchange: {exchanges:#?}"
        );
    }

    // Spent times arrive by beacon as pages unload, possibly just after the browser run.
    let client = cluster.connect(&database).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let paths = loop {
        let paths = stored(&client).await;
        let reported = [STAY, NEXT, SPA, SPA_NEXT, LANDING, COME_BACK]
            .iter()
            .all(|path| {
                paths
                    .get(*path)
                    .is_some_and(|v| v.iter().all(|v| v.spent_time_seconds.is_some()))
            });
        if reported || Instant::now() > deadline {
            break paths;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let registered: Vec<&str> = paths.keys().map(String::as_str).collect();
    let mut expected = vec![STAY, NEXT, BOUNCE, SPA, SPA_NEXT, LANDING, COME_BACK];
    expected.sort();
    assert_eq!(
        registered, expected,
        "every visited page of the tracked site was registered, nothing else"
    );
    let total: usize = paths.values().map(Vec::len).sum();
    assert_eq!(total, 6, "{paths:#?}");

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
}
