//! Reads of committed data as `Bytes` that own their memory: the recent tail
//! from memory (O_DIRECT writes leave no page cache behind them), everything
//! else as a slice of a segment's memory map. A read returns whole batches
//! from one segment, at least one batch even when it exceeds `max_bytes`
//! (as Kafka does, so a consumer always makes progress).

use bytes::Bytes;

use super::batch::{BatchHeader, LOG_OVERHEAD_BYTES};
use super::error::StorageError;
use super::log::PartitionLog;

#[derive(Debug, Default)]
pub struct ReadResult {
    /// Whole record batches, back to back.
    pub records: Vec<Bytes>,
    pub bytes: usize,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

impl PartitionLog {
    /// Committed batches from the one holding `offset`, up to `max_bytes`.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, StorageError> {
        let s = self.state.borrow();
        let hw = s.high_watermark;
        let mut result = ReadResult { high_watermark: hw, log_start_offset: s.log_start_offset, ..Default::default() };
        if offset < s.log_start_offset || offset > hw {
            return Err(StorageError::OffsetOutOfRange { offset, start: s.log_start_offset, end: hw });
        }
        if offset == hw {
            return Ok(result);
        }
        // Recent data: from memory.
        if s.tail.front().is_some_and(|b| b.base_offset <= offset) {
            let first = s.tail.partition_point(|b| b.last_offset < offset);
            for b in s.tail.iter().skip(first) {
                if b.base_offset >= hw || (result.bytes > 0 && result.bytes + b.data.len() > max_bytes) {
                    break;
                }
                result.bytes += b.data.len();
                result.records.push(b.data.clone());
            }
            return Ok(result);
        }
        // Older data: from the segment's map.
        let (data, base, index, end) = if offset >= s.active.base_offset {
            let a = &s.active;
            // The map of the active segment is read only below the cached
            // tail: pages at the end are still being rewritten by commits.
            let end = match s.tail.front() {
                Some(t) if t.segment_base == a.base_offset => t.position,
                _ => a.written_bytes,
            };
            (&a.data, a.base_offset, &a.index, end as usize)
        } else {
            let Some((_, seg)) = s.sealed.range(..=offset).next_back() else {
                return Err(StorageError::OffsetOutOfRange { offset, start: s.log_start_offset, end: hw });
            };
            (&seg.data, seg.base_offset, &seg.index, seg.data.len())
        };
        let mut pos = index.lookup((offset - base) as u32) as usize;
        let mut start = None;
        while pos + LOG_OVERHEAD_BYTES <= end {
            let header = BatchHeader::parse(&data[pos..end])?;
            let next = pos + header.total_bytes();
            if next > end || header.base_offset >= hw {
                break;
            }
            if start.is_none() {
                if header.last_offset() >= offset {
                    start = Some(pos);
                    result.bytes = header.total_bytes();
                }
            } else if result.bytes + header.total_bytes() > max_bytes {
                break;
            } else {
                result.bytes += header.total_bytes();
            }
            pos = next;
        }
        if let Some(start) = start {
            super::segment::prefetch(&data[start..start + result.bytes]);
            result.records.push(data.slice(start..start + result.bytes));
        }
        Ok(result)
    }
}
