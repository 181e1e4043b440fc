//! Hostile and edge input on the AMQP port, written as raw frames on a TCP
//! socket (no client library): for each, the reply code the client sees (as
//! RabbitMQ answers it), that the broker still serves a fresh connection,
//! and that its process is alive at the end.

mod amqp_common;
mod common;

use std::time::{Duration, Instant};

use amq_protocol::protocol::{basic, connection, queue, AMQPClass};
use amq_protocol::types::FieldTable;
use amqp_common::assert_healthy;
use amqp_common::wire::*;
use common::*;

const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

fn broker() -> Broker {
    Broker::start(BrokerOpts::default())
}

/// A connection after its handshake (guest, vhost "/"), channel 1 open.
fn opened(addr: &str) -> Wire {
    let mut w = Wire::connect(addr);
    w.handshake("guest", "guest", "/", None).expect("handshake");
    w.open_channel(1);
    w
}

/// The broker still serves: a fresh connection declares, publishes and gets.
fn assert_serves(broker: &mut Broker) {
    assert_healthy(broker);
    let mut s = Session::open(&broker.amqp_addr());
    let q = unique_topic("still-serving");
    s.declare_queue(&q, false, false).expect("declare");
    s.publish("", &q, b"ping", false).expect("publish");
    let m = s.get(&q, true).expect("get").expect("the message published just before");
    assert_eq!(m.body, b"ping");
    s.close();
    assert_healthy(broker);
}

/// Waits for the broker's connection.close and checks its reply code, then
/// that the broker closes the socket.
fn expect_close_code(w: &mut Wire, code: u16) -> Closed {
    let c = w.expect_connection_close(CLOSE_TIMEOUT).unwrap_or_else(|e| panic!("no connection.close: {e:?}"));
    assert_eq!(c.code, code, "reply code: {c:?}");
    assert!(w.peer_closes_within(CLOSE_TIMEOUT), "the broker keeps the socket open after close-ok");
    c
}

fn method(ch: u16, m: AMQPClass) -> Vec<u8> {
    frame_bytes(FRAME_METHOD, ch, &method_payload(&m))
}

fn publish_method(ch: u16, routing_key: &str) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: "".into(),
            routing_key: routing_key.into(),
            mandatory: false,
            immediate: false,
        })),
    )
}

fn header(ch: u16, body_size: u64) -> Vec<u8> {
    frame_bytes(FRAME_HEADER, ch, &content_header_payload(body_size, &basic::AMQPProperties::default()))
}

#[test]
fn a_wrong_protocol_header_is_answered_with_amqp_0_9_1_and_closed() {
    let mut broker = broker();
    for wrong in [&b"AMQP\x00\x00\x08\x00"[..], b"AMQP\x01\x01\x00\x0a", b"GET / HTTP/1.1\r\n\r\n"] {
        let mut w = Wire::connect(&broker.amqp_addr());
        w.send_now(wrong);
        let answer = w.read_raw(8, CLOSE_TIMEOUT);
        assert_eq!(answer, PROTOCOL_HEADER, "answer to {wrong:?}");
        assert!(w.peer_closes_within(CLOSE_TIMEOUT), "the broker closes after its header ({wrong:?})");
    }
    assert_serves(&mut broker);
}

#[test]
fn garbage_instead_of_a_frame_closes_the_connection_with_501() {
    let mut broker = broker();
    let mut w = opened(&broker.amqp_addr());
    // 'A' is no frame type; the rest is noise.
    let mut garbage = b"A".to_vec();
    garbage.extend(random_bytes(7, 4095));
    w.send_now(&garbage);
    expect_close_code(&mut w, 501);
    assert_serves(&mut broker);
}

#[test]
fn a_frame_with_a_bad_end_byte_closes_the_connection_with_501() {
    let mut broker = broker();
    let mut w = opened(&broker.amqp_addr());
    let mut f = publish_method(1, "q");
    *f.last_mut().unwrap() = 0x00;
    w.send_now(&f);
    expect_close_code(&mut w, 501);
    assert_serves(&mut broker);
}

#[test]
fn a_frame_over_frame_max_closes_the_connection_with_501() {
    let mut broker = broker();
    let mut w = opened(&broker.amqp_addr());
    let size = w.frame_max; // with the 8 bytes of head and end, over frame_max
    let mut head = vec![FRAME_BODY];
    head.extend_from_slice(&1u16.to_be_bytes());
    head.extend_from_slice(&size.to_be_bytes());
    w.send_now(&head);
    expect_close_code(&mut w, 501);
    assert_serves(&mut broker);
}

#[test]
fn an_unknown_method_closes_the_connection_with_540() {
    let mut broker = broker();
    let mut w = opened(&broker.amqp_addr());
    // class basic (60), method 250: no such method.
    let payload = [0, 60, 0, 250];
    w.send_now(&frame_bytes(FRAME_METHOD, 1, &payload));
    expect_close_code(&mut w, 540);
    assert_serves(&mut broker);
}

#[test]
fn a_method_on_a_channel_never_opened_closes_the_connection_with_504() {
    let mut broker = broker();
    let mut w = opened(&broker.amqp_addr());
    w.send_now(&publish_method(7, "q"));
    expect_close_code(&mut w, 504);
    assert_serves(&mut broker);
}

#[test]
fn a_method_where_content_was_expected_closes_the_connection_with_505() {
    let mut broker = broker();
    let mut w = opened(&broker.amqp_addr());
    let mut bytes = publish_method(1, "q");
    bytes.extend(method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: "q".into(),
            passive: false,
            durable: false,
            exclusive: false,
            auto_delete: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    ));
    w.send_now(&bytes);
    expect_close_code(&mut w, 505);
    assert_serves(&mut broker);
}

#[test]
fn malformed_method_arguments_close_the_connection_with_502() {
    let mut broker = broker();
    let mut w = opened(&broker.amqp_addr());
    // queue.declare (50.10) whose queue name claims 200 bytes and has 3.
    let payload = [0, 50, 0, 10, 0, 0, 200, b'a', b'b', b'c'];
    w.send_now(&frame_bytes(FRAME_METHOD, 1, &payload));
    expect_close_code(&mut w, 502);
    assert_serves(&mut broker);
}

#[test]
fn a_body_larger_than_its_header_announced_closes_the_connection_with_501() {
    let mut broker = broker();
    let mut w = opened(&broker.amqp_addr());
    let mut bytes = publish_method(1, "q");
    bytes.extend(header(1, 10));
    bytes.extend(frame_bytes(FRAME_BODY, 1, &[7u8; 20]));
    w.send_now(&bytes);
    expect_close_code(&mut w, 501);
    assert_serves(&mut broker);
}

#[test]
fn a_client_silent_after_negotiating_heartbeat_1_is_closed_within_3_seconds() {
    let mut broker = broker();
    let mut w = Wire::connect(&broker.amqp_addr());
    w.handshake("guest", "guest", "/", Some(1)).expect("handshake");
    let started = Instant::now();
    // Read (and never answer) until the broker gives up on this connection.
    let closed = w.peer_closes_within(Duration::from_secs(10));
    let after = started.elapsed();
    assert!(closed, "a silent client with heartbeat=1 was still connected after 10 s");
    eprintln!("[heartbeat] silent client closed after {after:?}");
    assert!(after >= Duration::from_millis(1500), "closed after {after:?}: before two heartbeat intervals passed");
    assert!(after <= Duration::from_secs(4), "closed after {after:?}: two missed heartbeats are ~2-3 s");
    assert_serves(&mut broker);
}

#[test]
fn bad_credentials_are_refused_with_403_access_refused() {
    let mut broker = broker();
    let mut w = Wire::connect(&broker.amqp_addr());
    let refused = w.handshake("guest", "not-the-password", "/", None).expect_err("wrong password accepted");
    assert_eq!(refused.code, 403, "{refused:?}");
    assert!(refused.text.starts_with("ACCESS_REFUSED"), "{refused:?}");
    assert!(w.peer_closes_within(CLOSE_TIMEOUT));
    let mut w = Wire::connect(&broker.amqp_addr());
    let refused = w.handshake("nobody", "guest", "/", None).expect_err("unknown user accepted");
    assert_eq!(refused.code, 403, "{refused:?}");
    assert_serves(&mut broker);
}

#[test]
fn a_vhost_other_than_slash_is_refused_with_530_not_allowed() {
    let mut broker = broker();
    let mut w = Wire::connect(&broker.amqp_addr());
    let refused = w.handshake("guest", "guest", "other", None).expect_err("vhost 'other' accepted");
    assert_eq!(refused.code, 530, "{refused:?}");
    assert!(w.peer_closes_within(CLOSE_TIMEOUT));
    assert_serves(&mut broker);
}

#[test]
fn zero_length_bodies_are_stored_and_delivered() {
    let mut broker = broker();
    let mut s = Session::open(&broker.amqp_addr());
    s.declare_queue("empty-bodies", false, false).unwrap();
    s.confirm_select();
    for _ in 0..3 {
        s.publish("", "empty-bodies", b"", true).unwrap();
    }
    s.wait_confirms(Duration::from_secs(30)).unwrap();
    let got = s.get("empty-bodies", true).unwrap().expect("basic.get of an empty body");
    assert!(got.body.is_empty());
    s.consume("empty-bodies", true);
    for _ in 0..2 {
        let m = s.next_delivery(Duration::from_secs(30)).expect("delivery of an empty body");
        assert!(m.body.is_empty(), "{} bytes", m.body.len());
    }
    s.close();
    assert_serves(&mut broker);
}

#[test]
fn a_message_split_over_many_small_body_frames_is_delivered_whole() {
    let mut broker = broker();
    let mut w = opened(&broker.amqp_addr());
    let declare = queue::Declare {
        queue: "split".into(),
        passive: false,
        durable: false,
        exclusive: false,
        auto_delete: false,
        nowait: false,
        arguments: FieldTable::default(),
    };
    w.send_now(&method(1, AMQPClass::Queue(queue::AMQPMethod::Declare(declare))));
    w.expect_method("queue.declare-ok");
    let body = random_bytes(42, 100_000);
    let mut bytes = publish_method(1, "split");
    bytes.extend(header(1, body.len() as u64));
    for piece in body.chunks(97) {
        bytes.extend(frame_bytes(FRAME_BODY, 1, piece));
    }
    w.send_now(&bytes);
    w.close();
    let mut s = Session::open(&broker.amqp_addr());
    let got = s.get("split", true).unwrap().expect("the split message");
    assert_eq!(got.body.len(), body.len());
    assert!(got.body == body, "the body came back different");
    s.close();
    assert_serves(&mut broker);
}

#[test]
fn a_publish_sent_just_before_connection_close_is_not_lost() {
    let mut broker = broker();
    let mut s = Session::open(&broker.amqp_addr());
    s.declare_queue("last-words", false, false).unwrap();
    s.close();
    for i in 0..20u8 {
        let mut w = opened(&broker.amqp_addr());
        let mut bytes = publish_method(1, "last-words");
        bytes.extend(header(1, 1));
        bytes.extend(frame_bytes(FRAME_BODY, 1, &[i]));
        let close = connection::Close { reply_code: 200, reply_text: "bye".into(), class_id: 0, method_id: 0 };
        bytes.extend(method(0, AMQPClass::Connection(connection::AMQPMethod::Close(close))));
        w.send_now(&bytes);
        match w.expect_method("connection.close-ok") {
            (0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))) => {}
            other => panic!("expected connection.close-ok, got {other:?}"),
        }
    }
    let mut s = Session::open(&broker.amqp_addr());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < 20 && Instant::now() < deadline {
        match s.get("last-words", true).unwrap() {
            Some(m) => got.extend(m.body),
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    got.sort();
    assert_eq!(got, (0..20u8).collect::<Vec<_>>(), "every publish sent before connection.close is stored");
    s.close();
    assert_serves(&mut broker);
}

/// With less free disk than `--amqp-disk-free-min-bytes` (here: more than
/// any disk has), a publisher that announced the capability gets
/// connection.blocked and its message is not stored meanwhile; other
/// connections keep working.
#[test]
fn a_nearly_full_disk_blocks_publishers_with_connection_blocked() {
    let mut broker = Broker::start(BrokerOpts::default().arg("--amqp-disk-free-min-bytes").arg(&u64::MAX.to_string()));
    let q = unique_topic("blocked");
    let mut admin = Session::open(&broker.amqp_addr());
    admin.declare_queue(&q, false, false).expect("declare");
    let mut w = opened(&broker.amqp_addr());
    let publish = AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
        exchange: "".into(),
        routing_key: q.as_str().into(),
        mandatory: false,
        immediate: false,
    }));
    w.send_method(1, &publish).expect("publish");
    let props = basic::AMQPProperties::default();
    w.send_frame(FRAME_HEADER, 1, &content_header_payload(4, &props)).expect("header");
    w.send_frame(FRAME_BODY, 1, b"held").expect("body");
    w.flush().expect("flush");
    // The notification may already have come with the handshake.
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    while w.blocked != Some(true) {
        match w.next_method(deadline.saturating_duration_since(Instant::now())) {
            Ok((0, AMQPClass::Connection(connection::AMQPMethod::Blocked(b)))) => {
                assert!(b.reason.as_str().contains("disk"), "reason: {}", b.reason);
                w.blocked = Some(true);
            }
            Ok(_) => continue,
            Err(e) => panic!("no connection.blocked: {e:?}"),
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let count = admin.declare_queue_passive(&q).expect("passive declare").message_count;
    assert_eq!(count, 0, "a blocked publisher's message is not stored");
    assert_healthy(&mut broker);
}
