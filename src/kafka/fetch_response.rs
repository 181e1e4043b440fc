//! Interim FetchResponse encoder (v4-12); replaced by the helper's version.

use bytes::{BufMut, Bytes, BytesMut};

pub struct FetchPartition { pub partition_index: i32, pub error_code: i16, pub high_watermark: i64, pub last_stable_offset: i64, pub log_start_offset: i64, pub records: Vec<Bytes> }
pub struct FetchTopic { pub name: String, pub topic_id: uuid::Uuid, pub partitions: Vec<FetchPartition> }
pub struct FetchResponseFrame { pub chunks: Vec<Bytes>, pub total_bytes: usize }
#[derive(Debug)]
pub struct FetchEncodeError(pub i16);
pub const MIN_VERSION: i16 = 4;
pub const MAX_VERSION: i16 = 12;

fn put_uvarint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

pub fn encode(version: i16, correlation_id: i32, throttle_time_ms: i32, error_code: i16, session_id: i32, topics: &[FetchTopic]) -> Result<FetchResponseFrame, FetchEncodeError> {
    if !(MIN_VERSION..=MAX_VERSION).contains(&version) {
        return Err(FetchEncodeError(version));
    }
    let flexible = version >= 12;
    let mut chunks = Vec::new();
    let mut b = BytesMut::with_capacity(256);
    b.put_i32(0); // size, patched below
    b.put_i32(correlation_id);
    if flexible {
        b.put_u8(0);
    }
    b.put_i32(throttle_time_ms);
    if version >= 7 {
        b.put_i16(error_code);
        b.put_i32(session_id);
    }
    let count = |b: &mut BytesMut, n: usize| if flexible { put_uvarint(b, n as u32 + 1) } else { b.put_i32(n as i32) };
    count(&mut b, topics.len());
    for t in topics {
        if flexible {
            put_uvarint(&mut b, t.name.len() as u32 + 1);
        } else {
            b.put_i16(t.name.len() as i16);
        }
        b.put_slice(t.name.as_bytes());
        count(&mut b, t.partitions.len());
        for p in &t.partitions {
            b.put_i32(p.partition_index);
            b.put_i16(p.error_code);
            b.put_i64(p.high_watermark);
            b.put_i64(p.last_stable_offset);
            if version >= 5 {
                b.put_i64(p.log_start_offset);
            }
            count(&mut b, 0); // aborted transactions: none
            if version >= 11 {
                b.put_i32(-1);
            }
            let len: usize = p.records.iter().map(|r| r.len()).sum();
            if flexible {
                put_uvarint(&mut b, len as u32 + 1);
            } else {
                b.put_i32(len as i32);
            }
            if len > 0 {
                chunks.push(std::mem::take(&mut b).freeze());
                chunks.extend(p.records.iter().cloned());
            }
            if flexible {
                b.put_u8(0);
            }
        }
        if flexible {
            b.put_u8(0);
        }
    }
    if flexible {
        b.put_u8(0);
    }
    chunks.push(b.freeze());
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    let mut first = BytesMut::from(&chunks[0][..]);
    first[..4].copy_from_slice(&((total - 4) as i32).to_be_bytes());
    chunks[0] = first.freeze();
    Ok(FetchResponseFrame { chunks, total_bytes: total })
}
