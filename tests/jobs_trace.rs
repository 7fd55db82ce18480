//! Trace context across the queue: a job pushed with a `traceparent` (given, or taken from the
//! producer's current OpenTelemetry span) runs in a span that continues it, in this process and
//! in another one.

mod common;
#[path = "common/jobs.rs"]
mod jobs_support;

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::RedisServer;
use dual_mode::jobs::{
    JobError, JobInfo, JobOutcome, PushOptions, QueueConfig, TraceParent, Worker, WorkerConfig, handler_fn,
};
use jobs_support::{RoleProcess, queue, start, stop, unique, wait_for};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

/// Every `traceparent` recorded on a span named `job` in this process.
static RECORDED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A layer that keeps what `job` spans record as their `traceparent` field.
struct Capture;

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
    fn on_record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>, ctx: Context<'_, S>) {
        struct Visit(Option<String>);
        impl tracing::field::Visit for Visit {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "traceparent" {
                    self.0 = Some(value.to_owned());
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        if ctx.span(id).is_some_and(|s| s.name() == "job") {
            let mut visit = Visit(None);
            values.record(&mut visit);
            if let Some(tp) = visit.0 {
                RECORDED.lock().expect("lock").push(tp);
            }
        }
    }
}

/// The spans this process ended, kept in memory by an OpenTelemetry SDK behind the
/// `tracing-opentelemetry` layer; installed once per process.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("jobs_trace"));
        let subscriber = tracing_subscriber::registry().with(Capture).with(otel);
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test process");
        exporter
    })
}

/// The ended `job` spans of trace `trace_id`.
fn job_spans(trace_id: &str) -> Vec<SpanData> {
    let spans = exporter().get_finished_spans().expect("finished spans");
    spans.into_iter().filter(|s| s.name == "job" && s.span_context.trace_id().to_string() == trace_id).collect()
}

/// What a job saw of its trace: the traceparent it was pushed with, and the trace id of the
/// span it runs in.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Seen {
    traceparent: Option<String>,
    trace_id: String,
}

fn seen(job: &JobInfo) -> Seen {
    let cx = tracing::Span::current().context();
    Seen {
        traceparent: job.traceparent().map(ToString::to_string),
        trace_id: cx.span().span_context().trace_id().to_string(),
    }
}

fn worker(q: dual_mode::jobs::Queue) -> Worker {
    let config = WorkerConfig::new().block(Duration::from_millis(100)).lease(Duration::from_secs(2));
    Worker::new(q, config).handle("traced", handler_fn(|job: JobInfo| async move { Ok::<_, JobError>(seen(&job)) }))
}

const GIVEN: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_pushed_with_a_traceparent_runs_in_a_span_that_continues_it() {
    exporter();
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("trace"))).await;
    let tp: TraceParent = GIVEN.parse().expect("valid");
    let pushed = q.push("traced", 1, &(), PushOptions::new().traceparent(tp.clone())).await.expect("push");
    let w = start(worker(q.clone()));
    let outcome = q.wait_for_output::<Seen>(&pushed.job_id, Duration::from_secs(10)).await.expect("ends");
    let JobOutcome::Done(seen) = outcome else { panic!("{outcome:?}") };
    assert_eq!(seen, Seen { traceparent: Some(GIVEN.to_owned()), trace_id: tp.trace_id().to_owned() });
    stop(w).await;

    // The span recorded the traceparent as a field, and was exported as the given span's child.
    assert!(RECORDED.lock().expect("lock").iter().any(|r| r == GIVEN));
    let span = wait_for(Duration::from_secs(5), "the job's span", async || job_spans(tp.trace_id()).pop()).await;
    assert_eq!(span.parent_span_id.to_string(), tp.parent_id());
    assert!(span.parent_span_is_remote);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_inside_a_span_carries_its_context_to_the_job() {
    exporter();
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("trace-auto"))).await;
    let request = tracing::info_span!("request");
    let (trace_id, span_id) = {
        let cx = request.context();
        let sc = cx.span().span_context().clone();
        (sc.trace_id().to_string(), sc.span_id().to_string())
    };
    let pushed = async { q.push("traced", 1, &(), PushOptions::new()).await.expect("push") }.instrument(request).await;
    let w = start(worker(q.clone()));
    let outcome = q.wait_for_output::<Seen>(&pushed.job_id, Duration::from_secs(10)).await.expect("ends");
    let JobOutcome::Done(seen) = outcome else { panic!("{outcome:?}") };
    stop(w).await;
    assert_eq!(seen.trace_id, trace_id);
    let tp: TraceParent = seen.traceparent.expect("the push took the span's context").parse().expect("valid");
    assert_eq!((tp.trace_id(), tp.parent_id()), (trace_id.as_str(), span_id.as_str()));
    let span = wait_for(Duration::from_secs(5), "the job's span", async || job_spans(&trace_id).pop()).await;
    assert_eq!(span.parent_span_id.to_string(), span_id);
}

/// The worker process of [`a_job_run_by_another_process_continues_the_producers_trace`]: runs
/// one job, then stops. Does nothing unless `DM_TRACE_ROLE` is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role() {
    if std::env::var_os("DM_TRACE_ROLE").is_none() {
        return;
    }
    exporter();
    let url = std::env::var("DM_REDIS_URL").expect("DM_REDIS_URL");
    let q = queue(&url, QueueConfig::new(std::env::var("DM_QUEUE").expect("DM_QUEUE"))).await;
    let stats = q.clone();
    let report = worker(q)
        .run(async move {
            // Until the one job is done (at most 20 s).
            for _ in 0..400 {
                if stats.stats().await.is_ok_and(|s| s.is_idle()) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("worker runs");
    assert_eq!(report.counts.succeeded, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_run_by_another_process_continues_the_producers_trace() {
    exporter();
    let redis = RedisServer::start();
    let name = unique("trace-process");
    let q = queue(&redis.url, QueueConfig::new(name.as_str())).await;
    let request = tracing::info_span!("request");
    let trace_id = request.context().span().span_context().trace_id().to_string();
    let pushed = async { q.push("traced", 1, &(), PushOptions::new()).await.expect("push") }.instrument(request).await;
    let envs = [("DM_TRACE_ROLE", "worker".to_owned()), ("DM_REDIS_URL", redis.url.clone()), ("DM_QUEUE", name)];
    let mut worker = RoleProcess::spawn("role", &envs);
    let outcome = q.wait_for_output::<Seen>(&pushed.job_id, Duration::from_secs(30)).await.expect("ends");
    let JobOutcome::Done(seen) = outcome else { panic!("{outcome:?}") };
    assert_eq!(seen.trace_id, trace_id, "the other process's job span is in the producer's trace");
    assert!(worker.wait_exit(Duration::from_secs(20)), "the worker process ran one job and stopped");
}
