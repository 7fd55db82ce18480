//! Metrics of jobs and guards, read as Prometheus text from a real exporter: the counts match
//! what the test did.

mod common;
#[path = "common/jobs.rs"]
mod jobs_support;

use std::time::Duration;

use common::RedisServer;
use dual_mode::DualMode;
use dual_mode::jobs::{
    CancelOutcome, Clients, Job, JobError, JobInfo, JobOutcome, JobState, PushOptions, QueueConfig, Worker,
};
use dual_mode_test_support::prometheus_value as value;
use jobs_support::{fast_worker, queue, start, stop, unique, wait_state};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
enum Mode {
    Ok,
    Reject,
    /// Runs until cancelled, then stops.
    UntilCancelled,
    /// Sleeps, ignoring everything: stopped by its time limit.
    Sleep,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct StepCfg {
    redis_url: String,
    mode: Mode,
}

/// A job that opens a temporary Redis connection through its guard.
#[derive(DualMode)]
struct Step {
    cfg: StepCfg,
    #[dual_mode(shared, config = cfg.redis_url)]
    redis: redis::aio::MultiplexedConnection,
}

impl Job for Step {
    type Output = ();

    async fn run(&self, job: &JobInfo) -> Result<(), JobError> {
        let mut con = self.redis.clone();
        let _: () = redis::cmd("PING").query_async(&mut con).await.map_err(JobError::failed)?;
        match self.cfg.mode {
            Mode::Ok => Ok(()),
            Mode::Reject => Err(JobError::permanent("not for us")),
            Mode::UntilCancelled => {
                let reason = job.cancelled().await;
                Err(JobError::failed(format!("stopped: {reason:?}")))
            }
            Mode::Sleep => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            }
        }
    }
}

fn recorder() -> PrometheusHandle {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &[0.01, 0.1, 1.0, 10.0])
        .expect("buckets")
        .install_recorder()
        .expect("the only recorder of this test process");
    dual_mode::metrics::describe();
    handle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exported_counts_match_what_the_jobs_and_guards_did() {
    let prometheus = recorder();
    let redis = RedisServer::start();
    let name = unique("metrics");
    let q = queue(&redis.url, QueueConfig::new(name.as_str()).max_attempts(1)).await;
    let spec = |mode| StepSpec { cfg: StepCfg { redis_url: redis.url.clone(), mode } };
    let type_name = <StepSpec as dual_mode::Spec>::NAME;

    // 9 pushes: 4 that succeed, 2 payloads that do not decode, 1 rejected, 1 cancelled while it
    // runs, 1 stopped by its time limit (its only attempt: parked as exhausted).
    let mut done = Vec::new();
    for _ in 0..4 {
        done.push(q.push_spec(&spec(Mode::Ok), PushOptions::new()).await.expect("push").job_id);
    }
    let not_json = q.push_raw(type_name, 1, b"{not json".to_vec(), PushOptions::new()).await.expect("push");
    let wrong_shape = q.push_raw(type_name, 1, br#"{"cfg":1}"#.to_vec(), PushOptions::new()).await.expect("push");
    let rejected = q.push_spec(&spec(Mode::Reject), PushOptions::new()).await.expect("push");
    let cancelled = q.push_spec(&spec(Mode::UntilCancelled), PushOptions::new()).await.expect("push");
    let timed_out =
        q.push_spec(&spec(Mode::Sleep), PushOptions::new().timeout(Duration::from_millis(200))).await.expect("push");

    let stats = dual_mode::jobs::record_depth(&q).await.expect("depth");
    assert_eq!(stats.length, 9);
    let text = prometheus.render();
    let queue_depth = |text: &str, state| value(text, "dual_mode_jobs_depth", &[("queue", &name), ("state", state)]);
    assert_eq!(queue_depth(&text, "ready"), Some(9.0), "{text}");
    assert_eq!(queue_depth(&text, "parked"), Some(0.0));

    let w = start(Worker::new(q.clone(), fast_worker(4)).service::<Step>(Clients::Temporary));
    wait_state(&q, &[&cancelled.job_id], JobState::Running, Duration::from_secs(10)).await;
    assert_eq!(q.cancel(&cancelled.job_id).await.expect("cancel"), CancelOutcome::Requested);
    for id in done.iter().chain([&not_json.job_id, &wrong_shape.job_id, &rejected.job_id, &timed_out.job_id]) {
        q.wait_for::<Step>(id, Duration::from_secs(10)).await.expect("ends");
    }
    let outcome = q.wait_for::<Step>(&cancelled.job_id, Duration::from_secs(10)).await.expect("ends");
    assert!(matches!(outcome, JobOutcome::Cancelled), "{outcome:?}");
    let report = stop(w).await;
    assert_eq!((report.counts.succeeded, report.counts.parked, report.counts.cancelled), (4, 4, 1));

    dual_mode::jobs::record_depth(&q).await.expect("depth");
    // The timed-out job's guard was dropped inside the attempt: its close runs in a background
    // task, counted when it ran.
    let service = "Step";
    let resource = "redis::aio::MultiplexedConnection";
    let closed = &[("service", service), ("resource", resource)];
    let text = jobs_support::wait_for(Duration::from_secs(5), "the dropped guard's close", async || {
        let text = prometheus.render();
        (value(&text, "dual_mode_guard_clients_closed_total", closed) == Some(7.0)).then_some(text)
    })
    .await;

    let job = |metric: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![("queue", name.as_str()), ("type", type_name)];
        labels.extend_from_slice(extra);
        value(&text, metric, &labels)
    };
    assert_eq!(job("dual_mode_jobs_pushed_total", &[]), Some(9.0), "{text}");
    // Decoding is the handler's first step: payloads that do not decode started too.
    assert_eq!(job("dual_mode_jobs_started_total", &[]), Some(9.0));
    assert_eq!(job("dual_mode_jobs_ended_total", &[("outcome", "succeeded")]), Some(4.0));
    assert_eq!(job("dual_mode_jobs_ended_total", &[("outcome", "parked")]), Some(4.0));
    assert_eq!(job("dual_mode_jobs_ended_total", &[("outcome", "cancelled")]), Some(1.0));
    assert_eq!(job("dual_mode_jobs_ended_total", &[("outcome", "retried")]), None);
    for (reason, n) in [("not_json", 1.0), ("wrong_shape", 1.0), ("rejected", 1.0), ("exhausted", 1.0)] {
        assert_eq!(job("dual_mode_jobs_parked_total", &[("reason", reason)]), Some(n), "parked as {reason}");
    }
    assert_eq!(job("dual_mode_jobs_timed_out_total", &[]), Some(1.0));
    assert_eq!(job("dual_mode_jobs_run_seconds_count", &[]), Some(9.0));
    assert_eq!(job("dual_mode_jobs_wait_seconds_count", &[]), Some(9.0));
    // The time limit was 200 ms: that attempt is in no bucket at or below 0.1 s.
    assert!(job("dual_mode_jobs_run_seconds_bucket", &[("le", "0.1")]).expect("bucket") <= 8.0);

    for (state, n) in [("ready", 0.0), ("running", 0.0), ("delayed", 0.0), ("parked", 4.0)] {
        assert_eq!(queue_depth(&text, state), Some(n), "{state}");
    }

    // 7 jobs decoded and entered their guard, each opening one connection; 6 exited, the
    // timed-out one was dropped with its connection, which was closed all the same.
    let guard = |metric: &str| value(&text, metric, &[("service", service)]);
    assert_eq!(guard("dual_mode_guard_entered_total"), Some(7.0));
    assert_eq!(guard("dual_mode_guard_exited_total"), Some(6.0));
    assert_eq!(guard("dual_mode_guard_dropped_total"), Some(1.0));
    assert_eq!(guard("dual_mode_guard_enter_failed_total"), None);
    assert_eq!(value(&text, "dual_mode_guard_clients_opened_total", closed), Some(7.0));
    assert_eq!(value(&text, "dual_mode_guard_close_failures_total", closed), None);
    assert!(text.contains("# HELP dual_mode_jobs_started_total"), "described");
}
