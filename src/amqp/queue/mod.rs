//! One AMQP queue on the shard that owns it: its messages (`store`), which
//! of them are ready, delivered-and-unacknowledged or settled, its consumers,
//! and the dispatcher that hands ready messages to consumers with credit.
//!
//! States of a message at offset `o` (start ≤ o < visible end):
//! - settled: in `settled` (acknowledged, rejected, purged); never again;
//! - unacknowledged: in `unacked`, held by a consumer or a basic.get;
//! - ready: the rest: either back (in `requeued`, below `cursor`, with
//!   the redelivered flag it goes out with) or not yet handed out (at or past
//!   `cursor`).
//!
//! The three are disjoint (asserted where a message moves between them).
//! Dispatch order is offset order, requeued messages first: a message that
//! comes back goes back to its place. The settled set is made durable by
//! the settle journal (see `settle`); the dispatcher is one task per queue.

pub mod store;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use event_listener::Event;
use futures_util::future::LocalBoxFuture;

use super::message::{single_record_batch, SingleRecord};
use super::settle::{Checkpoint, RangeSet, SettleRecord, CHECKPOINT_AFTER_BYTES, RANGES_PER_RECORD_MAX};
use crate::runtime::task;
use crate::storage::log::AckWait;
use crate::storage::LogConfig;
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
const CHECKPOINT_FILE: &str = "checkpoint";

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

/// Where deliveries and consumer cancellations go (the shard's AMQP state,
/// which forwards to the consumer's connection on whatever shard it is).
pub trait Outlet {
    fn deliver(&self, delivery: Delivery) -> LocalBoxFuture<'_, ()>;
    /// The queue cancelled this consumer (it is being deleted).
    fn cancelled(&self, consumer: ConsumerKey);
    /// An auto-delete queue lost its last consumer.
    fn unused(&self, queue: Arc<str>);
}

/// Why basic.consume was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConsumeError {
    #[error("queue '{0}' in vhost '/' in exclusive use")]
    ExclusiveUse(String),
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

struct State {
    settled: RangeSet,
    /// Offsets at or past it were never handed out since the queue opened.
    cursor: i64,
    /// Ready again, below `cursor`: offset → redelivered flag.
    requeued: BTreeMap<i64, bool>,
    /// Offset → the consumer holding it (`None`: a basic.get).
    unacked: HashMap<i64, Option<ConsumerKey>>,
    /// Below this, messages may have been delivered before the last stop.
    redeliver_below: i64,
    /// Consumers in round-robin order (the next to serve first).
    consumers: VecDeque<Consumer>,
    /// The queue had a consumer (auto-delete applies only after that).
    had_consumer: bool,
}

/// Settle journal bookkeeping (durable queues).
#[derive(Default)]
struct Journal {
    pending: RefCell<Vec<Range<i64>>>,
    /// Mark wanted and mark durable.
    mark_wanted: Cell<i64>,
    mark_durable: Cell<i64>,
    bytes_since_checkpoint: Cell<u64>,
    work: Event,
    flushed: Event,
    running: Cell<bool>,
    stopped: Event,
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct QueueCounters {
    pub published: Cell<u64>,
    pub delivered: Cell<u64>,
    pub acknowledged: Cell<u64>,
}

pub struct Queue {
    pub name: Arc<str>,
    pub store: Store,
    state: RefCell<State>,
    journal: Journal,
    outlet: Rc<dyn Outlet>,
    /// Fired when something may be dispatched: a message, a consumer, credit.
    wake: Event,
    closed: Cell<bool>,
    dispatcher_done: Event,
    dispatcher_running: Cell<bool>,
    last_trim: Cell<i64>,
    pub counters: QueueCounters,
    pub auto_delete: bool,
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
    fn new(
        name: Arc<str>,
        store: Store,
        settled: RangeSet,
        mark: i64,
        outlet: Rc<dyn Outlet>,
        auto_delete: bool,
    ) -> Rc<Queue> {
        let start = store.start();
        let journal = Journal::default();
        journal.mark_wanted.set(mark);
        journal.mark_durable.set(mark);
        let q = Rc::new(Queue {
            name,
            store,
            state: RefCell::new(State {
                settled,
                cursor: start,
                requeued: BTreeMap::new(),
                unacked: HashMap::new(),
                redeliver_below: mark,
                consumers: VecDeque::new(),
                had_consumer: false,
            }),
            journal,
            outlet,
            wake: Event::new(),
            closed: Cell::new(false),
            dispatcher_done: Event::new(),
            dispatcher_running: Cell::new(false),
            last_trim: Cell::new(start),
            counters: QueueCounters::default(),
            auto_delete,
        });
        q.start_tasks();
        q
    }

    /// A transient queue in memory.
    pub fn in_memory(name: Arc<str>, budget: Rc<MemoryBudget>, outlet: Rc<dyn Outlet>, auto_delete: bool) -> Rc<Queue> {
        Queue::new(name, Store::memory(budget), RangeSet::default(), 0, outlet, auto_delete)
    }

    /// A durable queue in `dir`: its logs opened (recovered) and its settle
    /// state read back from the checkpoint and the journal after it.
    pub async fn open_durable(
        dir: &Path,
        name: Arc<str>,
        messages: LogConfig,
        journal: LogConfig,
        outlet: Rc<dyn Outlet>,
        auto_delete: bool,
    ) -> Result<Rc<Queue>, StoreError> {
        let store = Store::open_log(dir, &name, messages, journal).await?;
        let (settled, mark) = match recover_settled(&store).await {
            Ok(r) => r,
            Err(e) => {
                store.close().await;
                return Err(e);
            }
        };
        tracing::debug!(queue = %name, settled = settled.count(), ranges = settled.range_count(), mark, "opened durable queue");
        Ok(Queue::new(name, store, settled, mark, outlet, auto_delete))
    }

    fn start_tasks(self: &Rc<Self>) {
        let q = self.clone();
        self.dispatcher_running.set(true);
        task::spawn(async move {
            q.dispatch_loop().await;
            q.dispatcher_running.set(false);
            q.dispatcher_done.notify(usize::MAX);
        });
        if self.store.is_durable() {
            let q = self.clone();
            self.journal.running.set(true);
            task::spawn(async move {
                q.journal_loop().await;
                q.journal.running.set(false);
                q.journal.stopped.notify(usize::MAX);
            });
        }
    }

    // ---- counts ----

    /// Messages ready for delivery (what queue.declare-ok reports).
    pub fn ready_count(&self) -> u64 {
        let s = self.state.borrow();
        let start = self.store.start();
        let end = self.store.visible_end();
        let live = (end - start).max(0) as u64 - s.settled.count().min((end - start).max(0) as u64);
        live.saturating_sub(s.unacked.len() as u64)
    }

    pub fn unacked_count(&self) -> u64 {
        self.state.borrow().unacked.len() as u64
    }

    pub fn consumer_count(&self) -> u32 {
        self.state.borrow().consumers.len() as u32
    }

    // ---- publishing ----

    /// Appends a message; with `durable`, returns once it is on disk.
    pub async fn publish(&self, batch: bytes::BytesMut, durable: bool) -> Result<(), StoreError> {
        self.store.append(batch, durable && self.store.is_durable()).await?;
        bump(&self.counters.published, 1);
        self.wake.notify(usize::MAX);
        Ok(())
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
        drop(s);
        if now_unused && self.auto_delete {
            self.outlet.unused(self.name.clone());
        }
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

    // ---- settling ----

    /// Acknowledged (or rejected without requeue): settled for good.
    pub fn settle(&self, offsets: &[i64]) {
        let mut s = self.state.borrow_mut();
        let mut taken = Vec::with_capacity(offsets.len());
        for &o in offsets {
            let Some(holder) = s.unacked.remove(&o) else { continue };
            if let Some(key) = holder {
                if let Some(c) = s.consumers.iter_mut().find(|c| c.key == key) {
                    c.unacked = c.unacked.saturating_sub(1);
                }
            }
            taken.push(o);
        }
        let ranges = ranges_of(&taken);
        for r in &ranges {
            let added = s.settled.insert(r.clone());
            assert_eq!(added, (r.end - r.start) as u64, "an unacked message was already settled");
        }
        drop(s);
        bump(&self.counters.acknowledged, taken.len() as u64);
        self.journal_settled(ranges);
        self.wake.notify(usize::MAX);
    }

    /// Back to ready, in their places; delivered again with redelivered=true.
    pub fn requeue(&self, offsets: &[i64]) {
        let mut s = self.state.borrow_mut();
        for &o in offsets {
            let Some(holder) = s.unacked.remove(&o) else { continue };
            if let Some(key) = holder {
                if let Some(c) = s.consumers.iter_mut().find(|c| c.key == key) {
                    c.unacked = c.unacked.saturating_sub(1);
                }
            }
            assert!(o < s.cursor && !s.settled.contains(o), "a requeued message was handed out and is not settled");
            s.requeued.insert(o, true);
        }
        drop(s);
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
        if s.unacked.get(&offset).is_some_and(|h| h.as_ref() == Some(key)) {
            s.unacked.remove(&offset);
            if let Some(c) = s.consumers.iter_mut().find(|c| &c.key == key) {
                c.unacked = c.unacked.saturating_sub(1);
            }
            assert!(offset < s.cursor && !s.settled.contains(offset), "a released message was handed out");
            s.requeued.insert(offset, redelivered);
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
        let end = self.store.visible_end();
        let mut s = self.state.borrow_mut();
        let mut ranges: Vec<Range<i64>> = ranges_of(&s.requeued.keys().copied().collect::<Vec<_>>());
        s.requeued.clear();
        let mut c = s.cursor.max(self.store.start());
        while c < end {
            if let Some(e) = s.settled.end_of_range_at(c) {
                c = e;
                continue;
            }
            let next_settled = s.settled.ranges().map(|r| r.start).find(|&st| st > c).unwrap_or(end).min(end);
            ranges.push(c..next_settled);
            c = next_settled;
        }
        s.cursor = end;
        let mut count = 0;
        for r in &ranges {
            count += s.settled.insert(r.clone());
        }
        drop(s);
        self.journal_settled(ranges);
        count
    }

    // ---- handing messages out ----

    /// The next ready message, without taking it: (offset, redelivered).
    fn peek_ready(&self, s: &mut State) -> Option<(i64, bool)> {
        if let Some((&o, &redelivered)) = s.requeued.first_key_value() {
            return Some((o, redelivered));
        }
        let end = self.store.visible_end();
        let mut c = s.cursor.max(self.store.start());
        while c < end {
            match s.settled.end_of_range_at(c) {
                Some(e) => c = e,
                None => break,
            }
        }
        s.cursor = c;
        (c < end).then_some((c, c < s.redeliver_below))
    }

    /// Moves `offset` (from `peek_ready`) from ready to unacked or settled.
    fn take(&self, s: &mut State, offset: i64, holder: Option<ConsumerKey>, no_ack: bool) {
        if s.requeued.remove(&offset).is_none() {
            assert_eq!(offset, s.cursor, "messages are handed out in offset order");
            s.cursor += 1;
        }
        assert!(
            !s.settled.contains(offset) && !s.unacked.contains_key(&offset),
            "a ready message is in no other state"
        );
        if no_ack {
            s.settled.insert(offset..offset + 1);
        } else {
            s.unacked.insert(offset, holder);
        }
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

    /// basic.get: the next ready message with the ready count after it.
    pub async fn get(&self, holder_no_ack: bool) -> Result<Option<(i64, bool, Bytes, u64)>, StoreError> {
        loop {
            let next = self.peek_ready(&mut self.state.borrow_mut());
            let Some((offset, redelivered)) = next else { return Ok(None) };
            self.mark_delivered(offset).await;
            // The mark's write may have let a consumer take it meanwhile:
            // then look again.
            let Some(batch) = self.take_if_next(offset, holder_no_ack)? else { continue };
            if holder_no_ack {
                self.journal_settled(vec![Range { start: offset, end: offset + 1 }]);
            }
            bump(&self.counters.delivered, 1);
            return Ok(Some((offset, redelivered, batch, self.ready_count())));
        }
    }

    /// Takes `offset` for a basic.get if it is still the next ready message.
    fn take_if_next(&self, offset: i64, no_ack: bool) -> Result<Option<Bytes>, StoreError> {
        let mut s = self.state.borrow_mut();
        if self.peek_ready(&mut s).map(|(o, _)| o) != Some(offset) {
            return Ok(None);
        }
        let batch = self.store.read(offset)?;
        self.take(&mut s, offset, None, no_ack);
        Ok(Some(batch))
    }

    /// The next (consumer index, offset, redelivered) to deliver, if any.
    fn next_delivery(&self) -> Option<(usize, i64, bool)> {
        let mut s = self.state.borrow_mut();
        let ci = s.consumers.iter().position(Consumer::has_credit)?;
        let (offset, redelivered) = self.peek_ready(&mut s)?;
        Some((ci, offset, redelivered))
    }

    async fn dispatch_loop(self: &Rc<Self>) {
        while !self.closed.get() {
            let listener = self.wake.listen();
            if self.dispatch_one().await {
                continue;
            }
            let end = self.store.visible_end();
            match self.store.messages_log() {
                Some(log) => {
                    let log = log.clone();
                    futures_lite::future::or(
                        listener,
                        async move { log.wait_for_data(end, Duration::from_secs(1)).await },
                    )
                    .await;
                }
                None => listener.await,
            }
        }
    }

    /// Delivers one message to the next consumer with credit; false when
    /// there is no message or no such consumer.
    async fn dispatch_one(&self) -> bool {
        let Some((_, offset, _)) = self.next_delivery() else { return false };
        self.mark_delivered(offset).await;
        let delivery = {
            let mut s = self.state.borrow_mut();
            // Things may have moved during the mark's write: look again.
            let Some(ci) = s.consumers.iter().position(Consumer::has_credit) else { return false };
            let Some((offset, redelivered)) = self.peek_ready(&mut s) else { return false };
            let batch = match self.store.read(offset) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(queue = %self.name, offset, error = %e, "cannot read a ready message; settling it");
                    self.take(&mut s, offset, None, true);
                    drop(s);
                    self.journal_settled(vec![Range { start: offset, end: offset + 1 }]);
                    return true;
                }
            };
            let Some(mut consumer) = s.consumers.remove(ci) else { return false };
            self.take(&mut s, offset, Some(consumer.key.clone()), consumer.no_ack);
            consumer.in_flight += 1;
            if !consumer.no_ack {
                consumer.unacked += 1;
            }
            let key = consumer.key.clone();
            // Round robin: the served consumer goes last.
            s.consumers.push_back(consumer);
            Delivery { consumer: key, queue: self.name.clone(), offset, redelivered, batch }
        };
        let no_ack_settled = !self.state.borrow().unacked.contains_key(&delivery.offset);
        if no_ack_settled {
            self.journal_settled(vec![Range { start: delivery.offset, end: delivery.offset + 1 }]);
        }
        bump(&self.counters.delivered, 1);
        self.outlet.deliver(delivery).await;
        true
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
            let batch = single_record_batch(&record, crate::storage::now_ms());
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
        let head = self.settled_head();
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
        let text = checkpoint.encode();
        let path = dir.join(CHECKPOINT_FILE);
        crate::storage::segment::blocking(move || {
            crate::durable_file::store(&path, &text).map_err(std::io::Error::other)
        })
        .await
        .map_err(|e| StoreError::Storage(crate::storage::StorageError::io("write settle checkpoint", e)))?;
        self.journal.bytes_since_checkpoint.set(0);
        journal_log.delete_records(journal_end.min(journal_log.high_watermark())).await?;
        Ok(())
    }

    // ---- closing ----

    /// Stops the dispatcher and the journal (writing what is pending and a
    /// checkpoint), then closes the logs.
    pub async fn close(&self) {
        self.closed.set(true);
        self.wake.notify(usize::MAX);
        while self.dispatcher_running.get() {
            let l = self.dispatcher_done.listen();
            if !self.dispatcher_running.get() {
                break;
            }
            self.wake.notify(usize::MAX);
            l.await;
        }
        while self.journal.running.get() {
            let l = self.journal.stopped.listen();
            if !self.journal.running.get() {
                break;
            }
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

/// The settled set and delivery mark of a durable queue: its checkpoint,
/// then every journal record after it, clamped to the messages still held.
async fn recover_settled(store: &Store) -> Result<(RangeSet, i64), StoreError> {
    let (Some(journal), Some(dir)) = (store.journal(), store.dir()) else { return Ok((RangeSet::default(), 0)) };
    let path = dir.join(CHECKPOINT_FILE);
    let shown = path.display().to_string();
    let loaded =
        crate::storage::segment::blocking(move || crate::durable_file::load(&path).map_err(std::io::Error::other))
            .await
            .map_err(|e| StoreError::Storage(crate::storage::StorageError::io(format!("read {shown}"), e)))?;
    let mut checkpoint = match loaded.as_deref().map(Checkpoint::decode) {
        Some(Some(c)) => c,
        Some(None) => {
            tracing::warn!(checkpoint = %shown, "unreadable settle checkpoint; replaying the whole journal");
            Checkpoint::default()
        }
        None => Checkpoint::default(),
    };
    let offsets = journal.offsets();
    let mut at = checkpoint.journal_offset.max(offsets.log_start_offset);
    let mut replayed = 0u64;
    while at < offsets.high_watermark {
        let read = journal.read(at, 1 << 20)?;
        if read.records.is_empty() {
            break;
        }
        for batch in &read.records {
            let record = SingleRecord::parse(batch)
                .ok()
                .and_then(|r| SettleRecord::decode(&batch[r.value.clone()]).map(|s| (r.offset, s)));
            let Some((offset, record)) = record else {
                tracing::warn!(offset = at, "unreadable settle journal record skipped");
                at += 1;
                continue;
            };
            for r in record.settled {
                checkpoint.settled.insert(r);
            }
            checkpoint.delivered_mark = checkpoint.delivered_mark.max(record.delivered_mark);
            at = offset + 1;
            replayed += 1;
        }
    }
    let start = store.start();
    let end = store.visible_end();
    checkpoint.settled.truncate_below(start);
    checkpoint.settled.truncate_at_or_above(end);
    tracing::debug!(replayed, start, end, "settle state recovered");
    Ok((checkpoint.settled, checkpoint.delivered_mark))
}

#[cfg(test)]
mod tests;
