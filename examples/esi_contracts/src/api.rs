//! API mode: an axum server whose state holds the shared clients.
//!
//! | route | answer |
//! |---|---|
//! | `GET /regions/{id}/summary` | the stored summary; computed now (with the shared clients) and stored when there is none, or with `?refresh=true` |
//! | `POST /regions/{id}/aggregate` | `202` with the id of the enqueued job |
//! | `GET /jobs/{id}` | the job's status record: `queued`, `running`, `done` or `parked` |
//! | `GET /healthz` | `200` when Redis answers, `503` otherwise |
//!
//! Every error is JSON, `{"error": "..."}`: bad input is a `400`, an unknown region or job a
//! `404`, an ESI or Redis failure a `502`/`503`. Nothing answers `500`.

use std::future::Future;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRef, Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, serve};
use dual_mode::Secret;
use dual_mode::jobs::Queue;
use redis::aio::ConnectionManager;
use serde_json::json;
use tokio::net::TcpListener;

use crate::aggregate::{AggregateError, ContractAggregationService, aggregation_spec, stored_summary};
use crate::esi::EsiError;
use crate::jobs::{Secrets, enqueue, get_status};
use crate::settings::{EsiToken, RedisUrl, Settings};

/// The app state: settings, the shared clients, the queue, the secrets.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The settings every service gets.
    pub settings: Settings,
    /// The shared HTTP client.
    pub http: reqwest::Client,
    /// The shared Redis connection.
    pub redis: ConnectionManager,
    /// The aggregation queue.
    pub queue: Queue,
    /// The secrets.
    pub secrets: Secrets,
}

impl AppState {
    /// The state, with an HTTP client built from the settings and a Redis connection opened
    /// on the secret URL.
    ///
    /// # Errors
    /// Redis is unreachable, or the HTTP client cannot be built.
    pub async fn connect(settings: Settings, secrets: Secrets, queue: Queue) -> Result<Self, crate::jobs::BoxError> {
        let http = <reqwest::Client as dual_mode::Resource>::open(&settings.http).await?;
        let redis = <ConnectionManager as dual_mode::Resource>::open(secrets.redis_url.expose()).await?;
        Ok(Self { settings, http, redis, queue, secrets })
    }
}

impl FromRef<AppState> for reqwest::Client {
    fn from_ref(state: &AppState) -> Self {
        state.http.clone()
    }
}

impl FromRef<AppState> for ConnectionManager {
    fn from_ref(state: &AppState) -> Self {
        state.redis.clone()
    }
}

impl FromRef<AppState> for Secret<EsiToken> {
    fn from_ref(state: &AppState) -> Self {
        state.secrets.token.clone()
    }
}

impl FromRef<AppState> for Secret<RedisUrl> {
    fn from_ref(state: &AppState) -> Self {
        state.secrets.redis_url.clone()
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
        let message = e.to_string();
        match e {
            AggregateError::Esi(EsiError::NotFound { .. }) => Self::new(StatusCode::NOT_FOUND, message),
            AggregateError::Esi(EsiError::ErrorLimited { reset_secs, .. }) => {
                Self { retry_after: Some(reset_secs.max(1)), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message) }
            }
            AggregateError::Esi(_) => Self::new(StatusCode::BAD_GATEWAY, message),
            AggregateError::Store(_) | AggregateError::Corrupt(_) | AggregateError::Clients(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
            }
        }
    }
}

/// A region id from the path: a positive 32-bit integer.
fn region_id(path: Result<Path<String>, PathRejection>) -> Result<i32, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    match raw.parse::<i32>() {
        Ok(id) if id > 0 && raw.bytes().all(|b| b.is_ascii_digit()) => Ok(id),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("region id must be a positive integer such as 10000002, not {raw:?}"),
        )),
    }
}

/// The router over `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/regions/{id}/summary", get(summary))
        .route("/regions/{id}/aggregate", post(aggregate))
        .route("/jobs/{id}", get(job))
        .route("/healthz", get(healthz))
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
    if !refresh && let Some(stored) = stored_summary(&state.redis, region_id).await? {
        return Ok(Json(stored).into_response());
    }
    // API mode: the service takes the shared clients from the state; no guard, nothing opened.
    let service = ContractAggregationService::from_state(aggregation_spec(region_id, &state.settings), &state);
    let stored = service.aggregate().await?;
    Ok(Json(stored).into_response())
}

async fn aggregate(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let region_id = region_id(path)?;
    let job_id = enqueue(&state.queue, &state.redis, &state.settings, region_id)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("could not enqueue: {e}")))?;
    let body =
        json!({ "job_id": job_id, "region_id": region_id, "state": "queued", "status": format!("/jobs/{job_id}") });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

async fn job(State(state): State<AppState>, path: Result<Path<String>, PathRejection>) -> Result<Response, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("not a job id: {id:?}")));
    }
    let status = get_status(&state.redis, &id)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("status store failed: {e}")))?;
    match status {
        Some(status) => Ok(Json(status).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no job {id}"))),
    }
}

async fn healthz(State(state): State<AppState>) -> Response {
    let ping: Result<String, _> = redis::cmd("PING").query_async(&mut state.redis.clone()).await;
    match ping {
        Ok(_) => Json(json!({ "status": "ok" })).into_response(),
        Err(e) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("redis: {e}")).into_response(),
    }
}
