//! RecordBatch throughput: what the produce path spends validating each MiB
//! before it is queued, and what recovery spends scanning each MiB of segment.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use ringmq::storage::batch::{scan, validate_all, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES};

const MIB: usize = 1 << 20;

/// One batch of exactly `total_bytes`, one record, valid CRC.
fn batch(total_bytes: usize, base_offset: i64) -> Vec<u8> {
    let mut b: Vec<u8> = (0..total_bytes).map(|i| (i * 31 + 7) as u8).collect();
    b[..8].copy_from_slice(&base_offset.to_be_bytes());
    b[8..12].copy_from_slice(&((total_bytes - LOG_OVERHEAD_BYTES) as i32).to_be_bytes());
    b[16] = 2;
    b[21..BATCH_HEADER_BYTES].fill(0); // attributes .. recordsCount
    b[57..61].copy_from_slice(&1i32.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// 1 MiB of back-to-back batches with consecutive offsets.
fn mib_of_batches(batch_bytes: usize) -> Vec<u8> {
    (0..MIB / batch_bytes).flat_map(|i| batch(batch_bytes, i as i64)).collect()
}

fn batch_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_1mib");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Bytes(MIB as u64));
    for batch_bytes in [1024, 64 * 1024] {
        let data = mib_of_batches(batch_bytes);
        assert_eq!(data.len(), MIB);
        group.bench_with_input(BenchmarkId::new("validate_all", batch_bytes), &data, |b, d| {
            b.iter(|| validate_all(black_box(d), usize::MAX).map(|v| v.len()))
        });
        group.bench_with_input(BenchmarkId::new("scan", batch_bytes), &data, |b, d| {
            b.iter(|| scan(black_box(d), Some(0), |_, _| {}).valid_bytes)
        });
    }
    let data = mib_of_batches(1024);
    group.bench_function("crc32c", |b| b.iter(|| crc32c::crc32c(black_box(&data))));
    group.finish();
}

criterion_group!(benches, batch_throughput);
criterion_main!(benches);
