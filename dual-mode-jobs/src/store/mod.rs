//! Every Redis command and Lua script of the job layer, with typed replies.
//!
//! Nothing outside this module builds a command or reads a raw reply: the queue, the worker's
//! loops and the scheduler call [`Store`] methods that return typed values or a
//! [`QueueError`], and error codes (`NOGROUP`, `BUSYGROUP`) are read here only.

mod admin;
mod backend;
mod connection;
mod reply;
mod scripts;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use redis::{ScriptInvocation, Value};

use super::envelope::{Envelope, RawFields, field, field_of};
use super::error::QueueError;
use super::lane::Lane;
use super::limit::Bucket;
use super::queue::{QueueConfig, QueueKeys, QueueStats};
use super::record::{CancelOutcome, JobRecord, JobState};

pub(crate) use admin::{ConsumerInfo, StateCounts};
pub(crate) use backend::RedisPartition;
pub use connection::RedisTarget;
use connection::{Connection, Health};
pub(crate) use reply::{Entry, stream_id};
use scripts::STATE_SETS;

/// A run to mark as running: its entry, fencing token, job id, attempt and start time.
#[derive(Clone)]
pub(crate) struct MarkRun {
    pub(crate) entry_id: String,
    pub(crate) token: u64,
    pub(crate) job_id: String,
    pub(crate) attempt: u32,
    pub(crate) started_ms: u64,
}

/// What marking a run as running answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marked {
    /// Marked.
    Yes,
    /// This consumer does not own the entry (any more).
    NotOwned,
    /// A cancellation was requested; not marked.
    CancelRequested,
}

/// What a renewal answered for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renewed {
    /// Renewed.
    Yes,
    /// Refused: another consumer owns the entry, or it is gone.
    Lost,
    /// Renewed, and a cancellation was requested.
    CancelRequested,
}

/// What a fenced write answered for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// Written now.
    Done,
    /// Written already, by an earlier try of this run whose reply was lost.
    Landed,
    /// Refused: no consumer holds the entry (acknowledged by another run, or the group was
    /// recreated).
    Gone,
    /// Refused: another consumer, or a later delivery, holds the entry.
    Other,
}

impl Written {
    fn from_answer(answer: i64) -> Self {
        match answer {
            1 => Self::Done,
            3 => Self::Landed,
            2 => Self::Gone,
            _ => Self::Other,
        }
    }
}

/// A successful run to acknowledge, with its result.
#[derive(Default)]
pub(crate) struct DoneRun {
    pub(crate) entry_id: String,
    pub(crate) token: u64,
    pub(crate) job_id: String,
    pub(crate) unique: Option<String>,
    pub(crate) result: Vec<u8>,
    pub(crate) started_ms: u64,
    pub(crate) attempt: u32,
}

/// How a run ends when it does not succeed.
pub(crate) enum Ending<'a> {
    /// Back to the delayed set as `next`, due in `delay`; the record says `retrying` (a failed
    /// attempt) or `delayed` (a wait without an attempt).
    Later { retry: bool, delay: Duration, next: &'a Envelope },
    /// To the parked stream with these fields.
    Parked { fields: &'a [(Vec<u8>, Vec<u8>)] },
    /// Cancelled while it ran.
    Cancelled,
}

/// One run's entry, fencing token and job (id and unique key, when the entry had an id).
pub(crate) struct RunRef<'a> {
    pub(crate) entry_id: &'a str,
    pub(crate) token: u64,
    pub(crate) job: Option<(&'a str, Option<&'a str>)>,
}

/// A job at its gate: what [`Store::gate`] checks.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gate {
    pub(crate) job_id: String,
    pub(crate) rate_key: Option<String>,
    pub(crate) reserved: bool,
    pub(crate) buckets: Vec<Bucket>,
    /// The rate key's concurrency, if it has one.
    pub(crate) slots: Option<u32>,
}

/// What a job's gate answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Passed {
    /// Start now (holding a slot when the key has a concurrency).
    Start,
    /// Wait this long: the start is reserved.
    Wait(Duration),
    /// Wait for a slot of the key: the job is among its waiters.
    NoSlot,
}

/// A claimed entry: id, fields, delivery count.
pub(crate) type Claimed = (String, RawFields, u64);

/// One queue's keys and group on one Redis, through a connection that reconnects by itself.
///
/// A store reads and writes one of the queue's lanes, whose stream is [`Store::stream`] (see
/// [`Store::lane`]); its keys are the queue's (`keys.stream` is the normal lane's).
#[derive(Clone)]
pub(crate) struct Store {
    target: RedisTarget,
    con: Connection,
    keys: QueueKeys,
    lane: Lane,
    /// The ready streams of all lanes, in the order of [`Lane::ALL`].
    lanes: [String; 3],
    group: String,
    /// The state sets, in the order of [`STATE_SETS`].
    state_keys: Vec<String>,
    /// How long an ended job's record is kept, in ms.
    record_ttl_ms: u64,
    /// The most entries the parked stream keeps.
    parked_max_len: u64,
}

/// A queue's reader: reads its lanes and waits for new entries on connections of its own, so
/// that reads never queue behind the worker's acknowledgements and renewals, and a wait never
/// delays a read.
pub(crate) struct Reader {
    store: Store,
    reads: Connection,
    waiter: Connection,
    block_ms: u64,
    /// The lanes' newest entry ids (in [`Lane::ALL`] order) when a read last found fewer
    /// entries than it asked for: what [`Reader::wait`] waits after.
    last: Option<[String; 3]>,
}

/// What a read found.
pub(crate) enum Read {
    /// The queue is paused: nothing was read.
    Paused,
    /// These entries, each with its lane (possibly none).
    Entries(Vec<(Lane, Entry)>),
}

fn redis(op: &'static str) -> impl FnOnce(redis::RedisError) -> QueueError {
    move |source| {
        if connection::is_unreachable(&source) {
            QueueError::Unavailable { op, source }
        } else {
            QueueError::Redis { op, source }
        }
    }
}

/// Milliseconds of a duration, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Store {
    pub(crate) async fn connect(
        target: RedisTarget,
        keys: QueueKeys,
        config: &QueueConfig,
    ) -> Result<Self, QueueError> {
        let health = Arc::new(Health::default());
        let con = Connection::open(&target, config.response_timeout, health).await.map_err(redis("connect"))?;
        Ok(Self {
            target,
            con,
            lanes: Lane::ALL.map(|lane| keys.lane_stream(lane)),
            state_keys: STATE_SETS.iter().map(|s| format!("{}{s}", keys.state_prefix)).collect(),
            keys,
            lane: Lane::Normal,
            group: config.group.clone(),
            record_ttl_ms: millis(config.record_ttl).max(1),
            parked_max_len: config.parked_max_len.max(1),
        })
    }

    /// The queue's number of partitions as Redis knows it: `n` when this is the first process
    /// to open the queue (or the first since the key was deleted), else what the first wrote.
    pub(crate) async fn claim_partitions(&self, n: u16) -> Result<u16, QueueError> {
        let set = redis::cmd("SET").arg(&self.keys.partitions).arg(n).arg("NX").arg("GET").to_owned();
        let known: Option<String> = match set.query_async(&mut self.con()).await {
            Ok(known) => known,
            // A user whose ACL allows no writes (a read-only dashboard) can still compare.
            Err(e) if e.code() == Some("NOPERM") => redis::cmd("GET")
                .arg(&self.keys.partitions)
                .query_async::<Option<String>>(&mut self.con())
                .await
                .map_err(redis("read the partition count"))?
                .or_else(|| Some(n.to_string())),
            Err(e) => return Err(redis("read the partition count")(e)),
        };
        match known {
            None => Ok(n),
            Some(known) => known.parse().map_err(|_| {
                QueueError::protocol("read the partition count", format!("{:?} holds {known:?}", self.keys.partitions))
            }),
        }
    }

    /// A store of other keys (a partition's) on the same connection.
    pub(crate) fn with_keys(&self, keys: QueueKeys) -> Store {
        Self {
            lanes: Lane::ALL.map(|lane| keys.lane_stream(lane)),
            state_keys: STATE_SETS.iter().map(|s| format!("{}{s}", keys.state_prefix)).collect(),
            keys,
            lane: Lane::Normal,
            ..self.clone()
        }
    }

    /// The store of the same queue's `lane`: the same connection, that lane's stream.
    pub(crate) fn lane(&self, lane: Lane) -> Store {
        Store { lane, ..self.clone() }
    }

    /// The stream of this store's lane.
    fn stream(&self) -> &str {
        &self.lanes[self.lane.index()]
    }

    /// Adds the high and the low lanes' streams (scripts that route an entry by its lane get
    /// the normal lane's stream as `KEYS[1]` and these two where they say).
    fn lane_keys(&self, inv: &mut ScriptInvocation<'_>) {
        inv.key(&self.lanes[Lane::High.index()]).key(&self.lanes[Lane::Low.index()]);
    }

    fn record_key(&self, job_id: &str) -> String {
        format!("{}{job_id}", self.keys.record_prefix)
    }

    fn unique_key(&self, unique: &str) -> String {
        format!("{}{unique}", self.keys.unique_prefix)
    }

    fn delayed_key(&self, job_id: &str) -> String {
        format!("{}{job_id}", self.keys.delayed_entry_prefix)
    }

    /// Adds the stream and the state sets, the keys every record-writing script starts with.
    fn base_keys(&self, inv: &mut ScriptInvocation<'_>) {
        inv.key(self.stream());
        for k in &self.state_keys {
            inv.key(k);
        }
    }

    /// [`Store::base_keys`] with the normal lane's stream, for scripts that route by lane.
    fn normal_base_keys(&self, inv: &mut ScriptInvocation<'_>) {
        inv.key(&self.lanes[Lane::Normal.index()]);
        for k in &self.state_keys {
            inv.key(k);
        }
    }

    /// Adds a job's record key and its unique key (the record again when it has none), and
    /// returns the has-unique flag for `ARGV`.
    fn job_keys(&self, inv: &mut ScriptInvocation<'_>, job_id: &str, unique: Option<&str>) -> u8 {
        let record = self.record_key(job_id);
        match unique {
            Some(u) => {
                inv.key(record).key(self.unique_key(u));
                1
            }
            None => {
                inv.key(&record).key(record);
                0
            }
        }
    }

    pub(crate) fn keys(&self) -> &QueueKeys {
        &self.keys
    }

    fn con(&self) -> Connection {
        self.con.clone()
    }

    fn missing_group(&self) -> QueueError {
        QueueError::MissingGroup { stream: self.stream().to_owned(), group: self.group.clone() }
    }

    /// A reader of this queue's lanes whose waits block up to `block` (on a connection whose
    /// response timeout is `block` plus `timeout`).
    pub(crate) async fn reader(&self, block: Duration, timeout: Duration) -> Result<Reader, QueueError> {
        Ok(Reader {
            store: self.lane(Lane::Normal),
            // Their failures echo those of the queue's connection, which logs the outage.
            reads: Connection::open(&self.target, timeout, Health::quiet()).await.map_err(redis("connect"))?,
            waiter: Connection::open(&self.target, block + timeout, Health::quiet()).await.map_err(redis("connect"))?,
            block_ms: millis(block).max(1),
            last: None,
        })
    }

    /// Makes sure the group exists: created at the stream's beginning the first time, and
    /// recreated at its end when an operator destroyed it (see [`Store::recreate_group`]).
    /// Returns how many entries a recreation moved, if it did.
    pub(crate) async fn ensure_group(&self, delay: Duration) -> Result<Option<usize>, QueueError> {
        let mut moved = None;
        for lane in Lane::ALL {
            if let Some(n) = self.lane(lane).ensure_lane_group(delay).await? {
                moved = Some(moved.unwrap_or(0) + n);
            }
        }
        Ok(moved)
    }

    /// [`Store::ensure_group`] for this store's lane.
    async fn ensure_lane_group(&self, delay: Duration) -> Result<Option<usize>, QueueError> {
        let marker = match self.lane {
            Lane::Normal => format!("{}group:{}", self.keys.state_prefix, self.group),
            lane => format!("{}group:{}:{lane}", self.keys.state_prefix, self.group),
        };
        let answer: i64 = scripts::ENSURE_GROUP
            .key(self.stream())
            .key(&marker)
            .arg(&self.group)
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("create group"))?;
        if answer == 2 { self.recreate_group(delay).await } else { Ok(None) }
    }

    /// Recreates a destroyed group at the stream's end and moves the entries the stream holds
    /// to the delayed set, due in `delay` (see the script). `None` when another worker did it.
    async fn recreate_group(&self, delay: Duration) -> Result<Option<usize>, QueueError> {
        const MAX: usize = 10_000;
        let v: Value = redis::cmd("XRANGE")
            .arg(self.stream())
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(MAX)
            .query_async(&mut self.con())
            .await
            .map_err(redis("recreate group"))?;
        let entries = reply::entries(v).map_err(|d| QueueError::protocol("recreate group", d))?;
        let mut inv = scripts::RECREATE.prepare_invoke();
        self.base_keys(&mut inv);
        inv.key(&self.keys.delayed).arg(&self.group).arg(millis(delay));
        for (entry_id, fields) in &entries {
            let job_id =
                field_of(fields, field::ID).and_then(|v| std::str::from_utf8(v).ok()).filter(|id| !id.is_empty());
            match job_id {
                Some(id) => inv.key(self.delayed_key(id)).key(self.record_key(id)),
                None => inv.key(self.stream()).key(self.stream()),
            };
            inv.arg(entry_id).arg(job_id.unwrap_or(""));
        }
        let moved: i64 = inv.invoke_async(&mut self.con()).await.map_err(redis("recreate group"))?;
        Ok(usize::try_from(moved).ok())
    }

    /// Pushes an envelope and writes its `queued` record, or, for a unique job whose key is
    /// held, returns `Err(holder id)` and writes nothing.
    pub(crate) async fn push(
        &self,
        env: &Envelope,
        unique_ttl: Duration,
    ) -> Result<Result<String, String>, QueueError> {
        let v: Value = self.eval(&scripts::PUSH, &self.push_cmd(env, unique_ttl), "push").await?;
        reply::pushed(v).map_err(|d| QueueError::protocol("push", d))
    }

    /// The push script's call for `env`, written straight into one command.
    fn push_cmd(&self, env: &Envelope, unique_ttl: Duration) -> redis::Cmd {
        let record = self.record_key(&env.id);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(scripts::PUSH.get_hash()).arg(3).arg(self.stream()).arg(&record);
        match &env.unique {
            Some(u) => cmd.arg(self.unique_key(u)),
            None => cmd.arg(&record),
        };
        let items = record_items(env);
        cmd.arg(&env.id).arg(unique_ttl_ms(env, unique_ttl)).arg(items.len());
        for item in items {
            cmd.arg(item);
        }
        for (k, v) in env.to_fields() {
            cmd.arg(k).arg(v.as_ref());
        }
        cmd
    }

    /// Runs a script's `EVALSHA` command, loading the script first when the server does not
    /// have it (a fresh or restarted server).
    async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        cmd: &redis::Cmd,
        op: &'static str,
    ) -> Result<T, QueueError> {
        let mut con = self.con();
        match cmd.query_async(&mut con).await {
            Err(e) if is_no_script(&e) => {
                script.load_async(&mut con).await.map_err(redis(op))?;
                cmd.query_async(&mut con).await.map_err(redis(op))
            }
            r => r.map_err(redis(op)),
        }
    }

    /// Pipelined pushes, one round trip; per envelope its entry id or the holder of its
    /// unique key.
    pub(crate) async fn push_many(
        &self,
        envs: &[Envelope],
        unique_ttl: Duration,
    ) -> Result<Vec<Result<String, String>>, QueueError> {
        let mut pipe = redis::pipe();
        for env in envs {
            pipe.add_command(self.push_cmd(env, unique_ttl));
        }
        let replies: Vec<Value> = match pipe.query_async(&mut self.con()).await {
            Ok(r) => r,
            // The script is not cached yet (a fresh or restarted server): load it, go again.
            Err(e) if is_no_script(&e) => {
                scripts::PUSH.load_async(&mut self.con()).await.map_err(redis("bulk push"))?;
                pipe.query_async(&mut self.con()).await.map_err(redis("bulk push"))?
            }
            Err(e) => return Err(redis("bulk push")(e)),
        };
        if replies.len() != envs.len() {
            return Err(QueueError::protocol(
                "bulk push",
                format!("{} replies for {} entries", replies.len(), envs.len()),
            ));
        }
        replies.into_iter().map(|v| reply::pushed(v).map_err(|d| QueueError::protocol("bulk push", d))).collect()
    }

    /// Puts an envelope in the delayed set, due at `at_ms` (ms since the epoch) or, when that
    /// is 0, `delay_ms` after the server's clock, and writes its `delayed` record; for a unique
    /// job whose key is held, returns `Err(holder id)`.
    pub(crate) async fn push_delayed(
        &self,
        env: &Envelope,
        unique_ttl: Duration,
        at_ms: u64,
        delay_ms: u64,
    ) -> Result<Result<String, String>, QueueError> {
        let mut inv = scripts::PUSH_DELAYED.prepare_invoke();
        self.base_keys(&mut inv);
        inv.key(&self.keys.delayed).key(self.delayed_key(&env.id));
        self.job_keys(&mut inv, &env.id, env.unique.as_deref());
        let items = record_items(env);
        inv.arg(&env.id).arg(unique_ttl_ms(env, unique_ttl)).arg(at_ms).arg(delay_ms).arg(items.len());
        for item in items {
            inv.arg(item);
        }
        for (k, v) in env.to_fields() {
            inv.arg(k).arg(v.as_ref());
        }
        let v: Value = inv.invoke_async(&mut self.con()).await.map_err(redis("delayed push"))?;
        reply::pushed(v).map_err(|d| QueueError::protocol("delayed push", d))
    }

    /// Moves up to `max` due delayed entries into the stream; returns how many moved.
    pub(crate) async fn promote(&self, max: usize) -> Result<usize, QueueError> {
        let due: Vec<String> = scripts::DUE
            .key(&self.keys.delayed)
            .arg(max)
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("find due entries"))?;
        if due.is_empty() {
            return Ok(0);
        }
        let mut inv = scripts::PROMOTE.prepare_invoke();
        self.normal_base_keys(&mut inv);
        inv.key(&self.keys.delayed);
        self.lane_keys(&mut inv);
        for id in &due {
            inv.key(self.delayed_key(id)).key(self.record_key(id));
            inv.arg(id);
        }
        let moved: i64 = inv.invoke_async(&mut self.con()).await.map_err(redis("promote due entries"))?;
        Ok(usize::try_from(moved).unwrap_or(0))
    }

    /// Marks a batch of runs as running (fenced).
    pub(crate) async fn mark(&self, consumer: &str, runs: &[MarkRun]) -> Result<Vec<Marked>, QueueError> {
        let mut inv = scripts::MARK.prepare_invoke();
        self.base_keys(&mut inv);
        inv.arg(&self.group).arg(consumer).arg(self.record_ttl_ms);
        for r in runs {
            inv.key(self.record_key(&r.job_id));
            inv.arg(&r.entry_id).arg(r.token).arg(&r.job_id).arg(r.attempt).arg(r.started_ms);
        }
        let out: Vec<i64> = inv.invoke_async(&mut self.con()).await.map_err(redis("mark runs"))?;
        if out.len() != runs.len() {
            return Err(QueueError::protocol("mark runs", format!("{} answers for {} runs", out.len(), runs.len())));
        }
        Ok(out
            .into_iter()
            .map(|a| match a {
                1 => Marked::Yes,
                2 => Marked::CancelRequested,
                _ => Marked::NotOwned,
            })
            .collect())
    }

    /// Counts of the lanes' streams and of the group's pending entries in them, of the delayed
    /// set and of the parked stream, and how many parked entries its cap dropped.
    pub(crate) async fn stats(&self) -> Result<QueueStats, QueueError> {
        // One round trip; errors come back per command, so that a lane without its group
        // (NOGROUP from XPENDING) counts no pending entry instead of failing the rest.
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for stream in &self.lanes {
            pipe.cmd("XLEN").arg(stream).cmd("XPENDING").arg(stream).arg(&self.group);
        }
        pipe.cmd("ZCARD").arg(&self.keys.delayed).cmd("XLEN").arg(&self.keys.parked);
        pipe.cmd("GET").arg(&self.keys.parked_dropped);
        let answers: Vec<redis::RedisResult<Value>> =
            pipe.query_async(&mut self.con()).await.map_err(redis("stats"))?;
        let count = |answer: &redis::RedisResult<Value>| -> Result<u64, QueueError> {
            match answer {
                Ok(Value::Nil) => Ok(0),
                // XPENDING's summary: the count first.
                Ok(v) => Ok(reply::int(v)
                    .or_else(|| reply::text(v).and_then(|t| t.parse().ok()))
                    .or_else(|| reply::items(v).and_then(|i| i.first()).and_then(reply::int))
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0)),
                Err(e) if e.code() == Some("NOGROUP") => Ok(0),
                Err(e) => Err(QueueError::protocol("stats", e.to_string())),
            }
        };
        let counts = answers.iter().map(count).collect::<Result<Vec<u64>, _>>()?;
        let [high, high_pending, normal, normal_pending, low, low_pending, delayed, parked, parked_dropped] =
            counts[..]
        else {
            return Err(QueueError::protocol("stats", format!("{} answers for 9 commands", counts.len())));
        };
        Ok(QueueStats {
            length: high + normal + low,
            pending: high_pending + normal_pending + low_pending,
            delayed,
            parked,
            parked_dropped,
        })
    }

    /// `XRANGE` of the parked stream.
    pub(crate) async fn parked_range(&self, start: &str, end: &str, count: usize) -> Result<Vec<Entry>, QueueError> {
        let v: Value = redis::cmd("XRANGE")
            .arg(&self.keys.parked)
            .arg(start)
            .arg(end)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.con())
            .await
            .map_err(redis("list parked"))?;
        reply::entries(v).map_err(|d| QueueError::protocol("list parked", d))
    }

    /// Moves a parked entry back into the stream (original fields whose names start with
    /// `raw_prefix`, attempt reset to 1); returns the new entry id, `None` if absent.
    pub(crate) async fn redrive(
        &self,
        parked_id: &str,
        raw_prefix: &str,
        job_id: Option<&str>,
    ) -> Result<Option<String>, QueueError> {
        let mut inv = scripts::REDRIVE.prepare_invoke();
        self.normal_base_keys(&mut inv);
        inv.key(&self.keys.parked);
        match job_id {
            Some(id) => inv.key(self.record_key(id)),
            None => inv.key(&self.keys.parked),
        };
        self.lane_keys(&mut inv);
        inv.arg(parked_id).arg(raw_prefix).arg(job_id.unwrap_or(""));
        let v: Value = inv.invoke_async(&mut self.con()).await.map_err(redis("re-drive"))?;
        Ok(reply::text(&v))
    }

    /// Claims up to `count` entries idle for `min_idle_ms` or more, scanning from `cursor`;
    /// returns the next cursor and the entries this consumer now owns.
    pub(crate) async fn claim(
        &self,
        consumer: &str,
        min_idle_ms: u64,
        cursor: &str,
        count: usize,
    ) -> Result<(String, Vec<Claimed>), QueueError> {
        let res: Result<Value, _> = scripts::CLAIM
            .key(self.stream())
            .arg(&self.group)
            .arg(consumer)
            .arg(min_idle_ms)
            .arg(cursor)
            .arg(count)
            .invoke_async(&mut self.con())
            .await;
        match res {
            Ok(v) => reply::claim(v).map_err(|d| QueueError::protocol("claim", d)),
            Err(e) if e.code() == Some("NOGROUP") => Err(self.missing_group()),
            Err(e) => Err(redis("claim")(e)),
        }
    }

    /// Renews the leases of these runs (resets their idle time, keeps their tokens); a run
    /// without a job id passes its entry id as `job` (it has no record).
    pub(crate) async fn renew(&self, consumer: &str, runs: &[(&str, u64, &str)]) -> Result<Vec<Renewed>, QueueError> {
        let mut inv = scripts::RENEW.prepare_invoke();
        inv.key(self.stream()).arg(&self.group).arg(consumer);
        for (entry_id, token, job_id) in runs {
            inv.key(self.record_key(job_id)).arg(*entry_id).arg(*token);
        }
        let out: Vec<i64> = inv.invoke_async(&mut self.con()).await.map_err(redis("renew leases"))?;
        if out.len() != runs.len() {
            return Err(QueueError::protocol("renew leases", format!("{} answers for {} runs", out.len(), runs.len())));
        }
        Ok(out
            .into_iter()
            .map(|a| match a {
                1 => Renewed::Yes,
                2 => Renewed::CancelRequested,
                _ => Renewed::Lost,
            })
            .collect())
    }

    /// Acknowledges and deletes these runs' entries and records them `done` with their
    /// results; per run what was written.
    pub(crate) async fn ack(&self, consumer: &str, runs: &[DoneRun]) -> Result<Vec<Written>, QueueError> {
        // Written straight into one command: the keys first, then the arguments.
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(scripts::ACK.get_hash()).arg(1 + STATE_SETS.len() + 2 * runs.len()).arg(self.stream());
        cmd.arg(&self.state_keys);
        for r in runs {
            let record = self.record_key(&r.job_id);
            match &r.unique {
                Some(u) => cmd.arg(record).arg(self.unique_key(u)),
                None => cmd.arg(&record).arg(record),
            };
        }
        cmd.arg(&self.group).arg(consumer).arg(self.record_ttl_ms).arg(&self.keys.finished_channel);
        // The range of this consumer's pending entries the script reads at once: from the
        // batch's lowest to its highest id, at most as many as run here and then some.
        let ordered = || runs.iter().filter_map(|r| Some((stream_id(&r.entry_id)?, r.entry_id.as_str())));
        let lo = ordered().min().map_or("-", |(_, id)| id);
        let hi = ordered().max().map_or("+", |(_, id)| id);
        cmd.arg(lo).arg(hi).arg(runs.len() * 4 + 64);
        for r in runs {
            cmd.arg(&r.entry_id).arg(r.token).arg(&r.job_id).arg(u8::from(r.unique.is_some()));
            cmd.arg(r.result.as_slice()).arg(r.started_ms).arg(r.attempt);
        }
        let done: Vec<i64> = self.eval(&scripts::ACK, &cmd, "acknowledge").await?;
        if done.len() != runs.len() {
            return Err(QueueError::protocol("acknowledge", format!("{} answers for {} runs", done.len(), runs.len())));
        }
        Ok(done.into_iter().map(Written::from_answer).collect())
    }

    /// Ends a run without success (see [`Ending`]), with `record` items for its record.
    pub(crate) async fn end(
        &self,
        consumer: &str,
        run: &RunRef<'_>,
        ending: &Ending<'_>,
        record: &[(&str, Vec<u8>)],
    ) -> Result<Written, QueueError> {
        let mut inv = scripts::END.prepare_invoke();
        self.base_keys(&mut inv);
        let (job_id, has_unique) = match run.job {
            Some((id, unique)) => (id, self.job_keys(&mut inv, id, unique)),
            None => {
                inv.key(self.stream()).key(self.stream());
                ("", 0)
            }
        };
        let (state, delay) = match ending {
            Ending::Later { retry, delay, .. } => {
                inv.key(&self.keys.delayed).key(self.delayed_key(job_id));
                (if *retry { "retrying" } else { "delayed" }, millis(*delay))
            }
            Ending::Parked { .. } => {
                inv.key(&self.keys.parked).key(&self.keys.parked_dropped);
                ("parked", self.parked_max_len)
            }
            Ending::Cancelled => ("cancelled", 0),
        };
        inv.arg(&self.group).arg(consumer).arg(self.record_ttl_ms).arg(&self.keys.finished_channel);
        inv.arg(run.entry_id).arg(run.token).arg(job_id).arg(has_unique).arg(state).arg(delay);
        inv.arg(record.len() * 2);
        for (k, v) in record {
            inv.arg(*k).arg(v.as_slice());
        }
        match ending {
            Ending::Later { next, .. } => {
                for (k, v) in next.to_fields() {
                    inv.arg(k).arg(v.as_ref());
                }
            }
            Ending::Parked { fields } => {
                for (k, v) in *fields {
                    inv.arg(k.as_slice()).arg(v.as_slice());
                }
            }
            Ending::Cancelled => {}
        }
        let done: i64 = inv.invoke_async(&mut self.con()).await.map_err(redis(state))?;
        Ok(Written::from_answer(done))
    }

    /// Passes jobs through their gates as they are about to start, in one script (see it):
    /// their rate limits, and a slot of their rate keys when the keys have a concurrency,
    /// held for `lease`. Per job what it answered.
    pub(crate) async fn gate(&self, gates: &[Gate], lease: Duration) -> Result<Vec<Passed>, QueueError> {
        let mut inv = scripts::GATE.prepare_invoke();
        inv.arg(millis(lease).max(1));
        for gate in gates {
            match &gate.rate_key {
                Some(key) => inv.key(self.pause_key(key)),
                None => inv.key(&self.keys.delayed),
            };
            match (&gate.rate_key, gate.slots) {
                (Some(key), Some(_)) => inv.key(self.slot_key(key)).key(self.slot_wait_key(key)),
                _ => inv.key(&self.keys.delayed).key(&self.keys.delayed),
            };
            inv.arg(u8::from(gate.reserved)).arg(u8::from(gate.rate_key.is_some()));
            inv.arg(gate.slots.unwrap_or(0)).arg(&gate.job_id).arg(gate.buckets.len());
            for b in &gate.buckets {
                inv.key(format!("{}{}", self.keys.rate_prefix, b.name)).arg(b.interval_ms).arg(b.tolerance_ms);
            }
        }
        let waits: Vec<i64> = inv.invoke_async(&mut self.con()).await.map_err(redis("check rate limits"))?;
        if waits.len() != gates.len() {
            return Err(QueueError::protocol(
                "check rate limits",
                format!("{} answers for {} jobs", waits.len(), gates.len()),
            ));
        }
        Ok(waits
            .into_iter()
            .map(|wait| match u64::try_from(wait) {
                Ok(0) => Passed::Start,
                Ok(ms) => Passed::Wait(Duration::from_millis(ms)),
                Err(_) => Passed::NoSlot,
            })
            .collect())
    }

    /// Gives back a job's slot of `rate_key` and wakes the key's oldest waiter.
    pub(crate) async fn release_slot(&self, rate_key: &str, job_id: &str) -> Result<(), QueueError> {
        let _: i64 = scripts::RELEASE_SLOT
            .key(self.slot_key(rate_key))
            .key(self.slot_wait_key(rate_key))
            .key(&self.keys.delayed)
            .arg(job_id)
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("release a slot"))?;
        Ok(())
    }

    /// Gives back a job's slot of `rate_key` and takes the key's oldest waiter off the
    /// waiters without waking it (it waits in another store's delayed set: see
    /// [`Store::wake`]). Returns the waiter's job id.
    pub(crate) async fn release_slot_take(&self, rate_key: &str, job_id: &str) -> Result<Option<String>, QueueError> {
        scripts::RELEASE_SLOT_TAKE
            .key(self.slot_key(rate_key))
            .key(self.slot_wait_key(rate_key))
            .arg(job_id)
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("release a slot"))
    }

    /// Makes a job in the delayed set due at once (whatever the clocks say); returns whether
    /// it was there.
    pub(crate) async fn wake(&self, job_id: &str) -> Result<bool, QueueError> {
        let changed: i64 = redis::cmd("ZADD")
            .arg(&self.keys.delayed)
            .arg("XX")
            .arg("CH")
            .arg(0)
            .arg(job_id)
            .query_async(&mut self.con())
            .await
            .map_err(redis("wake a waiter"))?;
        Ok(changed == 1)
    }

    /// Extends the slots these running jobs hold (rate key, job id) by `lease`.
    pub(crate) async fn renew_slots(&self, held: &[(&str, &str)], lease: Duration) -> Result<(), QueueError> {
        let mut inv = scripts::RENEW_SLOTS.prepare_invoke();
        inv.arg(millis(lease).max(1));
        for (key, job_id) in held {
            inv.key(self.slot_key(key)).arg(*job_id);
        }
        let _: i64 = inv.invoke_async(&mut self.con()).await.map_err(redis("renew slots"))?;
        Ok(())
    }

    fn slot_key(&self, rate_key: &str) -> String {
        format!("{}{rate_key}", self.keys.slot_prefix)
    }

    fn slot_wait_key(&self, rate_key: &str) -> String {
        format!("{}{rate_key}", self.keys.slot_wait_prefix)
    }

    /// Pauses a rate key for every worker for `pause` (a longer pause stays).
    pub(crate) async fn pause_rate_key(&self, rate_key: &str, pause: Duration) -> Result<(), QueueError> {
        let _: i64 = scripts::PAUSE
            .key(self.pause_key(rate_key))
            .arg(millis(pause).max(1))
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("pause rate key"))?;
        Ok(())
    }

    fn pause_key(&self, rate_key: &str) -> String {
        format!("{}{rate_key}", self.keys.rate_pause_prefix)
    }

    /// This consumer's pending entries idle for `min_idle` or more, up to `count`.
    pub(crate) async fn own_pending(
        &self,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<String>, QueueError> {
        let res: Result<Vec<(String, String, u64, u64)>, _> = redis::cmd("XPENDING")
            .arg(self.stream())
            .arg(&self.group)
            .arg("IDLE")
            .arg(millis(min_idle))
            .arg("-")
            .arg("+")
            .arg(count)
            .arg(consumer)
            .query_async(&mut self.con())
            .await;
        match res {
            Ok(entries) => Ok(entries.into_iter().map(|(id, ..)| id).collect()),
            Err(e) if e.code() == Some("NOGROUP") => Err(self.missing_group()),
            Err(e) => Err(redis("list own pending entries")(e)),
        }
    }

    /// Claims these of this consumer's own pending entries again (raising their delivery
    /// counts); returns those it still held.
    pub(crate) async fn reclaim(&self, consumer: &str, ids: &[String]) -> Result<Vec<Claimed>, QueueError> {
        let mut inv = scripts::RECLAIM.prepare_invoke();
        inv.key(self.stream()).arg(&self.group).arg(consumer);
        for id in ids {
            inv.arg(id);
        }
        let v: Value = inv.invoke_async(&mut self.con()).await.map_err(redis("reclaim own entries"))?;
        reply::claimed(v).map_err(|d| QueueError::protocol("reclaim own entries", d))
    }

    /// Cancels a job by id.
    pub(crate) async fn cancel(&self, job_id: &str) -> Result<CancelOutcome, QueueError> {
        let mut con = self.con();
        let unique: Option<String> = redis::cmd("HGET")
            .arg(self.record_key(job_id))
            .arg("unique")
            .query_async(&mut con)
            .await
            .map_err(redis("cancel"))?;
        let mut inv = scripts::CANCEL.prepare_invoke();
        self.normal_base_keys(&mut inv);
        inv.key(&self.keys.delayed).key(self.delayed_key(job_id));
        let has_unique = self.job_keys(&mut inv, job_id, unique.as_deref());
        self.lane_keys(&mut inv);
        inv.arg(&self.group).arg(self.record_ttl_ms).arg(&self.keys.finished_channel).arg(job_id).arg(has_unique);
        let answer: String = inv.invoke_async(&mut con).await.map_err(redis("cancel"))?;
        Ok(match answer.as_str() {
            "removed" => CancelOutcome::Removed,
            "requested" => CancelOutcome::Requested,
            "unknown" => CancelOutcome::Unknown,
            other => match other.parse::<JobState>() {
                Ok(state) => CancelOutcome::AlreadyEnded(state),
                Err(_) => return Err(QueueError::protocol("cancel", format!("unexpected answer {other:?}"))),
            },
        })
    }

    /// A job's record, if it has one.
    pub(crate) async fn record(&self, job_id: &str) -> Result<Option<JobRecord>, QueueError> {
        let fields: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(self.record_key(job_id))
            .query_async(&mut self.con())
            .await
            .map_err(redis("read job record"))?;
        Ok(JobRecord::from_hash(job_id, fields))
    }

    /// Up to `count` records of jobs in `state` from position `start`, and how many jobs
    /// are in that state. Running and ended jobs come from their state sets (oldest transition
    /// first); queued jobs from the stream (in queue order; the total is the stream's entries
    /// not yet delivered); delayed and retrying jobs from the delayed set (by due time; the
    /// total counts both states).
    pub(crate) async fn records(
        &self,
        state: JobState,
        start: usize,
        count: usize,
    ) -> Result<(Vec<JobRecord>, u64), QueueError> {
        let mut con = self.con();
        let window = start.saturating_add(count);
        let (ids, total, filter): (Vec<String>, u64, bool) = match state {
            JobState::Queued => {
                // Lane after lane, in reading order.
                let mut ids = Vec::new();
                for stream in &self.lanes {
                    let want = window.saturating_mul(2).max(1).saturating_sub(ids.len());
                    if want == 0 {
                        break;
                    }
                    let entries: Value = redis::cmd("XRANGE")
                        .arg(stream)
                        .arg("-")
                        .arg("+")
                        .arg("COUNT")
                        .arg(want)
                        .query_async(&mut con)
                        .await
                        .map_err(redis("list jobs"))?;
                    let entries = reply::entries(entries).map_err(|d| QueueError::protocol("list jobs", d))?;
                    ids.extend(
                        entries
                            .iter()
                            .filter_map(|(_, f)| Some(std::str::from_utf8(field_of(f, field::ID)?).ok()?.to_owned())),
                    );
                }
                let counts = self.stats().await?;
                (ids, counts.length.saturating_sub(counts.pending), true)
            }
            JobState::Delayed | JobState::Retrying => {
                let (ids, total): (Vec<String>, u64) = redis::pipe()
                    .cmd("ZRANGE")
                    .arg(&self.keys.delayed)
                    .arg(0)
                    .arg(window.saturating_mul(2))
                    .cmd("ZCARD")
                    .arg(&self.keys.delayed)
                    .query_async(&mut con)
                    .await
                    .map_err(redis("list jobs"))?;
                (ids, total, true)
            }
            _ => {
                let set = format!("{}{}", self.keys.state_prefix, state.as_str());
                let (ids, total): (Vec<String>, u64) = redis::pipe()
                    .cmd("ZRANGE")
                    .arg(&set)
                    .arg(start)
                    .arg(window.saturating_sub(1))
                    .cmd("ZCARD")
                    .arg(&set)
                    .query_async(&mut con)
                    .await
                    .map_err(redis("list jobs"))?;
                (ids, total, false)
            }
        };
        if ids.is_empty() || count == 0 {
            return Ok((Vec::new(), total));
        }
        let records = self.records_of(&ids).await?.into_iter().flatten();
        let records: Vec<JobRecord> = if filter {
            records.filter(|r| r.state == state).skip(start).take(count).collect()
        } else {
            records.collect()
        };
        Ok((records, total))
    }

    /// A stream of the ids of jobs as they end, on a Pub/Sub connection of its own.
    pub(crate) async fn finished(&self) -> Result<redis::aio::PubSubStream, QueueError> {
        let mut pubsub = Connection::pubsub(&self.target).await.map_err(redis("subscribe"))?;
        pubsub.subscribe(&self.keys.finished_channel).await.map_err(redis("subscribe"))?;
        Ok(pubsub.into_on_message())
    }

    /// Re-queues up to `count` orphaned entries after `cursor` (see the sweep script); returns
    /// the next cursor (`None`: the scan is complete) and how many were re-queued.
    pub(crate) async fn sweep(&self, cursor: &str, count: usize) -> Result<(Option<String>, u64), QueueError> {
        let res: Result<(String, u64), _> = scripts::SWEEP
            .key(self.stream())
            .arg(&self.group)
            .arg(cursor)
            .arg(count)
            .invoke_async(&mut self.con())
            .await;
        match res {
            Ok((next, moved)) => Ok((Some(next).filter(|n| !n.is_empty()), moved)),
            Err(e) if e.code() == Some("NOGROUP") || e.code() == Some("ERR") && is_missing_stream(&e) => {
                Err(self.missing_group())
            }
            Err(e) => Err(redis("sweep orphaned entries")(e)),
        }
    }

    /// Removes the ids of ended jobs whose records expired from the state sets.
    pub(crate) async fn trim_ended(&self) -> Result<u64, QueueError> {
        let mut inv = scripts::TRIM.prepare_invoke();
        for (state, key) in STATE_SETS.iter().zip(&self.state_keys) {
            if matches!(*state, "done" | "parked" | "cancelled") {
                inv.key(key);
            }
        }
        inv.arg(self.record_ttl_ms).invoke_async(&mut self.con()).await.map_err(redis("trim ended jobs"))
    }

    /// Removes consumers other than `consumer` that hold nothing and have not read for
    /// `min_idle`; returns how many.
    pub(crate) async fn prune_consumers(&self, consumer: &str, min_idle: Duration) -> Result<u64, QueueError> {
        scripts::PRUNE
            .key(self.stream())
            .arg(&self.group)
            .arg(millis(min_idle))
            .arg(consumer)
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("prune consumers"))
    }

    /// Removes `consumer` from the group if it holds no pending entry; returns whether it did.
    pub(crate) async fn remove_consumer_if_idle(&self, consumer: &str) -> Result<bool, QueueError> {
        let removed: i64 = scripts::DEL_CONSUMER
            .key(self.stream())
            .arg(&self.group)
            .arg(consumer)
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("remove consumer"))?;
        Ok(removed == 1)
    }

    /// Enqueues a schedule's tick unless its dedupe key exists or the schedule is paused.
    pub(crate) async fn tick(
        &self,
        keys: &ScheduleKeys,
        dedupe_ttl: Duration,
        tick_ms: i64,
        env: &Envelope,
        unique_ttl: Duration,
    ) -> Result<Ticked, QueueError> {
        let mut inv = scripts::TICK.prepare_invoke();
        self.base_keys(&mut inv);
        inv.key(format!("{}{tick_ms}", keys.tick_prefix))
            .key(&keys.last)
            .key(self.record_key(&env.id))
            .key(&keys.paused)
            .key(env.unique.as_deref().map_or_else(|| self.record_key(&env.id), |u| self.unique_key(u)));
        let items = record_items(env);
        inv.arg(millis(dedupe_ttl).max(1)).arg(tick_ms).arg(&env.id).arg(items.len());
        inv.arg(unique_ttl_ms(env, unique_ttl));
        for item in items {
            inv.arg(item);
        }
        for (k, v) in env.to_fields() {
            inv.arg(k).arg(v.as_ref());
        }
        let v: Value = inv.invoke_async(&mut self.con()).await.map_err(redis("enqueue tick"))?;
        Ok(match v {
            Value::Int(0) => Ticked::Paused,
            Value::Nil => Ticked::Duplicate,
            Value::Array(held) => Ticked::Held(
                held.get(1)
                    .and_then(reply::text)
                    .ok_or_else(|| QueueError::protocol("enqueue tick", format!("{held:?}")))?,
            ),
            other => Ticked::Enqueued(
                reply::text(&other).ok_or_else(|| QueueError::protocol("enqueue tick", format!("{other:?}")))?,
            ),
        })
    }

    /// The last tick (ms) stored under `last_key`.
    pub(crate) async fn last_tick(&self, last_key: &str) -> Result<Option<i64>, QueueError> {
        let v: Value =
            redis::cmd("GET").arg(last_key).query_async(&mut self.con()).await.map_err(redis("read last tick"))?;
        Ok(reply::int(&v))
    }

    /// Marks a schedule paused at `now_ms`; returns whether it was running.
    pub(crate) async fn pause_schedule(&self, keys: &ScheduleKeys, now_ms: u64) -> Result<bool, QueueError> {
        let v: Value = redis::cmd("SET")
            .arg(&keys.paused)
            .arg(now_ms)
            .arg("NX")
            .query_async(&mut self.con())
            .await
            .map_err(redis("pause schedule"))?;
        Ok(v != Value::Nil)
    }

    /// Lifts a schedule's pause, noting the time; returns whether it was paused.
    pub(crate) async fn resume_schedule(&self, keys: &ScheduleKeys, now_ms: u64) -> Result<bool, QueueError> {
        let resumed: i64 = scripts::RESUME
            .key(&keys.paused)
            .key(&keys.resumed)
            .arg(now_ms)
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("resume schedule"))?;
        Ok(resumed == 1)
    }

    /// Records schedules (name, description) in the queue's index of schedules.
    pub(crate) async fn register_schedules(&self, entries: &[(String, String)]) -> Result<(), QueueError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("HSET");
        cmd.arg(self.schedule_index_key());
        for (name, description) in entries {
            cmd.arg(name).arg(description);
        }
        let _: Value = cmd.query_async(&mut self.con()).await.map_err(redis("register schedules"))?;
        Ok(())
    }

    /// The queue's index of schedules: (name, description) pairs, by name.
    pub(crate) async fn schedule_index(&self) -> Result<Vec<(String, String)>, QueueError> {
        let all: std::collections::BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(self.schedule_index_key())
            .query_async(&mut self.con())
            .await
            .map_err(redis("list schedules"))?;
        Ok(all.into_iter().collect())
    }

    /// The state of each schedule: last tick, pause time and resume time (ms).
    pub(crate) async fn schedule_states(&self, keys: &[ScheduleKeys]) -> Result<Vec<ScheduleState>, QueueError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for k in keys {
            cmd.arg(&k.last).arg(&k.paused).arg(&k.resumed);
        }
        let v: Value = cmd.query_async(&mut self.con()).await.map_err(redis("read schedules"))?;
        let items = reply::items(&v)
            .filter(|i| i.len() == keys.len() * 3)
            .ok_or_else(|| QueueError::protocol("read schedules", format!("{v:?}")))?;
        Ok(items
            .chunks(3)
            .map(|c| ScheduleState { last: reply::int(&c[0]), paused: reply::int(&c[1]), resumed: reply::int(&c[2]) })
            .collect())
    }

    /// Removes a schedule from the index with its pause and tick state; returns whether it
    /// was registered.
    pub(crate) async fn forget_schedule(&self, keys: &ScheduleKeys, name: &str) -> Result<bool, QueueError> {
        let removed: i64 = scripts::FORGET
            .key(self.schedule_index_key())
            .key(&keys.paused)
            .key(&keys.resumed)
            .key(&keys.last)
            .arg(name)
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("forget schedule"))?;
        Ok(removed == 1)
    }

    /// The hash of the queue's schedules: the schedule prefix without its trailing colon.
    fn schedule_index_key(&self) -> &str {
        self.keys.schedule_prefix.trim_end_matches(':')
    }
}

/// The keys of one schedule.
pub(crate) struct ScheduleKeys {
    /// Prefix of its ticks' dedupe keys (the tick's ms follow).
    pub(crate) tick_prefix: String,
    /// The last tick enqueued (ms).
    pub(crate) last: String,
    /// Present while paused, holding the pause time (ms).
    pub(crate) paused: String,
    /// The last resume time (ms).
    pub(crate) resumed: String,
}

impl ScheduleKeys {
    pub(crate) fn new(keys: &QueueKeys, name: &str) -> Self {
        let base = format!("{}{name}", keys.schedule_prefix);
        Self {
            tick_prefix: format!("{base}:tick:"),
            last: format!("{base}:last"),
            paused: format!("{base}:paused"),
            resumed: format!("{base}:resumed"),
        }
    }
}

/// What the tick script did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ticked {
    /// Enqueued as this entry.
    Enqueued(String),
    /// Another scheduler enqueued this tick already.
    Duplicate,
    /// The schedule is paused: nothing enqueued, the tick not marked.
    Paused,
    /// The job of an earlier tick (this id) holds the unique key: nothing enqueued, the tick
    /// marked.
    Held(String),
}

/// A schedule's state in Redis: last tick, pause and resume times (ms since the epoch).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScheduleState {
    pub(crate) last: Option<i64>,
    pub(crate) paused: Option<i64>,
    pub(crate) resumed: Option<i64>,
}

impl ScheduleState {
    /// The state over two partitions' keys: the later tick and resume, the earlier pause.
    pub(crate) fn merged(self, other: Self) -> Self {
        let paused = match (self.paused, other.paused) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Self { last: self.last.max(other.last), paused, resumed: self.resumed.max(other.resumed) }
    }
}

impl Reader {
    /// Up to `count` new entries for `consumer` from the lanes, read in `order`, without
    /// waiting; nothing when the queue is paused.
    pub(crate) async fn read(&mut self, consumer: &str, count: usize, order: [Lane; 3]) -> Result<Read, QueueError> {
        let store = &self.store;
        let mut inv = scripts::READ.prepare_invoke();
        for lane in order {
            inv.key(&store.lanes[lane.index()]);
        }
        inv.key(&store.keys.paused).arg(&store.group).arg(consumer).arg(count);
        let v: Value = match inv.invoke_async(&mut self.reads).await {
            Ok(v) => v,
            Err(e) if e.code() == Some("NOGROUP") => return Err(store.missing_group()),
            Err(e) => return Err(redis("read group")(e)),
        };
        let protocol = |d: String| QueueError::protocol("read group", d);
        let mut parts = reply::into_items(v).ok_or_else(|| protocol("reply is not a list".to_owned()))?.into_iter();
        if parts.next().as_ref().and_then(reply::int) == Some(1) {
            return Ok(Read::Paused);
        }
        let packed =
            parts.next().and_then(reply::into_bytes).ok_or_else(|| protocol("no packed entries".to_owned()))?;
        let (lanes, last) = reply::read(&packed).map_err(protocol)?;
        let mut out = Vec::with_capacity(lanes.iter().map(Vec::len).sum());
        for (lane, entries) in order.into_iter().zip(lanes) {
            out.extend(entries.into_iter().map(|e| (lane, e)));
        }
        self.last = match <[String; 3]>::try_from(last) {
            Ok(ids) => {
                // In `Lane::ALL` order again.
                let mut by_lane: [String; 3] = Default::default();
                for (lane, id) in order.into_iter().zip(ids) {
                    by_lane[lane.index()] = id;
                }
                Some(by_lane)
            }
            Err(_) => None,
        };
        Ok(Read::Entries(out))
    }

    /// Waits up to the block time for an entry newer than those the last short read saw, in
    /// any lane (a plain `XREAD`: nothing is delivered); returns at once when no read was
    /// short.
    pub(crate) async fn wait(&mut self) -> Result<(), QueueError> {
        let Some(last) = &self.last else { return Ok(()) };
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(1).arg("BLOCK").arg(self.block_ms).arg("STREAMS");
        cmd.arg(&self.store.lanes[..]).arg(&last[..]);
        let _: Value = cmd.query_async(&mut self.waiter).await.map_err(redis("wait for entries"))?;
        Ok(())
    }
}

/// The record items a push writes: type, idempotency key, attempt, enqueue time, and the
/// maximum attempts and unique key when set.
fn record_items(env: &Envelope) -> Vec<Cow<'_, [u8]>> {
    let text = |s: &'static str| Cow::Borrowed(s.as_bytes());
    let mut out = Vec::with_capacity(14);
    out.extend([
        text("type"),
        Cow::Borrowed(env.type_name.as_bytes()),
        text("key"),
        Cow::Borrowed(env.idempotency_key.as_bytes()),
        text("attempt"),
        Cow::Owned(env.attempt.to_string().into_bytes()),
        text("enq"),
        Cow::Owned(env.enqueued_at_ms.to_string().into_bytes()),
    ]);
    if let Some(max) = env.max_attempts {
        out.extend([text("max"), Cow::Owned(max.to_string().into_bytes())]);
    }
    if let Some(unique) = &env.unique {
        out.extend([text("unique"), Cow::Borrowed(unique.as_bytes())]);
    }
    if env.lane != Lane::Normal {
        out.extend([text("lane"), text(env.lane.as_str())]);
    }
    out
}

/// The unique key's lifetime for the push script: 0 when the job is not unique, a day when
/// no lifetime was set.
fn unique_ttl_ms(env: &Envelope, ttl: Duration) -> u64 {
    match (&env.unique, millis(ttl)) {
        (None, _) => 0,
        (Some(_), 0) => 24 * 3600 * 1000,
        (Some(_), ms) => ms,
    }
}

/// Whether an error says the server does not have the script (it was never loaded there, or
/// the server restarted).
fn is_no_script(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// Whether an error says the stream does not exist (`XINFO` on a missing key).
fn is_missing_stream(e: &redis::RedisError) -> bool {
    e.detail().is_some_and(|d| d.contains("no such key"))
}
