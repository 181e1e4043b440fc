//! The metrics endpoint: a minimal HTTP/1.0 server answering `GET /metrics`
//! (Prometheus text, rendered by `crate::metrics`), `GET /health`, and the
//! queue API under `/api/` (`crate::amqp::admin_api`, which owns it: this
//! module reads the request head, bounded, routes, and writes the answer).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::runtime::listener::{Listener, Shards};
use crate::runtime::shard::{Shard, CATALOG_SHARD};

const MAX_REQUEST_HEAD_BYTES: usize = 8192;

/// The metrics endpoint on `addr`, served by the catalog shard (which asks
/// every other shard for its report at each scrape); uptime counts from `started`.
pub fn listener(addr: SocketAddr, started: Instant) -> Listener {
    Listener {
        protocol: "metrics",
        addr,
        shards: Shards::One(CATALOG_SHARD),
        handler: Arc::new(move |shard, stream| Box::pin(serve(shard, stream, started))),
        announce: Some(|bound| tracing::info!(metrics = %bound, "metrics endpoint listening")),
        ready_name: None,
    }
}

/// One answer: status, content type, body, and the methods a 405 allows.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: String,
    allow: Option<&'static str>,
}

impl Answer {
    fn text(status: u16, body: &str) -> Answer {
        Answer { status, content_type: "text/plain", body: body.to_string(), allow: None }
    }
}

/// Answers one request, then closes the connection.
async fn serve(shard: Rc<Shard>, mut stream: TcpStream, started: Instant) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD_BYTES {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let answer = match request_line(&head) {
        Some((method, target)) => route(&shard, method, target, started).await,
        None => Answer::text(400, "bad request\n"),
    };
    let allow = answer.allow.map(|a| format!("Allow: {a}\r\n")).unwrap_or_default();
    let response = format!(
        "HTTP/1.0 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n{}",
        answer.status,
        reason_phrase(answer.status),
        answer.content_type,
        answer.body.len(),
        answer.body
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.close().await;
}

/// The method and target of the request line (`GET /metrics HTTP/1.0`).
fn request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line = head.split(|&b| b == b'\r' || b == b'\n').next()?;
    let mut parts = std::str::from_utf8(line).ok()?.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    (!method.is_empty() && target.starts_with('/')).then_some((method, target))
}

async fn route(shard: &Rc<Shard>, method: &str, target: &str, started: Instant) -> Answer {
    let path = target.split('?').next().unwrap_or(target);
    match (method, path) {
        ("GET", "/metrics") => {
            let host = crate::metrics::HostGauges {
                uptime: started.elapsed(),
                ..crate::metrics::disk_space(&shard.config.data_dir)
            };
            let mut text = crate::metrics::render(&shard.reports().await, host);
            if let Some(broker) = crate::amqp::broker::Broker::current() {
                text.push_str(&crate::amqp::metrics::render(&crate::amqp::metrics::reports(&broker).await));
            }
            Answer { content_type: "text/plain; version=0.0.4", ..Answer::text(200, &text) }
        }
        ("GET", "/health") => Answer::text(200, "ok\n"),
        (_, p) if p.starts_with(crate::amqp::admin_api::PREFIX) => {
            let r = crate::amqp::admin_api::answer(method, target).await;
            Answer { status: r.status, content_type: "application/json", body: r.body, allow: r.allow }
        }
        _ => Answer::text(404, "not found\n"),
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}
