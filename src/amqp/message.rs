//! How an AMQP message is stored in a queue's log: as a Kafka RecordBatch v2
//! holding one record, so that the log's validation, group commit, recovery
//! and CRC apply to queues exactly as to topics.
//!
//! The record's value is an envelope:
//!
//! ```text
//! 0  u8   version (1)
//! 1  u8   flags: bit 0 persistent (delivery-mode 2)
//! 2  u8   priority (0 without one)
//! 3  u8   reserved, 0
//! 4  i64  expires at, ms since the epoch (0: never)
//! 12 i64  due at, ms since the epoch (0: now)
//! 20 u8 + bytes   exchange the message was published to
//!    u8 + bytes   routing key
//!    u32 + bytes  properties: flags and list, as the publisher sent them
//!    ...          body, to the end of the value
//! ```
//!
//! A publish is built in place: the batch header, record header and envelope
//! first (their lengths follow from the body size the content header
//! announces), then the body frames' bytes go into the space left for them
//! (see `PendingBody`), then the CRC. A delivery is framed from the stored
//! bytes: properties and body are slices of the batch (`StoredMessage`).

use bytes::{BufMut, Bytes, BytesMut};

use crate::storage::batch::{BATCH_HEADER_BYTES, MAGIC};

/// Envelope bytes before the exchange name.
const ENVELOPE_FIXED_BYTES: usize = 20;
const ENVELOPE_VERSION: u8 = 1;
const FLAG_PERSISTENT: u8 = 1;
/// Offset of the CRC in a batch, and of the bytes it covers.
const CRC_AT: usize = 17;
const CRC_FROM: usize = 21;

const _: () = assert!(BATCH_HEADER_BYTES == 61);

/// What the broker decides about a message when it is published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageMeta {
    pub persistent: bool,
    pub priority: u8,
    pub expires_at_ms: i64,
    pub due_at_ms: i64,
    /// Publish time, ms since the epoch (the batch timestamp).
    pub published_ms: i64,
}

/// Why stored bytes are not a message envelope.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("stored message too short ({0} bytes)")]
    Short(usize),
    #[error("stored message has envelope version {0}")]
    Version(u8),
    #[error("stored record is not a single uncompressed record")]
    NotOneRecord,
}

fn varint_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

fn get_varint(buf: &[u8], at: &mut usize) -> Option<i64> {
    let mut z: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        z |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

/// A message whose batch is built and whose body is being filled in.
pub struct PendingBody {
    batch: BytesMut,
    body_start: usize,
    filled: usize,
}

impl PendingBody {
    /// Lays out the batch for a message of `body_size` bytes. `properties`
    /// are the raw flags and list from the content header.
    pub fn new(
        exchange: &str,
        routing_key: &str,
        properties: &[u8],
        meta: MessageMeta,
        body_size: usize,
    ) -> PendingBody {
        assert!(exchange.len() <= 255 && routing_key.len() <= 255, "short strings from the codec");
        let envelope_bytes =
            ENVELOPE_FIXED_BYTES + 1 + exchange.len() + 1 + routing_key.len() + 4 + properties.len() + body_size;
        let (mut b, total) = batch_prefix(envelope_bytes, meta.published_ms);
        b.put_u8(ENVELOPE_VERSION);
        b.put_u8(if meta.persistent { FLAG_PERSISTENT } else { 0 });
        b.put_u8(meta.priority);
        b.put_u8(0);
        b.put_i64(meta.expires_at_ms);
        b.put_i64(meta.due_at_ms);
        b.put_u8(exchange.len() as u8);
        b.put_slice(exchange.as_bytes());
        b.put_u8(routing_key.len() as u8);
        b.put_slice(routing_key.as_bytes());
        b.put_u32(properties.len() as u32);
        b.put_slice(properties);
        let body_start = b.len();
        // Zeroed space for the body and the trailing header count (0).
        b.resize(total, 0);
        assert_eq!(body_start + body_size + 1, total, "the body is the value's last field");
        PendingBody { batch: b, body_start, filled: 0 }
    }

    /// Body bytes still expected.
    pub fn remaining(&self) -> usize {
        self.batch.len() - 1 - self.body_start - self.filled
    }

    /// The space for the next `n` body bytes (at most `remaining`).
    pub fn space(&mut self, n: usize) -> &mut [u8] {
        let at = self.body_start + self.filled;
        let n = n.min(self.remaining());
        &mut self.batch[at..at + n]
    }

    /// Marks `n` more body bytes as filled.
    pub fn advance(&mut self, n: usize) {
        assert!(n <= self.remaining(), "body overrun: {n} > {}", self.remaining());
        self.filled += n;
    }

    /// The whole batch, CRC set, once every body byte is in.
    pub fn finish(mut self) -> BytesMut {
        assert_eq!(self.remaining(), 0, "finish before the body is complete");
        set_crc(&mut self.batch);
        self.batch
    }
}

/// The batch header and record header of a batch holding one record whose
/// value is `value_bytes` long, in a buffer with room for the whole batch
/// (returned with its total size); the value comes next.
fn batch_prefix(value_bytes: usize, timestamp_ms: i64) -> (BytesMut, usize) {
    // attributes, timestamp delta, offset delta, key length -1, value
    // length, value, header count.
    let record_body = 1 + 1 + 1 + 1 + varint_len(value_bytes as i64) + value_bytes + 1;
    let total = BATCH_HEADER_BYTES + varint_len(record_body as i64) + record_body;
    let mut b = BytesMut::with_capacity(total);
    b.put_i64(0); // base offset: the log assigns it
    b.put_i32((total - 12) as i32);
    b.put_i32(-1); // partition leader epoch
    b.put_i8(MAGIC);
    b.put_u32(0); // crc, set by `set_crc`
    b.put_i16(0); // attributes: uncompressed, create time
    b.put_i32(0); // last offset delta
    b.put_i64(timestamp_ms);
    b.put_i64(timestamp_ms);
    b.put_i64(-1); // producer id
    b.put_i16(-1); // producer epoch
    b.put_i32(-1); // base sequence
    b.put_i32(1); // records
    debug_assert_eq!(b.len(), BATCH_HEADER_BYTES);
    put_varint(&mut b, record_body as i64);
    b.put_i8(0);
    put_varint(&mut b, 0);
    put_varint(&mut b, 0);
    put_varint(&mut b, -1);
    put_varint(&mut b, value_bytes as i64);
    (b, total)
}

fn set_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[CRC_FROM..]);
    batch[CRC_AT..CRC_FROM].copy_from_slice(&crc.to_be_bytes());
}

/// A whole batch holding one record with `value` (a settle journal record).
pub fn single_record_batch(value: &[u8], timestamp_ms: i64) -> BytesMut {
    let (mut b, total) = batch_prefix(value.len(), timestamp_ms);
    b.put_slice(value);
    b.put_u8(0); // header count
    assert_eq!(b.len(), total);
    set_crc(&mut b);
    b
}

/// The one record of an uncompressed batch: where its value lies.
#[derive(Debug, Clone)]
pub struct SingleRecord {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub value: std::ops::Range<usize>,
}

impl SingleRecord {
    /// Reads the header of a batch holding one uncompressed record with a
    /// value (a stored message, a settle journal record).
    pub fn parse(batch: &[u8]) -> Result<SingleRecord, MessageError> {
        let short = || MessageError::Short(batch.len());
        if batch.len() < BATCH_HEADER_BYTES + 6 {
            return Err(short());
        }
        let be64 = |at: usize| batch.get(at..at + 8).and_then(|b| b.try_into().ok()).map(i64::from_be_bytes);
        let offset = be64(0).ok_or_else(short)?;
        let timestamp_ms = be64(27).ok_or_else(short)?;
        let attributes = i16::from_be_bytes([batch[21], batch[22]]);
        let records = i32::from_be_bytes([batch[57], batch[58], batch[59], batch[60]]);
        if attributes & 0x7 != 0 || records != 1 {
            return Err(MessageError::NotOneRecord);
        }
        let mut at = BATCH_HEADER_BYTES;
        get_varint(batch, &mut at).ok_or_else(short)?; // record length
        at += 1; // record attributes
        for _ in 0..3 {
            get_varint(batch, &mut at).ok_or_else(short)?; // timestamp, offset delta, key length (-1)
        }
        let value_len = get_varint(batch, &mut at).ok_or_else(short)?;
        let end = usize::try_from(value_len).ok().and_then(|l| at.checked_add(l)).ok_or_else(short)?;
        if end > batch.len() {
            return Err(short());
        }
        Ok(SingleRecord { offset, timestamp_ms, value: at..end })
    }
}

/// The body length of a message batch built by `PendingBody` (before or
/// after it is stored), without copying it.
pub fn body_len(batch: &[u8]) -> Option<usize> {
    let record = SingleRecord::parse(batch).ok()?;
    let v = batch.get(record.value.clone())?;
    let mut p = ENVELOPE_FIXED_BYTES;
    for len_bytes in [1usize, 1, 4] {
        let len = match len_bytes {
            1 => usize::from(*v.get(p)?),
            _ => u32::from_be_bytes(v.get(p..p + 4)?.try_into().ok()?) as usize,
        };
        p = p.checked_add(len_bytes + len)?;
    }
    v.len().checked_sub(p)
}

/// A message read back from a queue's log: slices of the stored batch.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub offset: i64,
    pub meta: MessageMeta,
    pub exchange: Bytes,
    pub routing_key: Bytes,
    pub properties: Bytes,
    pub body: Bytes,
}

impl StoredMessage {
    /// Reads the message in `batch` (one whole stored batch, as the log's
    /// reader returns it).
    pub fn parse(batch: &Bytes) -> Result<StoredMessage, MessageError> {
        let short = || MessageError::Short(batch.len());
        let record = SingleRecord::parse(batch)?;
        let (offset, published_ms) = (record.offset, record.timestamp_ms);
        let (value_start, value_end) = (record.value.start, record.value.end);
        if value_end - value_start < ENVELOPE_FIXED_BYTES + 6 {
            return Err(short());
        }
        let v = &batch[value_start..value_end];
        if v[0] != ENVELOPE_VERSION {
            return Err(MessageError::Version(v[0]));
        }
        let meta = MessageMeta {
            persistent: v[1] & FLAG_PERSISTENT != 0,
            priority: v[2],
            expires_at_ms: i64::from_be_bytes(v[4..12].try_into().map_err(|_| short())?),
            due_at_ms: i64::from_be_bytes(v[12..20].try_into().map_err(|_| short())?),
            published_ms,
        };
        let mut p = ENVELOPE_FIXED_BYTES;
        let mut field = |len_bytes: usize| -> Result<std::ops::Range<usize>, MessageError> {
            let len = match len_bytes {
                1 => usize::from(*v.get(p).ok_or_else(short)?),
                _ => u32::from_be_bytes(v.get(p..p + 4).ok_or_else(short)?.try_into().map_err(|_| short())?) as usize,
            };
            let start = p + len_bytes;
            let end = start.checked_add(len).filter(|&e| e <= v.len()).ok_or_else(short)?;
            p = end;
            Ok(value_start + start..value_start + end)
        };
        let exchange = field(1)?;
        let routing_key = field(1)?;
        let properties = field(4)?;
        let body = value_start + p..value_end;
        Ok(StoredMessage {
            offset,
            meta,
            exchange: batch.slice(exchange),
            routing_key: batch.slice(routing_key),
            properties: batch.slice(properties),
            body: batch.slice(body),
        })
    }

    pub fn exchange_str(&self) -> &str {
        std::str::from_utf8(&self.exchange).unwrap_or("")
    }

    pub fn routing_key_str(&self) -> &str {
        std::str::from_utf8(&self.routing_key).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch;

    fn build(body: &[u8], meta: MessageMeta) -> BytesMut {
        let mut p = PendingBody::new("amq.direct", "rk", &[0x10, 0, 2], meta, body.len());
        let mut at = 0;
        while p.remaining() > 0 {
            let n = 3.min(p.remaining());
            p.space(n).copy_from_slice(&body[at..at + n]);
            p.advance(n);
            at += n;
        }
        p.finish()
    }

    #[test]
    fn a_built_message_is_a_valid_record_batch_of_one_record() {
        let b = build(b"hello world", MessageMeta { published_ms: 1_700_000_000_000, ..Default::default() });
        let batches = batch::validate_all(&b, usize::MAX).expect("valid");
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].0, 0..b.len());
        assert_eq!(batches[0].1.records_count, 1);
    }

    #[test]
    fn a_stored_message_reads_back_as_slices_of_its_batch() {
        let meta = MessageMeta { persistent: true, priority: 5, expires_at_ms: 9, due_at_ms: 11, published_ms: 42 };
        let mut b = build(b"payload bytes", meta);
        b[0..8].copy_from_slice(&77i64.to_be_bytes());
        let stored = b.freeze();
        let m = StoredMessage::parse(&stored).expect("parse");
        assert_eq!(m.offset, 77);
        assert_eq!(m.meta, meta);
        assert_eq!(&m.exchange[..], b"amq.direct");
        assert_eq!(&m.routing_key[..], b"rk");
        assert_eq!(&m.properties[..], &[0x10, 0, 2]);
        assert_eq!(&m.body[..], b"payload bytes");
        let body_at = m.body.as_ptr() as usize - stored.as_ptr() as usize;
        assert!(body_at < stored.len(), "the body is a slice of the stored batch, not a copy");
    }

    #[test]
    fn an_empty_body_is_stored_and_read_back() {
        let b = build(b"", MessageMeta::default()).freeze();
        assert!(batch::validate_all(&b, usize::MAX).is_ok());
        assert!(StoredMessage::parse(&b).expect("parse").body.is_empty());
    }

    #[test]
    fn a_large_body_gets_multi_byte_varints() {
        let body = vec![9u8; 300_000];
        let b = build(&body, MessageMeta::default()).freeze();
        assert!(batch::validate_all(&b, usize::MAX).is_ok());
        assert_eq!(StoredMessage::parse(&b).expect("parse").body.len(), 300_000);
    }

    #[test]
    fn a_truncated_batch_is_an_error_not_a_panic() {
        let b = build(b"0123456789", MessageMeta::default()).freeze();
        for cut in 0..b.len() {
            let _ = StoredMessage::parse(&b.slice(..cut));
        }
        assert!(StoredMessage::parse(&b.slice(..70)).is_err());
    }
}
