//! Services as jobs: spec pushes, entering with a worker's context or temporary clients, the
//! guard's exit on every path, and bad spec payloads parked with their reason.

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
