//! IncrementalAlterConfigs v0-1: SET and DELETE on the topic configs ringmq
//! enforces (APPEND of `delete` to cleanup.policy is accepted; SUBTRACT and
//! other list changes are INVALID_CONFIG). All changes of one resource apply
//! together or not at all; unknown keys are INVALID_CONFIG. Made durable and
//! applied by every shard before the answer (see `alter_configs`).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::alter_configs::alter_topic;
use super::{decode_body, encode_response, Reply, RequestContext, RequestError};
use crate::catalog::{ConfigOp, TopicUpdate};
use crate::runtime::shard::Shard;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub async fn handle(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: IncrementalAlterConfigsRequest = decode_body(ctx, body)?;
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let name = r.resource_name.to_string();
        let ops: Result<Vec<ConfigOp>, String> = r
            .configs
            .iter()
            .map(|c| {
                let key = c.name.to_string();
                let value = || {
                    c.value.as_ref().map(|v| v.to_string()).ok_or_else(|| format!("config {key}: a value is required"))
                };
                Ok(match c.config_operation {
                    OP_SET => ConfigOp::Set { key: key.clone(), value: value()? },
                    OP_DELETE => ConfigOp::Delete { key },
                    OP_APPEND => ConfigOp::Append { key: key.clone(), value: value()? },
                    OP_SUBTRACT => ConfigOp::Subtract { key: key.clone(), value: value()? },
                    other => return Err(format!("config {key}: unknown operation {other}")),
                })
            })
            .collect();
        let (code, message) =
            alter_topic(shard, r.resource_type, &name, ops.map(TopicUpdate::Configs), req.validate_only).await;
        shard.counters.error(code);
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
                .with_error_code(code)
                .with_error_message(message.map(StrBytes::from_string)),
        );
    }
    encode_response(ctx, &IncrementalAlterConfigsResponse::default().with_responses(responses))
}
