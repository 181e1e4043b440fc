//! Idempotent producers: InitProducerId, per-partition sequence checks,
//! duplicate detection (also across a SIGKILL), and librdkafka's idempotent
//! producer delivering exactly once, in order, while the broker is killed.
//!
//! The raw-protocol tests build requests with the kafka-protocol crate and
//! batches with ringmq's own encoder, so they control producer id, epoch and
//! sequence exactly.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::*;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId, RequestHeader,
    ResponseHeader, TopicName, TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use ringmq::kafka::record_batch::{encode_idempotent_batch, Producer as BatchProducer};

const NONE: i16 = 0;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const PRODUCE_VERSION: i16 = 8;
const INIT_PRODUCER_ID_VERSION: i16 = 4;

// ---------------------------------------------------------------------------
// A raw Kafka connection
// ---------------------------------------------------------------------------

struct Raw {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl Raw {
    fn connect(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
        stream.set_nodelay(true).expect("nodelay");
        Raw { stream, next_correlation_id: 1 }
    }

    /// Sends a request without waiting for its answer; returns its correlation id.
    fn send<Req: Encodable + HeaderVersion>(&mut self, key: ApiKey, version: i16, req: &Req) -> i32 {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("idempotence-test")))
            .encode(&mut buf, Req::header_version(version))
            .expect("encode header");
        req.encode(&mut buf, version).expect("encode request");
        let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&buf);
        self.stream.write_all(&frame).expect("send request");
        correlation_id
    }

    /// Reads the next response, which must answer `correlation_id`.
    fn recv<Resp: Decodable + HeaderVersion>(&mut self, version: i16, correlation_id: i32) -> Resp {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).expect("response size");
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).expect("response body");
        let mut buf = Bytes::from(body);
        let header = ResponseHeader::decode(&mut buf, Resp::header_version(version)).expect("response header");
        assert_eq!(header.correlation_id, correlation_id, "responses come in request order");
        Resp::decode(&mut buf, version).expect("decode response")
    }

    fn init_producer_id(
        &mut self,
        current: Option<(i64, i16)>,
        transactional_id: Option<&str>,
    ) -> InitProducerIdResponse {
        let (id, epoch) = current.unwrap_or((-1, -1));
        let req = InitProducerIdRequest::default()
            .with_transactional_id(transactional_id.map(|t| TransactionalId(StrBytes::from_string(t.to_string()))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch);
        let corr = self.send(ApiKey::InitProducerId, INIT_PRODUCER_ID_VERSION, &req);
        self.recv(INIT_PRODUCER_ID_VERSION, corr)
    }

    /// A new producer id and epoch; panics on an error.
    fn new_producer(&mut self) -> (i64, i16) {
        let r = self.init_producer_id(None, None);
        assert_eq!(r.error_code, NONE, "InitProducerId error");
        assert!(r.producer_id.0 >= 0, "producer id {}", r.producer_id.0);
        (r.producer_id.0, r.producer_epoch)
    }

    fn send_produce(&mut self, topic: &str, partition: i32, records: Bytes) -> i32 {
        let req = ProduceRequest::default()
            .with_transactional_id(None)
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records))])]);
        self.send(ApiKey::Produce, PRODUCE_VERSION, &req)
    }

    /// (error code, base offset) of the partition's answer.
    fn recv_produce(&mut self, correlation_id: i32) -> (i16, i64) {
        let resp: ProduceResponse = self.recv(PRODUCE_VERSION, correlation_id);
        let p = &resp.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    fn produce(&mut self, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
        let corr = self.send_produce(topic, partition, records);
        self.recv_produce(corr)
    }
}

/// A batch of `count` records from producer (`id`, `epoch`) starting at `base_sequence`.
fn batch(id: i64, epoch: i16, base_sequence: i32, count: usize) -> Bytes {
    let entries: Vec<(Option<Bytes>, Bytes)> =
        (0..count).map(|i| (None, Bytes::from(format!("pid{id}-e{epoch}-s{}", base_sequence as usize + i)))).collect();
    encode_idempotent_batch(&entries, 1_700_000_000_000, BatchProducer { id, epoch, base_sequence })
        .expect("encode batch")
        .freeze()
}

fn high_watermark(addr: &str, topic: &str) -> i64 {
    watermarks(addr, topic, 0).1
}

// ---------------------------------------------------------------------------
// Raw-protocol behaviour
// ---------------------------------------------------------------------------

#[test]
fn retried_batch_gets_its_original_offset_and_is_not_appended_again() {
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("idem-dup");
    create_topic(&addr, &topic, 1, &[]);
    let mut raw = Raw::connect(&addr);
    let (id, epoch) = raw.new_producer();

    assert_eq!(raw.produce(&topic, 0, batch(id, epoch, 0, 3)), (NONE, 0));
    assert_eq!(raw.produce(&topic, 0, batch(id, epoch, 3, 2)), (NONE, 3));
    assert_eq!(high_watermark(&addr, &topic), 5);
    // Retries of either batch: acknowledged at the original offsets.
    assert_eq!(raw.produce(&topic, 0, batch(id, epoch, 0, 3)), (NONE, 0));
    assert_eq!(raw.produce(&topic, 0, batch(id, epoch, 3, 2)), (NONE, 3));
    assert_eq!(high_watermark(&addr, &topic), 5, "duplicates must not grow the log");
    // The producer continues where it was.
    assert_eq!(raw.produce(&topic, 0, batch(id, epoch, 5, 1)), (NONE, 5));
}

#[test]
fn retry_sent_before_the_original_is_committed_gets_the_same_offset() {
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("idem-inflight");
    create_topic(&addr, &topic, 1, &[]);
    let mut raw = Raw::connect(&addr);
    let (id, epoch) = raw.new_producer();
    // Pipelined: the copies are handled while the first is still waiting for its commit.
    let rounds = 50;
    let mut sent = Vec::new();
    for round in 0..rounds {
        let b = batch(id, epoch, round * 2, 2);
        for _ in 0..3 {
            sent.push((round, raw.send_produce(&topic, 0, b.clone())));
        }
    }
    for (round, corr) in sent {
        assert_eq!(raw.recv_produce(corr), (NONE, i64::from(round) * 2), "round {round}");
    }
    assert_eq!(high_watermark(&addr, &topic), i64::from(rounds) * 2);
}

#[test]
fn sequence_gap_is_rejected_with_out_of_order_sequence_number() {
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("idem-gap");
    create_topic(&addr, &topic, 1, &[]);
    let mut raw = Raw::connect(&addr);
    let (id, epoch) = raw.new_producer();
    assert_eq!(raw.produce(&topic, 0, batch(id, epoch, 0, 2)), (NONE, 0));
    let (code, _) = raw.produce(&topic, 0, batch(id, epoch, 3, 1));
    assert_eq!(code, OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert_eq!(high_watermark(&addr, &topic), 2, "the out-of-order batch must not be appended");
    assert_eq!(raw.produce(&topic, 0, batch(id, epoch, 2, 1)), (NONE, 2));
}

#[test]
fn older_epoch_is_rejected_with_invalid_producer_epoch() {
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("idem-fence");
    create_topic(&addr, &topic, 1, &[]);
    let mut raw = Raw::connect(&addr);
    let (id, _) = raw.new_producer();
    assert_eq!(raw.produce(&topic, 0, batch(id, 0, 0, 1)), (NONE, 0));
    // The producer bumps its epoch (as librdkafka does locally): sequence restarts at 0.
    assert_eq!(raw.produce(&topic, 0, batch(id, 1, 0, 1)), (NONE, 1));
    let (code, _) = raw.produce(&topic, 0, batch(id, 0, 1, 1));
    assert_eq!(code, INVALID_PRODUCER_EPOCH);
    assert_eq!(high_watermark(&addr, &topic), 2);
}

#[test]
fn new_epoch_must_start_at_sequence_zero() {
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("idem-newepoch");
    create_topic(&addr, &topic, 1, &[]);
    let mut raw = Raw::connect(&addr);
    let (id, epoch) = raw.new_producer();
    assert_eq!(raw.produce(&topic, 0, batch(id, epoch, 0, 1)), (NONE, 0));
    let (code, _) = raw.produce(&topic, 0, batch(id, epoch + 1, 1, 1));
    assert_eq!(code, OUT_OF_ORDER_SEQUENCE_NUMBER);
}

#[test]
fn epoch_bump_request_keeps_the_producer_id_and_adds_one_to_the_epoch() {
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let mut raw = Raw::connect(&addr);
    let (id, epoch) = raw.new_producer();
    assert_eq!(epoch, 0);
    let bumped = raw.init_producer_id(Some((id, epoch)), None);
    assert_eq!((bumped.error_code, bumped.producer_id.0, bumped.producer_epoch), (NONE, id, 1));
}

#[test]
fn duplicate_is_still_detected_after_sigkill_and_restart() {
    let mut broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("idem-kill");
    create_topic(&addr, &topic, 1, &[]);
    let (id, epoch) = {
        let mut raw = Raw::connect(&addr);
        let (id, epoch) = raw.new_producer();
        for i in 0..4 {
            assert_eq!(raw.produce(&topic, 0, batch(id, epoch, i * 10, 10)), (NONE, i64::from(i) * 10));
        }
        (id, epoch)
    };
    broker.kill9();
    broker.restart();
    let mut raw = Raw::connect(&addr);
    assert_eq!(raw.produce(&topic, 0, batch(id, epoch, 30, 10)), (NONE, 30), "retry of the last batch");
    assert_eq!(raw.produce(&topic, 0, batch(id, epoch, 10, 10)), (NONE, 10), "retry of an earlier batch");
    assert_eq!(high_watermark(&addr, &topic), 40, "no duplicate appended after the restart");
    assert_eq!(
        raw.produce(&topic, 0, batch(id, epoch, 41, 1)).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER,
        "sequence state survived too"
    );
    assert_eq!(raw.produce(&topic, 0, batch(id, epoch, 40, 1)), (NONE, 40));
}

#[test]
fn producer_state_before_deleted_segments_is_restored_from_the_roll_snapshot() {
    let mut broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("idem-snap");
    create_topic(&addr, &topic, 1, &[("segment.bytes", "65536")]);
    let mut raw = Raw::connect(&addr);
    let (a, a_epoch) = raw.new_producer();
    for i in 0..3 {
        assert_eq!(raw.produce(&topic, 0, batch(a, a_epoch, i, 1)), (NONE, i64::from(i)));
    }
    // Another producer fills several segments after producer A's batches.
    let (b, b_epoch) = raw.new_producer();
    let filler: Vec<(Option<Bytes>, Bytes)> = (0..4).map(|_| (None, Bytes::from(vec![b'f'; 500]))).collect();
    for i in 0..150 {
        let records = encode_idempotent_batch(
            &filler,
            1_700_000_000_000,
            BatchProducer { id: b, epoch: b_epoch, base_sequence: i * 4 },
        )
        .expect("encode");
        assert_eq!(raw.produce(&topic, 0, records.freeze()).0, NONE);
    }
    let dir = partition_dir(broker.data_dir(), &topic, 0);
    let last_base = segments(&dir).last().map(|(base, _)| *base).expect("segments");
    assert!(last_base > 3, "the log never rolled");
    let snapshot = dir.join(format!("{last_base:020}.producers"));
    // Written at the roll, on a helper thread.
    wait_for(&format!("the producer snapshot {} of the last roll", snapshot.display()), || {
        snapshot.exists().then_some(())
    });
    broker.kill9();
    // What retention does: the segments holding producer A's batches are gone.
    for (base, path) in segments(&dir).into_iter().filter(|(base, _)| *base < last_base) {
        std::fs::remove_file(&path).expect("remove segment");
        let _ = std::fs::remove_file(dir.join(format!("{base:020}.index")));
    }
    broker.restart();
    let mut raw = Raw::connect(&addr);
    let end = high_watermark(&addr, &topic);
    assert_eq!(raw.produce(&topic, 0, batch(a, a_epoch, 2, 1)), (NONE, 2), "retry recognised from the snapshot");
    assert_eq!(
        raw.produce(&topic, 0, batch(a, a_epoch, 4, 1)).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER,
        "sequence state from the snapshot"
    );
    assert_eq!(high_watermark(&addr, &topic), end);
}

/// Shards that counted at least one request.
fn shards_with_requests(broker: &Broker) -> BTreeSet<String> {
    broker
        .metrics()
        .lines()
        .filter(|l| l.starts_with("ringmq_requests_total{"))
        .filter(|l| l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) > 0)
        .filter_map(|l| l.split("shard=\"").nth(1).and_then(|s| s.split('"').next()).map(str::to_string))
        .collect()
}

#[test]
fn producer_ids_are_distinct_across_shards_and_restarts() {
    let mut broker = Broker::start(BrokerOpts::default().arg("--cores").arg("2"));
    let addr = broker.addr();
    let mut ids: Vec<i64> = Vec::new();
    for run in 0..3 {
        // Connections are spread over both shards by the kernel (SO_REUSEPORT);
        // open them until both shards have answered.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut connections = 0;
        loop {
            let mut raw = Raw::connect(&addr);
            for _ in 0..3 {
                ids.push(raw.new_producer().0);
            }
            connections += 1;
            if connections >= 8 && shards_with_requests(&broker).len() == 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "run {run}: both shards never answered ({:?})",
                shards_with_requests(&broker)
            );
        }
        match run {
            0 => {
                broker.kill9();
                broker.restart();
            }
            1 => broker.restart(),
            _ => {}
        }
    }
    let distinct: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "a producer id was handed out twice: {ids:?}");
}

#[test]
fn init_producer_id_with_a_transactional_id_is_refused() {
    let broker = Broker::start(BrokerOpts::default());
    let mut raw = Raw::connect(&broker.addr());
    let r = raw.init_producer_id(None, Some("my-txn"));
    assert_eq!(r.error_code, TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    assert_eq!(r.producer_id.0, -1);
}

#[test]
fn transactional_producer_fails_init_transactions_with_an_error_instead_of_hanging() {
    let broker = Broker::start(BrokerOpts::default());
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> = client_config(&broker.addr())
        .set("transactional.id", "ringmq-test-txn")
        .create()
        .expect("create transactional producer");
    let started = Instant::now();
    let err = producer
        .init_transactions(Duration::from_secs(30))
        .expect_err("init_transactions must fail: ringmq has no transactions");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "init_transactions took {:?}: it waited for a timeout",
        started.elapsed()
    );
    let code = err.rdkafka_error_code();
    eprintln!("init_transactions failed with {err} ({code:?})");
    assert!(
        matches!(code, Some(RDKafkaErrorCode::TransactionalIdAuthorizationFailed)),
        "unexpected error from init_transactions: {err}"
    );
}

// ---------------------------------------------------------------------------
// librdkafka's idempotent producer across a SIGKILL
// ---------------------------------------------------------------------------

const PARTITIONS: i32 = 4;
const MESSAGES: u64 = 20_000;

fn payload(partition: i32, seq: u64) -> String {
    format!("idem:{partition}:{seq:08}")
}

#[derive(Default)]
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
    errors: Mutex<Vec<String>>,
}

struct Ctx(Arc<Deliveries>);

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = ();

    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => {
                self.0.ok.fetch_add(1, Ordering::SeqCst);
            }
            Err((e, m)) => {
                self.0.failed.fetch_add(1, Ordering::SeqCst);
                let mut errors = self.0.errors.lock().unwrap();
                if errors.len() < 20 {
                    errors.push(format!("partition {}: {e}", m.partition()));
                }
            }
        }
    }
}

#[test]
fn idempotent_librdkafka_producer_delivers_exactly_once_in_order_across_sigkill() {
    let mut broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("idem-rdkafka");
    create_topic(&addr, &topic, PARTITIONS, &[]);
    let deliveries = Arc::new(Deliveries::default());
    let producer: ThreadedProducer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", &addr)
        .set("broker.address.family", "v4")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.num.messages", "100")
        .set("message.timeout.ms", "120000")
        .set("request.timeout.ms", "5000")
        .set("socket.timeout.ms", "5000")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .create_with_context(Ctx(deliveries.clone()))
        .expect("create idempotent producer");

    let per_partition = MESSAGES / PARTITIONS as u64;
    let send = |partition: i32, seq: u64| {
        let body = payload(partition, seq);
        let mut record = BaseRecord::<(), String>::to(&topic).partition(partition).payload(&body);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    assert!(Instant::now() < deadline, "local queue full for 60 s");
                    record = r;
                    thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => panic!("enqueue failed: {e}"),
            }
        }
    };
    // A third at a steady pace, then a burst, and the SIGKILL right after it
    // while its requests are in flight (some written but not yet answered).
    // If the broker answered the whole burst before the kill (the test
    // thread was descheduled), the burst goes on until something is in flight.
    let paced = per_partition / 3;
    let burst_end = paced + per_partition / 10;
    let mut killed = false;
    for seq in 0..per_partition {
        for partition in 0..PARTITIONS {
            send(partition, seq);
        }
        if seq < paced && seq % 25 == 0 {
            thread::sleep(Duration::from_millis(15));
        }
        if !killed && seq + 1 >= burst_end {
            let sent = (seq + 1) * PARTITIONS as u64;
            let acked = deliveries.ok.load(Ordering::SeqCst);
            if acked < sent {
                eprintln!("SIGKILL with {acked} of {sent} sent acknowledged");
                broker.kill9();
                broker.restart();
                killed = true;
            }
        }
    }
    assert!(killed, "every message was acknowledged before each point the kill could come: none was ever in flight");
    producer.flush(Duration::from_secs(120)).expect("flush");
    assert_eq!(
        deliveries.failed.load(Ordering::SeqCst),
        0,
        "failed deliveries: {:?}",
        deliveries.errors.lock().unwrap()
    );
    assert_eq!(deliveries.ok.load(Ordering::SeqCst), MESSAGES);

    // With RINGMQ_LOG=debug the broker logs each retried batch it recognised.
    eprintln!("duplicates answered from the producer state: {}", broker.log().matches("duplicate batch").count());
    let ends: Vec<(i32, i64)> = (0..PARTITIONS).map(|p| (p, watermarks(&addr, &topic, p).1)).collect();
    let log: BTreeMap<i32, Vec<Rec>> = read_partitions(&addr, &topic, &ends, Duration::from_secs(120));
    for (p, recs) in &log {
        let got: Vec<String> = recs
            .iter()
            .map(|r| String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default()).into_owned())
            .collect();
        let first_wrong = got.iter().enumerate().find(|(seq, body)| **body != payload(*p, *seq as u64));
        assert!(first_wrong.is_none(), "partition {p}: record {:?} breaks the order (duplicate or gap)", first_wrong);
        assert_eq!(got.len() as u64, per_partition, "partition {p}: every message exactly once");
    }
}
