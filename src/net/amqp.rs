//! The AMQP listener's connections: admission against `max-connections`
//! (shared with the Kafka listener's count), the socket split into a reader
//! and a writer half, and the AMQP session run over them.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;

use glommio::net::TcpStream;

use super::connection::{ConnectionSlot, Half};
use crate::amqp::broker::Broker;
use crate::runtime::listener::{Listener, Shards};
use crate::runtime::shard::Shard;

/// The AMQP listener on `addr`: every shard accepts on it.
pub fn listener(addr: SocketAddr) -> Listener {
    Listener {
        protocol: "amqp",
        addr,
        shards: Shards::Every,
        handler: Arc::new(|shard, stream| Box::pin(serve_amqp_connection(shard, stream))),
        announce: None,
        ready_name: Some("amqp"),
    }
}

/// The AMQP broker of each shard: its queues opened before the listener
/// accepts, closed (settles written) at shutdown.
pub fn service(config: crate::amqp::AmqpConfig) -> crate::runtime::Service {
    crate::runtime::Service {
        name: "AMQP broker",
        open: Arc::new(move |shard| {
            let config = config.clone();
            Box::pin(async move {
                let log = shard.config.log.clone();
                let broker = Broker::open(shard, config, &log).await?;
                crate::amqp::broker::spawn_disk_watch(broker);
                Ok(())
            })
        }),
        close: Arc::new(|| {
            Box::pin(async {
                if let Some(b) = Broker::current() {
                    b.close().await;
                }
            })
        }),
    }
}

/// Serves one AMQP client until it goes.
pub async fn serve_amqp_connection(shard: Rc<Shard>, stream: TcpStream) {
    let Some(broker) = Broker::current() else {
        tracing::error!("an AMQP connection on a shard without the AMQP broker; closing it");
        return;
    };
    let Some(_slot) = ConnectionSlot::admit(&shard, &stream) else { return };
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let stream = Rc::new(RefCell::new(stream));
    broker.counters.connections_accepted.set(broker.counters.connections_accepted.get() + 1);
    broker.counters.connections_open.set(broker.counters.connections_open.get() + 1);
    crate::amqp::session::serve(broker.clone(), Half(stream.clone()), Half(stream.clone()), Some(fd), peer).await;
    broker.counters.connections_open.set(broker.counters.connections_open.get().saturating_sub(1));
    // SAFETY: `fd` belongs to `stream`, alive until the end of this function.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}
