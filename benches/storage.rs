//! Storage benchmarks on the real filesystem (the current directory's, or
//! `RINGMQ_BENCH_DIR`): preallocation methods, durable append latency and
//! throughput (segments preallocated as `RINGMQ_BENCH_PREALLOCATION` says,
//! default the broker's), and the fetch read path. Compare with fio (README, Performance).
//!
//! The append benches run twice: on a growing log (every new segment is
//! allocated and zero-filled while appends go on) and on a log under
//! retention (`*_recycled`: retired segment files are reused, so appends
//! overwrite written blocks, which is what fio's overwrite job measures).

use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::io::{DmaFile, OpenOptions};
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use ringmq::kafka::record_batch::synthetic_batch;
use ringmq::storage::log::AckWait;
use ringmq::storage::segment::{open_rw, preallocate};
use ringmq::storage::{LogConfig, PartitionLog, Preallocation};

fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var_os("RINGMQ_BENCH_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    std::fs::create_dir_all(&base).expect("bench dir");
    tempfile::tempdir_in(base).expect("tempdir")
}

/// Pinned to CPU 0, as the broker pins its first shard.
fn executor() -> LocalExecutor {
    LocalExecutorBuilder::new(Placement::Fixed(0)).make().expect("executor")
}

/// Latency of 4 KiB durable appends (O_DIRECT|O_DSYNC writes, as the
/// appender does under flush=always) into a segment reserved by each method.
fn preallocation(c: &mut Criterion) {
    let mut group = c.benchmark_group("preallocation_4k_durable_append");
    group.measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1)).sample_size(20);
    let ex = executor();
    for mode in [Preallocation::Zero, Preallocation::Fallocate] {
        group.bench_function(BenchmarkId::from_parameter(format!("{mode:?}")), |b| {
            b.iter_custom(|iters| {
                ex.run(async move {
                    let dir = bench_dir();
                    let path = dir.path().join("seg");
                    let capacity = ((iters + 1) * 4096).next_multiple_of(1 << 20);
                    let file: DmaFile =
                        OpenOptions::new().read(true).write(true).create(true).dma_open(&path).await.expect("open");
                    preallocate(&file, 0, capacity, mode, &path).await.expect("preallocate");
                    file.close().await.expect("close");
                    let file = open_rw(&path, true).await.expect("reopen");
                    let start = Instant::now();
                    for i in 0..iters {
                        let mut buf = file.alloc_dma_buffer(4096);
                        buf.as_bytes_mut().fill(0xab);
                        file.write_at(buf, i * 4096).await.expect("write");
                    }
                    let elapsed = start.elapsed();
                    file.close().await.expect("close");
                    elapsed
                })
            })
        });
    }
    group.finish();
}

/// The append benches' log: 64 MiB segments, preallocated the broker's way
/// unless `RINGMQ_BENCH_PREALLOCATION` says `zero` or `fallocate`. With
/// `recycled`, retention keeps 192 MiB and the log is first filled past it,
/// so every roll reuses a retired file (the log applies size retention at
/// each roll, as in the broker).
async fn open_log(dir: &std::path::Path, recycled: bool) -> Rc<PartitionLog> {
    let mut config = LogConfig { segment_bytes: 64 << 20, ..LogConfig::default() };
    if let Ok(mode) = std::env::var("RINGMQ_BENCH_PREALLOCATION") {
        config.preallocation = mode.parse().unwrap_or_else(|e| panic!("RINGMQ_BENCH_PREALLOCATION: {e}"));
    }
    if recycled {
        config.retention_bytes = 3 * config.segment_bytes as i64;
    }
    let log = PartitionLog::open(dir.to_path_buf(), "bench".into(), 0, config).await.expect("open");
    if recycled {
        // Six segments' worth: retention has retired some, and rolls have
        // taken their files.
        let template = synthetic_batch(1, (1 << 20) - 80, 0);
        for _ in 0..6 * 64 {
            log.append(template.clone(), AckWait::Commit).await.expect("append");
        }
        assert!(log.offsets().log_start_offset > 0, "retention retired no segment");
    }
    log
}

const LOG_KINDS: [(&str, bool); 2] = [("", false), ("_recycled", true)];

/// One producer, one batch at a time: latency of append + group commit.
/// The log is opened once per batch size (its preallocation is not timed)
/// and reused, so runs see the steady state: rolls onto prepared segments.
fn append_commit(c: &mut Criterion) {
    let ex = executor();
    for (suffix, recycled) in LOG_KINDS {
        let mut group = c.benchmark_group(format!("append_commit_sequential{suffix}"));
        group.measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(2)).sample_size(30);
        for batch_bytes in [1024usize, 64 * 1024] {
            let dir = bench_dir();
            let path = dir.path().to_path_buf();
            let log = ex.run(async move { open_log(&path, recycled).await });
            group.throughput(Throughput::Bytes(batch_bytes as u64));
            group.bench_function(BenchmarkId::from_parameter(batch_bytes), |b| {
                b.iter_custom(|iters| {
                    let log = log.clone();
                    ex.run(async move {
                        let template = synthetic_batch(1, batch_bytes - 80, 0);
                        let start = Instant::now();
                        for _ in 0..iters {
                            log.append(template.clone(), AckWait::Commit).await.expect("append");
                        }
                        start.elapsed()
                    })
                })
            });
            ex.run(async move { log.close().await });
        }
        group.finish();
    }
}

/// Many producers at once (64 appends kept in flight): group-commit throughput.
fn append_commit_concurrent(c: &mut Criterion) {
    let ex = executor();
    for (suffix, recycled) in LOG_KINDS {
        let mut group = c.benchmark_group(format!("append_commit_64_in_flight{suffix}"));
        group.measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(2)).sample_size(20);
        for batch_bytes in [1024usize, 64 * 1024] {
            let dir = bench_dir();
            let path = dir.path().to_path_buf();
            let log = ex.run(async move { open_log(&path, recycled).await });
            group.throughput(Throughput::Bytes(batch_bytes as u64 * 64));
            group.bench_function(BenchmarkId::from_parameter(batch_bytes), |b| {
                b.iter_custom(|iters| {
                    let log = log.clone();
                    ex.run(async move {
                        let template = synthetic_batch(1, batch_bytes - 80, 0);
                        // 64 appends in flight all along: a new one as soon
                        // as one completes (iters x 64 in all).
                        let total = iters * 64;
                        let mut in_flight = futures_util::stream::FuturesUnordered::new();
                        let (mut started, mut completed) = (0u64, 0u64);
                        let start = Instant::now();
                        while completed < total {
                            while started < total && in_flight.len() < 64 {
                                in_flight.push(log.append(template.clone(), AckWait::Commit));
                                started += 1;
                            }
                            futures_util::StreamExt::next(&mut in_flight).await.expect("in flight").expect("append");
                            completed += 1;
                        }
                        start.elapsed()
                    })
                })
            });
            ex.run(async move { log.close().await });
        }
        group.finish();
    }
}

/// The fetch path: reading committed batches from a sealed (mapped) segment.
fn read_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_1mib_of_1k_batches");
    group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Bytes(1 << 20));
    let ex = executor();
    let dir = bench_dir();
    let path = dir.path().to_path_buf();
    let log = ex.run(async move {
        let config = LogConfig { segment_bytes: 8 << 20, tail_cache_bytes: 0, ..LogConfig::default() };
        let log = PartitionLog::open(path, "bench".into(), 0, config).await.expect("open");
        let template = synthetic_batch(1, 1024 - 80, 0);
        for _ in 0..16 {
            let appends = (0..1024).map(|_| log.append(template.clone(), AckWait::Commit));
            for r in futures_util::future::join_all(appends).await {
                r.expect("append");
            }
        }
        log
    });
    let hw = log.high_watermark();
    group.bench_function("mmap", |b| {
        let mut offset = 0;
        b.iter(|| {
            let r = log.read(offset, 1 << 20).expect("read");
            offset += 1000;
            if offset + 1100 >= hw {
                offset = 0;
            }
            r.bytes
        })
    });
    group.finish();
    ex.run(async move { log.close().await });
}

criterion_group!(benches, preallocation, append_commit, append_commit_concurrent, read_path);
criterion_main!(benches);
