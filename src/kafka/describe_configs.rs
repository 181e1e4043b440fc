//! DescribeConfigs v1-4. Topics: the five configs ringmq enforces, each
//! either the topic's override (source DYNAMIC_TOPIC_CONFIG) or the broker's
//! value (STATIC_BROKER_CONFIG when a flag or the config file changed it from
//! ringmq's built-in default, DEFAULT_CONFIG otherwise), with synonyms when
//! asked. The broker (resource name = its node id) answers its log defaults
//! and topic-creation settings, read-only: ringmq has no dynamic broker
//! configs. Other resource types answer INVALID_REQUEST.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{codes, decode_body, encode_response, Reply, RequestContext, RequestError, NODE_ID};
use crate::catalog::TopicMeta;
use crate::runtime::shard::Shard;
use crate::storage::LogConfig;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

pub const SOURCE_DYNAMIC_TOPIC_CONFIG: i8 = 1;
pub const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
pub const SOURCE_DEFAULT_CONFIG: i8 = 5;

const TYPE_BOOLEAN: i8 = 1;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;

/// A topic config: its name, the broker setting it defaults to, its type.
struct TopicConfig {
    name: &'static str,
    broker_name: &'static str,
    config_type: i8,
    value: fn(&LogConfig) -> String,
    doc: &'static str,
}

const TOPIC_CONFIGS: &[TopicConfig] = &[
    TopicConfig {
        name: "cleanup.policy",
        broker_name: "log.cleanup.policy",
        config_type: TYPE_LIST,
        value: |_| "delete".into(),
        doc: "Only `delete` (retention by time and size); no compaction.",
    },
    TopicConfig {
        name: "max.message.bytes",
        broker_name: "message.max.bytes",
        config_type: TYPE_INT,
        value: |c| c.max_message_bytes.to_string(),
        doc: "Largest record batch accepted; bigger ones get MESSAGE_TOO_LARGE.",
    },
    TopicConfig {
        name: "retention.bytes",
        broker_name: "log.retention.bytes",
        config_type: TYPE_LONG,
        value: |c| c.retention_bytes.to_string(),
        doc: "Size a partition is kept under by deleting its oldest segments; -1 for no limit.",
    },
    TopicConfig {
        name: "retention.ms",
        broker_name: "log.retention.ms",
        config_type: TYPE_LONG,
        value: |c| c.retention_ms.to_string(),
        doc: "Age after which a segment whose newest record is older is deleted; -1 for no limit.",
    },
    TopicConfig {
        name: "segment.bytes",
        broker_name: "log.segment.bytes",
        config_type: TYPE_INT,
        value: |c| c.segment_bytes.to_string(),
        doc: "Size of a segment file; applies from the next segment.",
    },
];

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn broker_source(broker: &str, builtin: &str) -> i8 {
    if broker == builtin {
        SOURCE_DEFAULT_CONFIG
    } else {
        SOURCE_STATIC_BROKER_CONFIG
    }
}

fn wanted(keys: &Option<Vec<StrBytes>>, name: &str) -> bool {
    keys.as_ref().is_none_or(|k| k.is_empty() || k.iter().any(|k| k.as_str() == name))
}

fn describe_topic(
    shard: &Shard,
    meta: &TopicMeta,
    keys: &Option<Vec<StrBytes>>,
    synonyms: bool,
    docs: bool,
    version: i16,
) -> Vec<DescribeConfigsResourceResult> {
    let builtin = LogConfig::default();
    let mut out = Vec::new();
    for c in TOPIC_CONFIGS.iter().filter(|c| wanted(keys, c.name)) {
        let broker_value = (c.value)(&shard.config.log);
        let broker_src = broker_source(&broker_value, &(c.value)(&builtin));
        let overridden = meta.configs.get(c.name);
        let (value, source) = match overridden {
            Some(v) => (v.clone(), SOURCE_DYNAMIC_TOPIC_CONFIG),
            None => (broker_value.clone(), broker_src),
        };
        let mut entry = DescribeConfigsResourceResult::default()
            .with_name(s(c.name))
            .with_value(Some(s(value.clone())))
            .with_read_only(false)
            .with_config_source(source);
        if synonyms {
            let mut list = Vec::new();
            if overridden.is_some() {
                list.push(
                    DescribeConfigsSynonym::default()
                        .with_name(s(c.name))
                        .with_value(Some(s(value)))
                        .with_source(SOURCE_DYNAMIC_TOPIC_CONFIG),
                );
            }
            list.push(
                DescribeConfigsSynonym::default()
                    .with_name(s(c.broker_name))
                    .with_value(Some(s(broker_value)))
                    .with_source(broker_src),
            );
            entry.synonyms = list;
        }
        if version >= 3 {
            entry.config_type = c.config_type;
            if docs {
                entry.documentation = Some(s(c.doc));
            }
        }
        out.push(entry);
    }
    out
}

fn describe_broker(shard: &Shard, keys: &Option<Vec<StrBytes>>, version: i16) -> Vec<DescribeConfigsResourceResult> {
    let builtin = LogConfig::default();
    let mut rows: Vec<(String, String, i8, i8)> = TOPIC_CONFIGS
        .iter()
        .map(|c| {
            let v = (c.value)(&shard.config.log);
            let src = broker_source(&v, &(c.value)(&builtin));
            (c.broker_name.to_string(), v, c.config_type, src)
        })
        .collect();
    let partitions = shard.config.default_partitions.to_string();
    let partitions_src = broker_source(&partitions, "1");
    rows.push(("num.partitions".into(), partitions, TYPE_INT, partitions_src));
    let auto = shard.config.auto_create_topics.to_string();
    let auto_src = broker_source(&auto, "true");
    rows.push(("auto.create.topics.enable".into(), auto, TYPE_BOOLEAN, auto_src));
    rows.push(("broker.id".into(), NODE_ID.to_string(), TYPE_INT, SOURCE_DEFAULT_CONFIG));
    rows.into_iter()
        .filter(|(name, ..)| wanted(keys, name))
        .map(|(name, value, config_type, source)| {
            let mut e = DescribeConfigsResourceResult::default()
                .with_name(s(name))
                .with_value(Some(s(value)))
                .with_read_only(true)
                .with_config_source(source);
            if version >= 3 {
                e.config_type = config_type;
            }
            e
        })
        .collect()
}

pub async fn handle(shard: &Rc<Shard>, ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let req: DescribeConfigsRequest = decode_body(ctx, body)?;
    let mut results = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let name = r.resource_name.to_string();
        let mut result = DescribeConfigsResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        match r.resource_type {
            RESOURCE_TOPIC => match shard.topic(&name) {
                Some(meta) => {
                    result.configs = describe_topic(
                        shard,
                        &meta,
                        &r.configuration_keys,
                        req.include_synonyms,
                        req.include_documentation,
                        ctx.api_version,
                    )
                }
                None => {
                    result.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION;
                    result.error_message = Some(s(format!("unknown topic `{name}`")));
                }
            },
            RESOURCE_BROKER if name == NODE_ID.to_string() => {
                result.configs = describe_broker(shard, &r.configuration_keys, ctx.api_version)
            }
            // The cluster-wide dynamic broker defaults: ringmq has none.
            RESOURCE_BROKER if name.is_empty() => {}
            RESOURCE_BROKER => {
                result.error_code = codes::INVALID_REQUEST;
                result.error_message = Some(s(format!("broker `{name}` is not this broker (node id {NODE_ID})")));
            }
            other => {
                result.error_code = codes::INVALID_REQUEST;
                result.error_message =
                    Some(s(format!("resource type {other} is not supported (topics and this broker only)")));
            }
        }
        shard.counters.error(result.error_code);
        results.push(result);
    }
    encode_response(ctx, &DescribeConfigsResponse::default().with_results(results))
}
