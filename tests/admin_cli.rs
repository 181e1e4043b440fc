//! `ringmq topic ...` and `ringmq group ...` against the real broker: the
//! real `ringmq` binary as the CLI, librdkafka (rdkafka crate) producing,
//! consuming in groups and reading committed offsets back, so that what the
//! CLI shows and changes is checked by another client. Also the exit codes
//! and one-line messages when the broker cannot be reached.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::admin::AdminOptions;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

/// The first rebalance of an empty group waits this long (the broker's default, 3 s, would only slow the tests).
const INITIAL_DELAY_MS: &str = "200";
/// Longest any one CLI run may take here.
const CLI_TIMEOUT: Duration = Duration::from_secs(20);
const GROUP_DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// What one run of the CLI did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    /// Panics unless the run exited 0; returns stdout.
    fn ok(self) -> String {
        assert_eq!(self.code, 0, "expected success\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self.stdout
    }

    /// Panics unless the run exited 0 with one JSON document on stdout.
    fn json(self) -> Value {
        let out = self.ok();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{out}"))
    }
}

fn ringmq(args: &[&str]) -> Run {
    let start = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringmq"));
    cmd.args(args).env("RINGMQ_LOG", "warn");
    let (status, stdout, stderr) = run_with_timeout(&mut cmd, None, CLI_TIMEOUT);
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        elapsed: start.elapsed(),
    }
}

/// The CLI pointed at `broker`.
fn cli(broker: &Broker, args: &[&str]) -> Run {
    let addr = broker.addr();
    let mut all = args.to_vec();
    all.extend(["--bootstrap", &addr]);
    ringmq(&all)
}

fn cli_json(broker: &Broker, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    cli(broker, &all).json()
}

fn group_broker() -> Broker {
    Broker::start(BrokerOpts::default().arg("--group-initial-rebalance-delay-ms").arg(INITIAL_DELAY_MS))
}

/// A subscribe-style consumer with manual commits, reading from `reset`
/// (earliest or latest) where the group has no committed offset.
fn group_consumer(addr: &str, group: &str, reset: &str) -> BaseConsumer {
    let mut c = client_config(addr);
    c.set("group.id", group)
        .set("client.id", "admin-cli-test")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", reset)
        .set("enable.partition.eof", "false");
    c.create().expect("create group consumer")
}

/// Polls until `n` messages arrived; returns (partition, offset) of each, sorted.
fn consume(c: &BaseConsumer, n: usize) -> Vec<(i32, i64)> {
    let deadline = Instant::now() + GROUP_DEADLINE;
    let mut got = Vec::new();
    while got.len() < n {
        assert!(Instant::now() < deadline, "consumed {} of {n} messages in {GROUP_DEADLINE:?}", got.len());
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => got.push((m.partition(), m.offset())),
            Some(Err(e)) => eprintln!("[test] consumer error: {e}"),
            None => {}
        }
    }
    got.sort_unstable();
    got
}

/// `per_partition[p]` messages to each partition p.
fn produce_counts(addr: &str, topic: &str, per_partition: &[usize]) {
    let p = producer(addr, &[]);
    let msgs = per_partition
        .iter()
        .enumerate()
        .flat_map(|(part, &n)| (0..n).map(move |i| (part as i32, None, format!("m-{part}-{i}").into_bytes())));
    produce_many(&p, topic, msgs);
}

/// One message with an explicit create time; returns its offset.
fn produce_at(p: &FutureProducer, topic: &str, partition: i32, timestamp_ms: i64) -> i64 {
    let rec = FutureRecord::<(), [u8]>::to(topic).partition(partition).payload(b"t").timestamp(timestamp_ms);
    match rt().block_on(p.send(rec, Duration::from_secs(30))) {
        Ok((_, offset)) => offset,
        Err((e, _)) => panic!("produce to {topic}/{partition} failed: {e}"),
    }
}

/// The group's committed offsets as librdkafka reads them (OffsetFetch from another client).
fn committed_by_rdkafka(addr: &str, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, Option<i64>> {
    let mut c = client_config(addr);
    c.set("group.id", group).set("enable.auto.commit", "false");
    let c: BaseConsumer = c.create().expect("create consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, CLIENT_TIMEOUT).expect("committed offsets");
    got.elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            (e.partition(), offset)
        })
        .collect()
}

/// Waits until `group describe` reports `state`; returns that description.
fn wait_for_state(broker: &Broker, group: &str, state: &str) -> Value {
    let deadline = Instant::now() + GROUP_DEADLINE;
    loop {
        let d = cli_json(broker, &["group", "describe", group]);
        if d["state"] == state {
            return d;
        }
        assert!(Instant::now() < deadline, "group {group} not {state} within {GROUP_DEADLINE:?}: {d}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `seconds` since the epoch as `YYYY-MM-DDTHH:MM:SS` in UTC, by coreutils'
/// date (not by the code under test).
fn utc_seconds(seconds: i64) -> String {
    let out = Command::new("date").args(["-u", "-d", &format!("@{seconds}"), "+%Y-%m-%dT%H:%M:%S"]).output();
    let out = out.expect("run date");
    assert!(out.status.success(), "date failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("ephemeral port").port()
}

// ---------------------------------------------------------------------------
// Version and unreachable brokers
// ---------------------------------------------------------------------------

#[test]
fn version_flag_prints_the_package_version() {
    let out = ringmq(&["--version"]).ok();
    assert_eq!(out.trim(), format!("ringmq {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn no_broker_exits_3_within_5_seconds_naming_the_address() {
    let addr = format!("127.0.0.1:{}", closed_port());
    let run = ringmq(&["topic", "list", "--bootstrap", &addr]);
    assert_eq!(run.code, 3, "stderr: {}", run.stderr);
    assert!(run.elapsed < Duration::from_secs(5), "took {:?}", run.elapsed);
    assert!(run.stdout.is_empty(), "stdout: {}", run.stdout);
    assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
    assert!(run.stderr.contains(&addr), "names the address: {}", run.stderr);
    assert!(run.stderr.contains("connection refused"), "names the cause: {}", run.stderr);
}

#[test]
fn a_listener_that_never_answers_exits_3_after_the_request_timeout() {
    // Accepted by the kernel's backlog, never read from or answered.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr").to_string();
    let run = ringmq(&["group", "list", "--bootstrap", &addr, "--timeout-ms", "1000"]);
    assert_eq!(run.code, 3, "stderr: {}", run.stderr);
    assert!(run.elapsed < Duration::from_secs(5), "took {:?}", run.elapsed);
    assert_eq!(
        run.stderr.trim(),
        format!("ringmq: no answer from {addr} to ApiVersions within 1000 ms"),
        "one line naming the address and the cause"
    );
}

// ---------------------------------------------------------------------------
// Topics
// ---------------------------------------------------------------------------

#[test]
fn topic_create_list_describe_alter_config_delete_round_trip() {
    let broker = Broker::start(BrokerOpts::default());
    let topic = unique_topic("cli-roundtrip");

    let out = cli(&broker, &["topic", "create", &topic, "--partitions", "3", "--config", "retention.ms=3600000"]).ok();
    assert_eq!(out.trim(), format!("created topic `{topic}` with 3 partitions"));
    assert_eq!(partition_count(&broker.addr(), &topic), 3, "rdkafka sees the partitions");

    let listed = cli_json(&broker, &["topic", "list"]);
    let entry = listed["topics"].as_array().expect("topics array").iter().find(|t| t["name"] == topic.as_str());
    let entry = entry.unwrap_or_else(|| panic!("{topic} in {listed}"));
    assert_eq!(entry["partitions"], 3);
    assert_eq!(entry["replicas"], 1);
    assert_eq!(entry["internal"], false);
    let text = cli(&broker, &["topic", "list"]).ok();
    let row: Vec<&str> = text.lines().find(|l| l.starts_with(&topic)).expect("row").split_whitespace().collect();
    assert_eq!(row, [topic.as_str(), "3", "1"]);

    let d = cli_json(&broker, &["topic", "describe", &topic]);
    assert_eq!(d["name"], topic.as_str());
    assert!(d["topic_id"].as_str().is_some_and(|id| id.len() == 36), "topic id: {}", d["topic_id"]);
    let parts: Vec<(i64, i64, i64)> = d["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            (p["partition"].as_i64().unwrap(), p["start_offset"].as_i64().unwrap(), p["end_offset"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(parts, [(0, 0, 0), (1, 0, 0), (2, 0, 0)]);
    let config = |d: &Value, name: &str| -> (String, String) {
        let c = d["configs"].as_array().expect("configs").iter().find(|c| c["name"] == name).cloned();
        let c = c.unwrap_or_else(|| panic!("config {name} in {d}"));
        (c["value"].as_str().unwrap_or_default().to_string(), c["source"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(config(&d, "retention.ms"), ("3600000".into(), "DYNAMIC_TOPIC_CONFIG".into()));
    assert_eq!(config(&d, "cleanup.policy").1, "DEFAULT_CONFIG");

    let out = cli(
        &broker,
        &["topic", "alter-config", &topic, "--set", "retention.bytes=1048576", "--delete", "retention.ms"],
    )
    .ok();
    assert_eq!(out.trim(), format!("altered topic `{topic}`: set retention.bytes=1048576, deleted retention.ms"));
    let d = cli_json(&broker, &["topic", "describe", &topic]);
    assert_eq!(config(&d, "retention.bytes"), ("1048576".into(), "DYNAMIC_TOPIC_CONFIG".into()));
    assert_ne!(config(&d, "retention.ms").1, "DYNAMIC_TOPIC_CONFIG", "the override is gone");
    let text = cli(&broker, &["topic", "describe", &topic]).ok();
    let row: Vec<&str> =
        text.lines().find(|l| l.starts_with("retention.bytes")).expect("row").split_whitespace().collect();
    assert_eq!(row, ["retention.bytes", "1048576", "DYNAMIC_TOPIC_CONFIG"]);

    let deleted = cli_json(&broker, &["topic", "delete", &topic]);
    assert_eq!(deleted["name"], topic.as_str());
    let listed = cli_json(&broker, &["topic", "list"]);
    assert!(!listed["topics"].as_array().unwrap().iter().any(|t| t["name"] == topic.as_str()), "{listed}");
    let run = cli(&broker, &["topic", "describe", &topic]);
    assert_eq!((run.code, run.stderr.trim()), (1, format!("ringmq: unknown topic `{topic}`").as_str()));
}

#[test]
fn creating_an_existing_topic_exits_1_and_says_it_exists() {
    let broker = Broker::start(BrokerOpts::default());
    let topic = unique_topic("cli-exists");
    cli(&broker, &["topic", "create", &topic]).ok();
    let run = cli(&broker, &["topic", "create", &topic, "--partitions", "2"]);
    assert_eq!(run.code, 1, "stderr: {}", run.stderr);
    assert_eq!(run.stderr.trim(), format!("ringmq: topic `{topic}` already exists"));
    assert!(run.stdout.is_empty(), "stdout: {}", run.stdout);
}

#[test]
fn topic_describe_shows_the_offsets_rdkafka_produced_and_deleted() {
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("cli-offsets");
    create_topic(&addr, &topic, 3, &[]);
    produce_counts(&addr, &topic, &[5, 7, 0]);
    // Move partition 1's log start with DeleteRecords, through rdkafka.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 1, Offset::Offset(3)).unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(CLIENT_TIMEOUT));
    rt().block_on(admin(&addr).delete_records(&tpl, &opts)).expect("delete_records");

    let d = cli_json(&broker, &["topic", "describe", &topic]);
    for p in d["partitions"].as_array().expect("partitions") {
        let partition = p["partition"].as_i64().unwrap() as i32;
        let (low, high) = watermarks(&addr, &topic, partition);
        assert_eq!((p["start_offset"].as_i64(), p["end_offset"].as_i64()), (Some(low), Some(high)), "p{partition}");
    }
    let offsets: Vec<(i64, i64)> = d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["start_offset"].as_i64().unwrap(), p["end_offset"].as_i64().unwrap()))
        .collect();
    assert_eq!(offsets, [(0, 5), (3, 7), (0, 0)]);
    let text = cli(&broker, &["topic", "describe", &topic]).ok();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip_while(|l| !l.starts_with("PARTITION "))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows, [["0", "0", "0", "5"], ["1", "0", "3", "7"], ["2", "0", "0", "0"]]);
}

// ---------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------

#[test]
fn group_list_and_describe_show_a_live_member_and_its_lag() {
    let broker = group_broker();
    let addr = broker.addr();
    let topic = unique_topic("cli-lag");
    let group = unique_topic("cli-lag-group");
    create_topic(&addr, &topic, 2, &[]);
    produce_counts(&addr, &topic, &[4, 6]);
    let c = group_consumer(&addr, &group, "earliest");
    c.subscribe(&[&topic]).expect("subscribe");
    assert_eq!(consume(&c, 10).len(), 10);
    c.commit_consumer_state(CommitMode::Sync).expect("commit");
    produce_counts(&addr, &topic, &[3, 0]);

    let listed = cli_json(&broker, &["group", "list"]);
    let entry = listed["groups"].as_array().expect("groups").iter().find(|g| g["group"] == group.as_str()).cloned();
    let entry = entry.unwrap_or_else(|| panic!("{group} in {listed}"));
    assert_eq!((entry["state"].as_str(), entry["protocol_type"].as_str()), (Some("Stable"), Some("consumer")));

    let d = wait_for_state(&broker, &group, "Stable");
    assert_eq!(d["protocol_type"], "consumer");
    assert!(!d["protocol"].as_str().unwrap_or_default().is_empty(), "an assignor: {d}");
    let members = d["members"].as_array().expect("members");
    assert_eq!(members.len(), 1, "{d}");
    let member_id = members[0]["member_id"].as_str().expect("member id").to_string();
    assert_eq!(members[0]["client_id"], "admin-cli-test");
    assert_eq!(members[0]["assignment"], serde_json::json!([{ "topic": topic, "partitions": [0, 1] }]));
    // (partition, committed offset, end offset, lag, member id)
    type Row<'a> = (i64, Option<i64>, Option<i64>, Option<i64>, Option<&'a str>);
    let rows: Vec<Row> = d["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            assert_eq!(p["topic"], topic.as_str());
            let n = |k: &str| p[k].as_i64();
            (n("partition").unwrap(), n("committed_offset"), n("end_offset"), n("lag"), p["member_id"].as_str())
        })
        .collect();
    let m = Some(member_id.as_str());
    assert_eq!(rows, [(0, Some(4), Some(7), Some(3), m), (1, Some(6), Some(6), Some(0), m)]);
    assert_eq!(d["total_lag"], 3);

    let text = cli(&broker, &["group", "describe", &group]).ok();
    assert!(text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["TOTAL-LAG", "3"]), "{text}");
    let row = text.lines().find(|l| l.starts_with(&topic) && l.split_whitespace().nth(1) == Some("0")).expect("p0 row");
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), [topic.as_str(), "0", "4", "7", "3", member_id.as_str()]);
}

#[test]
fn reset_offsets_is_refused_while_the_group_has_a_member() {
    let broker = group_broker();
    let addr = broker.addr();
    let topic = unique_topic("cli-busy");
    let group = unique_topic("cli-busy-group");
    create_topic(&addr, &topic, 1, &[]);
    produce_counts(&addr, &topic, &[3]);
    let c = group_consumer(&addr, &group, "earliest");
    c.subscribe(&[&topic]).expect("subscribe");
    consume(&c, 3);
    c.commit_consumer_state(CommitMode::Sync).expect("commit");
    wait_for_state(&broker, &group, "Stable");

    let run = cli(&broker, &["group", "reset-offsets", &group, "--topic", &topic, "--to-earliest"]);
    assert_eq!(run.code, 1, "stdout: {}\nstderr: {}", run.stdout, run.stderr);
    assert_eq!(
        run.stderr.trim(),
        format!("ringmq: group `{group}` has 1 active member; stop it before resetting offsets")
    );
    assert_eq!(committed_by_rdkafka(&addr, &group, &topic, 1), BTreeMap::from([(0, Some(3))]), "nothing moved");
}

#[test]
fn reset_to_earliest_after_the_consumer_left_makes_a_new_consumer_reread_from_0() {
    let broker = group_broker();
    let addr = broker.addr();
    let topic = unique_topic("cli-rewind");
    let group = unique_topic("cli-rewind-group");
    create_topic(&addr, &topic, 2, &[]);
    produce_counts(&addr, &topic, &[3, 2]);
    {
        let c = group_consumer(&addr, &group, "earliest");
        c.subscribe(&[&topic]).expect("subscribe");
        consume(&c, 5);
        c.commit_consumer_state(CommitMode::Sync).expect("commit");
    } // dropped: librdkafka leaves the group
    wait_for_state(&broker, &group, "Empty");

    let out = cli(&broker, &["group", "reset-offsets", &group, "--topic", &topic, "--to-earliest"]).ok();
    let plan: Vec<Vec<&str>> = out
        .lines()
        .skip_while(|l| !l.starts_with("PARTITION "))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(plan[..2], [vec!["0", "3", "0"], vec!["1", "2", "0"]], "plan:\n{out}");
    assert!(
        out.contains(&format!("committed new offsets for 2 partitions of topic `{topic}` in group `{group}`")),
        "{out}"
    );

    // "latest" where nothing is committed: only the reset makes it read from 0.
    let c = group_consumer(&addr, &group, "latest");
    c.subscribe(&[&topic]).expect("subscribe");
    assert_eq!(consume(&c, 5), [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]);
}

#[test]
fn reset_to_offset_moves_only_the_chosen_partitions_clamped_to_their_end() {
    let broker = group_broker();
    let addr = broker.addr();
    let topic = unique_topic("cli-to-offset");
    let group = unique_topic("cli-to-offset-group");
    create_topic(&addr, &topic, 3, &[]);
    produce_counts(&addr, &topic, &[10, 10, 2]);

    let args = ["group", "reset-offsets", &group, "--topic", &topic, "--to-offset", "4", "--partitions", "0,2"];
    let r = cli_json(&broker, &args);
    assert_eq!((r["group"].as_str(), r["topic"].as_str()), (Some(group.as_str()), Some(topic.as_str())));
    assert_eq!(r["to"], "offset 4");
    assert_eq!(r["committed"], true);
    assert_eq!(
        r["partitions"],
        serde_json::json!([
            { "partition": 0, "current_offset": null, "new_offset": 4 },
            { "partition": 2, "current_offset": null, "new_offset": 2 },
        ]),
        "partition 2 has only 2 records: clamped to its end"
    );
    let committed = committed_by_rdkafka(&addr, &group, &topic, 3);
    assert_eq!(committed, BTreeMap::from([(0, Some(4)), (1, None), (2, Some(2))]));
}

#[test]
fn reset_to_datetime_moves_to_the_first_record_at_or_after_it() {
    let broker = group_broker();
    let addr = broker.addr();
    let topic = unique_topic("cli-to-time");
    let group = unique_topic("cli-to-time-group");
    create_topic(&addr, &topic, 2, &[]);
    let base_s = now_ms() / 1000 - 600;
    let p = producer(&addr, &[]);
    // Partition 0: one record a second from base; partition 1: three, all before the time asked.
    for i in 0..8 {
        assert_eq!(produce_at(&p, &topic, 0, base_s * 1000 + i * 1000), i);
    }
    for i in 0..3 {
        produce_at(&p, &topic, 1, base_s * 1000 + i * 1000);
    }
    // Between the records at base+3 s and base+4 s, written with a zone offset of -01:30.
    let time = format!("{}.500-01:30", utc_seconds(base_s + 3 - 90 * 60));

    let args = ["group", "reset-offsets", &group, "--topic", &topic, "--to-datetime", &time];
    let r = cli_json(&broker, &args);
    let moved: Vec<(i64, i64)> = r["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|e| (e["partition"].as_i64().unwrap(), e["new_offset"].as_i64().unwrap()))
        .collect();
    assert_eq!(moved, [(0, 4), (1, 3)], "partition 1 has nothing that recent: its end offset");
    assert_eq!(committed_by_rdkafka(&addr, &group, &topic, 2), BTreeMap::from([(0, Some(4)), (1, Some(3))]));
}

#[test]
fn group_delete_removes_an_empty_group_and_then_says_it_does_not_exist() {
    let broker = group_broker();
    let addr = broker.addr();
    let topic = unique_topic("cli-delete");
    let group = unique_topic("cli-delete-group");
    create_topic(&addr, &topic, 1, &[]);
    produce_counts(&addr, &topic, &[2]);
    cli(&broker, &["group", "reset-offsets", &group, "--topic", &topic, "--to-latest"]).ok();
    assert_eq!(wait_for_state(&broker, &group, "Empty")["partitions"][0]["committed_offset"], 2);

    let out = cli(&broker, &["group", "delete", &group]).ok();
    assert_eq!(out.trim(), format!("deleted group `{group}`"));
    let listed = cli_json(&broker, &["group", "list"]);
    assert!(!listed["groups"].as_array().unwrap().iter().any(|g| g["group"] == group.as_str()), "{listed}");
    assert_eq!(committed_by_rdkafka(&addr, &group, &topic, 1), BTreeMap::from([(0, None)]));
    for args in [["group", "describe", group.as_str()], ["group", "delete", group.as_str()]] {
        let run = cli(&broker, &args);
        assert_eq!((run.code, run.stderr.trim()), (1, format!("ringmq: group `{group}` does not exist").as_str()));
    }
}
