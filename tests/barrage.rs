//! Hostile input at volume: while a barrage of malformed requests and
//! half-open connections hits the broker, a well-behaved acks=all producer
//! beside it sees no error and loses nothing. Also: the metrics endpoint
//! parses as Prometheus text and its counters follow the traffic.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// Request header v1 (non-flexible) or v2 (flexible: empty tagged fields).
fn header(api: i16, version: i16, flexible: bool) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&api.to_be_bytes());
    h.extend_from_slice(&version.to_be_bytes());
    h.extend_from_slice(&7i32.to_be_bytes());
    h.extend_from_slice(&(-1i16).to_be_bytes());
    if flexible {
        h.push(0);
    }
    h
}

/// Every kind of bad input the broker must survive, as raw bytes to send.
fn payloads(seed: u64) -> Vec<Vec<u8>> {
    let mut out = vec![
        random_bytes(seed, 4096),
        0x7fff_ffffi32.to_be_bytes().to_vec(),
        0x8000_0000u32.to_be_bytes().to_vec(),
        (-5i32).to_be_bytes().to_vec(),
        frame(&header(0x7fff, 0, false)),
        frame(&header(3, 999, false)),
        frame(&header(0, -3, false)),
        frame(&[0, 3]),
        frame(&[0, 3, 0, 1, 0, 0]),
    ];
    // Array counts of 2^31-1 in tiny frames: Metadata v1 (non-flexible),
    // Metadata v9 (compact, flexible), Produce v3 topics, Fetch v4 topics.
    let mut m1 = header(3, 1, false);
    m1.extend_from_slice(&i32::MAX.to_be_bytes());
    out.push(frame(&m1));
    let mut m9 = header(3, 9, true);
    m9.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
    out.push(frame(&m9));
    let mut p3 = header(0, 3, false);
    p3.extend_from_slice(&(-1i16).to_be_bytes());
    p3.extend_from_slice(&(-1i16).to_be_bytes());
    p3.extend_from_slice(&1000i32.to_be_bytes());
    p3.extend_from_slice(&i32::MAX.to_be_bytes());
    out.push(frame(&p3));
    let mut f4 = header(1, 4, false);
    f4.extend_from_slice(&(-1i32).to_be_bytes());
    f4.extend_from_slice(&100i32.to_be_bytes());
    f4.extend_from_slice(&1i32.to_be_bytes());
    f4.extend_from_slice(&1000i32.to_be_bytes());
    f4.push(0);
    f4.extend_from_slice(&i32::MAX.to_be_bytes());
    out.push(frame(&f4));
    let mut f12 = header(1, 12, true);
    f12.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
    out.push(frame(&f12));
    out
}

/// Sends `bytes` on a fresh connection and waits (bounded) for the broker to close it.
fn hit(addr: &str, bytes: &[u8]) {
    let Ok(mut s) = TcpStream::connect(addr) else { return };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[test]
fn malformed_barrage_never_disturbs_a_well_behaved_producer() {
    let mut broker = Broker::start(BrokerOpts::default().arg("--frame-timeout-ms").arg("1000"));
    let addr = broker.addr();
    let topic = unique_topic("beside-barrage");
    create_topic(&addr, &topic, 2, &[]);

    // Hundreds of half-open connections: a size prefix and a few bytes, then silence.
    let half_open: Vec<TcpStream> = (0..300)
        .filter_map(|i| {
            let mut s = TcpStream::connect(&addr).ok()?;
            let mut f = 1000i32.to_be_bytes().to_vec();
            f.extend_from_slice(&random_bytes(i, 10));
            s.write_all(&f).ok()?;
            Some(s)
        })
        .collect();
    assert!(half_open.len() >= 250, "could not open the half-open connections");

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let attackers: Vec<_> = (0..3u64)
        .map(|t| {
            let (addr, stop, sent) = (addr.clone(), stop.clone(), sent.clone());
            thread::spawn(move || {
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) && round < 200 {
                    for p in payloads(t * 1000 + round) {
                        hit(&addr, &p);
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    round += 1;
                }
            })
        })
        .collect();

    // The producer keeps going, in rounds of 500, until the barrage has hit
    // the broker with a few hundred payloads: on a fast machine 3,000 acks
    // take less time than one round of attacks.
    let producer = producer(&addr, &[("retries", "0")]);
    let mut msgs: Vec<(i32, Option<Vec<u8>>, Vec<u8>)> = Vec::new();
    let mut acked = Vec::new();
    let started = Instant::now();
    while msgs.len() < 3000 || (sent.load(Ordering::Relaxed) < 300 && started.elapsed() < Duration::from_secs(120)) {
        let round: Vec<_> = (msgs.len() as u64..msgs.len() as u64 + 500)
            .map(|i| ((i % 2) as i32, None, random_bytes(i, 300)))
            .collect();
        acked.extend(produce_many(&producer, &topic, round.clone()));
        msgs.extend(round);
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.join().expect("attacker thread");
    }
    assert!(sent.load(Ordering::Relaxed) >= 300, "the barrage barely ran: {} payloads", sent.load(Ordering::Relaxed));
    broker.assert_running();

    for p in 0..2 {
        let want: Vec<&Vec<u8>> = msgs.iter().filter(|m| m.0 == p).map(|m| &m.2).collect();
        let got = read_all(&addr, &topic, p, Duration::from_secs(60));
        assert_eq!(got.len(), want.len(), "partition {p}");
        for (i, rec) in got.iter().enumerate() {
            assert_eq!(rec.offset, i as i64);
            assert_eq!(rec.payload.as_deref(), Some(&want[i][..]), "partition {p} offset {i}");
        }
    }
    assert_eq!(acked.len(), msgs.len());

    // The half-open connections were closed by the frame timeout.
    for mut s in half_open {
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Ok(0) | Err(_) => {}
            Ok(n) => panic!("half-open connection got {n} bytes instead of being closed"),
        }
    }
    broker.assert_running();
    assert!(broker.log().contains("frame not received within"), "half-open connections should be logged as timed out");
}

/// Checks the Prometheus text format line by line and returns the samples.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().expect("type name").to_string();
            let kind = parts.next().expect("type kind");
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "bad type line: {line}");
            typed.insert(name);
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment line: {line}");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in: {line}"));
        let name = series.split('{').next().expect("name");
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "bad metric name: {line}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "bad labels: {line}");
                for pair in labels[1..labels.len() - 1].split(',') {
                    let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("bad label: {line}"));
                    assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "bad label name: {line}");
                    assert!(v.starts_with('"') && v.ends_with('"'), "unquoted label value: {line}");
                }
            }
        }
        let family = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
        assert!(typed.contains(name) || typed.contains(family), "sample before its TYPE line: {line}");
        samples.push((series.to_string(), value));
    }
    samples
}

fn total(samples: &[(String, f64)], name: &str) -> f64 {
    samples.iter().filter(|(s, _)| s == name || s.starts_with(&format!("{name}{{"))).map(|(_, v)| v).sum()
}

#[test]
fn metrics_parse_as_prometheus_text_and_counters_move_with_traffic() {
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let before = parse_prometheus(&broker.metrics());
    let topic = unique_topic("metrics");
    create_topic(&addr, &topic, 2, &[]);
    let producer = producer(&addr, &[]);
    let msgs: Vec<(i32, Option<Vec<u8>>, Vec<u8>)> =
        (0..500u64).map(|i| ((i % 2) as i32, None, random_bytes(i, 1000))).collect();
    produce_many(&producer, &topic, msgs);
    for p in 0..2 {
        assert_eq!(read_all(&addr, &topic, p, Duration::from_secs(30)).len(), 250);
    }
    let after = parse_prometheus(&broker.metrics());
    for counter in [
        "ringmq_requests_total",
        "ringmq_produce_bytes_total",
        "ringmq_fetch_bytes_total",
        "ringmq_connections_accepted_total",
    ] {
        assert!(
            total(&after, counter) > total(&before, counter),
            "{counter} did not move: {} -> {}",
            total(&before, counter),
            total(&after, counter)
        );
    }
    assert!(total(&after, "ringmq_produce_bytes_total") >= 500_000.0);
    assert_eq!(
        total(&after, &format!("ringmq_partition_high_watermark{{shard=\"0\",topic=\"{topic}\",partition=\"0\"}}"))
            + total(
                &after,
                &format!("ringmq_partition_high_watermark{{shard=\"1\",topic=\"{topic}\",partition=\"0\"}}")
            ),
        250.0
    );
    assert!(total(&after, "ringmq_commit_seconds_count") > 0.0, "commit histogram is empty");
    // Every acks=all produce request is answered after at least its commit.
    let produce_requests =
        total(&after, "ringmq_produce_seconds_count") - total(&before, "ringmq_produce_seconds_count");
    assert!(produce_requests >= 1.0, "produce latency histogram did not move");
    assert!(total(&after, "ringmq_produce_seconds_sum") > 0.0);
    assert!(total(&after, "ringmq_disk_free_bytes") > 0.0);
    assert!(total(&after, "ringmq_uptime_seconds") > 0.0);
}
