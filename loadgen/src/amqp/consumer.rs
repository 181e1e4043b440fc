//! AMQP consumers: one connection and one consumer each, on one queue
//! (with `--fanout`, `--consumers` per queue). basic.qos(prefetch), then
//! basic.consume; the consumer's thread reads deliveries (method, content
//! header, body frames) and takes the stamp from the first 24 body bytes:
//! one end-to-end latency per delivery, receive time − intended send time.
//!
//! Acknowledgements are manual and batched: basic.ack(multiple) once
//! `prefetch/2` deliveries are unacknowledged, and whenever the socket has
//! been quiet for `ACK_IDLE` (so the last deliveries of a run are acked
//! too). `--no-ack` consumes with no_ack and sends none.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use amq_protocol::protocol::{basic, connection, AMQPClass};
use amq_protocol::types::FieldTable;

use super::config::AmqpConfig;
use super::conn::{self, short, Connection, CHANNEL};
use super::stats::AmqpStats;
use super::wire::{self, FrameReader, FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD};
use crate::error::{AmqpError, Error};
use crate::histo::Samples;
use crate::payload::{Stamp, STAMP_LEN};
use crate::shared::Shared;

/// Read timeout: after this long without a frame, unacknowledged
/// deliveries are acked and the stop flag is looked at.
const ACK_IDLE: Duration = Duration::from_millis(5);
/// How long the consumer waits for close-ok at the end.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Samples gathered before they go to the shared histograms.
const SAMPLES_MAX: usize = 512;

/// Where the consumer is in a delivery's frames.
enum Content {
    /// Between deliveries.
    Method,
    /// After basic.deliver, before its content header.
    Header { tag: u64 },
    /// Body frames still to come; the stamp is read from the first.
    Body { tag: u64, left: u64, stamp: Option<Option<Stamp>> },
}

/// A connected consumer, ready to start.
pub struct Consumer {
    index: usize,
    /// Position of its queue in `AmqpConfig::queues`.
    queue: usize,
    cfg: Arc<AmqpConfig>,
    shared: Arc<Shared>,
    stats: Arc<AmqpStats>,
    stream: TcpStream,
    reader: FrameReader,
    addr: String,
}

impl Consumer {
    /// Connects, sets the prefetch and starts consuming from queue number `queue`.
    pub fn connect(
        index: usize,
        queue: usize,
        cfg: Arc<AmqpConfig>,
        shared: Arc<Shared>,
        stats: Arc<AmqpStats>,
    ) -> Result<Consumer, Error> {
        let name = format!("{}-consumer-{index}", cfg.client_id);
        let mut conn = Connection::open(&cfg.url, &name, cfg.request_timeout)?;
        if let Ok(s) = conn.socket() {
            shared.register_socket(s);
        }
        let addr = conn.addr().to_string();
        let unexpected = |wanted: &str, got: AMQPClass| -> Error {
            AmqpError::Protocol { addr: addr.clone(), detail: format!("expected {wanted}, got {got:?}") }.into()
        };
        let qname = &cfg.queues[queue];
        if !cfg.no_ack {
            let qos = basic::Qos { prefetch_count: cfg.prefetch, global: false };
            match conn.call(AMQPClass::Basic(basic::AMQPMethod::Qos(qos)), "setting the prefetch")? {
                AMQPClass::Basic(basic::AMQPMethod::QosOk(_)) => {}
                other => return Err(unexpected("basic.qos-ok", other)),
            }
        }
        let consume = basic::Consume {
            queue: short(qname)?,
            consumer_tag: short("")?,
            no_local: false,
            no_ack: cfg.no_ack,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        };
        let what = format!("starting to consume from queue '{qname}'");
        match conn.call(AMQPClass::Basic(basic::AMQPMethod::Consume(consume)), &what)? {
            AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_)) => {}
            other => return Err(unexpected("basic.consume-ok", other)),
        }
        let (stream, reader, _) = conn.into_parts();
        reader.socket().set_read_timeout(Some(ACK_IDLE)).map_err(|source| AmqpError::Io {
            addr: addr.clone(),
            what: "configuring the socket to",
            source,
        })?;
        Ok(Consumer { index, queue, cfg, shared, stats, stream, reader, addr })
    }

    pub fn spawn(self) -> Result<JoinHandle<()>, Error> {
        let shared = self.shared.clone();
        thread::Builder::new()
            .name(format!("amqp-consumer-{}", self.index))
            .spawn(move || {
                if let Err(e) = self.run() {
                    if !shared.stopped() {
                        shared.fail(e);
                    }
                }
            })
            .map_err(|e| Error::Panic { role: "consumer", detail: format!("cannot start thread: {e}") })
    }

    fn run(mut self) -> Result<(), Error> {
        let mut state = Content::Method;
        let mut acks = Acks { unacked: 0, last_tag: 0, every: self.cfg.ack_every(), manual: !self.cfg.no_ack };
        let mut samples = Samples::default();
        while !self.shared.consumers_stop.load(Ordering::Relaxed) {
            let got = self.reader.next("waiting for deliveries");
            let received = self.shared.clock.now_ns();
            let frame = match got {
                Ok(Some(f)) => f,
                Ok(None) => {
                    self.record(&mut samples);
                    acks.flush(&mut self.stream, &self.addr)?;
                    continue;
                }
                Err(_) if self.shared.stopped() => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let (kind, channel) = (frame.kind, frame.channel);
            state = match (kind, state) {
                (FRAME_HEARTBEAT, s) => s,
                (FRAME_METHOD, Content::Method) => match wire::parse_method(frame.payload) {
                    Some(AMQPClass::Basic(basic::AMQPMethod::Deliver(d))) => {
                        if d.redelivered {
                            self.stats.redelivered.fetch_add(1, Ordering::Relaxed);
                        }
                        Content::Header { tag: d.delivery_tag }
                    }
                    Some(m) => {
                        self.on_method(channel, m)?;
                        Content::Method
                    }
                    None => return Err(self.reader.protocol("an unreadable method frame".to_string()).into()),
                },
                (FRAME_HEADER, Content::Header { tag }) => match wire::header_body_size(frame.payload) {
                    Some(0) => {
                        self.stats.foreign.fetch_add(1, Ordering::Relaxed);
                        acks.delivered(tag, &mut self.stream, &self.addr)?;
                        Content::Method
                    }
                    Some(left) => Content::Body { tag, left, stamp: None },
                    None => return Err(self.reader.protocol("a content header too short to read".to_string()).into()),
                },
                (FRAME_BODY, Content::Body { tag, left, stamp }) if frame.payload.len() as u64 <= left => {
                    let stamp = stamp.unwrap_or_else(|| read_stamp(frame.payload));
                    let left = left - frame.payload.len() as u64;
                    if left > 0 {
                        Content::Body { tag, left, stamp: Some(stamp) }
                    } else {
                        self.delivered(stamp, received, &mut samples);
                        acks.delivered(tag, &mut self.stream, &self.addr)?;
                        Content::Method
                    }
                }
                (k, _) => {
                    return Err(self.reader.protocol(format!("a frame of type {k} out of place in a delivery")).into())
                }
            };
            if !self.reader.has_frame() || samples.values.len() >= SAMPLES_MAX {
                self.record(&mut samples);
            }
        }
        self.record(&mut samples);
        acks.flush(&mut self.stream, &self.addr)?;
        self.close();
        Ok(())
    }

    /// A method other than basic.deliver: a close or cancel from the broker
    /// ends the consumer with its reason.
    fn on_method(&self, channel: u16, m: AMQPClass) -> Result<(), Error> {
        if let Some(e) = conn::closed_by_broker(&self.addr, "consuming", channel, &m) {
            return Err(e.into());
        }
        match m {
            AMQPClass::Basic(basic::AMQPMethod::Cancel(_)) => {
                Err(AmqpError::Cancelled { addr: self.addr.clone(), queue: self.cfg.queues[self.queue].clone() }.into())
            }
            m if conn::is_flow_notice(&m) => Ok(()),
            other => Err(self.reader.protocol(format!("an unexpected {other:?} while consuming")).into()),
        }
    }

    /// One whole delivery: its latency if it is this run's message.
    fn delivered(&self, stamp: Option<Stamp>, received_ns: u64, samples: &mut Samples) {
        match stamp {
            Some(s) if s.run_id == self.shared.run_id => {
                samples.push(received_ns.saturating_sub(s.intended_ns), self.shared.window().contains(s.intended_ns));
            }
            _ => {
                self.stats.foreign.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Moves gathered samples to the shared histograms.
    fn record(&self, samples: &mut Samples) {
        if samples.values.is_empty() {
            return;
        }
        let n = samples.values.iter().filter(|(_, m)| *m).count() as u64;
        self.shared.e2e.record(samples);
        self.stats.consumed_from(self.queue, n);
        samples.clear();
    }

    /// connection.close and a short wait for close-ok; deliveries that come
    /// meanwhile are left to the broker (it requeues them).
    fn close(mut self) {
        let _ = conn::send_close(&mut self.stream, &self.addr);
        let deadline = Instant::now() + CLOSE_WAIT;
        while Instant::now() < deadline {
            match self.reader.next("closing") {
                Ok(Some(f)) if f.kind == FRAME_METHOD => {
                    if let Some(AMQPClass::Connection(
                        connection::AMQPMethod::CloseOk(_) | connection::AMQPMethod::Close(_),
                    )) = wire::parse_method(f.payload)
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }
}

/// The stamp at the start of a body, if the body starts with one.
fn read_stamp(first_piece: &[u8]) -> Option<Stamp> {
    if first_piece.len() < STAMP_LEN {
        return None;
    }
    Stamp::read(first_piece)
}

/// Manual acknowledgements, batched with `multiple`.
struct Acks {
    unacked: u64,
    last_tag: u64,
    every: u64,
    manual: bool,
}

impl Acks {
    /// Counts a whole delivery; acks once `every` are unacknowledged.
    fn delivered(&mut self, tag: u64, stream: &mut TcpStream, addr: &str) -> Result<(), Error> {
        if !self.manual {
            return Ok(());
        }
        debug_assert!(tag > self.last_tag, "delivery tags grow on a channel");
        self.unacked += 1;
        self.last_tag = tag;
        if self.unacked >= self.every {
            self.flush(stream, addr)?;
        }
        Ok(())
    }

    /// basic.ack(last tag, multiple) for everything unacknowledged.
    fn flush(&mut self, stream: &mut TcpStream, addr: &str) -> Result<(), Error> {
        if self.unacked == 0 {
            return Ok(());
        }
        let ack = basic::Ack { delivery_tag: self.last_tag, multiple: true };
        let mut out = Vec::with_capacity(32);
        wire::put_method(&mut out, CHANNEL, &AMQPClass::Basic(basic::AMQPMethod::Ack(ack)))?;
        stream.write_all(&out).map_err(|source| AmqpError::Io { addr: addr.to_string(), what: "acking to", source })?;
        self.unacked = 0;
        Ok(())
    }
}
