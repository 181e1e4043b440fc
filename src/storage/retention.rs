//! Retention: deletes whole sealed segments, oldest first, while the log is
//! over `retention.bytes` or a segment's newest record is older than
//! `retention.ms`. The active segment is never deleted. Readers holding slices
//! of a deleted segment keep its map (and so its data) until they drop them.

use super::delete_records::remove_segments;
use super::log::{LogState, PartitionLog};
use super::segment;
use super::{now_ms, StorageError};

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
                let too_old = retention_ms >= 0 && seg.max_timestamp_ms >= 0 && seg.max_timestamp_ms < now - retention_ms;
                if !(over_size || too_old) {
                    break;
                }
                total -= seg.size_bytes();
                let next = seg.next_offset;
                if retire_oldest(&mut s, base, next) {
                    doomed.push(base);
                }
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

    /// Deletes the files of segments already retired from the log's view.
    async fn remove_retired(&self, doomed: Vec<i64>) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        segment::blocking(move || remove_segments(&dir, &doomed))
            .await
            .map_err(|e| StorageError::io(format!("delete segments in {}", self.dir.display()), e))?;
        segment::sync_dir(&self.dir).await
    }
}

/// Takes the oldest sealed segment `base` (offsets below `next`) out of the
/// log's view: the log start moves past it (never backwards: DeleteRecords
/// may already have moved it further) and the tail cache forgets it.
/// Returns whether the segment was there.
fn retire_oldest(s: &mut LogState, base: i64, next: i64) -> bool {
    let was_sealed = s.sealed.remove(&base).is_some();
    s.log_start_offset = s.log_start_offset.max(next);
    while s.tail.front().is_some_and(|b| b.base_offset < next) {
        if let Some(b) = s.tail.pop_front() {
            s.tail_bytes -= b.data.len();
        }
    }
    was_sealed
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
                if retire_oldest(&mut s, base, next) {
                    doomed.push(base);
                }
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
