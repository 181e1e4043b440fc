//! CRC-32C and RecordBatch validation throughput: what the produce path
//! spends per MiB before a batch is queued for commit.

use std::time::Duration;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringmq::kafka::record_batch::synthetic_batch;
use ringmq::storage::batch::{scan, validate_all};

/// About 1 MiB of back-to-back batches of `batch_bytes` each.
fn mib_of_batches(batch_bytes: usize) -> BytesMut {
    let one = synthetic_batch(1, batch_bytes.saturating_sub(80), 0);
    let mut out = BytesMut::with_capacity(1 << 20);
    let mut base = 0i64;
    while out.len() + one.len() <= 1 << 20 {
        let mut b = one.clone();
        b[0..8].copy_from_slice(&base.to_be_bytes());
        base += 1;
        out.extend_from_slice(&b);
    }
    out
}

fn batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_1mib");
    group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    for batch_bytes in [1024usize, 64 * 1024] {
        let data = mib_of_batches(batch_bytes);
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_with_input(BenchmarkId::new("validate_all", batch_bytes), &data, |b, d| b.iter(|| validate_all(d, usize::MAX).map(|v| v.len())));
        group.bench_with_input(BenchmarkId::new("recovery_scan", batch_bytes), &data, |b, d| b.iter(|| scan(d, Some(0), |_, _| {}).valid_bytes));
    }
    let data = mib_of_batches(1024);
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("crc32c", |b| b.iter(|| crc32c::crc32c(&data)));
    group.finish();
}

criterion_group!(benches, batch);
criterion_main!(benches);
