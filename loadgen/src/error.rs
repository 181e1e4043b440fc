//! Error types of the load generator. `ClientError` is everything the lean
//! Kafka client can hit (network, framing, protocol, broker error codes),
//! `AmqpError` the same for the AMQP client; `Error` is what a whole run,
//! plot or baseline can fail with, each variant carrying enough context for
//! a one-line message to the user.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// A Kafka error code with its protocol name, e.g. `UNKNOWN_TOPIC_OR_PARTITION (3)`.
pub fn code_name(code: i16) -> String {
    match kafka_protocol::error::ResponseError::try_from_code(code) {
        None => "NONE (0)".to_string(),
        Some(kafka_protocol::error::ResponseError::Unknown(c)) => format!("unknown error code {c}"),
        Some(e) => format!("{} ({code})", screaming_snake(&format!("{e:?}"))),
    }
}

/// `UnknownTopicOrPartition` → `UNKNOWN_TOPIC_OR_PARTITION` (Kafka's own spelling).
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

/// Failures of one connection to a broker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to broker {addr}: {source} (is a broker listening there?)")]
    Connect { addr: String, source: io::Error },
    #[error("cannot resolve broker address {addr}: {detail}")]
    Resolve { addr: String, detail: String },
    #[error("{what} broker {addr} failed: {source}")]
    Io { addr: String, what: &'static str, source: io::Error },
    #[error("broker {addr} closed the connection while {what}")]
    Closed { addr: String, what: &'static str },
    #[error("no {api} response from broker {addr} within {timeout:?} (is the broker stopped, frozen or overloaded?)")]
    Timeout { addr: String, api: &'static str, timeout: Duration },
    #[error("cannot encode a {api} v{version} request: {detail}")]
    Encode { api: &'static str, version: i16, detail: String },
    #[error("cannot decode a {api} v{version} response from broker {addr}: {detail}")]
    Decode { addr: String, api: &'static str, version: i16, detail: String },
    #[error("broker {addr} answered correlation id {got} where {expected} was due (responses out of order)")]
    Correlation { addr: String, expected: i32, got: i32 },
    #[error("broker {addr} sent a response frame of {size} bytes, more than the {limit} allowed")]
    FrameSize { addr: String, size: i64, limit: usize },
    #[error("broker {addr} does not support {api} in versions {ours} (it offers {theirs})")]
    Unsupported { addr: String, api: &'static str, ours: String, theirs: String },
    #[error("{api} failed on broker {addr}: {}{}", code_name(*code), message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Broker { addr: String, api: &'static str, code: i16, message: Option<String> },
}

/// Failures of one AMQP connection.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("cannot connect to broker {addr}: {source} (is an AMQP broker listening there?)")]
    Connect { addr: String, source: io::Error },
    #[error("cannot resolve broker address {addr}: {detail}")]
    Resolve { addr: String, detail: String },
    #[error("{what} broker {addr} failed: {source}")]
    Io { addr: String, what: &'static str, source: io::Error },
    #[error("broker {addr} closed the connection while {what}")]
    Closed { addr: String, what: String },
    #[error(
        "no answer from broker {addr} within {timeout:?} while {what} (is the broker stopped, frozen or overloaded?)"
    )]
    Timeout { addr: String, what: String, timeout: Duration },
    #[error("broker {addr} does not speak AMQP 0-9-1: {detail}")]
    NotAmqp { addr: String, detail: String },
    #[error("broker {addr} sent what AMQP 0-9-1 does not allow: {detail}")]
    Protocol { addr: String, detail: String },
    #[error("broker {addr} closed the connection while {what}: {code} {text}")]
    ConnectionClosed { addr: String, what: String, code: u16, text: String },
    #[error("broker {addr} closed the channel while {what}: {code} {text}")]
    ChannelClosed { addr: String, what: String, code: u16, text: String },
    #[error("cannot encode {what}: {detail}")]
    Encode { what: String, detail: String },
    #[error("broker {addr} cancelled the consumer of queue '{queue}' (was the queue deleted?)")]
    Cancelled { addr: String, queue: String },
}

/// Failures of a whole command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid arguments: {0}")]
    Usage(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Amqp(#[from] AmqpError),
    #[error("{kind} '{name}' does not exist on {url} (declare it first, or pass --declare)")]
    Missing { kind: &'static str, name: String, url: String },
    #[error("topic '{topic}' does not exist on {bootstrap} and --create-topic is false (create it first, or let the load generator create it)")]
    UnknownTopic { topic: String, bootstrap: String },
    #[error("cannot create topic '{topic}': {detail}")]
    CreateTopic { topic: String, detail: String },
    #[error("topic '{topic}' is not ready: {detail}")]
    TopicNotReady { topic: String, detail: String },
    #[error("broker {node_id} (leader of {topic}/{partition}) is not in the metadata response")]
    UnknownLeader { topic: String, partition: i32, node_id: i32 },
    #[error("produce to {topic}/{partition} failed: {detail}")]
    Produce { topic: String, partition: i32, detail: String },
    #[error("fetch from {topic}/{partition} failed: {detail}")]
    Fetch { topic: String, partition: i32, detail: String },
    #[error("cannot encode a record batch: {0}")]
    Batch(String),
    #[error("{what} {path}: {source}")]
    File { what: &'static str, path: PathBuf, source: io::Error },
    #[error("cannot parse {path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("cannot run {tool}: {detail}")]
    Tool { tool: &'static str, detail: String },
    #[error("a {role} thread panicked: {detail}")]
    Panic { role: &'static str, detail: String },
}

impl Error {
    /// Process exit code: 2 for bad arguments, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }

    /// Wraps an I/O error on a file with what was being done.
    pub fn file(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::File { what, path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_named_like_kafka_names_them() {
        assert_eq!(code_name(3), "UNKNOWN_TOPIC_OR_PARTITION (3)");
        assert_eq!(code_name(0), "NONE (0)");
        assert_eq!(code_name(9999), "unknown error code 9999");
    }
}
