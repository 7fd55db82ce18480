//! Services as jobs: spec pushes, entering with a worker's context or temporary clients, the
//! guard's exit on every path, and bad spec payloads parked with their reason.

mod common;
#[path = "common/jobs.rs"]
mod jobs_support;
#[path = "common/probe.rs"]
mod probe;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::RedisServer;
use dual_mode::jobs::{
    Clients, Job, JobError, JobInfo, ParkReason, PushOptions, Queue, QueueConfig, Worker, WorkerConfig,
};
use dual_mode::{Context, DualMode};
use jobs_support::{queue, unique, wait_for};
use probe::{Probe, ProbeConfig, log};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

static RAN: Mutex<Vec<(u32, u32, String)>> = Mutex::new(Vec::new());

fn ran(n: u32) -> Vec<(u32, u32, String)> {
    RAN.lock().expect("lock").iter().filter(|r| r.0 == n).cloned().collect()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TaskCfg {
    probe: ProbeConfig,
    mode: Mode,
    n: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum Mode {
    Ok,
    Fail,
    Panic,
}

#[derive(DualMode)]
struct Task {
    cfg: TaskCfg,
    #[dual_mode(shared, config = cfg.probe)]
    probe: Probe,
}

impl Job for Task {
    type Output = ();

    async fn run(&self, job: &JobInfo) -> Result<(), JobError> {
        self.probe.use_it().map_err(JobError::failed)?;
        RAN.lock().expect("lock").push((self.cfg.n, job.attempt(), self.probe.name.clone()));
        match self.cfg.mode {
            Mode::Ok => Ok(()),
            Mode::Fail => Err(JobError::failed(format!("task {} failed", self.cfg.n))),
            Mode::Panic => panic!("task {} panicked", self.cfg.n),
        }
    }
}

fn spec(name: &str, mode: Mode, n: u32) -> TaskSpec {
    TaskSpec { cfg: TaskCfg { probe: ProbeConfig::named(name), mode, n } }
}

fn cfg() -> WorkerConfig {
    WorkerConfig::new()
        .lease(Duration::from_secs(2))
        .block(Duration::from_millis(200))
        .poll_delayed_every(Duration::from_millis(20))
        .backoff(Duration::from_millis(30), Duration::from_millis(100))
}

async fn run_until<F: AsyncFnMut() -> Option<()>>(worker: Worker, what: &str, f: F) {
    let (tx, rx) = oneshot::channel::<()>();
    let h = tokio::spawn(worker.run(async move {
        let _ = rx.await;
    }));
    wait_for(Duration::from_secs(10), what, f).await;
    let _ = tx.send(());
    h.await.expect("task").expect("worker");
}

async fn parked(q: &Queue) -> Option<()> {
    (q.stats().await.ok()?.parked == 1).then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_job_borrows_the_workers_context_and_leaves_it_open() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("svc-ctx"))).await;
    let warm = Probe::new("svc-warm");
    let ctx = Arc::new(Context::new().with(warm.clone()));
    let pushed = q.push_spec(&spec("svc-ctx-temp", Mode::Ok, 1), PushOptions::new()).await.expect("push spec");
    let stored = q.stats().await.expect("stats");
    assert_eq!(stored.length, 1);
    let worker = Worker::new(q.clone(), cfg()).service::<Task>(Clients::Context(ctx));
    run_until(worker, "the job", async || (!ran(1).is_empty()).then_some(())).await;
    assert_eq!(ran(1), vec![(1, 1, "svc-warm".to_owned())], "ran with the context's client");
    assert!(!warm.is_closed(), "a borrowed client is not closed");
    assert_eq!(warm.closes(), 0);
    assert!(log("svc-ctx-temp").is_empty(), "nothing opened");
    assert!(!pushed.job_id.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_clients_are_closed_on_every_path() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("svc-tmp")).max_attempts(2)).await;
    q.push_spec(&spec("svc-tmp-ok", Mode::Ok, 2), PushOptions::new()).await.expect("push");
    q.push_spec(&spec("svc-tmp-fail", Mode::Fail, 3), PushOptions::new()).await.expect("push");
    q.push_spec(&spec("svc-tmp-panic", Mode::Panic, 4), PushOptions::new().max_attempts(1)).await.expect("push");
    let worker = Worker::new(q.clone(), cfg()).service::<Task>(Clients::Temporary);
    run_until(worker, "all three done", async || {
        let s = q.stats().await.ok()?;
        (s.is_idle() && s.parked == 2 && ran(2).len() == 1).then_some(())
    })
    .await;
    assert_eq!(log("svc-tmp-ok"), vec!["open svc-tmp-ok", "close svc-tmp-ok"]);
    assert_eq!(ran(3).iter().map(|r| r.1).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(log("svc-tmp-fail"), ["open svc-tmp-fail", "close svc-tmp-fail"].repeat(2));
    assert_eq!(log("svc-tmp-panic"), vec!["open svc-tmp-panic", "close svc-tmp-panic"]);
    let parked = q.parked(10).await.expect("parked");
    let detail = |n: &str| parked.iter().find(|p| p.detail.contains(n)).map(|p| p.reason);
    assert_eq!(detail("task 3 failed"), Some(Some(ParkReason::Exhausted)));
    assert_eq!(detail("panicked: task 4 panicked"), Some(Some(ParkReason::Exhausted)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_spec_payload_is_parked_naming_the_spec_and_field() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("svc-bad"))).await;
    let bad = br#"{"cfg":{"probe":{},"mode":"Ok"}}"#.to_vec();
    q.push_raw("TaskSpec", 1, bad, PushOptions::new()).await.expect("push raw");
    let worker = Worker::new(q.clone(), cfg()).service::<Task>(Clients::Temporary);
    run_until(worker, "parked", async || parked(&q).await).await;
    let p = q.parked(1).await.expect("parked").remove(0);
    assert_eq!(p.reason, Some(ParkReason::MissingField));
    assert!(p.detail.contains("TaskSpec") && p.detail.contains("cfg"), "{}", p.detail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_from_a_newer_release_is_parked_not_misread() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("svc-newer"))).await;
    let payload = serde_json::to_vec(&spec("svc-newer", Mode::Ok, 40)).expect("json");
    q.push_raw("TaskSpec", 2, payload, PushOptions::new()).await.expect("push raw");
    let worker = Worker::new(q.clone(), cfg()).service::<Task>(Clients::Temporary);
    run_until(worker, "parked", async || parked(&q).await).await;
    let p = q.parked(1).await.expect("parked").remove(0);
    assert_eq!(p.reason, Some(ParkReason::NewerVersion));
    assert!(p.detail.contains("schema version 2") && p.detail.contains("up to 1"), "{}", p.detail);
    assert!(ran(40).is_empty(), "never ran");
    assert!(log("svc-newer").is_empty(), "nothing opened");
}

/// A service with a secret from the environment and a Redis connection from a spec field.
#[derive(DualMode)]
struct Needy {
    redis_url: String,
    #[dual_mode(secret, env = "DUAL_MODE_TEST_NEEDY_TOKEN_NEVER_SET")]
    token: dual_mode::Secret<String>,
    #[dual_mode(shared, config = redis_url)]
    redis: redis::aio::ConnectionManager,
}

impl Job for Needy {
    type Output = ();

    async fn run(&self, _job: &JobInfo) -> Result<(), JobError> {
        let _ = (self.token.expose(), &self.redis);
        Ok(())
    }
}

/// Warnings emitted while a future runs, as text: its message and fields.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        use std::fmt::Write as _;
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                let _ = write!(self.0, "{}={value:?} ", field.name());
            }
        }
        if *event.metadata().level() == tracing::Level::WARN {
            let mut text = Text(String::new());
            event.record(&mut text);
            self.0.lock().expect("lock").push(text.0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_parks_at_once_and_the_worker_warns_at_start() {
    use tracing::instrument::WithSubscriber as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("svc-secret")).max_attempts(5)).await;
    let pushed = q.push_spec(&NeedySpec { redis_url: redis.url.clone() }, PushOptions::new()).await.expect("push");
    let warnings = Warnings::default();
    let subscriber = tracing_subscriber::registry().with(warnings.clone());
    let worker = Worker::new(q.clone(), cfg()).service::<Needy>(Clients::Temporary);
    let (tx, rx) = oneshot::channel::<()>();
    let started = std::time::Instant::now();
    let h = tokio::spawn(
        worker
            .run(async move {
                let _ = rx.await;
            })
            .with_subscriber(subscriber),
    );
    wait_for(Duration::from_secs(10), "parked", async || parked(&q).await).await;
    let took = started.elapsed();
    let _ = tx.send(());
    h.await.expect("task").expect("worker");

    let p = q.parked(1).await.expect("parked").remove(0);
    assert_eq!(p.reason, Some(ParkReason::Misconfigured), "{}", p.detail);
    assert!(p.detail.contains("DUAL_MODE_TEST_NEEDY_TOKEN_NEVER_SET"), "{}", p.detail);
    let record = q.job(&pushed.job_id).await.expect("read").expect("a record");
    assert_eq!(record.attempt, 1, "no retry for a missing secret");
    assert!(took < Duration::from_secs(3), "parked at once, not after backoffs: {took:?}");

    let warned = warnings.0.lock().expect("lock").clone();
    let about: Vec<&String> = warned.iter().filter(|w| w.contains("DUAL_MODE_TEST_NEEDY_TOKEN_NEVER_SET")).collect();
    assert_eq!(about.len(), 1, "one warning for the one missing secret: {warned:?}");
    assert!(about[0].contains("`Needy.token`") && about[0].contains("is not set"), "{}", about[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_retried_and_a_lent_secret_is_not_warned_about() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("svc-refused")).max_attempts(2)).await;
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let spec = NeedySpec { redis_url: format!("redis://127.0.0.1:{port}/") };
    let pushed = q.push_spec(&spec, PushOptions::new()).await.expect("push");
    let token = dual_mode::Secret::new(String::from("lent"));
    let ctx = Arc::new(Context::new().with_keyed("DUAL_MODE_TEST_NEEDY_TOKEN_NEVER_SET", token));
    assert!(Needy::secret_sources(Some(&ctx)).is_empty(), "the context lends the secret");
    assert_eq!(Needy::secret_sources(None).len(), 1);
    let worker = Worker::new(q.clone(), cfg()).service::<Needy>(Clients::Context(ctx));
    run_until(worker, "parked", async || parked(&q).await).await;
    let p = q.parked(1).await.expect("parked").remove(0);
    assert_eq!(p.reason, Some(ParkReason::Exhausted), "a refused connection is retried: {}", p.detail);
    let record = q.job(&pushed.job_id).await.expect("read").expect("a record");
    assert_eq!(record.attempt, 2);
}
