//! The `ringmq topic ...`, `ringmq group ...` and `ringmq queue ...` command
//! lines (clap derive, flattened into the binary's subcommands) and their
//! runs: connect, call the command's logic, render its result, and map the
//! outcome to an exit code with a one-line message on stderr for a failure.

use std::io::Write;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::client::{Client, ClientOptions, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_REQUEST_TIMEOUT_MS};
use super::error::{AdminError, EXIT_OK};
use super::group::{self, ResetTo};
use super::http::HttpOptions;
use super::output::{self, Format};
use super::queue::{self, Api};
use super::topic;

/// Options every admin command takes, before or after its subcommand.
#[derive(Args, Clone, Debug)]
pub struct Connection {
    /// Broker to talk to, over the Kafka protocol (port 9092 when HOST alone is given).
    #[arg(long, global = true, value_name = "HOST:PORT", default_value = "127.0.0.1:9092", value_parser = host_port)]
    pub bootstrap: String,
    /// Output: aligned tables for people, or one JSON document on stdout for scripts.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// How long one request may take, in milliseconds; connecting waits at most 3000 of them.
    #[arg(long, global = true, value_name = "MS", default_value_t = DEFAULT_REQUEST_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,
}

#[derive(Args, Debug)]
pub struct TopicArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: TopicCommand,
}

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic (replication: the broker's default, 1 on ringmq).
    Create {
        /// The topic's name.
        name: String,
        /// Partitions [default: the broker's --default-partitions]
        #[arg(long, short = 'p', value_parser = clap::value_parser!(i32).range(1..))]
        partitions: Option<i32>,
        /// A topic config, e.g. retention.ms=86400000; repeatable.
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = key_value)]
        configs: Vec<(String, String)>,
    },
    /// List topics with their partition and replica counts.
    List,
    /// Show a topic's partitions with start and end offsets, and its configs with their source.
    Describe {
        /// The topic's name.
        name: String,
    },
    /// Set or delete topic configs; all changes apply together or not at all.
    AlterConfig {
        /// The topic's name.
        name: String,
        /// Set a config, e.g. retention.ms=3600000; repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = key_value, required_unless_present = "delete")]
        set: Vec<(String, String)>,
        /// Delete a config override (back to the broker's value); repeatable.
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Delete a topic and its data.
    Delete {
        /// The topic's name.
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct GroupArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: GroupCommand,
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List consumer groups with their state.
    List,
    /// Show a group's state, members and assignments, and per partition the
    /// committed offset, end offset and lag.
    Describe {
        /// The group's id.
        group: String,
    },
    /// Move a group's committed offsets on one topic; refused while the group
    /// has members. Prints the plan, then the result.
    ResetOffsets {
        /// The group's id.
        group: String,
        /// The topic whose offsets move.
        #[arg(long)]
        topic: String,
        #[command(flatten)]
        to: ResetTarget,
        /// Only these partitions, e.g. 0,2 [default: all]
        #[arg(long, value_delimiter = ',', value_name = "P,P,...")]
        partitions: Option<Vec<i32>>,
    },
    /// Delete a group and its committed offsets; refused while it has members.
    Delete {
        /// The group's id.
        group: String,
    },
}

/// Options every queue command takes, before or after its subcommand.
#[derive(Args, Clone, Debug)]
pub struct HttpConnection {
    /// The broker's HTTP API: its metrics address, `serve --metrics` (port 9644 when HOST alone is given).
    #[arg(long, global = true, value_name = "HOST:PORT", default_value = DEFAULT_HTTP, value_parser = http_host_port)]
    pub http: String,
    /// Output: aligned tables for people, or one JSON document on stdout for scripts.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// How long one request may take, in milliseconds; connecting waits at most 3000 of them.
    #[arg(long, global = true, value_name = "MS", default_value_t = DEFAULT_REQUEST_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,
}

/// The metrics address `serve` listens on by default.
const DEFAULT_HTTP: &str = "127.0.0.1:9644";

#[derive(Args, Debug)]
pub struct QueueArgs {
    #[command(flatten)]
    pub connection: HttpConnection,
    #[command(subcommand)]
    pub command: QueueCommand,
}

#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// List AMQP queues with their type, durability, ready and unacknowledged messages and consumers.
    List,
    /// Drop a queue's ready messages; unacknowledged ones stay with their consumers.
    Purge {
        /// The queue's name.
        name: String,
    },
    /// Delete a queue and its messages; its consumers are cancelled.
    Delete {
        /// The queue's name.
        name: String,
        /// Refuse while the queue holds messages, ready or unacknowledged.
        #[arg(long)]
        if_empty: bool,
        /// Refuse while the queue has consumers.
        #[arg(long)]
        if_unused: bool,
    },
}

/// Exactly one target of `reset-offsets`.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct ResetTarget {
    /// Each partition's start offset.
    #[arg(long)]
    pub to_earliest: bool,
    /// Each partition's end offset (nothing left to read).
    #[arg(long)]
    pub to_latest: bool,
    /// This offset, clamped to each partition's start and end offsets.
    #[arg(long, value_name = "OFFSET", value_parser = clap::value_parser!(i64).range(0..))]
    pub to_offset: Option<i64>,
    /// The first record at or after TIME (RFC 3339, e.g. 2026-12-05T10:00:00Z),
    /// or the end offset where none is that recent.
    #[arg(long, value_name = "TIME", value_parser = super::time::parse_rfc3339_ms)]
    pub to_datetime: Option<i64>,
}

impl ResetTarget {
    fn resolve(&self) -> Result<ResetTo, AdminError> {
        match (self.to_earliest, self.to_latest, self.to_offset, self.to_datetime) {
            (true, false, None, None) => Ok(ResetTo::Earliest),
            (false, true, None, None) => Ok(ResetTo::Latest),
            (false, false, Some(o), None) => Ok(ResetTo::Offset(o)),
            (false, false, None, Some(ms)) => Ok(ResetTo::Timestamp(ms)),
            // clap's group already requires exactly one.
            _ => Err(AdminError::Usage(
                "give exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime".to_string(),
            )),
        }
    }
}

/// `HOST:PORT`, `HOST` (port 9092), `[IPv6]:PORT` or `[IPv6]`.
fn host_port(s: &str) -> Result<String, String> {
    with_default_port(s, 9092)
}

/// As `host_port`, with the metrics endpoint's port 9644.
fn http_host_port(s: &str) -> Result<String, String> {
    with_default_port(s, 9644)
}

fn with_default_port(s: &str, port: u16) -> Result<String, String> {
    let s = s.trim();
    let has_port = match s.strip_prefix('[') {
        Some(rest) => rest.split_once(']').ok_or_else(|| format!("`{s}`: missing `]`"))?.1.starts_with(':'),
        None => s.contains(':'),
    };
    match (s.is_empty(), has_port) {
        (true, _) => Err("an empty address".to_string()),
        (false, true) => Ok(s.to_string()),
        (false, false) => Ok(format!("{s}:{port}")),
    }
}

/// `KEY=VALUE` with a non-empty key.
fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// Runs a topic command; returns the process exit code.
pub fn run_topic(args: TopicArgs) -> i32 {
    let format = args.connection.format;
    run(&args.connection, |client, out| match args.command {
        TopicCommand::Create { name, partitions, configs } => {
            let created = topic::create(client, &name, partitions, &configs)?;
            render(out, format, &created, output::topic_created)
        }
        TopicCommand::List => {
            let topics = topic::list(client)?;
            match format {
                Format::Text => write(output::topic_list(out, &topics)),
                Format::Json => write(output::json(out, &output::TopicList { topics: &topics })),
            }
        }
        TopicCommand::Describe { name } => {
            let described = topic::describe(client, &name)?;
            render(out, format, &described, output::topic_description)
        }
        TopicCommand::AlterConfig { name, set, delete } => {
            let altered = topic::alter_config(client, &name, &set, &delete)?;
            render(out, format, &altered, output::configs_altered)
        }
        TopicCommand::Delete { name } => {
            let deleted = topic::delete(client, &name)?;
            render(out, format, &deleted, |out, d| writeln!(out, "deleted topic `{}`", d.name))
        }
    })
}

/// Runs a group command; returns the process exit code.
pub fn run_group(args: GroupArgs) -> i32 {
    let format = args.connection.format;
    run(&args.connection, |client, out| match args.command {
        GroupCommand::List => {
            let groups = group::list(client)?;
            match format {
                Format::Text => write(output::group_list(out, &groups)),
                Format::Json => write(output::json(out, &output::GroupList { groups: &groups })),
            }
        }
        GroupCommand::Describe { group } => {
            let described = group::describe(client, &group)?;
            render(out, format, &described, output::group_description)
        }
        GroupCommand::ResetOffsets { group, topic, to, partitions } => {
            let plan = group::plan_reset(client, &group, &topic, to.resolve()?, partitions.as_deref())?;
            if format == Format::Text {
                // The plan goes out before the commit, so that a refusal still shows it.
                write(output::reset_plan(out, &plan).and_then(|_| out.flush()))?;
            }
            let done = group::apply_reset(client, plan)?;
            render(out, format, &done, output::reset_done)
        }
        GroupCommand::Delete { group } => {
            let deleted = group::delete(client, &group)?;
            render(out, format, &deleted, |out, d| writeln!(out, "deleted group `{}`", d.group))
        }
    })
}

/// Runs a queue command; returns the process exit code.
pub fn run_queue(args: QueueArgs) -> i32 {
    let c = &args.connection;
    let request_timeout = Duration::from_millis(c.timeout_ms);
    let api = Api {
        addr: c.http.clone(),
        opts: HttpOptions {
            connect_timeout: request_timeout.min(Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS)),
            request_timeout,
        },
    };
    let format = c.format;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let outcome = match args.command {
        QueueCommand::List => queue::list(&api).and_then(|queues| match format {
            Format::Text => write(output::queue_list(&mut out, &queues)),
            Format::Json => write(output::json(&mut out, &output::QueueList { queues: &queues })),
        }),
        QueueCommand::Purge { name } => {
            queue::purge(&api, &name).and_then(|p| render(&mut out, format, &p, output::queue_purged))
        }
        QueueCommand::Delete { name, if_empty, if_unused } => queue::delete(&api, &name, if_empty, if_unused)
            .and_then(|d| render(&mut out, format, &d, output::queue_deleted)),
    };
    exit_code(outcome.and_then(|()| write(out.flush())))
}

fn exit_code(outcome: Result<(), AdminError>) -> i32 {
    match outcome {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("ringmq: {e}");
            e.exit_code()
        }
    }
}

fn write(result: std::io::Result<()>) -> Result<(), AdminError> {
    result.map_err(|source| AdminError::Output { source })
}

/// The text rendering or the JSON document of `value`.
fn render<T: serde::Serialize>(
    out: &mut dyn Write,
    format: Format,
    value: &T,
    text: impl FnOnce(&mut dyn Write, &T) -> std::io::Result<()>,
) -> Result<(), AdminError> {
    write(match format {
        Format::Text => text(out, value),
        Format::Json => output::json(out, value),
    })
}

/// Connects, runs `command` with stdout, and turns its outcome into an exit code.
fn run(connection: &Connection, command: impl FnOnce(&mut Client, &mut dyn Write) -> Result<(), AdminError>) -> i32 {
    let request_timeout = Duration::from_millis(connection.timeout_ms);
    let opts = ClientOptions {
        connect_timeout: request_timeout.min(Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS)),
        request_timeout,
        client_id: "ringmq-admin".to_string(),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let outcome = Client::connect(&connection.bootstrap, opts)
        .and_then(|mut client| command(&mut client, &mut out))
        .and_then(|()| write(out.flush()));
    exit_code(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_without_a_port_gets_kafkas_default_port() {
        assert_eq!(host_port("broker-1").as_deref(), Ok("broker-1:9092"));
        assert_eq!(host_port("broker-1:19092").as_deref(), Ok("broker-1:19092"));
        assert_eq!(host_port("[::1]").as_deref(), Ok("[::1]:9092"));
        assert_eq!(host_port("[::1]:19092").as_deref(), Ok("[::1]:19092"));
        assert!(host_port("[::1").is_err());
        assert!(host_port(" ").is_err());
        assert_eq!(http_host_port("broker-1").as_deref(), Ok("broker-1:9644"));
        assert_eq!(http_host_port("[::1]:8080").as_deref(), Ok("[::1]:8080"));
    }

    #[test]
    fn configs_are_key_equals_value_with_a_key() {
        assert_eq!(key_value("retention.ms=1000"), Ok(("retention.ms".into(), "1000".into())));
        assert_eq!(key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(key_value("empty="), Ok(("empty".into(), String::new())));
        assert!(key_value("=1").is_err());
        assert!(key_value("retention.ms").is_err());
    }
}
