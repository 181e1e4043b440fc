//! Per-partition storage settings and the one layout constant every writer
//! shares: `LogConfig` (topic configs resolved against the broker defaults),
//! when an acknowledged append is durable (`FlushPolicy`), how a segment's
//! blocks are reserved (`Preallocation`), and the O_DIRECT page (`PAGE_BYTES`).

use std::time::Duration;

/// Page size of O_DIRECT writes.
pub const PAGE_BYTES: usize = 4096;

// Writes are page aligned by masking and dividing: only a power of two works,
// and the kernel's O_DIRECT alignment (512 B logical blocks) must divide it.
const _: () = assert!(PAGE_BYTES.is_power_of_two());
const _: () = assert!(PAGE_BYTES.is_multiple_of(512));

/// `n` rounded up to a whole number of pages.
pub(crate) fn align_up(n: usize) -> usize {
    n.div_ceil(PAGE_BYTES) * PAGE_BYTES
}

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
