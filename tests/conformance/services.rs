//! Services as jobs: spec pushes, entering with a worker's context or temporary clients, the
//! guard's exit on every path, bad spec payloads parked with their reason, and services whose
//! secret or connection is missing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dual_mode::jobs::{
    Clients, Job, JobError, JobInfo, ParkReason, PushOptions, Queue, QueueConfig, Worker, WorkerConfig,
};
use dual_mode::{Context, DualMode};
use serde::{Deserialize, Serialize};

use crate::harness::{Store, parked_count, start, stop, unique, wait_for};
use crate::probe::{Probe, ProbeConfig, log};

cases! {
    a_service_job_borrows_the_workers_context_and_leaves_it_open,
    temporary_clients_are_closed_on_every_path,
    a_bad_spec_payload_is_parked_naming_the_spec_and_field,
    a_job_from_a_newer_release_is_parked_not_misread,
    a_missing_secret_parks_at_once_and_the_worker_warns_at_start,
    a_refused_connection_is_retried_and_a_lent_secret_is_not_warned_about,
}

/// The runs of every task: its tag, attempt, and the name of the probe it used.
static RAN: Mutex<Vec<(String, u32, String)>> = Mutex::new(Vec::new());

/// The runs of the task tagged `tag`: attempt and probe name.
fn ran(tag: &str) -> Vec<(u32, String)> {
    RAN.lock().expect("lock").iter().filter(|r| r.0 == tag).map(|r| (r.1, r.2.clone())).collect()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TaskCfg {
    probe: ProbeConfig,
    mode: Mode,
    tag: String,
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
        RAN.lock().expect("lock").push((self.cfg.tag.clone(), job.attempt(), self.probe.name.clone()));
        match self.cfg.mode {
            Mode::Ok => Ok(()),
            Mode::Fail => Err(JobError::failed(format!("task {} failed", self.cfg.tag))),
            Mode::Panic => panic!("task {} panicked", self.cfg.tag),
        }
    }
}

/// A task of its own: its probe's name is its tag, which no other tag starts with.
fn spec(mode: Mode) -> TaskSpec {
    let tag = format!("{}/", unique("svc"));
    TaskSpec { cfg: TaskCfg { probe: ProbeConfig::named(&tag), mode, tag } }
}

fn cfg() -> WorkerConfig {
    WorkerConfig::new()
        .lease(Duration::from_secs(2))
        .block(Duration::from_millis(200))
        .poll_delayed_every(Duration::from_millis(20))
        .backoff(Duration::from_millis(30), Duration::from_millis(100))
}

async fn parked_one(q: &Queue) -> Option<()> {
    (parked_count(q).await? == 1).then_some(())
}

async fn a_service_job_borrows_the_workers_context_and_leaves_it_open(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("svc-ctx"))).await;
    let warm_name = format!("{}/", unique("svc-warm"));
    let warm = Probe::new(&warm_name);
    let ctx = Arc::new(Context::new().with(warm.clone()));
    let task = spec(Mode::Ok);
    let tag = task.cfg.tag.clone();
    let pushed = q.push_spec(&task, PushOptions::new()).await.expect("push spec");
    assert!(!pushed.job_id.is_empty());
    assert_eq!(q.stats().await.expect("stats").length, 1);
    let w = start(Worker::new(q.clone(), cfg()).service::<Task>(Clients::Context(ctx)));
    wait_for(Duration::from_secs(10), "the job", async || (!ran(&tag).is_empty()).then_some(())).await;
    stop(w).await;
    assert_eq!(ran(&tag), vec![(1, warm_name)], "ran with the context's client");
    assert!(!warm.is_closed(), "a borrowed client is not closed");
    assert_eq!(warm.closes(), 0);
    assert!(log(&tag).is_empty(), "nothing opened");
}

async fn temporary_clients_are_closed_on_every_path(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("svc-tmp")).max_attempts(2)).await;
    let (ok, fail, panic) = (spec(Mode::Ok), spec(Mode::Fail), spec(Mode::Panic));
    q.push_spec(&ok, PushOptions::new()).await.expect("push");
    q.push_spec(&fail, PushOptions::new()).await.expect("push");
    q.push_spec(&panic, PushOptions::new().max_attempts(1)).await.expect("push");
    let (ok, fail, panic) = (ok.cfg.tag, fail.cfg.tag, panic.cfg.tag);
    let w = start(Worker::new(q.clone(), cfg()).service::<Task>(Clients::Temporary));
    wait_for(Duration::from_secs(10), "all three done", async || {
        let s = q.stats().await.ok()?;
        (s.is_idle() && s.parked == 2 && ran(&ok).len() == 1).then_some(())
    })
    .await;
    stop(w).await;
    let open_close = |tag: &str| vec![format!("open {tag}"), format!("close {tag}")];
    assert_eq!(log(&ok), open_close(&ok));
    assert_eq!(ran(&fail).iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(log(&fail), [open_close(&fail), open_close(&fail)].concat());
    assert_eq!(log(&panic), open_close(&panic));
    let parked = q.parked(10).await.expect("parked");
    let reason = |detail: &str| parked.iter().find(|p| p.detail.contains(detail)).map(|p| p.reason);
    assert_eq!(reason(&format!("task {fail} failed")), Some(Some(ParkReason::Exhausted)));
    assert_eq!(reason(&format!("panicked: task {panic} panicked")), Some(Some(ParkReason::Exhausted)));
}

async fn a_bad_spec_payload_is_parked_naming_the_spec_and_field(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("svc-bad"))).await;
    let bad = br#"{"cfg":{"probe":{},"mode":"Ok"}}"#.to_vec();
    q.push_raw("TaskSpec", 1, bad, PushOptions::new()).await.expect("push raw");
    let w = start(Worker::new(q.clone(), cfg()).service::<Task>(Clients::Temporary));
    wait_for(Duration::from_secs(10), "parked", async || parked_one(&q).await).await;
    stop(w).await;
    let p = q.parked(1).await.expect("parked").remove(0);
    assert_eq!(p.reason, Some(ParkReason::MissingField));
    assert!(p.detail.contains("TaskSpec") && p.detail.contains("cfg"), "{}", p.detail);
}

async fn a_job_from_a_newer_release_is_parked_not_misread(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("svc-newer"))).await;
    let task = spec(Mode::Ok);
    let tag = task.cfg.tag.clone();
    let payload = serde_json::to_vec(&task).expect("json");
    q.push_raw("TaskSpec", 2, payload, PushOptions::new()).await.expect("push raw");
    let w = start(Worker::new(q.clone(), cfg()).service::<Task>(Clients::Temporary));
    wait_for(Duration::from_secs(10), "parked", async || parked_one(&q).await).await;
    stop(w).await;
    let p = q.parked(1).await.expect("parked").remove(0);
    assert_eq!(p.reason, Some(ParkReason::NewerVersion));
    assert!(p.detail.contains("schema version 2") && p.detail.contains("up to 1"), "{}", p.detail);
    assert!(ran(&tag).is_empty(), "never ran");
    assert!(log(&tag).is_empty(), "nothing opened");
}

/// A service with a secret from the environment and a Redis connection from a spec field.
#[derive(DualMode)]
struct Needy {
    redis_url: String,
    #[dual_mode(secret, env = "DUAL_MODE_TEST_NEEDY_TOKEN_NEVER_SET")]
    token: dual_mode::Secret<String>,
    #[dual_mode(shared, config = redis_url)]
    redis: ::redis::aio::ConnectionManager,
}

impl Job for Needy {
    type Output = ();

    async fn run(&self, _job: &JobInfo) -> Result<(), JobError> {
        let _ = (self.token.expose(), &self.redis);
        Ok(())
    }
}

/// A Redis URL that nothing answers: a loopback port bound, then released.
fn refused_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    format!("redis://127.0.0.1:{port}/")
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

async fn a_missing_secret_parks_at_once_and_the_worker_warns_at_start(store: &Store) {
    use tracing::instrument::WithSubscriber as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    let q = store.queue(QueueConfig::new(unique("svc-secret")).max_attempts(5)).await;
    let pushed = q.push_spec(&NeedySpec { redis_url: refused_url() }, PushOptions::new()).await.expect("push");
    let warnings = Warnings::default();
    let subscriber = tracing_subscriber::registry().with(warnings.clone());
    let worker = Worker::new(q.clone(), cfg()).service::<Needy>(Clients::Temporary);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let started = std::time::Instant::now();
    let h = tokio::spawn(
        worker
            .run(async move {
                let _ = rx.await;
            })
            .with_subscriber(subscriber),
    );
    wait_for(Duration::from_secs(10), "parked", async || parked_one(&q).await).await;
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

async fn a_refused_connection_is_retried_and_a_lent_secret_is_not_warned_about(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("svc-refused")).max_attempts(2)).await;
    let pushed = q.push_spec(&NeedySpec { redis_url: refused_url() }, PushOptions::new()).await.expect("push");
    let token = dual_mode::Secret::new(String::from("lent"));
    let ctx = Arc::new(Context::new().with_keyed("DUAL_MODE_TEST_NEEDY_TOKEN_NEVER_SET", token));
    assert!(Needy::secret_sources(Some(&ctx)).is_empty(), "the context lends the secret");
    assert_eq!(Needy::secret_sources(None).len(), 1);
    let w = start(Worker::new(q.clone(), cfg()).service::<Needy>(Clients::Context(ctx)));
    wait_for(Duration::from_secs(20), "parked", async || parked_one(&q).await).await;
    stop(w).await;
    let p = q.parked(1).await.expect("parked").remove(0);
    assert_eq!(p.reason, Some(ParkReason::Exhausted), "a refused connection is retried: {}", p.detail);
    let record = q.job(&pushed.job_id).await.expect("read").expect("a record");
    assert_eq!(record.attempt, 2);
}
