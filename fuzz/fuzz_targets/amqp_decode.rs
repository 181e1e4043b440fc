//! Any bytes as what an AMQP client sends (protocol header, then frames):
//! frame heads, method arguments (field tables of any depth) and content
//! headers must parse or fail, never panic, abort or overflow the stack; the
//! same bytes as a stored message batch and as settle journal records too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ringmq::amqp::codec::decode_stream(data, 131_072);
    let batch = bytes::Bytes::copy_from_slice(data);
    let _ = ringmq::amqp::message::StoredMessage::parse(&batch);
    let _ = ringmq::amqp::settle::SettleRecord::decode(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ringmq::amqp::settle::Checkpoint::decode(text);
    }
});
