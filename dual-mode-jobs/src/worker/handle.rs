//! A worker running in a task of its own, and the handle that stops it.

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{RunReport, Worker};
use crate::error::QueueError;

/// A worker running in a task of its own ([`Worker::spawn`]): stop it and get its report.
///
/// Dropping the handle stops the worker too (gracefully, as [`stop`](Self::stop) does), without
/// waiting for it.
///
/// ```no_run
/// # async fn f(worker: dual_mode_jobs::Worker) -> Result<(), dual_mode_jobs::QueueError> {
/// let running = worker.spawn();
/// // ... push jobs, wait for them ...
/// let report = running.stop().await?;
/// println!("ran {} jobs", report.counts.succeeded);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping the handle stops the worker"]
pub struct WorkerHandle {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<RunReport, QueueError>>,
}

impl Worker {
    /// Runs the worker in a task on the current tokio runtime until its handle's
    /// [`stop`](WorkerHandle::stop) (or the handle's drop); see [`Worker::run`].
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn(self) -> WorkerHandle {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(self.run(async move {
            // A dropped sender stops the worker as a sent stop does.
            let _ = stopped.await;
        }));
        WorkerHandle { stop: Some(stop), task }
    }
}

impl WorkerHandle {
    /// Stops the worker (as [`Worker::run`]'s shutdown does: running jobs are told, waited for
    /// up to the shutdown deadline, and handed back) and returns its report.
    ///
    /// # Errors
    /// What [`Worker::run`] returned: a configuration out of range, or the store failing at
    /// the start; [`QueueError::WorkerAborted`] if the worker's task was aborted (its runtime
    /// shut down).
    pub async fn stop(mut self) -> Result<RunReport, QueueError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join().await
    }

    /// Waits for the worker to end without stopping it: it ends by itself only when it could
    /// not start (see [`stop`](Self::stop) for the errors).
    ///
    /// # Errors
    /// As [`stop`](Self::stop).
    pub async fn join(mut self) -> Result<RunReport, QueueError> {
        match (&mut self.task).await {
            Ok(report) => report,
            Err(e) => match e.try_into_panic() {
                // The worker's own panic goes on in the caller, as a thread's join would show it.
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(_) => Err(QueueError::WorkerAborted),
            },
        }
    }

    /// Whether the worker's task has ended.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}
