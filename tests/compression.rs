//! Compressed batches pass through the broker untouched: every record batch
//! librdkafka sends (gzip, snappy, lz4 or zstd, or uncompressed where the
//! client judged compression not worth it) is stored byte for byte as it was
//! sent, apart from the base offset and leader epoch the broker assigns, and
//! consumers get every record back byte for byte.
//!
//! What was sent is seen on the wire: the clients talk to the broker through
//! a small proxy (the broker advertises the proxy's address) that keeps a
//! copy of each batch of each Produce request.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader};
use kafka_protocol::protocol::Decodable;

/// Record batch layout (Kafka's v2 format): the fields the broker assigns
/// come before `MAGIC_AT`, except the length.
const LENGTH_AT: usize = 8;
const EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const ATTRIBUTES_AT: usize = 21;

/// Records that compress well (repeated text of varying length), so that
/// every codec shrinks the batches and the client sends them compressed.
fn records() -> Vec<(i32, Option<Vec<u8>>, Vec<u8>)> {
    (0..2000u64)
        .map(|i| {
            let value = format!("record {i:05} of the compression test; ").repeat(1 + (i % 13) as usize).into_bytes();
            ((i % 2) as i32, Some(format!("key-{i}").into_bytes()), value)
        })
        .collect()
}

/// Records per produce round (repeated until every record is sent).
const ROUND_SIZES: [usize; 5] = [1, 2, 10, 100, 400];

fn codec_of(batch: &[u8]) -> u8 {
    (i16::from_be_bytes([batch[ATTRIBUTES_AT], batch[ATTRIBUTES_AT + 1]]) & 0b111) as u8
}

/// Batches sent in Produce requests, per (topic, partition) in the order sent.
#[derive(Default)]
struct Sent {
    batches: BTreeMap<(String, i32), Vec<Vec<u8>>>,
    /// Requests the tap could not read: the comparison would be meaningless.
    errors: Vec<String>,
}

/// The proxy: accepts clients on its own port and relays each connection to
/// the broker, keeping the batches of the Produce requests it relays.
struct ProduceTap {
    addr: SocketAddr,
    sent: Arc<Mutex<Sent>>,
}

impl ProduceTap {
    /// Binds the proxy's port (to give the broker as `--advertise`) before
    /// the broker exists; `relay_to` starts relaying.
    fn bind() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        (listener, addr)
    }

    fn relay_to(listener: TcpListener, broker: SocketAddr) -> ProduceTap {
        let addr = listener.local_addr().expect("proxy address");
        let sent = Arc::new(Mutex::new(Sent::default()));
        let tap = sent.clone();
        // Lives until the test process ends, like the connections it serves.
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let upstream = TcpStream::connect(broker).expect("proxy: connect to the broker");
                let (client_rx, upstream_tx) =
                    (client.try_clone().expect("clone"), upstream.try_clone().expect("clone"));
                let tap = tap.clone();
                thread::spawn(move || relay_requests(client_rx, upstream_tx, &tap));
                thread::spawn(move || relay_responses(upstream, client));
            }
        });
        ProduceTap { addr, sent }
    }

    /// The batches sent to `topic`/`partition` so far; panics if a request could not be read.
    fn sent(&self, topic: &str, partition: i32) -> Vec<Vec<u8>> {
        let sent = self.sent.lock().unwrap();
        assert!(sent.errors.is_empty(), "the proxy could not read some requests: {:?}", sent.errors);
        sent.batches.get(&(topic.to_string(), partition)).cloned().unwrap_or_default()
    }
}

/// Client to broker, frame by frame, noting the batches of Produce requests.
fn relay_requests(mut client: TcpStream, mut upstream: TcpStream, sent: &Mutex<Sent>) {
    loop {
        let mut size = [0u8; 4];
        if client.read_exact(&mut size).is_err() {
            break;
        }
        let mut body = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
        if client.read_exact(&mut body).is_err() {
            break;
        }
        if body.len() >= 4 && i16::from_be_bytes([body[0], body[1]]) == ApiKey::Produce as i16 {
            let version = i16::from_be_bytes([body[2], body[3]]);
            if let Err(e) = note_produce(Bytes::from(body.clone()), version, sent) {
                sent.lock().unwrap().errors.push(format!("Produce v{version}: {e}"));
            }
        }
        if upstream.write_all(&size).and_then(|()| upstream.write_all(&body)).is_err() {
            break;
        }
    }
    let _ = upstream.shutdown(Shutdown::Write);
}

fn note_produce(mut body: Bytes, version: i16, sent: &Mutex<Sent>) -> Result<(), String> {
    RequestHeader::decode(&mut body, ApiKey::Produce.request_header_version(version)).map_err(|e| e.to_string())?;
    let request = ProduceRequest::decode(&mut body, version).map_err(|e| e.to_string())?;
    let mut sent = sent.lock().unwrap();
    for topic in &request.topic_data {
        if topic.name.is_empty() {
            return Err("a topic named by id only".to_string());
        }
        for partition in &topic.partition_data {
            let key = (topic.name.to_string(), partition.index);
            let mut records = partition.records.clone().unwrap_or_default();
            while !records.is_empty() {
                if records.len() < MAGIC_AT {
                    return Err(format!("{} bytes left after the last whole batch", records.len()));
                }
                let length = i32::from_be_bytes(records[LENGTH_AT..EPOCH_AT].try_into().unwrap());
                let total = LENGTH_AT + 4 + usize::try_from(length).map_err(|_| format!("batch length {length}"))?;
                if total > records.len() {
                    return Err(format!("a batch of {total} bytes in {} bytes of records", records.len()));
                }
                sent.batches.entry(key.clone()).or_default().push(records.split_to(total).to_vec());
            }
        }
    }
    Ok(())
}

fn relay_responses(mut upstream: TcpStream, mut client: TcpStream) {
    let _ = std::io::copy(&mut upstream, &mut client);
    let _ = client.shutdown(Shutdown::Write);
}

/// Every batch stored for a partition, over all its segments, in log order.
fn stored_batches(broker: &Broker, topic: &str, partition: i32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (_, path) in segments(&partition_dir(broker.data_dir(), topic, partition)) {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        for b in scan_segment(&bytes) {
            out.push(bytes[b.pos as usize..(b.pos + b.total_len) as usize].to_vec());
        }
    }
    out
}

fn round_trip(codec: &str, codec_id: u8) {
    let (listener, proxy_addr) = ProduceTap::bind();
    let broker = Broker::start(BrokerOpts::default().arg("--advertise").arg(&proxy_addr.to_string()));
    let tap = ProduceTap::relay_to(listener, broker.socket_addr());
    let addr = tap.addr.to_string();
    let topic = unique_topic(&format!("compressed-{codec}"));
    create_topic(&addr, &topic, 2, &[]);
    // Batches of many sizes: rounds of 1 to 400 records, each acknowledged
    // before the next, and at most 16 KiB (uncompressed) per batch.
    let producer = producer(&addr, &[("compression.type", codec), ("linger.ms", "20"), ("batch.size", "16384")]);
    let msgs = records();
    let mut acked = 0;
    for round in ROUND_SIZES.iter().cycle().scan(0, |at, &n| {
        let from = *at;
        *at = (from + n).min(msgs.len());
        (from < msgs.len()).then(|| msgs[from..*at].to_vec())
    }) {
        acked += produce_many(&producer, &topic, round).len();
    }
    assert_eq!(acked, msgs.len());
    for p in 0..2 {
        let want: Vec<_> = msgs.iter().filter(|m| m.0 == p).collect();
        let got = read_all(&addr, &topic, p, Duration::from_secs(60));
        assert_eq!(got.len(), want.len(), "{codec}: partition {p}");
        for (i, (rec, m)) in got.iter().zip(&want).enumerate() {
            assert_eq!(rec.offset, i as i64, "{codec}: partition {p}");
            assert_eq!(rec.key, m.1, "{codec}: partition {p} offset {i} key");
            assert_eq!(rec.payload.as_deref(), Some(&m.2[..]), "{codec}: partition {p} offset {i} value");
        }

        let sent = tap.sent(&topic, p);
        let stored = stored_batches(&broker, &topic, p);
        let codecs: Vec<u8> = sent.iter().map(|b| codec_of(b)).collect();
        eprintln!("{codec}: partition {p}: {} batches sent, codecs {codecs:?}", sent.len());
        assert!(
            codecs.contains(&codec_id),
            "{codec}: partition {p}: the client sent no {codec} batch (codecs {codecs:?}): nothing was tested"
        );
        assert_eq!(stored.len(), sent.len(), "{codec}: partition {p}: batches stored vs sent (codecs sent {codecs:?})");
        let mut next_offset = 0i64;
        for (i, (s, w)) in stored.iter().zip(&sent).enumerate() {
            let base = i64::from_be_bytes(s[..LENGTH_AT].try_into().unwrap());
            assert_eq!(base, next_offset, "{codec}: partition {p} batch {i}: base offset");
            assert_eq!(s.len(), w.len(), "{codec}: partition {p} batch {i} (codec {}): length", codec_of(w));
            assert!(
                s[LENGTH_AT..EPOCH_AT] == w[LENGTH_AT..EPOCH_AT] && s[MAGIC_AT..] == w[MAGIC_AT..],
                "{codec}: partition {p} batch {i} (codec {}) is not stored as sent",
                codec_of(w)
            );
            let last_offset_delta = i32::from_be_bytes(s[23..27].try_into().unwrap());
            next_offset = base + i64::from(last_offset_delta) + 1;
        }
        assert_eq!(next_offset, want.len() as i64, "{codec}: partition {p}: records in the stored batches");
    }
}

#[test]
fn gzip_batches_round_trip_untouched() {
    round_trip("gzip", 1);
}

#[test]
fn snappy_batches_round_trip_untouched() {
    round_trip("snappy", 2);
}

#[test]
fn lz4_batches_round_trip_untouched() {
    round_trip("lz4", 3);
}

#[test]
fn zstd_batches_round_trip_untouched() {
    round_trip("zstd", 4);
}
