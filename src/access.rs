//! Who may see private resources (SPEC §10): the access gate every request of a private
//! class passes through.
//!
//! A class (one per route) is public, or private by [`Policy`]. A private class opens to
//! HTTP Basic credentials that match the configured user name and argon2id hash, or, for
//! [`Class::Api`] and [`Class::Metrics`] only, to `Authorization: Bearer TOKEN` whose SHA-256
//! is one of the configured digests. Everything else is [`Denied::Unauthorized`].
//!
//! # Invariants
//! 1. A public class (or a private one configured public) never looks at the request.
//! 2. A password is checked by at most [`Limits::verifications`] argon2 runs at a time. A
//!    request that cannot start its run within [`Limits::permit_wait`] is refused as
//!    [`Denied::Busy`] (503), so a flood of guesses costs a bounded share of the CPU and
//!    of memory (each run holds the hash's `m` KiB), never all of it. That memory goes back
//!    to the system when the run ends (see `ALWAYS_MAPPED_BYTES`), so logins do not grow
//!    the resident size.
//! 3. A run, once started, finishes and records its outcome even when the request that
//!    started it is gone: the permit travels with the run, so cancelling requests cannot
//!    start more runs than the bound.
//! 4. The outcome of a run is remembered under `SHA-256(salt ‖ header value)`, with a salt
//!    drawn at random per process: never the password, and the keys of one process mean
//!    nothing in another. Successes and failures are kept in two separate tables of fixed
//!    capacity, so a flood of wrong passwords evicts only other failures, never the login
//!    of the owner's browser. A remembered success is re-verified after
//!    [`Limits::remember_success`]; credentials never change while a gate lives (a new
//!    configuration builds a new gate), so no entry can become wrong, only old.
//! 5. The parsing of the `Authorization` header ([`parse_authorization`]) is a pure
//!    function of its bytes: strict standard base64 with padding, UTF-8 user and password.
//!    Anything malformed is simply no credential.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::http::{self, Body};

/// Who can log in, as the configuration states it.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub username: String,
    /// An argon2id hash in the PHC string format (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    pub password_hash: Option<String>,
    /// SHA-256 digests of the API tokens; the tokens themselves are never configured.
    pub api_tokens: Vec<[u8; 32]>,
}

/// What a route serves, as far as access is concerned; one per route, from the route table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Script endpoints, `count.js`, `/health`, static files: always public.
    Public,
    /// HTML pages.
    Dashboard,
    /// `/api/*`.
    Api,
    /// `/metrics`.
    Metrics,
}

impl Class {
    /// Bearer tokens are for programs (scripts, scrapers); a browser logs in with a password.
    fn accepts_bearer(self) -> bool {
        matches!(self, Class::Api | Class::Metrics)
    }
}

/// Which classes are private (`true`) and which are public.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub dashboard: bool,
    pub api: bool,
    pub metrics: bool,
}

impl Policy {
    pub fn is_private(self, class: Class) -> bool {
        match class {
            Class::Public => false,
            Class::Dashboard => self.dashboard,
            Class::Api => self.api,
            Class::Metrics => self.metrics,
        }
    }
}

/// The gate's bounds; [`Limits::default`] is what the server uses, tests shrink them.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// argon2 runs at once. One: the tracker runs on small machines (two cores is common)
    /// and a run of the default parameters holds 19 MiB, more than the whole idle process;
    /// one run at a time leaves the other cores to the tracking, and a logged-in browser
    /// needs no run at all for the next [`Limits::remember_success`].
    pub verifications: usize,
    /// How long a request waits for its turn before it is refused as busy. A run of the
    /// default parameters takes 40–50 ms (release build, one core; `benches/access.rs`), so
    /// the few logins queued behind a run still get through while a flood is refused
    /// quickly.
    pub permit_wait: Duration,
    /// How long a verified `Authorization` value is let in without a new run.
    pub remember_success: Duration,
    /// How long a wrong one is refused without a new run. Retries of a wrong password
    /// (a scraper with a stale secret, a browser re-sending) come within seconds.
    pub remember_failure: Duration,
    /// Remembered successes: browsers and scrapers of the site owner, a handful.
    pub successes: usize,
    /// Remembered failures: enough for several clients retrying, small enough to scan.
    pub failures: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            verifications: 1,
            permit_wait: Duration::from_millis(250),
            remember_success: Duration::from_secs(5 * 60),
            remember_failure: Duration::from_secs(60),
            successes: 64,
            failures: 256,
        }
    }
}

/// The most memory one argon2 run may need, in KiB. It admits every parameter set OWASP
/// recommends and the usual library defaults (argon2-cffi: 64 MiB), and refuses a hash
/// whose parameters would let each login allocate gigabytes.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 64 * 1024;
/// Longest `Authorization` value considered; longer ones are no credential. Generous for any
/// user name, password or token, and it keeps the cost of hashing a value small.
pub const MAX_AUTHORIZATION_BYTES: usize = 4096;

/// The challenge sent with every 401.
pub const CHALLENGE: HeaderValue = HeaderValue::from_static("Basic realm=\"oxitraffic\"");
/// Responses to private resources must never be kept by a shared cache (a proxy would serve
/// one owner's statistics to anyone), nor stored by the browser on disk.
pub const PRIVATE_CACHE_CONTROL: HeaderValue = HeaderValue::from_static("private, no-store");

/// Marks a response to a private resource as never cached by shared caches.
pub fn mark_private(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, PRIVATE_CACHE_CONTROL);
}

/// Why a request to a private resource is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No credential, or a wrong one: 401 with the Basic challenge, so a browser asks.
    Unauthorized,
    /// Too many password checks at once: 503 with `Retry-After`. Not 429, because the limit
    /// is the server's and shared by everyone, not this client's own rate (and 429 is the
    /// per-client limit of `/register`, §11); not 401, which would make a browser ask its
    /// user for a password that may well have been right.
    Busy,
}

/// Seconds a client is told to wait after [`Denied::Busy`].
const BUSY_RETRY_AFTER_SECS: u32 = 1;

impl Denied {
    pub fn status(self) -> StatusCode {
        match self {
            Denied::Unauthorized => StatusCode::UNAUTHORIZED,
            Denied::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// What the client is told, one line; the same words fit a text, HTML or JSON body.
    pub fn message(self) -> &'static str {
        match self {
            Denied::Unauthorized => "authentication required",
            Denied::Busy => "too many logins at once, try again in a moment",
        }
    }

    /// Adds the headers every form of this refusal carries (the challenge or `Retry-After`,
    /// and `Cache-Control: private, no-store`), so a route can render its own body.
    pub fn finish(self, mut response: Response<Body>) -> Response<Body> {
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        match self {
            Denied::Unauthorized => headers.insert(header::WWW_AUTHENTICATE, CHALLENGE),
            Denied::Busy => headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(BUSY_RETRY_AFTER_SECS),
            ),
        };
        mark_private(headers);
        response
    }

    /// As a short plain-text response.
    pub fn into_response(self) -> Response<Body> {
        let mut message = String::with_capacity(64);
        message.push_str(self.message());
        message.push('\n');
        self.finish(http::text(self.status(), message))
    }
}

/// A credential found in an `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub enum Authorization<'a> {
    Basic(BasicCredentials),
    /// The token as sent (token68 syntax), not decoded: its SHA-256 is what is configured.
    Bearer(&'a [u8]),
}

/// `user:password`, decoded from base64; the user is everything before the first `:`.
#[derive(Debug, PartialEq, Eq)]
pub struct BasicCredentials {
    decoded: String,
    colon: usize,
}

impl BasicCredentials {
    pub fn user(&self) -> &str {
        &self.decoded[..self.colon]
    }

    pub fn password(&self) -> &str {
        &self.decoded[self.colon + 1..]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Basic,
    Bearer,
}

/// Splits `scheme 1*SP token68`, the only credential form we accept. The scheme name is
/// case-insensitive (RFC 9110 §11.1); the rest must be token68, with nothing after it.
fn split_scheme(value: &[u8]) -> Option<(Scheme, &[u8])> {
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return None;
    }
    let space = value.iter().position(|&b| b == b' ')?;
    let (name, rest) = value.split_at(space);
    let scheme = if name.eq_ignore_ascii_case(b"basic") {
        Scheme::Basic
    } else if name.eq_ignore_ascii_case(b"bearer") {
        Scheme::Bearer
    } else {
        return None;
    };
    let spaces = rest.iter().take_while(|&&b| b == b' ').count();
    let credential = &rest[spaces..];
    is_token68(credential).then_some((scheme, credential))
}

/// `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="` (RFC 9110 §11.2).
fn is_token68(text: &[u8]) -> bool {
    let end = text.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    end > 0
        && text[..end]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// The credential an `Authorization` header value carries, if it is a well-formed one.
pub fn parse_authorization(value: &[u8]) -> Option<Authorization<'_>> {
    let (scheme, credential) = split_scheme(value)?;
    match scheme {
        Scheme::Bearer => Some(Authorization::Bearer(credential)),
        Scheme::Basic => decode_basic(credential).map(Authorization::Basic),
    }
}

fn decode_basic(credential: &[u8]) -> Option<BasicCredentials> {
    let decoded = String::from_utf8(decode_base64(credential)?).ok()?;
    let colon = decoded.find(':')?;
    Some(BasicCredentials { decoded, colon })
}

/// Strict standard base64 (RFC 4648 §4): the `+/` alphabet, padded to a multiple of four,
/// `=` only at the end, and the unused bits of the last group zero, so every byte string
/// has exactly one accepted encoding.
pub fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let groups = text.len() / 4;
    let mut out = Vec::with_capacity(groups * 3);
    for (index, group) in text.chunks_exact(4).enumerate() {
        let padding = match group {
            _ if index + 1 < groups => 0,
            [.., b'=', b'='] => 2,
            [.., b'='] => 1,
            _ => 0,
        };
        let mut bits = 0u32;
        for &char in &group[..4 - padding] {
            bits = bits << 6 | u32::from(base64_value(char)?);
        }
        bits <<= 6 * padding;
        let [_, a, b, c] = bits.to_be_bytes();
        match padding {
            0 => out.extend_from_slice(&[a, b, c]),
            1 if c == 0 => out.extend_from_slice(&[a, b]),
            2 if b == 0 && c == 0 => out.push(a),
            _ => return None,
        }
    }
    Some(out)
}

fn base64_value(char: u8) -> Option<u8> {
    match char {
        b'A'..=b'Z' => Some(char - b'A'),
        b'a'..=b'z' => Some(char - b'a' + 26),
        b'0'..=b'9' => Some(char - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Compares two byte strings in time that depends only on their lengths.
///
/// Every byte pair is XORed into one accumulator and only the final value is looked at, so
/// there is no early exit for a timing measurement to find; `black_box` keeps the optimiser
/// from turning the fold back into one. The lengths are not hidden, and need not be: what
/// is compared here are SHA-256 digests and argon2 outputs (fixed lengths) and the user
/// name (whose length is no secret worth a password). That is enough because a digest
/// compare that leaked the position of the first difference would still only tell an
/// attacker about the digest of a token they chose, which does not lead to a token whose
/// digest matches; the constant time is a second line behind SHA-256, not the first.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)));
    difference == 0
}

/// A configured argon2id hash, taken apart once so a login only runs the function.
struct PasswordCheck {
    argon2: Argon2<'static>,
    /// argon2's working memory, in 1 KiB blocks (the hash's `m`, rounded to its lanes).
    blocks: usize,
    salt: Box<[u8]>,
    expected: Box<[u8]>,
}

/// Longest argon2 output accepted in a configured hash (the default is 32 bytes).
const MAX_ARGON2_OUTPUT: usize = 64;

impl PasswordCheck {
    fn parse(phc: &str) -> Result<PasswordCheck, String> {
        let invalid = |why: &dyn std::fmt::Display| {
            format!(
                "access.password_hash: not a valid argon2id hash ({why}); \
                 make one with `oxitraffic hash-password`"
            )
        };
        let hash = PasswordHash::new(phc).map_err(|e| invalid(&e))?;
        if Algorithm::try_from(hash.algorithm) != Ok(Algorithm::Argon2id) {
            return Err(invalid(&format_args!(
                "the algorithm is `{}`, not argon2id",
                hash.algorithm
            )));
        }
        let version = match hash.version {
            Some(version) => Version::try_from(version).map_err(|e| invalid(&e))?,
            None => Version::default(),
        };
        let params = Params::try_from(&hash).map_err(|e| invalid(&e))?;
        if params.m_cost() > MAX_ARGON2_MEMORY_KIB {
            return Err(format!(
                "access.password_hash: its parameters need m={} KiB per login, more than the \
                 {MAX_ARGON2_MEMORY_KIB} KiB allowed; hash the password again with \
                 `oxitraffic hash-password`",
                params.m_cost()
            ));
        }
        let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
            return Err(invalid(&"it has no salt or no hash"));
        };
        let mut salt_bytes = [0u8; 64];
        let salt = salt.decode_b64(&mut salt_bytes).map_err(|e| invalid(&e))?;
        if expected.len() > MAX_ARGON2_OUTPUT {
            return Err(invalid(&"its hash is longer than 64 bytes"));
        }
        Ok(PasswordCheck {
            blocks: params.block_count(),
            argon2: Argon2::new(Algorithm::Argon2id, version, params),
            salt: salt.into(),
            expected: expected.as_bytes().into(),
        })
    }

    /// One argon2 run with the parameters of the configured hash; CPU- and memory-bound.
    fn verify(&self, password: &[u8]) -> bool {
        let mut output = [0u8; MAX_ARGON2_OUTPUT];
        let output = &mut output[..self.expected.len()];
        let mut memory = argon2_memory(self.blocks);
        self.argon2
            .hash_password_into_with_memory(password, &self.salt, output, &mut memory)
            .is_ok()
            && constant_time_eq(output, &self.expected)
    }
}

/// A request this large is always served by its own `mmap` and unmapped when freed.
///
/// glibc gives memory back to the system at `free` only for chunks it mapped on their own,
/// and it maps on their own only requests above a threshold that rises to the size of the
/// largest such chunk freed so far, up to 32 MiB on 64-bit systems (mallopt(3),
/// `M_MMAP_THRESHOLD`). So after the first login, a 19 MiB argon2 buffer would come from
/// the arena of whichever blocking thread ran it and stay resident there: measured, every
/// login on a new blocking thread added 19 MiB to the process for good. Reserving more
/// than the ceiling keeps each run's memory its own mapping; the pages past those argon2
/// touches are never written, so they cost address space, not memory. (musl maps large
/// requests on their own anyway.)
const ALWAYS_MAPPED_BYTES: usize = 32 * 1024 * 1024 + 64 * 1024;

fn argon2_memory(blocks: usize) -> Vec<Block> {
    let reserve = blocks.max(ALWAYS_MAPPED_BYTES.div_ceil(Block::SIZE));
    let mut memory = Vec::with_capacity(reserve);
    memory.resize(blocks, Block::new());
    memory
}

type Key = [u8; 32];

/// A fixed-capacity table of recently seen keys; when full, the oldest entry makes room.
/// Small enough that a linear scan beats any index.
struct Memory {
    entries: Vec<(Key, Instant)>,
    capacity: usize,
    ttl: Duration,
}

impl Memory {
    fn new(capacity: usize, ttl: Duration) -> Memory {
        // Grows up to `capacity` as entries come: a tracker whose pages are public never
        // allocates it.
        Memory {
            entries: Vec::new(),
            capacity: capacity.max(1),
            ttl,
        }
    }

    fn contains(&self, key: &Key, now: Instant) -> bool {
        self.entries
            .iter()
            .any(|(k, at)| k == key && now.saturating_duration_since(*at) < self.ttl)
    }

    fn remember(&mut self, key: Key, now: Instant) {
        if let Some(entry) = self.entries.iter_mut().find(|(k, _)| *k == key) {
            entry.1 = now;
        } else if self.entries.len() < self.capacity {
            self.entries.push((key, now));
        } else if let Some(oldest) = self.entries.iter_mut().min_by_key(|(_, at)| *at) {
            *oldest = (key, now);
        }
    }
}

/// What every request's check shares; behind an `Arc` because an argon2 run outlives the
/// request that started it (invariant 3).
struct Shared {
    username: Box<[u8]>,
    password: Option<PasswordCheck>,
    api_tokens: Box<[[u8; 32]]>,
    limits: Limits,
    permits: Arc<Semaphore>,
    salt: [u8; 32],
    successes: Mutex<Memory>,
    failures: Mutex<Memory>,
    verifications: AtomicU64,
    #[cfg(test)]
    running: std::sync::atomic::AtomicUsize,
    #[cfg(test)]
    most_running: std::sync::atomic::AtomicUsize,
}

/// Decides whether a request may see a class of resource.
pub struct Gate {
    policy: Policy,
    shared: Arc<Shared>,
}

enum Remembered {
    Success,
    Failure,
}

impl Gate {
    /// A gate with the server's [`Limits`]. Fails with one line naming the setting when the
    /// password hash cannot be used, or when a private dashboard or API could never open.
    pub fn new(policy: Policy, credentials: Credentials) -> Result<Gate, String> {
        Gate::with_limits(policy, credentials, Limits::default())
    }

    pub fn with_limits(
        policy: Policy,
        credentials: Credentials,
        limits: Limits,
    ) -> Result<Gate, String> {
        let password = credentials
            .password_hash
            .as_deref()
            .map(PasswordCheck::parse)
            .transpose()?;
        if password.is_some() && credentials.username.contains(':') {
            return Err("access.username: must not contain `:` (HTTP Basic splits there)".into());
        }
        let has_tokens = !credentials.api_tokens.is_empty();
        if password.is_none() && (policy.dashboard || (policy.api && !has_tokens)) {
            let what = if policy.dashboard { "dashboard" } else { "api" };
            return Err(format!(
                "access.password_hash: access.{what} is private but no credential could open \
                 it; set access.password_hash (from `oxitraffic hash-password`) or make it public"
            ));
        }
        Ok(Gate {
            policy,
            shared: Arc::new(Shared {
                username: credentials.username.into_bytes().into(),
                password,
                api_tokens: credentials.api_tokens.into(),
                limits,
                permits: Arc::new(Semaphore::new(limits.verifications.max(1))),
                salt: random_salt(),
                successes: Mutex::new(Memory::new(limits.successes, limits.remember_success)),
                failures: Mutex::new(Memory::new(limits.failures, limits.remember_failure)),
                verifications: AtomicU64::new(0),
                #[cfg(test)]
                running: Default::default(),
                #[cfg(test)]
                most_running: Default::default(),
            }),
        })
    }

    /// Whether responses of this class need credentials (and [`mark_private`]).
    pub fn is_private(&self, class: Class) -> bool {
        self.policy.is_private(class)
    }

    /// argon2 runs so far, for metrics and tests.
    pub fn verifications(&self) -> u64 {
        self.shared.verifications.load(Ordering::Relaxed)
    }

    /// Lets the request through, or says why not.
    pub async fn check(&self, class: Class, headers: &HeaderMap) -> Result<(), Denied> {
        if !self.policy.is_private(class) {
            return Ok(());
        }
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        // Two credentials in one request are one too many to guess which was meant.
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(Denied::Unauthorized);
        };
        let value = value.as_bytes();
        match split_scheme(value) {
            Some((Scheme::Bearer, token)) if class.accepts_bearer() => self.check_bearer(token),
            Some((Scheme::Basic, credential)) => self.check_basic(value, credential).await,
            _ => Err(Denied::Unauthorized),
        }
    }

    fn check_bearer(&self, token: &[u8]) -> Result<(), Denied> {
        let digest: [u8; 32] = Sha256::digest(token).into();
        // Against every digest, without stopping at a match.
        let found = self.shared.api_tokens.iter().fold(false, |found, known| {
            found | constant_time_eq(&digest, known)
        });
        if found {
            Ok(())
        } else {
            Err(Denied::Unauthorized)
        }
    }

    async fn check_basic(&self, value: &[u8], credential: &[u8]) -> Result<(), Denied> {
        let shared = &self.shared;
        if shared.password.is_none() {
            return Err(Denied::Unauthorized);
        }
        let key = shared.key(value);
        if let Some(remembered) = shared.remembered(&key) {
            return remembered.into();
        }
        let Some(credentials) = decode_basic(credential) else {
            return Err(Denied::Unauthorized);
        };
        let permit = tokio::time::timeout(
            shared.limits.permit_wait,
            shared.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| Denied::Busy)?
        .expect("the semaphore is never closed");
        // Another request may have verified the same value while this one waited (a browser
        // sends several requests at once after its user logs in).
        if let Some(remembered) = shared.remembered(&key) {
            return remembered.into();
        }
        let shared = Arc::clone(shared);
        tokio::task::spawn_blocking(move || {
            let verified = shared.verify(&credentials, key);
            drop(permit);
            verified
        })
        .await
        // Only a panic inside argon2 ends here: the server's fault, so not a 401.
        .map_err(|_| Denied::Busy)?
    }
}

impl From<Remembered> for Result<(), Denied> {
    fn from(remembered: Remembered) -> Result<(), Denied> {
        match remembered {
            Remembered::Success => Ok(()),
            Remembered::Failure => Err(Denied::Unauthorized),
        }
    }
}

impl Shared {
    fn key(&self, value: &[u8]) -> Key {
        let mut hasher = Sha256::new();
        hasher.update(self.salt);
        hasher.update(value);
        hasher.finalize().into()
    }

    fn remembered(&self, key: &Key) -> Option<Remembered> {
        let now = Instant::now();
        if lock(&self.successes).contains(key, now) {
            Some(Remembered::Success)
        } else if lock(&self.failures).contains(key, now) {
            Some(Remembered::Failure)
        } else {
            None
        }
    }

    /// Runs argon2 (the caller holds a permit) and remembers the outcome under the key of
    /// the header value it came from.
    fn verify(&self, credentials: &BasicCredentials, key: Key) -> Result<(), Denied> {
        let password = self.password.as_ref().expect("checked before a run");
        #[cfg(test)]
        {
            let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_running.fetch_max(running, Ordering::SeqCst);
        }
        self.verifications.fetch_add(1, Ordering::Relaxed);
        // The hash runs whatever the user name, so the time taken does not tell whether it
        // was right.
        let user_matches = constant_time_eq(credentials.user().as_bytes(), &self.username);
        let password_matches = password.verify(credentials.password().as_bytes());
        #[cfg(test)]
        self.running.fetch_sub(1, Ordering::SeqCst);
        let now = Instant::now();
        if user_matches & password_matches {
            lock(&self.successes).remember(key, now);
            Ok(())
        } else {
            lock(&self.failures).remember(key, now);
            Err(Denied::Unauthorized)
        }
    }
}

/// A poisoned table is still a valid table (every update is a single assignment).
fn lock(memory: &Mutex<Memory>) -> std::sync::MutexGuard<'_, Memory> {
    memory
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// 32 bytes unknown outside this process, from the operating system's randomness that
/// seeds the standard library's hash keys (no extra dependency for one salt).
fn random_salt() -> [u8; 32] {
    let state = RandomState::new();
    let mut salt = [0u8; 32];
    for (index, chunk) in salt.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&state.hash_one(index).to_le_bytes());
    }
    salt
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, SaltString};

    const USER: &str = "admin";
    const PASSWORD: &str = "correct horse battery staple";
    const TOKEN: &str = "tok_3f9a-Zq.8~+/w==";

    /// A cheap parameter set, so the tests stay fast even in a debug build.
    fn hash(password: &str, m_kib: u32, t: u32, p: u32, algorithm: Algorithm) -> String {
        let params = Params::new(m_kib, t, p, None).unwrap();
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        Argon2::new(algorithm, Version::V0x13, params)
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    fn credentials() -> Credentials {
        Credentials {
            username: USER.into(),
            password_hash: Some(hash(PASSWORD, 256, 1, 1, Algorithm::Argon2id)),
            api_tokens: vec![
                Sha256::digest(b"another token").into(),
                Sha256::digest(TOKEN.as_bytes()).into(),
            ],
        }
    }

    const ALL_PRIVATE: Policy = Policy {
        dashboard: true,
        api: true,
        metrics: true,
    };

    fn gate() -> Gate {
        Gate::new(ALL_PRIVATE, credentials()).unwrap()
    }

    /// The reference encoder the decoder is checked against.
    fn encode_base64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let word = chunk
                .iter()
                .enumerate()
                .fold(0u32, |w, (i, &b)| w | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(word >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        with_authorization(&format!(
            "Basic {}",
            encode_base64(format!("{user}:{password}").as_bytes())
        ))
    }

    fn bearer(token: &str) -> HeaderMap {
        with_authorization(&format!("Bearer {token}"))
    }

    #[tokio::test]
    async fn public_classes_pass_without_looking_at_headers() {
        let gate = gate();
        let garbage = with_authorization("Basic !!!");
        for headers in [HeaderMap::new(), garbage.clone()] {
            assert_eq!(gate.check(Class::Public, &headers).await, Ok(()));
        }
        let open = Gate::new(
            Policy {
                dashboard: false,
                api: false,
                metrics: false,
            },
            Credentials::default(),
        )
        .unwrap();
        for class in [Class::Public, Class::Dashboard, Class::Api, Class::Metrics] {
            assert!(!open.is_private(class));
            assert_eq!(open.check(class, &garbage).await, Ok(()));
        }
        assert!(!gate.is_private(Class::Public));
        assert!(gate.is_private(Class::Dashboard));
        assert_eq!(gate.verifications(), 0);
    }

    #[tokio::test]
    async fn private_classes_need_the_right_user_and_password() {
        let gate = gate();
        for class in [Class::Dashboard, Class::Api, Class::Metrics] {
            assert_eq!(
                gate.check(class, &HeaderMap::new()).await,
                Err(Denied::Unauthorized),
                "{class:?} without a header"
            );
            assert_eq!(gate.check(class, &basic(USER, PASSWORD)).await, Ok(()));
            assert_eq!(
                gate.check(class, &basic("Admin", PASSWORD)).await,
                Err(Denied::Unauthorized),
                "{class:?} with the wrong user"
            );
            assert_eq!(
                gate.check(class, &basic(USER, "correct horse battery stapler"))
                    .await,
                Err(Denied::Unauthorized),
                "{class:?} with the wrong password"
            );
            assert_eq!(
                gate.check(class, &basic(USER, "")).await,
                Err(Denied::Unauthorized)
            );
        }
        // The scheme is case-insensitive and may be followed by several spaces.
        let encoded = encode_base64(format!("{USER}:{PASSWORD}").as_bytes());
        for value in [format!("bAsIc {encoded}"), format!("BASIC   {encoded}")] {
            let headers = with_authorization(&value);
            assert_eq!(gate.check(Class::Dashboard, &headers).await, Ok(()));
        }
    }

    #[tokio::test]
    async fn passwords_with_colons_and_non_ascii_characters_work() {
        let password = "p:ä:ß 🔑";
        let gate = Gate::new(
            ALL_PRIVATE,
            Credentials {
                username: "jürgen".into(),
                password_hash: Some(hash(password, 256, 1, 1, Algorithm::Argon2id)),
                api_tokens: vec![],
            },
        )
        .unwrap();
        let class = Class::Dashboard;
        assert_eq!(gate.check(class, &basic("jürgen", password)).await, Ok(()));
        assert_eq!(
            gate.check(class, &basic("jürgen", "p")).await,
            Err(Denied::Unauthorized)
        );
    }

    #[tokio::test]
    async fn bearer_tokens_open_the_api_and_metrics_but_never_the_dashboard() {
        let gate = gate();
        for class in [Class::Api, Class::Metrics] {
            assert_eq!(gate.check(class, &bearer(TOKEN)).await, Ok(()));
            assert_eq!(
                gate.check(class, &with_authorization(&format!("bearer {TOKEN}")))
                    .await,
                Ok(())
            );
            assert_eq!(
                gate.check(class, &bearer("tok_3f9a-Zq.8~+/x==")).await,
                Err(Denied::Unauthorized)
            );
            assert_eq!(
                gate.check(class, &bearer(&TOKEN[..TOKEN.len() - 1])).await,
                Err(Denied::Unauthorized)
            );
        }
        assert_eq!(
            gate.check(Class::Dashboard, &bearer(TOKEN)).await,
            Err(Denied::Unauthorized)
        );
        // A password is not a token, and a token is not a password.
        assert_eq!(
            gate.check(Class::Api, &bearer(PASSWORD)).await,
            Err(Denied::Unauthorized)
        );
        assert_eq!(
            gate.check(Class::Api, &basic(USER, TOKEN)).await,
            Err(Denied::Unauthorized)
        );
    }

    #[tokio::test]
    async fn malformed_headers_are_no_credential() {
        let gate = gate();
        let right = encode_base64(format!("{USER}:{PASSWORD}").as_bytes());
        let no_colon = encode_base64(format!("{USER}{PASSWORD}").as_bytes());
        let unpadded = right.trim_end_matches('=').to_string();
        assert_ne!(
            unpadded, right,
            "the test needs a value that ends in padding"
        );
        let malformed = [
            String::new(),
            "Basic".into(),
            "Basic ".into(),
            format!("Basic{right}"),
            format!("Basic {right} "),
            format!("Basic\t{right}"),
            format!("Basic \t{right}"),
            format!("Basic {right}="),
            format!("Basic {unpadded}"),
            format!("Basic {no_colon}"),
            format!("Digest {right}"),
            format!("Basic {right},x"),
            "Basic !!!!".into(),
            "Bearer".into(),
            "Bearer ".into(),
            format!("Bearer {TOKEN} x"),
            "Bearer a=b".into(),
        ];
        for value in &malformed {
            let headers = with_authorization(value);
            for class in [Class::Dashboard, Class::Api] {
                assert_eq!(
                    gate.check(class, &headers).await,
                    Err(Denied::Unauthorized),
                    "{value:?}"
                );
            }
        }
        let mut twice = basic(USER, PASSWORD);
        twice.append(
            header::AUTHORIZATION,
            bearer(TOKEN)[header::AUTHORIZATION].clone(),
        );
        assert_eq!(
            gate.check(Class::Api, &twice).await,
            Err(Denied::Unauthorized)
        );
        // Not valid UTF-8 after decoding.
        let latin1 = format!("Basic {}", encode_base64(b"admin:caf\xe9"));
        assert_eq!(
            gate.check(Class::Api, &with_authorization(&latin1)).await,
            Err(Denied::Unauthorized)
        );
        assert_eq!(gate.verifications(), 0, "nothing malformed reaches argon2");
    }

    #[test]
    fn parsing_splits_user_and_password_at_the_first_colon() {
        let value = format!("Basic {}", encode_base64("a:b:c".as_bytes()));
        let Some(Authorization::Basic(credentials)) = parse_authorization(value.as_bytes()) else {
            panic!("{value} is a Basic credential")
        };
        assert_eq!((credentials.user(), credentials.password()), ("a", "b:c"));
        let value = format!("Basic {}", encode_base64(b":"));
        let Some(Authorization::Basic(credentials)) = parse_authorization(value.as_bytes()) else {
            panic!("{value} is a Basic credential")
        };
        assert_eq!((credentials.user(), credentials.password()), ("", ""));
        assert_eq!(
            parse_authorization(b"BEARER abc.DEF-_~+/=="),
            Some(Authorization::Bearer(b"abc.DEF-_~+/=="))
        );
        assert_eq!(parse_authorization(b"Bearer =="), None);
        let long = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_BYTES));
        assert_eq!(parse_authorization(long.as_bytes()), None);
    }

    #[test]
    fn base64_decoding_is_strict_and_matches_the_reference_encoding() {
        let mut bytes = Vec::new();
        for len in 0..=40u8 {
            let encoded = encode_base64(&bytes);
            assert_eq!(
                decode_base64(encoded.as_bytes()).as_deref(),
                Some(&bytes[..])
            );
            bytes.push(len.wrapping_mul(97) ^ 0xa5);
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(
            decode_base64(encode_base64(&all).as_bytes()).as_deref(),
            Some(&all[..])
        );
        assert_eq!(decode_base64(b"QUJD").as_deref(), Some(&b"ABC"[..]));
        assert_eq!(decode_base64(b"QUI=").as_deref(), Some(&b"AB"[..]));
        assert_eq!(decode_base64(b"QQ==").as_deref(), Some(&b"A"[..]));
        for bad in [
            &b"Q"[..],
            b"QQ",
            b"QQ=",
            b"QQ===",
            b"Q===",
            b"====",
            b"QR==",     // unused bits set: a second spelling of "A"
            b"QUJ=",     // the same for "AB"
            b"QQ==QUJD", // padding in the middle
            b"QU=D",
            b"QUJD\n",
            b"QU-_", // the URL-safe alphabet
            b"QUJ\xc3",
        ] {
            assert_eq!(
                decode_base64(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn argon2_memory_is_its_own_mapping() {
        for blocks in [256, 19 * 1024, 64 * 1024] {
            let memory = argon2_memory(blocks);
            assert_eq!(memory.len(), blocks);
            assert!(memory.capacity() * Block::SIZE >= ALWAYS_MAPPED_BYTES);
        }
    }

    #[test]
    fn constant_time_comparison_compares() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"xbc"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[tokio::test]
    async fn remembered_outcomes_do_not_run_argon2_again() {
        let gate = gate();
        let right = basic(USER, PASSWORD);
        for _ in 0..5 {
            assert_eq!(gate.check(Class::Dashboard, &right).await, Ok(()));
        }
        assert_eq!(gate.verifications(), 1);
        let wrong = basic(USER, "guess");
        for _ in 0..5 {
            assert_eq!(
                gate.check(Class::Api, &wrong).await,
                Err(Denied::Unauthorized)
            );
        }
        assert_eq!(gate.verifications(), 2);
        // The same credentials spelled differently are another header value: one more run.
        let shouted = with_authorization(
            &right[header::AUTHORIZATION]
                .to_str()
                .unwrap()
                .replace("Basic", "BASIC"),
        );
        assert_eq!(gate.check(Class::Metrics, &shouted).await, Ok(()));
        assert_eq!(gate.verifications(), 3);
        // Tokens never run argon2.
        assert_eq!(gate.check(Class::Api, &bearer(TOKEN)).await, Ok(()));
        assert_eq!(gate.verifications(), 3);
    }

    #[test]
    fn memory_forgets_after_its_time_and_evicts_the_oldest() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut memory = Memory::new(2, Duration::from_secs(10));
        memory.remember([1; 32], at(0));
        memory.remember([2; 32], at(1));
        assert!(memory.contains(&[1; 32], at(9)));
        assert!(!memory.contains(&[1; 32], at(10)), "expired");
        assert!(!memory.contains(&[3; 32], at(2)));
        memory.remember([3; 32], at(2));
        assert_eq!(memory.entries.len(), 2, "fixed capacity");
        assert!(!memory.contains(&[1; 32], at(3)), "the oldest made room");
        assert!(memory.contains(&[2; 32], at(3)) && memory.contains(&[3; 32], at(3)));
        // Remembering again renews an entry in place, so it outlives an older one.
        memory.remember([2; 32], at(5));
        memory.remember([4; 32], at(6));
        assert!(memory.contains(&[2; 32], at(6)));
        assert!(!memory.contains(&[3; 32], at(6)));
    }

    #[tokio::test]
    async fn a_flood_of_wrong_passwords_does_not_evict_a_login() {
        let limits = Limits {
            successes: 2,
            failures: 2,
            ..Limits::default()
        };
        let gate = Gate::with_limits(ALL_PRIVATE, credentials(), limits).unwrap();
        assert_eq!(
            gate.check(Class::Dashboard, &basic(USER, PASSWORD)).await,
            Ok(())
        );
        for guess in 0..6 {
            let headers = basic(USER, &format!("guess {guess}"));
            assert_eq!(
                gate.check(Class::Dashboard, &headers).await,
                Err(Denied::Unauthorized)
            );
        }
        assert_eq!(gate.verifications(), 7);
        assert_eq!(
            gate.check(Class::Dashboard, &basic(USER, PASSWORD)).await,
            Ok(())
        );
        assert_eq!(gate.verifications(), 7, "the login is still remembered");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_verifications_are_bounded() {
        let limits = Limits {
            verifications: 2,
            permit_wait: Duration::from_secs(60),
            ..Limits::default()
        };
        let gate = Arc::new(Gate::with_limits(ALL_PRIVATE, credentials(), limits).unwrap());
        let guesses = 24;
        let tasks: Vec<_> = (0..guesses)
            .map(|guess| {
                let gate = gate.clone();
                tokio::spawn(async move {
                    let headers = basic(USER, &format!("guess {guess}"));
                    gate.check(Class::Api, &headers).await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), Err(Denied::Unauthorized));
        }
        assert_eq!(gate.verifications(), guesses);
        let most = gate.shared.most_running.load(Ordering::SeqCst);
        assert!((1..=2).contains(&most), "{most} argon2 runs at once");
    }

    #[tokio::test]
    async fn a_login_that_cannot_get_its_turn_is_refused_as_busy() {
        let limits = Limits {
            verifications: 1,
            permit_wait: Duration::from_millis(20),
            ..Limits::default()
        };
        let gate = Gate::with_limits(ALL_PRIVATE, credentials(), limits).unwrap();
        assert_eq!(gate.check(Class::Api, &basic(USER, PASSWORD)).await, Ok(()));
        let held = gate.shared.permits.clone().acquire_owned().await.unwrap();
        let denied = gate.check(Class::Api, &basic(USER, "guess")).await;
        assert_eq!(denied, Err(Denied::Busy));
        // What needs no run still works meanwhile: a remembered login, a token.
        assert_eq!(gate.check(Class::Api, &basic(USER, PASSWORD)).await, Ok(()));
        assert_eq!(gate.check(Class::Api, &bearer(TOKEN)).await, Ok(()));
        drop(held);
        assert_eq!(
            gate.check(Class::Api, &basic(USER, "guess")).await,
            Err(Denied::Unauthorized)
        );
        assert_eq!(gate.verifications(), 2);
    }

    #[test]
    fn refusals_carry_their_headers() {
        let response = Denied::Unauthorized.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenges: Vec<_> = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .collect();
        assert_eq!(
            challenges,
            [&HeaderValue::from_static("Basic realm=\"oxitraffic\"")]
        );
        assert_eq!(
            response.headers()[header::CACHE_CONTROL],
            "private, no-store"
        );
        assert!(!response.headers().contains_key(header::RETRY_AFTER));

        let response = Denied::Busy.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));

        let mut headers = HeaderMap::new();
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60"),
        );
        mark_private(&mut headers);
        let values: Vec<_> = headers.get_all(header::CACHE_CONTROL).iter().collect();
        assert_eq!(values, ["private, no-store"]);
    }

    #[tokio::test]
    async fn the_hash_is_verified_with_its_own_parameters() {
        for (m, t, p) in [(256, 1, 1), (512, 2, 2), (64, 3, 4)] {
            let gate = Gate::new(
                ALL_PRIVATE,
                Credentials {
                    username: USER.into(),
                    password_hash: Some(hash(PASSWORD, m, t, p, Algorithm::Argon2id)),
                    api_tokens: vec![],
                },
            )
            .unwrap();
            assert_eq!(
                gate.check(Class::Dashboard, &basic(USER, PASSWORD)).await,
                Ok(()),
                "m={m} t={t} p={p}"
            );
        }
    }

    #[test]
    fn unusable_configurations_are_refused_with_the_setting_named() {
        let with_hash = |password_hash: String| Credentials {
            username: USER.into(),
            password_hash: Some(password_hash),
            api_tokens: vec![],
        };
        let error = |policy, credentials| Gate::new(policy, credentials).err().unwrap();
        for bad in [
            hash(PASSWORD, 256, 1, 1, Algorithm::Argon2i),
            "$argon2id$v=19$m=256,t=1,p=1$c2l4dGVlbiBieXRlIHNsdA".into(),
            "not a hash".into(),
            hash(PASSWORD, 256, 1, 1, Algorithm::Argon2id).replace("m=256", "m=99999999"),
        ] {
            let message = error(ALL_PRIVATE, with_hash(bad.clone()));
            assert!(
                message.starts_with("access.password_hash: "),
                "{bad}: {message}"
            );
            assert!(!message.contains('\n'));
        }
        let public_metrics_only = Policy {
            dashboard: true,
            api: false,
            metrics: false,
        };
        let message = error(public_metrics_only, Credentials::default());
        assert!(message.starts_with("access.password_hash: access.dashboard is private"));
        let private_api = Policy {
            dashboard: false,
            api: true,
            metrics: true,
        };
        let message = error(private_api, Credentials::default());
        assert!(message.starts_with("access.password_hash: access.api is private"));
        let mut colon = credentials();
        colon.username = "ad:min".into();
        assert!(error(ALL_PRIVATE, colon).starts_with("access.username: "));
        // Tokens alone open a private API; metrics may stay closed to everyone.
        let tokens_only = Credentials {
            api_tokens: credentials().api_tokens,
            ..Credentials::default()
        };
        assert!(Gate::new(private_api, tokens_only).is_ok());
        assert!(
            Gate::new(
                Policy {
                    dashboard: false,
                    api: false,
                    metrics: true
                },
                Credentials::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn checks_can_run_on_any_worker_thread() {
        fn send<T: Send>(_: T) {}
        let gate = gate();
        let headers = HeaderMap::new();
        send(gate.check(Class::Api, &headers));
    }

    #[tokio::test]
    async fn closed_metrics_stay_closed() {
        let gate = Gate::new(
            Policy {
                dashboard: false,
                api: false,
                metrics: true,
            },
            Credentials {
                username: USER.into(),
                ..Credentials::default()
            },
        )
        .unwrap();
        for headers in [HeaderMap::new(), basic(USER, ""), bearer(TOKEN)] {
            assert_eq!(
                gate.check(Class::Metrics, &headers).await,
                Err(Denied::Unauthorized)
            );
        }
        assert_eq!(gate.check(Class::Api, &HeaderMap::new()).await, Ok(()));
        assert_eq!(gate.verifications(), 0);
    }
}
