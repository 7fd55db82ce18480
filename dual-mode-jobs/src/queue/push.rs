//! Pushes: one job, specs, bulk; where a job goes and its envelope.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::SystemTime;

use serde::Serialize;

use super::{PushOptions, Pushed, Queue};
use crate::envelope::{Envelope, millis, unique_id, unix_ms};
use crate::error::QueueError;
use crate::metrics::JobMetrics;
use crate::partition;
use dual_mode_runtime::Spec;

/// How many entries one pipeline round trip carries in a bulk push.
const BULK_CHUNK: usize = 1000;

/// A hook awaited after each push of a ready job: see [`Queue::after_push`].
pub(crate) type AfterPush = Arc<dyn Fn(Queue, String) -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>;

impl Queue {
    /// The partition of a job with this unique key, else this key (an idempotency key or a
    /// schedule's name); round-robin without either.
    pub(crate) fn place(&self, unique: Option<&str>, key: Option<&str>) -> usize {
        let n = self.partitions();
        if n == 1 {
            return 0;
        }
        match unique.or(key) {
            Some(key) => partition::of_key(key, n),
            None => self.inner.next.fetch_add(1, AtomicOrdering::Relaxed) % n,
        }
    }

    /// A new job's envelope with its unique key (see [`unique_of`]), placed in partition `p`:
    /// with several partitions its id (and its idempotency key, when that defaults to the id)
    /// carries the partition.
    pub(crate) fn envelope_in(
        &self,
        (p, unique): (usize, Option<String>),
        type_name: &str,
        version: u32,
        payload: Vec<u8>,
        options: &PushOptions,
    ) -> Envelope {
        let id = partition::tag(&unique_id(), p, self.partitions());
        new_envelope(id, type_name, version, payload, options, unique)
    }

    /// A new job's envelope and the partition it goes to, as a push of this queue makes them:
    /// for a backend's own push paths (Postgres's push in the caller's transaction).
    #[must_use]
    pub fn envelope(
        &self,
        type_name: &str,
        version: u32,
        payload: Vec<u8>,
        options: &PushOptions,
    ) -> (usize, Envelope) {
        let unique = unique_of(type_name, &payload, options);
        let p = self.place(unique.as_deref(), options.idempotency_key.as_deref());
        (p, self.envelope_in((p, unique), type_name, version, payload, options))
    }

    /// Pushes a payload serialized as JSON under `type_name` and schema `version`.
    ///
    /// # Errors
    /// The payload does not serialize, or Redis fails.
    pub async fn push<T: Serialize + ?Sized>(
        &self,
        type_name: &str,
        version: u32,
        payload: &T,
        options: PushOptions,
    ) -> Result<Pushed, QueueError> {
        let bytes = encode(type_name, payload)?;
        self.push_raw(type_name, version, bytes, options).await
    }

    /// Pushes payload bytes as they are (not checked: a bad payload is parked by the worker).
    ///
    /// # Errors
    /// Redis fails.
    pub async fn push_raw(
        &self,
        type_name: &str,
        version: u32,
        payload: Vec<u8>,
        options: PushOptions,
    ) -> Result<Pushed, QueueError> {
        let (p, env) = self.envelope(type_name, version, payload, &options);
        let store = self.part_store(p);
        let stored = if options.is_delayed() {
            let at = options.not_before.map_or(0, unix_ms);
            let delay = options.delay.map_or(0, millis);
            store.push_delayed(&env, options.unique_ttl, at, delay).await?
        } else {
            store.push(&env, options.unique_ttl).await?
        };
        JobMetrics::of(self.name(), type_name).pushed(usize::from(!stored.is_held()));
        let pushed = Pushed::new(&env, stored);
        if let Some(hook) = self.after_push.as_ref().filter(|_| !options.is_delayed()) {
            hook(self.clone(), pushed.job_id.clone()).await;
        }
        Ok(pushed)
    }

    /// The same queue with `hook` awaited after each push of a ready job.
    pub(crate) fn after_push(mut self, hook: AfterPush) -> Self {
        self.after_push = Some(hook);
        self
    }

    /// Pushes a spec under its type name and schema version. Only spec types are accepted,
    /// so no client and no secret reaches the queue.
    ///
    /// # Errors
    /// The spec does not serialize, or the store fails.
    pub fn push_spec<T: Spec>(
        &self,
        spec: &T,
        options: PushOptions,
    ) -> Pin<Box<dyn Future<Output = Result<Pushed, QueueError>> + Send + '_>> {
        // Encoded here, and pushed by a future whose type does not name `T`: a value that is
        // not a spec is then one error, at the argument, not one more for the call and one for
        // the `.await`.
        Box::pin(self.push_encoded(T::NAME, T::VERSION, encode(T::NAME, spec), options))
    }

    async fn push_encoded(
        &self,
        type_name: &'static str,
        version: u32,
        payload: Result<Vec<u8>, QueueError>,
        options: PushOptions,
    ) -> Result<Pushed, QueueError> {
        self.push_raw(type_name, version, payload?, options).await
    }

    /// Pushes many specs in pipelined round trips; see [`Queue::push_bulk`].
    ///
    /// # Errors
    /// A spec does not serialize, or Redis fails.
    pub async fn push_specs<T: Spec>(&self, specs: &[T], options: PushOptions) -> Result<Vec<Pushed>, QueueError> {
        self.push_bulk(T::NAME, T::VERSION, specs, options).await
    }

    /// Pushes many payloads in pipelined round trips (1,000 entries each); all are serialized
    /// before anything is sent. Options apply to each job (an idempotency key or a unique key
    /// is not allowed here, as each job needs its own; uniqueness by payload is).
    ///
    /// # Errors
    /// A payload does not serialize, the options carry an idempotency or unique key, or Redis
    /// fails (the chunks sent before the failure stay pushed).
    pub async fn push_bulk<'a, T, I>(
        &self,
        type_name: &str,
        version: u32,
        payloads: I,
        options: PushOptions,
    ) -> Result<Vec<Pushed>, QueueError>
    where
        T: Serialize + 'a,
        I: IntoIterator<Item = &'a T>,
    {
        if options.idempotency_key.is_some() || options.unique_key.is_some() {
            return Err(QueueError::BadArgument {
                what: "push_bulk options",
                reason: "they set an idempotency or unique key, and each job needs its own",
            });
        }
        let envs = payloads
            .into_iter()
            .map(|p| Ok(self.envelope(type_name, version, encode(type_name, p)?, &options)))
            .collect::<Result<Vec<_>, QueueError>>()?;
        // Each partition's envelopes in pushed order, with their places in the answer.
        let mut parts: Vec<(Vec<usize>, Vec<Envelope>)> = vec![(Vec::new(), Vec::new()); self.partitions()];
        for (i, (p, env)) in envs.into_iter().enumerate() {
            parts[p].0.push(i);
            parts[p].1.push(env);
        }
        let mut out: Vec<Option<Pushed>> = vec![None; parts.iter().map(|(at, _)| at.len()).sum()];
        for (store, (at, envs)) in self.inner.parts.iter().zip(&parts) {
            if options.is_delayed() {
                let due = (options.not_before.map_or(0, unix_ms), options.delay.map_or(0, millis));
                for (&i, env) in at.iter().zip(envs) {
                    let stored = store.push_delayed(env, options.unique_ttl, due.0, due.1).await?;
                    out[i] = Some(Pushed::new(env, stored));
                }
                continue;
            }
            for (at, envs) in at.chunks(BULK_CHUNK).zip(envs.chunks(BULK_CHUNK)) {
                let stored = store.push_many(envs, options.unique_ttl).await?;
                for ((&i, env), stored) in at.iter().zip(envs).zip(stored) {
                    out[i] = Some(Pushed::new(env, stored));
                }
            }
        }
        let out: Vec<Pushed> = out.into_iter().flatten().collect();
        JobMetrics::of(self.name(), type_name).pushed(out.iter().filter(|p| !p.duplicate).count());
        if let Some(hook) = self.after_push.as_ref().filter(|_| !options.is_delayed()) {
            for pushed in &out {
                hook(self.clone(), pushed.job_id.clone()).await;
            }
        }
        Ok(out)
    }
}

pub(crate) fn encode<T: Serialize + ?Sized>(type_name: &str, payload: &T) -> Result<Vec<u8>, QueueError> {
    serde_json::to_vec(payload).map_err(|source| QueueError::Encode { type_name: type_name.to_owned(), source })
}

/// The unique key of a job pushed with `options`: the key given, or one derived from the
/// payload.
pub(crate) fn unique_of(type_name: &str, payload: &[u8], options: &PushOptions) -> Option<String> {
    match (&options.unique_key, options.unique_by_payload) {
        (Some(key), _) => Some(key.clone()),
        (None, true) => Some(format!("{type_name}:{:032x}", partition::fnv1a_128(payload))),
        (None, false) => None,
    }
}

pub(crate) fn new_envelope(
    id: String,
    type_name: &str,
    version: u32,
    payload: Vec<u8>,
    options: &PushOptions,
    unique: Option<String>,
) -> Envelope {
    Envelope {
        idempotency_key: options.idempotency_key.clone().unwrap_or_else(|| id.clone()),
        id,
        type_name: type_name.to_owned(),
        version,
        attempt: 1,
        max_attempts: options.max_attempts,
        unique,
        timeout_ms: options.timeout.map(millis),
        rate_key: options.rate_key.clone(),
        reserved: false,
        lane: options.lane,
        traceparent: options.traceparent.clone().or_else(crate::trace::current),
        keep_ms: options.keep_for.map(|keep| millis(keep).max(1)),
        enqueued_at_ms: unix_ms(SystemTime::now()),
        payload,
    }
}
