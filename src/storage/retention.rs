//! Retention: deletes whole sealed segments, oldest first, while the log is
//! over `retention.bytes` or a segment's newest record is older than
//! `retention.ms`. The active segment is never deleted. Readers holding slices
//! of a deleted segment keep its map (and so its data) until they drop them.
//!
//! Every path that retires segments (retention, compaction, DeleteRecords)
//! ends in `remove_retired`, which keeps one retired data file for the next
//! segment (`segment::recycle_retired`) when no reader still maps it.

use super::delete_records::remove_segments;
use super::error::StorageError;
use super::log::{LogState, PartitionLog};
use super::segment::{self, SealedSegment};

impl PartitionLog {
    /// Applies retention once; returns the number of segments deleted.
    pub async fn enforce_retention(&self) -> Result<usize, StorageError> {
        let (retention_bytes, retention_ms) = {
            let c = self.config.borrow();
            (c.retention_bytes, c.retention_ms)
        };
        let now = now_ms();
        let mut doomed = Vec::new();
        {
            let mut s = self.state.borrow_mut();
            let mut total: u64 = s.sealed.values().map(|seg| seg.size_bytes()).sum::<u64>() + s.active.written_bytes;
            while let Some((&base, seg)) = s.sealed.iter().next() {
                let over_size = retention_bytes >= 0 && total - seg.size_bytes() >= retention_bytes as u64;
                let too_old =
                    retention_ms >= 0 && seg.max_timestamp_ms >= 0 && seg.max_timestamp_ms < now - retention_ms;
                if !(over_size || too_old) {
                    break;
                }
                total -= seg.size_bytes();
                let next = seg.next_offset;
                doomed.extend(retire_oldest(&mut s, base, next));
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        let count = doomed.len();
        tracing::info!(topic = %self.topic, partition = self.partition, segments = count, log_start_offset = self.offsets().log_start_offset, "retention deleted segments");
        self.remove_retired(doomed).await?;
        Ok(count)
    }

    /// Deletes the files of segments already retired from the log's view,
    /// keeping the data file of one that no reader maps any more for reuse.
    pub(crate) async fn remove_retired(&self, retired: Vec<SealedSegment>) -> Result<(), StorageError> {
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
        let dir = self.dir.clone();
        let recycled = segment::blocking(move || -> std::io::Result<Option<i64>> {
            // The newest: the oldest may be a short segment from long ago.
            let recycled = match unmapped.last() {
                Some(&base) if segment::recycle_retired(&dir, base)? => Some(base),
                _ => None,
            };
            // A recycled segment's data file is gone from its name already;
            // its other files go with the rest.
            remove_segments(&dir, &bases)?;
            Ok(recycled)
        })
        .await
        .map_err(|e| StorageError::io(format!("delete segments in {}", self.dir.display()), e))?;
        if let Some(base) = recycled {
            tracing::debug!(topic = %self.topic, partition = self.partition, base, "kept a retired segment's file for reuse");
        }
        segment::sync_dir(&self.dir).await
    }
}

/// Takes the oldest sealed segment `base` (offsets below `next`) out of the
/// log's view: the log start moves past it (never backwards: DeleteRecords
/// may already have moved it further) and the tail cache forgets it.
/// Returns the segment, if it was there.
fn retire_oldest(s: &mut LogState, base: i64, next: i64) -> Option<SealedSegment> {
    let retired = s.sealed.remove(&base);
    s.log_start_offset = s.log_start_offset.max(next);
    while s.tail.front().is_some_and(|b| b.base_offset < next) {
        if let Some(b) = s.tail.pop_front() {
            s.tail_bytes -= b.data.len();
        }
    }
    retired
}

impl PartitionLog {
    /// Deletes the sealed segments holding only offsets below `offset` (used
    /// by logs that compact themselves, such as the consumer offsets logs,
    /// once everything they need is written again past `offset`). Returns
    /// the number of segments deleted.
    pub async fn delete_segments_below(&self, offset: i64) -> Result<usize, StorageError> {
        let mut doomed = Vec::new();
        {
            let mut s = self.state.borrow_mut();
            while let Some((&base, seg)) = s.sealed.iter().next() {
                let next = seg.next_offset;
                if next > offset {
                    break;
                }
                doomed.extend(retire_oldest(&mut s, base, next));
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        let count = doomed.len();
        self.remove_retired(doomed).await?;
        Ok(count)
    }

    /// Sealed segments, and bytes waiting for a commit.
    pub fn sealed_segments(&self) -> usize {
        self.state.borrow().sealed.len()
    }

    pub fn pending_bytes(&self) -> usize {
        self.state.borrow().pending_bytes
    }
}

/// Wall-clock time in ms since the Unix epoch: what `retention.ms` is
/// measured against (and what the broker stamps its own records with).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
