//! Kafka RecordBatch v2 (magic 2) framing. This module owns the byte layout of
//! the 61-byte batch header, the checks a batch must pass before it is
//! appended (length, magic, CRC-32C, record count, size limit), the in-place
//! rewrite of the broker-assigned fields, and the recovery scan that finds where
//! a segment's valid data ends. Record bodies are never decoded here.
//!
//! Header layout, big-endian; the CRC covers bytes 21 to the end of the batch:
//!
//! | at | field                    | at | field              |
//! |----|--------------------------|----|--------------------|
//! |  0 | baseOffset i64           | 27 | baseTimestamp i64  |
//! |  8 | batchLength i32          | 35 | maxTimestamp i64   |
//! | 12 | partitionLeaderEpoch i32 | 43 | producerId i64     |
//! | 16 | magic i8                 | 51 | producerEpoch i16  |
//! | 17 | crc u32                  | 53 | baseSequence i32   |
//! | 21 | attributes i16           | 57 | recordsCount i32   |
//! | 23 | lastOffsetDelta i32      | 61 | records…           |

use std::ops::Range;

/// baseOffset and batchLength: the bytes not counted by batchLength.
pub const LOG_OVERHEAD_BYTES: usize = 12;
pub const BATCH_HEADER_BYTES: usize = 61;
/// batchLength of a batch with a header and no record bytes.
pub const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
pub const MAGIC: i8 = 2;

const LENGTH_AT: usize = 8;
const EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const CRC_START: usize = 21;

// The layout in the module doc, checked where it is used: each field ends
// where the next begins, and the header is the fields' sizes summed.
const _: () = assert!(LOG_OVERHEAD_BYTES == size_of::<i64>() + size_of::<i32>());
const _: () = assert!(LENGTH_AT == size_of::<i64>() && LENGTH_AT + size_of::<i32>() == LOG_OVERHEAD_BYTES);
const _: () = assert!(EPOCH_AT == LOG_OVERHEAD_BYTES && EPOCH_AT + size_of::<i32>() == MAGIC_AT);
const _: () = assert!(MAGIC_AT + size_of::<i8>() == CRC_AT && CRC_AT + size_of::<u32>() == CRC_START);
const _: () = assert!(
    BATCH_HEADER_BYTES
        == CRC_START
            + size_of::<i16>() // attributes
            + size_of::<i32>() // lastOffsetDelta
            + 2 * size_of::<i64>() // baseTimestamp, maxTimestamp
            + size_of::<i64>() // producerId
            + size_of::<i16>() // producerEpoch
            + 2 * size_of::<i32>() // baseSequence, recordsCount
);
const _: () = assert!(MIN_BATCH_LENGTH > 0 && MIN_BATCH_LENGTH as usize + LOG_OVERHEAD_BYTES == BATCH_HEADER_BYTES);

const COMPRESSION_MASK: i16 = 0b111;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("empty records")]
    Empty,
    #[error("batch truncated: needs {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    /// `validate_all`: bytes after the last complete batch that are not a
    /// complete batch themselves.
    #[error("{bytes} trailing bytes at position {position} do not form a complete batch")]
    TrailingBytes { position: usize, bytes: usize },
    #[error("batch length {batch_length} below the minimum {MIN_BATCH_LENGTH}")]
    LengthTooSmall { batch_length: i32 },
    #[error("unsupported magic {magic} (only {MAGIC})")]
    UnsupportedMagic { magic: i8 },
    #[error("CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("records count {records_count} does not match last offset delta {last_offset_delta}")]
    BadRecordCount { records_count: i32, last_offset_delta: i32 },
    #[error("batch of {total_bytes} bytes exceeds {max_bytes}")]
    TooLarge { total_bytes: usize, max_bytes: usize },
    /// `scan`: a batch does not start where the previous one ended.
    #[error("batch base offset {found}, expected {expected}")]
    OffsetGap { expected: i64, found: i64 },
    /// `scan`: the offset after the batch does not fit in an i64.
    #[error("base offset {base_offset} + last offset delta {last_offset_delta} overflows")]
    OffsetOverflow { base_offset: i64, last_offset_delta: i32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Reads the header without checking the CRC or anything past byte 61.
    /// Each problem is reported as soon as the bytes that show it are present,
    /// in this order: magic, batch length, fewer than 61 bytes. So a legacy
    /// (magic 0/1) message reads as `UnsupportedMagic`, and a negative length
    /// is reported as such even in a short buffer.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if let Some(&magic) = buf.get(MAGIC_AT) {
            let magic = magic as i8;
            if magic != MAGIC {
                return Err(BatchError::UnsupportedMagic { magic });
            }
        }
        if let Some(batch_length) = batch_length_of(buf) {
            if batch_length < MIN_BATCH_LENGTH {
                return Err(BatchError::LengthTooSmall { batch_length });
            }
        }
        let Some(h) = buf.first_chunk::<BATCH_HEADER_BYTES>() else {
            return Err(BatchError::Truncated { needed: BATCH_HEADER_BYTES, available: buf.len() });
        };
        Ok(BatchHeader {
            base_offset: i64::from_be_bytes(at(h, 0)),
            batch_length: i32::from_be_bytes(at(h, LENGTH_AT)),
            partition_leader_epoch: i32::from_be_bytes(at(h, EPOCH_AT)),
            magic: MAGIC,
            crc: u32::from_be_bytes(at(h, CRC_AT)),
            attributes: i16::from_be_bytes(at(h, 21)),
            last_offset_delta: i32::from_be_bytes(at(h, 23)),
            base_timestamp: i64::from_be_bytes(at(h, 27)),
            max_timestamp: i64::from_be_bytes(at(h, 35)),
            producer_id: i64::from_be_bytes(at(h, 43)),
            producer_epoch: i16::from_be_bytes(at(h, 51)),
            base_sequence: i32::from_be_bytes(at(h, 53)),
            records_count: i32::from_be_bytes(at(h, 57)),
        })
    }

    /// Bytes the whole batch occupies, log overhead included.
    pub fn total_bytes(&self) -> usize {
        // `parse` guarantees batch_length >= 49; the clamp only keeps
        // hand-built headers from overflowing.
        LOG_OVERHEAD_BYTES + self.batch_length.max(0) as usize
    }

    /// Wraps on overflow; `scan` rejects batches whose offsets overflow.
    pub fn last_offset(&self) -> i64 {
        self.base_offset.wrapping_add(i64::from(self.last_offset_delta))
    }

    /// 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd; 5-7 are not defined by Kafka.
    pub fn compression(&self) -> u8 {
        (self.attributes & COMPRESSION_MASK) as u8
    }

    pub fn timestamp_type_log_append(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// `N` bytes at a constant offset of the header.
fn at<const N: usize>(h: &[u8; BATCH_HEADER_BYTES], offset: usize) -> [u8; N] {
    std::array::from_fn(|i| h[offset + i])
}

fn batch_length_of(buf: &[u8]) -> Option<i32> {
    let bytes = buf.get(LENGTH_AT..LOG_OVERHEAD_BYTES)?;
    Some(i32::from_be_bytes(bytes.try_into().ok()?))
}

/// Fully validates the batch at the start of `buf`; bytes after it are
/// ignored (use `total_bytes` of the result to step over it). The size limit
/// is checked before the batch is required to be complete, so a huge declared
/// length reads as `TooLarge` rather than `Truncated`.
pub fn validate(buf: &[u8], max_bytes: usize) -> Result<BatchHeader, BatchError> {
    validate_with(buf, max_bytes, Crc::Check)
}

/// Whether a validation computes the CRC-32C over the batch (O(n) in its
/// bytes) or checks only its header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crc {
    Check,
    Skip,
}

/// `validate`, with the CRC checked or not; the checks run in the order
/// `validate` documents either way.
fn validate_with(buf: &[u8], max_bytes: usize, crc: Crc) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    let total_bytes = header.total_bytes();
    if total_bytes > max_bytes {
        return Err(BatchError::TooLarge { total_bytes, max_bytes });
    }
    let Some(batch) = buf.get(..total_bytes) else {
        return Err(BatchError::Truncated { needed: total_bytes, available: buf.len() });
    };
    if crc == Crc::Check {
        let computed = crc32c::crc32c(&batch[CRC_START..]);
        if computed != header.crc {
            return Err(BatchError::CrcMismatch { stored: header.crc, computed });
        }
    }
    if header.records_count < 1 || header.last_offset_delta != header.records_count - 1 {
        return Err(BatchError::BadRecordCount {
            records_count: header.records_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// One batch of a segment as recovery reads it back (`scan`): valid
/// (`validate`, the CRC per `crc`), starting at `expected_base_offset` when
/// given, with a next offset that fits an i64. Returns its header and that
/// next offset.
///
/// Both sides of a write apply it: the appender asserts it on every batch it
/// copies into a write buffer (the CRC only in debug builds), so what it
/// writes is what recovery will accept; recovery's scan stops at the first
/// batch that fails it.
pub fn check_in_log(buf: &[u8], expected_base_offset: Option<i64>, crc: Crc) -> Result<(BatchHeader, i64), BatchError> {
    let header = validate_with(buf, usize::MAX, crc)?;
    if let Some(expected) = expected_base_offset.filter(|&e| e != header.base_offset) {
        return Err(BatchError::OffsetGap { expected, found: header.base_offset });
    }
    let Some(next) = header.base_offset.checked_add(i64::from(header.last_offset_delta) + 1) else {
        return Err(BatchError::OffsetOverflow {
            base_offset: header.base_offset,
            last_offset_delta: header.last_offset_delta,
        });
    };
    Ok((header, next))
}

/// Validates a produce request's `records`: one or more batches back to back
/// that must use up every byte. `max_batch_bytes` applies to each batch.
pub fn validate_all(buf: &[u8], max_batch_bytes: usize) -> Result<Vec<(Range<usize>, BatchHeader)>, BatchError> {
    if buf.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut batches = Vec::new();
    let mut position = 0;
    while position < buf.len() {
        let rest = &buf[position..];
        let header = match validate(rest, max_batch_bytes) {
            Ok(header) => header,
            Err(BatchError::Truncated { .. }) if position > 0 => {
                return Err(BatchError::TrailingBytes { position, bytes: rest.len() });
            }
            Err(error) => return Err(error),
        };
        let end = position + header.total_bytes();
        batches.push((position..end, header));
        position = end;
    }
    Ok(batches)
}

/// Writes the broker-assigned baseOffset and partitionLeaderEpoch. Both lie
/// before the CRC-covered range, so the CRC stays valid.
///
/// # Panics
/// If `batch` is shorter than 16 bytes; pass a range from `validate_all`.
pub fn patch_base_offset(batch: &mut [u8], base_offset: i64, partition_leader_epoch: i32) {
    batch[..LENGTH_AT].copy_from_slice(&base_offset.to_be_bytes());
    batch[EPOCH_AT..MAGIC_AT].copy_from_slice(&partition_leader_epoch.to_be_bytes());
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Length of the prefix made of valid batches: where the next append goes.
    pub valid_bytes: usize,
    pub batches: u64,
    /// `last_offset() + 1` of the last valid batch; `None` if there was none.
    pub next_offset: Option<i64>,
    pub stop: ScanStop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// Fewer than 12 bytes left, or a zero batchLength (preallocated space).
    CleanEnd,
    /// The batch at `position` failed validation; nothing from there on counts.
    Invalid { position: usize, error: BatchError },
}

/// Recovery scan of a segment from position 0, calling `on_batch` with the
/// position and header of each valid batch. With `expected_base_offset`, the
/// first batch must start at that offset and each following one where the
/// previous ended (`OffsetGap` otherwise); without it, offsets are not checked
/// for continuity.
pub fn scan(
    buf: &[u8],
    expected_base_offset: Option<i64>,
    mut on_batch: impl FnMut(usize, &BatchHeader),
) -> ScanOutcome {
    let mut position = 0;
    let mut batches = 0;
    let mut next_offset = None;
    let mut expected = expected_base_offset;
    let stop = loop {
        let rest = &buf[position..];
        if matches!(batch_length_of(rest), None | Some(0)) {
            break ScanStop::CleanEnd;
        }
        let (header, next) = match check_in_log(rest, expected, Crc::Check) {
            Ok(checked) => checked,
            Err(error) => break ScanStop::Invalid { position, error },
        };
        on_batch(position, &header);
        batches += 1;
        position += header.total_bytes();
        next_offset = Some(next);
        if expected.is_some() {
            expected = Some(next);
        }
    };
    ScanOutcome { valid_bytes: position, batches, next_offset, stop }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Header fields a test batch is built from; `build` fills in
    /// batchLength, magic and the CRC.
    #[derive(Clone, Copy)]
    struct Spec {
        base_offset: i64,
        partition_leader_epoch: i32,
        attributes: i16,
        last_offset_delta: i32,
        base_timestamp: i64,
        max_timestamp: i64,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        records_count: i32,
        record_bytes: usize,
    }

    impl Spec {
        fn new(base_offset: i64, records_count: i32, record_bytes: usize) -> Spec {
            Spec {
                base_offset,
                partition_leader_epoch: -1,
                attributes: 0,
                last_offset_delta: records_count - 1,
                base_timestamp: 1_700_000_000_000,
                max_timestamp: 1_700_000_000_999,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                records_count,
                record_bytes,
            }
        }

        fn build(&self) -> Vec<u8> {
            let total = BATCH_HEADER_BYTES + self.record_bytes;
            let mut b = vec![0u8; total];
            b[0..8].copy_from_slice(&self.base_offset.to_be_bytes());
            b[8..12].copy_from_slice(&((total - LOG_OVERHEAD_BYTES) as i32).to_be_bytes());
            b[12..16].copy_from_slice(&self.partition_leader_epoch.to_be_bytes());
            b[16] = MAGIC as u8;
            b[21..23].copy_from_slice(&self.attributes.to_be_bytes());
            b[23..27].copy_from_slice(&self.last_offset_delta.to_be_bytes());
            b[27..35].copy_from_slice(&self.base_timestamp.to_be_bytes());
            b[35..43].copy_from_slice(&self.max_timestamp.to_be_bytes());
            b[43..51].copy_from_slice(&self.producer_id.to_be_bytes());
            b[51..53].copy_from_slice(&self.producer_epoch.to_be_bytes());
            b[53..57].copy_from_slice(&self.base_sequence.to_be_bytes());
            b[57..61].copy_from_slice(&self.records_count.to_be_bytes());
            for (i, byte) in b[BATCH_HEADER_BYTES..].iter_mut().enumerate() {
                *byte = (i * 31 + 7) as u8; // fake record bytes
            }
            seal(&mut b);
            b
        }
    }

    fn batch(base_offset: i64, records_count: i32, record_bytes: usize) -> Vec<u8> {
        Spec::new(base_offset, records_count, record_bytes).build()
    }

    fn seal(b: &mut [u8]) {
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[CRC_AT..CRC_START].copy_from_slice(&crc.to_be_bytes());
    }

    /// Batches with consecutive offsets, `records` records each.
    fn log(count: usize, first_offset: i64, records: i32, record_bytes: usize) -> Vec<u8> {
        (0..count).flat_map(|i| batch(first_offset + i as i64 * i64::from(records), records, record_bytes)).collect()
    }

    fn scan_all(buf: &[u8], expected: Option<i64>) -> (ScanOutcome, Vec<(usize, i64)>) {
        let mut seen = Vec::new();
        let outcome = scan(buf, expected, |pos, h| seen.push((pos, h.base_offset)));
        (outcome, seen)
    }

    // --- parse ---

    #[test]
    fn parse_reads_every_header_field() {
        let spec = Spec {
            base_offset: 0x0102_0304_0506_0708,
            partition_leader_epoch: 9,
            attributes: 0x0013,
            last_offset_delta: 4,
            base_timestamp: 11,
            max_timestamp: 12,
            producer_id: 13,
            producer_epoch: 14,
            base_sequence: 15,
            records_count: 5,
            record_bytes: 10,
        };
        let b = spec.build();
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(
            h,
            BatchHeader {
                base_offset: 0x0102_0304_0506_0708,
                batch_length: 59,
                partition_leader_epoch: 9,
                magic: 2,
                crc: crc32c::crc32c(&b[21..]),
                attributes: 0x0013,
                last_offset_delta: 4,
                base_timestamp: 11,
                max_timestamp: 12,
                producer_id: 13,
                producer_epoch: 14,
                base_sequence: 15,
                records_count: 5,
            }
        );
    }

    #[test]
    fn parse_needs_the_full_61_byte_header() {
        let b = batch(0, 1, 0);
        assert_eq!(BatchHeader::parse(&b[..60]), Err(BatchError::Truncated { needed: 61, available: 60 }));
        assert!(BatchHeader::parse(&b[..61]).is_ok());
    }

    #[test]
    fn parse_does_not_check_crc_or_record_count() {
        let mut b = batch(0, 3, 20);
        b[CRC_AT] ^= 0xff;
        b[57..61].copy_from_slice(&0i32.to_be_bytes());
        assert!(BatchHeader::parse(&b).is_ok());
    }

    #[test]
    fn parse_rejects_magic_other_than_2() {
        let mut b = batch(0, 1, 0);
        b[MAGIC_AT] = 1;
        assert_eq!(BatchHeader::parse(&b), Err(BatchError::UnsupportedMagic { magic: 1 }));
    }

    #[test]
    fn legacy_message_reads_as_unsupported_magic_not_bad_length() {
        let mut b = batch(0, 1, 0);
        b[8..12].copy_from_slice(&20i32.to_be_bytes());
        b[MAGIC_AT] = 0;
        assert_eq!(BatchHeader::parse(&b), Err(BatchError::UnsupportedMagic { magic: 0 }));
    }

    #[test]
    fn parse_rejects_batch_length_below_49() {
        let mut b = batch(0, 1, 0);
        b[8..12].copy_from_slice(&48i32.to_be_bytes());
        assert_eq!(BatchHeader::parse(&b), Err(BatchError::LengthTooSmall { batch_length: 48 }));
    }

    #[test]
    fn negative_length_is_reported_even_when_header_is_cut() {
        let mut b = batch(0, 1, 0);
        b[8..12].copy_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(BatchHeader::parse(&b[..20]), Err(BatchError::LengthTooSmall { batch_length: -1 }));
    }

    #[test]
    fn total_bytes_adds_log_overhead_to_batch_length() {
        let h = BatchHeader::parse(&batch(0, 1, 100)).unwrap();
        assert_eq!(h.batch_length, 149);
        assert_eq!(h.total_bytes(), 161);
    }

    #[test]
    fn last_offset_is_base_offset_plus_delta() {
        let h = BatchHeader::parse(&batch(100, 5, 0)).unwrap();
        assert_eq!(h.last_offset(), 104);
    }

    #[test]
    fn compression_is_the_low_three_attribute_bits() {
        for codec in 0..8i16 {
            let spec = Spec { attributes: codec | 0b11_1000, ..Spec::new(0, 1, 0) };
            assert_eq!(BatchHeader::parse(&spec.build()).unwrap().compression(), codec as u8);
        }
    }

    #[test]
    fn attribute_bits_3_4_5_are_timestamp_type_transactional_control() {
        let flags = |attributes: i16| {
            let h = BatchHeader::parse(&Spec { attributes, ..Spec::new(0, 1, 0) }.build()).unwrap();
            (h.timestamp_type_log_append(), h.is_transactional(), h.is_control())
        };
        assert_eq!(flags(0b000_111), (false, false, false));
        assert_eq!(flags(0b001_000), (true, false, false));
        assert_eq!(flags(0b010_000), (false, true, false));
        assert_eq!(flags(0b100_000), (false, false, true));
    }

    // --- validate ---

    #[test]
    fn well_formed_batch_is_valid() {
        let b = batch(42, 10, 500);
        let h = validate(&b, usize::MAX).unwrap();
        assert_eq!((h.base_offset, h.records_count, h.total_bytes()), (42, 10, b.len()));
    }

    #[test]
    fn batch_with_no_record_bytes_is_valid() {
        let b = batch(0, 1, 0);
        assert_eq!(validate(&b, usize::MAX).unwrap().batch_length, MIN_BATCH_LENGTH);
    }

    #[test]
    fn validate_ignores_bytes_after_the_batch() {
        let mut b = batch(7, 1, 30);
        let len = b.len();
        b.extend_from_slice(&[0xee; 100]);
        assert_eq!(validate(&b, usize::MAX).unwrap().total_bytes(), len);
    }

    #[test]
    fn batch_longer_than_buffer_is_truncated() {
        let b = batch(0, 1, 100);
        assert_eq!(validate(&b[..150], usize::MAX), Err(BatchError::Truncated { needed: 161, available: 150 }));
    }

    #[test]
    fn crc_mismatch_is_reported_with_both_values() {
        let mut b = batch(0, 1, 100);
        let good = crc32c::crc32c(&b[21..]);
        b[100] ^= 1;
        let computed = crc32c::crc32c(&b[21..]);
        assert_eq!(validate(&b, usize::MAX), Err(BatchError::CrcMismatch { stored: good, computed }));
    }

    #[test]
    fn crc_covers_attributes_through_last_record_byte() {
        let b = batch(0, 1, 100);
        for at in [CRC_START, b.len() - 1] {
            let mut damaged = b.clone();
            damaged[at] ^= 0x80;
            assert!(matches!(validate(&damaged, usize::MAX), Err(BatchError::CrcMismatch { .. })), "byte {at}");
        }
    }

    #[test]
    fn batch_without_records_is_rejected() {
        let b = Spec { last_offset_delta: -1, ..Spec::new(0, 0, 0) }.build();
        assert_eq!(
            validate(&b, usize::MAX),
            Err(BatchError::BadRecordCount { records_count: 0, last_offset_delta: -1 })
        );
    }

    #[test]
    fn last_offset_delta_must_be_records_count_minus_one() {
        let b = Spec { last_offset_delta: 5, ..Spec::new(0, 5, 0) }.build();
        assert_eq!(
            validate(&b, usize::MAX),
            Err(BatchError::BadRecordCount { records_count: 5, last_offset_delta: 5 })
        );
    }

    #[test]
    fn batch_over_max_bytes_is_too_large() {
        let b = batch(0, 1, 100);
        assert_eq!(validate(&b, 160), Err(BatchError::TooLarge { total_bytes: 161, max_bytes: 160 }));
        assert!(validate(&b, 161).is_ok());
    }

    #[test]
    fn size_limit_is_checked_before_the_batch_must_be_complete() {
        let b = batch(0, 1, 100);
        assert_eq!(validate(&b[..70], 100), Err(BatchError::TooLarge { total_bytes: 161, max_bytes: 100 }));
    }

    // --- validate_all ---

    #[test]
    fn validate_all_returns_range_and_header_per_batch() {
        let mut buf = batch(0, 2, 10);
        buf.extend(batch(0, 3, 20));
        let all = validate_all(&buf, usize::MAX).unwrap();
        let summary: Vec<_> = all.iter().map(|(r, h)| (r.clone(), h.records_count)).collect();
        assert_eq!(summary, vec![(0..71, 2), (71..152, 3)]);
    }

    #[test]
    fn validate_all_rejects_empty_records() {
        assert_eq!(validate_all(&[], usize::MAX), Err(BatchError::Empty));
    }

    #[test]
    fn validate_all_rejects_an_incomplete_batch_after_the_last_one() {
        let mut buf = batch(0, 1, 10);
        buf.extend(&batch(1, 1, 10)[..30]);
        assert_eq!(validate_all(&buf, usize::MAX), Err(BatchError::TrailingBytes { position: 71, bytes: 30 }));
    }

    #[test]
    fn validate_all_reports_a_lone_incomplete_batch_as_truncated() {
        let b = batch(0, 1, 10);
        assert_eq!(validate_all(&b[..70], usize::MAX), Err(BatchError::Truncated { needed: 71, available: 70 }));
    }

    #[test]
    fn validate_all_fails_if_any_batch_is_invalid() {
        let mut buf = log(3, 0, 1, 10);
        buf[71 + 65] ^= 1;
        assert!(matches!(validate_all(&buf, usize::MAX), Err(BatchError::CrcMismatch { .. })));
    }

    #[test]
    fn validate_all_applies_the_size_limit_per_batch() {
        let buf = log(4, 0, 1, 39); // 100-byte batches
        assert_eq!(validate_all(&buf, 100).unwrap().len(), 4);
        assert!(matches!(validate_all(&buf, 99), Err(BatchError::TooLarge { .. })));
    }

    // --- patch_base_offset ---

    #[test]
    fn patching_base_offset_keeps_crc_valid() {
        let mut b = batch(0, 3, 50);
        patch_base_offset(&mut b, 1_000_000, 7);
        let h = validate(&b, usize::MAX).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch, h.last_offset()), (1_000_000, 7, 1_000_002));
    }

    #[test]
    fn patching_touches_only_base_offset_and_leader_epoch_bytes() {
        let original = batch(0, 3, 50);
        let mut b = original.clone();
        patch_base_offset(&mut b, -1, 0x5a5a_5a5a);
        for (i, (new, old)) in b.iter().zip(&original).enumerate() {
            let patched = (0..8).contains(&i) || (12..16).contains(&i);
            assert_eq!(*new != *old, patched, "byte {i}");
        }
    }

    // --- scan ---

    #[test]
    fn scan_of_empty_segment_is_a_clean_end_with_nothing() {
        let (outcome, seen) = scan_all(&[], Some(0));
        assert_eq!(outcome, ScanOutcome { valid_bytes: 0, batches: 0, next_offset: None, stop: ScanStop::CleanEnd });
        assert!(seen.is_empty());
    }

    #[test]
    fn scan_reports_position_and_header_of_each_batch() {
        let buf = log(3, 10, 2, 10);
        let (outcome, seen) = scan_all(&buf, Some(10));
        assert_eq!(seen, vec![(0, 10), (71, 12), (142, 14)]);
        assert_eq!(
            outcome,
            ScanOutcome { valid_bytes: 213, batches: 3, next_offset: Some(16), stop: ScanStop::CleanEnd }
        );
    }

    #[test]
    fn scan_stops_at_zeroed_preallocated_space() {
        let mut buf = log(2, 0, 1, 10);
        buf.resize(4096, 0);
        let (outcome, _) = scan_all(&buf, Some(0));
        assert_eq!((outcome.valid_bytes, outcome.batches, outcome.stop), (142, 2, ScanStop::CleanEnd));
    }

    #[test]
    fn scan_treats_zero_length_as_end_whatever_the_offset_bytes() {
        let mut buf = log(1, 0, 1, 10);
        buf.extend([0xff; 8]);
        buf.extend([0; 100]);
        assert_eq!(scan_all(&buf, Some(0)).0.stop, ScanStop::CleanEnd);
    }

    #[test]
    fn scan_ends_cleanly_when_fewer_than_12_bytes_remain() {
        let mut buf = log(1, 0, 1, 10);
        buf.extend([0xab; 11]);
        let (outcome, _) = scan_all(&buf, Some(0));
        assert_eq!((outcome.valid_bytes, outcome.stop), (71, ScanStop::CleanEnd));
    }

    #[test]
    fn scan_stops_at_batch_cut_in_half() {
        let mut buf = log(2, 0, 1, 100);
        buf.truncate(161 + 80);
        let (outcome, seen) = scan_all(&buf, Some(0));
        assert_eq!(seen.len(), 1);
        assert_eq!(outcome.valid_bytes, 161);
        assert_eq!(outcome.next_offset, Some(1));
        assert_eq!(
            outcome.stop,
            ScanStop::Invalid { position: 161, error: BatchError::Truncated { needed: 161, available: 80 } }
        );
    }

    #[test]
    fn scan_stops_at_bad_crc() {
        let mut buf = log(3, 0, 1, 10);
        buf[71 * 2 + 70] ^= 4;
        let (outcome, seen) = scan_all(&buf, Some(0));
        assert_eq!(seen.len(), 2);
        assert!(matches!(outcome.stop, ScanStop::Invalid { position: 142, error: BatchError::CrcMismatch { .. } }));
    }

    #[test]
    fn scan_stops_at_bad_magic() {
        let mut buf = log(2, 0, 1, 10);
        buf[71 + MAGIC_AT] = 1;
        assert_eq!(
            scan_all(&buf, Some(0)).0.stop,
            ScanStop::Invalid { position: 71, error: BatchError::UnsupportedMagic { magic: 1 } }
        );
    }

    #[test]
    fn scan_stops_at_negative_length() {
        let mut buf = log(2, 0, 1, 10);
        buf[71 + 8..71 + 12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(
            scan_all(&buf, Some(0)).0.stop,
            ScanStop::Invalid { position: 71, error: BatchError::LengthTooSmall { batch_length: -5 } }
        );
    }

    #[test]
    fn scan_stops_where_offsets_do_not_continue() {
        let mut buf = log(2, 0, 2, 10);
        buf.extend(batch(5, 1, 10)); // 4 expected
        let (outcome, seen) = scan_all(&buf, Some(0));
        assert_eq!((seen.len(), outcome.valid_bytes, outcome.next_offset), (2, 142, Some(4)));
        assert_eq!(
            outcome.stop,
            ScanStop::Invalid { position: 142, error: BatchError::OffsetGap { expected: 4, found: 5 } }
        );
    }

    #[test]
    fn scan_checks_first_batch_against_expected_base_offset() {
        let buf = log(1, 100, 1, 10);
        assert_eq!(
            scan_all(&buf, Some(99)).0.stop,
            ScanStop::Invalid { position: 0, error: BatchError::OffsetGap { expected: 99, found: 100 } }
        );
    }

    #[test]
    fn scan_without_expected_base_offset_skips_continuity_checks() {
        let mut buf = batch(50, 1, 10);
        buf.extend(batch(3, 2, 10));
        let (outcome, _) = scan_all(&buf, None);
        assert_eq!((outcome.batches, outcome.next_offset, outcome.stop), (2, Some(5), ScanStop::CleanEnd));
    }

    #[test]
    fn scan_stops_at_batch_whose_offsets_overflow() {
        let buf = batch(i64::MAX - 1, 2, 10);
        assert_eq!(
            scan_all(&buf, None).0.stop,
            ScanStop::Invalid {
                position: 0,
                error: BatchError::OffsetOverflow { base_offset: i64::MAX - 1, last_offset_delta: 1 }
            }
        );
    }

    // --- robustness ---

    /// xorshift64*: deterministic, good enough to shake out panics.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Checks the invariants every result must satisfy, whatever the input.
    fn check_all(buf: &[u8], max: usize) {
        if let Ok(h) = validate(buf, max) {
            assert!(h.total_bytes() <= buf.len().min(max));
        }
        if let Ok(batches) = validate_all(buf, max) {
            let mut end = 0;
            for (range, h) in &batches {
                assert_eq!((range.start, range.len()), (end, h.total_bytes()));
                end = range.end;
            }
            assert_eq!(end, buf.len());
        }
        let mut end = 0;
        let outcome = scan(buf, Some(0), |pos, h| {
            assert_eq!(pos, end);
            end += h.total_bytes();
        });
        assert_eq!(outcome.valid_bytes, end);
        assert!(outcome.valid_bytes <= buf.len());
    }

    #[test]
    fn random_truncated_and_bit_flipped_input_never_panics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let valid = log(8, 0, 3, 200);
        for round in 0..20_000 {
            let mut buf = match round % 4 {
                // Pure noise.
                0 => (0..rng.below(400)).map(|_| rng.next() as u8).collect(),
                // A valid log cut anywhere.
                1 => valid[..rng.below(valid.len() + 1)].to_vec(),
                // A valid log with a few damaged bytes.
                2 => {
                    let mut b = valid.clone();
                    for _ in 0..1 + rng.below(4) {
                        let at = rng.below(b.len());
                        b[at] ^= 1 << rng.below(8);
                    }
                    b
                }
                // Noise behind a plausible prefix: magic 2, small length.
                _ => {
                    let mut b: Vec<u8> = (0..61 + rng.below(300)).map(|_| rng.next() as u8).collect();
                    let len = rng.below(b.len()) as i32 - 20;
                    b[8..12].copy_from_slice(&len.to_be_bytes());
                    b[16] = 2;
                    b
                }
            };
            if round % 7 == 0 {
                // Hostile extremes in the fields that feed arithmetic.
                let at = [0usize, 8, 23, 57][rng.below(4)];
                let extreme = [i32::MIN, i32::MAX, -1, 0][rng.below(4)];
                if let Some(field) = buf.get_mut(at..at + 4) {
                    field.copy_from_slice(&extreme.to_be_bytes());
                }
            }
            check_all(&buf, [usize::MAX, 300, 0][rng.below(3)]);
        }
    }

    #[test]
    fn any_single_bit_flip_outside_patchable_fields_is_detected() {
        let b = batch(0, 3, 40);
        for byte in (LENGTH_AT..b.len()).filter(|i| !(EPOCH_AT..MAGIC_AT).contains(i)) {
            for bit in 0..8 {
                let mut damaged = b.clone();
                damaged[byte] ^= 1 << bit;
                assert!(validate(&damaged, usize::MAX).is_err(), "byte {byte} bit {bit}");
            }
        }
    }
}
