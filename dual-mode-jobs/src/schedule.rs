//! Cron schedules: each tick enqueued exactly once, however many schedulers run.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::backend::{Backend, Ticked};
use super::cron::Cron;
use super::envelope::unix_ms;
use super::error::{QueueError, failed};
use super::queue::{PushOptions, Queue, encode, unique_of};
use dual_mode_runtime::Spec;

/// One schedule: a cron expression and the job it enqueues at each tick.
#[derive(Clone)]
pub struct Schedule {
    name: String,
    cron: Cron,
    type_name: String,
    version: u32,
    payload: Vec<u8>,
    /// What each tick's push sets (no idempotency key, delay or time: the tick sets those).
    options: PushOptions,
}

/// The name, the expression with its zone, the job's type and its payload as text.
impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedule")
            .field("name", &self.name)
            .field("cron", &self.cron)
            .field("type_name", &self.type_name)
            .field("version", &self.version)
            .field("payload", &String::from_utf8_lossy(&self.payload))
            .field("options", &self.options)
            .finish()
    }
}

impl Schedule {
    /// A schedule named `name` (unique per queue: it names the dedupe keys) that enqueues
    /// `payload` under `type_name` and `version` at each tick of `cron`.
    ///
    /// # Errors
    /// The cron expression does not parse, or the payload does not serialize.
    pub fn new<T: Serialize + ?Sized>(
        name: impl Into<String>,
        cron: &str,
        type_name: &str,
        version: u32,
        payload: &T,
    ) -> Result<Self, QueueError> {
        Ok(Self::from_parts(name, Cron::parse(cron)?, type_name, version, encode(type_name, payload)?))
    }

    /// A schedule that enqueues `spec` at each tick of `cron`.
    ///
    /// # Errors
    /// The cron expression does not parse, or the spec does not serialize.
    pub fn for_spec<T: Spec>(name: impl Into<String>, cron: &str, spec: &T) -> Result<Self, QueueError> {
        Self::new(name, cron, T::NAME, T::VERSION, spec)
    }

    /// A schedule from a parsed expression and payload bytes.
    #[must_use]
    pub fn from_parts(name: impl Into<String>, cron: Cron, type_name: &str, version: u32, payload: Vec<u8>) -> Self {
        Self { name: name.into(), cron, type_name: type_name.to_owned(), version, payload, options: PushOptions::new() }
    }

    /// Reads the cron expression on the wall clock of the IANA time zone `zone` (such as
    /// `Europe/Berlin`); see [`Cron`] for what happens at daylight-saving changes.
    ///
    /// # Errors
    /// The zone is unknown.
    pub fn in_zone(mut self, zone: &str) -> Result<Self, QueueError> {
        self.cron = self.cron.in_zone(zone)?;
        Ok(self)
    }

    /// Overrides the maximum attempts of the enqueued jobs.
    #[must_use]
    pub fn max_attempts(mut self, max: u32) -> Self {
        self.options.max_attempts = Some(max);
        self
    }

    /// Pushes each tick's job with `options`: its lane, time limit, rate key, maximum
    /// attempts and unique key. With a unique key, a tick whose key is still held (the job of
    /// an earlier tick is queued, delayed or running) enqueues nothing: the schedule never
    /// overlaps itself (the scheduler logs each tick it skips so).
    ///
    /// ```
    /// use std::time::Duration;
    /// use dual_mode_jobs::{Lane, PushOptions, Schedule};
    /// let nightly = Schedule::new("nightly", "0 3 * * *", "Rollup", 1, &())?
    ///     .push_options(PushOptions::new()
    ///         .lane(Lane::Low)
    ///         .timeout(Duration::from_secs(600))
    ///         .unique("rollup", Duration::from_secs(3600)))?;
    /// # Ok::<(), dual_mode_jobs::QueueError>(())
    /// ```
    ///
    /// # Errors
    /// The options set an idempotency key, a delay or a time: each tick sets its own.
    pub fn push_options(mut self, options: PushOptions) -> Result<Self, QueueError> {
        if options.idempotency_key.is_some() || options.delay.is_some() || options.not_before.is_some() {
            return Err(QueueError::Config(format!(
                "schedule {:?}: push options may not set an idempotency key, a delay or a time (each tick sets its own)",
                self.name
            )));
        }
        self.options = options;
        Ok(self)
    }

    /// The schedule's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cron expression.
    #[must_use]
    pub fn cron(&self) -> &Cron {
        &self.cron
    }

    /// The idempotency key of the job of the tick at `tick_secs`: `sched:<name>:<tick ms>`.
    #[must_use]
    pub fn idempotency_key(&self, tick_secs: i64) -> String {
        format!("sched:{}:{}", self.name, tick_secs.saturating_mul(1000))
    }
}

/// Settings of a scheduler.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SchedulerConfig {
    /// At start, enqueue the ticks missed since the last tick any scheduler enqueued (while
    /// every scheduler was down), at most `max_catch_up` of them (the latest). Ticks missed
    /// while the schedule was paused are not caught up: a catch-up starts after its last
    /// resume, and a paused schedule catches up nothing.
    pub catch_up: bool,
    /// The most ticks one catch-up enqueues.
    pub max_catch_up: usize,
    /// How long a tick's dedupe key lives; must exceed the clock skew between schedulers and
    /// the catch-up window (older ticks are not caught up).
    pub dedupe_ttl: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self { catch_up: false, max_catch_up: 100, dedupe_ttl: Duration::from_secs(7 * 24 * 3600) }
    }
}

impl SchedulerConfig {
    /// No catch-up, at most 100 ticks when enabled, dedupe keys kept 7 days.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Enables or disables catch-up.
    #[must_use]
    pub fn catch_up(mut self, on: bool) -> Self {
        self.catch_up = on;
        self
    }

    /// Sets the most ticks one catch-up enqueues.
    #[must_use]
    pub fn max_catch_up(mut self, max: usize) -> Self {
        self.max_catch_up = max;
        self
    }

    /// Sets the dedupe keys' lifetime.
    #[must_use]
    pub fn dedupe_ttl(mut self, ttl: Duration) -> Self {
        self.dedupe_ttl = ttl;
        self
    }
}

/// Runs schedules against a queue. Run one in each of several processes for availability:
/// each tick is enqueued exactly once, because the tick's dedupe key (named by the tick's
/// instant in UTC, not by the clock of whoever runs it, nor by its wall-clock time) is set and
/// the entry added in one Lua script.
///
/// # Pausing
///
/// A schedule can be paused and resumed from any process ([`Scheduler::pause`],
/// [`Queue::pause_schedule`]); the state lives in Redis, next to the schedule's ticks, and is
/// checked by the same script that enqueues a tick, so once a pause has returned no scheduler
/// enqueues a tick of that schedule until it is resumed. Ticks that fall while it is paused
/// are skipped, not caught up: a resume starts with the next tick, and a later
/// [catch-up](SchedulerConfig::catch_up) never reaches back before the resume.
/// [`Queue::schedules`] lists the schedules that schedulers registered, with their next tick.
#[derive(Debug)]
pub struct Scheduler {
    queue: Queue,
    config: SchedulerConfig,
    schedules: Vec<Schedule>,
    enqueued: Arc<AtomicU64>,
}

impl Scheduler {
    /// A scheduler for `queue` with no schedules yet.
    #[must_use]
    pub fn new(queue: Queue, config: SchedulerConfig) -> Self {
        Self { queue, config, schedules: Vec::new(), enqueued: Arc::default() }
    }

    /// Adds a schedule.
    #[must_use]
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedules.push(schedule);
        self
    }

    /// The schedules added, in order.
    #[must_use]
    pub fn schedules(&self) -> &[Schedule] {
        &self.schedules
    }

    /// Ticks this scheduler enqueued so far (ticks another scheduler won are not counted).
    #[must_use]
    pub fn enqueued_counter(&self) -> Arc<AtomicU64> {
        self.enqueued.clone()
    }

    /// The last tick (Unix seconds) any scheduler enqueued for `schedule`.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn last_tick(&self, schedule: &Schedule) -> Result<Option<i64>, QueueError> {
        last_tick(&self.queue, schedule).await
    }

    /// Enqueues the tick at `tick_secs` of `schedule` unless any scheduler already did or the
    /// schedule is paused. Returns the new entry id, or `None` when nothing was enqueued.
    ///
    /// # Errors
    /// Redis fails (then nothing was written: retrying is safe).
    pub async fn enqueue_tick(&self, schedule: &Schedule, tick_secs: i64) -> Result<Option<String>, QueueError> {
        Ok(match enqueue_tick(&self.queue, &self.config, schedule, tick_secs).await? {
            Ticked::Enqueued(id) => Some(id),
            Ticked::Duplicate | Ticked::Paused | Ticked::Held(_) => None,
        })
    }

    /// Pauses the schedule named `name` for every scheduler of this queue; see
    /// [`Queue::pause_schedule`].
    ///
    /// # Errors
    /// Redis fails.
    pub async fn pause(&self, name: &str) -> Result<bool, QueueError> {
        self.queue.pause_schedule(name).await
    }

    /// Resumes the schedule named `name`; see [`Queue::resume_schedule`].
    ///
    /// # Errors
    /// Redis fails.
    pub async fn resume(&self, name: &str) -> Result<bool, QueueError> {
        self.queue.resume_schedule(name).await
    }

    /// Records this scheduler's schedules in the queue's list of schedules, so
    /// [`Queue::schedules`] shows them ([`Scheduler::run`] does this when it starts).
    ///
    /// # Errors
    /// Redis fails.
    pub async fn register(&self) -> Result<(), QueueError> {
        let entries: Vec<(String, String)> = self
            .schedules
            .iter()
            .map(|s| {
                let registered = Registered { cron: s.cron.as_str().to_owned(), zone: s.cron.zone().to_owned() };
                let json = serde_json::to_string(&registered)
                    .map_err(|source| QueueError::Encode { type_name: "schedule".to_owned(), source })?;
                Ok((s.name.clone(), json))
            })
            .collect::<Result<_, QueueError>>()?;
        self.queue.home().register_schedules(&entries).await
    }

    /// Runs every schedule until `shutdown` resolves. Returns how many ticks this scheduler
    /// enqueued. Redis errors are logged and the tick retried, so a tick is never skipped
    /// (unless its schedule is paused).
    ///
    /// # Errors
    /// Redis fails while registering the schedules or catching up at the start.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<u64, QueueError> {
        self.register().await?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let this = Arc::new(self);
        let now = now_secs();
        let mut tasks = Vec::new();
        for (i, schedule) in this.schedules.iter().enumerate() {
            let mut cursor = now;
            if this.config.catch_up {
                this.catch_up(schedule, now).await?;
            } else if schedule.cron.matches_secs(now) {
                // A tick at this very second counts as upcoming.
                cursor = now - 1;
            }
            tasks.push(tokio::spawn(schedule_loop(this.clone(), i, cursor, stop_rx.clone())));
        }
        shutdown.await;
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        Ok(this.enqueued.load(Ordering::Relaxed))
    }

    async fn catch_up(&self, schedule: &Schedule, now: i64) -> Result<(), QueueError> {
        let store = schedule_store(&self.queue, schedule);
        let states = store.schedule_states(std::slice::from_ref(&schedule.name)).await?;
        let [state] = states[..] else {
            return Err(QueueError::protocol(
                "read schedules",
                crate::ReplyError::AnswerCount { got: states.len(), expected: 1 },
            ));
        };
        let Some(last) = state.last else {
            return Ok(());
        };
        if state.paused.is_some() {
            return Ok(());
        }
        let ttl = i64::try_from(self.config.dedupe_ttl.as_secs()).unwrap_or(i64::MAX);
        let mut ticks = Vec::new();
        // Not before the last resume: ticks missed while paused are skipped.
        let mut t = (last / 1000).max(state.resumed.unwrap_or(0) / 1000).max(now.saturating_sub(ttl));
        while let Some(next) = schedule.cron.next_after_secs(t) {
            if next > now {
                break;
            }
            ticks.push(next);
            if ticks.len() > self.config.max_catch_up {
                ticks.remove(0);
            }
            t = next;
        }
        for tick in ticks {
            if self.enqueue_tick(schedule, tick).await?.is_some() {
                self.enqueued.fetch_add(1, Ordering::Relaxed);
                tracing::info!(schedule = %schedule.name, tick, "caught up a missed tick");
            }
        }
        Ok(())
    }
}

async fn schedule_loop(this: Arc<Scheduler>, index: usize, mut cursor: i64, mut stop: watch::Receiver<bool>) {
    let schedule = &this.schedules[index];
    let mut failures = 0u32;
    loop {
        let Some(tick) = schedule.cron.next_after_secs(cursor) else {
            tracing::warn!(schedule = %schedule.name, "the cron expression has no future tick");
            return;
        };
        let wait_ms = tick.saturating_mul(1000).saturating_sub(i64::try_from(unix_ms(SystemTime::now())).unwrap_or(0));
        if wait_ms > 0 {
            let d = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0));
            tokio::select! {
                () = tokio::time::sleep(d) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            // Timers run on the monotonic clock; make sure the wall clock reached the tick.
            continue_if_early(tick).await;
        }
        if *stop.borrow() {
            return;
        }
        match enqueue_tick(&this.queue, &this.config, schedule, tick).await {
            Ok(ticked) => {
                failures = 0;
                cursor = tick;
                match ticked {
                    Ticked::Enqueued(id) => {
                        this.enqueued.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(schedule = %schedule.name, tick, entry = %id, "tick enqueued");
                    }
                    Ticked::Duplicate => {
                        tracing::debug!(schedule = %schedule.name, tick, "tick already enqueued by another scheduler");
                    }
                    Ticked::Paused => tracing::debug!(schedule = %schedule.name, tick, "schedule paused; tick skipped"),
                    Ticked::Held(holder) => tracing::info!(
                        schedule = %schedule.name,
                        tick,
                        %holder,
                        "the job of an earlier tick still holds the unique key; tick skipped"
                    ),
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                failed!(&e, schedule = %schedule.name, tick, "enqueuing a tick failed; retrying");
                let d = Duration::from_millis(100u64.saturating_mul(1 << failures.min(5)));
                tokio::select! {
                    () = tokio::time::sleep(d) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    }
}

async fn continue_if_early(tick: i64) {
    loop {
        let now = i64::try_from(unix_ms(SystemTime::now())).unwrap_or(i64::MAX);
        let left = tick.saturating_mul(1000) - now;
        if left <= 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(u64::try_from(left).unwrap_or(0))).await;
    }
}

fn now_secs() -> i64 {
    i64::try_from(unix_ms(SystemTime::now()) / 1000).unwrap_or(i64::MAX)
}

/// The partition whose keys hold `schedule`'s state and take its ticks: that of its unique key
/// (so a tick and a push of the same key meet), else of its name; with the unique key.
fn schedule_part(queue: &Queue, schedule: &Schedule) -> (usize, Option<String>) {
    let unique = unique_of(&schedule.type_name, &schedule.payload, &schedule.options);
    (queue.place(unique.as_deref(), Some(&schedule.name)), unique)
}

/// The store of `schedule`'s partition.
fn schedule_store<'q>(queue: &'q Queue, schedule: &Schedule) -> &'q dyn Backend {
    queue.part_store(schedule_part(queue, schedule).0)
}

async fn last_tick(queue: &Queue, schedule: &Schedule) -> Result<Option<i64>, QueueError> {
    let store = schedule_store(queue, schedule);
    Ok(store.last_tick(&schedule.name).await?.map(|ms| ms / 1000))
}

async fn enqueue_tick(
    queue: &Queue,
    config: &SchedulerConfig,
    schedule: &Schedule,
    tick_secs: i64,
) -> Result<Ticked, QueueError> {
    let (p, unique) = schedule_part(queue, schedule);
    let options = schedule.options.clone().idempotency_key(schedule.idempotency_key(tick_secs));
    let env = queue.envelope_in((p, unique), &schedule.type_name, schedule.version, schedule.payload.clone(), &options);
    let store = queue.part_store(p);
    let ticked =
        store.tick(&schedule.name, config.dedupe_ttl, tick_secs.saturating_mul(1000), &env, options.unique_ttl).await?;
    let added = matches!(ticked, Ticked::Enqueued(_));
    super::metrics::JobMetrics::of(queue.name(), &schedule.type_name).pushed(usize::from(added));
    Ok(ticked)
}

/// A schedule as registered in Redis.
#[derive(Serialize, Deserialize)]
struct Registered {
    cron: String,
    zone: String,
}

/// A schedule that a scheduler registered on a queue, as [`Queue::schedules`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScheduleInfo {
    /// The schedule's name.
    pub name: String,
    /// Its cron expression, in its time zone.
    pub cron: Cron,
    /// When it was paused, while it is.
    pub paused_since: Option<SystemTime>,
    /// The last tick any scheduler enqueued.
    pub last_tick: Option<SystemTime>,
    /// Its next tick after now: enqueued then unless the schedule is paused at that moment.
    pub next_tick: Option<SystemTime>,
}

impl Queue {
    /// Pauses the schedule named `name` for every scheduler of this queue, in every process:
    /// from the moment this returns, none of its ticks is enqueued until
    /// [`resume_schedule`](Queue::resume_schedule). The ticks that fall meanwhile are skipped,
    /// not caught up. A name no scheduler runs yet can be paused too. Returns `false` if it
    /// was paused already.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn pause_schedule(&self, name: &str) -> Result<bool, QueueError> {
        // In every partition: the schedule's may not be known here (it follows its unique key).
        let now = unix_ms(SystemTime::now());
        let paused = self.on_each(|s| s.pause_schedule(name, now));
        Ok(paused.await?.contains(&true))
    }

    /// Resumes the schedule named `name`: its next tick after now is enqueued as usual.
    /// Returns `false` if it was not paused.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn resume_schedule(&self, name: &str) -> Result<bool, QueueError> {
        let now = unix_ms(SystemTime::now());
        let resumed = self.on_each(|s| s.resume_schedule(name, now));
        Ok(resumed.await?.contains(&true))
    }

    /// Removes the schedule named `name` from [`schedules`](Queue::schedules), with its pause
    /// and its last tick (its ticks' dedupe keys expire by themselves), for a schedule that no
    /// scheduler runs any more. A scheduler still running it registers it again only when it
    /// starts. Returns `false` if it was not registered.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn forget_schedule(&self, name: &str) -> Result<bool, QueueError> {
        let removed = self.home().forget_schedule(name).await?;
        if self.partitions() > 1 {
            for s in self.stores() {
                s.forget_schedule(name).await?;
            }
        }
        Ok(removed)
    }

    /// The schedules that schedulers registered on this queue ([`Scheduler::run`] registers
    /// its own), by name, each with its state and next tick.
    ///
    /// # Errors
    /// Redis fails, or a registered expression no longer parses.
    pub async fn schedules(&self) -> Result<Vec<ScheduleInfo>, QueueError> {
        let index = self.home().schedule_index().await?;
        // A schedule's state is in one partition, its pause in all: merged over them.
        let names: Vec<String> = index.iter().map(|(name, _)| name.clone()).collect();
        let parts = self.on_each(|s| s.schedule_states(&names)).await?;
        let states = parts
            .into_iter()
            .reduce(|all, part| all.into_iter().zip(part).map(|(a, b)| a.merged(b)).collect())
            .unwrap_or_default();
        let now = SystemTime::now();
        index
            .into_iter()
            .zip(states)
            .map(|((name, json), state)| {
                let registered: Registered = serde_json::from_str(&json).map_err(|e| {
                    QueueError::protocol(
                        "list schedules",
                        crate::ReplyError::BadJson { what: format!("schedule `{name}`"), source: e },
                    )
                })?;
                let cron = Cron::parse_in(&registered.cron, &registered.zone)?;
                Ok(ScheduleInfo {
                    next_tick: cron.next_after(now),
                    name,
                    cron,
                    paused_since: state.paused.and_then(at_ms),
                    last_tick: state.last.and_then(at_ms),
                })
            })
            .collect()
    }
}

fn at_ms(ms: i64) -> Option<SystemTime> {
    Some(SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).ok()?))
}
