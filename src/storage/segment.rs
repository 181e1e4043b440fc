//! Segment files: naming, preallocation, mapping, sealing.
//!
//! On disk a partition directory holds `<base offset:020>.log` segments of
//! RecordBatch v2 bytes back to back, each preallocated to `segment.bytes`
//! (the unused tail reads as zeros, which recovery takes as the end), plus a
//! `<base>.index` and a `<base>.timeindex` (see `time_index`) for sealed
//! segments. A sealed segment is truncated to its data, so its file length is
//! its size. `next.prepared` is the already allocated file that becomes the
//! next segment on a roll. `log-start-offset`, when present, holds the start
//! set by DeleteRecords (see `delete_records`).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use glommio::io::{DmaFile, OpenOptions};

use super::index::SparseIndex;
use super::time_index::TimeIndex;
use super::{gerr, Preallocation, StorageError, PAGE_BYTES};

pub const PREPARED_FILE_NAME: &str = "next.prepared";
const ZERO_FILL_CHUNK_BYTES: usize = 1024 * 1024;

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

/// Maps `len` bytes of the file read-only as `Bytes` that keep the map alive
/// (slices stay valid even after the file is deleted by retention).
pub fn map_file(path: &Path, len: u64) -> Result<Bytes, StorageError> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    let file = std::fs::File::open(path).map_err(|e| StorageError::io(format!("open {}", path.display()), e))?;
    // SAFETY: the broker is the only writer of its data directory; bytes
    // inside the committed range are never rewritten while mapped (recovery
    // and appends only write at or after the durable end).
    let map = unsafe { memmap2::MmapOptions::new().len(len as usize).map(&file) }
        .map_err(|e| StorageError::io(format!("mmap {}", path.display()), e))?;
    Ok(Bytes::from_owner(map))
}

pub(crate) async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    glommio::executor().spawn_blocking(f).await
}

/// fsync of a directory, so that a create, rename or unlink in it is durable.
pub async fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let dir = dir.to_path_buf();
    blocking(move || std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| StorageError::io(format!("fsync dir {}", dir.display()), e)))
        .await
}

/// Opens a segment for appends. With `dsync` (flush=always) every write is
/// durable when it completes (O_DSYNC): one io_uring operation per commit
/// instead of a write and an fdatasync, measured faster (README, Performance).
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
pub async fn preallocate(file: &DmaFile, from_bytes: u64, capacity_bytes: u64, mode: Preallocation, what: &Path) -> Result<(), StorageError> {
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
                return Err(StorageError::io(format!("zero-fill {}", what.display()), std::io::Error::new(std::io::ErrorKind::WriteZero, format!("short write: {written} of {len} bytes at {pos}"))));
            }
            pos += len as u64;
        }
    }
    file.fdatasync().await.map_err(gerr(format!("fdatasync {}", what.display())))?;
    Ok(())
}

/// Renames a prepared file to the segment name for `base_offset`, durably.
pub async fn install_prepared(dir: &Path, prepared: &PreparedSegment, base_offset: i64) -> Result<PathBuf, StorageError> {
    let to = dir.join(log_file_name(base_offset));
    let (from, target) = (prepared.path.clone(), to.clone());
    blocking(move || std::fs::rename(&from, &target)).await.map_err(|e| StorageError::io(format!("rename to {}", to.display()), e))?;
    sync_dir(dir).await?;
    Ok(to)
}

/// Creates `next.prepared` in `dir`, allocated to `capacity_bytes`.
pub async fn prepare_next(dir: &Path, capacity_bytes: u64, mode: Preallocation) -> Result<PreparedSegment, StorageError> {
    let path = dir.join(PREPARED_FILE_NAME);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&path)
        .await
        .map_err(gerr(format!("create {}", path.display())))?;
    preallocate(&file, 0, capacity_bytes, mode, &path).await?;
    file.close().await.map_err(gerr(format!("close {}", path.display())))?;
    Ok(PreparedSegment { path, capacity_bytes })
}

/// A closed, fully allocated (and durable) file waiting to become a segment.
pub struct PreparedSegment {
    pub path: PathBuf,
    pub capacity_bytes: u64,
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
    /// End of the data handed to the disk by completed commits.
    pub written_bytes: u64,
    /// Map of the whole capacity; only `[0, written_bytes)` is meaningful.
    pub data: Bytes,
    pub index: SparseIndex,
    pub time_index: TimeIndex,
    pub max_timestamp_ms: i64,
    /// Contents of the page holding `written_bytes` (its valid prefix), which
    /// the next commit writes again together with the new data.
    pub tail_page: Box<[u8; PAGE_BYTES]>,
}

impl ActiveSegment {
    pub fn tail_page_start(&self) -> u64 {
        self.written_bytes / PAGE_BYTES as u64 * PAGE_BYTES as u64
    }
}
