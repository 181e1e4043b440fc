//! Which ready message of a queue goes out next.
//!
//! - **FIFO** (a plain queue): offset order. Messages not yet handed out
//!   since the queue opened are streamed from `cursor` (nothing kept per
//!   message); those that came back (requeued, released) wait in `index`,
//!   below the cursor, and go first, in offset order: a message that comes
//!   back takes its place again.
//! - **Priority** (`x-max-priority`): highest priority first, offset order
//!   within one. Every ready message is in `index` under its priority; the
//!   cursor is how far the log has been indexed.
//! - **Due** (a delayed exchange's store): earliest due time first, offset
//!   order within one; indexed like priorities.
//!
//! The index holds only ready messages; `take` moves one out (to
//! unacknowledged or settled, which the queue tracks) and `put_back` returns
//! one with the sort key it was taken with.

use std::collections::BTreeMap;

use super::super::settle::RangeSet;

/// How ready messages are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Fifo,
    Priority,
    Due,
}

/// A ready message about to go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    pub offset: i64,
    /// Sort key: 0 (FIFO), 255 minus the priority, or the due time in ms.
    pub key: u64,
    pub redelivered: bool,
}

/// The sort key of a priority (higher first).
pub fn priority_key(priority: u8) -> u64 {
    u64::from(u8::MAX - priority)
}

pub struct Ready {
    pub order: Order,
    /// FIFO: offsets at or past it were not handed out since the queue
    /// opened. Priority, Due: offsets at or past it are not indexed yet.
    cursor: i64,
    /// (key, offset) → redelivered.
    index: BTreeMap<(u64, i64), bool>,
}

/// Messages indexed per step at most, so that indexing a large log (after a
/// restart) yields between steps.
pub const INDEX_STEP_MAX: usize = 4096;

impl Ready {
    pub fn new(order: Order, start: i64) -> Ready {
        Ready { order, cursor: start, index: BTreeMap::new() }
    }

    /// Messages in the index (for FIFO only those that came back).
    pub fn indexed(&self) -> usize {
        self.index.len()
    }

    /// Whether every message below `end` is indexed (always, for FIFO).
    pub fn caught_up(&self, end: i64) -> bool {
        self.order == Order::Fifo || self.cursor >= end
    }

    /// Offsets at or past the cursor were never handed out (FIFO); below it
    /// a message was either indexed, handed out, or settled.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// Indexes up to `INDEX_STEP_MAX` more messages below `end` that are not
    /// settled (Priority, Due); `key_of` gives a message's sort key, `None`
    /// for one that cannot be read (skipped: the caller settles it). Returns
    /// the unreadable offsets.
    pub fn index_step(
        &mut self,
        start: i64,
        end: i64,
        settled: &RangeSet,
        redeliver_below: i64,
        mut key_of: impl FnMut(i64) -> Option<u64>,
    ) -> Vec<i64> {
        let mut unreadable = Vec::new();
        if self.order == Order::Fifo {
            return unreadable;
        }
        self.cursor = self.cursor.max(start);
        let mut indexed = 0;
        while self.cursor < end && indexed < INDEX_STEP_MAX {
            if let Some(e) = settled.end_of_range_at(self.cursor) {
                self.cursor = e;
                continue;
            }
            let o = self.cursor;
            match key_of(o) {
                Some(key) => {
                    self.index.insert((key, o), o < redeliver_below);
                }
                None => unreadable.push(o),
            }
            self.cursor += 1;
            indexed += 1;
        }
        unreadable
    }

    /// The next ready message, without taking it.
    pub fn peek(&mut self, start: i64, end: i64, settled: &RangeSet, redeliver_below: i64) -> Option<Next> {
        if let Some((&(key, offset), &redelivered)) = self.index.first_key_value() {
            return Some(Next { offset, key, redelivered });
        }
        if self.order != Order::Fifo {
            return None;
        }
        let mut c = self.cursor.max(start);
        while c < end {
            match settled.end_of_range_at(c) {
                Some(e) => c = e,
                None => break,
            }
        }
        self.cursor = c;
        (c < end).then_some(Next { offset: c, key: 0, redelivered: c < redeliver_below })
    }

    /// Takes `next` (from `peek`) out of the ready messages.
    pub fn take(&mut self, next: &Next) {
        if self.index.remove(&(next.key, next.offset)).is_some() {
            return;
        }
        assert_eq!(self.order, Order::Fifo, "an indexed order hands out indexed messages only");
        assert_eq!(next.offset, self.cursor, "messages are streamed in offset order");
        self.cursor += 1;
    }

    /// A message taken with `key` is ready again.
    pub fn put_back(&mut self, offset: i64, key: u64, redelivered: bool) {
        assert!(offset < self.cursor, "a message put back was taken before");
        let fresh = self.index.insert((key, offset), redelivered).is_none();
        assert!(fresh, "a message is put back once");
    }

    /// Every ready message below `end` that is not settled, all taken out
    /// (purge): indexed ones and, for FIFO, those past the cursor.
    pub fn take_all(&mut self, start: i64, end: i64, settled: &RangeSet) -> Vec<std::ops::Range<i64>> {
        let mut offsets: Vec<i64> = std::mem::take(&mut self.index).into_keys().map(|(_, o)| o).collect();
        offsets.sort_unstable();
        let mut ranges: Vec<std::ops::Range<i64>> = Vec::new();
        for o in offsets {
            match ranges.last_mut() {
                Some(r) if r.end == o => r.end = o + 1,
                _ => ranges.push(o..o + 1),
            }
        }
        let mut c = self.cursor.max(start);
        while c < end {
            if let Some(e) = settled.end_of_range_at(c) {
                c = e;
                continue;
            }
            let next_settled = settled.ranges().map(|r| r.start).find(|&s| s > c).unwrap_or(end).min(end);
            ranges.push(c..next_settled);
            c = next_settled;
        }
        self.cursor = self.cursor.max(end);
        ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_streams_from_the_cursor_and_puts_messages_back_first_in_place() {
        let settled = RangeSet::default();
        let mut r = Ready::new(Order::Fifo, 0);
        let a = r.peek(0, 3, &settled, 0).expect("first");
        r.take(&a);
        let b = r.peek(0, 3, &settled, 0).expect("second");
        r.take(&b);
        assert_eq!((a.offset, b.offset), (0, 1));
        r.put_back(1, b.key, true);
        r.put_back(0, a.key, true);
        let n = r.peek(0, 3, &settled, 0).expect("back");
        assert_eq!((n.offset, n.redelivered), (0, true));
    }

    #[test]
    fn priorities_go_highest_first_and_in_offset_order_within_one() {
        let settled = RangeSet::default();
        let prios = [1u8, 5, 1, 5, 0];
        let mut r = Ready::new(Order::Priority, 0);
        assert!(r.index_step(0, 5, &settled, 0, |o| Some(priority_key(prios[o as usize]))).is_empty());
        let mut order = Vec::new();
        while let Some(n) = r.peek(0, 5, &settled, 0) {
            r.take(&n);
            order.push(n.offset);
        }
        assert_eq!(order, vec![1, 3, 0, 2, 4]);
    }

    #[test]
    fn indexing_skips_settled_messages_and_reports_unreadable_ones() {
        let mut settled = RangeSet::default();
        settled.insert(1..3);
        let mut r = Ready::new(Order::Due, 0);
        let bad = r.index_step(0, 5, &settled, 0, |o| (o != 4).then_some(100 - o as u64));
        assert_eq!(bad, vec![4]);
        assert!(r.caught_up(5));
        assert_eq!(r.indexed(), 2, "offsets 0 and 3");
        assert_eq!(r.peek(0, 5, &settled, 0).map(|n| n.offset), Some(3), "the earliest due first");
    }

    #[test]
    fn take_all_returns_every_ready_range() {
        let mut settled = RangeSet::default();
        settled.insert(5..6);
        let mut r = Ready::new(Order::Fifo, 0);
        let n = r.peek(0, 8, &settled, 0).expect("0");
        r.take(&n);
        let n = r.peek(0, 8, &settled, 0).expect("1");
        r.take(&n);
        r.put_back(0, 0, true);
        assert_eq!(r.take_all(0, 8, &settled), vec![0..1, 2..5, 6..8]);
        assert!(r.peek(0, 8, &settled, 0).is_none());
    }
}
