//! [`EsiClient`]: the public contracts of a region, every page, cached in Redis by `ETag`.
//!
//! - All pages: page 1 first, then pages 2..=`X-Pages`.
//! - Per-page cache in Redis (a hash per page: body, `ETag`, `Expires`, `Last-Modified`,
//!   `X-Pages`, kept for [`Settings::cache_ttl_secs`]): a page is served from the cache without
//!   a request until its `Expires`; after that it is revalidated with `If-None-Match`, and a
//!   `304` serves the cached body.
//! - Error limit: every response's `X-ESI-Error-Limit-Remain` is checked; at or below
//!   [`Settings::error_limit_floor`] (or on a `420`) a back-off until the window resets is
//!   recorded in Redis, so that every API process and worker sharing this Redis waits it out
//!   before its next request.
//! - Typed errors: [`EsiError`].

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use dual_mode::{DualMode, Secret};
use redis::aio::ConnectionManager;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};

use crate::model::Contract;
use crate::settings::{EsiToken, RedisUrl, Settings};
use crate::timestamp::Timestamp;

/// The ESI client. Its spec, [`EsiClientSpec`], is just the [`Settings`].
#[derive(DualMode)]
pub struct EsiClient {
    /// Where ESI is and how to talk to it.
    pub settings: Settings,
    /// The ESI token (empty: none sent).
    #[dual_mode(secret, env = "ESI_TOKEN")]
    pub token: Secret<EsiToken>,
    /// The Redis URL of the page cache.
    #[dual_mode(secret, env = "REDIS_URL")]
    pub redis_url: Secret<RedisUrl>,
    /// The HTTP client.
    #[dual_mode(shared, config = settings.http)]
    pub http: reqwest::Client,
    /// The page cache and the shared error-limit back-off.
    #[dual_mode(shared, config = redis_url)]
    pub redis: ConnectionManager,
}

/// Why a call to ESI failed.
#[derive(Debug)]
pub enum EsiError {
    /// `404`: no such region (or page).
    NotFound {
        /// The request.
        url: String,
        /// ESI's `error` text.
        message: String,
    },
    /// `420`, or a back-off longer than [`Settings::max_backoff_secs`]: the error limit is
    /// used up until the window resets.
    ErrorLimited {
        /// The request.
        url: String,
        /// Seconds until the error-limit window resets.
        reset_secs: u64,
        /// ESI's `error` text, or why the client did not send the request.
        message: String,
    },
    /// A `5xx`.
    Server {
        /// The request.
        url: String,
        /// The status code.
        status: u16,
        /// ESI's `error` text.
        message: String,
    },
    /// Any other unexpected status (`400`, `403`, ...).
    Status {
        /// The request.
        url: String,
        /// The status code.
        status: u16,
        /// ESI's `error` text.
        message: String,
    },
    /// A `200` whose body is not a contract page, a missing `X-Pages`, or a `304` for a page
    /// that is no longer cached.
    BadBody {
        /// The request.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// The request did not get a response (connect, timeout, TLS).
    Http {
        /// The request.
        url: String,
        /// reqwest's error.
        source: reqwest::Error,
    },
    /// The page cache failed.
    Cache {
        /// What was being done.
        op: &'static str,
        /// Redis's error.
        source: redis::RedisError,
    },
}

impl EsiError {
    /// Whether trying again later cannot help (`404`, other `4xx` but `420`, a bad body is
    /// worth a retry: ESI serves a truncated page now and then).
    #[must_use]
    pub const fn is_permanent(&self) -> bool {
        matches!(self, Self::NotFound { .. } | Self::Status { .. })
    }
}

impl fmt::Display for EsiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound { url, message } => write!(f, "ESI 404 for {url}: {message}"),
            Self::ErrorLimited { url, reset_secs, message } => {
                write!(f, "ESI error limit reached for {url} (resets in {reset_secs} s): {message}")
            }
            Self::Server { url, status, message } => write!(f, "ESI server error {status} for {url}: {message}"),
            Self::Status { url, status, message } => write!(f, "ESI answered {status} for {url}: {message}"),
            Self::BadBody { url, detail } => write!(f, "bad ESI response for {url}: {detail}"),
            Self::Http { url, source } => write!(f, "request to {url} failed: {source}"),
            Self::Cache { op, source } => write!(f, "ESI page cache ({op}) failed: {source}"),
        }
    }
}

impl std::error::Error for EsiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Http { source, .. } => Some(source),
            Self::Cache { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// How the pages of one call were obtained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FetchCounts {
    /// Pages the region has (`X-Pages`).
    pub pages: u32,
    /// Pages downloaded (`200`).
    pub downloaded: u32,
    /// Pages revalidated (`304`, the cached body served).
    pub revalidated: u32,
    /// Pages served from the cache without a request (before their `Expires`).
    pub fresh: u32,
}

/// Every public contract of a region.
#[derive(Debug, Clone)]
pub struct RegionContracts {
    /// The contracts, page 1 first.
    pub contracts: Vec<Contract>,
    /// The newest `Last-Modified` of the pages: the moment the data describes.
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
    fn from_hash(mut h: HashMap<String, String>) -> Option<Self> {
        let num = |v: Option<String>| v.and_then(|v| v.parse::<i64>().ok());
        Some(Self {
            etag: h.remove("etag")?,
            expires: Timestamp(num(h.remove("expires"))?),
            last_modified: Timestamp(num(h.remove("last_modified"))?),
            pages: h.remove("pages")?.parse().ok()?,
            body: h.remove("body")?,
        })
    }
}

/// A stable short name of an ESI base URL, so that the stand-in's pages and the real ESI's
/// never share cache keys (FNV-1a, 32 bits).
fn site_of(url: &str) -> String {
    let hash = url.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    format!("{hash:08x}")
}

/// The Redis key of one cached page.
#[must_use]
pub fn page_key(settings: &Settings, region_id: i32, page: u32) -> String {
    format!("esi:{}:contracts:{region_id}:{page}", site_of(&settings.esi_url))
}

/// The Redis key of the shared error-limit back-off (its value: the reset time, Unix ms; it
/// expires at the reset).
#[must_use]
pub fn backoff_key(settings: &Settings) -> String {
    format!("esi:{}:error-limit-backoff", site_of(&settings.esi_url))
}

/// ESI's `{"error": "..."}` text, or the start of the body.
fn error_text(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(serde_json::Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn header_time(headers: &HeaderMap, name: header::HeaderName) -> Option<Timestamp> {
    headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| Timestamp::parse_http_date(v.trim()).ok())
}

impl EsiClient {
    /// Every public contract of `region_id`, all pages.
    ///
    /// # Errors
    /// An [`EsiError`] for the first page that failed.
    pub async fn public_contracts(&self, region_id: i32) -> Result<RegionContracts, EsiError> {
        let mut fetch = FetchCounts::default();
        let mut contracts = Vec::new();
        let mut as_of = Timestamp(i64::MIN);
        let mut page = 1;
        let mut pages = 1;
        while page <= pages {
            let (got, parsed, how) = self.page(region_id, page).await?;
            match how {
                How::Downloaded => fetch.downloaded += 1,
                How::Revalidated => fetch.revalidated += 1,
                How::Fresh => fetch.fresh += 1,
            }
            if page == 1 {
                pages = got.pages.max(1);
            }
            as_of = as_of.max(got.last_modified);
            contracts.extend(parsed);
            page += 1;
        }
        fetch.pages = pages;
        if as_of.0 == i64::MIN {
            as_of = Timestamp::now();
        }
        Ok(RegionContracts { contracts, as_of, fetch })
    }

    fn page_url(&self, region_id: i32, page: u32) -> String {
        format!("{}/contracts/public/{region_id}/?datasource=tranquility&page={page}", self.settings.esi_url)
    }

    /// One page and its contracts: from the cache while fresh, else revalidated or downloaded.
    async fn page(&self, region_id: i32, page: u32) -> Result<(CachedPage, Vec<Contract>, How), EsiError> {
        let key = page_key(&self.settings, region_id, page);
        let url = self.page_url(region_id, page);
        let parse = |body: &str| {
            serde_json::from_str::<Vec<Contract>>(body)
                .map_err(|e| EsiError::BadBody { url: url.clone(), detail: format!("not a contract page: {e}") })
        };
        // The cached page and the shared back-off, in one round trip.
        let mut con = self.redis.clone();
        let (cached, backoff_ms): (HashMap<String, String>, i64) = redis::pipe()
            .cmd("HGETALL")
            .arg(&key)
            .cmd("PTTL")
            .arg(backoff_key(&self.settings))
            .query_async(&mut con)
            .await
            .map_err(|source| EsiError::Cache { op: "read page", source })?;
        let cached = CachedPage::from_hash(cached);
        let now = Timestamp::now();
        if let Some(c) = cached.as_ref().filter(|c| now < c.expires) {
            return Ok((c.clone(), parse(&c.body)?, How::Fresh));
        }

        self.wait_for_error_limit(&url, backoff_ms).await?;
        let mut req = self.http.get(&url).header(header::USER_AGENT, self.settings.user_agent());
        if let Some(token) = self.token.expose().bearer() {
            req = req.bearer_auth(token);
        }
        if let Some(c) = &cached {
            req = req.header(header::IF_NONE_MATCH, &c.etag);
        }
        let resp = req.send().await.map_err(|source| EsiError::Http { url: url.clone(), source })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        self.note_error_limit(&headers, status).await?;
        let pages_header = header_str(&headers, "x-pages").and_then(|v| v.parse::<u32>().ok());
        let expires = header_time(&headers, header::EXPIRES).unwrap_or(now);
        let last_modified = header_time(&headers, header::LAST_MODIFIED);

        if status == StatusCode::NOT_MODIFIED {
            let Some(mut c) = cached else {
                return Err(EsiError::BadBody { url, detail: "304 Not Modified for a page that is not cached".into() });
            };
            c.expires = expires;
            if let Some(lm) = last_modified {
                c.last_modified = lm;
            }
            if let Some(p) = pages_header {
                c.pages = p;
            }
            self.store(&key, &c, false).await?;
            let parsed = parse(&c.body)?;
            return Ok((c, parsed, How::Revalidated));
        }
        let body = resp.text().await.map_err(|source| EsiError::Http { url: url.clone(), source })?;
        if !status.is_success() {
            let message = error_text(&body);
            return Err(match status.as_u16() {
                404 => EsiError::NotFound { url, message },
                420 => EsiError::ErrorLimited { url, reset_secs: reset_of(&headers), message },
                s @ 500..=599 => EsiError::Server { url, status: s, message },
                s => EsiError::Status { url, status: s, message },
            });
        }
        let Some(pages) = pages_header else {
            return Err(EsiError::BadBody { url, detail: "no X-Pages header".into() });
        };
        // Parsed before caching: a truncated page must not be served for 30 minutes.
        let parsed = parse(&body)?;
        let etag = header_str(&headers, "etag").unwrap_or_default().to_owned();
        let c = CachedPage { etag, expires, last_modified: last_modified.unwrap_or(now), pages, body };
        if !c.etag.is_empty() {
            self.store(&key, &c, true).await?;
        }
        Ok((c, parsed, How::Downloaded))
    }

    /// Writes a page (with its body when `with_body`) and renews its time to live.
    async fn store(&self, key: &str, c: &CachedPage, with_body: bool) -> Result<(), EsiError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        let cmd = pipe
            .cmd("HSET")
            .arg(key)
            .arg("etag")
            .arg(&c.etag)
            .arg("expires")
            .arg(c.expires.0)
            .arg("last_modified")
            .arg(c.last_modified.0)
            .arg("pages")
            .arg(c.pages);
        if with_body {
            cmd.arg("body").arg(&c.body);
        }
        cmd.ignore();
        pipe.cmd("EXPIRE").arg(key).arg(self.settings.cache_ttl_secs.max(1)).ignore();
        let mut con = self.redis.clone();
        pipe.query_async::<()>(&mut con).await.map_err(|source| EsiError::Cache { op: "store page", source })
    }

    /// Waits out a back-off recorded by any client sharing this Redis (`pttl`: the time to
    /// live of its key, in ms); fails when it is longer than [`Settings::max_backoff_secs`].
    async fn wait_for_error_limit(&self, url: &str, pttl: i64) -> Result<(), EsiError> {
        if pttl <= 0 {
            return Ok(());
        }
        let wait = Duration::from_millis(pttl.unsigned_abs());
        if wait > Duration::from_secs(self.settings.max_backoff_secs) {
            return Err(EsiError::ErrorLimited {
                url: url.to_owned(),
                reset_secs: wait.as_secs() + 1,
                message: "not sent: backing off until the error-limit window resets".into(),
            });
        }
        tracing::warn!(wait_ms = pttl, "ESI error limit low: backing off");
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Records a back-off until the window resets when the error limit runs low or a `420`
    /// came back.
    async fn note_error_limit(&self, headers: &HeaderMap, status: StatusCode) -> Result<(), EsiError> {
        let remain = header_str(headers, "x-esi-error-limit-remain").and_then(|v| v.parse::<u32>().ok());
        let low = remain.is_some_and(|r| r <= self.settings.error_limit_floor) || status.as_u16() == 420;
        let reset = reset_of(headers);
        if !low || reset == 0 {
            return Ok(());
        }
        let mut con = self.redis.clone();
        let until = Timestamp::now().plus_seconds(i64::try_from(reset).unwrap_or(i64::MAX));
        redis::cmd("SET")
            .arg(backoff_key(&self.settings))
            .arg(until.0)
            .arg("EX")
            .arg(reset)
            .query_async::<()>(&mut con)
            .await
            .map_err(|source| EsiError::Cache { op: "record back-off", source })
    }
}

/// `X-ESI-Error-Limit-Reset`, 0 when absent.
fn reset_of(headers: &HeaderMap) -> u64 {
    header_str(headers, "x-esi-error-limit-reset").and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// How a page was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    Downloaded,
    Revalidated,
    Fresh,
}
