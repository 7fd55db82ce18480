//! [`EsiClient`]: the public contracts of a region, every page from one cache generation,
//! cached in the example's database by `ETag`, within ESI's error and rate limits.
//!
//! - **Requests.** `GET {base}/contracts/public/{region_id}?page=N` with `X-Compatibility-Date`
//!   ([`COMPATIBILITY_DATE`]), `X-Tenant: tranquility`, the configured `User-Agent` and
//!   `Accept-Encoding: gzip`. A base URL ending in a version segment (`.../latest`, `.../v1`)
//!   gets ESI's versioned form, `{base}/contracts/public/{region_id}/?datasource=tranquility&page=N`.
//! - **One generation per walk.** Page 1 first; its `Last-Modified` names the cache generation
//!   and its `X-Pages` the page count. A later page of another generation, a changed `X-Pages`
//!   or a `404` for a page past 1 means ESI's cache turned over mid-walk: the walk starts again
//!   from page 1 (at most [`Settings::walk_restarts`] times, then [`EsiError::Inconsistent`], a
//!   retryable error). A walk does not start in the last [`Settings::walk_margin_secs`] before
//!   page 1's `Expires`. Contracts are counted once by `contract_id`.
//! - **Page cache.** A row per page in the database ([`crate::store`]: body, `ETag`, `Expires`,
//!   `Last-Modified`, `X-Pages`, kept for [`Settings::cache_ttl_secs`]): served without a
//!   request until its `Expires`, then revalidated with `If-None-Match` (a `304` serves the
//!   cached body).
//! - **Limits, shared through the database** by every process and worker using the same ESI:
//!   a `429` pauses the route for its `Retry-After` ([`EsiError::RateLimited`]), and the route
//!   is paced to its refill rate when `X-Ratelimit-Remaining` falls to
//!   [`Settings::rate_limit_floor`]; on routes without a rate-limit group, a low
//!   `X-ESI-Error-Limit-Remain` or a `420` backs off until the error window resets. A pause up
//!   to [`Settings::max_backoff_secs`] is waited inside the call; a longer one fails it at once,
//!   saying how long to wait (the API sets the limit to 0: it never sleeps).
//! - **Transient errors.** A `500`/`502`/`503`/`504` is retried [`Settings::server_retries`]
//!   times with doubling delays before it becomes [`EsiError::Server`].

mod error;
mod headers;

pub use error::{EsiError, ceil_secs};

use std::collections::BTreeMap;
use std::time::Duration;

use dual_mode::{DualMode, Secret};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde::{Deserialize, Serialize};

use self::headers::{error_text, header_str, header_time, rate_limit_of, reset_of, retry_after_of};
use crate::model::{Contract, parse_page};
use crate::settings::{DatabaseUrl, EsiToken, Settings};
use crate::store::{self, PageRow, PageWrite, SetMark};
use crate::timestamp::Timestamp;

/// The `X-Compatibility-Date` sent with every request: the date of ESI's API description that
/// this client's model and error handling were last reviewed against. Move it forward only
/// after reading what changed between the two dates; without it ESI answers as of the oldest
/// date it knows.
pub const COMPATIBILITY_DATE: &str = "2026-08-18";

/// The `X-Tenant` sent with every request (it replaced the `datasource` query parameter).
pub const TENANT: &str = "tranquility";

/// The route this client calls, as the name of its shared pause. ESI may put it in a
/// rate-limit group at any time; a pause applies to the route whatever its group is called.
const ROUTE: &str = "contracts-public";

/// A `429` without `Retry-After` pauses the route this long.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The ESI client. Its spec, [`EsiClientSpec`], is just the [`Settings`].
#[derive(DualMode)]
pub struct EsiClient {
    /// Where ESI is and how to talk to it.
    pub settings: Settings,
    /// The ESI token (empty: none sent).
    #[dual_mode(secret, env = "ESI_TOKEN")]
    pub token: Secret<EsiToken>,
    /// The database URL of the page cache and the shared pauses.
    #[dual_mode(secret, env = "DATABASE_URL")]
    pub database_url: Secret<DatabaseUrl>,
    /// The HTTP client.
    #[dual_mode(shared, config = settings.http)]
    pub http: reqwest::Client,
    /// The page cache and the shared pauses.
    #[dual_mode(shared, config = database_url)]
    pub db: sqlx::AnyPool,
}

/// What one call did to get its pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FetchCounts {
    /// Pages the region has (`X-Pages` of the generation read).
    pub pages: u32,
    /// Pages downloaded (`200`).
    pub downloaded: u32,
    /// Pages revalidated (`304`, the cached body served).
    pub revalidated: u32,
    /// Pages served from the cache without a request (before their `Expires`).
    pub fresh: u32,
    /// Requests sent to ESI, retries included.
    pub requests: u32,
    /// Requests sent again after a `5xx`.
    pub retries: u32,
    /// Walks started again from page 1 because the cache turned over.
    pub restarts: u32,
    /// Pauses waited before a request (rate limit, error limit, `5xx` back-off, `Expires`).
    pub waits: u32,
    /// Their total, in milliseconds.
    pub waited_ms: u64,
}

/// Every public contract of a region, from one cache generation.
#[derive(Debug, Clone)]
pub struct RegionContracts {
    /// The contracts, by ascending `contract_id`, each once.
    pub contracts: Vec<Contract>,
    /// Contracts of the pages that could not be read (an unexpected value); left out.
    pub skipped: usize,
    /// The generation's `Last-Modified`: the moment the data describes.
    pub as_of: Timestamp,
    /// How the pages were obtained.
    pub fetch: FetchCounts,
}

/// One page as cached.
#[derive(Debug, Clone)]
struct CachedPage {
    etag: String,
    expires: Timestamp,
    last_modified: Timestamp,
    pages: u32,
    body: String,
}

impl CachedPage {
    fn from_row(row: PageRow) -> Self {
        let PageRow { etag, expires, last_modified, pages, body } = row;
        Self { etag, expires: Timestamp(expires), last_modified: Timestamp(last_modified), pages, body }
    }

    /// What storing it writes: its headers, and its body when `with_body`.
    fn to_write(&self, with_body: bool) -> PageWrite<'_> {
        PageWrite {
            etag: &self.etag,
            expires: self.expires.0,
            last_modified: self.last_modified.0,
            pages: self.pages,
            body: with_body.then_some(self.body.as_str()),
        }
    }
}

/// How a page was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    Downloaded,
    Revalidated,
    Fresh,
}

/// Where a walk ended.
enum Walk {
    Done(RegionContracts),
    /// The pages changed under the walk: start again.
    Restart(String),
}

/// A stable short name of an ESI base URL, so that the stand-in's pages and the real ESI's
/// never share cache keys (FNV-1a, 32 bits).
fn site_of(url: &str) -> String {
    let hash = url.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    format!("{hash:08x}")
}

/// The cache key of one page.
#[must_use]
pub fn page_key(settings: &Settings, region_id: i32, page: u32) -> String {
    format!("esi:{}:contracts:{region_id}:{page}", site_of(&settings.esi_url))
}

/// The mark of the shared error-limit back-off (its value: the reset time, Unix seconds; it
/// lasts until the reset).
#[must_use]
pub fn backoff_key(settings: &Settings) -> String {
    format!("esi:{}:error-limit-backoff", site_of(&settings.esi_url))
}

/// The mark of the route's shared pause (a `429`, or pacing while few tokens are left); it
/// lasts until the route may be called again.
#[must_use]
pub fn pause_key(settings: &Settings) -> String {
    format!("esi:{}:pause:{ROUTE}", site_of(&settings.esi_url))
}

/// The shared pauses in force before a request: the error-limit back-off and the route's pause
/// (their remaining times to live, in ms; 0 or less: none).
#[derive(Debug, Clone, Copy)]
struct Gates {
    backoff_ms: i64,
    pause_ms: i64,
}

impl EsiClient {
    /// Every public contract of `region_id`, all pages from one cache generation.
    ///
    /// # Errors
    /// An [`EsiError`]: [`EsiError::NotFound`] when the region does not exist; a limit or an
    /// unsettled cache with the time to wait ([`EsiError::retry_after`]); the first other
    /// failure.
    pub async fn public_contracts(&self, region_id: i32) -> Result<RegionContracts, EsiError> {
        self.settings.check_contact()?;
        let mut fetch = FetchCounts::default();
        let mut restart = false;
        loop {
            match self.walk(region_id, restart, &mut fetch).await? {
                Walk::Done(done) => return Ok(done),
                Walk::Restart(detail) if fetch.restarts >= self.settings.walk_restarts => {
                    return Err(EsiError::Inconsistent {
                        region_id,
                        detail: format!("{detail} (after {} restarts)", fetch.restarts),
                        retry_after: None,
                    });
                }
                Walk::Restart(detail) => {
                    tracing::info!(region_id, %detail, "ESI cache turned over during the walk: starting again");
                    fetch.restarts += 1;
                    restart = true;
                }
            }
        }
    }

    /// One walk over the pages; `recheck` sends page 1 to ESI even while its cached copy is
    /// fresh (after a walk saw a newer generation).
    async fn walk(&self, region_id: i32, recheck: bool, fetch: &mut FetchCounts) -> Result<Walk, EsiError> {
        let (mut first, how) = self.page(region_id, 1, recheck, fetch).await?;
        count(fetch, how);
        let left = first.expires.0 - Timestamp::now().0;
        let margin = i64::try_from(self.settings.walk_margin_secs).unwrap_or(i64::MAX);
        if (0..margin).contains(&left) {
            // Too close to the turnover: wait for the next generation, then read page 1 again.
            let wait = Duration::from_secs(left.unsigned_abs() + 1);
            if wait > self.max_wait() {
                return Err(EsiError::Inconsistent {
                    region_id,
                    detail: format!("page 1 expires in {left} s, too soon to start a walk"),
                    retry_after: Some(wait),
                });
            }
            self.sleep(wait, fetch).await;
            let how;
            (first, how) = self.page(region_id, 1, true, fetch).await?;
            count(fetch, how);
        }
        let generation = first.last_modified;
        let pages = first.pages.max(1);
        let mut contracts = BTreeMap::new();
        let mut skipped = self.read(&first, 1, region_id, &mut contracts)?;
        for page in 2..=pages {
            let (mut got, how) = match self.page(region_id, page, false, fetch).await {
                Err(EsiError::NotFound { .. }) => {
                    return Ok(Walk::Restart(format!("page {page} of {pages} is gone (404)")));
                }
                other => other?,
            };
            count(fetch, how);
            if got.last_modified != generation && how == How::Fresh {
                // A cached page of another generation: ask ESI which one is current.
                let how;
                (got, how) = self.page(region_id, page, true, fetch).await?;
                count(fetch, how);
            }
            if got.last_modified != generation {
                return Ok(Walk::Restart(format!(
                    "page {page} is of {} but page 1 of {generation}",
                    got.last_modified
                )));
            }
            if got.pages != pages {
                return Ok(Walk::Restart(format!("X-Pages went from {pages} to {} at page {page}", got.pages)));
            }
            skipped += self.read(&got, page, region_id, &mut contracts)?;
        }
        fetch.pages = pages;
        Ok(Walk::Done(RegionContracts {
            contracts: contracts.into_values().collect(),
            skipped,
            as_of: generation,
            fetch: *fetch,
        }))
    }

    /// Adds a page's contracts to `into` (once per `contract_id`); returns how many were skipped.
    fn read(
        &self,
        page: &CachedPage,
        n: u32,
        region_id: i32,
        into: &mut BTreeMap<i64, Contract>,
    ) -> Result<usize, EsiError> {
        let (contracts, skipped) = parse_page(&page.body).map_err(|e| EsiError::BadBody {
            url: self.page_url(region_id, n),
            detail: "not a contract page",
            source: Some(e),
        })?;
        if skipped > 0 {
            tracing::warn!(region_id, page = n, skipped, "contracts with unexpected values skipped");
        }
        for contract in contracts {
            into.entry(contract.contract_id).or_insert(contract);
        }
        Ok(skipped)
    }

    /// The URL of one page, in the form the base URL asks for.
    fn page_url(&self, region_id: i32, page: u32) -> String {
        let base = &self.settings.esi_url;
        if self.settings.is_versioned_url() {
            format!("{base}/contracts/public/{region_id}/?datasource={TENANT}&page={page}")
        } else {
            format!("{base}/contracts/public/{region_id}?page={page}")
        }
    }

    /// The longest pause waited inside a call.
    fn max_wait(&self) -> Duration {
        Duration::from_secs(self.settings.max_backoff_secs)
    }

    async fn sleep(&self, wait: Duration, fetch: &mut FetchCounts) {
        fetch.waits += 1;
        fetch.waited_ms += u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        tokio::time::sleep(wait).await;
    }

    /// One page: from the cache while fresh (unless `recheck`), else revalidated or downloaded.
    async fn page(
        &self,
        region_id: i32,
        page: u32,
        recheck: bool,
        fetch: &mut FetchCounts,
    ) -> Result<(CachedPage, How), EsiError> {
        let key = page_key(&self.settings, region_id, page);
        let url = self.page_url(region_id, page);
        let mut server_errors = 0;
        loop {
            // The cached page and the shared pauses, in one round trip.
            let (cached, backoff_ms, pause_ms) =
                store::page_and_pauses(&self.db, &key, &backoff_key(&self.settings), &pause_key(&self.settings))
                    .await
                    .map_err(|source| EsiError::Cache { op: "read page", source })?;
            let cached = cached.map(CachedPage::from_row);
            if !recheck && let Some(c) = cached.as_ref().filter(|c| Timestamp::now() < c.expires) {
                return Ok((c.clone(), How::Fresh));
            }
            self.wait_for_gates(&url, Gates { backoff_ms, pause_ms }, fetch).await?;
            match self.request(&key, &url, cached, fetch).await {
                Err(EsiError::Server { status, .. })
                    if server_errors < self.settings.server_retries
                        && self.retry_delay(server_errors) <= self.max_wait() =>
                {
                    let delay = self.retry_delay(server_errors);
                    tracing::warn!(status, %url, ?delay, "ESI server error: trying again");
                    server_errors += 1;
                    fetch.retries += 1;
                    self.sleep(delay, fetch).await;
                }
                other => return other,
            }
        }
    }

    /// The delay before retry `n` (from 0) after a `5xx`: doubling from
    /// [`Settings::server_retry_base_ms`].
    fn retry_delay(&self, n: u32) -> Duration {
        Duration::from_millis(self.settings.server_retry_base_ms.saturating_mul(1 << n.min(16)))
    }

    /// Sends one request for a page and caches what comes back.
    async fn request(
        &self,
        key: &str,
        url: &str,
        cached: Option<CachedPage>,
        fetch: &mut FetchCounts,
    ) -> Result<(CachedPage, How), EsiError> {
        let mut req = self
            .http
            .get(url)
            .header(header::USER_AGENT, self.settings.user_agent())
            .header("X-Compatibility-Date", COMPATIBILITY_DATE)
            .header("X-Tenant", TENANT);
        if let Some(token) = self.token.expose().bearer() {
            req = req.bearer_auth(token);
        }
        if let Some(c) = &cached {
            req = req.header(header::IF_NONE_MATCH, &c.etag);
        }
        fetch.requests += 1;
        let resp = req.send().await.map_err(|source| EsiError::Http { url: url.to_owned(), source })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        self.note_limits(&headers, status).await?;
        let now = Timestamp::now();
        let pages_header = header_str(&headers, "x-pages").and_then(|v| v.parse::<u32>().ok());
        let expires = header_time(&headers, header::EXPIRES).unwrap_or(now);
        let last_modified = header_time(&headers, header::LAST_MODIFIED);

        if status == StatusCode::NOT_MODIFIED {
            let Some(mut c) = cached else {
                return Err(EsiError::BadBody {
                    url: url.to_owned(),
                    detail: "304 Not Modified for a page that is not cached",
                    source: None,
                });
            };
            c.expires = expires;
            if let Some(lm) = last_modified {
                c.last_modified = lm;
            }
            if let Some(p) = pages_header {
                c.pages = p;
            }
            self.store(key, &c, false).await?;
            return Ok((c, How::Revalidated));
        }
        let body = resp.text().await.map_err(|source| EsiError::Http { url: url.to_owned(), source })?;
        if !status.is_success() {
            let (url, message) = (url.to_owned(), error_text(&body));
            return Err(match status.as_u16() {
                404 => EsiError::NotFound { url, message },
                420 => EsiError::ErrorLimited { url, reset_secs: reset_of(&headers), message },
                429 => {
                    let retry_after = retry_after_of(&headers).unwrap_or(DEFAULT_RETRY_AFTER);
                    EsiError::RateLimited { url, retry_after, message }
                }
                s @ 500..=599 => EsiError::Server { url, status: s, message },
                s => EsiError::Status { url, status: s, message },
            });
        }
        let Some(pages) = pages_header else {
            return Err(EsiError::BadBody { url: url.to_owned(), detail: "no X-Pages header", source: None });
        };
        // Checked before caching (that it is a JSON array, without building its contracts: the
        // walk reads them): a truncated page must not be served for 30 minutes.
        if let Err(e) = serde_json::from_str::<Vec<serde::de::IgnoredAny>>(&body) {
            return Err(EsiError::BadBody { url: url.to_owned(), detail: "not a contract page", source: Some(e) });
        }
        let etag = header_str(&headers, "etag").unwrap_or_default().to_owned();
        let c = CachedPage { etag, expires, last_modified: last_modified.unwrap_or(now), pages, body };
        if !c.etag.is_empty() {
            self.store(key, &c, true).await?;
        }
        Ok((c, How::Downloaded))
    }

    /// Writes a page (with its body when `with_body`) and renews its time to keep.
    async fn store(&self, key: &str, c: &CachedPage, with_body: bool) -> Result<(), EsiError> {
        let keep = Duration::from_secs(self.settings.cache_ttl_secs.max(1));
        store::store_page(&self.db, key, c.to_write(with_body), keep)
            .await
            .map_err(|source| EsiError::Cache { op: "store page", source })
    }

    /// Waits out the shared pauses when they are short enough; fails at once otherwise.
    async fn wait_for_gates(&self, url: &str, gates: Gates, fetch: &mut FetchCounts) -> Result<(), EsiError> {
        let wait_ms = gates.backoff_ms.max(gates.pause_ms);
        if wait_ms <= 0 {
            return Ok(());
        }
        let wait = Duration::from_millis(wait_ms.unsigned_abs());
        if wait > self.max_wait() {
            let url = url.to_owned();
            return Err(if gates.pause_ms >= gates.backoff_ms {
                EsiError::RateLimited {
                    url,
                    retry_after: wait,
                    message: "not sent: the route is paused by its rate limit".into(),
                }
            } else {
                EsiError::ErrorLimited {
                    url,
                    reset_secs: ceil_secs(wait),
                    message: "not sent: backing off until the error-limit window resets".into(),
                }
            });
        }
        tracing::info!(wait_ms, "ESI limit: pausing before the next request");
        self.sleep(wait, fetch).await;
        Ok(())
    }

    /// Records the shared pauses a response calls for: the route's after a `429` or when its
    /// rate-limit tokens run low; the error-limit back-off on routes without a rate-limit group.
    async fn note_limits(&self, headers: &HeaderMap, status: StatusCode) -> Result<(), EsiError> {
        let remaining = header_str(headers, "x-ratelimit-remaining").and_then(|v| v.parse::<u64>().ok());
        let pause = if status == StatusCode::TOO_MANY_REQUESTS {
            Some(retry_after_of(headers).unwrap_or(DEFAULT_RETRY_AFTER))
        } else {
            match (remaining, rate_limit_of(headers)) {
                // Pace to the refill rate: the time a 2xx's 2 tokens take to come back.
                (Some(left), Some((tokens, window))) if left <= self.settings.rate_limit_floor => {
                    Some(window.mul_f64(2.0 / f64::from(u32::try_from(tokens).unwrap_or(u32::MAX))))
                }
                _ => None,
            }
        };
        if let Some(pause) = pause.filter(|p| !p.is_zero()) {
            // Set, or lengthened: a short pacing pause never cuts a 429's pause short.
            store::set_mark(&self.db, &pause_key(&self.settings), status.as_str(), pause, SetMark::Lengthen)
                .await
                .map_err(|source| EsiError::Cache { op: "record pause", source })?;
        }
        if header_str(headers, "x-ratelimit-group").is_some() {
            // A rate-limited route: its tokens, not the error limit, decide.
            return Ok(());
        }
        let remain = header_str(headers, "x-esi-error-limit-remain").and_then(|v| v.parse::<u32>().ok());
        let low = remain.is_some_and(|r| r <= self.settings.error_limit_floor) || status.as_u16() == 420;
        let reset = reset_of(headers);
        if !low || reset == 0 {
            return Ok(());
        }
        let until = Timestamp::now().plus_seconds(i64::try_from(reset).unwrap_or(i64::MAX));
        let wait = Duration::from_secs(reset);
        store::set_mark(&self.db, &backoff_key(&self.settings), &until.0.to_string(), wait, SetMark::Always)
            .await
            .map(drop)
            .map_err(|source| EsiError::Cache { op: "record back-off", source })
    }
}

fn count(fetch: &mut FetchCounts, how: How) {
    match how {
        How::Downloaded => fetch.downloaded += 1,
        How::Revalidated => fetch.revalidated += 1,
        How::Fresh => fetch.fresh += 1,
    }
}
