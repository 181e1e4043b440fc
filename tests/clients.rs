//! Kafka clients other than librdkafka-in-Rust, run unchanged against the
//! real broker: kafka-python 3 (default settings: idempotence on, acks=all),
//! aiokafka, kafkajs and confluent-kafka (Python). Each client's script in
//! `tests/clients/` produces, consumes in a group and exits non-zero with the
//! reason when anything is missing, duplicated or wrong; this file starts the
//! broker, runs the script and checks what it reports.
//!
//! The clients are installed by `tests/run` (a venv in `target/client-venv`,
//! `tests/clients/node_modules`); a missing client fails the test with that
//! hint rather than skipping it.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn python() -> PathBuf {
    let p = std::env::var_os("RINGMQ_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/client-venv/bin/python"));
    assert!(p.exists(), "{} is missing: run tests/run, which installs the Python Kafka clients", p.display());
    p
}

fn node() -> Command {
    assert!(
        clients_dir().join("node_modules/kafkajs").exists(),
        "tests/clients/node_modules/kafkajs is missing: run tests/run, which installs it with npm"
    );
    let mut c = Command::new("node");
    c.current_dir(clients_dir());
    c
}

/// Runs a client script to completion (bounded) and returns its last stdout
/// line parsed as JSON; panics with its output and the broker log on failure.
fn run_script(broker: &Broker, mut cmd: Command, what: &str) -> serde_json::Value {
    let (status, stdout, stderr) = run_with_timeout(&mut cmd, None, Duration::from_secs(180));
    let stdout = String::from_utf8_lossy(&stdout);
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(
        status.success(),
        "{what} failed ({status}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- broker.log (tail) ---\n{}",
        broker.log_tail(60)
    );
    eprintln!("{what}: {stderr}{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{what}: last line is not JSON ({e}): {last}\n{stderr}"))
}

fn python_script(name: &str, args: &[&str]) -> Command {
    let mut c = Command::new(python());
    c.arg(clients_dir().join(name)).args(args);
    c
}

#[test]
fn kafka_python_with_default_settings_produces_and_consumes_in_a_group() {
    let broker = Broker::start(BrokerOpts::default().arg("--group-initial-rebalance-delay-ms").arg("0"));
    let topic = unique_topic("kafka-python");
    let report = run_script(
        &broker,
        python_script("kafka_python_roundtrip.py", &[&broker.addr(), &topic, "kp-group", "2000"]),
        "kafka-python",
    );
    assert_eq!(report["consumed"], 2000, "{report}");
    assert_eq!(report["assignment"], serde_json::json!([0, 1, 2]), "{report}");
}

#[test]
fn aiokafka_produces_and_consumes_in_a_group() {
    let broker = Broker::start(BrokerOpts::default().arg("--group-initial-rebalance-delay-ms").arg("0"));
    let topic = unique_topic("aiokafka");
    create_topic(&broker.addr(), &topic, 3, &[]);
    let report = run_script(
        &broker,
        python_script("aiokafka_roundtrip.py", &[&broker.addr(), &topic, "aio-group", "2000"]),
        "aiokafka",
    );
    assert_eq!(report["consumed"], 2000, "{report}");
    assert_eq!(report["assignment"], serde_json::json!([0, 1, 2]), "{report}");
}

#[test]
fn kafkajs_produces_and_consumes_in_a_group() {
    let broker = Broker::start(BrokerOpts::default().arg("--group-initial-rebalance-delay-ms").arg("0"));
    let topic = unique_topic("kafkajs");
    let mut cmd = node();
    cmd.arg("kafkajs_roundtrip.js").args([&broker.addr(), &topic, "js-group", "2000"]);
    let report = run_script(&broker, cmd, "kafkajs");
    assert_eq!(report["consumed"], 2000, "{report}");
}

#[test]
fn confluent_kafka_group_rebalances_and_resumes_at_committed_offsets_after_sigkill() {
    let mut broker = Broker::start(
        BrokerOpts::default().arg("--group-initial-rebalance-delay-ms").arg("500").arg("--cores").arg("2"),
    );
    let topic = unique_topic("confluent-group");
    create_topic(&broker.addr(), &topic, 6, &[]);
    let state = broker.root().join("confluent-group-state.json");
    let state = state.to_str().expect("utf-8 path");
    let one = run_script(
        &broker,
        python_script("confluent_group.py", &[&broker.addr(), &topic, "cf-group", "phase1", state]),
        "confluent-kafka phase 1",
    );
    assert_eq!(one["delivered"], 600, "{one}");
    broker.kill9();
    broker.restart();
    let two = run_script(
        &broker,
        python_script("confluent_group.py", &[&broker.addr(), &topic, "cf-group", "phase2", state]),
        "confluent-kafka phase 2",
    );
    assert_eq!(two["delivered"], 300, "{two}");
    assert_eq!(two["resumed_at"], one["committed"], "{one} {two}");
}
