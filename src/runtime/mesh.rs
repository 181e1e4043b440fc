//! Messages between shards. Everything that crosses is owned and `Send`:
//! record bytes travel as `BytesMut`/`Bytes` (moved, never copied). Replies
//! come back over the mesh too, as `ShardMsg::Reply` matched by request id:
//! a glommio task's Waker must never be woken or dropped on another thread
//! (glommio 0.9's foreign-waker path double-frees; a oneshot channel
//! completed by the other shard did exactly that under load). Channels are
//! bounded (`MESH_QUEUE`): a sender waits when its peer is behind.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::BytesMut;
use std::marker::PhantomData;

use super::shard::TopicOpError;
use crate::catalog::producer_ids::{IdBlock, ProducerIdError};
use crate::catalog::{TopicMeta, TopicUpdate};
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
    pub segments_recycled: u64,
    pub commit_writes_overlapped: u64,
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
    pub produce_latency_us: crate::histogram::Log2Histogram,
    pub partitions: Vec<PartitionGauges>,
    /// Consumer groups coordinated by the shard: (groups, members, committed offsets).
    pub groups: crate::groups::GroupGauges,
}

pub enum ShardMsg {
    Append {
        topic: String,
        partition: i32,
        records: BytesMut,
        wait: AckWait,
        reply: ReplyTo<Result<AppendOutcome, StorageError>>,
    },
    Read {
        topic: String,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        reply: ReplyTo<Result<ReadResult, StorageError>>,
    },
    Offsets {
        topic: String,
        partition: i32,
        reply: ReplyTo<Option<Offsets>>,
    },
    /// Replies once the high watermark passes `offset`, after `timeout`, or
    /// never when the asker gave up (dropped its receiver).
    WaitForData {
        topic: String,
        partition: i32,
        offset: i64,
        timeout: Duration,
        reply: ReplyTo<()>,
    },
    /// To a partition's owner: move its log start offset (DeleteRecords).
    DeleteRecords {
        topic: String,
        partition: i32,
        offset: i64,
        reply: ReplyTo<Result<i64, StorageError>>,
    },
    /// To a partition's owner: ListOffsets by timestamp (-3: max timestamp).
    OffsetForTime {
        topic: String,
        partition: i32,
        timestamp_ms: i64,
        reply: ReplyTo<Result<Option<(i64, i64)>, StorageError>>,
    },
    Report {
        reply: ReplyTo<Box<ShardReport>>,
    },
    /// A change of the catalog, to or from shard 0 (`topics`).
    Catalog(CatalogMsg),
    /// A consumer group operation, to the group's shard.
    Group {
        call: crate::groups::GroupCall,
        reply: ReplyTo<crate::groups::GroupAnswer>,
    },
    /// A job for the receiving shard (`Shard::run_on`, `Shard::tell_on`):
    /// built there and run there; its output goes back when asked for.
    Run {
        job: Job,
        reply: Option<ReplyTo<AnyAnswer>>,
    },
    /// The answer to request `id` of the receiving shard.
    Reply {
        id: u64,
        payload: ReplyPayload,
    },
}

/// Work another shard runs on this one's behalf: a `Send` closure that
/// makes the future there (so the future itself needs not be `Send`).
pub type Job = Box<dyn FnOnce() -> futures_util::future::LocalBoxFuture<'static, AnyAnswer> + Send>;
/// A job's output, on its way back.
pub type AnyAnswer = Box<dyn std::any::Any + Send>;

/// Messages about the catalog and producer ids, which shard 0 owns.
pub enum CatalogMsg {
    /// To shard 0, the catalog's owner.
    CreateTopic {
        name: String,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
        reply: ReplyTo<Result<TopicMeta, TopicOpError>>,
    },
    /// To shard 0, the catalog's owner.
    DeleteTopic { name: String, reply: ReplyTo<Result<(), TopicOpError>> },
    /// From shard 0 after the catalog change is durable: open the partitions
    /// this shard owns, then show the topic to clients.
    TopicCreated { name: String, meta: TopicMeta, reply: ReplyTo<Result<(), TopicOpError>> },
    /// From shard 0 after the catalog change is durable: hide the topic and
    /// close this shard's logs of it.
    TopicDeleted { name: String, reply: ReplyTo<()> },
    /// To shard 0, the catalog's owner: change a topic's configs or partition count.
    UpdateTopic {
        name: String,
        update: TopicUpdate,
        validate_only: bool,
        reply: ReplyTo<Result<TopicMeta, TopicOpError>>,
    },
    /// From shard 0 after the catalog change is durable: open the new
    /// partitions this shard owns, apply the configs to its running logs,
    /// then show the new entry to clients.
    TopicChanged { name: String, meta: TopicMeta, reply: ReplyTo<Result<(), TopicOpError>> },
    /// To shard 0: reserve a block of producer ids durably (`catalog::producer_ids`).
    AllocateProducerIds { reply: ReplyTo<Result<IdBlock, ProducerIdError>> },
}

/// Where the answer to a request goes: shard `from`, its request `id`. The
/// type parameter names what the answer is.
/// Not `Clone`: the one `ReplyTo` of a request is consumed by its answer.
pub struct ReplyTo<T> {
    pub(super) from: usize,
    pub(super) id: u64,
    _answer: PhantomData<fn(T)>,
}

impl<T> ReplyTo<T> {
    pub(super) fn new(from: usize, id: u64) -> ReplyTo<T> {
        ReplyTo { from, id, _answer: PhantomData }
    }
}

/// Every kind of answer, as it travels back.
pub enum ReplyPayload {
    Append(Result<AppendOutcome, StorageError>),
    Read(Result<ReadResult, StorageError>),
    Offsets(Option<Offsets>),
    Unit(()),
    Topic(Result<TopicMeta, TopicOpError>),
    TopicChange(Result<(), TopicOpError>),
    /// Boxed: a report (histograms) is far larger than any other answer.
    Report(Box<ShardReport>),
    LowWatermark(Result<i64, StorageError>),
    TimeLookup(Result<Option<(i64, i64)>, StorageError>),
    ProducerIds(Result<IdBlock, ProducerIdError>),
    Group(crate::groups::GroupAnswer),
    Any(AnyAnswer),
}

macro_rules! payload {
    ($variant:ident, $t:ty) => {
        impl From<$t> for ReplyPayload {
            fn from(v: $t) -> ReplyPayload {
                ReplyPayload::$variant(v)
            }
        }
        impl TryFrom<ReplyPayload> for $t {
            type Error = ();
            fn try_from(p: ReplyPayload) -> Result<$t, ()> {
                match p {
                    ReplyPayload::$variant(v) => Ok(v),
                    _ => Err(()),
                }
            }
        }
    };
}
payload!(Append, Result<AppendOutcome, StorageError>);
payload!(Read, Result<ReadResult, StorageError>);
payload!(Offsets, Option<Offsets>);
payload!(Unit, ());
payload!(Topic, Result<TopicMeta, TopicOpError>);
payload!(TopicChange, Result<(), TopicOpError>);
payload!(Report, Box<ShardReport>);
payload!(LowWatermark, Result<i64, StorageError>);
payload!(TimeLookup, Result<Option<(i64, i64)>, StorageError>);
payload!(ProducerIds, Result<IdBlock, ProducerIdError>);
payload!(Group, crate::groups::GroupAnswer);
payload!(Any, AnyAnswer);
