//! Partitions of a queue: where a job goes, how an id names its partition, and how pages read
//! from every partition merge into one.
//!
//! A queue of `n > 1` partitions keeps partition `i` under a hash tag of its own,
//! `{name:i}` (or `{name:i.s}`, see [`tag_of`]): its own streams, group, delayed set, parked
//! stream, records and unique keys, on its own hash slot, the slots spread evenly over the
//! slot space (so a Redis Cluster whose primaries hold even shares of it spreads the
//! partitions evenly). A job goes to the partition of its unique key, else of its idempotency
//! key (when given), else round-robin; its id ends in `.<partition>`, and so do the ids of
//! parked entries, so that every lookup by id goes to one partition.

use std::cmp::Ordering;

use super::backend::stream_id;

/// The 128-bit FNV-1a hash: stable across processes, builds and platforms, as a unique key
/// derived from a payload, or a key's partition, must be.
pub(crate) fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    bytes.iter().fold(OFFSET, |h, &b| (h ^ u128::from(b)).wrapping_mul(PRIME))
}

/// The partition of `key` among `n`, by its [`fnv1a_128`] hash.
pub(crate) fn of_key(key: &str, n: usize) -> usize {
    usize::try_from(fnv1a_128(key.as_bytes()) % n.max(1) as u128).unwrap_or(0)
}

/// The hash slot of a hash tag, as Redis Cluster computes it: CRC16 (XMODEM) modulo 16384.
pub(crate) fn slot(tag: &str) -> u16 {
    let crc = tag.bytes().fold(0u16, |mut crc, b| {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 == 0 { crc << 1 } else { (crc << 1) ^ 0x1021 };
        }
        crc
    });
    crc % 16_384
}

/// The hash tag of partition `i` of `n` of queue `name`: `name:i`, or `name:i.s` for the
/// first `s` that puts its slot in the `i`-th `n`-th of the slot space. A cluster whose
/// primaries serve even, contiguous shares of the slots (as `redis-cli --cluster create`
/// makes them) then serves the partitions evenly: with `n` a multiple of the primaries, each
/// primary serves as many. About `n` tags are tried per partition.
pub(crate) fn tag_of(name: &str, i: usize, n: usize) -> String {
    let share = |tag: &str| usize::from(slot(tag)) * n / 16_384;
    let plain = format!("{name}:{i}");
    let mut tag = plain.clone();
    let mut salt = 0u32;
    while share(&tag) != i {
        salt += 1;
        tag = format!("{plain}.{salt}");
    }
    tag
}

/// `id` tagged with partition `p` of `n`: `<id>.<p>`, or `id` itself with one partition.
pub(crate) fn tag(id: &str, p: usize, n: usize) -> String {
    if n <= 1 { id.to_owned() } else { format!("{id}.{p}") }
}

/// The partition that a tagged id names among `n`, and the id without its tag. With one
/// partition ids carry no tag; `None` for an id that names no partition of `n`.
pub(crate) fn split(id: &str, n: usize) -> Option<(usize, &str)> {
    if n <= 1 {
        return Some((0, id));
    }
    let (base, p) = id.rsplit_once('.')?;
    let p: usize = p.parse().ok()?;
    (p < n).then_some((p, base))
}

/// Where a page over every partition's stream starts: after (or, newest first, before) the
/// entry `id` of partition `p`, in the order of (entry id, partition).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cursor<'a> {
    pub(crate) id: &'a str,
    pub(crate) p: usize,
}

impl<'a> Cursor<'a> {
    /// The cursor of a tagged entry id.
    pub(crate) fn parse(tagged: &'a str, n: usize) -> Option<Self> {
        split(tagged, n).map(|(p, id)| Self { id, p })
    }

    /// Whether partition `q`'s page starts at the cursor's id itself (a partition after the
    /// cursor's, oldest first, or before it, newest first) rather than past it.
    pub(crate) fn inclusive(&self, q: usize, newest_first: bool) -> bool {
        if newest_first { q < self.p } else { q > self.p }
    }
}

/// Merges pages read from each partition (page `p` from partition `p`, each in stream order)
/// into the first `count` items over all, in the order of (entry id, partition), oldest first
/// or newest first.
pub(crate) fn merge<T>(
    pages: Vec<Vec<T>>,
    count: usize,
    newest_first: bool,
    id: impl Fn(&T) -> &str,
) -> Vec<(usize, T)> {
    let mut all: Vec<(usize, T)> =
        pages.into_iter().enumerate().flat_map(|(p, page)| page.into_iter().map(move |item| (p, item))).collect();
    all.sort_by(|(p, a), (q, b)| {
        let order = stream_id(id(a)).cmp(&stream_id(id(b))).then(p.cmp(q));
        if newest_first { order.reverse() } else { order }
    });
    all.truncate(count);
    all
}

/// Merges pages of (member, score) read from each partition's sorted set into the first
/// `count` by (score, member).
pub(crate) fn merge_scored(pages: Vec<Vec<(String, f64)>>, count: usize) -> Vec<(String, f64)> {
    let mut all: Vec<(String, f64)> = pages.into_iter().flatten().collect();
    all.sort_by(|(a, x), (b, y)| x.partial_cmp(y).unwrap_or(Ordering::Equal).then_with(|| a.cmp(b)));
    all.truncate(count);
    all
}

#[cfg(test)]
mod tests {
    use super::{Cursor, merge, of_key, slot, split, tag, tag_of};

    #[test]
    fn slots_are_redis_clusters() {
        // `CLUSTER KEYSLOT foo` and `bar` on a real cluster.
        assert_eq!((slot("foo"), slot("bar")), (12_182, 5_061));
    }

    #[test]
    fn partitions_take_even_shares_of_the_slots() {
        for n in [2, 3, 6, 64, 256] {
            for i in 0..n {
                let tag = tag_of("mail", i, n);
                assert_eq!(usize::from(slot(&tag)) * n / 16_384, i, "{tag} of {n}");
            }
        }
        assert!(tag_of("mail", 0, 6).starts_with("mail:0"));
    }

    #[test]
    fn keys_spread_and_stay_put() {
        let mut seen = [0u32; 6];
        for i in 0..6000 {
            seen[of_key(&format!("key:{i}"), 6)] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
        assert_eq!(of_key("region:10000002", 6), of_key("region:10000002", 6));
        assert_eq!(of_key("anything", 1), 0);
    }

    #[test]
    fn tagged_ids_name_their_partition() {
        assert_eq!(tag("1700000000000-3", 0, 1), "1700000000000-3", "one partition: no tag");
        let id = tag("0193a7e2-0000-7000-8000-000000000000", 4, 6);
        assert_eq!(split(&id, 6), Some((4, "0193a7e2-0000-7000-8000-000000000000")));
        assert_eq!(split(&id, 4), None, "partition 4 of 4 does not exist");
        assert_eq!(split("1700000000000-3", 1), Some((0, "1700000000000-3")));
        assert_eq!(split("1700000000000-3", 2), None);
        assert_eq!(split("1700000000000-3.x", 2), None);
    }

    #[test]
    fn pages_merge_by_entry_id_then_partition() {
        let pages = vec![vec!["5-0", "9-0"], vec!["5-0", "7-1"], vec!["10-0"]];
        let ids = |v: Vec<(usize, &str)>| v.into_iter().map(|(p, id)| format!("{id}.{p}")).collect::<Vec<_>>();
        assert_eq!(ids(merge(pages.clone(), 4, false, |s| s)), ["5-0.0", "5-0.1", "7-1.1", "9-0.0"]);
        assert_eq!(ids(merge(pages, 2, true, |s| s)), ["10-0.2", "9-0.0"]);
        let c = Cursor::parse("5-0.1", 3).unwrap();
        assert!(!c.inclusive(0, false) && !c.inclusive(1, false) && c.inclusive(2, false));
        assert!(c.inclusive(0, true) && !c.inclusive(1, true) && !c.inclusive(2, true));
    }
}
