//! What each channel method does: exchange and queue declarations (through
//! the definitions shard), publishing (content assembled from header and
//! body frames, routed with the local definitions, stored at each queue's
//! owner, confirmed in order), consuming, acknowledging, basic.get,
//! confirms and transactions.
//!
//! Errors come back as `AmqpError`: the caller closes the channel (soft
//! codes) or the connection (hard codes) with them.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amq_protocol::protocol::{access, basic, channel, confirm, exchange, queue, tx, AMQPClass};
use bytes::Bytes;
use futures_lite::AsyncRead;

use super::broker::DeleteConditions;
use super::channel::{
    by_queue, ConfirmFrame, Confirms, ConsumerInfo, Content, ReadyMessage, Reservation, Tx, TxSettle, Unacked,
    TX_PUBLISHES_MAX,
};
use super::codec::{method_frame, parse_content_header, short, AMQPValue, FieldTable, ShortString, CLASS_BASIC};
use super::codes;
use super::connection::{take_channel_state, AmqpError, Conn};
use super::definitions::{Binding, Change, Destination, Exchange, QueueDef, QueueDefWire};
use super::frame::{body_frames, header_frame};
use super::io::FrameSource;
use super::message::{MessageMeta, PendingBody, StoredMessage};
use super::queue::QueueOptions;
use super::routing::ExchangeKind;
use crate::runtime::task;

/// Queue arguments that change how messages are kept or delivered, which
/// this version does not enforce: refused rather than ignored. (The ones it
/// enforces are checked by `QueueOptions::parse`.)
const UNSUPPORTED_QUEUE_ARGUMENTS: &[&str] = &["x-single-active-consumer"];

/// A handler's failure: an AMQP error to close with, or the socket's.
#[derive(Debug)]
pub enum Fault {
    Amqp(AmqpError),
    Io(std::io::Error),
}

impl From<AmqpError> for Fault {
    fn from(e: AmqpError) -> Fault {
        Fault::Amqp(e)
    }
}

impl From<std::io::Error> for Fault {
    fn from(e: std::io::Error) -> Fault {
        Fault::Io(e)
    }
}

/// basic.publish's method id (for errors found in its content).
const BASIC_PUBLISH: u16 = 40;

fn err(code: u16, text: impl Into<String>) -> AmqpError {
    AmqpError::new(code, text)
}

fn not_found_queue(name: &str) -> AmqpError {
    err(codes::NOT_FOUND, format!("no queue '{name}' in vhost '/'"))
}

fn not_found_exchange(name: &str) -> AmqpError {
    err(codes::NOT_FOUND, format!("no exchange '{name}' in vhost '/'"))
}

/// A server-generated name: `prefix` and 22 random URL-safe characters.
fn generated_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let id = uuid::Uuid::new_v4().as_u128();
    let suffix: String = (0..22).map(|i| ALPHABET[((id >> (i * 6)) & 63) as usize] as char).collect();
    format!("{prefix}{suffix}")
}

/// Channel methods (the channel exists and is open).
pub async fn on_method(conn: &Rc<Conn>, ch: u16, method: AMQPClass) -> Result<(), AmqpError> {
    let reply = |m: AMQPClass| method_frame(ch, &m);
    match &method {
        AMQPClass::Channel(channel::AMQPMethod::Flow(f)) => {
            if !f.active {
                return Err(err(codes::NOT_IMPLEMENTED, "active=false").on(&method));
            }
            conn.send(vec![reply(AMQPClass::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk { active: true })))])
                .await;
            Ok(())
        }
        AMQPClass::Channel(channel::AMQPMethod::FlowOk(_)) => Ok(()),
        AMQPClass::Access(access::AMQPMethod::Request(_)) => {
            conn.send_method(ch, AMQPClass::Access(access::AMQPMethod::RequestOk(access::RequestOk {}))).await;
            Ok(())
        }
        AMQPClass::Exchange(m) => on_exchange(conn, ch, m).await.map_err(|e| e.on(&method)),
        AMQPClass::Queue(m) => on_queue(conn, ch, m).await.map_err(|e| e.on(&method)),
        AMQPClass::Basic(m) => on_basic(conn, ch, m).await.map_err(|e| e.on(&method)),
        AMQPClass::Confirm(confirm::AMQPMethod::Select(s)) => {
            {
                let mut chans = conn.channels.borrow_mut();
                let c = chans.get_mut(&ch).expect("the channel is open");
                if c.tx.is_some() {
                    return Err(err(codes::PRECONDITION_FAILED, "cannot switch from tx to confirm mode").on(&method));
                }
                if c.confirm.is_none() {
                    c.confirm = Some(Confirms::new());
                }
            }
            if !s.nowait {
                conn.send_method(ch, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {}))).await;
            }
            Ok(())
        }
        AMQPClass::Tx(m) => on_tx(conn, ch, m).await.map_err(|e| e.on(&method)),
        _ => Err(err(codes::COMMAND_INVALID, "unexpected method from a client").on(&method)),
    }
}

// ---- exchanges ----

async fn on_exchange(conn: &Rc<Conn>, ch: u16, m: &exchange::AMQPMethod) -> Result<(), AmqpError> {
    let ok = |nowait: bool, reply: AMQPClass| async move {
        if !nowait {
            conn.send_method(ch, reply).await;
        }
    };
    match m {
        exchange::AMQPMethod::Declare(d) => {
            let name = d.exchange.as_str();
            if d.passive {
                if !conn.broker.definitions().exchanges.contains_key(name) {
                    return Err(not_found_exchange(name));
                }
            } else {
                if name.is_empty() {
                    return Err(err(codes::ACCESS_REFUSED, "operation not permitted on the default exchange"));
                }
                let kind = ExchangeKind::parse(d.kind.as_str())
                    .ok_or_else(|| err(codes::COMMAND_INVALID, format!("unknown exchange type '{}'", d.kind)))?;
                let exchange = Exchange {
                    kind,
                    durable: d.durable,
                    auto_delete: d.auto_delete,
                    internal: d.internal,
                    arguments: d.arguments.clone(),
                };
                conn.broker.change(Change::DeclareExchange { name: name.to_string(), exchange }).await?;
            }
            ok(d.nowait, AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {}))).await;
        }
        exchange::AMQPMethod::Delete(d) => {
            let name = d.exchange.as_str();
            if d.if_unused && conn.broker.definitions().exchange_in_use(name) {
                return Err(err(codes::PRECONDITION_FAILED, format!("exchange '{name}' in vhost '/' in use")));
            }
            conn.broker.change(Change::DeleteExchange { name: name.to_string() }).await?;
            ok(d.nowait, AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {}))).await;
        }
        exchange::AMQPMethod::Bind(b) => {
            let to = Destination::Exchange(b.destination.to_string());
            conn.broker.change(Change::Bind(binding(&b.source, to, &b.routing_key, &b.arguments))).await?;
            ok(b.nowait, AMQPClass::Exchange(exchange::AMQPMethod::BindOk(exchange::BindOk {}))).await;
        }
        exchange::AMQPMethod::Unbind(b) => {
            let to = Destination::Exchange(b.destination.to_string());
            conn.broker.change(Change::Unbind(binding(&b.source, to, &b.routing_key, &b.arguments))).await?;
            ok(b.nowait, AMQPClass::Exchange(exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {}))).await;
        }
        _ => return Err(err(codes::COMMAND_INVALID, "unexpected exchange method from a client")),
    }
    Ok(())
}

/// A binding from a method's source exchange, routing key and arguments.
fn binding(source: &ShortString, to: Destination, routing_key: &ShortString, arguments: &FieldTable) -> Binding {
    Binding {
        source: source.to_string(),
        destination: to,
        routing_key: routing_key.to_string(),
        arguments: arguments.clone(),
    }
}

// ---- queues ----

/// The queue a method names: the channel's last declared one for "".
fn resolve_queue(conn: &Conn, ch: u16, name: &str) -> Result<String, AmqpError> {
    if !name.is_empty() {
        return Ok(name.to_string());
    }
    let chans = conn.channels.borrow();
    chans
        .get(&ch)
        .and_then(|c| c.last_queue.clone())
        .ok_or_else(|| err(codes::NOT_FOUND, "no previously declared queue"))
}

/// Checks that `name` exists and this connection may use it.
fn check_queue_access(conn: &Conn, name: &str) -> Result<(), AmqpError> {
    let defs = conn.broker.definitions();
    let q = defs.queues.get(name).ok_or_else(|| not_found_queue(name))?;
    if let Some(owner) = q.exclusive_owner {
        if owner.shard != conn.broker.shard.id || owner.number != conn.id {
            return Err(err(
                codes::RESOURCE_LOCKED,
                format!("cannot obtain exclusive access to locked queue '{name}' in vhost '/'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration."),
            ));
        }
    }
    Ok(())
}

/// Arguments of other queue types (quorum queues, streams) that RabbitMQ
/// refuses on a classic queue rather than ignore.
const NOT_FOR_CLASSIC_QUEUES: &[&str] = &[
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-quorum-initial-group-size",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-initial-cluster-size",
    "x-queue-leader-locator",
    "x-dead-letter-strategy",
];

fn check_queue_arguments(
    name: &str,
    durable: bool,
    exclusive: bool,
    auto_delete: bool,
    args: &FieldTable,
) -> Result<(), AmqpError> {
    for key in UNSUPPORTED_QUEUE_ARGUMENTS {
        if args.inner().contains_key(*key) {
            return Err(err(
                codes::PRECONDITION_FAILED,
                format!("queue argument '{key}' is not supported by this broker version"),
            ));
        }
    }
    QueueOptions::parse(name, args).map_err(|e| err(codes::PRECONDITION_FAILED, e.to_string()))?;
    let kind = match args.inner().get("x-queue-type") {
        None => "classic".to_string(),
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.as_str().to_string(),
        Some(_) => return Err(err(codes::PRECONDITION_FAILED, "invalid arg 'x-queue-type'")),
    };
    match kind.as_str() {
        "classic" => match NOT_FOR_CLASSIC_QUEUES.iter().find(|k| args.inner().contains_key(**k)) {
            Some(key) => Err(err(
                codes::PRECONDITION_FAILED,
                format!("invalid arg '{key}' for queue '{name}' in vhost '/' of queue type rabbit_classic_queue"),
            )),
            None => Ok(()),
        },
        "quorum" => {
            if !durable || exclusive || auto_delete {
                let what = if !durable {
                    "non-durable"
                } else if exclusive {
                    "exclusive"
                } else {
                    "auto-delete"
                };
                return Err(err(codes::PRECONDITION_FAILED, format!("invalid property '{what}' for a quorum queue")));
            }
            Ok(())
        }
        other => Err(err(codes::PRECONDITION_FAILED, format!("unsupported queue type '{other}'"))),
    }
}

async fn declare_ok(conn: &Rc<Conn>, ch: u16, name: &str, nowait: bool) -> Result<(), AmqpError> {
    conn.channels.borrow_mut().get_mut(&ch).expect("the channel is open").last_queue = Some(name.to_string());
    if nowait {
        return Ok(());
    }
    let (ready, consumers) = conn.broker.declared(name).await?;
    let reply = AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
        queue: short(name),
        message_count: u32::try_from(ready).unwrap_or(u32::MAX),
        consumer_count: consumers,
    }));
    conn.send_method(ch, reply).await;
    Ok(())
}

async fn on_queue(conn: &Rc<Conn>, ch: u16, m: &queue::AMQPMethod) -> Result<(), AmqpError> {
    match m {
        queue::AMQPMethod::Declare(d) => declare_queue(conn, ch, d).await,
        queue::AMQPMethod::Bind(b) => {
            let name = resolve_queue(conn, ch, b.queue.as_str())?;
            check_queue_access(conn, &name)?;
            let to = Destination::Queue(name);
            conn.broker.change(Change::Bind(binding(&b.exchange, to, &b.routing_key, &b.arguments))).await?;
            if !b.nowait {
                conn.send_method(ch, AMQPClass::Queue(queue::AMQPMethod::BindOk(queue::BindOk {}))).await;
            }
            Ok(())
        }
        queue::AMQPMethod::Unbind(b) => {
            let name = resolve_queue(conn, ch, b.queue.as_str())?;
            check_queue_access(conn, &name)?;
            let to = Destination::Queue(name);
            conn.broker.change(Change::Unbind(binding(&b.exchange, to, &b.routing_key, &b.arguments))).await?;
            conn.send_method(ch, AMQPClass::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {}))).await;
            Ok(())
        }
        queue::AMQPMethod::Purge(p) => {
            let name = resolve_queue(conn, ch, p.queue.as_str())?;
            check_queue_access(conn, &name)?;
            let count = conn.broker.purge(&name).await?;
            if !p.nowait {
                let reply = queue::PurgeOk { message_count: u32::try_from(count).unwrap_or(u32::MAX) };
                conn.send_method(ch, AMQPClass::Queue(queue::AMQPMethod::PurgeOk(reply))).await;
            }
            Ok(())
        }
        queue::AMQPMethod::Delete(d) => {
            let name = resolve_queue(conn, ch, d.queue.as_str())?;
            let mut count = 0;
            if conn.broker.definitions().queues.contains_key(&name) {
                check_queue_access(conn, &name)?;
                let when = DeleteConditions { if_unused: d.if_unused, if_empty: d.if_empty };
                count = conn.broker.delete_queue(&name, when).await?.messages;
                conn.exclusive_queues.borrow_mut().remove(&name);
            }
            if !d.nowait {
                let reply = queue::DeleteOk { message_count: u32::try_from(count).unwrap_or(u32::MAX) };
                conn.send_method(ch, AMQPClass::Queue(queue::AMQPMethod::DeleteOk(reply))).await;
            }
            Ok(())
        }
        _ => Err(err(codes::COMMAND_INVALID, "unexpected queue method from a client")),
    }
}

async fn declare_queue(conn: &Rc<Conn>, ch: u16, d: &queue::Declare) -> Result<(), AmqpError> {
    if d.passive {
        let name = resolve_queue(conn, ch, d.queue.as_str())?;
        check_queue_access(conn, &name)?;
        return declare_ok(conn, ch, &name, d.nowait).await;
    }
    // `amq.` names are the server's own (server-named queues): a client
    // may use one (passive declare, consume, bind...) but not declare it,
    // even when it exists (as RabbitMQ).
    let name = if d.queue.as_str().is_empty() { generated_name("amq.gen-") } else { d.queue.to_string() };
    if !d.queue.as_str().is_empty() && name.starts_with("amq.") {
        return Err(err(codes::ACCESS_REFUSED, format!("queue name '{name}' contains reserved prefix 'amq.*'")));
    }
    check_queue_arguments(&name, d.durable, d.exclusive, d.auto_delete, &d.arguments)?;
    if conn.broker.definitions().queues.contains_key(&name) {
        check_queue_access(conn, &name)?;
    }
    let owner =
        d.exclusive.then_some(super::definitions::ConnectionId { shard: conn.broker.shard.id, number: conn.id });
    let wire = QueueDefWire {
        def: QueueDef {
            durable: d.durable,
            auto_delete: d.auto_delete,
            exclusive_owner: None,
            arguments: d.arguments.clone(),
        },
        exclusive_owner: owner,
    };
    conn.broker.change(Change::DeclareQueue { name: name.clone(), queue: wire }).await?;
    if d.exclusive {
        conn.exclusive_queues.borrow_mut().insert(name.clone());
    }
    declare_ok(conn, ch, &name, d.nowait).await
}

// ---- basic ----

async fn on_basic(conn: &Rc<Conn>, ch: u16, m: &basic::AMQPMethod) -> Result<(), AmqpError> {
    match m {
        basic::AMQPMethod::Qos(q) => {
            {
                let mut chans = conn.channels.borrow_mut();
                let c = chans.get_mut(&ch).expect("the channel is open");
                if q.global {
                    c.global_prefetch = q.prefetch_count;
                } else {
                    c.prefetch_count = q.prefetch_count;
                }
            }
            conn.send_method(ch, AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {}))).await;
            conn.flush_held(ch).await;
            Ok(())
        }
        basic::AMQPMethod::Consume(c) => consume(conn, ch, c).await,
        basic::AMQPMethod::Cancel(c) => {
            let tag: Arc<str> = Arc::from(c.consumer_tag.as_str());
            let info = conn.channels.borrow_mut().get_mut(&ch).and_then(|x| x.consumers.remove(&tag));
            if let Some(info) = info {
                conn.broker.cancel(&info.queue, conn.consumer_key(ch, &tag)).await;
            }
            if !c.nowait {
                let reply = basic::CancelOk { consumer_tag: c.consumer_tag.clone() };
                conn.send_method(ch, AMQPClass::Basic(basic::AMQPMethod::CancelOk(reply))).await;
            }
            conn.flush_held(ch).await;
            Ok(())
        }
        basic::AMQPMethod::Publish(p) => start_publish(conn, ch, p).await,
        basic::AMQPMethod::Get(g) => get(conn, ch, g).await,
        basic::AMQPMethod::Ack(a) => {
            settle(conn, ch, TxSettle::Ack { tag: a.delivery_tag, multiple: a.multiple }).await
        }
        basic::AMQPMethod::Nack(n) => {
            settle(conn, ch, TxSettle::Reject { tag: n.delivery_tag, multiple: n.multiple, requeue: n.requeue }).await
        }
        basic::AMQPMethod::Reject(r) => {
            settle(conn, ch, TxSettle::Reject { tag: r.delivery_tag, multiple: false, requeue: r.requeue }).await
        }
        basic::AMQPMethod::RecoverAsync(r) => recover(conn, ch, r.requeue).await,
        basic::AMQPMethod::Recover(r) => {
            recover(conn, ch, r.requeue).await?;
            conn.send_method(ch, AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {}))).await;
            Ok(())
        }
        _ => Err(err(codes::COMMAND_INVALID, "unexpected basic method from a client")),
    }
}

async fn consume(conn: &Rc<Conn>, ch: u16, c: &basic::Consume) -> Result<(), AmqpError> {
    let name = resolve_queue(conn, ch, c.queue.as_str())?;
    check_queue_access(conn, &name)?;
    let tag: Arc<str> = if c.consumer_tag.as_str().is_empty() {
        Arc::from(generated_name("amq.ctag-").as_str())
    } else {
        Arc::from(c.consumer_tag.as_str())
    };
    let queue: Arc<str> = Arc::from(name.as_str());
    let prefetch = {
        let mut chans = conn.channels.borrow_mut();
        let chan = chans.get_mut(&ch).expect("the channel is open");
        if chan.consumers.contains_key(&tag) {
            return Err(err(codes::NOT_ALLOWED, format!("attempt to reuse consumer tag '{tag}'")));
        }
        chan.consumers.insert(tag.clone(), ConsumerInfo { queue: queue.clone(), no_ack: c.no_ack, ready: false });
        chan.consumer_prefetch()
    };
    let key = conn.consumer_key(ch, &tag);
    if let Err(e) = conn.broker.consume(&name, key, c.no_ack, prefetch, c.exclusive).await {
        conn.channels.borrow_mut().get_mut(&ch).map(|x| x.consumers.remove(&tag));
        return Err(e.into());
    }
    if !c.nowait {
        let reply = basic::ConsumeOk { consumer_tag: short(&tag) };
        conn.send_method(ch, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(reply))).await;
    }
    if let Some(info) = conn.channels.borrow_mut().get_mut(&ch).and_then(|x| x.consumers.get_mut(&tag)) {
        info.ready = true;
    }
    conn.flush_held(ch).await;
    Ok(())
}

async fn get(conn: &Rc<Conn>, ch: u16, g: &basic::Get) -> Result<(), AmqpError> {
    let name = resolve_queue(conn, ch, g.queue.as_str())?;
    check_queue_access(conn, &name)?;
    let Some(ok) = conn.broker.get(&name, g.no_ack).await? else {
        conn.send_method(ch, AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {}))).await;
        return Ok(());
    };
    let queue: Arc<str> = Arc::from(name.as_str());
    let msg = match StoredMessage::parse(&ok.batch) {
        Ok(m) => m,
        Err(e) => {
            conn.broker.settle(queue, vec![ok.offset]).await;
            return Err(err(codes::INTERNAL_ERROR, format!("stored message unreadable: {e}")));
        }
    };
    // The tag is numbered in the turn that queues the frames (see `OutTurn`).
    let turn = conn.out_turn().await;
    let tag = turn.as_ref().and_then(|_| {
        let mut chans = conn.channels.borrow_mut();
        let chan = chans.get_mut(&ch).filter(|c| !c.closing)?;
        let unacked = (!g.no_ack).then(|| Unacked { queue: queue.clone(), offset: ok.offset, consumer: None });
        Some(chan.tag(unacked))
    });
    let (Some(turn), Some(tag)) = (turn, tag) else {
        // The channel closed meanwhile: not handed out (a no-ack get is gone).
        conn.broker.requeue(queue, vec![ok.offset]).await;
        return Ok(());
    };
    let get_ok = AMQPClass::Basic(basic::AMQPMethod::GetOk(basic::GetOk {
        delivery_tag: tag,
        redelivered: ok.redelivered,
        exchange: short(msg.exchange_str()),
        routing_key: short(msg.routing_key_str()),
        message_count: u32::try_from(ok.message_count).unwrap_or(u32::MAX),
    }));
    let mut frames = vec![method_frame(ch, &get_ok)];
    header_frame(ch, msg.body.len() as u64, &msg.properties, &mut frames);
    body_frames(ch, &msg.body, conn.tuned.frame_max, &mut frames);
    conn.send_in_turn(&turn, frames).await;
    Ok(())
}

/// basic.ack / nack / reject, or held by a transaction.
async fn settle(conn: &Rc<Conn>, ch: u16, s: TxSettle) -> Result<(), AmqpError> {
    {
        let mut chans = conn.channels.borrow_mut();
        let chan = chans.get_mut(&ch).expect("the channel is open");
        if let Some(tx) = chan.tx.as_mut() {
            if tx.settles.len() >= TX_PUBLISHES_MAX {
                return Err(err(
                    codes::PRECONDITION_FAILED,
                    format!("a transaction holds at most {TX_PUBLISHES_MAX} acks"),
                ));
            }
            tx.settles.push(s);
            return Ok(());
        }
    }
    apply_settle(conn, ch, s).await
}

async fn apply_settle(conn: &Rc<Conn>, ch: u16, s: TxSettle) -> Result<(), AmqpError> {
    let (tag, multiple, requeue) = match s {
        TxSettle::Ack { tag, multiple } => (tag, multiple, None),
        TxSettle::Reject { tag, multiple, requeue } => (tag, multiple, Some(requeue)),
    };
    let taken = conn.channels.borrow_mut().get_mut(&ch).and_then(|c| c.take_tags(tag, multiple));
    let Some(taken) = taken else {
        return Err(err(codes::PRECONDITION_FAILED, format!("unknown delivery tag {tag}")));
    };
    for (queue, offsets) in by_queue(&taken) {
        match requeue {
            Some(true) => conn.broker.requeue(queue, offsets).await,
            Some(false) => conn.broker.reject(queue, offsets).await,
            None => conn.broker.settle(queue, offsets).await,
        }
    }
    conn.flush_held(ch).await;
    Ok(())
}

async fn recover(conn: &Rc<Conn>, ch: u16, requeue: bool) -> Result<(), AmqpError> {
    if !requeue {
        return Err(err(codes::NOT_IMPLEMENTED, "requeue=false"));
    }
    let unacked = conn.channels.borrow_mut().get_mut(&ch).map(|c| c.drain_unacked()).unwrap_or_default();
    for (queue, offsets) in unacked {
        conn.broker.requeue(queue, offsets).await;
    }
    Ok(())
}

// ---- publishing ----

async fn start_publish(conn: &Rc<Conn>, ch: u16, p: &basic::Publish) -> Result<(), AmqpError> {
    let exchange = p.exchange.as_str();
    {
        let defs = conn.broker.definitions();
        let x = defs.exchanges.get(exchange).ok_or_else(|| not_found_exchange(exchange))?;
        if x.internal {
            return Err(err(
                codes::ACCESS_REFUSED,
                format!("cannot publish to internal exchange '{exchange}' in vhost '/'"),
            ));
        }
    }
    let mut chans = conn.channels.borrow_mut();
    let chan = chans.get_mut(&ch).expect("the channel is open");
    let seq = chan.confirm.as_mut().map(Confirms::take_seq);
    chan.content = Some(Content {
        exchange: exchange.to_string(),
        routing_key: p.routing_key.to_string(),
        mandatory: p.mandatory,
        seq,
        header: None,
        body: None,
        discard_remaining: None,
        reserved: None,
    });
    Ok(())
}

/// A content header frame for `ch`.
pub async fn on_header(conn: &Rc<Conn>, ch: u16, payload: Bytes) -> Result<(), AmqpError> {
    let header = parse_content_header(&payload).map_err(|e| err(e.reply_code(), e.to_string()))?;
    let max = conn.broker.config.max_message_bytes as u64;
    let complete = {
        let mut chans = conn.channels.borrow_mut();
        let chan = chans.get_mut(&ch).expect("checked by the caller");
        let Some(content) = chan.content.as_mut().filter(|c| c.header.is_none()) else {
            return Err(err(codes::UNEXPECTED_FRAME, format!("content header on channel {ch} without basic.publish")));
        };
        if header.body_size > max {
            // The body frames still come: they are read and dropped.
            content.discard_remaining = Some(header.body_size);
            content.header = Some(header.clone());
            return Err(err(
                codes::PRECONDITION_FAILED,
                format!("message size {} is larger than configured max size {max}", header.body_size),
            ));
        }
        // A refused publish: its body frames are read and dropped.
        let refuse = |content: &mut Content, text: String| {
            content.discard_remaining = Some(header.body_size);
            content.header = Some(header.clone());
            AmqpError { class_id: CLASS_BASIC, method_id: BASIC_PUBLISH, ..err(codes::PRECONDITION_FAILED, text) }
        };
        if let Some(user) = header.properties.user_id().as_ref().filter(|u| u.as_str() != super::session::USER) {
            // Validated as RabbitMQ does: consumers may trust user-id.
            let text = format!(
                "user_id property set to '{}' but authenticated user was '{}'",
                user.as_str(),
                super::session::USER
            );
            return Err(refuse(content, text));
        }
        let published_ms = crate::storage::now_ms();
        // `expiration`: milliseconds as a decimal string (RabbitMQ's rule).
        let expires_at_ms = match header.properties.expiration().as_ref().map(|e| e.as_str()) {
            None => 0,
            Some(text) => match text.parse::<u32>() {
                Ok(ms) => published_ms + i64::from(ms),
                Err(_) => return Err(refuse(content, format!("invalid expiration '{text}' for message"))),
            },
        };
        let budget = super::connection::receiving_bytes_max(conn.broker.config.max_message_bytes);
        let Some(reserved) = Reservation::take(&conn.receiving_bytes, header.body_size as usize, budget) else {
            return Err(err(
                codes::RESOURCE_ERROR,
                format!("messages being received on this connection would exceed {budget} bytes"),
            ));
        };
        content.reserved = Some(reserved);
        let meta = MessageMeta {
            persistent: header.properties.delivery_mode() == &Some(2),
            priority: header.properties.priority().unwrap_or(0),
            expires_at_ms,
            due_at_ms: 0,
            published_ms,
        };
        let body = PendingBody::new(
            &content.exchange,
            &content.routing_key,
            &header.properties_raw,
            meta,
            header.body_size as usize,
        );
        content.body = Some(body);
        content.header = Some(header);
        content.body.as_ref().is_some_and(|b| b.remaining() == 0)
    };
    if complete {
        finish_content(conn, ch).await?;
    }
    Ok(())
}

/// A body frame of `size` bytes for `ch`, read from `src` into the message.
pub async fn on_body<R: AsyncRead + Unpin>(
    conn: &Rc<Conn>,
    ch: u16,
    size: usize,
    src: &mut FrameSource<R>,
) -> Result<(), Fault> {
    match take_body_for_frame(conn, ch, size)? {
        BodyTarget::Discard { last } => {
            within(conn, src.skip(size)).await??;
            if last {
                if let Some(c) = conn.channels.borrow_mut().get_mut(&ch) {
                    c.content = None;
                }
            }
            Ok(())
        }
        BodyTarget::Fill(mut body) => {
            // The body goes straight into the batch it is stored as; the
            // batch is out of the channel meanwhile (no borrow across the
            // read). Only this connection's reader touches a channel's content.
            within(conn, src.read_into(body.space(size))).await??;
            body.advance(size);
            let complete = body.remaining() == 0;
            let back = {
                let mut chans = conn.channels.borrow_mut();
                let content = chans.get_mut(&ch).and_then(|c| c.content.as_mut());
                content.map(|content| content.body = Some(body)).is_some()
            };
            // The channel may have closed meanwhile: the message goes with it.
            if back && complete {
                finish_content(conn, ch).await?;
            }
            Ok(())
        }
    }
}

/// A read of the rest of a frame whose head arrived, bounded by
/// `--frame-timeout-ms`: a peer that stops mid-frame is dropped.
pub async fn within<T>(conn: &Conn, read: impl std::future::Future<Output = T>) -> std::io::Result<T> {
    let limit = conn.broker.shard.config.frame_timeout;
    task::timeout(limit, read).await.ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::TimedOut, format!("frame not received whole within {limit:?}"))
    })
}

/// Where a body frame's bytes go.
enum BodyTarget {
    /// The message was refused: dropped (`last`: its final bytes).
    Discard { last: bool },
    /// Into the message's batch, taken out of the channel while it is read.
    Fill(PendingBody),
}

/// Checks a body frame of `size` bytes against the message being received on
/// `ch` and says where its bytes go.
fn take_body_for_frame(conn: &Conn, ch: u16, size: usize) -> Result<BodyTarget, Fault> {
    let mut chans = conn.channels.borrow_mut();
    let chan = chans.get_mut(&ch).expect("checked by the caller");
    let Some(content) = chan.content.as_mut().filter(|c| c.header.is_some()) else {
        return Err(err(codes::UNEXPECTED_FRAME, format!("content body on channel {ch} without a header")).into());
    };
    if let Some(left) = content.discard_remaining.as_mut() {
        *left = left.saturating_sub(size as u64);
        return Ok(BodyTarget::Discard { last: *left == 0 });
    }
    let Some(body) = content.body.take() else {
        return Err(err(codes::UNEXPECTED_FRAME, "content body without a header").into());
    };
    if size > body.remaining() {
        let announced = body.remaining();
        content.body = Some(body);
        return Err(
            err(codes::FRAME_ERROR, format!("body frame of {size} bytes exceeds the {announced} announced")).into()
        );
    }
    Ok(BodyTarget::Fill(body))
}

/// A whole message arrived: publish it, or hold it in the transaction.
async fn finish_content(conn: &Rc<Conn>, ch: u16) -> Result<(), AmqpError> {
    let ready = {
        let mut chans = conn.channels.borrow_mut();
        let chan = chans.get_mut(&ch).expect("the channel is open");
        let content = chan.content.take().expect("a complete message");
        let header = content.header.expect("a complete message has its header");
        let batch = content.body.expect("a complete message has its body").finish();
        let ready = ReadyMessage {
            exchange: content.exchange,
            routing_key: content.routing_key,
            mandatory: content.mandatory,
            seq: content.seq,
            header,
            batch,
        };
        if let Some(tx) = chan.tx.as_mut() {
            let bytes_max = tx_bytes_max(conn.broker.config.max_message_bytes);
            if tx.publishes.len() >= TX_PUBLISHES_MAX || tx.bytes + ready.batch.len() > bytes_max {
                return Err(err(
                    codes::PRECONDITION_FAILED,
                    format!("a transaction holds at most {TX_PUBLISHES_MAX} messages and {bytes_max} bytes"),
                ));
            }
            tx.bytes += ready.batch.len();
            tx.publishes.push(ready);
            return Ok(());
        }
        ready
    };
    wait_while_blocked(conn).await;
    let permit = conn.publish_slots.acquire(publish_cost_kib(ready.batch.len())).await;
    let c = conn.clone();
    task::spawn(async move {
        let _permit = permit;
        publish(&c, ch, ready).await;
    });
    Ok(())
}

/// A publish's share of the connection's publish budget, in KiB (at least 1,
/// at most the whole budget).
fn publish_cost_kib(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(1024).clamp(1, super::connection::PUBLISH_BUDGET_KIB)
}

/// Message bytes a transaction may hold, at most.
fn tx_bytes_max(max_message_bytes: usize) -> usize {
    (64 << 20).max(2 * max_message_bytes)
}

/// Holds publishes while the data disk is nearly full (connection.blocked).
async fn wait_while_blocked(conn: &Rc<Conn>) {
    if !conn.broker.disk_alarm.get() {
        return;
    }
    conn.sync_blocked().await;
    while conn.broker.disk_alarm.get() && !conn.dead.get() {
        task::sleep(Duration::from_millis(200)).await;
    }
    conn.sync_blocked().await;
}

/// Routes a message and stores it at every queue it reaches; confirms it
/// (in order with the channel's other publishes) when in confirm mode.
/// Returns whether every queue took it.
async fn publish(conn: &Rc<Conn>, ch: u16, msg: ReadyMessage) -> bool {
    let started = Instant::now();
    let queues = {
        let defs = conn.broker.definitions();
        defs.route(&msg.exchange, &msg.routing_key, msg.header.properties.headers().as_ref()).unwrap_or_default()
    };
    let persistent = msg.header.properties.delivery_mode() == &Some(2);
    let ok = if queues.is_empty() {
        if msg.mandatory {
            send_return(conn, ch, &msg).await;
        }
        true
    } else {
        let key = super::queue::dedup::key_of(&msg.header.properties);
        conn.broker.store_everywhere(queues, msg.batch, persistent, key).await
    };
    if let Some(seq) = msg.seq {
        confirm(conn, ch, seq, ok).await;
        conn.broker.counters.publish_confirm_latency_us.borrow_mut().record(started.elapsed().as_micros() as u64);
    }
    ok
}

async fn send_return(conn: &Rc<Conn>, ch: u16, msg: &ReadyMessage) {
    let ret = AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
        reply_code: codes::NO_ROUTE,
        reply_text: short("NO_ROUTE"),
        exchange: short(&msg.exchange),
        routing_key: short(&msg.routing_key),
    }));
    let batch = Bytes::copy_from_slice(&msg.batch);
    let Ok(stored) = StoredMessage::parse(&batch) else { return };
    let mut frames = vec![method_frame(ch, &ret)];
    header_frame(ch, stored.body.len() as u64, &msg.header.properties_raw, &mut frames);
    body_frames(ch, &stored.body, conn.tuned.frame_max, &mut frames);
    conn.send(frames).await;
}

/// Records publish `seq`'s outcome and sends the confirms now due, in order.
async fn confirm(conn: &Rc<Conn>, ch: u16, seq: u64, ok: bool) {
    let _turn = conn.confirm_turn.acquire(1).await;
    let frames: Vec<Bytes> = {
        let mut chans = conn.channels.borrow_mut();
        let Some(confirms) = chans.get_mut(&ch).and_then(|c| c.confirm.as_mut()) else { return };
        confirms
            .complete(seq, ok)
            .into_iter()
            .map(|f| match f {
                ConfirmFrame::Ack { tag, multiple } => method_frame(
                    ch,
                    &AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack { delivery_tag: tag, multiple })),
                ),
                ConfirmFrame::Nack { tag } => method_frame(
                    ch,
                    &AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack {
                        delivery_tag: tag,
                        multiple: false,
                        requeue: false,
                    })),
                ),
            })
            .collect()
    };
    if !frames.is_empty() {
        conn.send(frames).await;
    }
}

// ---- transactions ----

async fn on_tx(conn: &Rc<Conn>, ch: u16, m: &tx::AMQPMethod) -> Result<(), AmqpError> {
    match m {
        tx::AMQPMethod::Select(_) => {
            {
                let mut chans = conn.channels.borrow_mut();
                let chan = chans.get_mut(&ch).expect("the channel is open");
                if chan.confirm.is_some() {
                    return Err(err(codes::PRECONDITION_FAILED, "cannot switch from confirm to tx mode"));
                }
                if chan.tx.is_none() {
                    chan.tx = Some(Tx::default());
                }
            }
            conn.send_method(ch, AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {}))).await;
            Ok(())
        }
        tx::AMQPMethod::Commit(_) => {
            let held = {
                let mut chans = conn.channels.borrow_mut();
                let chan = chans.get_mut(&ch).expect("the channel is open");
                let Some(tx) = chan.tx.as_mut() else {
                    return Err(err(codes::PRECONDITION_FAILED, "channel is not transactional"));
                };
                std::mem::take(tx)
            };
            wait_while_blocked(conn).await;
            // Messages in order, each stored everywhere (durably when
            // persistent) before the commit is answered; a queue refusing
            // one fails the commit (as RabbitMQ: acks are still applied).
            let mut stored_all = true;
            for msg in held.publishes {
                stored_all &= publish(conn, ch, msg).await;
            }
            for s in held.settles {
                apply_settle(conn, ch, s).await?;
            }
            if !stored_all {
                return Err(err(codes::PRECONDITION_FAILED, "partial tx completion"));
            }
            conn.send_method(ch, AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {}))).await;
            Ok(())
        }
        tx::AMQPMethod::Rollback(_) => {
            {
                let mut chans = conn.channels.borrow_mut();
                let chan = chans.get_mut(&ch).expect("the channel is open");
                let Some(tx) = chan.tx.as_mut() else {
                    return Err(err(codes::PRECONDITION_FAILED, "channel is not transactional"));
                };
                *tx = Tx::default();
            }
            conn.send_method(ch, AMQPClass::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {}))).await;
            Ok(())
        }
        _ => Err(err(codes::COMMAND_INVALID, "unexpected tx method from a client")),
    }
}

/// channel.close from the client: release, answer close-ok, forget it.
pub async fn close_channel_by_client(conn: &Rc<Conn>, ch: u16) {
    let state = conn.channels.borrow_mut().remove(&ch).map(|mut c| take_channel_state(&mut c));
    if let Some(state) = state {
        conn.release(ch, state).await;
    }
    conn.send_method(ch, AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {}))).await;
}
