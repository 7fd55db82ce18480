//! API mode: an axum server whose state holds the shared clients.
//!
//! | route | answer |
//! |---|---|
//! | `GET /regions/{id}/summary` | the newest stored summary; computed now (with the shared clients) and stored when there is none, or with `?refresh=true` (at most once a minute per region) |
//! | `GET /regions/{id}/history` | the region's summaries over time, newest first: `{"region_id", "summaries": [...]}`, at most `?limit=N` (default 20, at most 500) |
//! | `POST /regions/{id}/aggregate` | `202` with the id of the enqueued job; while an aggregation of the region is queued, delayed or running, that job's id with `"duplicate": true`; a `traceparent` header is carried to the job, whose span continues the trace |
//! | `GET /jobs/{id}` | the job's record ([`JobView`]): state, attempt, times, worker, error, park reason, and the summary once done |
//! | `DELETE /jobs/{id}` | cancels the job: `"removed"` (it never runs), `"requested"` (it is running and stops), or `"already_ended"` with its state |
//! | `GET /healthz` | `200` when the database answers, `503` otherwise |
//! | `GET /metrics` | the job layer's and the guards' metrics in Prometheus text format ([`crate::metrics`]) |
//! | `/admin/jobs` | the job dashboard, behind its token ([`admin`]), when the state has one |
//!
//! Every error is JSON, `{"error": "..."}`: bad input is a `400`, an unknown region or job a
//! `404`, an ESI or database failure a `502`/`503`. Nothing answers `500`.
//!
//! The API protects the deployment's ESI budget from its callers:
//!
//! - only known-space region ids (10000001 to 10999999) reach ESI; a region ESI does not know
//!   is remembered for an hour ([`MISSING_TTL_SECS`]) and answered `404` without asking again,
//!   so callers cannot spend the shared error limit;
//! - a request never waits out a pause: when ESI's limits, a `5xx` or a turning cache stop a
//!   computation, the stored summary is served marked `"stale": true`, or without one a `503`
//!   with `Retry-After`;
//! - one computation per region at a time (a lock in the database), and a `?refresh=true` within
//!   [`REFRESH_EVERY_SECS`] of the last computation serves the stored summary.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRef, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, serve};
use dual_mode::Secret;
use dual_mode::jobs::{CancelOutcome, Queue, QueueError};
use serde_json::json;
use tokio::net::TcpListener;

use crate::aggregate::{AggregateError, ContractAggregationService, StoredSummary, aggregation_spec, history};
use crate::esi::{EsiError, ceil_secs};
use crate::jobs::{JobView, Secrets, enqueue};
use crate::settings::{DatabaseUrl, EsiToken, Settings};
use crate::store::{self, SetMark};
use crate::timestamp::Timestamp;
use crate::{admin, error_chain};

/// The app state: settings, the shared clients, the queue, the secrets.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The settings every service gets.
    pub settings: Settings,
    /// The shared HTTP client.
    pub http: reqwest::Client,
    /// The shared database pool.
    pub db: sqlx::AnyPool,
    /// The aggregation queue.
    pub queue: Queue,
    /// The secrets.
    pub secrets: Secrets,
    /// The job dashboard's token: with one, the dashboard is served under
    /// [`admin::MOUNT`] behind it; without, not at all.
    pub admin_token: Option<Secret<String>>,
}

impl AppState {
    /// The state, with an HTTP client built from the settings and a database pool of
    /// [`API_POOL_SIZE`] connections opened on the secret URL (unless the URL names a size),
    /// whose tables are created where missing.
    ///
    /// # Errors
    /// The database is unreachable, or the HTTP client cannot be built.
    pub async fn connect(settings: Settings, secrets: Secrets, queue: Queue) -> Result<Self, crate::jobs::BoxError> {
        let http = <reqwest::Client as dual_mode::Resource>::open(&settings.http).await?;
        let url = store::with_pool_size(secrets.database_url.expose(), API_POOL_SIZE);
        let db = <sqlx::AnyPool as dual_mode::Resource>::open(&url).await?;
        store::migrate(&db).await?;
        Ok(Self { settings, http, db, queue, secrets, admin_token: None })
    }
}

impl FromRef<AppState> for reqwest::Client {
    fn from_ref(state: &AppState) -> Self {
        state.http.clone()
    }
}

impl FromRef<AppState> for sqlx::AnyPool {
    fn from_ref(state: &AppState) -> Self {
        state.db.clone()
    }
}

impl FromRef<AppState> for Secret<EsiToken> {
    fn from_ref(state: &AppState) -> Self {
        state.secrets.token.clone()
    }
}

impl FromRef<AppState> for Secret<DatabaseUrl> {
    fn from_ref(state: &AppState) -> Self {
        state.secrets.database_url.clone()
    }
}

/// An error answer: a status and a JSON `{"error": "..."}` body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), retry_after: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<AggregateError> for ApiError {
    fn from(e: AggregateError) -> Self {
        let message = error_chain(&e);
        match e {
            AggregateError::Esi(EsiError::NotFound { .. }) => Self::new(StatusCode::NOT_FOUND, message),
            AggregateError::Esi(esi) if esi.retry_after().is_some() => Self {
                retry_after: esi.retry_after().map(|d| ceil_secs(d).max(1)),
                ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
            },
            AggregateError::Esi(EsiError::Inconsistent { .. }) => {
                Self { retry_after: Some(1), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message) }
            }
            AggregateError::Esi(_) => Self::new(StatusCode::BAD_GATEWAY, message),
            AggregateError::Store(_)
            | AggregateError::Corrupt(_)
            | AggregateError::Clients(_)
            | AggregateError::Stopped(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, message),
        }
    }
}

/// The region ids the API passes on to ESI: known space.
pub const PLAUSIBLE_REGIONS: std::ops::RangeInclusive<i32> = 10_000_001..=10_999_999;

/// How long a region ESI answered `404` for is answered `404` without asking ESI.
pub const MISSING_TTL_SECS: u64 = 60 * 60;

/// A `?refresh=true` recomputes a summary at most this often.
pub const REFRESH_EVERY_SECS: i64 = 60;

/// How long one computation of a region holds its lock (it is released when done).
const COMPUTE_LOCK: Duration = Duration::from_secs(60);

/// The connections of the API's database pool.
pub const API_POOL_SIZE: u32 = 8;

/// How many summaries `GET /regions/{id}/history` answers by default, and at most.
pub const HISTORY_LIMIT: (u32, u32) = (20, 500);

/// The mark remembering that ESI does not know a region.
#[must_use]
pub fn missing_key(region_id: i32) -> String {
    format!("esi:region-missing:{region_id}")
}

/// The answer for a region ESI does not know.
fn unknown_region(region_id: i32) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("ESI does not know region {region_id}"))
}

/// The mark of a region's computation lock.
fn lock_key(region_id: i32) -> String {
    format!("esi:summary-lock:{region_id}")
}

/// A region id from the path: digits naming a known-space region.
fn region_id(path: Result<Path<String>, PathRejection>) -> Result<i32, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    match raw.parse::<i32>() {
        Ok(id) if PLAUSIBLE_REGIONS.contains(&id) && raw.bytes().all(|b| b.is_ascii_digit()) => Ok(id),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "region id must be a known-space region id, {} to {} (The Forge is 10000002), not {raw:?}",
                PLAUSIBLE_REGIONS.start(),
                PLAUSIBLE_REGIONS.end()
            ),
        )),
    }
}

/// The router over `state`, with the job dashboard when the state has its token.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    if let Some(token) = &state.admin_token {
        router = router.nest(admin::MOUNT, admin::router(state.queue.clone(), token));
    }
    router
        .route("/regions/{id}/summary", get(summary))
        .route("/regions/{id}/history", get(region_history))
        .route("/regions/{id}/aggregate", post(aggregate))
        .route("/jobs/{id}", get(job).delete(cancel))
        .route("/healthz", get(healthz))
        .route("/metrics", get(crate::metrics::render))
        .fallback(async || ApiError::new(StatusCode::NOT_FOUND, "no such route"))
        .method_not_allowed_fallback(async || ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves.
///
/// # Errors
/// The listener fails.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

async fn summary(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let region_id = region_id(path)?;
    let refresh = match query.as_deref().unwrap_or("") {
        "" | "refresh=false" | "refresh=0" => false,
        "refresh" | "refresh=true" | "refresh=1" => true,
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("unknown query {other:?}: the only parameter is refresh=true"),
            ));
        }
    };
    let store_failed = |e: sqlx::Error| ApiError::from(AggregateError::Store(e));
    if store::mark(&state.db, &missing_key(region_id)).await.map_err(store_failed)?.is_some() {
        return Err(unknown_region(region_id));
    }
    // A summary that no longer decodes is computed again.
    let stored = crate::aggregate::stored_summary(&state.db, region_id).await.or_else(|e| match e {
        AggregateError::Corrupt(_) => Ok(None),
        e => Err(ApiError::from(e)),
    })?;
    let recent = stored.as_ref().is_some_and(|s| Timestamp::now().0 - s.aggregated_at.0 < REFRESH_EVERY_SECS);
    if let Some(stored) = &stored
        && (!refresh || recent)
    {
        return Ok(Json(stored).into_response());
    }
    // One computation per region at a time; the others get what is stored.
    match compute(&state, region_id).await.map_err(store_failed)? {
        Computed::Done(Ok(fresh)) => Ok(Json(fresh).into_response()),
        Computed::Unknown => Err(unknown_region(region_id)),
        Computed::Busy => match stored {
            Some(stored) => Ok(Json(stored).into_response()),
            None => Err(ApiError {
                retry_after: Some(1),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "this region's summary is being computed")
            }),
        },
        Computed::Done(Err(e)) => match stored {
            Some(stored) => {
                let mut body = serde_json::to_value(&stored).unwrap_or_default();
                body["stale"] = json!(true);
                body["stale_because"] = json!(error_chain(&e));
                Ok(Json(body).into_response())
            }
            None => Err(e.into()),
        },
    }
}

/// What [`compute`] did.
enum Computed {
    /// Another request holds the region's lock.
    Busy,
    /// ESI does not know the region (now remembered).
    Unknown,
    /// The computation's outcome.
    Done(Result<StoredSummary, AggregateError>),
}

/// Computes and stores the region's summary under its lock, in a task of its own (a caller
/// that goes away does not leave the lock held). A region ESI does not know is remembered
/// before the lock is released.
async fn compute(state: &AppState, region_id: i32) -> Result<Computed, sqlx::Error> {
    if !store::set_mark(&state.db, &lock_key(region_id), "1", COMPUTE_LOCK, SetMark::IfAbsent).await? {
        return Ok(Computed::Busy);
    }
    let state = state.clone();
    let task = tokio::spawn(async move {
        let db = &state.db;
        // Another request may have learnt that ESI does not know the region since the caller
        // read the store.
        let computed = if store::mark(db, &missing_key(region_id)).await?.is_some() {
            Computed::Unknown
        } else {
            // API mode: the service takes the shared clients from the state; no guard, nothing
            // opened. It never waits out a pause: a limit answers at once.
            let settings = Settings { max_backoff_secs: 0, ..state.settings.clone() };
            let service = ContractAggregationService::from_state(aggregation_spec(region_id, &settings), &state);
            match service.aggregate().await {
                Err(AggregateError::Esi(EsiError::NotFound { .. })) => {
                    let ttl = Duration::from_secs(MISSING_TTL_SECS);
                    store::set_mark(db, &missing_key(region_id), "1", ttl, SetMark::Always).await?;
                    Computed::Unknown
                }
                result => Computed::Done(result),
            }
        };
        store::clear_mark(db, &lock_key(region_id)).await?;
        Ok(computed)
    });
    match task.await {
        Ok(computed) => computed,
        // A panic is the handler's, as it would be without the task; a cancelled task was
        // cancelled by the runtime shutting down.
        Err(join) => match join.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => Ok(Computed::Busy),
        },
    }
}

async fn aggregate(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let region_id = region_id(path)?;
    // The caller's trace continues in the job; a malformed header is ignored, as the W3C
    // Trace Context specification asks.
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let pushed = enqueue(&state.queue, &state.settings, region_id, traceparent).await.map_err(|e| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("could not enqueue: {}", error_chain(&e)))
    })?;
    let job_id = pushed.job_id;
    let body = json!({
        "job_id": job_id,
        "region_id": region_id,
        "duplicate": pushed.duplicate,
        "status": format!("/jobs/{job_id}"),
    });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// A job id from the path: 1 to 64 letters, digits, `-` or `_`.
fn job_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("not a job id: {id:?}")));
    }
    Ok(id)
}

fn no_job(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no job {id}"))
}

fn queue_failed(e: &QueueError) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("job store failed: {}", error_chain(e)))
}

async fn job(State(state): State<AppState>, path: Result<Path<String>, PathRejection>) -> Result<Response, ApiError> {
    let id = job_id(path)?;
    let record = state.queue.job(&id).await.map_err(|e| queue_failed(&e))?.ok_or_else(|| no_job(&id))?;
    Ok(Json(JobView::new(&record, state.queue.config().max_attempts)).into_response())
}

async fn cancel(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = job_id(path)?;
    let body = match state.queue.cancel(&id).await.map_err(|e| queue_failed(&e))? {
        CancelOutcome::Removed => json!({ "job_id": id, "cancel": "removed", "state": "cancelled" }),
        CancelOutcome::Requested => json!({ "job_id": id, "cancel": "requested" }),
        CancelOutcome::AlreadyEnded(ended) => {
            json!({ "job_id": id, "cancel": "already_ended", "state": ended.as_str() })
        }
        CancelOutcome::Unknown => return Err(no_job(&id)),
        // A newer job layer's answer: say what it is rather than guess.
        other => json!({ "job_id": id, "cancel": format!("{other:?}") }),
    };
    Ok(Json(body).into_response())
}

async fn healthz(State(state): State<AppState>) -> Response {
    match sqlx::query("SELECT 1").execute(&state.db).await {
        Ok(_) => Json(json!({ "status": "ok" })).into_response(),
        Err(e) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("database: {}", error_chain(&e))).into_response()
        }
    }
}

async fn region_history(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let region_id = region_id(path)?;
    let (default, max) = HISTORY_LIMIT;
    let limit = match query.as_deref().unwrap_or("") {
        "" => default,
        other => other
            .strip_prefix("limit=")
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query {other:?}: the only parameter is limit=N, 1 to {max}"),
                )
            })?,
    };
    let summaries = history(&state.db, region_id, limit).await?;
    Ok(Json(json!({ "region_id": region_id, "summaries": summaries })).into_response())
}
