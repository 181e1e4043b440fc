//! Compressed batches pass through the broker untouched: librdkafka's gzip,
//! snappy, lz4 and zstd batches are stored as the client sent them (the
//! codec bits of each batch on disk say so) and consumers get every record
//! back byte for byte.

mod common;

use std::time::Duration;

use common::*;

/// Compressible and incompressible records, so that every codec has work.
fn records() -> Vec<(i32, Option<Vec<u8>>, Vec<u8>)> {
    (0..2000u64)
        .map(|i| {
            let value = if i % 2 == 0 { format!("record {i} ").repeat(20).into_bytes() } else { random_bytes(i, 200) };
            ((i % 2) as i32, Some(format!("key-{i}").into_bytes()), value)
        })
        .collect()
}

/// Codec ids of the batches stored in a partition's first segment.
fn stored_codecs(broker: &Broker, topic: &str, partition: i32) -> Vec<u8> {
    let (path, batches) = last_segment(broker.data_dir(), topic, partition);
    let bytes = std::fs::read(&path).expect("read segment");
    batches
        .iter()
        .map(|b| (i16::from_be_bytes([bytes[b.pos as usize + 21], bytes[b.pos as usize + 22]]) & 0b111) as u8)
        .collect()
}

fn round_trip(codec: &str, codec_id: u8) {
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic(&format!("compressed-{codec}"));
    create_topic(&addr, &topic, 2, &[]);
    let producer = producer(&addr, &[("compression.type", codec), ("linger.ms", "20")]);
    let msgs = records();
    let acked = produce_many(&producer, &topic, msgs.clone());
    assert_eq!(acked.len(), msgs.len());
    for p in 0..2 {
        let want: Vec<_> = msgs.iter().filter(|m| m.0 == p).collect();
        let got = read_all(&addr, &topic, p, Duration::from_secs(60));
        assert_eq!(got.len(), want.len(), "{codec}: partition {p}");
        for (i, (rec, m)) in got.iter().zip(&want).enumerate() {
            assert_eq!(rec.offset, i as i64, "{codec}: partition {p}");
            assert_eq!(rec.key, m.1, "{codec}: partition {p} offset {i} key");
            assert_eq!(rec.payload.as_deref(), Some(&m.2[..]), "{codec}: partition {p} offset {i} value");
        }
        let codecs = stored_codecs(&broker, &topic, p);
        assert!(!codecs.is_empty());
        assert!(
            codecs.iter().all(|&c| c == codec_id),
            "{codec}: batches on disk have codecs {codecs:?}, expected all {codec_id}"
        );
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
