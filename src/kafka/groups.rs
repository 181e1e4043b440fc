//! Consumer group APIs (classic protocol): FindCoordinator v0-4, JoinGroup
//! v0-9, SyncGroup v0-5, Heartbeat v0-4, LeaveGroup v0-5, OffsetCommit v2-8,
//! OffsetFetch v1-8, DescribeGroups v0-5, ListGroups v0-4, DeleteGroups
//! v0-2. Each request is decoded where the connection landed, its per-group
//! work runs on the group's shard (`groups::group_shard`, over the mesh when
//! that is another shard) and the response is encoded here, for the version
//! the client asked.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{codes, decode_body, encode_response, Reply, RequestContext, RequestError, NODE_ID};
use crate::groups::{self, FetchedOffset, GroupAnswer, GroupCall};
use crate::runtime::shard::Shard;

fn sb(s: &str) -> StrBytes {
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
    let group = req.group_id.to_string();
    let member = req.member_id.to_string();
    let client_id = ctx.client_id.clone().unwrap_or_default();
    let resp = match call(shard, &group, GroupCall::Join { version: ctx.api_version, client_id, req }).await {
        Some(GroupAnswer::Join(r)) => r,
        _ => groups::join_error(ctx.api_version, codes::COORDINATOR_NOT_AVAILABLE, &member),
    };
    // MEMBER_ID_REQUIRED is the normal first step of a join, not an error worth counting.
    if resp.error_code != codes::MEMBER_ID_REQUIRED {
        count(shard, resp.error_code);
    }
    encode_response(ctx, &resp)
}

pub async fn sync_group(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: SyncGroupRequest = decode_body(ctx, body)?;
    let group = req.group_id.to_string();
    let resp = match call(shard, &group, GroupCall::Sync { version: ctx.api_version, req }).await {
        Some(GroupAnswer::Sync(r)) => r,
        _ => groups::sync_response(ctx.api_version, codes::COORDINATOR_NOT_AVAILABLE, None, None, Bytes::new()),
    };
    count(shard, resp.error_code);
    encode_response(ctx, &resp)
}

pub async fn heartbeat(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: HeartbeatRequest = decode_body(ctx, body)?;
    let group = req.group_id.to_string();
    let code = match call(shard, &group, GroupCall::Heartbeat { req }).await {
        Some(GroupAnswer::Heartbeat(c)) => c,
        _ => codes::COORDINATOR_NOT_AVAILABLE,
    };
    encode_response(ctx, &HeartbeatResponse::default().with_error_code(count(shard, code)))
}

pub async fn leave_group(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: LeaveGroupRequest = decode_body(ctx, body)?;
    let group = req.group_id.to_string();
    let (code, members) = match call(shard, &group, GroupCall::Leave { version: ctx.api_version, req }).await {
        Some(GroupAnswer::Leave(c, m)) => (c, m),
        _ => (codes::COORDINATOR_NOT_AVAILABLE, Vec::new()),
    };
    let mut resp = LeaveGroupResponse::default().with_error_code(count(shard, code));
    if ctx.api_version >= 3 {
        resp.members = members;
    }
    encode_response(ctx, &resp)
}

pub async fn offset_commit(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: OffsetCommitRequest = decode_body(ctx, body)?;
    let group = req.group_id.to_string();
    let fallback: Vec<(String, Vec<(i32, i16)>)> = req
        .topics
        .iter()
        .map(|t| {
            (
                t.name.to_string(),
                t.partitions.iter().map(|p| (p.partition_index, codes::COORDINATOR_NOT_AVAILABLE)).collect(),
            )
        })
        .collect();
    let results = match call(shard, &group, GroupCall::Commit { version: ctx.api_version, req }).await {
        Some(GroupAnswer::Commit(r)) => r,
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

async fn fetch_group(
    shard: &Rc<Shard>,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> (i16, Vec<(String, Vec<FetchedOffset>)>) {
    match call(shard, group, GroupCall::Fetch { group: group.to_string(), topics }).await {
        Some(GroupAnswer::Fetch { error, topics }) => (count(shard, error), topics),
        _ => (count(shard, codes::COORDINATOR_NOT_AVAILABLE), Vec::new()),
    }
}

pub async fn offset_fetch(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: OffsetFetchRequest = decode_body(ctx, body)?;
    let v = ctx.api_version;
    let epoch = |e: i32| if v >= 5 { e } else { -1 };
    let mut resp = OffsetFetchResponse::default();
    if v >= 8 {
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
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_error_code(error)
                    .with_topics(topics),
            );
        }
    } else {
        let group = req.group_id.to_string();
        let asked: Option<Vec<(String, Vec<i32>)>> =
            req.topics.map(|ts| ts.into_iter().map(|t| (t.name.to_string(), t.partition_indexes)).collect());
        let (error, fetched) = fetch_group(shard, &group, asked.clone()).await;
        // On a group error, v1 has only per-partition codes to say it.
        let fetched = if error != codes::NONE {
            asked
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| {
                    (
                        t,
                        ps.into_iter()
                            .map(|p| FetchedOffset {
                                partition: p,
                                offset: -1,
                                leader_epoch: -1,
                                metadata: Some(String::new()),
                            })
                            .collect(),
                    )
                })
                .collect()
        } else {
            fetched
        };
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
    }
    encode_response(ctx, &resp)
}

pub async fn describe_groups(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: DescribeGroupsRequest = decode_body(ctx, body)?;
    let mut out = Vec::with_capacity(req.groups.len());
    for g in req.groups {
        let group = g.to_string();
        let described =
            match call(shard, &group, GroupCall::Describe { version: ctx.api_version, group: group.clone() }).await {
                Some(GroupAnswer::Describe(d)) => d,
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
            Some(GroupAnswer::List(code, groups)) => {
                if code != codes::NONE {
                    error = code;
                }
                listed.extend(groups);
            }
            _ => error = codes::COORDINATOR_NOT_AVAILABLE,
        }
    }
    let groups = listed
        .into_iter()
        .map(|(id, ptype, state)| {
            let g = ListedGroup::default().with_group_id(GroupId(sb(&id))).with_protocol_type(sb(&ptype));
            if ctx.api_version >= 4 {
                g.with_group_state(sb(state))
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
        let code = match call(shard, &group, GroupCall::Delete { group: group.clone() }).await {
            Some(GroupAnswer::Delete(c)) => c,
            _ => codes::COORDINATOR_NOT_AVAILABLE,
        };
        results.push(DeletableGroupResult::default().with_group_id(g).with_error_code(count(shard, code)));
    }
    encode_response(ctx, &DeleteGroupsResponse::default().with_results(results))
}
