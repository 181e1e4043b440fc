//! Any bytes as a request frame (size prefix removed): parsing must return
//! an error or a request, never panic, abort or reserve memory by a forged count.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let frame = bytes::Bytes::copy_from_slice(data);
    let _ = ringmq::kafka::decode_request(&frame);
});
