//! The command line: `ringmq-loadgen [run flags]`, `ringmq-loadgen plot DIR…`,
//! `ringmq-loadgen baseline` and `ringmq-loadgen amqp [flags]` (whose flags
//! live in `amqp::config`), parsed with clap and checked into a `RunConfig`
//! that the rest of the program trusts.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use kafka_protocol::records::Compression;

use crate::error::Error;
use crate::payload::{KeyDistribution, STAMP_LEN};

#[derive(Parser, Debug)]
#[command(
    name = "ringmq-loadgen",
    version,
    about = "Kafka and AMQP load generator: open-loop constant-rate producers and consumers, produce and end-to-end latency histograms",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Draw several runs' latency curves on one chart (each DIR holds produce.hgrm / e2e.hgrm; `LABEL=DIR` names a run).
    Plot(PlotArgs),
    /// Measure the machine's limits (fio O_DIRECT overwrite+fdatasync, iperf3 loopback) into baseline.json.
    Baseline(BaselineArgs),
    /// Load an AMQP 0-9-1 broker: publishers with confirms, consumers with acks, publish→confirm and end-to-end latency.
    Amqp(crate::amqp::config::AmqpArgs),
}

/// Flags of a load run.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Broker to bootstrap from.
    #[arg(long, value_name = "HOST:PORT", required = true)]
    pub bootstrap: Option<String>,
    /// Topic to produce to and consume from.
    #[arg(long, required = true)]
    pub topic: Option<String>,
    /// Partitions of the topic when the load generator creates it.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Producer threads (one connection to each partition leader each).
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumer threads (partitions assigned round-robin); 0 measures produce latency only.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Bytes of each record value (at least 24: the stamp).
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Messages per second over all producers (open loop); 0 = as fast as possible (closed loop).
    #[arg(long, default_value_t = 1000.0, allow_negative_numbers = true)]
    pub rate: f64,
    /// Measured time (e.g. 30s, 500ms, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Time run before the measured window, excluded from the results.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Produce acks: all (-1), 1 or 0.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    pub acks: i16,
    /// Directory for summary.json, produce.hgrm, e2e.hgrm, latency.svg and intervals.hlog.
    #[arg(long, default_value = "loadgen-out")]
    pub out: PathBuf,
    /// Record keys: none (sticky partitions), sequential, random, zipf or zipf:EXPONENT.
    #[arg(long, default_value = "none")]
    pub key_distribution: KeyDistribution,
    /// Distinct keys for the keyed distributions.
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// Largest record batch (per partition) before it is sent.
    #[arg(long, default_value_t = 16384)]
    pub batch_max_bytes: usize,
    /// How long a batch may wait for more records before it is sent, in µs.
    #[arg(long, default_value_t = 0)]
    pub linger_us: u64,
    /// Record batch compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,
    /// Produce requests in flight per connection (pipelined).
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: usize,
    /// How long any response may take before the run fails.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// After the last produce, how long consumers may take to catch up.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Fetch max_wait_ms of the consumers.
    #[arg(long, default_value_t = 100)]
    pub fetch_max_wait_ms: i32,
    /// Create the topic (CreateTopics with --partitions) when it does not exist.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub create_topic: bool,
    /// baseline.json from `loadgen/baseline`; the summary then reports ratios to it.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Kafka client id of every connection.
    #[arg(long, default_value = "ringmq-loadgen")]
    pub client_id: String,
}

#[derive(Args, Debug, Clone)]
pub struct PlotArgs {
    /// Run directories, each optionally labelled as LABEL=DIR.
    #[arg(required = true, num_args = 1..)]
    pub runs: Vec<String>,
    /// SVG file to write.
    #[arg(long, default_value = "latency-compare.svg")]
    pub out: PathBuf,
    /// Chart title.
    #[arg(long, default_value = "Latency by percentile")]
    pub title: String,
    /// Which curves of each run to draw.
    #[arg(long, value_enum, default_value_t = PlotMetric::Both)]
    pub metric: PlotMetric,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlotMetric {
    Produce,
    E2e,
    Both,
}

#[derive(Args, Debug, Clone)]
pub struct BaselineArgs {
    /// A directory on the data filesystem (fio writes a scratch file there).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Where to write the JSON.
    #[arg(long, default_value = "baseline.json")]
    pub out: PathBuf,
    /// Seconds per fio job.
    #[arg(long, default_value_t = 5)]
    pub fio_seconds: u64,
    /// Seconds of the iperf3 loopback stream.
    #[arg(long, default_value_t = 5)]
    pub iperf_seconds: u64,
    /// Size of fio's scratch file.
    #[arg(long, default_value = "256M")]
    pub fio_size: String,
    /// Total rate of the paced 4 KiB O_DSYNC fio job (writes/s over all its files).
    #[arg(long, default_value_t = 2000)]
    pub paced_rate: u32,
    /// Files (one writer each) of the paced fio job, like a topic's partitions; 0 skips it.
    #[arg(long, default_value_t = 4)]
    pub paced_files: u32,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionArg {
    pub fn codec(self) -> Compression {
        match self {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            CompressionArg::None => "none",
            CompressionArg::Gzip => "gzip",
            CompressionArg::Snappy => "snappy",
            CompressionArg::Lz4 => "lz4",
            CompressionArg::Zstd => "zstd",
        }
    }
}

/// `30s`, `500ms`, `2m`, `1.5s`, `250us`, `1h`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("'{s}' is not a duration like 30s, 500ms or 2m"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown duration unit '{other}' in '{s}' (use us, ms, s, m or h)")),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("duration '{s}' is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `all` / `-1`, `1`, `0`.
pub fn parse_acks(s: &str) -> Result<i16, String> {
    match s {
        "all" | "-1" => Ok(-1),
        "1" | "leader" => Ok(1),
        "0" | "none" => Ok(0),
        _ => Err(format!("'{s}' is not one of all, 1, 0")),
    }
}

/// A checked load run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub bootstrap: String,
    pub topic: String,
    pub partitions: i32,
    pub producers: usize,
    pub consumers: usize,
    pub size: usize,
    /// 0 = closed loop.
    pub rate: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub acks: i16,
    pub out: PathBuf,
    pub key_distribution: KeyDistribution,
    pub keys: u64,
    pub batch_max_bytes: usize,
    pub linger: Duration,
    pub compression: CompressionArg,
    pub max_in_flight: usize,
    pub request_timeout: Duration,
    pub drain_timeout: Duration,
    pub fetch_max_wait_ms: i32,
    pub create_topic: bool,
    pub baseline: Option<PathBuf>,
    pub client_id: String,
}

impl RunArgs {
    /// Checks what clap cannot; every message names the flag.
    pub fn validate(&self) -> Result<RunConfig, Error> {
        let usage = |m: String| Err(Error::Usage(m));
        let bootstrap = match &self.bootstrap {
            Some(b) if b.contains(':') => b.clone(),
            Some(b) => return usage(format!("--bootstrap '{b}' must be HOST:PORT")),
            None => return usage("--bootstrap HOST:PORT is required".to_string()),
        };
        let topic = match &self.topic {
            Some(t)
                if !t.is_empty()
                    && t.len() <= 249
                    && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) =>
            {
                t.clone()
            }
            Some(t) => {
                return usage(format!("--topic '{t}' is not a valid Kafka topic name (1-249 of [a-zA-Z0-9._-])"))
            }
            None => return usage("--topic is required".to_string()),
        };
        if self.partitions < 1 {
            return usage(format!("--partitions must be at least 1 (got {})", self.partitions));
        }
        if self.producers < 1 || self.producers > 1024 {
            return usage(format!("--producers must be 1..=1024 (got {})", self.producers));
        }
        if self.consumers > 1024 {
            return usage(format!("--consumers must be 0..=1024 (got {})", self.consumers));
        }
        if self.size < STAMP_LEN || self.size > 64 << 20 {
            return usage(format!(
                "--size must be {STAMP_LEN}..=67108864 bytes: each value starts with a {STAMP_LEN}-byte stamp (got {})",
                self.size
            ));
        }
        if !self.rate.is_finite() || self.rate < 0.0 {
            return usage(format!("--rate must be ≥ 0 messages per second (got {})", self.rate));
        }
        if self.duration.is_zero() {
            return usage("--duration must be more than 0".to_string());
        }
        if self.max_in_flight < 1 || self.max_in_flight > 1024 {
            return usage(format!("--max-in-flight must be 1..=1024 (got {})", self.max_in_flight));
        }
        if self.batch_max_bytes < 1 || self.batch_max_bytes > 256 << 20 {
            return usage(format!("--batch-max-bytes must be 1..=268435456 (got {})", self.batch_max_bytes));
        }
        if self.keys < 1 || (matches!(self.key_distribution, KeyDistribution::Zipf(_)) && self.keys > 10_000_000) {
            return usage(format!("--keys must be at least 1 (at most 10,000,000 for zipf) (got {})", self.keys));
        }
        if self.fetch_max_wait_ms < 0 {
            return usage("--fetch-max-wait-ms must be ≥ 0".to_string());
        }
        if self.request_timeout.is_zero() {
            return usage("--request-timeout must be more than 0".to_string());
        }
        Ok(RunConfig {
            bootstrap,
            topic,
            partitions: self.partitions,
            producers: self.producers,
            consumers: self.consumers,
            size: self.size,
            rate: self.rate,
            duration: self.duration,
            warmup: self.warmup,
            acks: self.acks,
            out: self.out.clone(),
            key_distribution: self.key_distribution,
            keys: self.keys,
            batch_max_bytes: self.batch_max_bytes,
            linger: Duration::from_micros(self.linger_us),
            compression: self.compression,
            max_in_flight: self.max_in_flight,
            request_timeout: self.request_timeout,
            drain_timeout: self.drain_timeout,
            fetch_max_wait_ms: self.fetch_max_wait_ms,
            create_topic: self.create_topic,
            baseline: self.baseline.clone(),
            client_id: self.client_id.clone(),
        })
    }
}

/// The `--out` directory named on a command line that clap rejected, so that
/// the failure can still be recorded there.
pub fn out_dir_from_raw_args(args: &[String]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--out" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--out=") {
            return Some(PathBuf::from(v));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_usual_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn run_flags_are_checked_with_the_flag_named() {
        let cli =
            Cli::try_parse_from(["ringmq-loadgen", "--bootstrap", "127.0.0.1:9092", "--topic", "t", "--size", "10"])
                .expect("parse");
        let err = cli.run.validate().expect_err("size 10 is too small");
        assert!(err.to_string().contains("--size"), "{err}");
        assert_eq!(err.exit_code(), 2);
        let cli = Cli::try_parse_from([
            "ringmq-loadgen",
            "--bootstrap",
            "h:1",
            "--topic",
            "t",
            "--acks",
            "all",
            "--rate",
            "0",
        ])
        .expect("parse");
        let cfg = cli.run.validate().expect("valid");
        assert_eq!(cfg.rate, 0.0, "--rate 0 is a closed loop");
        assert_eq!(cfg.acks, -1);
    }

    #[test]
    fn subcommands_do_not_need_run_flags() {
        let cli = Cli::try_parse_from(["ringmq-loadgen", "plot", "a", "b=c"]).expect("parse");
        assert!(matches!(cli.command, Some(Command::Plot(ref p)) if p.runs.len() == 2));
        assert!(Cli::try_parse_from(["ringmq-loadgen", "--topic", "t"]).is_err());
    }

    #[test]
    fn the_out_dir_is_found_on_a_rejected_command_line() {
        let args: Vec<String> = ["x", "--bogus", "--out", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(out_dir_from_raw_args(&args), Some(PathBuf::from("d")));
    }
}
