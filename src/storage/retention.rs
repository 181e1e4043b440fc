//! Retention: deletes whole sealed segments, oldest first, while the log is
//! over `retention.bytes` or a segment's newest record is older than
//! `retention.ms` (`Retention::retires`, applied by
//! `LogState::retire_oldest_while`). The active segment is never deleted.
//! Readers holding slices of a deleted segment keep its map (and so its data)
//! until they drop them.
//!
//! Every path that retires segments (retention, compaction, DeleteRecords)
//! ends in `remove_retired`, which keeps one retired data file for the next
//! segment (`segment::recycle_retired`) when no reader still maps it.

use std::path::Path;

use super::config::LogConfig;
use super::delete_records::remove_segments;
use super::error::StorageError;
use super::segment::{self, SealedSegment};

/// Wall-clock time in ms since the Unix epoch: what `retention.ms` is
/// measured against (and what the broker stamps its own records with).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A retention pass's limits, as configured when it starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retention {
    /// -1: unlimited.
    bytes: i64,
    /// -1: unlimited.
    ms: i64,
    now_ms: i64,
}

impl Retention {
    pub fn of(config: &LogConfig, now_ms: i64) -> Retention {
        Retention { bytes: config.retention_bytes, ms: config.retention_ms, now_ms }
    }

    /// Whether the oldest segment `oldest` goes, with the log `total_bytes`
    /// long (`oldest` included): the log stays at or over the size limit
    /// without it, or its newest record is past the time limit.
    pub fn retires(&self, total_bytes: u64, oldest: &SealedSegment) -> bool {
        let over_size = self.bytes >= 0 && total_bytes - oldest.size_bytes() >= self.bytes as u64;
        let too_old = self.ms >= 0 && oldest.max_timestamp_ms >= 0 && oldest.max_timestamp_ms < self.now_ms - self.ms;
        over_size || too_old
    }
}

/// Deletes the files of segments already retired from the log's view,
/// keeping the data file of one that no reader maps any more for reuse.
/// Returns the base of the segment whose file was kept, if one was.
pub(crate) async fn remove_retired(dir: &Path, retired: Vec<SealedSegment>) -> Result<Option<i64>, StorageError> {
    let mut bases = Vec::with_capacity(retired.len());
    let mut unmapped = Vec::new();
    for seg in retired {
        let (base, maps) = (seg.base_offset, seg.maps.clone());
        drop(seg);
        bases.push(base);
        if !maps.in_use() {
            unmapped.push(base);
        }
    }
    let owned_dir = dir.to_path_buf();
    let recycled = segment::blocking(move || -> std::io::Result<Option<i64>> {
        // The newest: the oldest may be a short segment from long ago.
        let recycled = match unmapped.last() {
            Some(&base) if segment::recycle_retired(&owned_dir, base)? => Some(base),
            _ => None,
        };
        // A recycled segment's data file is gone from its name already;
        // its other files go with the rest.
        remove_segments(&owned_dir, &bases)?;
        Ok(recycled)
    })
    .await
    .map_err(|e| StorageError::io(format!("delete segments in {}", dir.display()), e))?;
    segment::sync_dir(dir).await?;
    Ok(recycled)
}
