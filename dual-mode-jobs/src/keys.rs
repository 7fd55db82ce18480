//! The names of a queue's Redis keys, from its name, lanes and partitions alone.

use crate::lane::Lane;
use crate::partition;

/// The Redis keys of one queue, for inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueKeys {
    /// The stream of ready entries (`dm:{name}:stream`).
    pub stream: String,
    /// The sorted set of delayed entries by due time in ms (`dm:{name}:delayed`).
    pub delayed: String,
    /// The dead-letter stream of parked entries (`dm:{name}:parked`).
    pub parked: String,
    /// How many parked entries the length cap dropped (`dm:{name}:parked-dropped`).
    pub parked_dropped: String,
    /// Prefix of the hashes that hold delayed entries' fields.
    pub delayed_entry_prefix: String,
    /// Prefix of the schedules' keys.
    pub schedule_prefix: String,
    /// Prefix of the job records (hashes keyed by job id).
    pub record_prefix: String,
    /// Prefix of the state sets (`<prefix>running`: job ids by the time they got there).
    pub state_prefix: String,
    /// Prefix of the unique keys (each holds the id of the job that claimed it).
    pub unique_prefix: String,
    /// The Pub/Sub channel on which ended jobs' ids are published.
    pub finished_channel: String,
    /// Prefix of the rate limits' buckets (`<prefix>queue`, `<prefix>type:<type>`,
    /// `<prefix>key:<rate key>`).
    pub rate_prefix: String,
    /// Prefix of the rate limits' windows of actual starts (`<prefix><bucket>`, as for
    /// [`rate_prefix`](Self::rate_prefix)): a list of the last period's starts, a batch of
    /// starts per element.
    pub rate_window_prefix: String,
    /// Prefix of the rate keys' pauses (`<prefix><rate key>`).
    pub rate_pause_prefix: String,
    /// Prefix of the sets of jobs holding a slot of a rate key (`<prefix><rate key>`, job
    /// ids by lease expiry).
    pub slot_prefix: String,
    /// Prefix of the sets of jobs waiting for a slot of a rate key.
    pub slot_wait_prefix: String,
    /// Present while the queue is paused: workers start nothing new (`dm:{name}:jobs:paused`).
    pub paused: String,
    /// The queue's number of partitions, written by the first process that opens it
    /// (`dm:{name}:partitions`).
    pub partitions: String,
}

impl QueueKeys {
    /// The ready stream of `lane`: [`stream`](Self::stream) for [`Lane::Normal`], with the
    /// lane's name appended for the others (`dm:{name}:stream:high`).
    #[must_use]
    pub fn lane_stream(&self, lane: Lane) -> String {
        lane.stream(&self.stream)
    }
}

impl QueueKeys {
    /// The keys of the queue named `name`, of one partition.
    #[must_use]
    pub fn new(name: &str) -> Self {
        Self::based(&format!("dm:{{{name}}}"))
    }

    /// The keys of partition `i` of a queue of `n`: `dm:{<tag>}:p:...`, with the partition's
    /// tag (see `partition::tag_of`) and a `p` that no key of a queue named like the tag has.
    /// The keys that stay the queue's (rate limits, rate-key pauses, slots, the partition
    /// count and the channel of ended jobs) are the queue's own.
    #[must_use]
    pub fn partition(name: &str, i: usize, n: usize) -> Self {
        let home = Self::new(name);
        Self {
            rate_prefix: home.rate_prefix,
            rate_window_prefix: home.rate_window_prefix,
            rate_pause_prefix: home.rate_pause_prefix,
            slot_prefix: home.slot_prefix,
            slot_wait_prefix: home.slot_wait_prefix,
            finished_channel: home.finished_channel,
            partitions: home.partitions,
            ..Self::based(&format!("dm:{{{}}}:p", partition::tag_of(name, i, n)))
        }
    }

    fn based(base: &str) -> Self {
        Self {
            stream: format!("{base}:stream"),
            delayed: format!("{base}:delayed"),
            parked: format!("{base}:parked"),
            parked_dropped: format!("{base}:parked-dropped"),
            delayed_entry_prefix: format!("{base}:delayed:"),
            schedule_prefix: format!("{base}:sched:"),
            record_prefix: format!("{base}:job:"),
            state_prefix: format!("{base}:jobs:"),
            unique_prefix: format!("{base}:unique:"),
            finished_channel: format!("{base}:finished"),
            partitions: format!("{base}:partitions"),
            rate_prefix: format!("{base}:rate:"),
            rate_window_prefix: format!("{base}:rate-starts:"),
            rate_pause_prefix: format!("{base}:rate-pause:"),
            slot_prefix: format!("{base}:slots:"),
            slot_wait_prefix: format!("{base}:slot-wait:"),
            paused: format!("{base}:jobs:paused"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::QueueKeys;

    #[test]
    fn an_unpartitioned_queue_keeps_its_keys() {
        let k = QueueKeys::new("mail");
        let all = [
            (&k.stream, "dm:{mail}:stream"),
            (&k.delayed, "dm:{mail}:delayed"),
            (&k.parked, "dm:{mail}:parked"),
            (&k.parked_dropped, "dm:{mail}:parked-dropped"),
            (&k.delayed_entry_prefix, "dm:{mail}:delayed:"),
            (&k.schedule_prefix, "dm:{mail}:sched:"),
            (&k.record_prefix, "dm:{mail}:job:"),
            (&k.state_prefix, "dm:{mail}:jobs:"),
            (&k.unique_prefix, "dm:{mail}:unique:"),
            (&k.finished_channel, "dm:{mail}:finished"),
            (&k.rate_prefix, "dm:{mail}:rate:"),
            (&k.rate_pause_prefix, "dm:{mail}:rate-pause:"),
            (&k.rate_window_prefix, "dm:{mail}:rate-starts:"),
            (&k.slot_prefix, "dm:{mail}:slots:"),
            (&k.slot_wait_prefix, "dm:{mail}:slot-wait:"),
            (&k.paused, "dm:{mail}:jobs:paused"),
        ];
        for (key, want) in all {
            assert_eq!(key, want);
        }
    }

    #[test]
    fn a_partition_has_its_own_tag_and_the_queue_keeps_its_limits() {
        let p = QueueKeys::partition("mail", 1, 3);
        assert!(p.stream.starts_with("dm:{mail:1") && p.stream.ends_with("}:p:stream"), "{}", p.stream);
        assert_ne!(p.stream, QueueKeys::new("mail:1").stream, "a queue named like the tag");
        assert_eq!((p.rate_prefix.as_str(), p.slot_prefix.as_str()), ("dm:{mail}:rate:", "dm:{mail}:slots:"));
        assert_eq!(
            (p.finished_channel.as_str(), p.partitions.as_str()),
            ("dm:{mail}:finished", "dm:{mail}:partitions")
        );
    }
}
