//! Any bytes as a produce request's records field and as a segment's
//! contents: validation and the recovery scan must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(batches) = ringmq::storage::batch::validate_all(data, 1 << 20) {
        let mut end = 0;
        for (range, header) in batches {
            assert_eq!(range.start, end);
            assert_eq!(range.len(), header.total_bytes());
            end = range.end;
        }
        assert_eq!(end, data.len());
    }
    let outcome = ringmq::storage::batch::scan(data, None, |_, _| {});
    assert!(outcome.valid_bytes <= data.len());
});
