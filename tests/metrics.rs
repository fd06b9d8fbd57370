//! `/metrics` from outside (SPEC §10): known traffic against the real binary, then a scrape
//! parsed as the Prometheus text exposition format 0.0.4 and its values checked exactly; and
//! `oxitraffic_database_up` through a database outage.
//!
//! The README's Monitoring section lists every metric family; a test holds it to what a real
//! scrape prints.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::client::RequestSpec;
use common::{PgCluster, Reply, Site, Tracker, TrackerConfig};
use hyper::Method;

// ---------------------------------------------------------------------------------------
// The exposition format, parsed strictly.

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug)]
struct Family {
    help: String,
    kind: String,
}

#[derive(Debug, Default)]
struct Exposition {
    /// In the order of their `# TYPE` lines.
    families: Vec<(String, Family)>,
    samples: Vec<Sample>,
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// `\\`, `\n` and (in label values) `\"` are the only escapes.
fn unescape(text: &str, quote_allowed: bool) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some('"') if quote_allowed => out.push('"'),
                other => panic!("invalid escape \\{other:?} in {text:?}"),
            },
            c => out.push(c),
        }
    }
    out
}

fn parse_value(text: &str) -> f64 {
    match text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => text
            .parse()
            .unwrap_or_else(|_| panic!("not a sample value: {text:?}")),
    }
}

/// `name{a="x",b="y"} value [timestamp]`.
fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("{line:?}"));
    let name = &line[..name_end];
    assert!(is_metric_name(name), "metric name {name:?}");
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inside) = rest.strip_prefix('{') {
        let mut cursor = inside;
        loop {
            if let Some(after) = cursor.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = cursor
                .split_once("=\"")
                .unwrap_or_else(|| panic!("{line:?}"));
            assert!(is_label_name(label), "label name {label:?} in {line:?}");
            // The value ends at the first `"` not escaped.
            let mut end = None;
            let mut escaped = false;
            for (index, c) in after.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => {
                        end = Some(index);
                        break;
                    }
                    '\n' => panic!("raw line feed in a label value"),
                    _ => {}
                }
            }
            let end = end.unwrap_or_else(|| panic!("unterminated label value in {line:?}"));
            let value = unescape(&after[..end], true);
            assert!(
                labels.insert(label.to_string(), value).is_none(),
                "label {label} twice in {line:?}"
            );
            cursor = &after[end + 1..];
            cursor = cursor.strip_prefix(',').unwrap_or(cursor);
        }
    }
    let mut fields = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no value in {line:?}"))
        .split(' ');
    let value = parse_value(fields.next().unwrap());
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .unwrap_or_else(|_| panic!("timestamp in {line:?}"));
    }
    assert_eq!(fields.next(), None, "trailing fields in {line:?}");
    Sample {
        name: name.to_string(),
        labels,
        value,
    }
}

/// The family a sample belongs to: its own name, or a histogram's or summary's.
fn family_of<'a>(exposition: &'a Exposition, sample: &str) -> Option<&'a (String, Family)> {
    exposition.families.iter().find(|(name, family)| {
        name == sample
            || match family.kind.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| sample.strip_suffix(suffix) == Some(name)),
                "summary" => ["_sum", "_count"]
                    .iter()
                    .any(|suffix| sample.strip_suffix(suffix) == Some(name)),
                _ => false,
            }
    })
}

/// Parses a whole scrape and checks the rules of the format: every line ends in `\n`; HELP
/// and TYPE at most once per family and before its samples; a family's samples in one
/// group; no series twice; histogram buckets cumulative, increasing in `le`, ending in
/// `+Inf` equal to `_count`, with one `_sum`.
fn parse(text: &str) -> Exposition {
    assert!(text.ends_with('\n'), "the last line ends with a line feed");
    let mut exposition = Exposition::default();
    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        assert!(!line.is_empty(), "an empty line");
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("HELP"), Some(name), Some(help)) => {
                    assert!(is_metric_name(name), "{line}");
                    let help = unescape(help, false);
                    assert!(
                        helps.insert(name.into(), help).is_none(),
                        "HELP twice: {line}"
                    );
                }
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(is_metric_name(name), "{line}");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "{line}"
                    );
                    assert!(
                        exposition.families.iter().all(|(n, _)| n != name),
                        "TYPE twice: {line}"
                    );
                    assert!(
                        !exposition.samples.iter().any(|s| {
                            s.name == name
                                || s.name.strip_prefix(name).is_some_and(|suffix| {
                                    ["_bucket", "_sum", "_count"].contains(&suffix)
                                })
                        }),
                        "TYPE after samples: {line}"
                    );
                    let help = helps.get(name).cloned().unwrap_or_default();
                    exposition.families.push((
                        name.into(),
                        Family {
                            help,
                            kind: kind.into(),
                        },
                    ));
                }
                _ => {} // a plain comment
            }
            continue;
        }
        let sample = parse_sample(line);
        let (family, _) = family_of(&exposition, &sample.name)
            .unwrap_or_else(|| panic!("{} has no TYPE before it", sample.name));
        if current.as_ref() != Some(family) {
            assert!(
                finished.insert(family.clone()),
                "the samples of {family} are not in one group"
            );
            current = Some(family.clone());
        }
        assert!(
            !exposition
                .samples
                .iter()
                .any(|s| s.name == sample.name && s.labels == sample.labels),
            "series twice: {line}"
        );
        exposition.samples.push(sample);
    }
    for (name, _) in &exposition.families {
        assert!(helps.contains_key(name), "{name} has no HELP");
    }
    check_histograms(&exposition);
    exposition
}

fn check_histograms(exposition: &Exposition) {
    for (family, _) in exposition
        .families
        .iter()
        .filter(|(_, f)| f.kind == "histogram")
    {
        for count in exposition.find(&format!("{family}_count"), &[]) {
            let series = |sample: &&Sample| {
                let mut labels = sample.labels.clone();
                labels.remove("le");
                labels == count.labels
            };
            let buckets: Vec<&Sample> = exposition
                .find(&format!("{family}_bucket"), &[])
                .into_iter()
                .filter(series)
                .collect();
            let bounds: Vec<f64> = buckets
                .iter()
                .map(|b| parse_value(&b.labels["le"]))
                .collect();
            assert!(bounds.len() > 1, "{family} has buckets");
            assert!(
                bounds.windows(2).all(|w| w[0] < w[1]),
                "{family}: {bounds:?}"
            );
            assert_eq!(bounds.last(), Some(&f64::INFINITY), "{family} ends in +Inf");
            assert!(
                buckets.windows(2).all(|w| w[0].value <= w[1].value),
                "{family} buckets are cumulative"
            );
            assert_eq!(buckets.last().unwrap().value, count.value, "{family} +Inf");
            let sums = exposition.find(&format!("{family}_sum"), &[]);
            assert_eq!(sums.into_iter().filter(series).count(), 1, "{family}_sum");
        }
    }
}

impl Exposition {
    /// The samples named `name` carrying (at least) `labels`.
    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The one sample named `name` with exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<_> = self
            .find(name, labels)
            .into_iter()
            .filter(|s| s.labels.len() == labels.len())
            .collect();
        match found[..] {
            [sample] => sample.value,
            _ => panic!("{name}{labels:?}: {} samples", found.len()),
        }
    }

    fn kind(&self, family: &str) -> &str {
        let (_, family) = self
            .families
            .iter()
            .find(|(name, _)| name == family)
            .unwrap_or_else(|| panic!("no family {family}"));
        &family.kind
    }

    fn requests(&self, route: &str, status: &str) -> f64 {
        let labels = [("route", route), ("status", status)];
        let found = self.find("oxitraffic_http_requests_total", &labels);
        found.first().map_or(0.0, |s| s.value)
    }
}

#[test]
fn the_parser_knows_the_format() {
    let text = "# HELP a_total A \\\\ help\\nline.\n# TYPE a_total counter\n\
                a_total{x=\"q\\\"uo\\\\te\\n\",y=\"\"} 3\na_total 1.5e3 1700000000000\n\
                # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n\
                h_sum 4.5\nh_count 2\n";
    let parsed = std::panic::catch_unwind(|| parse(text));
    assert!(parsed.is_err(), "h has no HELP");
    let text = text.replace("# TYPE h", "# HELP h H.\n# TYPE h");
    let exposition = parse(&text);
    assert_eq!(exposition.families[0].1.help, "A \\ help\nline.");
    assert_eq!(
        exposition.value("a_total", &[("x", "q\"uo\\te\n"), ("y", "")]),
        3.0
    );
    assert_eq!(exposition.value("a_total", &[]), 1500.0);
    assert_eq!(exposition.value("h_count", &[]), 2.0);
    for bad in [
        "# TYPE a counter\na 1\n# TYPE b gauge\nb 1\na 2\n", // a in two groups
        "# HELP a A.\n# TYPE a counter\na 1\na 2\n",         // a series twice
        "# HELP a A.\n# TYPE a counter\na{x=\"1} 1\n",       // unterminated
        "# HELP a A.\n# TYPE a counter\na{x=\"\\t\"} 1\n",   // unknown escape
        "# HELP a A.\n# TYPE a counter\na one\n",
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n",
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 0\nh_count 1\n",
        "# HELP a A.\n# TYPE a counter\na 1",
        "b 1\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| parse(bad)).is_err(),
            "accepted: {bad:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The tracker.

struct Scraper {
    /// Scrapes answered so far, each a request to the `/metrics` route.
    scrapes: u32,
}

impl Scraper {
    async fn scrape(&mut self, tracker: &Tracker) -> (Reply, Exposition) {
        let reply = tracker.get("/metrics").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        self.scrapes += 1;
        let exposition = parse(&reply.text());
        (reply, exposition)
    }
}

fn public_metrics(config: TrackerConfig) -> TrackerConfig {
    config
        .set("OXITRAFFIC_ACCESS__METRICS", "public")
        .set("OXITRAFFIC_MIN_DELAY_SECS", "0")
        .set("OXITRAFFIC_VISITOR_SLOTS", "1024")
}

/// Polls `/health` until it is 200, and says how many of each status it saw.
async fn healthy(tracker: &Tracker) -> BTreeMap<u16, u32> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = BTreeMap::new();
    loop {
        let status = tracker.get("/health").await.status;
        *seen.entry(status).or_default() += 1;
        if status == 200 {
            return seen;
        }
        assert!(Instant::now() < deadline, "/health stayed {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn expect(tracker: &Tracker, method: Method, target: &str, status: u16) -> Reply {
    expect_with(tracker, RequestSpec::new(method, target), status).await
}

async fn expect_with(tracker: &Tracker, spec: RequestSpec<'_>, status: u16) -> Reply {
    let target = spec.target.to_string();
    let reply = common::client::send(tracker.addr, spec).await;
    assert_eq!(reply.status, status, "{target}: {}", reply.text());
    reply
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scrape_after_known_traffic_says_exactly_what_happened() {
    let started = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let (_, site, config) = common::setup().await;
    site.add_page("/");
    let tracker = Tracker::start(&public_metrics(config));
    let health = healthy(&tracker).await;
    let mut scraper = Scraper { scrapes: 0 };

    // Known traffic. Registrations: N = 5 of `/`, two of them from browsers that carry
    // today's marker of the page (seen today already), so 3 new visitors of the page.
    let (n, m, k) = (5, 3, 2);
    let mut tokens = Vec::new();
    let mut marker = None;
    for i in 0..n {
        let mut spec = RequestSpec::new(Method::GET, "/register?path=%2F");
        if i >= 3 {
            spec = spec.header("if-modified-since", marker.clone().unwrap());
        }
        let reply = expect_with(&tracker, spec, 200).await;
        marker = reply.header("last-modified").map(str::to_string);
        tokens.push(reply.text());
    }
    // M counted visits (no delay), K of them reported left.
    for token in &tokens[..m] {
        expect(&tracker, Method::POST, &format!("/post-sleep/{token}"), 200).await;
    }
    for token in &tokens[..k] {
        expect(
            &tracker,
            Method::POST,
            &format!("/page-left/{token}/30"),
            200,
        )
        .await;
    }
    // A path the site does not have: the path check says missing; `/` was checked and exists.
    expect(&tracker, Method::GET, "/register?path=%2Fmissing", 404).await;
    // Malformed requests and unknown tokens.
    expect(&tracker, Method::GET, "/register?path=no-slash", 400).await;
    expect(&tracker, Method::POST, "/post-sleep/not-a-number", 400).await;
    expect(&tracker, Method::POST, "/post-sleep/12345", 404).await;
    let uncounted = &tokens[n - 1];
    expect(
        &tracker,
        Method::POST,
        &format!("/page-left/{uncounted}/5"),
        404,
    )
    .await;
    expect(
        &tracker,
        Method::POST,
        &format!("/page-left/{uncounted}/soon"),
        400,
    )
    .await;
    // The site's day marker: a new visitor, then the same browser again.
    let visitor = expect(&tracker, Method::GET, "/visitor", 200).await;
    let site_marker = visitor.header("last-modified").unwrap().to_string();
    let again = RequestSpec::new(Method::GET, "/visitor").header("if-modified-since", site_marker);
    expect_with(&tracker, again, 304).await;
    // No route: counted nowhere (its label would be whatever clients send).
    expect(&tracker, Method::GET, "/wp-login.php", 404).await;

    // The views are written every second; wait for that batch.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (reply, exposition) = loop {
        let (reply, exposition) = scraper.scrape(&tracker).await;
        let views = [("kind", "views")];
        if exposition.value("oxitraffic_writer_batches_total", &views) >= 1.0 {
            break (reply, exposition);
        }
        assert!(Instant::now() < deadline, "no views batch");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = reply.text();
    std::fs::write(
        concat!(env!("CARGO_TARGET_TMPDIR"), "/metrics-scrape.txt"),
        &text,
    )
    .unwrap();
    let e = &exposition;

    // Requests by route and status; the scrape that produced this is not in it yet.
    let expected_requests = [
        ("/register", "200", n),
        ("/register", "404", 1),
        ("/register", "400", 1),
        ("/post-sleep/{token}", "200", m),
        ("/post-sleep/{token}", "400", 1),
        ("/post-sleep/{token}", "404", 1),
        ("/page-left/{token}/{seconds}", "200", k),
        ("/page-left/{token}/{seconds}", "404", 1),
        ("/page-left/{token}/{seconds}", "400", 1),
        ("/visitor", "200", 1),
        ("/visitor", "304", 1),
        ("/metrics", "200", scraper.scrapes as usize - 1),
    ];
    let health_series: Vec<(&str, String, usize)> = health
        .iter()
        .map(|(status, count)| ("/health", status.to_string(), *count as usize))
        .collect();
    let mut per_route: BTreeMap<&str, usize> = BTreeMap::new();
    let all = expected_requests
        .iter()
        .map(|(route, status, count)| (*route, status.to_string(), *count))
        .chain(health_series)
        .filter(|(_, _, count)| *count > 0);
    let mut expected_series = 0;
    for (route, status, count) in all {
        assert_eq!(e.requests(route, &status), count as f64, "{route} {status}");
        *per_route.entry(route).or_default() += count;
        expected_series += 1;
    }
    let requests = e.find("oxitraffic_http_requests_total", &[]);
    assert_eq!(
        requests.len(),
        expected_series,
        "only the route/status pairs seen, and no unrouted request: {requests:#?}"
    );
    assert_eq!(e.kind("oxitraffic_http_requests_total"), "counter");
    // A duration for each of those requests, by route.
    let durations = "oxitraffic_http_request_duration_seconds";
    assert_eq!(e.kind(durations), "histogram");
    for (route, count) in &per_route {
        let labels = [("route", *route)];
        assert_eq!(
            e.value(&format!("{durations}_count"), &labels),
            *count as f64,
            "{route}"
        );
        let inf = [("route", *route), ("le", "+Inf")];
        assert_eq!(e.value(&format!("{durations}_bucket"), &inf), *count as f64);
        let sum = e.value(&format!("{durations}_sum"), &labels);
        assert!(sum > 0.0 && sum < *count as f64 * 10.0, "{route}: {sum}");
    }
    assert_eq!(
        e.find(&format!("{durations}_count"), &[]).len(),
        per_route.len()
    );

    // What was counted.
    let registrations = "oxitraffic_registrations_total";
    for (outcome, count) in [
        ("ok", n),
        ("not_on_site", 1),
        ("bad_request", 1),
        ("excluded", 0),
        ("path_limit", 0),
        ("client_limit", 0),
        ("busy", 0),
        ("unavailable", 0),
    ] {
        assert_eq!(
            e.value(registrations, &[("outcome", outcome)]),
            count as f64,
            "{outcome}"
        );
    }
    assert_eq!(e.find(registrations, &[]).len(), 8);
    assert_eq!(e.value("oxitraffic_views_total", &[]), n as f64);
    assert_eq!(e.value("oxitraffic_visits_total", &[]), m as f64);
    assert_eq!(
        e.value("oxitraffic_visitors_total", &[("scope", "page")]),
        3.0
    );
    assert_eq!(
        e.value("oxitraffic_visitors_total", &[("scope", "site")]),
        1.0
    );
    assert_eq!(
        e.value("oxitraffic_spent_time_reports_total", &[]),
        k as f64
    );
    assert_eq!(e.value("oxitraffic_client_limited_total", &[]), 0.0);

    // The writer: each counted visit and each report was committed in some batch.
    let batches = "oxitraffic_writer_batches_total";
    let visit_batches = e.value(batches, &[("kind", "visits")]);
    let spent_batches = e.value(batches, &[("kind", "spent_times")]);
    let view_batches = e.value(batches, &[("kind", "views")]);
    assert!((1.0..=m as f64).contains(&visit_batches), "{visit_batches}");
    assert!((1.0..=k as f64).contains(&spent_batches), "{spent_batches}");
    assert!(view_batches >= 1.0);
    let rows = "oxitraffic_writer_batch_rows";
    assert_eq!(e.kind(rows), "histogram");
    assert_eq!(
        e.value(&format!("{rows}_count"), &[]),
        visit_batches + spent_batches + view_batches,
        "one observation per batch"
    );
    // Visits and reports are one row each; each views batch holds the one path viewed.
    assert_eq!(
        e.value(&format!("{rows}_sum"), &[]),
        (m + k) as f64 + view_batches
    );
    assert_eq!(e.value("oxitraffic_writer_failures_total", &[]), 0.0);

    // Path checks: `/` exists, `/missing` does not.
    let checks = "oxitraffic_path_checks_total";
    assert_eq!(e.value(checks, &[("result", "exists")]), 1.0);
    assert_eq!(e.value(checks, &[("result", "missing")]), 1.0);
    assert_eq!(e.value(checks, &[("result", "failed")]), 0.0);
    let check_duration = "oxitraffic_path_check_duration_seconds_count";
    assert_eq!(e.value(check_duration, &[]), 2.0);

    // Gauges at scrape time.
    for (gauge, value) in [
        ("oxitraffic_database_up", 1.0),
        // Registered and not counted: N - M.
        ("oxitraffic_pending_visitors", (n - m) as f64),
        // Registered in the last five minutes and not reported left: N - K.
        ("oxitraffic_live_visitors", (n - k) as f64),
        ("oxitraffic_writer_queue_depth", 0.0),
        ("oxitraffic_visitor_slots", 1024.0),
        ("oxitraffic_known_paths", 1.0),
    ] {
        assert_eq!(e.kind(gauge), "gauge", "{gauge}");
        assert_eq!(e.value(gauge, &[]), value, "{gauge}");
    }
    let rss = e.value("process_resident_memory_bytes", &[]);
    assert!(
        (1024.0 * 1024.0..64.0 * 1024.0 * 1024.0).contains(&rss),
        "resident {rss} bytes"
    );
    let start = e.value("process_start_time_seconds", &[]);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    assert!(
        start >= started.as_secs_f64() - 1.0 && start <= now.as_secs_f64(),
        "started at {start}"
    );
    let version = [("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(e.value("oxitraffic_build_info", &version), 1.0);
    // Connected once at the start, never lost.
    assert_eq!(e.value("oxitraffic_database_reconnects_total", &[]), 0.0);

    // Counters only grow, and the scrape itself shows up in the next one.
    let (_, next) = scraper.scrape(&tracker).await;
    assert_eq!(
        next.requests("/metrics", "200"),
        f64::from(scraper.scrapes - 1)
    );
    for sample in &e.samples {
        if e.kind(&family_of(e, &sample.name).unwrap().0) == "counter" {
            let later = next.value(&sample.name, &labels_of(sample));
            assert!(later >= sample.value, "{} went down", sample.name);
        }
    }
    assert_documented(e);
}

fn labels_of(sample: &Sample) -> Vec<(&str, &str)> {
    sample
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// The README's Monitoring section lists each family once (`- \`name\`…`), and only those a
/// scrape prints.
fn assert_documented(exposition: &Exposition) {
    let readme = include_str!("../README.md");
    let section = readme
        .split("\n## Monitoring\n")
        .nth(1)
        .expect("the README has a Monitoring section");
    let section = section.split("\n## ").next().unwrap();
    let documented: BTreeSet<&str> = section
        .lines()
        .filter_map(|line| line.strip_prefix("- `")?.split('`').next())
        .filter(|name| is_metric_name(name))
        .collect();
    let printed: BTreeSet<&str> = exposition
        .families
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(documented, printed, "the README's list of metrics");
}

#[tokio::test(flavor = "multi_thread")]
async fn database_up_follows_an_outage() {
    let cluster = PgCluster::start();
    let database = cluster.create_database().await;
    let site = Site::start();
    let config = TrackerConfig::new(&cluster, &database, &site.origin());
    let tracker = Tracker::start(&public_metrics(config));
    healthy(&tracker).await;
    let mut scraper = Scraper { scrapes: 0 };
    let (_, before) = scraper.scrape(&tracker).await;
    assert_eq!(before.value("oxitraffic_database_up", &[]), 1.0);
    let reconnects = before.value("oxitraffic_database_reconnects_total", &[]);

    cluster.stop();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, down) = scraper.scrape(&tracker).await;
        if down.value("oxitraffic_database_up", &[]) == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "database_up stayed 1 with PostgreSQL stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The scrape still answers, and agrees with `/health`.
    assert_eq!(tracker.get("/health").await.status, 503);

    cluster.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let (_, after) = scraper.scrape(&tracker).await;
        if after.value("oxitraffic_database_up", &[]) == 1.0 {
            break after;
        }
        assert!(
            Instant::now() < deadline,
            "database_up stayed 0 after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        after.value("oxitraffic_database_reconnects_total", &[]) > reconnects,
        "the reconnection is counted"
    );
    assert_eq!(tracker.get("/health").await.status, 200);
}
