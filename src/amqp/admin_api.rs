//! The queue part of the HTTP API on the metrics listener, with the paths,
//! field names and error bodies of RabbitMQ's management API so that people
//! and scripts recognise them:
//!
//! - `GET /api/queues` (and `GET /api/queues/%2F`): every queue, as a JSON
//!   array of `QueueInfo`;
//! - `DELETE /api/queues/%2F/NAME/contents`: purge, `QueuePurged`;
//! - `DELETE /api/queues/%2F/NAME[?if-empty=true][&if-unused=true]`:
//!   delete, `QueueDeleted`.
//!
//! Failures answer `ApiError` (`not_found` 404, `bad_request` 400,
//! `method_not_allowed` 405, `internal_error` 500, `amqp_off` 503 when the
//! broker runs with `--amqp-listen off`). NAME is percent-decoded (any byte
//! may be escaped, the result must be UTF-8); the only vhost is `/` (`%2F`).
//!
//! This module owns the paths, the JSON and the operations; the listener
//! (`net::metrics_http`) only reads the request line and writes the answer.
//! Counts come from each queue's owner shard (`metrics::reports`), flags
//! from the definitions; deletion and purge go through the same `Broker`
//! calls as queue.delete and queue.purge. The types are shared with the
//! `ringmq queue` commands, which read these answers.

use std::collections::HashMap;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use super::broker::{Broker, DeleteConditions};
use super::codec::AMQPValue;
use super::codes;
use super::definitions::{DefinitionError, QueueDef, VHOST};

/// The path prefix this module answers.
pub const PREFIX: &str = "/api/";

/// One queue as `GET /api/queues` lists it (RabbitMQ's field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueInfo {
    pub name: String,
    pub vhost: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub exclusive: bool,
    /// `classic` or `quorum` (`x-queue-type`).
    #[serde(rename = "type")]
    pub kind: String,
    pub messages_ready: u64,
    pub messages_unacknowledged: u64,
    /// `messages_ready + messages_unacknowledged`.
    pub messages: u64,
    pub consumers: u32,
    /// The shard that owns the queue.
    pub shard: usize,
}

/// The answer to a purge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePurged {
    pub vhost: String,
    pub name: String,
    pub messages_purged: u64,
}

/// The answer to a delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDeleted {
    pub vhost: String,
    pub name: String,
    pub messages_deleted: u64,
}

/// The body of every answer that is not 200.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An answer: status code, JSON body, and for a 405 the allowed methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    pub status: u16,
    pub body: String,
    pub allow: Option<&'static str>,
}

impl ApiResponse {
    fn ok<T: Serialize>(value: &T) -> ApiResponse {
        match serde_json::to_string(value) {
            Ok(body) => ApiResponse { status: 200, body, allow: None },
            Err(e) => ApiResponse::error(500, "internal_error", format!("cannot encode the answer: {e}")),
        }
    }

    fn error(status: u16, error: &str, reason: impl Into<String>) -> ApiResponse {
        let body = ApiError { error: error.to_string(), reason: Some(reason.into()) };
        // Two string fields: encoding cannot fail.
        let body = serde_json::to_string(&body).unwrap_or_else(|_| format!("{{\"error\":\"{error}\"}}"));
        ApiResponse { status, body, allow: None }
    }

    fn not_allowed(allow: &'static str) -> ApiResponse {
        ApiResponse { allow: Some(allow), ..ApiResponse::error(405, "method_not_allowed", format!("use {allow}")) }
    }

    fn not_found(reason: impl Into<String>) -> ApiResponse {
        ApiResponse::error(404, "not_found", reason)
    }

    fn bad_request(reason: impl Into<String>) -> ApiResponse {
        ApiResponse::error(400, "bad_request", reason)
    }
}

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Queues,
    Queue(String),
    Contents(String),
}

/// Answers `method` on `target` (path and query, as in the request line).
pub async fn answer(method: &str, target: &str) -> ApiResponse {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let route = match route(path) {
        Ok(r) => r,
        Err(response) => return response,
    };
    let allowed = match route {
        Route::Queues => "GET",
        Route::Queue(_) | Route::Contents(_) => "DELETE",
    };
    if method != allowed {
        return ApiResponse::not_allowed(allowed);
    }
    let Some(broker) = Broker::current() else {
        return ApiResponse::error(503, "amqp_off", "the AMQP listener is off (--amqp-listen off)");
    };
    match route {
        Route::Queues => ApiResponse::ok(&list(&broker).await),
        Route::Contents(name) => purge(&broker, name).await,
        Route::Queue(name) => match delete_conditions(query) {
            Ok(when) => delete(&broker, name, when).await,
            Err(response) => response,
        },
    }
}

/// `/api/queues[/]`, `/api/queues/VHOST`, `/api/queues/VHOST/NAME[/contents]`.
fn route(path: &str) -> Result<Route, ApiResponse> {
    let no_path = || ApiResponse::not_found(format!("no API path '{path}'"));
    let rest = path.strip_prefix("/api/queues").ok_or_else(no_path)?;
    let rest = match rest {
        "" | "/" => return Ok(Route::Queues),
        r => r.strip_prefix('/').ok_or_else(no_path)?,
    };
    let mut parts = rest.split('/');
    let vhost = decode(parts.next().unwrap_or_default())?;
    if vhost != VHOST {
        return Err(ApiResponse::not_found(format!("no vhost '{vhost}'")));
    }
    let route = match (parts.next(), parts.next(), parts.next()) {
        (None, ..) | (Some(""), None, _) => Route::Queues,
        (Some(name), None, _) => Route::Queue(decode(name)?),
        (Some(name), Some("contents"), None) => Route::Contents(decode(name)?),
        _ => return Err(no_path()),
    };
    Ok(route)
}

/// Percent-decoding of one path segment or query part: `%XX` is the byte
/// XX, anything else stands for itself; the result must be UTF-8.
fn decode(s: &str) -> Result<String, ApiResponse> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or_else(|| {
                ApiResponse::bad_request(format!(
                    "bad percent-encoding in '{s}': '%' must be followed by two hex digits"
                ))
            })?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ApiResponse::bad_request(format!("'{s}' does not decode to UTF-8")))
}

/// `if-empty` and `if-unused` from a query string (`true` or `false`; other
/// parameters are ignored, as RabbitMQ does).
fn delete_conditions(query: &str) -> Result<DeleteConditions, ApiResponse> {
    let mut when = DeleteConditions::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let flag = match decode(key)?.as_str() {
            "if-empty" => &mut when.if_empty,
            "if-unused" => &mut when.if_unused,
            _ => continue,
        };
        *flag = match decode(value)?.as_str() {
            "true" => true,
            "false" => false,
            other => return Err(ApiResponse::bad_request(format!("'{key}' must be true or false, not '{other}'"))),
        };
    }
    Ok(when)
}

/// A queue's type as RabbitMQ names it.
fn queue_type(def: &QueueDef) -> String {
    match def.arguments.inner().get("x-queue-type") {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.as_str().to_string(),
        _ => "classic".to_string(),
    }
}

/// Every queue both defined and counted by its owner, by name: a queue
/// declared or deleted while the owners were asked is left out rather than
/// shown with counts it does not have.
async fn list(broker: &Rc<Broker>) -> Vec<QueueInfo> {
    let reports = super::metrics::reports(broker).await;
    let mut counted = HashMap::new();
    for report in &reports {
        for q in &report.queues {
            counted.insert(q.name.as_str(), (report.shard, q));
        }
    }
    // No await below: the definitions stay borrowed only while this runs.
    let defs = broker.definitions();
    let mut out = Vec::with_capacity(defs.queues.len().min(counted.len()));
    for (name, def) in &defs.queues {
        let Some(&(shard, q)) = counted.get(name.as_str()) else { continue };
        out.push(QueueInfo {
            name: name.clone(),
            vhost: VHOST.to_string(),
            durable: def.durable,
            auto_delete: def.auto_delete,
            exclusive: def.exclusive_owner.is_some(),
            kind: queue_type(def),
            messages_ready: q.ready,
            messages_unacknowledged: q.unacked,
            messages: q.ready + q.unacked,
            consumers: q.consumers,
            shard,
        });
    }
    out
}

/// A refusal from the broker as an HTTP answer.
fn refused(e: DefinitionError) -> ApiResponse {
    match e.code {
        codes::NOT_FOUND => ApiResponse::not_found(e.text),
        codes::PRECONDITION_FAILED => ApiResponse::bad_request(e.text),
        _ => ApiResponse::error(500, "internal_error", e.text),
    }
}

fn no_queue(name: &str) -> ApiResponse {
    ApiResponse::not_found(format!("no queue '{name}' in vhost '{VHOST}'"))
}

async fn purge(broker: &Broker, name: String) -> ApiResponse {
    match broker.purge(&name).await {
        Ok(n) => ApiResponse::ok(&QueuePurged { vhost: VHOST.to_string(), name, messages_purged: n }),
        Err(e) => refused(e),
    }
}

async fn delete(broker: &Broker, name: String, when: DeleteConditions) -> ApiResponse {
    if !broker.definitions().queues.contains_key(&name) {
        return no_queue(&name);
    }
    match broker.delete_queue(&name, when).await {
        Ok(outcome) if outcome.changed => {
            ApiResponse::ok(&QueueDeleted { vhost: VHOST.to_string(), name, messages_deleted: outcome.messages })
        }
        // Deleted by someone else since the check above.
        Ok(_) => no_queue(&name),
        Err(e) => refused(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_list_a_queue_or_its_contents() {
        assert_eq!(route("/api/queues"), Ok(Route::Queues));
        assert_eq!(route("/api/queues/"), Ok(Route::Queues));
        assert_eq!(route("/api/queues/%2F"), Ok(Route::Queues));
        assert_eq!(route("/api/queues/%2f/"), Ok(Route::Queues));
        assert_eq!(route("/api/queues/%2F/orders"), Ok(Route::Queue("orders".into())));
        assert_eq!(route("/api/queues/%2F/a%2Fb%20c/contents"), Ok(Route::Contents("a/b c".into())));
        assert_eq!(route("/api/queues/%2F/%C3%A9t%C3%A9"), Ok(Route::Queue("été".into())));
        assert_eq!(route("/api/queues/%2F/%63ontents"), Ok(Route::Queue("contents".into())));
        for bad in ["/api/queuesx", "/api/exchanges", "/api/queues/%2F/a/b", "/api/queues/%2F/a/contents/x"] {
            assert_eq!(route(bad).map_err(|r| r.status), Err(404), "{bad}");
        }
    }

    #[test]
    fn other_vhosts_are_not_found_and_bad_escapes_are_bad_requests() {
        let r = route("/api/queues/prod/q").unwrap_err();
        assert_eq!((r.status, r.body.as_str()), (404, r#"{"error":"not_found","reason":"no vhost 'prod'"}"#));
        assert_eq!(route("/api/queues/%2F/a%2").unwrap_err().status, 400);
        assert_eq!(route("/api/queues/%2F/a%zz").unwrap_err().status, 400);
        assert_eq!(route("/api/queues/%2F/%FF").unwrap_err().status, 400);
        assert_eq!(route("/api/queues/%2F/%").unwrap_err().status, 400);
    }

    #[test]
    fn delete_conditions_come_from_the_query() {
        assert_eq!(delete_conditions(""), Ok(DeleteConditions::default()));
        let both = DeleteConditions { if_empty: true, if_unused: true };
        assert_eq!(delete_conditions("if-empty=true&if-unused=true"), Ok(both));
        assert_eq!(delete_conditions("if-empty=false&x=1&if-unused=true").map(|w| w.if_unused), Ok(true));
        assert_eq!(delete_conditions("if-empty=yes").unwrap_err().status, 400);
    }

    #[test]
    fn answers_use_rabbitmqs_field_names() {
        let q = QueueInfo {
            name: "q".into(),
            vhost: "/".into(),
            durable: true,
            auto_delete: false,
            exclusive: false,
            kind: "quorum".into(),
            messages_ready: 2,
            messages_unacknowledged: 1,
            messages: 3,
            consumers: 1,
            shard: 0,
        };
        let v = serde_json::to_value(&q).unwrap();
        assert_eq!(v["type"], "quorum");
        assert_eq!(v["messages_unacknowledged"], 1);
        assert_eq!(serde_json::from_value::<QueueInfo>(v).unwrap(), q);
        let e = ApiResponse::not_allowed("GET");
        assert_eq!((e.status, e.allow), (405, Some("GET")));
    }
}
