//! The queues, exchange and bindings a run needs, on a setup connection
//! before anything is published: declared with `--declare` (durable unless
//! `--durable false`, `x-queue-type`, `x-max-priority`; a direct exchange,
//! or the fanout's exchange bound to every queue), otherwise checked with
//! passive declares so that a missing queue fails the run at once with its
//! name instead of as silently dropped messages.

use amq_protocol::protocol::{exchange, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};

use super::config::AmqpConfig;
use super::conn::{short, Connection};
use crate::error::{AmqpError, Error};

/// Sets up (or checks) the run's queues and exchange; returns how many
/// messages the queues already held.
pub fn prepare(conn: &mut Connection, cfg: &AmqpConfig) -> Result<u64, Error> {
    if !cfg.exchange.is_empty() {
        let kind = if cfg.fanout > 0 { "fanout" } else { "direct" };
        declare_exchange(conn, cfg, kind)?;
    }
    let mut ready = 0u64;
    for q in &cfg.queues {
        ready += declare_queue(conn, cfg, q)?;
        if cfg.declare && !cfg.exchange.is_empty() {
            bind(conn, q, &cfg.exchange, &cfg.routing_key)?;
        }
    }
    Ok(ready)
}

/// A channel closed with 404 means the thing looked for is missing.
fn missing(e: AmqpError, kind: &'static str, name: &str, cfg: &AmqpConfig) -> Error {
    match e {
        AmqpError::ChannelClosed { code: 404, .. } => {
            Error::Missing { kind, name: name.to_string(), url: cfg.url.redacted() }
        }
        other => other.into(),
    }
}

fn declare_exchange(conn: &mut Connection, cfg: &AmqpConfig, kind: &str) -> Result<(), Error> {
    let name = &cfg.exchange;
    let m = exchange::Declare {
        exchange: short(name)?,
        kind: short(kind)?,
        passive: !cfg.declare,
        durable: cfg.durable,
        auto_delete: false,
        internal: false,
        nowait: false,
        arguments: FieldTable::default(),
    };
    let what = format!("declaring {kind} exchange '{name}'");
    match conn.call(AMQPClass::Exchange(exchange::AMQPMethod::Declare(m)), &what) {
        Ok(AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(_))) => Ok(()),
        Ok(other) => Err(unexpected(conn, "exchange.declare-ok", &other)),
        Err(e) => Err(missing(e, "exchange", name, cfg)),
    }
}

fn declare_queue(conn: &mut Connection, cfg: &AmqpConfig, name: &str) -> Result<u64, Error> {
    let mut arguments = FieldTable::default();
    if cfg.declare {
        if let Some(t) = cfg.queue_type {
            arguments.insert(ShortString::from("x-queue-type"), AMQPValue::LongString(LongString::from(t.name())));
        }
        if cfg.priority_max > 0 {
            arguments.insert(ShortString::from("x-max-priority"), AMQPValue::LongInt(i32::from(cfg.priority_max)));
        }
    }
    let m = queue::Declare {
        queue: short(name)?,
        passive: !cfg.declare,
        durable: cfg.durable,
        exclusive: false,
        auto_delete: false,
        nowait: false,
        arguments,
    };
    let what = if cfg.declare { format!("declaring queue '{name}'") } else { format!("looking up queue '{name}'") };
    match conn.call(AMQPClass::Queue(queue::AMQPMethod::Declare(m)), &what) {
        Ok(AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok))) => Ok(u64::from(ok.message_count)),
        Ok(other) => Err(unexpected(conn, "queue.declare-ok", &other)),
        Err(e) => Err(missing(e, "queue", name, cfg)),
    }
}

fn bind(conn: &mut Connection, queue_name: &str, exchange: &str, key: &str) -> Result<(), Error> {
    let m = queue::Bind {
        queue: short(queue_name)?,
        exchange: short(exchange)?,
        routing_key: short(key)?,
        nowait: false,
        arguments: FieldTable::default(),
    };
    let what = format!("binding queue '{queue_name}' to exchange '{exchange}'");
    match conn.call(AMQPClass::Queue(queue::AMQPMethod::Bind(m)), &what)? {
        AMQPClass::Queue(queue::AMQPMethod::BindOk(_)) => Ok(()),
        other => Err(unexpected(conn, "queue.bind-ok", &other)),
    }
}

fn unexpected(conn: &Connection, wanted: &str, got: &AMQPClass) -> Error {
    AmqpError::Protocol { addr: conn.addr().to_string(), detail: format!("expected {wanted}, got {got:?}") }.into()
}
