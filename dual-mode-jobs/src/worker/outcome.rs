//! One run of one entry: execute the handler within its limits (lease, cancellation, time
//! limit, shutdown), then write its outcome (ack, retry, wait, park, cancel, hand back) and
//! its record in one fencing script.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, oneshot, watch};
use tokio::time::Instant;
use tracing::Instrument as _;

use super::loops::{AckRequest, Delivery, GateRequest};
use super::{CancelReason, ErasedHandler, JobInfo, Lease, Registration, Running, Shared, WorkerStats};
use crate::backend::{DoneRun, Ending, Gate, Passed, RunRef, Written};
use crate::envelope::millis;
use crate::envelope::{Envelope, RawFields, unix_ms};
use crate::error::{JobError, ParkReason, chain, failed};
use crate::job::JobInner;
use crate::metrics::{JobMetrics, UNKNOWN_TYPE};
use crate::queue::RAW_PREFIX;
use dual_mode_runtime::__private::{catch_unwind, panic_message};

/// At most this many original field pairs are copied into a parked entry.
const MAX_PARKED_FIELDS: usize = 1000;

/// How one run ended, for the counters, the span and the logs.
#[derive(Clone, Copy)]
enum Outcome {
    Succeeded,
    Retried,
    Waiting,
    RateLimited,
    Parked(ParkReason),
    Cancelled,
    HandedBack,
    LeaseLost,
    Unfinished,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Retried => "retried",
            Self::Waiting => "waiting",
            Self::RateLimited => "rate_limited",
            Self::Parked(_) => "parked",
            Self::Cancelled => "cancelled",
            Self::HandedBack => "handed_back",
            Self::LeaseLost => "lease_lost",
            Self::Unfinished => "unfinished",
        }
    }
}

/// What a handler's future gave: its result as JSON or its error, or the payload of its panic.
type HandlerResult = Result<Result<Vec<u8>, JobError>, Box<dyn std::any::Any + Send>>;

/// Why a handler was stopped before it returned.
enum Stopped {
    LeaseLost,
    Cancelled,
    TimedOut(Duration),
    Shutdown,
}

pub(super) async fn run_job(shared: Arc<Shared>, d: Delivery) {
    let Delivery { stream, entry_id, fields, token, permit, held, gated } = d;
    let _held = held;
    let queue = shared.queue_of(stream).queue.name();
    let lane = shared.streams[stream].lane;
    let permit = std::sync::Mutex::new(Some(permit));
    let started_ms = unix_ms(std::time::SystemTime::now());
    let new_run = |job, attempt, type_name: &str| Run {
        shared: &shared,
        stream,
        entry_id: &entry_id,
        token,
        fields: &fields,
        job,
        permit: &permit,
        started_ms,
        attempt,
        gated,
        slot: std::sync::OnceLock::new(),
        metrics: JobMetrics::of(queue, type_name),
    };
    let env = match Envelope::from_fields(&fields) {
        Ok(env) => env,
        Err(e) => {
            let span = tracing::warn_span!("job", %queue, %lane, entry = %entry_id, outcome = "parked");
            async {
                let run = new_run(None, 1, UNKNOWN_TYPE);
                let outcome = run.park(ParkReason::MalformedEntry, &e.to_string()).await;
                run.count(outcome);
            }
            .instrument(span)
            .await;
            return;
        }
    };
    let span = tracing::info_span!(
        "job",
        %queue,
        %lane,
        id = %env.id,
        entry = %entry_id,
        r#type = %env.type_name,
        attempt = env.attempt,
        outcome = tracing::field::Empty,
        traceparent = tracing::field::Empty,
    );
    if let Some(tp) = &env.traceparent {
        crate::trace::continue_in(&span, tp);
    }
    async {
        let handler = shared.handlers.get(&env.type_name).cloned();
        let type_name = if handler.is_some() { env.type_name.as_str() } else { UNKNOWN_TYPE };
        let run = new_run(Some((env.id.clone(), env.unique.clone())), env.attempt, type_name);
        let outcome = run.execute(env, handler).await;
        run.count(outcome);
        tracing::Span::current().record("outcome", outcome.as_str());
        match outcome {
            Outcome::Succeeded
            | Outcome::Retried
            | Outcome::Waiting
            | Outcome::RateLimited
            | Outcome::Cancelled
            | Outcome::HandedBack => {
                tracing::info!(outcome = outcome.as_str(), "job finished");
            }
            Outcome::Parked(reason) => {
                tracing::warn!(outcome = outcome.as_str(), %reason, "job finished");
            }
            Outcome::LeaseLost | Outcome::Unfinished => {
                tracing::warn!(outcome = outcome.as_str(), "job finished");
            }
        }
    }
    .instrument(span)
    .await;
}

/// One run of one entry by this consumer.
struct Run<'a> {
    shared: &'a Shared,
    /// Its entry's stream in [`Shared::streams`].
    stream: usize,
    entry_id: &'a str,
    token: u64,
    fields: &'a RawFields,
    /// The job id and unique key, when the entry is an envelope.
    job: Option<(String, Option<String>)>,
    /// The concurrency slot, given up once the handler is done (see [`Run::release`]).
    permit: &'a std::sync::Mutex<Option<OwnedSemaphorePermit>>,
    /// When the run started, in ms since the epoch.
    started_ms: u64,
    /// The attempt it runs (1 until the envelope is read).
    attempt: u32,
    /// What its gate answered when its read passed it through.
    gated: Option<Passed>,
    /// The rate key whose slot this run holds, once its gate gave it one.
    slot: std::sync::OnceLock<String>,
    /// Its queue and type's metrics.
    metrics: JobMetrics,
}

impl Run<'_> {
    /// The queue of the entry.
    fn queue(&self) -> &crate::Queue {
        &self.shared.queue_of(self.stream).queue
    }

    fn count(&self, outcome: Outcome) {
        self.metrics.ended(outcome.as_str(), if let Outcome::Parked(reason) = outcome { Some(reason) } else { None });
        let s = &self.shared.stats;
        WorkerStats::bump(match outcome {
            Outcome::Succeeded => &s.succeeded,
            Outcome::Retried => &s.retried,
            Outcome::Waiting => &s.waited,
            Outcome::RateLimited => &s.rate_limited,
            Outcome::Parked(_) => &s.parked,
            Outcome::Cancelled => &s.cancelled,
            Outcome::HandedBack => &s.handed_back,
            Outcome::LeaseLost => &s.lease_lost,
            Outcome::Unfinished => &s.unfinished,
        });
    }

    fn run_ref(&self) -> RunRef<'_> {
        RunRef {
            entry_id: self.entry_id,
            token: self.token,
            job: self.job.as_ref().map(|(id, unique)| (id.as_str(), unique.as_deref())),
        }
    }

    /// Runs `env` with `handler`, the one registered for its type, if any.
    async fn execute(&self, env: Envelope, handler: Option<Arc<dyn ErasedHandler>>) -> Outcome {
        let shared = self.shared;
        // Passed at its read: it holds its key's slot from there. A run that ends before its
        // handler (below) gives the slot back; what it drew from its rate limits stays drawn
        // (a reservation is not given back, as for a job that starts and fails at once).
        if self.gated == Some(Passed::Start) {
            self.hold_slot(&env);
        }
        if self.token > u64::from(shared.config.max_deliveries) {
            let detail = format!("delivered {} times (maximum {})", self.token, shared.config.max_deliveries);
            self.release_slot(&env.id).await;
            return self.park(ParkReason::TooManyDeliveries, &detail).await;
        }
        let Some(handler) = handler else {
            let detail = format!("no handler for type `{}` in this worker", env.type_name);
            self.release_slot(&env.id).await;
            return self.park(ParkReason::UnknownType, &detail).await;
        };
        if shared.stopping.borrow().is_some() {
            // Received as the worker began to stop: another worker runs it now.
            self.release_slot(&env.id).await;
            return self.hand_back(&env).await;
        }
        if let Some(outcome) = self.gate(&env).await {
            return outcome;
        }
        let max_attempts = env.max_attempts.unwrap_or(self.queue().config().max_attempts).max(1);
        let limit = env.timeout_ms.map(Duration::from_millis).or_else(|| handler.time_limit());
        let (lost_tx, lost_rx) = watch::channel(false);
        let lost_tx = Arc::new(lost_tx);
        let (cancel_tx, cancel_rx) = watch::channel(None);
        let cancel_tx = Arc::new(cancel_tx);
        let lease = Lease { lost: lost_rx, token: self.token };
        let job = JobInfo {
            inner: Arc::new(JobInner {
                envelope: env,
                entry_id: self.entry_id.to_owned(),
                queue: self.queue().name().to_owned(),
                consumer: shared.consumer.clone(),
                max_attempts,
                lease: lease.clone(),
                cancel: cancel_rx,
            }),
        };
        let registration = self.register(&job, lost_tx.clone(), cancel_tx.clone());
        let run_no = registration.run;
        let began = self.metrics.started(job.attempt(), job.envelope().enqueued_at_ms);
        let result = tokio::select! {
            biased;
            // Polled in this task with its panics caught, so a panic fails this job only;
            // dropping it (any of the other branches) aborts the handler, and a service's
            // guard closes the clients it opened.
            r = catch_unwind(handler.call(job.clone())) => Ok(r),
            () = async {
                tokio::select! {
                    () = lease.lost() => {}
                    () = self.lease_expiry(run_no, &lost_tx) => {}
                }
                tokio::time::sleep(shared.config.lost_lease_grace).await;
            } => {
                tracing::warn!("aborting a job that lost its lease and did not stop");
                Err(Stopped::LeaseLost)
            }
            () = async {
                let mut rx = job.inner.cancel.clone();
                if rx.wait_for(|r| *r == Some(CancelReason::Requested)).await.is_err() {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(shared.config.cancel_grace).await;
            } => {
                tracing::warn!("aborting a cancelled job that did not stop");
                Err(Stopped::Cancelled)
            }
            limit = async move {
                match limit {
                    Some(limit) => {
                        tokio::time::sleep(limit).await;
                        limit
                    }
                    None => std::future::pending().await,
                }
            } => {
                tracing::warn!(limit_ms = millis(limit), "aborting a job that ran past its time limit");
                Err(Stopped::TimedOut(limit))
            }
            () = self.shutdown(&cancel_tx) => {
                tracing::warn!("aborting a job that did not stop before the shutdown deadline");
                Err(Stopped::Shutdown)
            }
        };
        self.metrics.ran(began);
        // The handler is done (or dropped, which aborts it): no more renewals.
        drop(registration);
        self.release().await;
        if lease.is_lost() {
            // Its slot, if any, may be another run's now: it expires with the lease.
            return Outcome::LeaseLost;
        }
        self.release_slot(job.id()).await;
        let outcome = self.conclude(result, &job).await;
        if matches!(outcome, Outcome::LeaseLost) {
            lost_tx.send_replace(true);
        }
        outcome
    }

    /// Writes what a run's result means: ack, park, retry, wait, cancel or hand back.
    async fn conclude(&self, result: Result<HandlerResult, Stopped>, job: &JobInfo) -> Outcome {
        let cancel = job.cancel_reason();
        let (env, max_attempts, shared) = (job.envelope(), job.max_attempts(), self.shared);
        match result {
            Err(Stopped::LeaseLost) => Outcome::LeaseLost,
            Err(Stopped::Cancelled) => self.end_cancelled().await,
            Err(Stopped::Shutdown) => self.hand_back(env).await,
            Err(Stopped::TimedOut(limit)) => {
                WorkerStats::bump(&shared.stats.timed_out);
                self.metrics.timed_out();
                let error = format!("timeout: the attempt ran longer than its limit of {limit:?}");
                self.retry_or_park(env, max_attempts, &error).await
            }
            Ok(Ok(Ok(result))) => {
                self.finish("ack", Outcome::Succeeded, || self.ack(result.clone(), env.keep_ms)).await
            }
            Ok(Ok(Err(JobError::Decode(e)))) => self.park(e.reason, &e.to_string()).await,
            // A handler that stopped when told: cancelled, or handed back at shutdown.
            Ok(_) if cancel == Some(CancelReason::Requested) => self.end_cancelled().await,
            Ok(_) if cancel == Some(CancelReason::Shutdown) => self.hand_back(env).await,
            Ok(Ok(Err(JobError::Permanent(e)))) => self.park(ParkReason::Rejected, &chain(&*e)).await,
            Ok(Ok(Err(JobError::Misconfigured(e)))) => self.park(ParkReason::Misconfigured, &chain(&*e)).await,
            Ok(Ok(Err(JobError::Failed(e)))) => self.retry_or_park(env, max_attempts, &chain(&*e)).await,
            Ok(Ok(Err(JobError::RetryAfter { after, source }))) => {
                let error = chain(&*source);
                tracing::info!(%error, wait_ms = millis(after), "job must wait; delayed without counting an attempt");
                if let Some(key) = &env.rate_key {
                    // Every worker holds back this key's jobs until the pause is over.
                    if let Err(e) = self.queue().home().pause_rate_key(key, after).await {
                        tracing::warn!(error = %chain(&e), rate_key = %key, "pausing the rate key failed");
                    }
                }
                // Its start is drawn again after the wait, behind the pause.
                let next = Envelope { reserved: false, ..env.clone() };
                self.later(next, after, false, &format!("waiting: {error}"), Outcome::Waiting).await
            }
            Ok(Err(payload)) => {
                WorkerStats::bump(&shared.stats.panicked);
                let msg = format!("panicked: {}", panic_message(&*payload));
                tracing::warn!(error = %msg, "job panicked");
                self.retry_or_park(env, max_attempts, &msg).await
            }
        }
    }

    /// Passes `env` through its gate as it is about to start: the queue's rate limits and its
    /// key's concurrency. `None`: start now (holding a slot of its key when it has a
    /// concurrency); else the job went back to the delayed set without counting an attempt,
    /// due at its reserved start, when a slot is given back (a lease at the latest), or in a
    /// second when the check failed.
    async fn gate(&self, env: &Envelope) -> Option<Outcome> {
        let passed = match self.gated {
            Some(passed) => Ok(passed),
            None => {
                let config = self.queue().config();
                let buckets = crate::limit::buckets(&config.rate_limits, env);
                let slots = env.rate_key.as_deref().and_then(|k| config.slots_of(k));
                if buckets.is_empty() && slots.is_none() {
                    return None;
                }
                let gate = Gate {
                    job_id: env.id.clone(),
                    rate_key: env.rate_key.clone(),
                    reserved: env.reserved,
                    buckets,
                    slots,
                };
                let (done, answer) = oneshot::channel();
                match self.shared.queue_of(self.stream).gates.send(GateRequest { gate, done }) {
                    Ok(()) => answer.await.unwrap_or_else(|_| Err("the gate batcher stopped".to_owned())),
                    Err(_) => Err("the gate batcher stopped".to_owned()),
                }
            }
        };
        let (wait, reserved, why) = match passed {
            Ok(Passed::Start) => {
                self.hold_slot(env);
                return None;
            }
            Ok(Passed::Wait(wait)) => (wait, true, "waiting for its rate limit"),
            Ok(Passed::NoSlot) => (self.shared.config.lease, env.reserved, "waiting for a slot of its key"),
            Err(error) => {
                tracing::warn!(%error, "checking the rate limits failed; trying again in a second");
                (Duration::from_secs(1), env.reserved, "waiting: checking its rate limit failed")
            }
        };
        tracing::debug!(wait_ms = millis(wait), why, "delayed at its gate");
        let next = Envelope { reserved, ..env.clone() };
        Some(self.later(next, wait, false, why, Outcome::RateLimited).await)
    }

    /// Notes that this run holds a slot of its rate key, when the key has a concurrency: its
    /// gate let it start.
    fn hold_slot(&self, env: &Envelope) {
        if let Some(key) = &env.rate_key
            && self.queue().config().slots_of(key).is_some()
        {
            let _ = self.slot.set(key.clone());
        }
    }

    /// Gives back the slot of its key this run holds, if any, waking the key's next waiter.
    async fn release_slot(&self, job_id: &str) {
        if let Some(key) = self.slot.get()
            && let Err(e) = self.queue().release_slot(key, job_id).await
        {
            failed!(&e, rate_key = %key, "giving back a slot failed; it expires with its lease");
        }
    }

    /// Resolves when this run's lease is lost by its own clock: its last successful renewal
    /// (or its start) was sent more than `lease - margin` ago. Tells the job on the way.
    async fn lease_expiry(&self, run: u64, lost: &watch::Sender<bool>) {
        let keep = self.shared.config.lease.saturating_sub(self.shared.config.lease_margin());
        loop {
            let Some(renewed) = self.shared.running().get(&run).map(|r| r.renewed) else {
                return std::future::pending().await;
            };
            let expires = renewed + keep;
            if Instant::now() >= expires {
                tracing::warn!(entry = %self.entry_id, token = self.token, "lease lost: not renewed in time");
                lost.send_replace(true);
                return;
            }
            tokio::time::sleep_until(expires).await;
        }
    }

    /// Trades the concurrency slot for a slot among the runs whose outcome is being written:
    /// the next job starts while this one's acknowledgement is in flight, and at most
    /// `concurrency` outcomes wait for Redis at once.
    async fn release(&self) {
        let writing = self.shared.writing.clone().acquire_owned().await.ok();
        let mut slot = self.permit.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = writing;
    }

    /// Resolves when this run must give way to the worker's shutdown: it tells the job as the
    /// shutdown starts, then waits until shortly before the deadline, leaving time to hand
    /// the job back.
    async fn shutdown(&self, cancel: &watch::Sender<Option<CancelReason>>) {
        let mut stopping = self.shared.stopping.subscribe();
        let deadline = match stopping.wait_for(Option::is_some).await.map(|d| *d) {
            Ok(deadline) => deadline.unwrap_or_else(Instant::now),
            Err(_) => return std::future::pending().await,
        };
        cancel.send_if_modified(|r| {
            let tell = r.is_none();
            if tell {
                *r = Some(CancelReason::Shutdown);
            }
            tell
        });
        let margin = (self.shared.config.shutdown_deadline / 4).min(Duration::from_secs(1));
        tokio::time::sleep_until(deadline.checked_sub(margin).unwrap_or(deadline)).await;
    }

    /// Puts this run in the jobs whose leases [`renew_loop`](super::loops::renew_loop) renews.
    fn register(
        &self,
        job: &JobInfo,
        lost: Arc<watch::Sender<bool>>,
        cancel: Arc<watch::Sender<Option<CancelReason>>>,
    ) -> Registration<'_> {
        let run = self.shared.next_run.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let entry = Running {
            stream: self.stream,
            entry_id: self.entry_id.to_owned(),
            token: self.token,
            job_id: job.id().to_owned(),
            attempt: job.attempt(),
            started: now,
            started_ms: self.started_ms,
            marked: false,
            lost,
            cancel,
            renewed: now,
            slot: self.slot.get().cloned(),
        };
        self.shared.running().insert(run, entry);
        Registration { shared: self.shared, run }
    }

    /// Acknowledges this run's entry with its result through the ack batcher
    /// ([`ack_loop`](super::loops::ack_loop)); `None` when the batch's script failed.
    async fn ack(&self, result: Vec<u8>, keep_ms: Option<u64>) -> Option<Written> {
        let (job_id, unique) = self.job.clone().unwrap_or_default();
        let run = DoneRun {
            entry_id: self.entry_id.to_owned(),
            token: self.token,
            job_id,
            unique,
            result,
            started_ms: self.started_ms,
            attempt: self.attempt,
            keep_ms,
        };
        let (done, answer) = oneshot::channel();
        self.shared.streams[self.stream].acks.send(AckRequest { run, done }).ok()?;
        answer.await.ok()?
    }

    async fn retry_or_park(&self, env: &Envelope, max_attempts: u32, error: &str) -> Outcome {
        if env.attempt >= max_attempts {
            let detail = format!("attempt {}/{max_attempts} failed: {error}", env.attempt);
            return self.park(ParkReason::Exhausted, &detail).await;
        }
        let delay = self.shared.config.backoff_for(env.attempt);
        tracing::info!(error = %error, delay_ms = millis(delay), "job failed; retrying");
        let next = Envelope { attempt: env.attempt + 1, reserved: false, ..env.clone() };
        self.later(next, delay, true, error, Outcome::Retried).await
    }

    /// Gives the job back to the queue at once, without counting an attempt.
    async fn hand_back(&self, env: &Envelope) -> Outcome {
        self.later(env.clone(), Duration::ZERO, false, "handed back by a stopping worker", Outcome::HandedBack).await
    }

    /// Replaces this run's entry by `next`, due after `delay`, in one script; `retry` says
    /// whether an attempt failed (`retrying`) or the job only waits (`delayed`).
    async fn later(&self, next: Envelope, delay: Duration, retry: bool, error: &str, ok: Outcome) -> Outcome {
        use crate::fields::record as field;
        let record =
            [(field::ATTEMPT, next.attempt.to_string().into_bytes()), (field::ERROR, error.as_bytes().to_vec())];
        let ending = Ending::Later { retry, delay, next: &next };
        self.end("retry", &ending, &record, ok).await
    }

    async fn end_cancelled(&self) -> Outcome {
        self.end("cancel", &Ending::Cancelled, &[], Outcome::Cancelled).await
    }

    async fn park(&self, reason: ParkReason, detail: &str) -> Outcome {
        use crate::fields::{parked, record as field};
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = [
            (parked::REASON, reason.code().as_bytes().to_vec()),
            (parked::DETAIL, detail.as_bytes().to_vec()),
            (parked::SOURCE_ID, self.entry_id.as_bytes().to_vec()),
            (parked::PARKED_AT, unix_ms(std::time::SystemTime::now()).to_string().into_bytes()),
            (parked::CONSUMER, self.shared.consumer.as_bytes().to_vec()),
        ]
        .into_iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v))
        .collect();
        for (k, v) in self.fields.iter().take(MAX_PARKED_FIELDS) {
            let mut name = RAW_PREFIX.as_bytes().to_vec();
            name.extend_from_slice(k);
            fields.push((name, v.clone()));
        }
        let detail = if self.fields.len() > MAX_PARKED_FIELDS {
            let all = self.fields.len();
            fields.push((parked::TRUNCATED_FROM.as_bytes().to_vec(), all.to_string().into_bytes()));
            format!("{detail} (only the first {MAX_PARKED_FIELDS} of its {all} fields were kept)")
        } else {
            detail.to_owned()
        };
        fields[1].1 = detail.as_bytes().to_vec();
        let detail = detail.as_str();
        tracing::warn!(reason = %reason, detail, "parking entry");
        let record = [(field::REASON, reason.code().as_bytes().to_vec()), (field::ERROR, detail.as_bytes().to_vec())];
        self.end("park", &Ending::Parked { fields: &fields }, &record, Outcome::Parked(reason)).await
    }

    /// Ends the run with the end script (ownership-checked), retrying failures a few times.
    async fn end(&self, op: &'static str, ending: &Ending<'_>, record: &[(&str, Vec<u8>)], ok: Outcome) -> Outcome {
        use crate::fields::record as field;
        let run = self.run_ref();
        // Who ran which entry, for a record that never said `running`; a retry's attempt is in
        // `record` already.
        let mut items: Vec<(&str, Vec<u8>)> = vec![
            (field::STARTED, self.started_ms.to_string().into_bytes()),
            (field::WORKER, self.shared.consumer.clone().into_bytes()),
            (field::ENTRY, self.entry_id.as_bytes().to_vec()),
        ];
        if !record.iter().any(|(k, _)| *k == field::ATTEMPT) {
            items.push((field::ATTEMPT, self.attempt.to_string().into_bytes()));
        }
        items.extend(record.iter().cloned());
        let record = items.as_slice();
        let source = &self.shared.streams[self.stream];
        let (store, lane, consumer) = (&source.store, source.lane, &self.shared.consumer);
        self.finish(op, ok, || {
            let run = &run;
            async move {
                store
                    .end(lane, consumer, run, ending, record)
                    .await
                    .inspect_err(|e| failed!(e, op, "writing the job outcome failed"))
                    .ok()
            }
        })
        .await
    }

    /// Writes the outcome with `write` (an ownership-checked script; `None` when it failed),
    /// retrying failures a few times. A try whose reply was lost but which landed is known by
    /// the job's record, and counts as written.
    async fn finish<F: Future<Output = Option<Written>>>(
        &self,
        op: &'static str,
        ok: Outcome,
        write: impl Fn() -> F,
    ) -> Outcome {
        for attempt in 0..4u32 {
            match write().await {
                Some(Written::Done | Written::Landed) => return ok,
                Some(Written::Other) => {
                    tracing::warn!(op, "refused: another consumer holds the entry now");
                    return Outcome::LeaseLost;
                }
                Some(Written::Gone) => {
                    tracing::warn!(op, "refused: no consumer holds the entry any more (acknowledged by another run)");
                    return Outcome::LeaseLost;
                }
                None => {
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1))).await;
                }
            }
        }
        Outcome::Unfinished
    }
}
