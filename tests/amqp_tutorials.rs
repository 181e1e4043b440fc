//! The six RabbitMQ tutorials, written as the tutorials write them, run
//! unchanged against ringmq with two clients: pika 1.3.2 (Python,
//! `BlockingConnection` at its defaults) and amqplib (node). Each
//! tutorial's scripts are in `tests/amqp_clients/{python,node}/`; each exits
//! non-zero with the reason when anything is missing, duplicated or wrong,
//! and prints a JSON report that the test checks too.
//!
//! Some tests run the broker with `--cores 2`, so that queues and
//! connections land on different shards.

mod amqp_common;
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use amqp_common::{assert_healthy, run_script, Client, Script, SCRIPT_TIMEOUT};
use common::*;

/// How long a consumer script may take to say it is consuming.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

fn broker(cores: u32) -> Broker {
    Broker::start(BrokerOpts::default().arg("--cores").arg(&cores.to_string()))
}

/// Starts a consumer script and waits until it says it is consuming;
/// returns it and the rest of its `ready` line (its queue, if any).
fn start_consumer(client: Client, name: &str, args: &[&str], what: &str) -> (Script, String) {
    let mut s = Script::spawn(client.script(name, args), what);
    let line = s.wait_line("ready", READY_TIMEOUT);
    let queue = line.trim_start_matches("ready").trim().to_string();
    (s, queue)
}

// ---------------------------------------------------------------------------
// 1. Hello World
// ---------------------------------------------------------------------------

fn hello_world(client: Client) {
    let mut broker = broker(1);
    let addr = broker.amqp_addr();
    let (receiver, _) = start_consumer(client, "hello_world", &["receive", &addr, "10"], "hello receive");
    let sent = run_script(client.script("hello_world", &["send", &addr, "10"]), "hello send");
    assert_eq!(sent["sent"], 10, "{sent}");
    let got = receiver.finish(SCRIPT_TIMEOUT).report("hello receive");
    assert_eq!(got["received"], 10, "{got}");
    assert_healthy(&mut broker);
}

#[test]
fn pika_hello_world_receives_every_message_once_in_order() {
    hello_world(Client::Pika);
}

#[test]
fn amqplib_hello_world_receives_every_message_once_in_order() {
    hello_world(Client::Amqplib);
}

// ---------------------------------------------------------------------------
// 2. Work queues
// ---------------------------------------------------------------------------

const TASKS: usize = 30;

fn task_names() -> BTreeSet<String> {
    (0..TASKS).map(|i| format!("task-{i}{}", ".".repeat(i % 3))).collect()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// Tasks a worker printed `done TASK redelivered=...` for, with the flag.
fn done_lines(stdout: &[String]) -> Vec<(String, bool)> {
    stdout
        .iter()
        .filter_map(|l| l.strip_prefix("done "))
        .map(|rest| {
            let (task, flag) = rest.rsplit_once(" redelivered=").expect("done line format");
            (task.to_string(), flag == "True")
        })
        .collect()
}

fn work_queues_share_tasks(client: Client) {
    let mut broker = broker(2);
    let addr = broker.amqp_addr();
    let (w1, _) = start_consumer(client, "work_queues", &["worker", &addr], "worker 1");
    let (w2, _) = start_consumer(client, "work_queues", &["worker", &addr], "worker 2");
    let tasks = TASKS.to_string();
    run_script(client.script("work_queues", &["new_task", &addr, &tasks, "2"]), "new_task");
    let r1 = w1.finish(SCRIPT_TIMEOUT).report("worker 1");
    let r2 = w2.finish(SCRIPT_TIMEOUT).report("worker 2");
    let (d1, d2) = (strings(&r1["done"]), strings(&r2["done"]));
    let all: Vec<&String> = d1.iter().chain(&d2).collect();
    let unique: BTreeSet<String> = all.iter().map(|s| s.to_string()).collect();
    assert_eq!(all.len(), unique.len(), "a task was done twice: {d1:?} {d2:?}");
    assert_eq!(unique, task_names(), "every task is done once: {d1:?} {d2:?}");
    assert!(!d1.is_empty() && !d2.is_empty(), "with prefetch 1, both workers get tasks: {d1:?} {d2:?}");
    assert!(strings(&r1["redelivered"]).is_empty() && strings(&r2["redelivered"]).is_empty(), "{r1} {r2}");
    eprintln!("[work queues] worker 1 did {}, worker 2 did {}", d1.len(), d2.len());
    assert_healthy(&mut broker);
}

#[test]
fn pika_work_queues_two_workers_share_the_tasks_each_done_once() {
    work_queues_share_tasks(Client::Pika);
}

#[test]
fn amqplib_work_queues_two_workers_share_the_tasks_each_done_once() {
    work_queues_share_tasks(Client::Amqplib);
}

fn work_queues_dead_worker(client: Client) {
    let mut broker = broker(2);
    let addr = broker.amqp_addr();
    let (mut dying, _) = start_consumer(client, "work_queues", &["worker", &addr, "--die-after", "2"], "dying worker");
    let (survivor, _) = start_consumer(client, "work_queues", &["worker", &addr], "surviving worker");
    let tasks = TASKS.to_string();
    run_script(client.script("work_queues", &["new_task", &addr, &tasks, "0"]), "new_task");
    let lost = dying.wait_line("dying ", SCRIPT_TIMEOUT).trim_start_matches("dying ").to_string();
    let dead = dying.finish(SCRIPT_TIMEOUT);
    assert!(!dead.status.success(), "the dying worker was to kill itself: {}", dead.dump());
    // The surviving worker ends at the stop, published once the other died.
    run_script(client.script("work_queues", &["new_task", &addr, "0", "1"]), "new_task stop");
    let report = survivor.finish(SCRIPT_TIMEOUT).report("surviving worker");
    let by_dead: Vec<String> = done_lines(&dead.stdout).into_iter().map(|(t, _)| t).collect();
    let by_survivor = strings(&report["done"]);
    assert_eq!(by_dead.len(), 2, "{}", dead.dump());
    assert!(!by_dead.contains(&lost), "the lost task was never acknowledged by the dead worker");
    let all: Vec<&String> = by_dead.iter().chain(&by_survivor).collect();
    let unique: BTreeSet<String> = all.iter().map(|s| s.to_string()).collect();
    assert_eq!(all.len(), unique.len(), "a task was done twice: {by_dead:?} {by_survivor:?}");
    assert_eq!(unique, task_names(), "every task is done once: {by_dead:?} {by_survivor:?}");
    assert!(by_survivor.contains(&lost), "the survivor did the task the dead worker held ({lost})");
    assert!(
        strings(&report["redelivered"]).contains(&lost),
        "the task the dead worker held came back with redelivered=true: {report}"
    );
    eprintln!("[work queues] {lost} went from the dead worker to the survivor");
    assert_healthy(&mut broker);
}

#[test]
fn pika_work_queues_a_dead_workers_unacked_task_goes_to_the_other_worker() {
    work_queues_dead_worker(Client::Pika);
}

#[test]
fn amqplib_work_queues_a_dead_workers_unacked_task_goes_to_the_other_worker() {
    work_queues_dead_worker(Client::Amqplib);
}

// ---------------------------------------------------------------------------
// 3. Publish/Subscribe
// ---------------------------------------------------------------------------

fn publish_subscribe(client: Client) {
    let mut broker = broker(2);
    let addr = broker.amqp_addr();
    let count = "200";
    let (r1, q1) = start_consumer(client, "publish_subscribe", &["receive", &addr, count], "receive_logs 1");
    let (r2, q2) = start_consumer(client, "publish_subscribe", &["receive", &addr, count], "receive_logs 2");
    assert!(q1.starts_with("amq.gen-") && q2.starts_with("amq.gen-") && q1 != q2, "server-named queues: {q1} {q2}");
    run_script(client.script("publish_subscribe", &["emit", &addr, count]), "emit_log");
    for (r, q, what) in [(r1, &q1, "receive_logs 1"), (r2, &q2, "receive_logs 2")] {
        let report = r.finish(SCRIPT_TIMEOUT).report(what);
        assert_eq!(report["received"], 200, "{report}");
        assert_eq!(report["queue"], q.as_str(), "{report}");
    }
    // Both receivers closed their connections: their exclusive queues are gone.
    run_script(client.script("publish_subscribe", &["check_gone", &addr, &q1, &q2]), "check_gone");
    assert_healthy(&mut broker);
}

#[test]
fn pika_publish_subscribe_every_exclusive_queue_gets_every_log_line() {
    publish_subscribe(Client::Pika);
}

#[test]
fn amqplib_publish_subscribe_every_exclusive_queue_gets_every_log_line() {
    publish_subscribe(Client::Amqplib);
}

// ---------------------------------------------------------------------------
// 4. Routing
// ---------------------------------------------------------------------------

fn routing(client: Client) {
    let mut broker = broker(1);
    let addr = broker.amqp_addr();
    let logs = ["info:one", "warning:two", "error:three", "debug:four", "info:five", "error:six"];
    // The tutorial's two receivers: errors only (to disk), and info, warning, error (to screen).
    let errors = "error:three,error:six";
    let screen = "info:one,warning:two,error:three,info:five,error:six";
    let (r1, _) = start_consumer(client, "routing", &["receive", &addr, errors, "error"], "errors receiver");
    let (r2, _) =
        start_consumer(client, "routing", &["receive", &addr, screen, "info", "warning", "error"], "screen receiver");
    let mut args = vec!["emit", &addr, "error"];
    args.extend(logs);
    run_script(client.script("routing", &args), "emit_log_direct");
    let e = r1.finish(SCRIPT_TIMEOUT).report("errors receiver");
    assert_eq!(strings(&e["received"]), errors.split(',').collect::<Vec<_>>(), "{e}");
    let s = r2.finish(SCRIPT_TIMEOUT).report("screen receiver");
    assert_eq!(strings(&s["received"]), screen.split(',').collect::<Vec<_>>(), "{s}");
    assert_healthy(&mut broker);
}

#[test]
fn pika_routing_each_receiver_gets_only_its_severities() {
    routing(Client::Pika);
}

#[test]
fn amqplib_routing_each_receiver_gets_only_its_severities() {
    routing(Client::Amqplib);
}

// ---------------------------------------------------------------------------
// 5. Topics
// ---------------------------------------------------------------------------

/// The tutorial's routing keys, in the order they are published.
const TOPIC_KEYS: [&str; 9] = [
    "quick.orange.rabbit",
    "lazy.orange.elephant",
    "quick.orange.fox",
    "lazy.brown.fox",
    "lazy.pink.rabbit",
    "quick.brown.fox",
    "orange",
    "quick.orange.new.rabbit",
    "lazy.orange.new.rabbit",
];

/// Q1 (`*.orange.*`) per the tutorial: the orange animals.
const Q1_GETS: [&str; 3] = ["quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox"];
/// Q2 (`*.*.rabbit`, `lazy.#`): rabbits and lazy ones, lazy.pink.rabbit once
/// though it matches both bindings.
const Q2_GETS: [&str; 5] =
    ["quick.orange.rabbit", "lazy.orange.elephant", "lazy.brown.fox", "lazy.pink.rabbit", "lazy.orange.new.rabbit"];

fn topics(client: Client) {
    let mut broker = broker(2);
    let addr = broker.amqp_addr();
    let q1 = Q1_GETS.join(",");
    let q2 = Q2_GETS.join(",");
    let (r1, _) = start_consumer(client, "topics", &["receive", &addr, &q1, "*.orange.*"], "Q1");
    let (r2, _) = start_consumer(client, "topics", &["receive", &addr, &q2, "*.*.rabbit", "lazy.#"], "Q2");
    // "end.orange.rabbit" reaches both queues (Q2 through `*.*.rabbit` only).
    let mut args = vec!["emit", &addr, "end.orange.rabbit"];
    args.extend(TOPIC_KEYS);
    run_script(client.script("topics", &args), "emit_log_topic");
    let a = r1.finish(SCRIPT_TIMEOUT).report("Q1");
    assert_eq!(strings(&a["received"]), Q1_GETS, "{a}");
    let b = r2.finish(SCRIPT_TIMEOUT).report("Q2");
    assert_eq!(strings(&b["received"]), Q2_GETS, "{b}");
    assert_healthy(&mut broker);
}

#[test]
fn pika_topics_route_the_tutorials_keys_as_the_tutorial_says() {
    topics(Client::Pika);
}

#[test]
fn amqplib_topics_route_the_tutorials_keys_as_the_tutorial_says() {
    topics(Client::Amqplib);
}

// ---------------------------------------------------------------------------
// 6. RPC
// ---------------------------------------------------------------------------

fn rpc(client: Client) {
    let mut broker = broker(2);
    let addr = broker.amqp_addr();
    let a: Vec<String> = (0..15).map(|n| n.to_string()).collect();
    let b: Vec<String> = (15..40).map(|n| n.to_string()).collect();
    let total = (a.len() + b.len()).to_string();
    let (server, _) = start_consumer(client, "rpc", &["server", &addr, &total], "rpc server");
    // Two clients at once, each with its own callback queue.
    let spawn_client = |ns: &[String], what: &str| {
        let mut args = vec!["client", addr.as_str()];
        args.extend(ns.iter().map(String::as_str));
        Script::spawn(client.script("rpc", &args), what)
    };
    let c1 = spawn_client(&a, "rpc client 1");
    let c2 = spawn_client(&b, "rpc client 2");
    let r1 = c1.finish(SCRIPT_TIMEOUT).report("rpc client 1");
    let r2 = c2.finish(SCRIPT_TIMEOUT).report("rpc client 2");
    assert_eq!(r1["calls"], a.len(), "{r1}");
    assert_eq!(r2["calls"], b.len(), "{r2}");
    assert_ne!(r1["callback_queue"], r2["callback_queue"], "{r1} {r2}");
    let s = server.finish(SCRIPT_TIMEOUT).report("rpc server");
    assert_eq!(s["served"], a.len() + b.len(), "{s}");
    assert_healthy(&mut broker);
}

#[test]
fn pika_rpc_answers_each_call_to_its_callers_queue_with_its_correlation_id() {
    rpc(Client::Pika);
}

#[test]
fn amqplib_rpc_answers_each_call_to_its_callers_queue_with_its_correlation_id() {
    rpc(Client::Amqplib);
}
