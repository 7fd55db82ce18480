//! Where the backends differ on purpose, each difference asserted on both sides.
//!
//! - **Reach.** A Redis or Postgres queue lives in its store: every handle opened with its name, in any
//!   process, is the same queue, and its jobs outlive the processes. An in-process queue
//!   lives in the handle `Queue::in_process` returned and in that handle's clones: a queue
//!   opened again with the same name is another, empty queue, and the jobs go with the last
//!   handle (or the process).

use dual_mode::jobs::{JobInfo, JobState, PushOptions, QueueConfig, QueueStats, Worker, typed};

use crate::harness::{Store, start, state, stop, unique, wait_state};

cases! {
    a_queue_opened_again_by_name_is_the_same_queue_only_where_the_store_is_shared,
}

async fn a_queue_opened_again_by_name_is_the_same_queue_only_where_the_store_is_shared(store: &Store) {
    let config = QueueConfig::new(unique("reach"));
    let q = store.queue(config.clone()).await;
    let pushed = q.push("Unit", 1, &(), PushOptions::new()).await.expect("push");
    let again = store.queue(config).await;
    let runner = match store {
        Store::Redis(_) | Store::Postgres(_) => {
            let stats = again.stats().await.expect("stats");
            assert_eq!((stats.length, stats.pending), (1, 0), "the job is in the store: {stats:?}");
            assert_eq!(state(&again, &pushed.job_id).await, Some(JobState::Queued));
            again
        }
        Store::InProcess => {
            assert_eq!(again.stats().await.expect("stats"), QueueStats::default(), "another queue, empty");
            assert_eq!(state(&again, &pushed.job_id).await, None);
            q.clone()
        }
    };
    // A worker on a handle that holds the job runs it; its first handle sees it done.
    let w = start(
        Worker::new(runner, crate::jobs_support::fast_worker(1))
            .handle("Unit", typed(|(): (), _job: JobInfo| async { Ok(()) })),
    );
    wait_state(&q, &[&pushed.job_id], JobState::Done).await;
    let report = stop(w).await;
    assert_eq!(report.counts.succeeded, 1);
    assert!(q.stats().await.expect("stats").is_idle());
}
