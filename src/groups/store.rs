//! Durable committed offsets: internal partition logs
//! `<data-dir>/__consumer_offsets/<p>` written with the ordinary storage
//! machinery (group commit, O_DSYNC: a commit is answered once on disk), and
//! replayed at start-up. Records are RecordBatches whose keys and values use
//! the small binary layout below; the last record for a key wins, and a
//! group tombstone forgets every offset of the group written before it.
//!
//! Key type 1 (an offset): `[1][u16 len][group][u16 len][topic][i32 partition]`,
//! value `[i64 offset][i32 leader epoch][i32 len or -1][metadata][i64 commit ms]`.
//! Key type 2 (group deleted): `[2][u16 len][group]`, empty value.

use std::path::Path;
use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::RecordBatchDecoder;

use crate::storage::{FlushPolicy, LogConfig, PartitionLog, StorageError};

/// Largest RecordBatch written to an offsets log; a bigger commit becomes
/// several batches of one append.
const BATCH_MAX_BYTES: usize = 256 * 1024;
/// Segment size of the offsets logs (small: each is preallocated).
pub const SEGMENT_BYTES: u64 = 1024 * 1024;
/// Appends of an offsets log waiting for the disk, at most (a compaction
/// snapshot must fit).
pub const PENDING_MAX_BYTES: usize = 32 * 1024 * 1024;
const KEY_OFFSET: u8 = 1;
const KEY_GROUP_DELETED: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("offsets log {partition}: undecodable data at offset {offset}: {message}")]
    Decode { partition: i32, offset: i64, message: String },
    #[error("cannot encode offset records: {0}")]
    Encode(String),
    #[error("{field} of {len} bytes is too long for an offset record")]
    TooLong { field: &'static str, len: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetRecord {
    Commit {
        group: String,
        topic: String,
        partition: i32,
        offset: i64,
        leader_epoch: i32,
        metadata: Option<String>,
        commit_ms: i64,
    },
    GroupDeleted {
        group: String,
    },
}

fn put_str16(buf: &mut BytesMut, field: &'static str, s: &str) -> Result<(), StoreError> {
    let len = u16::try_from(s.len()).map_err(|_| StoreError::TooLong { field, len: s.len() })?;
    buf.put_u16(len);
    buf.put_slice(s.as_bytes());
    Ok(())
}

fn encode_record(r: &OffsetRecord) -> Result<(Bytes, Bytes), StoreError> {
    let mut key = BytesMut::new();
    let mut value = BytesMut::new();
    match r {
        OffsetRecord::Commit { group, topic, partition, offset, leader_epoch, metadata, commit_ms } => {
            key.put_u8(KEY_OFFSET);
            put_str16(&mut key, "group id", group)?;
            put_str16(&mut key, "topic", topic)?;
            key.put_i32(*partition);
            value.put_i64(*offset);
            value.put_i32(*leader_epoch);
            match metadata {
                None => value.put_i32(-1),
                Some(m) => {
                    value.put_i32(
                        i32::try_from(m.len()).map_err(|_| StoreError::TooLong { field: "metadata", len: m.len() })?,
                    );
                    value.put_slice(m.as_bytes());
                }
            }
            value.put_i64(*commit_ms);
        }
        OffsetRecord::GroupDeleted { group } => {
            key.put_u8(KEY_GROUP_DELETED);
            put_str16(&mut key, "group id", group)?;
        }
    }
    Ok((key.freeze(), value.freeze()))
}

/// The records as RecordBatches back to back (one append), each at most
/// about `BATCH_MAX_BYTES`.
pub fn encode(records: &[OffsetRecord], now_ms: i64) -> Result<BytesMut, StoreError> {
    let mut out = BytesMut::new();
    let mut chunk: Vec<(Option<Bytes>, Bytes)> = Vec::new();
    let mut chunk_bytes = 0usize;
    for r in records {
        let (k, v) = encode_record(r)?;
        chunk_bytes += k.len() + v.len() + 16;
        chunk.push((Some(k), v));
        if chunk_bytes >= BATCH_MAX_BYTES {
            out.extend_from_slice(&crate::record_batch::encode_batch(&chunk, now_ms).map_err(StoreError::Encode)?);
            chunk.clear();
            chunk_bytes = 0;
        }
    }
    if !chunk.is_empty() {
        out.extend_from_slice(&crate::record_batch::encode_batch(&chunk, now_ms).map_err(StoreError::Encode)?);
    }
    Ok(out)
}

/// A cursor over bytes that fails (None) instead of panicking.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4).and_then(|b| b.try_into().ok()).map(i32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8).and_then(|b| b.try_into().ok()).map(i64::from_be_bytes)
    }
    fn str16(&mut self) -> Option<String> {
        let len = self.take(2).and_then(|b| b.try_into().ok()).map(u16::from_be_bytes)?;
        self.take(len as usize).and_then(|b| std::str::from_utf8(b).ok()).map(str::to_string)
    }
}

/// Decodes one record's key and value; None when it is not one of ours.
pub fn decode_record(key: &[u8], value: &[u8]) -> Option<OffsetRecord> {
    let mut k = Cursor(key);
    match k.u8()? {
        KEY_OFFSET => {
            let group = k.str16()?;
            let topic = k.str16()?;
            let partition = k.i32()?;
            let mut v = Cursor(value);
            let offset = v.i64()?;
            let leader_epoch = v.i32()?;
            let md_len = v.i32()?;
            let metadata =
                if md_len < 0 { None } else { Some(std::str::from_utf8(v.take(md_len as usize)?).ok()?.to_string()) };
            let commit_ms = v.i64()?;
            Some(OffsetRecord::Commit { group, topic, partition, offset, leader_epoch, metadata, commit_ms })
        }
        KEY_GROUP_DELETED => Some(OffsetRecord::GroupDeleted { group: k.str16()? }),
        _ => None,
    }
}

/// Storage settings of an offsets log: always fdatasync'd before the ack,
/// never deleted by retention (offsets of idle groups must survive).
pub fn log_config(base: &LogConfig) -> LogConfig {
    LogConfig {
        segment_bytes: SEGMENT_BYTES,
        retention_bytes: -1,
        retention_ms: -1,
        max_message_bytes: 2 * BATCH_MAX_BYTES,
        flush: FlushPolicy::Always,
        tail_cache_bytes: 256 * 1024,
        pending_max_bytes: PENDING_MAX_BYTES,
        ..base.clone()
    }
}

fn dir(data_dir: &Path, partition: i32) -> std::path::PathBuf {
    data_dir.join(super::OFFSETS_TOPIC).join(partition.to_string())
}

/// Whether offsets log `partition` was ever created.
pub fn exists(data_dir: &Path, partition: i32) -> bool {
    dir(data_dir, partition).is_dir()
}

/// Opens (recovers) offsets log `partition` under `data_dir`.
pub async fn open(data_dir: &Path, partition: i32, base: &LogConfig) -> Result<Rc<PartitionLog>, StoreError> {
    Ok(PartitionLog::open(dir(data_dir, partition), super::OFFSETS_TOPIC.to_string(), partition, log_config(base))
        .await?)
}

/// What replaying an offsets log found.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Every record understood, in log order.
    pub records: Vec<OffsetRecord>,
    /// Records that were not understood (not ours, or truncated).
    pub skipped: u64,
    /// Offsets below the high watermark that could not be read.
    pub unread: i64,
}

impl Replayed {
    /// Whether `records` is the whole log: only then may the log be
    /// rewritten from the state they give (compaction).
    pub fn is_lossless(&self) -> bool {
        self.skipped == 0 && self.unread == 0
    }
}

/// Every record of the log, in log order.
pub fn replay(log: &PartitionLog) -> Result<Replayed, StoreError> {
    let mut out = Vec::new();
    let offsets = log.offsets();
    let mut next = offsets.log_start_offset;
    let mut skipped = 0u64;
    while next < offsets.high_watermark {
        let read = log.read(next, 1024 * 1024)?;
        if read.records.is_empty() {
            tracing::warn!(
                partition = log.partition,
                offset = next,
                high_watermark = offsets.high_watermark,
                "offsets log: nothing readable up to the high watermark"
            );
            break;
        }
        let before = next;
        for chunk in read.records {
            let mut buf = chunk;
            let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| StoreError::Decode {
                partition: log.partition,
                offset: next,
                message: e.to_string(),
            })?;
            for set in sets {
                for rec in set.records {
                    next = next.max(rec.offset + 1);
                    let (Some(k), v) = (rec.key.as_ref(), rec.value.as_ref()) else {
                        skipped += 1;
                        continue;
                    };
                    match decode_record(k, v.map(|b| &b[..]).unwrap_or(&[])) {
                        Some(r) => out.push(r),
                        None => skipped += 1,
                    }
                }
            }
        }
        if next == before {
            return Err(StoreError::Decode {
                partition: log.partition,
                offset: next,
                message: "a batch without records".into(),
            });
        }
    }
    if skipped > 0 {
        tracing::warn!(partition = log.partition, skipped, "offsets log: records not understood were skipped");
    }
    Ok(Replayed { records: out, skipped, unread: (offsets.high_watermark - next).max(0) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_batches() {
        let recs = vec![
            OffsetRecord::Commit {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                offset: 42,
                leader_epoch: -1,
                metadata: Some("m".into()),
                commit_ms: 7,
            },
            OffsetRecord::Commit {
                group: "g".into(),
                topic: "t".into(),
                partition: 4,
                offset: 1,
                leader_epoch: 5,
                metadata: None,
                commit_ms: 8,
            },
            OffsetRecord::GroupDeleted { group: "g".into() },
        ];
        let mut bytes = encode(&recs, 1).expect("encode").freeze();
        let sets = RecordBatchDecoder::decode_all(&mut bytes).expect("decode");
        let back: Vec<OffsetRecord> = sets
            .into_iter()
            .flat_map(|s| s.records)
            .filter_map(|r| decode_record(r.key.as_deref().unwrap_or(&[]), r.value.as_deref().unwrap_or(&[])))
            .collect();
        assert_eq!(back, recs);
    }

    #[test]
    fn truncated_or_foreign_records_decode_to_none() {
        assert_eq!(decode_record(&[], &[]), None);
        assert_eq!(decode_record(&[9, 0, 0], &[]), None);
        assert_eq!(decode_record(&[1, 0, 5, b'a'], &[]), None);
        let (k, v) = encode_record(&OffsetRecord::Commit {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            offset: 1,
            leader_epoch: 0,
            metadata: None,
            commit_ms: 0,
        })
        .expect("encode");
        assert_eq!(decode_record(&k, &v[..v.len() - 1]), None);
    }

    #[test]
    fn large_commits_are_split_into_several_batches() {
        let recs: Vec<OffsetRecord> = (0..20_000)
            .map(|p| OffsetRecord::Commit {
                group: "g".into(),
                topic: "a-rather-long-topic-name".into(),
                partition: p,
                offset: 1,
                leader_epoch: -1,
                metadata: None,
                commit_ms: 0,
            })
            .collect();
        let mut bytes = encode(&recs, 0).expect("encode").freeze();
        let sets = RecordBatchDecoder::decode_all(&mut bytes).expect("decode");
        assert!(sets.len() > 1);
        assert_eq!(sets.iter().map(|s| s.records.len()).sum::<usize>(), recs.len());
    }
}
