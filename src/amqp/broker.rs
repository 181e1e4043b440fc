//! The AMQP side of one shard: its copy of the vhost's definitions, the
//! queues it owns, the connections it serves, and the operations that reach
//! a queue or the definitions wherever they live.
//!
//! Ownership: the definitions shard (shard 0) applies every change to the
//! definitions, stores the durable part, then sends the change to every
//! other shard before it answers (as the topic catalog does); a queue lives
//! on `queue_owner(name)`, which opens it when it is declared and at start.
//! Connections land on any shard; their publishes are routed with the local
//! copy of the definitions and sent to each queue's owner; deliveries come
//! back to the consumer's shard.
//!
//! One `Broker` per shard thread, reachable as `Broker::current()` from jobs
//! another shard runs here (`Shard::run_on`).

use std::cell::{Cell, Ref, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::future::LocalBoxFuture;

use super::codes;
use super::definitions::{Change, DefinitionError, Definitions, QueueDefWire};
use super::queue::dead_letter::DeadLetter;
use super::queue::{
    ConsumeError, ConsumerKey, Delivery, MemoryBudget, Outlet, PublishError, Queue, QueueOptions, QueueSpec, StoreError,
};
use super::AmqpConfig;
use crate::runtime::shard::Shard;
use crate::runtime::task::{self, Semaphore};
use crate::storage::{LogConfig, Preallocation};

/// The shard that owns the definitions.
pub const DEFINITIONS_SHARD: usize = 0;
const DEFINITIONS_FILE: &str = "definitions";

thread_local! {
    static CURRENT: RefCell<Option<Rc<Broker>>> = const { RefCell::new(None) };
}

/// What a connection offers the broker: deliveries for its consumers, and
/// word that a consumer was cancelled by its queue.
pub trait ConnectionPort {
    /// Hands a delivery to the consumer's channel; `Err` gives it back when
    /// the channel or consumer is gone.
    fn deliver(&self, delivery: Delivery) -> LocalBoxFuture<'_, Result<(), Delivery>>;
    fn consumer_cancelled(&self, consumer: ConsumerKey) -> LocalBoxFuture<'_, ()>;
}

/// A message handed out by basic.get.
#[derive(Debug)]
pub struct GetOk {
    pub offset: i64,
    pub redelivered: bool,
    pub batch: Bytes,
    pub message_count: u64,
}

/// What a definitions change did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChangeOutcome {
    pub changed: bool,
    /// Messages a deleted queue held.
    pub messages: u64,
}

/// What a queue deletion requires of the queue (queue.delete's `if-unused`
/// and `if-empty`, the HTTP API's `?if-unused=true` / `?if-empty=true`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeleteConditions {
    /// Refuse while the queue has consumers.
    pub if_unused: bool,
    /// Refuse while the queue holds messages, ready or unacknowledged.
    pub if_empty: bool,
}

/// Counters of this shard's AMQP side, for metrics.
#[derive(Debug, Default)]
pub struct BrokerCounters {
    pub connections_open: Cell<u64>,
    pub connections_accepted: Cell<u64>,
    pub channels_open: Cell<u64>,
    pub publish_confirm_latency_us: RefCell<crate::histogram::Log2Histogram>,
}

pub struct Broker {
    pub shard: Rc<Shard>,
    pub config: AmqpConfig,
    dir: PathBuf,
    queue_log: LogConfig,
    journal_log: LogConfig,
    defs: RefCell<Definitions>,
    /// One definitions change at a time (on the definitions shard).
    change_turn: Semaphore,
    queues: RefCell<HashMap<Arc<str>, Rc<Queue>>>,
    connections: RefCell<HashMap<u64, Rc<dyn ConnectionPort>>>,
    next_connection: Cell<u64>,
    memory: Rc<MemoryBudget>,
    outlet: Rc<dyn Outlet>,
    pub counters: BrokerCounters,
    /// Publishers are blocked: the data disk is nearly full.
    pub disk_alarm: Cell<bool>,
}

/// The queues' way back to the broker (weak: the broker owns the queues).
struct BrokerOutlet(Weak<Broker>);

fn refused(code: u16, text: impl Into<String>) -> DefinitionError {
    DefinitionError { code, text: text.into() }
}

fn gone() -> DefinitionError {
    refused(codes::INTERNAL_ERROR, "the shard holding it is stopping")
}

/// A queue's directory name: its name with every byte but `[A-Za-z0-9_-]`
/// as `%XX`.
fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push('%');
    }
    out
}

fn decode_name(encoded: &str) -> Option<String> {
    if encoded == "%" {
        return Some(String::new());
    }
    let b = encoded.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The shard owning queue `name` (FNV-1a of vhost and name): nothing on
/// disk depends on it, so the shard count may change between runs.
pub fn queue_owner(name: &str, shard_count: usize) -> usize {
    crate::placement::Fnv1a::new()
        .bytes(super::definitions::VHOST.as_bytes())
        .bytes(&[0])
        .bytes(name.as_bytes())
        .shard(shard_count)
}

impl Broker {
    /// This shard's broker (set by `open`).
    pub fn current() -> Option<Rc<Broker>> {
        CURRENT.with(|c| c.borrow().clone())
    }

    /// Loads the definitions and opens the durable queues this shard owns.
    pub async fn open(shard: Rc<Shard>, config: AmqpConfig, log: &LogConfig) -> Result<Rc<Broker>, String> {
        let dir = shard.config.data_dir.join("amqp");
        std::fs::create_dir_all(dir.join("queues")).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let defs_path = dir.join(DEFINITIONS_FILE);
        let defs = Definitions::load(&defs_path).map_err(|e| format!("AMQP definitions: {e}"))?;
        let mut queue_log = log.clone();
        assert!(
            config.queue_segment_bytes >= super::queue_segment_min_bytes(config.max_message_bytes),
            "checked by config"
        );
        queue_log.segment_bytes = config.queue_segment_bytes;
        queue_log.max_message_bytes = config.max_message_bytes + super::MESSAGE_OVERHEAD_MAX_BYTES;
        queue_log.pending_max_bytes = queue_log.pending_max_bytes.max(2 * queue_log.max_message_bytes);
        queue_log.retention_ms = -1;
        queue_log.retention_bytes = -1;
        queue_log.tail_cache_bytes = queue_log.tail_cache_bytes.min(1 << 20);
        let mut journal_log = queue_log.clone();
        journal_log.segment_bytes = 1 << 20;
        journal_log.max_message_bytes = 128 * 1024;
        journal_log.tail_cache_bytes = 64 * 1024;
        journal_log.preallocation = Preallocation::Fallocate;
        let memory = Rc::new(MemoryBudget { used_bytes: Cell::new(0), max_bytes: config.memory_queue_bytes });
        let broker = Rc::new_cyclic(|weak: &Weak<Broker>| Broker {
            shard,
            config,
            dir,
            queue_log,
            journal_log,
            defs: RefCell::new(defs),
            change_turn: Semaphore::new(1),
            queues: RefCell::new(HashMap::new()),
            connections: RefCell::new(HashMap::new()),
            next_connection: Cell::new(1),
            memory,
            outlet: Rc::new(BrokerOutlet(weak.clone())),
            counters: BrokerCounters::default(),
            disk_alarm: Cell::new(false),
        });
        CURRENT.with(|c| *c.borrow_mut() = Some(broker.clone()));
        if broker.shard.id == DEFINITIONS_SHARD {
            broker.remove_stray_queue_dirs();
        }
        let owned: Vec<(String, super::definitions::QueueDef)> = broker
            .defs
            .borrow()
            .queues
            .iter()
            .filter(|(n, _)| broker.owner(n) == broker.shard.id)
            .map(|(n, q)| (n.clone(), q.clone()))
            .collect();
        for (name, def) in owned {
            broker.open_queue(&name, &def).await.map_err(|e| format!("queue '{name}': {e}"))?;
        }
        Ok(broker)
    }

    /// Directories of queues the definitions do not hold: a declare or a
    /// delete that a crash cut short. Nothing in them was confirmed.
    fn remove_stray_queue_dirs(&self) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("queues")) else { return };
        for entry in entries.flatten() {
            let known = entry
                .file_name()
                .to_str()
                .and_then(decode_name)
                .is_some_and(|n| self.defs.borrow().queues.get(&n).is_some_and(|q| q.durable));
            if !known {
                tracing::warn!(dir = %entry.path().display(), "removing the files of a queue that is not defined");
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    fn queue_dir(&self, name: &str) -> PathBuf {
        self.dir.join("queues").join(encode_name(name))
    }

    pub fn owner(&self, queue: &str) -> usize {
        queue_owner(queue, self.shard.count)
    }

    pub fn definitions(&self) -> Ref<'_, Definitions> {
        self.defs.borrow()
    }

    pub fn definitions_path(&self) -> PathBuf {
        self.dir.join(DEFINITIONS_FILE)
    }

    /// A queue this shard owns.
    pub fn local_queue(&self, name: &str) -> Option<Rc<Queue>> {
        self.queues.borrow().get(name).cloned()
    }

    pub fn local_queues(&self) -> Vec<Rc<Queue>> {
        self.queues.borrow().values().cloned().collect()
    }

    async fn open_queue(&self, name: &str, def: &super::definitions::QueueDef) -> Result<(), StoreError> {
        if self.queues.borrow().contains_key(name) {
            return Ok(());
        }
        let arc: Arc<str> = Arc::from(name);
        // Checked at declare; a definitions file from elsewhere may still
        // hold a bad one: the queue opens without what it asks.
        let options = QueueOptions::parse(name, &def.arguments).unwrap_or_else(|e| {
            tracing::error!(queue = %name, error = %e, "ignoring the queue's arguments");
            QueueOptions::default()
        });
        let spec = QueueSpec { name: arc.clone(), auto_delete: def.auto_delete, options };
        let queue = if def.durable && def.exclusive_owner.is_none() {
            Queue::open_durable(
                &self.queue_dir(name),
                spec,
                self.queue_log.clone(),
                self.journal_log.clone(),
                self.outlet.clone(),
            )
            .await?
        } else {
            Queue::in_memory(spec, self.memory.clone(), self.outlet.clone())
        };
        self.queues.borrow_mut().insert(arc, queue);
        Ok(())
    }

    // ---- connections ----

    pub fn allocate_connection_id(&self) -> u64 {
        let id = self.next_connection.get();
        self.next_connection.set(id + 1);
        id
    }

    pub fn register_connection(&self, id: u64, port: Rc<dyn ConnectionPort>) {
        let fresh = self.connections.borrow_mut().insert(id, port).is_none();
        assert!(fresh, "connection ids are not reused");
    }

    pub fn unregister_connection(&self, id: u64) {
        self.connections.borrow_mut().remove(&id);
    }

    /// A delivery for a consumer on this shard; handed back if it is gone.
    async fn deliver_here(&self, delivery: Delivery) -> Result<(), Delivery> {
        let port = self.connections.borrow().get(&delivery.consumer.connection).cloned();
        match port {
            Some(p) => p.deliver(delivery).await,
            None => Err(delivery),
        }
    }

    // ---- definitions ----

    /// Applies `change` on the definitions shard (asked from any shard).
    pub async fn change(&self, change: Change) -> Result<ChangeOutcome, DefinitionError> {
        if self.shard.id == DEFINITIONS_SHARD {
            return self.change_here(change).await;
        }
        self.shard
            .run_on(DEFINITIONS_SHARD, move || async move {
                match Broker::current() {
                    Some(b) => b.change_here(change).await,
                    None => Err(gone()),
                }
            })
            .await
            .unwrap_or_else(|| Err(gone()))
    }

    async fn change_here(&self, change: Change) -> Result<ChangeOutcome, DefinitionError> {
        assert_eq!(self.shard.id, DEFINITIONS_SHARD, "only the definitions shard changes definitions");
        let _turn = self.change_turn.acquire(1).await.ok_or_else(gone)?;
        let mut outcome = self.apply_change(change.clone()).await?;
        if !outcome.changed {
            return Ok(outcome);
        }
        // Auto-delete exchanges that lost their last binding go too.
        if matches!(change, Change::Unbind(_) | Change::DeleteQueue { .. } | Change::DeleteExchange { .. }) {
            let orphans = self.defs.borrow().orphaned_auto_delete_exchanges();
            for name in orphans {
                let r = self.apply_change(Change::DeleteExchange { name }).await;
                outcome.changed |= r.is_ok();
            }
        }
        Ok(outcome)
    }

    async fn apply_change(&self, change: Change) -> Result<ChangeOutcome, DefinitionError> {
        if !self.defs.borrow().check(&change)? {
            return Ok(ChangeOutcome::default());
        }
        if let Change::DeclareQueue { name, queue } = &change {
            self.open_on_owner(name, queue).await?;
        }
        let durable = self.defs.borrow().touches_durable(&change);
        if durable {
            let mut next = self.defs.borrow().clone();
            next.apply(&change);
            let path = self.definitions_path();
            let stored = crate::storage::segment::blocking(move || {
                next.store(&path).map(|_| next).map_err(std::io::Error::other)
            })
            .await;
            match stored {
                Ok(next) => *self.defs.borrow_mut() = next,
                Err(e) => {
                    tracing::error!(error = %e, "storing the AMQP definitions failed");
                    // A queue opened for this declare goes again (its files too).
                    if let Change::DeclareQueue { name, .. } = &change {
                        self.delete_on_owner(name).await;
                    }
                    return Err(refused(codes::INTERNAL_ERROR, format!("cannot store the definitions: {e}")));
                }
            }
        } else {
            self.defs.borrow_mut().apply(&change);
        }
        for peer in (0..self.shard.count).filter(|&p| p != self.shard.id) {
            let c = change.clone();
            let applied = self
                .shard
                .run_on(peer, move || async move {
                    if let Some(b) = Broker::current() {
                        b.defs.borrow_mut().apply(&c);
                    }
                })
                .await;
            if applied.is_none() {
                tracing::warn!(shard = peer, "a shard did not take a definitions change (stopping?)");
            }
        }
        let mut outcome = ChangeOutcome { changed: true, messages: 0 };
        if let Change::DeleteQueue { name } = &change {
            outcome.messages = self.delete_on_owner(name).await;
        }
        Ok(outcome)
    }

    async fn open_on_owner(&self, name: &str, queue: &QueueDefWire) -> Result<(), DefinitionError> {
        let mut def = queue.def.clone();
        def.exclusive_owner = queue.exclusive_owner;
        let owned_name = name.to_string();
        let opened = self
            .shard
            .run_on(self.owner(name), move || async move {
                let b = Broker::current().ok_or_else(|| "no AMQP broker on this shard".to_string())?;
                b.open_queue(&owned_name, &def).await.map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|| Err("the queue's shard is stopping".into()));
        opened.map_err(|e| refused(codes::INTERNAL_ERROR, format!("cannot open queue '{name}': {e}")))
    }

    async fn delete_on_owner(&self, name: &str) -> u64 {
        let owned_name = name.to_string();
        self.shard
            .run_on(self.owner(name), move || async move {
                let Some(b) = Broker::current() else { return 0 };
                let q = b.queues.borrow_mut().remove(owned_name.as_str());
                match q {
                    Some(q) => q.delete().await,
                    None => 0,
                }
            })
            .await
            .unwrap_or(0)
    }

    // ---- queues, wherever they live ----

    /// Runs `f` with queue `name` on its owner; `NOT_FOUND` when it has none.
    async fn on_queue<R, F, Fut>(&self, name: &str, f: F) -> Result<R, DefinitionError>
    where
        R: Send + 'static,
        F: FnOnce(Rc<Queue>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<R, DefinitionError>> + 'static,
    {
        let owned_name = name.to_string();
        self.shard
            .run_on(self.owner(name), move || async move {
                let q = Broker::current().and_then(|b| b.local_queue(&owned_name));
                match q {
                    Some(q) => f(q).await,
                    None => Err(refused(codes::NOT_FOUND, format!("no queue '{owned_name}' in vhost '/'"))),
                }
            })
            .await
            .unwrap_or_else(|| Err(gone()))
    }

    /// Appends a message to a queue; with `durable`, once it is on disk.
    /// A full queue (`x-overflow` reject-publish) refuses it with
    /// `RESOURCE_ERROR`.
    pub async fn publish(
        &self,
        queue: &str,
        batch: BytesMut,
        durable: bool,
        key: Option<Bytes>,
    ) -> Result<(), DefinitionError> {
        self.on_queue(queue, move |q| async move {
            q.publish(batch, durable, key).await.map_err(|e| match e {
                PublishError::Full(_) => refused(codes::RESOURCE_ERROR, e.to_string()),
                PublishError::Store(_) => refused(codes::INTERNAL_ERROR, e.to_string()),
            })
        })
        .await
    }

    /// Appends a copy of `batch` to each of `queues` (the last gets the
    /// original), each on its owner; true if every queue took it (a queue
    /// deleted since it was routed to drops it, as RabbitMQ does). `key`:
    /// its de-duplication key, for queues that de-duplicate.
    pub async fn store_everywhere(
        self: &Rc<Self>,
        queues: BTreeSet<String>,
        batch: BytesMut,
        durable: bool,
        key: Option<Bytes>,
    ) -> bool {
        let stored = self.store_in_queues(queues, batch, durable, key).await;
        stored.full == 0 && stored.failed == 0
    }

    /// `store_everywhere`, telling full queues (`x-overflow` reject-publish)
    /// from failures.
    async fn store_in_queues(
        self: &Rc<Self>,
        queues: BTreeSet<String>,
        batch: BytesMut,
        durable: bool,
        key: Option<Bytes>,
    ) -> Refusals {
        let n = queues.len();
        let mut pending = Vec::with_capacity(n);
        let mut original = Some(batch);
        for (i, q) in queues.into_iter().enumerate() {
            let b = if i + 1 == n {
                original.take().expect("the original goes to the last queue")
            } else {
                BytesMut::from(&original.as_ref().expect("kept for the last queue")[..])
            };
            let broker = self.clone();
            let key = key.clone();
            pending.push(async move { (broker.publish(&q, b, durable, key).await, q) });
        }
        let results = futures_util::future::join_all(pending).await;
        let mut refusals = Refusals::default();
        for (r, q) in results {
            match r {
                Ok(()) => {}
                Err(e) if e.code == codes::NOT_FOUND => {}
                Err(e) if e.code == codes::RESOURCE_ERROR => {
                    tracing::debug!(queue = %q, error = %e, "a full queue refused a message");
                    refusals.full += 1;
                }
                Err(e) => {
                    tracing::warn!(queue = %q, error = %e, "a queue refused a message");
                    refusals.failed += 1;
                }
            }
        }
        refusals
    }

    /// Routes a dead letter with this shard's definitions and stores it at
    /// every queue it reaches (durably when persistent). True once stored,
    /// when it reaches no queue or only full ones (dropped there, as
    /// RabbitMQ does); false when a queue failed to store it (tried again
    /// whole, so the queues that took it may get it twice).
    async fn store_dead_letter(self: &Rc<Self>, letter: DeadLetter) -> bool {
        let queues = self.defs.borrow().route(&letter.exchange, &letter.routing_key, Some(&letter.headers));
        match queues {
            // Dead letters are not de-duplicated (no key).
            Some(q) if !q.is_empty() => {
                self.store_in_queues(q, letter.batch, letter.persistent, None).await.failed == 0
            }
            _ => {
                tracing::debug!(exchange = %letter.exchange, "a dead letter reached no queue; dropped");
                true
            }
        }
    }

    pub async fn consume(
        &self,
        queue: &str,
        key: ConsumerKey,
        no_ack: bool,
        prefetch: u32,
        exclusive: bool,
    ) -> Result<(), DefinitionError> {
        self.on_queue(queue, move |q| async move {
            q.consume(key, no_ack, prefetch, exclusive).map_err(|e| match e {
                ConsumeError::ExclusiveUse(_) => refused(codes::ACCESS_REFUSED, e.to_string()),
            })
        })
        .await
    }

    pub async fn cancel(&self, queue: &str, key: ConsumerKey) {
        let _ = self.on_queue(queue, move |q| async move { Ok(q.cancel(&key)) }).await;
    }

    pub async fn get(&self, queue: &str, no_ack: bool) -> Result<Option<GetOk>, DefinitionError> {
        self.on_queue(queue, move |q| async move {
            match q.get(no_ack).await {
                Ok(Some((offset, redelivered, batch, message_count))) => {
                    Ok(Some(GetOk { offset, redelivered, batch, message_count }))
                }
                Ok(None) => Ok(None),
                Err(e) => Err(refused(codes::INTERNAL_ERROR, e.to_string())),
            }
        })
        .await
    }

    /// Runs `op` on queue `queue` at its owner, without waiting for it (only
    /// for its turn in the mesh, so the operations one shard sends a queue
    /// reach it in order); nothing when the queue is gone.
    async fn tell_queue(&self, queue: Arc<str>, op: impl FnOnce(&Queue) + Send + 'static) {
        let owner = self.owner(&queue);
        self.shard
            .tell_on(owner, move || async move {
                if let Some(q) = Broker::current().and_then(|b| b.local_queue(&queue)) {
                    op(&q);
                }
            })
            .await;
    }

    /// Settles `offsets` of `queue` (acks); waits only for the mesh.
    pub async fn settle(&self, queue: Arc<str>, offsets: Vec<i64>) {
        self.tell_queue(queue, move |q| q.settle(&offsets)).await;
    }

    /// Rejects `offsets` of `queue` without requeue (dead-lettered when it
    /// has a dead-letter exchange).
    pub async fn reject(&self, queue: Arc<str>, offsets: Vec<i64>) {
        self.tell_queue(queue, move |q| q.reject(&offsets)).await;
    }

    /// Puts `offsets` of `queue` back in their places.
    pub async fn requeue(&self, queue: Arc<str>, offsets: Vec<i64>) {
        self.tell_queue(queue, move |q| q.requeue(&offsets)).await;
    }

    /// A delivery `key`'s channel could not take: back to its queue, the
    /// consumer paused.
    pub async fn release(&self, queue: Arc<str>, key: ConsumerKey, offset: i64, redelivered: bool) {
        self.tell_queue(queue, move |q| q.release(&key, offset, redelivered)).await;
    }

    /// Pauses or resumes consumer `key` at its queue.
    pub async fn set_paused(&self, queue: Arc<str>, key: ConsumerKey, paused: bool) {
        self.tell_queue(queue, move |q| q.set_paused(&key, paused)).await;
    }

    /// `n` deliveries to `key` reached the socket.
    pub async fn credit(&self, queue: Arc<str>, key: ConsumerKey, n: u32) {
        self.tell_queue(queue, move |q| q.credit(&key, n)).await;
    }

    /// Deletes queue `name` (through the definitions shard) when `when`
    /// holds, checked at the queue's owner just before: 406 "in use" or "is
    /// not empty" otherwise, as RabbitMQ words them. Deleting a queue that is
    /// already gone changes nothing (`changed` false).
    pub async fn delete_queue(&self, name: &str, when: DeleteConditions) -> Result<ChangeOutcome, DefinitionError> {
        if when.if_unused || when.if_empty {
            let (ready, consumers, unacked) = self.queue_counts(name).await?;
            if when.if_unused && consumers > 0 {
                return Err(refused(codes::PRECONDITION_FAILED, format!("queue '{name}' in vhost '/' in use")));
            }
            if when.if_empty && ready + unacked > 0 {
                return Err(refused(codes::PRECONDITION_FAILED, format!("queue '{name}' in vhost '/' is not empty")));
            }
        }
        self.change(Change::DeleteQueue { name: name.to_string() }).await
    }

    pub async fn purge(&self, queue: &str) -> Result<u64, DefinitionError> {
        self.on_queue(queue, move |q| async move { Ok(q.purge()) }).await
    }

    /// (ready messages, consumers, unacknowledged messages) of a queue.
    pub async fn queue_counts(&self, queue: &str) -> Result<(u64, u32, u64), DefinitionError> {
        self.on_queue(queue, move |q| async move { Ok((q.ready_count(), q.consumer_count(), q.unacked_count())) }).await
    }

    /// A queue.declare's counts (ready, consumers); the declare counts as a
    /// use of the queue (`x-expires` starts over).
    pub async fn declared(&self, queue: &str) -> Result<(u64, u32), DefinitionError> {
        self.on_queue(queue, move |q| async move {
            q.touch();
            Ok((q.ready_count(), q.consumer_count()))
        })
        .await
    }

    // ---- shutdown and reporting ----

    /// Closes every queue this shard owns (pending settles written).
    pub async fn close(&self) {
        let queues: Vec<Rc<Queue>> = self.queues.borrow_mut().drain().map(|(_, q)| q).collect();
        for q in queues {
            q.close().await;
        }
        CURRENT.with(|c| c.borrow_mut().take());
    }

    pub fn memory_used_bytes(&self) -> usize {
        self.memory.used_bytes.get()
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }
}

/// How often the data disk's free space is checked for the publishers' alarm.
const DISK_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Sets `disk_alarm` while the data disk has less free space than
/// `disk-free-min-bytes`, checked every second, until the broker closes.
pub fn spawn_disk_watch(broker: Rc<Broker>) {
    task::spawn(async move {
        let min = broker.config.disk_free_min_bytes;
        while Broker::current().is_some_and(|b| Rc::ptr_eq(&b, &broker)) {
            // statvfs: a quick metadata call, as the metrics endpoint makes.
            let free = crate::metrics::disk_space(&broker.dir).disk_free_bytes;
            {
                let alarm = free < min;
                if alarm != broker.disk_alarm.replace(alarm) {
                    tracing::warn!(
                        free_bytes = free,
                        min_bytes = min,
                        alarm,
                        "AMQP publishers {}",
                        if alarm { "blocked: the data disk is nearly full" } else { "unblocked" }
                    );
                }
            }
            task::sleep(DISK_CHECK_EVERY).await;
        }
    });
}

/// Queues that did not take a message.
#[derive(Debug, Default)]
struct Refusals {
    /// Full (`x-overflow` reject-publish).
    full: usize,
    /// Failed to store it (or gone elsewhere than deleted).
    failed: usize,
}

impl Outlet for BrokerOutlet {
    fn deliver(&self, delivery: Delivery) -> LocalBoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(broker) = self.0.upgrade() else { return };
            let to = delivery.consumer.shard;
            let queue = delivery.queue.clone();
            let offset = delivery.offset;
            if to == broker.shard.id {
                if let Err(back) = broker.deliver_here(delivery).await {
                    // The consumer went away: the message is ready again.
                    if let Some(q) = broker.local_queue(&back.queue) {
                        q.cancel(&back.consumer);
                        q.requeue(&[back.offset]);
                    }
                }
                return;
            }
            let from = broker.shard.id;
            let sent = broker
                .shard
                .tell_on(to, move || async move {
                    let Some(b) = Broker::current() else { return };
                    if let Err(back) = b.deliver_here(delivery).await {
                        let (queue, consumer, offset) = (back.queue.clone(), back.consumer.clone(), back.offset);
                        b.shard
                            .tell_on(from, move || async move {
                                if let Some(q) = Broker::current().and_then(|b| b.local_queue(&queue)) {
                                    q.cancel(&consumer);
                                    q.requeue(&[offset]);
                                }
                            })
                            .await;
                    }
                })
                .await;
            if !sent {
                if let Some(q) = broker.local_queue(&queue) {
                    q.requeue(&[offset]);
                }
            }
        })
    }

    fn dead_letter(&self, letter: DeadLetter) -> LocalBoxFuture<'_, bool> {
        Box::pin(async move {
            match self.0.upgrade() {
                Some(broker) => broker.store_dead_letter(letter).await,
                None => false,
            }
        })
    }

    fn cancelled(&self, consumer: ConsumerKey) {
        let Some(broker) = self.0.upgrade() else { return };
        task::spawn(async move {
            let to = consumer.shard;
            broker
                .shard
                .tell_on(to, move || async move {
                    let Some(b) = Broker::current() else { return };
                    let port = b.connections.borrow().get(&consumer.connection).cloned();
                    if let Some(p) = port {
                        p.consumer_cancelled(consumer).await;
                    }
                })
                .await;
        });
    }

    fn unused(&self, queue: Arc<str>) {
        let Some(broker) = self.0.upgrade() else { return };
        task::spawn(async move {
            let name = queue.to_string();
            if let Err(e) = broker.change(Change::DeleteQueue { name }).await {
                tracing::warn!(queue = %queue, error = %e, "deleting an unused queue (auto-delete or x-expires) failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_directory_names_round_trip_and_stay_in_one_directory() {
        for name in ["hello", "a/b", "..", ".", "", "amq.gen-x+y", "é ü", "%41"] {
            let e = encode_name(name);
            assert!(!e.contains('/') && e != "." && e != ".." && !e.is_empty(), "{name:?} -> {e:?}");
            assert_eq!(decode_name(&e).as_deref(), Some(name));
        }
    }

    #[test]
    fn queue_owner_is_stable_and_in_range() {
        for n in 1..5 {
            for q in ["a", "b", "task_queue", ""] {
                let s = queue_owner(q, n);
                assert!(s < n);
                assert_eq!(s, queue_owner(q, n));
            }
        }
    }
}
