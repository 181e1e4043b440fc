//! The group commands' logic: list (ListGroups), describe (DescribeGroups,
//! OffsetFetch, ListOffsets: members, committed offsets, end offsets, lag),
//! reset-offsets (a plan from ListOffsets, then OffsetCommit as a client
//! outside the group, refused while the group has members) and delete
//! (DeleteGroups). Each returns a plain struct that `output` renders.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest,
    OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use serde::Serialize;

use super::client::Client;
use super::error::{code_name, refusal, AdminError, Subject};
use super::topic::{self, Listed, EARLIEST, LATEST};

const UNKNOWN_MEMBER_ID: i16 = 25;
const ILLEGAL_GENERATION: i16 = 22;
const REBALANCE_IN_PROGRESS: i16 = 27;
/// States in which a group has no members, so its offsets may be reset.
const RESETTABLE_STATES: &[&str] = &["Empty", "Dead"];

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

#[derive(Clone, Debug, Serialize)]
pub struct GroupSummary {
    pub group: String,
    /// Known from ListGroups v4; None from older brokers.
    pub state: Option<String>,
    pub protocol_type: String,
}

/// Every group the broker coordinates, by id.
pub fn list(client: &mut Client) -> Result<Vec<GroupSummary>, AdminError> {
    let (response, version) = client.send(|_| ListGroupsRequest::default())?;
    if response.error_code != 0 {
        let message = format!("ListGroups failed: {}", code_name(response.error_code));
        return Err(AdminError::Broker { api: "ListGroups", code: response.error_code, message });
    }
    let mut groups: Vec<GroupSummary> = response
        .groups
        .into_iter()
        .map(|g| GroupSummary {
            group: g.group_id.to_string(),
            state: (version >= 4).then(|| g.group_state.to_string()),
            protocol_type: g.protocol_type.to_string(),
        })
        .collect();
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    Ok(groups)
}

/// DescribeGroups of one group; a group the broker does not know is `Dead`.
pub fn describe_group(client: &mut Client, group: &str) -> Result<DescribedGroup, AdminError> {
    let (response, _) = client.send(|_| DescribeGroupsRequest::default().with_groups(vec![GroupId(sb(group))]))?;
    let described =
        response.groups.into_iter().find(|g| g.group_id.as_str() == group).ok_or_else(|| AdminError::Protocol {
            addr: client.addr().to_string(),
            api: "DescribeGroups",
            detail: format!("no result for `{group}`"),
        })?;
    if described.error_code != 0 {
        let message = described.error_message.as_deref().map(|m| m.to_string());
        return Err(refusal("DescribeGroups", described.error_code, Subject::Group(group), message.as_deref()));
    }
    Ok(described)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TopicPartitions {
    pub topic: String,
    pub partitions: Vec<i32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Decoded from the consumer protocol; empty for other protocols.
    pub assignment: Vec<TopicPartitions>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// None when the group has committed nothing for the partition.
    pub committed_offset: Option<i64>,
    /// None when the partition no longer exists.
    pub end_offset: Option<i64>,
    pub lag: Option<i64>,
    /// The member the partition is assigned to, if any.
    pub member_id: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct GroupDescription {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    /// The assignor the members agreed on (e.g. `range`), while Stable.
    pub protocol: String,
    pub members: Vec<Member>,
    pub partitions: Vec<PartitionLag>,
    /// Sum of the known lags.
    pub total_lag: i64,
}

/// A group's state, members with their assignments, and per partition its
/// committed offset, end offset and lag.
pub fn describe(client: &mut Client, group: &str) -> Result<GroupDescription, AdminError> {
    let described = describe_group(client, group)?;
    if described.group_state.as_str() == "Dead" {
        return Err(AdminError::Refused(format!("group `{group}` does not exist")));
    }
    let consumer = described.protocol_type.as_str() == "consumer";
    let members: Vec<Member> = described
        .members
        .iter()
        .map(|m| Member {
            member_id: m.member_id.to_string(),
            group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
            client_id: m.client_id.to_string(),
            client_host: m.client_host.to_string(),
            assignment: if consumer { decode_assignment(&m.member_assignment) } else { Vec::new() },
        })
        .collect();
    let committed = offset_fetch(client, group, None)?;
    let partitions = lag_rows(client, &members, &committed)?;
    let total_lag = partitions.iter().filter_map(|p| p.lag).sum();
    Ok(GroupDescription {
        group: group.to_string(),
        state: described.group_state.to_string(),
        protocol_type: described.protocol_type.to_string(),
        protocol: described.protocol_data.to_string(),
        members,
        partitions,
        total_lag,
    })
}

/// One row per partition the group has an offset for or a member assigned.
fn lag_rows(
    client: &mut Client,
    members: &[Member],
    committed: &BTreeMap<(String, i32), i64>,
) -> Result<Vec<PartitionLag>, AdminError> {
    let mut owner: BTreeMap<(String, i32), &str> = BTreeMap::new();
    for m in members {
        for tp in &m.assignment {
            for &p in &tp.partitions {
                owner.insert((tp.topic.clone(), p), &m.member_id);
            }
        }
    }
    let keys: BTreeSet<(String, i32)> = committed.keys().chain(owner.keys()).cloned().collect();
    let mut wanted: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in &keys {
        wanted.entry(t.clone()).or_default().push(*p);
    }
    let ends = topic::list_offsets(client, &wanted, LATEST)?;
    Ok(keys
        .into_iter()
        .map(|key| {
            let committed_offset = committed.get(&key).copied();
            let end_offset = ends.get(&key).filter(|l| l.error_code == 0).map(|l| l.offset);
            let lag = committed_offset.zip(end_offset).map(|(c, e)| (e - c).max(0));
            let member_id = owner.get(&key).map(|m| m.to_string());
            PartitionLag { topic: key.0, partition: key.1, committed_offset, end_offset, lag, member_id }
        })
        .collect())
}

/// A consumer-protocol assignment: an i16 version, then the partitions.
/// Newer versions only add fields at the end, so they are read as v3.
fn decode_assignment(bytes: &Bytes) -> Vec<TopicPartitions> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16().min(3);
    match ConsumerProtocolAssignment::decode(&mut buf, version) {
        Ok(a) => a
            .assigned_partitions
            .into_iter()
            .map(|tp| {
                let mut partitions = tp.partitions;
                partitions.sort_unstable();
                TopicPartitions { topic: tp.topic.to_string(), partitions }
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A group's committed offsets (only partitions with one), for the given
/// partitions or, with None, all of them.
pub fn offset_fetch(
    client: &mut Client,
    group: &str,
    topics: Option<&BTreeMap<String, Vec<i32>>>,
) -> Result<BTreeMap<(String, i32), i64>, AdminError> {
    let (response, version) = client.send(|v| build_offset_fetch(v, group, topics))?;
    // v8 answers per group; before, the answer is the one group's.
    let (error_code, rows): (i16, Vec<(String, i32, i64, i16)>) = if version >= 8 {
        let Some(g) = response.groups.into_iter().next() else {
            return Err(AdminError::Protocol {
                addr: client.addr().to_string(),
                api: "OffsetFetch",
                detail: format!("no result for `{group}`"),
            });
        };
        let rows = g.topics.into_iter().flat_map(|t| {
            let name = t.name.to_string();
            t.partitions.into_iter().map(move |p| (name.clone(), p.partition_index, p.committed_offset, p.error_code))
        });
        (g.error_code, rows.collect())
    } else {
        let rows = response.topics.into_iter().flat_map(|t| {
            let name = t.name.to_string();
            t.partitions.into_iter().map(move |p| (name.clone(), p.partition_index, p.committed_offset, p.error_code))
        });
        (response.error_code, rows.collect())
    };
    if error_code != 0 {
        return Err(refusal("OffsetFetch", error_code, Subject::Group(group), None));
    }
    let mut out = BTreeMap::new();
    for (t, p, offset, code) in rows {
        if code != 0 {
            let detail = format!("topic `{t}` partition {p}");
            return Err(refusal("OffsetFetch", code, Subject::Group(group), Some(&detail)));
        }
        if offset >= 0 {
            out.insert((t, p), offset);
        }
    }
    Ok(out)
}

fn build_offset_fetch(version: i16, group: &str, topics: Option<&BTreeMap<String, Vec<i32>>>) -> OffsetFetchRequest {
    if version >= 8 {
        let topics = topics.map(|ts| {
            ts.iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopics::default().with_name(TopicName(sb(t))).with_partition_indexes(ps.clone())
                })
                .collect()
        });
        let g = OffsetFetchRequestGroup::default().with_group_id(GroupId(sb(group))).with_topics(topics);
        return OffsetFetchRequest::default().with_topics(Some(Vec::new())).with_groups(vec![g]);
    }
    let topics = topics.map(|ts| {
        ts.iter()
            .map(|(t, ps)| {
                OffsetFetchRequestTopic::default().with_name(TopicName(sb(t))).with_partition_indexes(ps.clone())
            })
            .collect()
    });
    OffsetFetchRequest::default().with_group_id(GroupId(sb(group))).with_topics(topics)
}

/// Where `reset-offsets` moves a group's offsets to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetTo {
    Earliest,
    Latest,
    /// This offset, clamped to each partition's start and end offsets.
    Offset(i64),
    /// The first record at or after this time (ms since the epoch); the end
    /// offset where no record is that recent.
    Timestamp(i64),
}

impl std::fmt::Display for ResetTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResetTo::Earliest => f.write_str("earliest"),
            ResetTo::Latest => f.write_str("latest"),
            ResetTo::Offset(o) => write!(f, "offset {o}"),
            ResetTo::Timestamp(ms) => write!(f, "datetime {}", super::time::format_rfc3339_ms(*ms)),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ResetEntry {
    pub partition: i32,
    /// None when the group had committed nothing for the partition.
    pub current_offset: Option<i64>,
    pub new_offset: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ResetPlan {
    pub group: String,
    pub topic: String,
    /// What was asked, e.g. `earliest` or `offset 5`.
    pub to: String,
    pub partitions: Vec<ResetEntry>,
    /// Whether the new offsets were committed (false: only planned).
    pub committed: bool,
}

/// Checks that the group has no members and works out each partition's new
/// offset; commits nothing.
pub fn plan_reset(
    client: &mut Client,
    group: &str,
    topic: &str,
    to: ResetTo,
    only: Option<&[i32]>,
) -> Result<ResetPlan, AdminError> {
    ensure_no_members(&describe_group(client, group)?, group)?;
    let partitions = chosen_partitions(&topic::partitions(client, topic)?, only, topic)?;
    let wanted = BTreeMap::from([(topic.to_string(), partitions.clone())]);
    let current = offset_fetch(client, group, Some(&wanted))?;
    let targets = target_offsets(client, &wanted, to)?;
    let mut entries = Vec::with_capacity(partitions.len());
    for p in partitions {
        let key = (topic.to_string(), p);
        let new_offset = *targets.get(&key).ok_or_else(|| {
            AdminError::Refused(format!("the broker gave no offset for partition {p} of topic `{topic}`"))
        })?;
        entries.push(ResetEntry { partition: p, current_offset: current.get(&key).copied(), new_offset });
    }
    Ok(ResetPlan {
        group: group.to_string(),
        topic: topic.to_string(),
        to: to.to_string(),
        partitions: entries,
        committed: false,
    })
}

fn ensure_no_members(described: &DescribedGroup, group: &str) -> Result<(), AdminError> {
    let state = described.group_state.as_str();
    if RESETTABLE_STATES.contains(&state) && described.members.is_empty() {
        return Ok(());
    }
    let n = described.members.len();
    Err(AdminError::Refused(match n {
        0 => format!("group `{group}` is {state}; wait until it is Empty before resetting offsets"),
        1 => format!("group `{group}` has 1 active member; stop it before resetting offsets"),
        _ => format!("group `{group}` has {n} active members; stop them before resetting offsets"),
    }))
}

/// The topic's partitions, or those of `only` after checking they exist.
fn chosen_partitions(all: &[i32], only: Option<&[i32]>, topic: &str) -> Result<Vec<i32>, AdminError> {
    let Some(only) = only else { return Ok(all.to_vec()) };
    let chosen: BTreeSet<i32> = only.iter().copied().collect();
    if let Some(p) = chosen.iter().find(|p| !all.contains(p)) {
        return Err(AdminError::Refused(format!("topic `{topic}` has no partition {p} (it has {})", all.len())));
    }
    Ok(chosen.into_iter().collect())
}

/// Each partition's new offset for `to`.
fn target_offsets(
    client: &mut Client,
    wanted: &BTreeMap<String, Vec<i32>>,
    to: ResetTo,
) -> Result<BTreeMap<(String, i32), i64>, AdminError> {
    let checked = |listed: BTreeMap<(String, i32), Listed>| -> Result<BTreeMap<(String, i32), i64>, AdminError> {
        listed
            .into_iter()
            .map(|((t, p), l)| {
                if l.error_code != 0 {
                    let detail = format!("partition {p}");
                    return Err(refusal("ListOffsets", l.error_code, Subject::Topic(&t), Some(&detail)));
                }
                Ok(((t, p), l.offset))
            })
            .collect()
    };
    match to {
        ResetTo::Earliest => checked(topic::list_offsets(client, wanted, EARLIEST)?),
        ResetTo::Latest => checked(topic::list_offsets(client, wanted, LATEST)?),
        ResetTo::Offset(o) => {
            let starts = checked(topic::list_offsets(client, wanted, EARLIEST)?)?;
            let ends = checked(topic::list_offsets(client, wanted, LATEST)?)?;
            Ok(starts.into_iter().filter_map(|(k, s)| ends.get(&k).map(|&e| (k, o.clamp(s, e.max(s))))).collect())
        }
        ResetTo::Timestamp(ms) => {
            let found = checked(topic::list_offsets(client, wanted, ms)?)?;
            let ends = checked(topic::list_offsets(client, wanted, LATEST)?)?;
            Ok(found
                .into_iter()
                .filter_map(|(k, o)| if o >= 0 { Some((k, o)) } else { ends.get(&k).map(|&e| (k, e)) })
                .collect())
        }
    }
}

/// Commits a plan's offsets as a client outside the group (generation -1,
/// no member id), which the broker refuses while the group has members.
pub fn apply_reset(client: &mut Client, mut plan: ResetPlan) -> Result<ResetPlan, AdminError> {
    let partitions: Vec<OffsetCommitRequestPartition> = plan
        .partitions
        .iter()
        .map(|e| {
            OffsetCommitRequestPartition::default()
                .with_partition_index(e.partition)
                .with_committed_offset(e.new_offset)
        })
        .collect();
    let topic = OffsetCommitRequestTopic::default().with_name(TopicName(sb(&plan.topic))).with_partitions(partitions);
    let (response, _) = client.send(|_| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(sb(&plan.group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::default())
            .with_topics(vec![topic])
    })?;
    let group = plan.group.as_str();
    let mut answered = BTreeSet::new();
    for t in &response.topics {
        for p in &t.partitions {
            answered.insert((t.name.as_str(), p.partition_index));
            match p.error_code {
                0 => {}
                UNKNOWN_MEMBER_ID | ILLEGAL_GENERATION | REBALANCE_IN_PROGRESS => {
                    return Err(AdminError::Refused(format!(
                        "group `{group}` has active members (the broker refused the commit: {}); stop them before \
                         resetting offsets",
                        code_name(p.error_code)
                    )))
                }
                code => {
                    let detail = format!("topic `{}` partition {}", t.name.as_str(), p.partition_index);
                    return Err(refusal("OffsetCommit", code, Subject::Group(group), Some(&detail)));
                }
            }
        }
    }
    // Committed means every planned partition was answered without an error.
    if let Some(e) = plan.partitions.iter().find(|e| !answered.contains(&(plan.topic.as_str(), e.partition))) {
        return Err(AdminError::Protocol {
            addr: client.addr().to_string(),
            api: "OffsetCommit",
            detail: format!("no result for partition {} of topic `{}`", e.partition, plan.topic),
        });
    }
    plan.committed = true;
    Ok(plan)
}

#[derive(Clone, Debug, Serialize)]
pub struct GroupDeleted {
    pub group: String,
}

/// DeleteGroups of one group (its committed offsets go with it).
pub fn delete(client: &mut Client, group: &str) -> Result<GroupDeleted, AdminError> {
    let (response, _) = client.send(|_| DeleteGroupsRequest::default().with_groups_names(vec![GroupId(sb(group))]))?;
    let result =
        response.results.into_iter().find(|r| r.group_id.as_str() == group).ok_or_else(|| AdminError::Protocol {
            addr: client.addr().to_string(),
            api: "DeleteGroups",
            detail: format!("no result for `{group}`"),
        })?;
    if result.error_code != 0 {
        return Err(refusal("DeleteGroups", result.error_code, Subject::Group(group), None));
    }
    Ok(GroupDeleted { group: group.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn offset_fetch_encodes_in_every_version_the_client_speaks() {
        let wanted = BTreeMap::from([("t".to_string(), vec![0, 2])]);
        for version in 2..=8 {
            for topics in [None, Some(&wanted)] {
                let mut buf = bytes::BytesMut::new();
                let req = build_offset_fetch(version, "g", topics);
                req.encode(&mut buf, version).unwrap_or_else(|e| panic!("v{version} {topics:?}: {e}"));
                let decoded = OffsetFetchRequest::decode(&mut buf.freeze(), version).expect("decode");
                let (group, asked) = if version >= 8 {
                    let g = &decoded.groups[0];
                    (g.group_id.to_string(), g.topics.as_ref().map(|ts| ts[0].partition_indexes.clone()))
                } else {
                    (decoded.group_id.to_string(), decoded.topics.as_ref().map(|ts| ts[0].partition_indexes.clone()))
                };
                assert_eq!(group, "g", "v{version}");
                assert_eq!(asked, topics.map(|_| vec![0, 2]), "v{version}");
            }
        }
    }

    #[test]
    fn consumer_assignments_decode_and_other_bytes_give_none() {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            kafka_protocol::messages::consumer_protocol_assignment::TopicPartition::default()
                .with_topic(TopicName(sb("t")))
                .with_partitions(vec![2, 0]),
        ]);
        let mut buf = bytes::BytesMut::new();
        bytes::BufMut::put_i16(&mut buf, 1);
        a.encode(&mut buf, 1).expect("encode");
        let expected = vec![TopicPartitions { topic: "t".into(), partitions: vec![0, 2] }];
        assert_eq!(decode_assignment(&buf.freeze()), expected);
        assert!(decode_assignment(&Bytes::from_static(b"\x00")).is_empty());
        assert!(decode_assignment(&Bytes::from_static(b"\x00\x00\xff\xff\xff\x7f")).is_empty());
    }
}
