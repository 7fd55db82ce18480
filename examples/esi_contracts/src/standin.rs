//! An embedded stand-in for ESI's public-contracts route, serving recorded pages for three
//! regions on `127.0.0.1`, and behaving as ESI does where the example depends on it.
//!
//! - Routes: `GET /contracts/public/{region_id}?page=N` (with `X-Tenant`) and the versioned
//!   `GET /latest/contracts/public/{region_id}/?datasource=tranquility&page=N`.
//! - Cache generations: every page of one generation has the same `Last-Modified` and the same
//!   fixed `Expires` (the generation's start plus [`StandInOptions::expires_after`]), a strong
//!   `ETag` per body, `Cache-Control: public`, `304` on a matching `If-None-Match` (with `ETag`,
//!   `Expires` and `Last-Modified`). Once `Expires` passes, a new generation starts with the
//!   same pages. The recorded generation's `Last-Modified` is the recording time.
//! - `gzip` bodies when the request accepts them; `X-Compatibility-Date` echoed.
//! - ESI's error limit (`X-ESI-Error-Limit-Remain`/`-Reset`, `420` at zero) and, when
//!   [`StandInOptions::rate_limit`] puts the route in a group, its token bucket (`429` with
//!   `Retry-After`, `X-Ratelimit-*` headers); JSON `{"error": "..."}` bodies.
//!
//! The [`StandIn`] handle counts what it served and drives the test modes: a cache turnover now
//! or in the middle of a walk (a new `Last-Modified`, the oldest contracts gone, so the rest
//! shift to earlier pages and `X-Pages` may shrink), `5xx` bursts, a low error limit, a
//! malformed page, a contract with an unexpected value.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::any;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::esi::{COMPATIBILITY_DATE, TENANT};
use crate::timestamp::Timestamp;

/// When the fixture pages were recorded: the stand-in's `Last-Modified` in the example and its
/// tests, so that summaries "as of" the data's time match `fixtures/expected.json`.
pub const RECORDED_AT: Timestamp = Timestamp(1_795_176_000); // 2026-11-20T12:00:00Z

/// The regions the stand-in knows: The Forge, Domain, Sinq Laison.
pub const REGIONS: [i32; 3] = [10_000_002, 10_000_043, 10_000_032];

/// The fixture pages, embedded in the binary: `(region_id, pages)`, pages in order from page 1.
pub const FIXTURES: [(i32, &[&str]); 3] = [
    (
        10_000_002,
        &[
            include_str!("../fixtures/10000002-1.json"),
            include_str!("../fixtures/10000002-2.json"),
            include_str!("../fixtures/10000002-3.json"),
        ],
    ),
    (10_000_043, &[include_str!("../fixtures/10000043-1.json")]),
    (10_000_032, &[include_str!("../fixtures/10000032-1.json")]),
];

/// The JSON bodies of a region's fixture pages (page 1 first), `None` for a region the stand-in
/// does not serve.
#[must_use]
pub fn fixture_pages(region_id: i32) -> Option<&'static [&'static str]> {
    FIXTURES.iter().find(|(id, _)| *id == region_id).map(|(_, pages)| *pages)
}

/// Contracts per page, as ESI pages them.
pub const PAGE_SIZE: usize = 1000;

/// How a [`StandIn`] behaves.
#[derive(Debug, Clone)]
pub struct StandInOptions {
    /// How long a generation lasts: its `Expires` is its start plus this (ESI: about 30
    /// minutes). Zero: every page is stale at once and the generation never ends by itself.
    pub expires_after: Duration,
    /// Errors allowed per window (ESI: 100).
    pub error_limit: u32,
    /// Length of the error-limit window (ESI: 60 seconds).
    pub error_window: Duration,
    /// `Last-Modified` of the first generation; `None` uses the time the stand-in started.
    pub last_modified: Option<Timestamp>,
    /// Puts the route in a rate-limit group; `None`: the route has none (as public contracts
    /// in September 2026).
    pub rate_limit: Option<RateLimit>,
}

impl Default for StandInOptions {
    fn default() -> Self {
        Self {
            expires_after: Duration::from_secs(30 * 60),
            error_limit: 100,
            error_window: Duration::from_secs(60),
            last_modified: None,
            rate_limit: None,
        }
    }
}

/// ESI's token bucket for a rate-limit group: `tokens` refill evenly over `window`; a `2xx`
/// costs 2, a `3xx` 1, a `4xx` 5, a `5xx` 0; a request that costs more than what is left gets a
/// `429` with `Retry-After`.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// The group's name, `X-Ratelimit-Group`.
    pub group: String,
    /// Tokens per window.
    pub tokens: u32,
    /// The window.
    pub window: Duration,
    /// Whether responses carry the `X-Ratelimit-*` headers (some ESI routes answer `429`
    /// without them).
    pub headers: bool,
}

/// What a [`StandIn`] has served since it started (or since [`StandIn::reset_stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every request.
    pub requests: u64,
    /// `200 OK` responses (including malformed pages).
    pub ok: u64,
    /// `304 Not Modified` responses.
    pub not_modified: u64,
    /// Error responses (`4xx`/`5xx`, including `420` and `429`).
    pub errors: u64,
    /// `420` responses.
    pub error_limited: u64,
    /// `429` responses.
    pub rate_limited: u64,
    /// `5xx` responses.
    pub server_errors: u64,
    /// `200` bodies sent gzip-compressed.
    pub gzip: u64,
    /// Requests without `X-Compatibility-Date`.
    pub no_compatibility_date: u64,
    /// `200 OK` responses per `(region_id, page)`.
    pub page_ok: BTreeMap<(i32, u32), u64>,
    /// Cache generations started after the first.
    pub turnovers: u64,
}

/// A running stand-in. Stops when dropped or on [`StandIn::shutdown`].
#[derive(Debug)]
pub struct StandIn {
    base_url: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// One page: its body, the quoted `ETag` of that body, and the body gzipped (made once, when
/// first asked for).
#[derive(Debug)]
struct Page {
    body: String,
    etag: String,
    gzip: OnceLock<Vec<u8>>,
}

impl Page {
    fn new(body: String) -> Self {
        let etag = etag_of(&body);
        Self { body, etag, gzip: OnceLock::new() }
    }

    fn gzipped(&self) -> &[u8] {
        self.gzip.get_or_init(|| gzip(self.body.as_bytes()))
    }
}

/// One cache generation.
#[derive(Debug)]
struct Generation {
    last_modified: Timestamp,
    expires: Timestamp,
    /// Contracts dropped from the start of every region's list (the oldest ones).
    dropped: usize,
    regions: HashMap<i32, Arc<Vec<Page>>>,
}

#[derive(Debug)]
struct Shared {
    opts: StandInOptions,
    /// Every region's contracts as recorded, for the pages of later generations.
    contracts: HashMap<i32, Vec<serde_json::Value>>,
    state: Mutex<Mutable>,
}

#[derive(Debug)]
struct Mutable {
    generation: Generation,
    remain: u32,
    window_start: Instant,
    tokens: f64,
    refilled: Instant,
    stats: Stats,
    failures: HashMap<i32, VecDeque<StatusCode>>,
    malformed: HashSet<(i32, u32)>,
    odd: HashSet<(i32, u32)>,
    /// A turnover due after this many more pages served, dropping this many contracts.
    turnover_after: Option<(u64, usize)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Mutable> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pages of every region with the first `dropped` contracts gone, re-paged.
    fn pages_without(&self, dropped: usize) -> HashMap<i32, Arc<Vec<Page>>> {
        self.contracts
            .iter()
            .map(|(&region, contracts)| {
                let left = contracts.get(dropped..).unwrap_or_default();
                let pages = left
                    .chunks(PAGE_SIZE)
                    .map(|chunk| Page::new(serde_json::to_string(chunk).unwrap_or_default()))
                    .collect::<Vec<_>>();
                let pages = if pages.is_empty() { vec![Page::new("[]".to_owned())] } else { pages };
                (region, Arc::new(pages))
            })
            .collect()
    }

    /// Starts the next generation now, `drop` more contracts gone from every region.
    fn turn_over(&self, state: &mut Mutable, drop: usize) {
        let g = &state.generation;
        let step = i64::try_from(self.opts.expires_after.as_secs()).unwrap_or(i64::MAX).max(1);
        let dropped = g.dropped + drop;
        let regions = if drop == 0 { g.regions.clone() } else { self.pages_without(dropped) };
        state.generation = Generation {
            last_modified: g.last_modified.plus_seconds(step),
            expires: self.expires_from_now(),
            dropped,
            regions,
        };
        state.stats.turnovers += 1;
    }

    fn expires_from_now(&self) -> Timestamp {
        expires_from_now(self.opts.expires_after)
    }
}

/// The `Expires` of a generation starting now: `expires_after` from now, or a second ago when
/// it is zero (stale at once).
fn expires_from_now(expires_after: Duration) -> Timestamp {
    match i64::try_from(expires_after.as_secs()).unwrap_or(i64::MAX) {
        0 => Timestamp::now().plus_seconds(-1),
        secs => Timestamp::now().plus_seconds(secs),
    }
}

/// Starts a stand-in on `127.0.0.1` (a free port) on the current tokio runtime.
///
/// # Errors
///
/// When the listener cannot be bound.
pub async fn start(opts: StandInOptions) -> std::io::Result<StandIn> {
    start_on("127.0.0.1:0", opts).await
}

/// Starts a stand-in listening on `addr` (`host:port`) on the current tokio runtime.
///
/// # Errors
///
/// When the listener cannot be bound.
pub async fn start_on(addr: &str, opts: StandInOptions) -> std::io::Result<StandIn> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let regions = FIXTURES
        .iter()
        .map(|(id, pages)| (*id, Arc::new(pages.iter().map(|body| Page::new((*body).to_owned())).collect())))
        .collect();
    let contracts = FIXTURES
        .iter()
        .map(|(id, pages)| {
            let all = pages
                .iter()
                .flat_map(|body| serde_json::from_str::<Vec<serde_json::Value>>(body).unwrap_or_default())
                .collect();
            (*id, all)
        })
        .collect();
    let tokens = opts.rate_limit.as_ref().map_or(0.0, |r| f64::from(r.tokens));
    let shared = Arc::new(Shared {
        state: Mutex::new(Mutable {
            generation: Generation {
                last_modified: opts.last_modified.unwrap_or_else(Timestamp::now),
                expires: expires_from_now(opts.expires_after),
                dropped: 0,
                regions,
            },
            remain: opts.error_limit,
            window_start: Instant::now(),
            tokens,
            refilled: Instant::now(),
            stats: Stats::default(),
            failures: HashMap::new(),
            malformed: HashSet::new(),
            odd: HashSet::new(),
            turnover_after: None,
        }),
        opts,
        contracts,
    });
    let app = Router::new()
        .route("/contracts/public/{region_id}", any(contracts_page))
        .route("/contracts/public/{region_id}/", any(contracts_page))
        .route("/latest/contracts/public/{region_id}/", any(contracts_page))
        .route("/latest/contracts/public/{region_id}", any(contracts_page))
        .fallback(not_found)
        .with_state(Arc::clone(&shared));
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                // A dropped sender stops the server too.
                let _ = rx.await;
            })
            .await
    });
    Ok(StandIn { base_url: format!("http://{addr}"), addr, shared, shutdown: Some(tx), task: Some(task) })
}

impl StandIn {
    /// The ESI-style base URL, `http://127.0.0.1:PORT` (append `/latest` for the versioned
    /// paths).
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The address the stand-in listens on.
    #[must_use]
    pub const fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats.clone()
    }

    /// `200 OK` responses served.
    #[must_use]
    pub fn ok_count(&self) -> u64 {
        self.shared.lock().stats.ok
    }

    /// `304 Not Modified` responses served.
    #[must_use]
    pub fn not_modified_count(&self) -> u64 {
        self.shared.lock().stats.not_modified
    }

    /// `200 OK` responses served for one page of one region.
    #[must_use]
    pub fn page_ok_count(&self, region_id: i32, page: u32) -> u64 {
        self.shared.lock().stats.page_ok.get(&(region_id, page)).copied().unwrap_or(0)
    }

    /// Zeroes the counters.
    pub fn reset_stats(&self) {
        self.shared.lock().stats = Stats::default();
    }

    /// Sets the errors left in the current error-limit window (0 makes every request a `420`
    /// until the window resets).
    pub fn set_error_limit_remain(&self, remain: u32) {
        self.shared.lock().remain = remain;
    }

    /// Answers the next `n` requests for `region_id` (any page) with `status` (meant for `500`,
    /// `502`, `503`, `504`) and an ESI-like JSON error. Adds to failures already queued.
    pub fn fail_next(&self, region_id: i32, n: usize, status: StatusCode) {
        self.shared.lock().failures.entry(region_id).or_default().extend(std::iter::repeat_n(status, n));
    }

    /// Serves a truncated, unparseable body (with `200 OK` and its own `ETag`) for one page of a
    /// region while `malformed` is true.
    pub fn set_malformed(&self, region_id: i32, page: u32, malformed: bool) {
        let mut state = self.shared.lock();
        if malformed {
            state.malformed.insert((region_id, page));
        } else {
            state.malformed.remove(&(region_id, page));
        }
    }

    /// Serves one page of a region, while `odd` is true, with its first contract's `price` as
    /// a string (`"a lot"`): a contract no model expects, on an otherwise good page.
    pub fn set_odd_contract(&self, region_id: i32, page: u32, odd: bool) {
        let mut state = self.shared.lock();
        if odd {
            state.odd.insert((region_id, page));
        } else {
            state.odd.remove(&(region_id, page));
        }
    }

    /// Starts the next cache generation now: a later `Last-Modified`, a new `Expires`, and the
    /// `drop` oldest contracts of every region gone (the others move to earlier pages).
    pub fn turn_over(&self, drop: usize) {
        let mut state = self.shared.lock();
        self.shared.turn_over(&mut state, drop);
    }

    /// Turns the cache over (as [`StandIn::turn_over`]) right after the next `pages` pages
    /// (`200` or `304`, any region) are served: in the middle of a walk.
    pub fn turn_over_after(&self, pages: u64, drop: usize) {
        self.shared.lock().turnover_after = Some((pages, drop));
    }

    /// The `Last-Modified` of the current generation.
    #[must_use]
    pub fn last_modified(&self) -> Timestamp {
        self.shared.lock().generation.last_modified
    }

    /// Stops accepting connections and waits (up to 5 seconds) for open ones to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A stable, quoted `ETag` for a body (FNV-1a, 64 bits).
fn etag_of(body: &str) -> String {
    let hash = body.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("\"{hash:016x}\"")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// The body served for a malformed page: the first half of the real one, cut mid-JSON.
fn malformed_body(body: &str) -> &str {
    let mut end = body.len() / 2;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    &body[..end]
}

/// The body served for a page with an odd contract: the first one's `price` is a string.
fn odd_body(body: &str) -> String {
    let mut contracts: Vec<serde_json::Value> = serde_json::from_str(body).unwrap_or_default();
    if let Some(first) = contracts.first_mut() {
        first["price"] = serde_json::Value::from("a lot");
    }
    serde_json::to_string(&contracts).unwrap_or_default()
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison, `*` matches).
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// The outcome of the routing and limit logic, turned into a response by [`respond`].
enum Outcome {
    Error(StatusCode, &'static str),
    Page { region_id: i32, page: u32, pages: usize, body: Served, etag: String, not_modified: bool },
}

/// A page body as it goes out.
enum Served {
    Plain(String),
    Gzip(Vec<u8>),
}

/// What a request asked for, beyond its route.
struct Asked<'a> {
    method: Method,
    region: String,
    query: String,
    versioned: bool,
    headers: &'a HeaderMap,
}

async fn contracts_page(
    State(shared): State<Arc<Shared>>,
    Path(region): Path<String>,
    RawQuery(query): RawQuery,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let versioned = uri.path().starts_with("/latest/");
    let asked = Asked { method, region, query: query.unwrap_or_default(), versioned, headers: &headers };
    let mut state = shared.lock();
    roll(&shared, &mut state);
    let outcome = route(&mut state, &asked);
    respond(&shared, &mut state, outcome, &headers)
}

async fn not_found(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let mut state = shared.lock();
    roll(&shared, &mut state);
    let outcome = if state.remain == 0 { limited() } else { Outcome::Error(StatusCode::NOT_FOUND, "Not found") };
    respond(&shared, &mut state, outcome, &headers)
}

fn limited() -> Outcome {
    Outcome::Error(
        StatusCode::from_u16(420).unwrap_or(StatusCode::TOO_MANY_REQUESTS),
        "This software has exceeded the error limit for ESI. If you are a user, please contact \
         the maintainer of this software. If you are a developer/maintainer, please make a \
         greater effort in the future to receive valid responses. For tips on how, come have \
         a chat with us on ##3rd-party-dev-and-esi on the EVE Online Discord. \
         https://www.eveonline.com/discord",
    )
}

/// Moves the clocks on: a new error-limit window, refilled tokens, a new generation once the
/// current one has expired.
fn roll(shared: &Shared, state: &mut Mutable) {
    if state.window_start.elapsed() >= shared.opts.error_window {
        state.window_start = Instant::now();
        state.remain = shared.opts.error_limit;
    }
    if let Some(limit) = &shared.opts.rate_limit {
        let rate = f64::from(limit.tokens) / limit.window.as_secs_f64().max(f64::MIN_POSITIVE);
        state.tokens = (state.tokens + state.refilled.elapsed().as_secs_f64() * rate).min(f64::from(limit.tokens));
        state.refilled = Instant::now();
    }
    if !shared.opts.expires_after.is_zero() && Timestamp::now() >= state.generation.expires {
        shared.turn_over(state, 0);
    }
}

fn route(state: &mut Mutable, asked: &Asked<'_>) -> Outcome {
    if state.remain == 0 {
        return limited();
    }
    if asked.method != Method::GET {
        return Outcome::Error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
    }
    let tenant = asked.headers.get("x-tenant").and_then(|v| v.to_str().ok());
    if tenant.is_some_and(|t| t != TENANT) {
        return Outcome::Error(StatusCode::BAD_REQUEST, "Invalid tenant");
    }
    let Ok(region_id) = asked.region.parse::<i32>() else {
        return Outcome::Error(StatusCode::BAD_REQUEST, "Invalid region_id: not an integer");
    };
    if let Some(status) = state.failures.get_mut(&region_id).and_then(VecDeque::pop_front) {
        return Outcome::Error(status, failure_message(status));
    }
    let mut page = 1_u32;
    for (key, value) in
        asked.query.split('&').filter(|kv| !kv.is_empty()).map(|kv| kv.split_once('=').unwrap_or((kv, "")))
    {
        match key {
            "datasource" if asked.versioned && value != TENANT => {
                return Outcome::Error(StatusCode::BAD_REQUEST, "Invalid datasource");
            }
            "page" => match value.parse::<u32>() {
                Ok(n) if n >= 1 => page = n,
                _ => {
                    return Outcome::Error(StatusCode::BAD_REQUEST, "Invalid page: must be an integer of at least 1");
                }
            },
            _ => {}
        }
    }
    let Some(pages) = state.generation.regions.get(&region_id).cloned() else {
        return Outcome::Error(StatusCode::NOT_FOUND, "Region not found");
    };
    let Some(found) = usize::try_from(page - 1).ok().and_then(|i| pages.get(i)) else {
        return Outcome::Error(StatusCode::NOT_FOUND, "Requested page does not exist!");
    };
    let gzip_ok = asked
        .headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let (body, etag) = if state.malformed.contains(&(region_id, page)) {
        let body = malformed_body(&found.body);
        (Served::Plain(body.to_owned()), etag_of(body))
    } else if state.odd.contains(&(region_id, page)) {
        let body = odd_body(&found.body);
        let etag = etag_of(&body);
        (Served::Plain(body), etag)
    } else if gzip_ok {
        (Served::Gzip(found.gzipped().to_vec()), found.etag.clone())
    } else {
        (Served::Plain(found.body.clone()), found.etag.clone())
    };
    let not_modified =
        asked.headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| etag_matches(v, &etag));
    Outcome::Page { region_id, page, pages: pages.len(), body, etag, not_modified }
}

fn failure_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        502 => "Bad gateway",
        503 => "The datasource tranquility is temporarily unavailable",
        504 => "Timeout contacting tranquility",
        _ => "Internal server error",
    }
}

/// What a response costs in rate-limit tokens, by status class.
fn token_cost(status: StatusCode) -> f64 {
    match status.as_u16() {
        200..=299 => 2.0,
        300..=399 => 1.0,
        400..=499 => 5.0,
        _ => 0.0,
    }
}

/// A window as `X-Ratelimit-Limit` writes it: `15m`, `1h`, `90s`.
fn window_text(window: Duration) -> String {
    match window.as_secs() {
        s if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Applies the rate limit and the error limit to the outcome, counts it, builds the response.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "token counts are small and not negative")]
fn respond(shared: &Shared, state: &mut Mutable, outcome: Outcome, headers: &HeaderMap) -> Response {
    state.stats.requests += 1;
    let compatibility_date = headers.get("x-compatibility-date").and_then(|v| v.to_str().ok()).map(str::to_owned);
    if compatibility_date.is_none() {
        state.stats.no_compatibility_date += 1;
    }
    let mut outcome = outcome;
    let status = match &outcome {
        Outcome::Error(status, _) => *status,
        Outcome::Page { not_modified: true, .. } => StatusCode::NOT_MODIFIED,
        Outcome::Page { .. } => StatusCode::OK,
    };
    let mut builder = Response::builder();
    if let Some(limit) = &shared.opts.rate_limit {
        let cost = token_cost(status);
        if cost > state.tokens {
            let rate = f64::from(limit.tokens) / limit.window.as_secs_f64().max(f64::MIN_POSITIVE);
            let retry_after = ((cost - state.tokens) / rate).ceil().max(1.0) as u64;
            builder = builder.header(header::RETRY_AFTER, retry_after);
            outcome = Outcome::Error(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
        } else {
            state.tokens -= cost;
        }
        if limit.headers {
            let remaining = state.tokens.floor() as u64;
            builder = builder
                .header("X-Ratelimit-Group", &limit.group)
                .header("X-Ratelimit-Limit", format!("{}/{}", limit.tokens, window_text(limit.window)))
                .header("X-Ratelimit-Remaining", remaining)
                .header("X-Ratelimit-Used", u64::from(limit.tokens).saturating_sub(remaining));
        }
    }
    let body = match outcome {
        Outcome::Error(status, message) => {
            state.stats.errors += 1;
            match status.as_u16() {
                420 => state.stats.error_limited += 1,
                429 => state.stats.rate_limited += 1,
                500..=599 => state.stats.server_errors += 1,
                _ => {}
            }
            state.remain = state.remain.saturating_sub(1);
            builder = builder.status(status).header(header::CONTENT_TYPE, "application/json; charset=UTF-8");
            Body::from(serde_json::json!({ "error": message }).to_string())
        }
        Outcome::Page { region_id, page, pages, body, etag, not_modified } => {
            let g = &state.generation;
            builder = builder
                .header(header::ETAG, etag)
                .header(header::EXPIRES, g.expires.to_http_date())
                .header(header::LAST_MODIFIED, g.last_modified.to_http_date())
                .header(header::CACHE_CONTROL, "public")
                .header(header::VARY, "Accept-Encoding");
            let body = if not_modified {
                state.stats.not_modified += 1;
                builder = builder.status(StatusCode::NOT_MODIFIED);
                Body::empty()
            } else {
                state.stats.ok += 1;
                *state.stats.page_ok.entry((region_id, page)).or_default() += 1;
                builder = builder
                    .status(StatusCode::OK)
                    .header("X-Pages", pages)
                    .header(header::CONTENT_TYPE, "application/json; charset=UTF-8");
                match body {
                    Served::Plain(body) => Body::from(body),
                    Served::Gzip(bytes) => {
                        state.stats.gzip += 1;
                        builder = builder.header(header::CONTENT_ENCODING, "gzip");
                        Body::from(bytes)
                    }
                }
            };
            if let Some((left, drop)) = state.turnover_after.as_mut() {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    let drop = *drop;
                    state.turnover_after = None;
                    shared.turn_over(state, drop);
                }
            }
            body
        }
    };
    let window_end = state.window_start + shared.opts.error_window;
    let left = window_end.saturating_duration_since(Instant::now());
    let reset = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    builder = builder
        .header("X-ESI-Error-Limit-Remain", state.remain)
        .header("X-ESI-Error-Limit-Reset", reset)
        .header("X-Compatibility-Date", compatibility_date.as_deref().unwrap_or(COMPATIBILITY_DATE));
    builder.body(body).unwrap_or_else(|_| {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response
    })
}
