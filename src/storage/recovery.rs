//! Opening a partition's log at start-up, and repairing its torn tail.
//!
//! Sealed segments are trusted up to their file length (they were truncated
//! to their data and fsynced when sealed); their index is loaded, or rebuilt
//! by a scan when missing or damaged. The last segment is scanned batch by
//! batch (length, magic 2, CRC-32C, offset continuity): the first invalid
//! batch and everything after it were never acknowledged (their commit did not
//! finish), so they are dropped, logged, and overwritten with zeros on disk
//! as far as the writes in flight at the crash could reach.
//!
//! A clean close leaves `clean-shutdown` (the active segment's base and end);
//! when the scan ends exactly there, nothing was cut off, and what follows in
//! a recycled file is an earlier segment's data: no warning, nothing zeroed.
//! The marker is deleted (durably) before the log takes writes again.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use event_listener::Event;

use super::batch::{self, ScanStop};
use super::config::{align_up, FlushPolicy, LogConfig, PAGE_BYTES};
use super::error::{gerr, StorageError};
use super::index::SparseIndex;
use super::log::{LogState, PartitionLog};
use super::producer_state::{self, DEFAULT_MAX_PRODUCERS};
use super::segment::{self, ActiveSegment, SealedSegment};
use super::time_index::TimeIndex;

impl PartitionLog {
    /// Opens (or creates) the log in `dir` and starts its committer.
    pub async fn open(
        dir: PathBuf,
        topic: String,
        partition: i32,
        config: LogConfig,
    ) -> Result<Rc<PartitionLog>, StorageError> {
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::io(format!("create {}", dir.display()), e))?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| StorageError::io(format!("list {}", dir.display()), e))? {
            let entry = entry.map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(base) = segment::parse_log_file_name(&name) {
                bases.push(base);
            } else if name == segment::RECYCLED_FILE_NAME {
                // A retired segment's file kept for the next segment.
            } else if name == segment::PREPARED_FILE_NAME {
                // A half-prepared file from before a crash; prepared again later.
                let _ = std::fs::remove_file(entry.path());
            }
        }
        bases.sort_unstable();
        let capacity = align_up(config.segment_bytes as usize) as u64;

        if bases.is_empty() {
            let prepared = segment::prepare_next(&dir, capacity, config.preallocation).await?;
            segment::install_prepared(&dir, &prepared, 0).await?;
            bases.push(0);
        }

        let mut sealed = BTreeMap::new();
        for pair in bases.windows(2) {
            let (base, next_base) = (pair[0], pair[1]);
            let seg = open_sealed(&dir, base, next_base)?;
            sealed.insert(base, seg);
        }
        let last_base = *bases.last().unwrap_or(&0);
        let active = recover_active(&dir, &topic, partition, last_base, capacity, &config).await?;
        let log_end_offset = active.1;
        let active = active.0;
        let first_base = bases.first().copied().unwrap_or(0);
        let log_start_offset = super::delete_records::recover_log_start(&dir, first_base, log_end_offset, &mut sealed);

        let enqueued = active.written_bytes;
        let filling_capacity = active.capacity_bytes;
        // Idempotent producers' state: the last roll's snapshot plus the
        // durable batches' headers after it.
        let producers = producer_state::recover(&dir, &sealed, &active, DEFAULT_MAX_PRODUCERS);
        if !producers.is_empty() {
            tracing::info!(topic, partition, producers = producers.len(), "rebuilt idempotent producer state");
        }
        let log = Rc::new(PartitionLog {
            topic,
            partition,
            dir,
            config: RefCell::new(config),
            state: RefCell::new(LogState {
                sealed,
                active,
                prepared: None,
                log_start_offset,
                log_end_offset,
                high_watermark: log_end_offset,
                enqueued_segment_bytes: enqueued,
                filling_capacity_bytes: filling_capacity,
                pending: VecDeque::new(),
                pending_bytes: 0,
                tail: VecDeque::new(),
                tail_bytes: 0,
            }),
            hw_changed: Event::new(),
            work_queued: Event::new(),
            space_freed: Event::new(),
            prepared_ready: Event::new(),
            preparing: Cell::new(false),
            closed: Cell::new(false),
            committer_done: Event::new(),
            committer_running: Cell::new(false),
            commit_failed: Cell::new(false),
            commits: Cell::new(0),
            committed_bytes: Cell::new(0),
            segments_recycled: Cell::new(0),
            commit_writes_overlapped: Cell::new(0),
            commit_latency_us: RefCell::new(Default::default()),
            commit_write_bytes: RefCell::new(Default::default()),
            start_offset_change: glommio::sync::Semaphore::new(1),
            producers: RefCell::new(producers),
            append_queue: Default::default(),
        });
        log.start_tasks();
        Ok(log)
    }
}

fn open_sealed(dir: &Path, base: i64, next_base: i64) -> Result<SealedSegment, StorageError> {
    let path = dir.join(segment::log_file_name(base));
    let len = std::fs::metadata(&path).map_err(|e| StorageError::io(format!("stat {}", path.display()), e))?.len();
    let map_use = segment::MapUse::default();
    let data = segment::map_file(&path, len, &map_use)?;
    let index_path = dir.join(segment::index_file_name(base));
    let loaded = std::fs::read(&index_path).ok().and_then(|b| SparseIndex::decode(&b, len.max(1)));
    let time_index_path = dir.join(segment::time_index_file_name(base));
    let loaded_time = std::fs::read(&time_index_path).ok().and_then(|b| TimeIndex::decode(&b, len.max(1)));
    let (index, max_timestamp_ms, time_index) = match (loaded, loaded_time) {
        (Some((index, max_ts)), Some(time_index)) => (index, max_ts, time_index),
        (loaded, loaded_time) => {
            // Missing or damaged (or written by a version without time
            // indexes): rebuild from the batch headers.
            let mut index = SparseIndex::new();
            let mut time_index = TimeIndex::new();
            let mut max_ts = -1;
            let outcome = batch::scan(&data, Some(base), |pos, h| {
                index.on_batch((h.base_offset - base) as u32, pos as u32, h.total_bytes() as u64, 4096);
                time_index.on_batch(
                    (h.base_offset - base) as u32,
                    pos as u32,
                    h.total_bytes() as u64,
                    h.max_timestamp,
                    4096,
                );
                max_ts = max_ts.max(h.max_timestamp);
            });
            if let ScanStop::Invalid { position, error } = outcome.stop {
                tracing::warn!(segment = %path.display(), position, %error, "sealed segment has an invalid batch; reads stop there");
            }
            if loaded.is_none() {
                let _ = std::fs::write(&index_path, index.encode(max_ts));
            }
            if loaded_time.is_none() {
                tracing::info!(segment = %path.display(), entries = time_index.len(), "rebuilt time index");
                let _ = std::fs::write(&time_index_path, time_index.encode());
            }
            (index, max_ts, time_index)
        }
    };
    Ok(SealedSegment {
        base_offset: base,
        next_offset: next_base,
        data,
        index,
        time_index,
        max_timestamp_ms,
        path,
        maps: map_use.watch(),
    })
}

/// Scans the last segment, drops an invalid tail, re-extends the file to its
/// capacity, and returns it as the active segment with the log end offset.
async fn recover_active(
    dir: &Path,
    topic: &str,
    partition: i32,
    base: i64,
    capacity: u64,
    config: &LogConfig,
) -> Result<(ActiveSegment, i64), StorageError> {
    let path = dir.join(segment::log_file_name(base));
    let file_len = std::fs::metadata(&path).map_err(|e| StorageError::io(format!("stat {}", path.display()), e))?.len();
    let clean_end = take_clean_shutdown(dir);
    // The scan reads through a map without the kernel's read-around (which
    // reads `read_ahead_kb`, 8 MiB here, around each fault, far past the
    // valid end) and asks for what it is about to read itself.
    let data = segment::map_active_file(&path, file_len, &segment::MapUse::default())?;
    let mut read_ahead = ScanReadAhead::default();
    read_ahead.ahead_of(&data, 0);
    let mut index = SparseIndex::new();
    let mut time_index = TimeIndex::new();
    let mut max_timestamp_ms = -1;
    let outcome = batch::scan(&data, Some(base), |pos, h| {
        read_ahead.ahead_of(&data, pos + h.total_bytes());
        index.on_batch((h.base_offset - base) as u32, pos as u32, h.total_bytes() as u64, config.index_interval_bytes);
        time_index.on_batch(
            (h.base_offset - base) as u32,
            pos as u32,
            h.total_bytes() as u64,
            h.max_timestamp,
            config.index_interval_bytes,
        );
        max_timestamp_ms = max_timestamp_ms.max(h.max_timestamp);
    });
    let valid = outcome.valid_bytes as u64;
    let log_end_offset = outcome.next_offset.unwrap_or(base);
    let closed_cleanly = clean_end == Some((base, valid));
    if let ScanStop::Invalid { position, error } = &outcome.stop {
        if closed_cleanly {
            tracing::debug!(topic, partition, segment = %path.display(), position, %error, "last segment ends where the clean shutdown left it; an earlier segment's bytes follow (recycled file)");
        } else {
            tracing::warn!(
                topic,
                partition,
                segment = %path.display(),
                position,
                kept_batches = outcome.batches,
                next_offset = log_end_offset,
                %error,
                "recovery: dropped invalid tail of the last segment (never acknowledged: a write cut off by a crash, or a recycled file's earlier contents)"
            );
        }
    }
    // Garbage after the valid end: the writes in flight at the crash, cut
    // off. They reach at most `unacknowledged_reach_bytes` past the page
    // holding the acknowledged end (at or before `valid`), so nothing past
    // that window is from them: in a zero-filled file it is zeros, in a
    // recycled one an earlier segment's batches, below this segment's base
    // offset and never taken for log. (A `commit_max_bytes` or
    // `max.message.bytes` lowered across a crash could leave part of a
    // longer cut-off write unzeroed; recovery would still stop at it unless
    // a later write ended exactly where one of its whole batches begins,
    // with that batch's offset.)
    let page_start = valid / PAGE_BYTES as u64 * PAGE_BYTES as u64;
    let window_end = (page_start as usize + super::appender::unacknowledged_reach_bytes(config)).min(data.len());
    let mut garbage_end = valid;
    if !closed_cleanly {
        read_ahead.up_to(&data, window_end);
        let mut pos = valid as usize;
        while pos < window_end {
            let end = ((pos / PAGE_BYTES + 1) * PAGE_BYTES).min(window_end);
            if data[pos..end].iter().any(|&b| b != 0) {
                garbage_end = end as u64;
            }
            pos = end;
        }
    }
    let mut tail_page = Box::new([0u8; PAGE_BYTES]);
    tail_page[..(valid - page_start) as usize].copy_from_slice(&data[page_start as usize..valid as usize]);
    // What the scan read after the valid end is cached where the appender
    // writes next (see `drop_cached_pages`); pages still being read in are
    // not dropped, so wait for them first.
    read_ahead.settle(&data, page_start as usize);
    drop(data);
    // A cached folio holding the end's page and the pages after it is only
    // dropped whole: drop from a boundary no folio straddles, and read the
    // valid bytes dropped with it back in below.
    let cache_kept_bytes = page_start as usize / CACHE_FOLIO_MAX_BYTES * CACHE_FOLIO_MAX_BYTES;
    segment::drop_cached_pages(&path, cache_kept_bytes as u64).await;

    let file = segment::open_rw(&path, config.flush == FlushPolicy::Always).await?;
    if garbage_end > valid {
        let len = align_up((garbage_end - page_start) as usize);
        let mut buf = file.alloc_dma_buffer(len);
        let out = buf.as_bytes_mut();
        out.fill(0);
        out[..PAGE_BYTES].copy_from_slice(&tail_page[..]);
        file.write_at(buf, page_start).await.map_err(gerr(format!("zero torn tail of {}", path.display())))?;
        tracing::info!(segment = %path.display(), from = valid, to = garbage_end, "zeroed the bytes a cut-off write could have reached after the valid end (torn data, or a recycled file's earlier contents)");
    }
    let capacity = capacity.max(align_up(file_len as usize) as u64);
    if file_len < capacity {
        segment::preallocate(&file, file_len, capacity, config.preallocation, &path).await?;
    } else {
        file.fdatasync().await.map_err(gerr(format!("fdatasync {}", path.display())))?;
    }
    if clean_end.is_some() {
        // Deleted before any write: a later crash must not find it.
        segment::sync_dir(dir).await?;
    }
    let map_use = segment::MapUse::default();
    let data = segment::map_active_file(&path, capacity, &map_use)?;
    // Producer-state recovery reads the valid bytes next.
    if valid as usize > cache_kept_bytes {
        segment::prefetch(&data[cache_kept_bytes..valid as usize]);
    }
    Ok((
        ActiveSegment {
            base_offset: base,
            file: Rc::new(file),
            path,
            capacity_bytes: capacity,
            written_bytes: valid,
            data,
            map_use,
            index,
            time_index,
            max_timestamp_ms,
            tail_page,
        },
        log_end_offset,
    ))
}

/// Name of the clean-close marker (see the module doc).
pub(crate) const CLEAN_SHUTDOWN_FILE_NAME: &str = "clean-shutdown";

fn encode_clean_shutdown(base: i64, end: u64) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[..8].copy_from_slice(&base.to_be_bytes());
    out[8..16].copy_from_slice(&end.to_be_bytes());
    let crc = crc32c::crc32c(&out[..16]);
    out[16..].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Records that the log in `dir` closed with its active segment `base`
/// ending at `end` (blocking). Not fsynced: a marker lost to a power cut only
/// makes the next start treat the close as a crash.
pub(crate) fn write_clean_shutdown(dir: &Path, base: i64, end: u64) -> std::io::Result<()> {
    std::fs::write(dir.join(CLEAN_SHUTDOWN_FILE_NAME), encode_clean_shutdown(base, end))
}

/// Reads and deletes the clean-close marker (the caller syncs the directory
/// before writing). A missing or damaged marker reads as a crash.
fn take_clean_shutdown(dir: &Path) -> Option<(i64, u64)> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE_NAME);
    let bytes = std::fs::read(&path).ok()?;
    let _ = std::fs::remove_file(&path);
    let body: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
    if bytes.len() != 20 || bytes[16..] != crc32c::crc32c(&body).to_be_bytes() {
        return None;
    }
    let base = i64::from_be_bytes(body[..8].try_into().ok()?);
    let end = u64::from_be_bytes(body[8..].try_into().ok()?);
    Some((base, end))
}

/// The largest folio the page cache uses (a PMD page on x86-64): dropping a
/// file's cache from a multiple of it drops every folio past that point.
const CACHE_FOLIO_MAX_BYTES: usize = 2 << 20;

/// How far ahead of its position the recovery scan asks for the segment's
/// bytes (MADV_WILLNEED), in steps of this much.
const SCAN_READ_AHEAD_BYTES: usize = 2 << 20;

/// The recovery scan's own read-ahead over a MADV_RANDOM map: everything it
/// asked for lies below `requested`, at most `2 * SCAN_READ_AHEAD_BYTES`
/// past the furthest position the scan reached.
#[derive(Default)]
struct ScanReadAhead {
    requested: usize,
}

impl ScanReadAhead {
    /// Called with the scan's position: keeps at least one step requested ahead.
    fn ahead_of(&mut self, data: &[u8], position: usize) {
        if position + SCAN_READ_AHEAD_BYTES > self.requested {
            self.up_to(data, position + 2 * SCAN_READ_AHEAD_BYTES);
        }
    }

    fn up_to(&mut self, data: &[u8], end: usize) {
        let end = end.min(data.len());
        if end > self.requested {
            segment::prefetch(&data[self.requested..end]);
            self.requested = end;
        }
    }

    /// Touches every page from `from` to what was requested: a fault on a
    /// page still being read in waits for the read, so afterwards none is
    /// in flight.
    fn settle(&self, data: &[u8], from: usize) {
        let mut pos = from / PAGE_BYTES * PAGE_BYTES;
        while pos < self.requested.min(data.len()) {
            std::hint::black_box(data[pos]);
            pos += PAGE_BYTES;
        }
    }
}
