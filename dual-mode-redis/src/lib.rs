//! The Redis store of [`dual-mode`](https://docs.rs/dual-mode)'s job layer: every Redis
//! command and Lua script of it, with typed replies, behind
//! [`dual_mode_jobs::backend::Backend`]. Depend on the facade `dual-mode`, whose default
//! feature `jobs-redis` brings this crate in and lets [`Queue::connect`](dual_mode_jobs::Queue::connect)
//! take a `redis::Client`, a [`RedisTarget`] (one server, a Cluster, a Sentinel-managed
//! primary) or a `redis::sentinel::SentinelClient`.
//!
//! Where a queue's operations go, one file per concern: `push.rs` (push, bulk and delayed
//! push, promotion of due entries), `runs.rs` (a run's mark, lease renewal, acknowledgement and
//! end, claims), `gates.rs` (rate limits, key concurrency, rate-key pauses), `schedules.rs`
//! (ticks and the schedules' state), `reader.rs` (reads and waits), `records.rs` (job records
//! and cancellation), `groups.rs` (the consumer group and its upkeep) and `admin.rs` (the
//! operator's reads and controls). The scripts are in `lua/`, loaded by `scripts.rs`; raw
//! replies are parsed in `reply.rs`; `partition.rs` is the `Backend`
//! implementation over them. This file holds the store itself: its connection and keys,
//! `Store::eval` (every `EVALSHA`, loading a script the server lacks) and `one_each` (a batch's
//! one answer per request), and how a queue is opened. Nothing outside this crate builds a
//! command or reads a raw reply, and error codes (`NOGROUP`, `BUSYGROUP`) are read here only.

mod admin;
mod connection;
mod gates;
mod groups;
mod partition;
mod push;
mod reader;
mod records;
mod reply;
mod runs;
mod schedules;
mod scripts;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::{FromRedisValue, RedisResult, Script, ScriptInvocation};

use dual_mode_jobs::backend::{Backend, Connect, Opened, Retention};
use dual_mode_jobs::{Lane, QueueConfig, QueueKeys};
use dual_mode_jobs::{QueueError, ReplyError};

pub use connection::RedisTarget;
use connection::{Connection, Health};
pub(crate) use dual_mode_jobs::backend::stream_id;
pub(crate) use partition::RedisPartition;
pub(crate) use reader::Reader;
pub(crate) use schedules::ScheduleKeys;
use scripts::STATE_SETS;

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
    /// What is kept of jobs that ended done, parked and cancelled, as the scripts take it
    /// (`<age ms>:<count>`, either empty for no limit).
    keeps: [String; 3],
    /// What is kept of ended jobs (the scripts' form of it is `keeps`).
    retention: Retention,
    /// The most entries the parked stream keeps.
    parked_max_len: u64,
}

fn redis(op: &'static str) -> impl FnOnce(redis::RedisError) -> QueueError {
    move |source| {
        if connection::is_unreachable(&source) {
            QueueError::Unavailable { op, source: Box::new(source) }
        } else {
            QueueError::Store { op, source: Box::new(source) }
        }
    }
}

pub(crate) use dual_mode_jobs::backend::millis;

impl Store {
    /// Connects to `target` for the queue whose keys are `keys`, reading in consumer group
    /// `group`, each command answered within `response_timeout`.
    pub(crate) async fn connect(
        target: RedisTarget,
        keys: QueueKeys,
        group: &str,
        response_timeout: Duration,
        retention: Retention,
    ) -> Result<Self, QueueError> {
        let health = Arc::new(Health::default());
        let con = Connection::open(&target, response_timeout, health).await.map_err(redis("connect"))?;
        Ok(Self {
            target,
            con,
            lanes: Lane::ALL.map(|lane| keys.lane_stream(lane)),
            state_keys: STATE_SETS.iter().map(|s| format!("{}{s}", keys.state_prefix)).collect(),
            keys,
            lane: Lane::Normal,
            group: group.to_owned(),
            keeps: [retention.done, retention.parked, retention.cancelled].map(|k| {
                let text = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
                format!("{}:{}", text(k.age_ms), text(k.count))
            }),
            retention: Retention { waited_ms: retention.waited_ms.max(1), ..retention },
            parked_max_len: retention.parked_max_len.max(1),
        })
    }

    /// What is kept of jobs that end in `state`, as the scripts take it; empty for a state
    /// that does not end a job.
    fn keep(&self, state: &str) -> &str {
        match state {
            "done" => &self.keeps[0],
            "parked" => &self.keeps[1],
            "cancelled" => &self.keeps[2],
            _ => "",
        }
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
                QueueError::protocol(
                    "read the partition count",
                    ReplyError::BadNumber { what: "partition count", value: known },
                )
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

    /// Runs `query`, commands that call `script` by its hash (`EVALSHA`), and runs it once
    /// more after loading the script when the server does not have it (a fresh or restarted
    /// server). Every `EVALSHA` of the store goes through here.
    async fn eval<T: FromRedisValue>(
        &self,
        script: &Script,
        query: &impl Query,
        op: &'static str,
    ) -> Result<T, QueueError> {
        let mut con = self.con();
        match query.run(&mut con).await {
            Err(e) if is_no_script(&e) => {
                script.load_async(&mut con).await.map_err(redis(op))?;
                query.run(&mut con).await.map_err(redis(op))
            }
            r => r.map_err(redis(op)),
        }
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

/// A batch's answers, when there is one per request: `expected` of them, else a protocol
/// error of `op`. Batch scripts answer per run, job or entry, in the order asked.
fn one_each<T>(op: &'static str, answers: Vec<T>, expected: usize) -> Result<Vec<T>, QueueError> {
    if answers.len() == expected {
        Ok(answers)
    } else {
        Err(QueueError::protocol(op, ReplyError::AnswerCount { got: answers.len(), expected }))
    }
}

/// Commands that call a script by its hash: one command or a pipeline.
trait Query: Sync {
    fn run<T: FromRedisValue>(&self, con: &mut Connection) -> impl Future<Output = RedisResult<T>> + Send;
}

impl Query for redis::Cmd {
    fn run<T: FromRedisValue>(&self, con: &mut Connection) -> impl Future<Output = RedisResult<T>> + Send {
        self.query_async(con)
    }
}

impl Query for redis::Pipeline {
    fn run<T: FromRedisValue>(&self, con: &mut Connection) -> impl Future<Output = RedisResult<T>> + Send {
        self.query_async(con)
    }
}

/// Names the Redis store in [`Connect`]: what lets [`Queue::connect`](dual_mode_jobs::Queue::connect)
/// take a `redis::Client`, a [`RedisTarget`] or a `SentinelClient` as they are.
#[derive(Debug, Clone, Copy)]
pub struct Redis;

impl Connect<Redis> for RedisTarget {
    async fn open(self, config: &QueueConfig) -> Result<Opened, QueueError> {
        let keys = QueueKeys::new(&config.name);
        let home =
            Store::connect(self, keys.clone(), &config.group, config.response_timeout, config.retention()).await?;
        let known = home.claim_partitions(config.partitions).await?;
        if known != config.partitions {
            return Err(QueueError::Config(format!(
                "queue {:?} has {known} partitions in Redis ({}), not {}: every process must open a queue with \
                 its number of partitions (to change it, drain the queue and delete that key)",
                config.name, keys.partitions, config.partitions
            )));
        }
        let home_part: Arc<dyn Backend> = Arc::new(RedisPartition::new(&home));
        let parts = if config.partitions == 1 {
            vec![home_part.clone()]
        } else {
            let n = usize::from(config.partitions);
            (0..n)
                .map(|i| {
                    let part = home.with_keys(QueueKeys::partition(&config.name, i, n));
                    Arc::new(RedisPartition::new(&part)) as Arc<dyn Backend>
                })
                .collect()
        };
        Ok(Opened { home: home_part, parts })
    }
}

impl Connect<Redis> for redis::Client {
    fn open(self, config: &QueueConfig) -> impl Future<Output = Result<Opened, QueueError>> + Send {
        RedisTarget::from(self).open(config)
    }
}

impl Connect<Redis> for redis::sentinel::SentinelClient {
    fn open(self, config: &QueueConfig) -> impl Future<Output = Result<Opened, QueueError>> + Send {
        RedisTarget::from(self).open(config)
    }
}
