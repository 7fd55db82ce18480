//! The job layer on the Redis deployments it supports besides one plain server: TLS, a Redis
//! Cluster (three primaries, three replicas) and a Sentinel-managed primary, with a primary
//! killed mid-run. This binary re-executes itself as worker processes (the `role` test, which
//! does nothing unless `DM_DEPLOY_ROLE` is set). Runs are recorded on a separate plain server
//! (the ledger), which stays up whatever happens to the queue's Redis.

mod common;
#[path = "common/jobs.rs"]
mod jobs_support;

use std::time::{Duration, Instant};

use common::{RedisServer, eventually};
use dual_mode::jobs::{
    CancelOutcome, JobError, JobInfo, JobOutcome, JobState, PushOptions, Queue, QueueConfig, RateLimit, RateScope,
    RedisTarget, Schedule, Scheduler, SchedulerConfig, Worker, WorkerConfig, typed,
};
use dual_mode::{DualMode, Secret};
use dual_mode_test_support::{PRIMARY_NAME, RedisCluster, RedisSentinels};
use jobs_support::{RoleProcess, Work, con, env, ledger_worker, ran, runs, start, stop, unique, wait_for, wait_state};
use redis::AsyncCommands;

fn worker_config(concurrency: usize) -> WorkerConfig {
    WorkerConfig::new()
        .concurrency(concurrency)
        .lease(Duration::from_secs(2))
        .block(Duration::from_millis(200))
        .claim_every(Duration::from_millis(500))
        .poll_delayed_every(Duration::from_millis(20))
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
}

/// Not a test by itself: the entry point of the worker processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role() {
    let Some(role) = env("DM_DEPLOY_ROLE") else {
        return;
    };
    assert_eq!(role, "cluster-worker", "unknown role");
    let nodes: Vec<String> = env("DM_NODES").expect("DM_NODES").split(',').map(str::to_owned).collect();
    let name = env("DM_QUEUE").expect("DM_QUEUE");
    let ledger = env("DM_LEDGER").expect("DM_LEDGER");
    let q =
        Queue::connect(RedisTarget::cluster(nodes).expect("node urls"), QueueConfig::new(&name).partitions(PARTITIONS))
            .await
            .expect("connect to the cluster");
    let worker = ledger_worker(q, worker_config(16), &ledger, &format!("{name}:runs"), Duration::ZERO).await;
    let mut db = con(&ledger).await;
    let _: () = db.rpush(format!("{name}:ready"), worker.consumer()).await.expect("ready");
    let stop_key = format!("{name}:stop");
    let stop = async move {
        while !db.exists::<_, bool>(&stop_key).await.unwrap_or(false) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    worker.run(stop).await.expect("worker run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rediss_url_pushes_and_runs_a_job() {
    let redis = RedisServer::tls().expect("a TLS redis-server (needs openssl)");
    assert!(redis.url.starts_with("rediss://"));
    let q = Queue::connect(redis.client(), QueueConfig::new(unique("tls"))).await.expect("connect over TLS");
    let w = start(
        Worker::new(q.clone(), worker_config(2))
            .handle("Double", typed(|n: u64, _job: JobInfo| async move { Ok(n * 2) })),
    );
    let pushed = q.push("Double", 1, &21u64, PushOptions::new()).await.expect("push");
    assert_eq!(
        q.wait_for_output::<u64>(&pushed.job_id, Duration::from_secs(10)).await.expect("wait"),
        JobOutcome::Done(42)
    );
    stop(w).await;
}

/// A stalled Redis (stopped with `SIGSTOP`: connections open, nothing answered, as behind a
/// network cut) fails a push with a typed error within the response timeout, and the queue
/// works again once Redis answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_to_a_stalled_redis_fails_within_the_response_timeout() {
    let redis = RedisServer::start();
    let config = QueueConfig::new(unique("stalled")).response_timeout(Duration::from_millis(500));
    let q = Queue::connect(redis.client(), config).await.expect("connect");
    if !redis.signal("STOP") {
        return; // REDIS_URL's server is not ours to stop
    }
    let t = Instant::now();
    let pushed = q.push("Double", 1, &1u64, PushOptions::new()).await;
    let took = t.elapsed();
    assert!(redis.signal("CONT"));
    assert!(matches!(&pushed, Err(e) if e.is_unavailable()), "a push to a stalled redis: {pushed:?}");
    assert!(took < Duration::from_millis(1500), "the push failed after {took:?}, its timeout is 500 ms");
    wait_for(Duration::from_secs(10), "a push once redis answers", async || {
        q.push("Double", 1, &2u64, PushOptions::new()).await.ok()
    })
    .await;
}

/// Every script of the job layer runs on the cluster: Redis 7 refuses a script whose keys are
/// not all of one slot, or that touches a key it did not declare in another slot. Waits are
/// woken by Pub/Sub, whose messages reach every node of a cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_script_keeps_to_one_slot_on_a_cluster() {
    let cluster = RedisCluster::start();
    // The control: this cluster refuses a script over two slots, declared or not.
    let client = redis::cluster::ClusterClient::new(cluster.urls()).expect("urls");
    let mut raw = client.get_async_connection().await.expect("connect");
    let two_slots: redis::RedisResult<redis::Value> =
        redis::Script::new("return redis.call('GET', KEYS[2])").key("{a}x").key("{b}y").invoke_async(&mut raw).await;
    assert!(two_slots.is_err(), "a script over two declared slots: {two_slots:?}");
    let undeclared: redis::RedisResult<redis::Value> =
        redis::Script::new("return redis.call('GET', '{b}y')").key("{a}x").invoke_async(&mut raw).await;
    assert!(undeclared.is_err(), "a script touching an undeclared key of another slot: {undeclared:?}");

    let name = unique("slots");
    let config = QueueConfig::new(&name)
        .max_attempts(2)
        .rate_limit(RateScope::Key("region:".into()), RateLimit::per_second(50))
        .key_concurrency("region:", 1);
    let q = Queue::connect(RedisTarget::cluster(cluster.urls()).expect("urls"), config).await.expect("connect");
    q.ensure_group().await.expect("group");

    // Pushes that no worker runs yet: delayed, cancelled, unique.
    let later = q.push("Double", 1, &1u64, PushOptions::new().delay(Duration::from_secs(60))).await.expect("delayed");
    assert_eq!(q.cancel(&later.job_id).await.expect("cancel"), CancelOutcome::Removed);
    let first =
        q.push("Double", 1, &2u64, PushOptions::new().unique("u", Duration::from_secs(60))).await.expect("push");
    let again =
        q.push("Double", 1, &3u64, PushOptions::new().unique("u", Duration::from_secs(60))).await.expect("push");
    assert!(again.duplicate && again.job_id == first.job_id);
    let bulk = q.push_bulk("Double", 1, &[4u64, 5, 6], PushOptions::new()).await.expect("bulk");
    assert_eq!(q.jobs(JobState::Queued, 0, 10).await.expect("list").1, 4);
    assert_eq!(q.stats().await.expect("stats").length, 4);

    let w = start(
        Worker::new(q.clone(), worker_config(4))
            .handle("Double", typed(|n: u64, _job: JobInfo| async move { Ok(n * 2) }))
            .handle("Fail", typed(|(): (), _job: JobInfo| async { Err::<(), _>(JobError::failed("no")) }))
            .handle("Tick", typed(|(): (), _job: JobInfo| async { Ok(()) })),
    );
    let mut ids: Vec<&str> = bulk.iter().map(|p| p.job_id.as_str()).collect();
    ids.push(&first.job_id);
    wait_state(&q, &ids, JobState::Done, Duration::from_secs(10)).await;

    // Retried, then parked; re-driven and parked again.
    let fail = q.push("Fail", 1, &(), PushOptions::new()).await.expect("push");
    assert!(matches!(
        q.wait_for_output::<()>(&fail.job_id, Duration::from_secs(10)).await,
        Ok(JobOutcome::Parked { .. })
    ));
    let parked = q.parked(10).await.expect("parked");
    assert_eq!(parked.len(), 1);
    assert!(q.redrive(&parked[0].parked_id).await.expect("re-drive").is_some());
    wait_for(Duration::from_secs(10), "the re-driven job to park again", async || {
        (q.stats().await.ok()?.parked == 1).then_some(())
    })
    .await;

    // Rate limits and a key's concurrency: the gate, slot and release scripts.
    let limited = PushOptions::new().rate_key("region:1");
    let gated = q.push_bulk("Double", 1, &[7u64, 8, 9], limited).await.expect("push");
    let gated: Vec<&str> = gated.iter().map(|p| p.job_id.as_str()).collect();
    wait_state(&q, &gated, JobState::Done, Duration::from_secs(10)).await;

    // A schedule's tick script.
    let schedule = Schedule::new("each-second", "* * * * * *", "Tick", 1, &()).expect("schedule");
    let scheduler = Scheduler::new(q.clone(), SchedulerConfig::new()).schedule(schedule);
    let ticks = scheduler.enqueued_counter();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let sched = tokio::spawn(scheduler.run(async move {
        let _ = rx.await;
    }));
    wait_for(Duration::from_secs(5), "a tick", async || {
        (ticks.load(std::sync::atomic::Ordering::Relaxed) > 0).then_some(())
    })
    .await;
    let _ = tx.send(());
    sched.await.expect("scheduler task").expect("scheduler");

    // Woken by the job's end (Pub/Sub), well before the re-read a wait falls back to every second.
    for n in 0..3u64 {
        let quick = q.push("Double", 1, &n, PushOptions::new()).await.expect("push");
        let t = Instant::now();
        assert_eq!(
            q.wait_for_output::<u64>(&quick.job_id, Duration::from_secs(10)).await.expect("wait"),
            JobOutcome::Done(n * 2)
        );
        assert!(t.elapsed() < Duration::from_millis(800), "woken, not found by the 1 s re-read: {:?}", t.elapsed());
    }
    stop(w).await;
}

/// A service whose shared field is a cluster connection, opened from a secret list of nodes.
#[derive(DualMode)]
struct Tally {
    prefix: String,
    #[dual_mode(shared, config = cluster_nodes)]
    redis: redis::cluster_async::ClusterConnection,
    #[dual_mode(secret, env = "DUAL_MODE_TEST_CLUSTER_NODES")]
    cluster_nodes: Secret<String>,
}

impl Tally {
    /// Counts `n` keys up, spread over the cluster's slots.
    async fn count(&self, n: u32) -> redis::RedisResult<u32> {
        let mut con = self.redis.clone();
        let mut total = 0;
        for i in 0..n {
            let _: i64 = con.incr(format!("{}:{i}", self.prefix), 1).await?;
            total += con.get::<_, u32>(format!("{}:{i}", self.prefix)).await?;
        }
        Ok(total)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_connection_is_a_shared_field() {
    let cluster = RedisCluster::start();
    let nodes = cluster.urls().join(",");
    let baseline = cluster.client_count();
    let spec = TallySpec { prefix: unique("tally") };

    // Opened for the enter (a connection to each node), closed by its exit.
    let parts = TallyParts { cluster_nodes: Some(Secret::new(nodes.clone())), ..spec.clone().into() };
    let guard = parts.enter().await.expect("enter");
    assert_eq!(guard.count(20).await.expect("count"), 20);
    assert!(cluster.client_count() > baseline, "the guard's connections");
    guard.exit().await.expect("exit");
    let closed = eventually(baseline, async || cluster.client_count()).await;
    assert_eq!(closed, baseline, "the temporary cluster connection closes");

    // Injected: used, and left open.
    let shared = redis::cluster::ClusterClient::new(cluster.urls()).expect("urls");
    let shared = shared.get_async_connection().await.expect("connect");
    let with_shared = cluster.client_count();
    let parts = TallyParts { redis: Some(shared.clone()), cluster_nodes: Some(Secret::new(nodes)), ..spec.into() };
    let guard = parts.enter().await.expect("enter with the shared connection");
    assert_eq!(guard.opened(), 0);
    assert_eq!(cluster.client_count(), with_shared, "entering with it opened no connection");
    assert_eq!(guard.count(20).await.expect("count"), 40);
    guard.exit().await.expect("exit");
    assert_eq!(cluster.client_count(), with_shared, "the injected connection stays open");
    let mut shared = shared;
    let pong: String = redis::cmd("PING").query_async(&mut shared).await.expect("the injected connection still works");
    assert_eq!(pong, "PONG");
}

/// The partitions of the cluster test's queue.
const PARTITIONS: u16 = 6;

/// 20,000 jobs through one queue of six partitions, spread over the cluster's primaries, with
/// three worker processes: each runs once. Then the primary of one partition is killed mid-run
/// and its replica takes over: every job pushed before the kill still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_runs_each_job_once_across_processes_and_survives_a_primary_kill() {
    const FIRST: u32 = 20_000;
    const SECOND: u32 = 6_000;
    let mut cluster = RedisCluster::start();
    let ledger = RedisServer::start();
    let name = unique("cluster");
    let runs_key = format!("{name}:runs");
    let q = Queue::connect(
        RedisTarget::cluster(cluster.urls()).expect("urls"),
        QueueConfig::new(&name).partitions(PARTITIONS),
    )
    .await
    .expect("connect");
    q.ensure_group().await.expect("group");
    let primaries: std::collections::HashSet<usize> = (0..q.partitions())
        .map(|p| cluster.primary_of(&q.partition_keys(p).expect("partition").stream).expect("a primary"))
        .collect();
    assert_eq!(primaries.len(), 3, "six partitions take even shares of the slots, so every primary serves some");
    let first: Vec<Work> = (0..FIRST).map(|n| Work { n }).collect();
    let t = Instant::now();
    let pushed = q.push_bulk("Work", 1, &first, PushOptions::new()).await.expect("push");
    let pushed_in = t.elapsed();
    let tags: std::collections::HashSet<&str> =
        pushed.iter().filter_map(|p| p.job_id.rsplit_once('.').map(|(_, tag)| tag)).collect();
    assert_eq!(tags.len(), usize::from(PARTITIONS), "jobs placed round-robin reach every partition");

    let envs = [
        ("DM_DEPLOY_ROLE", "cluster-worker".to_owned()),
        ("DM_NODES", cluster.urls().join(",")),
        ("DM_QUEUE", name.clone()),
        ("DM_LEDGER", ledger.url.clone()),
    ];
    let _workers: Vec<RoleProcess> = (0..3).map(|_| RoleProcess::spawn("role", &envs)).collect();
    let mut db = con(&ledger.url).await;
    let t = Instant::now();
    wait_for(Duration::from_secs(120), "the first 20,000 jobs", async || {
        (ran(&mut db, &runs_key).await >= FIRST).then_some(())
    })
    .await;
    let drained_in = t.elapsed();
    let counts = runs(&mut db, &runs_key).await;
    let twice: Vec<(&u32, &u32)> = counts.iter().filter(|(_, r)| **r != 1).collect();
    assert!(twice.is_empty(), "jobs that ran more than once without a kill: {twice:?}");
    let ready: Vec<String> = db.lrange(format!("{name}:ready"), 0, -1).await.expect("ready");
    assert_eq!(ready.len(), 3, "three worker processes");

    // Kill the primary of the first partition's slot mid-run.
    let stream = &q.keys().stream;
    let primary = cluster.primary_of(stream).expect("the queue's primary");
    let second: Vec<Work> = (FIRST..FIRST + SECOND).map(|n| Work { n }).collect();
    q.push_bulk("Work", 1, &second, PushOptions::new()).await.expect("push");
    // Every push above was answered by the primary; on loopback its replica has them a moment
    // later. This pause is the asynchronous replication's window, closed before the kill.
    tokio::time::sleep(Duration::from_millis(200)).await;
    wait_for(Duration::from_secs(60), "a part of the second batch", async || {
        (ran(&mut db, &runs_key).await >= FIRST + SECOND / 10).then_some(())
    })
    .await;
    cluster.kill(primary);
    let killed_at = ran(&mut db, &runs_key).await;
    assert!(killed_at < FIRST + SECOND, "killed mid-run: {killed_at} jobs had run");
    let t = Instant::now();
    wait_for(Duration::from_secs(30), "a replica to take over the queue's slot", async || cluster.primary_of(stream))
        .await;
    let promoted_in = t.elapsed();
    cluster.wait_ok().expect("the cluster agrees");
    wait_for(Duration::from_secs(90), "every job to run after the failover", async || {
        (ran(&mut db, &runs_key).await >= FIRST + SECOND).then_some(())
    })
    .await;
    let counts = runs(&mut db, &runs_key).await;
    let lost: Vec<u32> = (0..FIRST + SECOND).filter(|n| !counts.contains_key(n)).collect();
    let again = counts.values().filter(|&&r| r > 1).count();
    eprintln!(
        "cluster: pushed {FIRST} in {pushed_in:?}, ran them in {drained_in:?} with 3 processes; killed the primary \
         after {killed_at} runs, a replica took over in {promoted_in:?}; {} lost, {again} ran more than once",
        lost.len()
    );
    assert!(lost.is_empty(), "jobs pushed before the kill that never ran: {lost:?}");
    let _: () = db.set(format!("{name}:stop"), 1).await.expect("stop");
}

/// A primary managed by Sentinel is killed mid-run: the sentinels promote its replica, and the
/// queue's producers and workers follow by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_keep_running_through_a_sentinel_failover() {
    const JOBS: u32 = 3_000;
    let mut sentinels = RedisSentinels::start();
    let ledger = RedisServer::start();
    let name = unique("sentinel");
    let runs_key = format!("{name}:runs");
    let target = RedisTarget::sentinel(sentinels.sentinel_urls(), PRIMARY_NAME).expect("sentinel urls");
    let q = Queue::connect(target, QueueConfig::new(&name).response_timeout(Duration::from_secs(2)))
        .await
        .expect("connect");
    q.ensure_group().await.expect("group");
    let jobs: Vec<Work> = (0..JOBS).map(|n| Work { n }).collect();
    q.push_bulk("Work", 1, &jobs, PushOptions::new()).await.expect("push");
    // Every push above was answered by the primary; the replica may not have them yet (the
    // primary starts streaming to a new replica only after its first acknowledgement, up to a
    // second after it synchronized). Waiting closes the asynchronous replication's window, so
    // that the kill below loses no job.
    sentinels.wait_replicated();
    let workers = vec![
        start(ledger_worker(q.clone(), worker_config(8), &ledger.url, &runs_key, Duration::ZERO).await),
        start(ledger_worker(q.clone(), worker_config(8), &ledger.url, &runs_key, Duration::ZERO).await),
    ];
    let mut db = con(&ledger.url).await;
    wait_for(Duration::from_secs(60), "a part of the jobs", async || {
        (ran(&mut db, &runs_key).await >= JOBS / 5).then_some(())
    })
    .await;
    let old = sentinels.primary_port();
    sentinels.kill_primary();
    let t = Instant::now();
    wait_for(Duration::from_secs(30), "the sentinels to promote the replica", async || {
        (sentinels.primary_port() != old).then_some(())
    })
    .await;
    let promoted_in = t.elapsed();
    let before = ran(&mut db, &runs_key).await;
    wait_for(Duration::from_secs(30), "workers to run jobs again", async || {
        (ran(&mut db, &runs_key).await > before).then_some(())
    })
    .await;
    let resumed_in = t.elapsed();
    // A push after the failover reaches the new primary.
    let after = wait_for(Duration::from_secs(10), "a push to the new primary", async || {
        q.push("Work", 1, &Work { n: JOBS }, PushOptions::new()).await.ok()
    })
    .await;
    assert!(!after.duplicate);
    wait_for(Duration::from_secs(60), "every job to run", async || {
        (ran(&mut db, &runs_key).await > JOBS).then_some(())
    })
    .await;
    let counts = runs(&mut db, &runs_key).await;
    let lost: Vec<u32> = (0..=JOBS).filter(|n| !counts.contains_key(n)).collect();
    let again = counts.values().filter(|&&r| r > 1).count();
    eprintln!(
        "sentinel: promoted in {promoted_in:?}, jobs ran again {resumed_in:?} after the kill; {} lost, {again} ran more than once",
        lost.len()
    );
    assert!(lost.is_empty(), "jobs pushed before the kill that never ran: {lost:?}");
    for w in workers {
        stop(w).await;
    }
}
