//! Job control on a real redis-server, where only Redis can be asked: entries left pending for
//! no consumer by an operator's `XGROUP DELCONSUMER` and consumers of crashed workers, swept
//! back and pruned; an entry written with more fields than a parked entry keeps. Records,
//! waits, cancellation, time limits, shutdown and unique keys are in the conformance suite,
//! `tests/conformance/`.

mod common;
#[path = "common/jobs.rs"]
mod jobs_support;

use std::time::Duration;

use common::RedisServer;
use dual_mode::jobs::{JobInfo, JobState, ParkReason, PushOptions, QueueConfig, Worker, WorkerConfig, typed};
use jobs_support::{con, queue, start, stop, unique, wait_for};

fn fast_worker() -> WorkerConfig {
    jobs_support::fast_worker(4)
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .shutdown_deadline(Duration::from_secs(5))
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
        jobs_support::wait_state(&q, &[id], JobState::Done, Duration::from_secs(10)).await;
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
