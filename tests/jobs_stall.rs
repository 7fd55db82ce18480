//! Leases while Redis stalls: the test stops its redis-server (`SIGSTOP`) for longer than a
//! lease, journals every run of every job, and checks that no two runs of one job overlap in
//! time, that no run is started twice in one process, and that no delivery is left unrun.

mod common;
#[path = "common/jobs.rs"]
mod jobs_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::RedisServer;
use dual_mode::jobs::{JobInfo, JobState, PushOptions, Queue, QueueConfig, Worker, WorkerConfig, typed};
use jobs_support::{queue, start, stop, unique, wait_for};

/// One run of a job: which job, which worker, when it started and when it ended (returned or
/// was dropped).
#[derive(Debug, Clone)]
struct RunRecord {
    job: u32,
    /// For the failure message.
    #[allow(dead_code, reason = "read through Debug")]
    worker: String,
    start: Instant,
    end: Option<Instant>,
}

#[derive(Clone, Default)]
struct Journal(Arc<Mutex<Vec<RunRecord>>>);

/// Marks its run's end when dropped: on return and on abort alike.
struct Ends(Journal, usize);

impl Drop for Ends {
    fn drop(&mut self) {
        self.0.0.lock().expect("lock")[self.1].end = Some(Instant::now());
    }
}

impl Journal {
    fn begin(&self, job: u32, worker: &str) -> Ends {
        let mut runs = self.0.lock().expect("lock");
        runs.push(RunRecord { job, worker: worker.to_owned(), start: Instant::now(), end: None });
        Ends(self.clone(), runs.len() - 1)
    }

    fn runs(&self) -> Vec<RunRecord> {
        self.0.lock().expect("lock").clone()
    }

    /// Pairs of runs of one job that overlapped in time, by how long.
    fn overlaps(&self) -> Vec<(u32, Duration)> {
        let mut by_job: HashMap<u32, Vec<RunRecord>> = HashMap::new();
        for r in self.runs() {
            by_job.entry(r.job).or_default().push(r);
        }
        let mut out = Vec::new();
        for (job, runs) in by_job {
            for (i, a) in runs.iter().enumerate() {
                for b in &runs[i + 1..] {
                    let end_a = a.end.unwrap_or_else(Instant::now);
                    let end_b = b.end.unwrap_or_else(Instant::now);
                    let overlap = end_a.min(end_b).saturating_duration_since(a.start.max(b.start));
                    if !overlap.is_zero() {
                        out.push((job, overlap));
                    }
                }
            }
        }
        out
    }
}

fn config(lease: Duration) -> WorkerConfig {
    WorkerConfig::new()
        .concurrency(4)
        .lease(lease)
        .renew_every(lease / 4)
        .block(Duration::from_millis(100))
        .poll_delayed_every(Duration::from_millis(50))
}

fn worker(q: &Queue, lease: Duration, journal: &Journal, work: Duration) -> Worker {
    let w = Worker::new(q.clone(), config(lease));
    let (journal, me) = (journal.clone(), w.consumer().to_owned());
    w.handle(
        "Work",
        typed(move |n: u32, _job: JobInfo| {
            let (journal, me) = (journal.clone(), me.clone());
            async move {
                let _ends = journal.begin(n, &me);
                tokio::time::sleep(work).await;
                Ok(())
            }
        }),
    )
}

/// Stalls the server for `stall`, once `journal` shows `started` runs.
async fn stall_after(redis: &RedisServer, journal: &Journal, started: usize, stall: Duration) {
    wait_for(Duration::from_secs(10), "runs started", async || (journal.runs().len() >= started).then_some(())).await;
    assert!(redis.signal("STOP"), "this test needs its own redis-server (unset REDIS_URL)");
    tokio::time::sleep(stall).await;
    assert!(redis.signal("CONT"));
}

async fn all_done(q: &Queue, ids: &[String], within: Duration) {
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    jobs_support::wait_state(q, &ids, JobState::Done, within).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_never_runs_its_own_job_twice_through_a_stall() {
    let redis = RedisServer::start();
    let lease = Duration::from_secs(2);
    let q = queue(&redis.url, QueueConfig::new(unique("stall-one")).response_timeout(Duration::from_secs(3))).await;
    let journal = Journal::default();
    let w = start(worker(&q, lease, &journal, Duration::from_secs(4)));
    let id = q.push("Work", 1, &1u32, PushOptions::new()).await.expect("push").job_id;
    // A stall of 4 leases, longer than the response timeout: the run learns by its own clock
    // that its lease is gone and stops; the entry is run again once Redis is back.
    stall_after(&redis, &journal, 1, lease * 4).await;
    all_done(&q, &[id], Duration::from_secs(30)).await;
    let report = stop(w).await;
    let runs = journal.runs();
    assert!(journal.overlaps().is_empty(), "runs of one job overlapped: {runs:?}");
    assert!(runs.len() >= 2, "the stalled run was stopped and the job run again: {runs:?}");
    assert!(runs.iter().all(|r| r.end.is_some()), "{runs:?}");
    assert!(report.counts.lease_lost >= 1, "{:?}", report.counts);
    let stats = q.stats().await.expect("stats");
    assert!(stats.is_idle() && stats.parked == 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_never_overlap_runs_of_one_job_through_stalls() {
    let redis = RedisServer::start();
    let lease = Duration::from_secs(1);
    let q = queue(&redis.url, QueueConfig::new(unique("stall-two")).response_timeout(Duration::from_secs(2))).await;
    let journal = Journal::default();
    let work = Duration::from_millis(1500);
    let a = start(worker(&q, lease, &journal, work));
    let b = start(worker(&q, lease, &journal, work));
    let mut ids = Vec::new();
    for (round, stall) in [(0u32, lease * 3 / 2), (1, lease * 6)] {
        let started = journal.runs().len() + 4;
        for n in 0..8u32 {
            ids.push(q.push("Work", 1, &(round * 100 + n), PushOptions::new()).await.expect("push").job_id);
        }
        stall_after(&redis, &journal, started, stall).await;
        all_done(&q, &ids, Duration::from_secs(30)).await;
    }
    let (ra, rb) = (stop(a).await, stop(b).await);
    let runs = journal.runs();
    let overlaps = journal.overlaps();
    assert!(overlaps.is_empty(), "runs of one job overlapped: {overlaps:?} in {runs:?}");
    for r in &runs {
        assert!(r.end.is_some(), "a run never ended: {r:?}");
    }
    let succeeded = ra.counts.succeeded + rb.counts.succeeded;
    assert_eq!(succeeded, 16, "each job acknowledged once: {:?} {:?}", ra.counts, rb.counts);
    let stats = q.stats().await.expect("stats");
    assert!(stats.is_idle() && stats.parked == 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destroyed_group_is_recreated_without_overlapping_or_losing_runs() {
    let redis = RedisServer::start();
    let lease = Duration::from_secs(1);
    let q = queue(&redis.url, QueueConfig::new(unique("destroyed"))).await;
    let journal = Journal::default();
    // Two workers with free slots: a group recreated at its start would hand the entries in
    // flight to them at once.
    let a = start(worker(&q, lease, &journal, Duration::from_secs(2)));
    let b = start(worker(&q, lease, &journal, Duration::from_secs(2)));
    let mut ids = Vec::new();
    for n in 0..4u32 {
        ids.push(q.push("Work", 1, &n, PushOptions::new()).await.expect("push").job_id);
    }
    wait_for(Duration::from_secs(10), "4 running", async || (journal.runs().len() >= 4).then_some(())).await;
    let mut c = jobs_support::con(&redis.url).await;
    let destroyed: i64 = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(&q.keys().stream)
        .arg(&q.config().group)
        .query_async(&mut c)
        .await
        .expect("destroy");
    assert_eq!(destroyed, 1);
    all_done(&q, &ids, Duration::from_secs(30)).await;
    let (ra, rb) = (stop(a).await, stop(b).await);
    let overlaps = journal.overlaps();
    assert!(overlaps.is_empty(), "runs of one job overlapped: {overlaps:?} in {:?}", journal.runs());
    assert!(journal.runs().len() >= 8, "the runs in flight stopped and ran again: {:?}", journal.runs());
    let stats = q.stats().await.expect("stats");
    assert!(stats.is_idle() && stats.parked == 0, "{stats:?} {:?} {:?}", ra.counts, rb.counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_delivered_by_a_read_whose_reply_was_lost_is_run() {
    let redis = RedisServer::start();
    let lease = Duration::from_secs(2);
    let q = queue(&redis.url, QueueConfig::new(unique("lost-read"))).await;
    q.ensure_group().await.expect("group");
    let journal = Journal::default();
    let w = worker(&q, lease, &journal, Duration::from_millis(10));
    let id = q.push("Work", 1, &7u32, PushOptions::new()).await.expect("push").job_id;
    // What a read whose reply was lost leaves behind (a reply timed out while Redis stalled,
    // the read executed later): the entry is pending for this worker's consumer, and the
    // worker never saw it.
    let mut c = jobs_support::con(&redis.url).await;
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(&q.config().group)
        .arg(w.consumer())
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&q.keys().stream)
        .arg(">")
        .query_async(&mut c)
        .await
        .expect("read as the worker");
    assert_eq!(q.stats().await.expect("stats").pending, 1);
    // A worker never claims its own entries and no other worker runs: only taking it back
    // runs it, within a claim interval.
    let w = start(w);
    all_done(&q, &[id], Duration::from_secs(10)).await;
    let report = stop(w).await;
    assert_eq!(journal.runs().len(), 1, "{:?}", journal.runs());
    assert_eq!(report.counts.succeeded, 1);
}
