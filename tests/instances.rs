//! Several instances behind a real load balancer (SPEC §11): HAProxy, run with the
//! configuration in `deploy/haproxy.cfg` exactly as the README shows it, in front of two
//! instances that share one database and schema.
//!
//! The balancer sends `/register` anywhere and `/post-sleep/TOKEN`, `/page-left/TOKEN/…` to
//! the instance in `token >> 48`. The tests drive whole visits through it, the way `count.js`
//! does (503 and 425 are retried with backoff, a connection error too), and check what the
//! database holds afterwards: every visit answered 200 is stored exactly once, also across a
//! restart of one instance under load, and a busy instance's full slot table survives its
//! restarts. A missing HAProxy is a failure, never a skip: `.ci/test` installs it.
//!
//! HAProxy listens on loopback, on a free port, runs in the foreground as a child process and
//! is killed at the end. Its address is 127.0.0.1, which the instances trust as a proxy;
//! test clients that need an address of their own connect from other loopback addresses.
//! When a test fails, the logs of both instances and of HAProxy are printed.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use common::{PgCluster, Reply, Site, Tracker, TrackerConfig};

/// Bits of a token below its instance number.
const INSTANCE_SHIFT: u32 = 48;
/// The configuration under test, as shipped.
const HAPROXY_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy.cfg");

/// One test at a time: each runs two instances, HAProxy and a stream of visitors on a small
/// machine, and the restart test measures what a visitor sees while an instance is away.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn instance_of(token: u64) -> u64 {
    token >> INSTANCE_SHIFT
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The last `lines` lines of a log, for failure messages.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The HAProxy binary: `OXITRAFFIC_TEST_HAPROXY`, else Debian's `/usr/sbin/haproxy`, else
/// whatever `haproxy` is on `PATH`.
fn haproxy_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("OXITRAFFIC_TEST_HAPROXY") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    ["/usr/sbin", "/usr/local/sbin"]
        .into_iter()
        .map(PathBuf::from)
        .chain(on_path)
        .map(|dir| dir.join("haproxy"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "HAProxy was not found. Install it (Debian/Ubuntu: apt-get install haproxy), run \
                 .ci/test, which installs it, or set OXITRAFFIC_TEST_HAPROXY."
            )
        })
}

/// HAProxy in the foreground with `deploy/haproxy.cfg` and, after it, a test-only file: a
/// probe that tells whether HAProxy sees both instances up, and backends `instance2` …
/// `instance31` that answer with their own name, to prove the routing rule for every
/// instance number.
struct Balancer {
    child: Child,
    addr: SocketAddr,
    probe: SocketAddr,
    dir: PathBuf,
    output: Arc<Mutex<Vec<String>>>,
}

impl Balancer {
    fn start(instances: [SocketAddr; 2]) -> Balancer {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "oxitraffic-haproxy-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let probe: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut extra = format!(
            "frontend probe\n    bind {probe}\n    http-request return status 200 content-type \
             text/plain lf-string \"%[srv_is_up(instances/instance0)] \
             %[srv_is_up(instances/instance1)]\"\n"
        );
        for number in 2..32 {
            extra.push_str(&format!(
                "\nbackend instance{number}\n    http-request return status 200 content-type \
                 text/plain string \"instance {number}\"\n"
            ));
        }
        let extra_file = dir.join("test-only.cfg");
        std::fs::write(&extra_file, extra).unwrap();
        let mut child = Command::new(haproxy_binary())
            .arg("-db")
            .arg("-f")
            .arg(HAPROXY_CONFIG)
            .arg("-f")
            .arg(&extra_file)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OXITRAFFIC_LB_BIND", addr.to_string())
            .env("OXITRAFFIC_INSTANCE_0", instances[0].to_string())
            .env("OXITRAFFIC_INSTANCE_1", instances[1].to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", haproxy_binary().display()));
        let output = Arc::new(Mutex::new(Vec::new()));
        let streams = [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ];
        for stream in streams {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    output.lock().unwrap().push(line);
                }
            });
        }
        Balancer {
            child,
            addr,
            probe,
            dir,
            output,
        }
    }

    fn logs(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// Waits until HAProxy answers and has both instances up.
    async fn wait_until_both_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("HAProxy exited ({status}):\n{}", self.logs());
            }
            if let Ok(reply) = common::client::try_get(self.probe, "/").await
                && reply.text() == "1 1"
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "HAProxy did not see both instances up within 20 s:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Two instances on one database, a fake site, and HAProxy in front.
struct Deployment {
    database: String,
    site: Site,
    configs: [TrackerConfig; 2],
    instances: [Tracker; 2],
    /// Logs of instances that were replaced by a restart.
    earlier_logs: Vec<(usize, String)>,
    balancer: Balancer,
}

impl Deployment {
    /// Starts everything; `configure` adjusts the settings both instances share.
    async fn start(configure: impl Fn(TrackerConfig) -> TrackerConfig) -> Deployment {
        let (database, site, config) = common::setup().await;
        for path in PATHS.iter().chain(&["/live"]) {
            site.add_page(path);
        }
        // The balancer's address: only from it is X-Forwarded-For believed.
        let config = configure(config.set("OXITRAFFIC_TRUSTED_PROXIES", "127.0.0.1"));
        let configs = [0, 1].map(|number| {
            config
                .clone()
                .set("OXITRAFFIC_INSTANCE", number.to_string())
                .set(
                    "OXITRAFFIC_SOCKET_ADDRESS",
                    format!("127.0.0.1:{}", free_port()),
                )
        });
        let instances = [Tracker::start(&configs[0]), Tracker::start(&configs[1])];
        for instance in &instances {
            instance.wait_for_health(200, Duration::from_secs(20)).await;
            assert_started_at_once(instance);
        }
        let balancer = Balancer::start([instances[0].addr, instances[1].addr]);
        let mut deployment = Deployment {
            database,
            site,
            configs,
            instances,
            earlier_logs: Vec::new(),
            balancer,
        };
        deployment.balancer.wait_until_both_up().await;
        deployment
    }

    fn lb(&self) -> SocketAddr {
        self.balancer.addr
    }

    async fn db(&self) -> tokio_postgres::Client {
        PgCluster::shared().connect(&self.database).await
    }

    /// SIGTERM, `down_for` with nothing listening, then the same configuration started
    /// again; returns the instant the old process had exited and the instant the new one
    /// served.
    async fn restart(&mut self, number: usize, down_for: Duration) -> (Instant, Instant) {
        let exited = tokio::task::block_in_place(|| {
            let status = self.instances[number].terminate(Duration::from_secs(20));
            assert!(
                status.success(),
                "instance {number} exited with {status}:\n{}",
                self.instances[number].logs()
            );
            Instant::now()
        });
        tokio::time::sleep(down_for).await;
        let fresh = tokio::task::block_in_place(|| Tracker::start(&self.configs[number]));
        let old = std::mem::replace(&mut self.instances[number], fresh);
        self.earlier_logs.push((number, old.logs()));
        self.instances[number]
            .wait_for_health(200, Duration::from_secs(20))
            .await;
        assert_started_at_once(&self.instances[number]);
        (exited, Instant::now())
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (number, logs) in &self.earlier_logs {
            eprintln!(
                "===== instance {number}, before its restart (last lines) =====\n{}",
                tail(logs, 300)
            );
        }
        for (number, instance) in self.instances.iter().enumerate() {
            eprintln!(
                "===== instance {number} (last lines) =====\n{}",
                tail(&instance.logs(), 300)
            );
        }
        eprintln!(
            "===== HAProxy (last lines) =====\n{}",
            tail(&self.balancer.logs(), 300)
        );
    }
}

/// An instance that serves has restored the visitors of its last run, or found none: the
/// database is reachable in these tests, so it must not have given up waiting for it (it
/// did when its connections came up in an unlucky order).
fn assert_started_at_once(instance: &Tracker) {
    let logs = instance.logs();
    assert!(
        !logs.contains("the database is not reachable yet"),
        "the start gave up on the saved visitors:\n{logs}"
    );
}

const PATHS: [&str; 3] = ["/", "/a", "/b"];

/// What the visitors saw, by endpoint and answer: `"post-sleep 503"`,
/// `"register connection error"`, …
#[derive(Default)]
struct Tally(Mutex<BTreeMap<String, u64>>);

impl Tally {
    fn add(&self, what: &str, outcome: &str) {
        *self
            .0
            .lock()
            .unwrap()
            .entry(format!("{what} {outcome}"))
            .or_default() += 1;
    }

    /// Answers that made a visitor try again.
    fn retries(&self) -> u64 {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(key, _)| {
                [" 425", " 429", " 503", " connection error"]
                    .iter()
                    .any(|end| key.ends_with(end))
            })
            .map(|(_, count)| count)
            .sum()
    }

    fn summary(&self) -> String {
        format!("{:?}", self.0.lock().unwrap())
    }
}

/// Sends a request like `count.js` does: a 425, 429 or 503 or a failed connection is tried
/// again after 100 ms, 200 ms, 400 ms … at most 1 s apart (count.js waits 1 s, 2 s, 4 s …
/// or what `Retry-After` says; the test is faster), for up to 30 s. Returns the final answer.
/// `/page-left` is retried too, although count.js sends it as a beacon that nobody retries:
/// so that the test can check that a visit counted before a restart takes its time after it.
async fn like_count_js(lb: SocketAddr, method: Method, target: &str, tally: &Tally) -> Reply {
    let what = target.split('/').nth(1).unwrap_or_default();
    let what = what.split('?').next().unwrap_or_default().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut wait = Duration::from_millis(100);
    loop {
        let attempt =
            common::client::try_send(lb, common::RequestSpec::new(method.clone(), target)).await;
        let retry = match &attempt {
            Ok(reply) => {
                tally.add(&what, &reply.status.to_string());
                [425, 429, 503].contains(&reply.status)
            }
            Err(_) => {
                tally.add(&what, "connection error");
                true
            }
        };
        if !retry {
            return attempt.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "{method} {target} was still refused after 30 s: {attempt:?}"
        );
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(1));
    }
}

/// One visitor's visit as the test saw it.
#[derive(Debug, Clone)]
struct Visit {
    token: u64,
    path: &'static str,
    /// When `/register` answered.
    registered: Instant,
    /// The final answer of `/post-sleep`, and when it came.
    post_sleep: u16,
    answered: Instant,
    /// The seconds reported, and the final answer of `/page-left`.
    page_left: Option<(i32, u16)>,
}

async fn register(lb: SocketAddr, path: &str, tally: &Tally) -> u64 {
    let target = format!("/register?path={}", common::client::encode(path));
    let reply = like_count_js(lb, Method::GET, &target, tally).await;
    assert_eq!(reply.status, 200, "{target}: {}", reply.text());
    reply.text().parse().expect("a token")
}

/// Counts the visit of `token` through the balancer; then reports `seconds` spent if given.
async fn finish(
    lb: SocketAddr,
    token: u64,
    path: &'static str,
    registered: Instant,
    seconds: Option<i32>,
    tally: &Tally,
) -> Visit {
    let target = format!("/post-sleep/{token}?referrer=https%3A%2F%2Felsewhere.example%2Fpage");
    let post_sleep = like_count_js(lb, Method::POST, &target, tally).await.status;
    let answered = Instant::now();
    let page_left = match seconds {
        Some(seconds) if post_sleep == 200 => {
            let target = format!("/page-left/{token}/{seconds}");
            let status = like_count_js(lb, Method::POST, &target, tally).await.status;
            Some((seconds, status))
        }
        _ => None,
    };
    Visit {
        token,
        path,
        registered,
        post_sleep,
        answered,
        page_left,
    }
}

/// A whole visit through the balancer: register, wait out the delay, count, leave.
async fn visit(lb: SocketAddr, number: usize, delay: Duration, tally: &Tally) -> Visit {
    let path = PATHS[number % PATHS.len()];
    let token = register(lb, path, tally).await;
    let registered = Instant::now();
    tokio::time::sleep(delay).await;
    let seconds = 1 + (number % 500) as i32;
    finish(lb, token, path, registered, Some(seconds), tally).await
}

/// `token → (visit id, path, spent seconds)` for every stored visit; fails on a token stored
/// twice.
async fn stored_visits(db: &tokio_postgres::Client) -> HashMap<u64, (i64, String, Option<i32>)> {
    let rows = db
        .query(
            "SELECT t.token, v.id, p.path, v.spent_time_seconds
             FROM visits v JOIN visit_tokens t ON t.visit_id = v.id JOIN paths p ON p.id = v.path_id",
            &[],
        )
        .await
        .unwrap();
    let total: i64 = db
        .query_one("SELECT count(*) FROM visits", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        total as usize,
        rows.len(),
        "every visit has exactly one token"
    );
    let mut stored = HashMap::new();
    for row in rows {
        let token = row.get::<_, i64>(0) as u64;
        let previous = stored.insert(token, (row.get(1), row.get(2), row.get(3)));
        assert!(previous.is_none(), "token {token} is stored twice");
    }
    stored
}

/// Polls `check` on both instances until it holds, for up to `within`.
async fn eventually_on_both<T: std::fmt::Debug>(
    deployment: &Deployment,
    within: Duration,
    target: &str,
    read: impl Fn(&Reply) -> T,
    holds: impl Fn(&T) -> bool,
) {
    let deadline = Instant::now() + within;
    for instance in &deployment.instances {
        loop {
            let reply = instance.get(target).await;
            assert_eq!(reply.status, 200, "{target}: {}", reply.text());
            let value = read(&reply);
            if holds(&value) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{target} on {} still reads {value:?}",
                instance.addr
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn visits_through_the_balancer_count_once_on_the_issuing_instance() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let deployment = Deployment::start(|config| config.set("OXITRAFFIC_MIN_DELAY_SECS", "0")).await;
    let lb = deployment.lb();
    let tally = Arc::new(Tally::default());

    // The first visit of each path alone, so that no two instances check one new path at
    // the same time; then many at once.
    let mut visits = Vec::new();
    for number in 0..PATHS.len() {
        visits.push(visit(lb, number, Duration::ZERO, &tally).await);
    }
    let concurrent: Vec<_> = (0..6)
        .map(|worker| {
            let tally = tally.clone();
            tokio::spawn(async move {
                let mut done = Vec::new();
                for number in (PATHS.len() + worker..90).step_by(6) {
                    done.push(visit(lb, number, Duration::ZERO, &tally).await);
                }
                done
            })
        })
        .collect();
    for worker in concurrent {
        visits.extend(worker.await.unwrap());
    }
    assert_eq!(visits.len(), 90);
    for visit in &visits {
        assert_eq!(visit.post_sleep, 200, "{visit:?}");
        assert_eq!(
            visit.page_left.map(|(_, status)| status),
            Some(200),
            "{visit:?}"
        );
    }
    assert_eq!(tally.retries(), 0, "nothing was down: {}", tally.summary());

    // Every visit answered 200 is stored once, with its path and time spent.
    let db = deployment.db().await;
    let stored = stored_visits(&db).await;
    assert_eq!(stored.len(), visits.len());
    for visit in &visits {
        let (_, path, spent) = &stored[&visit.token];
        assert_eq!(
            (path.as_str(), *spent),
            (visit.path, visit.page_left.map(|l| l.0))
        );
    }

    // Registrations went to both instances, for every path; yet the site was asked about
    // each path once: the second instance found it in the database.
    let by_instance = |number| {
        visits
            .iter()
            .filter(|v| instance_of(v.token) == number)
            .count()
    };
    assert!(
        by_instance(0) >= 30 && by_instance(1) >= 30,
        "registrations are spread: {} and {}",
        by_instance(0),
        by_instance(1)
    );
    for path in PATHS {
        let issuers: HashSet<u64> = visits
            .iter()
            .filter(|v| v.path == path)
            .map(|v| instance_of(v.token))
            .collect();
        assert_eq!(issuers.len(), 2, "both instances registered {path}");
        assert_eq!(
            deployment.site.hits(path),
            1,
            "the site was asked about {path} once"
        );
    }

    // A token sent straight to the wrong instance is refused with 421 and changes nothing.
    let [zero, one] = &deployment.instances;
    let mut counted_visits = visits.len();
    for (issuer, other) in [(zero, one), (one, zero)] {
        let reply = issuer.get("/register?path=%2Fa").await;
        assert_eq!(reply.status, 200);
        let token: u64 = reply.text().parse().unwrap();
        let misdirected = other.post(&format!("/post-sleep/{token}")).await;
        assert_eq!(misdirected.status, 421, "{}", misdirected.text());
        assert_eq!(
            stored_visits(&db).await.len(),
            counted_visits,
            "nothing counted"
        );
        let counted = finish(lb, token, "/a", Instant::now(), None, &tally).await;
        assert_eq!(
            counted.post_sleep, 200,
            "the issuing instance still counts it"
        );
        assert_eq!(
            other.post(&format!("/page-left/{token}/7")).await.status,
            421
        );
        assert_eq!(stored_visits(&db).await[&token].2, None, "no time stored");
        assert_eq!(
            like_count_js(lb, Method::POST, &format!("/page-left/{token}/8"), &tally)
                .await
                .status,
            200
        );
        assert_eq!(stored_visits(&db).await[&token].2, Some(8));
        counted_visits += 1;
    }

    // Site visitors, counted by whichever instance a browser reaches.
    for _ in 0..4 {
        let reply = like_count_js(lb, Method::GET, "/visitor", &tally).await;
        assert_eq!(reply.status, 200);
    }
    // Pages open now: registered, not left.
    let open: Vec<u64> = {
        let mut open = Vec::new();
        for _ in 0..6 {
            open.push(register(lb, "/live", &tally).await);
        }
        open
    };
    let open_on = |number| open.iter().filter(|t| instance_of(**t) == number).count();
    assert!(
        open_on(0) > 0 && open_on(1) > 0,
        "open pages on both instances"
    );
    let views = (counted_visits + open.len()) as i64;

    // Views (flushed by each instance every second) and visitors add up, asked anywhere.
    eventually_on_both(
        &deployment,
        Duration::from_secs(15),
        "/api/summary",
        |reply| {
            let current = &reply.json()["current"];
            (
                current["views"].as_i64(),
                current["visits"].as_i64(),
                current["visitors"].as_i64(),
            )
        },
        |&(v, c, s)| (v, c, s) == (Some(views), Some(counted_visits as i64), Some(4)),
    )
    .await;
    // Each instance shows the pages open on both once the other has published (every 5 s).
    eventually_on_both(
        &deployment,
        Duration::from_secs(20),
        "/api/live",
        |reply| reply.json(),
        |live| {
            live["visitors"] == 6
                && live["paths"] == serde_json::json!([{"path": "/live", "visitors": 6}])
        },
    )
    .await;
    println!(
        "{} visits through HAProxy: {} registered by instance 0, {} by instance 1; answers {}",
        visits.len(),
        by_instance(0),
        by_instance(1),
        tally.summary()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_balancer_routes_every_instance_number_by_the_token() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let deployment = Deployment::start(|config| config).await;
    let lb = deployment.lb();
    // Low bits from the smallest to the largest, and tokens right below 2^53: the number
    // must come out of HAProxy's integer arithmetic exact, for every instance.
    let lows = [
        0u64,
        1,
        0x7fff_ffff_ffff,
        0x8000_0000_0000,
        0xffff_ffff_ffff,
    ];
    for number in 0..32u64 {
        for low in lows {
            let token = number << INSTANCE_SHIFT | low;
            assert!(token < 1 << 53);
            for target in [
                format!("/post-sleep/{token}"),
                format!("/page-left/{token}/12"),
            ] {
                let reply = common::client::post(lb, &target).await;
                match number {
                    // The issuing instance: it does not know the token (404); any other
                    // instance would have said 421.
                    0 | 1 => assert_eq!(
                        reply.status,
                        404,
                        "{target} reached the wrong instance: {}",
                        reply.text()
                    ),
                    _ => assert_eq!(
                        (reply.status, reply.text()),
                        (200, format!("instance {number}")),
                        "{target}"
                    ),
                }
            }
        }
    }
    // Anything else goes to either instance.
    let mut answered_by = HashSet::new();
    for _ in 0..4 {
        let reply = common::client::get(lb, "/register?path=%2F").await;
        assert_eq!(reply.status, 200);
        answered_by.insert(instance_of(reply.text().parse().unwrap()));
    }
    assert_eq!(answered_by.len(), 2, "round robin");
    assert_eq!(common::client::get(lb, "/count.js").await.status, 200);
    // A malformed token reaches an instance, which says what is wrong.
    let reply = common::client::post(lb, "/post-sleep/12abc").await;
    assert_eq!(reply.status, 400, "{}", reply.text());
}

/// Sends one request from the loopback address `source`, so the balancer forwards that
/// address as the client's.
async fn get_from(source: Ipv4Addr, addr: SocketAddr, target: &str) -> Reply {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((IpAddr::V4(source), 0).into()).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get(target)
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_per_client_limit_sees_the_client_behind_the_balancer() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let deployment =
        Deployment::start(|config| config.set("OXITRAFFIC_MAX_PENDING_PER_CLIENT", "2")).await;
    let lb = deployment.lb();
    // One client: two pending visits on each instance at most, then 429.
    let flooder = Ipv4Addr::new(127, 0, 0, 2);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(get_from(flooder, lb, "/register?path=%2F").await.status);
    }
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        accepted <= 4 && statuses.contains(&429),
        "one client is limited: {statuses:?}"
    );
    // Other clients behind the same balancer are not: the instances tell them apart by
    // X-Forwarded-For, from the balancer's address only. (Without it every request would
    // come from 127.0.0.1 and all would be refused now. Two of three allows for one
    // client hashing to the flooder's bucket, a 1 in 16,384 chance.)
    let mut others = Vec::new();
    for last in 3..6 {
        others.push(
            get_from(Ipv4Addr::new(127, 0, 0, last), lb, "/register?path=%2F")
                .await
                .status,
        );
    }
    assert!(
        others.iter().filter(|s| **s == 200).count() >= 2,
        "other clients register: {others:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_restarted_under_load_loses_no_visit() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let mut deployment =
        Deployment::start(|config| config.set("OXITRAFFIC_MIN_DELAY_SECS", "1")).await;
    let lb = deployment.lb();
    let delay = Duration::from_millis(1100);
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    // A steady stream of visitors, each doing whole visits one after another, started
    // apart so that some are at every step of a visit at any moment.
    let visitors: Vec<_> = (0..16u32)
        .map(|visitor| {
            let (tally, stop, next) = (tally.clone(), stop.clone(), next.clone());
            tokio::spawn(async move {
                tokio::time::sleep(delay * visitor / 16).await;
                let mut done = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let number = next.fetch_add(1, Ordering::Relaxed) as usize;
                    done.push(visit(lb, number, delay, &tally).await);
                }
                done
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Visitors who registered just before the restart and come back only after it.
    let mut held = Vec::new();
    for number in 0..8 {
        let path = PATHS[number % PATHS.len()];
        held.push((register(lb, path, &tally).await, path, Instant::now()));
    }
    let held_on_one = held.iter().filter(|h| instance_of(h.0) == 1).count();
    assert!(
        held_on_one > 0,
        "round robin gave instance 1 some: {held:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Down long enough for HAProxy to notice (two failed checks a second apart): its
    // tokens are answered 503 meanwhile, registrations go to instance 0.
    let terminated = Instant::now();
    let (exited, back) = deployment.restart(1, Duration::from_secs(3)).await;
    let logs = &deployment.earlier_logs[0].1;
    let saved = logs
        .split("saved the pending visitors for the next start saved=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("instance 1 saved its visitors:\n{}", tail(logs, 50)));
    assert!(saved >= held_on_one, "saved {saved}, held {held_on_one}");
    let restored = format!("restored the pending visitors of the last run restored={saved}");
    assert!(
        deployment.instances[1].logs().contains(&restored),
        "{}",
        deployment.instances[1].logs()
    );
    let mut held_visits = Vec::new();
    for (token, path, registered) in held {
        held_visits.push(finish(lb, token, path, registered, Some(42), &tally).await);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let mut visits = Vec::new();
    for visitor in visitors {
        visits.extend(visitor.await.unwrap());
    }
    visits.extend(held_visits.iter().cloned());

    // Every visitor was counted in the end (retrying while its instance was away), and
    // reported its time.
    for visit in &visits {
        assert_eq!(visit.post_sleep, 200, "{visit:?}");
        assert_eq!(visit.page_left.map(|l| l.1), Some(200), "{visit:?}");
    }
    // Every visit answered 200 is stored exactly once, with its time.
    let db = deployment.db().await;
    let stored = stored_visits(&db).await;
    let answered: HashSet<u64> = visits.iter().map(|v| v.token).collect();
    assert_eq!(answered.len(), visits.len(), "tokens are unique");
    let stored_tokens: HashSet<u64> = stored.keys().copied().collect();
    assert_eq!(stored_tokens, answered, "stored = answered 200");
    for visit in &visits {
        let (_, path, spent) = &stored[&visit.token];
        assert_eq!(
            (path.as_str(), *spent),
            (visit.path, visit.page_left.map(|l| l.0))
        );
    }
    // The restarted instance's pending visitors, registered before its SIGTERM and counted
    // after it came back (the old process had exited: only the new one can have answered).
    let pending_across = visits
        .iter()
        .filter(|v| instance_of(v.token) == 1 && v.registered < terminated && v.answered > exited)
        .count();
    assert!(
        pending_across >= held_on_one,
        "{pending_across} < {held_on_one}"
    );
    // HAProxy took the instance out and back in: the 503s came from it.
    let balancer_logs = deployment.balancer.logs();
    for event in ["DOWN", "UP"] {
        assert!(
            balancer_logs.contains(&format!("Server instance1/instance1 is {event}")),
            "HAProxy saw instance 1 {event}:\n{balancer_logs}"
        );
    }
    let on_each = |number| {
        visits
            .iter()
            .filter(|v| instance_of(v.token) == number)
            .count()
    };
    println!(
        "restart under load: {} visits in {:.1} s ({} by instance 0, {} by instance 1); \
         instance 1 exited {} ms after SIGTERM and served again {} ms later, saved and \
         restored {saved} visitors; {pending_across} of its visits registered before the \
         SIGTERM were counted after it came back ({held_on_one} held on purpose); visitors \
         retried {} times: {}",
        visits.len(),
        started.elapsed().as_secs_f64(),
        on_each(0),
        on_each(1),
        (exited - terminated).as_millis(),
        (back - exited).as_millis(),
        tally.retries(),
        tally.summary()
    );
}

#[test]
fn the_readme_shows_the_configuration_as_tested() {
    let readme = include_str!("../README.md");
    let config = include_str!("../deploy/haproxy.cfg");
    assert!(
        readme.contains(&format!("```haproxy\n{config}```\n")),
        "README.md must show deploy/haproxy.cfg as it is"
    );
}

/// `saved=N` or `restored=N` from an instance's log.
fn logged_count(logs: &str, message: &str) -> Option<usize> {
    logs.split(message)
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_slot_table_survives_restarts() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (database, site, config) = common::setup().await;
    site.add_page("/");
    let mut tracker = Tracker::start(&config);
    tracker.wait_for_health(200, Duration::from_secs(20)).await;
    assert_eq!(tracker.get("/register?path=%2F").await.status, 200);
    assert!(tokio::task::block_in_place(|| tracker.terminate(Duration::from_secs(20))).success());
    // A busy site: every one of the 65,536 slots holds a visit that can still count (pending
    // visits count up to a day after they registered).
    let db = PgCluster::shared().connect(&database).await;
    db.batch_execute(
        "DELETE FROM saved_slots;
         INSERT INTO saved_slots (instance, slot, tag, path_id, age_ms, registered_at)
         SELECT 0, g, g + 1, (SELECT id FROM paths WHERE path = '/'), 5000, now() - interval '5 s'
         FROM generate_series(0, 65535) AS g",
    )
    .await
    .unwrap();
    let full = 65_536;
    for restart in 0..2 {
        let mut tracker = Tracker::start(&config);
        tracker.wait_for_health(200, Duration::from_secs(20)).await;
        assert_eq!(
            logged_count(
                &tracker.logs(),
                "restored the pending visitors of the last run restored="
            ),
            Some(full),
            "restart {restart}:\n{}",
            tracker.logs()
        );
        let status = tokio::task::block_in_place(|| tracker.terminate(Duration::from_secs(20)));
        assert!(status.success());
        assert_eq!(
            logged_count(
                &tracker.logs(),
                "saved the pending visitors for the next start saved="
            ),
            Some(full),
            "restart {restart}: the whole table is saved in time:\n{}",
            tail(&tracker.logs(), 30)
        );
    }
    // And a token of the full table still counts, once: slot 4242 with tag 4243 (a token is
    // the instance, the tag and the slot index, here 16 bits of it).
    let tracker = Tracker::start(&config);
    tracker.wait_for_health(200, Duration::from_secs(20)).await;
    let token = 4243u64 << 16 | 4242;
    assert_eq!(
        tracker.post(&format!("/post-sleep/{token}")).await.status,
        200
    );
    assert_eq!(
        tracker.post(&format!("/post-sleep/{token}")).await.status,
        404
    );
}
