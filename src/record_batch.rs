//! Building RecordBatch v2 bytes the way a producer does: used by the
//! consumer offsets logs (`groups::store`), the benches, the storage tests
//! and client-side tools. The broker never re-encodes a client's batches.

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

/// One batch holding `values` (with optional keys), base offset 0, timestamps `timestamp_ms`.
pub fn encode_batch(entries: &[(Option<Bytes>, Bytes)], timestamp_ms: i64) -> Result<BytesMut, String> {
    encode_batch_compressed(entries, timestamp_ms, Compression::None)
}

/// As `encode_batch`, compressed with `compression` (a codec needs its
/// kafka-protocol feature, which the load generator enables).
pub fn encode_batch_compressed(
    entries: &[(Option<Bytes>, Bytes)],
    timestamp_ms: i64,
    compression: Compression,
) -> Result<BytesMut, String> {
    encode(entries, timestamp_ms, compression, Producer { id: -1, epoch: -1, base_sequence: 0 })
}

/// The producer fields of a batch: id and epoch from InitProducerId, the
/// sequence number of its first record. Id -1: not idempotent.
#[derive(Debug, Clone, Copy)]
pub struct Producer {
    pub id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
}

/// As `encode_batch`, from an idempotent producer: the records are numbered
/// from `producer.base_sequence`.
pub fn encode_idempotent_batch(
    entries: &[(Option<Bytes>, Bytes)],
    timestamp_ms: i64,
    producer: Producer,
) -> Result<BytesMut, String> {
    encode(entries, timestamp_ms, Compression::None, producer)
}

fn encode(
    entries: &[(Option<Bytes>, Bytes)],
    timestamp_ms: i64,
    compression: Compression,
    producer: Producer,
) -> Result<BytesMut, String> {
    let records: Vec<Record> = entries
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.id,
            producer_epoch: producer.epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder groups records whose offset - sequence is constant; with
            // no producer id the broker ignores sequences.
            sequence: producer.base_sequence.wrapping_add(i as i32),
            timestamp: timestamp_ms,
            key: key.clone(),
            value: Some(value.clone()),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, records.iter(), &RecordEncodeOptions { version: 2, compression })
        .map_err(|e| e.to_string())?;
    Ok(buf)
}

/// A batch of `count` records of `value_bytes` each (value bytes = record index pattern).
pub fn synthetic_batch(count: usize, value_bytes: usize, timestamp_ms: i64) -> BytesMut {
    let entries: Vec<(Option<Bytes>, Bytes)> =
        (0..count).map(|i| (None, Bytes::from(vec![(i % 251) as u8; value_bytes]))).collect();
    encode_batch(&entries, timestamp_ms).unwrap_or_default()
}
