//! RabbitMQ's queue features on AMQP queues, used through pika 1.3.2 as an
//! application would: priorities (`x-max-priority`), message TTL
//! (`x-message-ttl`, the `expiration` property), dead letters
//! (`x-dead-letter-exchange`, `x-dead-letter-routing-key`,
//! `x-delivery-limit`, with RabbitMQ's `x-death` header), length limits
//! (`x-max-length`, `x-max-length-bytes`, `x-overflow`), queue expiry
//! (`x-expires`), the checks of those arguments at declare, and what of it
//! survives a SIGKILL of the broker.
//!
//! Every scenario is a subcommand of
//! `tests/amqp_clients/python/queue_features.py`, which fails with the
//! reason when a step goes wrong and prints what it saw as JSON; the tests
//! check that report.

mod amqp_common;
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use amqp_common::{assert_healthy, run_script, Client, Script};
use common::*;
use serde_json::{json, Value};

/// 406 PRECONDITION_FAILED.
const PRECONDITION_FAILED: u64 = 406;
/// 404 NOT_FOUND.
const NOT_FOUND: u64 = 404;

fn broker() -> Broker {
    Broker::start(BrokerOpts::default())
}

/// Runs `queue_features.py CMD ADDR ARGS...` and returns its report.
fn run(broker: &Broker, cmd: &str, args: &[&str]) -> Value {
    let addr = broker.amqp_addr();
    let mut all = vec![cmd, addr.as_str()];
    all.extend_from_slice(args);
    run_script(Client::Pika.script("queue_features", &all), cmd)
}

/// One scenario on a fresh broker, which must still be healthy after it.
fn scenario(cmd: &str, args: &[&str]) -> Value {
    let mut b = broker();
    let report = run(&b, cmd, args);
    assert_healthy(&mut b);
    report
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap_or_else(|| panic!("not a string: {x}")).to_string())
        .collect()
}

/// The single `x-death` entry of a dead letter's headers (as the script
/// reports them), checked to be the only one and counted once.
fn only_death(death: &Value) -> &Value {
    let entries = death["x-death"].as_array().unwrap_or_else(|| panic!("no x-death array: {death}"));
    assert_eq!(entries.len(), 1, "one death, one x-death entry: {death}");
    let entry = &entries[0];
    assert_eq!(entry["count"], 1, "{death}");
    assert!(entry["time"].as_u64().is_some_and(|t| t > 1_700_000_000), "x-death time is a timestamp: {death}");
    entry
}

// ---------------------------------------------------------------------------
// Priorities
// ---------------------------------------------------------------------------

/// `PRIORITY_MESSAGES` of the script in the order a priority queue with
/// x-max-priority 10 hands them out: 20 and 10 (capped to 10) first, then 9,
/// 5, and 0 with the messages without a priority, each level in publish order.
const PRIORITY_ORDER: [&str; 10] =
    ["capped-1", "capped-2", "high-1", "high-2", "mid-1", "mid-2", "low-1", "none-1", "low-2", "none-2"];

#[test]
fn a_priority_queue_hands_out_higher_priorities_first_and_fifo_within_a_priority() {
    let report = scenario("priority_order", &[]);
    assert_eq!(strings(&report["order"]), PRIORITY_ORDER, "{report}");
    let as_sent = json!([20, 10, 9, 9, 5, 5, 0, null, 0, null]);
    assert_eq!(report["priorities"], as_sent, "the priority property is delivered as sent, not capped: {report}");
}

#[test]
fn a_durable_priority_queue_keeps_its_order_across_a_sigkill() {
    let mut b = broker();
    run(&b, "priority_publish", &["prio-durable"]);
    b.kill9();
    b.restart();
    let report = run(&b, "priority_consume", &["prio-durable", &PRIORITY_ORDER.len().to_string()]);
    assert_eq!(strings(&report["order"]), PRIORITY_ORDER, "{report}");
    assert_eq!(report["left"], json!([]), "{report}");
    assert_healthy(&mut b);
}

// ---------------------------------------------------------------------------
// TTL
// ---------------------------------------------------------------------------

#[test]
fn a_message_past_the_queue_ttl_is_not_returned_by_basic_get() {
    let report = scenario("ttl_get", &[]);
    assert_eq!(report["before_ttl"], "old-0", "within the TTL the message is there: {report}");
    assert_eq!(report["after_ttl"], Value::Null, "{report}");
    assert_eq!(report["count_after"], 0, "{report}");
}

#[test]
fn a_consumer_of_a_ttl_queue_gets_only_the_messages_within_their_ttl() {
    let report = scenario("ttl_consume", &[]);
    assert_eq!(strings(&report["consumed"]), ["fresh-0", "fresh-1"], "{report}");
}

#[test]
fn a_message_requeued_after_its_ttl_passed_is_dead_lettered_as_expired() {
    let report = scenario("ttl_requeued", &[]);
    assert_eq!(report["again"], json!([]), "{report}");
    assert_eq!(report["dead"], "held", "{report}");
    assert_eq!(only_death(&report["death"])["reason"], "expired", "{report}");
}

#[test]
fn a_message_whose_ttl_passed_while_the_broker_was_down_is_not_delivered_after_restart() {
    let mut b = broker();
    run(&b, "ttl_restart_publish", &["ttl-durable"]);
    b.kill9();
    // The TTL (300 ms) passes while the broker is down.
    std::thread::sleep(Duration::from_millis(600));
    b.restart();
    let report = run(&b, "ttl_restart_get", &["ttl-durable"]);
    assert_eq!(report["without_ttl"], json!(["before the restart"]), "the restart kept messages: {report}");
    assert_eq!(report["got"], json!([]), "{report}");
    assert_healthy(&mut b);
}

#[test]
fn an_expired_message_is_not_delivered_while_the_messages_after_it_are() {
    let report = scenario("expiration", &[]);
    assert_eq!(strings(&report["got"]), ["no-expiration", "long-lived"], "{report}");
    assert_eq!(report["expirations"], json!([null, "60000"]), "the expiration property is delivered as sent: {report}");
}

#[test]
fn a_publish_with_an_invalid_expiration_closes_the_channel_with_precondition_failed() {
    let report = scenario("invalid_expiration", &[]);
    let closed = &report["closed"];
    assert_eq!(closed[0], PRECONDITION_FAILED, "{report}");
    assert!(closed[1].as_str().is_some_and(|t| t.contains("invalid expiration")), "{report}");
    assert_eq!(report["channel_open"], false, "{report}");
    assert_eq!(report["count"], 0, "the refused message is not stored: {report}");
}

// ---------------------------------------------------------------------------
// Dead letters
// ---------------------------------------------------------------------------

fn rejected_message_is_dead_lettered(how: &str) {
    let report = scenario("dead_letter_rejected", &[how]);
    assert_eq!(report["body"], "refused", "{report}");
    assert_eq!(report["app_header"], "kept", "the message's own headers stay: {report}");
    assert_eq!(report["left_in_source"], json!([]), "{report}");
    let death = &report["death"];
    let entry = only_death(death);
    assert_eq!(entry["reason"], "rejected", "{report}");
    assert_eq!(entry["queue"], report["source_queue"], "{report}");
    assert_eq!(entry["exchange"], report["source_exchange"], "{report}");
    assert_eq!(entry["routing-keys"], json!(["work"]), "{report}");
    assert_eq!(death["x-first-death-reason"], "rejected", "{report}");
    assert_eq!(death["x-first-death-queue"], report["source_queue"], "{report}");
    assert_eq!(death["x-first-death-exchange"], report["source_exchange"], "{report}");
}

#[test]
fn a_rejected_message_goes_to_the_dead_letter_exchange_with_x_death() {
    rejected_message_is_dead_lettered("reject");
}

#[test]
fn a_nacked_message_without_requeue_goes_to_the_dead_letter_exchange_with_x_death() {
    rejected_message_is_dead_lettered("nack");
}

#[test]
fn x_dead_letter_routing_key_replaces_the_routing_key_of_the_dead_letter() {
    let report = scenario("dead_letter_routing_key", &[]);
    assert_eq!(report["body"], "rerouted", "{report}");
    assert_eq!(report["under_original_key"], json!([]), "{report}");
    let entry = only_death(&report["death"]);
    assert_eq!(entry["routing-keys"], json!(["work"]), "x-death keeps the original key: {report}");
}

#[test]
fn a_dead_letter_routed_to_a_full_queue_and_an_open_one_reaches_the_open_one_once() {
    let report = scenario("dead_letter_fanout_one_full", &[]);
    assert_eq!(report["open_queue"], json!(["refused"]), "{report}");
    assert_eq!(report["full_queue"], json!(["filler"]), "the full queue refuses it: {report}");
    assert_eq!(report["source_ready"], 0, "{report}");
}

#[test]
fn a_ttl_queue_without_consumers_delays_messages_into_its_dead_letter_queue() {
    const TTL_MS: u64 = 500;
    let report = scenario("delay_queue", &[&TTL_MS.to_string()]);
    let elapsed_ms = report["elapsed_ms"].as_u64().unwrap_or_else(|| panic!("{report}"));
    assert!(elapsed_ms >= TTL_MS, "arrived after {elapsed_ms} ms, before the TTL of {TTL_MS} ms: {report}");
    assert!(elapsed_ms < TTL_MS + 1_500, "arrived {elapsed_ms} ms after publishing, TTL {TTL_MS} ms: {report}");
    let entry = only_death(&report["death"]);
    assert_eq!(entry["reason"], "expired", "{report}");
    assert_eq!(entry["queue"], report["delay_queue"], "{report}");
    assert_eq!(report["death"]["x-first-death-reason"], "expired", "{report}");
}

#[test]
fn a_message_returned_more_than_the_delivery_limit_is_dead_lettered() {
    const LIMIT: u64 = 2;
    let report = scenario("delivery_limit", &[&LIMIT.to_string()]);
    assert_eq!(report["deliveries"], LIMIT + 1, "delivered once, then again after each of {LIMIT} returns: {report}");
    assert_eq!(report["redelivered"], json!([false, true, true]), "{report}");
    assert_eq!(report["body"], "poison", "{report}");
    let entry = only_death(&report["death"]);
    assert_eq!(entry["reason"], "delivery_limit", "{report}");
}

// ---------------------------------------------------------------------------
// Length limits
// ---------------------------------------------------------------------------

fn dead_letters(report: &Value) -> Vec<(String, String)> {
    report["dead_letters"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"))
        .iter()
        .map(|d| (d[0].as_str().unwrap_or_default().to_string(), d[1].as_str().unwrap_or_default().to_string()))
        .collect()
}

fn maxlen(bodies: &[&str]) -> Vec<(String, String)> {
    bodies.iter().map(|b| (b.to_string(), "maxlen".to_string())).collect()
}

#[test]
fn drop_head_keeps_the_newest_messages_and_dead_letters_the_oldest() {
    let report = scenario("drop_head", &[]);
    assert_eq!(report["outcomes"], json!(vec!["ack"; 5]), "{report}");
    assert_eq!(strings(&report["kept"]), ["m3", "m4", "m5"], "{report}");
    assert_eq!(dead_letters(&report), maxlen(&["m1", "m2"]), "{report}");
}

#[test]
fn reject_publish_nacks_publishes_past_the_limit_and_keeps_the_queue() {
    let report = scenario("reject_publish", &[]);
    assert_eq!(report["outcomes"], json!(["ack", "ack", "nack", "nack"]), "{report}");
    assert_eq!(strings(&report["kept"]), ["m1", "m2"], "{report}");
    assert_eq!(dead_letters(&report), [], "reject-publish does not dead-letter: {report}");
}

#[test]
fn reject_publish_dlx_nacks_publishes_past_the_limit_and_dead_letters_them() {
    let report = scenario("reject_publish_dlx", &[]);
    assert_eq!(report["outcomes"], json!(["ack", "ack", "nack", "nack"]), "{report}");
    assert_eq!(strings(&report["kept"]), ["m1", "m2"], "{report}");
    assert_eq!(dead_letters(&report), maxlen(&["m3", "m4"]), "{report}");
}

#[test]
fn max_length_bytes_counts_body_bytes_and_drops_the_oldest() {
    let report = scenario("max_length_bytes", &[]);
    assert_eq!(report["outcomes"], json!(vec!["ack"; 4]), "{report}");
    assert_eq!(strings(&report["kept"]), ["cccc", "dddd"], "10 bytes hold two 4-byte bodies: {report}");
    assert_eq!(dead_letters(&report), maxlen(&["aaaa", "bbbb"]), "{report}");
}

// ---------------------------------------------------------------------------
// Queue expiry
// ---------------------------------------------------------------------------

#[test]
fn a_queue_unused_for_x_expires_is_deleted() {
    let report = scenario("expires", &["unused"]);
    assert_eq!(report["passive_declare"][0], NOT_FOUND, "{report}");
}

#[test]
fn a_queue_with_a_consumer_is_not_deleted_by_x_expires() {
    let report = scenario("expires", &["consumed"]);
    assert_eq!(report["passive_declare"], Value::Null, "{report}");
}

// ---------------------------------------------------------------------------
// Argument checks
// ---------------------------------------------------------------------------

#[test]
fn out_of_range_queue_arguments_close_the_channel_with_precondition_failed() {
    let report = scenario("bad_arguments", &[]);
    let results = report["results"].as_array().unwrap_or_else(|| panic!("{report}"));
    assert_eq!(results.len(), 7, "{report}");
    for r in results {
        assert_eq!(r["closed"][0], PRECONDITION_FAILED, "{r}");
        let text = r["closed"][1].as_str().unwrap_or_default();
        let name = r["argument"].as_str().unwrap_or_default();
        assert!(text.contains(&format!("invalid arg '{name}'")), "the reply names the argument: {r}");
        assert_eq!(r["queue_exists"], false, "a refused declare creates nothing: {r}");
    }
}

#[test]
fn a_deduplicating_queue_confirms_but_does_not_store_a_second_message_with_the_same_key() {
    let report = scenario("deduplication", &[]);
    assert_eq!(report["outcomes"], json!(vec!["ack"; 7]), "duplicates are confirmed too: {report}");
    assert_eq!(strings(&report["kept"]), ["a-1", "b-1", "h-1", "none-1", "none-2"], "{report}");
    let refused = &report["without_cache_size"];
    assert_eq!(refused["closed"][0], PRECONDITION_FAILED, "x-cache-size is required: {report}");
    assert_eq!(refused["queue_exists"], false, "{report}");
}

#[test]
fn a_durable_deduplicating_queue_remembers_its_keys_across_a_sigkill() {
    let mut b = broker();
    let first = run(&b, "dedup_restart", &["dedup-durable", "first"]);
    assert_eq!((&first["outcome"], &first["count"]), (&json!("ack"), &json!(1)), "{first}");
    b.kill9();
    b.restart();
    let second = run(&b, "dedup_restart", &["dedup-durable", "second"]);
    assert_eq!(second["outcome"], "ack", "{second}");
    assert_eq!(second["count"], 1, "the same key after the restart is a duplicate: {second}");
    assert_healthy(&mut b);
}

// ---------------------------------------------------------------------------
// Durability across a SIGKILL
// ---------------------------------------------------------------------------

fn numbered(count: usize) -> BTreeSet<String> {
    (0..count).map(|i| format!("m{i}")).collect()
}

#[test]
fn stored_dead_letters_of_persistent_messages_survive_a_sigkill() {
    const COUNT: usize = 50;
    let count = COUNT.to_string();
    let mut b = broker();
    run(&b, "dlx_durable_setup", &["dlx-durable", &count]);
    b.kill9();
    b.restart();
    let report = run(&b, "dlx_durable_check", &["dlx-durable", &count]);
    let dead: BTreeSet<String> = strings(&report["dead"]).into_iter().collect();
    assert_eq!(strings(&report["dead"]).len(), COUNT, "{report}");
    assert_eq!(dead, numbered(COUNT), "{report}");
    assert_eq!(report["back"], json!([]), "settled originals stay settled: {report}");
    assert_eq!(report["reasons"], json!(["rejected"]), "{report}");
    assert_eq!(report["persistent"], true, "{report}");
    assert_healthy(&mut b);
}

/// Rounds of reject-then-kill: the kill must land while the last rejects
/// are being dead-lettered, which one round may miss.
const REJECT_KILL_ROUNDS: usize = 3;

/// Dead-lettering is at least once (docs/amqp.md): a dead letter is stored
/// before its original is settled, so a SIGKILL in between may leave a
/// message both in the dead-letter queue and back in its own; never in
/// neither, never twice in one.
#[test]
fn a_message_rejected_just_before_a_sigkill_is_afterwards_dead_lettered_or_back_never_lost() {
    const COUNT: usize = 200;
    let count = COUNT.to_string();
    let mut b = broker();
    let prefixes: Vec<String> = (0..REJECT_KILL_ROUNDS).map(|r| format!("kill{r}")).collect();
    for prefix in &prefixes {
        let addr = b.amqp_addr();
        let cmd = Client::Pika.script("queue_features", &["reject_kill_setup", &addr, prefix, &count]);
        let mut setup = Script::spawn(cmd, "reject_kill_setup");
        setup.wait_line("rejected", Duration::from_secs(30));
        b.kill9();
        drop(setup);
        b.restart();
    }
    for prefix in &prefixes {
        let report = run(&b, "reject_kill_check", &[prefix, &count]);
        let (dead, back) = (strings(&report["dead"]), strings(&report["back"]));
        let dead_set: BTreeSet<String> = dead.iter().cloned().collect();
        let back_set: BTreeSet<String> = back.iter().cloned().collect();
        assert_eq!(dead.len(), dead_set.len(), "{prefix}: a dead letter is stored once: {report}");
        assert_eq!(back.len(), back_set.len(), "{prefix}: {report}");
        let all: BTreeSet<String> = dead_set.union(&back_set).cloned().collect();
        let expected = numbered(COUNT);
        let lost: Vec<&String> = expected.difference(&all).collect();
        assert!(lost.is_empty(), "{prefix}: in neither queue: {lost:?}");
        let both = dead_set.intersection(&back_set).count();
        eprintln!(
            "[reject then kill, {prefix}] {} dead-lettered, {} back in the original, {both} in both",
            dead.len(),
            back.len()
        );
    }
    assert_healthy(&mut b);
}
