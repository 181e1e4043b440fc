//! Sparse offset index of one segment: every `index_interval_bytes` of log,
//! one entry (offset relative to the segment base, byte position). Kept in
//! memory for every segment; written next to a segment when it is sealed and
//! rebuilt from the log when that file is missing or damaged.
//!
//! File format: entries as big-endian (u32 relative offset, u32 position),
//! then a trailer of i64 max timestamp (ms) of the segment, u32 entry count
//! and u32 CRC-32C over everything before it.

/// One entry: u32 relative offset, u32 position.
const ENTRY_BYTES: usize = 2 * size_of::<u32>();
/// i64 max timestamp, u32 entry count, u32 CRC-32C.
const TRAILER_BYTES: usize = 16;
const _: () = assert!(ENTRY_BYTES == 8);
const _: () = assert!(TRAILER_BYTES == size_of::<i64>() + 2 * size_of::<u32>());

#[derive(Debug, Default, Clone)]
pub struct SparseIndex {
    entries: Vec<(u32, u32)>,
    bytes_since_entry: u64,
}

impl SparseIndex {
    pub fn new() -> SparseIndex {
        SparseIndex::default()
    }

    /// Records the batch starting at `position`, adding an entry when enough
    /// bytes have passed since the last one (the first batch always gets one).
    pub fn on_batch(&mut self, relative_offset: u32, position: u32, batch_bytes: u64, interval_bytes: u32) {
        if self.entries.is_empty() || self.bytes_since_entry >= u64::from(interval_bytes) {
            if let Some(&(last_offset, last_position)) = self.entries.last() {
                assert!(relative_offset > last_offset && position > last_position, "index must grow");
            }
            self.entries.push((relative_offset, position));
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += batch_bytes;
    }

    /// Byte position from which to scan for `relative_offset`: the last entry
    /// at or below it (0 when there is none).
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        match self.entries.partition_point(|&(o, _)| o <= relative_offset) {
            0 => 0,
            i => self.entries[i - 1].1,
        }
    }

    /// Last indexed offset at or after `position` is dropped (used when the log is truncated).
    pub fn truncate_to_position(&mut self, position: u32) {
        self.entries.retain(|&(_, p)| p < position);
        self.bytes_since_entry = u64::MAX / 2;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn encode(&self, max_timestamp_ms: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * ENTRY_BYTES + TRAILER_BYTES);
        for &(o, p) in &self.entries {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        out.extend_from_slice(&max_timestamp_ms.to_be_bytes());
        seal(&mut out, self.entries.len());
        out
    }

    /// Parses an index file; `None` when it is truncated, corrupt, or not
    /// strictly increasing, or points past `segment_bytes`.
    /// Returns the index and the segment's max timestamp.
    pub fn decode(bytes: &[u8], segment_bytes: u64) -> Option<(SparseIndex, i64)> {
        let count = sealed_entry_count(bytes, ENTRY_BYTES, TRAILER_BYTES)?;
        let entries_end = count * ENTRY_BYTES;
        let max_timestamp_ms = i64::from_be_bytes(bytes[entries_end..entries_end + 8].try_into().ok()?);
        let mut entries = Vec::with_capacity(count);
        for chunk in bytes[..entries_end].chunks_exact(ENTRY_BYTES) {
            let o = u32::from_be_bytes(chunk[..4].try_into().ok()?);
            let p = u32::from_be_bytes(chunk[4..].try_into().ok()?);
            if let Some(&(lo, lp)) = entries.last() {
                if o <= lo || p <= lp {
                    return None;
                }
            }
            if u64::from(p) >= segment_bytes {
                return None;
            }
            entries.push((o, p));
        }
        Some((SparseIndex { entries, bytes_since_entry: u64::MAX / 2 }, max_timestamp_ms))
    }
}

/// The framing both index files share (`.index` and `.timeindex`): whole
/// entries, a format's fixed fields, then the entry count (u32) and a
/// CRC-32C of everything before the CRC. Appends the count and the CRC.
pub(crate) fn seal(out: &mut Vec<u8>, entries: usize) {
    out.extend_from_slice(&(entries as u32).to_be_bytes());
    let crc = crc32c::crc32c(out);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Checks the framing `seal` wrote, for entries of `entry_bytes` and a
/// trailer (fixed fields, count, CRC) of `trailer_bytes`: `None` when the
/// file is truncated, its CRC-32C is wrong or its count does not match its
/// length; else the entry count.
pub(crate) fn sealed_entry_count(bytes: &[u8], entry_bytes: usize, trailer_bytes: usize) -> Option<usize> {
    if bytes.len() < trailer_bytes || !(bytes.len() - trailer_bytes).is_multiple_of(entry_bytes) {
        return None;
    }
    let body_len = bytes.len() - 4;
    let crc = u32::from_be_bytes(bytes[body_len..].try_into().ok()?);
    if crc32c::crc32c(&bytes[..body_len]) != crc {
        return None;
    }
    let count = u32::from_be_bytes(bytes[body_len - 4..body_len].try_into().ok()?) as usize;
    if count.checked_mul(entry_bytes)? != bytes.len() - trailer_bytes {
        return None;
    }
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_returns_last_entry_at_or_below_offset() {
        let mut idx = SparseIndex::new();
        idx.on_batch(0, 0, 5000, 4096);
        idx.on_batch(10, 5000, 5000, 4096);
        idx.on_batch(20, 10000, 100, 4096);
        idx.on_batch(21, 10100, 100, 4096);
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.lookup(0), 0);
        assert_eq!(idx.lookup(9), 0);
        assert_eq!(idx.lookup(10), 5000);
        assert_eq!(idx.lookup(25), 10000);
    }

    #[test]
    fn encoded_index_round_trips_and_rejects_a_flipped_byte() {
        let mut idx = SparseIndex::new();
        for i in 0..100u32 {
            idx.on_batch(i * 3, i * 5000, 5000, 4096);
        }
        let bytes = idx.encode(1234);
        let (back, max_ts) = SparseIndex::decode(&bytes, 1 << 30).expect("valid index");
        assert_eq!(back.entries, idx.entries);
        assert_eq!(max_ts, 1234);
        let mut bad = bytes.clone();
        bad[17] ^= 1;
        assert!(SparseIndex::decode(&bad, 1 << 30).is_none());
        assert!(SparseIndex::decode(&bytes[..bytes.len() - 3], 1 << 30).is_none());
    }
}
