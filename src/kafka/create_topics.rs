//! CreateTopics v0-7: partitions (-1: the broker default), replication factor
//! 1 or -1 (one node), topic configs checked against what ringmq enforces.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{codes, decode_body, encode_response, errors, Reply, RequestContext, RequestError};
use crate::catalog::TopicError;
use crate::runtime::shard::{Shard, TopicOpError};

pub async fn handle(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: CreateTopicsRequest = decode_body(ctx, body)?;
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut result = CreatableTopicResult::default().with_name(t.name.clone());
        let partitions = if t.num_partitions == -1 { shard.config.default_partitions } else { t.num_partitions };
        let outcome = if !t.assignments.is_empty() {
            Err((codes::INVALID_REPLICA_ASSIGNMENT, "manual replica assignment is not supported".to_string()))
        } else if !matches!(t.replication_factor, -1 | 1) {
            Err((
                codes::INVALID_REPLICATION_FACTOR,
                format!("replication factor {} is larger than the 1 available broker", t.replication_factor),
            ))
        } else {
            let mut configs = BTreeMap::new();
            for c in &t.configs {
                if let Some(v) = &c.value {
                    configs.insert(c.name.to_string(), v.to_string());
                }
            }
            shard.create_topic(&name, partitions, configs, req.validate_only).await.map_err(|e| {
                let code = match &e {
                    TopicOpError::AlreadyExists(_) => codes::TOPIC_ALREADY_EXISTS,
                    TopicOpError::Invalid(TopicError::InvalidName(_)) => codes::INVALID_TOPIC_EXCEPTION,
                    TopicOpError::Invalid(
                        TopicError::InvalidPartitions(_) | TopicError::PartitionsNotIncreased { .. },
                    ) => codes::INVALID_PARTITIONS,
                    TopicOpError::Invalid(TopicError::InvalidConfig { .. }) => codes::INVALID_CONFIG,
                    TopicOpError::Unknown(_) => codes::UNKNOWN_TOPIC_OR_PARTITION,
                    TopicOpError::Storage(e) => errors::for_storage(e),
                    TopicOpError::Catalog(_) => codes::KAFKA_STORAGE_ERROR,
                    TopicOpError::ShardGone(_) => codes::UNKNOWN_SERVER_ERROR,
                };
                (code, e.to_string())
            })
        };
        match outcome {
            Ok(meta) => {
                if ctx.api_version >= 5 {
                    result = result.with_num_partitions(meta.partitions).with_replication_factor(1);
                }
                if ctx.api_version >= 7 {
                    result.topic_id = meta.id;
                }
            }
            Err((code, message)) => {
                tracing::info!(topic = %name, code, %message, "create topic refused");
                result = result.with_error_code(code);
                if ctx.api_version >= 1 {
                    result.error_message = Some(StrBytes::from_string(message));
                }
            }
        }
        results.push(result);
    }
    encode_response(ctx, &CreateTopicsResponse::default().with_topics(results))
}
