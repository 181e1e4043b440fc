//! Opening a partition's log at start-up, and repairing its torn tail:
//! `recover` reads a partition directory and returns what the log is made
//! from (`RecoveredLog`); it changes nothing but the files.
//!
//! Sealed segments are trusted up to their file length (they were truncated
//! to their data and fsynced when sealed); their index is loaded, or rebuilt
//! by a scan when missing or damaged. The last segment is scanned batch by
//! batch (length, magic 2, CRC-32C, offset continuity: `batch::check_in_log`,
//! which the appender asserts on every batch it writes): the first invalid
//! batch and everything after it were never acknowledged (their commit did
//! not finish), so they are dropped, logged, and overwritten with zeros on
//! disk as far as the writes in flight at the crash could reach.
//!
//! A clean close leaves `clean-shutdown` (the active segment's base and end);
//! when the scan ends exactly there, nothing was cut off, and what follows in
//! a recycled file is an earlier segment's data: no warning, nothing zeroed.
//! The marker is deleted (durably) before the log takes writes again.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use glommio::io::DmaFile;

use super::appender::unacknowledged_reach_bytes;
use super::batch::{self, ScanStop};
use super::config::{align_up, FlushPolicy, LogConfig, Preallocation, PAGE_BYTES};
use super::delete_records::recover_log_start;
use super::error::{gerr, StorageError};
use super::index::SparseIndex;
use super::producer_state::{self, ProducerStateTable, DEFAULT_MAX_PRODUCERS};
use super::segment::{self, ActiveSegment, MapUse, SealedSegment};
use super::time_index::TimeIndex;

/// What a partition's log is made from at open: every durable batch, and
/// the state derived from them.
pub(crate) struct RecoveredLog {
    pub sealed: BTreeMap<i64, SealedSegment>,
    pub active: ActiveSegment,
    pub log_start_offset: i64,
    /// One past the last valid batch: everything below it is durable.
    pub log_end_offset: i64,
    pub producers: ProducerStateTable,
}

/// Reads (creating when empty) the partition directory `dir` and repairs
/// its last segment's tail; returns the recovered log.
pub(crate) async fn recover(
    dir: &Path,
    topic: &str,
    partition: i32,
    config: &LogConfig,
) -> Result<RecoveredLog, StorageError> {
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io(format!("create {}", dir.display()), e))?;
    let mut bases = segment_bases(dir)?;
    let capacity = align_up(config.segment_bytes as usize) as u64;
    if bases.is_empty() {
        let prepared = segment::prepare_next(dir, capacity, config.preallocation).await?;
        segment::install_prepared(dir, &prepared, 0).await?;
        bases.push(0);
    }
    let mut sealed = BTreeMap::new();
    for pair in bases.windows(2) {
        sealed.insert(pair[0], open_sealed(dir, pair[0], pair[1])?);
    }
    let last_base = *bases.last().unwrap_or(&0);
    let (active, log_end_offset) = recover_active(dir, topic, partition, last_base, capacity, config).await?;
    let first_base = bases.first().copied().unwrap_or(0);
    let log_start_offset = recover_log_start(dir, first_base, log_end_offset, &mut sealed);
    let producers = recover_producers(dir, topic, partition, &sealed, &active);
    assert!(
        active.base_offset <= log_end_offset && log_start_offset <= log_end_offset,
        "recovered offsets out of order: start {log_start_offset}, active base {}, end {log_end_offset}",
        active.base_offset
    );
    Ok(RecoveredLog { sealed, active, log_start_offset, log_end_offset, producers })
}

/// Base offsets of the segment files in `dir`, in order. A half-prepared
/// file left by a crash is removed (it is prepared again later); a recycled
/// one is kept for the next segment.
fn segment_bases(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let list_error = |e| StorageError::io(format!("list {}", dir.display()), e);
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(base) = segment::parse_log_file_name(&name) {
            bases.push(base);
        } else if name == segment::PREPARED_FILE_NAME {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Idempotent producers' state: the last roll's snapshot plus the durable
/// batches' headers after it.
fn recover_producers(
    dir: &Path,
    topic: &str,
    partition: i32,
    sealed: &BTreeMap<i64, SealedSegment>,
    active: &ActiveSegment,
) -> ProducerStateTable {
    let active_data = active.data.get(..active.written_bytes as usize).unwrap_or_default();
    let segments: Vec<(i64, &[u8])> = sealed
        .iter()
        .map(|(&base, seg)| (base, &seg.data[..]))
        .chain(std::iter::once((active.base_offset, active_data)))
        .collect();
    let producers = producer_state::recover(dir, &segments, DEFAULT_MAX_PRODUCERS);
    if !producers.is_empty() {
        tracing::info!(topic, partition, producers = producers.len(), "rebuilt idempotent producer state");
    }
    producers
}

/// Index interval of indexes rebuilt for sealed segments.
const REBUILT_INDEX_INTERVAL_BYTES: u32 = 4096;

fn open_sealed(dir: &Path, base: i64, next_base: i64) -> Result<SealedSegment, StorageError> {
    let path = dir.join(segment::log_file_name(base));
    let len = std::fs::metadata(&path).map_err(|e| StorageError::io(format!("stat {}", path.display()), e))?.len();
    let map_use = MapUse::default();
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
            let rebuilt = SegmentIndexes::scan(&path, &data, base);
            if loaded.is_none() {
                let _ = std::fs::write(&index_path, rebuilt.index.encode(rebuilt.max_timestamp_ms));
            }
            if loaded_time.is_none() {
                tracing::info!(segment = %path.display(), entries = rebuilt.time_index.len(), "rebuilt time index");
                let _ = std::fs::write(&time_index_path, rebuilt.time_index.encode());
            }
            (rebuilt.index, rebuilt.max_timestamp_ms, rebuilt.time_index)
        }
    };
    let maps = map_use.watch();
    Ok(SealedSegment {
        base_offset: base,
        next_offset: next_base,
        data,
        index,
        time_index,
        max_timestamp_ms,
        path,
        maps,
    })
}

/// A segment's indexes as a scan of its batches builds them.
struct SegmentIndexes {
    index: SparseIndex,
    time_index: TimeIndex,
    max_timestamp_ms: i64,
}

impl SegmentIndexes {
    /// Rebuilds a sealed segment's indexes from its batch headers.
    fn scan(path: &Path, data: &[u8], base: i64) -> SegmentIndexes {
        let mut indexes = SegmentIndexes::default();
        let outcome =
            batch::scan(data, Some(base), |pos, h| indexes.on_batch(base, pos, h, REBUILT_INDEX_INTERVAL_BYTES));
        if let ScanStop::Invalid { position, error } = outcome.stop {
            tracing::warn!(segment = %path.display(), position, %error, "sealed segment has an invalid batch; reads stop there");
        }
        indexes
    }

    fn on_batch(&mut self, base: i64, position: usize, h: &batch::BatchHeader, interval_bytes: u32) {
        let relative = (h.base_offset - base) as u32;
        let len = h.total_bytes() as u64;
        self.index.on_batch(relative, position as u32, len, interval_bytes);
        self.time_index.on_batch(relative, position as u32, len, h.max_timestamp, interval_bytes);
        self.max_timestamp_ms = self.max_timestamp_ms.max(h.max_timestamp);
    }
}

impl Default for SegmentIndexes {
    fn default() -> Self {
        SegmentIndexes { index: SparseIndex::new(), time_index: TimeIndex::new(), max_timestamp_ms: -1 }
    }
}

/// Scans the last segment (at `base`, sized up to `capacity`), drops an
/// invalid tail, re-extends the file to its capacity, and returns it as the
/// active segment with the log end offset.
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
    let (mut map, scanned) = ScanMap::scan(&path, file_len, base, config.index_interval_bytes)?;
    let valid = scanned.valid_bytes;
    let closed_cleanly = clean_end == Some((base, valid));
    scanned.report(topic, partition, &path, closed_cleanly);
    let garbage_end = if closed_cleanly { valid } else { map.cut_off_end(valid, config) };
    let tail_page = map.page_holding(valid);
    let cache_kept_bytes = map.release(&path, valid).await;

    let file = segment::open_rw(&path, config.flush == FlushPolicy::Always).await?;
    zero_cut_off_writes(&file, &path, &tail_page, valid, garbage_end).await?;
    let capacity = restore_capacity(&file, &path, file_len, capacity, config.preallocation).await?;
    if clean_end.is_some() {
        // Deleted before any write: a later crash must not find it.
        segment::sync_dir(dir).await?;
    }
    let (data, map_use) = map_recovered(&path, capacity, valid, cache_kept_bytes)?;
    let active = ActiveSegment {
        base_offset: base,
        file: Rc::new(file),
        path,
        capacity_bytes: capacity,
        written_bytes: valid,
        data,
        map_use,
        index: scanned.indexes.index,
        time_index: scanned.indexes.time_index,
        max_timestamp_ms: scanned.indexes.max_timestamp_ms,
        tail_page,
    };
    Ok((active, scanned.log_end_offset))
}

/// What the scan of the last segment found.
struct ScannedTail {
    /// Length of the valid prefix: the durable end.
    valid_bytes: u64,
    log_end_offset: i64,
    batches: u64,
    stop: ScanStop,
    indexes: SegmentIndexes,
}

impl ScannedTail {
    fn report(&self, topic: &str, partition: i32, path: &Path, closed_cleanly: bool) {
        let ScanStop::Invalid { position, error } = &self.stop else { return };
        if closed_cleanly {
            tracing::debug!(topic, partition, segment = %path.display(), position, %error, "last segment ends where the clean shutdown left it; an earlier segment's bytes follow (recycled file)");
            return;
        }
        tracing::warn!(
            topic,
            partition,
            segment = %path.display(),
            position,
            kept_batches = self.batches,
            next_offset = self.log_end_offset,
            %error,
            "recovery: dropped invalid tail of the last segment (never acknowledged: a write cut off by a crash, or a recycled file's earlier contents)"
        );
    }
}

/// The last segment's map the recovery scan reads through: without the
/// kernel's read-around (which reads `read_ahead_kb`, 8 MiB here, around each
/// fault, far past the valid end), asking for what it is about to read itself.
struct ScanMap {
    data: Bytes,
    read_ahead: ScanReadAhead,
}

impl ScanMap {
    /// Maps the segment's `file_len` bytes and scans its batches from `base`.
    fn scan(
        path: &Path,
        file_len: u64,
        base: i64,
        interval_bytes: u32,
    ) -> Result<(ScanMap, ScannedTail), StorageError> {
        let data = segment::map_active_file(path, file_len, &MapUse::default())?;
        let mut read_ahead = ScanReadAhead::default();
        read_ahead.ahead_of(&data, 0);
        let mut indexes = SegmentIndexes::default();
        let outcome = batch::scan(&data, Some(base), |pos, h| {
            read_ahead.ahead_of(&data, pos + h.total_bytes());
            indexes.on_batch(base, pos, h, interval_bytes);
        });
        let scanned = ScannedTail {
            valid_bytes: outcome.valid_bytes as u64,
            log_end_offset: outcome.next_offset.unwrap_or(base),
            batches: outcome.batches,
            stop: outcome.stop,
            indexes,
        };
        Ok((ScanMap { data, read_ahead }, scanned))
    }

    /// Where the bytes a write cut off by the crash could have left end:
    /// past `valid`, the last non-zero page within their reach.
    ///
    /// They reach at most `unacknowledged_reach_bytes` past the page holding
    /// the acknowledged end (at or before `valid`), so nothing past that
    /// window is from them: in a zero-filled file it is zeros, in a recycled
    /// one an earlier segment's batches, below this segment's base offset and
    /// never taken for log. (A `commit_max_bytes` or `max.message.bytes`
    /// lowered across a crash could leave part of a longer cut-off write
    /// unzeroed; recovery would still stop at it unless a later write ended
    /// exactly where one of its whole batches begins, with that batch's
    /// offset.)
    fn cut_off_end(&mut self, valid: u64, config: &LogConfig) -> u64 {
        let page_start = valid / PAGE_BYTES as u64 * PAGE_BYTES as u64;
        let window_end = (page_start as usize + unacknowledged_reach_bytes(config)).min(self.data.len());
        self.read_ahead.up_to(&self.data, window_end);
        let mut garbage_end = valid;
        let mut pos = valid as usize;
        while pos < window_end {
            let end = ((pos / PAGE_BYTES + 1) * PAGE_BYTES).min(window_end);
            if self.data[pos..end].iter().any(|&b| b != 0) {
                garbage_end = end as u64;
            }
            pos = end;
        }
        garbage_end
    }

    /// The page holding `valid`, valid up to it (zeros after).
    fn page_holding(&self, valid: u64) -> Box<[u8; PAGE_BYTES]> {
        let page_start = valid / PAGE_BYTES as u64 * PAGE_BYTES as u64;
        let mut tail_page = Box::new([0u8; PAGE_BYTES]);
        tail_page[..(valid - page_start) as usize].copy_from_slice(&self.data[page_start as usize..valid as usize]);
        tail_page
    }

    /// Unmaps the segment and drops its page cache from below the page
    /// holding `valid`; returns where the kept cache ends.
    ///
    /// What the scan read after the valid end is cached where the appender
    /// writes next (see `segment::drop_cached_pages`); pages still being read
    /// in are not dropped, so wait for them first. A cached folio holding the
    /// end's page and the pages after it is only dropped whole: drop from a
    /// boundary no folio straddles (the valid bytes dropped with it are read
    /// back in by `map_recovered`).
    async fn release(self, path: &Path, valid: u64) -> usize {
        let page_start = valid as usize / PAGE_BYTES * PAGE_BYTES;
        self.read_ahead.settle(&self.data, page_start);
        drop(self.data);
        let cache_kept_bytes = page_start / CACHE_FOLIO_MAX_BYTES * CACHE_FOLIO_MAX_BYTES;
        segment::drop_cached_pages(path, cache_kept_bytes as u64).await;
        cache_kept_bytes
    }
}

/// Overwrites with zeros the bytes from `valid` to `garbage_end` (whole
/// pages, from the one holding `valid`, rewritten with `tail_page`).
async fn zero_cut_off_writes(
    file: &DmaFile,
    path: &Path,
    tail_page: &[u8; PAGE_BYTES],
    valid: u64,
    garbage_end: u64,
) -> Result<(), StorageError> {
    if garbage_end <= valid {
        return Ok(());
    }
    let page_start = valid / PAGE_BYTES as u64 * PAGE_BYTES as u64;
    let len = align_up((garbage_end - page_start) as usize);
    let mut buf = file.alloc_dma_buffer(len);
    let out = buf.as_bytes_mut();
    out.fill(0);
    out[..PAGE_BYTES].copy_from_slice(&tail_page[..]);
    file.write_at(buf, page_start).await.map_err(gerr(format!("zero torn tail of {}", path.display())))?;
    tracing::info!(segment = %path.display(), from = valid, to = garbage_end, "zeroed the bytes a cut-off write could have reached after the valid end (torn data, or a recycled file's earlier contents)");
    Ok(())
}

/// Extends the file back to its capacity (at least `capacity`, at least its
/// length) and makes it durable; returns the capacity.
async fn restore_capacity(
    file: &DmaFile,
    path: &Path,
    file_len: u64,
    capacity: u64,
    mode: Preallocation,
) -> Result<u64, StorageError> {
    let capacity = capacity.max(align_up(file_len as usize) as u64);
    if file_len < capacity {
        segment::preallocate(file, file_len, capacity, mode, path).await?;
    } else {
        file.fdatasync().await.map_err(gerr(format!("fdatasync {}", path.display())))?;
    }
    Ok(capacity)
}

/// Maps the recovered active segment whole, and reads its valid bytes past
/// the kept cache back in (producer-state recovery reads them next).
fn map_recovered(
    path: &Path,
    capacity: u64,
    valid: u64,
    cache_kept_bytes: usize,
) -> Result<(Bytes, MapUse), StorageError> {
    let map_use = MapUse::default();
    let data = segment::map_active_file(path, capacity, &map_use)?;
    if valid as usize > cache_kept_bytes {
        segment::prefetch(&data[cache_kept_bytes..valid as usize]);
    }
    Ok((data, map_use))
}

/// Name of the clean-close marker (see the module doc).
pub(crate) const CLEAN_SHUTDOWN_FILE_NAME: &str = "clean-shutdown";

/// The marker: i64 base, u64 end, u32 CRC-32C of both.
const CLEAN_SHUTDOWN_BYTES: usize = 20;
const _: () = assert!(CLEAN_SHUTDOWN_BYTES == size_of::<i64>() + size_of::<u64>() + size_of::<u32>());

fn encode_clean_shutdown(base: i64, end: u64) -> [u8; CLEAN_SHUTDOWN_BYTES] {
    let mut out = [0u8; CLEAN_SHUTDOWN_BYTES];
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
    if bytes.len() != CLEAN_SHUTDOWN_BYTES || bytes[16..] != crc32c::crc32c(&body).to_be_bytes() {
        return None;
    }
    let base = i64::from_be_bytes(body[..8].try_into().ok()?);
    let end = u64::from_be_bytes(body[8..].try_into().ok()?);
    Some((base, end))
}

/// The largest folio the page cache uses (a PMD page on x86-64): dropping a
/// file's cache from a multiple of it drops every folio past that point.
const CACHE_FOLIO_MAX_BYTES: usize = 2 << 20;
const _: () = assert!(CACHE_FOLIO_MAX_BYTES.is_multiple_of(PAGE_BYTES));

/// How far ahead of its position the recovery scan asks for the segment's
/// bytes (MADV_WILLNEED), in steps of this much.
const SCAN_READ_AHEAD_BYTES: usize = 2 << 20;
const _: () = assert!(SCAN_READ_AHEAD_BYTES.is_multiple_of(PAGE_BYTES));

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
