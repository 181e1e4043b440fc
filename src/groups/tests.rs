//! Coordinator state machine without network: joins, syncs and heartbeats
//! driven by hand, the answers awaited on the test's thread; committed
//! offsets on real offsets logs (tempdir, glommio executor).

use super::*;
use bytes::Bytes;
use futures_channel::oneshot;
use futures_lite::future::block_on;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, OffsetCommitRequest,
    SyncGroupRequest,
};

// The coordinator speaks its own types; these tests drive it as Kafka
// clients do, through the Kafka layer's conversions.
use crate::kafka::codes;
use crate::kafka::groups::coordinator_calls::KafkaCalls;
use crate::kafka::groups::sb;
use crate::storage::log::AckWait;

const G: &str = "g";

fn coordinator() -> Coordinator {
    let c = Coordinator::new(0, 1, Duration::ZERO);
    c.loaded.set(true);
    c
}

fn join_req(member: &str) -> JoinGroupRequest {
    join_req_in(G, member)
}

fn join_req_in(group: &str, member: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(sb(member))
        .with_protocol_type(sb("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(sb("range"))
            .with_metadata(Bytes::from_static(b"meta"))])
}

fn now_answer(r: Result<oneshot::Receiver<JoinGroupResponse>, JoinGroupResponse>) -> JoinGroupResponse {
    match r {
        Ok(mut rx) => rx.try_recv().expect("not cancelled").expect("answered at once"),
        Err(resp) => resp,
    }
}

fn heartbeat(c: &Coordinator, member: &str, generation: i32) -> i16 {
    c.heartbeat(
        HeartbeatRequest::default()
            .with_group_id(GroupId(sb(G)))
            .with_member_id(sb(member))
            .with_generation_id(generation),
    )
}

/// One member joins (v4: MEMBER_ID_REQUIRED first), syncs, and is Stable.
fn stable_single_member(c: &Coordinator) -> (String, i32) {
    let first = now_answer(c.join_start(5, "client".into(), join_req("")));
    assert_eq!(first.error_code, codes::MEMBER_ID_REQUIRED);
    let id = first.member_id.to_string();
    assert!(!id.is_empty());
    let joined = now_answer(c.join_start(5, "client".into(), join_req(&id)));
    assert_eq!(joined.error_code, codes::NONE);
    assert_eq!(joined.leader.as_str(), id);
    assert_eq!(joined.members.len(), 1, "the leader gets every member's metadata");
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(sb(G)))
        .with_generation_id(joined.generation_id)
        .with_member_id(sb(&id))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(sb(&id))
            .with_assignment(Bytes::from_static(b"all"))]);
    let resp = block_on(c.sync(3, sync));
    assert_eq!(resp.error_code, codes::NONE);
    assert_eq!(&resp.assignment[..], b"all");
    (id, joined.generation_id)
}

#[test]
fn heartbeat_with_wrong_generation_is_illegal_generation() {
    let c = coordinator();
    let (id, generation) = stable_single_member(&c);
    assert_eq!(heartbeat(&c, &id, generation), codes::NONE);
    assert_eq!(heartbeat(&c, &id, generation + 1), codes::ILLEGAL_GENERATION);
}

#[test]
fn heartbeat_of_unknown_member_is_unknown_member_id() {
    let c = coordinator();
    let (_, generation) = stable_single_member(&c);
    assert_eq!(heartbeat(&c, "nobody", generation), codes::UNKNOWN_MEMBER_ID);
    assert_eq!(
        c.heartbeat(HeartbeatRequest::default().with_group_id(GroupId(sb("other"))).with_member_id(sb("x"))),
        codes::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn heartbeat_during_a_rebalance_is_rebalance_in_progress() {
    let c = coordinator();
    let (id, generation) = stable_single_member(&c);
    // A second member joining starts a rebalance the first must join.
    let pending = c.join_start(3, "other".into(), join_req(""));
    assert!(pending.is_ok(), "the new member waits for the others to rejoin");
    assert_eq!(heartbeat(&c, &id, generation), codes::REBALANCE_IN_PROGRESS);
}

#[test]
fn join_v4_without_member_id_requires_one() {
    let c = coordinator();
    let r = now_answer(c.join_start(4, "client".into(), join_req("")));
    assert_eq!(r.error_code, codes::MEMBER_ID_REQUIRED);
    assert!(r.member_id.starts_with("client-"));
}

#[test]
fn join_with_no_common_protocol_is_inconsistent() {
    let c = coordinator();
    stable_single_member(&c);
    let mut req = join_req("");
    req.protocols[0].name = sb("roundrobin");
    let r = now_answer(c.join_start(3, "x".into(), req));
    assert_eq!(r.error_code, codes::INCONSISTENT_GROUP_PROTOCOL);
}

#[test]
fn leave_empties_the_group_and_bumps_the_generation() {
    let c = coordinator();
    let (id, generation) = stable_single_member(&c);
    let (code, _) = c.leave(0, LeaveGroupRequest::default().with_group_id(GroupId(sb(G))).with_member_id(sb(&id)));
    assert_eq!(code, codes::NONE);
    let d = c.describe(5, G);
    assert_eq!(d.group_state.as_str(), "Empty");
    assert_eq!(heartbeat(&c, &id, generation), codes::UNKNOWN_MEMBER_ID);
}

#[test]
fn silent_member_expires_after_its_session_timeout() {
    let c = coordinator();
    let (id, _) = stable_single_member(&c);
    c.sweep(Instant::now() + Duration::from_secs(11));
    assert!(c.groups.borrow().get(G).is_none_or(|g| g.members.is_empty()), "member {id} still there");
}

#[test]
fn calls_before_loading_answer_load_in_progress() {
    let c = Coordinator::new(0, 1, Duration::ZERO);
    assert_eq!(heartbeat(&c, "m", 1), codes::COORDINATOR_LOAD_IN_PROGRESS);
    assert_eq!(now_answer(c.join_start(5, "c".into(), join_req(""))).error_code, codes::COORDINATOR_LOAD_IN_PROGRESS);
}

#[test]
fn group_placement_depends_on_the_group_id_only() {
    for n in 1..6 {
        let s = group_shard("orders-consumers", n);
        assert!(s < n);
        assert_eq!(s, shard_of(OFFSETS_TOPIC, offsets_partition("orders-consumers"), n));
    }
    assert!((0..OFFSETS_PARTITIONS).contains(&offsets_partition("x")));
}

#[test]
fn pending_member_ids_are_capped_per_shard() {
    let mut c = coordinator();
    c.limits.max_pending_members = 2;
    for group in ["a", "b"] {
        assert_eq!(
            now_answer(c.join_start(5, "client".into(), join_req_in(group, ""))).error_code,
            codes::MEMBER_ID_REQUIRED
        );
    }
    assert_eq!(
        now_answer(c.join_start(5, "client".into(), join_req_in("c", ""))).error_code,
        codes::GROUP_MAX_SIZE_REACHED
    );
    // Expired ids give their places back.
    c.sweep(Instant::now() + Duration::from_secs(11));
    assert_eq!(c.pending_count.get(), 0);
    assert_eq!(
        now_answer(c.join_start(5, "client".into(), join_req_in("c", ""))).error_code,
        codes::MEMBER_ID_REQUIRED
    );
}

fn commit_rec(group: &str, topic: &str, partition: i32, offset: i64) -> OffsetRecord {
    OffsetRecord::Commit {
        group: group.into(),
        topic: topic.into(),
        partition,
        offset,
        leader_epoch: -1,
        metadata: None,
        commit_ms: 0,
    }
}

/// Every committed offset in memory: (group, topic, partition) → offset.
fn offsets_of(c: &Coordinator) -> BTreeMap<(String, String, i32), i64> {
    let mut out = BTreeMap::new();
    for g in c.groups.borrow().values() {
        for ((t, p), committed) in &g.offsets {
            out.insert((g.id.clone(), t.clone(), *p), committed.offset);
        }
    }
    out
}

#[test]
fn commit_written_after_a_tombstone_survives_it_when_applied_first() {
    // Log order: commit (seq 1), tombstone (seq 2), commit (seq 3); the
    // writers of the last two wake in the other order.
    let c = coordinator();
    let tombstone = OffsetRecord::GroupDeleted { group: G.into() };
    c.apply(commit_rec(G, "t", 0, 5), 1);
    c.apply(commit_rec(G, "t", 1, 7), 3);
    c.apply(tombstone.clone(), 2);
    let memory = offsets_of(&c);
    assert_eq!(memory, BTreeMap::from([((G.to_string(), "t".to_string(), 1), 7)]));
    let replayed = coordinator();
    replayed.restore(vec![commit_rec(G, "t", 0, 5), tombstone, commit_rec(G, "t", 1, 7)]);
    assert_eq!(offsets_of(&replayed), memory, "memory and replay disagree");
    assert_eq!(c.offsets_count.get(), 1);
}

#[test]
fn commit_written_before_a_tombstone_stays_deleted_when_applied_after_it() {
    // Log order: commit (seq 1), tombstone (seq 2); the tombstone's writer wakes first.
    let c = coordinator();
    let commit = commit_rec(G, "t", 0, 5);
    let reserved = c.admit(G, std::slice::from_ref(&commit)).expect("admitted");
    assert_eq!(reserved, 1);
    c.apply(OffsetRecord::GroupDeleted { group: G.into() }, 2);
    if let Some(g) = c.groups.borrow_mut().get_mut(G) {
        g.writes_in_flight -= 1;
    }
    c.apply(commit, 1);
    assert!(offsets_of(&c).is_empty(), "a commit the log deletes is back in memory");
    assert_eq!(c.offsets_count.get(), 0);
    let replayed = coordinator();
    replayed.restore(vec![commit_rec(G, "t", 0, 5), OffsetRecord::GroupDeleted { group: G.into() }]);
    assert!(offsets_of(&replayed).is_empty());
}

#[test]
fn compaction_snapshot_keeps_the_newest_of_applied_and_in_flight_commits() {
    let c = coordinator();
    // Seq 3 still in flight (its writer not woken yet), seq 5 applied.
    c.in_flight.borrow_mut().insert(3, vec![commit_rec(G, "t", 0, 5)]);
    c.apply(commit_rec(G, "t", 0, 10), 5);
    let snapshot = c.snapshot(offsets_partition(G), 0);
    assert_eq!(snapshot, vec![commit_rec(G, "t", 0, 10)]);
}

fn run<T>(f: impl std::future::Future<Output = T> + 'static) -> T {
    glommio::LocalExecutorBuilder::default().make().expect("executor").run(f)
}

/// A loaded coordinator over the offsets logs under `dir`.
async fn on_disk(dir: &std::path::Path, limits: Limits) -> Rc<Coordinator> {
    let mut c = Coordinator::new(0, 1, Duration::ZERO);
    c.limits = limits;
    let c = Rc::new(c);
    c.load(dir, &crate::storage::LogConfig::default()).await.expect("load offsets");
    c
}

fn commit_req(group: &str, topic: &str, offsets: &[(i32, i64)], metadata: &str) -> OffsetCommitRequest {
    let partitions = offsets
        .iter()
        .map(|(p, o)| {
            OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_metadata(Some(sb(metadata)))
        })
        .collect();
    OffsetCommitRequest::default().with_group_id(GroupId(sb(group))).with_generation_id_or_member_epoch(-1).with_topics(
        vec![OffsetCommitRequestTopic::default().with_name(TopicName(sb(topic))).with_partitions(partitions)],
    )
}

fn codes_of(answer: Vec<(String, Vec<(i32, i16)>)>) -> Vec<i16> {
    answer.into_iter().flat_map(|(_, ps)| ps.into_iter().map(|(_, code)| code)).collect()
}

const TIGHT: Limits = Limits { max_groups: 1, max_offsets: 2, max_pending_members: 10 };

#[test]
fn offsets_replayed_beyond_the_caps_survive_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(async move {
        // Groups of one offsets log, the small ones first: in its first
        // (sealed, then compacted away) segment.
        let p = offsets_partition("big");
        let small: Vec<String> = (0..).map(|i| format!("g{i}")).filter(|g| offsets_partition(g) == p).take(3).collect();
        let written = on_disk(&path, Limits::default()).await;
        for g in &small {
            assert_eq!(
                codes_of(written.commit(8, commit_req(g, "t", &[(0, 10), (1, 11)], "")).await),
                vec![codes::NONE; 2]
            );
        }
        let big: Vec<(i32, i64)> = (0..300).map(|i| (i, 1000 + i64::from(i))).collect();
        assert_eq!(
            codes_of(written.commit(8, commit_req("big", "t", &big, &"m".repeat(4000))).await),
            vec![codes::NONE; 300]
        );
        let expected = offsets_of(&written);
        assert_eq!(expected.len(), 306);
        written.close().await;

        // Restarted with a shard that would be over its caps (fewer cores).
        let crowded = on_disk(&path, TIGHT).await;
        assert_eq!(offsets_of(&crowded), expected, "replay dropped offsets over the caps");
        let log = crowded.logs.borrow().get(&p).cloned().expect("offsets log");
        assert!(log.sealed_segments() > 0);
        crowded.compact(p).await;
        assert!(log.offsets().log_start_offset > 0, "compaction deleted no segment");
        crowded.close().await;

        let after = on_disk(&path, Limits::default()).await;
        assert_eq!(offsets_of(&after), expected, "compaction lost offsets");
        after.close().await;
    });
}

#[test]
fn commit_beyond_the_offsets_cap_is_refused_and_not_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(async move {
        let c = on_disk(&path, Limits { max_groups: 10, ..TIGHT }).await;
        assert_eq!(codes_of(c.commit(8, commit_req(G, "t", &[(0, 5), (1, 6)], "")).await), vec![codes::NONE; 2]);
        assert_eq!(
            codes_of(c.commit(8, commit_req(G, "t", &[(2, 7)], "")).await),
            vec![codes::INVALID_COMMIT_OFFSET_SIZE]
        );
        // At the cap, committed offsets still move.
        assert_eq!(codes_of(c.commit(8, commit_req(G, "t", &[(0, 9)], "")).await), vec![codes::NONE]);
        let accepted = offsets_of(&c);
        c.close().await;
        let again = on_disk(&path, Limits::default()).await;
        assert_eq!(offsets_of(&again), accepted, "a refused commit came back from disk");
        again.close().await;
    });
}

#[test]
fn commit_for_a_group_beyond_the_groups_cap_is_refused_and_not_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(async move {
        let c = on_disk(&path, Limits { max_offsets: 100, ..TIGHT }).await;
        assert_eq!(codes_of(c.commit(8, commit_req("first", "t", &[(0, 5)], "")).await), vec![codes::NONE]);
        assert_eq!(
            codes_of(c.commit(8, commit_req("second", "t", &[(0, 6)], "")).await),
            vec![codes::INVALID_COMMIT_OFFSET_SIZE]
        );
        assert!(c.groups.borrow().get("second").is_none());
        let accepted = offsets_of(&c);
        c.close().await;
        let again = on_disk(&path, Limits::default()).await;
        assert_eq!(offsets_of(&again), accepted, "a refused commit came back from disk");
        again.close().await;
    });
}

#[test]
fn offsets_log_with_records_not_understood_is_not_compacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(async move {
        let p = offsets_partition(G);
        let log = store::open(&path, p, &crate::storage::LogConfig::default()).await.expect("open");
        let mut bytes = store::encode(&[commit_rec(G, "t", 0, 1)], 0).expect("encode");
        let foreign =
            crate::kafka::record_batch::encode_batch(&[(Some(Bytes::from_static(&[9, 0, 0])), Bytes::new())], 0)
                .expect("encode");
        bytes.extend_from_slice(&foreign);
        log.append(bytes, AckWait::Commit).await.expect("append");
        log.close().await;

        let c = on_disk(&path, Limits::default()).await;
        assert_eq!(offsets_of(&c).len(), 1);
        let log = c.logs.borrow().get(&p).cloned().expect("offsets log");
        let end = log.offsets().log_end_offset;
        c.compact(p).await;
        assert_eq!(log.offsets().log_end_offset, end, "a lossy log was rewritten");
        c.close().await;
    });
}
