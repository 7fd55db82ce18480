//! Control of running jobs: cancellation, time limits and the clients a service's guard
//! closes, shutdown, and leases renewed for jobs longer than them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use dual_mode::DualMode;
use dual_mode::jobs::{
    CancelOutcome, CancelReason, Clients, Job, JobError, JobInfo, JobOutcome, JobState, ParkReason, PushOptions,
    QueueConfig, Worker, WorkerConfig, handler_fn, typed,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::harness::{Store, start, state, stop, unique, wait_for, wait_state};
use crate::probe::{Probe, ProbeConfig, log};

cases! {
    a_cancelled_queued_or_delayed_job_never_runs,
    a_cancelled_running_job_stops_and_its_clients_close,
    a_timed_out_job_is_retried_then_parked_and_its_clients_close,
    a_stopping_worker_tells_its_running_jobs,
    a_cancellation_reaches_a_running_job_within_a_second_whatever_the_lease,
    shutdown_waits_for_running_jobs_up_to_the_deadline,
    a_job_longer_than_the_lease_is_not_run_twice_while_its_worker_lives,
}

fn fast_worker() -> WorkerConfig {
    crate::jobs_support::fast_worker(4)
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .shutdown_deadline(Duration::from_secs(5))
}

/// A probe name of its own (no other name starts with it).
fn probe_name(prefix: &str) -> String {
    format!("{}/", unique(prefix))
}

async fn a_cancelled_queued_or_delayed_job_never_runs(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("cancel-queued"))).await;
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let worker = Worker::new(q.clone(), fast_worker())
        .handle(
            "Count",
            typed(move |_n: u32, _job: JobInfo| {
                let r = r.clone();
                async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            }),
        )
        .handle("Marker", typed(|(): (), _job: JobInfo| async { Ok(()) }));
    let queued = q.push("Count", 1, &1u32, PushOptions::new()).await.expect("push");
    let delayed_due = SystemTime::now() + Duration::from_millis(300);
    let delayed = q.push("Count", 1, &2u32, PushOptions::new().not_before(delayed_due)).await.expect("push");
    let kept = q.push("Count", 1, &3u32, PushOptions::new()).await.expect("push");
    assert_eq!(q.cancel(&queued.job_id).await.expect("cancel"), CancelOutcome::Removed);
    assert_eq!(q.cancel(&delayed.job_id).await.expect("cancel"), CancelOutcome::Removed);
    assert_eq!(q.cancel(&queued.job_id).await.expect("cancel"), CancelOutcome::AlreadyEnded(JobState::Cancelled));
    assert_eq!(q.cancel("no-such-job").await.expect("cancel"), CancelOutcome::Unknown);
    assert_eq!(
        q.wait_for_output::<()>(&delayed.job_id, Duration::from_secs(1)).await.expect("wait"),
        JobOutcome::Cancelled
    );
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.length, stats.delayed), (1, 0), "only the kept job is left: {stats:?}");

    // A marker due after the cancelled delayed job: once it ran, that one would have too.
    let marker = q
        .push("Marker", 1, &(), PushOptions::new().not_before(delayed_due + Duration::from_millis(100)))
        .await
        .expect("push");
    let w = start(worker);
    wait_state(&q, &[&kept.job_id, &marker.job_id], JobState::Done).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "only the job not cancelled ran");
    assert_eq!(q.cancel(&kept.job_id).await.expect("cancel"), CancelOutcome::AlreadyEnded(JobState::Done));
    assert_eq!(state(&q, &queued.job_id).await, Some(JobState::Cancelled));
    assert_eq!(state(&q, &delayed.job_id).await, Some(JobState::Cancelled));
    assert_eq!(q.overview().await.expect("overview").cancelled, 2);
    stop(w).await;
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct HoldCfg {
    probe: ProbeConfig,
    /// Whether the job stops when told (else it is aborted after the grace).
    cooperative: bool,
}

/// A job that holds a client for a long time.
#[derive(DualMode)]
struct Hold {
    cfg: HoldCfg,
    #[dual_mode(shared, config = cfg.probe)]
    probe: Probe,
}

impl Job for Hold {
    type Output = u32;
    const TIMEOUT: Option<Duration> = Some(Duration::from_millis(600));

    async fn run(&self, job: &JobInfo) -> Result<u32, JobError> {
        self.probe.use_it().map_err(JobError::failed)?;
        if self.cfg.cooperative {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(60)) => Ok(1),
                reason = job.cancelled() => Err(JobError::failed(format!("stopped: {reason:?}"))),
            }
        } else {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(1)
        }
    }
}

fn hold(probe: &str, cooperative: bool) -> HoldSpec {
    HoldSpec { cfg: HoldCfg { probe: ProbeConfig::named(probe), cooperative } }
}

/// Waits for the open and close log of probe `name` to be `want`.
async fn log_is(name: &str, want: &[String]) {
    wait_for(Duration::from_secs(5), &format!("the log of {name} to be {want:?}"), async || {
        (log(name) == want).then_some(())
    })
    .await;
}

fn opened(name: &str) -> Vec<String> {
    vec![format!("open {name}")]
}

fn opened_and_closed(name: &str) -> Vec<String> {
    vec![format!("open {name}"), format!("close {name}")]
}

async fn a_cancelled_running_job_stops_and_its_clients_close(store: &Store) {
    // No time limit from the push: the service's 600 ms would end the job first.
    let q = store.queue(QueueConfig::new(unique("cancel-running"))).await;
    let w = start(Worker::new(q.clone(), fast_worker()).service::<Hold>(Clients::Temporary));
    for cooperative in [true, false] {
        let name = probe_name("hold");
        let options = PushOptions::new().timeout(Duration::from_secs(60));
        let pushed = q.push_spec(&hold(&name, cooperative), options).await.expect("push");
        wait_state(&q, &[&pushed.job_id], JobState::Running).await;
        log_is(&name, &opened(&name)).await;
        let t = Instant::now();
        assert_eq!(q.cancel(&pushed.job_id).await.expect("cancel"), CancelOutcome::Requested);
        wait_state(&q, &[&pushed.job_id], JobState::Cancelled).await;
        let took = t.elapsed();
        // Told within a renewal (200 ms); a job that ignores it is aborted after the grace (300 ms).
        if cooperative {
            assert!(took < Duration::from_millis(1500), "cooperative stop took {took:?}");
        } else {
            assert!(took >= Duration::from_millis(300), "aborted before the grace: {took:?}");
        }
        log_is(&name, &opened_and_closed(&name)).await;
        let record = q.job(&pushed.job_id).await.expect("read").expect("record");
        assert!(record.cancel_requested && record.finished_at.is_some());
        assert_eq!(q.stats().await.expect("stats").pending, 0, "the run is over");
    }
    let report = stop(w).await;
    assert_eq!((report.counts.cancelled, report.counts.succeeded), (2, 0));
}

async fn a_timed_out_job_is_retried_then_parked_and_its_clients_close(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("timeout")).max_attempts(2)).await;
    let w = start(Worker::new(q.clone(), fast_worker()).service::<Hold>(Clients::Temporary));
    let (service_probe, push_probe) = (probe_name("by-service"), probe_name("by-push"));
    // The service's own limit: 600 ms.
    let by_service = q.push_spec(&hold(&service_probe, false), PushOptions::new()).await.expect("push");
    // A push's limit wins over the service's.
    let by_push = q
        .push_spec(&hold(&push_probe, false), PushOptions::new().timeout(Duration::from_millis(200)))
        .await
        .expect("push");
    for (pushed, limit) in [(&by_service, "600ms"), (&by_push, "200ms")] {
        match q.wait_for::<Hold>(&pushed.job_id, Duration::from_secs(10)).await.expect("wait") {
            JobOutcome::Parked { reason: Some(ParkReason::Exhausted), error } => {
                assert!(error.contains("timeout") && error.contains(limit) && error.contains("attempt 2/2"), "{error}");
            }
            other => panic!("expected parked by timeouts, got {other:?}"),
        }
    }
    // Every attempt closed the client it opened.
    for name in [&service_probe, &push_probe] {
        log_is(name, &[opened_and_closed(name), opened_and_closed(name)].concat()).await;
    }
    let report = stop(w).await;
    assert_eq!((report.counts.timed_out, report.counts.retried, report.counts.parked), (4, 2, 2));
}

async fn a_stopping_worker_tells_its_running_jobs(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("told"))).await;
    let (seen_tx, seen_rx) = oneshot::channel::<Option<CancelReason>>();
    let seen = Arc::new(std::sync::Mutex::new(Some(seen_tx)));
    let worker = Worker::new(q.clone(), fast_worker()).handle(
        "Wait",
        handler_fn(move |job: JobInfo| {
            let seen = seen.clone();
            async move {
                let reason = job.cancelled().await;
                if let Some(tx) = seen.lock().expect("lock").take() {
                    let _ = tx.send(job.cancel_reason());
                }
                Err::<(), _>(JobError::failed(format!("stopped: {reason:?}")))
            }
        }),
    );
    let stats = worker.stats();
    let w = start(worker);
    let pushed = q.push("Wait", 1, &(), PushOptions::new()).await.expect("push");
    wait_for(Duration::from_secs(5), "the job started", async || (stats.snapshot().received == 1).then_some(())).await;
    let t = Instant::now();
    let report = stop(w).await;
    assert!(t.elapsed() < Duration::from_secs(2), "a job that stops when told does not hold the shutdown");
    assert_eq!(seen_rx.await.expect("told"), Some(CancelReason::Shutdown));
    assert_eq!((report.counts.handed_back, report.counts.retried), (1, 0), "handed back, no attempt burnt");
    let record = q.job(&pushed.job_id).await.expect("read").expect("record");
    assert_eq!((record.state, record.attempt), (JobState::Delayed, 1));
}

async fn a_cancellation_reaches_a_running_job_within_a_second_whatever_the_lease(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("cancel-fast"))).await;
    // The default 30 s lease, renewed every 10 s: a cancellation still arrives within a second.
    let config = WorkerConfig::new().block(Duration::from_millis(100)).shutdown_deadline(Duration::from_secs(2));
    assert_eq!(config.renew_every, Duration::from_secs(10));
    let w = start(Worker::new(q.clone(), config).handle(
        "Wait",
        handler_fn(|job: JobInfo| async move {
            let reason = job.cancelled().await;
            Err::<(), _>(JobError::failed(format!("stopped: {reason:?}")))
        }),
    ));
    let pushed = q.push("Wait", 1, &(), PushOptions::new()).await.expect("push");
    wait_state(&q, &[&pushed.job_id], JobState::Running).await;
    let t = Instant::now();
    assert_eq!(q.cancel(&pushed.job_id).await.expect("cancel"), CancelOutcome::Requested);
    wait_state(&q, &[&pushed.job_id], JobState::Cancelled).await;
    // Without renewals of at least one a second it would wait for the 10 s renewal.
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    stop(w).await;
}

async fn shutdown_waits_for_running_jobs_up_to_the_deadline(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("shutdown"))).await;
    let sleeper = || {
        handler_fn(|job: JobInfo| async move {
            let ms: u64 = job.decode().map_err(JobError::from)?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(())
        })
    };
    // A 600 ms job finishes within a 5 s deadline.
    let w = Worker::new(q.clone(), fast_worker()).handle("Sleep", sleeper());
    let stats = w.stats();
    let w = start(w);
    q.push("Sleep", 1, &600u64, PushOptions::new()).await.expect("push");
    wait_for(Duration::from_secs(5), "the job started", async || (stats.snapshot().received == 1).then_some(())).await;
    let report = stop(w).await;
    assert_eq!((report.counts.succeeded, report.abandoned), (1, 0));
    // A 5 s job that ignores the shutdown signal is handed back before a 400 ms deadline,
    // without counting an attempt: another worker runs it at once.
    let w =
        Worker::new(q.clone(), fast_worker().shutdown_deadline(Duration::from_millis(400))).handle("Sleep", sleeper());
    let stats = w.stats();
    let w = start(w);
    let pushed = q.push("Sleep", 1, &5000u64, PushOptions::new()).await.expect("push");
    wait_for(Duration::from_secs(5), "the job started", async || (stats.snapshot().received == 1).then_some(())).await;
    let t = Instant::now();
    let report = stop(w).await;
    assert!(t.elapsed() < Duration::from_secs(2), "shutdown took {:?}", t.elapsed());
    assert_eq!((report.counts.succeeded, report.counts.handed_back, report.abandoned), (0, 1, 0));
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.length + stats.delayed), (0, 1), "{stats:?}");
    let record = q.job(&pushed.job_id).await.expect("read").expect("a record");
    assert_eq!((record.state, record.attempt), (JobState::Delayed, 1), "{record:?}");
}

async fn a_job_longer_than_the_lease_is_not_run_twice_while_its_worker_lives(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("long"))).await;
    let runs = Arc::new(AtomicU32::new(0));
    let make = |runs: Arc<AtomicU32>| {
        handler_fn(move |job: JobInfo| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2500)).await;
                assert!(!job.lease().is_lost(), "the lease stays ours");
                Ok(())
            }
        })
    };
    // Two and a half leases of 1 s, renewed every third of one.
    let cfg = fast_worker().lease(Duration::from_secs(1));
    let w1 = Worker::new(q.clone(), cfg.clone()).handle("Long", make(runs.clone()));
    let w2 = Worker::new(q.clone(), cfg).handle("Long", make(runs.clone()));
    let (s1, s2) = (w1.stats(), w2.stats());
    let (w1, w2) = (start(w1), start(w2));
    q.push("Long", 1, &(), PushOptions::new()).await.expect("push");
    wait_for(Duration::from_secs(15), "the job done", async || {
        let s = q.stats().await.ok()?;
        (s.length == 0 && s.pending == 0 && s1.snapshot().succeeded + s2.snapshot().succeeded == 1).then_some(())
    })
    .await;
    let (r1, r2) = (stop(w1).await, stop(w2).await);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(r1.counts.lease_lost + r2.counts.lease_lost, 0);
    assert_eq!(r1.counts.received + r2.counts.received, 1);
}
