//! `AdminError`: everything an admin command can fail with, each variant
//! carrying what its one-line message needs, and the exit code it maps to
//! (0 ok, 1 the broker said no or the operation failed, 2 usage, 3 the
//! broker could not be reached), for the Kafka and the HTTP commands alike.

use std::io;

use kafka_protocol::error::ResponseError;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_UNREACHABLE: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot resolve {addr}: {source}")]
    Resolve { addr: String, source: io::Error },
    #[error("cannot connect to {addr}: {}", cause(source))]
    Connect { addr: String, source: io::Error },
    #[error("cannot connect to {addr}: no answer within {timeout_ms} ms")]
    ConnectTimeout { addr: String, timeout_ms: u64 },
    #[error("no answer from {addr} to {api} within {timeout_ms} ms")]
    Timeout { addr: String, api: &'static str, timeout_ms: u64 },
    #[error("connection to {addr} lost during {api}: {}", cause(source))]
    Io { addr: String, api: &'static str, source: io::Error },
    /// What answered ApiVersions is not a Kafka broker (or not a sane one).
    #[error("{addr} does not answer like a Kafka broker: {detail}")]
    NotKafka { addr: String, detail: String },
    #[error("{addr} sent an unreadable {api} answer: {detail}")]
    Protocol { addr: String, api: &'static str, detail: String },
    #[error("{addr} offers {api} versions {theirs}; this client speaks {ours}")]
    Unsupported { addr: String, api: &'static str, ours: String, theirs: String },
    /// The broker refused; `message` says it in words (see `refusal`).
    #[error("{message}")]
    Broker { api: &'static str, code: i16, message: String },
    /// The broker's HTTP API answered something other than 200; `message`
    /// is its reason in words.
    #[error("{message}")]
    Api { status: u16, message: String },
    /// A check of this client's own refused the operation (a group with
    /// members, a partition the topic does not have).
    #[error("{0}")]
    Refused(String),
    #[error("cannot write the output: {source}")]
    Output { source: io::Error },
    /// Arguments that passed clap but cannot be used.
    #[error("{0}")]
    Usage(String),
}

impl AdminError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            AdminError::Resolve { .. }
            | AdminError::Connect { .. }
            | AdminError::ConnectTimeout { .. }
            | AdminError::Timeout { .. }
            | AdminError::Io { .. }
            | AdminError::NotKafka { .. } => EXIT_UNREACHABLE,
            AdminError::Protocol { .. }
            | AdminError::Unsupported { .. }
            | AdminError::Broker { .. }
            | AdminError::Api { .. }
            | AdminError::Refused(_)
            | AdminError::Output { .. } => EXIT_FAILED,
            AdminError::Usage(_) => EXIT_USAGE,
        }
    }
}

/// An I/O error in words, without the `(os error N)` suffix for the usual ones.
fn cause(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused (is a broker listening there?)".into(),
        io::ErrorKind::ConnectionReset => "connection reset by the broker".into(),
        io::ErrorKind::UnexpectedEof => "the broker closed the connection".into(),
        io::ErrorKind::HostUnreachable => "host unreachable".into(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".into(),
        _ => e.to_string(),
    }
}

/// A Kafka error code as Kafka spells it, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
pub fn code_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(c)) => format!("error code {c}"),
        Some(e) => screaming_snake(&format!("{e:?}")),
    }
}

/// `UnknownTopicOrPartition` → `UNKNOWN_TOPIC_OR_PARTITION`.
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

/// What a refused operation was about, for its message.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    Topic(&'a str),
    Group(&'a str),
}

impl std::fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Topic(t) => write!(f, "topic `{t}`"),
            Subject::Group(g) => write!(f, "group `{g}`"),
        }
    }
}

// Kafka error codes given words below.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const INVALID_GROUP_ID: i16 = 24;
const TOPIC_ALREADY_EXISTS: i16 = 36;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_REPLICATION_FACTOR: i16 = 38;
const INVALID_CONFIG: i16 = 40;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;

/// The broker's refusal of an operation on `subject`, in words where the
/// code has them, else the Kafka error name; the broker's own message
/// follows where it adds something.
pub fn refusal(api: &'static str, code: i16, subject: Subject<'_>, broker_message: Option<&str>) -> AdminError {
    let detail = broker_message.filter(|m| !m.trim().is_empty()).map(|m| format!(": {m}")).unwrap_or_default();
    let message = match (code, subject) {
        (TOPIC_ALREADY_EXISTS, Subject::Topic(t)) => format!("topic `{t}` already exists"),
        (UNKNOWN_TOPIC_OR_PARTITION, Subject::Topic(t)) => format!("unknown topic `{t}`"),
        (INVALID_TOPIC_EXCEPTION, Subject::Topic(t)) => format!("invalid topic name `{t}`{detail}"),
        (INVALID_PARTITIONS, Subject::Topic(t)) => format!("invalid partition count for topic `{t}`{detail}"),
        (INVALID_REPLICATION_FACTOR, Subject::Topic(t)) => {
            format!("invalid replication factor for topic `{t}`{detail}")
        }
        (INVALID_CONFIG, Subject::Topic(t)) => format!("invalid config for topic `{t}`{detail}"),
        (GROUP_ID_NOT_FOUND, Subject::Group(g)) => format!("group `{g}` does not exist"),
        (NON_EMPTY_GROUP, Subject::Group(g)) => format!("group `{g}` still has active members; stop them first"),
        (INVALID_GROUP_ID, Subject::Group(g)) => format!("invalid group id `{g}`{detail}"),
        _ => format!("{api} for {subject} failed: {}{detail}", code_name(code)),
    };
    AdminError::Broker { api, code, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_are_kafkas_spelling() {
        assert_eq!(code_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(code_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(code_name(9999), "error code 9999");
    }

    #[test]
    fn refusals_without_words_name_the_code_and_keep_the_broker_message() {
        let e = refusal("CreateTopics", 42, Subject::Topic("t"), Some("bad request"));
        assert_eq!(e.to_string(), "CreateTopics for topic `t` failed: INVALID_REQUEST: bad request");
        assert_eq!(e.exit_code(), EXIT_FAILED);
        let e = refusal("CreateTopics", TOPIC_ALREADY_EXISTS, Subject::Topic("t"), Some("exists"));
        assert_eq!(e.to_string(), "topic `t` already exists");
    }
}
