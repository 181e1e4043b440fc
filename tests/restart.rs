//! Topics, partition counts, per-topic configs and offsets survive a restart,
//! whether the broker was stopped with SIGTERM or killed with SIGKILL right
//! after its writes were acknowledged.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const MIB: u64 = 1 << 20;
const MSG: usize = 1024;

#[derive(Clone, Copy, Debug)]
enum Stop {
    Term,
    Kill,
}

fn msg(topic_tag: u64, p: i32, i: usize) -> Vec<u8> {
    let mut v = format!("{topic_tag}/{p}/{i:06}|").into_bytes();
    let seed = topic_tag * 1_000_003 + p as u64 * 10_007 + i as u64;
    v.extend(random_bytes(seed, MSG - v.len()));
    v
}

/// Segments of a partition that hold data: (base offset, logical length).
fn data_segments(dir: &Path) -> Vec<(u64, u64)> {
    segments(dir).into_iter().map(|(base, p)| (base, segment_data_len(&p))).filter(|&(_, len)| len > 0).collect()
}

fn produce_range(addr: &str, topic: &str, tag: u64, p: i32, range: std::ops::Range<usize>) {
    let prod = producer(addr, &[("batch.size", "65536"), ("linger.ms", "5")]);
    let start = range.start as i64;
    let acks = produce_many(&prod, topic, range.clone().map(|i| (p, Some(i.to_string().into_bytes()), msg(tag, p, i))));
    for (n, (part, off)) in acks.into_iter().enumerate() {
        assert_eq!((part, off), (p, start + n as i64), "ack of message {} on {topic}/{p}", range.start + n);
    }
}

fn check_content(addr: &str, topic: &str, tag: u64, p: i32, count: usize) {
    let recs = read_partitions(addr, topic, &[(p, count as i64)], Duration::from_secs(120)).remove(&p).unwrap();
    assert_eq!(recs.len(), count, "{topic}/{p}: records");
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.offset, i as i64, "{topic}/{p}: offsets");
        assert!(r.payload.as_deref() == Some(&msg(tag, p, i)[..]), "{topic}/{p}: payload at offset {i} differs");
        assert_eq!(r.key.as_deref(), Some(i.to_string().as_bytes()), "{topic}/{p}: key at offset {i}");
    }
}

fn topics_survive_restart(stop: Stop) {
    // Broker default segment size 32 MiB; topic `rolled` asks for 1 MiB.
    let mut broker = Broker::start(BrokerOpts::default().segment_bytes(32 * MIB).default_partitions(5).flush("always"));
    let addr = broker.addr();
    let rolled = unique_topic("rolled");
    let plain = unique_topic("plain");
    let auto = unique_topic("auto");
    create_topic(&addr, &rolled, 3, &[("segment.bytes", "1048576"), ("retention.ms", "86400000")]);
    create_topic(&addr, &plain, 2, &[]);

    // ~3 MiB into rolled/0 and plain/0, a little into rolled/1, nothing into rolled/2.
    let n0 = 3 * 1024;
    produce_range(&addr, &rolled, 1, 0, 0..n0);
    produce_range(&addr, &rolled, 1, 1, 0..10);
    produce_range(&addr, &plain, 2, 0, 0..n0);
    // An auto-created topic (5 partitions by --default-partitions).
    produce_range(&addr, &auto, 3, 4, 0..7);

    let expect_wm: Vec<(&str, i32, (i64, i64))> = vec![
        (&rolled, 0, (0, n0 as i64)),
        (&rolled, 1, (0, 10)),
        (&rolled, 2, (0, 0)),
        (&plain, 0, (0, n0 as i64)),
        (&plain, 1, (0, 0)),
        (&auto, 4, (0, 7)),
        (&auto, 0, (0, 0)),
    ];
    for (t, p, wm) in &expect_wm {
        assert_eq!(watermarks(&addr, t, *p), *wm, "watermarks of {t}/{p} before restart");
    }

    let rolled_dir = partition_dir(broker.data_dir(), &rolled, 0);
    let plain_dir = partition_dir(broker.data_dir(), &plain, 0);
    let segs_before = data_segments(&rolled_dir);
    assert!(
        segs_before.len() >= 3,
        "3 MiB into a topic with segment.bytes=1 MiB should fill at least 3 segments, found {segs_before:?}"
    );
    assert_eq!(data_segments(&plain_dir).len(), 1, "3 MiB into a 32 MiB-segment topic should stay in one segment");

    match stop {
        Stop::Term => {
            broker.stop();
        }
        Stop::Kill => broker.kill9(),
    }
    broker.restart();
    assert_eq!(broker.addr(), addr);

    assert_eq!(partition_count(&addr, &rolled), 3, "partition count of {rolled} after restart");
    assert_eq!(partition_count(&addr, &plain), 2, "partition count of {plain} after restart");
    assert_eq!(partition_count(&addr, &auto), 5, "partition count of {auto} after restart");
    for (t, p, wm) in &expect_wm {
        assert_eq!(watermarks(&addr, t, *p), *wm, "watermarks of {t}/{p} after {stop:?} restart");
    }
    assert_eq!(data_segments(&rolled_dir), segs_before, "segments of {rolled}/0 changed across the restart");

    // New data continues at the next offsets, and `rolled` still rolls at 1 MiB.
    let n1 = n0 + 2 * 1024;
    produce_range(&addr, &rolled, 1, 0, n0..n1);
    produce_range(&addr, &rolled, 1, 1, 10..11);
    produce_range(&addr, &rolled, 1, 2, 0..1);
    produce_range(&addr, &plain, 2, 0, n0..n1);
    let segs_after = data_segments(&rolled_dir);
    eprintln!("{rolled}/0 segments (base offset, data bytes): before restart {segs_before:?}, after {segs_after:?}");
    assert!(
        segs_after.len() >= segs_before.len() + 2,
        "2 more MiB after the restart should add at least 2 segments of 1 MiB: before {segs_before:?}, after {segs_after:?}"
    );
    for &(base, len) in &segs_after {
        assert!(len <= MIB, "segment {base:020}.log of {rolled}/0 holds {len} bytes, more than segment.bytes=1 MiB");
    }
    assert_eq!(
        data_segments(&plain_dir).len(),
        1,
        "{plain}/0 (32 MiB segments) should still have one segment after 5 MiB"
    );
    assert_eq!(watermarks(&addr, &rolled, 0), (0, n1 as i64));
    assert_eq!(watermarks(&addr, &rolled, 1), (0, 11));
    assert_eq!(watermarks(&addr, &rolled, 2), (0, 1));

    // Everything, old and new, reads back intact.
    check_content(&addr, &rolled, 1, 0, n1);
    check_content(&addr, &rolled, 1, 1, 11);
    check_content(&addr, &plain, 2, 0, n1);
    check_content(&addr, &auto, 3, 4, 7);
}

#[test]
fn topics_configs_and_offsets_survive_sigterm_restart() {
    topics_survive_restart(Stop::Term);
}

#[test]
fn topics_configs_and_offsets_survive_sigkill_after_acknowledged_produce() {
    topics_survive_restart(Stop::Kill);
}

#[test]
fn retention_ms_topic_config_survives_restart() {
    // Retention runs every 200 ms; the broker's default retention is 7 days.
    let opts = BrokerOpts::default().segment_bytes(32 * MIB).arg("--retention-check-ms").arg("200");
    let mut broker = Broker::start(opts);
    let addr = broker.addr();
    let short = unique_topic("short");
    let long = unique_topic("long");
    create_topic(&addr, &short, 1, &[("segment.bytes", "1048576"), ("retention.ms", "2000")]);
    create_topic(&addr, &long, 1, &[("segment.bytes", "1048576")]);
    // Nothing is written before the restart: only the catalog can carry the configs over.
    broker.stop();
    broker.restart();

    let n = 3 * 1024;
    produce_range(&addr, &short, 4, 0, 0..n);
    produce_range(&addr, &long, 5, 0, 0..n);
    let short_dir = partition_dir(broker.data_dir(), &short, 0);
    let long_dir = partition_dir(broker.data_dir(), &long, 0);
    let long_segs = data_segments(&long_dir);
    assert!(long_segs.len() >= 3, "segment.bytes=1 MiB not applied after restart: {long_segs:?}");

    // Retention moves the log start first, then deletes the files below it:
    // both must happen.
    let low = wait_for(
        &format!("retention.ms=2000 of {short} after a restart: the log start past 0, no segment file below it"),
        || {
            let (low, high) = watermarks(&addr, &short, 0);
            assert_eq!(high, n as i64);
            (low > 0 && segment_bases(&short_dir).iter().all(|&base| base as i64 >= low)).then_some(low)
        },
    );
    eprintln!("{short}: log start offset {low} after retention; segments {:?}", segment_bases(&short_dir));
    assert!(low < n as i64, "retention must keep the active segment");
    // The topic without retention.ms keeps everything.
    assert_eq!(watermarks(&addr, &long, 0), (0, n as i64), "{long} lost data to retention");
    assert_eq!(data_segments(&long_dir), long_segs);
}
