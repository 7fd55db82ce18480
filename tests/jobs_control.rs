//! Job control on a real redis-server: records and results, waiting, cancellation, time
//! limits, unique jobs, entries no consumer holds, and consumers of crashed workers.

mod common;
#[path = "common/jobs.rs"]
mod jobs_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::RedisServer;
use dual_mode::DualMode;
use dual_mode::jobs::{
    CancelOutcome, CancelReason, Clients, Job, JobError, JobInfo, JobOutcome, JobState, ParkReason, PushOptions, Queue,
    QueueConfig, WaitError, Worker, WorkerConfig, handler_fn, typed,
};
use jobs_support::{con, queue, start, stop, unique, wait_for};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

fn fast_worker() -> WorkerConfig {
    jobs_support::fast_worker(4)
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .shutdown_deadline(Duration::from_secs(5))
}

async fn state(q: &Queue, id: &str) -> Option<JobState> {
    q.job(id).await.expect("read record").map(|r| r.state)
}

async fn wait_state(q: &Queue, id: &str, want: JobState) {
    jobs_support::wait_state(q, &[id], want, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_follows_each_job_and_wait_for_returns_its_result() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("records")).max_attempts(2)).await;
    let worker = Worker::new(q.clone(), fast_worker())
        .handle(
            "Double",
            typed(|n: u64, _job: JobInfo| async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(n * 2)
            }),
        )
        .handle(
            "Fail",
            typed(|n: u64, _job: JobInfo| async move { Err::<(), _>(JobError::failed(format!("boom {n}"))) }),
        );
    let consumer = worker.consumer().to_owned();

    // Before any worker runs: queued and delayed, with their times.
    let double = q.push("Double", 1, &21u64, PushOptions::new()).await.expect("push");
    let record = q.job(&double.job_id).await.expect("read").expect("a record");
    assert_eq!((record.state, record.attempt, record.type_name.as_str()), (JobState::Queued, 1, "Double"));
    assert!(record.started_at.is_none() && record.finished_at.is_none() && record.result.is_none());
    let later = q.push("Double", 1, &1u64, PushOptions::new().delay(Duration::from_millis(400))).await.expect("push");
    let record = q.job(&later.job_id).await.expect("read").expect("a record");
    assert_eq!(record.state, JobState::Delayed);
    assert!(record.due_at.is_some_and(|due| due > record.enqueued_at));
    let (queued, total) = q.jobs(JobState::Queued, 0, 10).await.expect("list");
    assert_eq!((queued.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), total), (vec![double.job_id.as_str()], 1));

    // A wait that ends before the job does says where the job is.
    match q.wait_for_output::<u64>(&double.job_id, Duration::from_millis(150)).await {
        Err(WaitError::Timeout { state: JobState::Queued, .. }) => {}
        other => panic!("expected a timeout while queued, got {other:?}"),
    }

    let w = start(worker);
    let t = Instant::now();
    let outcome = q.wait_for_output::<u64>(&double.job_id, Duration::from_secs(10)).await.expect("wait");
    assert_eq!(outcome, JobOutcome::Done(42));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let record = q.job(&double.job_id).await.expect("read").expect("a record");
    assert_eq!(record.state, JobState::Done);
    assert_eq!(record.worker.as_deref(), Some(consumer.as_str()));
    assert_eq!(record.result.as_deref(), Some(&b"42"[..]));
    let (started, finished) = (record.started_at.expect("started"), record.finished_at.expect("finished"));
    assert!(record.enqueued_at <= started && started <= finished);
    assert_eq!(
        q.wait_for_output::<u64>(&later.job_id, Duration::from_secs(10)).await.expect("wait"),
        JobOutcome::Done(2)
    );

    // With the worker running, a 50 ms job's wait is woken by its end, well before the re-read
    // a wait falls back to every second.
    let quick = q.push("Double", 1, &5u64, PushOptions::new()).await.expect("push");
    let t = Instant::now();
    assert_eq!(
        q.wait_for_output::<u64>(&quick.job_id, Duration::from_secs(10)).await.expect("wait"),
        JobOutcome::Done(10)
    );
    assert!(t.elapsed() < Duration::from_millis(800), "woken, not found by the 1 s re-read: {:?}", t.elapsed());

    // Failed attempts: retrying, then parked with the reason and the last error.
    let fail = q.push("Fail", 1, &7u64, PushOptions::new()).await.expect("push");
    match q.wait_for_output::<()>(&fail.job_id, Duration::from_secs(10)).await.expect("wait") {
        JobOutcome::Parked { reason: Some(ParkReason::Exhausted), error } => {
            assert!(error.contains("boom 7") && error.contains("attempt 2/2"), "{error}");
        }
        other => panic!("expected parked, got {other:?}"),
    }
    let record = q.job(&fail.job_id).await.expect("read").expect("a record");
    assert_eq!((record.state, record.attempt, record.park_reason), (JobState::Parked, 2, Some(ParkReason::Exhausted)));
    let (done, total_done) = q.jobs(JobState::Done, 0, 10).await.expect("list");
    assert_eq!((done.len(), total_done), (3, 3));
    assert_eq!(q.jobs(JobState::Parked, 0, 10).await.expect("list").1, 1);
    assert_eq!(q.jobs(JobState::Running, 0, 10).await.expect("list").1, 0);

    // The result type is checked on the way back; an unknown id is an answer.
    assert!(matches!(
        q.wait_for_output::<String>(&double.job_id, Duration::from_secs(1)).await,
        Err(WaitError::Result { .. })
    ));
    assert!(matches!(
        q.wait_for_output::<u64>("no-such-job", Duration::from_secs(1)).await,
        Err(WaitError::Unknown { .. })
    ));
    stop(w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_ended_jobs_expire_after_their_ttl() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("ttl")).record_ttl(Duration::from_millis(300))).await;
    let w =
        start(Worker::new(q.clone(), fast_worker()).handle("Unit", typed(|(): (), _job: JobInfo| async { Ok(()) })));
    let pushed = q.push("Unit", 1, &(), PushOptions::new()).await.expect("push");
    wait_state(&q, &pushed.job_id, JobState::Done).await;
    wait_for(Duration::from_secs(5), "the record to expire", async || {
        state(&q, &pushed.job_id).await.is_none().then_some(())
    })
    .await;
    stop(w).await;
    // A worker's sweep forgets the expired job in the set of ended jobs.
    let config = fast_worker().sweep_every(Duration::from_millis(100));
    let w = start(Worker::new(q.clone(), config).handle("Unit", typed(|(): (), _job: JobInfo| async { Ok(()) })));
    let second = q.push("Unit", 1, &(), PushOptions::new()).await.expect("push");
    wait_state(&q, &second.job_id, JobState::Done).await;
    let listed = wait_for(Duration::from_secs(5), "the expired job forgotten", async || {
        let (done, total) = q.jobs(JobState::Done, 0, 10).await.ok()?;
        (total == 1).then_some(done)
    })
    .await;
    assert_eq!(listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [second.job_id.as_str()]);
    stop(w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_queued_or_delayed_job_never_runs() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("cancel-queued"))).await;
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let worker = Worker::new(q.clone(), fast_worker()).handle(
        "Count",
        typed(move |_n: u32, _job: JobInfo| {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }),
    );
    let queued = q.push("Count", 1, &1u32, PushOptions::new()).await.expect("push");
    let delayed = q.push("Count", 1, &2u32, PushOptions::new().delay(Duration::from_millis(300))).await.expect("push");
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

    let w = start(worker);
    wait_state(&q, &kept.job_id, JobState::Done).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // past the delayed job's due time
    assert_eq!(runs.load(Ordering::SeqCst), 1, "only the job not cancelled ran");
    assert_eq!(q.cancel(&kept.job_id).await.expect("cancel"), CancelOutcome::AlreadyEnded(JobState::Done));
    assert_eq!(state(&q, &queued.job_id).await, Some(JobState::Cancelled));
    assert_eq!(state(&q, &delayed.job_id).await, Some(JobState::Cancelled));
    stop(w).await;
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct HoldCfg {
    redis_url: String,
    /// Whether the job stops when told (else it is aborted after the grace).
    cooperative: bool,
}

/// A job that holds a temporary Redis connection for a long time.
#[derive(DualMode)]
struct Hold {
    cfg: HoldCfg,
    #[dual_mode(shared, config = cfg.redis_url)]
    redis: redis::aio::MultiplexedConnection,
}

impl Job for Hold {
    type Output = u32;
    const TIMEOUT: Option<Duration> = Some(Duration::from_millis(600));

    async fn run(&self, job: &JobInfo) -> Result<u32, JobError> {
        let mut con = self.redis.clone();
        let _: () = redis::cmd("PING").query_async(&mut con).await.map_err(JobError::failed)?;
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

/// The server's connection count, once it settles at `want` (temporary clients close a moment
/// after their drop).
async fn settles_at(redis: &RedisServer, want: usize) -> usize {
    common::eventually(want, async || redis.client_count().await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_running_job_stops_and_its_clients_close() {
    let redis = RedisServer::start();
    // No time limit from the push: the service's 600 ms would end the job first.
    let q = queue(&redis.url, QueueConfig::new(unique("cancel-running"))).await;
    let w = start(Worker::new(q.clone(), fast_worker()).service::<Hold>(Clients::Temporary));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = redis.client_count().await;
    for cooperative in [true, false] {
        let spec = HoldSpec { cfg: HoldCfg { redis_url: redis.url.clone(), cooperative } };
        let options = PushOptions::new().timeout(Duration::from_secs(60));
        let pushed = q.push_spec(&spec, options).await.expect("push");
        wait_state(&q, &pushed.job_id, JobState::Running).await;
        assert_eq!(settles_at(&redis, baseline + 1).await, baseline + 1, "the job holds its temporary connection");
        let t = Instant::now();
        assert_eq!(q.cancel(&pushed.job_id).await.expect("cancel"), CancelOutcome::Requested);
        wait_state(&q, &pushed.job_id, JobState::Cancelled).await;
        let took = t.elapsed();
        // Told within a renewal (200 ms); a job that ignores it is aborted after the grace (300 ms).
        if cooperative {
            assert!(took < Duration::from_millis(1500), "cooperative stop took {took:?}");
        } else {
            assert!(took >= Duration::from_millis(300), "aborted before the grace: {took:?}");
        }
        assert_eq!(settles_at(&redis, baseline).await, baseline, "the temporary connection is closed");
        let record = q.job(&pushed.job_id).await.expect("read").expect("record");
        assert!(record.cancel_requested && record.finished_at.is_some());
        assert_eq!(q.stats().await.expect("stats").pending, 0, "the entry is acknowledged");
    }
    let report = stop(w).await;
    assert_eq!((report.counts.cancelled, report.counts.succeeded), (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_job_is_retried_then_parked_and_its_clients_close() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("timeout")).max_attempts(2)).await;
    let w = start(Worker::new(q.clone(), fast_worker()).service::<Hold>(Clients::Temporary));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = redis.client_count().await;
    let spec = HoldSpec { cfg: HoldCfg { redis_url: redis.url.clone(), cooperative: false } };
    // The service's own limit: 600 ms.
    let by_service = q.push_spec(&spec, PushOptions::new()).await.expect("push");
    // A push's limit wins over the service's.
    let by_push = q.push_spec(&spec, PushOptions::new().timeout(Duration::from_millis(200))).await.expect("push");
    for (pushed, limit) in [(&by_service, "600ms"), (&by_push, "200ms")] {
        match q.wait_for::<Hold>(&pushed.job_id, Duration::from_secs(10)).await.expect("wait") {
            JobOutcome::Parked { reason: Some(ParkReason::Exhausted), error } => {
                assert!(error.contains("timeout") && error.contains(limit) && error.contains("attempt 2/2"), "{error}");
            }
            other => panic!("expected parked by timeouts, got {other:?}"),
        }
    }
    assert_eq!(settles_at(&redis, baseline + 1).await, baseline + 1, "every temporary connection is closed");
    let report = stop(w).await;
    assert_eq!((report.counts.timed_out, report.counts.retried, report.counts.parked), (4, 2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_key_admits_one_job_until_it_ends() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("unique"))).await;
    let options = || PushOptions::new().unique("region:10000002", Duration::from_secs(60));
    let concurrent = (0..200).map(|i| {
        let q = q.clone();
        async move { q.push("Unit", 1, &i, options()).await.expect("push") }
    });
    let pushed = futures_join_all(concurrent).await;
    let first: Vec<_> = pushed.iter().filter(|p| !p.duplicate).collect();
    assert_eq!(first.len(), 1, "exactly one push added a job");
    assert!(pushed.iter().all(|p| p.job_id == first[0].job_id), "the duplicates name the job that holds the key");
    assert_eq!(q.stats().await.expect("stats").length, 1);
    // A delayed push with the key is a duplicate too; by payload, the same bytes are one job.
    assert!(q.push("Unit", 1, &0, options().delay(Duration::from_secs(1))).await.expect("push").duplicate);
    let by_payload = || PushOptions::new().unique_by_payload(Duration::from_secs(60));
    let same = q.push("Unit", 1, &"same", by_payload()).await.expect("push");
    let same_again = q.push("Unit", 1, &"same", by_payload()).await.expect("push");
    let other = q.push("Unit", 1, &"other", by_payload()).await.expect("push");
    assert!(!same.duplicate && same_again.duplicate && !other.duplicate && same_again.job_id == same.job_id);

    // The key is released when its job ends: a push then adds a new job.
    let w = start(Worker::new(q.clone(), fast_worker()).handle("Unit", handler_fn(|_job: JobInfo| async { Ok(()) })));
    wait_state(&q, &first[0].job_id, JobState::Done).await;
    let again = q.push("Unit", 1, &0, options()).await.expect("push");
    assert!(!again.duplicate && again.job_id != first[0].job_id);
    wait_state(&q, &again.job_id, JobState::Done).await;
    // A cancelled job releases its key too.
    let held = q.push("Unit", 1, &0, options().delay(Duration::from_secs(30))).await.expect("push");
    assert!(!held.duplicate);
    assert_eq!(q.cancel(&held.job_id).await.expect("cancel"), CancelOutcome::Removed);
    assert!(!q.push("Unit", 1, &0, options()).await.expect("push").duplicate);
    stop(w).await;
}

/// Runs futures concurrently on the runtime, in order of their results.
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_no_consumer_holds_are_swept_back_and_crashed_consumers_pruned() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("orphans"))).await;
    q.ensure_group().await.expect("group");
    let stream = q.keys().stream.clone();
    let group = q.config().group.clone();
    let mut c = con(&redis.url).await;
    let ids: Vec<String> = futures_join_all((0..4u32).map(|i| {
        let q = q.clone();
        async move { q.push("Unit", 1, &i, PushOptions::new()).await.expect("push").job_id }
    }))
    .await;
    // An operator's mistakes: a consumer reads two entries and is deleted with them pending
    // (they are now below the last delivered id and pending for no one); another reads one and
    // its process dies; a third never read anything and is gone.
    for (consumer, count) in [("operator-tool", 2), ("dead-worker", 1), ("idle-worker", 0)] {
        let _: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count.max(1))
            .arg("STREAMS")
            .arg(&stream)
            .arg(if count == 0 { "0" } else { ">" })
            .query_async(&mut c)
            .await
            .expect("read as the operator");
    }
    let _: i64 = redis::cmd("XGROUP")
        .arg("DELCONSUMER")
        .arg(&stream)
        .arg(&group)
        .arg("operator-tool")
        .query_async(&mut c)
        .await
        .expect("delconsumer");

    let config = fast_worker()
        .lease(Duration::from_millis(300))
        .renew_every(Duration::from_millis(100))
        .claim_every(Duration::from_millis(150))
        .sweep_every(Duration::from_millis(200));
    let w = start(Worker::new(q.clone(), config).handle("Unit", typed(|_n: u32, _job: JobInfo| async { Ok(()) })));
    for id in &ids {
        wait_state(&q, id, JobState::Done).await;
    }
    // Dead consumers are removed once they hold nothing and have been idle for a while.
    let live = wait_for(Duration::from_secs(10), "dead consumers removed", async || {
        let consumers: Vec<redis::Value> =
            redis::cmd("XINFO").arg("CONSUMERS").arg(&stream).arg(&group).query_async(&mut c).await.ok()?;
        (consumers.len() == 1).then_some(consumers.len())
    })
    .await;
    assert_eq!(live, 1);
    let report = stop(w).await;
    assert_eq!(report.counts.orphans_requeued, 2, "the two entries of the deleted consumer");
    assert_eq!(report.counts.succeeded, 4);
    assert!(report.counts.consumers_pruned >= 2, "{:?}", report.counts);
    let stats = q.stats().await.expect("stats");
    assert!(stats.is_idle(), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_tells_its_running_jobs() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("told"))).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_entry_that_kept_part_of_its_fields_says_so_and_is_not_re_driven() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("truncated"))).await;
    let mut c = con(&redis.url).await;
    let mut add = redis::cmd("XADD");
    add.arg(&q.keys().stream).arg("*");
    for i in 0..1500 {
        add.arg(format!("f{i}")).arg(i);
    }
    let _: String = add.query_async(&mut c).await.expect("xadd");
    let w = start(Worker::new(q.clone(), fast_worker()));
    let parked = wait_for(Duration::from_secs(10), "the entry parked", async || q.parked(10).await.ok()?.pop()).await;
    stop(w).await;
    assert_eq!(parked.reason, Some(ParkReason::MalformedEntry));
    assert_eq!((parked.fields.len(), parked.truncated_from), (1000, Some(1500)));
    assert!(parked.detail.contains("only the first 1000 of its 1500 fields"), "{}", parked.detail);
    match q.redrive(&parked.parked_id).await {
        Err(dual_mode::jobs::QueueError::Truncated { fields: 1500, .. }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(q.stats().await.expect("stats").parked, 1, "the entry stays parked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_reaches_a_running_job_within_a_second_whatever_the_lease() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("cancel-fast"))).await;
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
    wait_state(&q, &pushed.job_id, JobState::Running).await;
    let t = Instant::now();
    assert_eq!(q.cancel(&pushed.job_id).await.expect("cancel"), CancelOutcome::Requested);
    wait_state(&q, &pushed.job_id, JobState::Cancelled).await;
    // Without renewals of at least one a second it would wait for the 10 s renewal.
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    stop(w).await;
}
