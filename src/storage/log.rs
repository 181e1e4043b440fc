//! `PartitionLog`: one partition's log on its owning shard. It composes the
//! pieces that own the log's state (`LogState`: the segment set, the queue
//! waiting for its commit, the tail cache, the offsets; the producer table;
//! the append queue; the commit metrics) and runs the partition's work
//! through them:
//!
//! - `append`: validates a produce request, waits for room
//!   (`admission`), checks it against the producer table, gives it offsets
//!   and queues it (`LogState::enqueue`), then waits for its commit;
//! - the commit task: drives the `appender` pipeline, rolls the segment set
//!   before a batch that starts a new segment, and fails the queue when a
//!   write fails;
//! - preparing the next segment's file, retention, DeleteRecords, close.
//!
//! Every `RefCell` borrow is taken and dropped within one synchronous step
//! (a statement, or a method of a piece): none is held across an await.

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use event_listener::Event;
use futures_channel::oneshot;

use super::admission::{self, AppendLimits, AppendQueue, Batches, Checked, Room};
use super::appender::{self, CommitFlight, CommitMetrics, CommitPipeline, CommitWaiter, WriteDone};
use super::batch::BatchHeader;
use super::config::{align_up, FlushPolicy, LogConfig};
use super::delete_records;
use super::error::StorageError;
use super::producer_state::{self, BatchMeta, ProducerBatch, ProducerError, ProducerStateTable, Verdict};
use super::reader::{self, ReadResult};
use super::recovery::{self, RecoveredLog};
use super::retention::{self, now_ms, Retention};
use super::segment::{self, InstalledFile, PreparedSegment};
use super::segment_set::{PrepareFlag, SegmentSet};
use super::state::{Enqueued, LogState};
use super::time_lookup;

pub struct PartitionLog {
    pub topic: String,
    pub partition: i32,
    dir: PathBuf,
    pub(crate) config: RefCell<LogConfig>,
    pub(crate) state: RefCell<LogState>,
    /// Idempotent producers' sequences and epochs (see `producer_state`).
    producers: RefCell<ProducerStateTable>,
    /// Fired when the high watermark moves or the log closes.
    hw_changed: Event,
    /// Fired when a batch is queued for commit or the log closes.
    work_queued: Event,
    /// Fired when a commit frees pending space (or fails the queue).
    space_freed: Event,
    /// Fired when a preparation of the next segment's file ends.
    prepared_ready: Event,
    pub(crate) preparing: PrepareFlag,
    closed: Cell<bool>,
    /// Set while the committer task runs; `close` waits for it to finish.
    committer_running: Cell<bool>,
    committer_done: Event,
    /// A commit failed since the log opened (its write may have left bytes
    /// past the durable end).
    commit_failed: Cell<bool>,
    metrics: CommitMetrics,
    /// Serialises moves of the log start offset by DeleteRecords (see `delete_records`).
    start_offset_change: glommio::sync::Semaphore,
    /// Appends waiting for pending space, in arrival order.
    append_queue: AppendQueue,
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

/// How a commit started with nothing in flight.
enum CommitStart {
    Issued,
    /// Nothing to write yet.
    Nothing,
    /// The log closed with nothing queued: the committer ends.
    Closed,
    Failed(StorageError),
}

// --- Opening, and what the log reports ---

impl PartitionLog {
    /// Opens (or creates) the log in `dir` and starts its committer.
    pub async fn open(
        dir: PathBuf,
        topic: String,
        partition: i32,
        config: LogConfig,
    ) -> Result<Rc<PartitionLog>, StorageError> {
        let recovered = recovery::recover(&dir, &topic, partition, &config).await?;
        let log = Rc::new(PartitionLog::from_recovered(dir, topic, partition, config, recovered));
        log.start_tasks();
        Ok(log)
    }

    fn from_recovered(
        dir: PathBuf,
        topic: String,
        partition: i32,
        config: LogConfig,
        recovered: RecoveredLog,
    ) -> PartitionLog {
        let RecoveredLog { sealed, active, log_start_offset, log_end_offset, producers } = recovered;
        let state = LogState::new(SegmentSet::new(sealed, active), log_start_offset, log_end_offset);
        PartitionLog {
            topic,
            partition,
            dir,
            config: RefCell::new(config),
            state: RefCell::new(state),
            producers: RefCell::new(producers),
            hw_changed: Event::new(),
            work_queued: Event::new(),
            space_freed: Event::new(),
            prepared_ready: Event::new(),
            preparing: PrepareFlag::default(),
            closed: Cell::new(false),
            committer_running: Cell::new(false),
            committer_done: Event::new(),
            commit_failed: Cell::new(false),
            metrics: CommitMetrics::default(),
            start_offset_change: glommio::sync::Semaphore::new(1),
            append_queue: AppendQueue::default(),
        }
    }

    pub fn offsets(&self) -> Offsets {
        let s = self.state.borrow();
        Offsets {
            log_start_offset: s.log_start_offset,
            high_watermark: s.high_watermark,
            log_end_offset: s.log_end_offset,
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.state.borrow().high_watermark
    }

    pub fn commit_count(&self) -> u64 {
        self.metrics.commits()
    }

    pub fn committed_bytes(&self) -> u64 {
        self.metrics.committed_bytes()
    }

    pub fn segments_recycled(&self) -> u64 {
        self.state.borrow().recycled
    }

    pub fn commit_writes_overlapped(&self) -> u64 {
        self.metrics.writes_overlapped()
    }

    /// (commit latency in µs, bytes written per commit).
    pub fn commit_histograms(&self) -> (crate::histogram::Log2Histogram, crate::histogram::Log2Histogram) {
        self.metrics.histograms()
    }

    /// Sealed segments, and bytes waiting for a commit.
    pub fn sealed_segments(&self) -> usize {
        self.state.borrow().sealed.len()
    }

    pub fn pending_bytes(&self) -> usize {
        self.state.borrow().pending.bytes()
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
}

// --- Reads ---

impl PartitionLog {
    /// Committed batches from the one holding `offset`, up to `max_bytes`
    /// (see `reader`).
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, StorageError> {
        reader::read(&self.state.borrow(), offset, max_bytes)
    }

    /// The first offset (at or after the log start) whose record timestamp
    /// is >= `timestamp_ms`, with that timestamp (see `time_lookup`).
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Option<(i64, i64)> {
        time_lookup::offset_for_timestamp(&self.state.borrow(), timestamp_ms)
    }

    /// The first record holding the largest timestamp at or after the log
    /// start: (offset, timestamp); `None` for an empty log.
    pub fn offset_of_max_timestamp(&self) -> Option<(i64, i64)> {
        time_lookup::offset_of_max_timestamp(&self.state.borrow())
    }

    /// Waits until the high watermark is past `offset`, the log closes, or
    /// `timeout` passes.
    pub async fn wait_for_data(&self, offset: i64, timeout: Duration) {
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
}

// --- Appends ---

impl PartitionLog {
    /// Validates the batches of one produce request, assigns their offsets,
    /// queues them for the group commit and, with `AckWait::Commit`, waits
    /// until that commit covers them.
    ///
    /// `records` is the producer's bytes, owned: offsets are patched in place
    /// and the batches are kept as slices of it (no copy until the DMA write).
    pub async fn append(&self, records: BytesMut, wait: AckWait) -> Result<AppendOutcome, StorageError> {
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        let limits = AppendLimits::of(&self.config.borrow());
        let (batches, producer) = match admission::check_request(&records, &limits)? {
            Checked::Valid(batches, producer) => (batches, producer),
            Checked::OverLimit(batches, refusal) => return self.answer_stored_duplicate(&batches, wait, refusal).await,
        };
        let pending_bytes = || self.state.borrow().pending.bytes();
        let room = Room {
            pending_bytes,
            pending_max_bytes: limits.pending_max_bytes,
            space_freed: &self.space_freed,
            closed: &self.closed,
        };
        self.append_queue.wait_for_room(records.len(), room).await?;
        // From the producer check to the offsets being taken: no await, so no
        // other append of this partition comes in between.
        if let Some(b) = &producer {
            let verdict = self.producers.borrow().check(b)?;
            if let Verdict::Duplicate(original) = verdict {
                return self.await_duplicate(b, original, wait).await;
            }
        }
        let (done, committed) = oneshot::channel();
        let enqueued = self.enqueue(records, batches, producer.as_ref(), limits.segment_bytes, done);
        self.work_queued.notify(usize::MAX);
        if wait == AckWait::Commit {
            committed.await.unwrap_or(Err(StorageError::Closed))?;
        }
        Ok(AppendOutcome { base_offset: enqueued.base_offset, log_start_offset: enqueued.log_start_offset })
    }

    /// Gives the batches their offsets, queues them, and records an
    /// idempotent producer's batch (one synchronous step).
    fn enqueue(
        &self,
        records: BytesMut,
        batches: Batches,
        producer: Option<&ProducerBatch>,
        segment_bytes: u64,
        done: CommitWaiter,
    ) -> Enqueued {
        let enqueued = self.state.borrow_mut().enqueue(records, batches, segment_bytes, done);
        if let Some(b) = producer {
            self.producers.borrow_mut().record(b, enqueued.base_offset, enqueued.last_offset);
        }
        enqueued
    }

    /// Answers a request refused by a size limit with its stored original's
    /// offsets when it is the retry of an idempotent batch stored before the
    /// limit was lowered; otherwise fails it with `refusal`. `batches` must be
    /// validated (CRC included): only then are its producer fields trusted.
    async fn answer_stored_duplicate(
        &self,
        batches: &[(Range<usize>, BatchHeader)],
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

    /// Answers a retried batch with its original's offsets: at once under
    /// acks=0, else once the original's commit is done. If a commit failed
    /// meanwhile (the original may be gone), the retry gets a retriable error.
    async fn await_duplicate(
        &self,
        b: &ProducerBatch,
        original: BatchMeta,
        wait: AckWait,
    ) -> Result<AppendOutcome, StorageError> {
        tracing::debug!(topic = %self.topic, partition = self.partition, producer_id = b.producer_id, epoch = b.epoch, first_seq = b.first_seq, base_offset = original.base_offset, "duplicate batch: answering with the original's offsets");
        let rollbacks = self.producers.borrow().rollbacks();
        loop {
            let hw_moved = self.hw_changed.listen();
            let commit_failed = self.space_freed.listen();
            if self.producers.borrow().rollbacks() != rollbacks {
                return Err(ProducerError::OriginalFailed { producer_id: b.producer_id }.into());
            }
            let offsets = self.offsets();
            if wait == AckWait::None || offsets.high_watermark > original.last_offset {
                return Ok(AppendOutcome {
                    base_offset: original.base_offset,
                    log_start_offset: offsets.log_start_offset,
                });
            }
            if self.is_closed() {
                return Err(StorageError::Closed);
            }
            futures_lite::future::or(hw_moved, commit_failed).await;
        }
    }
}

// --- The commit task (see `appender` for the flush/ack contract) ---

impl PartitionLog {
    /// Spawns the committer (and, under `flush=interval`, the fsync timer).
    fn start_tasks(self: &Rc<Self>) {
        let log = self.clone();
        self.committer_running.set(true);
        glommio::spawn_local(async move {
            log.commit_loop().await;
            log.committer_running.set(false);
            log.committer_done.notify(usize::MAX);
        })
        .detach();
        let flush = self.config.borrow().flush;
        if let FlushPolicy::Interval(period) = flush {
            self.spawn_fsync_timer(period);
        }
        self.maybe_prepare_next();
    }

    fn spawn_fsync_timer(self: &Rc<Self>, period: Duration) {
        let log = self.clone();
        glommio::spawn_local(async move {
            while !log.closed.get() {
                glommio::timer::sleep(period).await;
                let file = log.state.borrow().active.file.clone();
                if let Err(e) = file.fdatasync().await {
                    tracing::error!(topic = %log.topic, partition = log.partition, error = %e, "periodic fdatasync failed");
                }
            }
        })
        .detach();
    }

    async fn commit_loop(self: &Rc<Self>) {
        let mut pipeline = appender::pipeline(&self.topic, self.partition);
        loop {
            if pipeline.is_idle() {
                match self.start_commit(&mut pipeline).await {
                    CommitStart::Issued => {}
                    CommitStart::Nothing => continue,
                    CommitStart::Closed => return,
                    CommitStart::Failed(error) => {
                        self.fail_pending(error);
                        continue;
                    }
                }
            }
            // A write that ends on a page boundary leaves the next one free
            // to start while it is in flight (see `appender`).
            self.issue_behind(&mut pipeline);
            let error = match pipeline.next_completion().await {
                None => continue,
                Some(Ok(flight)) => {
                    self.on_write_completed(&mut pipeline, &flight);
                    let Some(error) = pipeline.take_failed() else { continue };
                    error
                }
                Some(Err(error)) => {
                    pipeline.take_failed();
                    error
                }
            };
            // Later writes may still be in flight: let them finish before the
            // queue is failed and the next commit rewrites from the durable end.
            pipeline.drain().await;
            self.fail_pending(error);
        }
    }

    /// With nothing in flight: waits for queued batches, lingers, rolls if
    /// the first starts a segment, and issues the first write.
    async fn start_commit<W: std::future::Future<Output = WriteDone>>(
        self: &Rc<Self>,
        pipeline: &mut CommitPipeline<W>,
    ) -> CommitStart {
        if !self.wait_for_work().await {
            return CommitStart::Closed;
        }
        let linger = self.config.borrow().commit_linger;
        if linger > Duration::ZERO && !self.closed.get() {
            glommio::timer::sleep(linger).await;
        }
        if let Err(error) = self.roll_if_due().await {
            return CommitStart::Failed(error);
        }
        let commit_max = self.config.borrow().commit_max_bytes;
        let s = self.state.borrow();
        match pipeline.start(&s.pending, &s.active, commit_max) {
            Ok(true) => CommitStart::Issued,
            Ok(false) => CommitStart::Nothing,
            Err(error) => CommitStart::Failed(error),
        }
    }

    /// Waits until a batch is queued; `false` once the log is closed with
    /// nothing queued.
    async fn wait_for_work(&self) -> bool {
        loop {
            let listener = self.work_queued.listen();
            if !self.state.borrow().pending.is_empty() {
                return true;
            }
            if self.closed.get() {
                return false;
            }
            listener.await;
        }
    }

    fn issue_behind<W: std::future::Future<Output = WriteDone>>(&self, pipeline: &mut CommitPipeline<W>) {
        let commit_max = self.config.borrow().commit_max_bytes;
        let s = self.state.borrow();
        pipeline.issue_behind(&s.pending, &s.active, commit_max, &self.metrics);
    }

    /// Records a completed write (all earlier ones have completed): the
    /// batches it finished become readable and their producers get their
    /// acknowledgement.
    fn on_write_completed<W: std::future::Future<Output = WriteDone>>(
        self: &Rc<Self>,
        pipeline: &mut CommitPipeline<W>,
        flight: &CommitFlight,
    ) {
        let (interval, tail_max) = {
            let c = self.config.borrow();
            (c.index_interval_bytes, c.tail_cache_bytes)
        };
        let (waiters, acked_bytes) = self.state.borrow_mut().complete_write(pipeline, flight, interval, tail_max);
        self.metrics.record(flight, acked_bytes);
        for w in waiters {
            let _ = w.send(Ok(()));
        }
        self.hw_changed.notify(usize::MAX);
        self.space_freed.notify(usize::MAX);
        self.maybe_prepare_next();
    }

    /// Fails every queued append and rewinds the log end to what is written.
    fn fail_pending(&self, error: StorageError) {
        tracing::error!(topic = %self.topic, partition = self.partition, %error, "commit failed; failing queued appends");
        self.commit_failed.set(true);
        let (waiters, log_end_offset) = {
            let mut s = self.state.borrow_mut();
            (s.fail_pending(), s.log_end_offset)
        };
        self.producers.borrow_mut().rollback(log_end_offset);
        let message = error.to_string();
        let disk_full = matches!(error, StorageError::DiskFull { .. });
        for w in waiters {
            let e = if disk_full {
                StorageError::DiskFull { context: message.clone() }
            } else {
                StorageError::Io { context: message.clone(), source: std::io::Error::other("commit failed") }
            };
            let _ = w.send(Err(e));
        }
        self.space_freed.notify(usize::MAX);
    }
}

// --- Segments: rolls and the next segment's file ---

impl PartitionLog {
    /// Rolls to a new segment when the next batch to write starts one; only
    /// called with no write in flight.
    async fn roll_if_due(self: &Rc<Self>) -> Result<(), StorageError> {
        let Some(base) = self.state.borrow().pending.roll_due() else { return Ok(()) };
        let roll_started = std::time::Instant::now();
        self.roll(base).await?;
        tracing::debug!(topic = %self.topic, partition = self.partition, base, roll_us = roll_started.elapsed().as_micros() as u64, "rolled to a new segment");
        self.state.borrow_mut().pending.rolled();
        Ok(())
    }

    /// Seals the active segment and makes the prepared file the new active
    /// segment starting at `base_offset`.
    ///
    /// An empty active segment starting at `base_offset` (its file too small
    /// for the batch that starts the new one) is replaced instead of sealed:
    /// the prepared file takes its name.
    async fn roll(self: &Rc<Self>, base_offset: i64) -> Result<(), StorageError> {
        self.wait_for_prepared().await?;
        let seal = self.state.borrow().seal_work(base_offset);
        let Some(seal) = seal else { return self.replace_empty_active(base_offset).await };
        let (sealed_path, sealed_bytes) = (seal.path.clone(), seal.written_bytes);
        segment::write_sealed(&self.dir, seal).await?;
        let prepared = self.ensure_prepared_fits().await?;
        let installed = self.install(&prepared, base_offset).await?;
        let sealed_data = segment::map_file(&sealed_path, sealed_bytes, &self.state.borrow().active.map_use)?;
        let retired = self.state.borrow_mut().segments.rotate(base_offset, installed, sealed_data);
        retired.close().await;
        tracing::debug!(topic = %self.topic, partition = self.partition, base_offset, "rolled segment");
        self.snapshot_producers(base_offset);
        self.retain_after_roll();
        Ok(())
    }

    /// Waits for the prepared file, starting its preparation if none runs.
    async fn wait_for_prepared(self: &Rc<Self>) -> Result<(), StorageError> {
        loop {
            let listener = self.prepared_ready.listen();
            if self.state.borrow().prepared.is_some() {
                return Ok(());
            }
            if !self.preparing.get() {
                self.spawn_prepare();
            }
            listener.await;
            if self.state.borrow().prepared.is_none() && !self.preparing.get() {
                return Err(StorageError::io(
                    format!("prepare next segment in {}", self.dir.display()),
                    std::io::Error::other("preparation failed"),
                ));
            }
        }
    }

    /// Takes the prepared file for the segment about to start, making sure
    /// it can hold the batches queued for that segment (those up to the next
    /// segment start), which were counted against the `segment.bytes` in
    /// force when they came (possibly more than the prepared file holds):
    /// a file allocated before segment.bytes grew is replaced by a bigger one.
    /// See `SegmentSet::prepared_fitting` for the limit this sets on appends.
    async fn ensure_prepared_fits(&self) -> Result<PreparedSegment, StorageError> {
        loop {
            let taken = {
                let mut s = self.state.borrow_mut();
                let (need, filling) = s.pending.bytes_for_next_segment();
                s.segments.prepared_fitting(need, filling).map_err(|had| (need, had))
            };
            let (need, had) = match taken {
                Ok(prepared) => return Ok(prepared),
                Err(sizes) => sizes,
            };
            let (segment_bytes, mode) = {
                let c = self.config.borrow();
                (c.segment_bytes, c.preallocation)
            };
            let capacity = align_up(need.max(segment_bytes) as usize) as u64;
            tracing::info!(topic = %self.topic, partition = self.partition, had, capacity, "preparing a larger next segment (segment.bytes changed)");
            // Appends may keep coming while it is made: checked again above.
            let prepared = segment::prepare_next(&self.dir, capacity, mode).await?;
            self.state.borrow_mut().segments.set_prepared(prepared);
        }
    }

    /// Installs `prepared` as the segment file for `base_offset`, opened
    /// for appends and mapped.
    async fn install(&self, prepared: &PreparedSegment, base_offset: i64) -> Result<InstalledFile, StorageError> {
        let path = segment::install_prepared(&self.dir, prepared, base_offset).await?;
        self.state.borrow_mut().segments.installed(prepared);
        let dsync = self.config.borrow().flush == FlushPolicy::Always;
        segment::open_installed(path, prepared.capacity_bytes, dsync).await
    }

    /// Replaces the empty active segment at `base_offset` with the prepared
    /// file (made big enough for the batch that starts it): the rename
    /// atomically puts the new file under the same name.
    async fn replace_empty_active(self: &Rc<Self>, base_offset: i64) -> Result<(), StorageError> {
        let prepared = self.ensure_prepared_fits().await?;
        tracing::info!(topic = %self.topic, partition = self.partition, base_offset, capacity = prepared.capacity_bytes, "replacing the empty active segment with a larger one for a batch bigger than its file");
        let installed = self.install(&prepared, base_offset).await?;
        let old_file = self.state.borrow_mut().segments.replace_active_file(installed);
        segment::close_file(old_file).await;
        Ok(())
    }

    /// Starts preparing the next segment file once the active one is half full.
    fn maybe_prepare_next(self: &Rc<Self>) {
        if self.preparing.get() || self.closed.get() {
            return;
        }
        let wanted = self.state.borrow().wants_prepared();
        if wanted {
            self.spawn_prepare();
        }
    }

    fn spawn_prepare(self: &Rc<Self>) {
        if !self.preparing.begin() {
            return;
        }
        let log = self.clone();
        glommio::spawn_local(async move {
            log.prepare_next().await;
            log.preparing.end();
            log.prepared_ready.notify(usize::MAX);
        })
        .detach();
    }

    async fn prepare_next(&self) {
        let (capacity, mode) = {
            let c = self.config.borrow();
            (align_up(c.segment_bytes as usize) as u64, c.preallocation)
        };
        match segment::prepare_next(&self.dir, capacity, mode).await {
            Ok(p) => self.state.borrow_mut().segments.set_prepared(p),
            Err(e) => {
                tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "preparing the next segment failed; will retry at roll");
                // A half-allocated file only takes space (a full disk is the usual cause).
                let path = self.dir.join(segment::PREPARED_FILE_NAME);
                let _ = segment::blocking(move || std::fs::remove_file(path)).await;
            }
        }
    }

    /// Under `retention.bytes`, applies retention now rather than at the next
    /// periodic pass: each roll can put the log over its size, and retiring a
    /// segment here leaves its file for the next one, which is prepared once
    /// the new segment is half full (a partition rolling faster than
    /// `retention-check-ms` would otherwise zero-fill most of its segments).
    /// Time retention stays periodic.
    fn retain_after_roll(self: &Rc<Self>) {
        if self.config.borrow().retention_bytes < 0 {
            return;
        }
        let log = self.clone();
        glommio::spawn_local(async move {
            if log.closed.get() {
                return;
            }
            if let Err(e) = log.enforce_retention().await {
                tracing::warn!(topic = %log.topic, partition = log.partition, error = %e, "retention after a roll failed");
            }
        })
        .detach();
    }

    /// At a roll to `base_offset` (every batch before it is committed): writes
    /// the producer state before it as a snapshot on a helper thread, so a
    /// restart reads the segments from there instead of the whole log.
    fn snapshot_producers(&self, base_offset: i64) {
        if self.closed.get() {
            return;
        }
        let bytes = self.producers.borrow().encode_snapshot(base_offset);
        let dir = self.dir.clone();
        let (topic, partition) = (self.topic.clone(), self.partition);
        glommio::spawn_local(async move {
            let result =
                segment::blocking(move || producer_state::write_snapshot(&dir, base_offset, &bytes)).await;
            if let Err(error) = result {
                tracing::warn!(topic, partition, base_offset, %error, "could not write the producer state snapshot (the next start scans more of the log)");
            }
        })
        .detach();
    }
}

// --- Retention, DeleteRecords, close ---

impl PartitionLog {
    /// Applies retention once; returns the number of segments deleted.
    pub async fn enforce_retention(&self) -> Result<usize, StorageError> {
        let retention = Retention::of(&self.config.borrow(), now_ms());
        let doomed = self.state.borrow_mut().retire_oldest_while(|total, oldest| retention.retires(total, oldest));
        if doomed.is_empty() {
            return Ok(0);
        }
        let count = doomed.len();
        tracing::info!(topic = %self.topic, partition = self.partition, segments = count, log_start_offset = self.offsets().log_start_offset, "retention deleted segments");
        self.remove_retired(doomed).await?;
        Ok(count)
    }

    /// Deletes the sealed segments holding only offsets below `offset` (used
    /// by logs that compact themselves, such as the consumer offsets logs,
    /// once everything they need is written again past `offset`). Returns
    /// the number of segments deleted.
    pub async fn delete_segments_below(&self, offset: i64) -> Result<usize, StorageError> {
        let doomed = self.state.borrow_mut().retire_below(offset);
        if doomed.is_empty() {
            return Ok(0);
        }
        let count = doomed.len();
        self.remove_retired(doomed).await?;
        Ok(count)
    }

    /// Moves the log start offset to `offset` (-1: the high watermark) and
    /// deletes the segments wholly below it (see `delete_records`). Returns
    /// the new log start offset (the low watermark). An offset at or below
    /// the current start changes nothing; one past the high watermark is
    /// `OffsetOutOfRange`.
    pub async fn delete_records(&self, offset: i64) -> Result<i64, StorageError> {
        let _permit = self.start_offset_change.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        let Offsets { log_start_offset: start, high_watermark: hw, .. } = self.offsets();
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(StorageError::OffsetOutOfRange { offset, start, end: hw });
        }
        if target <= start {
            return Ok(start);
        }
        // 1. Durable.
        delete_records::persist_log_start(&self.dir, target).await?;
        // 2. Visible: reads below `target` fail from here on.
        let doomed = self.state.borrow_mut().move_start_to(target);
        // At info only when files go: an AMQP queue moves its start every
        // thousand settled messages or so.
        if doomed.is_empty() {
            tracing::debug!(topic = %self.topic, partition = self.partition, log_start_offset = target, "records deleted");
        } else {
            tracing::info!(topic = %self.topic, partition = self.partition, log_start_offset = target, segments_deleted = doomed.len(), "records deleted");
        }
        // 3. Space back. Readers holding slices keep their maps alive.
        if !doomed.is_empty() {
            self.remove_retired(doomed).await?;
        }
        Ok(target)
    }

    /// Deletes the files of retired segments (see `retention::remove_retired`).
    async fn remove_retired(&self, retired: Vec<segment::SealedSegment>) -> Result<(), StorageError> {
        if let Some(base) = retention::remove_retired(&self.dir, retired).await? {
            tracing::debug!(topic = %self.topic, partition = self.partition, base, "kept a retired segment's file for reuse");
        }
        Ok(())
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
            if let Err(e) = segment::blocking(move || recovery::write_clean_shutdown(&dir, base, end)).await {
                tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "could not record the clean shutdown; the next start checks the tail as after a crash");
            }
        }
    }
}
