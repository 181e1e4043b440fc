//! Prints the distribution of single-append commit latencies (diagnostic).
//!
//! `commit_probe zero|fallocate`: 1 KiB appends to a log, one at a time
//! (`COUNT`, 3,000 by default), and the mean time of its commit writes.
//! `commit_probe raw`: bare glommio 4 KiB writes (+ fdatasync, or O_DSYNC
//! with `DSYNC=1`) into a zero-filled file; `BYTES`, `REWRITE`, `APPEND`
//! (the log's write pattern for appends of that size), `NOISE` (bytes that
//! do not compress) and `MMAP` (the file also mapped) vary what is written.
//! `commit_probe fio-pair`: alternates one log append (`PAYLOAD`, 1,000 by
//! default) with fio's own operation at `BYTES` (4096 by default): a blocking
//! O_DIRECT pwrite of the next block and an fdatasync, into a zero-filled file
//! beside the log; prints both and their ratio per block of 200 rounds
//! (`RECYCLED=1`: a log under retention, whose segments reuse retired files).
//! `commit_probe fio-slices`: group-commit throughput the same way: slices of
//! 64 KiB appends kept 64 in flight alternate with slices of fio's 1 MiB
//! pwrite+fdatasync (`SLICE_MS`, 200 by default; `SLICES` pairs, 15).
//! All take `SPIN_US` (the executor spins that long before parking) and
//! `CPU` (the one the executor is pinned to, 0 by default, as the broker
//! pins its first shard).
use ringmq::kafka::record_batch::synthetic_batch;
use ringmq::storage::log::AckWait;
use ringmq::storage::{LogConfig, PartitionLog, Preallocation};
use std::time::Instant;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("raw") {
        let ex = executor();
        ex.run(async move {
            let dir = tempfile::tempdir_in("target").expect("tempdir");
            let path = dir.path().join("raw");
            let file = glommio::io::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .dma_open(&path)
                .await
                .expect("open");
            ringmq::storage::segment::preallocate(&file, 0, 64 << 20, Preallocation::Zero, &path)
                .await
                .expect("prealloc");
            let dsync = std::env::var("DSYNC").is_ok();
            let file = if dsync {
                glommio::io::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_DSYNC)
                    .dma_open(&path)
                    .await
                    .expect("open")
            } else {
                file
            };
            // MMAP=1: the file is also mapped, as the log maps its active segment.
            let _map = std::env::var("MMAP").is_ok().then(|| {
                let f = std::fs::File::open(&path).expect("open for map");
                unsafe { memmap2::MmapOptions::new().len(64 << 20).map(&f) }.expect("map")
            });
            let mut lat = Vec::new();
            // REWRITE=N: each 4 KiB page is written N times in a row, as 1 KiB
            // appends rewrite the partly filled last page.
            let rewrite: u64 = std::env::var("REWRITE").ok().and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
            // BYTES=N: each write is N bytes (4096 by default), at N-byte steps.
            let bytes: u64 = std::env::var("BYTES").ok().and_then(|s| s.parse().ok()).unwrap_or(4096);
            // APPEND=N: the log's pattern for N-byte appends instead: each
            // write covers the pages from the one holding the end to the new end.
            let append: u64 = std::env::var("APPEND").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
            let mut end = 0u64;
            let noise = std::env::var("NOISE").is_ok();
            for i in 0..std::env::var("COUNT").ok().and_then(|s| s.parse().ok()).unwrap_or(3000u64) {
                let t = Instant::now();
                let (position, len) = if append > 0 {
                    let start = end / 4096 * 4096;
                    end += append;
                    (start, end.div_ceil(4096) * 4096 - start)
                } else {
                    (i / rewrite * bytes, bytes)
                };
                let mut buf = file.alloc_dma_buffer(len as usize);
                buf.as_bytes_mut().fill(1);
                if noise {
                    // NOISE=1: bytes that do not compress, like records.
                    for (k, b) in buf.as_bytes_mut().iter_mut().enumerate() {
                        *b = ((k as u64 ^ i).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8;
                    }
                }
                file.write_at(buf, position).await.expect("write");
                if !dsync {
                    file.fdatasync().await.expect("sync");
                }
                lat.push(t.elapsed().as_micros() as u64);
            }
            lat.sort_unstable();
            let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize];
            let mean = lat.iter().sum::<u64>() / lat.len() as u64;
            println!(
                "raw glommio 4k write+fdatasync: mean={mean}us p50={}us p90={}us p99={}us",
                p(0.5),
                p(0.9),
                p(0.99)
            );
        });
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("pair") {
        pair();
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("fio-pair") {
        fio_pair();
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("fio-slices") {
        fio_slices();
        return;
    }
    let mode = match std::env::args().nth(1).as_deref() {
        Some("fallocate") => Preallocation::Fallocate,
        _ => Preallocation::Zero,
    };
    let ex = executor();
    ex.run(async move {
        let dir = tempfile::tempdir_in("target").expect("tempdir");
        let config = LogConfig { segment_bytes: 64 << 20, preallocation: mode, ..LogConfig::default() };
        let log = PartitionLog::open(dir.path().to_path_buf(), "p".into(), 0, config).await.expect("open");
        let template = synthetic_batch(1, 1000, 0);
        let mut lat = Vec::new();
        // COUNT=N appends (3,000 by default); a mean per 5,000 is printed as they go.
        let count: usize = std::env::var("COUNT").ok().and_then(|s| s.parse().ok()).unwrap_or(3000);
        for i in 0..count {
            let t = Instant::now();
            log.append(template.clone(), AckWait::Commit).await.expect("append");
            lat.push(t.elapsed().as_micros() as u64);
            if (i + 1) % 5000 == 0 {
                println!(
                    "appends {}..{}: mean {} us",
                    i + 1 - 5000,
                    i + 1,
                    lat[i + 1 - 5000..].iter().sum::<u64>() / 5000
                );
            }
        }
        lat.sort_unstable();
        let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize];
        let mean = lat.iter().sum::<u64>() / lat.len() as u64;
        let (write_us, write_bytes) = log.commit_histograms();
        println!(
            "{mode:?}: mean={mean}us p50={}us p90={}us p99={}us max={}us; its commit writes: mean {} us, {} bytes",
            p(0.5),
            p(0.9),
            p(0.99),
            p(1.0),
            write_us.sum() / write_us.count().max(1),
            write_bytes.sum() / write_bytes.count().max(1)
        );
        log.close().await;
    });
}

/// `commit_probe pair`: alternates one 1 KiB log append with one bare
/// glommio O_DSYNC write of the same pages the log's write covers (its own
/// zero-filled file), so both see the same disk moment; prints both means.
fn pair() {
    let ex = executor();
    ex.run(async move {
        let dir = tempfile::tempdir_in("target").expect("tempdir");
        let config = LogConfig { segment_bytes: 64 << 20, preallocation: Preallocation::Zero, ..LogConfig::default() };
        let log = PartitionLog::open(dir.path().join("log"), "p".into(), 0, config).await.expect("open");
        let path = dir.path().join("raw");
        let file = glommio::io::OpenOptions::new().read(true).write(true).create(true).dma_open(&path).await.expect("open");
        ringmq::storage::segment::preallocate(&file, 0, 64 << 20, Preallocation::Zero, &path).await.expect("prealloc");
        let file = glommio::io::OpenOptions::new().read(true).write(true).custom_flags(libc::O_DSYNC).dma_open(&path).await.expect("open");
        // PAYLOAD=N: each batch carries one N-byte record (1,000 by default).
        let payload: usize = std::env::var("PAYLOAD").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
        let template = synthetic_batch(1, payload, 0);
        let (mut log_us, mut raw_us) = (Vec::new(), Vec::new());
        let mut end = 0u64;
        for _ in 0..3000 {
            let t = Instant::now();
            log.append(template.clone(), AckWait::Commit).await.expect("append");
            log_us.push(t.elapsed().as_micros() as u64);
            let t = Instant::now();
            let start = end / 4096 * 4096;
            end += template.len() as u64;
            let mut buf = file.alloc_dma_buffer((end.div_ceil(4096) * 4096 - start) as usize);
            if std::env::var("LIKE_LOG").is_ok() {
                // LIKE_LOG=1: batch bytes up to the end, zeros after, as the log writes.
                let out = buf.as_bytes_mut();
                let data = (end - start) as usize;
                for (k, b) in out[..data].iter_mut().enumerate() {
                    *b = template[k % template.len()];
                }
                out[data..].fill(0);
            } else {
                buf.as_bytes_mut().fill(1);
            }
            file.write_at(buf, start).await.expect("write");
            raw_us.push(t.elapsed().as_micros() as u64);
        }
        let summary = |v: &mut Vec<u64>| {
            v.sort_unstable();
            (v.iter().sum::<u64>() / v.len() as u64, v[v.len() / 2], v[v.len() * 9 / 10])
        };
        let (l, r) = (summary(&mut log_us), summary(&mut raw_us));
        let (write_us, _) = log.commit_histograms();
        println!(
            "log append: mean {} p50 {} p90 {} us (its commit writes, issue to completion: mean {} us); bare write of the same pages: mean {} p50 {} p90 {} us",
            l.0, l.1, l.2, write_us.sum() / write_us.count().max(1), r.0, r.1, r.2
        );
        log.close().await;
    });
}

/// `commit_probe fio-pair`: one log append, then fio's overwrite+fdatasync
/// operation (`--ioengine=psync --direct=1 --fdatasync=1 --overwrite=1`) at
/// `BYTES`, alternately, `COUNT` rounds (3,000 by default), so that both see
/// the same disk moment. Prints the means and the ratio of means per block
/// of 200 rounds (median, min and max across blocks).
fn fio_pair() {
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|s| s.parse().ok()).unwrap_or(d);
    let payload = env("PAYLOAD", 1000) as usize;
    let bytes = env("BYTES", 4096) as usize;
    let count = env("COUNT", 3000) as usize;
    executor().run(async move {
        let dir = tempfile::tempdir_in("target").expect("tempdir");
        let (log, mut fio) = log_and_fio_file(dir.path()).await;
        let fio_bytes = fio.size_bytes;
        // The bare glommio write of the same block (BARE=1): O_DSYNC through io_uring.
        let bare_file = if std::env::var("BARE").is_ok() {
            let bare_path = dir.path().join("bare.dat");
            let f = glommio::io::OpenOptions::new().read(true).write(true).create(true).dma_open(&bare_path).await.expect("open bare");
            ringmq::storage::segment::preallocate(&f, 0, fio_bytes, Preallocation::Zero, &bare_path).await.expect("prealloc bare");
            f.close().await.expect("close bare");
            Some(std::rc::Rc::new(glommio::io::OpenOptions::new().read(true).write(true).custom_flags(libc::O_DSYNC).dma_open(&bare_path).await.expect("open bare dsync")))
        } else {
            None
        };
        let mut bare_us = Vec::with_capacity(count);
        let bare_append = std::env::var("BARE").as_deref() == Ok("append");
        let bare_task = std::env::var("BARE_TASK").is_ok();
        let bare_like_log = std::env::var("BARE_LIKE_LOG").is_ok();
        // BARE_MMAP=1: the bare file is also mapped, as the log maps its active segment.
        let _bare_map = std::env::var("BARE_MMAP").is_ok().then(|| {
            let f = std::fs::File::open(dir.path().join("bare.dat")).expect("open for map");
            // SAFETY: nothing truncates the file while the probe runs.
            unsafe { memmap2::MmapOptions::new().len(fio_bytes as usize).map(&f) }.expect("map")
        });
        let mut bare_end = 0u64;
        let warmup = 200;
        let block = AlignedBlock::new(bytes);
        let template = synthetic_batch(1, payload, 0);
        let (mut log_us, mut fio_us) = (Vec::with_capacity(count), Vec::with_capacity(count));
        for round in 0..warmup + count {
            if round == warmup {
                log_us.clear();
                fio_us.clear();
                bare_us.clear();
            }
            if let Some(f) = &bare_file {
                let t = Instant::now();
                // BARE=append: the log's pattern for the template's size
                // (from the page holding the end to the new end).
                let (position, len) = if bare_append {
                    let start = bare_end / 4096 * 4096;
                    bare_end += template.len() as u64;
                    (start, (bare_end.div_ceil(4096) * 4096 - start) as usize)
                } else {
                    (fio.position, bytes)
                };
                let mut b = f.alloc_dma_buffer(len);
                b.as_bytes_mut().fill(0xab);
                if bare_like_log {
                    // BARE_LIKE_LOG=1: the bytes the log writes there: batches
                    // back to back from the file's start, zeros past the end.
                    for (k, out) in b.as_bytes_mut().iter_mut().enumerate() {
                        let x = position + k as u64;
                        *out = if x < bare_end { template[(x % template.len() as u64) as usize] } else { 0 };
                    }
                }
                if bare_task {
                    // BARE_TASK=1: another task writes and answers by oneshot, as the committer does.
                    let (tx, rx) = futures_channel::oneshot::channel();
                    let f = f.clone();
                    glommio::spawn_local(async move {
                        let r = f.write_at(b, position).await.map(|_| ()).map_err(|e| e.to_string());
                        let _ = tx.send(r);
                    })
                    .detach();
                    rx.await.expect("bare task").expect("bare write");
                } else {
                    f.write_at(b, position).await.expect("bare write");
                }
                bare_us.push(t.elapsed().as_secs_f64() * 1e6);
            }
            let mut fio_op = || {
                let t = Instant::now();
                fio.write_and_sync(&block);
                t.elapsed().as_secs_f64() * 1e6
            };
            // Which goes first alternates, so neither always follows the other.
            if round % 2 == 1 {
                fio_us.push(fio_op());
            }
            let t = Instant::now();
            log.append(template.clone(), AckWait::Commit).await.expect("append");
            log_us.push(t.elapsed().as_secs_f64() * 1e6);
            if round % 2 == 0 {
                fio_us.push(fio_op());
            }
        }
        let ratios: Vec<f64> = log_us.chunks(200).zip(fio_us.chunks(200)).map(|(l, f)| mean(l) / mean(f)).collect();
        let blocks = ratios.len();
        let (median, min, max) = spread(ratios);
        println!(
            "fio-pair: log append {} B: mean {:.0} us; fio pwrite+fdatasync {} B: mean {:.0} us; ratio of means {:.2}x; per 200 rounds: median {:.2}x, min {:.2}x, max {:.2}x ({} blocks)",
            template.len(), mean(&log_us), bytes, mean(&fio_us), mean(&log_us) / mean(&fio_us), median, min, max, blocks
        );
        let (write_us, _) = log.commit_histograms();
        println!("fio-pair: the log's commit writes, issue to completion: mean {} us over {} writes (warm-up included)", write_us.sum() / write_us.count().max(1), write_us.count());
        if !bare_us.is_empty() {
            println!("fio-pair: bare glommio O_DSYNC write {} B: mean {:.0} us ({:.2}x fio)", bytes, mean(&bare_us), mean(&bare_us) / mean(&fio_us));
        }
        log.close().await;
    });
}

/// The log and fio's file for `fio-pair` and `fio-slices`: a 64 MiB-segment
/// log (under retention and filled past it with `RECYCLED=1`) and a 256 MiB
/// file written once and dropped from the page cache, as fio lays out its
/// file (`invalidate=1`).
async fn log_and_fio_file(dir: &std::path::Path) -> (std::rc::Rc<PartitionLog>, FioFile) {
    use std::os::unix::fs::OpenOptionsExt;
    // Set and not empty or 0: benches/report passes RECYCLED= for a growing log.
    let recycled = std::env::var("RECYCLED").is_ok_and(|v| !v.is_empty() && v != "0");
    let mut config = LogConfig { segment_bytes: 64 << 20, preallocation: Preallocation::Zero, ..LogConfig::default() };
    if recycled {
        config.retention_bytes = 3 * config.segment_bytes as i64;
    }
    let log = PartitionLog::open(dir.join("log"), "p".into(), 0, config).await.expect("open");
    if recycled {
        let fill = synthetic_batch(1, (1 << 20) - 80, 0);
        for _ in 0..6 * 64 {
            log.append(fill.clone(), AckWait::Commit).await.expect("fill");
        }
        assert!(log.segments_recycled() > 0, "no segment reused a retired file");
    }
    let fio_bytes = 256u64 << 20;
    let path = dir.join("fio.dat");
    std::fs::write(&path, vec![0u8; fio_bytes as usize]).expect("fill fio file");
    {
        let f = std::fs::File::open(&path).expect("open fio file");
        f.sync_all().expect("sync fio file");
        // SAFETY: a valid descriptor; the call only changes cache state.
        assert_eq!(
            unsafe { libc::posix_fadvise(std::os::fd::AsRawFd::as_raw_fd(&f), 0, 0, libc::POSIX_FADV_DONTNEED) },
            0
        );
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .expect("open O_DIRECT");
    (log, FioFile { file, size_bytes: fio_bytes, position: 0 })
}

/// fio's overwrite job's file: each operation writes the next block (O_DIRECT,
/// blocking) and fdatasyncs, wrapping at the end.
struct FioFile {
    file: std::fs::File,
    size_bytes: u64,
    position: u64,
}

impl FioFile {
    /// One `--ioengine=psync --direct=1 --fdatasync=1` operation.
    fn write_and_sync(&mut self, block: &AlignedBlock) {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(block.bytes(), self.position).expect("pwrite");
        // SAFETY: a valid open descriptor.
        assert_eq!(unsafe { libc::fdatasync(std::os::fd::AsRawFd::as_raw_fd(&self.file)) }, 0, "fdatasync");
        self.position = (self.position + block.bytes().len() as u64) % self.size_bytes;
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Median, min and max of per-pair ratios.
fn spread(mut ratios: Vec<f64>) -> (f64, f64, f64) {
    ratios.sort_by(f64::total_cmp);
    (ratios[ratios.len() / 2], ratios[0], ratios[ratios.len() - 1])
}

/// The probe's executor, pinned to CPU `CPU` (0 by default) as the broker
/// pins each shard: unpinned, the thread moves between CPUs and each move
/// costs the commit path a cold wake-up (the interleaved group-commit ratio
/// was 0.62-0.87x unpinned against 0.90-1.07x pinned in one session).
fn executor() -> glommio::LocalExecutor {
    let spin: u64 = std::env::var("SPIN_US").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let cpu: usize = std::env::var("CPU").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(cpu))
        .spin_before_park(std::time::Duration::from_micros(spin))
        .make()
        .expect("executor")
}

/// An aligned block of `bytes` for O_DIRECT writes, freed on drop.
struct AlignedBlock {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl AlignedBlock {
    fn new(bytes: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(bytes, 4096).expect("layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        let mut block = Self { ptr, layout };
        block.as_mut().fill(0xab);
        block
    }
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` points to `layout.size()` initialised bytes owned here.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
    fn bytes(&self) -> &[u8] {
        // SAFETY: as in `as_mut`, shared.
        unsafe { std::slice::from_raw_parts(self.ptr, self.layout.size()) }
    }
}

impl Drop for AlignedBlock {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

/// `commit_probe fio-slices`: `SLICES` pairs of a `SLICE_MS` slice of 64 KiB
/// appends kept 64 in flight (drained before the slice ends) and a slice of
/// fio's 1 MiB overwrite+fdatasync; prints each side's MiB/s and the ratio
/// per pair (median, min, max).
fn fio_slices() {
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|s| s.parse().ok()).unwrap_or(d);
    let slice = std::time::Duration::from_millis(env("SLICE_MS", 200));
    let slices = env("SLICES", 15) as usize;
    executor().run(async move {
        let dir = tempfile::tempdir_in("target").expect("tempdir");
        let (log, mut fio) = log_and_fio_file(dir.path()).await;
        let block = AlignedBlock::new(1 << 20);
        let template = synthetic_batch(1, 65536 - 80, 0);
        let (mut log_mibs, mut fio_mibs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..slices {
            let start = Instant::now();
            let mut in_flight = futures_util::stream::FuturesUnordered::new();
            let mut done_bytes = 0u64;
            loop {
                let open = start.elapsed() < slice;
                while open && in_flight.len() < 64 {
                    in_flight.push(log.append(template.clone(), AckWait::Commit));
                }
                match futures_util::StreamExt::next(&mut in_flight).await {
                    Some(r) => {
                        r.expect("append");
                        done_bytes += template.len() as u64;
                    }
                    None => break,
                }
            }
            let log_rate = done_bytes as f64 / start.elapsed().as_secs_f64() / (1 << 20) as f64;
            let start = Instant::now();
            let mut fio_done = 0u64;
            while start.elapsed() < slice {
                fio.write_and_sync(&block);
                fio_done += 1 << 20;
            }
            let fio_rate = fio_done as f64 / start.elapsed().as_secs_f64() / (1 << 20) as f64;
            log_mibs.push(log_rate);
            fio_mibs.push(fio_rate);
            ratios.push(log_rate / fio_rate);
        }
        let pairs = ratios.len();
        let (median, min, max) = spread(ratios);
        println!(
            "fio-slices: log 64 KiB x 64 in flight: mean {:.0} MiB/s; fio 1 MiB pwrite+fdatasync: mean {:.0} MiB/s; ratio of means {:.2}x; per slice pair: median {:.2}x, min {:.2}x, max {:.2}x ({} pairs of {} ms)",
            mean(&log_mibs), mean(&fio_mibs), mean(&log_mibs) / mean(&fio_mibs), median, min, max, pairs, slice.as_millis()
        );
        log.close().await;
    });
}
