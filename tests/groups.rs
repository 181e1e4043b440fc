//! Consumer groups against the real broker with librdkafka (rdkafka crate):
//! subscribe-style consumers share partitions, take over from a member that
//! leaves, and resume at their committed offsets after SIGKILL, with one or
//! two shards and across a change of shard count.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// The first rebalance of an empty group waits this long (the broker's default, 3 s, would only slow the tests).
const INITIAL_DELAY_MS: &str = "200";
const DEADLINE: Duration = Duration::from_secs(90);

fn group_broker(extra: &[&str]) -> Broker {
    let mut opts = BrokerOpts::default().arg("--group-initial-rebalance-delay-ms").arg(INITIAL_DELAY_MS);
    for a in extra {
        opts = opts.arg(a);
    }
    Broker::start(opts)
}

/// A subscribe-style consumer: librdkafka defaults except manual commits
/// (the test decides what is committed) and reading from the start.
fn group_consumer(addr: &str, group: &str) -> BaseConsumer {
    let mut c = client_config(addr);
    c.set("group.id", group).set("enable.auto.commit", "false").set("auto.offset.reset", "earliest").set("enable.partition.eof", "false");
    c.create().expect("create group consumer")
}

/// Produces `per_partition` messages to each partition; returns every (partition, offset).
fn produce_round(addr: &str, topic: &str, partitions: i32, per_partition: usize, tag: &str) -> BTreeSet<(i32, i64)> {
    let p = producer(addr, &[]);
    let msgs = (0..partitions).flat_map(|part| (0..per_partition).map(move |i| (part, None, format!("{tag}-{part}-{i}").into_bytes())));
    produce_many(&p, topic, msgs).into_iter().collect()
}

fn assigned(c: &BaseConsumer) -> Vec<i32> {
    let mut v: Vec<i32> = c.assignment().map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// What a set of consumers saw and committed.
#[derive(Default)]
struct Ledger {
    delivered: BTreeSet<(i32, i64)>,
    /// Per partition, the highest offset acknowledged as committed.
    committed: BTreeMap<i32, i64>,
    /// Per partition, the first offset delivered after the ledger started.
    first: BTreeMap<i32, i64>,
}

impl Ledger {
    /// Polls `consumers` once each; every message is processed and then
    /// committed synchronously. Asserts no message is delivered below an
    /// offset already committed for its partition.
    fn poll_once(&mut self, consumers: &[BaseConsumer]) {
        for c in consumers {
            match c.poll(Duration::from_millis(50)) {
                None => {}
                Some(Err(e)) => eprintln!("[groups] consumer error: {e}"),
                Some(Ok(m)) => {
                    let (p, o) = (m.partition(), m.offset());
                    let floor = self.committed.get(&p).copied().unwrap_or(0);
                    assert!(o >= floor, "partition {p}: offset {o} delivered again after offset {floor} was committed");
                    self.first.entry(p).or_insert(o);
                    self.delivered.insert((p, o));
                    match c.commit_message(&m, CommitMode::Sync) {
                        Ok(()) => {
                            let e = self.committed.entry(p).or_insert(0);
                            *e = (*e).max(o + 1);
                        }
                        // A commit refused during a rebalance is redelivered later: allowed.
                        Err(e) => eprintln!("[groups] commit of {p}/{o} refused: {e}"),
                    }
                }
            }
        }
    }

    /// Polls until `done` holds, panicking after DEADLINE.
    fn poll_until(&mut self, consumers: &[BaseConsumer], what: &str, mut done: impl FnMut(&Ledger, &[BaseConsumer]) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !done(self, consumers) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}: delivered {}, assignments {:?}", self.delivered.len(), consumers.iter().map(assigned).collect::<Vec<_>>());
            self.poll_once(consumers);
        }
    }
}

#[test]
fn three_consumers_share_six_partitions_and_two_take_over_when_one_leaves() {
    let broker = group_broker(&[]);
    let addr = broker.addr();
    let topic = unique_topic("groups-share");
    let group = unique_topic("share-group");
    create_topic(&addr, &topic, 6, &[]);
    let mut expected = produce_round(&addr, &topic, 6, 20, "a");

    let mut consumers: Vec<BaseConsumer> = (0..3).map(|_| group_consumer(&addr, &group)).collect();
    for c in &consumers {
        c.subscribe(&[&topic]).expect("subscribe");
    }
    let mut ledger = Ledger::default();
    ledger.poll_until(&consumers, "2 partitions each and every first-round message", |l, cs| {
        cs.iter().all(|c| assigned(c).len() == 2) && expected.is_subset(&l.delivered)
    });
    let all: BTreeSet<i32> = consumers.iter().flat_map(assigned).collect();
    assert_eq!(all, (0..6).collect(), "the three assignments cover the topic");

    // One member closes (LeaveGroup); the other two take over its partitions.
    let leaving = consumers.pop().expect("three consumers");
    drop(leaving);
    expected.extend(produce_round(&addr, &topic, 6, 20, "b"));
    ledger.poll_until(&consumers, "3 partitions each and every message", |l, cs| {
        cs.iter().all(|c| assigned(c).len() == 3) && expected.is_subset(&l.delivered)
    });
    let all: BTreeSet<i32> = consumers.iter().flat_map(assigned).collect();
    assert_eq!(all, (0..6).collect(), "the two remaining assignments cover the topic");
    assert_eq!(ledger.delivered, expected, "every produced message consumed, nothing else");
}

#[test]
fn cooperative_sticky_consumers_split_and_rebalance_incrementally() {
    let broker = group_broker(&[]);
    let addr = broker.addr();
    let topic = unique_topic("groups-coop");
    let group = unique_topic("coop-group");
    create_topic(&addr, &topic, 4, &[]);
    let mut expected = produce_round(&addr, &topic, 4, 10, "a");
    let coop = |addr: &str| {
        let mut c = client_config(addr);
        c.set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky");
        let c: BaseConsumer = c.create().expect("create consumer");
        c.subscribe(&[&topic]).expect("subscribe");
        c
    };
    let mut consumers = vec![coop(&addr)];
    let mut ledger = Ledger::default();
    ledger.poll_until(&consumers, "all 4 partitions on the only member", |l, cs| assigned(&cs[0]).len() == 4 && expected.is_subset(&l.delivered));
    consumers.push(coop(&addr));
    expected.extend(produce_round(&addr, &topic, 4, 10, "b"));
    ledger.poll_until(&consumers, "2 partitions each after the second member joined", |l, cs| {
        cs.iter().all(|c| assigned(c).len() == 2) && expected.is_subset(&l.delivered)
    });
    assert_eq!(ledger.delivered, expected);
}

/// Consumes part of a topic in each group, committing as it goes; SIGKILLs
/// and restarts the broker (with `restart_args`); new consumers of the same
/// groups must start exactly at the committed offsets and read the rest.
fn resume_after_sigkill(start_args: &[&str], restart_args: &[&str], groups: &[String]) {
    let mut broker = group_broker(start_args);
    let addr = broker.addr();
    let topic = unique_topic("groups-resume");
    create_topic(&addr, &topic, 3, &[]);
    let expected = produce_round(&addr, &topic, 3, 40, "r");

    let mut before: Vec<Ledger> = Vec::new();
    for group in groups {
        let c = group_consumer(&addr, group);
        c.subscribe(&[&topic]).expect("subscribe");
        let mut ledger = Ledger::default();
        let cs = [c];
        ledger.poll_until(&cs, "half the messages", |l, _| l.committed.values().map(|&o| o as usize).sum::<usize>() >= expected.len() / 2);
        // Closing leaves the group (membership is not durable anyway); what
        // must survive the kill is the committed offsets.
        drop(cs);
        before.push(ledger);
    }
    broker.kill9();
    let mut opts = BrokerOpts::default().arg("--group-initial-rebalance-delay-ms").arg(INITIAL_DELAY_MS);
    for a in restart_args {
        opts = opts.arg(a);
    }
    broker.restart_with(opts);

    for (group, old) in groups.iter().zip(before) {
        let c = group_consumer(&addr, group);
        c.subscribe(&[&topic]).expect("subscribe");
        let mut ledger = Ledger { committed: old.committed.clone(), ..Default::default() };
        let cs = [c];
        let missing: BTreeSet<(i32, i64)> = expected.iter().filter(|(p, o)| *o >= old.committed.get(p).copied().unwrap_or(0)).copied().collect();
        ledger.poll_until(&cs, "the rest of the messages", |l, _| missing.is_subset(&l.delivered));
        for p in 0..3 {
            let committed = old.committed.get(&p).copied().unwrap_or(0);
            if committed < 40 {
                assert_eq!(ledger.first.get(&p).copied(), Some(committed), "group {group} partition {p}: resumes exactly at its committed offset");
            }
        }
        let mut all = old.delivered.clone();
        all.extend(&ledger.delivered);
        assert_eq!(all, expected, "group {group}: nothing lost, nothing invented");
    }
}

/// Group ids coordinated by each of `shards` shards (one per shard).
fn one_group_per_shard(shards: usize) -> Vec<String> {
    (0..shards)
        .map(|s| {
            (0..)
                .map(|i| unique_topic(&format!("resume-{s}-{i}")))
                .find(|g| ringmq::groups::group_shard(g, shards) == s)
                .expect("some id lands on each shard")
        })
        .collect()
}

#[test]
fn group_resumes_at_committed_offsets_after_sigkill() {
    resume_after_sigkill(&[], &[], &one_group_per_shard(1));
}

#[test]
fn group_resumes_at_committed_offsets_after_sigkill_with_two_shards() {
    // One group on each shard: whichever shard a connection lands on, one
    // group is coordinated by the other.
    resume_after_sigkill(&["--cores", "2"], &["--cores", "2"], &one_group_per_shard(2));
}

#[test]
fn committed_offsets_survive_a_restart_with_another_cores_value() {
    resume_after_sigkill(&["--cores", "2"], &["--cores", "1"], &one_group_per_shard(2));
}

#[test]
fn simple_consumer_commits_without_membership_survive_restart() {
    let mut broker = group_broker(&["--cores", "2"]);
    let addr = broker.addr();
    let topic = unique_topic("groups-simple");
    create_topic(&addr, &topic, 2, &[]);
    let groups = one_group_per_shard(2);
    for (i, group) in groups.iter().enumerate() {
        let c = group_consumer(&addr, group);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(10 + i as i64)).expect("tpl");
        tpl.add_partition_offset(&topic, 1, Offset::Offset(20 + i as i64)).expect("tpl");
        c.commit(&tpl, CommitMode::Sync).expect("commit without joining the group");
    }
    broker.kill9();
    broker.restart_with(BrokerOpts::default().arg("--cores").arg("1"));
    for (i, group) in groups.iter().enumerate() {
        let c = group_consumer(&addr, group);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&topic, 0);
        tpl.add_partition(&topic, 1);
        let got = c.committed_offsets(tpl, CLIENT_TIMEOUT).expect("committed offsets");
        let offsets: Vec<Offset> = got.elements().iter().map(|e| e.offset()).collect();
        assert_eq!(offsets, vec![Offset::Offset(10 + i as i64), Offset::Offset(20 + i as i64)], "group {group}");
    }
}
