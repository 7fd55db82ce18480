//! Flow control: rate limits by type and by key, a handler's wait, key concurrency, unique
//! keys.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dual_mode::jobs::{
    CancelOutcome, JobError, JobInfo, JobState, PushOptions, QueueConfig, QueueStats, RateLimit, RateScope, Worker,
    handler_fn, typed,
};
use serde::{Deserialize, Serialize};

use crate::harness::{Store, fast_worker, start, stop, unique, wait_for, wait_state};

cases! {
    jobs_over_their_type_limit_wait_as_delayed_and_start_spaced_without_burning_attempts,
    a_key_over_its_rate_waits_while_another_key_runs_freely,
    a_job_told_to_wait_runs_again_later_without_burning_an_attempt,
    a_wait_with_retry_after_pauses_its_rate_key_for_every_worker,
    a_concurrency_of_one_per_key_holds_across_two_workers,
    a_unique_key_admits_one_job_until_it_ends,
    a_job_longer_than_the_lease_keeps_the_slot_of_its_key,
    reserved_starts_that_fall_due_while_slots_are_busy_do_not_burst,
    reserved_starts_do_not_burst_across_partitions,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Call {
    n: u32,
}

/// What a handler saw of one run: the job's number, its attempt, its start and end.
#[derive(Debug, Clone)]
struct Run {
    n: u32,
    attempt: u32,
    start: Instant,
    end: Instant,
}

#[derive(Clone, Default)]
struct Runs(Arc<Mutex<Vec<Run>>>);

impl Runs {
    /// A handler of `Call` jobs that records each run, after `work`; it answers `wait` (a 429
    /// with its retry-after) on the first run of job 0.
    fn handler(&self, work: Duration, wait: Option<Duration>) -> impl dual_mode::jobs::Handler {
        let runs = self.clone();
        typed(move |c: Call, job: JobInfo| {
            let runs = runs.clone();
            async move {
                let start = Instant::now();
                if !work.is_zero() {
                    tokio::time::sleep(work).await;
                }
                let first = {
                    let mut all = runs.0.lock().expect("lock");
                    let first = !all.iter().any(|r| r.n == c.n);
                    all.push(Run { n: c.n, attempt: job.attempt(), start, end: Instant::now() });
                    first
                };
                match wait {
                    Some(after) if c.n == 0 && first => Err(JobError::retry_after(after, "429 Too Many Requests")),
                    _ => Ok(()),
                }
            }
        })
    }

    fn all(&self) -> Vec<Run> {
        self.0.lock().expect("lock").clone()
    }

    fn len(&self) -> usize {
        self.0.lock().expect("lock").len()
    }
}

async fn jobs_over_their_type_limit_wait_as_delayed_and_start_spaced_without_burning_attempts(store: &Store) {
    let config = QueueConfig::new(unique("type-rate"))
        .rate_limit(RateScope::Type("Call".into()), RateLimit::new(10, Duration::from_secs(1)));
    let q = store.queue(config).await;
    let runs = Runs::default();
    let worker = Worker::new(q.clone(), fast_worker()).handle("Call", runs.handler(Duration::ZERO, None));
    let counts = worker.stats();
    let w = start(worker);
    let mut ids = Vec::new();
    for n in 0..8 {
        ids.push(q.push("Call", 1, &Call { n }, PushOptions::new()).await.expect("push").job_id);
    }
    let waiting = wait_for(Duration::from_secs(5), "a job waiting for the limit", async || {
        for id in &ids {
            let r = q.job(id).await.ok()??;
            if r.state == JobState::Delayed {
                return Some(r);
            }
        }
        None
    })
    .await;
    assert_eq!(waiting.attempt, 1);
    assert_eq!(waiting.error.as_deref(), Some("waiting for its rate limit"));
    wait_for(Duration::from_secs(10), "every job ran", async || (runs.len() == 8).then_some(())).await;
    stop(w).await;
    let mut starts = runs.all();
    starts.sort_by_key(|s| s.start);
    assert!(starts.iter().all(|s| s.attempt == 1), "no attempt burnt");
    // The i-th start is never before its reserved slot, i * 100 ms after the first.
    for (i, s) in (0u32..).zip(&starts) {
        let since = s.start - starts[0].start;
        assert!(since + Duration::from_millis(30) >= Duration::from_millis(100) * i, "start {i} after {since:?}");
    }
    assert!(counts.snapshot().rate_limited >= 7, "{:?}", counts.snapshot());
}

/// Jobs of a rate key limited to 20 a second start 50 ms apart; another key's jobs, pushed
/// behind them, are not held back.
async fn a_key_over_its_rate_waits_while_another_key_runs_freely(store: &Store) {
    const LIMITED: u32 = 20;
    const FREE: u32 = 300;
    let config =
        QueueConfig::new(unique("key-rate")).rate_limit(RateScope::Key("region:".into()), RateLimit::per_second(20));
    let q = store.queue(config).await;
    let runs = Runs::default();
    let w1 = start(Worker::new(q.clone(), fast_worker()).handle("Call", runs.handler(Duration::ZERO, None)));
    let w2 = start(Worker::new(q.clone(), fast_worker()).handle("Call", runs.handler(Duration::ZERO, None)));
    let limited: Vec<Call> = (0..LIMITED).map(|n| Call { n }).collect();
    let free: Vec<Call> = (1000..1000 + FREE).map(|n| Call { n }).collect();
    q.push_bulk("Call", 1, &limited, PushOptions::new().rate_key("region:10000002")).await.expect("push");
    q.push_bulk("Call", 1, &free, PushOptions::new().rate_key("token:a")).await.expect("push");
    wait_for(Duration::from_secs(20), "every job ran", async || {
        (runs.len() == (LIMITED + FREE) as usize).then_some(())
    })
    .await;
    let (r1, r2) = (stop(w1).await, stop(w2).await);
    let mut all = runs.all();
    all.sort_by_key(|r| r.start);
    assert!(all.iter().all(|r| r.attempt == 1), "waiting for the limit burns no attempt");
    let limited: Vec<&Run> = all.iter().filter(|r| r.n < 1000).collect();
    let first = limited[0].start;
    for (i, r) in (0u32..).zip(&limited) {
        let since = r.start - first;
        assert!(
            since + Duration::from_millis(30) >= Duration::from_millis(50) * i,
            "limited start {i} after {since:?}"
        );
    }
    // At 20 a second the free key's jobs would take 15 s: they all started before the
    // limited key's last.
    let last_free = all.iter().filter(|r| r.n >= 1000).map(|r| r.start).max().expect("free starts");
    assert!(last_free < limited[limited.len() - 1].start, "the free key was held back");
    assert!(
        r1.counts.rate_limited + r2.counts.rate_limited >= u64::from(LIMITED) / 2,
        "{:?} {:?}",
        r1.counts,
        r2.counts
    );
}

async fn a_job_told_to_wait_runs_again_later_without_burning_an_attempt(store: &Store) {
    // One attempt only: a wait that counted as an attempt would park the job.
    let q = store.queue(QueueConfig::new(unique("wait")).max_attempts(1)).await;
    let runs = Arc::new(Mutex::new(Vec::new()));
    let seen = runs.clone();
    let worker = Worker::new(q.clone(), fast_worker()).handle(
        "Call",
        typed(move |_c: Call, job: JobInfo| {
            let seen = seen.clone();
            async move {
                let n = {
                    let mut runs = seen.lock().expect("lock");
                    runs.push((Instant::now(), job.attempt()));
                    runs.len()
                };
                if n < 3 { Err(JobError::retry_after(Duration::from_millis(300), "remote said 429")) } else { Ok(()) }
            }
        }),
    );
    let w = start(worker);
    let pushed = q.push("Call", 1, &Call { n: 1 }, PushOptions::new()).await.expect("push");
    wait_for(Duration::from_secs(10), "three runs", async || (runs.lock().expect("lock").len() >= 3).then_some(()))
        .await;
    wait_for(Duration::from_secs(5), "an idle queue", async || q.stats().await.ok().filter(QueueStats::is_idle)).await;
    let report = stop(w).await;
    let runs = runs.lock().expect("lock").clone();
    assert_eq!(runs.iter().map(|r| r.1).collect::<Vec<_>>(), [1, 1, 1], "the attempt number is kept");
    for pair in runs.windows(2) {
        // The stores count time in whole milliseconds: a wait of 300 ms ends 299 ms and a
        // fraction after the instant the handler read.
        assert!(pair[1].0 - pair[0].0 >= Duration::from_millis(299), "each try waited the time it was told");
    }
    assert_eq!(
        (report.counts.waited, report.counts.retried, report.counts.parked, report.counts.succeeded),
        (2, 0, 0, 1)
    );
    assert_eq!(q.stats().await.expect("stats").parked, 0);
    let record = q.job(&pushed.job_id).await.expect("read").expect("a record");
    assert_eq!((record.state, record.attempt), (JobState::Done, 1));
}

/// Job 0 of a key limited to 10 a second answers a 429 with a retry-after of 1.5 s on its first
/// run: the key's other jobs (which would start 100 ms apart) start on neither worker until
/// the pause is over.
async fn a_wait_with_retry_after_pauses_its_rate_key_for_every_worker(store: &Store) {
    let config =
        QueueConfig::new(unique("retry-after")).rate_limit(RateScope::Key("region:".into()), RateLimit::per_second(10));
    let q = store.queue(config).await;
    let runs = Runs::default();
    let pause = Some(Duration::from_millis(1500));
    let w1 = start(Worker::new(q.clone(), fast_worker()).handle("Call", runs.handler(Duration::ZERO, pause)));
    let w2 = start(Worker::new(q.clone(), fast_worker()).handle("Call", runs.handler(Duration::ZERO, pause)));
    let first = q.push("Call", 1, &Call { n: 0 }, PushOptions::new().rate_key("region:2")).await.expect("push");
    let rest: Vec<Call> = (1..10).map(|n| Call { n }).collect();
    q.push_bulk("Call", 1, &rest, PushOptions::new().rate_key("region:2")).await.expect("push");
    wait_for(Duration::from_secs(20), "every job ran", async || (runs.len() == 11).then_some(())).await;
    let (r1, r2) = (stop(w1).await, stop(w2).await);
    let all = runs.all();
    let refused = all.iter().find(|r| r.n == 0).expect("the 429").end;
    // Starts already under way as the 429 came back are allowed (on a loaded machine, for a
    // while); none from then until the pause is over.
    let during: Vec<Duration> = all
        .iter()
        .filter(|r| r.start > refused + Duration::from_millis(500) && r.start < refused + Duration::from_millis(1450))
        .map(|r| r.start - refused)
        .collect();
    assert!(during.is_empty(), "starts while the key was paused, after the 429: {during:?}");
    assert!(all.iter().all(|r| r.attempt == 1), "no attempt burnt");
    let record = q.job(&first.job_id).await.expect("record").expect("exists");
    assert_eq!((record.state, record.attempt), (JobState::Done, 1));
    assert_eq!((r1.counts.retried + r2.counts.retried, r1.counts.waited + r2.counts.waited), (0, 1));
}

async fn a_concurrency_of_one_per_key_holds_across_two_workers(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("slots")).key_concurrency("region:", 1)).await;
    let runs = Runs::default();
    let work = Duration::from_millis(40);
    let cfg = fast_worker().poll_delayed_every(Duration::from_millis(10));
    let w1 = start(Worker::new(q.clone(), cfg.clone()).handle("Call", runs.handler(work, None)));
    let w2 = start(Worker::new(q.clone(), cfg).handle("Call", runs.handler(work, None)));
    for (key, base) in [("region:1", 0), ("region:2", 100)] {
        let jobs: Vec<Call> = (base..base + 10).map(|n| Call { n }).collect();
        q.push_bulk("Call", 1, &jobs, PushOptions::new().rate_key(key)).await.expect("push");
    }
    wait_for(Duration::from_secs(20), "every job ran", async || {
        let s = q.stats().await.ok()?;
        (runs.len() == 20 && s.is_idle()).then_some(())
    })
    .await;
    stop(w1).await;
    stop(w2).await;
    let all = runs.all();
    let mut keys: Vec<Vec<&Run>> = vec![Vec::new(), Vec::new()];
    for r in &all {
        keys[usize::from(r.n >= 100)].push(r);
    }
    for key in &mut keys {
        assert_eq!(key.len(), 10, "every job of the key ran once");
        key.sort_by_key(|r| r.start);
        for pair in key.windows(2) {
            assert!(pair[1].start >= pair[0].end, "two jobs of one key ran at once: {} and {}", pair[0].n, pair[1].n);
        }
    }
    // The limit is per key: the two keys' jobs ran side by side.
    let overlap = keys[0].iter().any(|a| keys[1].iter().any(|b| a.start < b.end && b.start < a.end));
    assert!(overlap, "the two keys never ran at once");
    assert!(all.iter().all(|r| r.attempt == 1), "waiting for a slot burns no attempt");
}

async fn a_unique_key_admits_one_job_until_it_ends(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("unique"))).await;
    let options = || PushOptions::new().unique("region:10000002", Duration::from_secs(60));
    let concurrent: Vec<_> = (0..200)
        .map(|i| {
            let q = q.clone();
            tokio::spawn(async move { q.push("Unit", 1, &i, options()).await.expect("push") })
        })
        .collect();
    let mut pushed = Vec::new();
    for h in concurrent {
        pushed.push(h.await.expect("task"));
    }
    let first: Vec<_> = pushed.iter().filter(|p| !p.duplicate).collect();
    assert_eq!(first.len(), 1, "exactly one push added a job");
    assert!(pushed.iter().all(|p| p.job_id == first[0].job_id), "the duplicates name the job that holds the key");
    assert_eq!(q.stats().await.expect("stats").length, 1);
    let record = q.job(&first[0].job_id).await.expect("read").expect("a record");
    assert_eq!(record.unique_key.as_deref(), Some("region:10000002"));
    // A delayed push with the key is a duplicate too; by payload, the same bytes are one job.
    assert!(q.push("Unit", 1, &0, options().delay(Duration::from_secs(1))).await.expect("push").duplicate);
    let by_payload = || PushOptions::new().unique_by_payload(Duration::from_secs(60));
    let same = q.push("Unit", 1, &"same", by_payload()).await.expect("push");
    let same_again = q.push("Unit", 1, &"same", by_payload()).await.expect("push");
    let other = q.push("Unit", 1, &"other", by_payload()).await.expect("push");
    assert!(!same.duplicate && same_again.duplicate && !other.duplicate && same_again.job_id == same.job_id);

    // The key is released when its job ends: a push then adds a new job.
    let w = start(Worker::new(q.clone(), fast_worker()).handle("Unit", handler_fn(|_job: JobInfo| async { Ok(()) })));
    wait_state(&q, &[&first[0].job_id], JobState::Done).await;
    let again = q.push("Unit", 1, &0, options()).await.expect("push");
    assert!(!again.duplicate && again.job_id != first[0].job_id);
    wait_state(&q, &[&again.job_id], JobState::Done).await;
    // A cancelled job releases its key too.
    let held = q.push("Unit", 1, &0, options().delay(Duration::from_secs(30))).await.expect("push");
    assert!(!held.duplicate);
    assert_eq!(q.cancel(&held.job_id).await.expect("cancel"), CancelOutcome::Removed);
    assert!(!q.push("Unit", 1, &0, options()).await.expect("push").duplicate);
    stop(w).await;
}

async fn a_job_longer_than_the_lease_keeps_the_slot_of_its_key(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("long-slot")).key_concurrency("region:", 1)).await;
    let spans = Arc::new(Mutex::new(Vec::new()));
    let s = spans.clone();
    let worker = Worker::new(q.clone(), fast_worker().lease(Duration::from_millis(500))).handle(
        "Long",
        handler_fn(move |_job: JobInfo| {
            let s = s.clone();
            async move {
                let started = Instant::now();
                tokio::time::sleep(Duration::from_secs(2)).await;
                s.lock().expect("lock").push((started, Instant::now()));
                Ok(())
            }
        }),
    );
    let w = start(worker);
    for _ in 0..2 {
        q.push("Long", 1, &(), PushOptions::new().rate_key("region:1")).await.expect("push");
    }
    wait_for(Duration::from_secs(15), "both jobs ran", async || (spans.lock().ok()?.len() == 2).then_some(())).await;
    stop(w).await;
    let mut spans = spans.lock().expect("lock").clone();
    spans.sort();
    // The first job runs four leases: its slot is renewed with its entry's lease, so the
    // second job of the key waits for its end.
    assert!(spans[1].0 >= spans[0].1, "two jobs of the key ran at once: {spans:?}");
}

/// A key limited to 10 starts a second (burst 1) has its 20 jobs' starts reserved, 100 ms
/// apart; then another key's 1.5 s jobs take every slot, so that most reservations fall due
/// while no slot is free. When the slots free up, the late reservations must not start all at
/// once: in any window of one period, at most limit + burst starts.
async fn reserved_starts_that_fall_due_while_slots_are_busy_do_not_burst(store: &Store) {
    saturated_then_freed(store, 1).await;
}

async fn reserved_starts_do_not_burst_across_partitions(store: &Store) {
    saturated_then_freed(store, 3).await;
}

async fn saturated_then_freed(store: &Store, partitions: u16) {
    const LIMITED: u32 = 20;
    const SLOTS: u32 = 4;
    let limit = RateLimit::new(10, Duration::from_secs(1));
    let config =
        QueueConfig::new(unique("saturated")).partitions(partitions).rate_limit(RateScope::Key("lim:".into()), limit);
    let q = store.queue(config).await;
    let runs = Runs::default();
    let busy = Runs::default();
    let worker = || {
        Worker::new(q.clone(), fast_worker().concurrency(2))
            .handle("Call", runs.handler(Duration::ZERO, None))
            .handle("Busy", busy.handler(Duration::from_millis(1500), None))
    };
    let (w1, w2) = (start(worker()), start(worker()));
    let limited: Vec<Call> = (0..LIMITED).map(|n| Call { n }).collect();
    q.push_bulk("Call", 1, &limited, PushOptions::new().rate_key("lim:1")).await.expect("push");
    // Every start reserved: the first ran, the others wait in the delayed set (read in one
    // call: a slow store must not let the reservations fall due while it is asked job by job).
    wait_for(Duration::from_secs(5), "the limited jobs' starts reserved", async || {
        let delayed = usize::try_from(q.stats().await.ok()?.delayed).ok()?;
        (delayed + runs.len() >= LIMITED as usize).then_some(())
    })
    .await;
    // At least 12 reservations left: more than limit + burst fall due while the slots are busy.
    assert!(runs.len() <= 8, "most starts are still reserved when the slots fill up ({} ran)", runs.len());
    let hogs: Vec<Call> = (0..SLOTS).map(|n| Call { n: 1000 + n }).collect();
    q.push_bulk("Busy", 1, &hogs, PushOptions::new().rate_key("busy:1")).await.expect("push");
    wait_for(Duration::from_secs(20), "every job ran", async || {
        (runs.len() == LIMITED as usize && busy.len() == SLOTS as usize).then_some(())
    })
    .await;
    stop(w1).await;
    stop(w2).await;
    let mut starts: Vec<Instant> = runs.all().iter().map(|r| r.start).collect();
    starts.sort();
    let allowed = (limit.count + limit.burst) as usize;
    // The store counts starts as its gate lets them through; a handler runs a moment later,
    // so its windows are taken 25 ms short of the period.
    let window = limit.per.saturating_sub(Duration::from_millis(25));
    let worst = starts
        .iter()
        .map(|&from| starts.iter().filter(|&&s| s >= from && s < from + window).count())
        .max()
        .unwrap_or(0);
    let since: Vec<u128> = starts.iter().map(|s| (*s - starts[0]).as_millis()).collect();
    assert!(worst <= allowed, "{worst} starts in one period (at most {allowed}); starts at ms {since:?}");
    assert!(runs.all().iter().all(|r| r.attempt == 1), "waiting burns no attempt");
}
