//! What a queue's declare arguments ask of it (RabbitMQ's names):
//! `x-max-priority`, `x-message-ttl`, `x-expires`, `x-dead-letter-exchange`,
//! `x-dead-letter-routing-key`, `x-max-length`, `x-max-length-bytes`,
//! `x-overflow`, `x-delivery-limit`, and de-duplication
//! (`x-message-deduplication`, `x-cache-size`, `x-cache-ttl`). Parsed and
//! checked once, at declare, with the words RabbitMQ uses for a bad value.

use super::super::codec::{AMQPValue, FieldTable};

/// What happens to a publish that would pass a length limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// The oldest ready messages go (dead-lettered when configured).
    #[default]
    DropHead,
    /// The new message is refused (basic.nack to a confirming publisher).
    RejectPublish,
    /// The new message is refused and dead-lettered.
    RejectPublishDlx,
}

/// Where dead letters go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterTarget {
    pub exchange: String,
    /// `None`: the message's own routing key.
    pub routing_key: Option<String>,
}

/// De-duplication of published messages by a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dedup {
    /// Keys remembered at most (the oldest forgotten first).
    pub cache_size: u32,
    /// How long a key is remembered, in ms (`None`: until pushed out).
    pub ttl_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueOptions {
    /// Priorities 0..=max (a message's priority is capped to it).
    pub max_priority: Option<u8>,
    pub message_ttl_ms: Option<u64>,
    pub expires_ms: Option<u64>,
    pub dead_letter: Option<DeadLetterTarget>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    pub delivery_limit: Option<u32>,
    pub dedup: Option<Dedup>,
}

/// A refused argument: the reply text (406 PRECONDITION_FAILED).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid arg '{key}' for queue '{queue}' in vhost '/': {why}")]
pub struct BadArgument {
    pub key: &'static str,
    pub queue: String,
    pub why: String,
}

/// An integer argument of any AMQP integer type (clients pick the width).
fn integer(v: &AMQPValue) -> Option<i128> {
    Some(match v {
        AMQPValue::ShortShortInt(x) => i128::from(*x),
        AMQPValue::ShortShortUInt(x) => i128::from(*x),
        AMQPValue::ShortInt(x) => i128::from(*x),
        AMQPValue::ShortUInt(x) => i128::from(*x),
        AMQPValue::LongInt(x) => i128::from(*x),
        AMQPValue::LongUInt(x) => i128::from(*x),
        AMQPValue::LongLongInt(x) => i128::from(*x),
        AMQPValue::Timestamp(x) => i128::from(*x),
        _ => return None,
    })
}

/// A string argument, short or long.
pub fn text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

fn boolean(v: &AMQPValue) -> Option<bool> {
    match v {
        AMQPValue::Boolean(b) => Some(*b),
        other => text(other).and_then(|t| match t.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }),
    }
}

impl QueueOptions {
    /// The options `arguments` ask for, or the first bad one.
    pub fn parse(queue: &str, arguments: &FieldTable) -> Result<QueueOptions, BadArgument> {
        let args = arguments.inner();
        let bad = |key: &'static str, why: &str| BadArgument { key, queue: queue.to_string(), why: why.to_string() };
        let int_in = |key: &'static str, lo: i128, hi: i128| -> Result<Option<i128>, BadArgument> {
            match args.get(key) {
                None => Ok(None),
                Some(v) => match integer(v) {
                    Some(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
                    Some(n) => Err(bad(key, &format!("{n} is outside {lo}..{hi}"))),
                    None => Err(bad(key, "not an integer")),
                },
            }
        };
        let mut o = QueueOptions {
            // 0: no priorities (RabbitMQ accepts it).
            max_priority: int_in("x-max-priority", 0, 255)?.filter(|n| *n > 0).map(|n| n as u8),
            message_ttl_ms: int_in("x-message-ttl", 0, i128::from(u32::MAX))?.map(|n| n as u64),
            expires_ms: int_in("x-expires", 1, i128::from(u32::MAX))?.map(|n| n as u64),
            max_length: int_in("x-max-length", 0, i128::from(i64::MAX))?.map(|n| n as u64),
            max_length_bytes: int_in("x-max-length-bytes", 0, i128::from(i64::MAX))?.map(|n| n as u64),
            delivery_limit: int_in("x-delivery-limit", 0, i128::from(u32::MAX))?.map(|n| n as u32),
            ..QueueOptions::default()
        };
        if let Some(v) = args.get("x-overflow") {
            o.overflow = match text(v).as_deref() {
                Some("drop-head") => Overflow::DropHead,
                Some("reject-publish") => Overflow::RejectPublish,
                Some("reject-publish-dlx") => Overflow::RejectPublishDlx,
                _ => return Err(bad("x-overflow", "not one of drop-head, reject-publish, reject-publish-dlx")),
            };
        }
        let routing_key = match args.get("x-dead-letter-routing-key") {
            None => None,
            Some(v) => Some(text(v).ok_or_else(|| bad("x-dead-letter-routing-key", "not a string"))?),
        };
        match args.get("x-dead-letter-exchange") {
            None if routing_key.is_some() => {
                return Err(bad("x-dead-letter-routing-key", "x-dead-letter-exchange is not set"));
            }
            None => {}
            Some(v) => {
                let exchange = text(v).ok_or_else(|| bad("x-dead-letter-exchange", "not a string"))?;
                o.dead_letter = Some(DeadLetterTarget { exchange, routing_key });
            }
        }
        if let Some(v) = args.get("x-message-deduplication") {
            if boolean(v).ok_or_else(|| bad("x-message-deduplication", "not a boolean"))? {
                let cache_size = int_in("x-cache-size", 1, i128::from(u32::MAX))?
                    .ok_or_else(|| bad("x-cache-size", "x-message-deduplication needs it"))?;
                let ttl_ms = int_in("x-cache-ttl", 1, i128::from(u32::MAX))?.map(|n| n as u64);
                o.dedup = Some(Dedup { cache_size: cache_size as u32, ttl_ms });
            }
        }
        Ok(o)
    }

    /// The priority a message with `priority` gets here (0 without priorities).
    pub fn priority_of(&self, priority: u8) -> u8 {
        self.max_priority.map_or(0, |max| priority.min(max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amqp::codec::LongString;

    fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in entries {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    #[test]
    fn integers_of_any_width_are_taken() {
        let o = QueueOptions::parse(
            "q",
            &table(&[
                ("x-max-priority", AMQPValue::ShortShortUInt(10)),
                ("x-message-ttl", AMQPValue::LongLongInt(60_000)),
                ("x-max-length", AMQPValue::LongInt(5)),
            ]),
        )
        .expect("valid");
        assert_eq!((o.max_priority, o.message_ttl_ms, o.max_length), (Some(10), Some(60_000), Some(5)));
        assert_eq!(o.priority_of(200), 10);
        assert_eq!(o.overflow, Overflow::DropHead);
    }

    #[test]
    fn out_of_range_and_wrong_types_are_refused_with_the_argument_named() {
        let e = QueueOptions::parse("q", &table(&[("x-max-priority", AMQPValue::LongInt(256))])).unwrap_err();
        assert_eq!(e.key, "x-max-priority");
        let e = QueueOptions::parse("q", &table(&[("x-message-ttl", AMQPValue::LongString(LongString::from("1")))]))
            .unwrap_err();
        assert_eq!(e.key, "x-message-ttl");
        let e = QueueOptions::parse("q", &table(&[("x-overflow", AMQPValue::LongString(LongString::from("nope")))]))
            .unwrap_err();
        assert_eq!(e.key, "x-overflow");
    }

    #[test]
    fn a_dead_letter_routing_key_needs_an_exchange() {
        let rk = AMQPValue::LongString(LongString::from("rk"));
        assert!(QueueOptions::parse("q", &table(&[("x-dead-letter-routing-key", rk.clone())])).is_err());
        let o = QueueOptions::parse(
            "q",
            &table(&[
                ("x-dead-letter-exchange", AMQPValue::LongString(LongString::from("dlx"))),
                ("x-dead-letter-routing-key", rk),
            ]),
        )
        .expect("valid");
        assert_eq!(o.dead_letter, Some(DeadLetterTarget { exchange: "dlx".into(), routing_key: Some("rk".into()) }));
    }

    #[test]
    fn deduplication_needs_a_cache_size() {
        let on = AMQPValue::Boolean(true);
        assert!(QueueOptions::parse("q", &table(&[("x-message-deduplication", on.clone())])).is_err());
        let o = QueueOptions::parse(
            "q",
            &table(&[("x-message-deduplication", on), ("x-cache-size", AMQPValue::LongInt(100))]),
        )
        .expect("valid");
        assert_eq!(o.dedup, Some(Dedup { cache_size: 100, ttl_ms: None }));
    }
}
