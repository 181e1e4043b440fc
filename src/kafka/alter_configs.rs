//! AlterConfigs v0-2 (legacy, used by librdkafka's `alter_configs`): the
//! configs given for a topic replace all its overrides (those not listed go
//! back to the broker default). The change is checked whole, made durable in
//! the catalog, applied by every shard to the running partitions, and only
//! then answered (see `Shard::update_topic`). `validate_only` checks without
//! changing anything. Broker configs are read-only in ringmq: altering them
//! answers INVALID_REQUEST.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{codes, decode_body, encode_response, errors, Reply, RequestContext, RequestError};
use crate::catalog::TopicUpdate;
use crate::runtime::shard::Shard;

/// Applies `update` to topic `name`: (error code, message) on failure.
pub(crate) async fn alter_topic(
    shard: &Rc<Shard>,
    resource_type: i8,
    name: &str,
    update: Result<TopicUpdate, String>,
    validate_only: bool,
) -> (i16, Option<String>) {
    match resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return (
                codes::INVALID_REQUEST,
                Some("broker configs are read-only in ringmq (set them with flags at start)".into()),
            )
        }
        other => {
            return (codes::INVALID_REQUEST, Some(format!("resource type {other} is not supported (topics only)")))
        }
    }
    let update = match update {
        Ok(u) => u,
        Err(message) => return (codes::INVALID_CONFIG, Some(message)),
    };
    match shard.update_topic(name, update, validate_only).await {
        Ok(_) => (codes::NONE, None),
        Err(e) => {
            tracing::info!(topic = name, error = %e, "config change refused");
            (errors::for_topic_op(&e), Some(e.to_string()))
        }
    }
}

pub async fn handle(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: AlterConfigsRequest = decode_body(ctx, body)?;
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let name = r.resource_name.to_string();
        let mut configs = BTreeMap::new();
        for c in &r.configs {
            if let Some(v) = &c.value {
                configs.insert(c.name.to_string(), v.to_string());
            }
        }
        let (code, message) =
            alter_topic(shard, r.resource_type, &name, Ok(TopicUpdate::ReplaceConfigs(configs)), req.validate_only)
                .await;
        shard.counters.error(code);
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
                .with_error_code(code)
                .with_error_message(message.map(StrBytes::from_string)),
        );
    }
    encode_response(ctx, &AlterConfigsResponse::default().with_responses(responses))
}
