//! The metrics endpoint: a minimal HTTP/1.0 server answering `GET /metrics`
//! (Prometheus text, rendered by `crate::metrics`) and `GET /health`.

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
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let (status, body) = if line.starts_with(b"GET /metrics") {
        let host = crate::metrics::HostGauges {
            uptime: started.elapsed(),
            ..crate::metrics::disk_space(&shard.config.data_dir)
        };
        let mut text = crate::metrics::render(&shard.reports().await, host);
        if let Some(broker) = crate::amqp::broker::Broker::current() {
            text.push_str(&crate::amqp::metrics::render(&crate::amqp::metrics::reports(&broker).await));
        }
        ("200 OK", text)
    } else if line.starts_with(b"GET /health") {
        ("200 OK", "ok\n".to_string())
    } else {
        ("404 Not Found", "not found\n".to_string())
    };
    let response = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.close().await;
}
