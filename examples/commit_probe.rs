//! Prints the distribution of single-append commit latencies (diagnostic).
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
            let mut lat = Vec::new();
            // REWRITE=N: each 4 KiB page is written N times in a row, as 1 KiB
            // appends rewrite the partly filled last page.
            let rewrite: u64 = std::env::var("REWRITE").ok().and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
            for i in 0..3000u64 {
                let t = Instant::now();
                let mut buf = file.alloc_dma_buffer(4096);
                buf.as_bytes_mut().fill(1);
                file.write_at(buf, i / rewrite * 4096).await.expect("write");
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
    let mode = match std::env::args().nth(1).as_deref() { Some("fallocate") => Preallocation::Fallocate, _ => Preallocation::Zero };
    let spin: u64 = std::env::var("SPIN_US").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
        let ex = glommio::LocalExecutorBuilder::default().spin_before_park(std::time::Duration::from_micros(spin)).make().expect("executor");
    ex.run(async move {
        let dir = tempfile::tempdir_in("target").expect("tempdir");
        let config = LogConfig { segment_bytes: 64 << 20, preallocation: mode, ..LogConfig::default() };
        let log = PartitionLog::open(dir.path().to_path_buf(), "p".into(), 0, config).await.expect("open");
        let template = synthetic_batch(1, 1000, 0);
        let mut lat = Vec::new();
        for _ in 0..3000 {
            let t = Instant::now();
            log.append(template.clone(), AckWait::Commit).await.expect("append");
            lat.push(t.elapsed().as_micros() as u64);
        }
        lat.sort_unstable();
        let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize];
        let mean = lat.iter().sum::<u64>() / lat.len() as u64;
        println!("{mode:?}: mean={mean}us p50={}us p90={}us p99={}us max={}us", p(0.5), p(0.9), p(0.99), p(1.0));
        log.close().await;
    });
}

#[allow(dead_code)]
fn raw() {}
