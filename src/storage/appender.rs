//! Group commit: the one task per partition that writes to its segment files.
//!
//! Flush/ack contract (kept here):
//! - Appends queue in `LogState::pending` with offsets already assigned.
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

use std::rc::Rc;
use std::time::Duration;

use futures_util::stream::{FuturesOrdered, StreamExt};
use glommio::io::{DmaBuffer, DmaFile};

use super::config::{align_up, FlushPolicy, LogConfig, PAGE_BYTES};
use super::error::{gerr, StorageError};
use super::log::{CachedBatch, PartitionLog, PendingBatch};
use super::segment::{self, ActiveSegment, SealedSegment};

/// Commit writes one partition keeps in flight at most. Two let the disk
/// start the next write while the last one's completion is being handled;
/// measured against one in the storage benches (see README, Performance).
pub(crate) const COMMIT_WRITES_IN_FLIGHT_MAX: usize = 2;

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
}

/// A commit write issued and not yet handled.
struct CommitFlight {
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

/// A write ready to start: file, buffer, position, and what it completes.
type IssuedWrite = (Rc<DmaFile>, DmaBuffer, u64, CommitFlight);

async fn write_flight(
    file: Rc<DmaFile>,
    buf: DmaBuffer,
    position: u64,
    flight: CommitFlight,
) -> (glommio::Result<usize, ()>, CommitFlight) {
    let result = file.write_at(buf, position).await;
    (result, flight)
}

impl PartitionLog {
    /// Spawns the committer (and, under `flush=interval`, the fsync timer).
    pub(crate) fn start_tasks(self: &Rc<Self>) {
        let log = self.clone();
        self.committer_running.set(true);
        glommio::spawn_local(async move {
            log.commit_loop().await;
            log.committer_running.set(false);
            log.committer_done.notify(usize::MAX);
        })
        .detach();
        if let FlushPolicy::Interval(period) = self.config.borrow().flush {
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
        self.maybe_prepare_next();
    }

    async fn commit_loop(self: &Rc<Self>) {
        let mut flights = FuturesOrdered::new();
        let mut cursor = IssueCursor::default();
        loop {
            if flights.is_empty() {
                let listener = self.work_queued.listen();
                let has_work = !self.state.borrow().pending.is_empty();
                if !has_work {
                    if self.closed.get() {
                        return;
                    }
                    listener.await;
                    continue;
                }
                let linger = self.config.borrow().commit_linger;
                if linger > Duration::ZERO && !self.closed.get() {
                    glommio::timer::sleep(linger).await;
                }
                if let Err(error) = self.roll_if_due().await {
                    self.fail_pending(error);
                    continue;
                }
                // Nothing in flight: every issued batch is acknowledged.
                cursor.reset_to(&self.state.borrow().active);
                match self.issue(&mut cursor) {
                    Ok(Some((file, buf, position, flight))) => {
                        flights.push_back(write_flight(file, buf, position, flight))
                    }
                    Ok(None) => continue,
                    Err(error) => {
                        self.fail_pending(error);
                        continue;
                    }
                }
            }
            // A write that ends on a page boundary leaves the next one free
            // to start while it is in flight (see `issue`).
            while flights.len() < COMMIT_WRITES_IN_FLIGHT_MAX && cursor.open {
                match self.issue(&mut cursor) {
                    Ok(Some((file, buf, position, flight))) => {
                        self.commit_writes_overlapped.set(self.commit_writes_overlapped.get() + 1);
                        flights.push_back(write_flight(file, buf, position, flight));
                    }
                    Ok(None) => break,
                    Err(error) => {
                        // Nothing was issued; what is in flight completes first.
                        cursor.failed = Some(error);
                        break;
                    }
                }
            }
            let Some((result, flight)) = flights.next().await else { continue };
            let outcome = result.map_err(gerr(format!("write {}", flight.path.display()))).and_then(|written| {
                if written == flight.total {
                    Ok(())
                } else {
                    Err(StorageError::io(
                        format!("write {}", flight.path.display()),
                        std::io::Error::other(format!("short write: {written} of {} bytes", flight.total)),
                    ))
                }
            });
            let error = match (outcome, cursor.failed.take()) {
                (Ok(()), None) => {
                    self.complete(&flight, &mut cursor);
                    continue;
                }
                (Ok(()), Some(error)) => {
                    self.complete(&flight, &mut cursor);
                    error
                }
                (Err(error), _) => error,
            };
            // Later writes may still be in flight: let them finish before the
            // queue is failed and the next commit rewrites from the durable end.
            while flights.next().await.is_some() {}
            self.fail_pending(error);
        }
    }

    /// Rolls to a new segment when the next batch to write starts one; only
    /// called with no write in flight.
    async fn roll_if_due(self: &Rc<Self>) -> Result<(), StorageError> {
        let needs_roll = self.state.borrow().pending.front().is_some_and(|b| b.starts_segment);
        if !needs_roll {
            return Ok(());
        }
        let base = self.state.borrow().pending.front().map(|b| b.base_offset).unwrap_or_default();
        let roll_started = std::time::Instant::now();
        self.roll(base).await?;
        tracing::debug!(topic = %self.topic, partition = self.partition, base, roll_us = roll_started.elapsed().as_micros() as u64, "rolled to a new segment");
        if let Some(front) = self.state.borrow_mut().pending.front_mut() {
            front.starts_segment = false;
        }
        Ok(())
    }

    /// Builds the next commit write from the queued batches after `cursor`
    /// (submitted once the committer awaits it); `None` when nothing can be
    /// written now.
    ///
    /// The run is the batches up to the size cap (at least one) and up to
    /// the next segment boundary. When more batches wait behind it (in the
    /// same segment), the write stops at the last page boundary of the run
    /// and the rest (less than a page) opens the next write, which may then
    /// be in flight together with this one: the two never share a page. A
    /// write that takes everything queued ends with the partly filled page,
    /// which the next write rewrites, so that one waits for it to complete.
    fn issue(&self, cursor: &mut IssueCursor) -> Result<Option<IssuedWrite>, StorageError> {
        let s = self.state.borrow();
        let first = cursor.batches;
        if s.pending.get(first).is_none_or(|b| b.starts_segment) {
            cursor.open = false;
            return Ok(None);
        }
        let commit_max = self.config.borrow().commit_max_bytes;
        let mut count = 0;
        let mut run_bytes = 0usize;
        for (i, b) in s.pending.iter().skip(first).enumerate() {
            if i > 0 && (b.starts_segment || run_bytes + b.data.len() > commit_max) {
                break;
            }
            run_bytes += b.data.len();
            count += 1;
        }
        let active = &s.active;
        if cursor.end + run_bytes as u64 > active.capacity_bytes {
            // Appends are counted against the file they go to (see
            // `ensure_prepared_fits`), so this is a bug; fail the queued
            // appends (the producers retry) rather than the shard.
            tracing::error!(topic = %self.topic, partition = self.partition, written = cursor.end, run_bytes, capacity = active.capacity_bytes, "queued batches overrun the active segment");
            return Err(StorageError::io(
                format!("commit to {}", active.path.display()),
                std::io::Error::other(format!(
                    "{run_bytes} bytes queued at {} do not fit the segment's {} bytes",
                    cursor.end, active.capacity_bytes
                )),
            ));
        }
        let page = PAGE_BYTES as u64;
        let page_start = cursor.end / page * page;
        let data_end = cursor.end + run_bytes as u64;
        let more_behind = s.pending.get(first + count).is_some_and(|b| !b.starts_segment);
        // With more batches behind it, the write ends at the run's last page
        // boundary (past its first page), so the next one may start at once.
        let split = more_behind && data_end / page * page > page_start;
        let write_end = if split { data_end / page * page } else { data_end.div_ceil(page) * page };
        let durable_end = write_end.min(data_end);
        let total = (write_end - page_start) as usize;
        let carried = (cursor.end - page_start) as usize;

        let mut buf = active.file.alloc_dma_buffer(total);
        let out = buf.as_bytes_mut();
        out[..carried].copy_from_slice(&cursor.page[..carried]);
        // From here `cursor.page` is the page holding `data_end`: what opens
        // the next write.
        cursor.page.fill(0);
        let mut pos = carried;
        // The batches this write completes (with every earlier write): those
        // ending at or before its durable end. A batch that began in an
        // earlier write and ends in this one's first page is among them.
        let mut acked_end = cursor.end;
        for b in s.pending.iter().skip(first).take(count) {
            let len = b.data.len();
            let into_write = len.min(total.saturating_sub(pos));
            if into_write > 0 {
                out[pos..pos + into_write].copy_from_slice(&b.data[..into_write]);
            }
            if into_write < len {
                // Bytes past a split write's end open the next write.
                let held_start = pos + into_write - total;
                cursor.page[held_start..held_start + len - into_write].copy_from_slice(&b.data[into_write..]);
            }
            pos += b.data.len();
            if page_start + pos as u64 <= durable_end {
                acked_end = page_start + pos as u64;
            }
        }
        if pos < total {
            out[pos..].fill(0);
        }
        // The page holding the acknowledged end once this write completes, as
        // the next write after a failure would rewrite it: always within this
        // write (cursor.end <= acked_end <= durable_end <= write_end).
        assert!(
            page_start <= cursor.end && cursor.end <= acked_end && acked_end <= durable_end && durable_end <= write_end
        );
        let acked_page_start = acked_end / page * page;
        let mut tail_page = Box::new([0u8; PAGE_BYTES]);
        let from = (acked_page_start - page_start) as usize;
        let acked_in_page = (acked_end - acked_page_start) as usize;
        tail_page[..acked_in_page].copy_from_slice(&out[from..from + acked_in_page]);
        if !split && !data_end.is_multiple_of(page) {
            cursor.page.copy_from_slice(&out[total - PAGE_BYTES..total]);
        }
        cursor.batches = first + count;
        cursor.end = data_end;
        cursor.open = split;
        let flight = CommitFlight {
            path: active.path.clone(),
            total,
            durable_end,
            acked_end,
            tail_page,
            started: std::time::Instant::now(),
        };
        Ok(Some((active.file.clone(), buf, page_start, flight)))
    }

    /// Records a completed write (all earlier ones have completed): the
    /// batches it finished become readable and their producers get their
    /// acknowledgement.
    fn complete(self: &Rc<Self>, flight: &CommitFlight, cursor: &mut IssueCursor) {
        let mut done = Vec::new();
        let acked_bytes;
        {
            let mut s = self.state.borrow_mut();
            let interval = self.config.borrow().index_interval_bytes;
            let tail_max = self.config.borrow().tail_cache_bytes;
            let mut position = s.active.written_bytes;
            let mut popped = 0;
            while position < flight.acked_end {
                let Some(b) = s.pending.pop_front() else { break };
                popped += 1;
                let PendingBatch { base_offset, last_offset, max_timestamp_ms, data, done: waiter, .. } = b;
                let active = &mut s.active;
                let relative = (base_offset - active.base_offset) as u32;
                let segment_base = active.base_offset;
                active.index.on_batch(relative, position as u32, data.len() as u64, interval);
                active.time_index.on_batch(relative, position as u32, data.len() as u64, max_timestamp_ms, interval);
                active.max_timestamp_ms = active.max_timestamp_ms.max(max_timestamp_ms);
                let batch_position = position;
                position += data.len() as u64;
                s.high_watermark = last_offset + 1;
                s.tail_bytes += data.len();
                s.tail.push_back(CachedBatch {
                    base_offset,
                    last_offset,
                    segment_base,
                    position: batch_position,
                    data,
                });
                if let Some(w) = waiter {
                    done.push(w);
                }
            }
            assert_eq!(position, flight.acked_end, "a commit write completes whole batches");
            assert!(flight.acked_end <= flight.durable_end);
            while s.tail_bytes > tail_max && s.tail.len() > 1 {
                if let Some(old) = s.tail.pop_front() {
                    s.tail_bytes -= old.data.len();
                }
            }
            acked_bytes = (position - s.active.written_bytes) as usize;
            let active = &mut s.active;
            active.written_bytes = position;
            // Zeros when the end sits on a page boundary: the next page is empty.
            active.tail_page.copy_from_slice(&flight.tail_page[..]);
            s.pending_bytes -= acked_bytes;
            cursor.batches -= popped;
        }
        self.commits.set(self.commits.get() + 1);
        self.commit_latency_us.borrow_mut().record(flight.started.elapsed().as_micros() as u64);
        self.commit_write_bytes.borrow_mut().record(flight.total as u64);
        self.committed_bytes.set(self.committed_bytes.get() + acked_bytes as u64);
        for w in done {
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
        let mut s = self.state.borrow_mut();
        let waiters: Vec<_> = s.pending.drain(..).filter_map(|b| b.done).collect();
        s.pending_bytes = 0;
        s.log_end_offset = s.high_watermark;
        s.enqueued_segment_bytes = s.active.written_bytes;
        s.filling_capacity_bytes = s.active.capacity_bytes;
        self.producers.borrow_mut().rollback(s.log_end_offset);
        drop(s);
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

    /// Starts preparing the next segment file once the active one is half full.
    pub(crate) fn maybe_prepare_next(self: &Rc<Self>) {
        {
            let s = self.state.borrow();
            if self.preparing.get() || s.prepared.is_some() || self.closed.get() {
                return;
            }
            if s.active.written_bytes < s.active.capacity_bytes / 2 {
                return;
            }
        }
        self.spawn_prepare();
    }

    fn spawn_prepare(self: &Rc<Self>) {
        if self.preparing.replace(true) {
            return;
        }
        let log = self.clone();
        glommio::spawn_local(async move {
            let (capacity, mode) = {
                let c = log.config.borrow();
                (align_up(c.segment_bytes as usize) as u64, c.preallocation)
            };
            match segment::prepare_next(&log.dir, capacity, mode).await {
                Ok(p) => log.state.borrow_mut().prepared = Some(p),
                Err(e) => {
                    tracing::warn!(topic = %log.topic, partition = log.partition, error = %e, "preparing the next segment failed; will retry at roll");
                    // A half-allocated file only takes space (a full disk is the usual cause).
                    let path = log.dir.join(segment::PREPARED_FILE_NAME);
                    let _ = segment::blocking(move || std::fs::remove_file(path)).await;
                }
            }
            log.preparing.set(false);
            log.prepared_ready.notify(usize::MAX);
        })
        .detach();
    }

    /// Seals the active segment and makes the prepared file the new active
    /// segment starting at `base_offset`.
    ///
    /// An empty active segment starting at `base_offset` (its file too small
    /// for the batch that starts the new one) is replaced instead of sealed:
    /// the prepared file takes its name.
    async fn roll(self: &Rc<Self>, base_offset: i64) -> Result<(), StorageError> {
        // 1. Wait for (or make) the prepared file.
        loop {
            let listener = self.prepared_ready.listen();
            if self.state.borrow().prepared.is_some() {
                break;
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
        // 2. Seal: cut the old file to its data, make that durable, write its index.
        let (old_file, old_path, written, old_base, index_bytes, time_index_bytes) = {
            let s = self.state.borrow();
            let a = &s.active;
            (
                a.file.clone(),
                a.path.clone(),
                a.written_bytes,
                a.base_offset,
                a.index.encode(a.max_timestamp_ms),
                a.time_index.encode(),
            )
        };
        if written == 0 && old_base == base_offset {
            return self.replace_empty_active(base_offset).await;
        }
        old_file.truncate(written).await.map_err(gerr(format!("truncate {}", old_path.display())))?;
        old_file.fdatasync().await.map_err(gerr(format!("fdatasync {}", old_path.display())))?;
        let index_path = self.dir.join(segment::index_file_name(old_base));
        segment::blocking(move || std::fs::write(&index_path, index_bytes))
            .await
            .map_err(|e| StorageError::io("write segment index", e))?;
        // Not fsynced, like the offset index: a damaged one is rebuilt at open.
        let time_index_path = self.dir.join(segment::time_index_file_name(old_base));
        segment::blocking(move || std::fs::write(&time_index_path, time_index_bytes))
            .await
            .map_err(|e| StorageError::io("write segment time index", e))?;
        // 3a. A prepared file allocated before segment.bytes grew may be too
        // small for the batches queued for the new segment: make a bigger one.
        // 3. Name the prepared file after the new base offset, durably.
        let prepared = self.ensure_prepared_fits().await?;
        let new_path = segment::install_prepared(&self.dir, &prepared, base_offset).await?;
        self.segments_recycled.set(self.segments_recycled.get() + u64::from(prepared.recycled));
        let dsync = self.config.borrow().flush == FlushPolicy::Always;
        let new_file = segment::open_rw(&new_path, dsync).await?;
        let new_map_use = segment::MapUse::default();
        let new_data = segment::map_active_file(&new_path, prepared.capacity_bytes, &new_map_use)?;
        let sealed_data = segment::map_file(&old_path, written, &self.state.borrow().active.map_use)?;

        let mut s = self.state.borrow_mut();
        let next_offset = base_offset;
        let new_active = ActiveSegment {
            base_offset,
            file: Rc::new(new_file),
            path: new_path,
            capacity_bytes: prepared.capacity_bytes,
            written_bytes: 0,
            data: new_data,
            map_use: new_map_use,
            index: Default::default(),
            time_index: Default::default(),
            max_timestamp_ms: -1,
            tail_page: Box::new([0u8; PAGE_BYTES]),
        };
        let old = std::mem::replace(&mut s.active, new_active);
        s.sealed.insert(
            old.base_offset,
            SealedSegment {
                base_offset: old.base_offset,
                next_offset,
                data: sealed_data,
                index: old.index,
                time_index: old.time_index,
                max_timestamp_ms: old.max_timestamp_ms,
                path: old.path,
                maps: old.map_use.watch(),
            },
        );
        drop(s);
        if let Ok(f) = Rc::try_unwrap(old.file) {
            let _ = f.close().await;
        }
        // The old active map goes now: retention may retire the sealed segment
        // at once, and recycles its file only when no map of it is left.
        drop((old.data, old.map_use));
        tracing::debug!(topic = %self.topic, partition = self.partition, base_offset, "rolled segment");
        self.snapshot_producers(base_offset);
        self.retain_after_roll();
        Ok(())
    }
}

impl PartitionLog {
    /// Takes the prepared file for the segment about to start, making sure
    /// it can hold the batches queued for that segment (those up to the next
    /// segment start), which were counted against the `segment.bytes` in
    /// force when they came (possibly more than the prepared file holds).
    ///
    /// If that segment is the one appends are filling, its capacity becomes
    /// the limit for further appends before this returns, with no await in
    /// between: appends arriving during the rest of the roll are counted
    /// against the file they will go to, and start the next segment when it
    /// is full.
    async fn ensure_prepared_fits(self: &Rc<Self>) -> Result<segment::PreparedSegment, StorageError> {
        loop {
            {
                let mut s = self.state.borrow_mut();
                let mut need = 0u64;
                let mut filling = true;
                for (i, b) in s.pending.iter().enumerate() {
                    if i > 0 && b.starts_segment {
                        filling = false;
                        break;
                    }
                    need += b.data.len() as u64;
                }
                let have = s.prepared.as_ref().map_or(0, |p| p.capacity_bytes);
                if need <= have {
                    if filling {
                        s.filling_capacity_bytes = have;
                    }
                    return s.prepared.take().ok_or(StorageError::Closed);
                }
                s.prepared = None;
                drop(s);
                let (segment_bytes, mode) = {
                    let c = self.config.borrow();
                    (c.segment_bytes, c.preallocation)
                };
                let capacity = align_up(need.max(segment_bytes) as usize) as u64;
                tracing::info!(topic = %self.topic, partition = self.partition, had = have, capacity, "preparing a larger next segment (segment.bytes changed)");
                // Appends may keep coming while it is made: checked again above.
                let prepared = segment::prepare_next(&self.dir, capacity, mode).await?;
                self.state.borrow_mut().prepared = Some(prepared);
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

    /// Replaces the empty active segment at `base_offset` with the prepared
    /// file (made big enough for the batch that starts it): the rename
    /// atomically puts the new file under the same name.
    async fn replace_empty_active(self: &Rc<Self>, base_offset: i64) -> Result<(), StorageError> {
        let prepared = self.ensure_prepared_fits().await?;
        tracing::info!(topic = %self.topic, partition = self.partition, base_offset, capacity = prepared.capacity_bytes, "replacing the empty active segment with a larger one for a batch bigger than its file");
        let new_path = segment::install_prepared(&self.dir, &prepared, base_offset).await?;
        self.segments_recycled.set(self.segments_recycled.get() + u64::from(prepared.recycled));
        let dsync = self.config.borrow().flush == FlushPolicy::Always;
        let new_file = segment::open_rw(&new_path, dsync).await?;
        let new_map_use = segment::MapUse::default();
        let new_data = segment::map_active_file(&new_path, prepared.capacity_bytes, &new_map_use)?;
        let old_file = {
            let mut s = self.state.borrow_mut();
            let active = &mut s.active;
            active.capacity_bytes = prepared.capacity_bytes;
            active.data = new_data;
            active.map_use = new_map_use;
            active.path = new_path;
            std::mem::replace(&mut active.file, Rc::new(new_file))
        };
        if let Ok(f) = Rc::try_unwrap(old_file) {
            let _ = f.close().await;
        }
        Ok(())
    }
}
