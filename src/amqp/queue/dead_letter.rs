//! A dead letter: the message a queue gives up on (rejected without requeue,
//! expired, pushed out by a length limit, returned too often), republished
//! to the queue's dead-letter exchange with RabbitMQ's `x-death` header:
//! an array of tables, newest first, one per (queue, reason), each with
//! `count`, `reason`, `queue`, `time`, `exchange`, `routing-keys` (and
//! `original-expiration` when the message had one), plus
//! `x-first-death-reason`, `x-first-death-queue` and
//! `x-first-death-exchange` set once. The expiration property is removed
//! (it would expire again at once), as RabbitMQ does.

use bytes::BytesMut;

use super::super::codec::{
    encode_properties, parse_properties, protocol::basic::AMQPProperties, AMQPValue, FieldTable, LongString,
};
use super::super::message::{MessageMeta, PendingBody, StoredMessage};
use super::options::DeadLetterTarget;

/// Why a message was dead-lettered, as `x-death`'s `reason` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Rejected,
    Expired,
    Maxlen,
    DeliveryLimit,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::Maxlen => "maxlen",
            Reason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// A dead letter ready to be routed: its batch and where it goes.
pub struct DeadLetter {
    pub exchange: String,
    pub routing_key: String,
    pub persistent: bool,
    /// Its headers (for a headers exchange), as stored in `batch`.
    pub headers: FieldTable,
    pub batch: BytesMut,
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

fn text_of(v: Option<&AMQPValue>) -> Option<String> {
    v.and_then(super::options::text)
}

/// The message's properties without `expiration` (setters only add).
fn without_expiration(p: &AMQPProperties) -> AMQPProperties {
    let mut out = AMQPProperties::default();
    macro_rules! keep {
        ($get:ident, $set:ident) => {
            if let Some(v) = p.$get() {
                out = out.$set(v.clone());
            }
        };
    }
    keep!(content_type, with_content_type);
    keep!(content_encoding, with_content_encoding);
    keep!(headers, with_headers);
    keep!(delivery_mode, with_delivery_mode);
    keep!(priority, with_priority);
    keep!(correlation_id, with_correlation_id);
    keep!(reply_to, with_reply_to);
    keep!(message_id, with_message_id);
    keep!(timestamp, with_timestamp);
    keep!(kind, with_type);
    keep!(user_id, with_user_id);
    keep!(app_id, with_app_id);
    keep!(cluster_id, with_cluster_id);
    out
}

/// The headers with this death recorded: the (queue, reason) entry of
/// `x-death` counted up and moved first, or a new one first.
fn record_death(
    headers: &mut FieldTable,
    msg: &StoredMessage,
    queue: &str,
    reason: Reason,
    expiration: Option<&str>,
    now_s: u64,
) {
    let mut deaths: Vec<AMQPValue> = match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
        _ => Vec::new(),
    };
    let same = |t: &FieldTable| {
        text_of(t.inner().get("queue")).as_deref() == Some(queue)
            && text_of(t.inner().get("reason")).as_deref() == Some(reason.as_str())
    };
    let found = deaths.iter().position(|d| matches!(d, AMQPValue::FieldTable(t) if same(t)));
    let entry = match found.map(|i| deaths.remove(i)) {
        Some(AMQPValue::FieldTable(mut t)) => {
            let count = match t.inner().get("count") {
                Some(AMQPValue::LongLongInt(n)) => *n + 1,
                Some(AMQPValue::LongInt(n)) => i64::from(*n) + 1,
                _ => 1,
            };
            t.insert("count".into(), AMQPValue::LongLongInt(count));
            t.insert("time".into(), AMQPValue::Timestamp(now_s));
            t
        }
        _ => {
            let mut t = FieldTable::default();
            t.insert("count".into(), AMQPValue::LongLongInt(1));
            t.insert("reason".into(), text(reason.as_str()));
            t.insert("queue".into(), text(queue));
            t.insert("time".into(), AMQPValue::Timestamp(now_s));
            t.insert("exchange".into(), text(msg.exchange_str()));
            t.insert("routing-keys".into(), AMQPValue::FieldArray(vec![text(msg.routing_key_str())].into()));
            if let Some(e) = expiration {
                t.insert("original-expiration".into(), text(e));
            }
            t
        }
    };
    deaths.insert(0, AMQPValue::FieldTable(entry));
    headers.insert("x-death".into(), AMQPValue::FieldArray(deaths.into()));
    for (key, value) in [
        ("x-first-death-reason", reason.as_str()),
        ("x-first-death-queue", queue),
        ("x-first-death-exchange", msg.exchange_str()),
    ] {
        if !headers.inner().contains_key(key) {
            headers.insert(key.into(), text(value));
        }
    }
}

/// Whether `msg` already died in `queue` for `reason`, with no rejection in
/// between: RabbitMQ drops such a message instead of dead-lettering it
/// again (a cycle that would never end without a consumer's decision).
pub fn is_cycle(msg: &StoredMessage, queue: &str, reason: Reason) -> bool {
    if reason == Reason::Rejected {
        return false;
    }
    let Ok(props) = parse_properties(&msg.properties) else { return false };
    let Some(AMQPValue::FieldArray(deaths)) = props.headers().as_ref().and_then(|h| h.inner().get("x-death").cloned())
    else {
        return false;
    };
    for d in deaths.as_slice() {
        let AMQPValue::FieldTable(t) = d else { continue };
        if text_of(t.inner().get("reason")).as_deref() == Some("rejected") {
            return false;
        }
        if text_of(t.inner().get("queue")).as_deref() == Some(queue) {
            return true;
        }
    }
    false
}

/// The dead letter of `msg`, leaving `queue` for `reason`, bound for
/// `target`; `None` when its properties cannot be read (it is dropped).
pub fn build(
    msg: &StoredMessage,
    queue: &str,
    reason: Reason,
    target: &DeadLetterTarget,
    now_ms: i64,
) -> Option<DeadLetter> {
    let props = parse_properties(&msg.properties).ok()?;
    let expiration = props.expiration().as_ref().map(|e| e.as_str().to_string());
    let mut headers = props.headers().clone().unwrap_or_default();
    record_death(&mut headers, msg, queue, reason, expiration.as_deref(), (now_ms.max(0) / 1000) as u64);
    let props = without_expiration(&props).with_headers(headers.clone());
    let raw = encode_properties(&props);
    let routing_key = target.routing_key.clone().unwrap_or_else(|| msg.routing_key_str().to_string());
    let meta = MessageMeta {
        persistent: msg.meta.persistent,
        priority: msg.meta.priority,
        expires_at_ms: 0,
        due_at_ms: 0,
        published_ms: now_ms,
    };
    let mut body = PendingBody::new(&target.exchange, &routing_key, &raw, meta, msg.body.len());
    body.space(msg.body.len()).copy_from_slice(&msg.body);
    body.advance(msg.body.len());
    Some(DeadLetter {
        exchange: target.exchange.clone(),
        routing_key,
        persistent: msg.meta.persistent,
        headers,
        batch: body.finish(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(props: &AMQPProperties, body: &[u8]) -> StoredMessage {
        let raw = encode_properties(props);
        let mut p =
            PendingBody::new("orders", "new", &raw, MessageMeta { persistent: true, ..Default::default() }, body.len());
        p.space(body.len()).copy_from_slice(body);
        p.advance(body.len());
        StoredMessage::parse(&p.finish().freeze()).expect("parse")
    }

    fn deaths(m: &StoredMessage) -> Vec<FieldTable> {
        let p = parse_properties(&m.properties).expect("props");
        match p.headers().as_ref().and_then(|h| h.inner().get("x-death").cloned()) {
            Some(AMQPValue::FieldArray(a)) => a
                .as_slice()
                .iter()
                .map(|v| match v {
                    AMQPValue::FieldTable(t) => t.clone(),
                    other => panic!("x-death entry {other:?}"),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    fn target(rk: Option<&str>) -> DeadLetterTarget {
        DeadLetterTarget { exchange: "dlx".into(), routing_key: rk.map(String::from) }
    }

    #[test]
    fn a_dead_letter_carries_x_death_and_loses_its_expiration() {
        let m = stored(&AMQPProperties::default().with_expiration("5000".into()), b"body");
        let dl = build(&m, "q1", Reason::Expired, &target(None), 1_700_000_000_000).expect("dead letter");
        assert_eq!((dl.exchange.as_str(), dl.routing_key.as_str()), ("dlx", "new"));
        let out = StoredMessage::parse(&dl.batch.freeze()).expect("parse");
        assert_eq!(&out.body[..], b"body");
        let props = parse_properties(&out.properties).expect("props");
        assert!(props.expiration().is_none());
        let d = deaths(&out);
        assert_eq!(d.len(), 1);
        assert_eq!(text_of(d[0].inner().get("reason")).as_deref(), Some("expired"));
        assert_eq!(text_of(d[0].inner().get("queue")).as_deref(), Some("q1"));
        assert_eq!(text_of(d[0].inner().get("original-expiration")).as_deref(), Some("5000"));
        assert_eq!(d[0].inner().get("count"), Some(&AMQPValue::LongLongInt(1)));
        let h = props.headers().clone().expect("headers");
        assert_eq!(text_of(h.inner().get("x-first-death-reason")).as_deref(), Some("expired"));
    }

    #[test]
    fn dying_again_in_the_same_queue_for_the_same_reason_counts_up() {
        let m = stored(&AMQPProperties::default(), b"x");
        let once =
            StoredMessage::parse(&build(&m, "q1", Reason::Rejected, &target(Some("rk")), 0).expect("1").batch.freeze())
                .expect("parse");
        let twice = StoredMessage::parse(
            &build(&once, "q1", Reason::Rejected, &target(Some("rk")), 0).expect("2").batch.freeze(),
        )
        .expect("parse");
        let d = deaths(&twice);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].inner().get("count"), Some(&AMQPValue::LongLongInt(2)));
        assert_eq!(twice.routing_key_str(), "rk");
    }

    #[test]
    fn expiring_twice_in_a_queue_without_a_rejection_is_a_cycle() {
        let m = stored(&AMQPProperties::default(), b"x");
        assert!(!is_cycle(&m, "q1", Reason::Expired));
        let once =
            StoredMessage::parse(&build(&m, "q1", Reason::Expired, &target(None), 0).expect("dl").batch.freeze())
                .expect("parse");
        assert!(is_cycle(&once, "q1", Reason::Expired));
        assert!(!is_cycle(&once, "q1", Reason::Rejected));
        assert!(!is_cycle(&once, "q2", Reason::Expired));
    }
}
