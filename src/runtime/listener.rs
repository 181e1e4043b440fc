//! The ports the shards accept connections on. The runtime knows no
//! protocol: its caller (`crate::server`) lists each listener with the
//! handler its connections go to, and the runtime binds, accepts and hands
//! each accepted stream to that handler on the accepting shard.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};

use super::shard::Shard;
use super::StartError;

/// One accepted connection being served, on the shard that accepted it.
pub type Connection = Pin<Box<dyn Future<Output = ()>>>;

/// What serves a protocol's connections: given the accepting shard and the
/// stream, the task that serves it to the end. Shared by every shard (so
/// `Send + Sync`); it may carry settings (a TLS configuration, say).
pub type Handler = Arc<dyn Fn(Rc<Shard>, TcpStream) -> Connection + Send + Sync>;

/// Which shards accept on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shards {
    /// Every shard, on one port (SO_REUSEPORT): the kernel spreads connections.
    Every,
    /// This shard only.
    One(usize),
}

#[derive(Clone)]
pub struct Listener {
    /// The protocol served, for errors and logs (`kafka`, `metrics`).
    pub protocol: &'static str,
    /// Port 0 picks a free port, the same on every shard.
    pub addr: SocketAddr,
    pub shards: Shards,
    pub handler: Handler,
    /// Called once with the address bound, on the shard that bound it first.
    pub announce: Option<fn(SocketAddr)>,
    /// Named in the ready line as `NAME=HOST:PORT` after the client
    /// listener (`amqp=127.0.0.1:5672`).
    pub ready_name: Option<&'static str>,
}

impl Listener {
    pub fn on(&self, shard: usize) -> bool {
        match self.shards {
            Shards::Every => true,
            Shards::One(s) => s == shard,
        }
    }
}

/// A listener bound on this shard.
pub(super) struct Bound {
    pub listener: TcpListener,
    pub addr: SocketAddr,
    pub handler: Handler,
}

/// Binds every listener this shard accepts on; `bound[i]` is `listeners[i]`
/// or None when this shard does not accept on it.
pub(super) fn bind(shard: usize, listeners: &[Listener]) -> Result<Vec<Option<Bound>>, StartError> {
    let mut out = Vec::with_capacity(listeners.len());
    for l in listeners {
        if !l.on(shard) {
            out.push(None);
            continue;
        }
        let fail = |e: std::io::Error| StartError::Listen { addr: l.addr, message: e.to_string() };
        let listener = TcpListener::bind(l.addr).map_err(|e| fail(e.into()))?;
        let addr = listener.local_addr().map_err(|e| fail(e.into()))?;
        let first = match l.shards {
            Shards::Every => shard == super::shard::CATALOG_SHARD,
            Shards::One(_) => true,
        };
        if let (true, Some(announce)) = (first, l.announce) {
            announce(addr);
        }
        out.push(Some(Bound { listener, addr, handler: l.handler.clone() }));
    }
    Ok(out)
}

/// Accepts on every bound listener until dropped, each connection served by
/// its listener's handler in a task of its own.
pub(super) async fn accept_all(shard: Rc<Shard>, bound: Vec<Bound>) {
    let loops = bound.into_iter().map(|b| accept(shard.clone(), b));
    futures_util::future::join_all(loops).await;
}

async fn accept(shard: Rc<Shard>, bound: Bound) {
    loop {
        match bound.listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local((bound.handler)(shard.clone(), stream)).detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// A listener's pending accept, polled again each time something else
    /// wakes the task awaiting it (the shard's accept loops beside its 50 ms
    /// stop check), holds one reference on that task, not one per poll:
    /// 40,000 polls overflowed glommio's i16 reference count and panicked the
    /// shard after ~15 idle minutes (`vendor/glommio/PATCHES.md`, 5).
    #[test]
    fn a_pending_accept_polled_40000_times_keeps_one_waker() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let listener = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                let mut accept = Box::pin(listener.accept());
                for _ in 0..40_000 {
                    assert!(futures_lite::future::poll_once(&mut accept).await.is_none(), "nobody connects");
                }
            })
            .expect("spawn executor")
            .join()
            .expect("the executor thread ends without a panic");
    }
}
