//! Retention: deletes whole sealed segments, oldest first, while the log is
//! over `retention.bytes` or a segment's newest record is older than
//! `retention.ms`. The active segment is never deleted. Readers holding slices
//! of a deleted segment keep its map (and so its data) until they drop them.

use super::delete_records::remove_segments;
use super::log::PartitionLog;
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
                if s.sealed.remove(&base).is_some() {
                    doomed.push(base);
                }
                // DeleteRecords may already have moved the start further.
                s.log_start_offset = s.log_start_offset.max(next);
                while s.tail.front().is_some_and(|b| b.base_offset < next) {
                    if let Some(b) = s.tail.pop_front() {
                        s.tail_bytes -= b.data.len();
                    }
                }
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        let count = doomed.len();
        tracing::info!(topic = %self.topic, partition = self.partition, segments = count, log_start_offset = self.offsets().log_start_offset, "retention deleted segments");
        let dir = self.dir.clone();
        segment::blocking(move || remove_segments(&dir, &doomed))
            .await
            .map_err(|e| StorageError::io(format!("delete segments in {}", self.dir.display()), e))?;
        segment::sync_dir(&self.dir).await?;
        Ok(count)
    }
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
                if s.sealed.remove(&base).is_some() {
                    doomed.push(base);
                }
                s.log_start_offset = next;
                while s.tail.front().is_some_and(|b| b.base_offset < next) {
                    if let Some(b) = s.tail.pop_front() {
                        s.tail_bytes -= b.data.len();
                    }
                }
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        let count = doomed.len();
        let dir = self.dir.clone();
        segment::blocking(move || remove_segments(&dir, &doomed))
            .await
            .map_err(|e| StorageError::io(format!("delete segments in {}", self.dir.display()), e))?;
        segment::sync_dir(&self.dir).await?;
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
