//! A queue's reader: reads new entries from the lanes in one script (nothing while the queue
//! is paused), and waits for the next push to any lane on a connection of its own.

use dual_mode_jobs::backend::{Bucket, GateRules, Read};
use std::time::Duration;

use redis::Value;

use super::connection::{Connection, Health};
use super::reply;
use super::{Store, millis, redis, scripts};
use dual_mode_jobs::{Lane, RateScope};
use dual_mode_jobs::{QueueError, ReplyError};

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
    /// The read script's arguments that gate what it reads (see [`Reader::gate_reads`]);
    /// empty when reads gate nothing.
    gating: Vec<String>,
}

impl Store {
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
            gating: Vec::new(),
        })
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
        inv.key(&store.keys.paused).arg(&store.group).arg(consumer).arg(count).arg(&self.gating[..]);
        let v: Value = match inv.invoke_async(&mut self.reads).await {
            Ok(v) => v,
            Err(e) if e.code() == Some("NOGROUP") => return Err(store.missing_group()),
            Err(e) => return Err(redis("read group")(e)),
        };
        let protocol = |d: ReplyError| QueueError::protocol("read group", d);
        let mut parts = reply::into_items(v)
            .ok_or_else(|| protocol(ReplyError::WrongType { what: "read reply", expected: "a list" }))?
            .into_iter();
        if parts.next().as_ref().and_then(reply::int) == Some(1) {
            return Ok(Read::Paused);
        }
        let packed = parts
            .next()
            .and_then(reply::into_bytes)
            .ok_or_else(|| protocol(ReplyError::TooShort { what: "read reply", needs: 2 }))?;
        let (lanes, last, gates) = reply::read(&packed).map_err(protocol)?;
        // Per entry its gate's answer, in reading order: none when the read gated nothing.
        let mut gates = gates.into_iter();
        let mut out = Vec::with_capacity(lanes.iter().map(Vec::len).sum());
        for (lane, entries) in order.into_iter().zip(lanes) {
            out.extend(entries.into_iter().map(|e| (lane, e, gates.next().flatten())));
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

    /// Gates what later reads find under `rules`, in the read script (see its doc), where the
    /// keys of the gates share the lanes' hash tag: a queue of one partition, whose rate
    /// limits and slots live with its lanes. Returns whether it does.
    pub(crate) fn gate_reads(&mut self, rules: &GateRules) -> bool {
        let keys = &self.store.keys;
        let tag = |key: &str| key.find('{').zip(key.find('}')).map(|(a, b)| key[a..=b].to_owned());
        let lanes = tag(&keys.stream);
        // In the order the script takes them.
        let prefixes = [
            &keys.rate_prefix,
            &keys.rate_window_prefix,
            &keys.rate_pause_prefix,
            &keys.slot_prefix,
            &keys.slot_wait_prefix,
        ];
        if lanes.is_none() || prefixes.iter().any(|k| tag(k) != lanes) {
            return false;
        }
        let mut args = vec![millis(rules.lease).max(1).to_string()];
        args.extend(prefixes.map(Clone::clone));
        let mut rows: Vec<[String; 6]> = Vec::new();
        for (scope, limit) in &rules.rate_limits {
            let b = Bucket::new(String::new(), *limit);
            let (kind, text) = match scope {
                RateScope::Queue => ("queue", ""),
                RateScope::Type(t) => ("type", t.as_str()),
                RateScope::Key(prefix) => ("key", prefix.as_str()),
                // A scope this reader does not know: the worker gates.
                _ => return false,
            };
            let [interval, tolerance, window] = [b.interval_ms, b.tolerance_ms, b.window_ms].map(|x| x.to_string());
            rows.push([kind.into(), text.into(), interval, tolerance, window, b.window_max.to_string()]);
        }
        for (prefix, slots) in &rules.key_concurrency {
            rows.push(["slots".into(), prefix.clone(), "0".into(), "0".into(), "0".into(), slots.to_string()]);
        }
        args.push(rows.len().to_string());
        args.extend(rows.into_iter().flatten());
        self.gating = args;
        true
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
