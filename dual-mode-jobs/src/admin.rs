//! What an operator reads and does, for dashboards and command lines: a queue's counts and
//! recent throughput, pages of its lists by cursor, its consumers, a job's entry, and pausing
//! the whole queue.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::backend::{Backend, ConsumerInfo, Entry};
use super::envelope::{RawFields, field, field_of, unix_ms};
use super::error::QueueError;
use super::lane::Lane;
use super::partition;
use super::queue::{ParkedEntry, Queue, QueueStats, RAW_PREFIX};
use super::record::{JobRecord, JobState};

/// A queue's counts at one moment, for an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueOverview {
    /// The stream, group, delayed and parked counts.
    pub stats: QueueStats,
    /// Entries waiting for a worker: in the stream, not delivered.
    pub ready: u64,
    /// Entries delivered to a worker and not acknowledged (running, or held by a crashed
    /// worker until their lease expires).
    pub running: u64,
    /// Jobs that succeeded, while their records are kept ([`QueueConfig::keep_done`](super::QueueConfig::keep_done)).
    pub done: u64,
    /// Jobs cancelled, while their records live.
    pub cancelled: u64,
    /// When the queue was [paused](Queue::pause), while it is.
    pub paused_since: Option<SystemTime>,
}

/// Jobs that ended per time window, oldest window first, from the times at which they entered
/// their final states (kept in Redis while their records live, so every process sees the same
/// figures and nothing is written to count them). A job counts once, in the state it is in
/// now: a parked job that was re-driven and then succeeded counts as done when it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Throughput {
    /// The start of the first window.
    pub from: SystemTime,
    /// Each window's width.
    pub width: Duration,
    /// Jobs done, per window.
    pub done: Vec<u64>,
    /// Jobs parked, per window.
    pub parked: Vec<u64>,
    /// Jobs cancelled, per window.
    pub cancelled: Vec<u64>,
}

/// One page of a list and the cursor of the next, if there may be one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Pass it back for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// A consumer of the queue's group: a worker process, live or gone.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// Its consumer name (prefix, process id, random suffix).
    pub name: String,
    /// Entries delivered to it and not acknowledged.
    pub pending: u64,
    /// The consumer's idle time as Redis reports it (`XINFO CONSUMERS`): no heartbeat is
    /// written. From Redis 7.2 on, every read attempt counts, and a running worker tries to
    /// read at least every [`WorkerConfig::block`](super::WorkerConfig::block) while it has
    /// room for jobs and renews its leases every
    /// [`WorkerConfig::renew_every`](super::WorkerConfig::renew_every) while it runs any, so
    /// this is its heartbeat. Before 7.2 only reads that deliver entries, claims and renewals
    /// count: a live worker with nothing to do looks idle for as long as the queue is empty.
    pub last_seen: Duration,
}

impl Queue {
    /// The queue's counts: ready, running, delayed, parked, and the ended jobs whose records
    /// live, with its pause.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn overview(&self) -> Result<QueueOverview, QueueError> {
        let (stats, counts) = tokio::try_join!(self.stats(), self.on_each(Backend::state_counts))?;
        let (done, cancelled) = counts.iter().fold((0, 0), |(d, c), s| (d + s.done, c + s.cancelled));
        let paused_at_ms = counts.iter().filter_map(|s| s.paused_at_ms).min();
        Ok(QueueOverview {
            stats,
            ready: stats.length.saturating_sub(stats.pending),
            running: stats.pending,
            done,
            cancelled,
            paused_since: paused_at_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
        })
    }

    /// How many jobs ended per minute over the last `minutes` minutes, the current one last.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn throughput(&self, minutes: usize) -> Result<Throughput, QueueError> {
        const MINUTE: u64 = 60_000;
        let now = unix_ms(SystemTime::now());
        let from = (now / MINUTE + 1).saturating_sub(minutes as u64) * MINUTE;
        let per_part = self.on_each(|s| s.entered(&["done", "parked", "cancelled"], from, MINUTE, minutes)).await?;
        let mut sets = per_part
            .into_iter()
            .reduce(|mut sum, part| {
                for (a, b) in sum.iter_mut().zip(part) {
                    for (x, y) in a.iter_mut().zip(b) {
                        *x += y;
                    }
                }
                sum
            })
            .unwrap_or_default()
            .into_iter();
        let mut next = || sets.next().unwrap_or_default();
        Ok(Throughput {
            from: UNIX_EPOCH + Duration::from_millis(from),
            width: Duration::from_millis(MINUTE),
            done: next(),
            parked: next(),
            cancelled: next(),
        })
    }

    /// Up to `count` records of jobs in `state` after the cursor `after` (from a previous
    /// page's [`Page::next`]; `None`: the first page). Queued jobs lane after lane (high
    /// first), each lane in queue order; running and
    /// ended jobs by when they entered the state; delayed and retrying jobs, both states in
    /// one list, by due time. Every page costs a cursor seek and `count` reads, however long
    /// the list.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn jobs_page(
        &self,
        state: JobState,
        after: Option<&str>,
        count: usize,
    ) -> Result<Page<JobRecord>, QueueError> {
        let (ids, next) = if state == JobState::Queued {
            self.queued_page(after, count).await?
        } else {
            let set = match state {
                JobState::Delayed | JobState::Retrying => "delayed",
                other => other.as_str(),
            };
            let cursor = after.and_then(|a| a.split_once(':'));
            let pages = self.stores().map(|store| store.state_page(set, cursor, count));
            let pages = futures_util::future::try_join_all(pages).await?;
            // Every partition's page from the same cursor, merged: members are job ids, which
            // name their partition, so one cursor serves them all.
            let scored = pages
                .into_iter()
                .map(|p| p.into_iter().map(|(m, s)| (m, s.parse().unwrap_or(0.0))).collect())
                .collect();
            let members = partition::merge_scored(scored, count);
            let next =
                members.last().filter(|_| members.len() >= count).map(|(member, score)| format!("{score}:{member}"));
            (members.into_iter().map(|(member, _)| member).collect::<Vec<_>>(), next)
        };
        let items = self.records_of(&ids).await?.into_iter().flatten().collect();
        Ok(Page { items, next })
    }

    /// Queued job ids from the cursor `<lane>:<entry id>` on (the lane's entries after that
    /// id, then the following lanes'), and the next page's cursor.
    async fn queued_page(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> Result<(Vec<String>, Option<String>), QueueError> {
        let n = self.partitions();
        let (mut from, mut cursor) = match after.and_then(|a| a.split_once(':')) {
            Some((lane, id)) => (lane.parse::<Lane>().map_or(0, Lane::index), partition::Cursor::parse(id, n)),
            None => (0, None),
        };
        let mut ids = Vec::new();
        while from < Lane::ALL.len() {
            let lane = Lane::ALL[from];
            let want = count - ids.len();
            let pages = (0..n).map(|q| {
                let start = cursor.map(|c| (c.id, c.inclusive(q, false)));
                self.part_store(q).queued_page(lane, start, want)
            });
            let pages = futures_util::future::try_join_all(pages).await?;
            let entries = partition::merge(pages, want, false, |(id, _): &Entry| id.as_str());
            let full = entries.len() >= want;
            let last = entries.last().map(|(p, (id, _))| partition::tag(id, *p, n));
            ids.extend(entries.into_iter().filter_map(|(_, (_, f))| text_field(&f, field::ID)));
            if full {
                return Ok((ids, last.map(|id| format!("{lane}:{id}"))));
            }
            from += 1;
            cursor = None;
        }
        Ok((ids, None))
    }

    /// Up to `count` parked entries, newest first, before the parked id `before` (from a
    /// previous page's [`Page::next`]; `None`: the newest).
    ///
    /// # Errors
    /// Redis fails.
    pub async fn parked_page(&self, before: Option<&str>, count: usize) -> Result<Page<ParkedEntry>, QueueError> {
        let cursor = match before {
            Some(b) => Some(
                partition::Cursor::parse(b, self.partitions())
                    .ok_or_else(|| QueueError::BadCursor { cursor: b.to_owned() })?,
            ),
            None => None,
        };
        let pages = self.stores().enumerate().map(|(q, store)| {
            let end = cursor.map(|c| (c.id, c.inclusive(q, true)));
            store.parked_newest(end, count)
        });
        let pages = futures_util::future::try_join_all(pages).await?;
        let entries = partition::merge(pages, count, true, |(id, _): &Entry| id.as_str());
        let items: Vec<ParkedEntry> = entries.into_iter().map(|(p, e)| self.parked_from(p, e)).collect();
        let next = items.last().filter(|_| items.len() >= count).map(|e| e.parked_id.clone());
        Ok(Page { items, next })
    }

    /// The consumers of the queue's groups (one per lane), most recently seen first: a
    /// worker's entries pending in all lanes, and its latest read of any lane.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, QueueError> {
        let mut workers: Vec<WorkerInfo> = Vec::new();
        let all = (0..self.partitions()).flat_map(|p| Lane::ALL.map(|lane| self.part_store(p).consumers(lane)));
        for consumers in futures_util::future::try_join_all(all).await? {
            for ConsumerInfo { name, pending, idle_ms } in consumers {
                let last_seen = Duration::from_millis(idle_ms);
                match workers.iter_mut().find(|w| w.name == name) {
                    Some(w) => {
                        w.pending += pending;
                        w.last_seen = w.last_seen.min(last_seen);
                    }
                    None => workers.push(WorkerInfo { name, pending, last_seen }),
                }
            }
        }
        workers.sort_by_key(|w| w.last_seen);
        Ok(workers)
    }

    /// The fields of the job's entry where it is now (the envelope: type, attempt, payload,
    /// ...): in the stream while queued or running, in the delayed set while delayed or
    /// retrying, in the parked stream once parked (searched among the entries parked from its
    /// end on, so a job parked among thousands in the same millisecond may not be found).
    /// `None` once done or cancelled, or when the entry is gone.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn job_fields(&self, record: &JobRecord) -> Result<Option<RawFields>, QueueError> {
        let Some(p) = self.partition_of(&record.id) else { return Ok(None) };
        let store = self.part_store(p);
        match record.state {
            JobState::Queued | JobState::Running => match &record.entry_id {
                Some(entry) => store.stream_entry(record.lane, entry).await,
                None => Ok(None),
            },
            JobState::Delayed | JobState::Retrying => {
                Ok(Some(store.delayed_fields(&record.id).await?).filter(|f| !f.is_empty()))
            }
            JobState::Parked => Ok(self.parked_of(record).await?.map(|p| p.fields)),
            _ => Ok(None),
        }
    }

    /// The parked entry of a parked job (see [`Queue::job_fields`] for how it is found).
    ///
    /// # Errors
    /// Redis fails.
    pub async fn parked_of(&self, record: &JobRecord) -> Result<Option<ParkedEntry>, QueueError> {
        let Some(finished) = record.finished_at.filter(|_| record.state == JobState::Parked) else {
            return Ok(None);
        };
        let Some(p) = self.partition_of(&record.id) else { return Ok(None) };
        let raw_id = format!("{RAW_PREFIX}{}", field::ID);
        let entries = self.part_store(p).parked_range(&unix_ms(finished).to_string(), "+", 100).await?;
        Ok(entries
            .into_iter()
            .find(|(_, f): &Entry| f.iter().any(|(k, v)| k == raw_id.as_bytes() && v == record.id.as_bytes()))
            .map(|e| self.parked_from(p, e)))
    }

    /// Pauses the queue: its workers start no new job until [`resume`](Queue::resume)
    /// (running jobs go on; delayed jobs still become ready). The pause is the key
    /// `dm:{name}:jobs:paused` (holding the pause time in ms), read by every worker, so it
    /// holds for every process and outlives restarts. Returns `false` if it was paused already.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn pause(&self) -> Result<bool, QueueError> {
        let now = unix_ms(SystemTime::now());
        Ok(self.on_each(|s| s.pause_queue(now)).await?.contains(&true))
    }

    /// Resumes a paused queue. Returns `false` if it was not paused.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn resume(&self) -> Result<bool, QueueError> {
        Ok(self.on_each(Backend::resume_queue).await?.contains(&true))
    }

    /// Whether the queue is paused.
    ///
    /// # Errors
    /// Redis fails.
    pub async fn is_paused(&self) -> Result<bool, QueueError> {
        Ok(self.on_each(Backend::is_paused).await?.contains(&true))
    }
}

/// A field of an entry as text.
fn text_field(fields: &RawFields, name: &str) -> Option<String> {
    std::str::from_utf8(field_of(fields, name)?).ok().map(str::to_owned)
}

/// Samples `queue`'s depth by state into the `dual_mode_jobs_depth` gauges (one pipelined
/// round trip, as [`Queue::stats`]) and returns the counts. Call it from the exporter's
/// scrape handler; the metrics are listed in `dual_mode::metrics`.
///
/// Depth is a property of the queue in its store, not of one worker: sampling it when someone
/// looks means N workers do not read the same four numbers N times, the gauges are as fresh as
/// the scrape, and a process that only pushes (an API) can expose them. With an exporter that
/// pushes instead of being scraped, call it on a timer.
///
/// ```no_run
/// # async fn f(queue: dual_mode_jobs::Queue) -> Result<(), dual_mode_jobs::QueueError> {
/// // In the scrape handler, before rendering the exporter's text:
/// dual_mode_jobs::record_depth(&queue).await?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// The store fails.
#[cfg(feature = "metrics")]
pub async fn record_depth(queue: &Queue) -> Result<QueueStats, QueueError> {
    let stats = queue.stats().await?;
    super::metrics::depth(queue.name(), &stats);
    Ok(stats)
}
