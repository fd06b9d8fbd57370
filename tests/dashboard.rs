//! The HTML dashboard v2 (SPEC §2, §9, §10) over real HTTP against the real binary and a real
//! PostgreSQL: every section with the right figures and its change against the previous
//! period, sorting and paging the pages table, presets and custom ranges, errors as pages,
//! escaping of everything a visitor sent, security headers, and a private dashboard. Data is
//! seeded with SQL (raw visits go through the database's own roll-up triggers; views and
//! visitors are added to the roll-ups directly, as the tracker's flush adds them) or comes
//! through the counting flow itself. The end of the file covers the round-1 JSON endpoints.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
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

/// A campaign's three parts.
type Utm<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);
const NO_UTM: Utm = (None, None, None);

/// Seeds `count` visits of `path` at noon (UTC, the tracker's default zone) of `day`.
async fn visits(
    db: &tokio_postgres::Client,
    path: &str,
    day: &str,
    count: i32,
    referrer: Option<&str>,
    spent: Option<i32>,
    utm: Utm<'_>,
) {
    db.execute(
        "INSERT INTO paths (path) VALUES ($1) ON CONFLICT DO NOTHING",
        &[&path],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO visits (path_id, registered_at, referrer, spent_time_seconds,
                             utm_source, utm_medium, utm_campaign)
         SELECT (SELECT id FROM paths WHERE path = $1),
                ($2::text::date + time '12:00') AT TIME ZONE 'UTC', $4, $5, $6, $7, $8
         FROM generate_series(1, $3) i",
        &[
            &path, &day, &count, &referrer, &spent, &utm.0, &utm.1, &utm.2,
        ],
    )
    .await
    .unwrap();
}

/// Views and visitors as the tracker's flush would have added them: four views and one
/// visitor per visit, on every path and day, and the site the sum of its paths. Bumps the
/// roll-ups' version, so the cached pages table is rebuilt.
async fn views_from_visits(db: &tokio_postgres::Client) {
    db.batch_execute(
        "UPDATE path_days SET views = 4 * visits, visitors = visits;
         UPDATE site_days s SET views = p.views, visitors = p.visitors
         FROM (SELECT day, sum(views) AS views, sum(visitors) AS visitors FROM path_days GROUP BY day) p
         WHERE s.day = p.day;
         UPDATE rollup_state SET version = version + 1;",
    )
    .await
    .unwrap();
}

/// Today in the tracker's zone (UTC), as the database sees it.
async fn today(db: &tokio_postgres::Client) -> String {
    db.query_one(
        "SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD')",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

async fn days_ago(db: &tokio_postgres::Client, days: i32) -> String {
    db.query_one(
        "SELECT to_char((now() AT TIME ZONE 'UTC')::date - $1::int, 'YYYY-MM-DD')",
        &[&days],
    )
    .await
    .unwrap()
    .get(0)
}

async fn page(tracker: &Tracker, target: &str) -> String {
    let reply = tracker.get(target).await;
    assert_eq!(reply.status, 200, "{target}: {}", reply.text());
    assert_page_headers(&reply);
    reply.text()
}

fn assert_page_headers(reply: &Reply) {
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = reply.header("content-security-policy").expect("a CSP");
    for directive in [
        "default-src 'none'",
        "style-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{directive}: {csp}");
    }
    assert!(
        !csp.contains("script-src") && !csp.contains("unsafe") && !csp.contains('*'),
        "nothing loosened: {csp}"
    );
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(reply.header("x-frame-options"), Some("DENY"));
}

/// The paths of the pages table, in order.
fn table_paths(html: &str) -> Vec<String> {
    html.split("<td class=\"path\"><a href=\"")
        .skip(1)
        .map(|rest| {
            let text = &rest[rest.find('>').unwrap() + 1..];
            text[..text.find("</a>").unwrap()].to_string()
        })
        .collect()
}

/// The text of the stat card labelled `label`: value and change, tags removed.
fn card(html: &str, label: &str) -> String {
    let start = html
        .find(&format!("<p class=\"label\">{label}</p>"))
        .unwrap_or_else(|| panic!("no {label} card"));
    let card = &html[start..start + html[start..].find("</div>").unwrap()];
    let mut text = String::new();
    let mut in_tag = false;
    for c in card.chars() {
        match c {
            '<' => {
                in_tag = true;
                text.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace('\u{202F}', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

const MARCH: &str = "from=2024-03-01&to=2024-03-30";

#[tokio::test(flavor = "multi_thread")]
async fn every_section_shows_its_figures_and_their_change() {
    let Setup {
        tracker, db, site, ..
    } = start(&[]).await;
    let empty = page(&tracker, "/").await;
    assert!(
        empty.contains("Getting started"),
        "an empty dashboard explains the script tag"
    );
    assert!(
        empty.contains("&lt;script type=&quot;module&quot; src=&quot;http://127.0.0.1:1/count.js")
    );
    assert!(empty.contains("No page had views or visits in this range."));

    // March 2024 (30 days), and the 30 days before it.
    let utm = (Some("newsletter"), Some("email"), Some("spring"));
    visits(
        &db,
        "/a",
        "2024-03-10",
        10,
        Some("https://news.example/x"),
        Some(25),
        utm,
    )
    .await;
    visits(
        &db,
        "/a",
        "2024-03-20",
        2,
        Some("https://news.example/y"),
        Some(75),
        NO_UTM,
    )
    .await;
    visits(
        &db,
        "/b",
        "2024-03-30",
        3,
        None,
        None,
        (Some("ads"), None, None),
    )
    .await;
    visits(
        &db,
        "/a",
        "2024-02-15",
        5,
        Some("https://old.example/"),
        Some(25),
        NO_UTM,
    )
    .await;
    visits(&db, "/a", "2024-01-15", 50, None, None, NO_UTM).await; // before both periods
    views_from_visits(&db).await;
    // Somebody has /a open right now.
    site.every_path_exists();
    assert_eq!(tracker.get("/register?path=%2Fa").await.status, 200);

    let html = page(&tracker, &format!("/?{MARCH}")).await;
    assert!(
        html.contains("Custom range: 2024-03-01 to 2024-03-30 (30 days)"),
        "{html}"
    );
    assert_eq!(
        card(&html, "Views"),
        "Views 60 ▲ up 200 % vs previous 30 days"
    );
    assert_eq!(
        card(&html, "Visits"),
        "Visits 15 ▲ up 200 % vs previous 30 days"
    );
    assert_eq!(
        card(&html, "Visitors"),
        "Visitors 15 ▲ up 200 % vs previous 30 days"
    );
    assert_eq!(
        card(&html, "Engagement"),
        "Engagement 25 % = no change vs previous 30 days"
    );
    // 10 visits in [20, 30) and 2 in [60, 90): the 6th of 12 is 60 % into the first bucket.
    assert_eq!(
        card(&html, "Median time on page"),
        "Median time on page 26 s ▲ up 4 % vs previous 30 days Estimated from histogram buckets"
    );
    assert!(
        html.contains("title=\"2024-01-31 to 2024-02-29: 5\""),
        "the previous figure"
    );

    // The daily chart: a column per day, each with its figures.
    assert_eq!(html.matches("<g class=\"col\"><title>2024-03-").count(), 30);
    assert!(html.contains("<title>2024-03-10: 40 views, 10 visits, 10 visitors</title>"));
    assert!(html.contains("<title>2024-03-11: 0 views, 0 visits, 0 visitors</title>"));
    assert!(html.contains("<td>2024-03-30</td><td class=\"num\">12</td><td class=\"num\">3</td>"));

    // The pages table, by visits.
    assert_eq!(table_paths(&html), ["/a", "/b"]);
    assert!(html.contains("2 pages with views or visits in this range"));
    assert!(html.contains(
        "<a href=\"/stats?path=/a&amp;from=2024-03-01&amp;to=2024-03-30\">/a</a></td>\
         <td class=\"num\">48</td><td class=\"num\">12</td><td class=\"num\">12</td>\
         <td class=\"num\">25\u{202F}%</td><td class=\"num\">26 s</td>"
    ));
    assert!(
        html.contains("<td class=\"num\">–</td></tr>"),
        "/b reported no time"
    );

    // Referrers by host, expanding to the full referrers; visits without one.
    assert!(html.contains(
        "<summary><span class=\"name\">news.example</span><span class=\"num\">12</span></summary>"
    ));
    assert!(html.contains(">https://news.example/x</a></span><span class=\"num\">10</span>"));
    assert!(html.contains(">https://news.example/y</a></span><span class=\"num\">2</span>"));
    assert!(html.contains("Direct or unknown</span><span class=\"num\">3</span>"));
    assert!(!html.contains("old.example"), "February is not March");

    // Campaigns, a missing part shown as such.
    assert!(
        html.contains("<td>newsletter</td><td>email</td><td>spring</td><td class=\"num\">10</td>")
    );
    assert!(html.contains("<td>ads</td><td class=\"missing\">"));

    // Time on page, live visitors.
    assert!(html.contains(">median 26 s</text>"));
    assert!(html.contains("Median <strong>26 s</strong>"));
    assert!(html.contains("12 visits reported their time."));
    assert!(html.contains("Times are kept as these buckets"));
    assert!(html.contains("1 visitor on the site now"), "{html}");
    assert!(html.contains("1 visitor now</a>"));
    assert!(!html.contains("Getting started"));

    // The same for one path.
    let stats = page(&tracker, &format!("/stats?path=%2Fa&{MARCH}")).await;
    assert!(stats.contains("<span class=\"path\">/a</span>"));
    assert_eq!(
        card(&stats, "Visits"),
        "Visits 12 ▲ up 140 % vs previous 30 days"
    );
    assert!(stats.contains("1 visitor on this page now"));
    assert!(stats.contains("news.example"));
    assert!(!stats.contains("<td>ads</td>"), "/b's campaign is not /a's");
    assert!(!stats.contains("id=\"pages\""));
    assert!(stats.contains("<a href=\"/?from=2024-03-01&amp;to=2024-03-30\">← All pages</a>"));
    let quiet = page(&tracker, &format!("/stats?path=%2Fb&{MARCH}")).await;
    assert_eq!(card(&quiet, "Visits"), "Visits 3 new vs previous 30 days");
    assert_eq!(
        card(&quiet, "Median time on page"),
        "Median time on page – – no comparison vs previous 30 days Estimated from histogram buckets"
    );
    assert!(quiet.contains("0 visitors on this page now"));

    // The view of that registration reaches the roll-ups within about a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let week = page(&tracker, "/?range=7d").await;
        if card(&week, "Views").starts_with("Views 1 ") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            card(&week, "Views")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let head = client::send(tracker.addr, RequestSpec::new(Method::HEAD, "/")).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

/// Path `i` of the table test: its name, and its figures (all distinct orders).
fn table_entry(i: i64) -> (String, i64, i64, i64, usize) {
    let name = format!("/p{:03}", (i * 37) % 250);
    let views = 1000 + (i * 7919) % 1000;
    let visits = i + 1;
    let visitors = 250 - i;
    let bucket = (i % 14) as usize;
    (name, views, visits, visitors, bucket)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pages_table_sorts_by_every_column_and_pages_through_the_site() {
    let Setup { tracker, db, .. } = start(&[]).await;
    // 250 paths with their sums on one day, in path_days directly (as the roll-ups keep them).
    let mut sql = String::from("INSERT INTO paths (path) VALUES ");
    for i in 0..250 {
        let (name, ..) = table_entry(i);
        sql.push_str(&format!("{}('{name}')", if i == 0 { "" } else { ", " }));
    }
    sql.push_str(";\n");
    for i in 0..250 {
        let (name, views, visits, visitors, bucket) = table_entry(i);
        sql.push_str(&format!(
            "INSERT INTO path_days (path_id, day, views, visits, visitors, spent_{bucket})
             SELECT id, DATE '2024-03-10', {views}, {visits}, {visitors}, {visits}
             FROM paths WHERE path = '{name}';\n"
        ));
    }
    sql.push_str("UPDATE rollup_state SET version = version + 1;");
    db.batch_execute(&sql).await.unwrap();

    // What each order must be, from the same figures (ties by path id, i.e. by i).
    let entries: Vec<_> = (0..250).map(table_entry).collect();
    let median = |bucket: usize| {
        let bounds = [
            0, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800, 3600,
        ];
        bounds
            .get(bucket + 1)
            .map_or(f64::from(bounds[bucket]), |high| {
                f64::from(bounds[bucket] + high) / 2.0
            })
    };
    let expected = |key: &str| -> Vec<String> {
        let mut order: Vec<usize> = (0..250).collect();
        order.sort_by(|&a, &b| {
            let (ea, eb) = (&entries[a], &entries[b]);
            let by = match key {
                "path" => ea.0.cmp(&eb.0),
                "views" => eb.1.cmp(&ea.1),
                "visits" => eb.2.cmp(&ea.2),
                "visitors" => eb.3.cmp(&ea.3),
                "engagement" => {
                    let rate = |e: &(String, i64, i64, i64, usize)| e.2 as f64 / e.1 as f64;
                    rate(eb).total_cmp(&rate(ea))
                }
                "spent" => median(eb.4).total_cmp(&median(ea.4)),
                _ => unreachable!(),
            };
            by.then(a.cmp(&b))
        });
        order.into_iter().map(|i| entries[i].0.clone()).collect()
    };

    let range = "from=2024-03-01&to=2024-03-30";
    for sort in ["path", "views", "visits", "visitors", "engagement", "spent"] {
        let mut seen = Vec::new();
        for page_number in 1..=3 {
            let target = format!("/?{range}&sort={sort}&page={page_number}");
            let html = page(&tracker, &target).await;
            let rows = table_paths(&html);
            assert_eq!(
                rows.len(),
                if page_number < 3 { 100 } else { 50 },
                "{target}"
            );
            let first = (page_number - 1) * 100 + 1;
            assert!(
                html.contains(&format!(
                    "Page {page_number} of 3 · rows {first}–{} of 250",
                    first + rows.len() - 1
                )),
                "{target}"
            );
            // The sorted column is marked, and every other column links to its order.
            assert_eq!(html.matches("aria-sort=").count(), 1, "{target}");
            for other in ["path", "views", "visitors", "engagement", "spent"] {
                assert!(
                    html.contains(&format!(
                        "href=\"/?{}&amp;sort={other}\"",
                        range.replace('&', "&amp;")
                    )),
                    "{target}: a link to sort by {other}"
                );
            }
            seen.extend(rows);
        }
        assert_eq!(seen, expected(sort), "sort={sort}");
        let distinct: HashSet<&String> = seen.iter().collect();
        assert_eq!(distinct.len(), 250, "no overlap, nothing skipped: {sort}");
    }
    let first = page(&tracker, &format!("/?{range}")).await;
    assert!(first.contains("<span class=\"disabled\">← Previous</span>"));
    assert!(first.contains(&format!(
        "<a rel=\"next\" href=\"/?{}&amp;page=2\">",
        range.replace('&', "&amp;")
    )));
    let past = page(&tracker, &format!("/?{range}&page=4")).await;
    assert!(past.contains("There is no page 4: the table has 3 pages."));
    assert!(table_paths(&past).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn presets_and_custom_ranges_choose_the_days() {
    let Setup { tracker, db, .. } = start(&[]).await;
    let today = today(&db).await;
    for (days, count) in [(0, 1), (10, 2), (40, 4), (200, 8)] {
        let day = days_ago(&db, days).await;
        visits(&db, "/a", &day, count, None, None, NO_UTM).await;
    }
    views_from_visits(&db).await;
    let visits_card = |html: &str| {
        card(html, "Visits")
            .split(' ')
            .nth(1)
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };

    let default = page(&tracker, "/").await;
    assert!(default.contains("<a href=\"/\" aria-current=\"page\">30 days</a>"));
    assert!(default.contains(&format!("name=\"to\" value=\"{today}\" max=\"{today}\"")));
    assert_eq!(visits_card(&default), 3);
    for (preset, label, expected) in [
        ("7d", "7 days", 1),
        ("30d", "30 days", 3),
        ("90d", "90 days", 7),
        ("365d", "365 days", 15),
    ] {
        let html = page(&tracker, &format!("/?range={preset}")).await;
        assert_eq!(visits_card(&html), expected, "{preset}");
        assert_eq!(html.matches("aria-current=\"page\"").count(), 1, "{preset}");
        assert!(
            html.contains(&format!("aria-current=\"page\">{label}</a>")),
            "{preset}"
        );
    }
    for (preset, description) in [
        ("month", "This month so far: "),
        ("last-month", "Last month: "),
        ("year", "This year so far: "),
    ] {
        let html = page(&tracker, &format!("/?range={preset}")).await;
        assert!(html.contains(description), "{preset}");
    }
    let month = page(&tracker, "/?range=month").await;
    assert!(month.contains(&format!("to {today}")));

    // Custom dates, as the form sends them; a cleared field counts as absent.
    let from = days_ago(&db, 45).await;
    let to = days_ago(&db, 5).await;
    let custom = page(&tracker, &format!("/?from={from}&to={to}")).await;
    assert_eq!(visits_card(&custom), 6);
    assert!(!custom.contains("aria-current"), "no preset is current");
    assert!(custom.contains(&format!("name=\"from\" value=\"{from}\"")));
    assert!(custom.contains("<button type=\"submit\" class=\"current\">Show</button>"));
    let cleared = page(&tracker, &format!("/?from=&to={today}")).await;
    assert_eq!(visits_card(&cleared), 3, "the 30 days ending at `to`");

    // One path keeps its path in every range link and in the form.
    let stats = page(&tracker, "/stats?path=%2Fa&range=90d").await;
    assert_eq!(visits_card(&stats), 7);
    assert!(stats.contains("<a href=\"/stats?path=/a&amp;range=7d\">7 days</a>"));
    assert!(stats.contains("<input type=\"hidden\" name=\"path\" value=\"/a\">"));
    let form = page(&tracker, &format!("/stats?path=%2Fa&from={from}&to={to}")).await;
    assert_eq!(visits_card(&form), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_a_page_saying_what_was_wrong() {
    let Setup { tracker, db, .. } = start(&[]).await;
    visits(&db, "/a", "2024-03-10", 1, None, None, NO_UTM).await;
    for (target, says) in [
        (
            "/?from=2024-02-01&to=2024-01-01",
            "`from` (2024-02-01) is after `to` (2024-01-01)",
        ),
        (
            "/?from=2024-13-01",
            "malformed `from`: expected a date YYYY-MM-DD",
        ),
        ("/?from=2000-01-01&to=2024-01-01", "at most 3660 days"),
        (
            "/?range=2y",
            "unknown `range`: use 7d, 30d, 90d, 365d, month, last-month or year",
        ),
        (
            "/?range=7d&from=2024-01-01",
            "give either `range` or `from`/`to` dates, not both",
        ),
        ("/?sort=bounce", "unknown `sort`"),
        ("/?page=0", "malformed `page`"),
        ("/?page=%ZZ", "malformed percent-encoding"),
        ("/stats", "missing query parameter: path"),
        ("/stats?path=%2Fa&range=2y", "unknown `range`"),
        ("/stats?path=%2Fa%00", "control character"),
        ("/stats?path=a", ""),
    ] {
        let reply = tracker.get(target).await;
        assert_eq!(reply.status, 400, "{target}: {}", reply.text());
        assert_page_headers(&reply);
        let html = reply.text();
        assert!(html.contains("<h1>Bad request</h1>"), "{target}: {html}");
        assert!(html.contains(says), "{target}: {html}");
        assert!(html.contains("<a href=\"/\">Back to the dashboard</a>"));
        assert!(html.ends_with("</html>\n"));
    }
    let unknown = tracker.get("/stats?path=%2Fnot-here").await;
    assert_eq!(unknown.status, 404);
    assert_page_headers(&unknown);
    assert!(unknown.text().contains("<h1>Not found</h1>"));
    assert!(
        unknown
            .text()
            .contains("No page with this path has been registered.")
    );
    let post = tracker.post("/").await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert!(post.text().contains("<h1>Method not allowed</h1>"));
    assert_page_headers(&post);
}

#[tokio::test(flavor = "multi_thread")]
async fn visitor_supplied_text_is_escaped_everywhere() {
    let Setup { tracker, site, db } = start(&[]).await;
    site.every_path_exists();
    let hostile_path = "/x\"><script>alert(1)</script><img src=x onerror=alert(2)>";
    let register = format!("/register?path={}", encode(hostile_path));
    let token = tracker.get(&register).await;
    assert_eq!(token.status, 200, "{}", token.text());
    let referrer = encode("https://evil.example/\"><script>alert(3)</script>");
    let source = encode("<script>alert(4)</script>");
    let medium = encode("\"><img src=y>");
    let campaign = encode("' onmouseover='alert(5)");
    let counted = tracker
        .post(&format!(
            "/post-sleep/{}?referrer={referrer}&utm_source={source}&utm_medium={medium}&utm_campaign={campaign}",
            token.text()
        ))
        .await;
    assert_eq!(counted.status, 200, "{}", counted.text());
    // And one still open, for the live list.
    assert_eq!(tracker.get(&register).await.status, 200);
    let stored: String = db
        .query_one("SELECT path FROM paths", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored, hostile_path,
        "stored as it is, escaped only when shown"
    );

    let index = page(&tracker, "/").await;
    // The counted visitor's page is still open, and so is the second one's.
    assert!(
        index.contains("2 visitors on the site now"),
        "live: {index}"
    );
    let start = index
        .find("<td class=\"path\"><a href=\"")
        .expect("a stats link")
        + "<td class=\"path\"><a href=\"".len();
    let stats_link = &index[start..start + index[start..].find('"').unwrap()];
    assert!(!stats_link.contains(['<', '>', '"', ' ']), "{stats_link}");
    let stats = page(&tracker, &stats_link.replace("&amp;", "&")).await;
    for html in [&index, &stats] {
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("' onmouseover"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("<td>&lt;script&gt;alert(4)&lt;/script&gt;</td>"));
        assert!(html.contains("<td>&quot;&gt;&lt;img src=y&gt;</td>"));
        assert!(html.contains("<td>&#39; onmouseover=&#39;alert(5)</td>"));
        assert!(html.contains("href=\"https://evil.example/&quot;&gt;&lt;script&gt;"));
    }
    assert!(stats.contains("<title>/x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(stats.contains("2 visitors on this page now"));
    // The hidden field of the custom-range form brings the path back as it is.
    let field = "<input type=\"hidden\" name=\"path\" value=\"";
    let start = stats.find(field).unwrap() + field.len();
    let value = &stats[start..start + stats[start..].find('"').unwrap()];
    let form = page(
        &tracker,
        &format!("/stats?path={}&from=2024-01-01", encode(value)),
    )
    .await;
    assert!(form.contains("<span class=\"path\">/x&quot;&gt;&lt;script&gt;"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stylesheet_is_cached_and_revalidated() {
    let Setup { tracker, .. } = start(&[]).await;
    let css = tracker.get("/style.css").await;
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(css.header("cache-control").unwrap().contains("immutable"));
    assert!(css.text().contains("prefers-color-scheme: dark"));
    assert!(
        css.text().contains("direction: rtl"),
        "the phone chart trick"
    );
    let html = page(&tracker, "/").await;
    assert!(html.contains("<link rel=\"stylesheet\" href=\"/style.css?v="));
    assert_eq!(
        tracker.get("/").await.header("cache-control"),
        Some("no-cache")
    );
    let etag = css.header("etag").unwrap().to_string();
    let again = client::send(
        tracker.addr,
        RequestSpec::new(Method::GET, "/style.css").header("if-none-match", etag),
    )
    .await;
    assert_eq!(again.status, 304);
}

/// `oxitraffic hash-password`, as a user makes the hash for the config.
fn password_hash(password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxitraffic"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn basic(user: &str, password: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{user}:{password}").into_bytes();
    let mut out = String::from("Basic ");
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_dashboard_asks_for_a_password() {
    assert_eq!(
        basic("Aladdin", "open sesame"),
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
    let hash = password_hash("correct horse");
    let Setup { tracker, db, .. } = start(&[
        ("OXITRAFFIC_ACCESS__DASHBOARD", "private"),
        ("OXITRAFFIC_ACCESS__USERNAME", "admin"),
        ("OXITRAFFIC_ACCESS__PASSWORD_HASH", &hash),
    ])
    .await;
    visits(&db, "/a", "2024-03-10", 1, None, None, NO_UTM).await;
    let with = |target: &'static str, authorization: Option<String>| {
        let mut request = RequestSpec::new(Method::GET, target);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        client::send(tracker.addr, request)
    };
    for target in ["/", "/stats?path=%2Fa", "/?range=2y"] {
        for authorization in [
            None,
            Some(basic("admin", "wrong")),
            Some(basic("root", "correct horse")),
        ] {
            let denied = with(target, authorization.clone()).await;
            assert_eq!(denied.status, 401, "{target} {authorization:?}");
            assert_eq!(
                denied.header("www-authenticate"),
                Some("Basic realm=\"oxitraffic\"")
            );
            assert_page_headers(&denied);
            assert_eq!(denied.header("cache-control"), Some("private, no-store"));
            assert!(
                denied.text().contains("<h1>Sign-in required</h1>"),
                "{}",
                denied.text()
            );
            assert!(!denied.text().contains("/a<"), "nothing of the site shows");
        }
    }
    for target in ["/", "/stats?path=%2Fa&from=2024-03-01&to=2024-03-30"] {
        let allowed = with(target, Some(basic("admin", "correct horse"))).await;
        assert_eq!(allowed.status, 200, "{target}: {}", allowed.text());
        assert_page_headers(&allowed);
        assert_eq!(allowed.header("cache-control"), Some("private, no-store"));
    }
    let bad = with("/?range=2y", Some(basic("admin", "correct horse"))).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.header("cache-control"), Some("private, no-store"));
    // The stylesheet and the script endpoints stay public.
    assert_eq!(tracker.get("/style.css").await.status, 200);
    assert_eq!(tracker.get("/health").await.status, 200);
}

// The round-1 JSON endpoints (SPEC §2), which the dashboard's seeding helpers also serve.

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
