//! Hostile bytes on raw TCP connections: each such connection is closed by
//! the broker, which keeps serving real clients and fresh connections, does
//! not balloon its memory, and stays alive.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, RngCore, SeedableRng};

const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes `bytes` (ignoring errors: the broker may close early) and asserts
/// that the broker then closes the connection within CLOSE_TIMEOUT. Bytes
/// the broker sends before closing (an error response) are allowed.
fn assert_closed_after(addr: &str, what: &str, bytes: &[u8]) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{what}: connect: {e}"));
    s.set_nodelay(true).unwrap();
    s.set_write_timeout(Some(CLOSE_TIMEOUT)).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.flush();
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    let mut buf = [0u8; 4096];
    let mut received = 0usize;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{what}: the broker did not close the connection within {CLOSE_TIMEOUT:?} (received {received} bytes)"
        );
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => received += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return, // reset by the broker
        }
    }
}

/// Hand-encoded ApiVersions v0 request on a fresh connection; checks the
/// response header, error code and that ApiVersions and Produce are listed.
fn api_versions_v0(addr: &str, correlation_id: i32) {
    let mut s = TcpStream::connect(addr).expect("connect for ApiVersions");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = Vec::new();
    req.extend_from_slice(&18i16.to_be_bytes()); // api_key = ApiVersions
    req.extend_from_slice(&0i16.to_be_bytes()); // api_version = 0
    req.extend_from_slice(&correlation_id.to_be_bytes());
    req.extend_from_slice(&(-1i16).to_be_bytes()); // client_id = null
    let mut frame = (req.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&req);
    s.write_all(&frame).expect("send ApiVersions");

    let mut size = [0u8; 4];
    s.read_exact(&mut size).expect("ApiVersions response size");
    let size = i32::from_be_bytes(size);
    assert!((6..1 << 20).contains(&size), "ApiVersions response size {size}");
    let mut body = vec![0u8; size as usize];
    s.read_exact(&mut body).expect("ApiVersions response body");
    let corr = i32::from_be_bytes(body[0..4].try_into().unwrap());
    assert_eq!(corr, correlation_id, "ApiVersions correlation id");
    let err = i16::from_be_bytes(body[4..6].try_into().unwrap());
    assert_eq!(err, 0, "ApiVersions error_code");
    assert!(body.len() >= 10, "ApiVersions v0 response too short: {} bytes", body.len());
    let n = i32::from_be_bytes(body[6..10].try_into().unwrap());
    assert!(n > 0 && body.len() >= 10 + 6 * n as usize, "ApiVersions array of {n} entries in {} bytes", body.len());
    let keys: Vec<(i16, i16, i16)> = (0..n as usize)
        .map(|i| {
            let e = &body[10 + 6 * i..16 + 6 * i];
            (i16::from_be_bytes([e[0], e[1]]), i16::from_be_bytes([e[2], e[3]]), i16::from_be_bytes([e[4], e[5]]))
        })
        .collect();
    for key in [0i16, 1, 3, 18] {
        assert!(keys.iter().any(|k| k.0 == key), "ApiVersions v0 does not list api key {key}: {keys:?}");
    }
    let av = keys.iter().find(|k| k.0 == 18).unwrap();
    assert!(av.1 == 0 && av.2 >= 0, "ApiVersions range for itself: {av:?}");
}

/// A real client round trip on its own connections: produce, read back.
fn clients_still_work(addr: &str, topic: &str, round: &mut i64) {
    let p = producer(addr, &[("linger.ms", "0")]);
    let payload = format!("still alive {round}");
    let off = produce_one(&p, topic, 0, Some(b"k"), payload.as_bytes());
    assert_eq!(off, *round, "offset of round {round}");
    let recs = read_all(addr, topic, 0, Duration::from_secs(60));
    assert_eq!(recs.len() as i64, *round + 1);
    assert_eq!(recs.last().unwrap().payload.as_deref(), Some(payload.as_bytes()));
    *round += 1;
}

/// Runs `attack` between two client round trips and ApiVersions checks, and
/// checks the broker is alive (and its memory sane) afterwards.
fn survives(attack: impl FnOnce(&str)) {
    let mut broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("hostile");
    create_topic(&addr, &topic, 1, &[]);
    let mut round = 0;
    clients_still_work(&addr, &topic, &mut round);
    api_versions_v0(&addr, 1);

    // A client connection held open across the attack keeps working.
    let held = producer(&addr, &[("linger.ms", "0")]);
    produce_one(&held, &topic, 0, None, b"held before");
    round += 1;

    attack(&addr);

    broker.assert_running();
    let off = produce_one(&held, &topic, 0, None, b"held after");
    assert_eq!(off, round, "held producer after the attack");
    round += 1;
    clients_still_work(&addr, &topic, &mut round);
    api_versions_v0(&addr, 0x1234_5678);
    broker.assert_running();
    if let Some(rss) = broker.pid().and_then(rss_kib) {
        assert!(rss < 1024 * 1024, "broker RSS is {rss} KiB after hostile input (more than 1 GiB)");
    }
    drop(held);
    broker.stop();
}

#[test]
fn random_bytes_connection_is_closed_and_broker_keeps_serving() {
    survives(|addr| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x0BAD_5EED);
        // Several 64 KiB blobs: some start with an implausible size prefix,
        // some with a plausible one (the frame is then random garbage).
        for round in 0..6 {
            let mut buf = vec![0u8; 64 * 1024];
            rng.fill_bytes(&mut buf);
            if round % 2 == 1 {
                // A size that lies within the blob, then a random header
                // whose api key (i16 at 4..6) is not a real API.
                let size: i32 = rng.gen_range(100..(64 * 1024 - 4));
                buf[0..4].copy_from_slice(&size.to_be_bytes());
                buf[4..6].copy_from_slice(&rng.gen_range(1000i16..i16::MAX).to_be_bytes());
            } else {
                // A size prefix larger than any request the broker accepts
                // (default max 100 MiB) or negative.
                let size: i32 =
                    if round == 0 { rng.gen_range(200 << 20..i32::MAX) } else { rng.gen_range(i32::MIN..0) };
                buf[0..4].copy_from_slice(&size.to_be_bytes());
            }
            assert_closed_after(addr, &format!("64 KiB of random bytes (round {round})"), &buf);
        }
    });
}

#[test]
fn huge_frame_size_connection_is_closed_and_broker_keeps_serving() {
    survives(|addr| {
        for size in [0x7FFF_FFFFu32, 0x8000_0000, 104_857_601, 0x4000_0000] {
            let mut frame = size.to_be_bytes().to_vec();
            frame.extend_from_slice(&[0, 18, 0, 0, 0, 0, 0, 1, 0xFF, 0xFF, 1, 2, 3, 4]);
            assert_closed_after(addr, &format!("frame size {size:#x}"), &frame);
        }
    });
}

#[test]
fn negative_frame_size_connection_is_closed_and_broker_keeps_serving() {
    survives(|addr| {
        for size in [-1i32, -4, i32::MIN, -1000] {
            let mut frame = size.to_be_bytes().to_vec();
            frame.extend_from_slice(&[0, 18, 0, 0, 0, 0, 0, 1, 0xFF, 0xFF]);
            assert_closed_after(addr, &format!("frame size {size}"), &frame);
        }
    });
}

#[test]
fn garbage_request_header_connection_is_closed_and_broker_keeps_serving() {
    survives(|addr| {
        let frames: Vec<(&str, Vec<u8>)> = vec![
            // Unknown api key 0x7FFF, version -1, client_id length runs past the frame.
            ("unknown api key", {
                let mut h = Vec::new();
                h.extend_from_slice(&0x7FFFi16.to_be_bytes());
                h.extend_from_slice(&(-1i16).to_be_bytes());
                h.extend_from_slice(&7i32.to_be_bytes());
                h.extend_from_slice(&30000i16.to_be_bytes());
                h.extend_from_slice(b"garbage!");
                h
            }),
            // Produce (0) at an unsupported version 999 with junk after it.
            ("produce v999", {
                let mut h = Vec::new();
                h.extend_from_slice(&0i16.to_be_bytes());
                h.extend_from_slice(&999i16.to_be_bytes());
                h.extend_from_slice(&8i32.to_be_bytes());
                h.extend_from_slice(&(-1i16).to_be_bytes());
                h.extend_from_slice(&[0xAB; 40]);
                h
            }),
            // Metadata v1 whose topic array claims a billion entries.
            ("metadata with forged array count", {
                let mut h = Vec::new();
                h.extend_from_slice(&3i16.to_be_bytes());
                h.extend_from_slice(&1i16.to_be_bytes());
                h.extend_from_slice(&9i32.to_be_bytes());
                h.extend_from_slice(&(-1i16).to_be_bytes());
                h.extend_from_slice(&1_000_000_000i32.to_be_bytes());
                h.extend_from_slice(&[0, 3, b'a', b'b']);
                h
            }),
            // Produce v3 with a client_id length longer than the frame.
            ("produce v3 truncated header", {
                let mut h = Vec::new();
                h.extend_from_slice(&0i16.to_be_bytes());
                h.extend_from_slice(&3i16.to_be_bytes());
                h.extend_from_slice(&10i32.to_be_bytes());
                h.extend_from_slice(&200i16.to_be_bytes());
                h.extend_from_slice(b"short");
                h
            }),
            // Two bytes: not even a full header.
            ("2-byte frame", vec![0, 18]),
        ];
        for (what, body) in frames {
            let mut frame = (body.len() as i32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            assert_closed_after(addr, what, &frame);
        }
    });
}

#[test]
fn many_hostile_connections_at_once_leave_broker_serving() {
    survives(|addr| {
        // 32 simultaneous half-sent frames, then all dropped by the client.
        let mut conns = Vec::new();
        for i in 0..32u32 {
            let mut s = TcpStream::connect(addr).expect("connect");
            let mut frame = (1000 + i).to_be_bytes().to_vec();
            frame.extend_from_slice(&[0, 18, 0, 3]);
            s.write_all(&frame).unwrap();
            conns.push(s);
        }
        api_versions_v0(addr, 42);
        for s in &conns {
            let _ = s.shutdown(Shutdown::Both);
        }
        drop(conns);
        assert_closed_after(addr, "random after many", &[0xFF; 16]);
    });
}
