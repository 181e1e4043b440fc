//! How busy the disk is kept by the group commit (diagnostic): 64 appends of
//! 64 KiB kept in flight (`ROUNDS` x 4 MiB, 400 MiB by default) into a 1 GiB
//! zero-filled segment (overwrites only, no preparation during the run);
//! prints MiB/s, the commit writes' summed time as a share of the wall time
//! (up to 200 % with two writes in flight), and how many writes started
//! while another was in flight.
use ringmq::kafka::record_batch::synthetic_batch;
use ringmq::storage::log::AckWait;
use ringmq::storage::{LogConfig, PartitionLog, Preallocation};
use std::time::Instant;

fn main() {
    let ex = glommio::LocalExecutorBuilder::default().make().expect("executor");
    ex.run(async move {
        let dir = tempfile::tempdir_in("target").expect("tempdir");
        let config = LogConfig { segment_bytes: 1 << 30, preallocation: Preallocation::Zero, ..LogConfig::default() };
        let log = PartitionLog::open(dir.path().to_path_buf(), "p".into(), 0, config).await.expect("open");
        let template = synthetic_batch(1, 65536 - 80, 0);
        let rounds: usize = std::env::var("ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(100); // x 4 MiB
        assert!((1..=250).contains(&rounds), "ROUNDS: 1 to 250 (the segment holds 1 GiB)");
        let (busy0, _) = log.commit_histograms();
        let t = Instant::now();
        // Keep 64 appends in flight: a new one as soon as one completes.
        let mut in_flight = futures_util::stream::FuturesUnordered::new();
        let mut started = 0;
        while started < rounds * 64 || !in_flight.is_empty() {
            while started < rounds * 64 && in_flight.len() < 64 {
                in_flight.push(log.append(template.clone(), AckWait::Commit));
                started += 1;
            }
            futures_util::StreamExt::next(&mut in_flight).await.expect("in flight").expect("append");
        }
        let elapsed = t.elapsed();
        let (busy1, _) = log.commit_histograms();
        let busy_us = busy1.sum() - busy0.sum();
        let mib = rounds as f64 * 4.0;
        let commits = busy1.count() - busy0.count();
        println!(
            "{:.0} MiB/s, commit writes' summed time {:.1} % of {:.0} ms ({commits} writes, {} of them started while another was in flight, {:.0} µs each on average)",
            mib / elapsed.as_secs_f64(),
            busy_us as f64 / 1e3 / elapsed.as_secs_f64() / 10.0,
            elapsed.as_secs_f64() * 1e3,
            log.commit_writes_overlapped(),
            busy_us as f64 / commits as f64
        );
        log.close().await;
    });
}
