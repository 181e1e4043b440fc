//! Group commit: the queue of appended batches waiting for their write, and
//! the pipeline that writes them to the active segment and hands back the
//! completions. This module is the only code that touches the in-flight
//! write state: the queue and its byte count (`PendingQueue`), where the
//! next write starts (`IssueCursor`), the writes in flight (`CommitFlight`s
//! in the `CommitPipeline`), and the step that turns a completed write into
//! acknowledged batches (`CommitPipeline::complete`). The commit task that
//! drives it (waiting for work, rolling, failing) is `PartitionLog`'s.
//!
//! Flush/ack contract (kept here):
//! - Appends queue in the `PendingQueue` with offsets already assigned.
//! - Queued batches go out as O_DIRECT writes of page-aligned ranges, each
//!   starting with the partly filled page the previous one left (up to
//!   `commit_max_bytes` of batches per write). Under `flush=always` the
//!   segment is opened O_DSYNC, so a write completes only once its data (and
//!   the metadata needed to read it) is durable: the same guarantee as write
//!   + fdatasync, in one io_uring operation.
//! - Up to `COMMIT_WRITES_IN_FLIGHT_MAX` writes are in flight, and never two
//!   that share a page: a write is followed before it completes only when it
//!   ends on a page boundary, which it does (holding the rest of its last
//!   page for the next write) only when more batches wait behind it. A
//!   write that takes everything queued ends with the partly filled page;
//!   what queues while it is in flight goes out as the next write once it
//!   completes (group commit).
//! - Writes complete in the order they were issued, as far as this task is
//!   concerned: a batch is acknowledged, and the high watermark moves past
//!   it, only once every write holding any of its bytes, and every earlier
//!   write, has completed. Under `flush=interval:<ms>` the acknowledgement
//!   follows the writes and a timer issues the fdatasync.
//! - A failed write or fdatasync fails every queued append (KAFKA_STORAGE_ERROR
//!   to producers) once the other writes in flight have finished, rewinds the
//!   log end offset to the high watermark, and leaves the durable data as it
//!   was; the next commit rewrites from the page holding the durable end.
//!   After a crash, unacknowledged bytes can lie as far as
//!   `unacknowledged_reach_bytes` past that page (recovery zeroes them).
//!
//! Every batch copied into a write buffer is asserted to pass the checks
//! recovery applies when it reads the segment back (`batch::check_in_log`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::rc::Rc;

use bytes::Bytes;
use futures_channel::oneshot;
use futures_util::stream::{FuturesOrdered, StreamExt};
use glommio::io::{DmaBuffer, DmaFile};

use super::batch::{self, Crc};
use super::config::{LogConfig, PAGE_BYTES};
use super::error::{gerr, StorageError};
use super::segment::ActiveSegment;
use crate::histogram::Log2Histogram;

/// Commit writes one partition keeps in flight at most. Two let the disk
/// start the next write while the last one's completion is being handled;
/// measured against one in the storage benches (docs/performance.md).
pub(crate) const COMMIT_WRITES_IN_FLIGHT_MAX: usize = 2;
const _: () = assert!(COMMIT_WRITES_IN_FLIGHT_MAX >= 1);

/// How far past the page holding the acknowledged end a crash can leave
/// bytes of unacknowledged batches: the part of a batch that straddled a
/// completed write's end (under one batch), then the writes in flight, each
/// at most one run (`commit_max_bytes`, or one batch if bigger) plus its
/// carried and its padded page. Recovery zeroes this far (`recovery`).
pub(crate) fn unacknowledged_reach_bytes(config: &LogConfig) -> usize {
    let batch_max = config.max_message_bytes;
    let write_max = config.commit_max_bytes.max(batch_max) + 2 * PAGE_BYTES;
    batch_max + COMMIT_WRITES_IN_FLIGHT_MAX * write_max
}

/// The outcome an append waits for: `Ok` once the commit covering it completed.
pub(crate) type CommitWaiter = oneshot::Sender<Result<(), StorageError>>;

/// A batch with its offsets assigned, waiting for its commit.
pub(crate) struct PendingBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp_ms: i64,
    pub data: Bytes,
    /// Starts a new segment: the active one had no room for it.
    pub starts_segment: bool,
    /// Completion for the append this batch ends (one per request).
    pub done: Option<CommitWaiter>,
}

/// The batches waiting for their commit, in offset order, and their bytes.
#[derive(Default)]
pub(crate) struct PendingQueue {
    batches: VecDeque<PendingBatch>,
    bytes: usize,
}

impl PendingQueue {
    /// Bytes of the queued batches (what back-pressure bounds).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    pub fn front(&self) -> Option<&PendingBatch> {
        self.batches.front()
    }

    /// Queues a batch; it must follow the last queued one.
    pub fn push(&mut self, batch: PendingBatch) {
        assert!(batch.last_offset >= batch.base_offset);
        if let Some(last) = self.batches.back() {
            assert_eq!(batch.base_offset, last.last_offset + 1, "queued batches follow each other");
        }
        self.bytes += batch.data.len();
        self.batches.push_back(batch);
    }

    /// Base offset of the first queued batch when it starts a new segment
    /// (the roll is due before it is written).
    pub fn roll_due(&self) -> Option<i64> {
        self.front().filter(|b| b.starts_segment).map(|b| b.base_offset)
    }

    /// The roll before the first batch is done: it is written like any other.
    pub fn rolled(&mut self) {
        if let Some(front) = self.batches.front_mut() {
            front.starts_segment = false;
        }
    }

    /// Bytes queued for the segment the first batch starts (up to the next
    /// batch that starts one), and whether that is the segment appends are
    /// filling (no later batch starts one).
    pub fn bytes_for_next_segment(&self) -> (u64, bool) {
        let mut need = 0u64;
        for (i, b) in self.batches.iter().enumerate() {
            if i > 0 && b.starts_segment {
                return (need, false);
            }
            need += b.data.len() as u64;
        }
        (need, true)
    }

    fn pop_front(&mut self) -> Option<PendingBatch> {
        let batch = self.batches.pop_front()?;
        self.bytes -= batch.data.len();
        Some(batch)
    }

    /// Drops every queued batch (their commit failed); returns their waiters.
    pub fn fail_all(&mut self) -> Vec<CommitWaiter> {
        let waiters = self.batches.drain(..).filter_map(|b| b.done).collect();
        self.bytes = 0;
        waiters
    }

    /// O(n): the byte count is the sum of the queued batches' lengths.
    fn debug_check(&self) {
        debug_assert_eq!(self.bytes, self.batches.iter().map(|b| b.data.len()).sum::<usize>());
        assert_eq!(self.batches.is_empty(), self.bytes == 0, "an empty queue holds no bytes");
    }
}

/// Completed group commits, the bytes they made durable, and how they went.
#[derive(Default)]
pub(crate) struct CommitMetrics {
    commits: Cell<u64>,
    committed_bytes: Cell<u64>,
    /// Commit writes started while an earlier one was still in flight.
    writes_overlapped: Cell<u64>,
    /// Time from a commit's start to its durable completion, in µs.
    latency_us: RefCell<Log2Histogram>,
    /// Bytes written per commit (carried page included).
    write_bytes: RefCell<Log2Histogram>,
}

impl CommitMetrics {
    pub fn commits(&self) -> u64 {
        self.commits.get()
    }

    pub fn committed_bytes(&self) -> u64 {
        self.committed_bytes.get()
    }

    pub fn writes_overlapped(&self) -> u64 {
        self.writes_overlapped.get()
    }

    /// (commit latency in µs, bytes written per commit).
    pub fn histograms(&self) -> (Log2Histogram, Log2Histogram) {
        (*self.latency_us.borrow(), *self.write_bytes.borrow())
    }

    /// A write completed and acknowledged `acked_bytes` of batches.
    pub fn record(&self, flight: &CommitFlight, acked_bytes: usize) {
        self.commits.set(self.commits.get() + 1);
        self.latency_us.borrow_mut().record(flight.started.elapsed().as_micros() as u64);
        self.write_bytes.borrow_mut().record(flight.total as u64);
        self.committed_bytes.set(self.committed_bytes.get() + acked_bytes as u64);
    }
}

/// Where the next commit write starts: after the queued batches already in
/// writes.
struct IssueCursor {
    /// Leading queued batches whose bytes are all in issued writes (the last
    /// one's final bytes possibly still held in `page`).
    batches: usize,
    /// Segment position after those batches.
    end: u64,
    /// The page holding `end`, valid up to `end`: the next write starts with it.
    page: Box<[u8; PAGE_BYTES]>,
    /// The last write issued ends on a page boundary: the next may start
    /// before it completes.
    open: bool,
    /// An error building a write while others were in flight, reported once
    /// they complete.
    failed: Option<StorageError>,
}

impl Default for IssueCursor {
    fn default() -> Self {
        Self { batches: 0, end: 0, page: Box::new([0u8; PAGE_BYTES]), open: false, failed: None }
    }
}

impl IssueCursor {
    /// With nothing in flight, the next write starts at the durable end.
    fn reset_to(&mut self, active: &ActiveSegment) {
        self.batches = 0;
        self.end = active.written_bytes;
        self.page.copy_from_slice(&active.tail_page[..]);
        self.open = false;
        self.failed = None;
    }

    /// Copies the carried page and the run's batches into `out` (the write's
    /// buffer, laid out by `layout`) and the bytes past a split write's end
    /// into `self.page`; returns the acknowledged end once the write
    /// completes: the end of the last batch before its durable end.
    fn fill<'a>(&mut self, out: &mut [u8], layout: &WriteLayout, run: impl Iterator<Item = &'a PendingBatch>) -> u64 {
        let total = out.len();
        let carried = (self.end - layout.page_start) as usize;
        out[..carried].copy_from_slice(&self.page[..carried]);
        // From here `self.page` is the page holding `data_end`: what opens
        // the next write.
        self.page.fill(0);
        let mut pos = carried;
        // The batches this write completes (with every earlier write): those
        // ending at or before its durable end. A batch that began in an
        // earlier write and ends in this one's first page is among them.
        let mut acked_end = self.end;
        for b in run {
            assert_recoverable(b);
            let len = b.data.len();
            let into_write = len.min(total.saturating_sub(pos));
            if into_write > 0 {
                out[pos..pos + into_write].copy_from_slice(&b.data[..into_write]);
            }
            if into_write < len {
                // Bytes past a split write's end open the next write.
                let held_start = pos + into_write - total;
                self.page[held_start..held_start + len - into_write].copy_from_slice(&b.data[into_write..]);
            }
            pos += len;
            if layout.page_start + pos as u64 <= layout.durable_end {
                acked_end = layout.page_start + pos as u64;
            }
        }
        assert_eq!(layout.page_start + pos as u64, layout.data_end, "the run fills the write up to its data end");
        if pos < total {
            out[pos..].fill(0);
        }
        acked_end
    }

    /// After a write laid out by `layout` (its bytes `out`) took the queued
    /// batches up to `batches`: the next write starts at its data end.
    fn advance(&mut self, batches: usize, layout: &WriteLayout, out: &[u8]) {
        if !layout.split && !layout.data_end.is_multiple_of(PAGE_BYTES as u64) {
            self.page.copy_from_slice(&out[out.len() - PAGE_BYTES..]);
        }
        self.batches = batches;
        self.end = layout.data_end;
        self.open = layout.split;
    }
}

/// Asserts that a batch about to be written passes the checks recovery
/// applies when it reads it back: its header (cheap, always) and its CRC
/// (O(n), debug builds). A batch failing them would be acknowledged, then
/// dropped by the next recovery.
fn assert_recoverable(b: &PendingBatch) {
    let checked = batch::check_in_log(&b.data, Some(b.base_offset), Crc::Skip);
    assert!(
        matches!(checked, Ok((h, next)) if h.total_bytes() == b.data.len() && next == b.last_offset + 1),
        "batch at offset {} would not pass recovery: {checked:?}",
        b.base_offset
    );
    debug_assert!(
        batch::check_in_log(&b.data, Some(b.base_offset), Crc::Check).is_ok(),
        "batch at offset {} would not pass recovery's CRC check",
        b.base_offset
    );
}

/// The queued batches one write takes: `count` from the cursor, `bytes` long.
struct Run {
    count: usize,
    bytes: usize,
    /// More batches for the same segment wait behind it.
    more_behind: bool,
}

impl Run {
    /// The batches after the first `first` up to the size cap (at least one)
    /// and up to the next segment start; `None` when there is none to write
    /// now (nothing queued, or a roll is due first).
    fn plan(pending: &PendingQueue, first: usize, commit_max: usize) -> Option<Run> {
        if pending.batches.get(first).is_none_or(|b| b.starts_segment) {
            return None;
        }
        let mut count = 0;
        let mut bytes = 0usize;
        for (i, b) in pending.batches.iter().skip(first).enumerate() {
            if i > 0 && (b.starts_segment || bytes + b.data.len() > commit_max) {
                break;
            }
            bytes += b.data.len();
            count += 1;
        }
        let more_behind = pending.batches.get(first + count).is_some_and(|b| !b.starts_segment);
        Some(Run { count, bytes, more_behind })
    }
}

/// The byte layout of one commit write, in segment positions.
struct WriteLayout {
    /// Where the write starts: the page holding the cursor's end.
    page_start: u64,
    /// End of the run's batches.
    data_end: u64,
    /// The write ends at the run's last page boundary (past its first page),
    /// holding the rest for the next write, which may then start at once.
    split: bool,
    write_end: u64,
    /// Where the log is durable once this write and every earlier one have
    /// completed.
    durable_end: u64,
}

impl WriteLayout {
    fn new(start: u64, run: &Run) -> WriteLayout {
        let page = PAGE_BYTES as u64;
        let page_start = start / page * page;
        let data_end = start + run.bytes as u64;
        let split = run.more_behind && data_end / page * page > page_start;
        let write_end = if split { data_end / page * page } else { data_end.div_ceil(page) * page };
        let durable_end = write_end.min(data_end);
        WriteLayout { page_start, data_end, split, write_end, durable_end }
    }

    fn total_bytes(&self) -> usize {
        (self.write_end - self.page_start) as usize
    }

    /// The page holding `acked_end` (within this write, whose bytes are
    /// `out`), valid up to it: what the next write after a failure rewrites.
    fn page_holding(&self, acked_end: u64, out: &[u8]) -> Box<[u8; PAGE_BYTES]> {
        let acked_page_start = acked_end / PAGE_BYTES as u64 * PAGE_BYTES as u64;
        let mut tail_page = Box::new([0u8; PAGE_BYTES]);
        let from = (acked_page_start - self.page_start) as usize;
        let acked_in_page = (acked_end - acked_page_start) as usize;
        tail_page[..acked_in_page].copy_from_slice(&out[from..from + acked_in_page]);
        tail_page
    }
}

/// A commit write issued and not yet handled.
pub(crate) struct CommitFlight {
    path: std::path::PathBuf,
    total: usize,
    /// Segment position up to which the log is durable once this write and
    /// every earlier one have completed.
    durable_end: u64,
    /// End of the last whole batch before `durable_end`: the new durable end
    /// of the log's batches.
    acked_end: u64,
    /// The page holding `acked_end`, valid up to it (zeros past it).
    tail_page: Box<[u8; PAGE_BYTES]>,
    started: std::time::Instant,
}

/// What a commit write's future yields.
pub(crate) type WriteDone = (glommio::Result<usize, ()>, CommitFlight);

async fn write_flight(file: Rc<DmaFile>, buf: DmaBuffer, position: u64, flight: CommitFlight) -> WriteDone {
    let result = file.write_at(buf, position).await;
    (result, flight)
}

/// A batch a completed write acknowledged, at `position` in segment
/// `segment_base`.
pub(crate) struct AckedBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub segment_base: i64,
    pub position: u64,
    pub data: Bytes,
    pub done: Option<CommitWaiter>,
}

/// The commit writes of one partition: where the next starts, and those in
/// flight (futures of type `W`, see `pipeline`). Owned by the commit task.
pub(crate) struct CommitPipeline<W: Future> {
    topic: String,
    partition: i32,
    cursor: IssueCursor,
    flights: FuturesOrdered<W>,
    start_write: fn(Rc<DmaFile>, DmaBuffer, u64, CommitFlight) -> W,
}

/// An idle pipeline for the partition's commit task.
pub(crate) fn pipeline(topic: &str, partition: i32) -> CommitPipeline<impl Future<Output = WriteDone>> {
    CommitPipeline {
        topic: topic.to_owned(),
        partition,
        cursor: IssueCursor::default(),
        flights: FuturesOrdered::new(),
        start_write: write_flight,
    }
}

impl<W: Future<Output = WriteDone>> CommitPipeline<W> {
    pub fn is_idle(&self) -> bool {
        self.flights.is_empty()
    }

    /// With nothing in flight (every issued batch acknowledged): issues the
    /// first write from the active segment's durable end. `false` when
    /// there is nothing to write now.
    pub fn start(
        &mut self,
        pending: &PendingQueue,
        active: &ActiveSegment,
        commit_max: usize,
    ) -> Result<bool, StorageError> {
        assert!(self.flights.is_empty(), "a commit starts from the durable end only with nothing in flight");
        self.cursor.reset_to(active);
        let Some(write) = self.issue(pending, active, commit_max)? else { return Ok(false) };
        self.flights.push_back(write);
        Ok(true)
    }

    /// Issues the writes that may start while earlier ones are in flight
    /// (the last issued ends on a page boundary), up to the in-flight cap.
    /// An error building one is reported once those in flight complete.
    pub fn issue_behind(
        &mut self,
        pending: &PendingQueue,
        active: &ActiveSegment,
        commit_max: usize,
        metrics: &CommitMetrics,
    ) {
        while self.flights.len() < COMMIT_WRITES_IN_FLIGHT_MAX && self.cursor.open {
            match self.issue(pending, active, commit_max) {
                Ok(Some(write)) => {
                    metrics.writes_overlapped.set(metrics.writes_overlapped.get() + 1);
                    self.flights.push_back(write);
                }
                Ok(None) => break,
                Err(error) => {
                    // Nothing was issued; what is in flight completes first.
                    self.cursor.failed = Some(error);
                    break;
                }
            }
        }
    }

    /// Builds the next commit write from the queued batches after the
    /// cursor (submitted once the committer awaits it); `None` when nothing
    /// can be written now.
    ///
    /// The run is the batches up to the size cap (at least one) and up to
    /// the next segment boundary. When more batches wait behind it (in the
    /// same segment), the write stops at the last page boundary of the run
    /// and the rest (less than a page) opens the next write, which may then
    /// be in flight together with this one: the two never share a page. A
    /// write that takes everything queued ends with the partly filled page,
    /// which the next write rewrites, so that one waits for it to complete.
    fn issue(
        &mut self,
        pending: &PendingQueue,
        active: &ActiveSegment,
        commit_max: usize,
    ) -> Result<Option<W>, StorageError> {
        let first = self.cursor.batches;
        let Some(run) = Run::plan(pending, first, commit_max) else {
            self.cursor.open = false;
            return Ok(None);
        };
        self.check_fits(active, &run)?;
        let layout = WriteLayout::new(self.cursor.end, &run);
        let mut buf = active.file.alloc_dma_buffer(layout.total_bytes());
        let out = buf.as_bytes_mut();
        let acked_end = self.cursor.fill(out, &layout, pending.batches.iter().skip(first).take(run.count));
        assert!(
            layout.page_start <= self.cursor.end
                && self.cursor.end <= acked_end
                && acked_end <= layout.durable_end
                && layout.durable_end <= layout.write_end,
            "the acknowledged end lies within the write"
        );
        let tail_page = layout.page_holding(acked_end, out);
        self.cursor.advance(first + run.count, &layout, out);
        let flight = CommitFlight {
            path: active.path.clone(),
            total: layout.total_bytes(),
            durable_end: layout.durable_end,
            acked_end,
            tail_page,
            started: std::time::Instant::now(),
        };
        Ok(Some((self.start_write)(active.file.clone(), buf, layout.page_start, flight)))
    }

    /// Appends are counted against the file they go to (see
    /// `SegmentSet::prepared_fitting`), so a run past the active segment's
    /// end is a bug; it fails the queued appends (the producers retry)
    /// rather than the shard.
    fn check_fits(&self, active: &ActiveSegment, run: &Run) -> Result<(), StorageError> {
        if self.cursor.end + run.bytes as u64 <= active.capacity_bytes {
            return Ok(());
        }
        let (written, run_bytes, capacity) = (self.cursor.end, run.bytes, active.capacity_bytes);
        tracing::error!(topic = %self.topic, partition = self.partition, written, run_bytes, capacity, "queued batches overrun the active segment");
        Err(StorageError::io(
            format!("commit to {}", active.path.display()),
            std::io::Error::other(format!(
                "{run_bytes} bytes queued at {written} do not fit the segment's {capacity} bytes"
            )),
        ))
    }

    /// The oldest write in flight, once it completed whole (earlier ones
    /// have); `None` when none is in flight.
    pub async fn next_completion(&mut self) -> Option<Result<CommitFlight, StorageError>> {
        let (result, flight) = self.flights.next().await?;
        let context = || format!("write {}", flight.path.display());
        let checked = match result {
            Err(e) => Err(gerr(context())(e)),
            Ok(written) if written != flight.total => Err(StorageError::io(
                context(),
                std::io::Error::other(format!("short write: {written} of {} bytes", flight.total)),
            )),
            Ok(_) => Ok(()),
        };
        Some(checked.map(|()| flight))
    }

    /// The error building a later write hit while this one was in flight.
    pub fn take_failed(&mut self) -> Option<StorageError> {
        self.cursor.failed.take()
    }

    /// Waits for every write in flight (after a failure, before the queue
    /// is failed and the next commit rewrites from the durable end).
    pub async fn drain(&mut self) {
        while self.flights.next().await.is_some() {}
    }

    /// Records a completed write (all earlier ones have completed): pops the
    /// batches it finished from `pending`, indexes them in `active`, hands
    /// each to `on_acked` in offset order, and moves the active segment's
    /// durable end to their end. Returns the bytes acknowledged.
    pub fn complete(
        &mut self,
        flight: &CommitFlight,
        pending: &mut PendingQueue,
        active: &mut ActiveSegment,
        index_interval_bytes: u32,
        mut on_acked: impl FnMut(AckedBatch),
    ) -> usize {
        let start = active.written_bytes;
        let pending_before = pending.bytes();
        let mut position = start;
        let mut popped = 0;
        while position < flight.acked_end {
            let Some(b) = pending.pop_front() else { break };
            popped += 1;
            let len = b.data.len();
            active.record_batch(b.base_offset, position, len, b.max_timestamp_ms, index_interval_bytes);
            let PendingBatch { base_offset, last_offset, data, done, .. } = b;
            on_acked(AckedBatch { base_offset, last_offset, segment_base: active.base_offset, position, data, done });
            position += len as u64;
        }
        assert_eq!(position, flight.acked_end, "a commit write completes whole batches");
        assert!(flight.acked_end <= flight.durable_end);
        assert!(popped <= self.cursor.batches, "only batches in issued writes complete");
        // Zeros when the end sits on a page boundary: the next page is empty.
        active.advance_durable_end(position, &flight.tail_page);
        self.cursor.batches -= popped;
        let acked_bytes = (position - start) as usize;
        assert_eq!(pending_before - pending.bytes(), acked_bytes, "the queue gives up the bytes acknowledged");
        pending.debug_check();
        acked_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(base_offset: i64, records: i64, bytes: usize) -> PendingBatch {
        PendingBatch {
            base_offset,
            last_offset: base_offset + records - 1,
            max_timestamp_ms: 0,
            data: Bytes::from(vec![0u8; bytes]),
            starts_segment: false,
            done: None,
        }
    }

    #[test]
    fn pending_bytes_are_the_queued_batches_and_return_to_zero_when_failed() {
        let mut q = PendingQueue::default();
        q.push(pending(0, 2, 100));
        q.push(PendingBatch { starts_segment: true, ..pending(2, 1, 50) });
        q.push(pending(3, 1, 30));
        assert_eq!(q.bytes(), 180);
        assert_eq!(q.bytes_for_next_segment(), (100, false), "the second batch starts the next segment");
        assert_eq!(q.pop_front().map(|b| b.base_offset), Some(0));
        assert_eq!((q.bytes(), q.roll_due()), (80, Some(2)));
        q.rolled();
        assert_eq!(q.roll_due(), None);
        assert!(q.fail_all().is_empty());
        assert_eq!((q.bytes(), q.is_empty()), (0, true));
        q.debug_check();
    }

    #[test]
    #[should_panic(expected = "queued batches follow each other")]
    fn a_batch_that_does_not_follow_the_last_queued_one_is_refused() {
        let mut q = PendingQueue::default();
        q.push(pending(0, 2, 100));
        q.push(pending(3, 1, 100));
    }

    #[test]
    fn a_write_ends_at_the_runs_last_page_boundary_only_with_more_behind() {
        let run = |bytes, more_behind| Run { count: 1, bytes, more_behind };
        // From 100 bytes into a page, 9000 bytes of batches end at 9100.
        let alone = WriteLayout::new(100, &run(9000, false));
        assert_eq!((alone.page_start, alone.data_end, alone.split), (0, 9100, false));
        assert_eq!((alone.write_end, alone.durable_end, alone.total_bytes()), (12288, 9100, 12288));
        let followed = WriteLayout::new(100, &run(9000, true));
        assert_eq!((followed.split, followed.write_end, followed.durable_end), (true, 8192, 8192));
        // Within its first page a write cannot split: the next one would share it.
        let short = WriteLayout::new(100, &run(1000, true));
        assert_eq!((short.split, short.write_end, short.durable_end), (false, 4096, 1100));
    }
}
