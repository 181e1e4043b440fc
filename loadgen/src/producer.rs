//! Producer threads. Each producer owns one connection per partition leader,
//! a writer loop and, per connection, a reader thread.
//!
//! Open loop (`--rate R`): message k of producer i is due at
//! `start + (k·P + i)/R`. The writer batches due messages per partition (up to
//! `--batch-max-bytes`, or until `--linger-us` after the first is due) and
//! pipelines up to `--max-in-flight` Produce requests per connection. Latency
//! counts from the due time, so a broker that stalls the sender shows up in
//! the tail rather than slowing the schedule (no coordinated omission).
//! Messages that fall due while the sender is blocked are generated lazily
//! once it can send again, so memory stays bounded.
//!
//! Closed loop (`--rate 0`): batches are filled and sent as fast as the
//! in-flight limit allows, each message timed from its creation.
//!
//! The reader thread matches each response to the oldest request in flight
//! (Kafka answers in order; the correlation id is checked) and records the
//! ack latency of every message of that request.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

use crate::cli::RunConfig;
use crate::client::{ConnectOptions, Connection, FrameReader, FrameWriter};
use crate::cluster::TopicLayout;
use crate::error::{code_name, Error};
use crate::histo::{lock, Samples};
use crate::payload::{partition_for_key, KeyGen, Padding, Stamp};
use crate::shared::Shared;

/// Longest a loop sleeps before looking at the stop flag again.
const POLL: Duration = Duration::from_millis(100);
/// Record overhead in a batch beyond key and value (varints, attributes).
const RECORD_OVERHEAD: usize = 12;

/// When each message of one producer is due.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// Run start (warmup included), ns since the epoch.
    pub start_ns: u64,
    /// Nothing is due at or after this.
    pub end_ns: u64,
    /// ns between two messages of this producer (open loop).
    interval_ns: f64,
    /// This producer's offset inside the first interval.
    offset_ns: f64,
    closed: bool,
}

impl Schedule {
    pub fn new(start_ns: u64, end_ns: u64, rate: f64, producers: usize, index: usize) -> Schedule {
        if rate <= 0.0 {
            return Schedule { start_ns, end_ns, interval_ns: 0.0, offset_ns: 0.0, closed: true };
        }
        let per_msg = 1e9 / rate;
        Schedule {
            start_ns,
            end_ns,
            interval_ns: per_msg * producers as f64,
            offset_ns: per_msg * index as f64,
            closed: false,
        }
    }

    /// Due time of message `k` (open loop).
    pub fn intended(&self, k: u64) -> u64 {
        self.start_ns + (self.offset_ns + k as f64 * self.interval_ns) as u64
    }
}

/// Messages waiting for a partition's next batch.
#[derive(Default)]
struct PartBuf {
    entries: Vec<(Option<Bytes>, Bytes)>,
    intended: Vec<u64>,
    bytes: usize,
}

/// One Produce request awaiting its response.
struct Pending {
    corr: i32,
    /// (partition, due time of each message)
    batches: Vec<(i32, Vec<u64>)>,
}

/// The requests in flight on one connection.
#[derive(Default)]
struct InFlight {
    queue: Mutex<VecDeque<Pending>>,
    cv: Condvar,
    /// The writer is done: the reader exits once the queue is empty.
    closing: AtomicBool,
}

impl InFlight {
    fn len(&self) -> usize {
        lock(&self.queue).len()
    }
}

/// One connection of a producer (to one partition leader).
struct Link {
    writer: FrameWriter,
    reader: Option<FrameReader>,
    version: i16,
    /// Positions in `TopicLayout::partitions` this leader leads.
    parts: Vec<usize>,
    inflight: Arc<InFlight>,
    reader_thread: Option<JoinHandle<()>>,
}

/// A connected producer, ready to start.
pub struct Producer {
    index: usize,
    cfg: Arc<RunConfig>,
    layout: Arc<TopicLayout>,
    shared: Arc<Shared>,
    links: Vec<Link>,
    /// Link of each partition position.
    link_of: Vec<usize>,
    schedule: Schedule,
}

impl Producer {
    /// Opens one connection per distinct leader.
    pub fn connect(
        index: usize,
        cfg: Arc<RunConfig>,
        layout: Arc<TopicLayout>,
        shared: Arc<Shared>,
        schedule: Schedule,
    ) -> Result<Producer, Error> {
        let opts = ConnectOptions {
            client_id: format!("{}-producer-{index}", cfg.client_id),
            request_timeout: cfg.request_timeout,
        };
        let mut links: Vec<Link> = Vec::new();
        let mut link_of = Vec::with_capacity(layout.partitions.len());
        for (pos, p) in layout.partitions.iter().enumerate() {
            let li = match links.iter().position(|l| l.writer.addr() == p.leader_addr) {
                Some(li) => li,
                None => {
                    let conn = Connection::connect(&p.leader_addr, &opts)?;
                    if let Ok(s) = conn.writer.socket() {
                        shared.register_socket(s);
                    }
                    let (writer, reader, versions) = conn.split();
                    links.push(Link {
                        writer,
                        reader: Some(reader),
                        version: versions.produce,
                        parts: Vec::new(),
                        inflight: Arc::new(InFlight::default()),
                        reader_thread: None,
                    });
                    links.len() - 1
                }
            };
            links[li].parts.push(pos);
            link_of.push(li);
        }
        Ok(Producer { index, cfg, layout, shared, links, link_of, schedule })
    }

    /// Starts the producer's threads; the handle's thread ends when the
    /// schedule is done and every request is answered, or on failure.
    pub fn spawn(self) -> Result<JoinHandle<()>, Error> {
        let shared = self.shared.clone();
        let index = self.index;
        thread::Builder::new()
            .name(format!("producer-{index}"))
            .spawn(move || {
                tight_timer_slack();
                if let Err(e) = self.run() {
                    shared.fail(e);
                }
            })
            .map_err(|e| Error::Panic { role: "producer", detail: format!("cannot start thread: {e}") })
    }

    fn run(mut self) -> Result<(), Error> {
        for link in self.links.iter_mut() {
            if self.cfg.acks == 0 {
                continue; // no responses to read
            }
            let Some(reader) = link.reader.take() else { continue };
            let inflight = link.inflight.clone();
            let shared = self.shared.clone();
            let topic = self.layout.topic.clone();
            let version = link.version;
            let handle = thread::Builder::new()
                .name(format!("producer-{}-acks", self.index))
                .spawn(move || {
                    if let Err(e) = read_acks(reader, version, &inflight, &shared, &topic) {
                        if !shared.stopped() {
                            shared.fail(e);
                        }
                    }
                })
                .map_err(|e| Error::Panic { role: "producer", detail: format!("cannot start thread: {e}") })?;
            link.reader_thread = Some(handle);
        }
        let result = self.write_loop();
        let drained = if result.is_ok() { self.wait_drained() } else { Ok(()) };
        for link in self.links.iter_mut() {
            link.inflight.closing.store(true, Ordering::SeqCst);
            link.inflight.cv.notify_all();
        }
        if result.is_err() || drained.is_err() {
            // Readers may be blocked on a response that will not come.
            for link in &self.links {
                if let Ok(s) = link.writer.socket() {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
            }
        }
        for link in self.links.iter_mut() {
            if let Some(h) = link.reader_thread.take() {
                let _ = h.join();
            }
        }
        result.and(drained)
    }

    /// Waits until every request in flight is answered.
    fn wait_drained(&self) -> Result<(), Error> {
        let deadline = Instant::now() + self.cfg.request_timeout + Duration::from_secs(1);
        for link in &self.links {
            let mut q = lock(&link.inflight.queue);
            while !q.is_empty() && !self.shared.stopped() {
                if Instant::now() >= deadline {
                    return Err(Error::Produce {
                        topic: self.layout.topic.clone(),
                        partition: -1,
                        detail: format!(
                            "{} request(s) still unanswered {:?} after the last send",
                            q.len(),
                            self.cfg.request_timeout
                        ),
                    });
                }
                q = link.inflight.cv.wait_timeout(q, POLL).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
            }
        }
        Ok(())
    }

    fn write_loop(&mut self) -> Result<(), Error> {
        let cfg = self.cfg.clone();
        let shared = self.shared.clone();
        let np = self.layout.partitions.len();
        let seed = (shared.run_id as u64) << 16 | self.index as u64;
        let mut padding = Padding::new(cfg.size, seed);
        let mut keys = KeyGen::new(cfg.key_distribution, cfg.keys, seed);
        let keyed = cfg.key_distribution != crate::payload::KeyDistribution::None;
        let mut bufs: Vec<PartBuf> = (0..np).map(|_| PartBuf::default()).collect();
        let sched = self.schedule;
        let closed = sched.closed;
        let linger_ns = cfg.linger.as_nanos() as u64;
        let est_record = cfg.size + RECORD_OVERHEAD + if keyed { 10 } else { 0 };
        let mut next_k: u64 = 0;
        // A generated message whose partition's batch was full: (position, key, due, k).
        let mut held: Option<(usize, Option<Bytes>, u64, u64)> = None;
        let mut sticky = self.index % np;
        let mut generation_done = false;

        loop {
            if shared.stopped() {
                return Ok(());
            }
            let now = shared.clock.now_ns();

            // 1. Put every message that is due into its partition's batch.
            while !generation_done {
                let (pos, key, due, k) = match held.take() {
                    Some(h) => h,
                    None => {
                        let due = if closed { now } else { sched.intended(next_k) };
                        if due >= sched.end_ns || (closed && now >= sched.end_ns) {
                            generation_done = true;
                            break;
                        }
                        if due > now {
                            break;
                        }
                        let key = keys.next_key();
                        let pos = match &key {
                            Some(k) => partition_for_key(k, np),
                            None => sticky,
                        };
                        let k = next_k;
                        next_k += 1;
                        (pos, key, due, k)
                    }
                };
                let rec = cfg.size + RECORD_OVERHEAD + key.as_ref().map_or(0, |k| k.len());
                let b = &mut bufs[pos];
                if !b.entries.is_empty() && b.bytes + rec > cfg.batch_max_bytes {
                    held = Some((pos, key, due, k));
                    break;
                }
                let value = padding.value(Stamp {
                    run_id: shared.run_id,
                    intended_ns: due,
                    seq: ((self.index as u64) << 48) | k,
                });
                b.entries.push((key, value));
                b.intended.push(due);
                b.bytes += rec;
            }

            // 2. Send what is ready, as far as the in-flight limit allows.
            let mut sent_any = false;
            let mut blocked_link = None;
            let mut blocked = vec![false; self.links.len()];
            #[allow(clippy::needless_range_loop)] // `send` needs `&mut self`
            for li in 0..self.links.len() {
                let ready = self.links[li].parts.iter().any(|&p| {
                    let b = &bufs[p];
                    !b.entries.is_empty()
                        && (generation_done
                            || held.as_ref().is_some_and(|h| h.0 == p)
                            || b.bytes + est_record > cfg.batch_max_bytes
                            || (!closed && now >= b.intended[0].saturating_add(linger_ns)))
                });
                if !ready {
                    continue;
                }
                if cfg.acks != 0 && self.links[li].inflight.len() >= cfg.max_in_flight {
                    blocked_link = Some(li);
                    blocked[li] = true;
                    continue;
                }
                self.send(li, &mut bufs)?;
                sent_any = true;
                if !keyed {
                    sticky = (sticky + 1) % np;
                    if let Some(h) = held.as_mut() {
                        // The held message follows the sticky partition.
                        h.0 = sticky;
                    }
                }
            }
            if generation_done && held.is_none() && bufs.iter().all(|b| b.entries.is_empty()) {
                return Ok(());
            }
            if sent_any {
                continue;
            }

            // 3. Wait for the next due message, linger expiry or free slot.
            let mut deadline = u64::MAX;
            if !generation_done && held.is_none() && !closed {
                deadline = sched.intended(next_k);
            }
            if !closed {
                // Lingering batches of links that can send (a blocked link
                // waits for a free slot whatever its batches' age).
                for (pos, b) in bufs.iter().enumerate() {
                    if !b.entries.is_empty() && !blocked[self.link_of[pos]] {
                        deadline = deadline.min(b.intended[0].saturating_add(linger_ns));
                    }
                }
            }
            let now = shared.clock.now_ns();
            let wait = Duration::from_nanos(deadline.saturating_sub(now)).min(POLL);
            match blocked_link {
                Some(li) if !wait.is_zero() => {
                    let inflight = &self.links[li].inflight;
                    let q = lock(&inflight.queue);
                    if q.len() >= cfg.max_in_flight {
                        let _ = inflight.cv.wait_timeout(q, wait);
                    }
                }
                Some(_) => {}
                None if !wait.is_zero() => thread::sleep(wait),
                None => {}
            }
        }
    }

    /// Sends one Produce request with every non-empty batch of link `li`.
    fn send(&mut self, li: usize, bufs: &mut [PartBuf]) -> Result<(), Error> {
        let cfg = &self.cfg;
        let shared = &self.shared;
        let timestamp_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        let mut partition_data = Vec::new();
        let mut batches = Vec::new();
        for &pos in &self.links[li].parts {
            let b = &mut bufs[pos];
            if b.entries.is_empty() {
                continue;
            }
            let records = encode_records(&b.entries, timestamp_ms, cfg.compression.codec())?;
            let partition = self.layout.partitions[pos].index;
            partition_data.push(PartitionProduceData::default().with_index(partition).with_records(Some(records)));
            batches.push((partition, std::mem::take(&mut b.intended)));
            b.entries.clear();
            b.bytes = 0;
        }
        let req = ProduceRequest::default()
            .with_acks(cfg.acks)
            .with_timeout_ms(cfg.request_timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(self.layout.topic.clone())))
                .with_partition_data(partition_data)]);
        let link = &mut self.links[li];
        let corr = link.writer.send(&req, link.version)?;
        let written = shared.clock.now_ns();
        let mut delays = Samples::default();
        let mut n = 0u64;
        for (_, due) in &batches {
            for &d in due {
                delays.push(written.saturating_sub(d), shared.window().contains(d));
                n += 1;
            }
        }
        shared.send_delay.record(&delays);
        shared.sent.fetch_add(n, Ordering::Relaxed);
        if cfg.acks == 0 {
            // No response will come: the write is as far as the client sees.
            shared.produce.record(&delays);
            shared.acked.fetch_add(n, Ordering::Relaxed);
        } else {
            lock(&link.inflight.queue).push_back(Pending { corr, batches });
            link.inflight.cv.notify_all();
        }
        Ok(())
    }
}

/// Lets this thread's sleeps end within a few µs of their deadline instead of
/// the default 50 µs timer slack, which would otherwise add to every
/// measured latency (the send delay shows what remains).
pub(crate) fn tight_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK only changes the calling thread's timer slack.
    unsafe {
        libc::prctl(
            libc::PR_SET_TIMERSLACK,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        );
    }
}

/// Reads Produce responses in order and records each message's ack latency.
fn read_acks(
    mut reader: FrameReader,
    version: i16,
    inflight: &InFlight,
    shared: &Shared,
    topic: &str,
) -> Result<(), Error> {
    let mut samples = Samples::default();
    loop {
        let corr = {
            let mut q = lock(&inflight.queue);
            loop {
                if let Some(p) = q.front() {
                    break p.corr;
                }
                if inflight.closing.load(Ordering::SeqCst) || shared.stopped() {
                    return Ok(());
                }
                q = inflight.cv.wait_timeout(q, POLL).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
            }
        };
        let resp = reader.recv::<ProduceRequest>(version, corr);
        let now = shared.clock.now_ns();
        let resp = resp?;
        for t in &resp.responses {
            for p in &t.partition_responses {
                if p.error_code != 0 {
                    let msg = p.error_message.as_ref().map(|m| format!(": {m}")).unwrap_or_default();
                    return Err(Error::Produce {
                        topic: topic.to_string(),
                        partition: p.index,
                        detail: format!("{}{msg}", code_name(p.error_code)),
                    });
                }
            }
        }
        let pending = {
            let mut q = lock(&inflight.queue);
            let p = q.pop_front();
            inflight.cv.notify_all();
            p
        };
        let Some(pending) = pending else { continue };
        samples.clear();
        for (_, due) in &pending.batches {
            for &d in due {
                samples.push(now.saturating_sub(d), shared.window().contains(d));
            }
        }
        shared.acked.fetch_add(samples.values.len() as u64, Ordering::Relaxed);
        shared.produce.record(&samples);
    }
}

/// One RecordBatch v2 of `entries`, compressed with `compression`
/// (ringmq's own batch encoder).
pub fn encode_records(
    entries: &[(Option<Bytes>, Bytes)],
    timestamp_ms: i64,
    compression: Compression,
) -> Result<Bytes, Error> {
    ringmq::kafka::record_batch::encode_batch_compressed(entries, timestamp_ms, compression)
        .map(BytesMut::freeze)
        .map_err(Error::Batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn the_open_loop_schedule_interleaves_producers_at_the_total_rate() {
        let a = Schedule::new(0, u64::MAX, 1000.0, 2, 0);
        let b = Schedule::new(0, u64::MAX, 1000.0, 2, 1);
        assert_eq!(a.intended(0), 0);
        assert_eq!(b.intended(0), 1_000_000);
        assert_eq!(a.intended(1), 2_000_000);
        assert_eq!(b.intended(1), 3_000_000);
        // 10 s at 1000/s over two producers: 5000 each.
        let ten_s = 10_000_000_000u64;
        assert_eq!((0..).take_while(|&k| a.intended(k) < ten_s).count(), 5000);
    }

    #[test]
    fn every_codec_round_trips_through_the_decoder() {
        let entries: Vec<(Option<Bytes>, Bytes)> =
            (0..20).map(|i| (Some(Bytes::from(format!("k{i}"))), Bytes::from(vec![b'A' + i as u8; 100]))).collect();
        for c in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let mut bytes = encode_records(&entries, 1, c).expect("encode");
            let set = RecordBatchDecoder::decode(&mut bytes).expect("decode");
            assert_eq!(set.records.len(), 20, "{c:?}");
            assert_eq!(set.records[19].value.as_deref(), Some(&[b'A' + 19; 100][..]), "{c:?}");
        }
    }
}
