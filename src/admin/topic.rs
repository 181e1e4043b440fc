//! The topic commands' logic: create (CreateTopics), list (Metadata),
//! describe (Metadata, ListOffsets earliest and latest, DescribeConfigs),
//! alter-config (IncrementalAlterConfigs) and delete (DeleteTopics). Each
//! returns a plain struct that `output` renders; the offset and partition
//! lookups are shared with the group commands.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest,
    ListOffsetsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use super::client::Client;
use super::error::{refusal, AdminError, Subject};

/// ListOffsets' special timestamps.
pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;
const RESOURCE_TOPIC: i8 = 2;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
/// How long the broker may take to create or delete a topic.
const OPERATION_TIMEOUT_MS: i32 = 30_000;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn topic_name(s: &str) -> TopicName {
    TopicName(sb(s))
}

/// A topic id for people: None for the all-zero id of brokers without ids.
fn topic_id(id: uuid::Uuid) -> Option<String> {
    (!id.is_nil()).then(|| id.to_string())
}

#[derive(Clone, Debug, Serialize)]
pub struct TopicCreated {
    pub name: String,
    /// As the broker reports it (CreateTopics v5+), else as asked; None when
    /// the broker chose its default and did not say.
    pub partitions: Option<i32>,
    pub topic_id: Option<String>,
}

/// CreateTopics of one topic, with the broker's default replication.
pub fn create(
    client: &mut Client,
    name: &str,
    partitions: Option<i32>,
    configs: &[(String, String)],
) -> Result<TopicCreated, AdminError> {
    let configs: Vec<CreatableTopicConfig> =
        configs.iter().map(|(k, v)| CreatableTopicConfig::default().with_name(sb(k)).with_value(Some(sb(v)))).collect();
    let (response, version) = client.send(|v| {
        // -1 (the broker's default) is understood from v4 (KIP-464); one node
        // means a replication factor of 1 anyway.
        let topic = CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions.unwrap_or(-1))
            .with_replication_factor(if v >= 4 { -1 } else { 1 })
            .with_configs(configs);
        CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(OPERATION_TIMEOUT_MS)
    })?;
    let result = response
        .topics
        .into_iter()
        .find(|t| t.name.as_str() == name)
        .ok_or_else(|| missing(client, "CreateTopics", name))?;
    if result.error_code != 0 {
        let message = result.error_message.as_deref().map(|m| m.to_string());
        return Err(refusal("CreateTopics", result.error_code, Subject::Topic(name), message.as_deref()));
    }
    let partitions = if version >= 5 && result.num_partitions > 0 { Some(result.num_partitions) } else { partitions };
    Ok(TopicCreated { name: name.to_string(), partitions, topic_id: topic_id(result.topic_id) })
}

fn missing(client: &Client, api: &'static str, what: &str) -> AdminError {
    AdminError::Protocol { addr: client.addr().to_string(), api, detail: format!("no result for `{what}`") }
}

#[derive(Clone, Debug, Serialize)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: usize,
    pub replicas: usize,
    pub internal: bool,
}

/// Every topic the broker reports, by name.
pub fn list(client: &mut Client) -> Result<Vec<TopicSummary>, AdminError> {
    let mut topics: Vec<TopicSummary> = metadata(client, None)?
        .into_iter()
        .filter(|t| t.error_code == 0)
        .filter_map(|t| {
            let replicas = t.partitions.iter().map(|p| p.replica_nodes.len()).max().unwrap_or(0);
            Some(TopicSummary {
                name: t.name?.to_string(),
                partitions: t.partitions.len(),
                replicas,
                internal: t.is_internal,
            })
        })
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(topics)
}

/// Metadata for `topics` (all topics when None), never creating one.
pub fn metadata(client: &mut Client, topics: Option<&[&str]>) -> Result<Vec<MetadataResponseTopic>, AdminError> {
    let wanted =
        topics.map(|ts| ts.iter().map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t)))).collect());
    let (response, _) =
        client.send(|_| MetadataRequest::default().with_topics(wanted).with_allow_auto_topic_creation(false))?;
    Ok(response.topics)
}

/// One topic's metadata, or its error in words.
pub fn topic_metadata(client: &mut Client, name: &str) -> Result<MetadataResponseTopic, AdminError> {
    let topic = metadata(client, Some(&[name]))?
        .into_iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == name))
        .ok_or_else(|| missing(client, "Metadata", name))?;
    if topic.error_code != 0 {
        return Err(refusal("Metadata", topic.error_code, Subject::Topic(name), None));
    }
    Ok(topic)
}

/// The partition ids of a topic, ascending.
pub fn partitions(client: &mut Client, name: &str) -> Result<Vec<i32>, AdminError> {
    let mut ids: Vec<i32> = topic_metadata(client, name)?.partitions.iter().map(|p| p.partition_index).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// One partition's answer to ListOffsets: an offset (-1: none, for a
/// timestamp after the last record) or the broker's error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    pub offset: i64,
    pub error_code: i16,
}

/// ListOffsets at `at` (EARLIEST, LATEST or a timestamp in ms) for the
/// given partitions of each topic.
pub fn list_offsets(
    client: &mut Client,
    wanted: &BTreeMap<String, Vec<i32>>,
    at: i64,
) -> Result<BTreeMap<(String, i32), Listed>, AdminError> {
    if wanted.is_empty() {
        return Ok(BTreeMap::new());
    }
    let topics: Vec<ListOffsetsTopic> = wanted
        .iter()
        .map(|(t, ps)| {
            let partitions = ps
                .iter()
                .map(|&p| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(at))
                .collect();
            ListOffsetsTopic::default().with_name(topic_name(t)).with_partitions(partitions)
        })
        .collect();
    // replica_id -1: a consumer, not a follower.
    let (response, _) =
        client.send(|_| ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(topics))?;
    let mut out = BTreeMap::new();
    for t in response.topics {
        for p in t.partitions {
            out.insert((t.name.to_string(), p.partition_index), Listed { offset: p.offset, error_code: p.error_code });
        }
    }
    Ok(out)
}

#[derive(Clone, Debug, Serialize)]
pub struct PartitionOffsets {
    pub partition: i32,
    pub leader: i32,
    /// The log start offset (ListOffsets earliest).
    pub start_offset: i64,
    /// The high watermark (ListOffsets latest): the next offset to be written.
    pub end_offset: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    /// Kafka's name for where the value comes from, e.g. `DYNAMIC_TOPIC_CONFIG`.
    pub source: String,
    pub read_only: bool,
    pub sensitive: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct TopicDescription {
    pub name: String,
    pub topic_id: Option<String>,
    pub internal: bool,
    pub partitions: Vec<PartitionOffsets>,
    pub configs: Vec<ConfigEntry>,
}

/// A topic's partitions with their start and end offsets, and its configs.
pub fn describe(client: &mut Client, name: &str) -> Result<TopicDescription, AdminError> {
    let meta = topic_metadata(client, name)?;
    let mut leaders: Vec<(i32, i32)> = meta.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect();
    leaders.sort_unstable();
    let wanted = BTreeMap::from([(name.to_string(), leaders.iter().map(|&(p, _)| p).collect::<Vec<_>>())]);
    let starts = list_offsets(client, &wanted, EARLIEST)?;
    let ends = list_offsets(client, &wanted, LATEST)?;
    let mut partitions = Vec::with_capacity(leaders.len());
    for (partition, leader) in leaders {
        let key = (name.to_string(), partition);
        let start = offset_or_error(starts.get(&key), name, partition)?;
        let end = offset_or_error(ends.get(&key), name, partition)?;
        partitions.push(PartitionOffsets { partition, leader, start_offset: start, end_offset: end });
    }
    let configs = describe_configs(client, name)?;
    Ok(TopicDescription {
        name: name.to_string(),
        topic_id: topic_id(meta.topic_id),
        internal: meta.is_internal,
        partitions,
        configs,
    })
}

fn offset_or_error(listed: Option<&Listed>, topic: &str, partition: i32) -> Result<i64, AdminError> {
    match listed {
        Some(l) if l.error_code == 0 => Ok(l.offset),
        Some(l) => {
            Err(refusal("ListOffsets", l.error_code, Subject::Topic(topic), Some(&format!("partition {partition}"))))
        }
        None => {
            Err(AdminError::Refused(format!("no offsets for partition {partition} of topic `{topic}` in the answer")))
        }
    }
}

/// A topic's configs, by name.
pub fn describe_configs(client: &mut Client, name: &str) -> Result<Vec<ConfigEntry>, AdminError> {
    let resource = DescribeConfigsResource::default()
        .with_resource_type(RESOURCE_TOPIC)
        .with_resource_name(sb(name))
        .with_configuration_keys(None);
    let (response, _) = client.send(|_| DescribeConfigsRequest::default().with_resources(vec![resource]))?;
    let result = response.results.into_iter().next().ok_or_else(|| missing(client, "DescribeConfigs", name))?;
    if result.error_code != 0 {
        let message = result.error_message.as_deref().map(|m| m.to_string());
        return Err(refusal("DescribeConfigs", result.error_code, Subject::Topic(name), message.as_deref()));
    }
    let mut configs: Vec<ConfigEntry> = result
        .configs
        .into_iter()
        .map(|c| ConfigEntry {
            name: c.name.to_string(),
            value: c.value.map(|v| v.to_string()),
            source: config_source_name(c.config_source).to_string(),
            read_only: c.read_only,
            sensitive: c.is_sensitive,
        })
        .collect();
    configs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(configs)
}

/// Kafka's names for DescribeConfigs' config sources.
pub fn config_source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ConfigValue {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConfigsAltered {
    pub topic: String,
    pub set: Vec<ConfigValue>,
    pub deleted: Vec<String>,
}

/// IncrementalAlterConfigs: every SET and DELETE in one request, which the
/// broker applies all together or not at all.
pub fn alter_config(
    client: &mut Client,
    name: &str,
    set: &[(String, String)],
    delete: &[String],
) -> Result<ConfigsAltered, AdminError> {
    let ops: Vec<AlterableConfig> = set
        .iter()
        .map(|(k, v)| AlterableConfig::default().with_name(sb(k)).with_config_operation(OP_SET).with_value(Some(sb(v))))
        .chain(delete.iter().map(|k| AlterableConfig::default().with_name(sb(k)).with_config_operation(OP_DELETE)))
        .collect();
    let resource = AlterConfigsResource::default()
        .with_resource_type(RESOURCE_TOPIC)
        .with_resource_name(sb(name))
        .with_configs(ops);
    let (response, _) = client.send(|_| IncrementalAlterConfigsRequest::default().with_resources(vec![resource]))?;
    let result =
        response.responses.into_iter().next().ok_or_else(|| missing(client, "IncrementalAlterConfigs", name))?;
    if result.error_code != 0 {
        let message = result.error_message.as_deref().map(|m| m.to_string());
        return Err(refusal("IncrementalAlterConfigs", result.error_code, Subject::Topic(name), message.as_deref()));
    }
    Ok(ConfigsAltered {
        topic: name.to_string(),
        set: set.iter().map(|(k, v)| ConfigValue { name: k.clone(), value: v.clone() }).collect(),
        deleted: delete.to_vec(),
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct TopicDeleted {
    pub name: String,
}

/// DeleteTopics of one topic.
pub fn delete(client: &mut Client, name: &str) -> Result<TopicDeleted, AdminError> {
    let (response, _) = client.send(|_| {
        DeleteTopicsRequest::default().with_topic_names(vec![topic_name(name)]).with_timeout_ms(OPERATION_TIMEOUT_MS)
    })?;
    let result = response
        .responses
        .into_iter()
        .find(|r| r.name.as_ref().is_some_and(|n| n.as_str() == name))
        .ok_or_else(|| missing(client, "DeleteTopics", name))?;
    if result.error_code != 0 {
        let message = result.error_message.as_deref().map(|m| m.to_string());
        return Err(refusal("DeleteTopics", result.error_code, Subject::Topic(name), message.as_deref()));
    }
    Ok(TopicDeleted { name: name.to_string() })
}
