//! The queues one worker reads, and the order of its reads.

use std::collections::HashSet;

use crate::error::QueueError;
use crate::queue::Queue;

/// The queues a [`Worker`](super::Worker) reads, with one concurrency budget, one renewal loop
/// and one claim loop for all of them.
///
/// Each read takes as many entries as the worker has free slots, queue after queue in an
/// order chosen per read, each queue's lanes high first (see [`Lane`](crate::Lane)):
///
/// - [`Queues::strict`]: always in the given order; a queue is read only when the queues
///   before it had fewer ready entries than free slots.
/// - [`Queues::weighted`]: the queue read first is picked by smooth weighted round-robin, so
///   that while every queue has a backlog, queue `i` leads `weight_i / sum` of the reads; the
///   others follow in the given order, so no slot idles while any queue has work.
///
/// A single [`Queue`] converts into `Queues`, so `Worker::new(queue, config)` reads one.
///
/// ```no_run
/// # async fn f(emails: dual_mode_jobs::Queue, reports: dual_mode_jobs::Queue) {
/// use dual_mode_jobs::{Queues, Worker, WorkerConfig};
/// // Three reads of `emails` for each read of `reports` while both have a backlog.
/// let worker = Worker::new(Queues::weighted([(emails, 3), (reports, 1)]), WorkerConfig::default());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Queues {
    pub(super) list: Vec<(Queue, u32)>,
    pub(super) weighted: bool,
}

impl Queues {
    /// `queues` read in this order.
    #[must_use]
    pub fn strict(queues: impl IntoIterator<Item = Queue>) -> Self {
        Self { list: queues.into_iter().map(|q| (q, 1)).collect(), weighted: false }
    }

    /// `queues` read by weight (each at least 1).
    #[must_use]
    pub fn weighted(queues: impl IntoIterator<Item = (Queue, u32)>) -> Self {
        Self { list: queues.into_iter().collect(), weighted: true }
    }

    /// The queues' names, in the given order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|(q, _)| q.name())
    }

    /// At least one queue, no name twice, no weight of 0.
    pub(super) fn validate(&self) -> Result<(), QueueError> {
        if self.list.is_empty() {
            return Err(QueueError::Config("a worker needs at least one queue".to_owned()));
        }
        let mut seen = HashSet::new();
        for (queue, weight) in &self.list {
            if !seen.insert(queue.name()) {
                return Err(QueueError::Config(format!("queue {:?} is given twice", queue.name())));
            }
            if *weight == 0 {
                return Err(QueueError::Config(format!("queue {:?} has weight 0; weights start at 1", queue.name())));
            }
        }
        Ok(())
    }
}

impl From<Queue> for Queues {
    fn from(queue: Queue) -> Self {
        Self::strict([queue])
    }
}

/// The order of the queues, read after read.
pub(super) struct ReadOrder {
    weights: Vec<i64>,
    current: Vec<i64>,
    weighted: bool,
}

impl ReadOrder {
    pub(super) fn new(queues: &Queues) -> Self {
        let weights: Vec<i64> = queues.list.iter().map(|(_, w)| i64::from(*w)).collect();
        Self { current: vec![0; weights.len()], weights, weighted: queues.weighted }
    }

    /// The queues' places in `Queues::list`, in the order of the next read.
    pub(super) fn next(&mut self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.weights.len()).collect();
        if self.weighted && order.len() > 1 {
            let total: i64 = self.weights.iter().sum();
            for (c, w) in self.current.iter_mut().zip(&self.weights) {
                *c += w;
            }
            let first = (0..self.current.len()).max_by_key(|&i| (self.current[i], std::cmp::Reverse(i))).unwrap_or(0);
            self.current[first] -= total;
            order.remove(first);
            order.insert(0, first);
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::ReadOrder;

    fn order(weights: &[i64], weighted: bool) -> ReadOrder {
        ReadOrder { weights: weights.to_vec(), current: vec![0; weights.len()], weighted }
    }

    #[test]
    fn weighted_reads_lead_in_proportion_and_interleave() {
        let mut o = order(&[3, 1], true);
        let firsts: Vec<usize> = (0..8).map(|_| o.next()[0]).collect();
        assert_eq!(firsts, [0, 0, 1, 0, 0, 0, 1, 0]);
        assert_eq!(o.next(), vec![0, 1], "the other queues follow");
    }

    #[test]
    fn strict_reads_keep_the_given_order() {
        let mut o = order(&[1, 5, 1], false);
        for _ in 0..5 {
            assert_eq!(o.next(), vec![0, 1, 2]);
        }
    }
}
