//! Prometheus text exposition of the broker's state.

use std::fmt::Write;
use std::time::Instant;

use crate::runtime::shard::Shard;

pub fn render(shard: &Shard, started: Instant) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP ringmq_uptime_seconds Seconds since the process started.\n# TYPE ringmq_uptime_seconds gauge");
    let _ = writeln!(out, "ringmq_uptime_seconds {:.3}", started.elapsed().as_secs_f64());
    let _ = writeln!(out, "# HELP ringmq_partition_high_watermark Next offset after the last committed record.\n# TYPE ringmq_partition_high_watermark gauge");
    let mut logs = shard.logs();
    logs.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    for log in &logs {
        let _ = writeln!(out, "ringmq_partition_high_watermark{{shard=\"{}\",topic=\"{}\",partition=\"{}\"}} {}", shard.id, log.topic, log.partition, log.offsets().high_watermark);
    }
    let _ = writeln!(out, "# HELP ringmq_partition_log_start_offset First offset still stored.\n# TYPE ringmq_partition_log_start_offset gauge");
    for log in &logs {
        let _ = writeln!(out, "ringmq_partition_log_start_offset{{shard=\"{}\",topic=\"{}\",partition=\"{}\"}} {}", shard.id, log.topic, log.partition, log.offsets().log_start_offset);
    }
    out
}
