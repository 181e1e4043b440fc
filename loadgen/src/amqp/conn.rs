//! One AMQP connection with one channel: TCP connect, the opening
//! handshake (PLAIN login, tune without heartbeats, vhost), channel 1, and
//! synchronous calls for the setup steps (declare, bind, qos, consume,
//! confirm.select). Once set up, producers and consumers take the socket
//! and the `FrameReader` apart (`into_parts`).

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use amq_protocol::protocol::{channel, connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};

use super::url::AmqpUrl;
use super::wire::{self, FrameReader, FRAME_HEARTBEAT, FRAME_MAX, FRAME_METHOD, FRAME_MIN};
use crate::error::AmqpError;

/// The one channel every connection of the load generator uses.
pub const CHANNEL: u16 = 1;

/// A short string for the wire, or an error naming it.
pub fn short(s: &str) -> Result<ShortString, AmqpError> {
    ShortString::try_new(s)
        .map_err(|_| AmqpError::Encode { what: format!("'{s}'"), detail: "longer than 255 bytes".to_string() })
}

/// An open connection with channel `CHANNEL` open.
pub struct Connection {
    stream: TcpStream,
    reader: FrameReader,
    addr: String,
    /// Negotiated frame_max (head and end byte included).
    pub frame_max: u32,
    timeout: Duration,
    out: Vec<u8>,
}

/// Resolves and connects to `addr` within `timeout`.
pub fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, AmqpError> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| AmqpError::Resolve { addr: addr.to_string(), detail: e.to_string() })?
        .collect();
    let mut last_err = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last_err = Some(e),
        }
    }
    Err(match last_err {
        Some(source) => AmqpError::Connect { addr: addr.to_string(), source },
        None => AmqpError::Resolve { addr: addr.to_string(), detail: "no addresses".to_string() },
    })
}

impl Connection {
    /// Connects, logs in, opens the vhost and channel 1. `name` is the
    /// connection name the broker shows.
    pub fn open(url: &AmqpUrl, name: &str, timeout: Duration) -> Result<Connection, AmqpError> {
        let addr = url.addr();
        let stream = connect(&addr, timeout)?;
        let io_err = |what: &'static str| {
            let addr = addr.clone();
            move |source| AmqpError::Io { addr, what, source }
        };
        stream.set_nodelay(true).map_err(io_err("configuring the socket to"))?;
        stream.set_read_timeout(Some(timeout)).map_err(io_err("configuring the socket to"))?;
        stream.set_write_timeout(Some(timeout)).map_err(io_err("configuring the socket to"))?;
        let reader = FrameReader::new(stream.try_clone().map_err(io_err("cloning the socket to"))?, &addr);
        let mut conn = Connection { stream, reader, addr, frame_max: FRAME_MAX, timeout, out: Vec::new() };
        conn.handshake(url, name)?;
        let open = AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}));
        match conn.call(open, "opening channel 1")? {
            AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)) => Ok(conn),
            other => Err(conn.unexpected("channel.open-ok", &other)),
        }
    }

    fn handshake(&mut self, url: &AmqpUrl, name: &str) -> Result<(), AmqpError> {
        self.out.extend_from_slice(wire::PROTOCOL_HEADER);
        self.flush("sending the protocol header to")?;
        let start = match self.expect("waiting for connection.start")? {
            AMQPClass::Connection(connection::AMQPMethod::Start(s)) => s,
            other => return Err(self.unexpected("connection.start", &other)),
        };
        let mechanisms = start.mechanisms.to_string();
        if !mechanisms.split_whitespace().any(|m| m == "PLAIN") {
            return Err(AmqpError::NotAmqp {
                addr: self.addr.clone(),
                detail: format!("it offers the login mechanisms '{mechanisms}', not PLAIN"),
            });
        }
        let start_ok = connection::StartOk {
            client_properties: client_properties(name),
            mechanism: short("PLAIN")?,
            response: LongString::from(format!("\0{}\0{}", url.user, url.password)),
            locale: short("en_US")?,
        };
        self.send(0, &AMQPClass::Connection(connection::AMQPMethod::StartOk(start_ok)))?;
        let tune = match self.expect(&format!("logging in as '{}' (wrong user or password?)", url.user))? {
            AMQPClass::Connection(connection::AMQPMethod::Tune(t)) => t,
            other => return Err(self.unexpected("connection.tune", &other)),
        };
        // 0 means "no limit" from the broker: take ours.
        let frame_max = if tune.frame_max == 0 { FRAME_MAX } else { tune.frame_max.min(FRAME_MAX) };
        if frame_max < FRAME_MIN {
            return Err(AmqpError::Protocol {
                addr: self.addr.clone(),
                detail: format!("frame_max {} is below AMQP's minimum {FRAME_MIN}", tune.frame_max),
            });
        }
        self.frame_max = frame_max;
        self.reader.set_frame_max(frame_max);
        // No heartbeats: every connection is busy for the whole run, and a
        // blocked writer must not be mistaken for a dead peer.
        let tune_ok = connection::TuneOk { channel_max: tune.channel_max, frame_max, heartbeat: 0 };
        self.send(0, &AMQPClass::Connection(connection::AMQPMethod::TuneOk(tune_ok)))?;
        let open = connection::Open { virtual_host: short(&url.vhost)? };
        self.send(0, &AMQPClass::Connection(connection::AMQPMethod::Open(open)))?;
        match self.expect(&format!("opening vhost '{}'", url.vhost))? {
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)) => Ok(()),
            other => Err(self.unexpected("connection.open-ok", &other)),
        }
    }

    /// Sends `method` on the channel and returns the broker's reply.
    pub fn call(&mut self, method: AMQPClass, what: &str) -> Result<AMQPClass, AmqpError> {
        self.send(CHANNEL, &method)?;
        self.expect(what)
    }

    /// Writes a method frame at once.
    pub fn send(&mut self, channel: u16, method: &AMQPClass) -> Result<(), AmqpError> {
        wire::put_method(&mut self.out, channel, method)?;
        self.flush("sending a method to")
    }

    fn flush(&mut self, what: &'static str) -> Result<(), AmqpError> {
        let r = self.stream.write_all(&self.out);
        self.out.clear();
        r.map_err(|source| AmqpError::Io { addr: self.addr.clone(), what, source })
    }

    /// The next method from the broker (heartbeats and flow notices skipped);
    /// a connection.close or channel.close becomes the error it reports.
    fn expect(&mut self, what: &str) -> Result<AMQPClass, AmqpError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let (kind, channel, method) = match self.reader.next(what)? {
                Some(f) => (f.kind, f.channel, wire::parse_method(f.payload)),
                None if Instant::now() >= deadline => {
                    return Err(AmqpError::Timeout {
                        addr: self.addr.clone(),
                        what: what.to_string(),
                        timeout: self.timeout,
                    })
                }
                None => continue,
            };
            match (kind, method) {
                (FRAME_HEARTBEAT, _) => continue,
                (FRAME_METHOD, Some(m)) => match closed_by_broker(&self.addr, what, channel, &m) {
                    Some(err) => {
                        self.answer_close(channel);
                        return Err(err);
                    }
                    None if is_flow_notice(&m) => continue,
                    None => return Ok(m),
                },
                (FRAME_METHOD, None) => return Err(self.reader.protocol(format!("an unreadable method while {what}"))),
                (k, _) => return Err(self.reader.protocol(format!("a frame of type {k} while {what}"))),
            }
        }
    }

    /// Answers a close from the broker with its close-ok (best effort).
    fn answer_close(&mut self, channel: u16) {
        let ok = if channel == 0 {
            AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {}))
        } else {
            AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {}))
        };
        let _ = self.send(channel, &ok);
    }

    fn unexpected(&self, wanted: &str, got: &AMQPClass) -> AmqpError {
        AmqpError::Protocol { addr: self.addr.clone(), detail: format!("expected {wanted}, got {got:?}") }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Another handle on the socket (to shut it down from elsewhere).
    pub fn socket(&self) -> std::io::Result<TcpStream> {
        self.stream.try_clone()
    }

    /// The writing half, the frame reader, and the negotiated frame_max.
    pub fn into_parts(self) -> (TcpStream, FrameReader, u32) {
        (self.stream, self.reader, self.frame_max)
    }

    /// connection.close, waiting (at most the timeout) for close-ok.
    pub fn close(mut self) {
        let _ = send_close(&mut self.stream, &self.addr);
        let deadline = Instant::now() + self.timeout;
        while Instant::now() < deadline {
            match self.reader.next("closing") {
                Ok(Some(f)) if f.kind == FRAME_METHOD => {
                    if let Some(AMQPClass::Connection(
                        connection::AMQPMethod::CloseOk(_) | connection::AMQPMethod::Close(_),
                    )) = wire::parse_method(f.payload)
                    {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Writes connection.close (reply 200).
pub fn send_close(stream: &mut TcpStream, addr: &str) -> Result<(), AmqpError> {
    let close =
        connection::Close { reply_code: 200, reply_text: short("load generator done")?, class_id: 0, method_id: 0 };
    let mut out = Vec::new();
    wire::put_method(&mut out, 0, &AMQPClass::Connection(connection::AMQPMethod::Close(close)))?;
    stream.write_all(&out).map_err(|source| AmqpError::Io {
        addr: addr.to_string(),
        what: "closing the connection to",
        source,
    })
}

/// The error a connection.close or channel.close from the broker stands for.
pub fn closed_by_broker(addr: &str, what: &str, channel: u16, m: &AMQPClass) -> Option<AmqpError> {
    match m {
        AMQPClass::Connection(connection::AMQPMethod::Close(c)) => Some(AmqpError::ConnectionClosed {
            addr: addr.to_string(),
            what: what.to_string(),
            code: c.reply_code,
            text: c.reply_text.to_string(),
        }),
        AMQPClass::Channel(channel::AMQPMethod::Close(c)) => Some(AmqpError::ChannelClosed {
            addr: addr.to_string(),
            what: format!("{what} (channel {channel})"),
            code: c.reply_code,
            text: c.reply_text.to_string(),
        }),
        _ => None,
    }
}

/// connection.blocked / unblocked: notices that may come between any two methods.
pub fn is_flow_notice(m: &AMQPClass) -> bool {
    matches!(m, AMQPClass::Connection(connection::AMQPMethod::Blocked(_) | connection::AMQPMethod::Unblocked(_)))
}

fn client_properties(name: &str) -> FieldTable {
    let mut caps = FieldTable::default();
    for cap in [
        "publisher_confirms",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
    ] {
        caps.insert(ShortString::from(cap), AMQPValue::Boolean(true));
    }
    let mut props = FieldTable::default();
    props.insert(ShortString::from("product"), AMQPValue::LongString(LongString::from("ringmq-loadgen")));
    props.insert(ShortString::from("version"), AMQPValue::LongString(LongString::from(env!("CARGO_PKG_VERSION"))));
    props.insert(ShortString::from("connection_name"), AMQPValue::LongString(LongString::from(name)));
    props.insert(ShortString::from("capabilities"), AMQPValue::FieldTable(caps));
    props
}
