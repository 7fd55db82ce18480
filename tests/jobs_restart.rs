//! Redis killed with `SIGKILL` and restarted under a running queue: nothing it had is lost,
//! workers resume by themselves, a push during the outage fails promptly with a typed error,
//! and the outage is logged once. Its own binary: it counts this process's log events.

mod common;
#[path = "common/jobs.rs"]
mod jobs_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::RedisServer;
use dual_mode::jobs::{PushOptions, Queue, QueueConfig, QueueError, WorkerConfig};
use jobs_support::{Work, con, ledger_worker, ran, runs, start, stop, unique, wait_for};

/// Counts this process's log events of level INFO and above, by level and message.
#[derive(Default)]
struct LogCounter {
    events: Mutex<HashMap<(tracing::Level, String), usize>>,
}

impl LogCounter {
    fn count(&self, level: tracing::Level, message: &str) -> usize {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        events.get(&(level, message.to_owned())).copied().unwrap_or(0)
    }

    fn warnings(&self) -> Vec<(String, usize)> {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<(String, usize)> =
            events.iter().filter(|((l, _), _)| *l == tracing::Level::WARN).map(|((_, m), n)| (m.clone(), *n)).collect();
        out.sort();
        out
    }

    fn clear(&self) {
        self.events.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

/// A subscriber that hands every event at INFO or above to a [`LogCounter`].
struct Counting(Arc<LogCounter>);

impl tracing::Subscriber for Counting {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::INFO
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        let mut events = self.0.events.lock().unwrap_or_else(PoisonError::into_inner);
        *events.entry((*event.metadata().level(), message.0)).or_default() += 1;
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

const JOBS: u32 = 5000;
const WORKERS: usize = 2;
const CONCURRENCY: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_killed_and_restarted_mid_run_loses_no_job_and_workers_resume() {
    let logs = Arc::new(LogCounter::default());
    tracing::subscriber::set_global_default(Counting(logs.clone())).expect("the only subscriber of this binary");

    let mut redis = RedisServer::persistent().expect("a persistent redis-server");
    // Runs are recorded on a second server, which stays up.
    let ledger = RedisServer::start();
    let name = unique("restart");
    let config = QueueConfig::new(&name).response_timeout(Duration::from_secs(2));
    let q = Queue::connect(redis.client(), config).await.expect("connect");
    q.ensure_group().await.expect("group");
    let payloads: Vec<Work> = (0..JOBS).map(|n| Work { n }).collect();
    q.push_bulk("Work", 1, &payloads, PushOptions::new()).await.expect("push");

    let runs_key = format!("{name}:runs");
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let cfg = WorkerConfig::new()
            .concurrency(CONCURRENCY)
            .lease(Duration::from_secs(2))
            .block(Duration::from_millis(200))
            .claim_every(Duration::from_millis(500));
        workers.push(start(ledger_worker(q.clone(), cfg, &ledger.url, &runs_key, Duration::from_millis(2)).await));
    }

    let mut ledger_con = con(&ledger.url).await;
    wait_for(Duration::from_secs(60), "a fifth of the jobs to run", async || {
        (ran(&mut ledger_con, &runs_key).await >= JOBS / 5).then_some(())
    })
    .await;
    logs.clear();
    assert!(redis.kill(), "the server is ours to kill");
    let before_restart = ran(&mut ledger_con, &runs_key).await;

    // A push while Redis is down fails with a typed error, within a bounded time.
    let sent = Instant::now();
    let pushed = q.push("Work", 1, &Work { n: JOBS }, PushOptions::new()).await;
    let push_took = sent.elapsed();
    assert!(
        matches!(&pushed, Err(e @ QueueError::Unavailable { .. }) if e.is_unavailable()),
        "a push during the outage: {pushed:?}"
    );
    assert!(push_took < Duration::from_secs(10), "the failed push took {push_took:?}");

    // An outage of a few seconds, during which every loop keeps failing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.restart().expect("restart redis-server");
    let restarted = Instant::now();
    wait_for(Duration::from_secs(20), "workers to run jobs again", async || {
        (ran(&mut ledger_con, &runs_key).await > before_restart).then_some(())
    })
    .await;
    let resumed_after = restarted.elapsed();
    wait_for(Duration::from_secs(90), "every job to run", async || {
        (ran(&mut ledger_con, &runs_key).await >= JOBS).then_some(())
    })
    .await;

    let runs: HashMap<u32, u32> = runs(&mut ledger_con, &runs_key).await;
    let missing: Vec<u32> = (0..JOBS).filter(|n| !runs.contains_key(n)).collect();
    let twice = runs.values().filter(|&&r| r > 1).count();
    assert!(missing.is_empty(), "jobs lost: {missing:?}");
    assert!(!runs.contains_key(&JOBS), "the push that failed enqueued nothing");
    // At-least-once: only jobs running or awaiting their acknowledgement when Redis died may run
    // again.
    assert!(twice <= WORKERS * CONCURRENCY * 2, "{twice} jobs ran more than once");
    let unreachable = logs
        .count(tracing::Level::WARN, "redis unreachable; commands fail until it is back, reconnecting with back-off");
    let back = logs.count(tracing::Level::INFO, "redis reachable again");
    let warnings = logs.warnings();
    eprintln!(
        "push failed after {push_took:?}; resumed {resumed_after:?} after the restart; {twice} jobs ran more than once; \
         warnings during the outage: {warnings:?}"
    );
    assert_eq!((unreachable, back), (1, 1), "the outage is logged once as it begins and once as it ends: {warnings:?}");
    // Other warnings: at most one per job in flight at the kill (its outcome not written).
    let others: usize = warnings.iter().filter(|(m, _)| !m.starts_with("redis unreachable")).map(|(_, n)| n).sum();
    assert!(others <= WORKERS * CONCURRENCY * 2, "warnings beyond the outage's: {warnings:?}");
    assert!(resumed_after < Duration::from_secs(10), "workers resumed {resumed_after:?} after the restart");
    for w in workers {
        stop(w).await;
    }
}
