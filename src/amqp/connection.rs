//! One client connection after its handshake: the negotiated limits, its
//! channels, its exclusive queues, the bounded queue of frames to write
//! (read by the writer task, which also returns delivery credit to the
//! queues), and the deliveries its consumers receive (`ConnectionPort`).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amq_protocol::protocol::{basic, channel, connection, AMQPClass};
use bytes::Bytes;
use futures_util::future::LocalBoxFuture;

use super::broker::{Broker, ConnectionPort};
use super::channel::{Channel, Unacked};
use super::codec::{method_frame, short};
use super::codes;
use super::frame::{body_frames, header_frame};
use super::io::FrameSink;
use super::message::StoredMessage;
use super::queue::{ConsumerKey, Delivery};
use crate::runtime::task::{self, Receiver, Sender};

/// Frames waiting to be written, per connection, at most (then senders wait).
pub const OUTBOUND_QUEUE: usize = 256;
/// Credits returned to a queue at once, at most (more are sent as they come).
const CREDIT_BATCH: u32 = 32;

/// What the handshake settled.
#[derive(Debug, Clone, Copy)]
pub struct Tuned {
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat_s: u16,
}

/// Capabilities the client announced in connection.start-ok.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientCaps {
    pub consumer_cancel_notify: bool,
    pub connection_blocked: bool,
}

pub enum Outbound {
    Frames(Vec<Bytes>),
    /// A delivery to a consumer: its queue gets a credit once it is written.
    Delivered {
        frames: Vec<Bytes>,
        queue: Arc<str>,
        consumer: ConsumerKey,
    },
    /// Everything before it is written: the writer stops.
    Stop,
}

/// An AMQP error to close a channel (soft) or the connection (hard) with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpError {
    pub code: u16,
    pub text: String,
    pub class_id: u16,
    pub method_id: u16,
}

impl AmqpError {
    pub fn new(code: u16, text: impl Into<String>) -> AmqpError {
        AmqpError { code, text: text.into(), class_id: 0, method_id: 0 }
    }

    pub fn on(mut self, method: &AMQPClass) -> AmqpError {
        self.class_id = method.get_amqp_class_id();
        self.method_id = method.get_amqp_method_id();
        self
    }

    pub fn is_hard(&self) -> bool {
        codes::is_hard(self.code)
    }

    /// The reply text as RabbitMQ words it: `CODE_NAME - text`.
    pub fn reply_text(&self) -> String {
        format!("{} - {}", codes::name(self.code), self.text)
    }
}

impl From<super::definitions::DefinitionError> for AmqpError {
    fn from(e: super::definitions::DefinitionError) -> AmqpError {
        AmqpError::new(e.code, e.text)
    }
}

pub struct Conn {
    pub id: u64,
    pub broker: Rc<Broker>,
    pub peer: String,
    pub tuned: Tuned,
    pub caps: ClientCaps,
    out: Sender<Outbound>,
    pub channels: RefCell<HashMap<u16, Channel>>,
    pub exclusive_queues: RefCell<BTreeSet<String>>,
    /// connection.close was sent; only close-ok is awaited now.
    pub closing: Cell<bool>,
    /// The writer failed or finished: nothing more goes out.
    pub dead: Cell<bool>,
    pub last_write: Cell<Instant>,
    pub blocked_sent: Cell<bool>,
    /// Bytes of publishes being stored, in KiB, at most
    /// `PUBLISH_BUDGET_KIB` (then the reader waits: back-pressure through TCP).
    pub publish_slots: task::Semaphore,
    /// Announced body bytes of the messages being received on all channels.
    pub receiving_bytes: std::rc::Rc<Cell<usize>>,
    /// One sender of confirms at a time, so they leave in order.
    pub confirm_turn: task::Semaphore,
    /// Whose turn it is to queue frames (see `OutTurn`).
    out_turn: task::Semaphore,
}

/// The turn to queue frames for the writer. Turns are served first come,
/// first served (deliveries from another shard arrive as separate tasks,
/// in order), and a delivery's tag is taken within the turn that queues its
/// frames: frames leave in the order their senders came, and delivery tags
/// go out in increasing order, which a client's multiple-ack relies on.
/// The bounded channel alone does not keep that order: a sender woken for
/// room can be overtaken by one that finds room before it runs.
pub struct OutTurn(#[allow(dead_code)] task::Permit);

/// Message bytes (KiB, at least 1 per message) of one connection being
/// stored at once, at most.
pub const PUBLISH_BUDGET_KIB: u64 = 64 * 1024;

/// Body bytes a connection may be receiving at once (over its channels, from
/// each content header to the message's last body frame), at most.
pub fn receiving_bytes_max(max_message_bytes: usize) -> usize {
    (64 << 20).max(2 * max_message_bytes)
}

impl Conn {
    /// A connection registered with the broker (deliveries can reach it
    /// from then on), and the receiving end of its frames to write.
    pub fn new(broker: Rc<Broker>, peer: String, tuned: Tuned, caps: ClientCaps) -> (Rc<Conn>, Receiver<Outbound>) {
        let (out, rx) = task::channel(OUTBOUND_QUEUE);
        let id = broker.allocate_connection_id();
        let conn = Rc::new(Conn {
            id,
            broker: broker.clone(),
            peer,
            tuned,
            caps,
            out,
            channels: RefCell::new(HashMap::new()),
            exclusive_queues: RefCell::new(BTreeSet::new()),
            closing: Cell::new(false),
            dead: Cell::new(false),
            last_write: Cell::new(Instant::now()),
            blocked_sent: Cell::new(false),
            publish_slots: task::Semaphore::new(PUBLISH_BUDGET_KIB),
            receiving_bytes: std::rc::Rc::new(Cell::new(0)),
            confirm_turn: task::Semaphore::new(1),
            out_turn: task::Semaphore::new(1),
        });
        broker.register_connection(id, conn.clone() as Rc<dyn ConnectionPort>);
        (conn, rx)
    }

    pub fn consumer_key(&self, channel: u16, tag: &Arc<str>) -> ConsumerKey {
        ConsumerKey { shard: self.broker.shard.id, connection: self.id, channel, tag: tag.clone() }
    }

    /// Waits for the turn to queue frames (`None`: the connection is gone).
    pub async fn out_turn(&self) -> Option<OutTurn> {
        self.out_turn.acquire(1).await.map(OutTurn)
    }

    /// Queues frames to write, in `turn`; waits while the queue is full.
    async fn queue(&self, _turn: &OutTurn, item: Outbound) {
        if self.dead.get() {
            return;
        }
        if self.out.send(item).await.is_err() {
            self.dead.set(true);
        }
    }

    /// Queues frames taken in `turn` (tags numbered within it).
    pub async fn send_in_turn(&self, turn: &OutTurn, frames: Vec<Bytes>) {
        self.queue(turn, Outbound::Frames(frames)).await;
    }

    /// Queues frames to write in their turn; waits while the queue is full.
    pub async fn send(&self, frames: Vec<Bytes>) {
        let Some(turn) = self.out_turn().await else { return };
        self.send_in_turn(&turn, frames).await;
    }

    pub async fn send_method(&self, channel: u16, method: AMQPClass) {
        self.send(vec![method_frame(channel, &method)]).await;
    }

    /// Lets the writer finish what is queued and stop.
    pub async fn stop_writer(&self) {
        if let Some(turn) = self.out_turn().await {
            self.queue(&turn, Outbound::Stop).await;
        }
        self.dead.set(true);
    }

    /// Queues a heartbeat unless the queue is full (then frames are going out).
    pub fn try_send_heartbeat(&self) {
        let _ = self.out.try_send(Outbound::Frames(vec![super::frame::heartbeat()]));
    }

    /// Sends channel.close for a soft error; the channel then waits for
    /// close-ok, its consumers cancelled and its messages requeued now.
    pub async fn close_channel(&self, channel: u16, e: &AmqpError) {
        tracing::debug!(conn = self.id, channel, code = e.code, text = %e.text, "closing channel");
        let cleanup = {
            let mut chans = self.channels.borrow_mut();
            match chans.get_mut(&channel) {
                Some(ch) if !ch.closing => {
                    ch.closing = true;
                    ch.content = None;
                    Some(take_channel_state(ch))
                }
                _ => None,
            }
        };
        if let Some(state) = cleanup {
            self.release(channel, state).await;
        }
        let close = AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
            reply_code: e.code,
            reply_text: short(&e.reply_text()),
            class_id: e.class_id,
            method_id: e.method_id,
        }));
        self.send_method(channel, close).await;
    }

    /// Sends connection.close for a hard error; the reader then waits for
    /// close-ok (bounded) and closes.
    pub async fn close_connection(&self, e: &AmqpError) {
        if self.closing.replace(true) {
            return;
        }
        tracing::info!(conn = self.id, peer = %self.peer, code = e.code, text = %e.text, "closing connection");
        let close = AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: e.code,
            reply_text: short(&e.reply_text()),
            class_id: e.class_id,
            method_id: e.method_id,
        }));
        self.send_method(0, close).await;
    }

    /// Cancels a channel's consumers at their queues and requeues its
    /// unacknowledged messages.
    pub async fn release(&self, channel: u16, state: ChannelLeftovers) {
        for (tag, queue) in state.consumers {
            let key = self.consumer_key(channel, &tag);
            self.broker.cancel(&queue, key).await;
        }
        for (queue, offsets) in state.unacked {
            self.broker.requeue(queue, offsets).await;
        }
        // Deliveries held back never reached the client: they go back too.
        for d in state.held {
            self.broker.requeue(d.queue.clone(), vec![d.offset]).await;
        }
    }

    /// Releases every channel (the connection is going away).
    pub async fn release_all(&self) {
        let all: Vec<(u16, ChannelLeftovers)> =
            self.channels.borrow_mut().drain().map(|(id, mut ch)| (id, take_channel_state(&mut ch))).collect();
        for (id, state) in all {
            self.release(id, state).await;
        }
    }

    /// Frames for a delivery on `ch` (its tag recorded unless no-ack);
    /// `None` when the stored message cannot be read.
    fn frame_delivery(&self, ch: &mut Channel, d: &Delivery, no_ack: bool) -> Option<Vec<Bytes>> {
        let msg = match StoredMessage::parse(&d.batch) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(queue = %d.queue, offset = d.offset, error = %e, "stored message unreadable; not delivered");
                return None;
            }
        };
        let unacked = (!no_ack).then(|| Unacked {
            queue: d.queue.clone(),
            offset: d.offset,
            consumer: Some(d.consumer.tag.clone()),
        });
        let tag = ch.tag(unacked);
        let deliver = AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
            consumer_tag: short(&d.consumer.tag),
            delivery_tag: tag,
            redelivered: d.redelivered,
            exchange: short(msg.exchange_str()),
            routing_key: short(msg.routing_key_str()),
        }));
        let mut frames = Vec::with_capacity(6);
        frames.push(method_frame(ch.id, &deliver));
        header_frame(ch.id, msg.body.len() as u64, &msg.properties, &mut frames);
        body_frames(ch.id, &msg.body, self.tuned.frame_max, &mut frames);
        Some(frames)
    }

    /// Resumes a paused channel's consumers once it has room again, then
    /// sends held deliveries while its limits allow.
    pub async fn flush_held(&self, channel: u16) {
        let resume = {
            let mut chans = self.channels.borrow_mut();
            match chans.get_mut(&channel) {
                Some(ch)
                    if ch.paused
                        && ch.has_room()
                        && ch.unacked.len() < self.broker.config.max_unacked_per_channel as usize =>
                {
                    ch.paused = false;
                    consumers_of(ch)
                }
                _ => Vec::new(),
            }
        };
        for (queue, key) in resume {
            self.broker.set_paused(queue, key, false).await;
        }
        let Some(turn) = self.out_turn().await else { return };
        while let Some(step) = self.next_held(channel) {
            match step {
                HeldStep::Requeue(d) => self.broker.requeue(d.queue.clone(), vec![d.offset]).await,
                HeldStep::Send(d, Some(frames)) => self.push_delivery(&turn, frames, d).await,
                HeldStep::Send(d, None) => self.broker.settle(d.queue.clone(), vec![d.offset]).await,
            }
        }
    }

    /// The next held delivery of `channel` that can go now (framed), or
    /// whose consumer is gone (to requeue); `None` when none can.
    fn next_held(&self, channel: u16) -> Option<HeldStep> {
        let mut chans = self.channels.borrow_mut();
        let ch = chans.get_mut(&channel).filter(|ch| !ch.closing)?;
        let d = ch.held.front()?;
        let Some(info) = ch.consumers.get(&d.consumer.tag).cloned() else {
            return ch.held.pop_front().map(HeldStep::Requeue);
        };
        let max_unacked = self.broker.config.max_unacked_per_channel as usize;
        if !info.ready || !ch.has_room() || ch.unacked.len() >= max_unacked {
            return None;
        }
        let d = ch.held.pop_front()?;
        let frames = self.frame_delivery(ch, &d, info.no_ack);
        Some(HeldStep::Send(d, frames))
    }

    async fn push_delivery(&self, turn: &OutTurn, frames: Vec<Bytes>, d: Delivery) {
        self.queue(turn, Outbound::Delivered { frames, queue: d.queue, consumer: d.consumer }).await;
    }

    /// Sends connection.blocked / unblocked to a client that understands
    /// them, when the disk alarm changed.
    pub async fn sync_blocked(&self) {
        if !self.caps.connection_blocked {
            return;
        }
        let alarm = self.broker.disk_alarm.get();
        if alarm == self.blocked_sent.get() {
            return;
        }
        self.blocked_sent.set(alarm);
        let m = if alarm {
            AMQPClass::Connection(connection::AMQPMethod::Blocked(connection::Blocked {
                reason: short("low on disk space"),
            }))
        } else {
            AMQPClass::Connection(connection::AMQPMethod::Unblocked(connection::Unblocked {}))
        };
        self.send_method(0, m).await;
    }
}

/// What to do with the next held delivery.
enum HeldStep {
    /// Its consumer is gone: back to the queue.
    Requeue(Delivery),
    /// Framed (or unreadable: settled).
    Send(Delivery, Option<Vec<Bytes>>),
}

/// What to do with a delivery that reached its channel.
enum DeliverOutcome {
    Send(Delivery, Option<Vec<Bytes>>),
    Held,
    /// Back to the queue; and these consumers paused.
    Release(Delivery, Vec<(Arc<str>, ConsumerKey)>),
}

/// The channel's consumers as (queue, key).
fn consumers_of(ch: &Channel) -> Vec<(Arc<str>, ConsumerKey)> {
    ch.consumers.iter().map(|(tag, info)| (info.queue.clone(), ch.consumer_key(tag))).collect()
}

/// What a closing channel leaves to release.
pub struct ChannelLeftovers {
    pub consumers: Vec<(Arc<str>, Arc<str>)>,
    pub unacked: Vec<(Arc<str>, Vec<i64>)>,
    pub held: Vec<Delivery>,
}

pub fn take_channel_state(ch: &mut Channel) -> ChannelLeftovers {
    let consumers = ch.consumers.drain().map(|(tag, info)| (tag, info.queue)).collect();
    let unacked = ch.drain_unacked();
    let held = ch.held.drain(..).collect();
    ChannelLeftovers { consumers, unacked, held }
}

impl ConnectionPort for Conn {
    fn deliver(&self, d: Delivery) -> LocalBoxFuture<'_, Result<(), Delivery>> {
        Box::pin(async move {
            if self.dead.get() || self.closing.get() {
                return Err(d);
            }
            // Taken first: deliveries are numbered and queued in arrival order.
            let Some(turn) = self.out_turn().await else { return Err(d) };
            if self.dead.get() || self.closing.get() {
                return Err(d);
            }
            let channel = d.consumer.channel;
            let max_unacked = self.broker.config.max_unacked_per_channel as usize;
            let outcome = {
                let mut chans = self.channels.borrow_mut();
                let Some(ch) = chans.get_mut(&channel) else { return Err(d) };
                if ch.closing {
                    return Err(d);
                }
                let Some(info) = ch.consumers.get(&d.consumer.tag).cloned() else { return Err(d) };
                if !info.no_ack && (!ch.has_room() || ch.unacked.len() >= max_unacked) {
                    // The channel is full: the message goes back to its place
                    // and the channel's consumers stop until an ack.
                    let pause = !ch.paused;
                    ch.paused = true;
                    let consumers = if pause { consumers_of(ch) } else { Vec::new() };
                    DeliverOutcome::Release(d, consumers)
                } else if !info.ready || !ch.held.is_empty() {
                    ch.held.push_back(d);
                    DeliverOutcome::Held
                } else {
                    let frames = self.frame_delivery(ch, &d, info.no_ack);
                    DeliverOutcome::Send(d, frames)
                }
            };
            match outcome {
                DeliverOutcome::Held => {}
                DeliverOutcome::Send(d, Some(frames)) => self.push_delivery(&turn, frames, d).await,
                DeliverOutcome::Send(d, None) => self.broker.settle(d.queue.clone(), vec![d.offset]).await,
                DeliverOutcome::Release(d, pause) => {
                    for (queue, key) in pause {
                        self.broker.set_paused(queue, key, true).await;
                    }
                    self.broker.release(d.queue.clone(), d.consumer.clone(), d.offset, d.redelivered).await;
                }
            }
            Ok(())
        })
    }

    fn consumer_cancelled(&self, consumer: ConsumerKey) -> LocalBoxFuture<'_, ()> {
        Box::pin(async move {
            let removed = {
                let mut chans = self.channels.borrow_mut();
                chans.get_mut(&consumer.channel).and_then(|ch| ch.consumers.remove(&consumer.tag))
            };
            if removed.is_none() || !self.caps.consumer_cancel_notify {
                return;
            }
            let cancel = AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                consumer_tag: short(&consumer.tag),
                nowait: true,
            }));
            self.send_method(consumer.channel, cancel).await;
        })
    }
}

/// Items written together at most: what is queued when the writer wakes
/// goes out in one `sendmsg` (frames are moved, not copied).
const WRITE_BATCH_ITEMS_MAX: usize = 64;

/// Writes what `rx` gives until it closes or a write fails; returns credit
/// for written deliveries to their queues. Marks `conn` dead when done.
pub async fn write_loop<W: futures_lite::AsyncWrite + Unpin>(
    conn: Rc<Conn>,
    rx: Receiver<Outbound>,
    mut sink: FrameSink<W>,
) {
    let mut credits: HashMap<(Arc<str>, ConsumerKey), u32> = HashMap::new();
    let mut chunks: Vec<Bytes> = Vec::new();
    loop {
        // Credits go back when the queue of frames ran dry or a batch filled.
        let next = match futures_lite::future::poll_once(rx.recv()).await {
            Some(item) => item,
            None => {
                return_credits(&conn, &mut credits).await;
                rx.recv().await
            }
        };
        let Some(first) = next else { break };
        // This item and those queued behind it, up to the batch.
        let (mut stop, mut items, mut item) = (false, 0, Some(first));
        while let Some(it) = item.take() {
            items += 1;
            match it {
                Outbound::Stop => {
                    stop = true;
                    break;
                }
                Outbound::Frames(frames) => chunks.extend(frames),
                Outbound::Delivered { frames, queue, consumer } => {
                    chunks.extend(frames);
                    *credits.entry((queue, consumer)).or_insert(0) += 1;
                }
            }
            if items < WRITE_BATCH_ITEMS_MAX {
                item = futures_lite::future::poll_once(rx.recv()).await.flatten();
            }
        }
        let result = sink.write_chunks(&chunks).await;
        chunks.clear();
        conn.last_write.set(Instant::now());
        if let Err(e) = result {
            tracing::debug!(conn = conn.id, error = %e, "write failed; closing");
            break;
        }
        if stop {
            break;
        }
        if credits.values().any(|n| *n >= CREDIT_BATCH) {
            return_credits(&conn, &mut credits).await;
        }
    }
    conn.dead.set(true);
    return_credits(&conn, &mut credits).await;
    let _ = sink.flush().await;
}

async fn return_credits(conn: &Conn, credits: &mut HashMap<(Arc<str>, ConsumerKey), u32>) {
    for ((queue, key), n) in credits.drain() {
        conn.broker.credit(queue, key, n).await;
    }
}

/// Sends a heartbeat whenever nothing was written for half the interval,
/// until the connection is dead.
pub async fn heartbeat_loop(conn: Rc<Conn>) {
    if conn.tuned.heartbeat_s == 0 {
        return;
    }
    let half = Duration::from_millis(u64::from(conn.tuned.heartbeat_s) * 500);
    while !conn.dead.get() {
        task::sleep(half).await;
        if conn.last_write.get().elapsed() >= half {
            conn.try_send_heartbeat();
        }
    }
}
