//! `GET /metrics`: the job layer's and the guards' metrics (see `dual_mode::metrics`) in
//! Prometheus text format, rendered by `metrics-exporter-prometheus` inside the API's own
//! server (the exporter's HTTP listener is not built).
//!
//! The recorder is process-wide: [`install`] sets it once, before the first queue, worker or
//! guard registers its metrics, and every later call returns the same handle.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::api::AppState;

/// Histogram buckets of run and wait times, in seconds: an aggregation takes from
/// milliseconds (cached pages) to minutes (a large region from ESI).
const BUCKETS: &[f64] = &[0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0];

/// How often the exporter's histograms are folded in between scrapes, bounding their memory.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder for this process, once; `None` when another recorder was
/// installed first (then `/metrics` answers `503`). Inside a tokio runtime it also starts the
/// exporter's upkeep.
pub fn install() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), BUCKETS)
                .ok()?;
            let handle = match builder.install_recorder() {
                Ok(handle) => handle,
                Err(e) => {
                    tracing::warn!(error = %crate::error_chain(&e), "metrics recorder not installed: /metrics will answer 503");
                    return None;
                }
            };
            dual_mode::metrics::describe();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let upkeep = handle.clone();
                runtime.spawn(async move {
                    let mut tick = tokio::time::interval(UPKEEP_EVERY);
                    loop {
                        tick.tick().await;
                        upkeep.run_upkeep();
                    }
                });
            }
            Some(handle)
        })
        .as_ref()
}

/// `GET /metrics`: samples the queue's depth, then renders every metric.
pub async fn render(State(state): State<AppState>) -> Response {
    let Some(handle) = install() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "another metrics recorder is installed in this process\n")
            .into_response();
    };
    if let Err(e) = dual_mode::metrics::record_depth(&state.queue).await {
        // The counters are still worth serving; the depth gauges keep their last sample.
        tracing::warn!(error = %crate::error_chain(&e), "sampling the queue depth failed");
    }
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    ([(header::CONTENT_TYPE, content_type)], handle.render()).into_response()
}
