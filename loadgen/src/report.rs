//! What a run reports: the per-second progress line, the final percentile
//! table, `summary.json` (with ratios to a baseline when one is given) and
//! the files beside it (`produce.hgrm`, `e2e.hgrm`, `latency.svg`), for a
//! Kafka run and an AMQP run alike (`RunSettings` says which).

use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::amqp::config::AmqpSettings;
use crate::amqp::stats::AmqpCounts;
use crate::baseline::Baseline;
use crate::cli::RunConfig;
use crate::error::Error;
use crate::histo::{curve_of, hgrm_text, Percentiles};
use crate::svg::{self, Series};

/// The run's settings as recorded in the summary.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ConfigSummary {
    pub bootstrap: String,
    pub topic: String,
    pub partitions: i32,
    pub producers: usize,
    pub consumers: usize,
    pub size_bytes: usize,
    pub rate_msgs_per_s: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub acks: String,
    pub key_distribution: String,
    pub keys: u64,
    pub batch_max_bytes: usize,
    pub linger_us: u64,
    pub compression: String,
    pub max_in_flight: usize,
}

impl ConfigSummary {
    pub fn of(cfg: &RunConfig) -> ConfigSummary {
        ConfigSummary {
            bootstrap: cfg.bootstrap.clone(),
            topic: cfg.topic.clone(),
            partitions: cfg.partitions,
            producers: cfg.producers,
            consumers: cfg.consumers,
            size_bytes: cfg.size,
            rate_msgs_per_s: cfg.rate,
            duration_s: cfg.duration.as_secs_f64(),
            warmup_s: cfg.warmup.as_secs_f64(),
            acks: acks_name(cfg.acks).to_string(),
            key_distribution: cfg.key_distribution.to_string(),
            keys: cfg.keys,
            batch_max_bytes: cfg.batch_max_bytes,
            linger_us: cfg.linger.as_micros() as u64,
            compression: cfg.compression.name().to_string(),
            max_in_flight: cfg.max_in_flight,
        }
    }
}

/// The run's settings: a Kafka run's or an AMQP run's (which has
/// `"protocol": "amqp"`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RunSettings {
    Kafka(ConfigSummary),
    Amqp(AmqpSettings),
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings::Kafka(ConfigSummary::default())
    }
}

impl RunSettings {
    pub fn rate_msgs_per_s(&self) -> f64 {
        match self {
            RunSettings::Kafka(c) => c.rate_msgs_per_s,
            RunSettings::Amqp(a) => a.rate_msgs_per_s,
        }
    }

    /// Whether the run has consumers (and so end-to-end latencies).
    pub fn consumes(&self) -> bool {
        match self {
            RunSettings::Kafka(c) => c.consumers > 0,
            RunSettings::Amqp(a) => a.consumers > 0,
        }
    }

    /// The name of the publish latency in tables and charts.
    pub fn produce_name(&self) -> String {
        match self {
            RunSettings::Kafka(c) => format!("produce (acks={})", c.acks),
            RunSettings::Amqp(a) if a.confirm_window == 0 => "publish (written)".to_string(),
            RunSettings::Amqp(_) => "publish→confirm".to_string(),
        }
    }

    fn rate_text(&self) -> String {
        let r = self.rate_msgs_per_s();
        if r == 0.0 {
            "max rate (closed loop)".to_string()
        } else {
            format!("{r} msg/s (open loop)")
        }
    }

    /// The first line of the final table.
    fn headline(&self, duration_s: f64) -> String {
        match self {
            RunSettings::Kafka(c) => format!(
                "ringmq-loadgen: {} on {} topic {} ({} partitions), {} producer(s), {} consumer(s), {} B values, acks={}, compression {}, {:.1} s measured after {:.1} s warmup",
                self.rate_text(), c.bootstrap, c.topic, c.partitions, c.producers, c.consumers, c.size_bytes, c.acks, c.compression, duration_s, c.warmup_s
            ),
            RunSettings::Amqp(a) => format!(
                "ringmq-loadgen amqp: {} on {} exchange '{}' → {} queue(s) {}, {} producer(s), {} consumer(s) per queue, {} B {} bodies, confirm window {}, prefetch {}{}, {:.1} s measured after {:.1} s warmup",
                self.rate_text(), a.url, a.exchange, a.queues.len(), a.queues.join(","), a.producers, a.consumers, a.size_bytes,
                if a.persistent { "persistent" } else { "transient" }, a.confirm_window, a.prefetch,
                if a.no_ack { " (no-ack)" } else { "" }, duration_s, a.warmup_s
            ),
        }
    }

    /// The chart's title and subtitle.
    fn chart_titles(&self, duration_s: f64, complete: bool) -> (String, String) {
        let r = self.rate_msgs_per_s();
        let mode = if r == 0.0 { "closed loop".to_string() } else { format!("{r} msg/s open loop") };
        let end = format!("{duration_s:.0} s{}", if complete { "" } else { " · INCOMPLETE RUN" });
        match self {
            RunSettings::Kafka(c) => (
                format!("ringmq-loadgen: {} on {}", c.topic, c.bootstrap),
                format!(
                    "{} · {} B · acks={} · {} producer(s), {} consumer(s), {} partition(s) · {end}",
                    mode, c.size_bytes, c.acks, c.producers, c.consumers, c.partitions
                ),
            ),
            RunSettings::Amqp(a) => (
                format!("ringmq-loadgen amqp: {} on {}", a.queues.join(","), a.url),
                format!(
                    "{} · {} B {} · confirm window {} · prefetch {} · {} producer(s), {} consumer(s) per queue · {end}",
                    mode,
                    a.size_bytes,
                    if a.persistent { "persistent" } else { "transient" },
                    a.confirm_window,
                    a.prefetch,
                    a.producers,
                    a.consumers
                ),
            ),
        }
    }
}

pub fn acks_name(acks: i16) -> &'static str {
    match acks {
        -1 => "all",
        1 => "1",
        _ => "0",
    }
}

/// One second of the run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct IntervalSummary {
    /// End of the interval, seconds since the run (warmup) started.
    pub t_s: f64,
    /// Length of the interval (1 s, except the last).
    pub seconds: f64,
    pub warmup: bool,
    pub produced: u64,
    pub consumed: u64,
    pub produce_p50_us: u64,
    pub produce_p99_us: u64,
    pub produce_max_us: u64,
    pub e2e_p50_us: u64,
    pub e2e_p99_us: u64,
    pub e2e_max_us: u64,
}

/// The run's figures as ratios to the machine's baseline.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BaselineRatios {
    pub file: String,
    /// Produced bytes/s ÷ one loopback TCP stream (iperf3).
    pub throughput_vs_loopback_tcp: Option<f64>,
    /// Produced bytes/s ÷ 1 MiB O_DIRECT overwrite+fdatasync bytes/s.
    pub throughput_vs_fdatasync_1m: Option<f64>,
    /// Produced messages/s ÷ 4 KiB overwrite+fdatasync operations/s.
    pub msgs_per_s_vs_fdatasync_4k_ops: Option<f64>,
    /// Produce p50 ÷ one 4 KiB overwrite+fdatasync.
    pub produce_p50_vs_fdatasync_4k: Option<f64>,
    /// Produce p99 ÷ one 4 KiB overwrite+fdatasync.
    pub produce_p99_vs_fdatasync_4k: Option<f64>,
    /// Produce p99 ÷ the p99 of fio's paced 4 KiB O_DSYNC writes (the disk's
    /// own tail under a durable load of `fio_paced.rate_ops_per_s` writes/s
    /// over `fio_paced.files` files); like for like when the run's rate and
    /// partitions match those.
    #[serde(default)]
    pub produce_p99_vs_fio_paced_p99: Option<f64>,
    pub baseline: Option<Baseline>,
}

/// summary.json
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub tool: String,
    pub version: String,
    /// False when the run failed or was cut short; `error` says why.
    pub complete: bool,
    pub error: Option<String>,
    pub mode: String,
    pub coordinated_omission_corrected: bool,
    pub note: String,
    pub notes: Vec<String>,
    pub config: RunSettings,
    /// Messages of the measured window acknowledged (acks=0: written).
    pub produced: u64,
    /// Messages of the measured window the consumers received.
    pub consumed: u64,
    /// Messages written over the whole run (warmup included).
    pub sent: u64,
    /// Messages acknowledged over the whole run (warmup included).
    pub acked: u64,
    /// Length of the measured window (shorter when the run failed).
    pub duration_s: f64,
    pub throughput_msgs_per_s: f64,
    /// MB = 10^6 bytes of record values.
    pub throughput_mb_per_s: f64,
    pub consumed_msgs_per_s: f64,
    pub produce_latency_us: Percentiles,
    pub e2e_latency_us: Percentiles,
    /// Intended send time → request written: the generator's own delay.
    pub send_delay_us: Percentiles,
    pub files: Vec<String>,
    pub baseline: Option<BaselineRatios>,
    /// AMQP runs: nacks, returns, redeliveries, deliveries per queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amqp: Option<AmqpCounts>,
    pub intervals: Vec<IntervalSummary>,
}

/// Ratios of a run to a baseline.
pub fn ratios(file: &Path, b: &Baseline, s: &Summary) -> BaselineRatios {
    let bytes_per_s = s.throughput_mb_per_s * 1e6;
    let div = |a: f64, b: f64| {
        if b > 0.0 && a.is_finite() {
            Some((a / b * 1000.0).round() / 1000.0)
        } else {
            None
        }
    };
    let f4 = b.fio("4k");
    BaselineRatios {
        file: file.display().to_string(),
        throughput_vs_loopback_tcp: div(bytes_per_s, b.loopback_tcp.bytes_per_s),
        throughput_vs_fdatasync_1m: b.fio("1m").and_then(|f| div(bytes_per_s, f.bytes_per_s)),
        msgs_per_s_vs_fdatasync_4k_ops: f4.and_then(|f| div(s.throughput_msgs_per_s, f.ops_per_s)),
        produce_p50_vs_fdatasync_4k: f4.and_then(|f| div(s.produce_latency_us.p50 as f64, f.us_per_op)),
        produce_p99_vs_fdatasync_4k: f4.and_then(|f| div(s.produce_latency_us.p99 as f64, f.us_per_op)),
        produce_p99_vs_fio_paced_p99: b
            .fio_paced
            .as_ref()
            .and_then(|f| div(s.produce_latency_us.p99 as f64, f.lat_p99_us)),
        baseline: Some(b.clone()),
    }
}

fn ms(us: u64) -> String {
    let v = us as f64 / 1000.0;
    if v >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The progress line of one second (stderr).
pub fn progress_line(iv: &IntervalSummary, size: usize, consumers: bool) -> String {
    let secs = if iv.seconds > 0.0 { iv.seconds } else { 1.0 };
    let rate = |n: u64| (n as f64 / secs).round() as u64;
    let mb = iv.produced as f64 * size as f64 / 1e6 / secs;
    let mut s = format!(
        "[{:>6.1}s]{} produce {:>8} msg/s {:>8.2} MB/s  p50 {:>8} ms  p99 {:>8} ms",
        iv.t_s,
        if iv.warmup { " warmup " } else { "        " },
        rate(iv.produced),
        mb,
        ms(iv.produce_p50_us),
        ms(iv.produce_p99_us)
    );
    if consumers {
        let _ = write!(
            s,
            "  | e2e {:>8} msg/s  p50 {:>8} ms  p99 {:>8} ms",
            rate(iv.consumed),
            ms(iv.e2e_p50_us),
            ms(iv.e2e_p99_us)
        );
    }
    s
}

/// The final table (stdout).
pub fn table(s: &Summary) -> String {
    let mut t = String::new();
    let c = &s.config;
    let _ = writeln!(t, "{}", c.headline(s.duration_s));
    let _ = writeln!(
        t,
        "{:<18}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
        "latency (ms)", "p50", "p90", "p99", "p99.9", "p99.99", "max", "count"
    );
    let row = |t: &mut String, name: &str, p: &Percentiles| {
        let _ = writeln!(
            t,
            "{:<18}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
            name,
            ms(p.p50),
            ms(p.p90),
            ms(p.p99),
            ms(p.p999),
            ms(p.p9999),
            ms(p.max),
            p.count
        );
    };
    let produce_row = match c {
        RunSettings::Kafka(_) => "produce",
        RunSettings::Amqp(_) => "publish→confirm",
    };
    row(&mut t, produce_row, &s.produce_latency_us);
    if c.consumes() {
        row(&mut t, "end-to-end", &s.e2e_latency_us);
    }
    row(&mut t, "send delay", &s.send_delay_us);
    let _ = writeln!(
        t,
        "throughput: produced {} msgs ({:.1} msg/s, {:.2} MB/s), consumed {} msgs ({:.1} msg/s)",
        s.produced, s.throughput_msgs_per_s, s.throughput_mb_per_s, s.consumed, s.consumed_msgs_per_s
    );
    if let Some(a) = &s.amqp {
        let _ = writeln!(t, "{}", a.line());
    }
    let _ = writeln!(t, "{}", s.note);
    for n in &s.notes {
        let _ = writeln!(t, "note: {n}");
    }
    if let Some(b) = &s.baseline {
        let f = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "n/a".to_string());
        let _ = writeln!(
            t,
            "vs baseline ({}): throughput {}× loopback TCP, {}× 1 MiB fdatasync writes; {}× 4 KiB fdatasync ops/s; produce p50 {}×, p99 {}× one 4 KiB fdatasync",
            b.file,
            f(b.throughput_vs_loopback_tcp),
            f(b.throughput_vs_fdatasync_1m),
            f(b.msgs_per_s_vs_fdatasync_4k_ops),
            f(b.produce_p50_vs_fdatasync_4k),
            f(b.produce_p99_vs_fdatasync_4k)
        );
        if let (Some(ratio), Some(paced)) =
            (b.produce_p99_vs_fio_paced_p99, b.baseline.as_ref().and_then(|b| b.fio_paced.as_ref()))
        {
            let _ = writeln!(
                t,
                "vs baseline: produce p99 {ratio:.3}× the p99 of fio's paced 4 KiB O_DSYNC writes ({} writes/s over {} files: p99 {:.0} us)",
                paced.rate_ops_per_s, paced.files, paced.lat_p99_us
            );
        }
    }
    if let Some(e) = &s.error {
        let _ = writeln!(t, "RUN FAILED: {e}");
    }
    t
}

fn write_file(dir: &Path, name: &str, contents: &str) -> Result<(), Error> {
    let path = dir.join(name);
    std::fs::write(&path, contents).map_err(Error::file("cannot write", &path))
}

/// Writes summary.json, produce.hgrm, e2e.hgrm and latency.svg.
pub fn write_outputs(
    dir: &Path,
    summary: &Summary,
    produce: &Histogram<u64>,
    e2e: &Histogram<u64>,
) -> Result<(), Error> {
    write_file(dir, "produce.hgrm", &hgrm_text(produce))?;
    write_file(dir, "e2e.hgrm", &hgrm_text(e2e))?;
    let (title, subtitle) = summary.config.chart_titles(summary.duration_s, summary.complete);
    let series = vec![
        Series { label: summary.config.produce_name(), points: curve_of(produce), color: 0, dashed: false },
        Series { label: "end-to-end".to_string(), points: curve_of(e2e), color: 1, dashed: true },
    ];
    write_file(dir, "latency.svg", &svg::render(&title, &subtitle, &series))?;
    let json = serde_json::to_string_pretty(summary)
        .map_err(|e| Error::Parse { path: dir.join("summary.json"), detail: e.to_string() })?;
    write_file(dir, "summary.json", &(json + "\n"))
}
