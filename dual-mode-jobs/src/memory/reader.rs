//! Reads of new entries for a consumer, and the wait for more (the read script and a
//! blocking `XREAD`).

use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use super::state::State;
use super::stream::StreamId;
use crate::backend::{Answer, Read, Reader};
use crate::lane::Lane;

/// A partition's reader: reads new entries for a consumer, and waits for more.
pub(super) struct MemoryReader {
    pub(super) shared: Arc<Shared>,
    pub(super) block: Duration,
    /// The lanes' newest entry ids (in [`Lane::ALL`] order) when a read last found fewer
    /// entries than it asked for: what [`Reader::wait`] waits after.
    pub(super) last: Option<[StreamId; 3]>,
}

impl Reader for MemoryReader {
    fn read<'a>(&'a mut self, consumer: &'a str, count: usize, order: [Lane; 3]) -> Answer<'a, Read> {
        Box::pin(async move {
            let read = self.shared.with(|s, now| s.read(consumer, count, order, now));
            Ok(match read {
                None => Read::Paused,
                Some((entries, last)) => {
                    self.last = last;
                    Read::Entries(entries.into_iter().map(|(lane, entry)| (lane, entry, None)).collect())
                }
            })
        })
    }

    fn wait(&mut self) -> Answer<'_, ()> {
        Box::pin(async move {
            if let Some(last) = self.last {
                self.shared.wait_after(last, self.block).await;
            }
            Ok(())
        })
    }
}

/// Entries read, each with its lane, and the lanes' newest ids when the read came up short.
type Got = (Vec<(Lane, crate::backend::Entry)>, Option<[StreamId; 3]>);

impl State {
    /// Up to `count` new entries for `consumer` from the lanes, read in `order`, each lane
    /// taking what the ones before it left; `None` while the queue is paused. A read that
    /// comes up short read every lane to its end, and gives each lane's newest id (`0-0` for
    /// an empty one) for the wait.
    pub(super) fn read(&mut self, consumer: &str, count: usize, order: [Lane; 3], now: u64) -> Option<Got> {
        if self.paused.is_some() {
            return None;
        }
        let mut left = count;
        let mut out = Vec::new();
        for lane in order {
            if left > 0 {
                let got = self.lane(lane).read_new(consumer, left, now);
                left -= got.len().min(left);
                out.extend(got.into_iter().map(|e| (lane, e)));
            }
        }
        let last =
            (left > 0).then(|| Lane::ALL.map(|lane| self.lanes[lane.index()].stream.newest().unwrap_or(StreamId::MIN)));
        Some((out, last))
    }
}
