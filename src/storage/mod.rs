//! Storage: one append-only log per partition, made of preallocated segment
//! files written with O_DIRECT and group-committed (see `appender`), read
//! back through memory maps and an in-memory tail (see `reader`).
//!
//! The flush/ack contract lives in `appender.rs`; the on-disk format in
//! `segment.rs` and `batch.rs`; start-up repair in `recovery.rs`; lookups by
//! timestamp in `time_index.rs` and `time_lookup.rs`; DeleteRecords in
//! `delete_records.rs`.

pub mod appender;
pub mod batch;
pub mod delete_records;
pub mod index;
pub mod log;
pub mod producer_state;
pub mod reader;
pub mod recovery;
pub mod retention;
pub mod segment;
pub mod time_index;
pub mod time_lookup;

use std::time::Duration;

pub use self::log::PartitionLog;

/// When an acknowledged append becomes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// acks=1/-1 are answered after the write and its fdatasync.
    Always,
    /// acks=1/-1 are answered after the write; fdatasync runs on this timer.
    Interval(Duration),
}

impl std::str::FromStr for FlushPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "always" {
            return Ok(FlushPolicy::Always);
        }
        if let Some(ms) = s.strip_prefix("interval:") {
            let ms: u64 = ms.parse().map_err(|_| format!("flush interval `{ms}` is not a number of milliseconds"))?;
            if ms == 0 {
                return Err("flush interval must be at least 1 ms".into());
            }
            return Ok(FlushPolicy::Interval(Duration::from_millis(ms)));
        }
        Err(format!("unknown flush policy `{s}` (expected `always` or `interval:<ms>`)"))
    }
}

/// How a new segment file's blocks are reserved before the first append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preallocation {
    /// fallocate, then write zeros over the whole file and fdatasync: later
    /// commits overwrite already-written blocks (cheaper fdatasync).
    Zero,
    /// fallocate only: blocks stay "unwritten" until the first commit, whose
    /// fdatasync then also has to journal the extent conversion.
    Fallocate,
}

impl std::str::FromStr for Preallocation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "zero" => Ok(Preallocation::Zero),
            "fallocate" => Ok(Preallocation::Fallocate),
            _ => Err(format!("unknown preallocation `{s}` (expected `zero` or `fallocate`)")),
        }
    }
}

/// Per-partition storage settings (topic configs resolved against defaults).
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub segment_bytes: u64,
    /// -1: unlimited.
    pub retention_bytes: i64,
    /// -1: unlimited.
    pub retention_ms: i64,
    pub max_message_bytes: usize,
    pub flush: FlushPolicy,
    pub preallocation: Preallocation,
    pub index_interval_bytes: u32,
    /// Recent committed batches kept in memory for readers, per partition.
    pub tail_cache_bytes: usize,
    /// Largest single write of the group commit.
    pub commit_max_bytes: usize,
    /// Appends waiting for a commit beyond this make producers wait.
    pub pending_max_bytes: usize,
    /// Extra wait before a commit to gather more appends.
    pub commit_linger: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 128 * 1024 * 1024,
            retention_bytes: -1,
            retention_ms: 7 * 24 * 3600 * 1000,
            max_message_bytes: 1024 * 1024 + 12,
            flush: FlushPolicy::Always,
            preallocation: Preallocation::Zero,
            index_interval_bytes: 4096,
            tail_cache_bytes: 4 * 1024 * 1024,
            commit_max_bytes: 1024 * 1024,
            pending_max_bytes: 32 * 1024 * 1024,
            commit_linger: Duration::ZERO,
        }
    }
}

/// Page size of O_DIRECT writes.
pub const PAGE_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid record batch: {0}")]
    Batch(#[from] batch::BatchError),
    #[error("batch of {bytes} bytes exceeds max.message.bytes {max}")]
    TooLarge { bytes: usize, max: usize },
    #[error("partition log is closed")]
    Closed,
    #[error("offset {offset} out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("no space left on the data disk: {context}")]
    DiskFull { context: String },
    #[error(transparent)]
    Producer(#[from] producer_state::ProducerError),
}

impl StorageError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> StorageError {
        let context = context.into();
        if source.raw_os_error() == Some(libc::ENOSPC) || source.raw_os_error() == Some(libc::EDQUOT) {
            return StorageError::DiskFull { context };
        }
        StorageError::Io { context, source }
    }
}

/// Converts a glommio error into `StorageError` with context.
pub(crate) fn gerr<T>(context: impl Into<String>) -> impl FnOnce(glommio::GlommioError<T>) -> StorageError {
    let context = context.into();
    move |e| StorageError::io(context, std::io::Error::from(e))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests;
