//! Waiting for a job's end: one listener of ended jobs per queue, shared by its waits.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

use super::Queue;
use crate::backend::Backend;
use crate::job::Job;
use crate::record::{JobOutcome, JobRecord, JobState, WaitError};

/// The listener of ended jobs' ids, shared by this queue's waits.
pub(super) struct Finished {
    tx: broadcast::Sender<Arc<str>>,
    pub(super) task: tokio::task::AbortHandle,
}

impl Queue {
    /// Waits up to `timeout` for the service job `id` to end; its result decodes as
    /// `S::Output`. Woken by the worker's end-of-job notification, not by polling (a re-read
    /// every second covers a notification lost to a reconnect).
    ///
    /// ```no_run
    /// # async fn f<S: dual_mode_jobs::Job>(queue: dual_mode_jobs::Queue, spec: S::Spec)
    /// # -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use dual_mode_jobs::{JobOutcome, PushOptions};
    ///
    /// let pushed = queue.push_spec(&spec, PushOptions::new()).await?;
    /// match queue.wait_for::<S>(&pushed.job_id, Duration::from_secs(30)).await? {
    ///     JobOutcome::Done(output) => { /* S::Output */ }
    ///     JobOutcome::Parked { reason, error } => eprintln!("parked ({reason:?}): {error}"),
    ///     JobOutcome::Cancelled => {}
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// A job's record is kept for [`QueueConfig::keep_waited`](crate::QueueConfig::keep_waited)
    /// at least once a wait began before the job ended, whatever the queue keeps of ended jobs
    /// ([`Keep`](crate::Keep)), so the outcome reaches this wait and any other.
    ///
    /// # Errors
    /// [`WaitError::Timeout`] when it did not end in time, [`WaitError::Unknown`] for an id
    /// without a record, [`WaitError::NotKept`] instead when the queue does not keep every
    /// ended job for a time (the job may have ended and not been kept),
    /// [`WaitError::Result`] when the result does not decode.
    pub async fn wait_for<S: Job>(&self, id: &str, timeout: Duration) -> Result<JobOutcome<S::Output>, WaitError> {
        self.wait_for_output::<S::Output>(id, timeout).await
    }

    /// [`wait_for`](Self::wait_for) for any handler: the result decodes as `T`.
    ///
    /// # Errors
    /// As [`wait_for`](Self::wait_for).
    pub async fn wait_for_output<T: DeserializeOwned>(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<JobOutcome<T>, WaitError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut events = self.finished_events();
        let kept = match self.store_of(id) {
            Some((_, store, _)) => store.keep_waited(id).await?,
            None => false,
        };
        if !kept {
            return Err(self.no_record(id));
        }
        loop {
            let record = self.job(id).await?.ok_or_else(|| self.no_record(id))?;
            if record.state.is_final() {
                return outcome(record);
            }
            let woken = async {
                loop {
                    match events.recv().await {
                        // An empty id: the listener (re)subscribed and may have missed some.
                        Ok(ended) if &*ended == id || ended.is_empty() => return,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => return,
                        Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                    }
                }
            };
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = tokio::time::sleep_until(deadline) => {
                    let record = self.job(id).await?.ok_or_else(|| self.no_record(id))?;
                    if record.state.is_final() {
                        return outcome(record);
                    }
                    return Err(WaitError::Timeout { id: id.to_owned(), timeout, state: record.state });
                }
            }
        }
    }

    /// What a wait answers for a job without a record: unknown, or perhaps not kept.
    fn no_record(&self, id: &str) -> WaitError {
        let config = self.config();
        if config.keeps_every_ended_job() {
            WaitError::Unknown { id: id.to_owned() }
        } else {
            WaitError::NotKept { id: id.to_owned(), keeps: config.kept_of_ended_jobs() }
        }
    }

    /// Why job `id` has no record, in words for an operator (what the dashboard and a CLI
    /// show): never pushed, or ended longer ago than its record is kept, or, in a queue that
    /// keeps only the newest or no records of some end state, ended and not kept.
    ///
    /// ```
    /// use dual_mode_jobs::{Keep, Queue, QueueConfig};
    ///
    /// let queue = Queue::in_process(QueueConfig::new("mail").keep_done(Keep::none()))?;
    /// let why = queue.why_no_record("0b7e");
    /// assert!(why.contains("ended and was not kept") && why.contains("done not kept"), "{why}");
    /// # Ok::<(), dual_mode_jobs::QueueError>(())
    /// ```
    #[must_use]
    pub fn why_no_record(&self, id: &str) -> String {
        let config = self.config();
        if config.keeps_every_ended_job() {
            format!(
                "no job `{id}` in queue `{}`: never pushed, or ended longer ago than its record is kept ({})",
                self.name(),
                config.kept_of_ended_jobs()
            )
        } else {
            format!(
                "no record of job `{id}` in queue `{}`: never pushed, or it ended and was not kept ({})",
                self.name(),
                config.kept_of_ended_jobs()
            )
        }
    }

    /// A receiver of ended jobs' ids; starts the shared listener on first use.
    fn finished_events(&self) -> broadcast::Receiver<Arc<str>> {
        let mut slot = self.inner.finished.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = slot.as_ref().filter(|f| !f.task.is_finished()) {
            return f.tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(1024);
        let task = tokio::spawn(listen(self.inner.home.clone(), tx.clone())).abort_handle();
        *slot = Some(Finished { tx, task });
        rx
    }
}

/// Forwards ended jobs' ids from Redis Pub/Sub, reconnecting with back-off; an empty id after
/// each (re)subscription tells waiters to re-read what they may have missed.
async fn listen(store: Arc<dyn Backend>, tx: broadcast::Sender<Arc<str>>) {
    let mut failures = 0u32;
    loop {
        match store.finished().await {
            Ok(mut stream) => {
                failures = 0;
                let _ = tx.send(Arc::from(""));
                while let Some(id) = stream.next().await {
                    let _ = tx.send(id);
                }
                tracing::debug!("job notifications ended; resubscribing");
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                if failures == 1 {
                    tracing::warn!(error = %crate::error::chain(&e), "cannot subscribe to job notifications; retrying");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100u64.saturating_mul(1 << failures.min(6)))).await;
    }
}

/// The outcome of an ended job's record.
fn outcome<T: DeserializeOwned>(record: JobRecord) -> Result<JobOutcome<T>, WaitError> {
    Ok(match record.state {
        JobState::Parked => JobOutcome::Parked { reason: record.park_reason, error: record.error.unwrap_or_default() },
        JobState::Cancelled => JobOutcome::Cancelled,
        _ => {
            let bytes = record.result.as_deref().unwrap_or(b"null");
            let value = crate::envelope::decode_json(bytes, crate::envelope::short_type_name::<T>())
                .map_err(|source| WaitError::Result { id: record.id.clone(), source })?;
            JobOutcome::Done(value)
        }
    })
}
