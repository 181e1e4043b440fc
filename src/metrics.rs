//! Prometheus text exposition of every shard's counters and partitions.

use std::fmt::Write;
use std::time::Duration;

use crate::histogram::Log2Histogram;
use crate::runtime::mesh::{PartitionGauges, ShardReport};

/// Process-wide gauges read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostGauges {
    pub uptime: Duration,
    pub disk_free_bytes: u64,
    pub disk_total_bytes: u64,
}

/// A metric family's HELP and TYPE lines.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A histogram family's lines for one label set; values are scaled by
/// `scale` (µs to seconds: 1e-6).
pub fn histogram(out: &mut String, name: &str, labels: &str, h: &Log2Histogram, scale: f64) {
    for (le, count) in h.cumulative() {
        match le {
            Some(le) => {
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{}\"}} {count}", le as f64 * scale);
            }
            None => {
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
            }
        }
    }
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum() as f64 * scale);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count());
}

type ShardValue = fn(&ShardReport) -> u64;
type PartitionValue = fn(&PartitionGauges) -> i64;

pub fn render(reports: &[ShardReport], host: HostGauges) -> String {
    let mut out = String::new();
    family(&mut out, "ringmq_uptime_seconds", "gauge", "Seconds since the broker started.");
    let _ = writeln!(out, "ringmq_uptime_seconds {:.3}", host.uptime.as_secs_f64());
    family(
        &mut out,
        "ringmq_disk_free_bytes",
        "gauge",
        "Free bytes on the data directory's filesystem (for unprivileged users).",
    );
    let _ = writeln!(out, "ringmq_disk_free_bytes {}", host.disk_free_bytes);
    family(&mut out, "ringmq_disk_size_bytes", "gauge", "Size of the data directory's filesystem.");
    let _ = writeln!(out, "ringmq_disk_size_bytes {}", host.disk_total_bytes);
    let shard_values: [(&str, &str, ShardValue); 9] = [
        ("ringmq_requests_total", "Kafka requests handled, by the shard that read them.", |r| r.requests),
        ("ringmq_requests_in_flight", "Requests read and not yet answered (the request queue).", |r| {
            r.requests_in_flight
        }),
        ("ringmq_produce_bytes_total", "Record bytes received in produce requests.", |r| r.produce_bytes),
        ("ringmq_fetch_bytes_total", "Record bytes sent in fetch responses.", |r| r.fetch_bytes),
        ("ringmq_cross_shard_hops_total", "Requests sent to another shard.", |r| r.cross_shard_hops),
        ("ringmq_connections_accepted_total", "Client connections accepted.", |r| r.connections_accepted),
        ("ringmq_connections_open", "Client connections open now.", |r| r.connections_open),
        ("ringmq_connections_refused_total", "Connections closed at accept: --max-connections reached.", |r| {
            r.connections_refused
        }),
        (
            "ringmq_connections_closed_on_bad_input_total",
            "Connections closed for a request that could not be framed or parsed.",
            |r| r.connections_closed_on_bad_input,
        ),
    ];
    for (name, help, get) in shard_values {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        family(&mut out, name, kind, help);
        for r in reports {
            let _ = writeln!(out, "{name}{{shard=\"{}\",cpu=\"{}\"}} {}", r.shard, r.cpu, get(r));
        }
    }
    let group_values: [(&str, &str, ShardValue); 3] = [
        (
            "ringmq_consumer_groups",
            "Consumer groups coordinated by the shard (in memory: with members or committed offsets).",
            |r| r.groups.groups,
        ),
        ("ringmq_consumer_group_members", "Members of the consumer groups coordinated by the shard.", |r| {
            r.groups.members
        }),
        ("ringmq_consumer_group_committed_offsets", "Committed offsets kept by the shard.", |r| {
            r.groups.committed_offsets
        }),
    ];
    for (name, help, get) in group_values {
        family(&mut out, name, "gauge", help);
        for r in reports {
            let _ = writeln!(out, "{name}{{shard=\"{}\",cpu=\"{}\"}} {}", r.shard, r.cpu, get(r));
        }
    }
    family(&mut out, "ringmq_errors_total", "counter", "Kafka error codes returned to clients, by code.");
    for r in reports {
        for (code, n) in &r.errors_by_code {
            let _ = writeln!(out, "ringmq_errors_total{{shard=\"{}\",code=\"{code}\"}} {n}", r.shard);
        }
    }
    let partition_values: [(&str, &str, &str, PartitionValue); 7] = [
        ("ringmq_partition_high_watermark", "gauge", "Next offset after the last committed record.", |p| p.offsets.high_watermark),
        ("ringmq_partition_log_end_offset", "gauge", "Next offset to assign (appends waiting for a commit included).", |p| p.offsets.log_end_offset),
        ("ringmq_partition_log_start_offset", "gauge", "First offset still stored.", |p| p.offsets.log_start_offset),
        ("ringmq_partition_commits_total", "counter", "Group commits (one durable write each).", |p| p.commits as i64),
        ("ringmq_partition_committed_bytes_total", "counter", "Record bytes made durable.", |p| p.committed_bytes as i64),
        ("ringmq_partition_segments_recycled_total", "counter", "New segments that reused a retired segment's file instead of allocating and zero-filling one.", |p| p.segments_recycled as i64),
        ("ringmq_partition_commit_writes_overlapped_total", "counter", "Commit writes started while the previous one was still in flight (it ended on a page boundary, with more queued behind it).", |p| p.commit_writes_overlapped as i64),
    ];
    for (name, kind, help, get) in partition_values {
        family(&mut out, name, kind, help);
        for r in reports {
            for p in &r.partitions {
                let _ = writeln!(
                    out,
                    "{name}{{shard=\"{}\",topic=\"{}\",partition=\"{}\"}} {}",
                    r.shard,
                    p.topic,
                    p.partition,
                    get(p)
                );
            }
        }
    }
    // Commit histograms per shard (partitions merged: per-partition buckets
    // would multiply the series by 33).
    family(
        &mut out,
        "ringmq_commit_seconds",
        "histogram",
        "Durable write time of one group commit (O_DIRECT|O_DSYNC write; under flush=interval the write alone).",
    );
    for r in reports {
        let mut h = Log2Histogram::default();
        r.partitions.iter().for_each(|p| h.merge(&p.commit_latency_us));
        histogram(&mut out, "ringmq_commit_seconds", &format!("shard=\"{}\"", r.shard), &h, 1e-6);
    }
    family(&mut out, "ringmq_produce_seconds", "histogram", "Produce requests, from the whole request read to the whole response written (on the shard that owns the connection).");
    for r in reports {
        histogram(&mut out, "ringmq_produce_seconds", &format!("shard=\"{}\"", r.shard), &r.produce_latency_us, 1e-6);
    }
    family(
        &mut out,
        "ringmq_commit_write_bytes",
        "histogram",
        "Bytes written by one group commit (page-aligned, carried page included).",
    );
    for r in reports {
        let mut h = Log2Histogram::default();
        r.partitions.iter().for_each(|p| h.merge(&p.commit_write_bytes));
        histogram(&mut out, "ringmq_commit_write_bytes", &format!("shard=\"{}\"", r.shard), &h, 1.0);
    }
    out
}

/// Free and total bytes of the filesystem holding `dir` (statvfs: a quick,
/// non-blocking metadata call).
pub fn disk_space(dir: &std::path::Path) -> HostGauges {
    use std::os::unix::ffi::OsStrExt;
    let mut out = HostGauges::default();
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return out };
    // SAFETY: statvfs writes into the zeroed struct we pass; path is NUL-terminated.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut st) == 0 {
            out.disk_free_bytes = st.f_bavail as u64 * st.f_frsize as u64;
            out.disk_total_bytes = st.f_blocks as u64 * st.f_frsize as u64;
        }
    }
    out
}
