//! An embedded stand-in for ESI's public-contracts endpoint, serving recorded-looking fixture
//! pages for three regions on `127.0.0.1`.
//!
//! `GET {base}/contracts/public/{region_id}/?datasource=tranquility&page=N` answers like ESI:
//! `X-Pages`, `ETag`, `Expires`, `Last-Modified` and the error-limit pair
//! (`X-ESI-Error-Limit-Remain`, `X-ESI-Error-Limit-Reset`), `304` on a matching `If-None-Match`,
//! JSON `{"error": "..."}` bodies for `400`, `404`, `420` and `5xx`. Every error response uses
//! up one unit of the error limit; at zero the stand-in answers `420` until the window resets.
//!
//! The [`StandIn`] handle counts what it served and lets tests inject failures (a low error
//! limit, `5xx` answers, a malformed page).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::any;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::timestamp::Timestamp;

/// When the fixture pages were recorded: the stand-in's `Last-Modified` in the example and its
/// tests, so that summaries "as of" the data's time match `fixtures/expected.json`.
pub const RECORDED_AT: Timestamp = Timestamp(1_795_176_000); // 2026-11-20T12:00:00Z

/// The regions the stand-in knows: The Forge, Domain, Sinq Laison.
pub const REGIONS: [i32; 3] = [10_000_002, 10_000_043, 10_000_032];

/// The fixture pages, embedded in the binary: `(region_id, pages)`, pages in order from page 1.
const FIXTURES: [(i32, &[&str]); 3] = [
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

/// How a [`StandIn`] behaves.
#[derive(Debug, Clone)]
pub struct StandInOptions {
    /// How far in the future `Expires` lies (ESI: about 30 minutes).
    pub expires_after: Duration,
    /// Errors allowed per window (ESI: 100).
    pub error_limit: u32,
    /// Length of the error-limit window (ESI: 60 seconds).
    pub error_window: Duration,
    /// `Last-Modified` of every page; `None` uses the time the stand-in started.
    pub last_modified: Option<Timestamp>,
}

impl Default for StandInOptions {
    fn default() -> Self {
        Self {
            expires_after: Duration::from_secs(30 * 60),
            error_limit: 100,
            error_window: Duration::from_secs(60),
            last_modified: None,
        }
    }
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
    /// Error responses (`4xx`/`5xx`, including `420`).
    pub errors: u64,
    /// `420` responses.
    pub error_limited: u64,
    /// `200 OK` responses per `(region_id, page)`.
    pub page_ok: BTreeMap<(i32, u32), u64>,
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

/// One page: its body and the quoted `ETag` of that body.
#[derive(Debug)]
struct Page {
    body: &'static str,
    etag: String,
}

#[derive(Debug)]
struct Shared {
    opts: StandInOptions,
    last_modified: Timestamp,
    regions: HashMap<i32, Vec<Page>>,
    state: Mutex<Mutable>,
}

#[derive(Debug)]
struct Mutable {
    remain: u32,
    window_start: Instant,
    stats: Stats,
    failures: HashMap<i32, VecDeque<StatusCode>>,
    malformed: HashSet<(i32, u32)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Mutable> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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
        .map(|(id, pages)| {
            let pages = pages.iter().map(|body| Page { body, etag: etag_of(body) }).collect();
            (*id, pages)
        })
        .collect();
    let shared = Arc::new(Shared {
        last_modified: opts.last_modified.unwrap_or_else(Timestamp::now),
        state: Mutex::new(Mutable {
            remain: opts.error_limit,
            window_start: Instant::now(),
            stats: Stats::default(),
            failures: HashMap::new(),
            malformed: HashSet::new(),
        }),
        opts,
        regions,
    });
    let app = Router::new()
        .route("/latest/contracts/public/{region_id}/", any(contracts))
        .route("/latest/contracts/public/{region_id}", any(contracts))
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
    Ok(StandIn { base_url: format!("http://{addr}/latest"), addr, shared, shutdown: Some(tx), task: Some(task) })
}

impl StandIn {
    /// The ESI-style base URL, `http://127.0.0.1:PORT/latest`.
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

/// The body served for a malformed page: the first half of the real one, cut mid-JSON.
fn malformed_body(body: &str) -> &str {
    let mut end = body.len() / 2;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    &body[..end]
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison, `*` matches).
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// The outcome of the routing and error-limit logic, turned into a response by [`respond`].
enum Outcome {
    Error(StatusCode, &'static str),
    Page { region_id: i32, page: u32, pages: usize, body: &'static str, etag: String, not_modified: bool },
}

async fn contracts(
    State(shared): State<Arc<Shared>>,
    Path(region): Path<String>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let if_none_match = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok());
    let outcome = route(&shared, &method, &region, query.as_deref().unwrap_or(""), if_none_match);
    respond(&shared, outcome)
}

async fn not_found(State(shared): State<Arc<Shared>>) -> Response {
    let outcome = {
        let mut state = shared.lock();
        roll_window(&shared, &mut state);
        if state.remain == 0 { limited() } else { Outcome::Error(StatusCode::NOT_FOUND, "Not found") }
    };
    respond(&shared, outcome)
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

/// Starts a new error-limit window when the current one is over.
fn roll_window(shared: &Shared, state: &mut Mutable) {
    if state.window_start.elapsed() >= shared.opts.error_window {
        state.window_start = Instant::now();
        state.remain = shared.opts.error_limit;
    }
}

fn route(shared: &Shared, method: &Method, region: &str, query: &str, if_none_match: Option<&str>) -> Outcome {
    let mut state = shared.lock();
    roll_window(shared, &mut state);
    if state.remain == 0 {
        return limited();
    }
    if method != Method::GET {
        return Outcome::Error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
    }
    let Ok(region_id) = region.parse::<i32>() else {
        return Outcome::Error(StatusCode::BAD_REQUEST, "Invalid region_id: not an integer");
    };
    if let Some(status) = state.failures.get_mut(&region_id).and_then(VecDeque::pop_front) {
        return Outcome::Error(status, failure_message(status));
    }
    let mut page = 1_u32;
    for (key, value) in query.split('&').filter(|kv| !kv.is_empty()).map(|kv| kv.split_once('=').unwrap_or((kv, ""))) {
        match key {
            "datasource" if value != "tranquility" => {
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
    let Some(pages) = shared.regions.get(&region_id) else {
        return Outcome::Error(StatusCode::NOT_FOUND, "Region not found");
    };
    let Some(found) = usize::try_from(page - 1).ok().and_then(|i| pages.get(i)) else {
        return Outcome::Error(StatusCode::NOT_FOUND, "Requested page does not exist!");
    };
    let (body, etag) = if state.malformed.contains(&(region_id, page)) {
        let body = malformed_body(found.body);
        (body, etag_of(body))
    } else {
        (found.body, found.etag.clone())
    };
    let not_modified = if_none_match.is_some_and(|v| etag_matches(v, &etag));
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

/// Counts the outcome, applies its cost to the error limit and builds the response.
fn respond(shared: &Shared, outcome: Outcome) -> Response {
    let mut state = shared.lock();
    state.stats.requests += 1;
    let mut builder = Response::builder();
    let body = match outcome {
        Outcome::Error(status, message) => {
            state.stats.errors += 1;
            if status.as_u16() == 420 {
                state.stats.error_limited += 1;
            }
            state.remain = state.remain.saturating_sub(1);
            builder = builder.status(status).header(header::CONTENT_TYPE, "application/json; charset=UTF-8");
            Body::from(serde_json::json!({ "error": message }).to_string())
        }
        Outcome::Page { region_id, page, pages, body, etag, not_modified } => {
            let now = Timestamp::now();
            let expires_after = i64::try_from(shared.opts.expires_after.as_secs()).unwrap_or(i64::MAX);
            builder = builder
                .header("X-Pages", pages)
                .header(header::ETAG, etag)
                .header(header::EXPIRES, now.plus_seconds(expires_after).to_http_date())
                .header(header::LAST_MODIFIED, shared.last_modified.to_http_date());
            if not_modified {
                state.stats.not_modified += 1;
                builder = builder.status(StatusCode::NOT_MODIFIED);
                Body::empty()
            } else {
                state.stats.ok += 1;
                *state.stats.page_ok.entry((region_id, page)).or_default() += 1;
                builder =
                    builder.status(StatusCode::OK).header(header::CONTENT_TYPE, "application/json; charset=UTF-8");
                Body::from(body)
            }
        }
    };
    let window_end = state.window_start + shared.opts.error_window;
    let left = window_end.saturating_duration_since(Instant::now());
    let reset = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    builder = builder.header("X-ESI-Error-Limit-Remain", state.remain).header("X-ESI-Error-Limit-Reset", reset);
    drop(state);
    builder.body(body).unwrap_or_else(|_| {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response
    })
}
