//! DeleteTopics v0-5: removes topics by name, with their data.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{codes, decode_body, encode_response, errors, Reply, RequestContext, RequestError};
use crate::runtime::shard::{Shard, TopicOpError};

pub async fn handle(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: DeleteTopicsRequest = decode_body(ctx, body)?;
    let mut results = Vec::with_capacity(req.topic_names.len());
    for name in req.topic_names {
        let mut result = DeletableTopicResult::default().with_name(Some(name.clone()));
        if let Err(e) = shard.delete_topic(&name.0).await {
            let code = match &e {
                TopicOpError::Unknown(_) => codes::UNKNOWN_TOPIC_OR_PARTITION,
                TopicOpError::Storage(s) => errors::for_storage(s),
                _ => codes::UNKNOWN_SERVER_ERROR,
            };
            result = result.with_error_code(code);
            if ctx.api_version >= 5 {
                result.error_message = Some(StrBytes::from_string(e.to_string()));
            }
        }
        results.push(result);
    }
    encode_response(ctx, &DeleteTopicsResponse::default().with_responses(results))
}
