//! AMQP 0-9-1 framing: the 8-byte protocol header a client opens with, then
//! frames of `type(1) channel(2) size(4) payload(size) 0xCE`.
//!
//! Owns the frame layout and its limits; knows nothing of methods (see
//! `codec`). Outgoing frames are built as chunks of `Bytes` so that a stored
//! message body goes out as slices of the bytes read from its segment.

use bytes::{BufMut, Bytes, BytesMut};

pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;

/// type, channel, size.
pub const FRAME_HEAD_BYTES: usize = 7;
/// Head and end byte: what a frame adds to its payload.
pub const FRAME_OVERHEAD_BYTES: usize = FRAME_HEAD_BYTES + 1;
/// The smallest frame_max a peer may negotiate (the spec's frame-min-size).
pub const FRAME_MIN_BYTES: u32 = 4096;
/// `AMQP` 0 0 9 1.
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";

const _: () = assert!(FRAME_OVERHEAD_BYTES == 8);
const _: () = assert!(FRAME_MIN_BYTES as usize > FRAME_OVERHEAD_BYTES + 12);

/// A frame's head, read before its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    pub kind: u8,
    pub channel: u16,
    pub size: u32,
}

/// Why the byte stream cannot be read as frames. Each maps to the reply
/// code the connection is closed with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    #[error("frame of {size} bytes exceeds the negotiated frame_max {frame_max}")]
    TooLarge { size: u32, frame_max: u32 },
    #[error("frame end byte is {0:#04x}, not 0xce")]
    BadEnd(u8),
    #[error("heartbeat on channel {0} (must be 0)")]
    HeartbeatOnChannel(u16),
}

impl FrameError {
    /// The AMQP reply code for closing the connection over this error.
    pub fn reply_code(&self) -> u16 {
        match self {
            FrameError::UnknownType(_) | FrameError::TooLarge { .. } | FrameError::BadEnd(_) => {
                super::codes::FRAME_ERROR
            }
            FrameError::HeartbeatOnChannel(_) => super::codes::COMMAND_INVALID,
        }
    }
}

/// Parses a frame head; `frame_max` bounds the whole frame (head and end
/// byte included), as the spec counts it.
pub fn parse_head(head: &[u8; FRAME_HEAD_BYTES], frame_max: u32) -> Result<FrameHead, FrameError> {
    let kind = head[0];
    let channel = u16::from_be_bytes([head[1], head[2]]);
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
    if !matches!(kind, FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT) {
        return Err(FrameError::UnknownType(kind));
    }
    if u64::from(size) + FRAME_OVERHEAD_BYTES as u64 > u64::from(frame_max) {
        return Err(FrameError::TooLarge { size, frame_max });
    }
    if kind == FRAME_HEARTBEAT && channel != 0 {
        return Err(FrameError::HeartbeatOnChannel(channel));
    }
    Ok(FrameHead { kind, channel, size })
}

/// Appends a frame head for a payload of `size` bytes.
pub fn put_head(out: &mut BytesMut, kind: u8, channel: u16, size: usize) {
    debug_assert!(size <= u32::MAX as usize);
    out.put_u8(kind);
    out.put_u16(channel);
    out.put_u32(size as u32);
}

/// A heartbeat frame.
pub fn heartbeat() -> Bytes {
    Bytes::from_static(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END])
}

/// The body frames of a message: its bytes cut at `frame_max`, each piece a
/// slice of `body` (no copy) between a head and an end byte. Appends the
/// chunks to `out`; a zero-length body has no body frame.
pub fn body_frames(channel: u16, body: &Bytes, frame_max: u32, out: &mut Vec<Bytes>) {
    let piece_max = frame_max as usize - FRAME_OVERHEAD_BYTES;
    let mut at = 0;
    while at < body.len() {
        let len = piece_max.min(body.len() - at);
        let mut head = BytesMut::with_capacity(FRAME_HEAD_BYTES);
        put_head(&mut head, FRAME_BODY, channel, len);
        out.push(head.freeze());
        out.push(body.slice(at..at + len));
        out.push(Bytes::from_static(&[FRAME_END]));
        at += len;
    }
    debug_assert_eq!(at, body.len());
}

/// The content header frame of a message whose properties (flags and
/// list, as on the wire) are `properties`: appended to `out` as a head with
/// the fixed fields, the properties slice, and the end byte.
pub fn header_frame(channel: u16, body_size: u64, properties: &Bytes, out: &mut Vec<Bytes>) {
    let payload_size = 12 + properties.len();
    let mut head = BytesMut::with_capacity(FRAME_HEAD_BYTES + 12);
    put_head(&mut head, FRAME_HEADER, channel, payload_size);
    head.put_u16(super::codec::CLASS_BASIC);
    head.put_u16(0); // weight
    head.put_u64(body_size);
    out.push(head.freeze());
    out.push(properties.clone());
    out.push(Bytes::from_static(&[FRAME_END]));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(kind: u8, channel: u16, size: u32) -> [u8; FRAME_HEAD_BYTES] {
        let mut h = [0u8; FRAME_HEAD_BYTES];
        h[0] = kind;
        h[1..3].copy_from_slice(&channel.to_be_bytes());
        h[3..7].copy_from_slice(&size.to_be_bytes());
        h
    }

    #[test]
    fn a_frame_exactly_at_frame_max_is_accepted_and_one_byte_more_is_not() {
        let max = 4096;
        assert!(parse_head(&head(FRAME_BODY, 1, max - 8), max).is_ok());
        assert_eq!(
            parse_head(&head(FRAME_BODY, 1, max - 7), max),
            Err(FrameError::TooLarge { size: max - 7, frame_max: max })
        );
    }

    #[test]
    fn an_unknown_frame_type_is_a_frame_error() {
        let e = parse_head(&head(7, 0, 0), 4096).unwrap_err();
        assert_eq!(e, FrameError::UnknownType(7));
        assert_eq!(e.reply_code(), crate::amqp::codes::FRAME_ERROR);
    }

    #[test]
    fn a_heartbeat_on_a_channel_other_than_zero_is_refused() {
        assert_eq!(parse_head(&head(FRAME_HEARTBEAT, 3, 0), 4096), Err(FrameError::HeartbeatOnChannel(3)));
    }

    #[test]
    fn a_body_is_cut_at_frame_max_into_slices_of_itself() {
        let body = Bytes::from(vec![7u8; 10_000]);
        let mut out = Vec::new();
        body_frames(5, &body, 4096, &mut out);
        // 4088 + 4088 + 1824, each as head, slice, end.
        assert_eq!(out.len(), 9);
        let lens: Vec<usize> = out.iter().skip(1).step_by(3).map(Bytes::len).collect();
        assert_eq!(lens, vec![4088, 4088, 1824]);
        assert_eq!(out[1].as_ptr(), body.as_ptr(), "the first piece is the body's own memory");
        assert_eq!(&out[0][..], &[FRAME_BODY, 0, 5, 0, 0, 0x0f, 0xf8]);
    }

    #[test]
    fn an_empty_body_has_no_body_frame() {
        let mut out = Vec::new();
        body_frames(1, &Bytes::new(), 4096, &mut out);
        assert!(out.is_empty());
    }
}
