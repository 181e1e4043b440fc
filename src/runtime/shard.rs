//! One shard's state and its routing: the partition logs it owns, its
//! snapshot of the topic catalog, and the calls that reach a partition or the
//! catalog wherever they live. Shard 0 owns the catalog (DESIGN §2); every
//! other shard keeps a read-only snapshot that shard 0 updates by message
//! before it answers the change.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::sync::Semaphore;

use super::mesh::{PartitionGauges, ReplyPayload, ReplyTo, ShardMsg, ShardReport};
use crate::catalog::producer_ids::{IdBlock, ProducerIdError, ProducerIdStore, ShardProducerIds};
use crate::catalog::{self, Catalog, TopicError, TopicMeta, TopicUpdate};
use crate::config::ServeConfig;
use crate::storage::log::{AckWait, AppendOutcome, Offsets};
use crate::storage::reader::ReadResult;
use crate::storage::{segment, PartitionLog, StorageError};

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

/// Counters of one shard (DESIGN §2: per-shard, no sharing).
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
    catalog: RefCell<Catalog>,
    logs: RefCell<HashMap<(String, i32), Rc<PartitionLog>>>,
    /// Serialises catalog changes on the catalog shard.
    catalog_change: Semaphore,
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
    fn topics_dir(&self) -> PathBuf {
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
            logs: RefCell::new(HashMap::new()),
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

    async fn open_partitions(&self, name: &str, meta: &TopicMeta) -> Result<(), TopicOpError> {
        let log_config = catalog::log_config(&self.config.log, meta);
        for p in 0..meta.partitions {
            if !self.owns(name, p) || self.logs.borrow().contains_key(&(name.to_string(), p)) {
                continue;
            }
            let log = PartitionLog::open(self.partition_dir(name, p), name.to_string(), p, log_config.clone()).await?;
            self.logs.borrow_mut().insert((name.to_string(), p), log);
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
        debug_assert_ne!(to, self.id);
        let peers = self.peers.get()?;
        let peer = *self.peer_of.get()?.get(to)?;
        let turns = self.send_turns.get(to)?;
        let id = self.next_request_id.get();
        self.next_request_id.set(id.wrapping_add(1));
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
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

    /// Sends an answer back to the shard that asked.
    async fn answer<T: Into<ReplyPayload>>(&self, to: ReplyTo<T>, value: T) {
        let (Some(peers), Some(peer)) = (self.peers.get(), self.peer_of.get().and_then(|p| p.get(to.from).copied()))
        else {
            return;
        };
        let msg = ShardMsg::Reply { id: to.id, payload: value.into() };
        if peers.send_to(peer, msg).await.is_err() {
            tracing::debug!(shard = to.from, "reply not delivered: the shard is stopping");
        }
    }

    async fn serve_msg(self: Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::Append { topic, partition, records, wait, reply } => {
                let r = self.append(&topic, partition, records, wait).await;
                self.answer(reply, r).await;
            }
            ShardMsg::Read { topic, partition, offset, max_bytes, reply } => {
                let r = self.read(&topic, partition, offset, max_bytes).await;
                self.answer(reply, r).await;
            }
            ShardMsg::Offsets { topic, partition, reply } => {
                let r = self.offsets(&topic, partition).await;
                self.answer(reply, r).await;
            }
            ShardMsg::WaitForData { topic, partition, offset, timeout, reply } => {
                // Bounded by the fetch's own deadline; an asker that stopped
                // waiting drops the answer.
                if let Some(log) = self.log(&topic, partition) {
                    log.wait_for_data(offset, timeout).await;
                }
                self.answer(reply, ()).await;
            }
            ShardMsg::CreateTopic { name, partitions, configs, validate_only, reply } => {
                let r = self.create_topic(&name, partitions, configs, validate_only).await;
                self.answer(reply, r).await;
            }
            ShardMsg::DeleteTopic { name, reply } => {
                let r = self.delete_topic(&name).await;
                self.answer(reply, r).await;
            }
            ShardMsg::TopicCreated { name, meta, reply } => {
                let r = self.apply_created(&name, &meta).await;
                self.answer(reply, r).await;
            }
            ShardMsg::TopicDeleted { name, reply } => {
                self.apply_deleted(&name).await;
                self.answer(reply, ()).await;
            }
            ShardMsg::UpdateTopic { name, update, validate_only, reply } => {
                let r = self.update_topic(&name, update, validate_only).await;
                self.answer(reply, r).await;
            }
            ShardMsg::TopicChanged { name, meta, reply } => {
                let r = self.apply_changed(&name, &meta).await;
                self.answer(reply, r).await;
            }
            ShardMsg::DeleteRecords { topic, partition, offset, reply } => {
                let r = self.delete_records(&topic, partition, offset).await;
                self.answer(reply, r).await;
            }
            ShardMsg::OffsetForTime { topic, partition, timestamp_ms, reply } => {
                let r = self.offset_for_timestamp(&topic, partition, timestamp_ms).await;
                self.answer(reply, r).await;
            }
            ShardMsg::Report { reply } => {
                let r = self.report();
                self.answer(reply, r).await;
            }
            ShardMsg::AllocateProducerIds { reply } => {
                let r = self.reserve_producer_ids().await;
                self.answer(reply, r).await;
            }
            ShardMsg::Group { call, reply } => {
                let r = self.groups.call(call).await;
                self.answer(reply, r).await;
            }
            ShardMsg::Reply { id, payload } => {
                if let Some(waiter) = self.pending.borrow_mut().remove(&id) {
                    let _ = waiter.send(payload);
                }
            }
        }
    }

    // ---- partitions, wherever they live ----

    /// The log of a partition owned by this shard.
    pub fn log(&self, topic: &str, partition: i32) -> Option<Rc<PartitionLog>> {
        self.logs.borrow().get(&(topic.to_string(), partition)).cloned()
    }

    pub fn logs(&self) -> Vec<Rc<PartitionLog>> {
        self.logs.borrow().values().cloned().collect()
    }

    pub async fn append(
        &self,
        topic: &str,
        partition: i32,
        records: BytesMut,
        wait: AckWait,
    ) -> Result<AppendOutcome, StorageError> {
        let owner = self.owner(topic, partition);
        if owner == self.id {
            let log = self.log(topic, partition).ok_or(StorageError::Closed)?;
            return log.append(records, wait).await;
        }
        let topic = topic.to_string();
        self.ask(owner, |reply| ShardMsg::Append { topic, partition, records, wait, reply })
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
        let owner = self.owner(topic, partition);
        if owner == self.id {
            let log = self.log(topic, partition).ok_or(StorageError::Closed)?;
            return log.read(offset, max_bytes);
        }
        let topic = topic.to_string();
        self.ask(owner, |reply| ShardMsg::Read { topic, partition, offset, max_bytes, reply })
            .await
            .unwrap_or(Err(StorageError::Closed))
    }

    pub async fn offsets(&self, topic: &str, partition: i32) -> Option<Offsets> {
        let owner = self.owner(topic, partition);
        if owner == self.id {
            return self.log(topic, partition).map(|l| l.offsets());
        }
        let topic = topic.to_string();
        self.ask(owner, |reply| ShardMsg::Offsets { topic, partition, reply }).await.flatten()
    }

    /// Waits until the partition's high watermark passes `offset`, or `timeout`.
    pub async fn wait_for_data(&self, topic: &str, partition: i32, offset: i64, timeout: Duration) {
        let owner = self.owner(topic, partition);
        if owner == self.id {
            if let Some(log) = self.log(topic, partition) {
                log.wait_for_data(offset, timeout).await;
            }
            return;
        }
        let topic = topic.to_string();
        self.ask(owner, |reply| ShardMsg::WaitForData { topic, partition, offset, timeout, reply }).await;
    }

    // ---- the catalog ----

    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.catalog.borrow().topics.get(name).cloned()
    }

    pub fn topics(&self) -> Vec<(String, TopicMeta)> {
        self.catalog.borrow().topics.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Creates a topic. On the catalog shard: the catalog is made durable
    /// first, then every shard opens its partitions and shows the topic, then
    /// the call returns. Elsewhere: asks the catalog shard.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicMeta, TopicOpError> {
        catalog::validate_topic_name(name)?;
        if !(1..=catalog::MAX_PARTITIONS).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(partitions).into());
        }
        let mut probe = self.config.log.clone();
        for (k, v) in &configs {
            catalog::apply_config(&mut probe, k, v)?;
        }
        if self.id != CATALOG_SHARD {
            let name = name.to_string();
            return self
                .ask(CATALOG_SHARD, |reply| ShardMsg::CreateTopic { name, partitions, configs, validate_only, reply })
                .await
                .unwrap_or(Err(TopicOpError::ShardGone(CATALOG_SHARD)));
        }
        let _permit = self.catalog_change.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        if self.catalog.borrow().topics.contains_key(name) {
            return Err(TopicOpError::AlreadyExists(name.to_string()));
        }
        let meta = TopicMeta { id: uuid::Uuid::new_v4(), partitions, configs };
        if validate_only {
            return Ok(meta);
        }
        let mut next = self.catalog.borrow().clone();
        next.topics.insert(name.to_string(), meta.clone());
        self.store_catalog(next).await?;
        self.apply_created(name, &meta).await?;
        for peer in (0..self.count).filter(|&p| p != self.id) {
            let (n, m) = (name.to_string(), meta.clone());
            self.ask(peer, |reply| ShardMsg::TopicCreated { name: n, meta: m, reply })
                .await
                .unwrap_or(Err(TopicOpError::ShardGone(peer)))?;
        }
        tracing::info!(topic = name, partitions, "created topic");
        Ok(meta)
    }

    async fn store_catalog(&self, next: Catalog) -> Result<(), TopicOpError> {
        let dir = self.config.data_dir.clone();
        segment::blocking(move || next.store(&dir).map(|_| next)).await.map(|stored| {
            *self.catalog.borrow_mut() = stored;
        })?;
        Ok(())
    }

    async fn apply_created(&self, name: &str, meta: &TopicMeta) -> Result<(), TopicOpError> {
        self.open_partitions(name, meta).await?;
        self.catalog.borrow_mut().topics.insert(name.to_string(), meta.clone());
        Ok(())
    }

    async fn apply_deleted(&self, name: &str) {
        self.catalog.borrow_mut().topics.remove(name);
        let logs: Vec<Rc<PartitionLog>> = {
            let mut all = self.logs.borrow_mut();
            let keys: Vec<_> = all.keys().filter(|(t, _)| t == name).cloned().collect();
            keys.into_iter().filter_map(|k| all.remove(&k)).collect()
        };
        for log in logs {
            log.close().await;
        }
    }

    /// The topic, created with the default partition count when auto-creation is on.
    pub async fn ensure_topic(&self, name: &str) -> Option<TopicMeta> {
        if let Some(meta) = self.topic(name) {
            return Some(meta);
        }
        if !self.config.auto_create_topics {
            return None;
        }
        match self.create_topic(name, self.config.default_partitions, BTreeMap::new(), false).await {
            Ok(meta) => Some(meta),
            Err(TopicOpError::AlreadyExists(_)) => self.topic(name),
            Err(e) => {
                tracing::warn!(topic = name, error = %e, "auto-creating topic failed");
                None
            }
        }
    }

    /// Deletes a topic: the catalog change is made durable, every shard
    /// closes its logs of the topic, then its files are removed.
    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicOpError> {
        if self.id != CATALOG_SHARD {
            let name = name.to_string();
            return self
                .ask(CATALOG_SHARD, |reply| ShardMsg::DeleteTopic { name, reply })
                .await
                .unwrap_or(Err(TopicOpError::ShardGone(CATALOG_SHARD)));
        }
        let _permit = self.catalog_change.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        let mut next = self.catalog.borrow().clone();
        if next.topics.remove(name).is_none() {
            return Err(TopicOpError::Unknown(name.to_string()));
        }
        self.store_catalog(next).await?;
        self.apply_deleted(name).await;
        for peer in (0..self.count).filter(|&p| p != self.id) {
            let n = name.to_string();
            self.ask(peer, |reply| ShardMsg::TopicDeleted { name: n, reply }).await;
        }
        let topic_dir = self.topics_dir().join(name);
        segment::blocking(move || std::fs::remove_dir_all(&topic_dir))
            .await
            .map_err(|e| StorageError::io(format!("remove topic {name}"), e))?;
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Moves a partition's log start offset (DeleteRecords); returns the new one.
    pub async fn delete_records(&self, topic: &str, partition: i32, offset: i64) -> Result<i64, StorageError> {
        let owner = self.owner(topic, partition);
        if owner == self.id {
            let log = self.log(topic, partition).ok_or(StorageError::Closed)?;
            return log.delete_records(offset).await;
        }
        let topic = topic.to_string();
        self.ask(owner, |reply| ShardMsg::DeleteRecords { topic, partition, offset, reply })
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
        let owner = self.owner(topic, partition);
        if owner == self.id {
            let log = self.log(topic, partition).ok_or(StorageError::Closed)?;
            return Ok(if timestamp_ms == MAX_TIMESTAMP {
                log.offset_of_max_timestamp()
            } else {
                log.offset_for_timestamp(timestamp_ms)
            });
        }
        let topic = topic.to_string();
        self.ask(owner, |reply| ShardMsg::OffsetForTime { topic, partition, timestamp_ms, reply })
            .await
            .unwrap_or(Err(StorageError::Closed))
    }

    /// Changes a topic's configs or partition count. On the catalog shard:
    /// the catalog is made durable first, then every shard takes the new
    /// entry (opening new partitions, applying configs to running logs), then
    /// the call returns. Elsewhere: asks the catalog shard.
    pub async fn update_topic(
        &self,
        name: &str,
        update: TopicUpdate,
        validate_only: bool,
    ) -> Result<TopicMeta, TopicOpError> {
        if self.id != CATALOG_SHARD {
            let name = name.to_string();
            return self
                .ask(CATALOG_SHARD, |reply| ShardMsg::UpdateTopic { name, update, validate_only, reply })
                .await
                .unwrap_or(Err(TopicOpError::ShardGone(CATALOG_SHARD)));
        }
        let _permit = self.catalog_change.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        let meta = self.topic(name).ok_or_else(|| TopicOpError::Unknown(name.to_string()))?;
        let next_meta = catalog::apply_update(&meta, &update, &self.config.log)?;
        if validate_only || next_meta == meta {
            return Ok(next_meta);
        }
        let mut next = self.catalog.borrow().clone();
        next.topics.insert(name.to_string(), next_meta.clone());
        self.store_catalog(next).await?;
        self.apply_changed(name, &next_meta).await?;
        for peer in (0..self.count).filter(|&p| p != self.id) {
            let (n, m) = (name.to_string(), next_meta.clone());
            self.ask(peer, |reply| ShardMsg::TopicChanged { name: n, meta: m, reply })
                .await
                .unwrap_or(Err(TopicOpError::ShardGone(peer)))?;
        }
        tracing::info!(topic = name, partitions = next_meta.partitions, configs = ?next_meta.configs, "changed topic");
        Ok(next_meta)
    }

    async fn apply_changed(&self, name: &str, meta: &TopicMeta) -> Result<(), TopicOpError> {
        self.open_partitions(name, meta).await?;
        let log_config = catalog::log_config(&self.config.log, meta);
        for log in self.logs().into_iter().filter(|l| l.topic == name) {
            log.set_config(log_config.clone());
        }
        self.catalog.borrow_mut().topics.insert(name.to_string(), meta.clone());
        Ok(())
    }

    // ---- producer ids ----

    /// A producer id never handed out before, by any shard or any earlier run.
    pub async fn new_producer_id(&self) -> Result<i64, ProducerIdError> {
        if let Some(id) = self.producer_ids.take() {
            return Ok(id);
        }
        let _permit = self.producer_ids.fetching.acquire_permit(1).await.map_err(|_| ProducerIdError::ShardGone)?;
        if let Some(id) = self.producer_ids.take() {
            return Ok(id);
        }
        let block = if self.id == CATALOG_SHARD {
            self.reserve_producer_ids().await?
        } else {
            self.ask(CATALOG_SHARD, |reply| ShardMsg::AllocateProducerIds { reply })
                .await
                .unwrap_or(Err(ProducerIdError::ShardGone))?
        };
        self.producer_ids.install(block);
        self.producer_ids.take().ok_or(ProducerIdError::Exhausted)
    }

    /// On the catalog shard: the next block of producer ids, made durable
    /// before it is returned.
    async fn reserve_producer_ids(&self) -> Result<IdBlock, ProducerIdError> {
        let store = self.producer_ids.store.as_ref().ok_or(ProducerIdError::NotOwner)?;
        let _permit = self.producer_ids.storing.acquire_permit(1).await.map_err(|_| ProducerIdError::ShardGone)?;
        let (block, next, dir) = {
            let s = store.borrow();
            let (block, next) = s.plan()?;
            (block, next, s.dir().to_path_buf())
        };
        segment::blocking(move || ProducerIdStore::persist(&dir, next)).await?;
        store.borrow_mut().set_next_block(next);
        self.producer_ids.note_allocated(next);
        tracing::debug!(first = block.first, end = block.end, "reserved a block of producer ids");
        Ok(block)
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
                out.push(r);
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
