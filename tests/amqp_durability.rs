//! Durable AMQP queues against `kill -9`: persistent messages published
//! with confirms while the broker is SIGKILLed, what comes back after each
//! restart (every confirmed message, once, in order; acknowledged ones
//! never; unacknowledged ones flagged redelivered), which definitions
//! survive a restart, and how fast a broker with a large backlog starts.
//!
//! The client is `amqp_common::wire`, a small AMQP client on a plain socket,
//! so that the test sees every confirm and delivery exactly as sent.

mod amqp_common;
mod common;

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use amqp_common::assert_healthy;
use amqp_common::wire::{Message, Session, WireError};
use common::*;

/// Confirms each round waits for before the kill.
const CONFIRMS_PER_ROUND: u64 = 3000;
/// Unconfirmed publishes in flight, at most.
const WINDOW: u64 = 256;

fn broker() -> Broker {
    Broker::start(BrokerOpts::default().arg("--cores").arg("2"))
}

/// A message body: its id (8 bytes, big-endian) and some filler.
fn body(id: u64) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    b.extend_from_slice(&random_bytes(id, 56));
    b
}

fn id_of(m: &Message) -> u64 {
    assert_eq!(m.body.len(), 64, "body of {} bytes", m.body.len());
    let id = u64::from_be_bytes(m.body[..8].try_into().unwrap());
    assert_eq!(m.body, body(id), "body of message {id} changed");
    assert_eq!(m.properties.delivery_mode(), &Some(2), "message {id} lost its delivery mode");
    id
}

/// Publishes ids `first..` to `queue` with confirms until the connection
/// fails (the broker is killed); `confirmed` counts the ids confirmed so far.
fn publish_until_killed(addr: String, queue: &'static str, first: u64, confirmed: Arc<AtomicU64>) -> u64 {
    let mut s = Session::open(&addr);
    s.confirm_select();
    let mut next = first;
    let mut acked_seqs = 0u64;
    loop {
        let seq = match s.publish("", queue, &body(next), true) {
            Ok(seq) => seq,
            Err(_) => return next,
        };
        assert_eq!(seq, next - first + 1, "confirm sequence numbers follow the publishes");
        next += 1;
        while seq - acked_seqs >= WINDOW {
            match s.wait_confirms(Duration::from_secs(30)) {
                Ok(upto) => {
                    acked_seqs = upto;
                    confirmed.store(first + upto, Ordering::SeqCst);
                }
                Err(WireError::Timeout) => panic!("no confirm within 30 s while the broker runs"),
                Err(_) => return next,
            }
        }
    }
}

/// Reads every message of `queue` (consumer, manual ack, nothing acked) and
/// returns them in delivery order.
fn read_all_unacked(s: &mut Session, queue: &str) -> Vec<Message> {
    let count = s.declare_queue_passive(queue).expect("the durable queue exists").message_count as usize;
    s.qos(0);
    s.consume(queue, false);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        match s.next_delivery(Duration::from_secs(30)) {
            Some(m) => out.push(m),
            None => panic!("{} of {count} messages delivered within 30 s", out.len()),
        }
    }
    assert!(s.next_delivery(Duration::from_millis(300)).is_none(), "more messages than queue.declare-ok counted");
    out
}

/// What the test knows about every id so far.
#[derive(Default)]
struct Ledger {
    /// Ids confirmed, one range per round (each round's publisher starts past
    /// every id published before, confirmed or not).
    confirmed: Vec<Range<u64>>,
    /// Acknowledged (never to come back).
    acked: BTreeSet<u64>,
    /// Delivered and not acknowledged: must come back, redelivered.
    delivered: BTreeSet<u64>,
}

impl Ledger {
    /// Checks one full read of the queue after a restart.
    fn check(&self, msgs: &[Message], round: usize) -> Vec<u64> {
        let ids: Vec<u64> = msgs.iter().map(id_of).collect();
        for w in ids.windows(2) {
            assert!(w[0] < w[1], "round {round}: message {} came after {} (out of order or twice)", w[1], w[0]);
        }
        let present: BTreeSet<u64> = ids.iter().copied().collect();
        let back: Vec<&u64> = present.intersection(&self.acked).collect();
        assert!(back.is_empty(), "round {round}: acknowledged messages came back: {back:?}");
        let missing: Vec<u64> = self
            .confirmed
            .iter()
            .flat_map(|r| r.clone())
            .filter(|id| !self.acked.contains(id) && !present.contains(id))
            .collect();
        assert!(missing.is_empty(), "round {round}: {} confirmed messages are missing: {missing:?}", missing.len());
        let lost: Vec<&u64> = self.delivered.difference(&present).collect();
        assert!(lost.is_empty(), "round {round}: delivered, unacknowledged messages are missing: {lost:?}");
        for m in msgs {
            let id = id_of(m);
            assert!(
                !self.delivered.contains(&id) || m.redelivered,
                "round {round}: message {id} was delivered before the kill and came back with redelivered=false"
            );
        }
        ids
    }
}

#[test]
fn through_repeated_sigkills_confirmed_messages_stay_once_in_order_acked_never_return_unacked_return_redelivered() {
    const QUEUE: &str = "kill-queue";
    let mut broker = broker();
    let addr = broker.amqp_addr();
    let mut s = Session::open(&addr);
    s.declare_queue(QUEUE, true, false).expect("declare the durable queue");
    s.close();
    let mut ledger = Ledger::default();
    let mut next_id = 0u64;
    for round in 1..=4 {
        // Publish with confirms; kill the broker while publishing goes on.
        let confirmed = Arc::new(AtomicU64::new(next_id));
        let publisher = {
            let (addr, confirmed) = (addr.clone(), confirmed.clone());
            thread::spawn(move || publish_until_killed(addr, QUEUE, next_id, confirmed))
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while confirmed.load(Ordering::SeqCst) < next_id + CONFIRMS_PER_ROUND {
            assert!(Instant::now() < deadline, "round {round}: too few confirms within 120 s");
            assert!(!publisher.is_finished(), "round {round}: the publisher stopped while the broker runs");
            thread::sleep(Duration::from_millis(5));
        }
        broker.kill9();
        let published_below = publisher.join().expect("publisher thread");
        let confirmed_below = confirmed.load(Ordering::SeqCst);
        ledger.confirmed.push(next_id..confirmed_below);
        next_id = published_below;
        let started = Instant::now();
        broker.restart();
        let restart_ms = started.elapsed().as_millis();
        // Everything confirmed is there, once, in order.
        let mut s = Session::open(&addr);
        let msgs = read_all_unacked(&mut s, QUEUE);
        let ids = ledger.check(&msgs, round);
        eprintln!(
            "[kill round {round}] confirmed below {confirmed_below}, published below {published_below}; \
             restart {restart_ms} ms; {} messages back, {} redelivered",
            ids.len(),
            msgs.iter().filter(|m| m.redelivered).count()
        );
        // Acknowledge the first half (one multiple ack); the rest go back to
        // the queue unacknowledged when this connection closes. (Acks are
        // journaled without the client waiting, as RabbitMQ's are: the next
        // round's publishing, thousands of confirmed writes, comes between
        // these acks and the next kill.)
        let half = ids.len() / 2;
        if half > 0 {
            s.ack(msgs[half - 1].delivery_tag, true);
        }
        // A round trip after the ack, so that it was read before the close.
        s.declare_queue_passive(QUEUE).expect("passive declare");
        s.close();
        ledger.acked.extend(&ids[..half]);
        ledger.delivered = ids[half..].iter().copied().collect();
    }
    // A clean restart at the end keeps the same promise.
    broker.restart();
    let mut s = Session::open(&addr);
    let msgs = read_all_unacked(&mut s, QUEUE);
    let ids = ledger.check(&msgs, 5);
    eprintln!("[after a clean restart] {} messages, {} acknowledged over the rounds", ids.len(), ledger.acked.len());
    s.close();
    assert_healthy(&mut broker);
}

#[test]
fn durable_exchanges_queues_and_bindings_survive_a_sigkill_transient_and_exclusive_ones_do_not() {
    let mut broker = broker();
    let addr = broker.amqp_addr();
    let mut s = Session::open(&addr);
    s.declare_exchange("durable-x", "topic", true, false).unwrap();
    s.declare_exchange("transient-x", "fanout", false, false).unwrap();
    s.declare_queue("durable-q", true, false).unwrap();
    s.declare_queue("transient-q", false, false).unwrap();
    s.declare_queue("durable-q-via-transient-x", true, false).unwrap();
    s.bind("durable-q", "durable-x", "a.*").unwrap();
    s.bind("transient-q", "durable-x", "a.*").unwrap();
    s.bind("durable-q-via-transient-x", "transient-x", "").unwrap();
    // An exclusive queue whose connection is still open at the kill.
    let mut owner = Session::open(&addr);
    owner.declare_queue("exclusive-q", false, true).unwrap();
    s.confirm_select();
    s.publish("durable-x", "a.before", b"before the kill", true).unwrap();
    s.wait_confirms(Duration::from_secs(30)).expect("confirm");

    broker.kill9();
    broker.restart();

    let mut s = Session::open(&addr);
    s.declare_exchange("durable-x", "topic", true, true).expect("the durable exchange is back");
    let e = s.declare_exchange("durable-x", "direct", true, false).unwrap_err();
    assert_eq!(e.code, 406, "the durable exchange kept its type (topic): {e:?}");
    let q = s.declare_queue_passive("durable-q").expect("the durable queue is back");
    assert_eq!(q.message_count, 1, "with its persistent message");
    for gone in ["transient-q", "exclusive-q"] {
        let e = s.declare_queue_passive(gone).unwrap_err();
        assert_eq!(e.code, 404, "queue {gone} must be gone after a restart: {e:?}");
    }
    let e = s.declare_exchange("transient-x", "fanout", false, true).unwrap_err();
    assert_eq!(e.code, 404, "the transient exchange must be gone after a restart: {e:?}");
    s.declare_queue_passive("durable-q-via-transient-x").expect("a durable queue stays though its exchange went");
    // The binding survived: a new publish routes to the durable queue.
    s.confirm_select();
    s.publish("durable-x", "a.after", b"after the kill", true).unwrap();
    s.publish("durable-x", "b.other", b"routed nowhere", true).unwrap();
    s.wait_confirms(Duration::from_secs(30)).expect("confirms");
    let mut bodies = Vec::new();
    while let Some(m) = s.get("durable-q", true).expect("basic.get") {
        bodies.push(String::from_utf8(m.body).unwrap());
    }
    assert_eq!(bodies, ["before the kill", "after the kill"]);
    s.close();
    assert_healthy(&mut broker);
}

#[test]
fn a_broker_with_a_large_backlog_restarts_quickly_and_every_message_is_there() {
    const QUEUE: &str = "backlog";
    const MESSAGES: u64 = 1_000_000;
    let mut broker = broker();
    let addr = broker.amqp_addr();
    let mut s = Session::open(&addr);
    s.declare_queue(QUEUE, true, false).unwrap();
    s.confirm_select();
    let started = Instant::now();
    s.publish_confirmed(QUEUE, (0..MESSAGES).map(body), 2048);
    let publish_s = started.elapsed().as_secs_f64();
    s.close();
    eprintln!("[backlog] {MESSAGES} persistent 64-byte messages published with confirms in {publish_s:.1} s");

    broker.kill9();
    let started = Instant::now();
    broker.restart();
    let ready_ms = started.elapsed().as_millis();
    let mut s = Session::open(&addr);
    let count = s.declare_queue_passive(QUEUE).expect("the queue is back").message_count;
    let first_ms = started.elapsed().as_millis();
    eprintln!("[backlog] restart after SIGKILL: ready line in {ready_ms} ms, queue counted {count} at {first_ms} ms");
    assert_eq!(count as u64, MESSAGES);
    assert!(ready_ms < 60_000, "restart took {ready_ms} ms");
    // Every message, in order, read with a no-ack consumer.
    s.consume(QUEUE, true);
    let started = Instant::now();
    for expected in 0..MESSAGES {
        let m = s.next_delivery(Duration::from_secs(30)).unwrap_or_else(|| panic!("message {expected} missing"));
        assert_eq!(id_of(&m), expected, "messages come back in order");
    }
    assert!(s.next_delivery(Duration::from_millis(300)).is_none(), "more messages than were published");
    eprintln!("[backlog] all {MESSAGES} read back in {:.1} s", started.elapsed().as_secs_f64());
    s.close();
    assert_healthy(&mut broker);
}
