//! Produce v3-9: record batches are validated and appended by the shard that
//! owns each partition (moved there over the mesh when it is another one);
//! acks=1/-1 are answered once the commit covering them is done (see
//! `storage::appender` for the flush/ack contract), acks=0 not at all.
//!
//! Zero-copy: the request frame is decoded once to find where each
//! partition's records lie; the frame's buffer is then split into one owned
//! `BytesMut` per partition, in which the owner patches offsets in place.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{codes, decode_body, encode_response, errors, Reply, RequestContext, RequestError};
use crate::runtime::shard::Shard;
use crate::storage::log::{AckWait, AppendOutcome};
use crate::storage::StorageError;

struct PartitionPlan {
    index: i32,
    /// Where the records lie in the frame.
    range: Option<std::ops::Range<usize>>,
}

struct TopicPlan {
    name: String,
    partitions: Vec<PartitionPlan>,
}

pub async fn handle(
    shard: &Rc<Shard>,
    ctx: &RequestContext,
    frame: Bytes,
    body_start: usize,
) -> Result<Reply, RequestError> {
    let req: ProduceRequest = decode_body(ctx, frame.slice(body_start..))?;
    let refusal = if req.transactional_id.is_some() {
        Some((codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "transactions are not supported by ringmq"))
    } else if !(-1..=1).contains(&req.acks) {
        Some((codes::INVALID_REQUIRED_ACKS, "acks must be 0, 1 or -1"))
    } else {
        None
    };
    let acks = req.acks;
    let plan = plan(&req, &frame);
    drop(req);
    let pieces = split_records(frame, &plan);
    let (mut responses, appends) = check_partitions(shard, ctx, &plan, pieces, refusal).await;
    let wait = if acks == 0 { AckWait::None } else { AckWait::Commit };
    let results = futures_util::future::join_all(appends.into_iter().map(|a| {
        let shard = shard.clone();
        async move {
            crate::runtime::shard::bump(&shard.counters.produce_bytes, a.records.len() as u64);
            (a.topic_index, a.partition_index, shard.append(a.topic, a.partition, a.records, wait).await)
        }
    }))
    .await;
    for (ti, pi, result) in results {
        record_append(ctx, &mut responses[ti].partition_responses[pi], result);
    }
    for p in responses.iter().flat_map(|t| t.partition_responses.iter()) {
        shard.counters.error(p.error_code);
    }
    if acks == 0 {
        return Ok(Reply::Nothing);
    }
    encode_response(ctx, &ProduceResponse::default().with_responses(responses))
}

/// Where each partition's records lie in the frame.
fn plan(req: &ProduceRequest, frame: &Bytes) -> Vec<TopicPlan> {
    let base = frame.as_ptr() as usize;
    req.topic_data
        .iter()
        .map(|t| TopicPlan {
            name: t.name.0.to_string(),
            partitions: t
                .partition_data
                .iter()
                .map(|p| PartitionPlan {
                    index: p.index,
                    range: p.records.as_ref().map(|r| {
                        let start = r.as_ptr() as usize - base;
                        start..start + r.len()
                    }),
                })
                .collect(),
        })
        .collect()
}

/// Records of one partition, checked and ready to append.
struct Append<'a> {
    topic_index: usize,
    partition_index: usize,
    topic: &'a str,
    partition: i32,
    records: BytesMut,
}

/// The response of every partition refused before its append (`refusal`:
/// the whole request is), and the appends of the others.
async fn check_partitions<'a>(
    shard: &Rc<Shard>,
    ctx: &RequestContext,
    plan: &'a [TopicPlan],
    mut pieces: Vec<Vec<Option<BytesMut>>>,
    refusal: Option<(i16, &'static str)>,
) -> (Vec<TopicProduceResponse>, Vec<Append<'a>>) {
    let mut responses = Vec::with_capacity(plan.len());
    let mut appends = Vec::new();
    for (ti, topic) in plan.iter().enumerate() {
        let meta = if refusal.is_some() { None } else { shard.ensure_topic(&topic.name).await };
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for (pi, p) in topic.partitions.iter().enumerate() {
            let mut resp = PartitionProduceResponse::default()
                .with_index(p.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1);
            let records = pieces.get_mut(ti).and_then(|v| v.get_mut(pi)).and_then(Option::take);
            let error = if refusal.is_some() {
                refusal
            } else if meta.as_ref().is_none_or(|m| p.index < 0 || p.index >= m.partitions) {
                Some((codes::UNKNOWN_TOPIC_OR_PARTITION, "unknown topic or partition"))
            } else if records.as_ref().is_none_or(|r| r.is_empty()) {
                Some((codes::CORRUPT_MESSAGE, "no records"))
            } else {
                None
            };
            match (error, records) {
                (None, Some(records)) => appends.push(Append {
                    topic_index: ti,
                    partition_index: pi,
                    topic: &topic.name,
                    partition: p.index,
                    records,
                }),
                (Some((code, message)), _) => {
                    resp = resp.with_error_code(code);
                    if ctx.api_version >= 8 {
                        resp.error_message = Some(StrBytes::from_static_str(message));
                    }
                }
                (None, None) => resp = resp.with_error_code(codes::CORRUPT_MESSAGE),
            }
            partitions.push(resp);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(TopicName(StrBytes::from_string(topic.name.clone())))
                .with_partition_responses(partitions),
        );
    }
    (responses, appends)
}

fn record_append(
    ctx: &RequestContext,
    resp: &mut PartitionProduceResponse,
    result: Result<AppendOutcome, StorageError>,
) {
    match result {
        Ok(outcome) => {
            resp.error_code = codes::NONE;
            resp.base_offset = outcome.base_offset;
            if ctx.api_version >= 5 {
                resp.log_start_offset = outcome.log_start_offset;
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "produce failed");
            resp.error_code = errors::for_storage(&e);
            if ctx.api_version >= 8 {
                resp.error_message = Some(StrBytes::from_string(e.to_string()));
            }
        }
    }
}

/// Splits the frame into one owned buffer per partition's records. When the
/// frame's memory is not exclusively ours, the records are copied once.
fn split_records(frame: Bytes, plan: &[TopicPlan]) -> Vec<Vec<Option<BytesMut>>> {
    let mut out: Vec<Vec<Option<BytesMut>>> =
        plan.iter().map(|t| t.partitions.iter().map(|_| None).collect()).collect();
    match frame.try_into_mut() {
        Ok(mut rest) => {
            // Ranges come in frame order; cut them off the front one by one.
            let mut consumed = 0usize;
            for (ti, t) in plan.iter().enumerate() {
                for (pi, p) in t.partitions.iter().enumerate() {
                    if let Some(r) = &p.range {
                        if r.start < consumed || r.end > consumed + rest.len() {
                            continue;
                        }
                        let _ = rest.split_to(r.start - consumed);
                        out[ti][pi] = Some(rest.split_to(r.len()));
                        consumed = r.end;
                    }
                }
            }
        }
        Err(frame) => {
            tracing::debug!("produce frame is shared; copying its records");
            for (ti, t) in plan.iter().enumerate() {
                for (pi, p) in t.partitions.iter().enumerate() {
                    if let Some(r) = &p.range {
                        out[ti][pi] = frame.get(r.clone()).map(BytesMut::from);
                    }
                }
            }
        }
    }
    out
}
