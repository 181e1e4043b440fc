//! Topic setup and discovery over the lean client: Metadata (who leads each
//! partition, at which address), CreateTopics when the topic is missing, and
//! ListOffsets for the consumers' start positions.

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{CreateTopicsRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::Connection;
use crate::error::{code_name, ClientError, Error};

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const LEADER_NOT_AVAILABLE: i16 = 5;
const TOPIC_ALREADY_EXISTS: i16 = 36;

/// One partition of the topic and the address of the broker that leads it.
#[derive(Clone, Debug)]
pub struct PartitionInfo {
    pub index: i32,
    /// `HOST:PORT` of the leader as the cluster advertises it.
    pub leader_addr: String,
}

/// The topic as the cluster describes it.
#[derive(Clone, Debug)]
pub struct TopicLayout {
    pub topic: String,
    pub partitions: Vec<PartitionInfo>,
    /// True when the load generator created the topic.
    pub created: bool,
}

/// What to do about the topic before the run.
#[derive(Clone, Debug)]
pub struct TopicRequest {
    pub topic: String,
    pub partitions: i32,
    pub create: bool,
    pub timeout: Duration,
}

fn metadata(conn: &mut Connection, topic: &str) -> Result<MetadataResponse, ClientError> {
    let version = conn.versions.metadata;
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))))
        ]))
        .with_allow_auto_topic_creation(false);
    conn.call(&req, version)
}

enum TopicState {
    Missing,
    NotReady(String),
    Ready(Vec<PartitionInfo>),
}

fn topic_state(resp: &MetadataResponse, topic: &str) -> Result<TopicState, Error> {
    let brokers: BTreeMap<i32, String> =
        resp.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port))).collect();
    let Some(t) = resp.topics.iter().find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic)) else {
        return Ok(TopicState::Missing);
    };
    match t.error_code {
        0 => {}
        UNKNOWN_TOPIC_OR_PARTITION => return Ok(TopicState::Missing),
        LEADER_NOT_AVAILABLE => return Ok(TopicState::NotReady(code_name(t.error_code))),
        code => {
            return Err(Error::TopicNotReady {
                topic: topic.to_string(),
                detail: format!("metadata says {}", code_name(code)),
            })
        }
    }
    if t.partitions.is_empty() {
        return Ok(TopicState::NotReady("no partitions yet".to_string()));
    }
    let mut parts = Vec::with_capacity(t.partitions.len());
    for p in &t.partitions {
        if p.error_code != 0 || p.leader_id.0 < 0 {
            return Ok(TopicState::NotReady(format!(
                "partition {} has no leader ({})",
                p.partition_index,
                code_name(p.error_code)
            )));
        }
        let Some(addr) = brokers.get(&p.leader_id.0) else {
            return Err(Error::UnknownLeader {
                topic: topic.to_string(),
                partition: p.partition_index,
                node_id: p.leader_id.0,
            });
        };
        parts.push(PartitionInfo { index: p.partition_index, leader_addr: addr.clone() });
    }
    parts.sort_by_key(|p| p.index);
    Ok(TopicState::Ready(parts))
}

/// Finds the topic, creating it (CreateTopics with the requested partition
/// count) when missing and allowed, and waits until every partition has a leader.
pub fn prepare_topic(conn: &mut Connection, req: &TopicRequest) -> Result<TopicLayout, Error> {
    let mut created = false;
    let deadline = Instant::now() + req.timeout;
    loop {
        let resp = metadata(conn, &req.topic)?;
        match topic_state(&resp, &req.topic)? {
            TopicState::Ready(partitions) => return Ok(TopicLayout { topic: req.topic.clone(), partitions, created }),
            TopicState::Missing if !created => {
                if !req.create {
                    return Err(Error::UnknownTopic { topic: req.topic.clone(), bootstrap: conn.addr().to_string() });
                }
                create_topic(conn, req)?;
                created = true;
            }
            TopicState::Missing => {
                if Instant::now() >= deadline {
                    return Err(Error::TopicNotReady {
                        topic: req.topic.clone(),
                        detail: "created, but metadata still does not list it".to_string(),
                    });
                }
            }
            TopicState::NotReady(why) => {
                if Instant::now() >= deadline {
                    return Err(Error::TopicNotReady { topic: req.topic.clone(), detail: why });
                }
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn create_topic(conn: &mut Connection, req: &TopicRequest) -> Result<(), Error> {
    let version = conn.versions.create_topics;
    if version < 0 {
        return Err(Error::CreateTopic {
            topic: req.topic.clone(),
            detail: format!("broker {} does not offer CreateTopics", conn.addr()),
        });
    }
    // Replication factor -1 (the broker's default) exists from v4 on.
    let replication = if version >= 4 { -1 } else { 1 };
    let topic = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(req.topic.clone())))
        .with_num_partitions(req.partitions)
        .with_replication_factor(replication);
    let create = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(req.timeout.as_millis().min(i32::MAX as u128) as i32);
    let resp = conn.call(&create, version)?;
    for t in &resp.topics {
        match t.error_code {
            0 | TOPIC_ALREADY_EXISTS => {}
            code => {
                let msg = t.error_message.as_ref().map(|m| format!(": {m}")).unwrap_or_default();
                return Err(Error::CreateTopic {
                    topic: req.topic.clone(),
                    detail: format!("{}{msg}", code_name(code)),
                });
            }
        }
    }
    Ok(())
}

/// The latest offset (ListOffsets timestamp -1) of each given partition.
pub fn latest_offsets(conn: &mut Connection, topic: &str, partitions: &[i32]) -> Result<BTreeMap<i32, i64>, Error> {
    let version = conn.versions.list_offsets;
    let req = ListOffsetsRequest::default().with_replica_id((-1).into()).with_topics(vec![ListOffsetsTopic::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partitions(
            partitions
                .iter()
                .map(|&p| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(-1))
                .collect(),
        )]);
    let resp = conn.call(&req, version)?;
    let mut out = BTreeMap::new();
    for t in &resp.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                return Err(Error::Fetch {
                    topic: topic.to_string(),
                    partition: p.partition_index,
                    detail: format!("ListOffsets (latest) failed: {}", code_name(p.error_code)),
                });
            }
            out.insert(p.partition_index, p.offset);
        }
    }
    for p in partitions {
        if !out.contains_key(p) {
            return Err(Error::Fetch {
                topic: topic.to_string(),
                partition: *p,
                detail: "ListOffsets response left the partition out".to_string(),
            });
        }
    }
    Ok(out)
}
