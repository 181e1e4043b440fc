//! Which of a queue's messages are settled (acknowledged, rejected without
//! requeue, purged): a set of disjoint offset ranges, the records that make
//! it durable, and the checkpoint that bounds what a restart replays.
//!
//! Durability: each change is appended to the queue's settle journal (its
//! own small log) as a record of ranges; never waited on by publishers, and a
//! consumer's ack returns before it is written (an ack lost in a crash means
//! the message comes back, flagged redelivered: at-least-once). Every
//! `CHECKPOINT_AFTER_BYTES` of journal, the whole set is written to the
//! `checkpoint` file (replaced whole, checksummed) with the journal offset it
//! covers, and the journal before it is dropped: start-up reads one
//! checkpoint and at most that many bytes of journal, however many messages
//! the queue holds.
//!
//! The same records carry the delivery mark: every offset below it may have
//! been delivered before the last stop, so after a restart it is delivered
//! with redelivered=true.

use std::collections::BTreeMap;
use std::ops::Range;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Journal bytes after which the set is checkpointed.
pub const CHECKPOINT_AFTER_BYTES: u64 = 4 * 1024 * 1024;
/// Ranges one journal record holds at most (a bound on its size).
pub const RANGES_PER_RECORD_MAX: usize = 4096;
const RECORD_VERSION: u8 = 1;
const CHECKPOINT_VERSION: u8 = 1;

/// Disjoint, non-adjacent half-open ranges of offsets, by start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: BTreeMap<i64, i64>,
    count: u64,
}

impl RangeSet {
    pub fn contains(&self, offset: i64) -> bool {
        self.ranges.range(..=offset).next_back().is_some_and(|(_, &end)| offset < end)
    }

    /// Offsets in the set.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    pub fn ranges(&self) -> impl Iterator<Item = Range<i64>> + '_ {
        self.ranges.iter().map(|(&s, &e)| s..e)
    }

    /// The end of the range holding `offset`, if the set holds it.
    pub fn end_of_range_at(&self, offset: i64) -> Option<i64> {
        self.ranges.range(..=offset).next_back().filter(|(_, &end)| offset < end).map(|(_, &end)| end)
    }

    /// Adds `r`, merging with neighbours; returns how many offsets were new.
    pub fn insert(&mut self, r: Range<i64>) -> u64 {
        if r.is_empty() {
            return 0;
        }
        let (mut start, mut end) = (r.start, r.end);
        let mut removed = 0u64;
        // Ranges touching or overlapping [start, end] merge into it.
        let touching: Vec<(i64, i64)> =
            self.ranges.range(..=end).rev().take_while(|(_, &e)| e >= start).map(|(&s, &e)| (s, e)).collect();
        for (s, e) in touching {
            self.ranges.remove(&s);
            removed += (e - s) as u64;
            start = start.min(s);
            end = end.max(e);
        }
        self.ranges.insert(start, end);
        let added = (end - start) as u64 - removed;
        self.count += added;
        debug_assert_eq!(self.count, self.ranges.iter().map(|(s, e)| (e - s) as u64).sum::<u64>());
        added
    }

    /// Drops everything at or above `offset` (messages a crash lost).
    pub fn truncate_at_or_above(&mut self, offset: i64) {
        let above: Vec<(i64, i64)> =
            self.ranges.range(..).filter(|(_, &e)| e > offset).map(|(&s, &e)| (s, e)).collect();
        for (s, e) in above {
            self.ranges.remove(&s);
            self.count -= (e - s) as u64;
            if s < offset {
                self.ranges.insert(s, offset);
                self.count += (offset - s) as u64;
            }
        }
    }

    /// Drops everything below `offset` (the log start moved past it).
    pub fn truncate_below(&mut self, offset: i64) {
        let below: Vec<(i64, i64)> = self.ranges.range(..offset).map(|(&s, &e)| (s, e)).collect();
        for (s, e) in below {
            self.ranges.remove(&s);
            self.count -= (e - s) as u64;
            if e > offset {
                self.ranges.insert(offset, e);
                self.count += (e - offset) as u64;
            }
        }
    }
}

/// One journal record: ranges newly settled and the delivery mark.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettleRecord {
    pub settled: Vec<Range<i64>>,
    pub delivered_mark: i64,
}

impl SettleRecord {
    pub fn encode(&self) -> Bytes {
        assert!(self.settled.len() <= RANGES_PER_RECORD_MAX, "a record holds at most {RANGES_PER_RECORD_MAX} ranges");
        let mut b = BytesMut::with_capacity(13 + 16 * self.settled.len());
        b.put_u8(RECORD_VERSION);
        b.put_i64(self.delivered_mark);
        b.put_u32(self.settled.len() as u32);
        for r in &self.settled {
            debug_assert!(r.start < r.end);
            b.put_i64(r.start);
            b.put_i64(r.end);
        }
        b.freeze()
    }

    pub fn decode(mut b: &[u8]) -> Option<SettleRecord> {
        if b.len() < 13 || b.get_u8() != RECORD_VERSION {
            return None;
        }
        let delivered_mark = b.get_i64();
        let n = b.get_u32() as usize;
        if n > RANGES_PER_RECORD_MAX || b.len() != n * 16 {
            return None;
        }
        let mut settled = Vec::with_capacity(n);
        for _ in 0..n {
            let (s, e) = (b.get_i64(), b.get_i64());
            if s >= e {
                return None;
            }
            settled.push(s..e);
        }
        Some(SettleRecord { settled, delivered_mark })
    }
}

/// The whole settle state at a journal offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Journal records before this offset are in the checkpoint.
    pub journal_offset: i64,
    pub delivered_mark: i64,
    pub settled: RangeSet,
}

impl Checkpoint {
    pub fn encode(&self) -> String {
        let mut s = format!(
            "version={CHECKPOINT_VERSION}\njournal={}\ndelivered={}\n",
            self.journal_offset, self.delivered_mark
        );
        for r in self.settled.ranges() {
            s.push_str(&format!("{} {}\n", r.start, r.end));
        }
        s
    }

    pub fn decode(text: &str) -> Option<Checkpoint> {
        let mut lines = text.lines();
        if lines.next()? != format!("version={CHECKPOINT_VERSION}") {
            return None;
        }
        let journal_offset = lines.next()?.strip_prefix("journal=")?.parse().ok()?;
        let delivered_mark = lines.next()?.strip_prefix("delivered=")?.parse().ok()?;
        let mut settled = RangeSet::default();
        for line in lines {
            let (s, e) = line.split_once(' ')?;
            let (s, e): (i64, i64) = (s.parse().ok()?, e.parse().ok()?);
            if s >= e {
                return None;
            }
            settled.insert(s..e);
        }
        Some(Checkpoint { journal_offset, delivered_mark, settled })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_ranges_merge_with_neighbours_and_count_once() {
        let mut s = RangeSet::default();
        assert_eq!(s.insert(0..3), 3);
        assert_eq!(s.insert(5..7), 2);
        assert_eq!(s.insert(3..5), 2, "the gap fills and the three merge");
        assert_eq!(s.range_count(), 1);
        assert_eq!(s.insert(1..6), 0, "nothing new");
        assert_eq!(s.count(), 7);
        assert!(s.contains(0) && s.contains(6) && !s.contains(7));
        assert_eq!(s.end_of_range_at(2), Some(7));
    }

    #[test]
    fn single_offsets_acked_out_of_order_end_as_one_range() {
        let mut s = RangeSet::default();
        for o in [4, 0, 2, 1, 3] {
            assert_eq!(s.insert(o..o + 1), 1);
        }
        assert_eq!(s.ranges().collect::<Vec<_>>(), vec![0..5]);
    }

    #[test]
    fn truncating_keeps_the_part_of_a_range_above_the_cut() {
        let mut s = RangeSet::default();
        s.insert(0..10);
        s.insert(20..30);
        s.truncate_below(5);
        assert_eq!(s.ranges().collect::<Vec<_>>(), vec![5..10, 20..30]);
        assert_eq!(s.count(), 15);
    }

    #[test]
    fn a_settle_record_round_trips_and_garbage_is_refused() {
        let r = SettleRecord { settled: vec![1..2, 5..9], delivered_mark: 1000 };
        assert_eq!(SettleRecord::decode(&r.encode()), Some(r.clone()));
        let mut bad = r.encode().to_vec();
        bad.pop();
        assert_eq!(SettleRecord::decode(&bad), None);
        assert_eq!(SettleRecord::decode(&[2, 0, 0]), None);
    }

    #[test]
    fn a_checkpoint_round_trips() {
        let mut settled = RangeSet::default();
        settled.insert(0..100);
        settled.insert(150..151);
        let c = Checkpoint { journal_offset: 42, delivered_mark: 160, settled };
        assert_eq!(Checkpoint::decode(&c.encode()), Some(c));
        assert_eq!(Checkpoint::decode("version=9\n"), None);
    }
}
