//! Produce and consume through librdkafka (rdkafka crate) against the real
//! broker: a large acks=all run read back byte for byte, and topic
//! auto-creation with the configured default partition count.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rdkafka::producer::FutureRecord;

const PARTITIONS: i32 = 4;
const MESSAGES: u64 = 100_000;

/// Message `i`: key = decimal index, payload = 100..=300 pseudo-random bytes
/// derived from `i` (with the index in front so every payload is distinct).
fn message(i: u64) -> (Vec<u8>, Vec<u8>) {
    let mut s = i ^ 0x5EED_0000_0000_0000;
    let len = 100 + (splitmix64(&mut s) % 201) as usize;
    let mut payload = format!("{i:08}:").into_bytes();
    payload.extend(random_bytes(splitmix64(&mut s), len - payload.len()));
    (i.to_string().into_bytes(), payload)
}

fn partition_of(i: u64) -> i32 {
    // Not simply round robin, so per-partition runs have uneven lengths.
    let mut s = i;
    (splitmix64(&mut s) % PARTITIONS as u64) as i32
}

#[test]
fn hundred_thousand_messages_read_back_identical_in_order_with_contiguous_offsets() {
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("pc");
    create_topic(&addr, &topic, PARTITIONS, &[]);
    assert_eq!(partition_count(&addr, &topic), PARTITIONS as usize);

    let t0 = Instant::now();
    let producer =
        producer(&addr, &[("queue.buffering.max.messages", "200000"), ("batch.size", "262144"), ("linger.ms", "10")]);
    let msgs = (0..MESSAGES).map(|i| {
        let (k, v) = message(i);
        (partition_of(i), Some(k), v)
    });
    let acks = produce_many(&producer, &topic, msgs);
    flush(&producer);
    eprintln!("produced {MESSAGES} messages in {:?}", t0.elapsed());
    assert_eq!(acks.len() as u64, MESSAGES);

    // Expected per-partition sequence: indices in send order.
    let mut expected: Vec<Vec<u64>> = vec![Vec::new(); PARTITIONS as usize];
    for i in 0..MESSAGES {
        expected[partition_of(i) as usize].push(i);
    }
    // The acknowledged offsets are 0, 1, 2, ... per partition in send order.
    for (i, &(p, off)) in acks.iter().enumerate() {
        assert_eq!(p, partition_of(i as u64), "ack of message {i} names the wrong partition");
        let want = expected[p as usize].iter().position(|&x| x == i as u64).unwrap() as i64;
        assert_eq!(off, want, "message {i} on partition {p} acknowledged at offset {off}, expected {want}");
    }

    for p in 0..PARTITIONS {
        let (lo, hi) = watermarks(&addr, &topic, p);
        assert_eq!((lo, hi), (0, expected[p as usize].len() as i64), "watermarks of partition {p}");
    }

    let t1 = Instant::now();
    let ends: Vec<(i32, i64)> = (0..PARTITIONS).map(|p| (p, expected[p as usize].len() as i64)).collect();
    let got = read_partitions(&addr, &topic, &ends, Duration::from_secs(180));
    eprintln!("consumed {MESSAGES} messages in {:?}", t1.elapsed());
    for p in 0..PARTITIONS {
        let recs = &got[&p];
        let want = &expected[p as usize];
        assert_eq!(recs.len(), want.len(), "partition {p}: record count");
        for (n, (rec, &i)) in recs.iter().zip(want.iter()).enumerate() {
            assert_eq!(rec.offset, n as i64, "partition {p}: offsets not contiguous from 0 at position {n}");
            let (k, v) = message(i);
            assert_eq!(rec.key.as_deref(), Some(&k[..]), "partition {p} offset {n}: key");
            assert!(
                rec.payload.as_deref() == Some(&v[..]),
                "partition {p} offset {n}: payload differs from message {i} (got {} bytes, want {})",
                rec.payload.as_ref().map(|x| x.len()).unwrap_or(0),
                v.len()
            );
        }
    }
    drop(broker);
}

#[test]
fn producing_to_unknown_topic_auto_creates_it_with_default_partitions() {
    let broker = Broker::start(BrokerOpts::default().default_partitions(3));
    let addr = broker.addr();
    let topic = unique_topic("auto");

    let producer = producer(&addr, &[]);
    // No partition given: librdkafka looks the topic up, which creates it.
    let res = rt().block_on(
        producer
            .send(FutureRecord::<str, str>::to(&topic).key("k").payload("hello auto-create"), Duration::from_secs(30)),
    );
    let (part, off) = res.unwrap_or_else(|(e, _)| panic!("produce to new topic {topic}: {e}"));
    assert!((0..3).contains(&part), "delivered to partition {part}");
    assert_eq!(off, 0);
    flush(&producer);

    assert_eq!(partition_count(&addr, &topic), 3, "auto-created topic partition count");

    let recs = read_partitions(&addr, &topic, &[(part, 1)], Duration::from_secs(60));
    assert_eq!(recs[&part].len(), 1);
    assert_eq!(recs[&part][0].payload.as_deref(), Some(&b"hello auto-create"[..]));
    // Every partition exists and can be written.
    for p in 0..3 {
        let off = produce_one(&producer, &topic, p, None, format!("to {p}").as_bytes());
        assert_eq!(off, if p == part { 1 } else { 0 }, "offset on partition {p}");
    }
}
