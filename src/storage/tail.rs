//! The tail cache: the most recently committed batches of a partition, kept
//! in memory for readers (O_DIRECT writes leave no page cache behind them,
//! and the active segment's last pages are still being rewritten by
//! commits). It owns the batches and their byte count; batches enter in
//! offset order, each following the previous one, and leave from the front
//! (size bound, retention, DeleteRecords).

use std::collections::VecDeque;

use bytes::Bytes;

/// A committed batch kept in memory for readers.
pub(crate) struct CachedBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    /// Base offset of its segment and its byte position there.
    pub segment_base: i64,
    pub position: u64,
    pub data: Bytes,
}

#[derive(Default)]
pub(crate) struct TailCache {
    batches: VecDeque<CachedBatch>,
    bytes: usize,
}

impl TailCache {
    /// Adds the batch a commit just completed.
    pub fn push(&mut self, batch: CachedBatch) {
        if let Some(last) = self.batches.back() {
            assert_eq!(batch.base_offset, last.last_offset + 1, "cached batches follow each other");
            assert!(
                batch.segment_base > last.segment_base
                    || (batch.segment_base == last.segment_base && batch.position > last.position),
                "cached batches follow each other on disk"
            );
        }
        self.bytes += batch.data.len();
        self.batches.push_back(batch);
    }

    /// Drops the oldest batches while over `max_bytes`, keeping at least one.
    pub fn trim_to(&mut self, max_bytes: usize) {
        while self.bytes > max_bytes && self.batches.len() > 1 {
            self.pop_front();
        }
        self.debug_check();
    }

    /// Forgets the batches starting below `offset` (their segment retired).
    pub fn forget_starting_below(&mut self, offset: i64) {
        while self.batches.front().is_some_and(|b| b.base_offset < offset) {
            self.pop_front();
        }
        self.debug_check();
    }

    /// Forgets the batches wholly below `offset` (DeleteRecords moved the
    /// log start there).
    pub fn forget_ending_below(&mut self, offset: i64) {
        while self.batches.front().is_some_and(|b| b.last_offset < offset) {
            self.pop_front();
        }
        self.debug_check();
    }

    fn pop_front(&mut self) {
        if let Some(b) = self.batches.pop_front() {
            self.bytes -= b.data.len();
        }
    }

    /// O(n): the byte count is the sum of the batches' lengths.
    fn debug_check(&self) {
        debug_assert_eq!(self.bytes, self.batches.iter().map(|b| b.data.len()).sum::<usize>());
    }

    pub fn front(&self) -> Option<&CachedBatch> {
        self.batches.front()
    }

    pub fn iter(&self) -> impl Iterator<Item = &CachedBatch> {
        self.batches.iter()
    }

    /// The cached batches from the one holding `offset` on (all of them when
    /// `offset` is below the first).
    pub fn starting_at(&self, offset: i64) -> impl Iterator<Item = &CachedBatch> {
        let first = self.batches.partition_point(|b| b.last_offset < offset);
        self.batches.iter().skip(first)
    }

    /// Where the map of segment `segment_base` stops being read: at its first
    /// cached batch (the cache is contiguous up to the end); `None` when no
    /// batch of that segment is cached.
    pub fn start_in_segment(&self, segment_base: i64) -> Option<u64> {
        self.batches.iter().find(|b| b.segment_base == segment_base).map(|b| b.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(base_offset: i64, records: i64, position: u64, bytes: usize) -> CachedBatch {
        CachedBatch {
            base_offset,
            last_offset: base_offset + records - 1,
            segment_base: 0,
            position,
            data: Bytes::from(vec![0u8; bytes]),
        }
    }

    #[test]
    fn the_tail_keeps_at_least_one_batch_and_forgets_from_the_front() {
        let mut tail = TailCache::default();
        tail.push(cached(0, 2, 0, 100));
        tail.push(cached(2, 2, 100, 100));
        tail.push(cached(4, 1, 200, 100));
        tail.trim_to(150);
        assert_eq!(tail.front().map(|b| b.base_offset), Some(4), "over the bound the oldest go");
        tail.trim_to(0);
        assert_eq!(tail.iter().count(), 1, "the newest batch stays");
        tail.push(cached(5, 3, 300, 100));
        tail.forget_ending_below(6);
        assert_eq!(tail.front().map(|b| b.base_offset), Some(5), "a batch holding the new start stays");
        tail.forget_starting_below(6);
        assert!(tail.front().is_none());
        assert_eq!(tail.bytes, 0);
    }

    #[test]
    #[should_panic(expected = "cached batches follow each other")]
    fn a_batch_that_does_not_follow_the_cached_ones_is_refused() {
        let mut tail = TailCache::default();
        tail.push(cached(0, 2, 0, 100));
        tail.push(cached(1, 1, 100, 100));
    }
}
