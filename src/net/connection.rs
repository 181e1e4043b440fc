//! One Kafka client connection: a reader that frames requests and starts a handler
//! task for each, and a writer that sends the replies in request order. At
//! most `max_in_flight_per_connection` requests per connection are being
//! handled; beyond that the reader stops reading (back-pressure through TCP).
//! A frame whose size arrived must arrive whole within `frame_timeout`.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::net::TcpStream;

use super::framing::{read_frame_body, read_frame_size, FrameError};
use crate::kafka::{self, Reply};
use crate::runtime::listener::{Listener, Shards};
use crate::runtime::shard::{bump, Shard};

/// A half of a stream shared by one reader and one writer on the same
/// thread; each borrow lasts a single poll.
pub(super) struct Half(pub(super) Rc<RefCell<TcpStream>>);

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

/// The Kafka client listener on `addr`: every shard accepts on it.
pub fn listener(addr: SocketAddr) -> Listener {
    Listener {
        protocol: "kafka",
        addr,
        shards: Shards::Every,
        handler: Arc::new(|shard, stream| Box::pin(serve_connection(shard, stream))),
        announce: None,
        ready_name: None,
    }
}

/// Client connections open over all shards and listeners (bounded by
/// `max_connections`).
static OPEN_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// A connection's place under `max_connections`, given back when dropped.
pub struct ConnectionSlot {
    shard: Rc<Shard>,
}

impl ConnectionSlot {
    /// Counts a new connection in, or closes it when the broker is full.
    pub fn admit(shard: &Rc<Shard>, stream: &TcpStream) -> Option<ConnectionSlot> {
        bump(&shard.counters.connections_accepted, 1);
        if OPEN_CONNECTIONS.fetch_add(1, Ordering::Relaxed) >= shard.config.max_connections {
            OPEN_CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
            bump(&shard.counters.connections_refused, 1);
            tracing::warn!(peer = ?stream.peer_addr().ok(), max = shard.config.max_connections, "too many connections; closing the new one");
            shut_down(stream.as_raw_fd());
            return None;
        }
        bump(&shard.counters.connections_open, 1);
        Some(ConnectionSlot { shard: shard.clone() })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let open = &self.shard.counters.connections_open;
        open.set(open.get().saturating_sub(1));
        OPEN_CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

pub async fn serve_connection(shard: Rc<Shard>, stream: TcpStream) {
    let Some(_slot) = ConnectionSlot::admit(&shard, &stream) else { return };
    serve(&shard, stream).await;
}

/// A request being handled, and when it was read if it is a Produce (its
/// latency is recorded once the response is written).
type InFlight = (glommio::task::JoinHandle<Reply>, Option<Instant>);

async fn serve(shard: &Rc<Shard>, stream: TcpStream) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let stream = Rc::new(RefCell::new(stream));
    let (tx, rx) = local_channel::new_bounded::<InFlight>(shard.config.max_in_flight_per_connection);
    let writer_task = glommio::spawn_local(write_replies(shard.clone(), Half(stream.clone()), rx, peer, fd));
    let mut reader = Half(stream.clone());
    loop {
        let (handle, produce_read_at, framing_broken) = match next_frame(shard, &mut reader).await {
            Ok(Some(frame)) => {
                let is_produce = kafka::frame_api_key(&frame) == Some(kafka_protocol::messages::ApiKey::Produce);
                let shard = shard.clone();
                (
                    glommio::spawn_local(async move { kafka::handle(&shard, frame).await }).detach(),
                    is_produce.then(Instant::now),
                    false,
                )
            }
            Ok(None) => break,
            Err(e) => {
                // Earlier requests are still answered; then the writer closes.
                let reason = e.to_string();
                (glommio::spawn_local(async move { Reply::Close(reason) }).detach(), None, true)
            }
        };
        bump(&shard.counters.requests_in_flight, 1);
        if tx.send((handle, produce_read_at)).await.is_err() || framing_broken {
            break;
        }
    }
    drop(tx);
    writer_task.await;
    shut_down(fd);
}

/// The next request frame; None when the peer closed between frames. A peer
/// that announced a frame must deliver it within `frame_timeout`.
async fn next_frame(shard: &Shard, reader: &mut Half) -> Result<Option<Bytes>, FrameError> {
    let frame_timeout = shard.config.frame_timeout;
    let Some(size) = read_frame_size(reader, shard.config.max_request_bytes).await? else {
        return Ok(None);
    };
    let body = futures_lite::future::or(async { Some(read_frame_body(reader, size).await) }, async {
        glommio::timer::Timer::new(frame_timeout).await;
        None
    })
    .await;
    match body {
        Some(result) => result.map(Some),
        None => Err(FrameError::TimedOut { timeout: frame_timeout, got: 0, want: size }),
    }
}

/// Writes each reply in request order, until the reader stops or a reply
/// closes the connection.
async fn write_replies(shard: Rc<Shard>, mut writer: Half, rx: LocalReceiver<InFlight>, peer: String, fd: RawFd) {
    let counters = &shard.counters;
    while let Some((handle, produce_read_at)) = rx.recv().await {
        let reply = handle.await.unwrap_or_else(|| Reply::Close("request handler was cancelled".into()));
        counters.requests_in_flight.set(counters.requests_in_flight.get().saturating_sub(1));
        match reply {
            Reply::Frame(chunks) => {
                for chunk in chunks {
                    if let Err(e) = writer.write_all(&chunk).await {
                        tracing::debug!(peer = %peer, error = %e, "write failed; closing");
                        shut_down(fd);
                        return;
                    }
                }
                if let Some(read_at) = produce_read_at {
                    counters.produce_latency_us.borrow_mut().record(read_at.elapsed().as_micros() as u64);
                }
            }
            Reply::Nothing => {}
            Reply::Close(reason) => {
                bump(&counters.connections_closed_on_bad_input, 1);
                tracing::warn!(peer = %peer, %reason, "closing connection");
                // Wakes the reader's pending read with end-of-stream.
                shut_down(fd);
                return;
            }
        }
    }
}

/// Shuts the socket down in both directions, synchronously (no borrow of the
/// stream is held across an await: the reader may be polling it).
fn shut_down(fd: RawFd) {
    // SAFETY: `fd` belongs to the stream, which outlives every call here.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}
