//! Sparse time index of one segment, the counterpart of Kafka's `.timeindex`:
//! it answers "from which byte position must a scan start to find the first
//! batch whose max timestamp is at least T" (ListOffsets by timestamp).
//!
//! Choice: a persistent file per sealed segment (`<base>.timeindex`), written
//! when the segment is sealed next to its offset index, loaded at open and
//! rebuilt by a header scan (like the offset index) when missing or damaged.
//! The active segment's index is rebuilt by the recovery scan that already
//! walks its batches. Cost: 16 bytes per entry, at most one entry per
//! `index_interval_bytes` of log (4 KiB by default: 0.4% of the log in memory
//! and on disk), and only when the running max timestamp grew; one extra small
//! file write per segment roll. Rebuilding at every open instead would have
//! meant reading every batch header of every sealed segment (the whole log,
//! paged in from disk) before a partition could serve.
//!
//! Entry `(ts, relative offset, position)`: `ts` is the largest batch max
//! timestamp of all the batches *before* the batch at `position`. So every
//! batch before the last entry whose `ts < T` has a max timestamp below T, and
//! the scan for T may start at that entry's position. Entries are strictly
//! increasing in `ts` and `position`.
//!
//! File format: entries as big-endian (i64 ts, u32 relative offset, u32
//! position), then a trailer of u32 entry count and u32 CRC-32C over
//! everything before it.

/// One entry: i64 timestamp, u32 relative offset, u32 position.
const ENTRY_BYTES: usize = 16;
/// u32 entry count, u32 CRC-32C.
const TRAILER_BYTES: usize = 8;
const _: () = assert!(ENTRY_BYTES == size_of::<i64>() + 2 * size_of::<u32>());
const _: () = assert!(TRAILER_BYTES == 2 * size_of::<u32>());

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    timestamp_ms: i64,
    relative_offset: u32,
    position: u32,
}

#[derive(Debug, Clone)]
pub struct TimeIndex {
    entries: Vec<Entry>,
    /// Largest batch max timestamp seen so far (-1: none).
    max_so_far_ms: i64,
    bytes_since_entry: u64,
}

impl Default for TimeIndex {
    fn default() -> Self {
        TimeIndex { entries: Vec::new(), max_so_far_ms: -1, bytes_since_entry: 0 }
    }
}

impl TimeIndex {
    pub fn new() -> TimeIndex {
        TimeIndex::default()
    }

    /// Records the batch starting at `position` (called in log order).
    pub fn on_batch(
        &mut self,
        relative_offset: u32,
        position: u32,
        batch_bytes: u64,
        batch_max_timestamp_ms: i64,
        interval_bytes: u32,
    ) {
        let grew = self.entries.last().map_or(self.max_so_far_ms >= 0, |e| self.max_so_far_ms > e.timestamp_ms);
        let after_last =
            self.entries.last().is_none_or(|e| relative_offset > e.relative_offset && position > e.position);
        if grew && after_last && self.bytes_since_entry >= u64::from(interval_bytes) {
            self.entries.push(Entry { timestamp_ms: self.max_so_far_ms, relative_offset, position });
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += batch_bytes;
        self.max_so_far_ms = self.max_so_far_ms.max(batch_max_timestamp_ms);
    }

    /// Byte position from which to scan for the first batch whose max
    /// timestamp is at least `timestamp_ms`.
    pub fn lookup(&self, timestamp_ms: i64) -> u32 {
        match self.entries.partition_point(|e| e.timestamp_ms < timestamp_ms) {
            0 => 0,
            i => self.entries[i - 1].position,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * ENTRY_BYTES + TRAILER_BYTES);
        for e in &self.entries {
            out.extend_from_slice(&e.timestamp_ms.to_be_bytes());
            out.extend_from_slice(&e.relative_offset.to_be_bytes());
            out.extend_from_slice(&e.position.to_be_bytes());
        }
        super::index::seal(&mut out, self.entries.len());
        out
    }

    /// Parses a time index file; `None` when it is truncated, corrupt, not
    /// strictly increasing, or points past `segment_bytes` (the caller then
    /// rebuilds it from the log).
    pub fn decode(bytes: &[u8], segment_bytes: u64) -> Option<TimeIndex> {
        let count = super::index::sealed_entry_count(bytes, ENTRY_BYTES, TRAILER_BYTES)?;
        let mut entries: Vec<Entry> = Vec::with_capacity(count);
        for chunk in bytes[..count * ENTRY_BYTES].chunks_exact(ENTRY_BYTES) {
            let e = Entry {
                timestamp_ms: i64::from_be_bytes(chunk[..8].try_into().ok()?),
                relative_offset: u32::from_be_bytes(chunk[8..12].try_into().ok()?),
                position: u32::from_be_bytes(chunk[12..].try_into().ok()?),
            };
            if let Some(last) = entries.last() {
                if e.timestamp_ms <= last.timestamp_ms
                    || e.relative_offset <= last.relative_offset
                    || e.position <= last.position
                {
                    return None;
                }
            }
            if u64::from(e.position) >= segment_bytes {
                return None;
            }
            entries.push(e);
        }
        let max_so_far_ms = entries.last().map_or(-1, |e| e.timestamp_ms);
        Some(TimeIndex { entries, max_so_far_ms, bytes_since_entry: u64::MAX / 2 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (position, bytes, max ts) of batches of 1000 bytes, one offset each.
    fn build(timestamps: &[i64], interval: u32) -> TimeIndex {
        let mut idx = TimeIndex::new();
        for (i, &ts) in timestamps.iter().enumerate() {
            idx.on_batch(i as u32, i as u32 * 1000, 1000, ts, interval);
        }
        idx
    }

    #[test]
    fn lookup_never_starts_after_the_first_batch_reaching_the_timestamp() {
        let ts = [10, 20, 15, 30, 30, 40, 5, 50, 60, 70];
        for interval in [0, 1500, 4096] {
            let idx = build(&ts, interval);
            for target in [0, 10, 11, 20, 21, 30, 35, 40, 45, 50, 70, 71] {
                let start = idx.lookup(target) as usize / 1000;
                let first = ts.iter().position(|&t| t >= target).unwrap_or(ts.len());
                assert!(
                    start <= first,
                    "target {target} interval {interval}: scan starts at batch {start}, answer is batch {first}"
                );
                assert!(ts[..start].iter().all(|&t| t < target));
            }
        }
    }

    #[test]
    fn time_index_round_trips_and_rejects_damage() {
        let idx = build(&[1, 2, 3, 4, 5, 6, 7, 8], 0);
        assert!(!idx.is_empty());
        let bytes = idx.encode();
        let back = TimeIndex::decode(&bytes, 1 << 20).expect("valid");
        assert_eq!(back.entries, idx.entries);
        let mut bad = bytes.clone();
        bad[3] ^= 1;
        assert!(TimeIndex::decode(&bad, 1 << 20).is_none());
        assert!(TimeIndex::decode(&bytes[..bytes.len() - 1], 1 << 20).is_none());
        assert!(TimeIndex::decode(&bytes, 2000).is_none(), "positions past the segment");
    }
}
