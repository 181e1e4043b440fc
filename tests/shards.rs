//! Thread-per-core: pinned shards, partitions spread over them, requests
//! crossing shards, restarts with another shard count, and a non-root broker
//! under an 8 MiB locked-memory limit.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// CPUs this test process may use (the broker's default shard set).
fn usable_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list")
        .trim()
        .to_string();
    parse_cpu_list(&list)
}

fn parse_cpu_list(list: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => out.extend(a.parse::<usize>().expect("cpu")..=b.parse::<usize>().expect("cpu")),
            None => out.push(part.parse().expect("cpu")),
        }
    }
    out
}

/// Sums of a metric family by its `shard` label.
fn by_shard(metrics: &str, name: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines().filter(|l| l.starts_with(&format!("{name}{{"))) {
        let shard = line.split("shard=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_default().to_string();
        let value: u64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0);
        *out.entry(shard).or_default() += value;
    }
    out
}

#[test]
fn each_shard_thread_is_pinned_to_its_own_cpu() {
    let cpus = usable_cpus();
    assert!(cpus.len() >= 2, "this test needs 2 usable CPUs, found {cpus:?}");
    let broker = Broker::start(BrokerOpts::default().arg("--cores").arg("2"));
    let pid = broker.pid().expect("pid");
    let mut pinned: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks").flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default().trim().to_string();
        let Some(shard) = comm.strip_prefix("ringmq-shard-") else { continue };
        let shard = shard.trim_end_matches('-').to_string();
        let status = std::fs::read_to_string(task.path().join("status")).expect("status");
        let allowed =
            status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).expect("affinity").trim().to_string();
        assert_eq!(parse_cpu_list(&allowed).len(), 1, "shard thread {comm} may run on {allowed}");
        pinned.entry(shard).or_default().insert(allowed);
    }
    assert_eq!(pinned.len(), 2, "expected threads of shards 0 and 1, found {pinned:?}");
    let cpus_used: BTreeSet<&String> = pinned.values().flatten().collect();
    assert_eq!(cpus_used.len(), 2, "the two shards share a CPU: {pinned:?}");
    for set in pinned.values() {
        assert_eq!(set.len(), 1, "one shard's threads on several CPUs: {pinned:?}");
    }
    assert!(broker.log().contains("shards=2"), "start-up line should name the shard count:\n{}", broker.log_tail(20));
}

#[test]
fn partitions_of_one_topic_are_owned_by_both_shards() {
    let broker = Broker::start(BrokerOpts::default().arg("--cores").arg("2"));
    let topic = unique_topic("spread");
    create_topic(&broker.addr(), &topic, 8, &[]);
    let m = broker.metrics();
    let owners: BTreeSet<String> = m
        .lines()
        .filter(|l| l.starts_with("ringmq_partition_high_watermark{") && l.contains(&format!("topic=\"{topic}\"")))
        .filter_map(|l| l.split("shard=\"").nth(1).and_then(|s| s.split('"').next()).map(str::to_string))
        .collect();
    assert_eq!(owners, BTreeSet::from(["0".to_string(), "1".to_string()]), "owners of {topic}'s partitions\n{m}");
}

#[test]
fn eight_partitions_through_one_connection_land_in_order_and_every_shard_reads_them() {
    let broker = Broker::start(BrokerOpts::default().arg("--cores").arg("2"));
    let addr = broker.addr();
    let topic = unique_topic("eight");
    create_topic(&addr, &topic, 8, &[]);
    // Pipelined through the producer's one connection: requests for both
    // shards' partitions in flight together, acknowledged in order.
    let producer = producer(&addr, &[]);
    let msgs: Vec<(i32, Option<Vec<u8>>, Vec<u8>)> =
        (0..1600u64).map(|i| ((i % 8) as i32, None, random_bytes(i, 64 + (i as usize % 200)))).collect();
    let acks = produce_many(&producer, &topic, msgs.clone());
    let mut sent: BTreeMap<i32, Vec<Vec<u8>>> = BTreeMap::new();
    for ((p, _, payload), (acked_p, offset)) in msgs.into_iter().zip(acks) {
        let want = sent.get(&p).map_or(0, Vec::len) as i64;
        assert_eq!((acked_p, offset), (p, want), "acknowledgement of the next message to partition {p}");
        sent.entry(p).or_default().push(payload);
    }
    // Rounds of consumers, each on its own connections, which the kernel
    // spreads over both shards' listeners, until each shard has served
    // reads of the other's partitions (at least 2 rounds, at most 16).
    let mut round = 0;
    loop {
        let m = broker.metrics();
        let (hops, requests) = (by_shard(&m, "ringmq_cross_shard_hops_total"), by_shard(&m, "ringmq_requests_total"));
        let both = |v: &BTreeMap<String, u64>| v.len() == 2 && v.values().all(|&n| n > 0);
        if round >= 2 && both(&hops) && both(&requests) {
            eprintln!("both shards served reads of the other's partitions after {round} rounds: {hops:?}");
            break;
        }
        assert!(
            round < 16,
            "after {round} rounds of reads, not both shards served connections ({requests:?}) and reached the other's partitions ({hops:?})"
        );
        round += 1;
        for p in 0..8 {
            let got = read_all(&addr, &topic, p, Duration::from_secs(60));
            let want = &sent[&p];
            assert_eq!(got.len(), want.len(), "round {round}: partition {p} count");
            for (i, rec) in got.iter().enumerate() {
                assert_eq!(rec.offset, i as i64, "round {round}: partition {p} offsets must be contiguous from 0");
                assert_eq!(
                    rec.payload.as_deref(),
                    Some(&want[i][..]),
                    "round {round}: partition {p} offset {i} payload"
                );
            }
        }
    }
}

fn produce_round(
    addr: &str,
    topic: &str,
    round: u64,
    per_partition: u64,
    sent: &mut BTreeMap<i32, Vec<(i64, Vec<u8>)>>,
) {
    // Pipelined: each acknowledged offset is checked against the read-back.
    let producer = producer(addr, &[]);
    let msgs: Vec<(i32, Option<Vec<u8>>, Vec<u8>)> =
        (0..per_partition * 8).map(|i| ((i % 8) as i32, None, format!("round-{round}-msg-{i}").into_bytes())).collect();
    let acks = produce_many(&producer, topic, msgs.clone());
    for ((p, _, payload), (acked_p, offset)) in msgs.into_iter().zip(acks) {
        assert_eq!(acked_p, p, "round {round}: acknowledged on another partition");
        sent.entry(p).or_default().push((offset, payload));
    }
}

/// Every partition read up to its high watermark (one consumer for all)
/// holds exactly the acknowledged records, at their acknowledged offsets.
fn assert_all_present(addr: &str, topic: &str, sent: &BTreeMap<i32, Vec<(i64, Vec<u8>)>>) {
    let ends: Vec<(i32, i64)> = sent.keys().map(|&p| (p, watermarks(addr, topic, p).1)).collect();
    let mut read = read_partitions(addr, topic, &ends, Duration::from_secs(60));
    for (p, want) in sent {
        let got = read.remove(p).unwrap_or_default();
        assert_eq!(got.len(), want.len(), "partition {p}: acknowledged {} records, read {}", want.len(), got.len());
        for (rec, (offset, payload)) in got.iter().zip(want) {
            assert_eq!(rec.offset, *offset, "partition {p}: order or offset changed");
            assert_eq!(rec.payload.as_deref(), Some(&payload[..]), "partition {p} offset {offset}");
        }
    }
}

#[test]
fn restart_with_another_shard_count_keeps_every_message_in_order() {
    let mut broker = Broker::start(BrokerOpts::default().arg("--cores").arg("2"));
    let addr = broker.addr();
    let topic = unique_topic("reshard");
    create_topic(&addr, &topic, 8, &[]);
    let mut sent = BTreeMap::new();
    produce_round(&addr, &topic, 0, 50, &mut sent);
    broker.kill9();
    broker.restart_with(BrokerOpts::default().arg("--cores").arg("1"));
    assert_all_present(&addr, &topic, &sent);
    produce_round(&addr, &topic, 1, 50, &mut sent);
    broker.kill9();
    broker.restart_with(BrokerOpts::default().arg("--cores").arg("2"));
    assert_all_present(&addr, &topic, &sent);
    produce_round(&addr, &topic, 2, 10, &mut sent);
    assert_all_present(&addr, &topic, &sent);
}

/// Runs `kcat` with `input` on stdin; returns stdout.
fn kcat(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("kcat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("kcat (tests/run installs it)");
    child.stdin.take().expect("stdin").write_all(input).expect("kcat stdin");
    let out = child.wait_with_output().expect("kcat");
    assert!(out.status.success(), "kcat {args:?} failed: {}", out.status);
    out.stdout
}

#[test]
fn non_root_broker_with_8_mib_memlock_serves_two_shards() {
    // Under /var/tmp (world-searchable, on disk), not the target dir, whose
    // parents may not be searchable by `nobody`.
    let dir = tempfile::Builder::new().prefix("ringmq-nonroot-").tempdir_in("/var/tmp").expect("tempdir in /var/tmp");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let bin = dir.path().join("ringmq");
    std::fs::copy(broker_bin(), &bin).expect("copy broker binary");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let data = dir.path().join("data");
    let serve = format!(
        "ulimit -l 8192 && exec {} serve --data-dir {} --listen 127.0.0.1:0 --amqp-listen 127.0.0.1:0 --metrics off --cores 2",
        bin.display(),
        data.display()
    );
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all", "sh", "-c", &serve]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &serve]);
        c
    };
    let log_path = dir.path().join("broker.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut child = cmd.stdout(Stdio::piped()).stderr(log).spawn().expect("spawn non-root broker");
    // The ready line, read on a thread so that a broker that neither starts
    // nor exits fails the test after READY_TIMEOUT instead of hanging it.
    let stdout = child.stdout.take().expect("stdout");
    let (tx, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("ringmq ready listen=") {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_string());
            }
        }
    });
    let addr = match ready.recv_timeout(READY_TIMEOUT) {
        Ok(addr) => addr,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "non-root broker not ready ({e:?} within {READY_TIMEOUT:?}):\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
    };
    let topic = unique_topic("nonroot");
    let input: String = (0..200).map(|i| format!("line-{i}\n")).collect();
    kcat(&["-P", "-b", &addr, "-t", &topic, "-p", "0"], input.as_bytes());
    let out = kcat(&["-C", "-b", &addr, "-t", &topic, "-p", "0", "-o", "beginning", "-e", "-q"], b"");
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert_eq!(String::from_utf8_lossy(&out), input, "round trip through the non-root broker\n{log}");
    assert!(log.contains("memlock limit 8388608"), "start-up should say how io_memory was sized:\n{log}");
    assert!(log.contains("io_memory_bytes_per_shard="), "start-up should print io_memory per shard:\n{log}");
    assert!(log.contains("buffer_registration=\"ok\""), "buffers sized from the limit should register:\n{log}");
}
