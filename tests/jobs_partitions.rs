//! Partitioned queues on a real redis-server and on a Redis Cluster: placement, each job once,
//! uniqueness and key concurrency across partitions, lookups, cancellation, waits, parked
//! entries and pages over every partition, and pauses.

mod common;
#[path = "common/jobs.rs"]
mod jobs_support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::RedisServer;
use dual_mode::jobs::{
    CancelOutcome, JobError, JobInfo, JobOutcome, JobState, PushOptions, Queue, QueueConfig, RedisTarget, Worker,
    handler_fn,
};
use dual_mode_test_support::RedisCluster;
use jobs_support::{con, fast_worker, queue, start, stop, unique, wait_for, wait_state};
use redis::AsyncCommands;

/// The partition a job id or parked id names.
fn tag(id: &str) -> usize {
    id.rsplit_once('.').and_then(|(_, p)| p.parse().ok()).unwrap_or_else(|| panic!("{id} names no partition"))
}

/// A handler that counts its runs per job id and sleeps `work`.
fn counting(runs: &Arc<Mutex<HashMap<String, u32>>>, work: Duration) -> impl dual_mode::jobs::Handler {
    let runs = runs.clone();
    handler_fn(move |job: JobInfo| {
        *runs.lock().unwrap().entry(job.id().to_owned()).or_default() += 1;
        async move {
            tokio::time::sleep(work).await;
            Ok::<_, JobError>(())
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_queue_spreads_its_jobs_and_two_workers_run_each_once() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("spread")).partitions(4)).await;
    let payloads: Vec<u32> = (0..2_000).collect();
    let mut pushed = q.push_bulk("Work", 1, &payloads, PushOptions::new()).await.expect("bulk push");
    for n in 0..200 {
        let keyed = PushOptions::new().idempotency_key(format!("order-{n}"));
        pushed.push(q.push("Work", 1, &n, keyed).await.expect("keyed push"));
    }
    // Round-robin reaches every partition evenly; a key always lands in the same one.
    let mut db = con(&redis.url).await;
    for p in 0..4 {
        let len: usize = db.xlen(&q.partition_keys(p).expect("partition").stream).await.expect("xlen");
        assert!((500..=750).contains(&len), "partition {p} holds {len} of 2,200 entries");
    }
    assert!(q.partition_keys(4).is_none());
    let again = q.push("Work", 1, &7, PushOptions::new().idempotency_key("order-7")).await.expect("push");
    let first = pushed.iter().find(|p| p.idempotency_key == "order-7").expect("pushed");
    assert_eq!(tag(&again.job_id), tag(&first.job_id), "one key, one partition");
    assert_eq!(q.stats().await.expect("stats").length, 2_201);

    let runs = Arc::new(Mutex::new(HashMap::new()));
    let workers = [
        start(Worker::new(q.clone(), fast_worker(8)).handle("Work", counting(&runs, Duration::ZERO))),
        start(Worker::new(q.clone(), fast_worker(8)).handle("Work", counting(&runs, Duration::ZERO))),
    ];
    wait_for(Duration::from_secs(60), "2,201 jobs to run", async || {
        (runs.lock().unwrap().len() == 2_201).then_some(())
    })
    .await;
    wait_for(Duration::from_secs(10), "the queue to be idle", async || q.stats().await.ok()?.is_idle().then_some(()))
        .await;
    for w in workers {
        stop(w).await;
    }
    let twice: Vec<(String, u32)> =
        runs.lock().unwrap().iter().filter(|(_, n)| **n != 1).map(|(k, n)| (k.clone(), *n)).collect();
    assert!(twice.is_empty(), "jobs that ran more than once: {twice:?}");
    // Records are found by id in their partition, and listed over all of them.
    for p in &pushed[..8] {
        let record = q.job(&p.job_id).await.expect("record").expect("kept");
        assert_eq!((record.state, record.id.as_str()), (JobState::Done, p.job_id.as_str()));
    }
    let (done, total) = q.jobs(JobState::Done, 0, 50).await.expect("list");
    assert_eq!((done.len(), total), (50, 2_201));
    let mut seen = HashSet::new();
    let mut after = None;
    loop {
        let page = q.jobs_page(JobState::Done, after.as_deref(), 300).await.expect("page");
        for r in &page.items {
            assert!(seen.insert(r.id.clone()), "{} listed twice", r.id);
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 2_201, "pages over four partitions list every done job once");
    assert!(q.job("no-such-job.9").await.expect("lookup").is_none());
    assert_eq!(q.cancel("no-such-job.9").await.expect("cancel"), CancelOutcome::Unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uniqueness_and_key_concurrency_hold_across_partitions() {
    let redis = RedisServer::start();
    exact_across_partitions(RedisTarget::from(redis.client()), 6).await;
}

/// 1,000 concurrent pushes of one unique key enqueue one job; jobs of one rate key placed in
/// every partition (by their idempotency keys) never run two at once under a concurrency of
/// one, and a slot given back wakes the next waiter in whichever partition it waits.
async fn exact_across_partitions(target: RedisTarget, partitions: u16) {
    let config = QueueConfig::new(unique("exact")).partitions(partitions).key_concurrency("region:", 1);
    let q = Queue::connect(target, config).await.expect("connect");
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..1_000 {
        let q = q.clone();
        tasks.spawn(async move {
            let options = PushOptions::new().unique("report:42", Duration::from_secs(60));
            q.push("Report", 1, &n, options).await.expect("push")
        });
    }
    let pushed = tasks.join_all().await;
    let added: Vec<_> = pushed.iter().filter(|p| !p.duplicate).collect();
    assert_eq!(added.len(), 1, "one of 1,000 pushes of one unique key adds a job");
    assert!(pushed.iter().all(|p| p.job_id == added[0].job_id), "every duplicate names the holder");

    let running = Arc::new(Mutex::new((0u32, 0u32)));
    let region = {
        let running = running.clone();
        handler_fn(move |_job: JobInfo| {
            let running = running.clone();
            async move {
                {
                    let mut r = running.lock().unwrap();
                    r.0 += 1;
                    r.1 = r.1.max(r.0);
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
                running.lock().unwrap().0 -= 1;
                Ok::<_, JobError>(())
            }
        })
    };
    let mut ids = Vec::new();
    for n in 0..40 {
        let options = PushOptions::new().rate_key("region:10000002").idempotency_key(format!("agg-{n}"));
        ids.push(q.push("Aggregate", 1, &n, options).await.expect("push").job_id);
    }
    let parts: HashSet<usize> = ids.iter().map(|id| tag(id)).collect();
    assert!(parts.len() >= 3, "the key's jobs spread over partitions {parts:?}");
    // Leases of 8 s: a waiter that nobody wakes waits that long, so 40 jobs behind one slot
    // would take minutes. (A waiter taken off the waiters in the moment before it reaches the
    // delayed set misses its wake and waits one lease: the margin below allows for that.)
    let config = fast_worker(8).lease(Duration::from_secs(8)).renew_every(Duration::from_secs(1));
    let workers = [
        start(Worker::new(q.clone(), config.clone()).handle("Aggregate", region.clone())),
        start(Worker::new(q.clone(), config).handle("Aggregate", region)),
    ];
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    wait_state(&q, &refs, JobState::Done, Duration::from_secs(30)).await;
    for w in workers {
        stop(w).await;
    }
    let (now, most) = *running.lock().unwrap();
    assert_eq!(now, 0);
    assert_eq!(most, 1, "jobs of one key ran together although its concurrency is 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_cancels_waits_and_parked_entries_go_to_the_partition_an_id_names() {
    let redis = RedisServer::start();
    operations_across_partitions(RedisTarget::from(redis.client()), 3).await;
}

/// A delayed job cancelled in its partition never runs; `wait_for` returns a result from any
/// partition; parked entries carry their partition in their ids, page over every partition in
/// order both ways, and re-drive into their own partition; a pause holds every partition.
async fn operations_across_partitions(target: RedisTarget, partitions: u16) {
    let q = Queue::connect(target, QueueConfig::new(unique("ops")).partitions(partitions).max_attempts(1))
        .await
        .expect("connect");
    let later = q.push("Double", 1, &1, PushOptions::new().delay(Duration::from_secs(60))).await.expect("push");
    assert_eq!(q.cancel(&later.job_id).await.expect("cancel"), CancelOutcome::Removed);
    let fail = Arc::new(Mutex::new(true));
    let worker = {
        let fail = fail.clone();
        Worker::new(q.clone(), fast_worker(4))
            .handle("Double", dual_mode::jobs::typed(|n: u32, _job: JobInfo| async move { Ok::<_, JobError>(n * 2) }))
            .handle(
                "Flaky",
                handler_fn(move |_job: JobInfo| {
                    let fail = *fail.lock().unwrap();
                    async move { if fail { Err(JobError::permanent("not yet")) } else { Ok(()) } }
                }),
            )
    };
    let w = start(worker);
    let mut doubles = Vec::new();
    for n in 0..6u32 {
        doubles.push((n, q.push("Double", 1, &n, PushOptions::new()).await.expect("push").job_id));
    }
    for (n, id) in &doubles {
        match q.wait_for_output::<u32>(id, Duration::from_secs(10)).await.expect("wait") {
            JobOutcome::Done(out) => assert_eq!(out, n * 2),
            other => panic!("job {id}: {other:?}"),
        }
    }
    let parts: HashSet<usize> = doubles.iter().map(|(_, id)| tag(id)).collect();
    assert_eq!(parts.len(), usize::from(partitions), "round-robin over every partition");
    assert_eq!(q.job(&later.job_id).await.expect("record").expect("kept").state, JobState::Cancelled);

    // Parked entries of every partition, paged oldest first and newest first.
    let mut flaky = Vec::new();
    for n in 0..20u32 {
        flaky.push(q.push("Flaky", 1, &n, PushOptions::new()).await.expect("push").job_id);
    }
    let refs: Vec<&str> = flaky.iter().map(String::as_str).collect();
    wait_state(&q, &refs, JobState::Parked, Duration::from_secs(20)).await;
    let mut oldest_first = Vec::new();
    let mut page = q.parked(7).await.expect("parked");
    while let Some(last) = page.last().map(|p| p.parked_id.clone()) {
        oldest_first.extend(page.into_iter().map(|p| p.parked_id));
        page = q.parked_after(&last, 7).await.expect("parked after");
    }
    assert_eq!(oldest_first.len(), 20, "{oldest_first:?}");
    assert_eq!(oldest_first.iter().collect::<HashSet<_>>().len(), 20, "an entry listed twice");
    let mut newest_first = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = q.parked_page(before.as_deref(), 6).await.expect("parked page");
        newest_first.extend(page.items.iter().map(|p| p.parked_id.clone()));
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    newest_first.reverse();
    assert_eq!(newest_first, oldest_first, "both directions list the same entries in one order");
    assert!(q.parked_after("1-0", 1).await.is_err() || partitions == 1, "an untagged cursor is refused");

    // Re-driven entries go back to their own partition and, no longer failing, end done.
    *fail.lock().unwrap() = false;
    let entry = q.parked_entry(&oldest_first[0]).await.expect("entry").expect("parked");
    let job_id = String::from_utf8(entry.field("id").expect("id").to_vec()).expect("utf-8");
    assert_eq!(tag(&entry.parked_id), tag(&job_id), "a job parks in its own partition");
    assert!(q.redrive(&entry.parked_id).await.expect("redrive").is_some());
    assert_eq!(q.redrive_all(100).await.expect("redrive all"), 19);
    wait_state(&q, &refs, JobState::Done, Duration::from_secs(20)).await;
    assert_eq!(q.stats().await.expect("stats").parked, 0);

    // A pause holds every partition; a resume releases them all.
    assert!(q.pause().await.expect("pause"));
    assert!(q.is_paused().await.expect("paused"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut held = Vec::new();
    for n in 0..6u32 {
        held.push(q.push("Double", 1, &n, PushOptions::new()).await.expect("push").job_id);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    for id in &held {
        assert_eq!(q.job(id).await.expect("record").expect("kept").state, JobState::Queued, "{id} ran while paused");
    }
    assert!(q.resume().await.expect("resume"));
    let refs: Vec<&str> = held.iter().map(String::as_str).collect();
    wait_state(&q, &refs, JobState::Done, Duration::from_secs(10)).await;
    stop(w).await;
}

/// The same guarantees on a Redis Cluster, where partitions and the queue's own keys live on
/// different hash slots (and nodes): no script may cross them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_keep_their_guarantees_on_a_cluster() {
    let cluster = RedisCluster::start();
    let target = || RedisTarget::cluster(cluster.urls()).expect("urls");
    exact_across_partitions(target(), 6).await;
    rate_limit_across_partitions(target()).await;
    operations_across_partitions(target(), 6).await;
    reads_gate_where_one_partition(target(), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_ticks_into_the_partition_of_its_unique_key_and_pauses_by_name() {
    use dual_mode::jobs::{Schedule, Scheduler, SchedulerConfig};
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("sched")).partitions(4)).await;
    let options = PushOptions::new().unique("rollup", Duration::from_secs(60));
    let schedule = Schedule::new("nightly-rollup", "* * * * *", "Rollup", 1, &()).expect("schedule");
    let schedule = schedule.push_options(options.clone()).expect("options");
    let scheduler = Scheduler::new(q.clone(), SchedulerConfig::new()).schedule(schedule.clone());
    scheduler.register().await.expect("register");
    let t0 = i64::try_from(std::time::UNIX_EPOCH.elapsed().unwrap().as_secs()).unwrap() / 60 * 60;

    assert!(scheduler.enqueue_tick(&schedule, t0).await.expect("tick").is_some());
    // A push of the same unique key meets the tick's job in its partition.
    let pushed = q.push("Rollup", 1, &(), options).await.expect("push");
    assert!(pushed.duplicate, "the tick's job holds the key: {pushed:?}");
    assert_eq!(q.stats().await.expect("stats").length, 1);
    assert_eq!(scheduler.enqueue_tick(&schedule, t0 + 60).await.expect("tick"), None, "the key is held");
    assert_eq!(scheduler.last_tick(&schedule).await.expect("last"), Some(t0 + 60));

    // Paused by name alone, in whichever partition its state lives: a paused tick is not even
    // marked (a tick that finds the key held is).
    assert!(q.pause_schedule("nightly-rollup").await.expect("pause"));
    assert!(!q.pause_schedule("nightly-rollup").await.expect("pause"), "paused already");
    assert_eq!(scheduler.enqueue_tick(&schedule, t0 + 120).await.expect("tick"), None);
    assert_eq!(scheduler.last_tick(&schedule).await.expect("last"), Some(t0 + 60), "the paused tick was marked");
    let listed = q.schedules().await.expect("schedules");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].paused_since.is_some() && listed[0].last_tick.is_some(), "{listed:?}");
    assert!(q.resume_schedule("nightly-rollup").await.expect("resume"));
    assert!(q.schedules().await.expect("schedules")[0].paused_since.is_none());
    assert!(q.forget_schedule("nightly-rollup").await.expect("forget"));
    assert!(q.schedules().await.expect("schedules").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_of_one_key_holds_across_partitions() {
    let redis = RedisServer::start();
    rate_limit_across_partitions(RedisTarget::from(redis.client())).await;
}

/// 30 jobs of one rate key, limited to 20 starts a second and spread over six partitions,
/// start no faster than the limit allows.
async fn rate_limit_across_partitions(target: RedisTarget) {
    use dual_mode::jobs::{RateLimit, RateScope};
    let config = QueueConfig::new(unique("rate"))
        .partitions(6)
        .rate_limit(RateScope::Key("region:".into()), RateLimit::per_second(20));
    let q = Queue::connect(target, config).await.expect("connect");
    let mut ids = Vec::new();
    for n in 0..30 {
        let options = PushOptions::new().rate_key("region:1").idempotency_key(format!("r-{n}"));
        ids.push(q.push("Work", 1, &n, options).await.expect("push").job_id);
    }
    assert!(ids.iter().map(|id| tag(id)).collect::<HashSet<_>>().len() >= 4, "spread over the partitions");
    let starts = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let starts = starts.clone();
        handler_fn(move |_job: JobInfo| {
            starts.lock().unwrap().push(std::time::Instant::now());
            async { Ok::<_, JobError>(()) }
        })
    };
    let w = start(Worker::new(q.clone(), fast_worker(16)).handle("Work", handler));
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    wait_state(&q, &refs, JobState::Done, Duration::from_secs(30)).await;
    stop(w).await;
    let starts = starts.lock().unwrap().clone();
    let span = *starts.iter().max().unwrap() - *starts.iter().min().unwrap();
    // 30 starts at 20 a second, evenly spaced, take at least 29 intervals of 50 ms; six
    // buckets of their own would let them through in a sixth of that.
    assert!(span >= Duration::from_millis(1_300), "30 starts of one key in {span:?} at 20/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_gates_its_jobs_where_the_queue_has_one_partition() {
    let redis = RedisServer::start();
    reads_gate_where_one_partition(RedisTarget::from(redis.client()), Some(&redis.url)).await;
}

/// A queue of one partition passes the jobs it reads through their gates in the read itself,
/// saving the gate's round trip: rate limits by key and by type, a key's slot, and no gate
/// where no rule applies, all in the buckets and slots that the gate call uses. A queue of
/// several partitions keeps its buckets on its home, in another hash slot: its reads do not
/// gate, and the worker asks the home. Given the server's URL, it also writes a rate key's
/// window by hand as another type: that job's gate fails and it is left to the worker, the
/// read and the other jobs' gates go on.
async fn reads_gate_where_one_partition(target: RedisTarget, url: Option<&str>) {
    use dual_mode::jobs::backend::{Bucket, Connect as _, Gate, GateRules, Passed, Read};
    use dual_mode::jobs::{Lane, RateLimit, RateScope};
    let config = |name: &str| {
        QueueConfig::new(unique(name))
            .rate_limit(RateScope::Key("region:".into()), RateLimit::per_second(2))
            .rate_limit(RateScope::Type("Other".into()), RateLimit::per_second(1000))
            .key_concurrency("solo:", 1)
    };
    let (one, lease) = (config("gated"), Duration::from_secs(30));
    let rules = GateRules::of(&one, lease).expect("the queue has rules");
    let q = Queue::connect(target.clone(), one.clone()).await.expect("connect");
    let jobs: [(&str, Option<&str>); 8] = [
        ("Work", Some("region:1")),
        ("Work", Some("region:1")),
        ("Work", Some("region:1")),
        ("Work", Some("solo:a")),
        ("Work", Some("solo:a")),
        ("Other", None),
        ("Work", Some("free:1")),
        ("Work", Some("region:bad")),
    ];
    if let Some(url) = url {
        let window = format!("{}key:region:bad", q.keys().rate_window_prefix);
        let _: () = jobs_support::con(url).await.hset(&window, "written", "by hand").await.expect("HSET");
    }
    for (n, (type_name, key)) in jobs.iter().enumerate() {
        let options = key.map_or_else(PushOptions::new, |k| PushOptions::new().rate_key(k));
        q.push(type_name, 1, &n, options.idempotency_key(format!("g-{n}"))).await.expect("push");
    }
    let opened = target.clone().open(&one).await.expect("open");
    let part = &opened.parts[0];
    part.ensure_group(lease).await.expect("group");
    let mut reader = part.reader(Duration::from_millis(100), Duration::from_secs(2)).await.expect("reader");
    assert!(reader.gate_reads(&rules), "one partition: its reads gate");
    let Read::Entries(got) = reader.read("c1", 10, Lane::ALL).await.expect("read") else {
        panic!("the queue is not paused")
    };
    let answers: Vec<Option<Passed>> = got.into_iter().map(|(_, _, passed)| passed).collect();
    let wait = |ms| Some(Passed::Wait(Duration::from_millis(ms)));
    let start = Some(Passed::Start);
    // `region:bad`: no answer when its window was spoiled, else a bucket of its own with room.
    let bad = if url.is_some() { None } else { start };
    assert_eq!(
        answers,
        [start, wait(500), wait(1000), start, Some(Passed::NoSlot), start, None, bad],
        "2 a second, spaced 500 ms; one slot of `solo:a`; the type's own limit; no rule for \
         `free:`; a failed gate (a window of another type) answers nothing"
    );
    // The gate call finds the reservations the read made: the next start of `region:1` is
    // 1.5 s away.
    let gate = Gate {
        job_id: "later".into(),
        rate_key: Some("region:1".into()),
        reserved: false,
        buckets: vec![Bucket::new("key:region:1".into(), RateLimit::per_second(2))],
        slots: None,
    };
    let passed = opened.home.gate(&[gate], lease).await.expect("gate");
    assert!(
        matches!(passed[..], [Passed::Wait(d)] if d > Duration::from_secs(1) && d <= Duration::from_millis(1_500)),
        "{passed:?}"
    );
    // Reserved starts draw nothing, but each needs room among the actual starts of the last
    // second: 2 a second with a burst of 1 admit 3, a batch's own starts counted as it goes
    // and a later batch's found in the store.
    let reserved = |job: &str| Gate {
        job_id: job.into(),
        rate_key: Some("burst:1".into()),
        reserved: true,
        buckets: vec![Bucket::new("key:burst:1".into(), RateLimit::per_second(2))],
        slots: None,
    };
    let passed = opened.home.gate(&[reserved("a"), reserved("b"), reserved("c"), reserved("d")], lease).await;
    let second = Passed::Wait(Duration::from_secs(1));
    assert_eq!(passed.expect("gate"), [Passed::Start, Passed::Start, Passed::Start, second]);
    let passed = opened.home.gate(&[reserved("e")], lease).await.expect("gate");
    assert!(matches!(passed[..], [Passed::Wait(d)] if d > Duration::from_millis(500) && d <= Duration::from_secs(1)));

    let split = config("split").partitions(3);
    let rules = GateRules::of(&split, lease).expect("the queue has rules");
    let opened = target.open(&split).await.expect("open");
    for part in &opened.parts {
        let mut reader = part.reader(Duration::from_millis(100), Duration::from_secs(2)).await.expect("reader");
        assert!(!reader.gate_reads(&rules), "a partition's reads leave the gates to the home");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_opened_with_another_number_of_partitions_is_refused() {
    let redis = RedisServer::start();
    let name = unique("count");
    let q = queue(&redis.url, QueueConfig::new(&name).partitions(4)).await;
    let e = Queue::connect(redis.client(), QueueConfig::new(&name)).await.expect_err("1 partition of 4");
    let text = e.to_string();
    assert!(text.contains("has 4 partitions") && text.contains("not 1"), "{text}");
    let e = Queue::connect(redis.client(), QueueConfig::new(&name).partitions(6)).await.expect_err("6 of 4");
    assert!(e.to_string().contains("not 6"), "{e}");
    assert!(Queue::connect(redis.client(), QueueConfig::new(&name).partitions(4)).await.is_ok());
    // A user allowed no writes (a read-only dashboard) can open it, and is refused the same.
    let mut db = con(&redis.url).await;
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "reader", "on", ">secret", "~*", "+@read", "+@connection", "-@write"])
        .query_async(&mut db)
        .await
        .expect("ACL SETUSER");
    let reader = redis.url.replace("redis://", "redis://reader:secret@");
    let reader = || redis::Client::open(reader.as_str()).expect("url");
    let seen = Queue::connect(reader(), QueueConfig::new(&name).partitions(4)).await.expect("read-only, 4 of 4");
    assert_eq!(seen.stats().await.expect("stats").length, 0);
    assert!(Queue::connect(reader(), QueueConfig::new(&name).partitions(2)).await.is_err(), "read-only, 2 of 4");
    // A queue that an earlier version used, without the key, takes the number it is opened with.
    let _: () = db.del(&q.keys().partitions).await.expect("del");
    assert!(Queue::connect(redis.client(), QueueConfig::new(&name).partitions(2)).await.is_ok());
    let e = Queue::connect(redis.client(), QueueConfig::new(&name).partitions(300)).await.expect_err("too many");
    assert!(e.to_string().contains("1 to 256"), "{e}");
    // Partition keys never meet the keys of a queue named like a partition's tag.
    let other = queue(&redis.url, QueueConfig::new(format!("{name}:0"))).await;
    let ours = q.partition_keys(0).expect("partition 0");
    assert_ne!(ours.stream, other.keys().stream);
    assert!(ours.stream.ends_with(":p:stream"), "{}", ours.stream);
    assert_eq!(ours.rate_prefix, format!("dm:{{{name}}}:rate:"), "limits stay the queue's");
}
