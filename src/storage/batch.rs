//! Kafka RecordBatch v2 (magic 2): header parsing, validation, in-place
//! offset patching and the recovery scan. Interim version; see the helper's.

use std::ops::Range;

pub const LOG_OVERHEAD_BYTES: usize = 12;
pub const BATCH_HEADER_BYTES: usize = 61;
const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
const CRC_START: usize = 21;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch truncated: needs {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("batch length {batch_length} below the minimum {MIN_BATCH_LENGTH}")]
    LengthTooSmall { batch_length: i32 },
    #[error("unsupported magic {magic} (only 2)")]
    UnsupportedMagic { magic: i8 },
    #[error("CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("records count {records_count} does not match last offset delta {last_offset_delta}")]
    BadRecordCount { records_count: i32, last_offset_delta: i32 },
    #[error("batch of {total_bytes} bytes exceeds {max_bytes}")]
    TooLarge { total_bytes: usize, max_bytes: usize },
    #[error("empty records")]
    Empty,
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

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated { needed: BATCH_HEADER_BYTES, available: buf.len() });
        }
        let batch_length = be_i32(buf, 8);
        if batch_length < MIN_BATCH_LENGTH {
            return Err(BatchError::LengthTooSmall { batch_length });
        }
        let magic = buf[16] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic { magic });
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length,
            partition_leader_epoch: be_i32(buf, 12),
            magic,
            crc: be_i32(buf, 17) as u32,
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        })
    }

    pub fn total_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }
}

pub fn validate(buf: &[u8], max_bytes: usize) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(buf)?;
    let total = h.total_bytes();
    if total > max_bytes {
        return Err(BatchError::TooLarge { total_bytes: total, max_bytes });
    }
    if buf.len() < total {
        return Err(BatchError::Truncated { needed: total, available: buf.len() });
    }
    let computed = crc32c::crc32c(&buf[CRC_START..total]);
    if computed != h.crc {
        return Err(BatchError::CrcMismatch { stored: h.crc, computed });
    }
    if h.records_count < 1 || h.last_offset_delta != h.records_count - 1 {
        return Err(BatchError::BadRecordCount { records_count: h.records_count, last_offset_delta: h.last_offset_delta });
    }
    Ok(h)
}

pub fn validate_all(buf: &[u8], max_batch_bytes: usize) -> Result<Vec<(Range<usize>, BatchHeader)>, BatchError> {
    if buf.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let h = validate(&buf[pos..], max_batch_bytes)?;
        let end = pos + h.total_bytes();
        out.push((pos..end, h));
        pos = end;
    }
    Ok(out)
}

pub fn patch_base_offset(batch: &mut [u8], base_offset: i64, partition_leader_epoch: i32) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[12..16].copy_from_slice(&partition_leader_epoch.to_be_bytes());
}

#[derive(Debug)]
pub struct ScanOutcome {
    pub valid_bytes: usize,
    pub batches: u64,
    pub next_offset: Option<i64>,
    pub stop: ScanStop,
}

#[derive(Debug)]
pub enum ScanStop {
    CleanEnd,
    Invalid { position: usize, error: BatchError },
}

pub fn scan(buf: &[u8], expected_base_offset: Option<i64>, mut on_batch: impl FnMut(usize, &BatchHeader)) -> ScanOutcome {
    let mut pos = 0;
    let mut batches = 0;
    let mut next_offset: Option<i64> = None;
    let mut expected = expected_base_offset;
    let stop = loop {
        if buf.len() - pos < LOG_OVERHEAD_BYTES || be_i32(buf, pos + 8) == 0 {
            break ScanStop::CleanEnd;
        }
        match validate(&buf[pos..], usize::MAX) {
            Ok(h) => {
                if let Some(e) = expected {
                    if h.base_offset != e {
                        break ScanStop::Invalid { position: pos, error: BatchError::BadRecordCount { records_count: h.records_count, last_offset_delta: h.last_offset_delta } };
                    }
                }
                on_batch(pos, &h);
                batches += 1;
                next_offset = Some(h.last_offset() + 1);
                expected = next_offset;
                pos += h.total_bytes();
            }
            Err(error) => break ScanStop::Invalid { position: pos, error },
        }
    };
    ScanOutcome { valid_bytes: pos, batches, next_offset, stop }
}
