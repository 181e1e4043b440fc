//! Acknowledged writes survive SIGKILL: a producer (acks=all, no retries, no
//! idempotence, so each payload is sent at most once) writes continuously
//! while the broker is killed and restarted on the same port several times.
//! Every acknowledged message must then be in the log exactly once, at its
//! acknowledged offset, with contiguous offsets around it. A second run does
//! the same on a topic with tiny segments under retention, so the kills land
//! in segments that reuse retired files (their old batches lie after the
//! durable end): every acknowledged message the retention kept must be there.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, SeedableRng};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

const PARTITIONS: i32 = 2;
const KILLS: usize = 6;
const MAX_IN_FLIGHT: u64 = 2000;
/// Phase-0 pace: enough to keep every group commit busy, few enough to read
/// back quickly (the broker takes hundreds of thousands per second).
const RATE_PER_SEC: u64 = 40_000;

/// The payload of message `seq`: unique, self-describing, 60..=160 bytes.
fn payload(seq: u64) -> Vec<u8> {
    let mut s = seq.wrapping_mul(31) ^ 0xD00D;
    let len = 60 + (splitmix64(&mut s) % 101) as usize;
    let mut v = format!("dur:{seq:010}:").into_bytes();
    let fill = random_bytes(splitmix64(&mut s), len - v.len());
    v.extend(fill.into_iter().map(|b| b'a' + b % 26));
    v
}

fn seq_of(payload: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(payload.get(4..14)?).ok()?;
    if !payload.starts_with(b"dur:") {
        return None;
    }
    let seq = s.parse().ok()?;
    (payload == self::payload(seq).as_slice()).then_some(seq)
}

#[derive(Default)]
struct Recorder {
    /// (partition, offset, seq, phase) of every acknowledged message.
    acked: Mutex<Vec<(i32, i64, u64, u32)>>,
    failed: AtomicU64,
    done: AtomicU64,
    phase: AtomicU64,
    last_error: Mutex<Option<String>>,
}

struct Ctx(Arc<Recorder>);

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, r: &DeliveryResult<'_>, seq: Box<u64>) {
        let rec = &self.0;
        match r {
            Ok(m) => {
                let phase = rec.phase.load(Ordering::SeqCst) as u32;
                rec.acked.lock().unwrap().push((m.partition(), m.offset(), *seq, phase));
            }
            Err((e, _)) => {
                rec.failed.fetch_add(1, Ordering::SeqCst);
                *rec.last_error.lock().unwrap() = Some(e.to_string());
            }
        }
        rec.done.fetch_add(1, Ordering::SeqCst);
    }
}

fn make_producer(addr: &str, rec: Arc<Recorder>) -> ThreadedProducer<Ctx> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr)
        .set("broker.address.family", "v4")
        .set("acks", "all")
        .set("enable.idempotence", "false")
        // Each payload is sent once: a failed request is reported, not retried.
        .set("message.send.max.retries", "0")
        .set("retries", "0")
        .set("linger.ms", "2")
        .set("batch.num.messages", "200")
        .set("message.timeout.ms", "8000")
        .set("request.timeout.ms", "5000")
        .set("socket.timeout.ms", "5000")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .set("topic.metadata.refresh.interval.ms", "1000");
    c.create_with_context(Ctx(rec)).expect("create producer")
}

/// Sends `seq` to its partition, waiting while the local queue is full or
/// too many messages are unresolved. `sent` counts every message enqueued
/// by this producer (all phases), like `rec.done` counts resolved ones.
fn send(p: &ThreadedProducer<Ctx>, rec: &Recorder, topic: &str, seq: u64, sent: &AtomicU64) {
    let body = payload(seq);
    let key = seq.to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sent.load(Ordering::SeqCst).saturating_sub(rec.done.load(Ordering::SeqCst)) >= MAX_IN_FLIGHT {
        assert!(Instant::now() < deadline, "deliveries stalled for 60 s");
        thread::sleep(Duration::from_millis(1));
    }
    let mut record = BaseRecord::with_opaque_to(topic, Box::new(seq))
        .partition((seq % PARTITIONS as u64) as i32)
        .key(&key)
        .payload(&body);
    loop {
        match p.send(record) {
            Ok(()) => {
                sent.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                assert!(Instant::now() < deadline, "local queue full for 60 s");
                record = r;
                thread::sleep(Duration::from_millis(2));
            }
            Err((e, _)) => panic!("enqueue of message {seq} failed: {e}"),
        }
    }
}

#[test]
fn acknowledged_messages_survive_repeated_sigkill_exactly_once_at_their_offsets() {
    survive_sigkills(BrokerOpts::default().segment_bytes(8 << 20).flush("always"), &[], None, false);
}

#[test]
fn acknowledged_messages_survive_sigkill_with_two_commit_writes_in_flight() {
    // At most 4 KiB of batches per write, and a 2 ms linger so that each
    // commit finds several batches queued: a write then ends on a page
    // boundary and the next one starts while it is in flight, so the kills
    // land with two writes outstanding (asserted from the metrics).
    let opts = BrokerOpts::default()
        .segment_bytes(8 << 20)
        .flush("always")
        .arg("--commit-max-bytes")
        .arg("4096")
        .arg("--commit-linger-us")
        .arg("2000");
    survive_sigkills(opts, &[], None, true);
}

#[test]
fn acknowledged_messages_survive_sigkill_in_segments_that_reuse_retired_files() {
    let opts = || BrokerOpts::default().segment_bytes(8 << 20).flush("always");
    // 256 KiB segments, 512 KiB kept, retention every 100 ms: at the test's
    // pace each partition rolls several times a second onto recycled files.
    let topic_configs = [("segment.bytes", "262144"), ("retention.bytes", "524288")];
    survive_sigkills(
        opts().arg("--retention-check-ms").arg("100"),
        &topic_configs,
        Some(opts().arg("--retention-check-ms").arg("3600000")),
        false,
    );
}

const OVERLAPPED: &str = "ringmq_partition_commit_writes_overlapped_total";
const RECYCLED: &str = "ringmq_partition_segments_recycled_total";

/// The sum of a per-partition counter over the partitions of `topic`.
fn partition_counter(metrics: &str, name: &str, topic: &str) -> i64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(&format!("topic=\"{topic}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
        .sum()
}

/// The test body: `topic_configs` for the topic; with `readback_opts`, the
/// broker is stopped cleanly and started with those options before the
/// read-back (to stop retention), and that clean restart must not report a
/// dropped tail. With `expect_overlapped_writes`, some run before a kill
/// must have started commit writes while another was in flight.
fn survive_sigkills(
    opts: BrokerOpts,
    topic_configs: &[(&str, &str)],
    readback_opts: Option<BrokerOpts>,
    expect_overlapped_writes: bool,
) {
    let t0 = Instant::now();
    let under_retention = readback_opts.is_some();
    let mut broker = Broker::start(opts);
    let addr = broker.addr();
    let topic = unique_topic("dur");
    create_topic(&addr, &topic, PARTITIONS, topic_configs);

    let rec = Arc::new(Recorder::default());
    let producer = Arc::new(make_producer(&addr, rec.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let next_seq = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));

    // Phase 0: produce continuously until told to stop.
    let writer = {
        let (producer, rec, stop, next_seq, topic, sent) =
            (producer.clone(), rec.clone(), stop.clone(), next_seq.clone(), topic.clone(), sent.clone());
        thread::spawn(move || {
            let started = Instant::now();
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(120) {
                let seq = next_seq.fetch_add(1, Ordering::SeqCst);
                send(&producer, &rec, &topic, seq, &sent);
                if seq % 500 == 0 {
                    let due = Duration::from_micros(seq * 1_000_000 / RATE_PER_SEC);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        thread::sleep(wait);
                    }
                }
            }
        })
    };

    let mut rng = rand::rngs::StdRng::seed_from_u64(std::process::id() as u64 ^ 0xC0FFEE);
    // Let the first run take some traffic too.
    thread::sleep(Duration::from_millis(rng.gen_range(200..=1500)));
    let mut per_kill = Vec::new();
    let mut overlapped_writes = 0;
    for k in 0..KILLS {
        let mut overlapped_now = partition_counter(&broker.metrics(), OVERLAPPED, &topic);
        if expect_overlapped_writes && k == KILLS - 1 && overlapped_writes + overlapped_now == 0 {
            // The runs' lengths are random: if none saw overlapping writes
            // yet, the last one runs until it does.
            overlapped_now =
                wait_for("a commit write started while another was in flight, before the last kill", || {
                    let n = partition_counter(&broker.metrics(), OVERLAPPED, &topic);
                    (n > 0).then_some(n)
                });
        }
        overlapped_writes += overlapped_now;
        let acked_before = rec.acked.lock().unwrap().len();
        broker.kill9();
        per_kill.push((acked_before, next_seq.load(Ordering::SeqCst)));
        // Keep the broker down a little while sometimes, so requests fail.
        if k % 2 == 1 {
            thread::sleep(Duration::from_millis(rng.gen_range(50..300)));
        }
        broker.restart();
        assert_eq!(broker.addr(), addr);
        thread::sleep(Duration::from_millis(rng.gen_range(200..=1500)));
    }
    // Let the last run take traffic (under retention, until a roll reused a
    // retired file), then stop the writer and resolve everything.
    thread::sleep(Duration::from_millis(1000));
    if under_retention {
        wait_for("a segment of the last run to reuse a retired file", || {
            (partition_counter(&broker.metrics(), RECYCLED, &topic) > 0).then_some(())
        });
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer thread");
    producer.flush(Duration::from_secs(30)).expect("flush after the kills");
    let sent0 = sent.load(Ordering::SeqCst);
    assert_eq!(rec.done.load(Ordering::SeqCst), sent0, "every message resolved");
    broker.assert_running();

    let phase0_acked = rec.acked.lock().unwrap().len();
    let phase0_failed = rec.failed.load(Ordering::SeqCst);
    eprintln!(
        "phase 0: sent {sent0}, acked {phase0_acked}, failed {phase0_failed} (last error {:?}); per kill (acked, sent): {per_kill:?}",
        rec.last_error.lock().unwrap()
    );
    assert!(phase0_acked > 0, "no message was acknowledged at all");
    if expect_overlapped_writes {
        eprintln!("commit writes started while another was in flight, before the kills: {overlapped_writes}");
        assert!(overlapped_writes > 0, "no kill came after overlapping commit writes");
    }

    // Final phase: every write must succeed, right after the durable end.
    let hw_before: Vec<i64> = (0..PARTITIONS).map(|p| watermarks(&addr, &topic, p).1).collect();
    rec.phase.store(1, Ordering::SeqCst);
    let final_from = next_seq.load(Ordering::SeqCst);
    let done_before = rec.done.load(Ordering::SeqCst);
    for seq in final_from..final_from + 400 {
        send(&producer, &rec, &topic, seq, &sent);
    }
    producer.flush(Duration::from_secs(30)).expect("flush final phase");
    assert_eq!(rec.done.load(Ordering::SeqCst) - done_before, 400);
    assert_eq!(
        rec.failed.load(Ordering::SeqCst),
        phase0_failed,
        "final-phase writes failed: {:?}",
        rec.last_error.lock().unwrap()
    );

    let acked = rec.acked.lock().unwrap().clone();
    // Final-phase offsets: start exactly at the high watermark seen before
    // it, and lie after every earlier acknowledged offset.
    for p in 0..PARTITIONS {
        let earlier_max = acked.iter().filter(|a| a.0 == p && a.3 == 0).map(|a| a.1).max().unwrap_or(-1);
        let mut finals: Vec<i64> = acked.iter().filter(|a| a.0 == p && a.3 == 1).map(|a| a.1).collect();
        finals.sort();
        assert_eq!(finals.len(), 200, "final-phase acks on partition {p}");
        assert_eq!(finals[0], hw_before[p as usize], "partition {p}: first final offset vs high watermark before it");
        assert!(
            finals[0] > earlier_max,
            "partition {p}: final-phase offset {} not after earlier acknowledged offset {earlier_max}",
            finals[0]
        );
        assert_eq!(
            finals,
            (finals[0]..finals[0] + 200).collect::<Vec<_>>(),
            "partition {p}: final-phase offsets not contiguous"
        );
    }

    // Read everything back.
    broker.assert_running();
    if let Some(readback_opts) = readback_opts {
        let metrics = broker.metrics();
        let recycled = partition_counter(&metrics, RECYCLED, &topic);
        assert!(recycled > 0, "no segment reused a retired file in the last run:\n{metrics}");
        // After a clean stop nothing was cut off: no tail is dropped or zeroed.
        let repairs = |log: String| {
            log.lines().filter(|l| l.contains("recovery: dropped") || l.contains("after the valid end")).count()
        };
        let before = repairs(broker.log());
        broker.stop();
        broker.restart_with(readback_opts);
        assert_eq!(repairs(broker.log()), before, "a clean restart repaired a tail");
    }
    let ends: Vec<(i32, i64)> = (0..PARTITIONS).map(|p| (p, watermarks(&addr, &topic, p).1)).collect();
    let log = read_partitions(&addr, &topic, &ends, Duration::from_secs(120));
    let mut where_: HashMap<u64, (i32, i64)> = HashMap::new();
    let mut unacked_present = 0usize;
    let acked_at: BTreeMap<(i32, i64), u64> = acked.iter().map(|a| ((a.0, a.1), a.2)).collect();
    assert_eq!(acked_at.len(), acked.len(), "two acknowledgements for the same (partition, offset)");
    // Where each partition's log starts: 0, or past what retention deleted.
    let starts: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, watermarks(&addr, &topic, p).0)).collect();
    if !under_retention {
        assert!(starts.values().all(|&s| s == 0), "nothing deletes records here: {starts:?}");
    }
    for (&p, recs) in &log {
        for (n, r) in recs.iter().enumerate() {
            assert_eq!(
                r.offset,
                starts[&p] + n as i64,
                "partition {p}: offsets not contiguous from the log start at position {n}"
            );
            let body = r.payload.as_deref().unwrap_or_default();
            let seq = seq_of(body).unwrap_or_else(|| {
                panic!(
                    "partition {p} offset {}: payload is not one we sent: {:?}",
                    r.offset,
                    String::from_utf8_lossy(body)
                )
            });
            assert!(seq < final_from + 400, "partition {p} offset {}: seq {seq} was never sent", r.offset);
            assert_eq!(seq % PARTITIONS as u64, p as u64, "message {seq} found on the wrong partition {p}");
            if let Some(prev) = where_.insert(seq, (p, r.offset)) {
                panic!("message {seq} is in the log twice: at {prev:?} and at ({p}, {})", r.offset);
            }
            if !acked_at.contains_key(&(p, r.offset)) {
                unacked_present += 1;
            }
        }
    }
    let mut retired = 0usize;
    for &(p, off, seq, _) in &acked {
        if off < starts[&p] {
            retired += 1;
            continue;
        }
        match where_.get(&seq) {
            Some(&(gp, goff)) => assert_eq!(
                (gp, goff),
                (p, off),
                "acknowledged message {seq} was acked at ({p}, {off}) but is at ({gp}, {goff})"
            ),
            None => panic!(
                "acknowledged message {seq} (partition {p}, offset {off}) is missing; the log holds {} records on that partition",
                log[&p].len()
            ),
        }
    }
    if under_retention {
        assert!(retired > 0, "retention deleted no acknowledged message: the test did not exercise it");
    }
    eprintln!(
        "verified {} acknowledged messages ({} deleted by retention, {} present unacknowledged) in {:?}",
        acked.len() - retired,
        retired,
        unacked_present,
        t0.elapsed()
    );
    let warned = broker.log().matches("recovery: dropped").count();
    eprintln!("broker logged `recovery: dropped` {warned} times over {KILLS} kills");
}
