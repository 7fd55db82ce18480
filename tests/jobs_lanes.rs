//! Lanes on a real redis-server, where only Redis can be asked: an entry written with `XADD`
//! naming a lane that does not exist, and a lane's stream deleted by an operator. Lanes,
//! several queues per worker, paused queues and pages of queued jobs are in the conformance
//! suite, `tests/conformance/`.

mod common;
#[path = "common/jobs.rs"]
mod jobs_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::RedisServer;
use dual_mode::jobs::{
    JobError, JobInfo, JobState, Lane, ParkReason, PushOptions, QueueConfig, Worker, WorkerConfig, handler_fn,
};
use jobs_support::{con, queue, start, stop, unique, wait_for};

fn fast_worker(concurrency: usize) -> WorkerConfig {
    jobs_support::fast_worker(concurrency)
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_naming_an_unknown_lane_is_parked_as_malformed() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("bad-lane"))).await;
    let mut con = con(&redis.url).await;
    let _: String = redis::cmd("XADD")
        .arg(&q.keys().stream)
        .arg("*")
        .arg(&["id", "j1", "type", "Work", "v", "1", "attempt", "1", "enq", "0", "lane", "urgent", "payload", "1"])
        .query_async(&mut con)
        .await
        .unwrap();
    let starts = Starts::default();
    let w = start(Worker::new(q.clone(), fast_worker(1)).handle("Work", starts.handler(Duration::ZERO)));
    let parked = wait_for(Duration::from_secs(10), "the entry to be parked", async || {
        q.parked(10).await.ok().filter(|p| !p.is_empty())
    })
    .await;
    stop(w).await;
    assert_eq!(parked[0].reason, Some(ParkReason::MalformedEntry));
    assert!(parked[0].detail.contains("lane") && parked[0].detail.contains("urgent"), "{}", parked[0].detail);
    assert_eq!(starts.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_lane_stream_is_recreated_and_its_next_jobs_run() {
    let redis = RedisServer::start();
    let q = queue(&redis.url, QueueConfig::new(unique("lane-deleted"))).await;
    let starts = Starts::default();
    let w = start(Worker::new(q.clone(), fast_worker(2)).handle("Work", starts.handler(Duration::ZERO)));
    let first = q.push("Work", 1, &1u64, PushOptions::new().lane(Lane::High)).await.unwrap();
    jobs_support::wait_state(&q, &[&first.job_id], JobState::Done, Duration::from_secs(10)).await;

    // An operator deletes the high lane's stream, group and all.
    let mut con = con(&redis.url).await;
    let _: () = redis::cmd("DEL").arg(q.keys().lane_stream(Lane::High)).query_async(&mut con).await.unwrap();
    let next = q.push("Work", 1, &2u64, PushOptions::new().lane(Lane::High)).await.unwrap();
    let normal = q.push("Work", 1, &3u64, PushOptions::new()).await.unwrap();
    // The next read finds the group gone and recreates it; the high job, pushed before that,
    // waits a lease in the delayed set (as for a destroyed group) and runs; the normal one runs.
    jobs_support::wait_state(&q, &[&normal.job_id], JobState::Done, Duration::from_secs(10)).await;
    jobs_support::wait_state(&q, &[&next.job_id], JobState::Done, Duration::from_secs(15)).await;
    stop(w).await;
    assert_eq!(starts.len(), 3);
}
