//! Criterion benches for the hot paths. Inputs are built outside the timed loops, and each
//! group includes the hostile inputs a public endpoint has to expect.
//!
//! `cargo bench --bench hot_paths` measures; `cargo test --benches` (run by CI) executes
//! every bench once so none can rot.

use std::hash::BuildHasher as _;
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use hyper::header::{self, HeaderMap, HeaderValue};
use oxitraffic::api;
use oxitraffic::clients::ClientLimiter;
use oxitraffic::config::Origin;
use oxitraffic::dashboard::chart;
use oxitraffic::dashboard::html::Html;
use oxitraffic::dashboard::render::{Context, IndexData, Overview, Pages, StatsData};
use oxitraffic::dashboard::selection::Selection;
use oxitraffic::db::rollups::DayCounts;
use oxitraffic::db::visits::RawVisit;
use oxitraffic::forwarded;
use oxitraffic::insights::pages::{Page, PageRow};
use oxitraffic::insights::{Campaign, Histogram, Host, Period, Summary};
use oxitraffic::keyed::Key;
use oxitraffic::live::LiveView;
use oxitraffic::paths::check::PathChecker;
use oxitraffic::paths::{Registry, normalize};
use oxitraffic::query;
use oxitraffic::routes::Routes;
use oxitraffic::script;
use oxitraffic::slots::{Pending, SlotKeys, Slots, Token};
use oxitraffic::time::Day;

const CONTEXT: Context = Context {
    site: "https://example.org",
    base_url: "https://t.example.org",
    min_delay_secs: 19,
};

fn routing(c: &mut Criterion) {
    let routes = Routes::new();
    let mut group = c.benchmark_group("routes");
    group.bench_function("register", |b| {
        b.iter(|| routes.at(black_box("/register")).is_some())
    });
    group.bench_function("page_left", |b| {
        b.iter(|| {
            routes
                .at(black_box("/page-left/9007199254740991/120"))
                .is_some()
        })
    });
    let miss = format!("/{}", "a/".repeat(2000));
    group.bench_function("long_miss", |b| {
        b.iter(|| routes.at(black_box(&miss)).is_none())
    });
    group.finish();
}

fn path_normalisation(c: &mut Criterion) {
    let mut group = c.benchmark_group("normalize");
    group.bench_function("plain", |b| {
        b.iter(|| normalize::normalize(black_box("/blog/rust-vs-julia/")))
    });
    group.bench_function("encoded", |b| {
        b.iter(|| normalize::normalize(black_box("/caf%C3%A9/%E2%82%AC?x=1#y")))
    });
    let long_escapes = format!("/{}", "%C3%A9".repeat(170));
    group.bench_function("long_escapes", |b| {
        b.iter(|| normalize::normalize(black_box(&long_escapes)))
    });
    let too_long = format!("/{}", "%41".repeat(5000));
    group.bench_function("rejected_too_long", |b| {
        b.iter(|| normalize::normalize(black_box(&too_long)).is_err())
    });
    let dots = format!("{}/../x", "/a".repeat(400));
    group.bench_function("rejected_dot_segment", |b| {
        b.iter(|| normalize::normalize(black_box(&dots)).is_err())
    });
    group.bench_function("query_param", |b| {
        b.iter(|| query::param(black_box(Some("path=%2Fblog%2Frust-vs-julia%2F")), "path").unwrap())
    });
    let many_params = "x=1&".repeat(1000) + "path=%2F";
    group.bench_function("query_param_many", |b| {
        b.iter(|| query::param(black_box(Some(&many_params)), "path"))
    });
    group.finish();
}

fn tokens_and_slots(c: &mut Criterion) {
    let mut group = c.benchmark_group("slots");
    group.bench_function("token_parse", |b| {
        b.iter(|| Token::parse(black_box("6986393944260608")))
    });
    group.bench_function("token_parse_garbage", |b| {
        b.iter(|| Token::parse(black_box("69863939442606081234567")))
    });

    // The server's default size. No protection window, so that the timed loops can go on
    // registering at one tick: slots are reused as in a busy steady state.
    let slots = Slots::new(1 << 16, 0, 0, SlotKeys::random());
    let pending = Pending {
        path: 7,
        tick: 100,
        wall_secs: 1_706_450_591,
        client: 3,
    };
    group.bench_function("register", |b| {
        b.iter(|| slots.register(black_box(pending)).unwrap())
    });
    group.bench_function("register_claim_count", |b| {
        b.iter(|| {
            let token = slots.register(pending).unwrap().token;
            slots.claim(token, 1_000, 190).unwrap().counted(42);
            slots.page_left(token)
        })
    });
    group.bench_function("claim_unknown", |b| {
        b.iter(|| {
            slots
                .claim(black_box(Token::parse("12345").unwrap()), 1_000, 0)
                .is_err()
        })
    });
    // A flood against a full array of protected visits: every probe is refused.
    let full = Slots::new(1 << 10, 0, 3_000, SlotKeys::random());
    while full.register(pending).is_ok() {}
    group.bench_function("register_refused_all_protected", |b| {
        b.iter(|| full.register(black_box(pending)).is_err())
    });
    let live = Slots::new(1 << 16, 0, 3_000, SlotKeys::random());
    for i in 0..20_000 {
        let _ = live.register(Pending {
            path: i % 100,
            ..pending
        });
    }
    group.bench_function("live_65536_slots_20000_pending", |b| {
        b.iter(|| {
            let mut open = 0u32;
            live.live(black_box(200), 3_000, |_| open += 1);
            open
        })
    });

    // Two threads (the machine's cores) registering and counting on the same small array,
    // so they collide on slots and on the ticket counter.
    let shared = Arc::new(Slots::new(64, 0, 0, SlotKeys::random()));
    group.bench_function("contended_2_threads", |b| {
        b.iter_custom(|iterations| {
            let barrier = Arc::new(Barrier::new(2));
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let (slots, barrier) = (shared.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        let started = Instant::now();
                        for _ in 0..iterations {
                            if let Ok(registered) = slots.register(pending)
                                && let Ok(claim) = slots.claim(registered.token, 1_000, 0)
                            {
                                claim.counted(1);
                            }
                        }
                        started.elapsed()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap())
                .max()
                .unwrap_or(Duration::ZERO)
        })
    });
    group.finish();
}

fn clients(c: &mut Criterion) {
    let mut group = c.benchmark_group("clients");
    let key = Key::random();
    group.bench_function("siphash_u64", |b| b.iter(|| key.hash_u64(black_box(42))));
    let limiter = ClientLimiter::new(256, Duration::from_secs(300), Key::random());
    let v4: IpAddr = "203.0.113.7".parse().unwrap();
    let v6: IpAddr = "2001:db8:1:2::7".parse().unwrap();
    group.bench_function("bucket_ipv4", |b| b.iter(|| limiter.bucket(black_box(v4))));
    group.bench_function("bucket_ipv6", |b| b.iter(|| limiter.bucket(black_box(v6))));
    let bucket = limiter.bucket(v4);
    group.bench_function("acquire_release", |b| {
        b.iter(|| {
            limiter.acquire(black_box(bucket), 1_000).unwrap();
            limiter.release(bucket, 1_000);
        })
    });
    // A flooding client: refused, with the time until room frees up.
    for _ in 0..256 {
        limiter.acquire(bucket, 2_000).unwrap();
    }
    group.bench_function("acquire_refused", |b| {
        b.iter(|| limiter.acquire(black_box(bucket), 2_000).is_err())
    });

    let proxies = |address: IpAddr| match address {
        IpAddr::V4(v4) => v4.octets()[0] == 10,
        IpAddr::V6(v6) => v6.octets()[0] == 0xfd,
    };
    let peer: IpAddr = "10.0.0.1".parse().unwrap();
    let mut chain = HeaderMap::new();
    chain.insert(
        "x-forwarded-for",
        HeaderValue::from_static("198.51.100.7, 10.0.0.3, 10.0.0.2"),
    );
    group.bench_function("client_ip_two_proxies", |b| {
        b.iter(|| forwarded::client_ip(black_box(peer), &chain, proxies))
    });
    let untrusted: IpAddr = "203.0.113.9".parse().unwrap();
    group.bench_function("client_ip_untrusted_peer", |b| {
        b.iter(|| forwarded::client_ip(black_box(untrusted), &chain, proxies))
    });
    // A client that sends a long header of its own in front of the proxy's entry.
    let mut spoofed = HeaderMap::new();
    let long = format!("{}198.51.100.7", "10.0.0.9, ".repeat(1000));
    spoofed.insert("x-forwarded-for", HeaderValue::from_str(&long).unwrap());
    group.bench_function("client_ip_long_spoofed_header", |b| {
        b.iter(|| forwarded::client_ip(black_box(peer), &spoofed, proxies))
    });
    group.finish();
}

fn registry(c: &mut Criterion) {
    let checker = PathChecker::new(
        Origin::parse("http://127.0.0.1:9").unwrap(),
        Duration::from_secs(1),
    );
    let registry = Registry::new(
        checker,
        100_000,
        Vec::new(),
        Arc::new(oxitraffic::metrics::Metrics::new(
            oxitraffic::routes::names(),
        )),
    );
    // A large site: every lookup of the bench asks for another of 1,024 paths spread over
    // the registry, so the caches hold what they would in a real run, not one entry.
    let paths: Vec<(i32, String)> = (0..100_000)
        .map(|i| (i + 1, format!("/blog/post-{i}")))
        .collect();
    registry.remember_all(&paths);
    let asked: Vec<&str> = (0..1_024)
        .map(|i| paths[(i * 9_973) % paths.len()].1.as_str())
        .collect();
    let mut group = c.benchmark_group("registry");
    let mut next = 0;
    group.bench_function("lookup_known_of_100k", |b| {
        b.iter(|| {
            next = (next + 1) % asked.len();
            registry.lookup(black_box(asked[next]))
        })
    });
    // The layout the registry replaced (a hash table of the same keyed hashes), side by
    // side: the sorted arrays must not be slower where it matters.
    let key = std::hash::RandomState::new();
    // The registry's keys are hashes already: its old hash table did not hash them again.
    let table: oxitraffic::keyed::HashKeyed<u32> = paths
        .iter()
        .enumerate()
        .map(|(index, (_, path))| (key.hash_one(path), index as u32))
        .collect();
    let table = std::sync::RwLock::new(table);
    group.bench_function("hash_table_baseline_of_100k", |b| {
        b.iter(|| {
            next = (next + 1) % asked.len();
            let hash = key.hash_one(black_box(asked[next]));
            table.read().unwrap().get(&hash).copied()
        })
    });
    group.bench_function("lookup_unknown", |b| {
        b.iter(|| registry.lookup(black_box("/made/up/path")))
    });
    group.finish();
}

fn script(c: &mut Criterion) {
    let script = script::count_js("https://t.example.org", 19);
    let fresh = HeaderMap::new();
    let mut revalidating = HeaderMap::new();
    let etag = script.respond(&fresh).headers()[header::ETAG].clone();
    revalidating.insert(header::IF_NONE_MATCH, etag);
    let mut group = c.benchmark_group("count_js");
    group.bench_function("full", |b| b.iter(|| script.respond(black_box(&fresh))));
    group.bench_function("not_modified", |b| {
        b.iter(|| script.respond(black_box(&revalidating)))
    });
    let mut junk = HeaderMap::new();
    let many_tags = (0..200)
        .map(|i| format!("\"{i:016x}\""))
        .collect::<Vec<_>>()
        .join(", ");
    junk.insert(
        header::IF_NONE_MATCH,
        HeaderValue::from_str(&many_tags).unwrap(),
    );
    group.bench_function("many_etags", |b| {
        b.iter(|| script.respond(black_box(&junk)))
    });
    group.finish();
}

/// What a busy site's dashboard shows over `query`'s range: every day, a hundred hosts with
/// ten referrers each, fifty campaigns.
fn overview(query: &str) -> Overview {
    let today = Day::from_days(20_000);
    let selection = Selection::parse(Some(query), today).unwrap();
    let range = selection.range;
    let days = (0..range.days())
        .map(|n| {
            let visits = i64::from((n * 7919) % 400);
            DayCounts {
                day: range.first.plus(n),
                views: visits * 3,
                visits,
                visitors: visits * 2,
            }
        })
        .collect();
    let mut histogram = Histogram::default();
    for (bucket, count) in histogram.counts.iter_mut().enumerate() {
        *count = 1000 + bucket as i64 * 10;
    }
    let period = |range| Period {
        range,
        views: 3_000_000,
        visits: 1_000_000,
        visitors: 700_000,
        histogram,
    };
    Overview {
        today,
        selection,
        summary: Summary {
            current: period(range),
            previous: period(range.previous()),
        },
        days,
        hosts: Arc::new(
            (0..100)
                .map(|i| Host {
                    host: Some(format!("r{i}.example")),
                    visits: 10_000 - i,
                    referrers: (0..10)
                        .map(|j| (format!("https://r{i}.example/<&>/{j}"), 1000 - j))
                        .collect(),
                })
                .collect(),
        ),
        campaigns: Arc::new(
            (0..50)
                .map(|i| Campaign {
                    source: Some(format!("source-{i}")),
                    medium: (i % 2 == 0).then(|| "email".to_string()),
                    campaign: Some(format!("campaign \"{i}\"")),
                    visits: 500 - i,
                })
                .collect(),
        ),
    }
}

fn dashboard(c: &mut Criterion) {
    let pages = Pages::new();
    let mut group = c.benchmark_group("dashboard");

    let index = IndexData {
        overview: overview("range=365d"),
        pages: Page {
            rows: (0..100)
                .map(|i| PageRow {
                    path: format!("/blog/{i}/a-post-title"),
                    views: 30_000 - i,
                    visits: 10_000 - i,
                    visitors: 8_000 - i,
                    engagement: Some(0.33),
                    median_spent: Some(75.0),
                })
                .collect(),
            total: 100_000,
        },
        live: LiveView {
            visitors: 250,
            paths: (0..100).map(|i| (format!("/blog/{i}"), 100 - i)).collect(),
        },
        getting_started: false,
    };
    group.bench_function("index_100_rows_365_days", |b| {
        b.iter(|| pages.index(&CONTEXT, black_box(&index)).len())
    });

    let stats = StatsData {
        path: "/blog/rust-vs-julia".into(),
        overview: overview("range=365d"),
        live_visitors: 3,
    };
    group.bench_function("stats_365_days", |b| {
        b.iter(|| pages.stats(&CONTEXT, black_box(&stats)).len())
    });
    let ten_years = StatsData {
        path: "/blog/rust-vs-julia".into(),
        overview: overview("from=2015-01-01&to=2024-12-31"),
        live_visitors: 3,
    };
    group.bench_function("stats_10_years_by_month", |b| {
        b.iter(|| pages.stats(&CONTEXT, black_box(&ten_years)).len())
    });

    let (columns, unit) = chart::columns(&index.overview.days);
    group.bench_function("daily_chart_365_days", |b| {
        b.iter(|| {
            let mut out = Html::with_capacity(128 * 1024);
            chart::daily(&mut out, black_box(&columns), unit, index.overview.today);
            out.len()
        })
    });
    let histogram = index.overview.summary.current.histogram;
    group.bench_function("time_on_page_chart", |b| {
        b.iter(|| {
            let mut out = Html::with_capacity(8 * 1024);
            chart::spent(&mut out, black_box(&histogram));
            out.len()
        })
    });
    let hostile = "<script>\"'&".repeat(100);
    group.bench_function("escape_hostile_text", |b| {
        b.iter(|| {
            let mut out = Html::new();
            out.text(black_box(&hostile));
            out.len()
        })
    });
    group.finish();
}

fn history(c: &mut Criterion) {
    let mut group = c.benchmark_group("api");
    group.bench_function("history_10k_visits", |b| {
        b.iter_batched_ref(
            || String::with_capacity(1 << 20),
            |out| {
                for i in 0..10_000i64 {
                    let referrer = if i % 3 == 0 {
                        Some("https://news.example/item")
                    } else {
                        None
                    };
                    api::push_visit(
                        out,
                        &RawVisit {
                            unix_secs: 1_706_450_591 + i * 37,
                            offset_secs: 7200,
                            referrer: referrer.map(str::to_string),
                            spent_time_seconds: Some((i % 900) as i32),
                        },
                    );
                    out.push(',');
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("counts_10k_paths", |b| {
        let paths: Vec<String> = (0..10_000)
            .map(|i| format!("/blog/{i}/\"title\""))
            .collect();
        b.iter_batched_ref(
            || String::with_capacity(1 << 20),
            |out| {
                for (i, path) in paths.iter().enumerate() {
                    api::push_count(out, path, i as i64);
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(
    benches,
    routing,
    path_normalisation,
    tokens_and_slots,
    clients,
    registry,
    script,
    dashboard,
    history
);
criterion_main!(benches);
