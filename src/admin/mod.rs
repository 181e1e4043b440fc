//! Administration of a running broker, behind `ringmq topic ...` and
//! `ringmq group ...` (over the Kafka protocol) and `ringmq queue ...` (AMQP
//! queues, over the broker's HTTP API): a small blocking Kafka client
//! (`client`) and HTTP/1.0 client (`http`), the commands' logic returning
//! plain structs (`topic`, `group`, `queue`), their rendering as tables or
//! JSON (`output`), RFC 3339 times (`time`), the errors and exit codes
//! (`error`) and the command lines (`cli`). It runs in the CLI process,
//! never on a shard: blocking std I/O is right here, and the topic and
//! group commands work against any Kafka-compatible broker.

pub mod cli;
pub mod client;
pub mod error;
pub mod group;
pub mod http;
pub mod output;
pub mod queue;
pub mod time;
pub mod topic;

pub use client::{Client, ClientOptions};
pub use error::AdminError;
