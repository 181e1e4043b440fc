//! Metadata v0-12: this broker, and the topics asked for (all when null, or
//! an empty list before v1). Unknown topics are auto-created when both the
//! request (v4+) and the broker allow it. No topic is internal (ringmq keeps
//! no `__consumer_offsets`-like topics); authorized operations, when asked
//! for, list what ringmq serves (there is no authorization).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{codes, decode_body, encode_response, Reply, RequestContext, RequestError, CLUSTER_ID, NODE_ID};
use crate::catalog::{self, TopicMeta};
use crate::runtime::shard::Shard;

/// Authorized operations (bit `1 << AclOperation`) reported when a client
/// asks: ringmq has no authorization, so these are the operations it serves.
/// Topic: READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
pub const TOPIC_AUTHORIZED_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
/// Cluster: CREATE, DESCRIBE, DESCRIBE_CONFIGS.
pub const CLUSTER_AUTHORIZED_OPERATIONS: i32 = (1 << 5) | (1 << 8) | (1 << 10);

pub async fn handle(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: MetadataRequest = decode_body(ctx, body)?;
    let allow_auto_create = ctx.api_version < 4 || req.allow_auto_topic_creation;
    let wanted: Option<Vec<String>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && ctx.api_version == 0 => None,
        Some(t) => Some(t.into_iter().filter_map(|t| t.name.map(|n| n.0.to_string())).collect()),
    };
    let mut topics = Vec::new();
    match wanted {
        None => {
            for (name, meta) in shard.topics() {
                topics.push(describe(&name, Some(&meta), ctx.api_version));
            }
        }
        Some(names) => {
            for name in names {
                if catalog::validate_topic_name(&name).is_err() {
                    let mut t = describe(&name, None, ctx.api_version);
                    t.error_code = codes::INVALID_TOPIC_EXCEPTION;
                    topics.push(t);
                    continue;
                }
                let meta = if allow_auto_create { shard.ensure_topic(&name).await } else { shard.topic(&name) };
                topics.push(describe(&name, meta.as_ref(), ctx.api_version));
            }
        }
    }
    let (host, port) = shard.advertised.borrow().clone();
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(NODE_ID))
        .with_host(StrBytes::from_string(host))
        .with_port(i32::from(port));
    if ctx.api_version >= 8 && req.include_topic_authorized_operations {
        for t in topics.iter_mut().filter(|t| t.error_code == codes::NONE) {
            t.topic_authorized_operations = TOPIC_AUTHORIZED_OPERATIONS;
        }
    }
    let mut resp = MetadataResponse::default().with_brokers(vec![broker]).with_topics(topics);
    if (8..=10).contains(&ctx.api_version) && req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = CLUSTER_AUTHORIZED_OPERATIONS;
    }
    if ctx.api_version >= 1 {
        resp.controller_id = BrokerId(NODE_ID);
    }
    if ctx.api_version >= 2 {
        resp.cluster_id = Some(StrBytes::from_static_str(CLUSTER_ID));
    }
    encode_response(ctx, &resp)
}

fn describe(name: &str, meta: Option<&TopicMeta>, version: i16) -> MetadataResponseTopic {
    let topic = MetadataResponseTopic::default().with_name(Some(TopicName(StrBytes::from_string(name.to_string()))));
    let Some(meta) = meta else {
        return topic.with_error_code(codes::UNKNOWN_TOPIC_OR_PARTITION);
    };
    let partitions = (0..meta.partitions)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(BrokerId(NODE_ID))
                .with_replica_nodes(vec![BrokerId(NODE_ID)])
                .with_isr_nodes(vec![BrokerId(NODE_ID)])
        })
        .collect();
    let topic = topic.with_partitions(partitions);
    if version >= 10 {
        topic.with_topic_id(meta.id)
    } else {
        topic
    }
}
