//! Coordinator state machine without disk or network: joins, syncs and
//! heartbeats driven by hand, the answers awaited on the test's thread.

use super::*;
use futures_lite::future::block_on;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;

const G: &str = "g";

fn coordinator() -> Coordinator {
    let c = Coordinator::new(0, 1, Duration::ZERO);
    c.loaded.set(true);
    c
}

fn join_req(member: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(sb(G)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(sb(member))
        .with_protocol_type(sb("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(sb("range")).with_metadata(Bytes::from_static(b"meta"))])
}

fn now_answer(r: Result<oneshot::Receiver<JoinGroupResponse>, JoinGroupResponse>) -> JoinGroupResponse {
    match r {
        Ok(mut rx) => rx.try_recv().expect("not cancelled").expect("answered at once"),
        Err(resp) => resp,
    }
}

fn heartbeat(c: &Coordinator, member: &str, generation: i32) -> i16 {
    c.heartbeat(HeartbeatRequest::default().with_group_id(GroupId(sb(G))).with_member_id(sb(member)).with_generation_id(generation))
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
        .with_assignments(vec![SyncGroupRequestAssignment::default().with_member_id(sb(&id)).with_assignment(Bytes::from_static(b"all"))]);
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
    assert_eq!(c.heartbeat(HeartbeatRequest::default().with_group_id(GroupId(sb("other"))).with_member_id(sb("x"))), codes::UNKNOWN_MEMBER_ID);
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
