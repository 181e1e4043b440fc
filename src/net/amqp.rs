//! The AMQP listener's connections: admission against `max-connections`
//! (shared with the Kafka listener's count), the socket split into a reader
//! and a writer half, and the AMQP session run over them.

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use crate::amqp::broker::Broker;

/// One half of a stream shared by the reader and the writer on one thread;
/// each borrow lasts a single poll.
struct Half(Rc<RefCell<TcpStream>>);

impl AsyncRead for Half {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for Half {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_close(cx)
    }
}

/// Serves one AMQP client until it goes.
pub async fn serve_amqp_connection(broker: Rc<Broker>, stream: TcpStream) {
    let Some(_slot) = super::connection::ConnectionSlot::admit(&broker.shard, &stream) else { return };
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
