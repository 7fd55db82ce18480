//! Records, results and waits; what is kept of ended jobs; delayed pushes; a large drain.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use dual_mode::jobs::{
    JobError, JobInfo, JobOutcome, JobState, Keep, ParkReason, PushOptions, Queue, QueueConfig, WaitError, Worker,
    WorkerConfig, handler_fn, typed,
};
use serde::{Deserialize, Serialize};

use crate::harness::{Store, start, state, stop, unique, wait_for, wait_state};

cases! {
    a_record_follows_each_job_and_wait_for_returns_its_result,
    records_of_ended_jobs_expire_after_their_ttl,
    a_wait_keeps_a_record_past_a_short_record_ttl,
    done_jobs_kept_not_at_all_reach_only_those_who_wait,
    each_end_state_keeps_its_newest_records,
    delayed_push_waits_for_its_time,
    thousands_of_jobs_pushed_without_workers_all_drain_once,
}

fn fast_worker() -> WorkerConfig {
    crate::jobs_support::fast_worker(4)
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .shutdown_deadline(Duration::from_secs(5))
}

async fn a_record_follows_each_job_and_wait_for_returns_its_result(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("records")).max_attempts(2)).await;
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
    let overview = q.overview().await.expect("overview");
    assert_eq!((overview.done, overview.cancelled, overview.stats.parked), (3, 0, 1), "{overview:?}");
    assert_eq!((overview.ready, overview.running, overview.paused_since), (0, 0, None), "{overview:?}");

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

async fn records_of_ended_jobs_expire_after_their_ttl(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("ttl")).record_ttl(Duration::from_millis(300))).await;
    let w =
        start(Worker::new(q.clone(), fast_worker()).handle("Unit", typed(|(): (), _job: JobInfo| async { Ok(()) })));
    let pushed = q.push("Unit", 1, &(), PushOptions::new()).await.expect("push");
    wait_state(&q, &[&pushed.job_id], JobState::Done).await;
    wait_for(Duration::from_secs(5), "the record to expire", async || {
        state(&q, &pushed.job_id).await.is_none().then_some(())
    })
    .await;
    stop(w).await;
    // A worker's sweep forgets the expired job in the list of ended jobs.
    let config = fast_worker().sweep_every(Duration::from_millis(100));
    let w = start(Worker::new(q.clone(), config).handle("Unit", typed(|(): (), _job: JobInfo| async { Ok(()) })));
    let second = q.push("Unit", 1, &(), PushOptions::new()).await.expect("push");
    wait_state(&q, &[&second.job_id], JobState::Done).await;
    let listed = wait_for(Duration::from_secs(5), "the expired job forgotten", async || {
        let (done, total) = q.jobs(JobState::Done, 0, 10).await.ok()?;
        (total == 1).then_some(done)
    })
    .await;
    assert_eq!(listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [second.job_id.as_str()]);
    stop(w).await;
}

async fn a_wait_keeps_a_record_past_a_short_record_ttl(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("waited")).record_ttl(Duration::from_millis(200))).await;
    let waited = q.push("Unit", 1, &(), PushOptions::new()).await.expect("push");
    let other = q.push("Unit", 1, &(), PushOptions::new()).await.expect("push");
    assert!(matches!(
        q.wait_for_output::<()>(&waited.job_id, Duration::from_millis(20)).await,
        Err(WaitError::Timeout { state: JobState::Queued, .. })
    ));
    let w =
        start(Worker::new(q.clone(), fast_worker()).handle("Unit", typed(|(): (), _job: JobInfo| async { Ok(()) })));
    wait_state(&q, &[&waited.job_id], JobState::Done).await;
    stop(w).await;
    wait_for(Duration::from_secs(5), "the other record to expire", async || {
        state(&q, &other.job_id).await.is_none().then_some(())
    })
    .await;
    assert_eq!(state(&q, &waited.job_id).await, Some(JobState::Done), "kept for keep_waited, 10 minutes");
}

/// Waits until nothing of `q` is ready, delayed or running.
async fn drained(q: &Queue) {
    wait_for(Duration::from_secs(10), "the queue drained", async || {
        let o = q.overview().await.ok()?;
        (o.ready == 0 && o.stats.pending == 0 && o.stats.delayed == 0).then_some(())
    })
    .await;
}

async fn done_jobs_kept_not_at_all_reach_only_those_who_wait(store: &Store) {
    let config = QueueConfig::new(unique("keep-none")).keep_done(Keep::none()).max_attempts(1);
    let q = store.queue(config).await;
    let waited = q.push("Square", 1, &7u64, PushOptions::new()).await.expect("push");
    let ignored = q.push("Square", 1, &8u64, PushOptions::new()).await.expect("push");
    let kept = q.push("Square", 1, &9u64, PushOptions::new().keep_for(Duration::from_secs(3600))).await.expect("push");
    let failed = q.push("Fail", 1, &(), PushOptions::new()).await.expect("push");
    // A wait that begins before the job ends marks its record to be kept.
    match q.wait_for_output::<u64>(&waited.job_id, Duration::from_millis(20)).await {
        Err(WaitError::Timeout { state: JobState::Queued, .. }) => {}
        other => panic!("expected a timeout while queued, got {other:?}"),
    }
    let w = start(
        Worker::new(q.clone(), fast_worker())
            .handle("Square", typed(|n: u64, _job: JobInfo| async move { Ok(n * n) }))
            .handle("Fail", typed(|(): (), _job: JobInfo| async { Err::<(), _>(JobError::permanent("no")) })),
    );
    drained(&q).await;
    stop(w).await;

    assert!(matches!(q.wait_for_output::<u64>(&waited.job_id, Duration::from_secs(1)).await, Ok(JobOutcome::Done(49))));
    assert_eq!(state(&q, &kept.job_id).await, Some(JobState::Done), "kept by its push");
    assert!(matches!(q.wait_for_output::<u64>(&kept.job_id, Duration::from_secs(1)).await, Ok(JobOutcome::Done(81))));
    assert_eq!(q.job(&ignored.job_id).await.expect("read"), None, "a done job no one waited for is not kept");
    match q.wait_for_output::<u64>(&ignored.job_id, Duration::from_secs(1)).await {
        Err(e @ WaitError::NotKept { .. }) => {
            let text = e.to_string();
            assert!(text.contains("not kept") && text.contains("done not kept, parked for 1d"), "{text}");
        }
        other => panic!("expected NotKept, got {other:?}"),
    }
    // Parked jobs are kept as before; listings and counts leave out what is not kept.
    assert_eq!(state(&q, &failed.job_id).await, Some(JobState::Parked));
    assert_eq!(q.jobs(JobState::Done, 0, 10).await.expect("list").1, 0, "done jobs are not listed");
    assert_eq!(q.overview().await.expect("overview").done, 0);
}

async fn each_end_state_keeps_its_newest_records(store: &Store) {
    let config = QueueConfig::new(unique("keep-newest"))
        .keep_done(Keep::newest(2))
        .keep_parked(Keep::newest(3).within(Duration::from_secs(3600)))
        .max_attempts(1);
    let q = store.queue(config).await;
    let mut done = Vec::new();
    for n in 0..6u64 {
        done.push(q.push("Unit", 1, &n, PushOptions::new()).await.expect("push").job_id);
    }
    let mut parked = Vec::new();
    for _ in 0..4 {
        parked.push(q.push("Fail", 1, &0u64, PushOptions::new()).await.expect("push").job_id);
    }
    let config = fast_worker().sweep_every(Duration::from_millis(100));
    let w = start(
        Worker::new(q.clone(), config)
            .handle("Unit", typed(|_: u64, _job: JobInfo| async { Ok(()) }))
            .handle("Fail", typed(|_: u64, _job: JobInfo| async { Err::<(), _>(JobError::permanent("no")) })),
    );
    drained(&q).await;
    // Postgres holds the count at its sweep; Redis and the in-process store at each end.
    for (state, ids, keep) in [(JobState::Done, &done, 2), (JobState::Parked, &parked, 3)] {
        let listed = wait_for(Duration::from_secs(10), "the newest records only", async || {
            let (listed, total) = q.jobs(state, 0, 10).await.ok()?;
            (total == keep).then_some(listed)
        })
        .await;
        assert_eq!(listed.len(), usize::try_from(keep).expect("small"));
        let mut with_record = 0;
        for id in ids {
            if let Some(record) = q.job(id).await.expect("read") {
                assert_eq!(record.state, state);
                assert!(listed.iter().any(|r| &r.id == id), "{id} has a record and is not listed");
                with_record += 1;
            }
        }
        assert_eq!(with_record, keep, "{state}: only the listed ones have records");
    }
    stop(w).await;
}

async fn delayed_push_waits_for_its_time(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("delay"))).await;
    let ran_at = Arc::new(Mutex::new(None));
    let r = ran_at.clone();
    let t0 = Instant::now();
    q.push("D", 1, &(), PushOptions::new().delay(Duration::from_millis(600))).await.expect("push");
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.length, stats.delayed), (0, 1));
    assert_eq!(q.promote_due().await.expect("promote"), 0, "not due yet");
    let w = start(Worker::new(q.clone(), fast_worker()).handle(
        "D",
        handler_fn(move |_job: JobInfo| {
            let r = r.clone();
            async move {
                *r.lock().expect("lock") = Some(Instant::now());
                Ok(())
            }
        }),
    ));
    let at = wait_for(Duration::from_secs(10), "the delayed job", async || *ran_at.lock().expect("lock")).await;
    stop(w).await;
    assert!(at - t0 >= Duration::from_millis(550), "ran after {:?}", at - t0);
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Numbered {
    n: u32,
}

/// More than one bulk round trip (1,000 entries) of ready jobs and more than one promote
/// batch (500 entries) of due delayed ones: each runs once on two workers.
async fn thousands_of_jobs_pushed_without_workers_all_drain_once(store: &Store) {
    const N: u32 = 4_000;
    const DELAYED: u32 = 1_200;
    let q = store.queue(QueueConfig::new(unique("drain"))).await;
    let payloads: Vec<Numbered> = (0..N).map(|n| Numbered { n }).collect();
    q.push_bulk("Numbered", 1, &payloads, PushOptions::new()).await.expect("bulk push");
    // Due delayed entries too: they must drain through the promotion in batches.
    let delayed: Vec<Numbered> = (N..N + DELAYED).map(|n| Numbered { n }).collect();
    let past = SystemTime::now() - Duration::from_secs(1);
    q.push_bulk("Numbered", 1, &delayed, PushOptions::new().not_before(past)).await.expect("delayed push");
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.length, stats.delayed), (u64::from(N), u64::from(DELAYED)));

    let seen = Arc::new(Mutex::new(HashSet::new()));
    let dups = Arc::new(AtomicU32::new(0));
    let make = |seen: Arc<Mutex<HashSet<u32>>>, dups: Arc<AtomicU32>| {
        typed(move |p: Numbered, _job: JobInfo| {
            let (seen, dups) = (seen.clone(), dups.clone());
            async move {
                if !seen.lock().expect("lock").insert(p.n) {
                    dups.fetch_add(1, Ordering::SeqCst);
                }
                Ok(())
            }
        })
    };
    let cfg = fast_worker().concurrency(64);
    let w1 = start(Worker::new(q.clone(), cfg.clone()).handle("Numbered", make(seen.clone(), dups.clone())));
    let w2 = start(Worker::new(q.clone(), cfg).handle("Numbered", make(seen.clone(), dups.clone())));
    let total = (N + DELAYED) as usize;
    wait_for(Duration::from_secs(60), "all jobs drained", async || {
        (seen.lock().expect("lock").len() == total).then_some(())
    })
    .await;
    wait_for(Duration::from_secs(10), "the queue idle", async || q.stats().await.ok()?.is_idle().then_some(())).await;
    let (r1, r2) = (stop(w1).await, stop(w2).await);
    assert_eq!(dups.load(Ordering::SeqCst), 0);
    assert_eq!(r1.counts.succeeded + r2.counts.succeeded, total as u64);
    assert_eq!(q.overview().await.expect("overview").done, total as u64);
}
