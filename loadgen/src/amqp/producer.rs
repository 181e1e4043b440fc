//! AMQP publishers. Each producer owns one connection (channel 1, in
//! confirm mode unless `--confirm-window 0`), a writer loop on its own
//! thread and a reader thread for the broker's confirms.
//!
//! The writer follows the same schedule as the Kafka producers (`Schedule`:
//! open loop from each message's due time, or closed loop), writes every
//! message that is due in one `write`, and keeps at most `--confirm-window`
//! publishes unconfirmed: when the window is full, messages that fall due
//! wait (their latency keeps counting from the due time) and are generated
//! once there is room, so memory stays bounded.
//!
//! The publish method and the content header are the same for every
//! message of a run (one header per priority): they are encoded once with
//! the codec; each body is the 24-byte stamp and padding written straight
//! into the output buffer.
//!
//! The reader settles confirms (`Unconfirmed`): basic.ack with or without
//! `multiple` records each publish's due-time→confirm latency, basic.nack is
//! counted as an error.

use std::collections::VecDeque;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use amq_protocol::protocol::{basic, confirm, connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, ShortString};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::config::AmqpConfig;
use super::conn::{self, short, Connection, CHANNEL};
use super::stats::AmqpStats;
use super::wire::{self, FrameReader, FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD};
use crate::error::{AmqpError, Error};
use crate::histo::{lock, Samples};
use crate::payload::{Padding, Stamp};
use crate::producer::{tight_timer_slack, Schedule};
use crate::shared::Shared;

/// Longest a loop sleeps before looking at the stop flags again.
const POLL: Duration = Duration::from_millis(100);
/// Most bytes written in one go (then the writer looks at the window again).
const WRITE_MAX_BYTES: usize = 1 << 20;

/// Publishes not yet confirmed, by sequence number (confirm delivery tag).
#[derive(Debug)]
pub struct Unconfirmed {
    /// Sequence number of `due[0]`; the first publish is 1.
    base: u64,
    /// Due time of each publish from `base` on; `None` once confirmed.
    due: VecDeque<Option<u64>>,
    /// `Some` entries in `due`.
    outstanding: usize,
}

impl Default for Unconfirmed {
    fn default() -> Self {
        Unconfirmed { base: 1, due: VecDeque::new(), outstanding: 0 }
    }
}

impl Unconfirmed {
    /// Records a publish; returns its sequence number.
    pub fn push(&mut self, due_ns: u64) -> u64 {
        self.due.push_back(Some(due_ns));
        self.outstanding += 1;
        self.base + self.due.len() as u64 - 1
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Takes the publishes a confirm of `tag` covers (with `multiple`: every
    /// one up to it) and appends their due times to `out`. Names the problem
    /// when the confirm covers a publish never sent or one already confirmed.
    pub fn settle(&mut self, tag: u64, multiple: bool, out: &mut Vec<u64>) -> Result<(), String> {
        let next = self.base + self.due.len() as u64;
        if tag >= next || tag == 0 {
            return Err(format!(
                "a confirm for publish {tag}, which was never sent (the last one sent is {})",
                next - 1
            ));
        }
        let before = self.outstanding;
        if multiple {
            let upto = tag.saturating_sub(self.base);
            if tag >= self.base {
                for slot in self.due.iter_mut().take(upto as usize + 1) {
                    if let Some(d) = slot.take() {
                        out.push(d);
                        self.outstanding -= 1;
                    }
                }
            }
        } else {
            let taken = if tag >= self.base { self.due[(tag - self.base) as usize].take() } else { None };
            match taken {
                Some(d) => {
                    out.push(d);
                    self.outstanding -= 1;
                }
                None => return Err(format!("a second confirm for publish {tag}")),
            }
        }
        while let Some(None) = self.due.front() {
            self.due.pop_front();
            self.base += 1;
        }
        debug_assert_eq!(self.outstanding, self.due.iter().filter(|d| d.is_some()).count());
        debug_assert!(self.outstanding <= before);
        Ok(())
    }
}

/// The confirm state one producer's writer and reader share.
#[derive(Default)]
struct Confirms {
    state: Mutex<Unconfirmed>,
    cv: Condvar,
    /// The writer is done and sent connection.close.
    closing: AtomicBool,
}

/// A connected producer, ready to start.
pub struct Producer {
    index: usize,
    cfg: Arc<AmqpConfig>,
    shared: Arc<Shared>,
    stats: Arc<AmqpStats>,
    schedule: Schedule,
    stream: TcpStream,
    reader: Option<FrameReader>,
    addr: String,
    frame_max: u32,
    confirms: Arc<Confirms>,
}

impl Producer {
    /// Opens the connection and, with a confirm window, confirm.select.
    pub fn connect(
        index: usize,
        cfg: Arc<AmqpConfig>,
        shared: Arc<Shared>,
        stats: Arc<AmqpStats>,
        schedule: Schedule,
    ) -> Result<Producer, Error> {
        let name = format!("{}-producer-{index}", cfg.client_id);
        let mut conn = Connection::open(&cfg.url, &name, cfg.request_timeout)?;
        if let Ok(s) = conn.socket() {
            shared.register_socket(s);
        }
        if cfg.confirm_window > 0 {
            let select = AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: false }));
            match conn.call(select, "selecting confirm mode")? {
                AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_)) => {}
                other => {
                    return Err(AmqpError::Protocol {
                        addr: conn.addr().to_string(),
                        detail: format!("expected confirm.select-ok, got {other:?}"),
                    }
                    .into())
                }
            }
        }
        let addr = conn.addr().to_string();
        let (stream, reader, frame_max) = conn.into_parts();
        reader.socket().set_read_timeout(Some(POLL)).map_err(|source| AmqpError::Io {
            addr: addr.clone(),
            what: "configuring the socket to",
            source,
        })?;
        Ok(Producer {
            index,
            cfg,
            shared,
            stats,
            schedule,
            stream,
            reader: Some(reader),
            addr,
            frame_max,
            confirms: Arc::new(Confirms::default()),
        })
    }

    /// Starts the writer thread (which starts the reader); it ends when the
    /// schedule is done and every publish is confirmed, or on failure.
    pub fn spawn(self) -> Result<JoinHandle<()>, Error> {
        let shared = self.shared.clone();
        thread::Builder::new()
            .name(format!("amqp-producer-{}", self.index))
            .spawn(move || {
                tight_timer_slack();
                if let Err(e) = self.run() {
                    shared.fail(e);
                }
            })
            .map_err(|e| Error::Panic { role: "producer", detail: format!("cannot start thread: {e}") })
    }

    fn run(mut self) -> Result<(), Error> {
        let reader = self.reader.take().map(|r| {
            let ctx = ReaderCtx {
                confirms: self.confirms.clone(),
                shared: self.shared.clone(),
                stats: self.stats.clone(),
                timeout: self.cfg.request_timeout,
                addr: self.addr.clone(),
            };
            thread::Builder::new().name(format!("amqp-producer-{}-confirms", self.index)).spawn(move || {
                if let Err(e) = read_confirms(r, &ctx) {
                    if !ctx.shared.stopped() {
                        ctx.shared.fail(e);
                    }
                }
            })
        });
        let reader = match reader {
            Some(Ok(h)) => Some(h),
            Some(Err(e)) => return Err(Error::Panic { role: "producer", detail: format!("cannot start thread: {e}") }),
            None => None,
        };
        let result = self.write_loop().and_then(|_| self.wait_confirmed());
        self.confirms.closing.store(true, Ordering::SeqCst);
        if result.is_ok() {
            let _ = conn::send_close(&mut self.stream, &self.addr);
        } else {
            let _ = self.stream.shutdown(Shutdown::Both);
        }
        if let Some(h) = reader {
            let _ = h.join();
        }
        result
    }

    /// Waits until every publish is confirmed (or the run stops).
    fn wait_confirmed(&self) -> Result<(), Error> {
        let deadline = Instant::now() + self.cfg.request_timeout + Duration::from_secs(1);
        let mut q = lock(&self.confirms.state);
        while q.outstanding() > 0 && !self.shared.stopped() {
            if Instant::now() >= deadline {
                return Err(AmqpError::Timeout {
                    addr: self.addr.clone(),
                    what: format!("waiting for the confirms of {} publishes", q.outstanding()),
                    timeout: self.cfg.request_timeout,
                }
                .into());
            }
            q = self.confirms.cv.wait_timeout(q, POLL).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
        }
        Ok(())
    }

    fn write_loop(&mut self) -> Result<(), Error> {
        let cfg = self.cfg.clone();
        let shared = self.shared.clone();
        let seed = (shared.run_id as u64) << 16 | self.index as u64;
        let mut enc = Encoder::new(&cfg, self.frame_max, seed)?;
        let sched = self.schedule;
        let closed = cfg.closed_loop();
        let window = cfg.confirm_window;
        let mut out: Vec<u8> = Vec::with_capacity(WRITE_MAX_BYTES + cfg.size + 1024);
        let mut batch: Vec<u64> = Vec::new();
        let mut samples = Samples::default();
        let mut next_k: u64 = 0;
        loop {
            if shared.stopped() {
                return Ok(());
            }
            let now = shared.clock.now_ns();
            let room = if window == 0 { usize::MAX } else { window - lock(&self.confirms.state).outstanding() };
            out.clear();
            batch.clear();
            let mut done = false;
            while batch.len() < room && out.len() < WRITE_MAX_BYTES {
                let due = if closed { now } else { sched.intended(next_k) };
                if due >= sched.end_ns || (closed && now >= sched.end_ns) {
                    done = true;
                    break;
                }
                if due > now {
                    break;
                }
                let seq = ((self.index as u64) << 48) | next_k;
                enc.put_message(&mut out, Stamp { run_id: shared.run_id, intended_ns: due, seq });
                batch.push(due);
                next_k += 1;
            }
            if !batch.is_empty() {
                self.publish(&out, &batch, &mut samples)?;
                continue;
            }
            if done {
                return Ok(());
            }
            self.wait(room == 0, if closed { now } else { sched.intended(next_k) });
        }
    }

    /// Writes the encoded publishes of `batch` (their due times) and counts them.
    fn publish(&mut self, out: &[u8], batch: &[u64], samples: &mut Samples) -> Result<(), Error> {
        let shared = &self.shared;
        if self.cfg.confirm_window > 0 {
            // Recorded before the write: a confirm may come back before `write` returns.
            let mut q = lock(&self.confirms.state);
            for &due in batch {
                q.push(due);
            }
        }
        self.stream.write_all(out).map_err(|source| AmqpError::Io {
            addr: self.addr.clone(),
            what: "publishing to",
            source,
        })?;
        let written = shared.clock.now_ns();
        samples.clear();
        let window = shared.window();
        for &due in batch {
            samples.push(written.saturating_sub(due), window.contains(due));
        }
        shared.send_delay.record(samples);
        shared.sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
        if self.cfg.confirm_window == 0 {
            // No confirm will come: the write is as far as the client sees.
            shared.produce.record(samples);
            shared.acked.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Waits for room in the confirm window (`full`) or for the next due time.
    fn wait(&self, full: bool, next_due_ns: u64) {
        if full {
            let q = lock(&self.confirms.state);
            if q.outstanding() >= self.cfg.confirm_window && !self.shared.stopped() {
                let _ = self.confirms.cv.wait_timeout(q, POLL);
            }
            return;
        }
        let now = self.shared.clock.now_ns();
        let wait = Duration::from_nanos(next_due_ns.saturating_sub(now)).min(POLL);
        if !wait.is_zero() {
            thread::sleep(wait);
        }
    }
}

/// Encodes publishes: the method frame and content headers once, the body
/// per message.
struct Encoder {
    publish: Vec<u8>,
    /// Content header frame per priority (one when priorities are off).
    headers: Vec<Vec<u8>>,
    padding: Padding,
    rng: StdRng,
    size: usize,
    /// Largest body piece per frame.
    piece: usize,
    scratch: Vec<u8>,
}

impl Encoder {
    fn new(cfg: &AmqpConfig, frame_max: u32, seed: u64) -> Result<Encoder, AmqpError> {
        let publish = basic::Publish {
            exchange: short(&cfg.exchange)?,
            routing_key: short(&cfg.routing_key)?,
            mandatory: false,
            immediate: false,
        };
        let mut publish_frame = Vec::new();
        wire::put_method(&mut publish_frame, CHANNEL, &AMQPClass::Basic(basic::AMQPMethod::Publish(publish)))?;
        let mut headers = Vec::new();
        for priority in 0..=cfg.priority_max {
            let mut props = basic::AMQPProperties::default().with_delivery_mode(if cfg.persistent { 2 } else { 1 });
            if cfg.priority_max > 0 {
                props = props.with_priority(priority);
            }
            if let Some(delay) = cfg.delay_ms {
                let mut h = FieldTable::default();
                h.insert(ShortString::from("x-delay"), AMQPValue::LongLongInt(i64::from(delay)));
                props = props.with_headers(h);
            }
            headers.push(wire::header_frame(CHANNEL, cfg.size as u64, &props)?);
        }
        Ok(Encoder {
            publish: publish_frame,
            headers,
            padding: Padding::new(cfg.size, seed),
            rng: StdRng::seed_from_u64(seed),
            size: cfg.size,
            piece: frame_max as usize - wire::FRAME_OVERHEAD_BYTES,
            scratch: Vec::new(),
        })
    }

    /// Appends one publish: method, content header, body frame(s).
    fn put_message(&mut self, out: &mut Vec<u8>, stamp: Stamp) {
        out.extend_from_slice(&self.publish);
        let h = if self.headers.len() > 1 { self.rng.gen_range(0..self.headers.len()) } else { 0 };
        out.extend_from_slice(&self.headers[h]);
        if self.size <= self.piece {
            wire::put_head(out, FRAME_BODY, CHANNEL, self.size);
            let before = out.len();
            self.padding.put_value(stamp, out);
            debug_assert_eq!(out.len() - before, self.size);
            out.push(FRAME_END);
        } else {
            self.scratch.clear();
            self.padding.put_value(stamp, &mut self.scratch);
            for piece in self.scratch.chunks(self.piece) {
                wire::put_frame(out, FRAME_BODY, CHANNEL, piece);
            }
        }
    }
}

struct ReaderCtx {
    confirms: Arc<Confirms>,
    shared: Arc<Shared>,
    stats: Arc<AmqpStats>,
    timeout: Duration,
    addr: String,
}

/// Reads confirms (and whatever else the broker sends a publisher) until
/// close-ok, the run's stop, or an error.
fn read_confirms(mut reader: FrameReader, ctx: &ReaderCtx) -> Result<(), Error> {
    let mut dues: Vec<u64> = Vec::new();
    let mut samples = Samples::default();
    let mut last_progress = Instant::now();
    // Body bytes still to skip of a returned message.
    let mut returned_left: Option<u64> = None;
    loop {
        let frame = match reader.next("waiting for publisher confirms") {
            Ok(Some(f)) => f,
            Ok(None) => {
                if ctx.shared.stopped() {
                    return Ok(());
                }
                let outstanding = lock(&ctx.confirms.state).outstanding();
                if outstanding == 0 {
                    last_progress = Instant::now();
                } else if last_progress.elapsed() > ctx.timeout {
                    return Err(AmqpError::Timeout {
                        addr: ctx.addr.clone(),
                        what: format!("waiting for the confirms of {outstanding} publishes"),
                        timeout: ctx.timeout,
                    }
                    .into());
                }
                continue;
            }
            // The end of a connection this side closed, or of a stopped run.
            Err(_) if ctx.confirms.closing.load(Ordering::SeqCst) || ctx.shared.stopped() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let (kind, channel) = (frame.kind, frame.channel);
        match kind {
            FRAME_HEARTBEAT => {}
            FRAME_HEADER if returned_left.is_none() => {
                returned_left = wire::header_body_size(frame.payload);
                if returned_left.is_none() {
                    return Err(reader.protocol("a content header too short to read".to_string()).into());
                }
                if returned_left == Some(0) {
                    returned_left = None;
                }
            }
            FRAME_BODY => match returned_left {
                Some(left) if left >= frame.payload.len() as u64 => {
                    let left = left - frame.payload.len() as u64;
                    returned_left = if left == 0 { None } else { Some(left) };
                }
                _ => return Err(reader.protocol("a body frame that no basic.return announced".to_string()).into()),
            },
            FRAME_METHOD => {
                let Some(m) = wire::parse_method(frame.payload) else {
                    return Err(reader.protocol("an unreadable method frame".to_string()).into());
                };
                let now = ctx.shared.clock.now_ns();
                match m {
                    AMQPClass::Basic(basic::AMQPMethod::Ack(a)) => {
                        settle(&reader, ctx, a.delivery_tag, a.multiple, &mut dues)?;
                        samples.clear();
                        let window = ctx.shared.window();
                        for &due in &dues {
                            samples.push(now.saturating_sub(due), window.contains(due));
                        }
                        ctx.shared.produce.record(&samples);
                        ctx.shared.acked.fetch_add(dues.len() as u64, Ordering::Relaxed);
                        last_progress = Instant::now();
                    }
                    AMQPClass::Basic(basic::AMQPMethod::Nack(n)) => {
                        settle(&reader, ctx, n.delivery_tag, n.multiple, &mut dues)?;
                        ctx.stats.nacked.fetch_add(dues.len() as u64, Ordering::Relaxed);
                        last_progress = Instant::now();
                    }
                    AMQPClass::Basic(basic::AMQPMethod::Return(_)) => {
                        ctx.stats.returned.fetch_add(1, Ordering::Relaxed);
                        returned_left = None;
                    }
                    AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => return Ok(()),
                    AMQPClass::Connection(connection::AMQPMethod::Blocked(_)) => {
                        ctx.stats.blocked.fetch_add(1, Ordering::Relaxed);
                    }
                    AMQPClass::Connection(connection::AMQPMethod::Unblocked(_)) => {}
                    other => {
                        return Err(match conn::closed_by_broker(&ctx.addr, "publishing", channel, &other) {
                            Some(e) => e.into(),
                            None => reader.protocol(format!("an unexpected {other:?} while publishing")).into(),
                        });
                    }
                }
            }
            k => return Err(reader.protocol(format!("a frame of type {k} while publishing")).into()),
        }
    }
}

/// Takes what a confirm covers into `dues` and wakes the writer.
fn settle(reader: &FrameReader, ctx: &ReaderCtx, tag: u64, multiple: bool, dues: &mut Vec<u64>) -> Result<(), Error> {
    dues.clear();
    let r = lock(&ctx.confirms.state).settle(tag, multiple, dues);
    ctx.confirms.cv.notify_all();
    r.map_err(|detail| reader.protocol(detail).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multiple_ack_settles_every_publish_up_to_its_tag_once() {
        let mut u = Unconfirmed::default();
        for due in [10, 20, 30, 40] {
            u.push(due);
        }
        let mut out = Vec::new();
        u.settle(3, false, &mut out).expect("single ack");
        assert_eq!((out.clone(), u.outstanding()), (vec![30], 3));
        out.clear();
        u.settle(4, true, &mut out).expect("multiple ack");
        assert_eq!((out, u.outstanding()), (vec![10, 20, 40], 0));
        assert_eq!(u.push(50), 5, "sequence numbers go on after a full settle");
    }

    #[test]
    fn a_confirm_of_a_publish_never_sent_or_already_confirmed_is_refused() {
        let mut u = Unconfirmed::default();
        u.push(1);
        u.push(2);
        let mut out = Vec::new();
        assert!(u.settle(3, false, &mut out).expect_err("never sent").contains("never sent"));
        u.settle(1, false, &mut out).expect("first");
        assert!(u.settle(1, false, &mut out).expect_err("twice").contains("second confirm"));
        // A multiple ack over already-settled publishes is harmless.
        u.settle(2, true, &mut out).expect("multiple");
        assert_eq!(out, vec![1, 2]);
        assert_eq!(u.outstanding(), 0);
    }
}
