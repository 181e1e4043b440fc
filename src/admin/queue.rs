//! The queue commands' logic, over the broker's HTTP API (`http`): list
//! (`GET /api/queues`), purge (`DELETE /api/queues/%2F/NAME/contents`) and
//! delete (`DELETE /api/queues/%2F/NAME`, with `if-empty` / `if-unused`).
//! Each returns the API's answer as the struct the broker encoded it from
//! (`amqp::admin_api`), or the API's refusal in words.

use serde::de::DeserializeOwned;

use super::error::AdminError;
use super::http::{self, HttpOptions};
use crate::amqp::admin_api::{ApiError, QueueDeleted, QueueInfo, QueuePurged};

/// The vhost in paths: `/`, encoded.
const VHOST_SEGMENT: &str = "%2F";

/// Where the API is and how long to wait for it.
#[derive(Clone, Debug)]
pub struct Api {
    pub addr: String,
    pub opts: HttpOptions,
}

impl Api {
    /// Sends one request; the body of a `200` decoded as `T`, anything else
    /// as the refusal it says.
    fn call<T: DeserializeOwned>(&self, method: &str, target: &str, api: &'static str) -> Result<T, AdminError> {
        let r = http::request(&self.addr, method, target, api, &self.opts)?;
        if r.status != 200 {
            return Err(self.refusal(r.status, &r.body, api));
        }
        serde_json::from_slice(&r.body).map_err(|e| AdminError::Protocol {
            addr: self.addr.clone(),
            api,
            detail: format!("an answer that is not the expected JSON: {e}"),
        })
    }

    /// A non-200 answer in words: the API's reason, or what came back when
    /// it is not the API's error body (another HTTP server at the address).
    fn refusal(&self, status: u16, body: &[u8], api: &'static str) -> AdminError {
        let message = match serde_json::from_slice::<ApiError>(body) {
            Ok(e) if e.error == "amqp_off" => format!(
                "the broker at {} has no AMQP queues: its AMQP listener is off (it was started with --amqp-listen off)",
                self.addr
            ),
            Ok(e) => e.reason.unwrap_or(e.error),
            Err(_) => {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string();
                let hint = if status == 404 { " (is it ringmq's metrics address, `serve --metrics`?)" } else { "" };
                format!("{} answered {status} to {api}{hint}: {text}", self.addr)
            }
        };
        AdminError::Api { status, message }
    }
}

/// A path segment with every byte but RFC 3986's unreserved ones as `%XX`.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn queue_path(name: &str) -> String {
    format!("/api/queues/{VHOST_SEGMENT}/{}", encode_segment(name))
}

/// Every queue, by name.
pub fn list(api: &Api) -> Result<Vec<QueueInfo>, AdminError> {
    let mut queues: Vec<QueueInfo> = api.call("GET", "/api/queues", "GET /api/queues")?;
    queues.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(queues)
}

/// Drops the ready messages of `name`.
pub fn purge(api: &Api, name: &str) -> Result<QueuePurged, AdminError> {
    let target = format!("{}/contents", queue_path(name));
    api.call("DELETE", &target, "DELETE /api/queues/{vhost}/{name}/contents")
}

/// Deletes `name`; refused while it holds messages (`if_empty`) or has
/// consumers (`if_unused`).
pub fn delete(api: &Api, name: &str, if_empty: bool, if_unused: bool) -> Result<QueueDeleted, AdminError> {
    let mut target = queue_path(name);
    let conditions: Vec<&str> =
        [(if_empty, "if-empty=true"), (if_unused, "if-unused=true")].into_iter().filter(|c| c.0).map(|c| c.1).collect();
    if !conditions.is_empty() {
        target.push('?');
        target.push_str(&conditions.join("&"));
    }
    api.call("DELETE", &target, "DELETE /api/queues/{vhost}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_as_one_path_segment() {
        assert_eq!(encode_segment("orders.eu-1_x~"), "orders.eu-1_x~");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_segment("é%?#&"), "%C3%A9%25%3F%23%26");
        assert_eq!(queue_path("/"), "/api/queues/%2F/%2F");
    }

    #[test]
    fn refusals_say_the_apis_reason_or_what_answered() {
        let api = Api {
            addr: "127.0.0.1:9644".into(),
            opts: HttpOptions {
                connect_timeout: std::time::Duration::from_secs(1),
                request_timeout: std::time::Duration::from_secs(1),
            },
        };
        let body = br#"{"error":"not_found","reason":"no queue 'x' in vhost '/'"}"#;
        let e = api.refusal(404, body, "GET /api/queues");
        assert_eq!(e.to_string(), "no queue 'x' in vhost '/'");
        assert_eq!(e.exit_code(), super::super::error::EXIT_FAILED);
        let e = api.refusal(503, br#"{"error":"amqp_off"}"#, "GET /api/queues");
        assert!(e.to_string().contains("--amqp-listen off"), "{e}");
        let e = api.refusal(404, b"not found\n", "GET /api/queues");
        assert!(e.to_string().contains("answered 404 to GET /api/queues"), "{e}");
    }
}
