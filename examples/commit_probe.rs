//! Prints the distribution of single-append commit latencies (diagnostic).
//!
//! `commit_probe zero|fallocate`: 1 KiB appends to a log, one at a time
//! (`COUNT`, 3,000 by default), and the mean time of its commit writes.
//! `commit_probe raw`: bare glommio 4 KiB writes (+ fdatasync, or O_DSYNC
//! with `DSYNC=1`) into a zero-filled file; `BYTES`, `REWRITE`, `APPEND`
//! (the log's write pattern for appends of that size), `NOISE` (bytes that
//! do not compress) and `MMAP` (the file also mapped) vary what is written.
//! Both take `SPIN_US` (the executor spins that long before parking).
use std::time::Instant;
use ringmq::kafka::record_batch::synthetic_batch;
use ringmq::storage::log::AckWait;
use ringmq::storage::{LogConfig, PartitionLog, Preallocation};

fn main() {
    if std::env::args().nth(1).as_deref() == Some("raw") {
        let spin: u64 = std::env::var("SPIN_US").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
        let ex = glommio::LocalExecutorBuilder::default().spin_before_park(std::time::Duration::from_micros(spin)).make().expect("executor");
        ex.run(async move {
            let dir = tempfile::tempdir_in("target").expect("tempdir");
            let path = dir.path().join("raw");
            let file = glommio::io::OpenOptions::new().read(true).write(true).create(true).dma_open(&path).await.expect("open");
            ringmq::storage::segment::preallocate(&file, 0, 64 << 20, Preallocation::Zero, &path).await.expect("prealloc");
            let dsync = std::env::var("DSYNC").is_ok();
            let file = if dsync { glommio::io::OpenOptions::new().read(true).write(true).custom_flags(libc::O_DSYNC).dma_open(&path).await.expect("open") } else { file };
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
            for i in 0..3000u64 {
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
                if !dsync { file.fdatasync().await.expect("sync"); }
                lat.push(t.elapsed().as_micros() as u64);
            }
            lat.sort_unstable();
            let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize];
            let mean = lat.iter().sum::<u64>() / lat.len() as u64;
            println!("raw glommio 4k write+fdatasync: mean={mean}us p50={}us p90={}us p99={}us", p(0.5), p(0.9), p(0.99));
        });
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("pair") {
        pair();
        return;
    }
    let mode = match std::env::args().nth(1).as_deref() { Some("fallocate") => Preallocation::Fallocate, _ => Preallocation::Zero };
    let spin: u64 = std::env::var("SPIN_US").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
        let ex = glommio::LocalExecutorBuilder::default().spin_before_park(std::time::Duration::from_micros(spin)).make().expect("executor");
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
                println!("appends {}..{}: mean {} us", i + 1 - 5000, i + 1, lat[i + 1 - 5000..].iter().sum::<u64>() / 5000);
            }
        }
        lat.sort_unstable();
        let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize];
        let mean = lat.iter().sum::<u64>() / lat.len() as u64;
        let (write_us, write_bytes) = log.commit_histograms();
        println!(
            "{mode:?}: mean={mean}us p50={}us p90={}us p99={}us max={}us; its commit writes: mean {} us, {} bytes",
            p(0.5), p(0.9), p(0.99), p(1.0),
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
    let spin: u64 = std::env::var("SPIN_US").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let ex = glommio::LocalExecutorBuilder::default().spin_before_park(std::time::Duration::from_micros(spin)).make().expect("executor");
    ex.run(async move {
        let dir = tempfile::tempdir_in("target").expect("tempdir");
        let config = LogConfig { segment_bytes: 64 << 20, preallocation: Preallocation::Zero, ..LogConfig::default() };
        let log = PartitionLog::open(dir.path().join("log"), "p".into(), 0, config).await.expect("open");
        let path = dir.path().join("raw");
        let file = glommio::io::OpenOptions::new().read(true).write(true).create(true).dma_open(&path).await.expect("open");
        ringmq::storage::segment::preallocate(&file, 0, 64 << 20, Preallocation::Zero, &path).await.expect("prealloc");
        let file = glommio::io::OpenOptions::new().read(true).write(true).custom_flags(libc::O_DSYNC).dma_open(&path).await.expect("open");
        let template = synthetic_batch(1, 1000, 0);
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
