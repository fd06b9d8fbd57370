//! The dashboard and the JSON API over real HTTP, on data written through the real counting
//! flow or seeded in bulk with SQL (the counters follow through the database triggers).

mod common;

use std::time::Duration;

use common::client::{self, RequestSpec, encode};
use common::{PgCluster, Reply, Site, Tracker};
use hyper::Method;

struct Setup {
    tracker: Tracker,
    site: Site,
    db: tokio_postgres::Client,
}

async fn start(extra: &[(&str, &str)]) -> Setup {
    let (database, site, mut config) = common::setup().await;
    for (key, value) in extra {
        config = config.set(key, *value);
    }
    let tracker = Tracker::start(&config);
    tracker.wait_for_health(200, Duration::from_secs(15)).await;
    let db = PgCluster::shared().connect(&database).await;
    Setup { tracker, site, db }
}

/// Seeds visits with SQL: `count` visits on `path`, one per minute back from now.
async fn seed(
    db: &tokio_postgres::Client,
    path: &str,
    count: i32,
    referrer: Option<&str>,
    spent: Option<i32>,
) {
    db.execute(
        "INSERT INTO paths (path) VALUES ($1) ON CONFLICT DO NOTHING",
        &[&path],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO visits (path_id, registered_at, referrer, spent_time_seconds)
         SELECT (SELECT id FROM paths WHERE path = $1), now() - i * interval '1 minute', $3, $4
         FROM generate_series(1, $2) i",
        &[&path, &count, &referrer, &spent],
    )
    .await
    .unwrap();
}

fn assert_page_headers(reply: &Reply) {
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = reply.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_index_lists_every_path_by_visits_with_site_totals() {
    let Setup { tracker, db, .. } = start(&[]).await;
    let empty = tracker.get("/").await;
    assert_eq!(empty.status, 200);
    assert!(
        empty.text().contains("Getting started"),
        "an empty dashboard explains the script tag"
    );
    assert!(empty.text().contains("&lt;script type=&quot;module&quot;"));

    seed(&db, "/popular", 30, Some("https://news.example/"), Some(75)).await;
    seed(&db, "/quiet", 3, None, None).await;
    db.execute("INSERT INTO paths (path) VALUES ('/never-counted')", &[])
        .await
        .unwrap();

    let page = tracker.get("/").await;
    assert_eq!(page.status, 200);
    assert_page_headers(&page);
    let html = page.text();
    let popular = html.find(">/popular</a>").expect("/popular is listed");
    let quiet = html.find(">/quiet</a>").expect("/quiet is listed");
    let never = html
        .find(">/never-counted</a>")
        .expect("paths without visits are listed");
    assert!(popular < quiet && quiet < never, "sorted by visits");
    assert!(
        html.contains("<a href=\"/stats?path=/popular\">"),
        "each path links to its stats"
    );
    assert!(html.contains("<span class=\"value\">33</span><span class=\"label\">visits in all"));
    assert!(html.contains("<span class=\"value\">3</span><span class=\"label\">pages"));
    assert!(
        html.contains("<span class=\"value\">1 min 15 s</span>"),
        "median time on page: {html}"
    );
    assert!(html.contains("https://news.example/"), "top referrers");
    assert!(html.contains("<svg class=\"chart\""));
    assert!(html.ends_with("</html>\n"), "the streamed page is complete");
    assert!(!html.contains("Getting started"));

    let head = client::send(tracker.addr, RequestSpec::new(Method::HEAD, "/")).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_show_one_path_over_a_chosen_range() {
    let Setup { tracker, db, .. } = start(&[("OXITRAFFIC_UTC_OFFSET__HOURS", "2")]).await;
    seed(&db, "/blog/post", 12, Some("https://a.example/x"), Some(25)).await;
    // Older visits: outside 7 days, inside 30.
    db.execute(
        "INSERT INTO visits (path_id, registered_at, referrer, spent_time_seconds)
         SELECT 1, now() - interval '10 days' - i * interval '1 second', 'https://b.example/', 700
         FROM generate_series(1, 5) i",
        &[],
    )
    .await
    .unwrap();

    let week = tracker.get("/stats?path=%2Fblog%2Fpost&range=7d").await;
    assert_eq!(week.status, 200, "{}", week.text());
    assert_page_headers(&week);
    let html = week.text();
    assert!(html.contains("<h1 class=\"path\">/blog/post</h1>"));
    assert!(
        html.contains("<span class=\"value\">12</span><span class=\"label\">visits, last 7 days"),
        "{html}"
    );
    assert!(html.contains("<span class=\"value\">17</span><span class=\"label\">visits in all"));
    assert!(html.contains("<strong aria-current=\"page\">last 7 days</strong>"));
    assert!(
        html.contains("href=\"/stats?path=/blog/post&amp;range=30d\""),
        "ranges are plain links"
    );
    assert_eq!(
        html.matches("<rect class=\"bar\"").count(),
        7 + 14,
        "7 days and 14 time buckets"
    );
    assert!(html.contains("https://a.example/x") && !html.contains("https://b.example/"));
    assert!(
        html.contains("<span class=\"value\">25 s</span>"),
        "median of 25 s visits"
    );

    let month = tracker
        .get("/stats?path=%2Fblog%2Fpost&range=30d")
        .await
        .text();
    assert!(
        month.contains("<span class=\"value\">17</span><span class=\"label\">visits, last 30 days")
    );
    assert!(month.contains("https://b.example/"));
    assert!(
        month.contains("≥ 1 h") || month.contains("10 min"),
        "the long visits show in p90"
    );

    let all = tracker.get("/stats?path=%2Fblog%2Fpost&range=all").await;
    assert_eq!(all.status, 200);
    assert!(all.text().contains("Visits per day, all time"));
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_errors_are_pages_with_the_right_status() {
    let Setup { tracker, db, .. } = start(&[]).await;
    seed(&db, "/a", 1, None, None).await;
    let unknown = tracker.get("/stats?path=%2Fnot-here").await;
    assert_eq!(unknown.status, 404);
    assert_page_headers(&unknown);
    assert!(unknown.text().contains("<h1>Not found</h1>"));
    assert_eq!(tracker.get("/stats").await.status, 400);
    assert_eq!(tracker.get("/stats?path=%2Fa&range=2y").await.status, 400);
    assert_eq!(tracker.get("/stats?path=%2Fa%00").await.status, 400);
    assert_eq!(tracker.post("/").await.status, 405);
    assert_eq!(tracker.post("/").await.header("allow"), Some("GET, HEAD"));
}

#[tokio::test(flavor = "multi_thread")]
async fn visitor_supplied_text_is_escaped_everywhere() {
    let Setup { tracker, site, db } = start(&[]).await;
    site.every_path_exists();
    let hostile_path = "/x\"><script>alert(1)</script><img src=x onerror=alert(2)>";
    let register = format!("/register?path={}", encode(hostile_path));
    let token = tracker.get(&register).await;
    assert_eq!(token.status, 200, "{}", token.text());
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let referrer = encode("https://evil.example/\"><script>alert(3)</script>");
    let counted = tracker
        .post(&format!("/post-sleep/{}?referrer={referrer}", token.text()))
        .await;
    assert_eq!(counted.status, 200);
    let stored: String = db
        .query_one("SELECT path FROM paths", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored, hostile_path,
        "stored as it is, escaped only when shown"
    );

    let index = tracker.get("/").await.text();
    let start = index.find("href=\"/stats?path=").expect("a stats link") + "href=\"".len();
    let stats_link = &index[start..start + index[start..].find('"').unwrap()];
    assert!(!stats_link.contains(['<', '>', '"', ' ']), "{stats_link}");
    let stats = tracker.get(&stats_link.replace("&amp;", "&")).await;

    assert_eq!(
        stats.status,
        200,
        "the dashboard's own link works: {}",
        stats.text()
    );
    for html in [index, stats.text()] {
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }
    assert!(
        stats
            .text()
            .contains("href=\"https://evil.example/&quot;&gt;&lt;script&gt;")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stylesheet_is_cached_and_revalidated() {
    let Setup { tracker, .. } = start(&[]).await;
    let css = tracker.get("/style.css").await;
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(css.header("cache-control").unwrap().contains("immutable"));
    assert!(css.text().contains("prefers-color-scheme: dark"));
    let etag = css.header("etag").unwrap().to_string();
    let again = client::send(
        tracker.addr,
        RequestSpec::new(Method::GET, "/style.css").header("if-none-match", etag),
    )
    .await;
    assert_eq!(again.status, 304);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_answers_in_the_documented_shapes() {
    let Setup { tracker, db, .. } = start(&[
        ("OXITRAFFIC_UTC_OFFSET__HOURS", "-3"),
        ("OXITRAFFIC_UTC_OFFSET__MINUTES", "30"),
    ])
    .await;
    db.batch_execute(
        "INSERT INTO paths (path) VALUES ('/'), ('/b');
         INSERT INTO visits (path_id, registered_at, referrer, spent_time_seconds) VALUES
           (1, '2024-01-28 14:03:11.7+00', 'https://news.example/', 42),
           (1, '2024-01-28 02:00:00+00', NULL, NULL),
           (2, '2024-01-29 00:00:00+00', NULL, 5);",
    )
    .await
    .unwrap();

    let counts = tracker.get("/api/counts").await;
    assert_eq!(counts.status, 200);
    assert_eq!(counts.header("content-type"), Some("application/json"));
    assert_eq!(
        counts.json(),
        serde_json::json!([{"path": "/", "count": 2}, {"path": "/b", "count": 1}])
    );

    let count = tracker.get("/api/count?path=%2F").await;
    assert_eq!((count.status, count.json()), (200, serde_json::json!(2)));

    let history = tracker.get("/api/history?path=%2F").await;
    assert_eq!(history.status, 200);
    assert_eq!(
        history.json(),
        serde_json::json!({
            "utc_offset": "-03:30",
            "visits": [
                {"registered_at": "2024-01-27T22:30:00-03:30", "referrer": null, "spent_time_seconds": null},
                {"registered_at": "2024-01-28T10:33:11-03:30", "referrer": "https://news.example/", "spent_time_seconds": 42}
            ]
        })
    );

    for target in ["/api/count?path=%2Fnope", "/api/history?path=%2Fnope"] {
        let reply = tracker.get(target).await;
        assert_eq!(reply.status, 404, "{target}");
        assert_eq!(reply.json(), serde_json::json!({"error": "unknown path"}));
    }
    for target in [
        "/api/count",
        "/api/history?path=nope",
        "/api/count?path=%2F%ZZ",
    ] {
        let reply = tracker.get(target).await;
        assert_eq!(reply.status, 400, "{target}");
        assert!(reply.json()["error"].is_string());
    }
    assert_eq!(tracker.post("/api/counts").await.status, 405);
    assert_eq!(
        client::send(
            tracker.addr,
            RequestSpec::new(Method::DELETE, "/api/history?path=%2F")
        )
        .await
        .status,
        405
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_history_is_streamed_complete_and_in_order() {
    let Setup { tracker, db, .. } = start(&[]).await;
    seed(
        &db,
        "/big",
        100_000,
        Some("https://news.example/"),
        Some(30),
    )
    .await;
    let reply = tracker.get("/api/history?path=%2Fbig").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
    assert!(reply.header("content-length").is_none());
    let body = reply.json();
    let visits = body["visits"].as_array().unwrap();
    assert_eq!(visits.len(), 100_000);
    let times: Vec<&str> = visits
        .iter()
        .map(|v| v["registered_at"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] <= pair[1]),
        "oldest first"
    );
    assert!(visits.iter().all(|v| v["spent_time_seconds"] == 30));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_a_history_does_not_hold_up_the_dashboard() {
    let Setup { tracker, db, .. } = start(&[]).await;
    seed(&db, "/big", 50_000, None, None).await;
    // Ask for the history and never read the body.
    let stalled = tokio::net::TcpStream::connect(tracker.addr).await.unwrap();
    let request = "GET /api/history?path=%2Fbig HTTP/1.1\r\nhost: x\r\n\r\n";
    stalled.writable().await.unwrap();
    stalled.try_write(request.as_bytes()).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    assert_eq!(tracker.get("/").await.status, 200);
    assert_eq!(
        tracker.get("/api/count?path=%2Fbig").await.json(),
        serde_json::json!(50_000)
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(stalled);
}
