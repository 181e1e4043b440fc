//! The AMQP 0-9-1 mode, `ringmq-loadgen amqp …`: the same measurement as
//! the Kafka mode (open loop from intended send times, or closed loop; the
//! same histograms, summary.json, .hgrm and SVG) against any AMQP broker.
//! Publish→confirm latency is recorded as the produce latency,
//! publish→delivery as the end-to-end latency.
//!
//! A lean blocking client in the Kafka client's style: std sockets, one
//! reader thread per publishing connection, methods through the
//! `amq-protocol` codec the broker uses, frames built here.
//!
//! Modules: `url` (amqp:// URLs), `wire` (frames, codec, frame reader),
//! `conn` (handshake, channel, setup calls), `config` (flags, settings),
//! `topology` (declare or check queues and exchange), `producer`
//! (publishes, confirm window), `consumer` (deliveries, batched acks),
//! `stats` (AMQP-only counts), `run` (one run end to end).

pub mod config;
pub mod conn;
pub mod consumer;
pub mod producer;
pub mod run;
pub mod stats;
pub mod topology;
pub mod url;
pub mod wire;
