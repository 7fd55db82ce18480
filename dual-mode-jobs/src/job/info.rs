//! The job as its handler sees it: ids, attempt, payload, and the lease.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::envelope::Envelope;
use crate::error::DecodeError;

/// The lease of a running job: the job's way to learn that it lost ownership of its entry
/// (another worker claimed it after the lease expired, e.g. because this process was paused).
///
/// After that, whatever the handler does, the worker will not acknowledge the entry: the
/// other worker's run is the one that counts. A handler with side effects checks
/// [`is_lost`](Self::is_lost) before committing them, or selects on [`lost`](Self::lost).
#[derive(Debug, Clone)]
pub struct Lease {
    pub(crate) lost: watch::Receiver<bool>,
    pub(crate) token: u64,
}

impl Lease {
    /// Whether the lease is known to be lost.
    #[must_use]
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves when the lease is lost; never, if it is not.
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        if rx.wait_for(|lost| *lost).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The fencing token: the entry's delivery count when this run got it. A claim by
    /// anyone increments it, so it orders the runs of one entry.
    #[must_use]
    pub fn token(&self) -> u64 {
        self.token
    }
}

/// A job as its handler sees it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct JobInfo {
    pub(crate) inner: Arc<JobInner>,
}

#[derive(Debug)]
pub(crate) struct JobInner {
    pub(crate) envelope: Envelope,
    pub(crate) entry_id: String,
    pub(crate) queue: String,
    pub(crate) consumer: String,
    pub(crate) max_attempts: u32,
    pub(crate) lease: Lease,
    pub(crate) cancel: watch::Receiver<Option<CancelReason>>,
}

/// Why a running job is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelReason {
    /// [`Queue::cancel`](crate::Queue::cancel) was called for it: it ends `cancelled`.
    Requested,
    /// Its worker is shutting down: if it stops, it is handed back to the queue without
    /// counting an attempt and another worker runs it.
    Shutdown,
}

impl JobInfo {
    /// A job outside any worker (the [testing](crate::testing) module's runs): its lease is
    /// never lost and nothing cancels it.
    pub(crate) fn detached(envelope: Envelope, queue: &str, max_attempts: u32) -> Self {
        // The senders are dropped at once: `lost()` then never resolves, nothing is cancelled.
        let (_, lost) = watch::channel(false);
        let (_, cancel) = watch::channel(None);
        Self {
            inner: Arc::new(JobInner {
                entry_id: String::new(),
                queue: queue.to_owned(),
                consumer: String::new(),
                max_attempts,
                lease: Lease { lost, token: 1 },
                cancel,
                envelope,
            }),
        }
    }

    /// The envelope: ids, type name, version, attempt, payload.
    #[must_use]
    pub fn envelope(&self) -> &Envelope {
        &self.inner.envelope
    }

    /// The job id (kept across attempts).
    #[must_use]
    pub fn id(&self) -> &str {
        &self.inner.envelope.id
    }

    /// The idempotency key: key side effects by it to make the handler safe to run twice.
    #[must_use]
    pub fn idempotency_key(&self) -> &str {
        &self.inner.envelope.idempotency_key
    }

    /// This attempt, from 1.
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.inner.envelope.attempt
    }

    /// The attempts this job gets (the job's override, else the queue's maximum).
    #[must_use]
    pub fn max_attempts(&self) -> u32 {
        self.inner.max_attempts
    }

    /// Whether a failure of this attempt parks the job.
    #[must_use]
    pub fn is_last_attempt(&self) -> bool {
        self.attempt() >= self.max_attempts()
    }

    /// The producer's trace context, when the push carried one (see
    /// [`PushOptions::traceparent`](crate::PushOptions::traceparent)): pass it on to
    /// the jobs this one pushes, or to the services it calls.
    #[must_use]
    pub fn traceparent(&self) -> Option<&crate::TraceParent> {
        self.inner.envelope.traceparent.as_ref()
    }

    /// The payload's type name.
    #[must_use]
    pub fn type_name(&self) -> &str {
        &self.inner.envelope.type_name
    }

    /// The priority lane it was pushed to.
    #[must_use]
    pub fn lane(&self) -> crate::Lane {
        self.inner.envelope.lane
    }

    /// The payload's schema version.
    #[must_use]
    pub fn version(&self) -> u32 {
        self.inner.envelope.version
    }

    /// The raw payload bytes.
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        &self.inner.envelope.payload
    }

    /// The stream entry id of this delivery.
    #[must_use]
    pub fn entry_id(&self) -> &str {
        &self.inner.entry_id
    }

    /// The queue's name.
    #[must_use]
    pub fn queue(&self) -> &str {
        &self.inner.queue
    }

    /// The consumer running it.
    #[must_use]
    pub fn consumer(&self) -> &str {
        &self.inner.consumer
    }

    /// The lease, to learn whether this run lost ownership.
    #[must_use]
    pub fn lease(&self) -> &Lease {
        &self.inner.lease
    }

    /// Why this job was asked to stop, if it was.
    #[must_use]
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        *self.inner.cancel.borrow()
    }

    /// Resolves when the job is asked to stop ([`Queue::cancel`](crate::Queue::cancel),
    /// or its worker shutting down); never, if it is not. A handler selects on it to stop
    /// early and cleanly; one that does not is aborted after the grace period
    /// ([`WorkerConfig::cancel_grace`](crate::WorkerConfig::cancel_grace), or the shutdown
    /// deadline).
    ///
    /// ```no_run
    /// # use dual_mode_jobs::{JobError, JobInfo};
    /// # async fn long_work() -> Result<(), JobError> { Ok(()) }
    /// async fn handle(job: JobInfo) -> Result<(), JobError> {
    ///     tokio::select! {
    ///         r = long_work() => r,
    ///         reason = job.cancelled() => Err(JobError::failed(format!("stopped: {reason:?}"))),
    ///     }
    /// }
    /// ```
    pub async fn cancelled(&self) -> CancelReason {
        let mut rx = self.inner.cancel.clone();
        let told = rx.wait_for(Option::is_some).await.map(|reason| *reason);
        match told {
            Ok(reason) => reason.unwrap_or(CancelReason::Requested),
            Err(_) => std::future::pending().await,
        }
    }

    /// Decodes the JSON payload into `T`, the error classified (return it with `?`: a
    /// [`JobError::Decode`](crate::JobError::Decode) parks the entry with its reason).
    ///
    /// # Errors
    /// A [`DecodeError`] naming the type, the field path and the kind of bad payload.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        crate::envelope::decode_json(self.payload(), self.type_name())
    }
}
