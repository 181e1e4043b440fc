//! One shard's state and its routing: the partition logs it owns, its
//! snapshot of the topic catalog (changes in `topics`), its consumer group
//! coordinator, and `route`, the one helper that runs an operation where
//! its object lives: on this shard, or on the owner over the mesh.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::sync::Semaphore;

use super::mesh::{AnyAnswer, Job, PartitionGauges, ReplyPayload, ReplyTo, ShardMsg, ShardReport};
use super::partitions::PartitionLogs;
use crate::catalog::producer_ids::{ProducerIdStore, ShardProducerIds};
use crate::catalog::{self, Catalog, TopicError, TopicMeta};
use crate::config::ServeConfig;
use crate::groups::{GroupAnswer, GroupCall};
use crate::storage::log::{AckWait, AppendOutcome, Offsets};
use crate::storage::reader::ReadResult;
use crate::storage::{PartitionLog, StorageError};

/// The shard that owns the catalog.
pub const CATALOG_SHARD: usize = 0;

/// ListOffsets timestamp asking for the record with the largest timestamp (KIP-734).
pub const MAX_TIMESTAMP: i64 = -3;

#[derive(Debug, thiserror::Error)]
pub enum TopicOpError {
    #[error("topic `{0}` already exists")]
    AlreadyExists(String),
    #[error("unknown topic `{0}`")]
    Unknown(String),
    #[error(transparent)]
    Invalid(#[from] TopicError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("catalog: {0}")]
    Catalog(#[from] catalog::CatalogError),
    #[error("shard {0} is not answering (stopping?)")]
    ShardGone(usize),
}

/// Counters of one shard (per shard, never shared between shards).
#[derive(Debug, Default)]
pub struct ShardCounters {
    pub requests: Cell<u64>,
    pub produce_bytes: Cell<u64>,
    pub fetch_bytes: Cell<u64>,
    pub cross_shard_hops: Cell<u64>,
    pub connections_accepted: Cell<u64>,
    pub connections_open: Cell<u64>,
    pub connections_refused: Cell<u64>,
    /// Connections closed because a request could not be framed or parsed.
    pub connections_closed_on_bad_input: Cell<u64>,
    /// Requests read and not yet answered.
    pub requests_in_flight: Cell<u64>,
    /// Error codes sent to clients (produce and fetch partitions, closes as -1).
    pub errors_by_code: RefCell<BTreeMap<i16, u64>>,
    /// Produce requests answered on this shard's connections: time from the
    /// whole request read to the whole response written, in µs.
    pub produce_latency_us: RefCell<crate::histogram::Log2Histogram>,
}

pub fn bump(c: &Cell<u64>, by: u64) {
    c.set(c.get().wrapping_add(by));
}

impl ShardCounters {
    /// Counts an error code sent to a client (0 is not an error).
    pub fn error(&self, code: i16) {
        if code != 0 {
            *self.errors_by_code.borrow_mut().entry(code).or_default() += 1;
        }
    }
}

pub struct Shard {
    pub id: usize,
    pub count: usize,
    pub cpu: usize,
    pub config: ServeConfig,
    /// Host and port given to clients in Metadata.
    pub advertised: RefCell<(String, u16)>,
    pub(super) catalog: RefCell<Catalog>,
    pub(super) logs: RefCell<PartitionLogs>,
    /// Serialises catalog changes on the catalog shard.
    pub(super) catalog_change: Semaphore,
    peers: OnceCell<Senders<ShardMsg>>,
    /// One turn per peer shard: requests to a peer enter its mesh channel in
    /// the order they were asked (glommio's `send_to` lets a newer sender
    /// overtake an older one waiting on a full channel, which would reorder
    /// one connection's produce requests for a partition — fatal for an
    /// idempotent producer). glommio's semaphore serves waiters first come,
    /// first served.
    send_turns: Vec<Semaphore>,
    /// Mesh peer index of each shard (glommio numbers peers by executor id).
    peer_of: OnceCell<Vec<usize>>,
    /// Requests sent to other shards, waiting for their `ShardMsg::Reply`.
    /// Completed on this thread only (see `mesh`).
    pending: RefCell<HashMap<u64, oneshot::Sender<ReplyPayload>>>,
    next_request_id: Cell<u64>,
    pub stopping: Cell<bool>,
    pub counters: ShardCounters,
    /// Producer ids this shard hands out (see `catalog::producer_ids`).
    pub producer_ids: ShardProducerIds,
    /// Consumer groups coordinated by this shard.
    pub groups: Rc<crate::groups::Coordinator>,
}

pub use crate::placement::shard_of;

impl Shard {
    pub(super) fn topics_dir(&self) -> PathBuf {
        self.config.data_dir.join("topics")
    }

    fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.topics_dir().join(topic).join(partition.to_string())
    }

    pub fn owner(&self, topic: &str, partition: i32) -> usize {
        shard_of(topic, partition, self.count)
    }

    pub fn owns(&self, topic: &str, partition: i32) -> bool {
        self.owner(topic, partition) == self.id
    }

    /// Loads the catalog and opens (recovers) every partition this shard owns.
    pub async fn open(id: usize, count: usize, cpu: usize, config: ServeConfig) -> Result<Rc<Shard>, TopicOpError> {
        let catalog = Catalog::load(&config.data_dir)?;
        let producer_id_store = if id == CATALOG_SHARD {
            Some(ProducerIdStore::load(&config.data_dir).map_err(catalog::CatalogError::from)?)
        } else {
            None
        };
        let advertised = (config.listen.ip().to_string(), config.listen.port());
        let groups = Rc::new(crate::groups::Coordinator::new(id, count, config.group_initial_rebalance_delay));
        let shard = Rc::new(Shard {
            id,
            count,
            cpu,
            config,
            advertised: RefCell::new(advertised),
            catalog: RefCell::new(catalog),
            logs: RefCell::new(PartitionLogs::default()),
            catalog_change: Semaphore::new(1),
            peers: OnceCell::new(),
            send_turns: (0..count).map(|_| Semaphore::new(1)).collect(),
            peer_of: OnceCell::new(),
            pending: RefCell::new(HashMap::new()),
            next_request_id: Cell::new(0),
            stopping: Cell::new(false),
            counters: ShardCounters::default(),
            producer_ids: ShardProducerIds::new(producer_id_store),
            groups,
        });
        if id == CATALOG_SHARD {
            // Directories of topics the catalog does not know: a create or
            // delete that a crash cut short. They were never visible to clients.
            if let Ok(entries) = std::fs::read_dir(shard.topics_dir()) {
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().to_string();
                    if !shard.catalog.borrow().topics.contains_key(&name) {
                        tracing::warn!(topic = %name, "removing directory of a topic that is not in the catalog");
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                }
            }
        }
        let topics: Vec<(String, TopicMeta)> = shard.topics();
        for (name, meta) in topics {
            shard.open_partitions(&name, &meta).await?;
        }
        shard
            .groups
            .load(&shard.config.data_dir, &shard.config.log)
            .await
            .map_err(crate::groups::CoordinatorError::into_storage)?;
        Ok(shard)
    }

    /// Opens the partitions of a topic that this shard owns and has not opened yet.
    pub(super) async fn open_partitions(&self, name: &str, meta: &TopicMeta) -> Result<(), TopicOpError> {
        let log_config = catalog::log_config(&self.config.log, meta);
        for p in 0..meta.partitions {
            if !self.owns(name, p) || self.logs.borrow().contains(name, p) {
                continue;
            }
            let log = PartitionLog::open(self.partition_dir(name, p), name.to_string(), p, log_config.clone()).await?;
            // `route` runs a partition's operations here only if this shard
            // owns it; `insert` checks it was not opened twice (catalog
            // changes are serialised).
            assert!(self.owns(name, p), "shard {} opened {name}/{p}, owned by shard {}", self.id, self.owner(name, p));
            self.logs.borrow_mut().insert(name, p, log);
        }
        Ok(())
    }

    /// Connects this shard to the others and starts serving their requests.
    /// `peer_of[shard]` is that shard's index in the mesh.
    pub fn attach_mesh(
        self: &Rc<Self>,
        senders: Senders<ShardMsg>,
        receivers: Receivers<ShardMsg>,
        peer_of: Vec<usize>,
    ) {
        assert_eq!(peer_of.len(), self.count);
        assert_eq!(peer_of[self.id], senders.peer_id(), "this shard's own mesh index");
        let receivers = Rc::new(receivers);
        for peer in 0..self.count {
            if peer == senders.peer_id() {
                continue;
            }
            let (shard, receivers) = (self.clone(), receivers.clone());
            glommio::spawn_local(async move {
                while let Ok(Some(msg)) = receivers.recv_from(peer).await {
                    let shard = shard.clone();
                    glommio::spawn_local(async move { shard.serve_msg(msg).await }).detach();
                }
            })
            .detach();
        }
        let _ = self.peers.set(senders);
        let _ = self.peer_of.set(peer_of);
    }

    /// Sends a request to shard `to` and waits for its reply (which comes
    /// back over the mesh; the oneshot here never leaves this thread).
    pub(crate) async fn ask<R: TryFrom<ReplyPayload>>(
        &self,
        to: usize,
        make: impl FnOnce(ReplyTo<R>) -> ShardMsg,
    ) -> Option<R> {
        assert_ne!(to, self.id, "a shard asks itself over the mesh");
        let peers = self.peers.get()?;
        let peer = *self.peer_of.get()?.get(to)?;
        let turns = self.send_turns.get(to)?;
        let id = self.next_request_id.get();
        self.next_request_id.set(id.wrapping_add(1));
        let (tx, rx) = oneshot::channel();
        let earlier = self.pending.borrow_mut().insert(id, tx);
        assert!(earlier.is_none(), "request id {id} is still waiting for its answer");
        bump(&self.counters.cross_shard_hops, 1);
        let sent = match turns.acquire_permit(1).await {
            Ok(_turn) => peers.send_to(peer, make(ReplyTo::new(self.id, id))).await.is_ok(),
            Err(_) => false,
        };
        if !sent {
            self.pending.borrow_mut().remove(&id);
            return None;
        }
        let payload = rx.await.ok()?;
        R::try_from(payload).ok()
    }

    /// Runs an operation on the shard that owns its object (a partition, a
    /// consumer group, the catalog): here by `local` when that is this
    /// shard, with no message and no extra task; else by sending the message
    /// `remote` builds to `owner` and waiting for its answer, None when
    /// `owner` is not answering (stopping). `input` goes to whichever runs,
    /// so what the operation consumes (records to append) is moved, never
    /// copied. The one place that decides local or remote: a new kind of
    /// owned object needs its owner's index, a message, and a call here.
    pub(crate) async fn route<I, R, F>(
        &self,
        owner: usize,
        input: I,
        local: impl FnOnce(I) -> F,
        remote: impl FnOnce(I, ReplyTo<R>) -> ShardMsg,
    ) -> Option<R>
    where
        F: Future<Output = R>,
        R: TryFrom<ReplyPayload>,
    {
        assert!(owner < self.count, "shard {owner} of {}", self.count);
        if owner == self.id {
            return Some(local(input).await);
        }
        self.ask(owner, |reply| remote(input, reply)).await
    }

    /// Runs `make()`'s future on shard `to` (here when it is this one, with
    /// no message and no task) and returns its output; `None` when that
    /// shard is not answering. For protocol state that lives per shard
    /// outside `Shard` (the AMQP broker): the job finds it there.
    pub async fn run_on<R, F, Fut>(&self, to: usize, make: F) -> Option<R>
    where
        R: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        let remote = |make: F, reply| {
            let job: Job = Box::new(move || Box::pin(async move { Box::new(make().await) as AnyAnswer }));
            ShardMsg::Run { job, reply: Some(reply) }
        };
        let local = |make: F| async move { Box::new(make().await) as AnyAnswer };
        let answer: AnyAnswer = self.route(to, make, local, remote).await?;
        answer.downcast::<R>().ok().map(|r| *r)
    }

    /// Runs `make()`'s future on shard `to` without waiting for it (only for
    /// its turn in the mesh, so jobs for one shard start in the order of
    /// calls); on this shard it is spawned. False when that shard is gone.
    pub async fn tell_on<F, Fut>(&self, to: usize, make: F) -> bool
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        if to == self.id {
            glommio::spawn_local(make()).detach();
            return true;
        }
        let job: Job = Box::new(move || {
            Box::pin(async move {
                make().await;
                Box::new(()) as AnyAnswer
            })
        });
        let (Some(peers), Some(peer), Some(turns)) =
            (self.peers.get(), self.peer_of.get().and_then(|p| p.get(to).copied()), self.send_turns.get(to))
        else {
            return false;
        };
        bump(&self.counters.cross_shard_hops, 1);
        match turns.acquire_permit(1).await {
            Ok(_turn) => peers.send_to(peer, ShardMsg::Run { job, reply: None }).await.is_ok(),
            Err(_) => false,
        }
    }

    /// Sends an answer back to the shard that asked.
    pub(super) async fn answer<T: Into<ReplyPayload>>(&self, to: ReplyTo<T>, value: T) {
        let (Some(peers), Some(peer)) = (self.peers.get(), self.peer_of.get().and_then(|p| p.get(to.from).copied()))
        else {
            return;
        };
        let msg = ShardMsg::Reply { id: to.id, payload: value.into() };
        if peers.send_to(peer, msg).await.is_err() {
            tracing::debug!(shard = to.from, "reply not delivered: the shard is stopping");
        }
    }

    /// Serves a message from another shard. Each request carries its
    /// `ReplyTo`, which `answer` consumes: one answer per request.
    async fn serve_msg(self: Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::Append { topic, partition, records, wait, reply } => {
                self.answer(reply, self.append(&topic, partition, records, wait).await).await
            }
            ShardMsg::Read { topic, partition, offset, max_bytes, reply } => {
                self.answer(reply, self.read(&topic, partition, offset, max_bytes).await).await
            }
            ShardMsg::Offsets { topic, partition, reply } => {
                self.answer(reply, self.offsets(&topic, partition).await).await
            }
            ShardMsg::WaitForData { topic, partition, offset, timeout, reply } => {
                // Bounded by the fetch's own deadline; an asker that stopped
                // waiting drops the answer.
                self.wait_for_data(&topic, partition, offset, timeout).await;
                self.answer(reply, ()).await
            }
            ShardMsg::DeleteRecords { topic, partition, offset, reply } => {
                self.answer(reply, self.delete_records(&topic, partition, offset).await).await
            }
            ShardMsg::OffsetForTime { topic, partition, timestamp_ms, reply } => {
                self.answer(reply, self.offset_for_timestamp(&topic, partition, timestamp_ms).await).await
            }
            ShardMsg::Report { reply } => self.answer(reply, Box::new(self.report())).await,
            ShardMsg::Group { call, reply } => self.answer(reply, self.groups.call(call).await).await,
            ShardMsg::Run { job, reply } => {
                let out = job().await;
                if let Some(reply) = reply {
                    self.answer(reply, out).await;
                }
            }
            ShardMsg::Reply { id, payload } => {
                let waiter = self.pending.borrow_mut().remove(&id);
                assert!(waiter.is_some(), "an answer to request {id}, which is not waiting: answered twice?");
                if let Some(waiter) = waiter {
                    // The asker may have stopped waiting (a fetch that returned).
                    let _ = waiter.send(payload);
                }
            }
            ShardMsg::Catalog(msg) => self.serve_catalog_msg(msg).await,
        }
    }

    // ---- partitions, wherever they live ----

    /// The log of a partition owned by this shard.
    pub fn log(&self, topic: &str, partition: i32) -> Option<Rc<PartitionLog>> {
        self.logs.borrow().get(topic, partition).cloned()
    }

    /// The log of a partition this shard owns, on the local path of a route.
    fn owned_log(&self, topic: &str, partition: i32) -> Result<Rc<PartitionLog>, StorageError> {
        debug_assert!(self.owns(topic, partition));
        self.log(topic, partition).ok_or(StorageError::Closed)
    }

    pub fn logs(&self) -> Vec<Rc<PartitionLog>> {
        self.logs.borrow().all()
    }

    pub async fn append(
        &self,
        topic: &str,
        partition: i32,
        records: BytesMut,
        wait: AckWait,
    ) -> Result<AppendOutcome, StorageError> {
        self.route(
            self.owner(topic, partition),
            records,
            |records| async move { self.owned_log(topic, partition)?.append(records, wait).await },
            |records, reply| ShardMsg::Append { topic: topic.to_string(), partition, records, wait, reply },
        )
        .await
        .unwrap_or(Err(StorageError::Closed))
    }

    pub async fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<ReadResult, StorageError> {
        self.route(
            self.owner(topic, partition),
            (),
            |()| async move { self.owned_log(topic, partition)?.read(offset, max_bytes) },
            |(), reply| ShardMsg::Read { topic: topic.to_string(), partition, offset, max_bytes, reply },
        )
        .await
        .unwrap_or(Err(StorageError::Closed))
    }

    pub async fn offsets(&self, topic: &str, partition: i32) -> Option<Offsets> {
        self.route(
            self.owner(topic, partition),
            (),
            |()| async move { self.log(topic, partition).map(|l| l.offsets()) },
            |(), reply| ShardMsg::Offsets { topic: topic.to_string(), partition, reply },
        )
        .await
        .flatten()
    }

    /// Waits until the partition's high watermark passes `offset`, or `timeout`.
    pub async fn wait_for_data(&self, topic: &str, partition: i32, offset: i64, timeout: Duration) {
        let local = |()| async move {
            if let Some(log) = self.log(topic, partition) {
                log.wait_for_data(offset, timeout).await;
            }
        };
        let remote = |(), reply| ShardMsg::WaitForData { topic: topic.to_string(), partition, offset, timeout, reply };
        self.route(self.owner(topic, partition), (), local, remote).await;
    }

    /// Moves a partition's log start offset (DeleteRecords); returns the new one.
    pub async fn delete_records(&self, topic: &str, partition: i32, offset: i64) -> Result<i64, StorageError> {
        self.route(
            self.owner(topic, partition),
            (),
            |()| async move { self.owned_log(topic, partition)?.delete_records(offset).await },
            |(), reply| ShardMsg::DeleteRecords { topic: topic.to_string(), partition, offset, reply },
        )
        .await
        .unwrap_or(Err(StorageError::Closed))
    }

    /// ListOffsets by timestamp: (offset, timestamp) of the first record at
    /// or after `timestamp_ms`, or with -3 of the largest timestamp.
    pub async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let local = |()| async move {
            let log = self.owned_log(topic, partition)?;
            Ok(if timestamp_ms == MAX_TIMESTAMP {
                log.offset_of_max_timestamp()
            } else {
                log.offset_for_timestamp(timestamp_ms)
            })
        };
        let remote = |(), reply| ShardMsg::OffsetForTime { topic: topic.to_string(), partition, timestamp_ms, reply };
        self.route(self.owner(topic, partition), (), local, remote).await.unwrap_or(Err(StorageError::Closed))
    }

    // ---- consumer groups, wherever they live ----

    /// Runs a consumer group call on shard `target` (the group's, or each
    /// shard in turn for a listing); None when that shard is not answering.
    pub async fn call_group(&self, target: usize, call: GroupCall) -> Option<GroupAnswer> {
        self.route(target, call, |call| self.groups.call(call), |call, reply| ShardMsg::Group { call, reply }).await
    }

    // ---- reporting and shutdown ----

    pub fn report(&self) -> ShardReport {
        let c = &self.counters;
        let mut partitions: Vec<PartitionGauges> = self
            .logs()
            .iter()
            .map(|l| {
                let (commit_latency_us, commit_write_bytes) = l.commit_histograms();
                PartitionGauges {
                    topic: l.topic.clone(),
                    partition: l.partition,
                    offsets: l.offsets(),
                    commits: l.commit_count(),
                    committed_bytes: l.committed_bytes(),
                    segments_recycled: l.segments_recycled(),
                    commit_writes_overlapped: l.commit_writes_overlapped(),
                    commit_latency_us,
                    commit_write_bytes,
                }
            })
            .collect();
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        ShardReport {
            shard: self.id,
            cpu: self.cpu,
            requests: c.requests.get(),
            produce_bytes: c.produce_bytes.get(),
            fetch_bytes: c.fetch_bytes.get(),
            cross_shard_hops: c.cross_shard_hops.get(),
            connections_accepted: c.connections_accepted.get(),
            connections_open: c.connections_open.get(),
            connections_refused: c.connections_refused.get(),
            connections_closed_on_bad_input: c.connections_closed_on_bad_input.get(),
            requests_in_flight: c.requests_in_flight.get(),
            errors_by_code: c.errors_by_code.borrow().iter().map(|(k, v)| (*k, *v)).collect(),
            produce_latency_us: *c.produce_latency_us.borrow(),
            partitions,
            groups: self.groups.gauges(),
        }
    }

    /// Every shard's report (this one's, then the others' by message).
    pub async fn reports(&self) -> Vec<ShardReport> {
        let mut out = vec![self.report()];
        for peer in (0..self.count).filter(|&p| p != self.id) {
            if let Some(r) = self.ask(peer, |reply| ShardMsg::Report { reply }).await {
                out.push(*r);
            }
        }
        out.sort_by_key(|r| r.shard);
        out
    }

    /// Commits what is queued and closes every log.
    pub async fn shutdown(&self) {
        self.stopping.set(true);
        for log in self.logs() {
            log.close().await;
        }
        self.groups.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_of_is_stable_and_in_range() {
        for n in 1..8 {
            for p in 0..64 {
                let s = shard_of("orders", p, n);
                assert!(s < n);
                assert_eq!(s, shard_of("orders", p, n));
            }
        }
        assert_eq!(shard_of("t", 3, 1), 0);
    }

    #[test]
    fn shard_of_spreads_a_topics_partitions_over_shards() {
        let owners: std::collections::HashSet<usize> = (0..8).map(|p| shard_of("orders", p, 2)).collect();
        assert_eq!(owners.len(), 2);
    }
}
