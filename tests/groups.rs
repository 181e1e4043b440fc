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
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    c.create().expect("create group consumer")
}

/// Produces `per_partition` messages to each partition; returns every (partition, offset).
fn produce_round(addr: &str, topic: &str, partitions: i32, per_partition: usize, tag: &str) -> BTreeSet<(i32, i64)> {
    let p = producer(addr, &[]);
    let msgs = (0..partitions)
        .flat_map(|part| (0..per_partition).map(move |i| (part, None, format!("{tag}-{part}-{i}").into_bytes())));
    produce_many(&p, topic, msgs).into_iter().collect()
}

/// Sum over shards of a metric from `GET /metrics` (address from broker.log).
fn metric_sum(broker: &Broker, name: &str) -> u64 {
    broker
        .metrics()
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn assigned(c: &BaseConsumer) -> Vec<i32> {
    let mut v: Vec<i32> =
        c.assignment().map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default();
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
    fn poll_until(
        &mut self,
        consumers: &[BaseConsumer],
        what: &str,
        mut done: impl FnMut(&Ledger, &[BaseConsumer]) -> bool,
    ) {
        let deadline = Instant::now() + DEADLINE;
        while !done(self, consumers) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: delivered {}, assignments {:?}",
                self.delivered.len(),
                consumers.iter().map(assigned).collect::<Vec<_>>()
            );
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
    assert_eq!(metric_sum(&broker, "ringmq_consumer_group_members"), 3, "members in /metrics");

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
    ledger.poll_until(&consumers, "all 4 partitions on the only member", |l, cs| {
        assigned(&cs[0]).len() == 4 && expected.is_subset(&l.delivered)
    });
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
        ledger.poll_until(&cs, "half the messages", |l, _| {
            l.committed.values().map(|&o| o as usize).sum::<usize>() >= expected.len() / 2
        });
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
        let missing: BTreeSet<(i32, i64)> =
            expected.iter().filter(|(p, o)| *o >= old.committed.get(p).copied().unwrap_or(0)).copied().collect();
        ledger.poll_until(&cs, "the rest of the messages", |l, _| missing.is_subset(&l.delivered));
        for p in 0..3 {
            let committed = old.committed.get(&p).copied().unwrap_or(0);
            if committed < 40 {
                assert_eq!(
                    ledger.first.get(&p).copied(),
                    Some(committed),
                    "group {group} partition {p}: resumes exactly at its committed offset"
                );
            }
        }
        let mut all = old.delivered.clone();
        all.extend(&ledger.delivered);
        assert_eq!(all, expected, "group {group}: nothing lost, nothing invented");
    }
}

/// Group ids coordinated by each of `shards` shards (one per shard).
///
/// Only a suffix varies between the candidates of a shard: a group's shard
/// is a function of the low bits of FNV-1a, which are the parities of its
/// bytes' low bits, so candidates whose varying parts moved together (an
/// index and a process-wide counter in step, as before) could all land on
/// the same shard and the search never ended. Bounded now besides.
fn one_group_per_shard(shards: usize) -> Vec<String> {
    (0..shards)
        .map(|s| {
            let base = unique_topic(&format!("resume-{s}"));
            (0..1000)
                .map(|i| format!("{base}-{i}"))
                .find(|g| ringmq::groups::group_shard(g, shards) == s)
                .unwrap_or_else(|| panic!("no id {base}-0..999 is coordinated by shard {s} of {shards}"))
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

// ---------------------------------------------------------------------------
// Raw protocol: every advertised version, and the error codes of the state
// machine, over a plain TCP connection with kafka-protocol's own encoders.
// ---------------------------------------------------------------------------

mod raw {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    use bytes::{Buf, BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    pub fn sb(s: &str) -> StrBytes {
        StrBytes::from_string(s.to_string())
    }

    pub struct Conn {
        stream: TcpStream,
        correlation: i32,
    }

    impl Conn {
        pub fn new(addr: &str) -> Conn {
            let stream = TcpStream::connect(addr).expect("connect");
            stream.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
            Conn { stream, correlation: 0 }
        }

        /// Sends `req` as `api` v`version` and decodes the response as `R`.
        pub fn call<Q: Encodable, R: Decodable>(&mut self, api: ApiKey, version: i16, req: &Q) -> R {
            self.correlation += 1;
            let mut buf = BytesMut::new();
            buf.put_i32(0);
            RequestHeader::default()
                .with_request_api_key(api as i16)
                .with_request_api_version(version)
                .with_correlation_id(self.correlation)
                .with_client_id(Some(sb("raw-test")))
                .encode(&mut buf, api.request_header_version(version))
                .expect("encode header");
            req.encode(&mut buf, version).unwrap_or_else(|e| panic!("encode {api:?} v{version}: {e}"));
            let size = (buf.len() - 4) as i32;
            buf[..4].copy_from_slice(&size.to_be_bytes());
            self.stream.write_all(&buf).expect("send");
            let mut size = [0u8; 4];
            self.stream
                .read_exact(&mut size)
                .unwrap_or_else(|e| panic!("{api:?} v{version}: no response ({e}): the broker closed the connection?"));
            let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
            self.stream.read_exact(&mut body).expect("response body");
            let mut body = Bytes::from(body);
            let header =
                ResponseHeader::decode(&mut body, api.response_header_version(version)).expect("response header");
            assert_eq!(header.correlation_id, self.correlation);
            let resp =
                R::decode(&mut body, version).unwrap_or_else(|e| panic!("decode {api:?} v{version} response: {e}"));
            assert_eq!(body.remaining(), 0, "{api:?} v{version}: trailing bytes in the response");
            resp
        }
    }
}

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use raw::{sb, Conn};

fn join_request(group: &str, member: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(sb(member))
        .with_protocol_type(sb("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(sb("range"))
            .with_metadata(bytes::Bytes::from_static(b"m"))])
}

/// Joins `group` as its only member (v5) and completes the sync; returns (member id, generation).
fn join_alone(conn: &mut Conn, group: &str) -> (String, i32) {
    let first: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 5, &join_request(group, ""));
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED first (KIP-394)");
    let id = first.member_id.to_string();
    let joined: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 5, &join_request(group, &id));
    assert_eq!(joined.error_code, 0);
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(sb(&id))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(sb(&id))
            .with_assignment(bytes::Bytes::from_static(b"a"))]);
    let synced: SyncGroupResponse = conn.call(ApiKey::SyncGroup, 3, &sync);
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"a");
    (id, joined.generation_id)
}

fn heartbeat(conn: &mut Conn, group: &str, member: &str, generation: i32) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_member_id(sb(member))
        .with_generation_id(generation);
    let resp: HeartbeatResponse = conn.call(ApiKey::Heartbeat, 3, &req);
    resp.error_code
}

#[test]
fn heartbeat_with_a_wrong_generation_is_illegal_generation() {
    let broker = group_broker(&["--cores", "2"]);
    let mut conn = Conn::new(&broker.addr());
    let (id, generation) = join_alone(&mut conn, "raw-gen");
    assert_eq!(heartbeat(&mut conn, "raw-gen", &id, generation), 0);
    assert_eq!(heartbeat(&mut conn, "raw-gen", &id, generation + 1), 22);
}

#[test]
fn heartbeat_of_an_unknown_member_is_unknown_member_id() {
    let broker = group_broker(&["--cores", "2"]);
    let mut conn = Conn::new(&broker.addr());
    let (_, generation) = join_alone(&mut conn, "raw-unknown");
    assert_eq!(heartbeat(&mut conn, "raw-unknown", "nobody", generation), 25);
    assert_eq!(heartbeat(&mut conn, "raw-no-such-group", "nobody", 1), 25);
}

#[test]
fn heartbeat_during_a_rebalance_is_rebalance_in_progress() {
    let broker = group_broker(&["--cores", "2"]);
    let addr = broker.addr();
    let mut conn = Conn::new(&addr);
    let (id, generation) = join_alone(&mut conn, "raw-rebalance");
    // A second member's join (it blocks until the first rejoins) starts a rebalance.
    let joiner = std::thread::spawn(move || {
        let mut other = Conn::new(&addr);
        let r: JoinGroupResponse = other.call(ApiKey::JoinGroup, 3, &join_request("raw-rebalance", ""));
        r.error_code
    });
    let deadline = Instant::now() + DEADLINE;
    loop {
        let code = heartbeat(&mut conn, "raw-rebalance", &id, generation);
        if code == 27 {
            break;
        }
        assert_eq!(code, 0, "heartbeat before the rebalance starts");
        assert!(Instant::now() < deadline, "the second join never started a rebalance");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The first member rejoins: the join phase completes for both.
    let rejoined: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 5, &join_request("raw-rebalance", &id));
    assert_eq!(rejoined.error_code, 0);
    assert_eq!(rejoined.generation_id, generation + 1);
    assert_eq!(joiner.join().expect("joiner thread"), 0);
}

/// Every version the broker advertises for the group APIs is answered with
/// a response kafka-protocol decodes for that version (what Python and JS
/// clients negotiate is among them).
#[test]
fn every_advertised_group_api_version_is_answered_decodably() {
    let broker = group_broker(&["--cores", "2"]);
    let mut conn = Conn::new(&broker.addr());
    for v in 0..=4 {
        let mut req = FindCoordinatorRequest::default();
        if v >= 4 {
            req.coordinator_keys = vec![sb("g1"), sb("g2")];
        } else {
            req.key = sb("g1");
        }
        let r: FindCoordinatorResponse = conn.call(ApiKey::FindCoordinator, v, &req);
        if v >= 4 {
            assert_eq!(r.coordinators.len(), 2);
            assert!(r.coordinators.iter().all(|c| c.error_code == 0 && c.port == broker.socket_addr().port() as i32));
        } else {
            assert_eq!((r.error_code, r.port), (0, broker.socket_addr().port() as i32));
        }
    }
    for v in 0..=9 {
        let group = format!("vers-join-{v}");
        let r: JoinGroupResponse = conn.call(ApiKey::JoinGroup, v, &join_request(&group, ""));
        if v >= 4 {
            assert_eq!(r.error_code, 79, "v{v}");
            let r: JoinGroupResponse = conn.call(ApiKey::JoinGroup, v, &join_request(&group, &r.member_id.to_string()));
            assert_eq!(r.error_code, 0, "v{v}");
            assert_eq!(r.members.len(), 1, "v{v}: the leader gets the members");
        } else {
            assert_eq!(r.error_code, 0, "v{v}");
        }
    }
    for v in 0..=5 {
        let req = SyncGroupRequest::default()
            .with_group_id(GroupId(sb("vers-none")))
            .with_member_id(sb("m"))
            .with_generation_id(1);
        let r: SyncGroupResponse = conn.call(ApiKey::SyncGroup, v, &req);
        assert_eq!(r.error_code, 25, "v{v}");
    }
    for v in 0..=4 {
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(sb("vers-none")))
            .with_member_id(sb("m"))
            .with_generation_id(1);
        let r: HeartbeatResponse = conn.call(ApiKey::Heartbeat, v, &req);
        assert_eq!(r.error_code, 25, "v{v}");
    }
    for v in 0..=5 {
        let mut req = LeaveGroupRequest::default().with_group_id(GroupId(sb("vers-none")));
        if v >= 3 {
            req.members = vec![leave_group_request::MemberIdentity::default().with_member_id(sb("m"))];
        } else {
            req.member_id = sb("m");
        }
        let r: LeaveGroupResponse = conn.call(ApiKey::LeaveGroup, v, &req);
        if v >= 3 {
            assert_eq!(r.members.len(), 1, "v{v}");
            assert_eq!(r.members[0].error_code, 25, "v{v}");
        } else {
            assert_eq!(r.error_code, 25, "v{v}");
        }
    }
    for v in 2..=8 {
        let group = format!("vers-commit-{v}");
        let req = OffsetCommitRequest::default().with_group_id(GroupId(sb(&group))).with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default().with_name(TopicName(sb("t"))).with_partitions(
                vec![offset_commit_request::OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(40 + v as i64)],
            ),
        ]);
        let r: OffsetCommitResponse = conn.call(ApiKey::OffsetCommit, v, &req);
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "v{v}");
    }
    for v in 1..=8 {
        let group = format!("vers-commit-{}", v.max(2));
        let r: OffsetFetchResponse = if v >= 8 {
            let req = OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(sb(&group)))
                    .with_topics(Some(vec![offset_fetch_request::OffsetFetchRequestTopics::default()
                        .with_name(TopicName(sb("t")))
                        .with_partition_indexes(vec![0])])),
            ]);
            conn.call(ApiKey::OffsetFetch, v, &req)
        } else {
            let req = OffsetFetchRequest::default().with_group_id(GroupId(sb(&group))).with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(TopicName(sb("t")))
                    .with_partition_indexes(vec![0]),
            ]));
            conn.call(ApiKey::OffsetFetch, v, &req)
        };
        let offset = if v >= 8 {
            r.groups[0].topics[0].partitions[0].committed_offset
        } else {
            r.topics[0].partitions[0].committed_offset
        };
        assert_eq!(offset, 40 + v.max(2) as i64, "v{v}");
    }
    for v in 0..=5 {
        let req = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(sb("vers-join-9")), GroupId(sb("vers-commit-2"))]);
        let r: DescribeGroupsResponse = conn.call(ApiKey::DescribeGroups, v, &req);
        assert_eq!(r.groups.len(), 2, "v{v}");
        assert_eq!(r.groups[1].group_state.as_str(), "Empty", "v{v}");
    }
    for v in 0..=4 {
        let r: ListGroupsResponse = conn.call(ApiKey::ListGroups, v, &ListGroupsRequest::default());
        assert_eq!(r.error_code, 0, "v{v}");
        assert!(
            r.groups.iter().any(|g| g.group_id.as_str() == "vers-commit-3"),
            "v{v}: groups on both shards are listed"
        );
        assert!(r.groups.iter().any(|g| g.group_id.as_str() == "vers-join-0"), "v{v}");
    }
    for v in 0..=2 {
        let group = format!("vers-commit-{}", v + 2);
        let req = DeleteGroupsRequest::default().with_groups_names(vec![
            GroupId(sb(&group)),
            GroupId(sb("vers-join-9")),
            GroupId(sb("never-existed")),
        ]);
        let r: DeleteGroupsResponse = conn.call(ApiKey::DeleteGroups, v, &req);
        let codes: Vec<i16> = r.results.iter().map(|x| x.error_code).collect();
        assert_eq!(codes, vec![0, 68, 69], "v{v}: deleted, non-empty, unknown");
    }
}

/// Offsets logs do not grow without bound: once their old segments hold
/// enough superseded commits, the live offsets are written again and the old
/// segments deleted; a restart still finds the last committed values.
#[test]
fn offsets_log_is_compacted_and_still_replays_the_last_commits() {
    let mut broker = group_broker(&[]);
    let mut conn = Conn::new(&broker.addr());
    let group = "compaction-group-with-a-rather-long-name-for-bigger-records";
    let dir = broker.data_dir().join("__consumer_offsets").join(ringmq::groups::offsets_partition(group).to_string());
    let commit = |conn: &mut Conn, round: i64| {
        let parts = (0..2000)
            .map(|p| {
                offset_commit_request::OffsetCommitRequestPartition::default()
                    .with_partition_index(p)
                    .with_committed_offset(round * 10_000 + p as i64)
            })
            .collect();
        let req = OffsetCommitRequest::default().with_group_id(GroupId(sb(group))).with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(sb("compacted-topic")))
                .with_partitions(parts),
        ]);
        let r: OffsetCommitResponse = conn.call(ApiKey::OffsetCommit, 8, &req);
        assert!(r.topics[0].partitions.iter().all(|p| p.error_code == 0), "round {round}");
    };
    let log_files = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .expect("offsets log dir")
            .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "log")))
            .count()
    };
    let mut round = 0;
    let deadline = Instant::now() + DEADLINE;
    while !broker.log().contains("compacted consumer offsets log") {
        assert!(Instant::now() < deadline, "no compaction after {round} commits of 2000 offsets");
        round += 1;
        commit(&mut conn, round);
    }
    // Compaction deleted the old segments: fewer files than the data written needs.
    let written_segments = round as usize * 2000 * 100 / (1024 * 1024);
    eprintln!(
        "[groups] compaction after {round} commits; {} segment files for ~{written_segments} segments written",
        log_files(&dir)
    );
    assert!(
        log_files(&dir) < written_segments,
        "{} segment files left after writing ~{written_segments} segments",
        log_files(&dir)
    );
    round += 1;
    commit(&mut conn, round);
    broker.kill9();
    broker.restart_with(BrokerOpts::default());
    let mut conn = Conn::new(&broker.addr());
    let req = OffsetFetchRequest::default().with_groups(vec![offset_fetch_request::OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(sb(group)))
        .with_topics(None)]);
    let r: OffsetFetchResponse = conn.call(ApiKey::OffsetFetch, 8, &req);
    let parts = &r.groups[0].topics[0].partitions;
    assert_eq!(parts.len(), 2000);
    assert!(
        parts.iter().all(|p| p.committed_offset == round * 10_000 + p.partition_index as i64),
        "every partition at its last commit"
    );
}

/// Static membership (group.instance.id): a member that restarts under the
/// same instance id gets its partitions back long before its session
/// timeout, and the other member keeps consuming.
#[test]
fn static_member_restarting_gets_its_partitions_back_before_the_session_timeout() {
    let broker = group_broker(&[]);
    let addr = broker.addr();
    let topic = unique_topic("groups-static");
    let group = unique_topic("static-group");
    create_topic(&addr, &topic, 4, &[]);
    let mut expected = produce_round(&addr, &topic, 4, 10, "a");
    let member = |instance: &str| {
        let mut c = client_config(&addr);
        c.set("group.id", &group)
            .set("group.instance.id", instance)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "60000");
        let c: BaseConsumer = c.create().expect("create consumer");
        c.subscribe(&[&topic]).expect("subscribe");
        c
    };
    let mut consumers = vec![member("static-a"), member("static-b")];
    let mut ledger = Ledger::default();
    ledger.poll_until(&consumers, "2 partitions each", |l, cs| {
        cs.iter().all(|c| assigned(c).len() == 2) && expected.is_subset(&l.delivered)
    });
    // A static member closes without leaving the group (KIP-345) and comes back.
    drop(consumers.remove(0));
    let restarted = Instant::now();
    consumers.insert(0, member("static-a"));
    expected.extend(produce_round(&addr, &topic, 4, 10, "b"));
    ledger.poll_until(&consumers, "2 partitions each after the restart", |l, cs| {
        cs.iter().all(|c| assigned(c).len() == 2) && expected.is_subset(&l.delivered)
    });
    assert!(
        restarted.elapsed() < Duration::from_secs(30),
        "took {:?}: the restarted member waited for its old session to expire",
        restarted.elapsed()
    );
    assert_eq!(ledger.delivered, expected);
}

fn describe_state(conn: &mut Conn, group: &str) -> (String, usize) {
    let r: DescribeGroupsResponse =
        conn.call(ApiKey::DescribeGroups, 5, &DescribeGroupsRequest::default().with_groups(vec![GroupId(sb(group))]));
    (r.groups[0].group_state.to_string(), r.groups[0].members.len())
}

#[test]
fn member_that_stops_heartbeating_is_removed_after_its_session_timeout() {
    let broker = group_broker(&[]);
    let mut conn = Conn::new(&broker.addr());
    let group = "raw-session";
    let mut req = join_request(group, "");
    req.session_timeout_ms = 1_000;
    let first: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 5, &req);
    req.member_id = first.member_id.clone();
    let joined: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 5, &req);
    assert_eq!(joined.error_code, 0);
    let started = Instant::now();
    let deadline = started + DEADLINE;
    // Empty, or Dead once the sweep forgot the group (it has no offsets).
    while !matches!(describe_state(&mut conn, group), (s, 0) if s == "Empty" || s == "Dead") {
        assert!(Instant::now() < deadline, "the silent member was never removed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "removed after {:?}, before its 1 s session timeout",
        started.elapsed()
    );
    assert_eq!(heartbeat(&mut conn, group, &joined.member_id.to_string(), joined.generation_id), 25);
}

#[test]
fn member_that_does_not_rejoin_within_the_rebalance_timeout_is_dropped() {
    let broker = group_broker(&[]);
    let addr = broker.addr();
    let mut conn = Conn::new(&addr);
    let group = "raw-rebalance-timeout";
    let mut req = join_request(group, "");
    req.rebalance_timeout_ms = 1_000;
    let first: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 5, &req);
    req.member_id = first.member_id.clone();
    let joined: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 5, &req);
    let a = joined.member_id.to_string();
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(sb(&a));
    let _: SyncGroupResponse = conn.call(ApiKey::SyncGroup, 3, &sync);
    // B joins; A keeps heartbeating (so its session stays alive) but never rejoins.
    let joiner = std::thread::spawn(move || {
        let mut other = Conn::new(&addr);
        let mut req = join_request(group, "");
        req.rebalance_timeout_ms = 1_000;
        let started = Instant::now();
        let r: JoinGroupResponse = other.call(ApiKey::JoinGroup, 3, &req);
        (r, started.elapsed())
    });
    let deadline = Instant::now() + DEADLINE;
    let mut saw_rebalance = false;
    loop {
        match heartbeat(&mut conn, group, &a, joined.generation_id) {
            27 => saw_rebalance = true,
            // Dropped. REBALANCE_IN_PROGRESS comes first unless this thread
            // slept through the whole 1 s rebalance (a busy machine): B's
            // wait below shows the rebalance either way.
            25 => break,
            0 => {}
            other => panic!("unexpected heartbeat error {other}"),
        }
        assert!(Instant::now() < deadline, "member A was never dropped");
        std::thread::sleep(Duration::from_millis(50));
    }
    if !saw_rebalance {
        eprintln!("[groups] no heartbeat of A fell inside the rebalance: checked by B's wait alone");
    }
    let (b, waited) = joiner.join().expect("joiner");
    assert_eq!(b.error_code, 0);
    assert_eq!(b.generation_id, joined.generation_id + 1);
    assert_eq!(b.leader, b.member_id, "B is alone, so it leads");
    assert!(
        waited >= Duration::from_millis(900),
        "B's join was answered after {waited:?}: A was dropped before its 1 s rebalance timeout"
    );
}
