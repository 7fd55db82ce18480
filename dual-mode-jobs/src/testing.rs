//! Testing jobs in your own tests, with no broker: no server, no port, no file, no environment.
//!
//! - [`run_job`] runs one job of a service in the calling task, as a worker runs an attempt:
//!   the spec goes through the same JSON as a push (a spec that does not round-trip fails the
//!   test, naming the field), the guard opens and closes clients as in a worker, and a client
//!   that does not close fails the test.
//! - [`TestQueue`] is a [`Queue`] on the [in-process backend](Queue::in_process) for the code
//!   under test to push to. In [manual](TestQueue::manual) mode nothing runs: assert what was
//!   enqueued ([`enqueued`](TestQueue::enqueued), [`assert_enqueued`](TestQueue::assert_enqueued),
//!   [`refute_enqueued`](TestQueue::refute_enqueued)), then [`drain`](TestQueue::drain) it with
//!   a real [`Worker`]. In [inline](TestQueue::inline) mode each push runs its job before it
//!   returns.
//!
//! ```
//! use dual_mode_jobs::testing::TestQueue;
//! use dual_mode_jobs::{JobInfo, PushOptions, Worker, handler_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let tq = TestQueue::manual("emails");
//! // The code under test pushes through an ordinary `Queue`.
//! tq.queue().push("Email", 1, &"ada@example.com", PushOptions::new()).await.unwrap();
//! tq.assert_enqueued::<String>("Email", |to| to.ends_with("@example.com")).await;
//!
//! let sent = tq
//!     .drain(|queue, config| Worker::new(queue, config).handle("Email", handler_fn(|_job: JobInfo| async { Ok(()) })))
//!     .await;
//! assert_eq!(sent.succeeded, 1);
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use serde::de::DeserializeOwned;

use crate::envelope::{field, field_of, unique_id};
use crate::error::{DecodeError, JobError, QueueError};
use crate::queue::{PushOptions, Queue, QueueConfig, encode, new_envelope};
use crate::record::JobState;
use crate::worker::{Clients, Job, JobInfo, Worker, WorkerConfig, WorkerCounts, WorkerHandle, decode_spec};
use dual_mode_runtime::{DualMode, Parts, Spec};

/// Runs one job of service `S` with `spec` in the calling task, as a worker runs its first
/// attempt, and returns what the job returned.
///
/// The spec is serialized to JSON and decoded again exactly as a push and a worker do; the
/// service is entered with `clients` (a context's warm clients, or temporary ones opened
/// here), runs under its [`Job::TIMEOUT`], and its guard exits on every path.
///
/// # Errors
/// The job's own [`JobError`], a failed enter (a client that could not be opened), or a
/// `timeout` failure past [`Job::TIMEOUT`].
///
/// # Panics
/// Fails the test when the spec does not round-trip through JSON (the message names the spec
/// type and the field), when a client the guard opened does not close, and when the job
/// panics (its panic goes on, after the clients closed).
pub async fn run_job<S: Job>(spec: &S::Spec, clients: Clients) -> Result<S::Output, JobError> {
    let name = <S::Spec as Spec>::NAME;
    let payload =
        encode(name, spec).unwrap_or_else(|e| panic!("{name} does not serialize: {}", crate::error::chain(&e)));
    let decoded: S::Spec = decode_spec(&payload).unwrap_or_else(|e| panic!("{name} does not round-trip: {e}"));
    let envelope = new_envelope(unique_id(), name, <S::Spec as Spec>::VERSION, payload, &PushOptions::new(), None);
    let job = JobInfo::detached(envelope, "testing", 1);
    let parts = match &clients {
        Clients::Context(ctx) => S::Parts::from_context(decoded, ctx),
        Clients::Temporary => S::Parts::from(decoded),
    };
    let guard = parts.enter().await.map_err(|e| JobError::from(dual_mode_runtime::Error::from(e)))?;
    let body = async {
        match S::TIMEOUT {
            Some(limit) => tokio::time::timeout(limit, guard.run(&job)).await.unwrap_or_else(|_| {
                Err(JobError::failed(format!("timeout: the attempt ran longer than its limit of {limit:?}")))
            }),
            None => guard.run(&job).await,
        }
    };
    let result = dual_mode_runtime::__private::catch_unwind(body).await;
    if let Err(e) = guard.exit().await {
        panic!("a client that {name}'s job opened did not close: {e}");
    }
    match result {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// A queue on the in-process backend for tests: see the [module docs](self).
#[derive(Debug, Clone)]
pub struct TestQueue {
    queue: Queue,
    /// The worker of an inline queue, kept for its drop: it stops with the last clone of the
    /// test queue.
    _worker: Option<Arc<WorkerHandle>>,
}

/// How long an inline push waits for its job, and a drain for the queue to empty.
const PATIENCE: Duration = Duration::from_secs(60);

/// The worker configuration of drains and inline queues: short waits, retries without
/// backoff.
fn quick() -> WorkerConfig {
    // Enough slots that a job waiting for the inline jobs it pushes never starves them.
    WorkerConfig::new()
        .concurrency(16)
        .block(Duration::from_millis(10))
        .poll_delayed_every(Duration::from_millis(5))
        .backoff(Duration::ZERO, Duration::ZERO)
}

/// What a [`TestQueue::drain`] ran, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Drained {
    /// Runs that succeeded.
    pub succeeded: u64,
    /// Failed attempts put back for a retry.
    pub retried: u64,
    /// Entries parked (attempts exhausted, rejected, or not decodable).
    pub parked: u64,
    /// Runs cancelled while they ran.
    pub cancelled: u64,
    /// Attempts stopped at their time limit (each also counted as retried or parked).
    pub timed_out: u64,
}

impl From<WorkerCounts> for Drained {
    fn from(c: WorkerCounts) -> Self {
        Self {
            succeeded: c.succeeded,
            retried: c.retried,
            parked: c.parked,
            cancelled: c.cancelled,
            timed_out: c.timed_out,
        }
    }
}

impl TestQueue {
    /// A queue named `name` whose pushes are recorded and run only by [`drain`](Self::drain).
    ///
    /// # Panics
    /// On a name that no queue may have (empty, or with braces).
    #[must_use]
    pub fn manual(name: &str) -> Self {
        Self::manual_with(QueueConfig::new(name))
    }

    /// [`manual`](Self::manual) with a configuration of your own (rate limits, maximum
    /// attempts, ...).
    ///
    /// # Panics
    /// On a configuration out of range, naming what is wrong.
    #[must_use]
    pub fn manual_with(config: QueueConfig) -> Self {
        let queue = Queue::in_process(config).unwrap_or_else(|e| panic!("test queue: {e}"));
        Self { queue, _worker: None }
    }

    /// A queue named `name` on which each push returns once its job ended: run by the worker
    /// that `worker` builds (from the queue and a configuration to pass on), which runs as
    /// long as a clone of the test queue lives. A delayed push returns at once (its job runs
    /// when due); a job that fails is retried without backoff, then parked.
    ///
    /// ```
    /// use dual_mode_jobs::testing::TestQueue;
    /// use dual_mode_jobs::{JobInfo, JobState, PushOptions, Worker, handler_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let tq = TestQueue::inline("emails", |queue, config| {
    ///     Worker::new(queue, config).handle("Email", handler_fn(|_job: JobInfo| async { Ok(()) }))
    /// });
    /// let pushed = tq.queue().push("Email", 1, &"ada@example.com", PushOptions::new()).await.unwrap();
    /// assert_eq!(tq.queue().job(&pushed.job_id).await.unwrap().unwrap().state, JobState::Done);
    /// # }
    /// ```
    ///
    /// # Panics
    /// Outside a tokio runtime, or on a name no queue may have.
    #[must_use]
    pub fn inline(name: &str, worker: impl FnOnce(Queue, WorkerConfig) -> Worker) -> Self {
        let queue = Queue::in_process(QueueConfig::new(name)).unwrap_or_else(|e| panic!("test queue: {e}"));
        let running = worker(queue.clone(), quick()).spawn();
        let queue = queue.after_push(Arc::new(|queue: Queue, id: String| {
            async move {
                let ended = queue.wait_for_output::<serde_json::Value>(&id, PATIENCE).await;
                if let Err(e) = ended {
                    panic!("inline job {id}: {e}");
                }
            }
            .boxed()
        }));
        Self { queue, _worker: Some(Arc::new(running)) }
    }

    /// The queue to hand to the code under test.
    #[must_use]
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The payloads of the jobs of type `type_name` waiting to run (queued or delayed), in
    /// push order, decoded as `T`.
    ///
    /// # Panics
    /// When a payload of that type does not decode as `T` (the message names the field).
    pub async fn enqueued<T: DeserializeOwned>(&self, type_name: &str) -> Vec<T> {
        let mut out = Vec::new();
        for state in [JobState::Queued, JobState::Delayed, JobState::Retrying] {
            let (records, _) = self.queue.jobs(state, 0, usize::MAX >> 1).await.unwrap_or_else(|e| panic!("{e}"));
            for record in records.iter().filter(|r| r.type_name == type_name) {
                let fields = self.queue.job_fields(record).await.unwrap_or_else(|e| panic!("{e}"));
                let Some(payload) = fields.as_ref().and_then(|f| field_of(f, field::PAYLOAD)) else { continue };
                let value = crate::envelope::decode_json::<T>(payload, type_name)
                    .unwrap_or_else(|e: DecodeError| panic!("an enqueued {type_name}: {e}"));
                out.push((record.enqueued_at, value));
            }
        }
        out.sort_by_key(|(at, _)| *at);
        out.into_iter().map(|(_, v)| v).collect()
    }

    /// The specs of service `S` waiting to run, in push order.
    ///
    /// # Panics
    /// As [`enqueued`](Self::enqueued).
    pub async fn enqueued_specs<S: DualMode>(&self) -> Vec<S::Spec> {
        self.enqueued::<S::Spec>(<S::Spec as Spec>::NAME).await
    }

    /// Fails the test unless a job of `type_name` whose payload satisfies `matches` waits to
    /// run.
    ///
    /// # Panics
    /// When none does; the message lists how many of that type there are.
    pub async fn assert_enqueued<T: DeserializeOwned>(&self, type_name: &str, matches: impl Fn(&T) -> bool) {
        let all = self.enqueued::<T>(type_name).await;
        assert!(all.iter().any(matches), "no enqueued {type_name} job matches ({} of that type enqueued)", all.len());
    }

    /// Fails the test if a job of `type_name` whose payload satisfies `matches` waits to run.
    ///
    /// # Panics
    /// When one does.
    pub async fn refute_enqueued<T: DeserializeOwned>(&self, type_name: &str, matches: impl Fn(&T) -> bool) {
        let all = self.enqueued::<T>(type_name).await;
        let found = all.iter().filter(|p| matches(p)).count();
        assert!(found == 0, "{found} enqueued {type_name} job(s) match, none expected");
    }

    /// Runs what waits in the queue, delayed jobs included (made due now), and what those
    /// jobs push in turn, with the worker that `worker` builds (from the queue and a
    /// configuration to pass on: short waits, retries without backoff); returns what ran by
    /// outcome once nothing is left to run.
    ///
    /// A job that keeps failing is retried at once until its attempts run out, then parked.
    ///
    /// # Panics
    /// When the worker refuses its configuration, or the queue has not drained within a
    /// minute.
    pub async fn drain(&self, worker: impl FnOnce(Queue, WorkerConfig) -> Worker) -> Drained {
        let running = worker(self.queue.clone(), quick()).spawn();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let stats = self.queue.stats().await.unwrap_or_else(|e| panic!("{e}"));
            if stats.is_idle() {
                break;
            }
            // Only when some wait: waking reads every delayed job's record.
            if stats.delayed > 0 {
                wake_delayed(&self.queue).await.unwrap_or_else(|e| panic!("{e}"));
            }
            assert!(running.is_finished() || tokio::time::Instant::now() < deadline, "the test queue did not drain");
            if running.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let report = running.stop().await.unwrap_or_else(|e| panic!("the test queue's worker: {e}"));
        report.counts.into()
    }
}

/// Makes every delayed job of `queue` due now; how many were.
async fn wake_delayed(queue: &Queue) -> Result<usize, QueueError> {
    let mut woken = 0;
    for state in [JobState::Delayed, JobState::Retrying] {
        let (records, _) = queue.jobs(state, 0, usize::MAX >> 1).await?;
        for record in records {
            if let Some((_, store, _)) = queue.store_of(&record.id)
                && store.wake(&record.id).await?
            {
                woken += 1;
            }
        }
    }
    Ok(woken)
}
