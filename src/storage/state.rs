//! `LogState`: what one partition's log holds in memory, composed of its
//! pieces (the segment set, the queue of batches waiting for their commit,
//! the tail cache) and the three offsets that tie them together. The
//! methods here are the log's state changes that span pieces; each runs with
//! no await inside (the caller holds the `RefCell` borrow for its length) and
//! ends by asserting the offsets' order:
//!
//! `log_start_offset <= high_watermark <= log_end_offset`
//!
//! `log_end_offset` is the next offset to assign (appends waiting for a
//! commit included); `high_watermark` is the end of what consumers may see
//! (durable under `flush=always`, written under `flush=interval`).
//!
//! Reads of the segment set (`state.active`, `state.sealed`, ...) go through
//! `Deref`: the readers, the lookups and the storage tests read it directly.

use std::ops::{Deref, Range};

use bytes::BytesMut;

use super::appender::{AckedBatch, CommitFlight, CommitPipeline, CommitWaiter, PendingBatch, PendingQueue, WriteDone};
use super::batch::{self, BatchHeader};
use super::segment::SealedSegment;
use super::segment_set::SegmentSet;
use super::tail::{CachedBatch, TailCache};

pub(crate) struct LogState {
    pub segments: SegmentSet,
    pub pending: PendingQueue,
    pub tail: TailCache,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
}

impl Deref for LogState {
    type Target = SegmentSet;

    fn deref(&self) -> &SegmentSet {
        &self.segments
    }
}

/// The offsets an append was given.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Enqueued {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_start_offset: i64,
}

impl LogState {
    /// A recovered log: everything it holds is durable (the high watermark
    /// is its end) and nothing waits for a commit.
    pub fn new(segments: SegmentSet, log_start_offset: i64, log_end_offset: i64) -> LogState {
        let state = LogState {
            segments,
            pending: PendingQueue::default(),
            tail: TailCache::default(),
            log_start_offset,
            log_end_offset,
            high_watermark: log_end_offset,
        };
        state.check_offsets();
        state
    }

    fn check_offsets(&self) {
        assert!(
            self.log_start_offset <= self.high_watermark && self.high_watermark <= self.log_end_offset,
            "offsets out of order: start {} hw {} end {}",
            self.log_start_offset,
            self.high_watermark,
            self.log_end_offset
        );
    }

    /// Gives the validated `batches` of one produce request (ranges of
    /// `records`) the next offsets, patching them in place, and queues them
    /// for the commit, each placed in a segment of at most `segment_bytes`;
    /// `done` is told when the commit covering the last one completes.
    pub fn enqueue(
        &mut self,
        mut records: BytesMut,
        batches: Vec<(Range<usize>, BatchHeader)>,
        segment_bytes: u64,
        done: CommitWaiter,
    ) -> Enqueued {
        let base_offset = self.log_end_offset;
        let mut next_offset = base_offset;
        for (range, header) in &batches {
            batch::patch_base_offset(&mut records[range.clone()], next_offset, 0);
            next_offset += i64::from(header.last_offset_delta) + 1;
        }
        let records = records.freeze();
        let mut done = Some(done);
        let count = batches.len();
        let mut offset = base_offset;
        for (i, (range, header)) in batches.into_iter().enumerate() {
            let starts_segment = self.segments.place(range.len() as u64, segment_bytes);
            let last_offset = offset + i64::from(header.last_offset_delta);
            self.pending.push(PendingBatch {
                base_offset: offset,
                last_offset,
                max_timestamp_ms: header.max_timestamp,
                data: records.slice(range),
                starts_segment,
                done: if i + 1 == count { done.take() } else { None },
            });
            offset = last_offset + 1;
        }
        assert_eq!(offset, next_offset, "the queued batches take the offsets patched into them");
        self.log_end_offset = next_offset;
        self.check_offsets();
        Enqueued { base_offset, last_offset: next_offset - 1, log_start_offset: self.log_start_offset }
    }

    /// Applies a completed commit write: its batches become readable (tail
    /// cache, high watermark) in offset order, each following the last one
    /// acknowledged. Returns their waiters and the bytes acknowledged.
    pub fn complete_write<W>(
        &mut self,
        pipeline: &mut CommitPipeline<W>,
        flight: &CommitFlight,
        index_interval_bytes: u32,
        tail_cache_bytes: usize,
    ) -> (Vec<CommitWaiter>, usize)
    where
        W: std::future::Future<Output = WriteDone>,
    {
        let mut waiters = Vec::new();
        let (high_watermark, tail) = (&mut self.high_watermark, &mut self.tail);
        let acked_bytes = pipeline.complete(
            flight,
            &mut self.pending,
            &mut self.segments.active,
            index_interval_bytes,
            |acked: AckedBatch| {
                assert_eq!(acked.base_offset, *high_watermark, "a completed batch follows the last acknowledged one");
                *high_watermark = acked.last_offset + 1;
                tail.push(CachedBatch {
                    base_offset: acked.base_offset,
                    last_offset: acked.last_offset,
                    segment_base: acked.segment_base,
                    position: acked.position,
                    data: acked.data,
                });
                waiters.extend(acked.done);
            },
        );
        self.tail.trim_to(tail_cache_bytes);
        self.check_offsets();
        (waiters, acked_bytes)
    }

    /// After a failed commit: drops every queued batch and rewinds the log
    /// end to the high watermark (what is written); appends fill the active
    /// segment from its durable end again. Returns the failed appends'
    /// waiters.
    pub fn fail_pending(&mut self) -> Vec<CommitWaiter> {
        let waiters = self.pending.fail_all();
        self.log_end_offset = self.high_watermark;
        self.segments.reset_placement();
        self.check_offsets();
        waiters
    }

    /// Retires the oldest sealed segments while `due(log bytes, oldest)`
    /// says so (the log's bytes counting the oldest); returns them.
    pub fn retire_oldest_while(&mut self, mut due: impl FnMut(u64, &SealedSegment) -> bool) -> Vec<SealedSegment> {
        let mut total = self.segments.size_bytes();
        let mut retired = Vec::new();
        while let Some(oldest) = self.segments.oldest() {
            if !due(total, oldest) {
                break;
            }
            total -= oldest.size_bytes();
            retired.extend(self.retire_oldest());
        }
        retired
    }

    /// Retires the sealed segments holding only offsets below `offset`.
    pub fn retire_below(&mut self, offset: i64) -> Vec<SealedSegment> {
        self.retire_oldest_while(|_, oldest| oldest.next_offset <= offset)
    }

    /// Takes the oldest sealed segment out of the log's view: the log start
    /// moves past it (never backwards: DeleteRecords may already have moved
    /// it further) and the tail cache forgets it.
    fn retire_oldest(&mut self) -> Option<SealedSegment> {
        let retired = self.segments.take_oldest()?;
        self.log_start_offset = self.log_start_offset.max(retired.next_offset);
        self.tail.forget_starting_below(retired.next_offset);
        self.check_offsets();
        Some(retired)
    }

    /// DeleteRecords: moves the log start to `target` (at most the high
    /// watermark); reads below it fail from here on. Returns the sealed
    /// segments wholly below it, retired.
    pub fn move_start_to(&mut self, target: i64) -> Vec<SealedSegment> {
        assert!(target <= self.high_watermark, "the log start stays at or below the high watermark");
        self.log_start_offset = self.log_start_offset.max(target);
        self.tail.forget_ending_below(target);
        let retired = self.retire_below(target);
        self.check_offsets();
        retired
    }
}
