//! Consumer group APIs (classic protocol): FindCoordinator v0-4, JoinGroup
//! v0-9, SyncGroup v0-5, Heartbeat v0-4, LeaveGroup v0-5, OffsetCommit v2-8,
//! OffsetFetch v1-8, DescribeGroups v0-5, ListGroups v0-4, DeleteGroups
//! v0-2. Each request is decoded where the connection landed into the
//! coordinator's own terms (`groups::JoinRequest`...), its per-group work
//! runs on the group's shard (`groups::group_shard`, over the mesh when that
//! is another shard), and the outcome is encoded here, error codes included,
//! for the version the client asked.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{codes, decode_body, encode_response, errors, Reply, RequestContext, RequestError, NODE_ID};
use crate::groups::store::StoreError;
use crate::groups::{
    self, CommitOutcome, CommitPartition, CommitRequest, FetchedOffset, GroupAnswer, GroupCall, GroupDescription,
    GroupError, Heartbeat, JoinOutcome, JoinRequest, JoinedMember, LeaveRequest, LeavingMember, MemberLeft,
    SyncOutcome, SyncRequest,
};
use crate::runtime::shard::Shard;
use crate::storage::StorageError;

pub(crate) fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Runs a call on the group's shard.
async fn call(shard: &Rc<Shard>, group: &str, call: GroupCall) -> Option<GroupAnswer> {
    shard.call_group(groups::group_shard(group, shard.count), call).await
}

fn count(shard: &Shard, code: i16) -> i16 {
    shard.counters.error(code);
    code
}

// ---- error codes ----

/// The Kafka error code of a refused group operation.
fn code(e: &GroupError) -> i16 {
    match e {
        GroupError::NotAvailable => codes::COORDINATOR_NOT_AVAILABLE,
        GroupError::Loading => codes::COORDINATOR_LOAD_IN_PROGRESS,
        GroupError::InvalidGroupId => codes::INVALID_GROUP_ID,
        GroupError::InvalidSessionTimeout => codes::INVALID_SESSION_TIMEOUT,
        GroupError::InconsistentProtocol => codes::INCONSISTENT_GROUP_PROTOCOL,
        GroupError::MemberDataTooLarge => codes::INVALID_REQUEST,
        GroupError::UnknownMember => codes::UNKNOWN_MEMBER_ID,
        GroupError::FencedInstance => codes::FENCED_INSTANCE_ID,
        GroupError::IllegalGeneration => codes::ILLEGAL_GENERATION,
        GroupError::RebalanceInProgress => codes::REBALANCE_IN_PROGRESS,
        GroupError::GroupFull => codes::GROUP_MAX_SIZE_REACHED,
        // A commit that would create a group past the shard's cap; a join
        // gets UNKNOWN_SERVER_ERROR instead (`join_code`).
        GroupError::TooManyGroups | GroupError::TooManyOffsets => codes::INVALID_COMMIT_OFFSET_SIZE,
        GroupError::OffsetMetadataTooLarge => codes::OFFSET_METADATA_TOO_LARGE,
        GroupError::InvalidPartition => codes::UNKNOWN_TOPIC_OR_PARTITION,
        GroupError::GroupNotFound => codes::GROUP_ID_NOT_FOUND,
        GroupError::NotEmpty => codes::NON_EMPTY_GROUP,
        GroupError::Store(e) => store_code(e),
    }
}

fn join_code(e: &GroupError) -> i16 {
    match e {
        GroupError::TooManyGroups => codes::UNKNOWN_SERVER_ERROR,
        other => code(other),
    }
}

/// The Kafka error code for a failed offsets write.
fn store_code(e: &StoreError) -> i16 {
    match e {
        StoreError::Storage(StorageError::Closed) => codes::COORDINATOR_NOT_AVAILABLE,
        StoreError::Storage(s) => errors::for_storage(s),
        _ => codes::UNKNOWN_SERVER_ERROR,
    }
}

fn result_code(r: &Result<(), GroupError>) -> i16 {
    r.as_ref().err().map_or(codes::NONE, code)
}

// ---- Kafka requests to the coordinator's terms, and its outcomes back ----

pub(crate) fn join_request(version: i16, client_id: String, req: JoinGroupRequest) -> JoinRequest {
    JoinRequest {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id,
        protocol_type: req.protocol_type.to_string(),
        protocols: req.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version == 0 { 0 } else { req.rebalance_timeout_ms },
        member_id_required: version >= 4,
    }
}

pub(crate) fn join_response(version: i16, outcome: JoinOutcome) -> JoinGroupResponse {
    match outcome {
        JoinOutcome::Joined(j) => join_encode(
            version,
            codes::NONE,
            j.generation,
            j.protocol_type.as_deref(),
            j.protocol.as_deref(),
            &j.leader,
            &j.member_id,
            &j.members,
        ),
        JoinOutcome::MemberIdRequired(id) => join_error(version, codes::MEMBER_ID_REQUIRED, &id),
        JoinOutcome::Failed { error, member_id } => join_error(version, join_code(&error), &member_id),
    }
}

#[allow(clippy::too_many_arguments)] // JoinGroupResponse's fields, each version-dependent
fn join_encode(
    version: i16,
    error: i16,
    generation: i32,
    protocol_type: Option<&str>,
    protocol: Option<&str>,
    leader: &str,
    member_id: &str,
    members: &[JoinedMember],
) -> JoinGroupResponse {
    let protocol_name = match protocol {
        None if version >= 7 => None,
        p => Some(sb(p.unwrap_or(""))),
    };
    JoinGroupResponse::default()
        .with_error_code(error)
        .with_generation_id(generation)
        .with_protocol_type(if version >= 7 { protocol_type.map(sb) } else { None })
        .with_protocol_name(protocol_name)
        .with_leader(sb(leader))
        .with_member_id(sb(member_id))
        .with_members(
            members
                .iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(sb(&m.id))
                        .with_group_instance_id(if version >= 5 { m.instance_id.as_deref().map(sb) } else { None })
                        .with_metadata(m.metadata.clone())
                })
                .collect(),
        )
}

fn join_error(version: i16, error: i16, member_id: &str) -> JoinGroupResponse {
    join_encode(version, error, -1, None, None, "", member_id, &[])
}

pub(crate) fn sync_request(version: i16, req: SyncGroupRequest) -> SyncRequest {
    // Before v5 a member does not say which protocol it believes in.
    let (protocol_type, protocol) = if version >= 5 {
        (req.protocol_type.map(|s| s.to_string()), req.protocol_name.map(|s| s.to_string()))
    } else {
        (None, None)
    };
    SyncRequest {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.map(|s| s.to_string()),
        generation: req.generation_id,
        protocol_type,
        protocol,
        assignments: req.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect(),
    }
}

pub(crate) fn sync_response(version: i16, outcome: SyncOutcome) -> SyncGroupResponse {
    let (error, protocol_type, protocol, assignment) = match outcome {
        Ok(s) => (codes::NONE, s.protocol_type, s.protocol, s.assignment),
        Err(e) => (code(&e), None, None, Bytes::new()),
    };
    let mut r = SyncGroupResponse::default().with_error_code(error).with_assignment(assignment);
    if version >= 5 {
        r.protocol_type = protocol_type.as_deref().map(sb);
        r.protocol_name = protocol.as_deref().map(sb);
    }
    r
}

pub(crate) fn heartbeat_request(req: &HeartbeatRequest) -> Heartbeat {
    Heartbeat {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        generation: req.generation_id,
    }
}

pub(crate) fn leave_request(version: i16, req: &LeaveGroupRequest) -> LeaveRequest {
    // From v3 a request names several members (by member or instance id).
    let members = if version >= 3 {
        req.members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember { member_id: req.member_id.to_string(), instance_id: None }]
    };
    LeaveRequest { group_id: req.group_id.to_string(), members }
}

/// The response's top-level error and its per-member results (v3+).
pub(crate) fn leave_response(version: i16, outcome: Result<Vec<MemberLeft>, GroupError>) -> (i16, Vec<MemberResponse>) {
    let left = match outcome {
        Ok(left) => left,
        Err(e) => return (code(&e), Vec::new()),
    };
    let members: Vec<MemberResponse> = left
        .iter()
        .map(|m| {
            MemberResponse::default()
                .with_member_id(sb(&m.member_id))
                .with_group_instance_id(m.instance_id.as_deref().map(sb))
                .with_error_code(result_code(&m.result))
        })
        .collect();
    // Before v3 the one member's result is the request's.
    let top = if version >= 3 { codes::NONE } else { members.first().map_or(codes::NONE, |m| m.error_code) };
    (top, members)
}

pub(crate) fn commit_request(req: &OffsetCommitRequest) -> CommitRequest {
    CommitRequest {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        generation: req.generation_id_or_member_epoch,
        topics: req
            .topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| CommitPartition {
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                    })
                    .collect();
                (t.name.to_string(), partitions)
            })
            .collect(),
    }
}

/// Per topic, per partition error codes of a commit.
pub(crate) fn commit_codes(outcome: CommitOutcome) -> Vec<(String, Vec<(i32, i16)>)> {
    outcome
        .into_iter()
        .map(|(t, parts)| (t, parts.into_iter().map(|(p, r)| (p, r.err().map_or(codes::NONE, |e| code(&e)))).collect()))
        .collect()
}

pub(crate) fn described_group(
    version: i16,
    group: &str,
    outcome: Result<GroupDescription, GroupError>,
) -> DescribedGroup {
    let base = DescribedGroup::default().with_group_id(GroupId(sb(group)));
    let d = match outcome {
        Ok(d) => d,
        Err(e) => return base.with_error_code(code(&e)),
    };
    let members = d
        .members
        .into_iter()
        .map(|m| {
            DescribedGroupMember::default()
                .with_member_id(sb(&m.id))
                .with_group_instance_id(if version >= 4 { m.instance_id.as_deref().map(sb) } else { None })
                .with_client_id(sb(&m.client_id))
                .with_client_host(sb(""))
                .with_member_metadata(m.metadata)
                .with_member_assignment(m.assignment)
        })
        .collect();
    base.with_group_state(sb(d.state))
        .with_protocol_type(sb(&d.protocol_type))
        .with_protocol_data(sb(&d.protocol))
        .with_members(members)
}

// ---- the APIs ----

pub async fn find_coordinator(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: FindCoordinatorRequest = decode_body(ctx, body)?;
    let (host, port) = shard.advertised.borrow().clone();
    // Key type 0: a group; 1: a transactional id. ringmq has no
    // transactions, but it names itself coordinator for them so that a
    // transactional client goes on to InitProducerId and gets its clear,
    // fatal TRANSACTIONAL_ID_AUTHORIZATION_FAILED there; COORDINATOR_NOT_AVAILABLE
    // would make it retry until its transaction timeout.
    let error = if matches!(req.key_type, 0 | 1) { codes::NONE } else { codes::INVALID_REQUEST };
    count(shard, error);
    let (node, host, port) =
        if error == codes::NONE { (NODE_ID, host, i32::from(port)) } else { (-1, String::new(), -1) };
    let mut resp = FindCoordinatorResponse::default();
    if ctx.api_version >= 4 {
        resp.coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| {
                Coordinator::default()
                    .with_key(k.clone())
                    .with_node_id(BrokerId(node))
                    .with_host(sb(&host))
                    .with_port(port)
                    .with_error_code(error)
            })
            .collect();
    } else {
        resp.error_code = error;
        resp.node_id = BrokerId(node);
        resp.host = sb(&host);
        resp.port = port;
    }
    encode_response(ctx, &resp)
}

pub async fn join_group(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: JoinGroupRequest = decode_body(ctx, body)?;
    let client_id = ctx.client_id.clone().unwrap_or_default();
    let req = join_request(ctx.api_version, client_id, req);
    let (group, member_id) = (req.group_id.clone(), req.member_id.clone());
    let outcome = match call(shard, &group, GroupCall::Join(req)).await {
        Some(GroupAnswer::Join(outcome)) => outcome,
        _ => JoinOutcome::Failed { error: GroupError::NotAvailable, member_id },
    };
    let resp = join_response(ctx.api_version, outcome);
    // MEMBER_ID_REQUIRED is the normal first step of a join, not an error worth counting.
    if resp.error_code != codes::MEMBER_ID_REQUIRED {
        count(shard, resp.error_code);
    }
    encode_response(ctx, &resp)
}

pub async fn sync_group(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: SyncGroupRequest = decode_body(ctx, body)?;
    let req = sync_request(ctx.api_version, req);
    let group = req.group_id.clone();
    let outcome = match call(shard, &group, GroupCall::Sync(req)).await {
        Some(GroupAnswer::Sync(outcome)) => outcome,
        _ => Err(GroupError::NotAvailable),
    };
    let resp = sync_response(ctx.api_version, outcome);
    count(shard, resp.error_code);
    encode_response(ctx, &resp)
}

pub async fn heartbeat(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: HeartbeatRequest = decode_body(ctx, body)?;
    let hb = heartbeat_request(&req);
    let error = match call(shard, &hb.group_id.clone(), GroupCall::Heartbeat(hb)).await {
        Some(GroupAnswer::Heartbeat(result)) => result_code(&result),
        _ => codes::COORDINATOR_NOT_AVAILABLE,
    };
    encode_response(ctx, &HeartbeatResponse::default().with_error_code(count(shard, error)))
}

pub async fn leave_group(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: LeaveGroupRequest = decode_body(ctx, body)?;
    let leave = leave_request(ctx.api_version, &req);
    let outcome = match call(shard, &leave.group_id.clone(), GroupCall::Leave(leave)).await {
        Some(GroupAnswer::Leave(outcome)) => outcome,
        _ => Err(GroupError::NotAvailable),
    };
    let (error, members) = leave_response(ctx.api_version, outcome);
    let mut resp = LeaveGroupResponse::default().with_error_code(count(shard, error));
    if ctx.api_version >= 3 {
        resp.members = members;
    }
    encode_response(ctx, &resp)
}

pub async fn offset_commit(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: OffsetCommitRequest = decode_body(ctx, body)?;
    let commit = commit_request(&req);
    let fallback: Vec<(String, Vec<(i32, i16)>)> = commit
        .topics
        .iter()
        .map(|(t, parts)| (t.clone(), parts.iter().map(|p| (p.partition, codes::COORDINATOR_NOT_AVAILABLE)).collect()))
        .collect();
    let results = match call(shard, &commit.group_id.clone(), GroupCall::Commit(commit)).await {
        Some(GroupAnswer::Commit(outcome)) => commit_codes(outcome),
        _ => fallback,
    };
    let topics = results
        .into_iter()
        .map(|(t, parts)| {
            OffsetCommitResponseTopic::default().with_name(TopicName(sb(&t))).with_partitions(
                parts
                    .into_iter()
                    .map(|(p, code)| {
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p)
                            .with_error_code(count(shard, code))
                    })
                    .collect(),
            )
        })
        .collect();
    encode_response(ctx, &OffsetCommitResponse::default().with_topics(topics))
}

/// (topic, partitions) asked in an OffsetFetch; None: every committed offset.
type Asked = Option<Vec<(String, Vec<i32>)>>;

async fn fetch_group(shard: &Rc<Shard>, group: &str, topics: Asked) -> (i16, Vec<(String, Vec<FetchedOffset>)>) {
    match call(shard, group, GroupCall::Fetch { group: group.to_string(), topics }).await {
        Some(GroupAnswer::Fetch(Ok(topics))) => (count(shard, codes::NONE), topics),
        Some(GroupAnswer::Fetch(Err(e))) => (count(shard, code(&e)), Vec::new()),
        _ => (count(shard, codes::COORDINATOR_NOT_AVAILABLE), Vec::new()),
    }
}

pub async fn offset_fetch(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: OffsetFetchRequest = decode_body(ctx, body)?;
    let resp = if ctx.api_version >= 8 {
        offset_fetch_groups(shard, req).await
    } else {
        offset_fetch_one_group(shard, ctx.api_version, req).await
    };
    encode_response(ctx, &resp)
}

/// OffsetFetch v8+: several groups in one request.
async fn offset_fetch_groups(shard: &Rc<Shard>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let mut resp = OffsetFetchResponse::default();
    for g in req.groups {
        let group = g.group_id.to_string();
        let topics = g.topics.map(|ts| ts.into_iter().map(|t| (t.name.to_string(), t.partition_indexes)).collect());
        let (error, fetched) = fetch_group(shard, &group, topics).await;
        let topics = fetched
            .into_iter()
            .map(|(t, parts)| {
                OffsetFetchResponseTopics::default().with_name(TopicName(sb(&t))).with_partitions(
                    parts
                        .into_iter()
                        .map(|f| {
                            OffsetFetchResponsePartitions::default()
                                .with_partition_index(f.partition)
                                .with_committed_offset(f.offset)
                                .with_committed_leader_epoch(f.leader_epoch)
                                .with_metadata(f.metadata.as_deref().map(sb))
                        })
                        .collect(),
                )
            })
            .collect();
        resp.groups.push(
            OffsetFetchResponseGroup::default().with_group_id(g.group_id).with_error_code(error).with_topics(topics),
        );
    }
    resp
}

/// OffsetFetch v1-7: one group.
async fn offset_fetch_one_group(shard: &Rc<Shard>, v: i16, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let epoch = |e: i32| if v >= 5 { e } else { -1 };
    let group = req.group_id.to_string();
    let asked: Asked = req.topics.map(|ts| ts.into_iter().map(|t| (t.name.to_string(), t.partition_indexes)).collect());
    let (error, fetched) = fetch_group(shard, &group, asked.clone()).await;
    // On a group error, v1 has only per-partition codes to say it.
    let fetched = if error != codes::NONE { unknown_offsets(asked) } else { fetched };
    let mut resp = OffsetFetchResponse::default();
    resp.topics = fetched
        .into_iter()
        .map(|(t, parts)| {
            OffsetFetchResponseTopic::default().with_name(TopicName(sb(&t))).with_partitions(
                parts
                    .into_iter()
                    .map(|f| {
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(f.partition)
                            .with_committed_offset(f.offset)
                            .with_committed_leader_epoch(epoch(f.leader_epoch))
                            .with_metadata(f.metadata.as_deref().map(sb))
                            .with_error_code(if v < 2 { error } else { codes::NONE })
                    })
                    .collect(),
            )
        })
        .collect();
    if v >= 2 {
        resp.error_code = error;
    }
    resp
}

/// "No committed offset" for every partition asked.
fn unknown_offsets(asked: Asked) -> Vec<(String, Vec<FetchedOffset>)> {
    asked
        .unwrap_or_default()
        .into_iter()
        .map(|(t, ps)| {
            let none = |p| FetchedOffset { partition: p, offset: -1, leader_epoch: -1, metadata: Some(String::new()) };
            (t, ps.into_iter().map(none).collect())
        })
        .collect()
}

pub async fn describe_groups(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: DescribeGroupsRequest = decode_body(ctx, body)?;
    let mut out = Vec::with_capacity(req.groups.len());
    for g in req.groups {
        let group = g.to_string();
        let described = match call(shard, &group, GroupCall::Describe { group: group.clone() }).await {
            Some(GroupAnswer::Describe(outcome)) => described_group(ctx.api_version, &group, outcome),
            _ => DescribedGroup::default().with_group_id(g).with_error_code(codes::COORDINATOR_NOT_AVAILABLE),
        };
        count(shard, described.error_code);
        out.push(described);
    }
    encode_response(ctx, &DescribeGroupsResponse::default().with_groups(out))
}

pub async fn list_groups(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: ListGroupsRequest = decode_body(ctx, body)?;
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_string()).collect();
    let mut error = codes::NONE;
    let mut listed = Vec::new();
    for target in 0..shard.count {
        match shard.call_group(target, GroupCall::List { states: states.clone() }).await {
            Some(GroupAnswer::List(Ok(groups))) => listed.extend(groups),
            Some(GroupAnswer::List(Err(e))) => error = code(&e),
            _ => error = codes::COORDINATOR_NOT_AVAILABLE,
        }
    }
    let groups = listed
        .into_iter()
        .map(|l| {
            let g = ListedGroup::default().with_group_id(GroupId(sb(&l.id))).with_protocol_type(sb(&l.protocol_type));
            if ctx.api_version >= 4 {
                g.with_group_state(sb(l.state))
            } else {
                g
            }
        })
        .collect();
    encode_response(ctx, &ListGroupsResponse::default().with_error_code(count(shard, error)).with_groups(groups))
}

pub async fn delete_groups(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: DeleteGroupsRequest = decode_body(ctx, body)?;
    let mut results = Vec::with_capacity(req.groups_names.len());
    for g in req.groups_names {
        let group = g.to_string();
        let error = match call(shard, &group, GroupCall::Delete { group: group.clone() }).await {
            Some(GroupAnswer::Delete(result)) => result_code(&result),
            _ => codes::COORDINATOR_NOT_AVAILABLE,
        };
        results.push(DeletableGroupResult::default().with_group_id(g).with_error_code(count(shard, error)));
    }
    encode_response(ctx, &DeleteGroupsResponse::default().with_results(results))
}

/// The coordinator driven with Kafka requests and answering Kafka
/// responses, on the caller's thread, as the coordinator's unit tests
/// (`groups::tests`) drive it: the same conversions as the APIs above,
/// without the routing between shards.
#[cfg(test)]
pub(crate) mod coordinator_calls {
    use futures_channel::oneshot;

    use super::*;
    use crate::groups::Coordinator;

    pub(crate) trait KafkaCalls {
        /// A join answered at once (Err), or a receiver of its answer.
        #[allow(clippy::result_large_err)] // the shape the unit tests take; test-only
        fn join_start(
            &self,
            version: i16,
            client_id: String,
            req: JoinGroupRequest,
        ) -> Result<oneshot::Receiver<JoinGroupResponse>, JoinGroupResponse>;
        async fn sync(&self, version: i16, req: SyncGroupRequest) -> SyncGroupResponse;
        fn heartbeat(&self, req: HeartbeatRequest) -> i16;
        fn leave(&self, version: i16, req: LeaveGroupRequest) -> (i16, Vec<MemberResponse>);
        fn describe(&self, version: i16, group: &str) -> DescribedGroup;
        async fn commit(&self, version: i16, req: OffsetCommitRequest) -> Vec<(String, Vec<(i32, i16)>)>;
    }

    impl KafkaCalls for Coordinator {
        fn join_start(
            &self,
            version: i16,
            client_id: String,
            req: JoinGroupRequest,
        ) -> Result<oneshot::Receiver<JoinGroupResponse>, JoinGroupResponse> {
            let (tx, rx) = oneshot::channel();
            let reply = Box::new(move |outcome| {
                let _ = tx.send(join_response(version, outcome));
            });
            match self.begin_join(join_request(version, client_id, req), reply) {
                Some(outcome) => Err(join_response(version, outcome)),
                None => Ok(rx),
            }
        }

        async fn sync(&self, version: i16, req: SyncGroupRequest) -> SyncGroupResponse {
            sync_response(version, self.sync_group(sync_request(version, req)).await)
        }

        fn heartbeat(&self, req: HeartbeatRequest) -> i16 {
            result_code(&self.heartbeat_member(&heartbeat_request(&req)))
        }

        fn leave(&self, version: i16, req: LeaveGroupRequest) -> (i16, Vec<MemberResponse>) {
            leave_response(version, self.leave_group(&leave_request(version, &req)))
        }

        fn describe(&self, version: i16, group: &str) -> DescribedGroup {
            described_group(version, group, self.describe_group(group))
        }

        async fn commit(&self, _version: i16, req: OffsetCommitRequest) -> Vec<(String, Vec<(i32, i16)>)> {
            commit_codes(self.commit_offsets(commit_request(&req)).await)
        }
    }
}
