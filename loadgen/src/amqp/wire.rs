//! AMQP 0-9-1 on the wire: frames (`type(1) channel(2) size(4) payload
//! 0xCE`), method payloads through the `amq-protocol` codec, content headers
//! and body frames built here, and `FrameReader`, which cuts a socket's bytes
//! into frames inside one reused buffer (no allocation per frame).

use std::io::{self, Read};
use std::net::TcpStream;

use amq_protocol::protocol::{basic, gen_class, parse_class, AMQPClass};
use nom::Parser;

use crate::error::AmqpError;

pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;
/// type, channel, size.
pub const FRAME_HEAD_BYTES: usize = 7;
/// What a frame adds to its payload (head and end byte).
pub const FRAME_OVERHEAD_BYTES: usize = FRAME_HEAD_BYTES + 1;
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
pub const CLASS_BASIC: u16 = 60;
/// The frame_max this client asks for (RabbitMQ's and ringmq's default);
/// a broker offering less gets its own value.
pub const FRAME_MAX: u32 = 131_072;
/// The smallest frame_max AMQP allows.
pub const FRAME_MIN: u32 = 4096;

/// Appends a frame head for a payload of `size` bytes.
pub fn put_head(out: &mut Vec<u8>, kind: u8, channel: u16, size: usize) {
    debug_assert!(size <= u32::MAX as usize);
    out.push(kind);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(size as u32).to_be_bytes());
}

/// Appends a whole frame.
pub fn put_frame(out: &mut Vec<u8>, kind: u8, channel: u16, payload: &[u8]) {
    put_head(out, kind, channel, payload.len());
    out.extend_from_slice(payload);
    out.push(FRAME_END);
}

/// A method's payload (class, method, arguments) through the codec.
pub fn method_payload(method: &AMQPClass) -> Result<Vec<u8>, AmqpError> {
    cookie_factory::gen(gen_class(method), Vec::with_capacity(64))
        .map(|(v, _)| v)
        .map_err(|e| AmqpError::Encode { what: format!("{method:?}"), detail: format!("{e:?}") })
}

/// Appends a method frame.
pub fn put_method(out: &mut Vec<u8>, channel: u16, method: &AMQPClass) -> Result<(), AmqpError> {
    put_frame(out, FRAME_METHOD, channel, &method_payload(method)?);
    Ok(())
}

/// A content header frame (class basic, weight 0) for a body of `body_size`.
pub fn header_frame(channel: u16, body_size: u64, props: &basic::AMQPProperties) -> Result<Vec<u8>, AmqpError> {
    let mut payload = Vec::with_capacity(64);
    payload.extend_from_slice(&CLASS_BASIC.to_be_bytes());
    payload.extend_from_slice(&0u16.to_be_bytes());
    payload.extend_from_slice(&body_size.to_be_bytes());
    let payload = cookie_factory::gen(basic::gen_properties(props), payload)
        .map(|(v, _)| v)
        .map_err(|e| AmqpError::Encode { what: "message properties".to_string(), detail: format!("{e:?}") })?;
    let mut out = Vec::with_capacity(payload.len() + FRAME_OVERHEAD_BYTES);
    put_frame(&mut out, FRAME_HEADER, channel, &payload);
    Ok(out)
}

/// Reads a method payload; `None` when the codec cannot read it.
pub fn parse_method(payload: &[u8]) -> Option<AMQPClass> {
    nom::combinator::all_consuming(parse_class).parse_complete(payload).ok().map(|(_, m)| m)
}

/// The body size announced by a content header payload.
pub fn header_body_size(payload: &[u8]) -> Option<u64> {
    payload.get(4..12).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes)
}

/// One frame, its payload borrowed from the reader's buffer.
#[derive(Debug)]
pub struct Frame<'a> {
    pub kind: u8,
    pub channel: u16,
    pub payload: &'a [u8],
}

/// Cuts a socket's bytes into frames. With a read timeout on the socket,
/// `next` returns `Ok(None)` when nothing came within it.
pub struct FrameReader {
    stream: TcpStream,
    addr: String,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    frame_max: u32,
}

impl FrameReader {
    pub fn new(stream: TcpStream, addr: &str) -> FrameReader {
        FrameReader {
            stream,
            addr: addr.to_string(),
            buf: vec![0; 2 * FRAME_MAX as usize],
            start: 0,
            end: 0,
            frame_max: FRAME_MAX,
        }
    }

    /// The largest frame accepted from now on (head and end byte included).
    pub fn set_frame_max(&mut self, frame_max: u32) {
        self.frame_max = frame_max;
        let want = 2 * frame_max as usize;
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
    }

    pub fn socket(&self) -> &TcpStream {
        &self.stream
    }

    /// Whether a whole frame is already buffered (the next `next` will not read).
    pub fn has_frame(&self) -> bool {
        let have = self.end - self.start;
        have >= FRAME_HEAD_BYTES && have >= self.frame_len(self.start)
    }

    fn frame_len(&self, at: usize) -> usize {
        let size = u32::from_be_bytes([self.buf[at + 3], self.buf[at + 4], self.buf[at + 5], self.buf[at + 6]]);
        size as usize + FRAME_OVERHEAD_BYTES
    }

    /// The next frame, or `None` when the socket's read timeout passed first.
    pub fn next(&mut self, what: &str) -> Result<Option<Frame<'_>>, AmqpError> {
        loop {
            let have = self.end - self.start;
            // A broker that speaks another protocol version answers with its
            // own protocol header (no frame type is 'A').
            let header = have >= 4 && &self.buf[self.start..self.start + 4] == b"AMQP";
            if header && have >= PROTOCOL_HEADER.len() {
                return Err(AmqpError::NotAmqp {
                    addr: self.addr.clone(),
                    detail: format!("it answered with protocol header {:?}", &self.buf[self.start..self.start + 8]),
                });
            }
            if have >= FRAME_HEAD_BYTES && !header {
                let len = self.frame_len(self.start);
                if len > self.frame_max as usize {
                    return Err(self.protocol(format!(
                        "a frame of {len} bytes, over the negotiated frame_max {}",
                        self.frame_max
                    )));
                }
                if have >= len {
                    let at = self.start;
                    if self.buf[at + len - 1] != FRAME_END {
                        return Err(self.protocol(format!("frame end byte {:#04x}, not 0xce", self.buf[at + len - 1])));
                    }
                    self.start += len;
                    let kind = self.buf[at];
                    let channel = u16::from_be_bytes([self.buf[at + 1], self.buf[at + 2]]);
                    return Ok(Some(Frame { kind, channel, payload: &self.buf[at + FRAME_HEAD_BYTES..at + len - 1] }));
                }
            }
            if !self.fill(what)? {
                return Ok(None);
            }
        }
    }

    /// Reads more bytes; `false` on the read timeout.
    fn fill(&mut self, what: &str) -> Result<bool, AmqpError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.buf.len() - self.end < FRAME_MAX as usize / 2 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        match self.stream.read(&mut self.buf[self.end..]) {
            Ok(0) => Err(AmqpError::Closed { addr: self.addr.clone(), what: what.to_string() }),
            Ok(n) => {
                self.end += n;
                Ok(true)
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted) => {
                Err(AmqpError::Closed { addr: self.addr.clone(), what: what.to_string() })
            }
            Err(source) => Err(AmqpError::Io { addr: self.addr.clone(), what: "reading from", source }),
        }
    }

    pub fn protocol(&self, detail: String) -> AmqpError {
        AmqpError::Protocol { addr: self.addr.clone(), detail }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::channel;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn frames_split_across_reads_come_out_whole_and_in_order() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let writer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut bytes = Vec::new();
            let open = AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {}));
            put_method(&mut bytes, 3, &open).expect("encode");
            put_frame(&mut bytes, FRAME_BODY, 3, &[7u8; 5000]);
            for chunk in bytes.chunks(333) {
                s.write_all(chunk).expect("write");
                s.flush().expect("flush");
            }
        });
        let stream = TcpStream::connect(addr).expect("connect");
        let mut r = FrameReader::new(stream, &addr.to_string());
        let f = r.next("test").expect("read").expect("frame");
        assert_eq!((f.kind, f.channel), (FRAME_METHOD, 3));
        assert_eq!(parse_method(f.payload), Some(AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {}))));
        let f = r.next("test").expect("read").expect("frame");
        assert_eq!((f.kind, f.payload.len()), (FRAME_BODY, 5000));
        writer.join().expect("writer");
        assert!(matches!(r.next("test"), Err(AmqpError::Closed { .. })));
    }

    #[test]
    fn a_content_header_announces_its_body_size() {
        let props = basic::AMQPProperties::default().with_delivery_mode(2).with_priority(3);
        let h = header_frame(1, 1024, &props).expect("encode");
        assert_eq!(h[0], FRAME_HEADER);
        assert_eq!(*h.last().expect("end"), FRAME_END);
        assert_eq!(header_body_size(&h[FRAME_HEAD_BYTES..]), Some(1024));
    }
}
