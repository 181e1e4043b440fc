//! Broker settings: command-line flags, an optional TOML file (`--config`)
//! whose keys are the flag names with `_` for `-`, and defaults. Flags win over
//! the file; everything is validated once, here, before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::storage::LogConfig;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9092";
pub const DEFAULT_METRICS: &str = "127.0.0.1:9644";
pub const DEFAULT_DATA_DIR: &str = "./ringmq-data";

/// `ringmq serve` flags. Every one is optional so a config file can set it.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ServeArgs {
    /// Directory holding the catalog and the topic logs [default: ./ringmq-data]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address to accept Kafka clients on (port 0 picks a free port) [default: 127.0.0.1:9092]
    #[arg(long)]
    pub listen: Option<String>,
    /// Address given to clients in Metadata [default: the bound listen address]
    #[arg(long)]
    pub advertise: Option<String>,
    /// Shards: a count (the first N usable CPUs) or a CPU list like `0,2-3`; one shard pinned per CPU [default: every usable CPU]
    #[arg(long)]
    #[serde(default, deserialize_with = "count_or_list")]
    pub cores: Option<String>,
    /// Address of the Prometheus endpoint (/metrics, /health), or `off` [default: 127.0.0.1:9644]
    #[arg(long)]
    pub metrics: Option<String>,
    /// TOML file with any of these settings (keys as flag names, `-` as `_`)
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Create topics on first produce or metadata request [default: true]
    #[arg(long)]
    pub auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics [default: 1]
    #[arg(long)]
    pub default_partitions: Option<i32>,
    /// Segment file size in bytes [default: 134217728]
    #[arg(long)]
    pub segment_bytes: Option<u64>,
    /// Default retention in ms, -1 for none [default: 604800000]
    #[arg(long, allow_hyphen_values = true)]
    pub retention_ms: Option<i64>,
    /// Default retention in bytes per partition, -1 for none [default: -1]
    #[arg(long, allow_hyphen_values = true)]
    pub retention_bytes: Option<i64>,
    /// Largest record batch accepted [default: 1048588]
    #[arg(long)]
    pub max_message_bytes: Option<usize>,
    /// `always` (ack after fdatasync) or `interval:<ms>` (ack after write) [default: always]
    #[arg(long)]
    pub flush: Option<String>,
    /// How segment files are reserved: `zero` or `fallocate` [default: zero]
    #[arg(long)]
    pub preallocation: Option<String>,
    /// Wait this long before a commit to gather more appends [default: 0]
    #[arg(long)]
    pub commit_linger_us: Option<u64>,
    /// Most batch bytes per group-commit write (a bigger batch goes alone) [default: 1048576]
    #[arg(long)]
    pub commit_max_bytes: Option<usize>,
    /// Largest request frame accepted [default: 104857600]
    #[arg(long)]
    pub max_request_bytes: Option<usize>,
    /// Client connections open at once, over all shards; more are closed at accept [default: 10000]
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Requests of one connection handled at once; the connection is not read further until one finishes [default: 64]
    #[arg(long)]
    pub max_in_flight_per_connection: Option<usize>,
    /// Time allowed to receive the rest of a request once its size arrived, in ms [default: 30000]
    #[arg(long)]
    pub frame_timeout_ms: Option<u64>,
    /// How long an idle shard spins before it sleeps, in µs: wakes from another shard or the disk come sooner, at some CPU cost [default: 50]
    #[arg(long)]
    pub spin_before_park_us: Option<u64>,
    /// Recent committed data kept in memory per partition [default: 4194304]
    #[arg(long)]
    pub tail_cache_bytes: Option<usize>,
    /// How often retention runs, in ms [default: 30000]
    #[arg(long)]
    pub retention_check_ms: Option<u64>,
    /// How long the first rebalance of an empty consumer group waits for more members to join, in ms (Kafka's group.initial.rebalance.delay.ms) [default: 3000]
    #[arg(long)]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Address to accept AMQP 0-9-1 clients on (port 0 picks a free port), or `off` [default: 127.0.0.1:5672]
    #[arg(long)]
    pub amqp_listen: Option<String>,
    /// Largest AMQP frame offered to clients (connection.tune frame_max), 4096-1048576 [default: 131072]
    #[arg(long)]
    pub amqp_frame_max: Option<u32>,
    /// Channels per AMQP connection offered to clients, 1-65535 [default: 2047]
    #[arg(long)]
    pub amqp_channel_max: Option<u16>,
    /// AMQP heartbeat interval offered to clients, in seconds, 0 for none [default: 60]
    #[arg(long)]
    pub amqp_heartbeat_s: Option<u16>,
    /// Largest AMQP message body accepted [default: 16777216]
    #[arg(long)]
    pub amqp_max_message_bytes: Option<usize>,
    /// Segment file size of each durable AMQP queue, at least the largest message + 64 KiB [default: 33554432]
    #[arg(long)]
    pub amqp_queue_segment_bytes: Option<u64>,
    /// Memory for the messages of transient (non-durable) AMQP queues, per shard [default: 268435456]
    #[arg(long)]
    pub amqp_memory_queue_bytes: Option<usize>,
    /// AMQP publishers are blocked (connection.blocked) while the data disk has less free space than this [default: 50000000]
    #[arg(long)]
    pub amqp_disk_free_min_bytes: Option<u64>,
    /// Unacknowledged deliveries per AMQP channel, at most [default: 65535]
    #[arg(long)]
    pub amqp_max_unacked_per_channel: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// The validated settings of one broker process.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertise: Option<(String, u16)>,
    /// One shard per CPU, pinned, in this order (shard i on `cpus[i]`).
    pub cpus: Vec<usize>,
    pub metrics: Option<SocketAddr>,
    pub auto_create_topics: bool,
    pub default_partitions: i32,
    pub max_request_bytes: usize,
    pub max_connections: usize,
    pub max_in_flight_per_connection: usize,
    pub frame_timeout: Duration,
    pub spin_before_park: Duration,
    pub retention_check: Duration,
    /// First rebalance of an empty group waits this long for more members.
    pub group_initial_rebalance_delay: Duration,
    pub log: LogConfig,
    /// The AMQP listener, unless `--amqp-listen off`.
    pub amqp: Option<crate::amqp::AmqpConfig>,
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, message: message.into() }
}

fn parse_addr(key: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .map_err(|e| invalid(key, format!("`{s}` is not HOST:PORT ({e})")))?
        .next()
        .ok_or_else(|| invalid(key, format!("`{s}` resolves to no address")))
}

impl ServeConfig {
    pub fn resolve(flags: ServeArgs) -> Result<ServeConfig, ConfigError> {
        let args = ServeArgs::merged(flags)?;
        let log = log_config(&args)?;
        let max_request_bytes = args.max_request_bytes.unwrap_or(100 * 1024 * 1024);
        if !(1024..=1 << 30).contains(&max_request_bytes) {
            return Err(invalid("max_request_bytes", "must be between 1024 and 1073741824"));
        }
        let max_connections = args.max_connections.unwrap_or(10_000);
        if max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1"));
        }
        let max_in_flight_per_connection = args.max_in_flight_per_connection.unwrap_or(64);
        if !(1..=4096).contains(&max_in_flight_per_connection) {
            return Err(invalid("max_in_flight_per_connection", "must be between 1 and 4096"));
        }
        let frame_timeout_ms = args.frame_timeout_ms.unwrap_or(30_000);
        if !(10..=3_600_000).contains(&frame_timeout_ms) {
            return Err(invalid("frame_timeout_ms", "must be between 10 and 3600000"));
        }
        let spin_before_park_us = args.spin_before_park_us.unwrap_or(50);
        if spin_before_park_us > 10_000 {
            return Err(invalid("spin_before_park_us", "must be at most 10000"));
        }
        let default_partitions = args.default_partitions.unwrap_or(1);
        if !(1..=crate::catalog::MAX_PARTITIONS).contains(&default_partitions) {
            return Err(invalid("default_partitions", "must be between 1 and 10000"));
        }
        let group_initial_rebalance_delay_ms = args.group_initial_rebalance_delay_ms.unwrap_or(3_000);
        if group_initial_rebalance_delay_ms > 300_000 {
            return Err(invalid("group_initial_rebalance_delay_ms", "must be at most 300000"));
        }
        let metrics = match args.metrics.as_deref().unwrap_or(DEFAULT_METRICS) {
            "off" => None,
            s => Some(parse_addr("metrics", s)?),
        };
        Ok(ServeConfig {
            amqp: amqp_config(&args)?,
            listen: parse_addr("listen", args.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?,
            advertise: args.advertise.as_deref().map(parse_advertise).transpose()?,
            cpus: parse_cores(args.cores.as_deref(), &usable_cpus())?,
            metrics,
            auto_create_topics: args.auto_create_topics.unwrap_or(true),
            default_partitions,
            max_request_bytes,
            max_connections,
            max_in_flight_per_connection,
            frame_timeout: Duration::from_millis(frame_timeout_ms),
            spin_before_park: Duration::from_micros(spin_before_park_us),
            retention_check: Duration::from_millis(args.retention_check_ms.unwrap_or(30_000).max(10)),
            group_initial_rebalance_delay: Duration::from_millis(group_initial_rebalance_delay_ms),
            data_dir: args.data_dir.unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            log,
        })
    }
}

impl ServeArgs {
    /// The flags over the `--config` file's settings (a flag wins).
    fn merged(flags: ServeArgs) -> Result<ServeArgs, ConfigError> {
        let file = match &flags.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                toml::from_str::<ServeArgs>(&text)
                    .map_err(|e| ConfigError::Parse { path: path.clone(), message: e.to_string() })?
            }
            None => ServeArgs::default(),
        };
        Ok(ServeArgs {
            config: flags.config,
            data_dir: flags.data_dir.or(file.data_dir),
            listen: flags.listen.or(file.listen),
            advertise: flags.advertise.or(file.advertise),
            cores: flags.cores.or(file.cores),
            metrics: flags.metrics.or(file.metrics),
            auto_create_topics: flags.auto_create_topics.or(file.auto_create_topics),
            default_partitions: flags.default_partitions.or(file.default_partitions),
            segment_bytes: flags.segment_bytes.or(file.segment_bytes),
            retention_ms: flags.retention_ms.or(file.retention_ms),
            retention_bytes: flags.retention_bytes.or(file.retention_bytes),
            max_message_bytes: flags.max_message_bytes.or(file.max_message_bytes),
            flush: flags.flush.or(file.flush),
            preallocation: flags.preallocation.or(file.preallocation),
            commit_linger_us: flags.commit_linger_us.or(file.commit_linger_us),
            commit_max_bytes: flags.commit_max_bytes.or(file.commit_max_bytes),
            max_request_bytes: flags.max_request_bytes.or(file.max_request_bytes),
            max_connections: flags.max_connections.or(file.max_connections),
            max_in_flight_per_connection: flags.max_in_flight_per_connection.or(file.max_in_flight_per_connection),
            frame_timeout_ms: flags.frame_timeout_ms.or(file.frame_timeout_ms),
            spin_before_park_us: flags.spin_before_park_us.or(file.spin_before_park_us),
            tail_cache_bytes: flags.tail_cache_bytes.or(file.tail_cache_bytes),
            retention_check_ms: flags.retention_check_ms.or(file.retention_check_ms),
            group_initial_rebalance_delay_ms: flags
                .group_initial_rebalance_delay_ms
                .or(file.group_initial_rebalance_delay_ms),
            amqp_listen: flags.amqp_listen.or(file.amqp_listen),
            amqp_frame_max: flags.amqp_frame_max.or(file.amqp_frame_max),
            amqp_channel_max: flags.amqp_channel_max.or(file.amqp_channel_max),
            amqp_heartbeat_s: flags.amqp_heartbeat_s.or(file.amqp_heartbeat_s),
            amqp_max_message_bytes: flags.amqp_max_message_bytes.or(file.amqp_max_message_bytes),
            amqp_queue_segment_bytes: flags.amqp_queue_segment_bytes.or(file.amqp_queue_segment_bytes),
            amqp_memory_queue_bytes: flags.amqp_memory_queue_bytes.or(file.amqp_memory_queue_bytes),
            amqp_disk_free_min_bytes: flags.amqp_disk_free_min_bytes.or(file.amqp_disk_free_min_bytes),
            amqp_max_unacked_per_channel: flags.amqp_max_unacked_per_channel.or(file.amqp_max_unacked_per_channel),
        })
    }
}

/// The storage settings every partition starts from.
fn log_config(args: &ServeArgs) -> Result<LogConfig, ConfigError> {
    let mut log = LogConfig::default();
    if let Some(v) = args.segment_bytes {
        if !(64 * 1024..=1 << 30).contains(&v) {
            return Err(invalid("segment_bytes", "must be between 65536 and 1073741824"));
        }
        log.segment_bytes = v;
    }
    if let Some(v) = args.retention_ms {
        if v < -1 {
            return Err(invalid("retention_ms", "must be -1 or more"));
        }
        log.retention_ms = v;
    }
    if let Some(v) = args.retention_bytes {
        if v < -1 {
            return Err(invalid("retention_bytes", "must be -1 or more"));
        }
        log.retention_bytes = v;
    }
    if let Some(v) = args.max_message_bytes {
        if v < 64 {
            return Err(invalid("max_message_bytes", "must be at least 64"));
        }
        log.max_message_bytes = v;
    }
    if let Some(v) = &args.flush {
        log.flush = v.parse().map_err(|m: String| invalid("flush", m))?;
    }
    if let Some(v) = &args.preallocation {
        log.preallocation = v.parse().map_err(|m: String| invalid("preallocation", m))?;
    }
    if let Some(v) = args.commit_linger_us {
        if v > 1_000_000 {
            return Err(invalid("commit_linger_us", "must be at most 1000000"));
        }
        log.commit_linger = Duration::from_micros(v);
    }
    if let Some(v) = args.commit_max_bytes {
        if !(4096..=64 << 20).contains(&v) {
            return Err(invalid("commit_max_bytes", "must be between 4096 and 67108864"));
        }
        log.commit_max_bytes = v;
    }
    if let Some(v) = args.tail_cache_bytes {
        log.tail_cache_bytes = v;
    }
    log.pending_max_bytes = log.pending_max_bytes.max(2 * log.max_message_bytes);
    Ok(log)
}

/// `--advertise HOST:PORT`.
fn parse_advertise(a: &str) -> Result<(String, u16), ConfigError> {
    let (host, port) = a.rsplit_once(':').ok_or_else(|| invalid("advertise", format!("`{a}` is not HOST:PORT")))?;
    let port: u16 = port.parse().map_err(|_| invalid("advertise", format!("bad port in `{a}`")))?;
    if host.is_empty() || port == 0 {
        return Err(invalid("advertise", format!("`{a}` needs a host and a non-zero port")));
    }
    Ok((host.to_string(), port))
}

/// The AMQP listener's settings, or `None` with `--amqp-listen off`.
fn amqp_config(args: &ServeArgs) -> Result<Option<crate::amqp::AmqpConfig>, ConfigError> {
    let addr = args.amqp_listen.as_deref().unwrap_or(crate::amqp::DEFAULT_LISTEN);
    if addr == "off" {
        return Ok(None);
    }
    let mut a = crate::amqp::AmqpConfig::with_listen(parse_addr("amqp_listen", addr)?);
    if let Some(v) = args.amqp_frame_max {
        if !(crate::amqp::frame::FRAME_MIN_BYTES..=1 << 20).contains(&v) {
            return Err(invalid("amqp_frame_max", "must be between 4096 and 1048576"));
        }
        a.frame_max = v;
    }
    if let Some(v) = args.amqp_channel_max {
        if v == 0 {
            return Err(invalid("amqp_channel_max", "must be between 1 and 65535"));
        }
        a.channel_max = v;
    }
    if let Some(v) = args.amqp_heartbeat_s {
        a.heartbeat_s = v;
    }
    if let Some(v) = args.amqp_max_message_bytes {
        if !(1..=512 << 20).contains(&v) {
            return Err(invalid("amqp_max_message_bytes", "must be between 1 and 536870912"));
        }
        a.max_message_bytes = v;
    }
    if let Some(v) = args.amqp_queue_segment_bytes {
        if !(64 * 1024..=1 << 30).contains(&v) {
            return Err(invalid("amqp_queue_segment_bytes", "must be between 65536 and 1073741824"));
        }
        a.queue_segment_bytes = v;
    }
    let segment_min = crate::amqp::queue_segment_min_bytes(a.max_message_bytes);
    if a.queue_segment_bytes < segment_min {
        return Err(invalid(
            "amqp_queue_segment_bytes",
            format!(
                "must hold the largest message: at least {segment_min} with --amqp-max-message-bytes {}",
                a.max_message_bytes
            ),
        ));
    }
    if let Some(v) = args.amqp_memory_queue_bytes {
        a.memory_queue_bytes = v;
    }
    if let Some(v) = args.amqp_disk_free_min_bytes {
        a.disk_free_min_bytes = v;
    }
    if let Some(v) = args.amqp_max_unacked_per_channel {
        if v == 0 {
            return Err(invalid("amqp_max_unacked_per_channel", "must be at least 1"));
        }
        a.max_unacked_per_channel = v;
    }
    Ok(Some(a))
}

/// `cores` in a TOML file may be a number or a string.
fn count_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum CountOrList {
        Count(u64),
        List(String),
    }
    Ok(Some(match CountOrList::deserialize(d)? {
        CountOrList::Count(n) => n.to_string(),
        CountOrList::List(s) => s,
    }))
}

/// The CPUs this process may run on (its affinity mask).
pub fn usable_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills the zeroed set we pass, of the size we pass.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

/// `None`: every usable CPU; `"N"`: the first N; `"0,2-3"`: exactly those.
pub fn parse_cores(spec: Option<&str>, usable: &[usize]) -> Result<Vec<usize>, ConfigError> {
    let Some(spec) = spec.map(str::trim) else {
        return Ok(usable.to_vec());
    };
    if let Ok(n) = spec.parse::<usize>() {
        if n == 0 || n > usable.len() {
            return Err(invalid("cores", format!("{n} shards asked, {} CPUs usable ({usable:?})", usable.len())));
        }
        return Ok(usable[..n].to_vec());
    }
    let mut cpus = Vec::new();
    for part in spec.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<usize>(), b.trim().parse::<usize>()),
            None => (part.trim().parse::<usize>(), part.trim().parse::<usize>()),
        };
        let (Ok(lo), Ok(hi)) = (lo, hi) else {
            return Err(invalid("cores", format!("`{spec}` is neither a count nor a CPU list like 0,2-3")));
        };
        if lo > hi {
            return Err(invalid("cores", format!("empty CPU range `{part}`")));
        }
        for cpu in lo..=hi {
            if !usable.contains(&cpu) {
                return Err(invalid("cores", format!("CPU {cpu} is not usable by this process ({usable:?})")));
            }
            if cpus.contains(&cpu) {
                return Err(invalid("cores", format!("CPU {cpu} listed twice")));
            }
            cpus.push(cpu);
        }
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ringmq.toml");
        std::fs::write(&path, "default_partitions = 3\nsegment_bytes = 1048576\n").expect("write");
        let flags = ServeArgs { config: Some(path), default_partitions: Some(5), ..Default::default() };
        let c = ServeConfig::resolve(flags).expect("valid");
        assert_eq!(c.default_partitions, 5);
        assert_eq!(c.log.segment_bytes, 1048576);
    }

    #[test]
    fn unknown_config_file_key_is_rejected_with_its_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ringmq.toml");
        std::fs::write(&path, "segmnet_bytes = 5\n").expect("write");
        let err =
            ServeConfig::resolve(ServeArgs { config: Some(path), ..Default::default() }).expect_err("unknown key");
        assert!(err.to_string().contains("segmnet_bytes"), "{err}");
    }

    #[test]
    fn cores_take_a_count_or_a_cpu_list() {
        let usable = [0, 1, 2, 3];
        assert_eq!(parse_cores(None, &usable).expect("all"), vec![0, 1, 2, 3]);
        assert_eq!(parse_cores(Some("2"), &usable).expect("count"), vec![0, 1]);
        assert_eq!(parse_cores(Some("0,2-3"), &usable).expect("list"), vec![0, 2, 3]);
        for bad in ["0", "5", "7", "1,1", "x", "3-1"] {
            assert!(parse_cores(Some(bad), &usable).is_err(), "{bad}");
        }
    }

    #[test]
    fn group_initial_rebalance_delay_defaults_to_kafkas_and_is_bounded() {
        let c = ServeConfig::resolve(ServeArgs::default()).expect("defaults");
        assert_eq!(c.group_initial_rebalance_delay, Duration::from_millis(3000));
        let c = ServeConfig::resolve(ServeArgs { group_initial_rebalance_delay_ms: Some(0), ..Default::default() })
            .expect("zero");
        assert_eq!(c.group_initial_rebalance_delay, Duration::ZERO);
        let err =
            ServeConfig::resolve(ServeArgs { group_initial_rebalance_delay_ms: Some(300_001), ..Default::default() })
                .expect_err("too long");
        assert!(err.to_string().contains("group_initial_rebalance_delay_ms"), "{err}");
    }

    #[test]
    fn bad_flush_policy_names_the_key() {
        let err =
            ServeConfig::resolve(ServeArgs { flush: Some("sometimes".into()), ..Default::default() }).expect_err("bad");
        assert!(err.to_string().contains("flush"), "{err}");
    }
}
