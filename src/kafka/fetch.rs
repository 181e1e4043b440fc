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
use kafka_protocol::messages::fetch_request::FetchPartition as FetchPartitionRequest;
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
        let round = read_all(shard, &req, max_bytes).await;
        let now = Instant::now();
        if round.total >= min_bytes.max(1)
            || round.any_error
            || now >= deadline
            || round.watch.is_empty()
            || shard.stopping.get()
        {
            bump(&shard.counters.fetch_bytes, round.total as u64);
            for p in round.topics.iter().flat_map(|t| t.partitions.iter()) {
                shard.counters.error(p.error_code);
            }
            let frame =
                fetch_response::encode(ctx.api_version, ctx.correlation_id, 0, codes::NONE, 0, &round.topics).map_err(
                    |e| RequestError::Encode { api: ctx.api_key, version: ctx.api_version, message: format!("{e:?}") },
                )?;
            return Ok(Reply::Frame(frame.chunks));
        }
        drop(round.topics);
        wait_for_any(shard, &round.watch, deadline - now).await;
    }
}

/// One pass over every partition asked.
#[derive(Default)]
struct Round {
    topics: Vec<FetchTopic>,
    /// Record bytes read.
    total: usize,
    any_error: bool,
    /// (topic, partition, high watermark seen) of the partitions to watch.
    watch: Vec<(String, i32, i64)>,
}

async fn read_all(shard: &Rc<Shard>, req: &FetchRequest, max_bytes: usize) -> Round {
    let mut round = Round { topics: Vec::with_capacity(req.topics.len()), ..Default::default() };
    for t in &req.topics {
        let name = t.topic.0.to_string();
        let meta = shard.topic(&name);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let partitions_count = meta.as_ref().map(|m| m.partitions);
            partitions.push(read_partition(shard, &name, partitions_count, p, max_bytes, &mut round).await);
        }
        let topic_id = meta.map(|m| m.id).unwrap_or_default();
        round.topics.push(FetchTopic { name, topic_id, partitions });
    }
    round
}

/// Reads one partition within what is left of the request's byte budget.
/// `partitions`: how many the topic has (None: unknown topic).
async fn read_partition(
    shard: &Rc<Shard>,
    name: &str,
    partitions: Option<i32>,
    p: &FetchPartitionRequest,
    max_bytes: usize,
    round: &mut Round,
) -> FetchPartition {
    let mut out = FetchPartition {
        partition_index: p.partition,
        error_code: codes::NONE,
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
        records: Vec::new(),
    };
    if !partitions.is_some_and(|n| p.partition >= 0 && p.partition < n) {
        out.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION;
        round.any_error = true;
        return out;
    }
    let budget = (p.partition_max_bytes.max(0) as usize).min(max_bytes.saturating_sub(round.total));
    // The first partition with data always gets a whole batch, even
    // past the limits, so the consumer makes progress (KIP-74).
    let budget = if round.total == 0 { budget.max(1) } else { budget };
    let result = if budget > 0 {
        shard.read(name, p.partition, p.fetch_offset, budget).await
    } else {
        match shard.offsets(name, p.partition).await {
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
            round.total += r.bytes;
            out.high_watermark = r.high_watermark;
            out.last_stable_offset = r.high_watermark;
            out.log_start_offset = r.log_start_offset;
            out.records = r.records;
            round.watch.push((name.to_string(), p.partition, r.high_watermark));
        }
        Err(e) => {
            out.error_code = errors::for_storage(&e);
            if let Some(o) = shard.offsets(name, p.partition).await {
                out.high_watermark = o.high_watermark;
                out.last_stable_offset = o.high_watermark;
                out.log_start_offset = o.log_start_offset;
            }
            round.any_error = true;
        }
    }
    out
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
