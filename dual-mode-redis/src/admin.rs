//! The operator's reads and controls: the queue's counts, pages of its lists by cursor, the
//! consumers of the group, entries by id, throughput from the state sets, re-drive of parked
//! entries, and the queue's pause key. None of them loads a whole stream or set: every list is
//! read a page at a time from a cursor.

use dual_mode_jobs::backend::{ConsumerInfo, Entry, StateCounts};
use redis::Value;

use super::reply;
use super::{Store, one_each, redis, scripts};
use dual_mode_jobs::QueueError;
use dual_mode_jobs::RawFields;
use dual_mode_jobs::backend::QueueStats;
use dual_mode_jobs::backend::stream_id;

impl Store {
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
        let count = |answer: redis::RedisResult<Value>| -> Result<u64, QueueError> {
            match answer {
                Ok(Value::Nil) => Ok(0),
                // XPENDING's summary: the count first.
                Ok(v) => Ok(reply::int(&v)
                    .or_else(|| reply::text(&v).and_then(|t| t.parse().ok()))
                    .or_else(|| reply::items(&v).and_then(|i| i.first()).and_then(reply::int))
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0)),
                Err(e) if e.code() == Some("NOGROUP") => Ok(0),
                Err(e) => Err(redis("stats")(e)),
            }
        };
        // In the pipeline's order: per lane (high, normal, low) its length and pending count,
        // then the delayed set, the parked stream and the parked entries dropped.
        let n = one_each("stats", answers, 9)?.into_iter().map(count).collect::<Result<Vec<u64>, _>>()?;
        Ok(QueueStats {
            length: n[0] + n[2] + n[4],
            pending: n[1] + n[3] + n[5],
            delayed: n[6],
            parked: n[7],
            parked_dropped: n[8],
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

    /// The sizes of the ended jobs' sets and the queue's pause.
    pub(crate) async fn state_counts(&self) -> Result<StateCounts, QueueError> {
        let (done, cancelled, paused): (u64, u64, Option<u64>) = redis::pipe()
            .cmd("ZCARD")
            .arg(self.state_set("done"))
            .cmd("ZCARD")
            .arg(self.state_set("cancelled"))
            .cmd("GET")
            .arg(&self.keys.paused)
            .query_async(&mut self.con())
            .await
            .map_err(redis("count states"))?;
        Ok(StateCounts { done, cancelled, paused_at_ms: paused })
    }

    /// How many jobs entered each of `states` (state-set names) in each of `buckets`
    /// consecutive windows of `width_ms` from `from_ms`: one `ZCOUNT` per window and state, in
    /// one round trip. Ended jobs stay in their sets while their records live.
    pub(crate) async fn entered(
        &self,
        states: &[&str],
        from_ms: u64,
        width_ms: u64,
        buckets: usize,
    ) -> Result<Vec<Vec<u64>>, QueueError> {
        let mut pipe = redis::pipe();
        for state in states {
            let key = format!("{}{state}", self.keys.state_prefix);
            for b in 0..buckets as u64 {
                let start = from_ms + b * width_ms;
                pipe.cmd("ZCOUNT").arg(&key).arg(start).arg(format!("({}", start + width_ms));
            }
        }
        let counts: Vec<u64> = pipe.query_async(&mut self.con()).await.map_err(redis("count throughput"))?;
        Ok(counts.chunks(buckets.max(1)).map(<[u64]>::to_vec).collect())
    }

    /// Up to `count` members of the sorted set `key` after the cursor (score, member), with
    /// their scores, in the set's order.
    pub(crate) async fn zset_page(
        &self,
        key: &str,
        after: Option<(&str, &str)>,
        count: usize,
    ) -> Result<Vec<(String, String)>, QueueError> {
        let (score, member) = after.unwrap_or(("0", ""));
        if score.parse::<f64>().is_err() {
            return Err(QueueError::BadCursor { cursor: format!("{score}:{member}") });
        }
        let flat: Vec<String> = scripts::PAGE
            .key(key)
            .arg(count.max(1))
            .arg(score)
            .arg(member)
            .invoke_async(&mut self.con())
            .await
            .map_err(redis("page a set"))?;
        Ok(flat.chunks_exact(2).map(|p| (p[0].clone(), p[1].clone())).collect())
    }

    /// The sorted set of jobs in `state` (a state-set name) or, for `delayed`, the delayed set.
    pub(crate) fn state_set(&self, state: &str) -> String {
        if state == "delayed" { self.keys.delayed.clone() } else { format!("{}{state}", self.keys.state_prefix) }
    }

    /// Up to `count` entries of the stream not yet delivered to the group, after `after` (from
    /// it, when its flag says inclusive).
    pub(crate) async fn queued_page(
        &self,
        after: Option<(&str, bool)>,
        count: usize,
    ) -> Result<Vec<Entry>, QueueError> {
        let after = entry_cursor(after)?;
        let delivered = self.last_delivered().await?.map(|d| (d, false));
        // From the later of the cursor (inclusive when it says so) and the last delivered id.
        let start = match (after, delivered.as_ref()) {
            (Some(a), Some((d, _))) if stream_id(d) >= stream_id(a.0) => Some((d.as_str(), false)),
            (Some(a), _) => Some(a),
            (None, d) => d.map(|(d, inc)| (d.as_str(), *inc)),
        };
        let start = start
            .map_or_else(|| "-".to_owned(), |(s, inclusive)| if inclusive { s.to_owned() } else { format!("({s}") });
        self.range(self.stream(), "XRANGE", &start, "+", count).await
    }

    /// The group's last delivered id; `None` without a group.
    async fn last_delivered(&self) -> Result<Option<String>, QueueError> {
        let res: Result<Value, _> =
            redis::cmd("XINFO").arg("GROUPS").arg(self.stream()).query_async(&mut self.con()).await;
        let groups = match res {
            Ok(v) => v,
            Err(e) if super::is_missing_stream(&e) => return Ok(None),
            Err(e) => return Err(redis("read groups")(e)),
        };
        for group in reply::items(&groups).unwrap_or_default() {
            let fields = info_fields(group);
            if fields.iter().any(|(k, v)| k == "name" && reply::text(v).as_deref() == Some(self.group.as_str())) {
                return Ok(fields.iter().find(|(k, _)| k == "last-delivered-id").and_then(|(_, v)| reply::text(v)));
            }
        }
        Ok(None)
    }

    /// Up to `count` parked entries before `before` (exclusive unless its flag says
    /// inclusive), newest first.
    pub(crate) async fn parked_newest(
        &self,
        before: Option<(&str, bool)>,
        count: usize,
    ) -> Result<Vec<Entry>, QueueError> {
        let before = entry_cursor(before)?;
        let end = before
            .map_or_else(|| "+".to_owned(), |(b, inclusive)| if inclusive { b.to_owned() } else { format!("({b}") });
        self.range(&self.keys.parked, "XREVRANGE", &end, "-", count).await
    }

    /// One entry of the stream by id.
    pub(crate) async fn stream_entry(&self, entry_id: &str) -> Result<Option<RawFields>, QueueError> {
        Ok(self.range(self.stream(), "XRANGE", entry_id, entry_id, 1).await?.pop().map(|(_, f)| f))
    }

    async fn range(&self, key: &str, cmd: &str, from: &str, to: &str, count: usize) -> Result<Vec<Entry>, QueueError> {
        let v: Value = redis::cmd(cmd)
            .arg(key)
            .arg(from)
            .arg(to)
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut self.con())
            .await
            .map_err(redis("read a stream"))?;
        reply::entries(v).map_err(|d| QueueError::protocol("read a stream", d))
    }

    /// The fields of a delayed entry (the envelope of its next attempt).
    pub(crate) async fn delayed_fields(&self, job_id: &str) -> Result<RawFields, QueueError> {
        let v: Value = redis::cmd("HGETALL")
            .arg(self.delayed_key(job_id))
            .query_async(&mut self.con())
            .await
            .map_err(redis("read a delayed entry"))?;
        reply::fields(v).map_err(|d| QueueError::protocol("read a delayed entry", d))
    }

    /// The records of these jobs, in one round trip (`None` for an id without one).
    pub(crate) async fn records_of(
        &self,
        ids: &[String],
    ) -> Result<Vec<Option<dual_mode_jobs::JobRecord>>, QueueError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HGETALL").arg(self.record_key(id));
        }
        let hashes: Vec<Vec<(String, Vec<u8>)>> =
            pipe.query_async(&mut self.con()).await.map_err(redis("read job records"))?;
        Ok(ids.iter().zip(hashes).map(|(id, h)| dual_mode_jobs::JobRecord::from_hash(id, h)).collect())
    }

    /// The group's consumers; none without a group.
    pub(crate) async fn consumers(&self) -> Result<Vec<ConsumerInfo>, QueueError> {
        let res: Result<Value, _> =
            redis::cmd("XINFO").arg("CONSUMERS").arg(self.stream()).arg(&self.group).query_async(&mut self.con()).await;
        let list = match res {
            Ok(v) => v,
            Err(e) if e.code() == Some("NOGROUP") || super::is_missing_stream(&e) => return Ok(Vec::new()),
            Err(e) => return Err(redis("read consumers")(e)),
        };
        let mut out = Vec::new();
        for consumer in reply::items(&list).unwrap_or_default() {
            let fields = info_fields(consumer);
            let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
            let number = |name: &str| get(name).and_then(reply::int).and_then(|i| u64::try_from(i).ok()).unwrap_or(0);
            if let Some(name) = get("name").and_then(reply::text) {
                out.push(ConsumerInfo { name, pending: number("pending"), idle_ms: number("idle") });
            }
        }
        Ok(out)
    }

    /// Whether the queue is paused.
    pub(crate) async fn is_paused(&self) -> Result<bool, QueueError> {
        redis::cmd("EXISTS").arg(&self.keys.paused).query_async(&mut self.con()).await.map_err(redis("read the pause"))
    }

    /// Marks the queue paused at `now_ms`; returns whether it was running.
    pub(crate) async fn pause_queue(&self, now_ms: u64) -> Result<bool, QueueError> {
        let v: Value = redis::cmd("SET")
            .arg(&self.keys.paused)
            .arg(now_ms)
            .arg("NX")
            .query_async(&mut self.con())
            .await
            .map_err(redis("pause queue"))?;
        Ok(v != Value::Nil)
    }

    /// Lifts the queue's pause; returns whether it was paused.
    pub(crate) async fn resume_queue(&self) -> Result<bool, QueueError> {
        let removed: i64 = redis::cmd("DEL")
            .arg(&self.keys.paused)
            .query_async(&mut self.con())
            .await
            .map_err(redis("resume queue"))?;
        Ok(removed == 1)
    }
}

/// A page's cursor into a stream (an entry id, and whether the page starts at it), checked:
/// every cursor into a stream is an entry id (`ms-seq`), so another is the caller's mistake.
fn entry_cursor(cursor: Option<(&str, bool)>) -> Result<Option<(&str, bool)>, QueueError> {
    match cursor {
        Some((id, _)) if stream_id(id).is_none() => Err(QueueError::BadCursor { cursor: id.to_owned() }),
        cursor => Ok(cursor),
    }
}

/// The field-value pairs of an `XINFO` item (a flat list in RESP2, a map in RESP3).
fn info_fields(v: &Value) -> Vec<(String, Value)> {
    match v {
        Value::Map(pairs) => pairs.iter().filter_map(|(k, v)| Some((reply::text(k)?, v.clone()))).collect(),
        other => reply::items(other)
            .unwrap_or_default()
            .chunks_exact(2)
            .filter_map(|p| Some((reply::text(&p[0])?, p[1].clone())))
            .collect(),
    }
}
