//! A small blocking AMQP 0-9-1 client on a plain `TcpStream`, written for
//! tests: every frame is under the test's control (`Wire`: raw frames,
//! methods, the handshake step by step), and `Session` adds the few
//! operations the durability tests need (declare, bind, publish with
//! confirms, consume, get, ack). Methods are encoded and decoded with the
//! `amq-protocol` codec; frames, content headers and bodies are built here.

use std::collections::VecDeque;
use std::io::{self, BufWriter, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use amq_protocol::protocol::{basic, channel, confirm, connection, exchange, gen_class, parse_class, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};

pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;
/// How long a test waits for an answer it expects, at most.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// One frame as read.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub channel: u16,
    pub payload: Vec<u8>,
}

/// Why no frame came.
#[derive(Debug)]
pub enum WireError {
    /// The peer closed the connection (EOF or reset).
    Closed,
    /// Nothing within the time allowed.
    Timeout,
    /// Bytes that are not a frame (bad end byte).
    Malformed(String),
}

/// A connection.close or channel.close as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub code: u16,
    pub text: String,
    pub class_id: u16,
    pub method_id: u16,
}

/// A message received with basic.deliver or basic.get-ok.
#[derive(Debug, Clone)]
pub struct Message {
    pub delivery_tag: u64,
    pub redelivered: bool,
    pub routing_key: String,
    pub properties: basic::AMQPProperties,
    pub body: Vec<u8>,
}

/// A method frame's payload for `method`.
pub fn method_payload(method: &AMQPClass) -> Vec<u8> {
    match cookie_factory::gen(gen_class(method), Vec::new()) {
        Ok((v, _)) => v,
        Err(e) => panic!("encoding {method:?}: {e:?}"),
    }
}

/// A whole frame: type, channel, size, payload, end byte.
pub fn frame_bytes(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 8);
    v.push(kind);
    v.extend_from_slice(&channel.to_be_bytes());
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v.push(FRAME_END);
    v
}

/// A content header payload for class basic: weight 0, `body_size`, `properties`.
pub fn content_header_payload(body_size: u64, properties: &basic::AMQPProperties) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&60u16.to_be_bytes());
    v.extend_from_slice(&0u16.to_be_bytes());
    v.extend_from_slice(&body_size.to_be_bytes());
    match cookie_factory::gen(basic::gen_properties(properties), v) {
        Ok((v, _)) => v,
        Err(e) => panic!("encoding properties: {e:?}"),
    }
}

fn short(s: &str) -> ShortString {
    ShortString::from(s)
}

/// A raw AMQP connection: frames in and out, nothing hidden.
pub struct Wire {
    stream: TcpStream,
    out: BufWriter<TcpStream>,
    inbuf: Vec<u8>,
    /// Methods read while waiting for something else, in order.
    pending: VecDeque<(u16, AMQPClass)>,
    pub frame_max: u32,
    /// The last connection.blocked (true) or unblocked (false) the broker
    /// sent: notifications that may come between any two methods, which
    /// `expect_method` takes aside as a client library does.
    pub blocked: Option<bool>,
}

impl Wire {
    pub fn connect(addr: &str) -> Wire {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        let out = BufWriter::with_capacity(256 * 1024, stream.try_clone().expect("clone socket"));
        Wire { stream, out, inbuf: Vec::new(), pending: VecDeque::new(), frame_max: 131_072, blocked: None }
    }

    /// Writes bytes as they are (buffered; `flush` sends them).
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Writes and sends at once, ignoring a peer that already closed.
    pub fn send_now(&mut self, bytes: &[u8]) {
        let _ = self.out.write_all(bytes).and_then(|_| self.out.flush());
    }

    pub fn send_frame(&mut self, kind: u8, channel: u16, payload: &[u8]) -> io::Result<()> {
        self.out.write_all(&frame_bytes(kind, channel, payload))
    }

    pub fn send_method(&mut self, channel: u16, method: &AMQPClass) -> io::Result<()> {
        self.send_frame(FRAME_METHOD, channel, &method_payload(method))
    }

    /// One frame, waiting at most `timeout`.
    pub fn read_frame(&mut self, timeout: Duration) -> Result<Frame, WireError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.inbuf.len() >= 7 {
                let size = u32::from_be_bytes(self.inbuf[3..7].try_into().unwrap()) as usize;
                if self.inbuf.len() >= size + 8 {
                    let end = self.inbuf[7 + size];
                    if end != FRAME_END {
                        return Err(WireError::Malformed(format!("frame end byte {end:#x}")));
                    }
                    let f = Frame {
                        kind: self.inbuf[0],
                        channel: u16::from_be_bytes([self.inbuf[1], self.inbuf[2]]),
                        payload: self.inbuf[7..7 + size].to_vec(),
                    };
                    self.inbuf.drain(..size + 8);
                    return Ok(f);
                }
            }
            if self.inbuf.starts_with(b"AMQP") && self.inbuf.len() >= 8 {
                return Err(WireError::Malformed(format!("protocol header {:?}", &self.inbuf[..8])));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WireError::Timeout);
            }
            self.stream.set_read_timeout(Some(left)).expect("read timeout");
            let mut buf = [0u8; 64 * 1024];
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(WireError::Closed),
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(WireError::Closed),
            }
        }
    }

    /// Reads up to `n` raw bytes (for answers that are not frames, like a
    /// protocol header); returns what came before EOF or the timeout.
    pub fn read_raw(&mut self, n: usize, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        while self.inbuf.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.stream.set_read_timeout(Some(left)).expect("read timeout");
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => self.inbuf.extend_from_slice(&buf[..k]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        let k = n.min(self.inbuf.len());
        self.inbuf.drain(..k).collect()
    }

    /// True once the peer closed the connection (EOF or reset) within
    /// `timeout`; frames read meanwhile are dropped.
    pub fn peer_closes_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(left) {
                Err(WireError::Closed) => return true,
                Err(WireError::Timeout) => return false,
                Err(WireError::Malformed(_)) => {
                    self.inbuf.clear();
                }
                Ok(_) => {}
            }
        }
    }

    /// The next method (any channel), skipping heartbeats; a content frame
    /// here is a test failure.
    pub fn next_method(&mut self, timeout: Duration) -> Result<(u16, AMQPClass), WireError> {
        if let Some(m) = self.pending.pop_front() {
            return Ok(m);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let f = self.read_frame(deadline.saturating_duration_since(Instant::now()))?;
            match f.kind {
                FRAME_HEARTBEAT => continue,
                FRAME_METHOD => return Ok((f.channel, parse_method(&f.payload))),
                k => panic!("expected a method frame, got a frame of type {k} on channel {}", f.channel),
            }
        }
    }

    /// The next method but connection.blocked / unblocked (recorded in
    /// `blocked`), or a panic naming `what` was awaited.
    pub fn expect_method(&mut self, what: &str) -> (u16, AMQPClass) {
        loop {
            match self.next_method(REPLY_TIMEOUT) {
                Ok((0, AMQPClass::Connection(connection::AMQPMethod::Blocked(_)))) => self.blocked = Some(true),
                Ok((0, AMQPClass::Connection(connection::AMQPMethod::Unblocked(_)))) => self.blocked = Some(false),
                Ok(m) => return m,
                Err(e) => panic!("waiting for {what}: {e:?}"),
            }
        }
    }

    /// Waits for connection.close from the peer, answers close-ok, and
    /// returns it. Other methods before it are skipped.
    pub fn expect_connection_close(&mut self, timeout: Duration) -> Result<Closed, WireError> {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, m) = self.next_method(deadline.saturating_duration_since(Instant::now()))?;
            if let AMQPClass::Connection(connection::AMQPMethod::Close(c)) = m {
                let ok = AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {}));
                let _ = self.send_method(0, &ok).and_then(|_| self.flush());
                return Ok(Closed {
                    code: c.reply_code,
                    text: c.reply_text.to_string(),
                    class_id: c.class_id,
                    method_id: c.method_id,
                });
            }
        }
    }

    /// Sends the protocol header and reads connection.start.
    pub fn start(&mut self) -> connection::Start {
        self.send_now(PROTOCOL_HEADER);
        match self.expect_method("connection.start") {
            (0, AMQPClass::Connection(connection::AMQPMethod::Start(s))) => s,
            other => panic!("expected connection.start, got {other:?}"),
        }
    }

    /// The whole opening handshake with PLAIN credentials; `heartbeat_s`
    /// `None` accepts the server's. Returns the broker's connection.close if
    /// it refused (credentials, vhost).
    pub fn handshake(
        &mut self,
        user: &str,
        password: &str,
        vhost: &str,
        heartbeat_s: Option<u16>,
    ) -> Result<(), Closed> {
        self.start();
        let mut caps = FieldTable::default();
        for cap in ["publisher_confirms", "consumer_cancel_notify", "basic.nack", "connection.blocked"] {
            caps.insert(cap.into(), AMQPValue::Boolean(true));
        }
        let mut props = FieldTable::default();
        props.insert("product".into(), AMQPValue::LongString(LongString::from("ringmq-tests")));
        props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        let start_ok = connection::StartOk {
            client_properties: props,
            mechanism: short("PLAIN"),
            response: LongString::from(format!("\0{user}\0{password}")),
            locale: short("en_US"),
        };
        self.send_method(0, &AMQPClass::Connection(connection::AMQPMethod::StartOk(start_ok))).unwrap();
        self.flush().unwrap();
        let tune = match self.expect_method("connection.tune") {
            (0, AMQPClass::Connection(connection::AMQPMethod::Tune(t))) => t,
            (0, AMQPClass::Connection(connection::AMQPMethod::Close(c))) => return Err(self.closed_by_peer(c)),
            other => panic!("expected connection.tune, got {other:?}"),
        };
        self.frame_max = tune.frame_max;
        let tune_ok = connection::TuneOk {
            channel_max: tune.channel_max,
            frame_max: tune.frame_max,
            heartbeat: heartbeat_s.unwrap_or(tune.heartbeat),
        };
        self.send_method(0, &AMQPClass::Connection(connection::AMQPMethod::TuneOk(tune_ok))).unwrap();
        let open = connection::Open { virtual_host: short(vhost) };
        self.send_method(0, &AMQPClass::Connection(connection::AMQPMethod::Open(open))).unwrap();
        self.flush().unwrap();
        match self.expect_method("connection.open-ok") {
            (0, AMQPClass::Connection(connection::AMQPMethod::OpenOk(_))) => Ok(()),
            (0, AMQPClass::Connection(connection::AMQPMethod::Close(c))) => Err(self.closed_by_peer(c)),
            other => panic!("expected connection.open-ok, got {other:?}"),
        }
    }

    fn closed_by_peer(&mut self, c: connection::Close) -> Closed {
        let ok = AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {}));
        let _ = self.send_method(0, &ok).and_then(|_| self.flush());
        Closed { code: c.reply_code, text: c.reply_text.to_string(), class_id: c.class_id, method_id: c.method_id }
    }

    /// Opens `channel` and waits for open-ok.
    pub fn open_channel(&mut self, ch: u16) {
        self.send_method(ch, &AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}))).unwrap();
        self.flush().unwrap();
        match self.expect_method("channel.open-ok") {
            (c, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_))) if c == ch => {}
            other => panic!("expected channel.open-ok on {ch}, got {other:?}"),
        }
    }

    /// Sends connection.close and waits for close-ok (or the peer's own close).
    pub fn close(&mut self) {
        let close = connection::Close { reply_code: 200, reply_text: short("bye"), class_id: 0, method_id: 0 };
        if self.send_method(0, &AMQPClass::Connection(connection::AMQPMethod::Close(close))).is_err()
            || self.flush().is_err()
        {
            return;
        }
        let deadline = Instant::now() + REPLY_TIMEOUT;
        while let Ok((_, m)) = self.next_method(deadline.saturating_duration_since(Instant::now())) {
            if matches!(m, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_) | connection::AMQPMethod::Close(_)))
            {
                break;
            }
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Reads a content header and its body frames on `ch`.
    pub fn read_content(&mut self, ch: u16) -> (basic::AMQPProperties, Vec<u8>) {
        let h = self.read_frame(REPLY_TIMEOUT).unwrap_or_else(|e| panic!("waiting for a content header: {e:?}"));
        assert!(h.kind == FRAME_HEADER && h.channel == ch, "expected a content header on {ch}, got {h:?}");
        assert!(h.payload.len() >= 14, "content header of {} bytes", h.payload.len());
        let size = u64::from_be_bytes(h.payload[4..12].try_into().unwrap()) as usize;
        let props = match nom::Parser::parse_complete(
            &mut nom::combinator::all_consuming(basic::parse_properties),
            &h.payload[12..],
        ) {
            Ok((_, p)) => p,
            Err(e) => panic!("unparsable properties in a content header: {e:?}"),
        };
        let mut body = Vec::with_capacity(size);
        while body.len() < size {
            let f = self.read_frame(REPLY_TIMEOUT).unwrap_or_else(|e| panic!("waiting for a body frame: {e:?}"));
            if f.kind == FRAME_HEARTBEAT {
                continue;
            }
            assert!(f.kind == FRAME_BODY && f.channel == ch, "expected a body frame on {ch}, got {f:?}");
            body.extend_from_slice(&f.payload);
        }
        assert_eq!(body.len(), size, "body frames carried more than the content header announced");
        (props, body)
    }
}

/// Parses a method payload; panics on anything the codec cannot read.
pub fn parse_method(payload: &[u8]) -> AMQPClass {
    match nom::Parser::parse_complete(&mut nom::combinator::all_consuming(parse_class), payload) {
        Ok((_, m)) => m,
        Err(e) => panic!("unparsable method frame from the broker: {e:?} ({payload:?})"),
    }
}

/// An open connection with channel 1, guest/guest on vhost "/".
pub struct Session {
    pub wire: Wire,
    pub ch: u16,
    /// Deliveries read while waiting for something else.
    held: VecDeque<Message>,
    /// Publisher confirms: next sequence number, and acks not yet taken.
    next_seq: u64,
    confirmed_upto: u64,
    confirm_events: VecDeque<(u64, bool, bool)>,
}

impl Session {
    pub fn open(addr: &str) -> Session {
        let mut wire = Wire::connect(addr);
        if let Err(c) = wire.handshake("guest", "guest", "/", None) {
            panic!("the broker refused the connection: {c:?}");
        }
        wire.open_channel(1);
        Session { wire, ch: 1, held: VecDeque::new(), next_seq: 1, confirmed_upto: 0, confirm_events: VecDeque::new() }
    }

    /// Sends `method` and returns the reply (the first method on this
    /// channel that is not a delivery or confirm), or the channel.close the
    /// broker answered with (close-ok sent, channel reopened).
    pub fn call(&mut self, method: AMQPClass) -> Result<AMQPClass, Closed> {
        self.wire.send_method(self.ch, &method).expect("send");
        self.wire.flush().expect("flush");
        loop {
            let (ch, m) = self.wire.expect_method(&format!("the reply to {method:?}"));
            if let Some(reply) = self.absorb(ch, m)? {
                return Ok(reply);
            }
        }
    }

    /// Takes deliveries and confirms aside; returns any other method, or the
    /// broker's channel.close.
    fn absorb(&mut self, ch: u16, m: AMQPClass) -> Result<Option<AMQPClass>, Closed> {
        match m {
            AMQPClass::Basic(basic::AMQPMethod::Deliver(d)) => {
                let (properties, body) = self.wire.read_content(ch);
                self.held.push_back(Message {
                    delivery_tag: d.delivery_tag,
                    redelivered: d.redelivered,
                    routing_key: d.routing_key.to_string(),
                    properties,
                    body,
                });
                Ok(None)
            }
            AMQPClass::Basic(basic::AMQPMethod::Ack(a)) => {
                self.confirm_events.push_back((a.delivery_tag, a.multiple, true));
                Ok(None)
            }
            AMQPClass::Basic(basic::AMQPMethod::Nack(n)) => {
                self.confirm_events.push_back((n.delivery_tag, n.multiple, false));
                Ok(None)
            }
            AMQPClass::Channel(channel::AMQPMethod::Close(c)) => {
                let ok = AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {}));
                self.wire.send_method(ch, &ok).expect("send close-ok");
                self.ch += 1;
                self.wire.open_channel(self.ch);
                Err(Closed {
                    code: c.reply_code,
                    text: c.reply_text.to_string(),
                    class_id: c.class_id,
                    method_id: c.method_id,
                })
            }
            AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
                panic!("the broker closed the connection: {} {}", c.reply_code, c.reply_text)
            }
            other => Ok(Some(other)),
        }
    }

    pub fn declare_queue(&mut self, name: &str, durable: bool, exclusive: bool) -> Result<queue::DeclareOk, Closed> {
        self.queue_declare(name, false, durable, exclusive)
    }

    pub fn declare_queue_passive(&mut self, name: &str) -> Result<queue::DeclareOk, Closed> {
        self.queue_declare(name, true, false, false)
    }

    fn queue_declare(
        &mut self,
        name: &str,
        passive: bool,
        durable: bool,
        exclusive: bool,
    ) -> Result<queue::DeclareOk, Closed> {
        let m = queue::Declare {
            queue: short(name),
            passive,
            durable,
            exclusive,
            auto_delete: false,
            nowait: false,
            arguments: FieldTable::default(),
        };
        match self.call(AMQPClass::Queue(queue::AMQPMethod::Declare(m)))? {
            AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)) => Ok(ok),
            other => panic!("expected queue.declare-ok, got {other:?}"),
        }
    }

    pub fn declare_exchange(&mut self, name: &str, kind: &str, durable: bool, passive: bool) -> Result<(), Closed> {
        let m = exchange::Declare {
            exchange: short(name),
            kind: short(kind),
            passive,
            durable,
            auto_delete: false,
            internal: false,
            nowait: false,
            arguments: FieldTable::default(),
        };
        match self.call(AMQPClass::Exchange(exchange::AMQPMethod::Declare(m)))? {
            AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(_)) => Ok(()),
            other => panic!("expected exchange.declare-ok, got {other:?}"),
        }
    }

    pub fn bind(&mut self, queue: &str, exchange: &str, key: &str) -> Result<(), Closed> {
        let m = queue::Bind {
            queue: short(queue),
            exchange: short(exchange),
            routing_key: short(key),
            nowait: false,
            arguments: FieldTable::default(),
        };
        match self.call(AMQPClass::Queue(queue::AMQPMethod::Bind(m)))? {
            AMQPClass::Queue(queue::AMQPMethod::BindOk(_)) => Ok(()),
            other => panic!("expected queue.bind-ok, got {other:?}"),
        }
    }

    pub fn confirm_select(&mut self) {
        let m = AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: false }));
        match self.call(m) {
            Ok(AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_))) => {}
            other => panic!("expected confirm.select-ok, got {other:?}"),
        }
    }

    pub fn qos(&mut self, prefetch: u16) {
        let m = AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos { prefetch_count: prefetch, global: false }));
        match self.call(m) {
            Ok(AMQPClass::Basic(basic::AMQPMethod::QosOk(_))) => {}
            other => panic!("expected basic.qos-ok, got {other:?}"),
        }
    }

    /// Writes one publish (method, header, body frames) without flushing;
    /// returns its confirm sequence number (meaningful in confirm mode).
    pub fn publish(&mut self, exchange: &str, key: &str, body: &[u8], persistent: bool) -> io::Result<u64> {
        let p =
            basic::Publish { exchange: short(exchange), routing_key: short(key), mandatory: false, immediate: false };
        self.wire.send_method(self.ch, &AMQPClass::Basic(basic::AMQPMethod::Publish(p)))?;
        let props = if persistent {
            basic::AMQPProperties::default().with_delivery_mode(2)
        } else {
            basic::AMQPProperties::default()
        };
        self.wire.send_frame(FRAME_HEADER, self.ch, &content_header_payload(body.len() as u64, &props))?;
        let chunk = (self.wire.frame_max as usize).saturating_sub(8).max(1);
        for part in body.chunks(chunk) {
            self.wire.send_frame(FRAME_BODY, self.ch, part)?;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Reads until the broker confirmed more, or `timeout` passes; returns
    /// the highest sequence number below which every publish is acked, or
    /// the error that ended the connection. A nack is a test failure.
    pub fn wait_confirms(&mut self, timeout: Duration) -> Result<u64, WireError> {
        self.wire.flush().map_err(|_| WireError::Closed)?;
        if self.confirm_events.is_empty() {
            let (ch, m) = self.wire.next_method(timeout)?;
            match self.absorb(ch, m) {
                Ok(None) => {}
                Ok(Some(other)) => panic!("unexpected method while waiting for confirms: {other:?}"),
                Err(c) => panic!("channel closed while publishing: {c:?}"),
            }
        }
        while let Some((tag, multiple, ack)) = self.confirm_events.pop_front() {
            assert!(ack, "the broker nacked publish {tag}");
            if multiple || tag == self.confirmed_upto + 1 {
                assert!(tag > self.confirmed_upto, "confirm for {tag} after {} was confirmed", self.confirmed_upto);
                self.confirmed_upto = tag;
            } else {
                panic!(
                    "out-of-order single confirm {tag} after {} (this client expects them in order)",
                    self.confirmed_upto
                );
            }
        }
        Ok(self.confirmed_upto)
    }

    /// Publishes every body to `queue` (default exchange) as persistent with
    /// at most `window` unconfirmed, and waits for every confirm.
    pub fn publish_confirmed(&mut self, queue: &str, bodies: impl IntoIterator<Item = Vec<u8>>, window: u64) {
        for body in bodies {
            let seq = self.publish("", queue, &body, true).expect("publish");
            while seq - self.confirmed_upto > window {
                self.wait_confirms(REPLY_TIMEOUT).expect("confirms");
            }
        }
        while self.confirmed_upto + 1 < self.next_seq {
            self.wait_confirms(REPLY_TIMEOUT).expect("confirms");
        }
    }

    pub fn consume(&mut self, queue: &str, no_ack: bool) -> String {
        let m = basic::Consume {
            queue: short(queue),
            consumer_tag: short(""),
            no_local: false,
            no_ack,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        };
        match self.call(AMQPClass::Basic(basic::AMQPMethod::Consume(m))) {
            Ok(AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok))) => ok.consumer_tag.to_string(),
            other => panic!("expected basic.consume-ok, got {other:?}"),
        }
    }

    /// The next delivery, or None after `timeout`.
    pub fn next_delivery(&mut self, timeout: Duration) -> Option<Message> {
        let deadline = Instant::now() + timeout;
        while self.held.is_empty() {
            let (ch, m) = match self.wire.next_method(deadline.saturating_duration_since(Instant::now())) {
                Ok(m) => m,
                Err(WireError::Timeout) => return None,
                Err(e) => panic!("waiting for a delivery: {e:?}"),
            };
            match self.absorb(ch, m) {
                Ok(None) => {}
                other => panic!("unexpected while waiting for a delivery: {other:?}"),
            }
        }
        self.held.pop_front()
    }

    /// basic.get: the message, or None when the queue is empty.
    pub fn get(&mut self, queue: &str, no_ack: bool) -> Result<Option<Message>, Closed> {
        let m = basic::Get { queue: short(queue), no_ack };
        match self.call(AMQPClass::Basic(basic::AMQPMethod::Get(m)))? {
            AMQPClass::Basic(basic::AMQPMethod::GetOk(ok)) => {
                let (properties, body) = self.wire.read_content(self.ch);
                Ok(Some(Message {
                    delivery_tag: ok.delivery_tag,
                    redelivered: ok.redelivered,
                    routing_key: ok.routing_key.to_string(),
                    properties,
                    body,
                }))
            }
            AMQPClass::Basic(basic::AMQPMethod::GetEmpty(_)) => Ok(None),
            other => panic!("expected basic.get-ok or get-empty, got {other:?}"),
        }
    }

    pub fn ack(&mut self, delivery_tag: u64, multiple: bool) {
        let m = basic::Ack { delivery_tag, multiple };
        self.wire.send_method(self.ch, &AMQPClass::Basic(basic::AMQPMethod::Ack(m))).expect("send ack");
        self.wire.flush().expect("flush");
    }

    pub fn close(mut self) {
        self.wire.close();
    }
}
