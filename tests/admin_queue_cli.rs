//! `ringmq queue list|purge|delete` against the real broker, through its
//! HTTP API on the metrics address: queues declared, filled and consumed by
//! a real AMQP client (pika, from the client venv that `tests/run` sets up),
//! so that what the CLI shows and changes is checked by another client.
//! Also the exit codes and one-line messages when the API cannot be reached
//! or the broker runs without AMQP, and the API's own answers on the wire.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Longest any one CLI or pika run may take here.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

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
    fn ok(self) -> String {
        assert_eq!(self.code, 0, "expected success\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self.stdout
    }

    fn json(self) -> Value {
        let out = self.ok();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{out}"))
    }

    /// Panics unless the run exited `code` with one line on stderr; returns it.
    fn failed(self, code: i32) -> String {
        assert_eq!(self.code, code, "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        assert!(self.stdout.is_empty(), "nothing on stdout: {}", self.stdout);
        assert_eq!(self.stderr.lines().count(), 1, "one line on stderr: {}", self.stderr);
        self.stderr.trim_end().to_string()
    }
}

fn ringmq(args: &[&str]) -> Run {
    let start = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringmq"));
    cmd.args(args).env("RINGMQ_LOG", "warn");
    let (status, stdout, stderr) = run_with_timeout(&mut cmd, None, RUN_TIMEOUT);
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        elapsed: start.elapsed(),
    }
}

/// A value the broker logged as `key=VALUE`, waiting for the line to appear.
fn logged(broker: &Broker, key: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = broker
            .log()
            .lines()
            .rev()
            .find_map(|l| l.split(key).nth(1).and_then(|s| s.split_whitespace().next()).map(str::to_string));
        match found {
            Some(v) => return v,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            None => panic!("no `{key}` in broker.log:\n{}", broker.log_tail(40)),
        }
    }
}

/// The broker's HTTP API address (its metrics endpoint).
fn http_addr(broker: &Broker) -> String {
    logged(broker, "metrics endpoint listening metrics=")
}

/// The CLI's queue command pointed at `broker`.
fn queue_cli(broker: &Broker, args: &[&str]) -> Run {
    let http = http_addr(broker);
    let mut all = vec!["queue"];
    all.extend(args);
    all.extend(["--http", &http]);
    ringmq(&all)
}

fn queue_list_json(broker: &Broker) -> Vec<Value> {
    let doc = queue_cli(broker, &["list", "--format", "json"]).json();
    doc["queues"].as_array().unwrap_or_else(|| panic!("no `queues` array: {doc}")).clone()
}

fn find<'a>(queues: &'a [Value], name: &str) -> &'a Value {
    queues.iter().find(|q| q["name"] == name).unwrap_or_else(|| panic!("no queue {name:?} in {queues:?}"))
}

fn python() -> PathBuf {
    let p = std::env::var_os("RINGMQ_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/client-venv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: run tests/run, which installs the Python clients (pika among them)",
        p.display()
    );
    p
}

/// The pika side of the tests: one action per run, `hold` and `exclusive`
/// print `ready` once in place and keep their connection until stdin closes.
const PIKA: &str = r#"
import json, select, sys
import pika

url, action, name = sys.argv[1:4]
conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()

def hold():
    print("ready", flush=True)
    while True:
        conn.process_data_events(time_limit=0.1)
        if select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.read(1):
            break

if action == "declare":
    kind = sys.argv[4]
    args = {"x-queue-type": "quorum"} if kind == "quorum" else None
    ch.queue_declare(name, durable=(kind != "transient"), arguments=args)
elif action == "publish":
    ch.confirm_delivery()
    for i in range(int(sys.argv[4])):
        ch.basic_publish("", name, b"message %d" % i, pika.BasicProperties(delivery_mode=2), mandatory=True)
elif action == "exists":
    try:
        ch.queue_declare(name, passive=True)
        print(json.dumps({"exists": True}))
    except pika.exceptions.ChannelClosedByBroker as e:
        print(json.dumps({"exists": False, "code": e.reply_code}))
elif action == "delete":
    try:
        r = ch.queue_delete(name, if_unused=(sys.argv[4] == "if-unused"), if_empty=(sys.argv[4] == "if-empty"))
        print(json.dumps({"deleted": r.method.message_count}))
    except pika.exceptions.ChannelClosedByBroker as e:
        print(json.dumps({"code": e.reply_code, "text": e.reply_text}))
elif action == "hold":
    k = int(sys.argv[4])
    got = []
    ch.basic_qos(prefetch_count=max(k, 1))
    ch.basic_consume(name, lambda c, m, p, b: got.append(m.delivery_tag))
    while len(got) < k:
        conn.process_data_events(time_limit=0.1)
    hold()
elif action == "exclusive":
    ch.queue_declare(name, exclusive=True)
    hold()
else:
    sys.exit("unknown action " + action)
if conn.is_open:
    conn.close()
"#;

fn pika_command(broker: &Broker, args: &[&str]) -> Command {
    let mut c = Command::new(python());
    c.arg("-c").arg(PIKA).arg(broker.amqp_url()).args(args);
    c
}

/// Runs one pika action to completion; returns its stdout.
fn pika(broker: &Broker, args: &[&str]) -> String {
    let (status, stdout, stderr) = run_with_timeout(&mut pika_command(broker, args), None, RUN_TIMEOUT);
    assert!(
        status.success(),
        "pika {args:?} failed ({status}); is pika installed in the client venv (tests/run)?\n{}\n--- broker.log ---\n{}",
        String::from_utf8_lossy(&stderr),
        broker.log_tail(30)
    );
    String::from_utf8_lossy(&stdout).into_owned()
}

fn declare(broker: &Broker, name: &str, kind: &str) {
    pika(broker, &["declare", name, kind]);
}

fn publish(broker: &Broker, name: &str, n: usize) {
    pika(broker, &["publish", name, &n.to_string()]);
}

/// Whether a passive declare finds `name` (and the reply code when not).
fn exists(broker: &Broker, name: &str) -> Value {
    let out = pika(broker, &["exists", name]);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("pika exists: {e}: {out}"))
}

/// A pika process keeping a connection open (a consumer holding messages
/// unacknowledged, or an exclusive queue) until dropped.
struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Holder {
    fn start(broker: &Broker, args: &[&str]) -> Holder {
        let mut child = pika_command(broker, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut holder = Holder { child, stdin };
        match rx.recv_timeout(RUN_TIMEOUT) {
            Ok(line) if line == "ready" => holder,
            other => {
                let _ = holder.child.kill();
                panic!("pika {args:?} did not get ready: {other:?}\n--- broker.log ---\n{}", broker.log_tail(30))
            }
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // Closing stdin lets it close its connection; kill only if it hangs.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One raw HTTP/1.0 request; returns (status line, headers, body).
fn http(addr: &str, method: &str, target: &str) -> (String, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the HTTP API");
    s.set_read_timeout(Some(RUN_TIMEOUT)).expect("timeout");
    write!(s, "{method} {target} HTTP/1.0\r\n\r\n").expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("answer");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not HTTP: {text:?}"));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_string(), body.to_string())
}

/// The shard count the broker runs with (from its ready log line).
fn shard_count(broker: &Broker) -> usize {
    logged(broker, "shards=").parse().expect("shards=N")
}

/// Waits until `name` is listed with `consumers` consumers.
fn wait_for_consumers(broker: &Broker, name: &str, consumers: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let queues = queue_list_json(broker);
        if find(&queues, name)["consumers"] == consumers {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never had {consumers} consumers: {queues:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// Listing
// ---------------------------------------------------------------------------

#[test]
fn queue_list_shows_type_durability_and_counts_in_an_aligned_table() {
    let broker = Broker::start(BrokerOpts::default());
    declare(&broker, "orders", "durable");
    publish(&broker, "orders", 10);
    let _consumer = Holder::start(&broker, &["hold", "orders", "3"]);
    declare(&broker, "scratch", "transient");
    declare(&broker, "ledger", "quorum");
    publish(&broker, "ledger", 2);

    let out = queue_cli(&broker, &["list"]).ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three queues, by name:\n{out}");
    let header = lines[0];
    let columns = ["NAME", "TYPE", "DURABLE", "MESSAGES-READY", "UNACKED", "CONSUMERS"];
    let starts: Vec<usize> = columns.iter().map(|c| header.find(c).expect("column")).collect();
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], columns, "{out}");
    assert_eq!(rows[1], ["ledger", "quorum", "true", "2", "0", "0"], "{out}");
    assert_eq!(rows[2], ["orders", "classic", "true", "7", "3", "1"], "{out}");
    assert_eq!(rows[3], ["scratch", "classic", "false", "0", "0", "0"], "{out}");
    for line in &lines[1..] {
        for (&start, cell) in starts.iter().zip(line.split_whitespace()) {
            assert_eq!(line[start..].split_whitespace().next(), Some(cell), "cells start under their header:\n{out}");
        }
    }
}

#[test]
fn queue_list_as_json_gives_each_queues_flags_type_counts_and_owner_shard() {
    let broker = Broker::start(BrokerOpts::default());
    declare(&broker, "orders", "durable");
    publish(&broker, "orders", 10);
    let _consumer = Holder::start(&broker, &["hold", "orders", "4"]);
    declare(&broker, "scratch", "transient");
    publish(&broker, "scratch", 1);
    declare(&broker, "ledger", "quorum");
    let _owner = Holder::start(&broker, &["exclusive", "mine"]);

    let queues = queue_list_json(&broker);
    let names: Vec<&str> = queues.iter().filter_map(|q| q["name"].as_str()).collect();
    assert_eq!(names, ["ledger", "mine", "orders", "scratch"]);
    // (durable, auto_delete, exclusive, type, ready, unacked, consumers)
    let expected = [
        ("ledger", (true, false, false, "quorum", 0, 0, 0)),
        ("mine", (false, false, true, "classic", 0, 0, 0)),
        ("orders", (true, false, false, "classic", 6, 4, 1)),
        ("scratch", (false, false, false, "classic", 1, 0, 0)),
    ];
    let shards = shard_count(&broker);
    for (name, (durable, auto_delete, exclusive, kind, ready, unacked, consumers)) in expected {
        let q = find(&queues, name);
        assert_eq!(q["vhost"], "/", "{q}");
        assert_eq!(q["durable"], durable, "{q}");
        assert_eq!(q["auto_delete"], auto_delete, "{q}");
        assert_eq!(q["exclusive"], exclusive, "{q}");
        assert_eq!(q["type"], kind, "{q}");
        assert_eq!(q["messages_ready"], ready, "{q}");
        assert_eq!(q["messages_unacknowledged"], unacked, "{q}");
        assert_eq!(q["messages"], ready + unacked, "{q}");
        assert_eq!(q["consumers"], consumers, "{q}");
        assert_eq!(q["shard"], ringmq::amqp::broker::queue_owner(name, shards), "{q}");
        assert_eq!(q.as_object().map(|o| o.len()), Some(11), "exactly the documented fields: {q}");
    }
}

// ---------------------------------------------------------------------------
// Purge and delete
// ---------------------------------------------------------------------------

#[test]
fn queue_purge_drops_ready_messages_and_leaves_unacknowledged_ones() {
    let broker = Broker::start(BrokerOpts::default());
    declare(&broker, "jobs", "durable");
    publish(&broker, "jobs", 10);
    let _consumer = Holder::start(&broker, &["hold", "jobs", "3"]);

    let out = queue_cli(&broker, &["purge", "jobs"]).ok();
    assert_eq!(out, "purged 7 messages from queue `jobs`\n");
    let q = find(&queue_list_json(&broker), "jobs").clone();
    assert_eq!(q["messages_ready"], 0, "{q}");
    assert_eq!(q["messages_unacknowledged"], 3, "unacknowledged messages stay: {q}");
    assert_eq!(q["consumers"], 1, "{q}");
    let again = queue_cli(&broker, &["purge", "jobs", "--format", "json"]).json();
    assert_eq!(again, serde_json::json!({"vhost": "/", "name": "jobs", "messages_purged": 0}));
}

#[test]
fn queue_delete_removes_the_queue_so_that_a_passive_declare_gets_404() {
    let broker = Broker::start(BrokerOpts::default());
    declare(&broker, "old", "durable");
    publish(&broker, "old", 5);
    declare(&broker, "kept", "durable");
    assert_eq!(exists(&broker, "old")["exists"], true);

    let deleted = queue_cli(&broker, &["delete", "old", "--format", "json"]).json();
    assert_eq!(deleted, serde_json::json!({"vhost": "/", "name": "old", "messages_deleted": 5}));
    assert_eq!(exists(&broker, "old"), serde_json::json!({"exists": false, "code": 404}));
    let names: Vec<Value> = queue_list_json(&broker).iter().map(|q| q["name"].clone()).collect();
    assert_eq!(names, ["kept"]);
}

#[test]
fn queue_delete_if_empty_is_refused_while_the_queue_holds_messages_and_done_once_it_is_empty() {
    let broker = Broker::start(BrokerOpts::default());
    declare(&broker, "busy", "durable");
    publish(&broker, "busy", 2);

    let refused = queue_cli(&broker, &["delete", "busy", "--if-empty"]).failed(1);
    assert_eq!(refused, "ringmq: queue 'busy' in vhost '/' is not empty");
    assert_eq!(exists(&broker, "busy")["exists"], true, "still there");
    queue_cli(&broker, &["purge", "busy"]).ok();
    let out = queue_cli(&broker, &["delete", "busy", "--if-empty"]).ok();
    assert_eq!(out, "deleted queue `busy` and its 0 ready messages\n");
    assert_eq!(exists(&broker, "busy")["exists"], false);
}

#[test]
fn queue_delete_if_unused_is_refused_while_a_consumer_is_attached() {
    let broker = Broker::start(BrokerOpts::default());
    declare(&broker, "watched", "durable");
    let consumer = Holder::start(&broker, &["hold", "watched", "0"]);

    let refused = queue_cli(&broker, &["delete", "watched", "--if-unused"]).failed(1);
    assert_eq!(refused, "ringmq: queue 'watched' in vhost '/' in use");
    assert_eq!(find(&queue_list_json(&broker), "watched")["consumers"], 1, "still there, consumer and all");
    drop(consumer);
    wait_for_consumers(&broker, "watched", 0);
    queue_cli(&broker, &["delete", "watched", "--if-unused"]).ok();
    assert_eq!(exists(&broker, "watched")["exists"], false);
}

#[test]
fn amqp_queue_delete_refuses_with_the_same_check_and_words_as_the_api() {
    let broker = Broker::start(BrokerOpts::default());
    declare(&broker, "shared", "durable");
    publish(&broker, "shared", 1);
    let _consumer = Holder::start(&broker, &["hold", "shared", "1"]);

    let amqp_delete = |condition: &str| -> Value {
        let out = pika(&broker, &["delete", "shared", condition]);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("pika delete: {e}: {out}"))
    };
    for (condition, reason) in [("if-empty", "is not empty"), ("if-unused", "in use")] {
        let over_amqp = amqp_delete(condition);
        let words = format!("queue 'shared' in vhost '/' {reason}");
        assert_eq!(over_amqp, serde_json::json!({"code": 406, "text": format!("PRECONDITION_FAILED - {words}")}));
        let over_http = queue_cli(&broker, &["delete", "shared", &format!("--{condition}")]).failed(1);
        assert_eq!(over_http, format!("ringmq: {words}"));
    }
    assert_eq!(exists(&broker, "shared")["exists"], true);
}

#[test]
fn an_unknown_queue_exits_1_with_the_apis_reason() {
    let broker = Broker::start(BrokerOpts::default());
    for command in ["purge", "delete"] {
        let message = queue_cli(&broker, &[command, "missing"]).failed(1);
        assert_eq!(message, "ringmq: no queue 'missing' in vhost '/'", "{command}");
    }
}

#[test]
fn queue_names_with_slashes_spaces_and_utf8_round_trip_through_the_path() {
    let broker = Broker::start(BrokerOpts::default());
    let names = ["a/b c", "été ✓/%2F?#", "..", "+plus&amp"];
    for name in names {
        declare(&broker, name, "durable");
        publish(&broker, name, 2);
    }
    let listed: Vec<String> =
        queue_list_json(&broker).iter().filter_map(|q| q["name"].as_str().map(str::to_string)).collect();
    let mut sorted = names.map(str::to_string).to_vec();
    sorted.sort();
    assert_eq!(listed, sorted);
    for name in names {
        let purged = queue_cli(&broker, &["purge", name, "--format", "json"]).json();
        assert_eq!(purged["name"], name, "{purged}");
        assert_eq!(purged["messages_purged"], 2, "{purged}");
        let deleted = queue_cli(&broker, &["delete", name, "--format", "json"]).json();
        assert_eq!(deleted["name"], name, "{deleted}");
        assert_eq!(exists(&broker, name)["exists"], false, "{name:?}");
    }
}

// ---------------------------------------------------------------------------
// Reaching the API
// ---------------------------------------------------------------------------

#[test]
fn no_broker_at_the_address_exits_3_within_seconds_naming_it_and_the_cause() {
    let addr = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").to_string();
    let run = ringmq(&["queue", "list", "--http", &addr]);
    assert!(run.elapsed < Duration::from_secs(5), "took {:?}", run.elapsed);
    let message = run.failed(3);
    assert_eq!(message, format!("ringmq: cannot connect to {addr}: connection refused (is a broker listening there?)"));
}

#[test]
fn an_api_that_never_answers_exits_3_after_the_request_timeout() {
    // Accepted by the kernel's backlog, never read from or answered.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr").to_string();
    let run = ringmq(&["queue", "purge", "q", "--http", &addr, "--timeout-ms", "1000"]);
    assert!(run.elapsed < Duration::from_secs(5), "took {:?}", run.elapsed);
    let message = run.failed(3);
    assert_eq!(
        message,
        format!("ringmq: no answer from {addr} to DELETE /api/queues/{{vhost}}/{{name}}/contents within 1000 ms")
    );
}

#[test]
fn a_broker_without_amqp_says_its_amqp_listener_is_off() {
    let broker = Broker::start(BrokerOpts::default().arg("--amqp-listen").arg("off"));
    let message = queue_cli(&broker, &["list"]).failed(1);
    assert_eq!(
        message,
        format!(
            "ringmq: the broker at {} has no AMQP queues: its AMQP listener is off (it was started with --amqp-listen off)",
            http_addr(&broker)
        )
    );
    let (status, _, body) = http(&http_addr(&broker), "GET", "/api/queues");
    assert_eq!(status, "HTTP/1.0 503 Service Unavailable");
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["error"], "amqp_off", "{body}");
}

#[test]
fn the_http_api_answers_in_rabbitmqs_shape_with_json_errors() {
    let broker = Broker::start(BrokerOpts::default());
    declare(&broker, "q", "durable");
    let addr = http_addr(&broker);

    let (status, headers, body) = http(&addr, "GET", "/api/queues");
    assert_eq!(status, "HTTP/1.0 200 OK");
    assert!(headers.contains("Content-Type: application/json"), "{headers}");
    let list: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(list.as_array().map(|a| a.len()), Some(1), "{list}");
    assert_eq!(list[0]["name"], "q");
    let (status, _, same) = http(&addr, "GET", "/api/queues/%2F");
    assert_eq!((status.as_str(), same), ("HTTP/1.0 200 OK", body), "the vhost's list is the same");

    let error = |method: &str, target: &str| {
        let (status, headers, body) = http(&addr, method, target);
        let body: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{target}: {e}: {body}"));
        (status, headers, body)
    };
    let (status, _, body) = error("DELETE", "/api/queues/%2F/missing");
    assert_eq!(status, "HTTP/1.0 404 Not Found");
    assert_eq!(body, serde_json::json!({"error": "not_found", "reason": "no queue 'missing' in vhost '/'"}));
    let (status, _, body) = error("DELETE", "/api/queues/prod/q");
    assert_eq!(status, "HTTP/1.0 404 Not Found");
    assert_eq!(body["reason"], "no vhost 'prod'");
    for bad in ["/api/queues/%2F/q%zz", "/api/queues/%2F/q?if-empty=maybe"] {
        let (status, _, body) = error("DELETE", bad);
        assert_eq!(status, "HTTP/1.0 400 Bad Request", "{bad}");
        assert_eq!(body["error"], "bad_request", "{bad}");
    }
    let (status, headers, _) = error("POST", "/api/queues");
    assert_eq!(status, "HTTP/1.0 405 Method Not Allowed");
    assert!(headers.contains("Allow: GET"), "{headers}");
    let (status, headers, _) = error("GET", "/api/queues/%2F/q");
    assert_eq!(status, "HTTP/1.0 405 Method Not Allowed");
    assert!(headers.contains("Allow: DELETE"), "{headers}");
    let (status, _, _) = error("GET", "/api/exchanges");
    assert_eq!(status, "HTTP/1.0 404 Not Found");
    assert_eq!(exists(&broker, "q")["exists"], true, "nothing above deleted it");
    assert!(broker.metrics().contains("ringmq_amqp_queue_messages_ready"), "/metrics still answers");
}
