//! Prometheus text exposition of every shard's counters and partitions.

use std::fmt::Write;
use std::time::Duration;

use crate::runtime::mesh::ShardReport;

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

pub fn render(reports: &[ShardReport], uptime: Duration) -> String {
    let mut out = String::new();
    family(&mut out, "ringmq_uptime_seconds", "gauge", "Seconds since the broker started.");
    let _ = writeln!(out, "ringmq_uptime_seconds {:.3}", uptime.as_secs_f64());
    let shard_counters: [(&str, &str, fn(&ShardReport) -> u64); 6] = [
        ("ringmq_requests_total", "Kafka requests handled, by the shard that read them.", |r| r.requests),
        ("ringmq_produce_bytes_total", "Record bytes received in produce requests.", |r| r.produce_bytes),
        ("ringmq_fetch_bytes_total", "Record bytes sent in fetch responses.", |r| r.fetch_bytes),
        ("ringmq_cross_shard_hops_total", "Requests sent to another shard.", |r| r.cross_shard_hops),
        ("ringmq_connections_accepted_total", "Client connections accepted.", |r| r.connections_accepted),
        ("ringmq_connections_open", "Client connections open now.", |r| r.connections_open),
    ];
    for (name, help, get) in shard_counters {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        family(&mut out, name, kind, help);
        for r in reports {
            let _ = writeln!(out, "{name}{{shard=\"{}\",cpu=\"{}\"}} {}", r.shard, r.cpu, get(r));
        }
    }
    let partition_values: [(&str, &str, &str, fn(&crate::runtime::mesh::PartitionGauges) -> i64); 5] = [
        ("ringmq_partition_high_watermark", "gauge", "Next offset after the last committed record.", |p| p.offsets.high_watermark),
        ("ringmq_partition_log_end_offset", "gauge", "Next offset to assign (appends waiting for a commit included).", |p| p.offsets.log_end_offset),
        ("ringmq_partition_log_start_offset", "gauge", "First offset still stored.", |p| p.offsets.log_start_offset),
        ("ringmq_partition_commits_total", "counter", "Group commits (one durable write each).", |p| p.commits as i64),
        ("ringmq_partition_committed_bytes_total", "counter", "Record bytes made durable.", |p| p.committed_bytes as i64),
    ];
    for (name, kind, help, get) in partition_values {
        family(&mut out, name, kind, help);
        for r in reports {
            for p in &r.partitions {
                let _ = writeln!(out, "{name}{{shard=\"{}\",topic=\"{}\",partition=\"{}\"}} {}", r.shard, p.topic, p.partition, get(p));
            }
        }
    }
    out
}
