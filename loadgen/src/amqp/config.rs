//! `ringmq-loadgen amqp …`: the flags of an AMQP run (clap), checked into an
//! `AmqpConfig` the rest of the AMQP mode trusts, and `AmqpSettings`, the
//! settings as summary.json records them (password left out).

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};
use serde::{Deserialize, Serialize};

use super::url::AmqpUrl;
use crate::cli::parse_duration;
use crate::error::Error;
use crate::payload::STAMP_LEN;

/// Largest body: ringmq's default `--amqp-max-message-bytes`.
pub const SIZE_MAX: usize = 16 << 20;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueType {
    Classic,
    Quorum,
}

impl QueueType {
    pub fn name(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

/// Flags of an AMQP load run.
#[derive(Args, Debug, Clone)]
pub struct AmqpArgs {
    /// Broker URL: amqp://USER:PASS@HOST:PORT/VHOST (guest:guest, port 5672 and vhost / when left out).
    #[arg(long, required = true)]
    pub url: Option<String>,
    /// Queue to consume from (with --fanout N: the base name of queues NAME-1..NAME-N).
    #[arg(long, required = true)]
    pub queue: Option<String>,
    /// Exchange to publish to; "" is the default exchange (with --fanout: NAME-fanout when not given).
    #[arg(long)]
    pub exchange: Option<String>,
    /// Routing key of every publish (default: the queue's name; "" with --fanout).
    #[arg(long)]
    pub routing_key: Option<String>,
    /// Publishing connections (one channel each).
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consuming connections per queue (one consumer each); 0 measures publish→confirm only.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Bytes of each message body (at least 24: the stamp).
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Messages per second over all producers (open loop); 0 = as fast as confirms allow (closed loop).
    #[arg(long, default_value_t = 1000.0, allow_negative_numbers = true)]
    pub rate: f64,
    /// Measured time (e.g. 30s, 500ms, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Time run before the measured window, excluded from the results.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Unconfirmed publishes per producer connection, at most (confirm.select); 0 publishes without confirms.
    #[arg(long, default_value_t = 192)]
    pub confirm_window: usize,
    /// basic.qos prefetch of each consumer (0: no limit); consumers ack (multiple) every prefetch/2 deliveries.
    #[arg(long, default_value_t = 200)]
    pub prefetch: u16,
    /// Directory for summary.json, produce.hgrm, e2e.hgrm, latency.svg and intervals.hlog.
    #[arg(long, default_value = "loadgen-out")]
    pub out: PathBuf,
    /// Declare the queue(s) (and the exchange and bindings) before the run; without it they must exist.
    #[arg(long)]
    pub declare: bool,
    /// x-queue-type of declared queues (none given: the broker's default, classic).
    #[arg(long, value_enum)]
    pub queue_type: Option<QueueType>,
    /// Whether declared queues and exchanges are durable.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub durable: bool,
    /// Publish to a fanout exchange bound to N queues NAME-1..NAME-N, each with --consumers consumers.
    #[arg(long, default_value_t = 0)]
    pub fanout: usize,
    /// Persistent messages (delivery-mode 2); the default.
    #[arg(long, conflicts_with = "transient")]
    pub persistent: bool,
    /// Transient messages (delivery-mode 1).
    #[arg(long)]
    pub transient: bool,
    /// Priorities drawn uniformly from 0..=P for each message (declared queues get x-max-priority P); 0: none.
    #[arg(long, default_value_t = 0)]
    pub priority_max: u16,
    /// An x-delay header of this many ms on every message (the delayed-message exchange's header).
    #[arg(long)]
    pub delay_ms: Option<u32>,
    /// Consume with no_ack (the broker counts a message acknowledged once sent).
    #[arg(long)]
    pub no_ack: bool,
    /// How long a setup reply or a confirm may take before the run fails.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// After the last publish, how long consumers may take to catch up.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Connection name prefix the broker shows.
    #[arg(long, default_value = "ringmq-loadgen")]
    pub client_id: String,
}

/// A checked AMQP run.
#[derive(Clone, Debug)]
pub struct AmqpConfig {
    pub url: AmqpUrl,
    /// The queues consumed from (one, or the fanout's).
    pub queues: Vec<String>,
    pub exchange: String,
    pub routing_key: String,
    pub producers: usize,
    /// Per queue.
    pub consumers: usize,
    pub size: usize,
    /// 0 = closed loop.
    pub rate: f64,
    pub duration: Duration,
    pub warmup: Duration,
    /// 0 = no confirms.
    pub confirm_window: usize,
    pub prefetch: u16,
    pub out: PathBuf,
    pub declare: bool,
    pub queue_type: Option<QueueType>,
    pub durable: bool,
    pub fanout: usize,
    pub persistent: bool,
    pub priority_max: u8,
    pub delay_ms: Option<u32>,
    pub no_ack: bool,
    pub request_timeout: Duration,
    pub drain_timeout: Duration,
    pub client_id: String,
}

impl AmqpConfig {
    pub fn closed_loop(&self) -> bool {
        self.rate == 0.0
    }

    /// Deliveries due for each message published: one per queue.
    pub fn deliveries_per_message(&self) -> u64 {
        if self.consumers == 0 {
            0
        } else {
            self.queues.len() as u64
        }
    }

    /// Consumer acks go out every this many deliveries (multiple).
    pub fn ack_every(&self) -> u64 {
        (u64::from(self.prefetch) / 2).max(1)
    }
}

impl AmqpArgs {
    /// Checks what clap cannot; every message names the flag.
    pub fn validate(&self) -> Result<AmqpConfig, Error> {
        let usage = |m: String| Err(Error::Usage(m));
        let url = match &self.url {
            Some(u) => {
                AmqpUrl::parse(u).map_err(|why| Error::Usage(format!("--url '{u}' is not an AMQP URL: {why}")))?
            }
            None => return usage("--url is required".to_string()),
        };
        let Some(queue) = self.queue.clone() else { return usage("--queue is required".to_string()) };
        let suffix = if self.fanout > 0 { 1 + self.fanout.to_string().len() } else { 0 };
        if queue.is_empty() || queue.len() + suffix > 255 {
            return usage(format!("--queue '{queue}' must be 1..={} bytes", 255 - suffix));
        }
        if self.fanout > 1000 {
            return usage(format!("--fanout must be 0..=1000 (got {})", self.fanout));
        }
        if self.producers < 1 || self.producers > 1024 {
            return usage(format!("--producers must be 1..=1024 (got {})", self.producers));
        }
        if self.consumers > 1024 {
            return usage(format!("--consumers must be 0..=1024 (got {})", self.consumers));
        }
        if self.size < STAMP_LEN || self.size > SIZE_MAX {
            return usage(format!(
                "--size must be {STAMP_LEN}..={SIZE_MAX} bytes: each body starts with a {STAMP_LEN}-byte stamp (got {})",
                self.size
            ));
        }
        if !self.rate.is_finite() || self.rate < 0.0 {
            return usage(format!("--rate must be ≥ 0 messages per second (got {})", self.rate));
        }
        if self.duration.is_zero() {
            return usage("--duration must be more than 0".to_string());
        }
        if self.confirm_window > 1 << 20 {
            return usage(format!("--confirm-window must be 0..=1048576 (got {})", self.confirm_window));
        }
        if self.priority_max > 255 {
            return usage(format!("--priority-max must be 0..=255 (got {})", self.priority_max));
        }
        if self.queue_type == Some(QueueType::Quorum) && !self.durable {
            return usage("--queue-type quorum needs durable queues (drop --durable false)".to_string());
        }
        if self.request_timeout.is_zero() {
            return usage("--request-timeout must be more than 0".to_string());
        }
        let queues = if self.fanout == 0 {
            vec![queue.clone()]
        } else {
            (1..=self.fanout).map(|i| format!("{queue}-{i}")).collect()
        };
        let exchange = match (&self.exchange, self.fanout) {
            (Some(e), 0) => e.clone(),
            (Some(e), _) if e.is_empty() => {
                return usage("--fanout needs an exchange of its own: --exchange cannot be \"\"".to_string())
            }
            (Some(e), _) => e.clone(),
            (None, 0) => String::new(),
            (None, _) => format!("{queue}-fanout"),
        };
        let routing_key = match &self.routing_key {
            Some(k) => k.clone(),
            None if self.fanout > 0 => String::new(),
            None => queue.clone(),
        };
        for (flag, v) in [("--exchange", &exchange), ("--routing-key", &routing_key)] {
            if v.len() > 255 {
                return usage(format!("{flag} must be at most 255 bytes (got {})", v.len()));
            }
        }
        Ok(AmqpConfig {
            url,
            queues,
            exchange,
            routing_key,
            producers: self.producers,
            consumers: self.consumers,
            size: self.size,
            rate: self.rate,
            duration: self.duration,
            warmup: self.warmup,
            confirm_window: self.confirm_window,
            prefetch: self.prefetch,
            out: self.out.clone(),
            declare: self.declare,
            queue_type: self.queue_type,
            durable: self.durable,
            fanout: self.fanout,
            persistent: !self.transient,
            priority_max: self.priority_max as u8,
            delay_ms: self.delay_ms,
            no_ack: self.no_ack,
            request_timeout: self.request_timeout,
            drain_timeout: self.drain_timeout,
            client_id: self.client_id.clone(),
        })
    }
}

/// The settings of an AMQP run as summary.json records them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AmqpSettings {
    /// Always "amqp".
    pub protocol: String,
    /// The URL without its password.
    pub url: String,
    pub queues: Vec<String>,
    pub exchange: String,
    pub routing_key: String,
    pub producers: usize,
    /// Per queue.
    pub consumers: usize,
    pub size_bytes: usize,
    pub rate_msgs_per_s: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub confirm_window: usize,
    pub prefetch: u16,
    pub declare: bool,
    pub queue_type: Option<String>,
    pub durable: bool,
    pub fanout: usize,
    pub persistent: bool,
    pub priority_max: u16,
    pub delay_ms: Option<u32>,
    pub no_ack: bool,
}

impl AmqpSettings {
    pub fn of(c: &AmqpConfig) -> AmqpSettings {
        AmqpSettings {
            protocol: "amqp".to_string(),
            url: c.url.redacted(),
            queues: c.queues.clone(),
            exchange: c.exchange.clone(),
            routing_key: c.routing_key.clone(),
            producers: c.producers,
            consumers: c.consumers,
            size_bytes: c.size,
            rate_msgs_per_s: c.rate,
            duration_s: c.duration.as_secs_f64(),
            warmup_s: c.warmup.as_secs_f64(),
            confirm_window: c.confirm_window,
            prefetch: c.prefetch,
            declare: c.declare,
            queue_type: c.queue_type.map(|t| t.name().to_string()),
            durable: c.durable,
            fanout: c.fanout,
            persistent: c.persistent,
            priority_max: u16::from(c.priority_max),
            delay_ms: c.delay_ms,
            no_ack: c.no_ack,
        }
    }

    /// What could be read from flags that failed their checks.
    pub fn of_args(a: &AmqpArgs) -> AmqpSettings {
        AmqpSettings {
            protocol: "amqp".to_string(),
            url: a.url.as_deref().and_then(|u| AmqpUrl::parse(u).ok()).map(|u| u.redacted()).unwrap_or_default(),
            queues: a.queue.iter().cloned().collect(),
            exchange: a.exchange.clone().unwrap_or_default(),
            routing_key: a.routing_key.clone().unwrap_or_default(),
            producers: a.producers,
            consumers: a.consumers,
            size_bytes: a.size,
            rate_msgs_per_s: a.rate,
            duration_s: a.duration.as_secs_f64(),
            warmup_s: a.warmup.as_secs_f64(),
            confirm_window: a.confirm_window,
            prefetch: a.prefetch,
            declare: a.declare,
            queue_type: a.queue_type.map(|t| t.name().to_string()),
            durable: a.durable,
            fanout: a.fanout,
            persistent: !a.transient,
            priority_max: a.priority_max,
            delay_ms: a.delay_ms,
            no_ack: a.no_ack,
        }
    }

    /// A bare settings record for a command line clap rejected.
    pub fn unknown() -> AmqpSettings {
        AmqpSettings { protocol: "amqp".to_string(), ..AmqpSettings::default() }
    }
}
