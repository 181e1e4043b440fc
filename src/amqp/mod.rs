//! AMQP 0-9-1, as RabbitMQ's clients speak it: the listener's protocol
//! (`frame`, `codec`, `connection`, `channel`), the vhost's exchanges,
//! queues and bindings (`definitions`, `routing`), and queues stored on the
//! same logs as topics (`message`, `queue`, `settle`), each queue owned by
//! one shard (`broker`); the queue part of the HTTP API on the metrics
//! listener (`admin_api`).

pub mod admin_api;
pub mod broker;
pub mod channel;
pub mod codec;
pub mod codes;
pub mod connection;
pub mod definitions;
pub mod frame;
pub mod handlers;
pub mod io;
pub mod message;
pub mod metrics;
pub mod queue;
pub mod routing;
pub mod session;
pub mod settle;

use std::net::SocketAddr;

/// The AMQP listener's settings (`ringmq serve --amqp-*`).
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    pub listen: SocketAddr,
    /// Largest frame offered in connection.tune (head and end byte included).
    pub frame_max: u32,
    /// Channels per connection offered in connection.tune.
    pub channel_max: u16,
    /// Heartbeat interval offered in connection.tune, in seconds (0: none).
    pub heartbeat_s: u16,
    /// Largest message body accepted.
    pub max_message_bytes: usize,
    /// Segment file size of each durable queue's message log (at least
    /// the largest message and its envelope: `queue_segment_min_bytes`).
    pub queue_segment_bytes: u64,
    /// Memory for messages of transient queues, per shard.
    pub memory_queue_bytes: usize,
    /// Publishers are blocked (connection.blocked) while the data disk has
    /// less free space than this.
    pub disk_free_min_bytes: u64,
    /// Unacknowledged deliveries per channel, at most (a consumer with
    /// prefetch 0 stops receiving there).
    pub max_unacked_per_channel: u32,
    /// Time allowed for the opening handshake.
    pub handshake_timeout: std::time::Duration,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:5672";

/// Room a stored message takes beyond its body, at most (batch and record
/// headers, the envelope with its names and properties).
pub const MESSAGE_OVERHEAD_MAX_BYTES: usize = 64 * 1024;

/// The smallest queue segment that holds the largest message.
pub fn queue_segment_min_bytes(max_message_bytes: usize) -> u64 {
    (max_message_bytes + MESSAGE_OVERHEAD_MAX_BYTES) as u64
}

impl AmqpConfig {
    pub fn with_listen(listen: SocketAddr) -> AmqpConfig {
        AmqpConfig {
            listen,
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat_s: 60,
            max_message_bytes: 16 * 1024 * 1024,
            queue_segment_bytes: 32 * 1024 * 1024,
            memory_queue_bytes: 256 * 1024 * 1024,
            disk_free_min_bytes: 50 * 1000 * 1000,
            max_unacked_per_channel: 65_535,
            handshake_timeout: std::time::Duration::from_secs(10),
        }
    }
}
