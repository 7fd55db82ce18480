//! `GET /metrics` on the API, a real `redis-server` and the stand-in: the counts in the
//! Prometheus text match what the test did through the API and a worker; a request's
//! `traceparent` travels with the job it enqueued.

use std::time::Duration;

use dual_mode::Spec as _;
use dual_mode::jobs::{JobOutcome, PushOptions};
use dual_mode_test_support::prometheus_value;
use esi_contracts::aggregate::{ContractAggregationService, ContractAggregationServiceSpec};
use esi_contracts::jobs;
use esi_contracts::settings::Settings;
use redis::AsyncCommands as _;

mod support;

use support::{Backing, get_json, http, stale_standin, start_api};

const DOMAIN: i32 = 10_000_043;
const FORGE: i32 = 10_000_002;
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_the_pushes_runs_parks_and_guards_of_the_api_and_its_worker() {
    esi_contracts::metrics::install().expect("the only recorder of this test process");
    let backing = Backing::redis().await;
    let esi_server = stale_standin().await;
    let api = start_api(&backing, Settings::for_esi(esi_server.base_url())).await;
    let http = http();
    let queue = api.state.queue.clone();

    // Through the API: two regions, and one of them again while it is queued (a duplicate:
    // no job added); the first request carries a trace context. Beside them, a payload that
    // is not JSON under the aggregation's type.
    let mut ids = Vec::new();
    for (region, traceparent) in [(DOMAIN, Some(TRACEPARENT)), (FORGE, None), (DOMAIN, None)] {
        let mut request = http.post(format!("{}/regions/{region}/aggregate", api.base));
        if let Some(tp) = traceparent {
            request = request.header("traceparent", tp);
        }
        let resp = request.send().await.expect("request");
        assert_eq!(resp.status().as_u16(), 202);
        let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.expect("body")).expect("JSON");
        ids.push(body["job_id"].as_str().expect("a job id").to_owned());
    }
    assert_eq!(ids[0], ids[2], "the second push of a region is a duplicate");
    // The request's trace context travels in the job's envelope (its `tp` field).
    let redis = backing.redis.as_ref().expect("Redis");
    let mut con = redis.client().get_multiplexed_async_connection().await.expect("connect");
    // (The API pushes to the high lane.)
    let high = queue.keys().lane_stream(dual_mode::jobs::Lane::High);
    let entries: redis::streams::StreamRangeReply = con.xrange_all(&high).await.expect("XRANGE");
    let tp_of = |id: &str| {
        let entry = entries.ids.iter().find(|e| e.get::<String>("id").as_deref() == Some(id))?;
        entry.get::<String>("tp")
    };
    assert_eq!((tp_of(&ids[0]).as_deref(), tp_of(&ids[1])), (Some(TRACEPARENT), None));
    let spec_name = ContractAggregationServiceSpec::NAME;
    let bad = queue.push_raw(spec_name, 1, b"{not json".to_vec(), PushOptions::new()).await.expect("push");

    let config = jobs::worker_config(2).block(Duration::from_millis(100));
    let worker = jobs::worker(queue.clone(), &api.state.settings, backing.secrets(), config).await.expect("worker");
    let running = worker.spawn();
    for id in [&ids[0], &ids[1]] {
        let outcome = queue.wait_for::<ContractAggregationService>(id, Duration::from_secs(30)).await.expect("ends");
        assert!(matches!(outcome, JobOutcome::Done(_)), "{outcome:?}");
        let (status, view) = get_json(&http, &format!("{}/jobs/{id}", api.base)).await;
        assert_eq!((status, view["state"].as_str()), (200, Some("done")), "{view}");
    }
    let outcome = queue.wait_for::<ContractAggregationService>(&bad.job_id, Duration::from_secs(30)).await;
    assert!(matches!(outcome, Ok(JobOutcome::Parked { .. })), "{outcome:?}");
    let report = running.stop().await.expect("worker");
    assert_eq!((report.counts.succeeded, report.counts.parked), (2, 1));

    let resp = http.get(format!("{}/metrics", api.base)).send().await.expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp.headers()["content-type"].to_str().expect("ascii").to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = resp.text().await.expect("text");
    let job = |metric: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![("queue", jobs::QUEUE), ("type", spec_name)];
        labels.extend_from_slice(extra);
        prometheus_value(&text, metric, &labels)
    };
    assert_eq!(job("dual_mode_jobs_pushed_total", &[]), Some(3.0), "{text}");
    assert_eq!(job("dual_mode_jobs_started_total", &[]), Some(3.0));
    assert_eq!(job("dual_mode_jobs_ended_total", &[("outcome", "succeeded")]), Some(2.0));
    assert_eq!(job("dual_mode_jobs_ended_total", &[("outcome", "parked")]), Some(1.0));
    assert_eq!(job("dual_mode_jobs_parked_total", &[("reason", "not_json")]), Some(1.0));
    assert_eq!(job("dual_mode_jobs_run_seconds_count", &[]), Some(3.0));
    assert_eq!(job("dual_mode_jobs_wait_seconds_count", &[]), Some(3.0));
    let depth = |state| prometheus_value(&text, "dual_mode_jobs_depth", &[("queue", jobs::QUEUE), ("state", state)]);
    assert_eq!((depth("ready"), depth("running"), depth("parked")), (Some(0.0), Some(0.0), Some(1.0)));
    // The worker's jobs borrow its context's clients: two guards entered and exited, nothing
    // opened (the nested client's guard is the outer one's).
    let guard = |metric: &str| prometheus_value(&text, metric, &[("service", "ContractAggregationService")]);
    assert_eq!(guard("dual_mode_guard_entered_total"), Some(2.0));
    assert_eq!(guard("dual_mode_guard_exited_total"), Some(2.0));
    assert_eq!(prometheus_value(&text, "dual_mode_guard_clients_opened_total", &[]), None);
    let _ = api.stop.send(true);
}
