//! `PartitionLog`: the state of one partition's log on its owning shard, and
//! the producer-facing `append`. Committing lives in `appender.rs`, reading in
//! `reader.rs`, opening and repair in `recovery.rs`, deletion in `retention.rs`.
//!
//! Offsets: `log_end_offset` is the next offset to assign (appends waiting for
//! a commit included); `high_watermark` is the end of what consumers may see
//! (durable under `flush=always`, written under `flush=interval`).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use event_listener::Event;
use futures_channel::oneshot;

use super::batch;
use super::config::LogConfig;
use super::error::StorageError;
use super::producer_state::{ProducerBatch, ProducerStateTable, Verdict};
use super::segment::{ActiveSegment, PreparedSegment, SealedSegment};

/// A batch with its offsets assigned, waiting for its commit.
pub(crate) struct PendingBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp_ms: i64,
    pub data: Bytes,
    /// Starts a new segment: the active one had no room for it.
    pub starts_segment: bool,
    /// Completion for the append this batch ends (one per request).
    pub done: Option<oneshot::Sender<Result<(), StorageError>>>,
}

/// A committed batch kept in memory for readers.
pub(crate) struct CachedBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    /// Base offset of its segment and its byte position there.
    pub segment_base: i64,
    pub position: u64,
    pub data: Bytes,
}

pub(crate) struct LogState {
    pub sealed: BTreeMap<i64, SealedSegment>,
    pub active: ActiveSegment,
    pub prepared: Option<PreparedSegment>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    /// Bytes the active segment will hold once every pending batch is written.
    pub enqueued_segment_bytes: u64,
    /// Capacity of the segment file that the bytes counted in
    /// `enqueued_segment_bytes` go to; `u64::MAX` while that segment is still
    /// to be rolled, until the roll has picked a file big enough for what is
    /// queued (`ensure_prepared_fits`). Keeps a grown `segment.bytes` from
    /// overfilling an already allocated file.
    pub filling_capacity_bytes: u64,
    pub pending: VecDeque<PendingBatch>,
    pub pending_bytes: usize,
    pub tail: VecDeque<CachedBatch>,
    pub tail_bytes: usize,
}

pub struct PartitionLog {
    pub topic: String,
    pub partition: i32,
    pub(crate) dir: PathBuf,
    pub(crate) config: RefCell<LogConfig>,
    pub(crate) state: RefCell<LogState>,
    /// Fired when the high watermark moves or the log closes.
    pub(crate) hw_changed: Event,
    /// Fired when a batch is queued for commit or the log closes.
    pub(crate) work_queued: Event,
    /// Fired when a commit frees pending space.
    pub(crate) space_freed: Event,
    /// Fired when a prepared segment becomes available.
    pub(crate) prepared_ready: Event,
    pub(crate) preparing: Cell<bool>,
    pub(crate) closed: Cell<bool>,
    /// Set while the committer task runs; `close` waits for it to finish.
    pub(crate) committer_done: Event,
    pub(crate) committer_running: Cell<bool>,
    /// A commit failed since the log opened (its write may have left bytes
    /// past the durable end).
    pub(crate) commit_failed: Cell<bool>,
    /// Completed group commits and the bytes they made durable.
    pub(crate) commits: Cell<u64>,
    pub(crate) committed_bytes: Cell<u64>,
    /// Segments that took a retired segment's file (see `segment::recycle_retired`).
    pub(crate) segments_recycled: Cell<u64>,
    /// Commit writes started while an earlier one was still in flight.
    pub(crate) commit_writes_overlapped: Cell<u64>,
    /// Time from a commit's start to its durable completion, in µs.
    pub(crate) commit_latency_us: RefCell<crate::histogram::Log2Histogram>,
    /// Bytes written per commit (carried page included).
    pub(crate) commit_write_bytes: RefCell<crate::histogram::Log2Histogram>,
    /// Serialises moves of the log start offset by DeleteRecords (see `delete_records`).
    pub(crate) start_offset_change: glommio::sync::Semaphore,
    /// Idempotent producers' sequences and epochs (see `producer_state`).
    pub(crate) producers: RefCell<ProducerStateTable>,
    /// Appends waiting for pending space, in arrival order.
    pub(crate) append_queue: AppendQueue,
}

/// Tickets of the appends waiting for pending space, oldest first.
#[derive(Default)]
pub(crate) struct AppendQueue {
    waiting: RefCell<VecDeque<u64>>,
    next_ticket: Cell<u64>,
}

/// A place in `AppendQueue`; leaving it (served or dropped) wakes the others.
struct AppendTurn<'a> {
    log: &'a PartitionLog,
    ticket: u64,
}

impl<'a> AppendTurn<'a> {
    fn take(log: &'a PartitionLog) -> AppendTurn<'a> {
        let q = &log.append_queue;
        let ticket = q.next_ticket.get();
        q.next_ticket.set(ticket.wrapping_add(1));
        q.waiting.borrow_mut().push_back(ticket);
        AppendTurn { log, ticket }
    }
}

impl Drop for AppendTurn<'_> {
    fn drop(&mut self) {
        self.log.append_queue.waiting.borrow_mut().retain(|&t| t != self.ticket);
        self.log.space_freed.notify(usize::MAX);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckWait {
    /// acks=0: return once queued.
    None,
    /// acks=1/-1: return once the commit covering the batch completed.
    Commit,
}

#[derive(Debug, Clone, Copy)]
pub struct AppendOutcome {
    pub base_offset: i64,
    pub log_start_offset: i64,
}

#[derive(Debug, Clone, Copy)]
pub struct Offsets {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
}

impl PartitionLog {
    pub fn offsets(&self) -> Offsets {
        let s = self.state.borrow();
        Offsets {
            log_start_offset: s.log_start_offset,
            high_watermark: s.high_watermark,
            log_end_offset: s.log_end_offset,
        }
    }

    pub fn commit_count(&self) -> u64 {
        self.commits.get()
    }

    pub fn committed_bytes(&self) -> u64 {
        self.committed_bytes.get()
    }

    pub fn segments_recycled(&self) -> u64 {
        self.segments_recycled.get()
    }

    pub fn commit_writes_overlapped(&self) -> u64 {
        self.commit_writes_overlapped.get()
    }

    /// (commit latency in µs, bytes written per commit).
    pub fn commit_histograms(&self) -> (crate::histogram::Log2Histogram, crate::histogram::Log2Histogram) {
        (*self.commit_latency_us.borrow(), *self.commit_write_bytes.borrow())
    }

    pub fn high_watermark(&self) -> i64 {
        self.state.borrow().high_watermark
    }

    pub fn config(&self) -> LogConfig {
        self.config.borrow().clone()
    }

    /// New topic configs for a running log: max.message.bytes applies to the
    /// next append, retention to the next retention pass, segment.bytes to
    /// the next segment.
    pub fn set_config(&self, config: LogConfig) {
        *self.config.borrow_mut() = config;
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Validates the batches of one produce request, assigns their offsets,
    /// queues them for the group commit and, with `AckWait::Commit`, waits
    /// until that commit covers them.
    ///
    /// `records` is the producer's bytes, owned: offsets are patched in place
    /// and the batches are kept as slices of it (no copy until the DMA write).
    pub async fn append(&self, mut records: BytesMut, wait: AckWait) -> Result<AppendOutcome, StorageError> {
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        let (max_bytes, capacity, pending_max) = {
            let c = self.config.borrow();
            (c.max_message_bytes, c.segment_bytes, c.pending_max_bytes)
        };
        let total_bytes = records.len();
        let batches = match batch::validate_all(&records, max_bytes) {
            Ok(batches) => batches,
            Err(too_large @ batch::BatchError::TooLarge { .. }) => {
                // Valid but over max.message.bytes: a retry of a batch stored
                // before the limit was lowered still gets its offsets.
                let Ok(batches) = batch::validate_all(&records, usize::MAX) else { return Err(too_large.into()) };
                return self.answer_stored_duplicate(&batches, wait, too_large.into()).await;
            }
            Err(e) => return Err(e.into()),
        };
        let producer = ProducerBatch::of_request(&batches)?;
        if batches.iter().any(|(r, _)| r.len() as u64 > capacity) {
            let too_large = StorageError::TooLarge { bytes: total_bytes, max: capacity as usize };
            return self.answer_stored_duplicate(&batches, wait, too_large).await;
        }
        // Back-pressure: a bounded amount may wait for the disk. Appends that
        // wait are served in arrival order: a later, smaller one must not
        // overtake (an idempotent producer's sequences would arrive out of order).
        let mut turn: Option<AppendTurn<'_>> = None;
        loop {
            let listener = {
                let s = self.state.borrow();
                let first = match &turn {
                    Some(t) => self.append_queue.waiting.borrow().front() == Some(&t.ticket),
                    None => self.append_queue.waiting.borrow().is_empty(),
                };
                if first && (s.pending_bytes == 0 || s.pending_bytes + total_bytes <= pending_max) {
                    break;
                }
                let listener = self.space_freed.listen();
                if turn.is_none() {
                    turn = Some(AppendTurn::take(self));
                }
                listener
            };
            if self.closed.get() {
                return Err(StorageError::Closed);
            }
            listener.await;
        }
        // Leaving the queue wakes the next waiter, which runs after this
        // append has taken its offsets (no await until then).
        drop(turn);
        if self.closed.get() {
            return Err(StorageError::Closed);
        }

        // From the producer check to the offsets being taken: no await, so no
        // other append of this partition comes in between.
        if let Some(b) = &producer {
            let verdict = self.producers.borrow().check(b)?;
            if let Verdict::Duplicate(original) = verdict {
                return self.await_duplicate(b, original, wait).await;
            }
        }
        let (tx, rx) = oneshot::channel();
        let mut state = self.state.borrow_mut();
        let base_offset = state.log_end_offset;
        let mut next_offset = base_offset;
        for (range, header) in &batches {
            batch::patch_base_offset(&mut records[range.clone()], next_offset, 0);
            next_offset += i64::from(header.last_offset_delta) + 1;
        }
        let records = records.freeze();
        let count = batches.len();
        let mut offset = base_offset;
        for (i, (range, header)) in batches.into_iter().enumerate() {
            let len = range.len() as u64;
            // Every batch fits `capacity` (checked above). With nothing
            // enqueued, the segment being filled is the empty active one,
            // whose file may be smaller (segment.bytes grew): the roll then
            // replaces it with one big enough.
            let starts_segment = state.enqueued_segment_bytes + len > capacity.min(state.filling_capacity_bytes);
            if starts_segment {
                state.enqueued_segment_bytes = 0;
                state.filling_capacity_bytes = u64::MAX;
            }
            state.enqueued_segment_bytes += len;
            let last_offset = offset + i64::from(header.last_offset_delta);
            state.pending.push_back(PendingBatch {
                base_offset: offset,
                last_offset,
                max_timestamp_ms: header.max_timestamp,
                data: records.slice(range),
                starts_segment,
                done: None,
            });
            offset = last_offset + 1;
            if i + 1 == count {
                if let Some(last) = state.pending.back_mut() {
                    last.done = Some(tx);
                }
                break;
            }
        }
        debug_assert_eq!(offset, next_offset);
        state.log_end_offset = next_offset;
        if let Some(b) = &producer {
            self.producers.borrow_mut().record(b, base_offset, next_offset - 1);
        }
        state.pending_bytes += total_bytes;
        let log_start_offset = state.log_start_offset;
        drop(state);
        self.work_queued.notify(usize::MAX);

        if wait == AckWait::Commit {
            match rx.await {
                Ok(result) => result?,
                Err(_) => return Err(StorageError::Closed),
            }
        }
        Ok(AppendOutcome { base_offset, log_start_offset })
    }

    /// Answers a request refused by a size limit with its stored original's
    /// offsets when it is the retry of an idempotent batch stored before the
    /// limit was lowered; otherwise fails it with `refusal`. `batches` must be
    /// validated (CRC included): only then are its producer fields trusted.
    async fn answer_stored_duplicate(
        &self,
        batches: &[(std::ops::Range<usize>, batch::BatchHeader)],
        wait: AckWait,
        refusal: StorageError,
    ) -> Result<AppendOutcome, StorageError> {
        let Ok(Some(b)) = ProducerBatch::of_request(batches) else { return Err(refusal) };
        let verdict = self.producers.borrow().check(&b);
        match verdict {
            Ok(Verdict::Duplicate(original)) => self.await_duplicate(&b, original, wait).await,
            _ => Err(refusal),
        }
    }

    /// Waits until the high watermark is past `offset`, the log closes, or
    /// `timeout` passes.
    pub async fn wait_for_data(&self, offset: i64, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let listener = self.hw_changed.listen();
            if self.closed.get() || self.high_watermark() > offset {
                return;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return;
            }
            let timer = glommio::timer::Timer::new(deadline - now);
            futures_lite::future::or(
                async {
                    listener.await;
                },
                async {
                    timer.await;
                },
            )
            .await;
        }
    }

    /// Stops accepting appends, lets the committer finish what is queued, and
    /// wakes every waiter.
    pub async fn close(&self) {
        self.closed.set(true);
        loop {
            let listener = self.committer_done.listen();
            if !self.committer_running.get() {
                break;
            }
            self.work_queued.notify(usize::MAX);
            listener.await;
        }
        self.hw_changed.notify(usize::MAX);
        self.space_freed.notify(usize::MAX);
        let (file, base, end) = {
            let s = self.state.borrow();
            (s.active.file.clone(), s.active.base_offset, s.active.written_bytes)
        };
        // A failed commit may have left bytes past `end`: no marker then, so
        // the next start zeroes them (see `recovery`).
        if file.fdatasync().await.is_ok() && !self.commit_failed.get() {
            let dir = self.dir.clone();
            if let Err(e) =
                super::segment::blocking(move || super::recovery::write_clean_shutdown(&dir, base, end)).await
            {
                tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "could not record the clean shutdown; the next start checks the tail as after a crash");
            }
        }
    }
}
