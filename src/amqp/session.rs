//! A connection from its first byte to its last: the protocol header, the
//! handshake (start, start-ok with PLAIN or AMQPLAIN, tune, tune-ok, open),
//! then frames read one after the other and handed to the channel they
//! belong to, heartbeats both ways, closes in both directions, and the
//! cleanup when the connection goes (consumers cancelled, unacknowledged
//! messages requeued, exclusive queues deleted).

use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::Duration;

use amq_protocol::protocol::{channel, connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use futures_lite::{AsyncRead, AsyncWrite};

use super::broker::Broker;
use super::channel::Channel;
use super::codec::{method_frame, parse_method, short, CodecError};
use super::codes;
use super::connection::{heartbeat_loop, write_loop, AmqpError, ClientCaps, Conn, Tuned};
use super::definitions::{Change, VHOST};
use super::frame::{
    parse_head, FrameHead, FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD, FRAME_MIN_BYTES,
    PROTOCOL_HEADER,
};
use super::handlers::{self, Fault};
use super::io::{FrameSink, FrameSource};
use crate::runtime::task;

/// Time allowed for the peer's close-ok after this side sent connection.close.
const CLOSE_OK_TIMEOUT: Duration = Duration::from_secs(3);
/// The one user (and what a publisher's user-id property must say).
pub const USER: &str = "guest";
const PASSWORD: &str = "guest";

/// Why a connection ended before or during its handshake.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake not finished within {0:?}")]
    TimedOut(Duration),
    #[error("protocol header {0:?} is not AMQP 0-9-1")]
    BadHeader([u8; 8]),
    #[error("{}", .0.reply_text())]
    Refused(AmqpError),
    #[error("closed by the peer")]
    Closed,
}

/// Serves one connection until it ends. `fd` is the socket (for `writev`).
pub async fn serve<R, W>(broker: Rc<Broker>, reader: R, writer: W, fd: Option<RawFd>, peer: String)
where
    R: AsyncRead + Unpin + 'static,
    W: AsyncWrite + Unpin + 'static,
{
    let mut src = FrameSource::new(reader);
    let mut sink = FrameSink::new(writer, fd);
    let limit = broker.config.handshake_timeout;
    let handshake = task::timeout(limit, handshake(&broker, &mut src, &mut sink)).await;
    let (tuned, caps) = match handshake {
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            tracing::info!(%peer, error = %e, "AMQP handshake failed");
            return;
        }
        None => {
            tracing::info!(%peer, error = %HandshakeError::TimedOut(limit), "AMQP handshake failed");
            return;
        }
    };
    let (conn, rx) = Conn::new(broker.clone(), peer, tuned, caps);
    tracing::debug!(conn = conn.id, peer = %conn.peer, ?tuned, "AMQP connection open");
    let writer = task::spawn_joinable(write_loop(conn.clone(), rx, sink));
    task::spawn(heartbeat_loop(conn.clone()));
    conn.sync_blocked().await;
    let end = read_loop(&conn, &mut src).await;
    if let Err(e) = end {
        tracing::debug!(conn = conn.id, error = %e, "AMQP connection ended");
    }
    cleanup(&conn).await;
    broker.unregister_connection(conn.id);
    conn.stop_writer().await;
    drop(src);
    let _ = writer.join().await;
}

/// Consumers cancelled, messages requeued, exclusive queues deleted.
async fn cleanup(conn: &Rc<Conn>) {
    conn.release_all().await;
    let exclusive: Vec<String> = std::mem::take(&mut *conn.exclusive_queues.borrow_mut()).into_iter().collect();
    for name in exclusive {
        if let Err(e) = conn.broker.change(Change::DeleteQueue { name: name.clone() }).await {
            tracing::warn!(queue = %name, error = %e, "deleting an exclusive queue failed");
        }
    }
}

fn server_properties() -> FieldTable {
    let mut caps = FieldTable::default();
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
    ] {
        caps.insert(cap.into(), AMQPValue::Boolean(true));
    }
    let mut p = FieldTable::default();
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    p.insert("product".into(), text("ringmq"));
    p.insert("version".into(), text(env!("CARGO_PKG_VERSION")));
    p.insert("platform".into(), text("Rust"));
    p.insert("information".into(), text("ringmq: Kafka and AMQP 0-9-1 on one durable log"));
    p.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    p
}

/// Reads one method frame during the handshake (channel 0).
async fn handshake_method<R: AsyncRead + Unpin>(
    src: &mut FrameSource<R>,
    frame_max: u32,
) -> Result<AMQPClass, HandshakeError> {
    loop {
        let head = src.read_array::<7>().await?.ok_or(HandshakeError::Closed)?;
        let h = parse_head(&head, frame_max)
            .map_err(|e| HandshakeError::Refused(AmqpError::new(e.reply_code(), e.to_string())))?;
        let payload = src.read_bytes(h.size as usize).await?;
        let end = src.read_array::<1>().await?.ok_or(HandshakeError::Closed)?;
        if end[0] != FRAME_END {
            return Err(HandshakeError::Refused(AmqpError::new(codes::FRAME_ERROR, "bad frame end")));
        }
        match h.kind {
            FRAME_HEARTBEAT => continue,
            FRAME_METHOD if h.channel == 0 => {
                return parse_method(&payload)
                    .map_err(|e| HandshakeError::Refused(AmqpError::new(e.reply_code(), e.to_string())));
            }
            _ => {
                return Err(HandshakeError::Refused(AmqpError::new(
                    codes::UNEXPECTED_FRAME,
                    "expected a connection method",
                )))
            }
        }
    }
}

/// Checks start-ok's credentials; `Ok(caps)` when they are guest/guest.
fn authenticate(ok: &connection::StartOk) -> Result<ClientCaps, AmqpError> {
    let response = ok.response.as_bytes();
    let (user, password) = match ok.mechanism.as_str() {
        "PLAIN" => {
            let mut parts = response.split(|&b| b == 0);
            let _authzid = parts.next();
            (parts.next().unwrap_or_default().to_vec(), parts.next().unwrap_or_default().to_vec())
        }
        "AMQPLAIN" => {
            // A field table without its length prefix.
            let mut framed = (response.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(response);
            let table =
                amq_protocol::types::parsing::parse_field_table(&framed[..]).map(|(_, t)| t).unwrap_or_default();
            let get = |k: &str| match table.inner().get(k) {
                Some(AMQPValue::LongString(s)) => s.as_bytes().to_vec(),
                Some(AMQPValue::ShortString(s)) => s.as_str().as_bytes().to_vec(),
                _ => Vec::new(),
            };
            (get("LOGIN"), get("PASSWORD"))
        }
        other => {
            return Err(AmqpError::new(
                codes::ACCESS_REFUSED,
                format!("unsupported authentication mechanism '{other}'"),
            ));
        }
    };
    if user != USER.as_bytes() || password != PASSWORD.as_bytes() {
        return Err(AmqpError::new(
            codes::ACCESS_REFUSED,
            format!(
                "Login was refused using authentication mechanism {}. For details see the broker logfile.",
                ok.mechanism.as_str()
            ),
        ));
    }
    let caps = match ok.client_properties.inner().get("capabilities") {
        Some(AMQPValue::FieldTable(t)) => t.clone(),
        _ => FieldTable::default(),
    };
    let flag = |k: &str| matches!(caps.inner().get(k), Some(AMQPValue::Boolean(true)));
    Ok(ClientCaps {
        consumer_cancel_notify: flag("consumer_cancel_notify"),
        connection_blocked: flag("connection.blocked"),
    })
}

async fn refuse<W: AsyncWrite + Unpin>(sink: &mut FrameSink<W>, e: AmqpError, method: &AMQPClass) -> HandshakeError {
    let e = e.on(method);
    let close = AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
        reply_code: e.code,
        reply_text: short(&e.reply_text()),
        class_id: e.class_id,
        method_id: e.method_id,
    }));
    let _ = sink.write_chunks(&[method_frame(0, &close)]).await;
    HandshakeError::Refused(e)
}

fn negotiate(server: u32, client: u32) -> u32 {
    match (server, client) {
        (0, c) => c,
        (s, 0) => s,
        (s, c) => s.min(c),
    }
}

async fn handshake<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    broker: &Broker,
    src: &mut FrameSource<R>,
    sink: &mut FrameSink<W>,
) -> Result<(Tuned, ClientCaps), HandshakeError> {
    let header = src.read_array::<8>().await?.ok_or(HandshakeError::Closed)?;
    if header != PROTOCOL_HEADER {
        let _ = sink.write_chunks(&[bytes::Bytes::from_static(&PROTOCOL_HEADER)]).await;
        return Err(HandshakeError::BadHeader(header));
    }
    let config = &broker.config;
    let start = AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
        version_major: 0,
        version_minor: 9,
        server_properties: server_properties(),
        mechanisms: LongString::from("PLAIN AMQPLAIN"),
        locales: LongString::from("en_US"),
    }));
    sink.write_chunks(&[method_frame(0, &start)]).await?;
    let m = handshake_method(src, config.frame_max).await?;
    let AMQPClass::Connection(connection::AMQPMethod::StartOk(ok)) = &m else {
        return Err(refuse(sink, AmqpError::new(codes::COMMAND_INVALID, "expected connection.start-ok"), &m).await);
    };
    let caps = match authenticate(ok) {
        Ok(c) => c,
        Err(e) => return Err(refuse(sink, e, &m).await),
    };
    let tune = AMQPClass::Connection(connection::AMQPMethod::Tune(connection::Tune {
        channel_max: config.channel_max,
        frame_max: config.frame_max,
        heartbeat: config.heartbeat_s,
    }));
    sink.write_chunks(&[method_frame(0, &tune)]).await?;
    let m = handshake_method(src, config.frame_max).await?;
    let AMQPClass::Connection(connection::AMQPMethod::TuneOk(t)) = &m else {
        return Err(refuse(sink, AmqpError::new(codes::COMMAND_INVALID, "expected connection.tune-ok"), &m).await);
    };
    let frame_max = negotiate(config.frame_max, t.frame_max);
    if frame_max < FRAME_MIN_BYTES || t.frame_max > config.frame_max {
        let e = AmqpError::new(
            codes::NOT_ALLOWED,
            format!("frame_max={} outside [{FRAME_MIN_BYTES}, {}]", t.frame_max, config.frame_max),
        );
        return Err(refuse(sink, e, &m).await);
    }
    if t.channel_max > config.channel_max {
        let e = AmqpError::new(
            codes::NOT_ALLOWED,
            format!(
                "negotiated channel_max = {} is higher than the maximum allowed value ({})",
                t.channel_max, config.channel_max
            ),
        );
        return Err(refuse(sink, e, &m).await);
    }
    let channel_max = negotiate(u32::from(config.channel_max), u32::from(t.channel_max)) as u16;
    let tuned = Tuned { frame_max, channel_max, heartbeat_s: t.heartbeat };
    let m = handshake_method(src, frame_max).await?;
    let AMQPClass::Connection(connection::AMQPMethod::Open(open)) = &m else {
        return Err(refuse(sink, AmqpError::new(codes::COMMAND_INVALID, "expected connection.open"), &m).await);
    };
    if open.virtual_host.as_str() != VHOST {
        let e = AmqpError::new(codes::NOT_ALLOWED, format!("vhost {} not found", open.virtual_host));
        return Err(refuse(sink, e, &m).await);
    }
    let open_ok = AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {}));
    sink.write_chunks(&[method_frame(0, &open_ok)]).await?;
    Ok((tuned, caps))
}

/// Reads frames until the connection ends; `Ok` for an orderly close.
async fn read_loop<R: AsyncRead + Unpin>(conn: &Rc<Conn>, src: &mut FrameSource<R>) -> Result<(), String> {
    let heartbeat = u64::from(conn.tuned.heartbeat_s);
    let silence_max = (heartbeat > 0).then(|| Duration::from_secs(heartbeat * 2));
    loop {
        let head = match (conn.closing.get(), silence_max) {
            (true, _) => task::timeout(CLOSE_OK_TIMEOUT, src.read_array::<7>())
                .await
                .ok_or_else(|| "no close-ok from the peer".to_string())?,
            (false, Some(limit)) => match task::timeout(limit, src.read_array::<7>()).await {
                Some(r) => r,
                None => {
                    let e = AmqpError::new(
                        codes::CONNECTION_FORCED,
                        format!("missed heartbeats from client, timeout: {heartbeat}s"),
                    );
                    tracing::info!(conn = conn.id, peer = %conn.peer, "{}", e.reply_text());
                    return Err(e.reply_text());
                }
            },
            (false, None) => src.read_array::<7>().await,
        };
        let head = head.map_err(|e| e.to_string())?;
        let Some(head) = head else { return Ok(()) };
        let h = match parse_head(&head, conn.tuned.frame_max) {
            Ok(h) => h,
            Err(e) => {
                conn.close_connection(&AmqpError::new(e.reply_code(), e.to_string())).await;
                return Err(e.to_string());
            }
        };
        match on_frame(conn, h, src).await {
            Ok(Flow::Continue) => {}
            Ok(Flow::Stop) => return Ok(()),
            Err(Fault::Io(e)) => return Err(e.to_string()),
            Err(Fault::Amqp(e)) => {
                if e.is_hard() || h.channel == 0 {
                    conn.close_connection(&e).await;
                } else {
                    conn.close_channel(h.channel, &e).await;
                }
            }
        }
    }
}

enum Flow {
    Continue,
    Stop,
}

/// One frame whose head was read: its payload, end byte and meaning.
async fn on_frame<R: AsyncRead + Unpin>(
    conn: &Rc<Conn>,
    h: FrameHead,
    src: &mut FrameSource<R>,
) -> Result<Flow, Fault> {
    let size = h.size as usize;
    let open = conn.channels.borrow().get(&h.channel).map(|c| !c.closing);
    // While this side waits for a close-ok, everything else is dropped.
    let dropped = (conn.closing.get() && (h.kind != FRAME_METHOD || h.channel != 0))
        || (h.channel != 0 && open == Some(false) && h.kind != FRAME_METHOD);
    if h.kind == FRAME_BODY && !dropped && open == Some(true) {
        handlers::on_body(conn, h.channel, size, src).await?;
        handlers::within(conn, expect_end(src)).await??;
        return Ok(Flow::Continue);
    }
    let payload = handlers::within(conn, src.read_bytes(size)).await??;
    handlers::within(conn, expect_end(src)).await??;
    if dropped {
        return Ok(Flow::Continue);
    }
    match h.kind {
        FRAME_HEARTBEAT => Ok(Flow::Continue),
        FRAME_METHOD => {
            let method =
                parse_method(&payload).map_err(|e: CodecError| AmqpError::new(e.reply_code(), e.to_string()))?;
            if h.channel == 0 {
                return on_connection_method(conn, method).await;
            }
            on_channel_frame_method(conn, h.channel, open, method).await?;
            Ok(Flow::Continue)
        }
        FRAME_HEADER => {
            if open != Some(true) {
                return Err(AmqpError::new(
                    codes::CHANNEL_ERROR,
                    format!("expected 'channel.open' for channel {}", h.channel),
                )
                .into());
            }
            handlers::on_header(conn, h.channel, payload).await?;
            Ok(Flow::Continue)
        }
        _ => {
            Err(AmqpError::new(codes::CHANNEL_ERROR, format!("expected 'channel.open' for channel {}", h.channel))
                .into())
        }
    }
}

async fn expect_end<R: AsyncRead + Unpin>(src: &mut FrameSource<R>) -> Result<(), Fault> {
    let end = src.read_array::<1>().await?.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
    if end[0] != FRAME_END {
        return Err(AmqpError::new(codes::FRAME_ERROR, format!("frame end byte {:#04x}", end[0])).into());
    }
    Ok(())
}

async fn on_connection_method(conn: &Rc<Conn>, method: AMQPClass) -> Result<Flow, Fault> {
    match &method {
        AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
            tracing::debug!(conn = conn.id, code = c.reply_code, text = %c.reply_text, "client closed the connection");
            conn.release_all().await;
            conn.send_method(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {}))).await;
            Ok(Flow::Stop)
        }
        AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) if conn.closing.get() => Ok(Flow::Stop),
        _ if conn.closing.get() => Ok(Flow::Continue),
        AMQPClass::Connection(connection::AMQPMethod::Blocked(_) | connection::AMQPMethod::Unblocked(_)) => {
            Ok(Flow::Continue)
        }
        AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(_)) => {
            let ok = AMQPClass::Connection(connection::AMQPMethod::UpdateSecretOk(connection::UpdateSecretOk {}));
            conn.send_method(0, ok).await;
            Ok(Flow::Continue)
        }
        _ => Err(AmqpError::new(codes::COMMAND_INVALID, "unexpected method on channel 0").on(&method).into()),
    }
}

/// A method frame on a channel other than 0.
async fn on_channel_frame_method(
    conn: &Rc<Conn>,
    ch: u16,
    open: Option<bool>,
    method: AMQPClass,
) -> Result<(), AmqpError> {
    match (&method, open) {
        (AMQPClass::Channel(channel::AMQPMethod::Open(_)), None) => {
            if ch > conn.tuned.channel_max {
                return Err(AmqpError::new(
                    codes::NOT_ALLOWED,
                    format!("channel {ch} above channel_max {}", conn.tuned.channel_max),
                )
                .on(&method));
            }
            conn.channels.borrow_mut().insert(ch, Channel::new(ch, conn.broker.shard.id, conn.id));
            let ok = AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {}));
            conn.send_method(ch, ok).await;
            Ok(())
        }
        (AMQPClass::Channel(channel::AMQPMethod::Open(_)), Some(_)) => {
            Err(AmqpError::new(codes::CHANNEL_ERROR, format!("second 'channel.open' seen on channel {ch}")).on(&method))
        }
        (AMQPClass::Channel(channel::AMQPMethod::Close(_)), Some(_)) => {
            handlers::close_channel_by_client(conn, ch).await;
            Ok(())
        }
        (AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)), Some(false)) => {
            conn.channels.borrow_mut().remove(&ch);
            Ok(())
        }
        // A closing channel drops everything but close and close-ok.
        (_, Some(false)) => Ok(()),
        (_, None) => {
            Err(AmqpError::new(codes::CHANNEL_ERROR, format!("expected 'channel.open' for channel {ch}")).on(&method))
        }
        (_, Some(true)) => {
            let content_pending = conn.channels.borrow().get(&ch).is_some_and(|c| c.content.is_some());
            if content_pending {
                return Err(AmqpError::new(
                    codes::UNEXPECTED_FRAME,
                    format!("expected content frames on channel {ch}, got a method"),
                )
                .on(&method));
            }
            handlers::on_method(conn, ch, method).await
        }
    }
}
