//! The job layer across OS processes: this test binary re-executes itself as worker or
//! scheduler processes (the `role` test, which does nothing unless `DM_JOBS_ROLE` is set), and
//! the tests kill, pause and resume them.

mod common;
#[path = "common/jobs.rs"]
mod jobs_support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use common::RedisServer;
use dual_mode::jobs::{
    JobError, JobInfo, PushOptions, Queue, QueueConfig, RateLimit, RateScope, Schedule, Scheduler, SchedulerConfig,
    Worker, WorkerConfig, typed,
};
use jobs_support::{RoleProcess, con, env, queue, unique, wait_for};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

/// The payload the worker role runs: record the start, sleep, record the end unless the lease
/// was lost first.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Work {
    n: u32,
    sleep_ms: u64,
    /// Ignores the signal to stop (the worker must abort it and hand it back).
    #[serde(default)]
    stubborn: bool,
}

/// Not a test by itself: the entry point of the child processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role() {
    let Some(role) = env("DM_JOBS_ROLE") else {
        return;
    };
    let url = env("DM_REDIS_URL").expect("DM_REDIS_URL");
    let name = env("DM_QUEUE").expect("DM_QUEUE");
    let mut config = QueueConfig::new(&name);
    // `prefix=n,...`: n starts a second per rate key under each prefix.
    for limit in env("DM_RATE").iter().flat_map(|r| r.split(',')) {
        let (prefix, n) = limit.split_once('=').expect("prefix=n");
        config = config.rate_limit(RateScope::Key(prefix.to_owned()), RateLimit::per_second(n.parse().expect("n")));
    }
    // `prefix=k,...`: k jobs at once per rate key under each prefix.
    for slots in env("DM_SLOTS").iter().flat_map(|r| r.split(',')) {
        let (prefix, k) = slots.split_once('=').expect("prefix=k");
        config = config.key_concurrency(prefix, k.parse().expect("k"));
    }
    let q = queue(&url, config).await;
    let mut db = con(&url).await;
    let stop_key = format!("{name}:stop");
    let stop = {
        let mut db = db.clone();
        let stop_key = stop_key.clone();
        async move {
            loop {
                let stop: bool = db.exists(&stop_key).await.unwrap_or(false);
                if stop {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    match role.as_str() {
        "worker" => {
            let lease_ms: u64 = env("DM_LEASE_MS").and_then(|v| v.parse().ok()).unwrap_or(1000);
            let concurrency: usize = env("DM_CONCURRENCY").and_then(|v| v.parse().ok()).unwrap_or(4);
            let cfg = WorkerConfig::new()
                .concurrency(concurrency)
                .lease(Duration::from_millis(lease_ms))
                .renew_every(Duration::from_millis(lease_ms / 4))
                .block(Duration::from_millis(200))
                .poll_delayed_every(Duration::from_millis(50))
                .lost_lease_grace(Duration::from_millis(lease_ms / 8));
            let worker = Worker::new(q.clone(), cfg);
            let consumer = worker.consumer().to_owned();
            let rec = db.clone();
            let (n2, me) = (name.clone(), consumer.clone());
            let worker = worker.handle(
                "Work",
                typed(move |w: Work, job: JobInfo| {
                    let (mut rec, name, me) = (rec.clone(), n2.clone(), me.clone());
                    async move {
                        let fail = |e: redis::RedisError| JobError::failed(e);
                        let _: () = rec.rpush(format!("{name}:starts"), format!("{}:{me}", w.n)).await.map_err(fail)?;
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_millis(w.sleep_ms)) => {
                                let _: () = rec.rpush(format!("{name}:done"), format!("{}:{me}", w.n)).await.map_err(fail)?;
                            }
                            () = job.lease().lost() => {
                                let _: () = rec.rpush(format!("{name}:lost"), format!("{}:{me}", w.n)).await.map_err(fail)?;
                            }
                        }
                        Ok(())
                    }
                }),
            );
            let _: () = db.rpush(format!("{name}:ready"), &consumer).await.expect("ready");
            let report = worker.run(stop).await.expect("worker run");
            let counts = report.counts;
            let _: () = db
                .hset_multiple(
                    format!("{name}:report:{consumer}"),
                    &[
                        ("succeeded", counts.succeeded),
                        ("lease_lost", counts.lease_lost),
                        ("received", counts.received),
                    ],
                )
                .await
                .expect("report");
        }
        "scheduler" => {
            let schedule = Schedule::new("every-second", "* * * * * *", "Tick", 1, &()).expect("schedule");
            let enqueued =
                Scheduler::new(q, SchedulerConfig::new()).schedule(schedule).run(stop).await.expect("scheduler");
            let _: () = db.rpush(format!("{name}:sched-report"), enqueued).await.expect("report");
        }
        "limited-worker" => limited_worker(q, db, name, stop).await,
        "signal-worker" => signal_worker(q, db, name).await,
        "unique-pusher" => unique_pusher(q, db, name).await,
        other => panic!("unknown role {other}"),
    }
}

/// A call to a rate-limited remote: job `n` under a rate key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Call {
    n: u32,
    /// The first run of a job with this set answers "429, retry after this many ms".
    #[serde(default)]
    too_many_ms: Option<u64>,
    /// How long the call takes.
    #[serde(default)]
    sleep_ms: u64,
}

/// A worker of `Call` jobs: each run records `n:attempt:start ms:end ms:consumer:429` in
/// `calls`.
async fn limited_worker(
    q: Queue,
    mut db: redis::aio::MultiplexedConnection,
    name: String,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let mut cfg = WorkerConfig::new()
        .concurrency(8)
        .block(Duration::from_millis(200))
        .poll_delayed_every(Duration::from_millis(10));
    if let Some(ms) = env("DM_LEASE_MS").and_then(|v| v.parse::<u64>().ok()) {
        cfg = cfg.lease(Duration::from_millis(ms)).renew_every(Duration::from_millis(ms / 4));
    }
    let worker = Worker::new(q, cfg);
    let me = worker.consumer().to_owned();
    let (rec, n2) = (db.clone(), name.clone());
    let worker = worker.handle(
        "Call",
        typed(move |c: Call, job: JobInfo| {
            let (mut rec, name, me) = (rec.clone(), n2.clone(), me.clone());
            async move {
                let fail = |e: redis::RedisError| JobError::failed(e);
                let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_millis();
                let too_many = match c.too_many_ms {
                    Some(_) => rec.set_nx(format!("{name}:429:{}", c.n), 1).await.map_err(fail)?,
                    None => false,
                };
                tokio::time::sleep(Duration::from_millis(c.sleep_ms)).await;
                let end = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_millis();
                let line = format!("{}:{}:{now}:{end}:{me}:{}", c.n, job.attempt(), u8::from(too_many));
                let _: () = rec.rpush(format!("{name}:calls"), line).await.map_err(fail)?;
                match c.too_many_ms {
                    Some(ms) if too_many => {
                        Err(JobError::retry_after(Duration::from_millis(ms), "429 Too Many Requests"))
                    }
                    _ => Ok(()),
                }
            }
        }),
    );
    let consumer = worker.consumer().to_owned();
    let _: () = db.rpush(format!("{name}:ready"), &consumer).await.expect("ready");
    let report = worker.run(stop).await.expect("worker run");
    let c = report.counts;
    let counts = [("retried", c.retried), ("waited", c.waited), ("rate_limited", c.rate_limited)];
    let _: () = db.hset_multiple(format!("{name}:report:{consumer}"), &counts).await.expect("report");
}

/// One line of `calls`.
struct CallRun {
    n: u32,
    attempt: u32,
    at_ms: u64,
    end_ms: u64,
    consumer: String,
    too_many: bool,
}

async fn calls(db: &mut redis::aio::MultiplexedConnection, name: &str) -> Vec<CallRun> {
    list(db, &format!("{name}:calls"))
        .await
        .iter()
        .map(|line| {
            let p: Vec<&str> = line.split(':').collect();
            CallRun {
                n: p[0].parse().expect("n"),
                attempt: p[1].parse().expect("attempt"),
                at_ms: p[2].parse().expect("ms"),
                end_ms: p[3].parse().expect("ms"),
                consumer: p[4].to_owned(),
                too_many: p[5] == "1",
            }
        })
        .collect()
}

/// Starts `n` limited workers with these settings and waits until they read.
async fn limited_workers(url: &str, name: &str, n: usize, settings: &[(&str, String)]) -> Vec<RoleProcess> {
    let workers: Vec<RoleProcess> = (0..n).map(|_| spawn("limited-worker", url, name, settings)).collect();
    let mut db = con(url).await;
    wait_ready(&mut db, name, n).await;
    workers
}

async fn stop_all(db: &mut redis::aio::MultiplexedConnection, name: &str, workers: &mut [RoleProcess]) {
    let _: () = db.set(format!("{name}:stop"), 1).await.expect("stop");
    for w in workers {
        assert!(w.wait_exit(Duration::from_secs(20)), "the worker exits cleanly");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_limited_to_50_a_second_holds_across_three_processes_while_another_key_runs_freely() {
    let redis = RedisServer::start();
    let name = unique("rate");
    let q = queue(&redis.url, QueueConfig::new(&name)).await;
    let mut db = con(&redis.url).await;
    let mut workers = limited_workers(&redis.url, &name, 3, &[("DM_RATE", "region:=50".to_owned())]).await;
    let slow: Vec<Call> = (0..700).map(|n| Call { n, too_many_ms: None, sleep_ms: 0 }).collect();
    let fast: Vec<Call> = (10_000..13_000).map(|n| Call { n, too_many_ms: None, sleep_ms: 0 }).collect();
    q.push_bulk("Call", 1, &slow, PushOptions::new().rate_key("region:10000002")).await.expect("push");
    q.push_bulk("Call", 1, &fast, PushOptions::new().rate_key("token:a")).await.expect("push");
    // Ten seconds of the limited key, measured from its first start.
    wait_for(Duration::from_secs(30), "ten seconds of the limited key", async || {
        let runs = calls(&mut db, &name).await;
        let first = runs.iter().filter(|r| r.n < 10_000).map(|r| r.at_ms).min()?;
        runs.iter().any(|r| r.n < 10_000 && r.at_ms >= first + 10_500).then_some(())
    })
    .await;
    stop_all(&mut db, &name, &mut workers).await;
    let runs = calls(&mut db, &name).await;
    let first = runs.iter().filter(|r| r.n < 10_000).map(|r| r.at_ms).min().expect("a limited start");
    let in_window = |r: &&CallRun| r.at_ms >= first && r.at_ms < first + 10_000;
    let limited = runs.iter().filter(|r| r.n < 10_000).filter(in_window).count();
    assert!((450..=550).contains(&limited), "{limited} starts of the limited key in 10 s (50/s: 500 ± 10%)");
    let by: HashSet<&str> = runs.iter().filter(|r| r.n < 10_000).map(|r| r.consumer.as_str()).collect();
    assert_eq!(by.len(), 3, "every process ran the limited key");
    // The other key is not held back: its 3,000 jobs ran well within the window (at 50/s they
    // would take a minute).
    let free: Vec<&CallRun> = runs.iter().filter(|r| r.n >= 10_000).collect();
    assert_eq!(free.len(), 3000, "every job of the free key ran once");
    assert!(free.iter().all(|r| r.at_ms < first + 10_000), "the free key finished inside the window");
    assert!(runs.iter().all(|r| r.attempt == 1), "waiting for the limit burns no attempt");
    let mut rate_limited = 0;
    for w in by {
        rate_limited += report(&mut db, &name, w).await["rate_limited"];
    }
    assert!(rate_limited >= 200, "jobs over the limit were delayed ({rate_limited})");
}

/// Three processes reserve the starts of a key limited to 10 a second (burst 1), 100 ms
/// apart; then another key's 1.5 s jobs take every slot, and one process is killed with its
/// slots busy. The reservations that fell due meanwhile must not start all at once when slots
/// free up: in any second, at most limit + burst starts of the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_starts_do_not_burst_when_busy_slots_free_up_with_a_worker_killed() {
    const LIMITED: u32 = 40;
    const BUSY: u32 = 24;
    let redis = RedisServer::start();
    let name = unique("saturated");
    let q = queue(&redis.url, QueueConfig::new(&name)).await;
    let mut db = con(&redis.url).await;
    let settings = [("DM_RATE", "lim:=10".to_owned()), ("DM_LEASE_MS", "1000".to_owned())];
    let mut workers = limited_workers(&redis.url, &name, 3, &settings).await;
    let limited: Vec<Call> = (0..LIMITED).map(|n| Call { n, too_many_ms: None, sleep_ms: 0 }).collect();
    q.push_bulk("Call", 1, &limited, PushOptions::new().rate_key("lim:1")).await.expect("push");
    wait_for(Duration::from_secs(10), "the limited starts reserved", async || {
        (q.stats().await.ok()?.delayed >= u64::from(LIMITED) - 3).then_some(())
    })
    .await;
    let busy: Vec<Call> = (10_000..10_000 + BUSY).map(|n| Call { n, too_many_ms: None, sleep_ms: 1500 }).collect();
    q.push_bulk("Call", 1, &busy, PushOptions::new().rate_key("busy:1")).await.expect("push");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = workers.remove(0);
    killed.signal("KILL");
    drop(killed);
    wait_for(Duration::from_secs(60), "every job ran", async || {
        let runs = calls(&mut db, &name).await;
        let done = |range: std::ops::Range<u32>| runs.iter().filter(move |r| range.contains(&r.n)).map(|r| r.n);
        let limited: HashSet<u32> = done(0..LIMITED).collect();
        let busy: HashSet<u32> = done(10_000..10_000 + BUSY).collect();
        (limited.len() == LIMITED as usize && busy.len() == BUSY as usize).then_some(())
    })
    .await;
    stop_all(&mut db, &name, &mut workers).await;
    let mut starts: Vec<u64> = calls(&mut db, &name).await.iter().filter(|r| r.n < LIMITED).map(|r| r.at_ms).collect();
    starts.sort_unstable();
    // Starts as the handlers saw them, a moment after the gate counted them: windows of 975 ms.
    let worst = starts.iter().map(|&from| starts.iter().filter(|&&s| s >= from && s < from + 975).count()).max();
    let since: Vec<u64> = starts.iter().map(|s| s - starts[0]).collect();
    println!("limited starts, ms after the first: {since:?}; at most {worst:?} in one second");
    assert!(worst <= Some(11), "{worst:?} starts in one second (at most 11); starts at ms {since:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_pauses_its_key_on_every_worker_without_burning_an_attempt() {
    let redis = RedisServer::start();
    let name = unique("retry-after");
    let q = queue(&redis.url, QueueConfig::new(&name)).await;
    let mut db = con(&redis.url).await;
    let mut workers = limited_workers(&redis.url, &name, 3, &[("DM_RATE", "region:=10".to_owned())]).await;
    let first = q
        .push("Call", 1, &Call { n: 0, too_many_ms: Some(2000), sleep_ms: 0 }, PushOptions::new().rate_key("region:2"))
        .await
        .expect("push");
    let rest: Vec<Call> = (1..20).map(|n| Call { n, too_many_ms: None, sleep_ms: 0 }).collect();
    q.push_bulk("Call", 1, &rest, PushOptions::new().rate_key("region:2")).await.expect("push");
    wait_for(Duration::from_secs(30), "every call made", async || {
        (calls(&mut db, &name).await.iter().filter(|r| !r.too_many).count() == 20).then_some(())
    })
    .await;
    stop_all(&mut db, &name, &mut workers).await;
    let runs = calls(&mut db, &name).await;
    let refused = runs.iter().find(|r| r.too_many).expect("the 429");
    assert_eq!(refused.n, 0);
    // Starts already under way as the 429 came back are allowed; none after until the pause
    // is over.
    let early: Vec<u64> =
        runs.iter().filter(|r| !r.too_many && r.at_ms < refused.at_ms + 1950).map(|r| r.at_ms).collect();
    assert!(
        early.iter().all(|&t| t < refused.at_ms + 50),
        "no start while the key was paused: 429 at {}, starts at {early:?}",
        refused.at_ms
    );
    let after: HashSet<&str> =
        runs.iter().filter(|r| r.at_ms >= refused.at_ms + 1950).map(|r| r.consumer.as_str()).collect();
    assert!(after.len() >= 2, "several workers ran the key after its pause: {after:?}");
    assert!(runs.iter().all(|r| r.attempt == 1), "no attempt burnt");
    let record = q.job(&first.job_id).await.expect("record").expect("exists");
    assert_eq!(record.attempt, 1);
    let mut waited = 0;
    for w in runs.iter().map(|r| r.consumer.as_str()).collect::<HashSet<_>>() {
        let r = report(&mut db, &name, w).await;
        assert_eq!(r["retried"], 0);
        waited += r["waited"];
    }
    assert_eq!(waited, 1, "one run waited for the 429");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_of_one_per_key_holds_across_three_processes() {
    let redis = RedisServer::start();
    let name = unique("slots");
    let q = queue(&redis.url, QueueConfig::new(&name)).await;
    let mut db = con(&redis.url).await;
    let mut workers = limited_workers(&redis.url, &name, 3, &[("DM_SLOTS", "region:=1".to_owned())]).await;
    for key in ["region:1", "region:2"] {
        let base = if key == "region:1" { 0 } else { 100 };
        let jobs: Vec<Call> = (base..base + 15).map(|n| Call { n, too_many_ms: None, sleep_ms: 40 }).collect();
        q.push_bulk("Call", 1, &jobs, PushOptions::new().rate_key(key)).await.expect("push");
    }
    wait_for(Duration::from_secs(30), "every job ran", async || {
        let s = q.stats().await.ok()?;
        (calls(&mut db, &name).await.len() == 30 && s.is_idle()).then_some(())
    })
    .await;
    stop_all(&mut db, &name, &mut workers).await;
    let runs = calls(&mut db, &name).await;
    for base in [0, 100] {
        let mut key: Vec<&CallRun> = runs.iter().filter(|r| r.n >= base && r.n < base + 15).collect();
        assert_eq!(key.len(), 15, "every job of the key ran once");
        key.sort_by_key(|r| r.at_ms);
        for pair in key.windows(2) {
            assert!(
                pair[1].at_ms >= pair[0].end_ms,
                "two jobs of one key ran at once: {} [{}, {}) and {} from {}",
                pair[0].n,
                pair[0].at_ms,
                pair[0].end_ms,
                pair[1].n,
                pair[1].at_ms
            );
        }
        let by: HashSet<&str> = key.iter().map(|r| r.consumer.as_str()).collect();
        assert!(by.len() >= 2, "the key's jobs ran on several processes: {by:?}");
    }
    assert!(runs.iter().all(|r| r.attempt == 1), "waiting for a slot burns no attempt");
    let slots: Vec<String> = db.keys(format!("dm:{{{name}}}:slots:*")).await.expect("keys");
    for key in slots {
        let held: usize = db.zcard(&key).await.expect("zcard");
        assert_eq!(held, 0, "every slot was given back ({key})");
    }
}

/// A worker that stops on SIGTERM; each job returns n * 10, and stops when told unless
/// stubborn.
async fn signal_worker(q: Queue, mut db: redis::aio::MultiplexedConnection, name: String) {
    // Stops on SIGTERM; each job returns n * 10, and stops when told unless stubborn.
    let cfg = WorkerConfig::new()
        .concurrency(4)
        .lease(Duration::from_secs(2))
        .block(Duration::from_millis(100))
        .poll_delayed_every(Duration::from_millis(20))
        .shutdown_deadline(Duration::from_secs(2));
    let rec = db.clone();
    let n2 = name.clone();
    let worker = Worker::new(q, cfg).handle(
        "Work",
        typed(move |w: Work, job: JobInfo| {
            let (mut rec, name) = (rec.clone(), n2.clone());
            async move {
                let fail = |e: redis::RedisError| JobError::failed(e);
                let _: () = rec.rpush(format!("{name}:starts"), w.n).await.map_err(fail)?;
                let sleep = tokio::time::sleep(Duration::from_millis(w.sleep_ms));
                if w.stubborn {
                    sleep.await;
                } else {
                    tokio::select! {
                        () = sleep => {}
                        reason = job.cancelled() => return Err(JobError::failed(format!("stopped: {reason:?}"))),
                    }
                }
                let _: () = rec.rpush(format!("{name}:done"), w.n).await.map_err(fail)?;
                Ok(w.n * 10)
            }
        }),
    );
    let _: () = db.rpush(format!("{name}:ready"), worker.consumer()).await.expect("ready");
    let report = worker.run(dual_mode::jobs::shutdown_signal()).await.expect("worker run");
    let counts = report.counts;
    let _: () = db
        .hset_multiple(
            format!("{name}:report:{}", report.consumer),
            &[("succeeded", counts.succeeded), ("handed_back", counts.handed_back)],
        )
        .await
        .expect("report");
}

/// Pushes 250 jobs at once under one unique key, once told to go; records what it got.
async fn unique_pusher(q: Queue, mut db: redis::aio::MultiplexedConnection, name: String) {
    let key = env("DM_UNIQUE_KEY").expect("DM_UNIQUE_KEY");
    let _: () = db.rpush(format!("{name}:ready"), std::process::id()).await.expect("ready");
    wait_for(Duration::from_secs(20), "go", async || {
        db.exists::<_, bool>(format!("{name}:go")).await.ok()?.then_some(())
    })
    .await;
    let pushes: Vec<_> = (0..250u32)
        .map(|i| {
            let (q, key) = (q.clone(), key.clone());
            tokio::spawn(async move {
                q.push(
                    "Work",
                    1,
                    &Work { n: i, sleep_ms: 0, stubborn: false },
                    PushOptions::new().unique(key, Duration::from_secs(60)),
                )
                .await
                .expect("push")
            })
        })
        .collect();
    for p in pushes {
        let result = p.await.expect("push task");
        let _: () = db.sadd(format!("{name}:ids"), &result.job_id).await.expect("sadd");
        if !result.duplicate {
            let _: () = db.incr(format!("{name}:added"), 1).await.expect("incr");
        }
    }
    let _: () = db.rpush(format!("{name}:finished"), std::process::id()).await.expect("finished");
}

fn spawn(role: &str, url: &str, name: &str, extra: &[(&str, String)]) -> RoleProcess {
    let mut envs =
        vec![("DM_JOBS_ROLE", role.to_owned()), ("DM_REDIS_URL", url.to_owned()), ("DM_QUEUE", name.to_owned())];
    envs.extend(extra.iter().cloned());
    RoleProcess::spawn("role", &envs)
}

/// Waits until `n` role processes of queue `name` said they are ready.
async fn wait_ready(db: &mut redis::aio::MultiplexedConnection, name: &str, n: usize) {
    wait_for(Duration::from_secs(30), &format!("{n} role processes ready"), async || {
        (db.llen::<_, usize>(format!("{name}:ready")).await.ok()? == n).then_some(())
    })
    .await;
}

async fn list(db: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<String> {
    db.lrange(key, 0, -1).await.expect("lrange")
}

/// `n:consumer` records as (n, consumer).
fn parse(records: &[String]) -> Vec<(u32, String)> {
    records
        .iter()
        .map(|r| {
            let (n, who) = r.split_once(':').expect("n:consumer");
            (n.parse().expect("n"), who.to_owned())
        })
        .collect()
}

async fn report(db: &mut redis::aio::MultiplexedConnection, name: &str, consumer: &str) -> HashMap<String, u64> {
    db.hgetall(format!("{name}:report:{consumer}")).await.expect("report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_run_2000_jobs_exactly_once() {
    let redis = RedisServer::start();
    let name = unique("procs");
    let q = queue(&redis.url, QueueConfig::new(&name)).await;
    let mut db = con(&redis.url).await;
    let extra = [("DM_CONCURRENCY", "8".to_owned()), ("DM_LEASE_MS", "2000".to_owned())];
    let mut w1 = spawn("worker", &redis.url, &name, &extra);
    let mut w2 = spawn("worker", &redis.url, &name, &extra);
    wait_ready(&mut db, &name, 2).await;
    let jobs: Vec<Work> = (0..2000).map(|n| Work { n, stubborn: false, sleep_ms: 2 }).collect();
    q.push_bulk("Work", 1, &jobs, PushOptions::new()).await.expect("push");
    wait_for(Duration::from_secs(60), "2000 jobs done", async || {
        let s = q.stats().await.ok()?;
        let done: usize = db.llen(format!("{name}:done")).await.ok()?;
        (done >= 2000 && s.is_idle()).then_some(())
    })
    .await;
    let _: () = db.set(format!("{name}:stop"), 1).await.expect("stop");
    assert!(w1.wait_exit(Duration::from_secs(20)) && w2.wait_exit(Duration::from_secs(20)), "workers exit cleanly");
    let done = parse(&list(&mut db, &format!("{name}:done")).await);
    let starts = parse(&list(&mut db, &format!("{name}:starts")).await);
    assert_eq!(starts.len(), 2000, "every job started once");
    let mut per_job: HashMap<u32, usize> = HashMap::new();
    for (n, _) in &done {
        *per_job.entry(*n).or_default() += 1;
    }
    assert_eq!(per_job.len(), 2000);
    assert!(per_job.values().all(|&k| k == 1), "every job ran exactly once");
    let by: HashSet<&String> = done.iter().map(|(_, who)| who).collect();
    assert_eq!(by.len(), 2, "both processes ran jobs");
    let mut succeeded = 0;
    for who in by {
        let r = report(&mut db, &name, who).await;
        assert_eq!(r["lease_lost"], 0);
        succeeded += r["succeeded"];
    }
    assert_eq!(succeeded, 2000);
    let s = q.stats().await.expect("stats");
    assert_eq!((s.length, s.pending, s.delayed, s.parked), (0, 0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_a_killed_worker_are_run_by_the_other_after_the_lease() {
    let redis = RedisServer::start();
    let name = unique("kill");
    let q = queue(&redis.url, QueueConfig::new(&name)).await;
    let mut db = con(&redis.url).await;
    let extra = [("DM_CONCURRENCY", "4".to_owned()), ("DM_LEASE_MS", "1000".to_owned())];
    let jobs: Vec<Work> = (0..8).map(|n| Work { n, stubborn: false, sleep_ms: 1500 }).collect();
    q.push_bulk("Work", 1, &jobs, PushOptions::new()).await.expect("push");
    let a = spawn("worker", &redis.url, &name, &extra);
    wait_for(Duration::from_secs(30), "worker A running 4 jobs", async || {
        (db.llen::<_, usize>(format!("{name}:starts")).await.ok()? == 4).then_some(())
    })
    .await;
    a.signal("KILL");
    drop(a);
    let killed_jobs: HashSet<u32> =
        parse(&list(&mut db, &format!("{name}:starts")).await).into_iter().map(|(n, _)| n).collect();
    let mut b = spawn("worker", &redis.url, &name, &extra);
    wait_for(Duration::from_secs(30), "all 8 jobs done", async || {
        let s = q.stats().await.ok()?;
        (db.llen::<_, usize>(format!("{name}:done")).await.ok()? >= 8 && s.is_idle()).then_some(())
    })
    .await;
    let _: () = db.set(format!("{name}:stop"), 1).await.expect("stop");
    assert!(b.wait_exit(Duration::from_secs(20)));
    let done = parse(&list(&mut db, &format!("{name}:done")).await);
    let done_jobs: Vec<u32> = {
        let mut v: Vec<u32> = done.iter().map(|(n, _)| *n).collect();
        v.sort_unstable();
        v
    };
    assert_eq!(done_jobs, (0..8).collect::<Vec<_>>(), "none lost, each done once");
    let b_name = &done[0].1;
    assert!(done.iter().all(|(_, who)| who == b_name), "the survivor ran them all");
    let starts = parse(&list(&mut db, &format!("{name}:starts")).await);
    for n in &killed_jobs {
        assert_eq!(starts.iter().filter(|(m, _)| m == n).count(), 2, "job {n} started by A, re-run by B");
    }
    assert_eq!(q.stats().await.expect("stats").parked, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_loses_its_lease_and_the_other_worker_acks() {
    let redis = RedisServer::start();
    let name = unique("pause");
    let q = queue(&redis.url, QueueConfig::new(&name)).await;
    let mut db = con(&redis.url).await;
    let extra = [("DM_CONCURRENCY", "1".to_owned()), ("DM_LEASE_MS", "1000".to_owned())];
    let a = spawn("worker", &redis.url, &name, &extra);
    q.push("Work", 1, &Work { n: 1, sleep_ms: 4000, stubborn: false }, PushOptions::new()).await.expect("push");
    let starts_key = format!("{name}:starts");
    wait_for(Duration::from_secs(30), "A started the job", async || {
        (db.llen::<_, usize>(&starts_key).await.ok()? == 1).then_some(())
    })
    .await;
    a.signal("STOP");
    let mut b = spawn("worker", &redis.url, &name, &extra);
    wait_for(Duration::from_secs(30), "B claimed the job", async || {
        (db.llen::<_, usize>(&starts_key).await.ok()? == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.signal("CONT");
    let lost = wait_for(Duration::from_secs(10), "A learned it lost the lease", async || {
        let l = list(&mut db, &format!("{name}:lost")).await;
        (!l.is_empty()).then_some(l)
    })
    .await;
    wait_for(Duration::from_secs(15), "B finished", async || {
        let s = q.stats().await.ok()?;
        (db.llen::<_, usize>(format!("{name}:done")).await.ok()? == 1 && s.is_idle()).then_some(())
    })
    .await;
    let _: () = db.set(format!("{name}:stop"), 1).await.expect("stop");
    let mut a = a;
    assert!(a.wait_exit(Duration::from_secs(20)) && b.wait_exit(Duration::from_secs(20)));
    let starts = parse(&list(&mut db, &starts_key).await);
    let (a_name, b_name) = (starts[0].1.clone(), starts[1].1.clone());
    assert_ne!(a_name, b_name);
    assert_eq!(parse(&lost), vec![(1, a_name.clone())]);
    assert_eq!(parse(&list(&mut db, &format!("{name}:done")).await), vec![(1, b_name.clone())]);
    let (ra, rb) = (report(&mut db, &name, &a_name).await, report(&mut db, &name, &b_name).await);
    assert_eq!((ra["succeeded"], ra["lease_lost"]), (0, 1), "A's renewal and ack refused");
    assert_eq!((rb["succeeded"], rb["lease_lost"]), (1, 0), "B's run is the one that acks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_enqueue_each_tick_once_and_a_killed_one_loses_none() {
    let redis = RedisServer::start();
    let name = unique("sched");
    let q = queue(&redis.url, QueueConfig::new(&name)).await;
    let mut db = con(&redis.url).await;
    let s1 = spawn("scheduler", &redis.url, &name, &[]);
    let mut s2 = spawn("scheduler", &redis.url, &name, &[]);
    let stream = q.keys().stream.clone();
    wait_for(Duration::from_secs(30), "three ticks", async || {
        (db.xlen::<_, usize>(&stream).await.ok()? >= 3).then_some(())
    })
    .await;
    // Kill one between ticks: half a second past a whole second.
    let ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").subsec_millis();
    tokio::time::sleep(Duration::from_millis(u64::from((1500 - ms) % 1000))).await;
    let killed_at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_millis();
    s1.signal("KILL");
    drop(s1);
    let before = db.xlen::<_, usize>(&stream).await.expect("xlen");
    wait_for(Duration::from_secs(30), "three more ticks", async || {
        (db.xlen::<_, usize>(&stream).await.ok()? >= before + 3).then_some(())
    })
    .await;
    let _: () = db.set(format!("{name}:stop"), 1).await.expect("stop");
    assert!(s2.wait_exit(Duration::from_secs(20)));
    let entries: Vec<(String, Vec<(String, String)>)> =
        redis::cmd("XRANGE").arg(&stream).arg("-").arg("+").query_async(&mut db).await.expect("xrange");
    let ticks: Vec<u128> = entries
        .iter()
        .map(|(_, f)| {
            let key = &f.iter().find(|(k, _)| k == "key").expect("key").1;
            key.rsplit(':').next().and_then(|t| t.parse().ok()).expect("tick ms")
        })
        .collect();
    let unique_ticks: HashSet<u128> = ticks.iter().copied().collect();
    assert_eq!(unique_ticks.len(), ticks.len(), "no tick twice: {ticks:?}");
    assert!(ticks.windows(2).all(|w| w[1] == w[0] + 1000), "no tick missed: {ticks:?}");
    assert!(ticks.len() >= 6, "{ticks:?}");
    assert!(ticks.iter().filter(|&&t| t > killed_at).count() >= 3, "ticks after the kill: {ticks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_returns_results_computed_in_another_process() {
    let redis = RedisServer::start();
    let name = unique("results");
    let q = queue(&redis.url, QueueConfig::new(&name)).await;
    let mut db = con(&redis.url).await;
    let mut child = spawn("signal-worker", &redis.url, &name, &[]);
    wait_ready(&mut db, &name, 1).await;
    let mut ids = Vec::new();
    for n in 0..20u32 {
        let work = Work { n, sleep_ms: 20, stubborn: false };
        ids.push((n, q.push("Work", 1, &work, PushOptions::new()).await.expect("push").job_id));
    }
    for (n, id) in ids {
        let outcome = q.wait_for_output::<u32>(&id, Duration::from_secs(20)).await.expect("wait");
        assert_eq!(outcome, dual_mode::jobs::JobOutcome::Done(n * 10));
    }
    child.signal("TERM");
    assert!(child.wait_exit(Duration::from_secs(10)), "the worker exits cleanly on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_a_worker_process_finishes_or_hands_back_every_running_job() {
    let redis = RedisServer::start();
    let name = unique("sigterm");
    let q = queue(&redis.url, QueueConfig::new(&name)).await;
    let mut db = con(&redis.url).await;
    let mut child = spawn("signal-worker", &redis.url, &name, &[]);
    wait_ready(&mut db, &name, 1).await;
    // 4 run at once: two stop when told, two ignore it and are aborted before the deadline;
    // the rest wait in the stream.
    let mut ids = Vec::new();
    for n in 0..10u32 {
        let work = Work { n, sleep_ms: 3000, stubborn: n % 2 == 1 };
        ids.push(q.push("Work", 1, &work, PushOptions::new()).await.expect("push").job_id);
    }
    wait_for(Duration::from_secs(10), "4 running", async || {
        (list(&mut db, &format!("{name}:starts")).await.len() == 4).then_some(())
    })
    .await;
    let t = std::time::Instant::now();
    child.signal("TERM");
    assert!(child.wait_exit(Duration::from_secs(10)), "the worker exits cleanly on SIGTERM");
    assert!(t.elapsed() < Duration::from_secs(4), "within the 2 s deadline: {:?}", t.elapsed());
    let reports: HashMap<String, u64> = {
        let consumer = list(&mut db, &format!("{name}:ready")).await.pop().expect("consumer");
        report(&mut db, &name, &consumer).await
    };
    assert_eq!(reports.get("handed_back").copied(), Some(4), "{reports:?}");
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.length + stats.delayed), (0, 10), "every job is back, none held: {stats:?}");
    // Another worker runs them all; the handed-back ones kept their first attempt.
    let fast = Worker::new(
        q.clone(),
        WorkerConfig::new()
            .concurrency(10)
            .block(Duration::from_millis(100))
            .poll_delayed_every(Duration::from_millis(20)),
    )
    .handle(
        "Work",
        typed(|w: Work, job: JobInfo| async move {
            assert_eq!(job.attempt(), 1);
            Ok(w.n)
        }),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(fast.run(async move {
        let _ = rx.await;
    }));
    for id in &ids {
        let outcome = q.wait_for_output::<u32>(id, Duration::from_secs(20)).await.expect("wait");
        assert!(matches!(outcome, dual_mode::jobs::JobOutcome::Done(_)), "{outcome:?}");
    }
    let _ = tx.send(());
    let report = handle.await.expect("task").expect("worker");
    assert_eq!(report.counts.succeeded, 10, "none lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_pushes_of_one_unique_key_from_four_processes_enqueue_one_job() {
    let redis = RedisServer::start();
    let name = unique("unique4");
    let q = queue(&redis.url, QueueConfig::new(&name)).await;
    let mut db = con(&redis.url).await;
    let children: Vec<_> = (0..4)
        .map(|_| spawn("unique-pusher", &redis.url, &name, &[("DM_UNIQUE_KEY", "region:10000002".to_owned())]))
        .collect();
    wait_ready(&mut db, &name, 4).await;
    let _: () = db.set(format!("{name}:go"), 1).await.expect("go");
    wait_for(Duration::from_secs(30), "4 pushers done", async || {
        (list(&mut db, &format!("{name}:finished")).await.len() == 4).then_some(())
    })
    .await;
    drop(children);
    let added: u64 = db.get(format!("{name}:added")).await.expect("added");
    let ids: HashSet<String> = db.smembers(format!("{name}:ids")).await.expect("ids");
    assert_eq!(added, 1, "exactly one of 1,000 pushes added a job");
    assert_eq!(ids.len(), 1, "all 1,000 pushes name that job");
    assert_eq!(q.stats().await.expect("stats").length, 1);
}
