//! Segment files: naming, preallocation, mapping, sealing.
//!
//! On disk a partition directory holds `<base offset:020>.log` segments of
//! RecordBatch v2 bytes back to back, each preallocated to `segment.bytes`
//! (the unused tail reads as zeros, which recovery takes as the end), plus a
//! `<base>.index` and a `<base>.timeindex` (see `time_index`) for sealed
//! segments. A sealed segment is truncated to its data, so its file length is
//! its size. `next.prepared` is the already allocated file that becomes the
//! next segment on a roll. `recycled.segment`, when present, is the data file
//! of a segment that retention (or DeleteRecords, or compaction) retired,
//! kept to become the next `next.prepared` without being allocated and zeroed
//! again (see `recycle_retired`). `log-start-offset`, when present, holds the
//! start set by DeleteRecords (see `delete_records`).
//!
//! A recycled file still holds its earlier batches after whatever the new
//! segment writes over them. They are all below the new segment's base offset
//! (offsets only grow, and a file is only recycled within its partition), so
//! the recovery scan, which requires each batch to start where the previous
//! one ended, never takes them for part of the log.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use glommio::io::{DmaFile, OpenOptions};

use super::config::{Preallocation, PAGE_BYTES};
use super::error::{gerr, StorageError};
use super::index::SparseIndex;
use super::time_index::TimeIndex;

pub const PREPARED_FILE_NAME: &str = "next.prepared";
pub const RECYCLED_FILE_NAME: &str = "recycled.segment";
const ZERO_FILL_CHUNK_BYTES: usize = 1024 * 1024;
// Every full chunk of the zero-fill is an O_DIRECT write: whole pages.
const _: () = assert!(ZERO_FILL_CHUNK_BYTES.is_multiple_of(PAGE_BYTES));

pub fn log_file_name(base_offset: i64) -> String {
    format!("{base_offset:020}.log")
}

pub fn index_file_name(base_offset: i64) -> String {
    format!("{base_offset:020}.index")
}

pub fn time_index_file_name(base_offset: i64) -> String {
    format!("{base_offset:020}.timeindex")
}

/// Base offset of a `<20 digits>.log` file name.
pub fn parse_log_file_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Tracks whether any map of one segment file is still referenced: every
/// map made with it holds a clone, and the `Bytes` slices readers hold keep
/// their map (and so the clone) alive. A file is overwritten (recycled) only
/// once no map of it is left, so no reader ever sees its bytes change.
#[derive(Clone, Default)]
pub struct MapUse(Arc<()>);

impl MapUse {
    pub fn watch(&self) -> MapWatch {
        MapWatch(Arc::downgrade(&self.0))
    }
}

/// The weak side of `MapUse`: held by a sealed segment, which has no other
/// strong reference than its own map.
#[derive(Clone, Default)]
pub struct MapWatch(Weak<()>);

impl MapWatch {
    pub fn in_use(&self) -> bool {
        self.0.strong_count() > 0
    }
}

struct TrackedMap {
    map: memmap2::Mmap,
    _use: MapUse,
}

impl AsRef<[u8]> for TrackedMap {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

/// Maps `len` bytes of the file read-only as `Bytes` that keep the map alive
/// (slices stay valid even after the file is deleted by retention, and keep
/// `map_use` counted, so the file is not recycled under them).
pub fn map_file(path: &Path, len: u64, map_use: &MapUse) -> Result<Bytes, StorageError> {
    map_with(path, len, map_use, None)
}

/// As `map_file`, for the active segment, whose pages past the committed end
/// the appender is about to write: a page fault reads only its own page, not
/// the pages around it (MADV_RANDOM). A page of the file in the page cache
/// makes each O_DIRECT write over it leave io_uring's inline path for a
/// worker thread, which invalidates the page first (see `drop_cached_pages`).
/// Readers still prefetch exactly the committed range they serve.
pub fn map_active_file(path: &Path, len: u64, map_use: &MapUse) -> Result<Bytes, StorageError> {
    map_with(path, len, map_use, Some(memmap2::Advice::Random))
}

fn map_with(path: &Path, len: u64, map_use: &MapUse, advice: Option<memmap2::Advice>) -> Result<Bytes, StorageError> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    let file = std::fs::File::open(path).map_err(|e| StorageError::io(format!("open {}", path.display()), e))?;
    // SAFETY: the broker is the only writer of its data directory; bytes
    // inside the committed range are never rewritten while mapped (recovery
    // and appends only write at or after the durable end, and a retired file
    // is recycled only when no map of it is left: `MapUse`).
    let map = unsafe { memmap2::MmapOptions::new().len(len as usize).map(&file) }
        .map_err(|e| StorageError::io(format!("mmap {}", path.display()), e))?;
    if let Some(advice) = advice {
        // Only a cost rides on the advice: a failure is logged, not returned.
        if let Err(error) = map.advise(advice) {
            tracing::warn!(file = %path.display(), ?advice, %error, "madvise on a segment map failed");
        }
    }
    Ok(Bytes::from_owner(TrackedMap { map, _use: map_use.clone() }))
}

/// Asks the kernel to start reading a mapped range in (MADV_WILLNEED), so
/// that the socket write, not the shard, waits for a cold segment.
pub(crate) fn prefetch(range: &[u8]) {
    let page = PAGE_BYTES;
    let start = range.as_ptr() as usize / page * page;
    let end = range.as_ptr() as usize + range.len();
    // SAFETY: the range lies inside a live read-only mapping (page-aligned
    // down to the mapping's own page); WILLNEED changes no memory.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_WILLNEED);
    }
}

/// Drops the page cache of `path` from `from_bytes` on (POSIX_FADV_DONTNEED),
/// before the appender writes there: recovery's scan reads the bytes after the
/// valid end through a map, and a recycled file's pages may still be cached
/// from its readers. With a page cached, an O_DIRECT write over it cannot be
/// issued inline (io_uring hands it to a worker thread, which invalidates the
/// page first): measured as every first write into a new page of a freshly
/// recovered segment going through `iou-wrk` (`perf record -e
/// block:block_rq_issue`), ~10 % on the 1 KiB commit latency. No map of the
/// range may be alive (mapped pages are not dropped). Runs on a helper thread.
/// Only a cost rides on it, so a failure is logged, not returned.
pub async fn drop_cached_pages(path: &Path, from_bytes: u64) {
    let path = path.to_path_buf();
    let result = blocking(move || {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(&path).map_err(|e| (path.clone(), "open", e))?;
        // Dirty pages are not dropped: write them out first (a file written
        // through the page cache, such as a copied data directory).
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        // SAFETY: a valid descriptor; the call writes back cached pages only.
        if unsafe { libc::sync_file_range(file.as_raw_fd(), from_bytes as libc::off64_t, 0, flags) } != 0 {
            return Err((path, "sync_file_range", std::io::Error::last_os_error()));
        }
        // SAFETY: a valid descriptor; the call only changes cache state.
        let rc =
            unsafe { libc::posix_fadvise(file.as_raw_fd(), from_bytes as libc::off_t, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            return Err((path, "posix_fadvise", std::io::Error::from_raw_os_error(rc)));
        }
        Ok(())
    })
    .await;
    if let Err((path, call, error)) = result {
        tracing::warn!(file = %path.display(), call, %error, "could not drop the page cache of a segment; appends over cached pages will be slower");
    }
}

pub(crate) async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    glommio::executor().spawn_blocking(f).await
}

/// fsync of a directory, so that a create, rename or unlink in it is durable.
pub async fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let dir = dir.to_path_buf();
    blocking(move || {
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StorageError::io(format!("fsync dir {}", dir.display()), e))
    })
    .await
}

/// Opens a segment for appends. With `dsync` (flush=always) every write is
/// durable when it completes (O_DSYNC): one io_uring operation per commit
/// instead of a write and an fdatasync, measured faster (docs/performance.md).
pub async fn open_rw(path: &Path, dsync: bool) -> Result<DmaFile, StorageError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(if dsync { libc::O_DSYNC } else { 0 })
        .dma_open(path)
        .await
        .map_err(gerr(format!("open {}", path.display())))
}

/// Reserves `capacity_bytes` for a file (creating or extending it) and, with
/// `Preallocation::Zero`, writes zeros over `[from_bytes, capacity)` so later
/// commits overwrite written blocks. Ends with fdatasync.
pub async fn preallocate(
    file: &DmaFile,
    from_bytes: u64,
    capacity_bytes: u64,
    mode: Preallocation,
    what: &Path,
) -> Result<(), StorageError> {
    assert_eq!(capacity_bytes % PAGE_BYTES as u64, 0, "segment capacity must be page aligned");
    file.pre_allocate(capacity_bytes, false).await.map_err(gerr(format!("fallocate {}", what.display())))?;
    if mode == Preallocation::Zero {
        let mut pos = from_bytes / PAGE_BYTES as u64 * PAGE_BYTES as u64;
        // A partly valid first page is the caller's to rewrite; start after it.
        if pos < from_bytes {
            pos += PAGE_BYTES as u64;
        }
        // One zeroed buffer serves every chunk (a fresh one per chunk spent
        // most of the zero-fill's CPU in memset).
        let mut zeros = file.alloc_dma_buffer(ZERO_FILL_CHUNK_BYTES);
        zeros.as_bytes_mut().fill(0);
        let zeros = Rc::new(zeros);
        while pos < capacity_bytes {
            let len = (capacity_bytes - pos).min(ZERO_FILL_CHUNK_BYTES as u64) as usize;
            let written = if len == ZERO_FILL_CHUNK_BYTES {
                file.write_rc_at(zeros.clone(), pos).await
            } else {
                let mut tail = file.alloc_dma_buffer(len);
                tail.as_bytes_mut().fill(0);
                file.write_at(tail, pos).await
            };
            let written = written.map_err(gerr(format!("zero-fill {}", what.display())))?;
            if written != len {
                return Err(StorageError::io(
                    format!("zero-fill {}", what.display()),
                    std::io::Error::new(
                        std::io::ErrorKind::WriteZero,
                        format!("short write: {written} of {len} bytes at {pos}"),
                    ),
                ));
            }
            pos += len as u64;
        }
    }
    file.fdatasync().await.map_err(gerr(format!("fdatasync {}", what.display())))?;
    Ok(())
}

/// Renames a prepared file to the segment name for `base_offset`, durably.
pub async fn install_prepared(
    dir: &Path,
    prepared: &PreparedSegment,
    base_offset: i64,
) -> Result<PathBuf, StorageError> {
    let to = dir.join(log_file_name(base_offset));
    let (from, target) = (prepared.path.clone(), to.clone());
    blocking(move || std::fs::rename(&from, &target))
        .await
        .map_err(|e| StorageError::io(format!("rename to {}", to.display()), e))?;
    sync_dir(dir).await?;
    Ok(to)
}

/// Makes `next.prepared` in `dir`, allocated to `capacity_bytes`: from the
/// recycled file when there is one (its written blocks are overwritten in
/// place, as fio's overwrite benchmark does; only an extension past its
/// length is reserved and zero-filled), otherwise a new file.
pub async fn prepare_next(
    dir: &Path,
    capacity_bytes: u64,
    mode: Preallocation,
) -> Result<PreparedSegment, StorageError> {
    let path = dir.join(PREPARED_FILE_NAME);
    let (spare, target) = (dir.join(RECYCLED_FILE_NAME), path.clone());
    let recycled = match blocking(move || std::fs::rename(spare, target)).await {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(StorageError::io(format!("rename {} to {}", RECYCLED_FILE_NAME, path.display()), e)),
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(!recycled)
        .dma_open(&path)
        .await
        .map_err(gerr(format!("create {}", path.display())))?;
    let mut from_bytes = 0;
    if recycled {
        let len = file.file_size().await.map_err(gerr(format!("stat {}", path.display())))?;
        if len > capacity_bytes {
            file.truncate(capacity_bytes).await.map_err(gerr(format!("truncate {}", path.display())))?;
        }
        from_bytes = len.min(capacity_bytes);
        // Its readers may have left pages cached; no map of it is left.
        drop_cached_pages(&path, 0).await;
        tracing::debug!(file = %path.display(), reused_bytes = from_bytes, capacity_bytes, "next segment prepared from a recycled file");
    }
    preallocate(&file, from_bytes, capacity_bytes, mode, &path).await?;
    file.close().await.map_err(gerr(format!("close {}", path.display())))?;
    Ok(PreparedSegment { path, capacity_bytes, recycled })
}

/// Keeps the data file of the retired segment at `base` as `dir`'s recycled
/// file, unless there already is one; the caller checked that no map of it
/// is left. Its other files are the caller's to delete. Returns whether it
/// was kept (blocking: run it on a helper thread).
pub(crate) fn recycle_retired(dir: &Path, base: i64) -> std::io::Result<bool> {
    let from = std::ffi::CString::new(dir.join(log_file_name(base)).into_os_string().into_encoded_bytes())
        .map_err(std::io::Error::other)?;
    let to = std::ffi::CString::new(dir.join(RECYCLED_FILE_NAME).into_os_string().into_encoded_bytes())
        .map_err(std::io::Error::other)?;
    // RENAME_NOREPLACE: a preparation taking the recycled file runs on
    // another helper thread; never replace one another pass just kept.
    // SAFETY: both paths are valid NUL-terminated strings for the call.
    let rc =
        unsafe { libc::renameat2(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::RENAME_NOREPLACE) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EEXIST) | Some(libc::ENOENT) => Ok(false),
        _ => Err(e),
    }
}

/// A closed, fully allocated (and durable) file waiting to become a segment.
pub struct PreparedSegment {
    pub path: PathBuf,
    pub capacity_bytes: u64,
    /// Made from a recycled file: bytes past what the segment writes are an
    /// earlier segment's, not zeros.
    pub recycled: bool,
}

/// A read-only segment: every byte of `data` is committed log.
pub struct SealedSegment {
    pub base_offset: i64,
    /// One past the last offset it holds.
    pub next_offset: i64,
    pub data: Bytes,
    pub index: SparseIndex,
    pub time_index: TimeIndex,
    pub max_timestamp_ms: i64,
    pub path: PathBuf,
    /// Whether any map of the file is left (see `MapUse`).
    pub maps: MapWatch,
}

impl SealedSegment {
    pub fn size_bytes(&self) -> u64 {
        self.data.len() as u64
    }
}

/// The segment being appended to.
pub struct ActiveSegment {
    pub base_offset: i64,
    pub file: Rc<DmaFile>,
    pub path: PathBuf,
    pub capacity_bytes: u64,
    /// End of the batches whose commit writes have all completed (the
    /// acknowledged ones); a completed write may already hold the start of
    /// the next batch.
    pub written_bytes: u64,
    /// Map of the whole capacity; only `[0, written_bytes)` is meaningful.
    pub data: Bytes,
    /// Counts the maps of this file, this one and the sealed one to come.
    pub map_use: MapUse,
    pub index: SparseIndex,
    pub time_index: TimeIndex,
    pub max_timestamp_ms: i64,
    /// Contents of the page holding `written_bytes` (its valid prefix), which
    /// the next commit issued with no other in flight writes again together
    /// with the new data.
    pub tail_page: Box<[u8; PAGE_BYTES]>,
}

impl ActiveSegment {
    /// A new, empty active segment at `base_offset` in an installed file.
    pub(crate) fn fresh(base_offset: i64, installed: InstalledFile) -> ActiveSegment {
        ActiveSegment {
            base_offset,
            file: Rc::new(installed.file),
            path: installed.path,
            capacity_bytes: installed.capacity_bytes,
            written_bytes: 0,
            data: installed.data,
            map_use: installed.map_use,
            index: SparseIndex::new(),
            time_index: TimeIndex::new(),
            max_timestamp_ms: -1,
            tail_page: Box::new([0u8; PAGE_BYTES]),
        }
    }

    pub fn tail_page_start(&self) -> u64 {
        self.written_bytes / PAGE_BYTES as u64 * PAGE_BYTES as u64
    }

    /// Indexes a batch of `len` bytes at `position`, whose write completed.
    pub(crate) fn record_batch(
        &mut self,
        base_offset: i64,
        position: u64,
        len: usize,
        max_timestamp_ms: i64,
        interval_bytes: u32,
    ) {
        assert!(base_offset >= self.base_offset && position + len as u64 <= self.capacity_bytes);
        let relative = (base_offset - self.base_offset) as u32;
        self.index.on_batch(relative, position as u32, len as u64, interval_bytes);
        self.time_index.on_batch(relative, position as u32, len as u64, max_timestamp_ms, interval_bytes);
        self.max_timestamp_ms = self.max_timestamp_ms.max(max_timestamp_ms);
    }

    /// Moves the durable end forward to `end`, with `tail_page` the page
    /// holding it (valid up to it, zeros after).
    pub(crate) fn advance_durable_end(&mut self, end: u64, tail_page: &[u8; PAGE_BYTES]) {
        assert!(self.written_bytes <= end && end <= self.capacity_bytes, "the durable end only moves forward");
        debug_assert!(tail_page[(end % PAGE_BYTES as u64) as usize..].iter().all(|&b| b == 0));
        self.written_bytes = end;
        self.tail_page.copy_from_slice(&tail_page[..]);
    }

    /// What sealing this segment writes (see `write_sealed`).
    pub(crate) fn seal_work(&self) -> SealWork {
        SealWork {
            file: self.file.clone(),
            path: self.path.clone(),
            written_bytes: self.written_bytes,
            base_offset: self.base_offset,
            index_bytes: self.index.encode(self.max_timestamp_ms),
            time_index_bytes: self.time_index.encode(),
        }
    }

    /// The sealed segment this one becomes, holding offsets below
    /// `next_offset`, read through `data` (a map of its written bytes made
    /// with its `map_use`); and what is left of it to close.
    pub(crate) fn seal(self, next_offset: i64, data: Bytes) -> (SealedSegment, RetiredActive) {
        assert!(next_offset > self.base_offset, "a sealed segment holds at least one offset");
        assert_eq!(data.len() as u64, self.written_bytes, "a sealed segment is read up to its written end");
        let sealed = SealedSegment {
            base_offset: self.base_offset,
            next_offset,
            data,
            index: self.index,
            time_index: self.time_index,
            max_timestamp_ms: self.max_timestamp_ms,
            path: self.path,
            maps: self.map_use.watch(),
        };
        (sealed, RetiredActive { file: self.file, data: self.data, map_use: self.map_use })
    }

    /// Moves this (empty) segment into a bigger installed file under the same
    /// name; returns the file it leaves.
    pub(crate) fn replace_file(&mut self, installed: InstalledFile) -> Rc<DmaFile> {
        assert_eq!(self.written_bytes, 0, "only an empty active segment changes files");
        self.capacity_bytes = installed.capacity_bytes;
        self.data = installed.data;
        self.map_use = installed.map_use;
        self.path = installed.path;
        std::mem::replace(&mut self.file, Rc::new(installed.file))
    }
}

/// What an active segment leaves when it is sealed: its writable file and
/// its map of the whole capacity.
pub(crate) struct RetiredActive {
    file: Rc<DmaFile>,
    data: Bytes,
    map_use: MapUse,
}

impl RetiredActive {
    /// Closes the file (if no write still holds it), then drops the map:
    /// retention may retire the sealed segment at once, and recycles its
    /// file only when no map of it is left.
    pub(crate) async fn close(self) {
        close_file(self.file).await;
        drop((self.data, self.map_use));
    }
}

/// Closes a segment file once nothing else holds it (a write in flight keeps
/// its own handle, and the file closes when that drops it).
pub(crate) async fn close_file(file: Rc<DmaFile>) {
    if let Ok(f) = Rc::try_unwrap(file) {
        let _ = f.close().await;
    }
}

/// A prepared file installed under a segment's name, opened for appends and
/// mapped whole.
pub(crate) struct InstalledFile {
    pub path: PathBuf,
    pub file: DmaFile,
    pub capacity_bytes: u64,
    pub data: Bytes,
    pub map_use: MapUse,
}

/// Opens the file installed at `path` (see `install_prepared`) for appends
/// (O_DSYNC with `dsync`) and maps its `capacity_bytes`.
pub(crate) async fn open_installed(
    path: PathBuf,
    capacity_bytes: u64,
    dsync: bool,
) -> Result<InstalledFile, StorageError> {
    let file = open_rw(&path, dsync).await?;
    let map_use = MapUse::default();
    let data = map_active_file(&path, capacity_bytes, &map_use)?;
    Ok(InstalledFile { path, file, capacity_bytes, data, map_use })
}

/// What sealing the active segment writes: its file cut to its data and
/// made durable, and its two index files.
pub(crate) struct SealWork {
    pub file: Rc<DmaFile>,
    pub path: PathBuf,
    pub written_bytes: u64,
    pub base_offset: i64,
    pub index_bytes: Vec<u8>,
    pub time_index_bytes: Vec<u8>,
}

/// Cuts the segment file to its data, makes that durable, and writes its
/// offset and time indexes next to it (not fsynced: a damaged index is
/// rebuilt at open).
pub(crate) async fn write_sealed(dir: &Path, work: SealWork) -> Result<(), StorageError> {
    let SealWork { file, path, written_bytes, base_offset, index_bytes, time_index_bytes } = work;
    file.truncate(written_bytes).await.map_err(gerr(format!("truncate {}", path.display())))?;
    file.fdatasync().await.map_err(gerr(format!("fdatasync {}", path.display())))?;
    let index_path = dir.join(index_file_name(base_offset));
    blocking(move || std::fs::write(&index_path, index_bytes))
        .await
        .map_err(|e| StorageError::io("write segment index", e))?;
    let time_index_path = dir.join(time_index_file_name(base_offset));
    blocking(move || std::fs::write(&time_index_path, time_index_bytes))
        .await
        .map_err(|e| StorageError::io("write segment time index", e))?;
    Ok(())
}
