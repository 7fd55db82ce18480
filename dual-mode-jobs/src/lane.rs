//! Priority lanes: each queue has three ready streams, read high first.

use std::fmt;
use std::str::FromStr;

/// A queue's priority lane: where a push puts its job ([`PushOptions::lane`]).
///
/// Each lane is a stream of its own (`dm:{q}:stream` for [`Normal`](Lane::Normal), the lane's
/// name appended for the others), with the queue's consumer group; delayed entries, parked
/// entries, records and unique keys are the queue's, shared by its lanes. A retried or
/// re-driven job keeps its lane.
///
/// A worker reads high before normal before low, with a share for the lower lanes so that a
/// backlog of urgent jobs cannot starve them: see [`WorkerConfig::lane_shares`].
///
/// [`PushOptions::lane`]: super::PushOptions::lane
/// [`WorkerConfig::lane_shares`]: super::WorkerConfig::lane_shares
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Lane {
    /// Read first.
    High,
    /// The default lane.
    #[default]
    Normal,
    /// Read last.
    Low,
}

impl Lane {
    /// The lanes in reading order.
    pub const ALL: [Lane; 3] = [Lane::High, Lane::Normal, Lane::Low];

    /// The lane's name: `high`, `normal` or `low`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::High => "high",
            Lane::Normal => "normal",
            Lane::Low => "low",
        }
    }

    /// The lane's place in [`Lane::ALL`].
    #[must_use]
    pub fn index(self) -> usize {
        match self {
            Lane::High => 0,
            Lane::Normal => 1,
            Lane::Low => 2,
        }
    }

    /// The lane's stream, given the queue's normal stream.
    pub(crate) fn stream(self, normal: &str) -> String {
        match self {
            Lane::Normal => normal.to_owned(),
            other => format!("{normal}:{}", other.as_str()),
        }
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lane name that is not `high`, `normal` or `low`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown lane {0:?} (expected high, normal or low)")]
pub struct UnknownLane(pub String);

impl FromStr for Lane {
    type Err = UnknownLane;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "high" => Ok(Lane::High),
            "normal" => Ok(Lane::Normal),
            "low" => Ok(Lane::Low),
            other => Err(UnknownLane(other.to_owned())),
        }
    }
}

/// The order in which a queue's lanes are read, read after read: high, normal, low, except
/// that every `normal_every`-th read starts at the normal lane and every `low_every`-th at the
/// low lane (the low lane wins when both fall on one read). A lane read first takes as many
/// entries as there are free slots; the lanes after it take what is left.
#[derive(Debug, Clone)]
pub(crate) struct LaneOrder {
    normal_every: u64,
    low_every: u64,
    reads: u64,
}

impl LaneOrder {
    pub(crate) fn new((normal_every, low_every): (u32, u32)) -> Self {
        Self { normal_every: u64::from(normal_every.max(1)), low_every: u64::from(low_every.max(1)), reads: 0 }
    }

    /// The order of the next read.
    pub(crate) fn next(&mut self) -> [Lane; 3] {
        self.reads = self.reads.wrapping_add(1);
        if self.reads.is_multiple_of(self.low_every) {
            [Lane::Low, Lane::High, Lane::Normal]
        } else if self.reads.is_multiple_of(self.normal_every) {
            [Lane::Normal, Lane::High, Lane::Low]
        } else {
            Lane::ALL
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_named() {
        for lane in Lane::ALL {
            assert_eq!(lane.as_str().parse::<Lane>(), Ok(lane));
        }
        assert_eq!("urgent".parse::<Lane>(), Err(UnknownLane("urgent".to_owned())));
        assert!(UnknownLane("urgent".to_owned()).to_string().contains("\"urgent\""));
    }

    #[test]
    fn streams_keep_the_normal_lane_on_the_queue_stream() {
        assert_eq!(Lane::Normal.stream("dm:{q}:stream"), "dm:{q}:stream");
        assert_eq!(Lane::High.stream("dm:{q}:stream"), "dm:{q}:stream:high");
        assert_eq!(Lane::Low.stream("dm:{q}:stream"), "dm:{q}:stream:low");
    }

    #[test]
    fn lower_lanes_lead_their_share_of_reads() {
        let mut order = LaneOrder::new((4, 10));
        let firsts: Vec<Lane> = (0..20).map(|_| order.next()[0]).collect();
        let count = |lane| firsts.iter().filter(|l| **l == lane).count();
        assert_eq!(count(Lane::Low), 2, "reads 10 and 20");
        assert_eq!(count(Lane::Normal), 4, "reads 4, 8, 12, 16 (20 goes to low)");
        assert_eq!(count(Lane::High), 14);
        assert_eq!(firsts[3], Lane::Normal);
        assert_eq!(firsts[9], Lane::Low);
    }
}
