//! Priority lanes, several queues per worker, paused queues, and the operator's pages of
//! queued jobs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dual_mode::jobs::{
    CancelOutcome, JobError, JobInfo, JobState, Lane, PushOptions, Queue, QueueConfig, Queues, Worker, WorkerConfig,
    handler_fn,
};

use crate::harness::{Store, queued, start, stop, unique, wait_for, wait_state};

cases! {
    a_high_lane_job_overtakes_a_low_lane_backlog_of_ten_thousand,
    a_high_lane_backlog_leaves_the_lower_lanes_their_share,
    one_worker_drains_two_queues_by_weight_or_in_strict_order,
    a_worker_refuses_an_empty_or_doubled_queue_list_or_a_lane_share_of_one,
    a_paused_queue_starts_nothing_until_resumed,
    lanes_survive_retries_cancellation_listing_and_re_drive,
    operator_pages_list_queued_jobs_lane_after_lane,
}

fn fast_worker(concurrency: usize) -> WorkerConfig {
    crate::jobs_support::fast_worker(concurrency)
        .block(Duration::from_millis(200))
        .backoff(Duration::from_millis(20), Duration::from_millis(50))
}

/// What a handler saw start: the queue, the lane, and when.
#[derive(Clone, Default)]
struct Starts(Arc<Mutex<Vec<(String, Lane, Instant)>>>);

impl Starts {
    /// A handler that records its start and sleeps `work`.
    fn handler(&self, work: Duration) -> impl dual_mode::jobs::Handler {
        let starts = self.clone();
        handler_fn(move |job: JobInfo| {
            starts.0.lock().unwrap().push((job.queue().to_owned(), job.lane(), Instant::now()));
            async move {
                tokio::time::sleep(work).await;
                Ok::<_, JobError>(())
            }
        })
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn snapshot(&self) -> Vec<(String, Lane, Instant)> {
        self.0.lock().unwrap().clone()
    }

    /// How many started from queue `name`.
    fn of(&self, name: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|s| s.0 == name).count()
    }
}

async fn push_many(q: &Queue, n: usize, lane: Lane) {
    let payloads: Vec<u64> = (0..n as u64).collect();
    for chunk in payloads.chunks(1000) {
        q.push_bulk("Work", 1, chunk, PushOptions::new().lane(lane)).await.expect("push");
    }
}

async fn a_high_lane_job_overtakes_a_low_lane_backlog_of_ten_thousand(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("overtake"))).await;
    push_many(&q, 10_000, Lane::Low).await;
    let starts = Starts::default();
    let concurrency = 8;
    let w = start(
        Worker::new(q.clone(), fast_worker(concurrency)).handle("Work", starts.handler(Duration::from_millis(1))),
    );
    wait_for(Duration::from_secs(20), "the low lane to drain a little", async || (starts.len() >= 300).then_some(()))
        .await;

    let backlog = q.stats().await.expect("stats");
    let waiting = backlog.length - backlog.pending;
    let urgent = q.push("Work", 1, &0u64, PushOptions::new().lane(Lane::High)).await.expect("push high");
    // From when the push returned (the job stored): the push's own time, long on a loaded
    // machine, is not the lanes' to answer for.
    let pushed = Instant::now();
    wait_state(&q, &[&urgent.job_id], JobState::Done).await;
    let seen = starts.snapshot();
    let at = seen.iter().position(|s| s.1 == Lane::High).expect("high ran");
    let low_before = seen[..at].iter().filter(|s| s.1 == Lane::Low && s.2 >= pushed).count();
    let left = q.stats().await.expect("stats").length;
    println!(
        "{}: high-lane job started {:.2} ms after its push, behind {waiting} low-lane jobs not yet delivered; {low_before} low-lane starts in between",
        store.name(),
        (seen[at].2 - pushed).as_secs_f64() * 1000.0
    );
    // Reads in flight when it was pushed, and at most one read led by the low lane, may start
    // low-lane jobs first: never the backlog.
    assert!(low_before <= 3 * concurrency, "{low_before} low-lane jobs started before the high-lane one");
    assert!(waiting > 5_000 && left > 5_000, "the backlog was still there ({waiting} waiting, {left} left)");

    // The low lane goes on after it.
    let done_before = starts.len();
    wait_for(Duration::from_secs(20), "the low lane to progress", async || {
        (starts.len() > done_before + 100).then_some(())
    })
    .await;
    stop(w).await;
}

async fn a_high_lane_backlog_leaves_the_lower_lanes_their_share(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("shares"))).await;
    for lane in Lane::ALL {
        push_many(&q, 2_000, lane).await;
    }
    let starts = Starts::default();
    let w = start(Worker::new(q.clone(), fast_worker(4)).handle("Work", starts.handler(Duration::ZERO)));
    wait_for(Duration::from_secs(30), "1,000 starts", async || (starts.len() >= 1_000).then_some(())).await;
    stop(w).await;
    let first: Vec<Lane> = starts.snapshot().iter().take(1_000).map(|s| s.1).collect();
    let share = |lane| first.iter().filter(|l| **l == lane).count();
    let (high, normal, low) = (share(Lane::High), share(Lane::Normal), share(Lane::Low));
    println!("{}: first 1,000 starts with all lanes backlogged: high {high}, normal {normal}, low {low}", store.name());
    // The defaults: the normal lane leads a fifth of the reads, the low lane a twentieth.
    assert!(high >= 600, "high lane first: {high}");
    assert!(normal >= 100, "normal lane share: {normal}");
    assert!(low >= 20, "low lane share: {low}");
}

async fn one_worker_drains_two_queues_by_weight_or_in_strict_order(store: &Store) {
    let a = store.queue(QueueConfig::new(unique("weight-a"))).await;
    let b = store.queue(QueueConfig::new(unique("weight-b"))).await;
    push_many(&a, 1_000, Lane::Normal).await;
    push_many(&b, 1_000, Lane::Normal).await;
    let starts = Starts::default();
    let queues = Queues::weighted([(a.clone(), 3), (b.clone(), 1)]);
    let w = start(Worker::new(queues, fast_worker(4)).handle("Work", starts.handler(Duration::ZERO)));
    wait_for(Duration::from_secs(30), "800 starts", async || (starts.len() >= 800).then_some(())).await;
    let first: Vec<String> = starts.snapshot().iter().take(800).map(|s| s.0.clone()).collect();
    let from_a = first.iter().filter(|q| **q == a.name()).count();
    println!("{}: weights 3:1, first 800 starts: {from_a} from the first queue", store.name());
    assert!((520..=680).contains(&from_a), "expected about 600 of 800 from the weight-3 queue, got {from_a}");
    // Both drain completely, each job once.
    wait_for(Duration::from_secs(30), "both queues to drain", async || (starts.len() >= 2_000).then_some(())).await;
    for q in [&a, &b] {
        wait_for(Duration::from_secs(10), "no entry left", async || q.stats().await.ok()?.is_idle().then_some(()))
            .await;
    }
    stop(w).await;
    assert_eq!(starts.len(), 2_000, "each job ran once");

    // Strict order: the second queue waits while the first has a backlog.
    push_many(&a, 500, Lane::Normal).await;
    push_many(&b, 500, Lane::Normal).await;
    let starts = Starts::default();
    let w = start(
        Worker::new(Queues::strict([a.clone(), b.clone()]), fast_worker(4))
            .handle("Work", starts.handler(Duration::ZERO)),
    );
    wait_for(Duration::from_secs(30), "1,000 starts", async || (starts.len() >= 1_000).then_some(())).await;
    stop(w).await;
    let order: Vec<String> = starts.snapshot().iter().map(|s| s.0.clone()).collect();
    let first_b = order.iter().position(|q| *q == b.name()).expect("b ran");
    assert!(first_b >= 490, "the second queue started before the first drained (at start {first_b})");
}

async fn a_worker_refuses_an_empty_or_doubled_queue_list_or_a_lane_share_of_one(store: &Store) {
    let a = store.queue(QueueConfig::new(unique("refuse"))).await;
    let run = |w: Worker| async move { w.run(std::future::ready(())).await.expect_err("refused").to_string() };
    let e = run(Worker::new(Queues::strict([]), fast_worker(1))).await;
    assert!(e.contains("at least one queue"), "{e}");
    let e = run(Worker::new(Queues::strict([a.clone(), a.clone()]), fast_worker(1))).await;
    assert!(e.contains("given twice") && e.contains(a.name()), "{e}");
    let e = run(Worker::new(Queues::weighted([(a.clone(), 0)]), fast_worker(1))).await;
    assert!(e.contains("weight 0"), "{e}");
    let e = run(Worker::new(a.clone(), fast_worker(1).lane_shares(1, 20))).await;
    assert!(e.contains("lane_shares"), "{e}");
}

/// The worker reads the paused queue first and a second queue after it: the second queue's
/// jobs running shows that the worker reads, and skips the paused one.
async fn a_paused_queue_starts_nothing_until_resumed(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("paused"))).await;
    let witness = store.queue(QueueConfig::new(unique("witness"))).await;
    assert!(q.pause().await.unwrap(), "it was running");
    assert!(!q.pause().await.unwrap(), "paused already");
    assert!(q.is_paused().await.unwrap());
    assert!(q.overview().await.unwrap().paused_since.is_some());
    push_many(&q, 20, Lane::Normal).await;
    let starts = Starts::default();
    let queues = Queues::strict([q.clone(), witness.clone()]);
    let w = start(Worker::new(queues, fast_worker(4)).handle("Work", starts.handler(Duration::ZERO)));
    for round in 1..=3 {
        push_many(&witness, 5, Lane::Normal).await;
        wait_for(Duration::from_secs(10), "the other queue's jobs", async || {
            (starts.of(witness.name()) == 5 * round).then_some(())
        })
        .await;
    }
    assert_eq!(starts.of(q.name()), 0, "a paused queue started jobs");
    assert_eq!(q.stats().await.unwrap().length, 20);

    assert!(q.resume().await.unwrap(), "it was paused");
    assert!(!q.is_paused().await.unwrap());
    wait_for(Duration::from_secs(10), "20 starts after resuming", async || (starts.of(q.name()) == 20).then_some(()))
        .await;
    stop(w).await;
}

async fn lanes_survive_retries_cancellation_listing_and_re_drive(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("lane-keep")).max_attempts(2)).await;
    let high_lane = async |q: &Queue| queued(q).await.iter().filter(|r| r.lane == Lane::High).count();

    // Queued in the high lane: listed first, counted, cancelled out of the high lane.
    let normal = q.push("Fail", 1, &1u64, PushOptions::new()).await.unwrap();
    let high = q.push("Fail", 1, &2u64, PushOptions::new().lane(Lane::High)).await.unwrap();
    let gone = q.push("Fail", 1, &3u64, PushOptions::new().lane(Lane::High)).await.unwrap();
    assert_eq!(high_lane(&q).await, 2);
    assert_eq!(q.stats().await.unwrap().length, 3, "stats count every lane");
    let (listed, total) = q.jobs(JobState::Queued, 0, 10).await.unwrap();
    assert_eq!(total, 3);
    let ids: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [high.job_id.as_str(), gone.job_id.as_str(), normal.job_id.as_str()], "high lane listed first");
    assert_eq!(listed[0].lane, Lane::High);
    assert_eq!(q.cancel(&gone.job_id).await.unwrap(), CancelOutcome::Removed);
    assert_eq!(high_lane(&q).await, 1, "the cancelled job left the high lane");
    assert_eq!(q.stats().await.unwrap().length, 2);

    // A failing high-lane job is retried in the high lane, then parked; re-driven, it goes
    // back to the high lane.
    let lanes = Arc::new(Mutex::new(Vec::new()));
    let seen = lanes.clone();
    let handler = handler_fn(move |job: JobInfo| {
        seen.lock().unwrap().push((job.id().to_owned(), job.attempt(), job.lane()));
        async move { Err::<(), _>(JobError::failed("always")) }
    });
    let w = start(Worker::new(q.clone(), fast_worker(2)).handle("Fail", handler));
    wait_state(&q, &[&high.job_id, &normal.job_id], JobState::Parked).await;
    stop(w).await;
    let runs: Vec<(u32, Lane)> =
        lanes.lock().unwrap().iter().filter(|r| r.0 == high.job_id).map(|r| (r.1, r.2)).collect();
    assert_eq!(runs, [(1, Lane::High), (2, Lane::High)]);
    let parked = q.parked(10).await.unwrap();
    let entry = parked.iter().find(|p| p.envelope().is_ok_and(|e| e.id == high.job_id)).expect("parked");
    q.redrive(&entry.parked_id).await.unwrap().expect("re-driven");
    let requeued = queued(&q).await;
    assert_eq!(requeued.len(), 1);
    assert_eq!(
        (requeued[0].id.as_str(), requeued[0].lane),
        (high.job_id.as_str(), Lane::High),
        "re-driven into the high lane"
    );
    assert_eq!(q.job(&high.job_id).await.unwrap().unwrap().lane, Lane::High);
}

async fn operator_pages_list_queued_jobs_lane_after_lane(store: &Store) {
    let q = store.queue(QueueConfig::new(unique("lane-pages"))).await;
    let mut want = Vec::new();
    for lane in [Lane::Normal, Lane::Normal, Lane::High, Lane::High, Lane::Low] {
        want.push((lane, q.push("Work", 1, &0u64, PushOptions::new().lane(lane)).await.unwrap().job_id));
    }
    want.sort_by_key(|(lane, _)| *lane);
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = q.jobs_page(JobState::Queued, after.as_deref(), 2).await.unwrap();
        pages += 1;
        seen.extend(page.items.iter().map(|r| (r.lane, r.id.clone())));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, want, "high, then normal, then low, each in queue order");
    assert!(pages <= 4, "{pages} pages for 5 jobs by 2");
    let high = q.job(&want[0].1).await.unwrap().unwrap();
    let fields = q.job_fields(&high).await.unwrap().expect("a queued high-lane job's entry");
    assert!(fields.iter().any(|(k, v)| k == b"lane" && v == b"high"));
}
