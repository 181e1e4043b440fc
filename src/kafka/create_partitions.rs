//! CreatePartitions v0-3: grows a topic's partition count. The new count is
//! made durable in the catalog, every shard opens the new partitions it owns,
//! and only then is the request answered, so producing to them works at once.
//! A count that does not grow is INVALID_PARTITIONS; manual assignments are
//! INVALID_REPLICA_ASSIGNMENT (one node); `validate_only` changes nothing.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{codes, decode_body, encode_response, errors, Reply, RequestContext, RequestError};
use crate::catalog::TopicUpdate;
use crate::runtime::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: CreatePartitionsRequest = decode_body(ctx, body)?;
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let outcome = if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
            Err((codes::INVALID_REPLICA_ASSIGNMENT, "manual replica assignment is not supported".to_string()))
        } else {
            shard
                .update_topic(&name, TopicUpdate::Partitions(t.count), req.validate_only)
                .await
                .map(drop)
                .map_err(|e| (errors::for_topic_op(&e), e.to_string()))
        };
        let mut result = CreatePartitionsTopicResult::default().with_name(t.name);
        if let Err((code, message)) = outcome {
            tracing::info!(topic = %name, code, %message, "create partitions refused");
            result = result.with_error_code(code).with_error_message(Some(StrBytes::from_string(message)));
        }
        shard.counters.error(result.error_code);
        results.push(result);
    }
    encode_response(ctx, &CreatePartitionsResponse::default().with_results(results))
}
