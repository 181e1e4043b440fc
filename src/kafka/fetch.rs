//! Fetch v4-12 (read_uncommitted; no fetch sessions: session id 0 tells the
//! client to send full requests). Reads whole batches of committed data from
//! the owning shard as `Bytes` and frames them without copying
//! (`fetch_response`). With too little data it long-polls the partitions'
//! high-watermark notifications until `min_bytes` or `max_wait_ms`.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::FetchRequest;

use super::fetch_response::{self, FetchPartition, FetchTopic};
use super::{codes, decode_body, errors, Reply, RequestContext, RequestError};
use crate::runtime::shard::{bump, Shard};
use crate::storage::reader::ReadResult;
use crate::storage::StorageError;

/// Upper bound on how long a fetch may wait, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

pub async fn handle(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: FetchRequest = decode_body(ctx, body)?;
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + wait;
    let max_bytes = if req.max_bytes <= 0 { i32::MAX as usize } else { req.max_bytes as usize };
    let min_bytes = req.min_bytes.max(0) as usize;
    loop {
        let mut total = 0usize;
        let mut any_error = false;
        // (topic, partition, high watermark seen) of the partitions to watch.
        let mut watch: Vec<(String, i32, i64)> = Vec::new();
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in &req.topics {
            let name = t.topic.0.to_string();
            let meta = shard.topic(&name);
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                let mut out = FetchPartition {
                    partition_index: p.partition,
                    error_code: codes::NONE,
                    high_watermark: -1,
                    last_stable_offset: -1,
                    log_start_offset: -1,
                    records: Vec::new(),
                };
                if !meta.as_ref().is_some_and(|m| p.partition >= 0 && p.partition < m.partitions) {
                    out.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION;
                    any_error = true;
                    partitions.push(out);
                    continue;
                }
                let budget = (p.partition_max_bytes.max(0) as usize).min(max_bytes.saturating_sub(total));
                // The first partition with data always gets a whole batch, even
                // past the limits, so the consumer makes progress (KIP-74).
                let budget = if total == 0 { budget.max(1) } else { budget };
                let result = if budget > 0 {
                    shard.read(&name, p.partition, p.fetch_offset, budget).await
                } else {
                    match shard.offsets(&name, p.partition).await {
                        Some(o) => Ok(ReadResult {
                            high_watermark: o.high_watermark,
                            log_start_offset: o.log_start_offset,
                            ..Default::default()
                        }),
                        None => Err(StorageError::Closed),
                    }
                };
                match result {
                    Ok(r) => {
                        total += r.bytes;
                        out.high_watermark = r.high_watermark;
                        out.last_stable_offset = r.high_watermark;
                        out.log_start_offset = r.log_start_offset;
                        out.records = r.records;
                        watch.push((name.clone(), p.partition, r.high_watermark));
                    }
                    Err(e) => {
                        out.error_code = errors::for_storage(&e);
                        if let Some(o) = shard.offsets(&name, p.partition).await {
                            out.high_watermark = o.high_watermark;
                            out.last_stable_offset = o.high_watermark;
                            out.log_start_offset = o.log_start_offset;
                        }
                        any_error = true;
                    }
                }
                partitions.push(out);
            }
            let topic_id = meta.map(|m| m.id).unwrap_or_default();
            topics.push(FetchTopic { name, topic_id, partitions });
        }
        let now = Instant::now();
        if total >= min_bytes.max(1) || any_error || now >= deadline || watch.is_empty() || shard.stopping.get() {
            bump(&shard.counters.fetch_bytes, total as u64);
            for p in topics.iter().flat_map(|t| t.partitions.iter()) {
                shard.counters.error(p.error_code);
            }
            let frame =
                fetch_response::encode(ctx.api_version, ctx.correlation_id, 0, codes::NONE, 0, &topics).map_err(
                    |e| RequestError::Encode { api: ctx.api_key, version: ctx.api_version, message: format!("{e:?}") },
                )?;
            return Ok(Reply::Frame(frame.chunks));
        }
        drop(topics);
        wait_for_any(shard, &watch, deadline - now).await;
    }
}

/// Waits until any watched partition's high watermark moves past the value
/// seen, wherever the partition lives, or until `timeout`.
async fn wait_for_any(shard: &Rc<Shard>, watch: &[(String, i32, i64)], timeout: Duration) {
    let waits: Vec<Pin<Box<dyn Future<Output = ()> + '_>>> = watch
        .iter()
        .map(|(t, p, hw)| Box::pin(shard.wait_for_data(t, *p, *hw, timeout)) as Pin<Box<dyn Future<Output = ()>>>)
        .collect();
    futures_util::future::select_all(waits).await;
}
