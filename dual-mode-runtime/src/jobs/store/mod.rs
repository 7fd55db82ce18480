//! Every Redis command and Lua script of the job layer, with typed replies.
//!
//! Nothing outside this module builds a command or reads a raw reply: the queue, the worker's
//! loops and the scheduler call [`Store`] methods that return typed values or a
//! [`QueueError`], and error codes (`NOGROUP`, `BUSYGROUP`) are read here only.

mod reply;
mod scripts;

use std::time::Duration;

use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::envelope::{Envelope, RawFields};
use super::error::QueueError;
use super::queue::{QueueKeys, QueueStats};

pub(crate) use reply::Entry;

/// A claimed entry: id, fields, delivery count.
pub(crate) type Claimed = (String, RawFields, u64);

/// One queue's keys and group on one Redis, through a connection that reconnects by itself.
#[derive(Clone)]
pub(crate) struct Store {
    client: redis::Client,
    con: ConnectionManager,
    keys: QueueKeys,
    group: String,
}

/// A connection of its own for blocking reads, so they never delay other commands.
pub(crate) struct Reader {
    con: ConnectionManager,
    stream: String,
    group: String,
    block_ms: u64,
}

fn redis(op: &'static str) -> impl FnOnce(redis::RedisError) -> QueueError {
    move |source| QueueError::Redis { op, source }
}

async fn manager(client: &redis::Client, timeout: Duration) -> Result<ConnectionManager, QueueError> {
    let cfg = ConnectionManagerConfig::new()
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(3)
        .set_max_delay(Duration::from_secs(2));
    ConnectionManager::new_with_config(client.clone(), cfg).await.map_err(redis("connect"))
}

/// Milliseconds of a duration, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Store {
    pub(crate) async fn connect(
        client: redis::Client,
        keys: QueueKeys,
        group: String,
        timeout: Duration,
    ) -> Result<Self, QueueError> {
        let con = manager(&client, timeout).await?;
        Ok(Self { client, con, keys, group })
    }

    pub(crate) fn keys(&self) -> &QueueKeys {
        &self.keys
    }

    fn con(&self) -> ConnectionManager {
        self.con.clone()
    }

    fn missing_group(&self) -> QueueError {
        QueueError::MissingGroup { stream: self.keys.stream.clone(), group: self.group.clone() }
    }

    /// A reader on its own connection whose reads block up to `block` (its response timeout
    /// is `block` plus `timeout`).
    pub(crate) async fn reader(&self, block: Duration, timeout: Duration) -> Result<Reader, QueueError> {
        Ok(Reader {
            con: manager(&self.client, block + timeout).await?,
            stream: self.keys.stream.clone(),
            group: self.group.clone(),
            block_ms: millis(block).max(1),
        })
    }

    /// Creates the group (and the stream) if missing, at the stream's beginning.
    pub(crate) async fn ensure_group(&self) -> Result<(), QueueError> {
        let res: Result<Value, _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.keys.stream)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.con())
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(redis("create group")(e)),
        }
    }

    /// `XADD` of one envelope; returns the entry id.
    pub(crate) async fn add(&self, env: &Envelope) -> Result<String, QueueError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.keys.stream).arg("*");
        for (k, v) in env.to_fields() {
            cmd.arg(k).arg(v);
        }
        let id: Value = cmd.query_async(&mut self.con()).await.map_err(redis("push"))?;
        reply::text(&id).ok_or_else(|| QueueError::protocol("push", "XADD returned no id"))
    }

    /// Pipelined `XADD`s, one round trip; returns the entry ids in order.
    pub(crate) async fn add_many(&self, envs: &[Envelope]) -> Result<Vec<Option<String>>, QueueError> {
        let mut pipe = redis::pipe();
        for env in envs {
            let cmd = pipe.cmd("XADD").arg(&self.keys.stream).arg("*");
            for (k, v) in env.to_fields() {
                cmd.arg(k).arg(v);
            }
        }
        let ids: Vec<Value> = pipe.query_async(&mut self.con()).await.map_err(redis("bulk push"))?;
        if ids.len() != envs.len() {
            return Err(QueueError::protocol("bulk push", format!("{} ids for {} entries", ids.len(), envs.len())));
        }
        Ok(ids.iter().map(reply::text).collect())
    }

    /// Puts an envelope in the delayed set under `member`, due at `at_ms` (ms since the epoch)
    /// or, when that is 0, `delay_ms` after the server's clock.
    pub(crate) async fn add_delayed(
        &self,
        env: &Envelope,
        member: &str,
        at_ms: u64,
        delay_ms: u64,
    ) -> Result<(), QueueError> {
        let mut inv = scripts::PUSH_DELAYED.prepare_invoke();
        inv.key(&self.keys.delayed).key(format!("{}{member}", self.keys.delayed_entry_prefix));
        inv.arg(at_ms).arg(delay_ms).arg(member);
        for (k, v) in env.to_fields() {
            inv.arg(k).arg(v);
        }
        let _: Value = inv.invoke_async(&mut self.con()).await.map_err(redis("delayed push"))?;
        Ok(())
    }

    /// Moves up to `max` due delayed entries into the stream; returns how many moved.
    pub(crate) async fn promote(&self, max: usize) -> Result<usize, QueueError> {
        let moved: i64 = scripts::PROMOTE
            .key(&self.keys.delayed)
            .key(&self.keys.stream)
            .arg(max)
            .arg(&self.keys.delayed_entry_prefix)
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("promote due entries"))?;
        Ok(usize::try_from(moved).unwrap_or(0))
    }

    /// Counts of the stream, the group's pending entries, the delayed set and the parked stream.
    pub(crate) async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut con = self.con();
        let (length, delayed, parked): (u64, u64, u64) = redis::pipe()
            .cmd("XLEN")
            .arg(&self.keys.stream)
            .cmd("ZCARD")
            .arg(&self.keys.delayed)
            .cmd("XLEN")
            .arg(&self.keys.parked)
            .query_async(&mut con)
            .await
            .map_err(redis("stats"))?;
        let summary: Result<Value, _> =
            redis::cmd("XPENDING").arg(&self.keys.stream).arg(&self.group).query_async(&mut con).await;
        let pending = match summary {
            Ok(v) => reply::items(&v).and_then(|i| i.first()).and_then(reply::int).unwrap_or(0),
            Err(e) if e.code() == Some("NOGROUP") => 0,
            Err(e) => return Err(redis("stats")(e)),
        };
        Ok(QueueStats { length, pending: u64::try_from(pending).unwrap_or(0), delayed, parked })
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
    pub(crate) async fn redrive(&self, parked_id: &str, raw_prefix: &str) -> Result<Option<String>, QueueError> {
        let v: Value = scripts::REDRIVE
            .key(&self.keys.parked)
            .key(&self.keys.stream)
            .arg(parked_id)
            .arg(raw_prefix)
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("re-drive"))?;
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
            .key(&self.keys.stream)
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

    /// Runs a batched fencing script over id-token pairs; returns, per pair, whether this
    /// consumer still owned its entry.
    async fn owned_batch(
        &self,
        script: &redis::Script,
        op: &'static str,
        consumer: &str,
        pairs: &[(&str, u64)],
    ) -> Result<Vec<bool>, QueueError> {
        let mut inv = script.prepare_invoke();
        inv.key(&self.keys.stream).arg(&self.group).arg(consumer);
        for (id, token) in pairs {
            inv.arg(*id).arg(*token);
        }
        let done: Vec<i64> = inv.invoke_async(&mut self.con()).await.map_err(redis(op))?;
        if done.len() != pairs.len() {
            return Err(QueueError::protocol(op, format!("{} answers for {} entries", done.len(), pairs.len())));
        }
        Ok(done.into_iter().map(|d| d == 1).collect())
    }

    /// Renews the leases of these entries (resets their idle time, keeps their tokens).
    pub(crate) async fn renew(&self, consumer: &str, pairs: &[(&str, u64)]) -> Result<Vec<bool>, QueueError> {
        self.owned_batch(&scripts::RENEW_BATCH, "renew leases", consumer, pairs).await
    }

    /// Acknowledges and deletes these entries.
    pub(crate) async fn ack(&self, consumer: &str, pairs: &[(&str, u64)]) -> Result<Vec<bool>, QueueError> {
        self.owned_batch(&scripts::ACK_BATCH, "acknowledge", consumer, pairs).await
    }

    /// Replaces an owned entry by `next`, due in `delay`; `false` if no longer owned.
    pub(crate) async fn retry(
        &self,
        consumer: &str,
        entry_id: &str,
        token: u64,
        delay: Duration,
        member: &str,
        next: &Envelope,
    ) -> Result<bool, QueueError> {
        let mut inv = scripts::RETRY.prepare_invoke();
        inv.key(&self.keys.stream).key(&self.keys.delayed).key(format!("{}{member}", self.keys.delayed_entry_prefix));
        inv.arg(&self.group).arg(consumer).arg(entry_id).arg(token).arg(millis(delay)).arg(member);
        for (k, v) in next.to_fields() {
            inv.arg(k).arg(v);
        }
        let done: i64 = inv.invoke_async(&mut self.con()).await.map_err(redis("retry"))?;
        Ok(done == 1)
    }

    /// Moves an owned entry to the parked stream with `fields`; `false` if no longer owned.
    pub(crate) async fn park(
        &self,
        consumer: &str,
        entry_id: &str,
        token: u64,
        fields: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<bool, QueueError> {
        let mut inv = scripts::PARK.prepare_invoke();
        inv.key(&self.keys.stream).key(&self.keys.parked);
        inv.arg(&self.group).arg(consumer).arg(entry_id).arg(token);
        for (k, v) in fields {
            inv.arg(k.as_slice()).arg(v.as_slice());
        }
        let done: i64 = inv.invoke_async(&mut self.con()).await.map_err(redis("park"))?;
        Ok(done == 1)
    }

    /// Removes `consumer` from the group if it holds no pending entry; returns whether it did.
    pub(crate) async fn remove_consumer_if_idle(&self, consumer: &str) -> Result<bool, QueueError> {
        let removed: i64 = scripts::DEL_CONSUMER
            .key(&self.keys.stream)
            .arg(&self.group)
            .arg(consumer)
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("remove consumer"))?;
        Ok(removed == 1)
    }

    /// Enqueues a schedule's tick unless its dedupe key exists; returns the entry id, `None`
    /// for a duplicate.
    pub(crate) async fn tick(
        &self,
        tick_key: &str,
        last_key: &str,
        dedupe_ttl: Duration,
        tick_ms: i64,
        env: &Envelope,
    ) -> Result<Option<String>, QueueError> {
        let mut inv = scripts::TICK.prepare_invoke();
        inv.key(tick_key).key(last_key).key(&self.keys.stream);
        inv.arg(millis(dedupe_ttl).max(1)).arg(tick_ms);
        for (k, v) in env.to_fields() {
            inv.arg(k).arg(v);
        }
        let v: Value = inv.invoke_async(&mut self.con()).await.map_err(redis("enqueue tick"))?;
        Ok(reply::text(&v))
    }

    /// The last tick (ms) stored under `last_key`.
    pub(crate) async fn last_tick(&self, last_key: &str) -> Result<Option<i64>, QueueError> {
        let v: Value =
            redis::cmd("GET").arg(last_key).query_async(&mut self.con()).await.map_err(redis("read last tick"))?;
        Ok(reply::int(&v))
    }
}

impl Reader {
    /// `XREADGROUP ... >`: up to `count` new entries for `consumer`, waiting up to the block
    /// time; empty on timeout.
    pub(crate) async fn read(&mut self, consumer: &str, count: usize) -> Result<Vec<Entry>, QueueError> {
        let res: Result<Value, _> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(self.block_ms)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">")
            .query_async(&mut self.con)
            .await;
        match res {
            Ok(v) => reply::read_group(v).map_err(|d| QueueError::protocol("read group", d)),
            Err(e) if e.code() == Some("NOGROUP") => {
                Err(QueueError::MissingGroup { stream: self.stream.clone(), group: self.group.clone() })
            }
            Err(e) => Err(redis("read group")(e)),
        }
    }
}
