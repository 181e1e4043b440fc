//! Recovery of a damaged last segment: a torn or corrupted last batch is
//! dropped at start-up (with a `recovery: dropped` warning), everything
//! before it stays readable, and new writes continue where it was.

mod common;

use std::fs::{self, OpenOptions};
use std::path::PathBuf;
use std::time::Duration;

use common::*;

const BATCHES: usize = 50;

fn body(i: usize) -> Vec<u8> {
    let mut v = format!("corruption-test message {i:03} ").into_bytes();
    v.extend(random_bytes(i as u64 + 77, 200).into_iter().map(|b| b'A' + b % 26));
    v
}

/// Produces BATCHES single-message batches (each awaited before the next)
/// to a 1-partition topic and stops the broker with SIGTERM.
fn setup() -> (Broker, String, PathBuf, BatchPos) {
    let mut broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("corrupt");
    create_topic(&addr, &topic, 1, &[]);
    let p = producer(&addr, &[("linger.ms", "0"), ("batch.num.messages", "1")]);
    for i in 0..BATCHES {
        let off = produce_one(&p, &topic, 0, Some(format!("k{i}").as_bytes()), &body(i));
        assert_eq!(off, i as i64, "offset of message {i}");
    }
    drop(p);
    broker.stop();

    let (seg, batches) = last_segment(broker.data_dir(), &topic, 0);
    assert_eq!(
        batches.len(),
        BATCHES,
        "expected {BATCHES} single-record batches in {} (did the broker merge them?)",
        seg.display()
    );
    for (i, b) in batches.iter().enumerate() {
        assert_eq!(b.base_offset, i as i64, "batch {i} base offset on disk");
        assert_eq!(b.last_offset_delta, 0, "batch {i} holds one record");
    }
    let last = batches.last().unwrap().clone();
    (broker, topic, seg, last)
}

/// After the restart: the warning is logged, batches 0..BATCHES-1 are intact,
/// the high watermark is BATCHES-1, and a new write lands at that offset.
fn check_after_restart(broker: &mut Broker, topic: &str, dropped_base: i64) {
    broker.assert_running();
    let log = broker.log();
    let warn: Vec<&str> = log.lines().filter(|l| l.contains("recovery: dropped")).collect();
    assert!(!warn.is_empty(), "broker.log has no `recovery: dropped` line after restarting on a damaged segment");
    assert!(
        warn.iter().any(|l| l.contains(topic)),
        "the `recovery: dropped` line does not name the topic {topic}: {warn:?}"
    );
    assert!(warn.iter().any(|l| l.contains("WARN")), "the `recovery: dropped` line is not a WARN: {warn:?}");

    let addr = broker.addr();
    let keep = BATCHES as i64 - 1;
    assert_eq!(dropped_base, keep);
    assert_eq!(watermarks(&addr, topic, 0), (0, keep), "watermarks after recovery");
    let recs = read_all(&addr, topic, 0, Duration::from_secs(60));
    assert_eq!(recs.len() as i64, keep, "records readable after recovery");
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.offset, i as i64);
        assert_eq!(r.key.as_deref(), Some(format!("k{i}").as_bytes()), "key of offset {i}");
        assert!(r.payload.as_deref() == Some(&body(i)[..]), "payload of offset {i} changed");
    }

    let p = producer(&addr, &[("linger.ms", "0")]);
    let off = produce_one(&p, topic, 0, Some(b"after"), b"written after recovery");
    assert_eq!(off, dropped_base, "first write after recovery lands at the dropped batch's base offset");
    let off2 = produce_one(&p, topic, 0, Some(b"after2"), b"and one more");
    assert_eq!(off2, dropped_base + 1);
    let recs = read_all(&addr, topic, 0, Duration::from_secs(60));
    assert_eq!(recs.len() as i64, keep + 2);
    assert_eq!(recs[keep as usize].payload.as_deref(), Some(&b"written after recovery"[..]));
    assert_eq!(recs[keep as usize + 1].payload.as_deref(), Some(&b"and one more"[..]));
}

#[test]
fn truncated_last_batch_is_dropped_on_restart_and_earlier_batches_survive() {
    let (mut broker, topic, seg, last) = setup();
    let cut = last.pos + last.total_len / 2;
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(cut).unwrap();
    f.sync_all().unwrap();
    drop(f);
    eprintln!("truncated {} to {cut} bytes (last batch at {}..{})", seg.display(), last.pos, last.pos + last.total_len);

    broker.restart();
    check_after_restart(&mut broker, &topic, last.base_offset);
}

#[test]
fn corrupted_byte_in_last_batch_is_dropped_on_restart_and_earlier_batches_survive() {
    let (mut broker, topic, seg, last) = setup();
    let mut bytes = fs::read(&seg).unwrap();
    let batch = &bytes[last.pos as usize..(last.pos + last.total_len) as usize];
    // Flip a byte in the middle of the record's value, found by its content.
    let value = body(BATCHES - 1);
    let at = batch
        .windows(value.len())
        .position(|w| w == value.as_slice())
        .expect("last message's value not found verbatim in the last batch (compressed?)");
    let flip = last.pos as usize + at + value.len() / 2;
    bytes[flip] ^= 0x5A;
    fs::write(&seg, &bytes).unwrap();
    OpenOptions::new().write(true).open(&seg).unwrap().sync_all().unwrap();
    eprintln!("flipped byte {flip} of {} (last batch at {}..{})", seg.display(), last.pos, last.pos + last.total_len);

    broker.restart();
    check_after_restart(&mut broker, &topic, last.base_offset);
}
