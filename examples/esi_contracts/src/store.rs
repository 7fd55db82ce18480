//! The example's database: ESI's page cache, the marks every process shares (the route's
//! pause, the error-limit back-off, regions ESI does not know, the API's computation locks) and
//! each region's summaries over time.
//!
//! It is SQL through one `sqlx::AnyPool`, a built-in resource of dual-mode: the services mark
//! it `#[dual_mode(shared, config = database_url)]` and nothing else is written for it. The URL
//! picks the database: SQLite (`sqlite:///path/esi.db?mode=rwc`, what the main job uses in a
//! temporary directory when `DATABASE_URL` is unset) or Postgres (`postgres://...`). The
//! statements are those both understand: `$n` parameters, `INSERT ... ON CONFLICT`, integers
//! and text only.
//!
//! | table | rows |
//! |---|---|
//! | `esi_pages` | a cached page: body, `ETag`, `Expires`, `Last-Modified`, `X-Pages`, kept until |
//! | `esi_marks` | a value under a key until a time (ms): pauses, back-offs, locks, unknown regions |
//! | `region_summaries` | a region's [`StoredSummary`] at each aggregation, as JSON |

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{AnyPool, Row};

use crate::aggregate::StoredSummary;

/// The tables, created by [`migrate`] where missing.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS esi_pages (
        key TEXT PRIMARY KEY,
        etag TEXT NOT NULL,
        expires BIGINT NOT NULL,
        last_modified BIGINT NOT NULL,
        pages BIGINT NOT NULL,
        body TEXT NOT NULL,
        kept_until BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS esi_marks (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        until_ms BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS region_summaries (
        region_id BIGINT NOT NULL,
        aggregated_at BIGINT NOT NULL,
        summary TEXT NOT NULL,
        PRIMARY KEY (region_id, aggregated_at))",
];

/// Creates the example's tables where missing. Processes that start at once may race on
/// Postgres's catalog (`CREATE TABLE IF NOT EXISTS` is not atomic there): a failed attempt is
/// tried again, after which the tables exist.
///
/// # Errors
/// The database fails three times.
pub async fn migrate(db: &AnyPool) -> Result<(), sqlx::Error> {
    let mut attempt = 0;
    loop {
        let mut result = Ok(());
        for statement in SCHEMA {
            if let Err(e) = sqlx::query(statement).execute(db).await {
                result = Err(e);
                break;
            }
        }
        match result {
            Err(_) if attempt < 2 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            done => return done,
        }
    }
}

/// `url` with the pool size `n` (as the query parameter `max_connections`) unless it names
/// one: a process's long-lived pool, where a job's temporary pool keeps the default of one.
#[must_use]
pub fn with_pool_size(url: &str, n: u32) -> String {
    if url.contains("max_connections=") {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}max_connections={n}")
}

/// Milliseconds since the Unix epoch.
#[must_use]
pub fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A cached page's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRow {
    /// The `ETag`.
    pub etag: String,
    /// `Expires`, Unix seconds.
    pub expires: i64,
    /// `Last-Modified`, Unix seconds.
    pub last_modified: i64,
    /// `X-Pages`.
    pub pages: u32,
    /// The body.
    pub body: String,
}

/// A page's row (unless missing or past its time to keep) and the remaining time, in ms, of
/// the marks `pause` and `backoff` (0 or less: none), in one round trip.
///
/// # Errors
/// The database fails.
pub async fn page_and_pauses(
    db: &AnyPool,
    key: &str,
    backoff: &str,
    pause: &str,
) -> Result<(Option<PageRow>, i64, i64), sqlx::Error> {
    let now = now_ms();
    let row = sqlx::query(
        "SELECT p.etag, p.expires, p.last_modified, p.pages, p.body,
                (SELECT until_ms FROM esi_marks WHERE key = $2),
                (SELECT until_ms FROM esi_marks WHERE key = $3)
         FROM (SELECT 1 AS one) AS t
         LEFT JOIN esi_pages AS p ON p.key = $1 AND p.kept_until > $4",
    )
    .bind(key)
    .bind(backoff)
    .bind(pause)
    .bind(now / 1000)
    .fetch_one(db)
    .await?;
    let page = match row.try_get::<Option<String>, _>(0)? {
        Some(etag) => Some(PageRow {
            etag,
            expires: row.try_get(1)?,
            last_modified: row.try_get(2)?,
            pages: u32::try_from(row.try_get::<i64, _>(3)?).unwrap_or(0),
            body: row.try_get(4)?,
        }),
        None => None,
    };
    let left = |i: usize| row.try_get::<Option<i64>, _>(i).map(|until| until.map_or(0, |u| u - now));
    Ok((page, left(5)?, left(6)?))
}

/// A page to store: its headers, and its body after a `200` (none after a `304`: the cached
/// body stays).
#[derive(Debug, Clone, Copy)]
pub struct PageWrite<'a> {
    /// The `ETag`.
    pub etag: &'a str,
    /// `Expires`, Unix seconds.
    pub expires: i64,
    /// `Last-Modified`, Unix seconds.
    pub last_modified: i64,
    /// `X-Pages`.
    pub pages: u32,
    /// The body, when it is new.
    pub body: Option<&'a str>,
}

/// Stores a page and keeps it for `keep`.
///
/// # Errors
/// The database fails.
pub async fn store_page(db: &AnyPool, key: &str, page: PageWrite<'_>, keep: Duration) -> Result<(), sqlx::Error> {
    let kept_until = now_ms() / 1000 + ms(keep) / 1000;
    let query = if page.body.is_some() {
        sqlx::query(
            "INSERT INTO esi_pages (key, etag, expires, last_modified, pages, kept_until, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (key) DO UPDATE SET etag = excluded.etag, expires = excluded.expires,
                 last_modified = excluded.last_modified, pages = excluded.pages,
                 kept_until = excluded.kept_until, body = excluded.body",
        )
    } else {
        sqlx::query(
            "UPDATE esi_pages SET etag = $2, expires = $3, last_modified = $4, pages = $5, kept_until = $6
             WHERE key = $1",
        )
    };
    let query = query
        .bind(key)
        .bind(page.etag)
        .bind(page.expires)
        .bind(page.last_modified)
        .bind(i64::from(page.pages))
        .bind(kept_until);
    let query = match page.body {
        Some(body) => query.bind(body),
        None => query,
    };
    query.execute(db).await?;
    Ok(())
}

/// The value of the mark `key`, unless missing or past its time.
///
/// # Errors
/// The database fails.
pub async fn mark(db: &AnyPool, key: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT value FROM esi_marks WHERE key = $1 AND until_ms > $2")
        .bind(key)
        .bind(now_ms())
        .fetch_optional(db)
        .await
}

/// How [`set_mark`] treats a mark that is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMark {
    /// Replace it.
    Always,
    /// Keep it, unless the new one lasts longer: a short pause never cuts a long one short.
    Lengthen,
    /// Keep it: a lock taken by someone else.
    IfAbsent,
}

/// Sets the mark `key` to `value` for `ttl`. Returns whether it was written.
///
/// # Errors
/// The database fails.
pub async fn set_mark(db: &AnyPool, key: &str, value: &str, ttl: Duration, how: SetMark) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let condition = match how {
        SetMark::Always => "",
        SetMark::Lengthen => " WHERE esi_marks.until_ms < excluded.until_ms",
        SetMark::IfAbsent => " WHERE esi_marks.until_ms <= $4",
    };
    let statement = format!(
        "INSERT INTO esi_marks (key, value, until_ms) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, until_ms = excluded.until_ms{condition}"
    );
    let mut query = sqlx::query(&statement).bind(key).bind(value).bind(now.saturating_add(ms(ttl)));
    if how == SetMark::IfAbsent {
        query = query.bind(now);
    }
    Ok(query.execute(db).await?.rows_affected() == 1)
}

/// Removes the mark `key`.
///
/// # Errors
/// The database fails.
pub async fn clear_mark(db: &AnyPool, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM esi_marks WHERE key = $1").bind(key).execute(db).await?;
    Ok(())
}

/// Adds a summary to its region's history (one per region and second: a second aggregation
/// within the same second replaces the first).
///
/// # Errors
/// The database fails.
pub async fn record_summary(db: &AnyPool, stored: &StoredSummary, json: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO region_summaries (region_id, aggregated_at, summary) VALUES ($1, $2, $3)
         ON CONFLICT (region_id, aggregated_at) DO UPDATE SET summary = excluded.summary",
    )
    .bind(i64::from(stored.summary.region_id))
    .bind(stored.aggregated_at.0)
    .bind(json)
    .execute(db)
    .await?;
    Ok(())
}

/// The region's newest `limit` summaries as stored (JSON), newest first.
///
/// # Errors
/// The database fails.
pub async fn summaries(db: &AnyPool, region_id: i32, limit: u32) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT summary FROM region_summaries WHERE region_id = $1 ORDER BY aggregated_at DESC LIMIT $2")
        .bind(i64::from(region_id))
        .bind(i64::from(limit))
        .fetch_all(db)
        .await
}
