//! Reads of committed data as `Bytes` that own their memory: the recent tail
//! from memory (O_DIRECT writes leave no page cache behind them), everything
//! else as a slice of a segment's memory map. A read returns whole batches
//! from one segment, at least one batch even when it exceeds `max_bytes`
//! (as Kafka does, so a consumer always makes progress).

use bytes::Bytes;

use super::batch::{BatchHeader, LOG_OVERHEAD_BYTES};
use super::error::StorageError;
use super::index::SparseIndex;
use super::state::LogState;

#[derive(Debug, Default)]
pub struct ReadResult {
    /// Whole record batches, back to back.
    pub records: Vec<Bytes>,
    pub bytes: usize,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// Committed batches of `s` from the one holding `offset`, up to `max_bytes`.
pub(crate) fn read(s: &LogState, offset: i64, max_bytes: usize) -> Result<ReadResult, StorageError> {
    let hw = s.high_watermark;
    let mut result = ReadResult { high_watermark: hw, log_start_offset: s.log_start_offset, ..Default::default() };
    let out_of_range = || StorageError::OffsetOutOfRange { offset, start: s.log_start_offset, end: hw };
    if offset < s.log_start_offset || offset > hw {
        return Err(out_of_range());
    }
    if offset == hw {
        return Ok(result);
    }
    // Recent data: from memory.
    if s.tail.front().is_some_and(|b| b.base_offset <= offset) {
        read_tail(s, offset, max_bytes, &mut result);
        return Ok(result);
    }
    // Older data: from the segment's map.
    let segment = segment_holding(s, offset).ok_or_else(out_of_range)?;
    read_segment(&segment, offset, max_bytes, hw, &mut result)?;
    Ok(result)
}

fn read_tail(s: &LogState, offset: i64, max_bytes: usize, result: &mut ReadResult) {
    for b in s.tail.starting_at(offset) {
        if b.base_offset >= s.high_watermark || (result.bytes > 0 && result.bytes + b.data.len() > max_bytes) {
            break;
        }
        result.bytes += b.data.len();
        result.records.push(b.data.clone());
    }
}

/// The committed bytes of one segment as a read sees them.
struct SegmentBytes<'a> {
    data: &'a Bytes,
    base_offset: i64,
    index: &'a SparseIndex,
    /// Where reading the map stops.
    end: usize,
}

fn segment_holding(s: &LogState, offset: i64) -> Option<SegmentBytes<'_>> {
    if offset >= s.active.base_offset {
        let a = &s.active;
        // The map of the active segment is read only below the cached
        // tail: pages at the end are still being rewritten by commits.
        let end = match s.tail.front() {
            Some(t) if t.segment_base == a.base_offset => t.position,
            _ => a.written_bytes,
        };
        return Some(SegmentBytes { data: &a.data, base_offset: a.base_offset, index: &a.index, end: end as usize });
    }
    let (_, seg) = s.sealed.range(..=offset).next_back()?;
    Some(SegmentBytes { data: &seg.data, base_offset: seg.base_offset, index: &seg.index, end: seg.data.len() })
}

/// Whole batches of `seg` from the one holding `offset`, below `hw`.
fn read_segment(
    seg: &SegmentBytes<'_>,
    offset: i64,
    max_bytes: usize,
    hw: i64,
    result: &mut ReadResult,
) -> Result<(), StorageError> {
    let (data, end) = (seg.data, seg.end);
    let mut pos = seg.index.lookup((offset - seg.base_offset) as u32) as usize;
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
    Ok(())
}
