//! One run of one entry: execute the handler, then write its outcome (ack, retry, park) in
//! one fencing script.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::Instrument as _;

use super::job::JobInner;
use super::loops::{AckRequest, Delivery};
use super::{JobInfo, Lease, Registration, Running, Shared, WorkerStats};
use crate::jobs::envelope::{Envelope, RawFields, unique_id, unix_ms};
use crate::jobs::error::{JobError, ParkReason, chain};
use crate::jobs::queue::RAW_PREFIX;
use crate::jobs::store::millis;
use crate::unwind::{catch_unwind, panic_message};

/// At most this many original field pairs are copied into a parked entry.
const MAX_PARKED_FIELDS: usize = 1000;

/// How one run ended, for the span and the logs.
#[derive(Clone, Copy)]
enum Outcome {
    Succeeded,
    Retried,
    Waiting,
    Parked(ParkReason),
    LeaseLost,
    Unfinished,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Retried => "retried",
            Self::Waiting => "waiting",
            Self::Parked(_) => "parked",
            Self::LeaseLost => "lease_lost",
            Self::Unfinished => "unfinished",
        }
    }
}

pub(super) async fn run_job(shared: Arc<Shared>, d: Delivery) {
    let Delivery { entry_id, fields, token, permit } = d;
    let _permit = permit;
    let env = match Envelope::from_fields(&fields) {
        Ok(env) => env,
        Err(e) => {
            let span = tracing::warn_span!("job", queue = %shared.queue.name(), entry = %entry_id, outcome = "parked");
            async {
                let run = Run { shared: &shared, entry_id: &entry_id, token, fields: &fields };
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
        queue = %shared.queue.name(),
        id = %env.id,
        entry = %entry_id,
        r#type = %env.type_name,
        attempt = env.attempt,
        outcome = tracing::field::Empty,
    );
    async {
        let run = Run { shared: &shared, entry_id: &entry_id, token, fields: &fields };
        let outcome = run.execute(env).await;
        run.count(outcome);
        tracing::Span::current().record("outcome", outcome.as_str());
        match outcome {
            Outcome::Succeeded | Outcome::Retried | Outcome::Waiting => {
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
    entry_id: &'a str,
    token: u64,
    fields: &'a RawFields,
}

impl Run<'_> {
    fn count(&self, outcome: Outcome) {
        let s = &self.shared.stats;
        WorkerStats::bump(match outcome {
            Outcome::Succeeded => &s.succeeded,
            Outcome::Retried => &s.retried,
            Outcome::Waiting => &s.waited,
            Outcome::Parked(_) => &s.parked,
            Outcome::LeaseLost => &s.lease_lost,
            Outcome::Unfinished => &s.unfinished,
        });
    }

    async fn execute(&self, env: Envelope) -> Outcome {
        let shared = self.shared;
        if self.token > u64::from(shared.config.max_deliveries) {
            let detail = format!("delivered {} times (maximum {})", self.token, shared.config.max_deliveries);
            return self.park(ParkReason::TooManyDeliveries, &detail).await;
        }
        let Some(handler) = shared.handlers.get(&env.type_name).cloned() else {
            let detail = format!("no handler for type `{}` in this worker", env.type_name);
            return self.park(ParkReason::UnknownType, &detail).await;
        };
        let max_attempts = env.max_attempts.unwrap_or(shared.queue.config().max_attempts).max(1);
        let (lost_tx, lost_rx) = watch::channel(false);
        let lost_tx = Arc::new(lost_tx);
        let lease = Lease { lost: lost_rx, token: self.token };
        let job = JobInfo {
            inner: Arc::new(JobInner {
                envelope: env,
                entry_id: self.entry_id.to_owned(),
                queue: shared.queue.name().to_owned(),
                consumer: shared.consumer.clone(),
                max_attempts,
                lease: lease.clone(),
            }),
        };
        let registration = self.register(lost_tx.clone());
        let grace = shared.config.lost_lease_grace;
        let result = tokio::select! {
            biased;
            // Polled in this task with its panics caught, so a panic fails this job only;
            // dropping it (lost lease, shutdown deadline) aborts the handler.
            r = catch_unwind(handler.call(job.clone())) => Some(r),
            () = async { lease.lost().await; tokio::time::sleep(grace).await } => {
                tracing::warn!("aborting a job that lost its lease and did not stop");
                None
            }
        };
        // The handler is done (or dropped, which aborts it): no more renewals.
        drop(registration);
        if lease.is_lost() {
            return Outcome::LeaseLost;
        }
        let env = job.envelope();
        let outcome = match result {
            None => return Outcome::LeaseLost,
            Some(Ok(Ok(()))) => self.finish("ack", Outcome::Succeeded, || self.ack()).await,
            Some(Ok(Err(JobError::Decode(e)))) => self.park(e.reason, &e.to_string()).await,
            Some(Ok(Err(JobError::Permanent(e)))) => self.park(ParkReason::Rejected, &chain(&*e)).await,
            Some(Ok(Err(JobError::Failed(e)))) => self.retry_or_park(env, max_attempts, &chain(&*e)).await,
            Some(Ok(Err(JobError::RetryAfter { after, source }))) => {
                tracing::info!(error = %chain(&*source), wait_ms = millis(after), "job must wait; delayed without counting an attempt");
                self.delay(env.clone(), after, Outcome::Waiting).await
            }
            Some(Err(payload)) => {
                WorkerStats::bump(&shared.stats.panicked);
                let msg = format!("panicked: {}", panic_message(&*payload));
                tracing::warn!(error = %msg, "job panicked");
                self.retry_or_park(env, max_attempts, &msg).await
            }
        };
        if matches!(outcome, Outcome::LeaseLost) {
            lost_tx.send_replace(true);
        }
        outcome
    }

    /// Puts this run in the jobs whose leases [`renew_loop`](super::loops::renew_loop) renews.
    fn register(&self, lost: Arc<watch::Sender<bool>>) -> Registration<'_> {
        let run = self.shared.next_run.fetch_add(1, Ordering::Relaxed);
        let entry = Running { entry_id: self.entry_id.to_owned(), token: self.token, lost, renewed: Instant::now() };
        self.shared.running().insert(run, entry);
        Registration { shared: self.shared, run }
    }

    /// Acknowledges this run's entry through the ack batcher
    /// ([`ack_loop`](super::loops::ack_loop)); `None` when the batch's script failed.
    async fn ack(&self) -> Option<bool> {
        let (done, answer) = oneshot::channel();
        let request = AckRequest { entry_id: self.entry_id.to_owned(), token: self.token, done };
        self.shared.acks.send(request).ok()?;
        answer.await.ok()?
    }

    async fn retry_or_park(&self, env: &Envelope, max_attempts: u32, error: &str) -> Outcome {
        if env.attempt >= max_attempts {
            let detail = format!("attempt {}/{max_attempts} failed: {error}", env.attempt);
            return self.park(ParkReason::Exhausted, &detail).await;
        }
        let delay = self.shared.config.backoff_for(env.attempt);
        tracing::info!(error = %error, delay_ms = millis(delay), "job failed; retrying");
        self.delay(Envelope { attempt: env.attempt + 1, ..env.clone() }, delay, Outcome::Retried).await
    }

    /// Replaces this run's entry by `next`, due after `delay`, in one script.
    async fn delay(&self, next: Envelope, delay: Duration, ok: Outcome) -> Outcome {
        let member = unique_id();
        let (store, consumer, member, next) = (self.shared.queue.store(), &self.shared.consumer, &member, &next);
        self.finish("retry", ok, || async move {
            store.retry(consumer, self.entry_id, self.token, delay, member, next).await.ok()
        })
        .await
    }

    async fn park(&self, reason: ParkReason, detail: &str) -> Outcome {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = [
            ("reason", reason.code().as_bytes().to_vec()),
            ("detail", detail.as_bytes().to_vec()),
            ("source_id", self.entry_id.as_bytes().to_vec()),
            ("parked_at", unix_ms(std::time::SystemTime::now()).to_string().into_bytes()),
            ("consumer", self.shared.consumer.as_bytes().to_vec()),
        ]
        .into_iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v))
        .collect();
        for (k, v) in self.fields.iter().take(MAX_PARKED_FIELDS) {
            let mut name = RAW_PREFIX.as_bytes().to_vec();
            name.extend_from_slice(k);
            fields.push((name, v.clone()));
        }
        tracing::warn!(reason = %reason, detail, "parking entry");
        let (store, consumer, fields) = (self.shared.queue.store(), &self.shared.consumer, &fields);
        self.finish("park", Outcome::Parked(reason), || async move {
            store.park(consumer, self.entry_id, self.token, fields).await.ok()
        })
        .await
    }

    /// Writes the outcome with `write` (an ownership-checked script; `None` when it failed),
    /// retrying failures a few times.
    async fn finish<F: Future<Output = Option<bool>>>(
        &self,
        op: &'static str,
        ok: Outcome,
        write: impl Fn() -> F,
    ) -> Outcome {
        for attempt in 0..4u32 {
            match write().await {
                Some(true) => return ok,
                Some(false) => {
                    tracing::warn!(op, "refused: this run no longer owns the entry");
                    return Outcome::LeaseLost;
                }
                None => {
                    tracing::warn!(op, "writing the job outcome failed");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1))).await;
                }
            }
        }
        Outcome::Unfinished
    }
}
