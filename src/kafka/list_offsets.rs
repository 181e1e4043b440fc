//! ListOffsets v1-7: earliest (-2, the log start offset), latest (-1, the
//! high watermark), by timestamp (>= 0: the first record whose timestamp is
//! at least it, see `storage::time_lookup`; none: offset -1), and from v7 the
//! record with the largest timestamp (-3, KIP-734).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{codes, decode_body, encode_response, errors, Reply, RequestContext, RequestError};
use crate::runtime::shard::{Shard, MAX_TIMESTAMP};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

pub async fn handle(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: ListOffsetsRequest = decode_body(ctx, body)?;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            // timestamp and leader epoch keep their defaults (-1): fields a
            // version lacks must hold their default for the encoder.
            let mut out = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1);
            let known = shard.topic(&name).is_some_and(|m| p.partition_index >= 0 && p.partition_index < m.partitions);
            let offsets = if known { shard.offsets(&name, p.partition_index).await } else { None };
            match offsets {
                None => out.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION,
                Some(o) => match p.timestamp {
                    LATEST => out.offset = o.high_watermark,
                    EARLIEST => out.offset = o.log_start_offset,
                    MAX_TIMESTAMP if ctx.api_version < 7 => out.error_code = codes::UNSUPPORTED_VERSION,
                    ts if ts >= 0 || ts == MAX_TIMESTAMP => {
                        match shard.offset_for_timestamp(&name, p.partition_index, ts).await {
                            Ok(Some((offset, timestamp))) => {
                                out.offset = offset;
                                out.timestamp = timestamp;
                            }
                            Ok(None) => {}
                            Err(e) => out.error_code = errors::for_storage(&e),
                        }
                    }
                    _ => out.error_code = codes::INVALID_REQUEST,
                },
            }
            shard.counters.error(out.error_code);
            partitions.push(out);
        }
        topics.push(ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    encode_response(ctx, &ListOffsetsResponse::default().with_topics(topics))
}
