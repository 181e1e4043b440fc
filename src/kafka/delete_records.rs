//! DeleteRecords v0-2: moves each partition's log start offset up to the
//! given offset (-1: the high watermark) on its owning shard, durably, and
//! deletes the segments wholly below it (see `storage::delete_records`).
//! Answers the new low watermark; an offset past the high watermark is
//! OFFSET_OUT_OF_RANGE.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{codes, decode_body, encode_response, errors, Reply, RequestContext, RequestError};
use crate::runtime::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: DeleteRecordsRequest = decode_body(ctx, body)?;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let meta = shard.topic(&name);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let mut out =
                DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index).with_low_watermark(-1);
            if meta.as_ref().is_none_or(|m| p.partition_index < 0 || p.partition_index >= m.partitions) {
                out.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION;
            } else {
                match shard.delete_records(&name, p.partition_index, p.offset).await {
                    Ok(low) => out.low_watermark = low,
                    Err(e) => {
                        tracing::info!(topic = %name, partition = p.partition_index, offset = p.offset, error = %e, "delete records refused");
                        out.error_code = errors::for_storage(&e);
                    }
                }
            }
            shard.counters.error(out.error_code);
            partitions.push(out);
        }
        topics.push(DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(partitions));
    }
    encode_response(ctx, &DeleteRecordsResponse::default().with_topics(topics))
}
