//! Fetch v4-12 (read_uncommitted; no fetch sessions: session id 0 tells the
//! client to send full requests). Reads whole batches of committed data from
//! the owning shard as `Bytes` and frames them without copying
//! (`fetch_response`). With too little data it long-polls the partitions'
//! high-watermark notifications until `min_bytes` or `max_wait_ms`.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::FetchRequest;

use super::fetch_response::{self, FetchPartition, FetchTopic};
use super::{codes, decode_body, Reply, RequestContext, RequestError};
use crate::runtime::shard::Shard;
use crate::storage::PartitionLog;

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
        let mut logs: Vec<Rc<PartitionLog>> = Vec::new();
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in &req.topics {
            let name = t.topic.0.to_string();
            let meta = shard.topic(&name);
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                let mut out = FetchPartition { partition_index: p.partition, error_code: codes::NONE, high_watermark: -1, last_stable_offset: -1, log_start_offset: -1, records: Vec::new() };
                let log = match &meta {
                    Some(m) if p.partition >= 0 && p.partition < m.partitions => shard.log(&name, p.partition),
                    _ => None,
                };
                match log {
                    None => {
                        out.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION;
                        any_error = true;
                    }
                    Some(log) => {
                        let budget = (p.partition_max_bytes.max(0) as usize).min(max_bytes.saturating_sub(total));
                        // A partition gets data only while the response has room,
                        // except that the first non-empty one always does (KIP-74).
                        let budget = if total == 0 { budget.max(1) } else { budget };
                        if budget > 0 {
                            match log.read(p.fetch_offset, budget) {
                                Ok(r) => {
                                    total += r.bytes;
                                    out.high_watermark = r.high_watermark;
                                    out.last_stable_offset = r.high_watermark;
                                    out.log_start_offset = r.log_start_offset;
                                    out.records = r.records;
                                }
                                Err(e) => {
                                    let o = log.offsets();
                                    out.error_code = codes::for_storage(&e);
                                    out.high_watermark = o.high_watermark;
                                    out.last_stable_offset = o.high_watermark;
                                    out.log_start_offset = o.log_start_offset;
                                    any_error = true;
                                }
                            }
                        } else {
                            let o = log.offsets();
                            out.high_watermark = o.high_watermark;
                            out.last_stable_offset = o.high_watermark;
                            out.log_start_offset = o.log_start_offset;
                        }
                        logs.push(log);
                    }
                }
                partitions.push(out);
            }
            let topic_id = meta.map(|m| m.id).unwrap_or_default();
            topics.push(FetchTopic { name, topic_id, partitions });
        }
        let now = Instant::now();
        if total >= min_bytes.max(1) || any_error || now >= deadline || logs.is_empty() || shard.stopping.get() {
            let frame = fetch_response::encode(ctx.api_version, ctx.correlation_id, 0, codes::NONE, 0, &topics)
                .map_err(|e| RequestError::Encode { api: ctx.api_key, version: ctx.api_version, message: format!("{e:?}") })?;
            return Ok(Reply::Frame(frame.chunks));
        }
        drop(topics);
        wait_for_any(&logs, deadline - now).await;
    }
}

/// Waits until any of the logs' high watermarks move, or `timeout` passes.
async fn wait_for_any(logs: &[Rc<PartitionLog>], timeout: Duration) {
    let mut listeners: Vec<_> = logs.iter().map(|l| Box::pin(l.hw_changed.listen())).collect();
    let any = std::future::poll_fn(move |cx| {
        for l in listeners.iter_mut() {
            if Pin::new(l).as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    });
    futures_lite::future::or(any, async {
        glommio::timer::Timer::new(timeout).await;
    })
    .await;
}
