//! One AMQP queue on the shard that owns it: its messages (`store`), which
//! of them are ready, held or settled, its consumers, and the dispatcher
//! that hands ready messages to consumers with credit.
//!
//! States of a message at offset `o` (start ≤ o < visible end):
//! - settled: in `settled` (acknowledged, rejected, expired, dropped,
//!   purged, dead-lettered); never again;
//! - held: in `held`, by a consumer, a basic.get, or its dead-lettering
//!   (settled once its dead letter is durable);
//! - ready: the rest, ordered by `ready` (offset, priority, or due time).
//!
//! The three are disjoint (asserted where a message moves between them).
//! A message that comes back (requeue) takes its place again. What the
//! declare arguments ask (`options`: priorities, TTL, dead letters, length
//! limits, a delivery limit, expiry of the queue itself, de-duplication)
//! is applied here: an expired message is never delivered (checked as it
//! reaches the head), length limits and duplicates (`dedup`) on publish,
//! dead letters through the outlet. The settled
//! set is made durable by the settle journal (`journal`, `settle`).

pub mod dead_letter;
pub mod dedup;
mod journal;
pub mod options;
pub mod ready;
pub mod store;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use event_listener::Event;
use futures_util::future::LocalBoxFuture;

use super::message::{single_record_batch, MessageMeta, StoredMessage};
use super::settle::{Checkpoint, RangeSet, SettleRecord, CHECKPOINT_AFTER_BYTES, RANGES_PER_RECORD_MAX};
use crate::runtime::task;
use crate::storage::log::AckWait;
use crate::storage::{now_ms, LogConfig};
use dead_letter::{DeadLetter, Reason};
use dedup::{DedupCache, Seen};
use journal::Journal;
pub use options::QueueOptions;
use ready::{Next, Order, Ready};
pub use store::{MemoryBudget, Store, StoreError};

/// Deliveries to one consumer on their way to its connection (not yet
/// written to the socket), at most.
pub const DELIVERY_WINDOW: u32 = 256;
/// Unacknowledged deliveries of a consumer with prefetch 0 ("unlimited"), at most.
pub const UNLIMITED_PREFETCH_MAX: u32 = 65_535;
/// How far ahead of the highest delivered offset the durable delivery mark
/// is moved (one journal write per this many deliveries).
pub const DELIVERY_MARK_AHEAD: i64 = 1024;
/// The log start is moved up (whole settled segments deleted) once the
/// settled head moved this many offsets past it.
pub const TRIM_AFTER_MESSAGES: i64 = 1024;
/// Dead letters of one queue being stored at once, at most.
pub const DEAD_LETTERS_IN_FLIGHT: usize = 64;
/// Messages retired (expired, dropped) per dispatcher turn at most, so that
/// a long run of them yields to other tasks.
const RETIRE_STEP_MAX: usize = 1024;

/// A consumer, wherever its connection lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConsumerKey {
    pub shard: usize,
    pub connection: u64,
    pub channel: u16,
    pub tag: Arc<str>,
}

/// A message on its way to a consumer.
#[derive(Debug)]
pub struct Delivery {
    pub consumer: ConsumerKey,
    pub queue: Arc<str>,
    pub offset: i64,
    pub redelivered: bool,
    /// The stored batch (see `message::StoredMessage`).
    pub batch: Bytes,
}

/// Where deliveries, dead letters and cancellations go (the shard's AMQP
/// state, which forwards to the consumer's connection or routes the dead
/// letter, on whatever shard).
pub trait Outlet {
    fn deliver(&self, delivery: Delivery) -> LocalBoxFuture<'_, ()>;
    /// Routes a dead letter and stores it at every queue it reaches; true
    /// once it is durable there (or reaches none), false if a queue refused it.
    fn dead_letter(&self, letter: DeadLetter) -> LocalBoxFuture<'_, bool>;
    /// The queue cancelled this consumer (it is being deleted).
    fn cancelled(&self, consumer: ConsumerKey);
    /// An auto-delete queue lost its last consumer, or an `x-expires` queue
    /// went unused that long: it should be deleted.
    fn unused(&self, queue: Arc<str>);
}

/// Why basic.consume was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConsumeError {
    #[error("queue '{0}' in vhost '/' in exclusive use")]
    ExclusiveUse(String),
}

/// Why a publish was not taken.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `x-overflow` reject-publish(-dlx) and the queue is full.
    #[error("queue '{0}' is full (x-overflow)")]
    Full(String),
}

/// What a queue is, besides its messages.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub name: Arc<str>,
    pub auto_delete: bool,
    pub options: QueueOptions,
}

impl QueueSpec {
    fn order(&self) -> Order {
        if self.options.max_priority.is_some() {
            Order::Priority
        } else {
            Order::Fifo
        }
    }
}

struct Consumer {
    key: ConsumerKey,
    no_ack: bool,
    /// 0: no limit but `UNLIMITED_PREFETCH_MAX`.
    prefetch: u32,
    exclusive: bool,
    /// Delivered and not settled or requeued (manual ack only).
    unacked: u32,
    /// Sent towards the connection and not yet written to the socket.
    in_flight: u32,
    /// Its channel is at its channel-wide prefetch (basic.qos global).
    paused: bool,
}

impl Consumer {
    fn has_credit(&self) -> bool {
        let prefetch = if self.prefetch == 0 { UNLIMITED_PREFETCH_MAX } else { self.prefetch };
        !self.paused && self.in_flight < DELIVERY_WINDOW && (self.no_ack || self.unacked < prefetch)
    }
}

/// Who holds a message that left the ready ones.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Holder {
    Consumer(ConsumerKey),
    Get,
    DeadLettering,
}

#[derive(Debug, Clone)]
struct Held {
    holder: Holder,
    /// Its sort key in `ready` (to put it back in place).
    key: u64,
    /// Its body's bytes (for `x-max-length-bytes`).
    body_bytes: u64,
}

struct State {
    settled: RangeSet,
    ready: Ready,
    held: HashMap<i64, Held>,
    /// Below this, messages may have been delivered before the last stop.
    redeliver_below: i64,
    /// Consumers in round-robin order (the next to serve first).
    consumers: VecDeque<Consumer>,
    /// The queue had a consumer (auto-delete applies only after that).
    had_consumer: bool,
    /// Body bytes of the ready messages (kept for `x-max-length-bytes`).
    ready_bytes: u64,
    /// Publishes past the length check whose append has not returned yet
    /// (with a length limit): (messages, body bytes). Counted against the
    /// limit, so that publishes arriving together cannot all pass it.
    publishing: (u64, u64),
    /// Times a message came back (kept for `x-delivery-limit`).
    returns: HashMap<i64, u32>,
    /// Messages waiting for their dead letter to be stored.
    to_dead_letter: VecDeque<(i64, Reason)>,
    /// Last consume, get or declare, in ms (for `x-expires`).
    last_used_ms: i64,
    /// The queue was reported unused (`x-expires`): once is enough.
    expiry_reported: bool,
}

/// The de-duplication cache of a reopened queue: the keys of its last
/// `cache_size` messages (a memory queue starts empty).
fn restore_dedup(store: &Store, d: &options::Dedup) -> DedupCache {
    let mut cache = DedupCache::new(d);
    let end = store.visible_end();
    let from = store.start().max(end - i64::from(d.cache_size));
    for offset in from..end {
        let Ok(batch) = store.read(offset) else { continue };
        let Ok(msg) = StoredMessage::parse(&batch) else { continue };
        let Ok(props) = super::codec::parse_properties(&msg.properties) else { continue };
        if let Some(key) = dedup::key_of(&props) {
            cache.restore(key, msg.meta.published_ms);
        }
    }
    cache
}

/// A publish counted in `State::publishing` while it lives.
struct Publishing<'a> {
    state: &'a RefCell<State>,
    body_bytes: u64,
}

impl<'a> Publishing<'a> {
    fn count(state: &'a RefCell<State>, body_bytes: u64) -> Publishing<'a> {
        let p = &mut state.borrow_mut().publishing;
        *p = (p.0 + 1, p.1 + body_bytes);
        Publishing { state, body_bytes }
    }
}

impl Drop for Publishing<'_> {
    fn drop(&mut self) {
        let p = &mut self.state.borrow_mut().publishing;
        assert!(p.0 > 0 && p.1 >= self.body_bytes, "a publish is counted once");
        *p = (p.0 - 1, p.1 - self.body_bytes);
    }
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct QueueCounters {
    pub published: Cell<u64>,
    pub delivered: Cell<u64>,
    pub acknowledged: Cell<u64>,
    pub expired: Cell<u64>,
    pub dead_lettered: Cell<u64>,
    pub dropped: Cell<u64>,
    pub deduplicated: Cell<u64>,
}

pub struct Queue {
    pub name: Arc<str>,
    pub spec: QueueSpec,
    pub store: Store,
    state: RefCell<State>,
    journal: Journal,
    outlet: Rc<dyn Outlet>,
    /// Fired when something may be dispatched: a message, a consumer, credit.
    wake: Event,
    /// Fired when there is something to dead-letter.
    dead_letter_work: Event,
    /// `x-message-deduplication`: the keys of the last messages stored.
    dedup: Option<RefCell<DedupCache>>,
    /// Fired when a key of `dedup` stops being pending.
    dedup_changed: Event,
    closed: Cell<bool>,
    tasks_running: Cell<usize>,
    tasks_done: Event,
    last_trim: Cell<i64>,
    pub counters: QueueCounters,
}

fn bump(c: &Cell<u64>, by: u64) {
    c.set(c.get().wrapping_add(by));
}

/// Sorted offsets as ranges of consecutive ones.
fn ranges_of(offsets: &[i64]) -> Vec<Range<i64>> {
    let mut sorted = offsets.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<Range<i64>> = Vec::new();
    for o in sorted {
        match out.last_mut() {
            Some(r) if r.end == o => r.end = o + 1,
            _ => out.push(o..o + 1),
        }
    }
    out
}

impl Queue {
    fn new(spec: QueueSpec, store: Store, settled: RangeSet, mark: i64, outlet: Rc<dyn Outlet>) -> Rc<Queue> {
        let start = store.start();
        let journal = Journal::default();
        journal.mark_wanted.set(mark);
        journal.mark_durable.set(mark);
        let dedup = spec.options.dedup.as_ref().map(|d| RefCell::new(restore_dedup(&store, d)));
        let q = Rc::new(Queue {
            name: spec.name.clone(),
            state: RefCell::new(State {
                settled,
                ready: Ready::new(spec.order(), start),
                held: HashMap::new(),
                redeliver_below: mark,
                consumers: VecDeque::new(),
                had_consumer: false,
                ready_bytes: 0,
                publishing: (0, 0),
                returns: HashMap::new(),
                to_dead_letter: VecDeque::new(),
                last_used_ms: now_ms(),
                expiry_reported: false,
            }),
            spec,
            store,
            journal,
            outlet,
            wake: Event::new(),
            dead_letter_work: Event::new(),
            dedup,
            dedup_changed: Event::new(),
            closed: Cell::new(false),
            tasks_running: Cell::new(0),
            tasks_done: Event::new(),
            last_trim: Cell::new(start),
            counters: QueueCounters::default(),
        });
        q.count_ready_bytes();
        q.start_tasks();
        q
    }

    /// A transient queue in memory.
    pub fn in_memory(spec: QueueSpec, budget: Rc<MemoryBudget>, outlet: Rc<dyn Outlet>) -> Rc<Queue> {
        Queue::new(spec, Store::memory(budget), RangeSet::default(), 0, outlet)
    }

    /// A durable queue in `dir`: its logs opened (recovered) and its settle
    /// state read back from the checkpoint and the journal after it.
    pub async fn open_durable(
        dir: &Path,
        spec: QueueSpec,
        messages: LogConfig,
        journal: LogConfig,
        outlet: Rc<dyn Outlet>,
    ) -> Result<Rc<Queue>, StoreError> {
        let store = Store::open_log(dir, &spec.name, messages, journal).await?;
        let (settled, mark) = match journal::recover_settled(&store).await {
            Ok(r) => r,
            Err(e) => {
                store.close().await;
                return Err(e);
            }
        };
        tracing::debug!(queue = %spec.name, settled = settled.count(), ranges = settled.range_count(), mark, "opened durable queue");
        Ok(Queue::new(spec, store, settled, mark, outlet))
    }

    /// With `x-max-length-bytes`, the body bytes of the ready messages a
    /// reopened queue holds (read once, at open).
    fn count_ready_bytes(&self) {
        if self.spec.options.max_length_bytes.is_none() {
            return;
        }
        let (start, end) = (self.store.start(), self.store.visible_end());
        let mut total = 0u64;
        let mut o = start;
        while o < end {
            let skip = self.state.borrow().settled.end_of_range_at(o);
            if let Some(e) = skip {
                o = e;
                continue;
            }
            total += self.body_bytes(o).unwrap_or(0);
            o += 1;
        }
        self.state.borrow_mut().ready_bytes = total;
    }

    fn body_bytes(&self, offset: i64) -> Option<u64> {
        let batch = self.store.read(offset).ok()?;
        StoredMessage::parse(&batch).ok().map(|m| m.body.len() as u64)
    }

    fn spawn_task(self: &Rc<Self>, task: impl FnOnce(Rc<Queue>) -> LocalBoxFuture<'static, ()> + 'static) {
        let q = self.clone();
        self.tasks_running.set(self.tasks_running.get() + 1);
        task::spawn(async move {
            task(q.clone()).await;
            q.tasks_running.set(q.tasks_running.get() - 1);
            q.tasks_done.notify(usize::MAX);
        });
    }

    fn start_tasks(self: &Rc<Self>) {
        self.spawn_task(|q| Box::pin(async move { q.dispatch_loop().await }));
        if self.store.is_durable() {
            self.journal.running.set(true);
            self.spawn_task(|q| {
                Box::pin(async move {
                    q.journal_loop().await;
                    q.journal.running.set(false);
                    q.journal.stopped.notify(usize::MAX);
                })
            });
        }
        if self.spec.options.dead_letter.is_some() {
            self.spawn_task(|q| Box::pin(async move { q.dead_letter_loop().await }));
        }
    }

    // ---- counts ----

    /// Messages ready for delivery (what queue.declare-ok reports).
    pub fn ready_count(&self) -> u64 {
        let s = self.state.borrow();
        let span = (self.store.visible_end() - self.store.start()).max(0) as u64;
        let live = span - s.settled.count().min(span);
        live.saturating_sub(s.held.len() as u64)
    }

    /// Delivered (or basic.get) and not yet acknowledged.
    pub fn unacked_count(&self) -> u64 {
        self.state.borrow().held.values().filter(|h| h.holder != Holder::DeadLettering).count() as u64
    }

    pub fn consumer_count(&self) -> u32 {
        self.state.borrow().consumers.len() as u32
    }

    /// The queue was used (declared, consumed, read): `x-expires` starts over.
    pub fn touch(&self) {
        self.state.borrow_mut().last_used_ms = now_ms();
        self.wake.notify(usize::MAX);
    }

    // ---- publishing ----

    /// Whether `more` messages of `bytes` would pass a length limit.
    fn would_overflow(&self, more: u64, bytes: u64) -> bool {
        let o = &self.spec.options;
        let (publishing, publishing_bytes) = self.state.borrow().publishing;
        let count = self.ready_count() + publishing + more;
        let ready_bytes = self.state.borrow().ready_bytes + publishing_bytes + bytes;
        o.max_length.is_some_and(|m| count > m) || o.max_length_bytes.is_some_and(|m| ready_bytes > m)
    }

    /// Appends a message; with `durable`, returns once it is on disk. With
    /// de-duplication, a message whose `key` was stored recently is not
    /// appended (`Ok`: it is confirmed as stored).
    pub async fn publish(
        self: &Rc<Self>,
        batch: BytesMut,
        durable: bool,
        key: Option<Bytes>,
    ) -> Result<(), PublishError> {
        let (Some(cache), Some(key)) = (&self.dedup, key) else { return self.append(batch, durable).await };
        let at_ms = loop {
            let changed = self.dedup_changed.listen();
            match cache.borrow_mut().check(&key, now_ms()) {
                Seen::New { at_ms } => break at_ms,
                Seen::Stored => {
                    bump(&self.counters.deduplicated, 1);
                    return Ok(());
                }
                Seen::Pending => {}
            }
            changed.await;
        };
        let appended = self.append(batch, durable).await;
        match appended {
            Ok(()) => cache.borrow_mut().stored(&key, at_ms),
            Err(_) => cache.borrow_mut().forget(&key, at_ms),
        }
        self.dedup_changed.notify(usize::MAX);
        appended
    }

    async fn append(self: &Rc<Self>, batch: BytesMut, durable: bool) -> Result<(), PublishError> {
        let limited = self.spec.options.max_length.is_some() || self.spec.options.max_length_bytes.is_some();
        if !limited {
            self.store.append(batch, durable && self.store.is_durable()).await?;
            bump(&self.counters.published, 1);
            self.wake.notify(usize::MAX);
            return Ok(());
        }
        let body_bytes = super::message::body_len(&batch).unwrap_or(0) as u64;
        if self.spec.options.overflow != options::Overflow::DropHead && self.would_overflow(1, body_bytes) {
            if self.spec.options.overflow == options::Overflow::RejectPublishDlx {
                self.dead_letter_refused(batch).await;
            }
            return Err(PublishError::Full(self.name.to_string()));
        }
        // Counted as publishing until the append returns; it waits for the
        // commit even for a transient message, so that the message is in
        // the visible log (`ready_count`) by then.
        let publishing = Publishing::count(&self.state, body_bytes);
        self.store.append(batch, self.store.is_durable()).await?;
        bump(&self.counters.published, 1);
        self.state.borrow_mut().ready_bytes += body_bytes;
        drop(publishing);
        self.wake.notify(usize::MAX);
        Ok(())
    }

    /// A message refused by reject-publish-dlx: dead-lettered as it is.
    async fn dead_letter_refused(&self, batch: BytesMut) {
        let (Some(target), Ok(msg)) = (&self.spec.options.dead_letter, StoredMessage::parse(&batch.freeze())) else {
            return;
        };
        if let Some(letter) = dead_letter::build(&msg, &self.name, Reason::Maxlen, target, now_ms()) {
            self.outlet.dead_letter(letter).await;
            bump(&self.counters.dead_lettered, 1);
        }
    }

    // ---- consumers ----

    pub fn consume(&self, key: ConsumerKey, no_ack: bool, prefetch: u32, exclusive: bool) -> Result<(), ConsumeError> {
        let mut s = self.state.borrow_mut();
        if s.consumers.iter().any(|c| c.exclusive) || (exclusive && !s.consumers.is_empty()) {
            return Err(ConsumeError::ExclusiveUse(self.name.to_string()));
        }
        debug_assert!(!s.consumers.iter().any(|c| c.key == key), "consumer tags are unique per channel");
        s.consumers.push_back(Consumer { key, no_ack, prefetch, exclusive, unacked: 0, in_flight: 0, paused: false });
        s.had_consumer = true;
        s.last_used_ms = now_ms();
        drop(s);
        self.wake.notify(usize::MAX);
        Ok(())
    }

    /// Removes a consumer; its unacknowledged messages stay with its channel
    /// until acked or requeued. Returns whether it was there.
    pub fn cancel(&self, key: &ConsumerKey) -> bool {
        let mut s = self.state.borrow_mut();
        let before = s.consumers.len();
        s.consumers.retain(|c| &c.key != key);
        let removed = s.consumers.len() != before;
        let now_unused = removed && s.consumers.is_empty() && s.had_consumer;
        s.last_used_ms = now_ms();
        drop(s);
        if now_unused && self.spec.auto_delete {
            self.outlet.unused(self.name.clone());
        }
        self.wake.notify(usize::MAX);
        removed
    }

    /// Deliveries to `key` reached its socket: `n` more may be in flight.
    pub fn credit(&self, key: &ConsumerKey, n: u32) {
        let mut s = self.state.borrow_mut();
        if let Some(c) = s.consumers.iter_mut().find(|c| &c.key == key) {
            debug_assert!(c.in_flight >= n, "credit for deliveries never sent");
            c.in_flight = c.in_flight.saturating_sub(n);
        }
        drop(s);
        self.wake.notify(usize::MAX);
    }

    /// Pauses or resumes a consumer (its channel reached or left its
    /// channel-wide prefetch).
    pub fn set_paused(&self, key: &ConsumerKey, paused: bool) {
        let mut s = self.state.borrow_mut();
        if let Some(c) = s.consumers.iter_mut().find(|c| &c.key == key) {
            c.paused = paused;
        }
        drop(s);
        self.wake.notify(usize::MAX);
    }

    // ---- settling ----

    /// Takes `offset` out of `held` (it must be held by a consumer or a
    /// get), giving its consumer its credit back.
    fn unhold(s: &mut State, offset: i64) -> Option<Held> {
        let held = s.held.remove(&offset)?;
        if held.holder == Holder::DeadLettering {
            s.held.insert(offset, held);
            return None;
        }
        if let Holder::Consumer(key) = &held.holder {
            if let Some(c) = s.consumers.iter_mut().find(|c| &c.key == key) {
                c.unacked = c.unacked.saturating_sub(1);
            }
        }
        Some(held)
    }

    /// Settles offsets already out of the ready and held states.
    fn settle_now(&self, s: &mut State, offsets: &[i64]) -> Vec<Range<i64>> {
        let ranges = ranges_of(offsets);
        for r in &ranges {
            let added = s.settled.insert(r.clone());
            assert_eq!(added, (r.end - r.start) as u64, "a message is settled once");
        }
        for o in offsets {
            s.returns.remove(o);
        }
        ranges
    }

    /// Acknowledged: settled for good.
    pub fn settle(&self, offsets: &[i64]) {
        let mut s = self.state.borrow_mut();
        let taken: Vec<i64> = offsets.iter().copied().filter(|&o| Self::unhold(&mut s, o).is_some()).collect();
        let ranges = self.settle_now(&mut s, &taken);
        drop(s);
        bump(&self.counters.acknowledged, taken.len() as u64);
        self.journal_settled(ranges);
        self.wake.notify(usize::MAX);
    }

    /// Rejected without requeue: dead-lettered when the queue has a
    /// dead-letter exchange, else settled.
    pub fn reject(&self, offsets: &[i64]) {
        if self.spec.options.dead_letter.is_none() {
            self.settle(offsets);
            return;
        }
        let mut s = self.state.borrow_mut();
        for &o in offsets {
            if let Some(mut held) = Self::unhold(&mut s, o) {
                held.holder = Holder::DeadLettering;
                s.held.insert(o, held);
                s.to_dead_letter.push_back((o, Reason::Rejected));
            }
        }
        drop(s);
        self.dead_letter_work.notify(usize::MAX);
    }

    /// Back to ready, in their places; delivered again with
    /// redelivered=true. Past `x-delivery-limit` returns, dead-lettered (or
    /// dropped) instead.
    pub fn requeue(&self, offsets: &[i64]) {
        let limit = self.spec.options.delivery_limit;
        let mut s = self.state.borrow_mut();
        let mut beyond = Vec::new();
        for &o in offsets {
            let Some(held) = Self::unhold(&mut s, o) else { continue };
            if let Some(limit) = limit {
                let returns = s.returns.entry(o).or_insert(0);
                *returns += 1;
                if *returns > limit {
                    beyond.push((o, held));
                    continue;
                }
            }
            s.ready.put_back(o, held.key, true);
            s.ready_bytes += held.body_bytes;
        }
        drop(s);
        for (o, held) in beyond {
            self.retire_held(o, held, Reason::DeliveryLimit);
        }
        self.wake.notify(usize::MAX);
    }

    /// A delivery its channel could not take (at its channel-wide prefetch):
    /// back in its place, with the redelivered flag it went out with, as if
    /// it had not been handed out; its consumer gets no more until resumed.
    pub fn release(&self, key: &ConsumerKey, offset: i64, redelivered: bool) {
        let mut s = self.state.borrow_mut();
        if let Some(c) = s.consumers.iter_mut().find(|c| &c.key == key) {
            c.paused = true;
            c.in_flight = c.in_flight.saturating_sub(1);
        }
        let by_key = s.held.get(&offset).is_some_and(|h| h.holder == Holder::Consumer(key.clone()));
        if by_key {
            if let Some(held) = Self::unhold(&mut s, offset) {
                s.ready.put_back(offset, held.key, redelivered);
                s.ready_bytes += held.body_bytes;
            }
        }
        drop(s);
        self.wake.notify(usize::MAX);
    }

    fn journal_settled(&self, ranges: Vec<Range<i64>>) {
        if ranges.is_empty() {
            return;
        }
        if self.store.is_durable() {
            self.journal.pending.borrow_mut().extend(ranges);
            self.journal.work.notify(usize::MAX);
        } else {
            self.store.release(&ranges);
            let start = self.store.start();
            self.state.borrow_mut().settled.truncate_below(start);
        }
    }

    /// Settles every ready message; returns how many.
    pub fn purge(&self) -> u64 {
        let (start, end) = (self.store.start(), self.store.visible_end());
        let (ranges, count) = {
            let mut guard = self.state.borrow_mut();
            let s = &mut *guard;
            let ranges = s.ready.take_all(start, end, &s.settled);
            let count: u64 = ranges.iter().map(|r| s.settled.insert(r.clone())).sum();
            s.ready_bytes = 0;
            s.returns.retain(|o, _| !ranges.iter().any(|r| r.contains(o)));
            (ranges, count)
        };
        self.journal_settled(ranges);
        count
    }

    // ---- handing messages out ----

    /// Indexes more of the log for an indexed order; false once caught up.
    fn index_more(&self) -> bool {
        let (start, end) = (self.store.start(), self.store.visible_end());
        let unreadable = {
            let mut s = self.state.borrow_mut();
            let s = &mut *s;
            if s.ready.caught_up(end) {
                return false;
            }
            let max_priority = self.spec.options.max_priority;
            let store = &self.store;
            s.ready.index_step(start, end, &s.settled, s.redeliver_below, |o| {
                let batch = store.read(o).ok()?;
                let msg = StoredMessage::parse(&batch).ok()?;
                Some(match max_priority {
                    Some(max) => ready::priority_key(msg.meta.priority.min(max)),
                    None => msg.meta.due_at_ms.max(0) as u64,
                })
            })
        };
        if !unreadable.is_empty() {
            tracing::error!(queue = %self.name, count = unreadable.len(), "unreadable stored messages; settling them");
            let mut s = self.state.borrow_mut();
            let ranges = self.settle_now(&mut s, &unreadable);
            drop(s);
            self.journal_settled(ranges);
        }
        true
    }

    /// The next ready message (indexing as needed), without taking it.
    fn peek(&self) -> Option<Next> {
        while self.index_more() {}
        let (start, end) = (self.store.start(), self.store.visible_end());
        let mut s = self.state.borrow_mut();
        let s = &mut *s;
        s.ready.peek(start, end, &s.settled, s.redeliver_below)
    }

    /// Whether `meta`'s message has expired by `now` (its own expiration,
    /// or the queue's `x-message-ttl` from its publish time).
    fn expired(&self, meta: &MessageMeta, now: i64) -> bool {
        let own = meta.expires_at_ms > 0 && now > meta.expires_at_ms;
        let queue = self.spec.options.message_ttl_ms.is_some_and(|ttl| now > meta.published_ms + ttl as i64);
        own || queue
    }

    /// When `meta`'s message expires (ms), if it does.
    fn expires_at(&self, meta: &MessageMeta) -> Option<i64> {
        let own = (meta.expires_at_ms > 0).then_some(meta.expires_at_ms);
        let queue = self.spec.options.message_ttl_ms.map(|ttl| meta.published_ms + ttl as i64);
        own.into_iter().chain(queue).min()
    }

    /// Moves `next` out of the ready messages, held by `holder` (or settled
    /// at once with `holder` None: no-ack deliveries, retired messages).
    fn take(&self, next: &Next, holder: Option<Holder>, body_bytes: u64) {
        let mut s = self.state.borrow_mut();
        assert!(
            !s.settled.contains(next.offset) && !s.held.contains_key(&next.offset),
            "a ready message is in no other state"
        );
        s.ready.take(next);
        s.ready_bytes = s.ready_bytes.saturating_sub(body_bytes);
        match holder {
            Some(holder) => {
                s.held.insert(next.offset, Held { holder, key: next.key, body_bytes });
            }
            None => {
                let ranges = self.settle_now(&mut s, &[next.offset]);
                drop(s);
                self.journal_settled(ranges);
            }
        }
    }

    /// A message leaving the queue without a delivery: dead-lettered when
    /// the queue has a dead-letter exchange (and it is not a cycle), else
    /// settled (dropped).
    fn retire(&self, next: &Next, msg: &StoredMessage, reason: Reason) {
        let dead_letter = self.spec.options.dead_letter.is_some() && !dead_letter::is_cycle(msg, &self.name, reason);
        let body_bytes = msg.body.len() as u64;
        if dead_letter {
            self.take(next, Some(Holder::DeadLettering), body_bytes);
            self.state.borrow_mut().to_dead_letter.push_back((next.offset, reason));
            self.dead_letter_work.notify(usize::MAX);
        } else {
            self.take(next, None, body_bytes);
            bump(&self.counters.dropped, 1);
        }
        if reason == Reason::Expired {
            bump(&self.counters.expired, 1);
        }
    }

    /// A held message leaving without coming back (past its delivery limit).
    fn retire_held(&self, offset: i64, mut held: Held, reason: Reason) {
        let mut s = self.state.borrow_mut();
        if self.spec.options.dead_letter.is_some() {
            held.holder = Holder::DeadLettering;
            s.held.insert(offset, held);
            s.to_dead_letter.push_back((offset, reason));
            drop(s);
            self.dead_letter_work.notify(usize::MAX);
        } else {
            let ranges = self.settle_now(&mut s, &[offset]);
            drop(s);
            bump(&self.counters.dropped, 1);
            self.journal_settled(ranges);
        }
    }

    /// Whether the head is looked at without a consumer asking: a queue TTL
    /// or a dead-letter exchange (expired messages leave as they expire,
    /// for the dead-letter-after-a-delay pattern) or a length limit.
    /// Elsewhere an expired message is dropped when it would be delivered.
    fn watches_head(&self) -> bool {
        let o = &self.spec.options;
        o.message_ttl_ms.is_some() || o.dead_letter.is_some() || o.max_length.is_some() || o.max_length_bytes.is_some()
    }

    /// Retires expired messages at the head and, with drop-head, messages
    /// past a length limit; returns when the head is live, or after
    /// `RETIRE_STEP_MAX` (true: more may follow).
    fn retire_heads(&self) -> bool {
        if !self.watches_head() {
            return false;
        }
        let drop_head = self.spec.options.overflow == options::Overflow::DropHead;
        for _ in 0..RETIRE_STEP_MAX {
            let Some(next) = self.peek() else { return false };
            let Ok(batch) = self.store.read(next.offset) else { return false };
            let Ok(msg) = StoredMessage::parse(&batch) else { return false };
            if self.expired(&msg.meta, now_ms()) {
                self.retire(&next, &msg, Reason::Expired);
                continue;
            }
            if drop_head && self.would_overflow(0, 0) {
                self.retire(&next, &msg, Reason::Maxlen);
                continue;
            }
            return false;
        }
        true
    }

    /// Retires `next` if it has expired (read as `batch`); true if it did.
    fn retire_if_expired(&self, next: &Next, batch: &Bytes) -> bool {
        let Ok(msg) = StoredMessage::parse(batch) else { return false };
        if !self.expired(&msg.meta, now_ms()) {
            return false;
        }
        self.retire(next, &msg, Reason::Expired);
        true
    }

    /// Makes sure a restart would flag `offset` redelivered (durable queues):
    /// moves the durable delivery mark past it first when needed.
    async fn mark_delivered(&self, offset: i64) {
        if !self.store.is_durable() {
            return;
        }
        let j = &self.journal;
        while j.mark_durable.get() <= offset && !self.closed.get() {
            let listener = j.flushed.listen();
            if j.mark_wanted.get() <= offset {
                j.mark_wanted.set(offset + DELIVERY_MARK_AHEAD);
                j.work.notify(usize::MAX);
            }
            if j.mark_durable.get() > offset {
                break;
            }
            listener.await;
        }
    }

    /// basic.get: the next live message with the ready count after it.
    pub async fn get(&self, no_ack: bool) -> Result<Option<(i64, bool, Bytes, u64)>, StoreError> {
        self.touch();
        loop {
            while self.retire_heads() {}
            let Some(next) = self.peek() else { return Ok(None) };
            self.mark_delivered(next.offset).await;
            // The mark's write may have let a consumer take it meanwhile:
            // then look again.
            if self.peek() != Some(next) {
                continue;
            }
            let batch = self.store.read(next.offset)?;
            if self.retire_if_expired(&next, &batch) {
                continue;
            }
            let body_bytes = StoredMessage::parse(&batch).map(|m| m.body.len() as u64).unwrap_or(0);
            self.take(&next, (!no_ack).then_some(Holder::Get), body_bytes);
            bump(&self.counters.delivered, 1);
            return Ok(Some((next.offset, next.redelivered, batch, self.ready_count())));
        }
    }

    /// The index of the next consumer with credit.
    fn consumer_with_credit(&self) -> Option<usize> {
        self.state.borrow().consumers.iter().position(Consumer::has_credit)
    }

    /// Delivers one message to the next consumer with credit; false when
    /// there is no message or no such consumer.
    async fn dispatch_one(&self) -> bool {
        if self.consumer_with_credit().is_none() {
            return false;
        }
        let Some(next) = self.peek() else { return false };
        self.mark_delivered(next.offset).await;
        // Things may have moved during the mark's write: look again.
        let (Some(ci), Some(next)) = (self.consumer_with_credit(), self.peek()) else { return false };
        let batch = match self.store.read(next.offset) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(queue = %self.name, offset = next.offset, error = %e, "cannot read a ready message; settling it");
                self.take(&next, None, 0);
                return true;
            }
        };
        if self.retire_if_expired(&next, &batch) {
            return true;
        }
        let body_bytes = StoredMessage::parse(&batch).map(|m| m.body.len() as u64).unwrap_or(0);
        let (key, no_ack) = {
            let mut s = self.state.borrow_mut();
            let Some(mut consumer) = s.consumers.remove(ci) else { return false };
            consumer.in_flight += 1;
            if !consumer.no_ack {
                consumer.unacked += 1;
            }
            let out = (consumer.key.clone(), consumer.no_ack);
            // Round robin: the served consumer goes last.
            s.consumers.push_back(consumer);
            out
        };
        self.take(&next, (!no_ack).then(|| Holder::Consumer(key.clone())), body_bytes);
        bump(&self.counters.delivered, 1);
        let delivery = Delivery {
            consumer: key,
            queue: self.name.clone(),
            offset: next.offset,
            redelivered: next.redelivered,
            batch,
        };
        self.outlet.deliver(delivery).await;
        true
    }

    /// When the dispatcher must look again even if nothing happens: the
    /// head message's expiry, the queue's own (`x-expires`).
    fn next_deadline_ms(&self) -> Option<i64> {
        let head = self.peek().filter(|_| self.watches_head()).and_then(|n| {
            let batch = self.store.read(n.offset).ok()?;
            self.expires_at(&StoredMessage::parse(&batch).ok()?.meta)
        });
        let s = self.state.borrow();
        let queue = self
            .spec
            .options
            .expires_ms
            .filter(|_| s.consumers.is_empty() && !s.expiry_reported)
            .map(|ms| s.last_used_ms + ms as i64);
        head.into_iter().chain(queue).min()
    }

    /// Reports the queue unused once `x-expires` passed without use.
    fn check_queue_expiry(&self) {
        let Some(ms) = self.spec.options.expires_ms else { return };
        let mut s = self.state.borrow_mut();
        if s.expiry_reported || !s.consumers.is_empty() || now_ms() < s.last_used_ms + ms as i64 {
            return;
        }
        s.expiry_reported = true;
        drop(s);
        tracing::info!(queue = %self.name, expires_ms = ms, "queue unused for x-expires: deleting it");
        self.outlet.unused(self.name.clone());
    }

    async fn dispatch_loop(self: &Rc<Self>) {
        while !self.closed.get() {
            let listener = self.wake.listen();
            if self.index_more() || self.retire_heads() {
                task::yield_now().await;
                continue;
            }
            self.check_queue_expiry();
            if self.dispatch_one().await {
                continue;
            }
            let wait = self.next_deadline_ms().map(|at| Duration::from_millis((at - now_ms()).max(0) as u64 + 1));
            let wait = wait.unwrap_or(Duration::from_secs(1)).min(Duration::from_secs(1));
            let end = self.store.visible_end();
            match self.store.messages_log() {
                Some(log) => {
                    let log = log.clone();
                    futures_lite::future::or(listener, async move { log.wait_for_data(end, wait).await }).await;
                }
                None => {
                    task::timeout(wait, listener).await;
                }
            }
        }
    }

    // ---- dead letters ----

    /// Stores the dead letters of messages waiting in `to_dead_letter`,
    /// `DEAD_LETTERS_IN_FLIGHT` at a time, and settles each original once
    /// its dead letter is durable. A dead letter that could not be stored
    /// is tried again a second later.
    async fn dead_letter_loop(self: &Rc<Self>) {
        let Some(target) = self.spec.options.dead_letter.clone() else { return };
        while !self.closed.get() {
            let listener = self.dead_letter_work.listen();
            let work: Vec<(i64, Reason)> = {
                let mut s = self.state.borrow_mut();
                let n = s.to_dead_letter.len().min(DEAD_LETTERS_IN_FLIGHT);
                s.to_dead_letter.drain(..n).collect()
            };
            if work.is_empty() {
                listener.await;
                continue;
            }
            let jobs = work.iter().map(|&(offset, reason)| {
                let letter = self
                    .store
                    .read(offset)
                    .ok()
                    .and_then(|b| StoredMessage::parse(&b).ok())
                    .and_then(|m| dead_letter::build(&m, &self.name, reason, &target, now_ms()));
                async move {
                    match letter {
                        Some(l) => self.outlet.dead_letter(l).await,
                        None => true,
                    }
                }
            });
            let stored = futures_util::future::join_all(jobs).await;
            let mut done = Vec::new();
            let mut again = Vec::new();
            for (ok, (offset, reason)) in stored.into_iter().zip(work) {
                if ok {
                    done.push(offset);
                } else {
                    again.push((offset, reason));
                }
            }
            let ranges = {
                let mut s = self.state.borrow_mut();
                for o in &done {
                    let held = s.held.remove(o);
                    assert!(
                        held.is_some_and(|h| h.holder == Holder::DeadLettering),
                        "a dead letter's original is held"
                    );
                }
                s.to_dead_letter.extend(again.iter().copied());
                self.settle_now(&mut s, &done)
            };
            bump(&self.counters.dead_lettered, done.len() as u64);
            self.journal_settled(ranges);
            if !again.is_empty() {
                tracing::warn!(queue = %self.name, count = again.len(), "dead letters not stored; trying again");
                task::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    // ---- the settle journal ----

    async fn journal_loop(self: &Rc<Self>) {
        let Some(journal_log) = self.store.journal().cloned() else { return };
        let j = &self.journal;
        loop {
            let listener = j.work.listen();
            let has_work = !j.pending.borrow().is_empty() || j.mark_wanted.get() > j.mark_durable.get();
            if !has_work {
                if self.closed.get() {
                    return;
                }
                listener.await;
                continue;
            }
            let settled: Vec<Range<i64>> = {
                let mut p = j.pending.borrow_mut();
                let n = p.len().min(RANGES_PER_RECORD_MAX);
                p.drain(..n).collect()
            };
            let mark = j.mark_wanted.get();
            let record = SettleRecord { settled, delivered_mark: mark }.encode();
            let batch = single_record_batch(&record, now_ms());
            let len = batch.len() as u64;
            match journal_log.append(batch, AckWait::Commit).await {
                Ok(_) => {
                    j.mark_durable.set(j.mark_durable.get().max(mark));
                    j.bytes_since_checkpoint.set(j.bytes_since_checkpoint.get() + len);
                }
                Err(e) => {
                    tracing::error!(queue = %self.name, error = %e, "settle journal write failed; retrying");
                    task::sleep(Duration::from_millis(100)).await;
                }
            }
            j.flushed.notify(usize::MAX);
            self.maybe_trim_log().await;
            if j.bytes_since_checkpoint.get() >= CHECKPOINT_AFTER_BYTES {
                if let Err(e) = self.checkpoint().await {
                    tracing::warn!(queue = %self.name, error = %e, "settle checkpoint failed; the journal keeps growing until one succeeds");
                }
            }
        }
    }

    /// The first offset that is not settled (everything below is).
    fn settled_head(&self) -> i64 {
        let start = self.store.start();
        self.state.borrow().settled.end_of_range_at(start).unwrap_or(start)
    }

    async fn maybe_trim_log(&self) {
        let mut head = self.settled_head();
        if let Some(d) = &self.spec.options.dedup {
            // The last `x-cache-size` messages stay: the cache is read back
            // from them at open.
            head = head.min(self.store.visible_end() - i64::from(d.cache_size));
        }
        if head - self.last_trim.get() < TRIM_AFTER_MESSAGES {
            return;
        }
        self.last_trim.set(head);
        if let Err(e) = self.store.trim(head).await {
            tracing::warn!(queue = %self.name, error = %e, "dropping settled messages failed");
            return;
        }
        let start = self.store.start();
        self.state.borrow_mut().settled.truncate_below(start);
    }

    /// Writes the whole settle state and drops the journal before it.
    async fn checkpoint(&self) -> Result<(), StoreError> {
        let (Some(journal_log), Some(dir)) = (self.store.journal().cloned(), self.store.dir().map(Path::to_path_buf))
        else {
            return Ok(());
        };
        // Everything journaled so far is in `settled` (settles enter it
        // before the journal): the checkpoint covers the journal to its end.
        let journal_end = journal_log.offsets().log_end_offset;
        let checkpoint = Checkpoint {
            journal_offset: journal_end,
            delivered_mark: self.journal.mark_durable.get(),
            settled: self.state.borrow().settled.clone(),
        };
        journal::write_checkpoint(&dir, &checkpoint).await?;
        self.journal.bytes_since_checkpoint.set(0);
        journal_log.delete_records(journal_end.min(journal_log.high_watermark())).await?;
        Ok(())
    }

    // ---- closing ----

    /// Stops the dispatcher, the dead-letter task and the journal (writing
    /// what is pending and a checkpoint), then closes the logs.
    pub async fn close(&self) {
        self.closed.set(true);
        while self.tasks_running.get() > 0 {
            let l = self.tasks_done.listen();
            if self.tasks_running.get() == 0 {
                break;
            }
            self.wake.notify(usize::MAX);
            self.dead_letter_work.notify(usize::MAX);
            self.journal.work.notify(usize::MAX);
            l.await;
        }
        if self.store.is_durable() {
            if let Err(e) = self.checkpoint().await {
                tracing::warn!(queue = %self.name, error = %e, "final settle checkpoint failed; the next start replays the journal");
            }
        }
        self.store.close().await;
    }

    /// Deletes the queue: its consumers are cancelled, its files removed.
    /// Returns the ready messages it held.
    pub async fn delete(&self) -> u64 {
        let count = self.ready_count();
        let consumers: Vec<ConsumerKey> = self.state.borrow_mut().consumers.drain(..).map(|c| c.key).collect();
        for c in consumers {
            self.outlet.cancelled(c);
        }
        self.close().await;
        if let Some(dir) = self.store.dir().map(Path::to_path_buf) {
            let shown = dir.display().to_string();
            if let Err(e) = crate::storage::segment::blocking(move || std::fs::remove_dir_all(&dir)).await {
                tracing::warn!(dir = %shown, error = %e, "removing a deleted queue's files failed");
            }
        }
        count
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }
}

#[cfg(test)]
mod tests;
