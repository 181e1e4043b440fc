//! AMQP 0-9-1 methods and content headers on the wire, through the
//! `amq-protocol` codec (vendored; `vendor/amq-protocol/PATCHES.md`).
//!
//! Owns the translation between frame payloads and typed methods, and the
//! split of a content header into its fixed fields and the raw property
//! bytes that are stored with a message and sent back unchanged.

use amq_protocol::protocol::{basic, gen_class, parse_class, AMQPClass};
use bytes::{BufMut, Bytes, BytesMut};

use super::codes;
use super::frame::{put_head, FRAME_END, FRAME_HEAD_BYTES, FRAME_METHOD};

pub use amq_protocol::protocol;
pub use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};

pub const CLASS_CONNECTION: u16 = 10;
pub const CLASS_CHANNEL: u16 = 20;
pub const CLASS_EXCHANGE: u16 = 40;
pub const CLASS_QUEUE: u16 = 50;
pub const CLASS_BASIC: u16 = 60;
pub const CLASS_CONFIRM: u16 = 85;
pub const CLASS_TX: u16 = 90;

/// A method frame's payload that is not a method this broker can read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("method payload of {0} bytes is too short")]
    TooShort(usize),
    #[error("unknown method {class}.{method}")]
    UnknownMethod { class: u16, method: u16 },
    #[error("malformed arguments of method {class}.{method}")]
    Malformed { class: u16, method: u16 },
    #[error("content header of {0} bytes is too short")]
    ShortHeader(usize),
    #[error("content header for class {0}, not basic")]
    HeaderClass(u16),
    #[error("malformed content header properties")]
    BadProperties,
}

impl CodecError {
    pub fn reply_code(&self) -> u16 {
        match self {
            CodecError::UnknownMethod { .. } => codes::NOT_IMPLEMENTED,
            CodecError::TooShort(_) | CodecError::Malformed { .. } => codes::SYNTAX_ERROR,
            CodecError::ShortHeader(_) | CodecError::HeaderClass(_) | CodecError::BadProperties => codes::FRAME_ERROR,
        }
    }
}

/// Whether `class.method` is a method of AMQP 0-9-1 as RabbitMQ defines it
/// (either direction).
fn is_known(class: u16, method: u16) -> bool {
    match class {
        CLASS_CONNECTION => matches!(method, 10 | 11 | 20 | 21 | 30 | 31 | 40 | 41 | 50 | 51 | 60 | 61 | 70 | 71),
        CLASS_CHANNEL => matches!(method, 10 | 11 | 20 | 21 | 40 | 41),
        30 => matches!(method, 10 | 11),
        CLASS_EXCHANGE => matches!(method, 10 | 11 | 20 | 21 | 30 | 31 | 40 | 51),
        CLASS_QUEUE => matches!(method, 10 | 11 | 20 | 21 | 30 | 31 | 40 | 41 | 50 | 51),
        CLASS_BASIC => {
            matches!(
                method,
                10 | 11 | 20 | 21 | 30 | 31 | 40 | 50 | 60 | 70 | 71 | 72 | 80 | 90 | 100 | 110 | 111 | 120
            )
        }
        CLASS_CONFIRM => matches!(method, 10 | 11),
        CLASS_TX => matches!(method, 10 | 11 | 20 | 21 | 30 | 31),
        _ => false,
    }
}

/// Reads a method frame's payload.
pub fn parse_method(payload: &[u8]) -> Result<AMQPClass, CodecError> {
    if payload.len() < 4 {
        return Err(CodecError::TooShort(payload.len()));
    }
    let class = u16::from_be_bytes([payload[0], payload[1]]);
    let method = u16::from_be_bytes([payload[2], payload[3]]);
    if !is_known(class, method) {
        return Err(CodecError::UnknownMethod { class, method });
    }
    match nom::combinator::all_consuming(parse_class).parse_complete(payload) {
        Ok((_, m)) => Ok(m),
        Err(_) => Err(CodecError::Malformed { class, method }),
    }
}

use nom::Parser;

/// A whole method frame (head, payload, end) for `method` on `channel`.
pub fn method_frame(channel: u16, method: &AMQPClass) -> Bytes {
    // Generation writes into a growable Vec: it only fails for values the
    // codec cannot express (a short string over 255 bytes), which this
    // broker never builds from unchecked input.
    let payload = match cookie_factory::gen(gen_class(method), Vec::with_capacity(64)) {
        Ok((payload, len)) => {
            debug_assert_eq!(len as usize, payload.len());
            payload
        }
        Err(e) => panic!("encoding {method:?} failed: {e:?}"),
    };
    let mut out = BytesMut::with_capacity(FRAME_HEAD_BYTES + payload.len() + 1);
    put_head(&mut out, FRAME_METHOD, channel, payload.len());
    out.put_slice(&payload);
    out.put_u8(FRAME_END);
    out.freeze()
}

/// A content header's fixed fields and its raw properties.
#[derive(Debug, Clone)]
pub struct ContentHeader {
    pub body_size: u64,
    /// Property flags and list exactly as received.
    pub properties_raw: Bytes,
    pub properties: basic::AMQPProperties,
}

/// Reads a content header frame's payload (class, weight, body size,
/// properties); the properties are parsed to check them and kept raw.
pub fn parse_content_header(payload: &Bytes) -> Result<ContentHeader, CodecError> {
    if payload.len() < 14 {
        return Err(CodecError::ShortHeader(payload.len()));
    }
    let class = u16::from_be_bytes([payload[0], payload[1]]);
    if class != CLASS_BASIC {
        return Err(CodecError::HeaderClass(class));
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&payload[4..12]);
    let body_size = u64::from_be_bytes(size);
    let properties_raw = payload.slice(12..);
    let properties = parse_properties(&properties_raw)?;
    Ok(ContentHeader { body_size, properties_raw, properties })
}

/// Parses raw properties (flags and list) that must be used whole.
pub fn parse_properties(raw: &[u8]) -> Result<basic::AMQPProperties, CodecError> {
    match nom::combinator::all_consuming(basic::parse_properties).parse_complete(raw) {
        Ok((_, p)) => Ok(p),
        Err(_) => Err(CodecError::BadProperties),
    }
}

/// Raw properties (flags and list) for `properties`.
pub fn encode_properties(properties: &basic::AMQPProperties) -> Bytes {
    match cookie_factory::gen(basic::gen_properties(properties), Vec::with_capacity(32)) {
        Ok((out, _)) => Bytes::from(out),
        Err(e) => panic!("encoding properties failed: {e:?}"),
    }
}

/// Decodes a client's byte stream as the broker reads it, without acting on
/// it: the protocol header (optional), then frames, each method and content
/// header parsed. Returns how many frames were read whole. For fuzzing and
/// tools: any input must end in `Ok` or `Err`, never a panic.
pub fn decode_stream(mut data: &[u8], frame_max: u32) -> Result<usize, String> {
    use super::frame::{parse_head, FRAME_END, FRAME_HEADER, FRAME_HEAD_BYTES, FRAME_METHOD, PROTOCOL_HEADER};
    if data.starts_with(&PROTOCOL_HEADER) {
        data = &data[PROTOCOL_HEADER.len()..];
    }
    let mut frames = 0;
    while data.len() >= FRAME_HEAD_BYTES {
        let mut head = [0u8; FRAME_HEAD_BYTES];
        head.copy_from_slice(&data[..FRAME_HEAD_BYTES]);
        let h = parse_head(&head, frame_max).map_err(|e| e.to_string())?;
        let end_at = FRAME_HEAD_BYTES + h.size as usize;
        let Some(&end) = data.get(end_at) else { return Ok(frames) };
        if end != FRAME_END {
            return Err(format!("frame end byte {end:#04x}"));
        }
        let payload = Bytes::copy_from_slice(&data[FRAME_HEAD_BYTES..end_at]);
        match h.kind {
            FRAME_METHOD => {
                parse_method(&payload).map_err(|e| e.to_string())?;
            }
            FRAME_HEADER => {
                parse_content_header(&payload).map_err(|e| e.to_string())?;
            }
            _ => {}
        }
        frames += 1;
        data = &data[end_at + 1..];
    }
    Ok(frames)
}

/// A short string for the wire, cut to 255 bytes at a character boundary
/// (reply texts built from names can be longer).
pub fn short(s: &str) -> ShortString {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    ShortString::from(&s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::{channel, queue};

    fn payload_of(frame: &Bytes) -> &[u8] {
        &frame[FRAME_HEAD_BYTES..frame.len() - 1]
    }

    #[test]
    fn a_method_frame_round_trips_through_the_codec() {
        let m = AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
            queue: "q1".into(),
            message_count: 7,
            consumer_count: 2,
        }));
        let frame = method_frame(3, &m);
        assert_eq!(frame[0], FRAME_METHOD);
        assert_eq!(u16::from_be_bytes([frame[1], frame[2]]), 3);
        assert_eq!(*frame.last().unwrap(), FRAME_END);
        assert_eq!(parse_method(payload_of(&frame)), Ok(m));
    }

    #[test]
    fn an_unknown_method_is_not_implemented_and_garbage_arguments_are_a_syntax_error() {
        let e = parse_method(&[0, 20, 0, 99]).unwrap_err();
        assert_eq!(e.reply_code(), codes::NOT_IMPLEMENTED);
        // channel.open with its short string length saying 200 and no bytes.
        let e = parse_method(&[0, 20, 0, 10, 200]).unwrap_err();
        assert_eq!(e, CodecError::Malformed { class: 20, method: 10 });
        assert_eq!(e.reply_code(), codes::SYNTAX_ERROR);
    }

    #[test]
    fn trailing_bytes_after_a_method_are_a_syntax_error() {
        let frame = method_frame(1, &AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})));
        let mut p = payload_of(&frame).to_vec();
        p.push(0);
        assert!(matches!(parse_method(&p), Err(CodecError::Malformed { .. })));
    }

    #[test]
    fn deeply_nested_tables_are_a_parse_error_not_a_stack_overflow() {
        // queue.declare: reserved u16, queue "", flags, then an arguments
        // table holding a table holding a table ... 20,000 deep.
        let depth = 20_000usize;
        let mut inner: Vec<u8> = Vec::new();
        for _ in 0..depth {
            // entry: key "k", type 'F', table of the previous bytes
            let mut t = vec![1, b'k', b'F'];
            t.extend_from_slice(&(inner.len() as u32).to_be_bytes());
            t.extend_from_slice(&inner);
            inner = t;
        }
        let mut p = vec![0, 50, 0, 10, 0, 0, 0, 0];
        p.extend_from_slice(&(inner.len() as u32).to_be_bytes());
        p.extend_from_slice(&inner);
        let e = parse_method(&p).unwrap_err();
        assert_eq!(e.reply_code(), codes::SYNTAX_ERROR);
    }

    #[test]
    fn a_content_header_keeps_its_property_bytes() {
        let props = basic::AMQPProperties::default().with_delivery_mode(2).with_content_type("text/plain".into());
        let raw = encode_properties(&props);
        let mut p = BytesMut::new();
        p.put_u16(CLASS_BASIC);
        p.put_u16(0);
        p.put_u64(42);
        p.put_slice(&raw);
        let h = parse_content_header(&p.freeze()).expect("header");
        assert_eq!(h.body_size, 42);
        assert_eq!(h.properties_raw, raw);
        assert_eq!(h.properties.delivery_mode(), &Some(2));
    }

    #[test]
    fn short_strings_are_cut_at_a_character_boundary() {
        let s = "é".repeat(200);
        assert_eq!(short(&s).as_str().len(), 254);
    }
}
