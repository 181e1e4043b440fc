//! ListOffsets by timestamp, on the partition's owning shard.
//!
//! `offset_for_timestamp(T)`: the first segment (in offset order) whose max
//! timestamp is at least T holds the answer; its time index gives the byte
//! position to scan from; the first batch there with max timestamp >= T is
//! the one (Kafka semantics). Inside an uncompressed batch the records are
//! walked to return the first record whose own timestamp is >= T, with that
//! timestamp, as Kafka does; for a compressed batch ringmq does not
//! decompress and answers the batch's first offset and its max timestamp (a
//! consumer starting there sees a few earlier records of that batch).
//! Offsets below the log start offset are never returned.
//!
//! `offset_of_max_timestamp()` (ListOffsets -3, KIP-734): the first record
//! holding the largest timestamp in the log.
//!
//! Committed data only: the active segment's map is read below the cached
//! tail and the tail from memory, as `reader` does.

use std::ops::ControlFlow;

use super::batch::{BatchHeader, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES};
use super::state::LogState;
use super::time_index::TimeIndex;

/// One segment as the lookup sees it.
struct SegmentView<'a> {
    base_offset: i64,
    max_timestamp_ms: i64,
    time_index: &'a TimeIndex,
    active: bool,
}

fn segments(s: &LogState) -> Vec<SegmentView<'_>> {
    let mut out: Vec<SegmentView<'_>> = s
        .sealed
        .values()
        .map(|seg| SegmentView {
            base_offset: seg.base_offset,
            max_timestamp_ms: seg.max_timestamp_ms,
            time_index: &seg.time_index,
            active: false,
        })
        .collect();
    out.push(SegmentView {
        base_offset: s.active.base_offset,
        max_timestamp_ms: s.active.max_timestamp_ms,
        time_index: &s.active.time_index,
        active: true,
    });
    out
}

/// Calls `f` with each committed batch (header and whole bytes) of the
/// segment, from byte `from` on, until it breaks.
fn for_each_batch<R>(
    s: &LogState,
    seg: &SegmentView<'_>,
    from: usize,
    mut f: impl FnMut(&BatchHeader, &[u8]) -> ControlFlow<R>,
) -> Option<R> {
    let hw = s.high_watermark;
    let (data, end): (&[u8], usize) = if seg.active {
        let a = &s.active;
        // The cached tail is contiguous up to the end: its first batch in
        // this segment is where the map stops being read.
        let end = s.tail.start_in_segment(a.base_offset).unwrap_or(a.written_bytes);
        (&a.data[..], end as usize)
    } else {
        let sealed = s.sealed.get(&seg.base_offset)?;
        (&sealed.data[..], sealed.data.len())
    };
    let mut pos = from;
    while pos + LOG_OVERHEAD_BYTES <= end {
        let Ok(header) = BatchHeader::parse(&data[pos..end]) else { break };
        let next = pos + header.total_bytes();
        if next > end || header.base_offset >= hw {
            return None;
        }
        if let ControlFlow::Break(r) = f(&header, &data[pos..next]) {
            return Some(r);
        }
        pos = next;
    }
    if seg.active {
        for b in s.tail.iter().filter(|b| b.segment_base == seg.base_offset && b.position as usize >= from) {
            if b.base_offset >= hw {
                break;
            }
            let Ok(header) = BatchHeader::parse(&b.data) else { break };
            if let ControlFlow::Break(r) = f(&header, &b.data) {
                return Some(r);
            }
        }
    }
    None
}

/// Reads a zigzag varint (at most 10 bytes) at `*pos`.
fn varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

/// The first record of an uncompressed batch at or after `min_offset` whose
/// timestamp is >= `timestamp_ms`: (offset, timestamp). `None` when the batch
/// is compressed, uses log-append time, or cannot be walked.
fn first_record_at_or_after(
    header: &BatchHeader,
    batch: &[u8],
    timestamp_ms: i64,
    min_offset: i64,
) -> Option<(i64, i64)> {
    if header.compression() != 0 || header.timestamp_type_log_append() {
        return None;
    }
    let mut pos = BATCH_HEADER_BYTES;
    for _ in 0..header.records_count.max(0) {
        let len = usize::try_from(varint(batch, &mut pos)?).ok()?;
        let record_end = pos.checked_add(len)?;
        if record_end > batch.len() {
            return None;
        }
        let mut p = pos + 1; // attributes
        let ts = header.base_timestamp.checked_add(varint(&batch[..record_end], &mut p)?)?;
        let offset = header.base_offset.checked_add(varint(&batch[..record_end], &mut p)?)?;
        if offset >= min_offset && ts >= timestamp_ms {
            return Some((offset, ts));
        }
        pos = record_end;
    }
    None
}

/// The first offset (at or after the log start) whose record timestamp is
/// >= `timestamp_ms`, with that timestamp; `None` when there is none.
pub(crate) fn offset_for_timestamp(s: &LogState, timestamp_ms: i64) -> Option<(i64, i64)> {
    let start = s.log_start_offset;
    for seg in segments(s) {
        if seg.max_timestamp_ms < timestamp_ms {
            continue;
        }
        let from = seg.time_index.lookup(timestamp_ms) as usize;
        let found = for_each_batch(s, &seg, from, |h, bytes| {
            if h.last_offset() < start || h.is_control() || h.max_timestamp < timestamp_ms {
                return ControlFlow::Continue(());
            }
            let exact = first_record_at_or_after(h, bytes, timestamp_ms, start);
            ControlFlow::Break(exact.unwrap_or((h.base_offset.max(start), h.max_timestamp)))
        });
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The first record holding the largest timestamp at or after the log
/// start: (offset, timestamp); `None` for an empty log.
pub(crate) fn offset_of_max_timestamp(s: &LogState) -> Option<(i64, i64)> {
    let start = s.log_start_offset;
    let segs = segments(s);
    let maxima = segment_maxima(s, &segs);
    let best = *maxima.iter().max()?;
    if best < 0 {
        // Nothing committed (or only records without timestamps).
        return None;
    }
    let i = maxima.iter().position(|&m| m == best)?;
    for_each_batch(s, &segs[i], 0, |h, bytes| {
        if h.last_offset() < start || h.is_control() || h.max_timestamp != best {
            return ControlFlow::Continue(());
        }
        ControlFlow::Break(first_record_at_or_after(h, bytes, best, start).unwrap_or((h.base_offset.max(start), best)))
    })
}

/// Each segment's max timestamp at or after the log start: the first
/// segment may hold batches below the start, whose timestamps do not count.
fn segment_maxima(s: &LogState, segs: &[SegmentView<'_>]) -> Vec<i64> {
    let start = s.log_start_offset;
    segs.iter()
        .enumerate()
        .map(|(i, seg)| {
            if i > 0 || seg.base_offset >= start {
                return seg.max_timestamp_ms;
            }
            let mut max = -1;
            for_each_batch::<()>(s, seg, 0, |h, _| {
                if h.last_offset() >= start && !h.is_control() {
                    max = max.max(h.max_timestamp);
                }
                ControlFlow::Continue(())
            });
            max
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_varints_decode() {
        let mut pos = 0;
        // 0 -> 0, 1 -> -1, 2 -> 1, 300 (zigzag 600 = 0xd8 0x04)
        let buf = [0x00, 0x01, 0x02, 0xd8, 0x04];
        assert_eq!(varint(&buf, &mut pos), Some(0));
        assert_eq!(varint(&buf, &mut pos), Some(-1));
        assert_eq!(varint(&buf, &mut pos), Some(1));
        assert_eq!(varint(&buf, &mut pos), Some(300));
        assert_eq!(varint(&buf, &mut pos), None);
    }
}
