//! Messages between shards. Everything that crosses is owned and `Send`:
//! record bytes travel as `BytesMut`/`Bytes` (moved, never copied), replies
//! come back on oneshot channels. Channels are bounded (`MESH_QUEUE`): a
//! sender waits when its peer is behind.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::BytesMut;
use futures_channel::oneshot;

use super::shard::TopicOpError;
use crate::catalog::TopicMeta;
use crate::storage::log::{AckWait, AppendOutcome, Offsets};
use crate::storage::reader::ReadResult;
use crate::storage::StorageError;

/// Messages in flight from one shard to another, at most.
pub const MESH_QUEUE: usize = 1024;

/// A partition's gauges, for the metrics endpoint.
#[derive(Debug, Clone)]
pub struct PartitionGauges {
    pub topic: String,
    pub partition: i32,
    pub offsets: Offsets,
    pub commits: u64,
    pub committed_bytes: u64,
    pub commit_latency_us: crate::histogram::Log2Histogram,
    pub commit_write_bytes: crate::histogram::Log2Histogram,
}

/// One shard's counters and its partitions' gauges.
#[derive(Debug, Clone, Default)]
pub struct ShardReport {
    pub shard: usize,
    pub cpu: usize,
    pub requests: u64,
    pub produce_bytes: u64,
    pub fetch_bytes: u64,
    pub cross_shard_hops: u64,
    pub connections_accepted: u64,
    pub connections_open: u64,
    pub connections_refused: u64,
    pub connections_closed_on_bad_input: u64,
    pub requests_in_flight: u64,
    pub errors_by_code: Vec<(i16, u64)>,
    pub partitions: Vec<PartitionGauges>,
}

pub enum ShardMsg {
    Append { topic: String, partition: i32, records: BytesMut, wait: AckWait, reply: oneshot::Sender<Result<AppendOutcome, StorageError>> },
    Read { topic: String, partition: i32, offset: i64, max_bytes: usize, reply: oneshot::Sender<Result<ReadResult, StorageError>> },
    Offsets { topic: String, partition: i32, reply: oneshot::Sender<Option<Offsets>> },
    /// Replies once the high watermark passes `offset`, after `timeout`, or
    /// never when the asker gave up (dropped its receiver).
    WaitForData { topic: String, partition: i32, offset: i64, timeout: Duration, reply: oneshot::Sender<()> },
    /// To shard 0, the catalog's owner.
    CreateTopic { name: String, partitions: i32, configs: BTreeMap<String, String>, validate_only: bool, reply: oneshot::Sender<Result<TopicMeta, TopicOpError>> },
    /// To shard 0, the catalog's owner.
    DeleteTopic { name: String, reply: oneshot::Sender<Result<(), TopicOpError>> },
    /// From shard 0 after the catalog change is durable: open the partitions
    /// this shard owns, then show the topic to clients.
    TopicCreated { name: String, meta: TopicMeta, reply: oneshot::Sender<Result<(), TopicOpError>> },
    /// From shard 0 after the catalog change is durable: hide the topic and
    /// close this shard's logs of it.
    TopicDeleted { name: String, reply: oneshot::Sender<()> },
    Report { reply: oneshot::Sender<ShardReport> },
}
