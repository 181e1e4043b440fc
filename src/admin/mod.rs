//! Administration of a running broker over the Kafka protocol, behind
//! `ringmq topic ...` and `ringmq group ...`: a small blocking Kafka client
//! (`client`), the commands' logic returning plain structs (`topic`,
//! `group`), their rendering as tables or JSON (`output`), RFC 3339 times
//! (`time`), the errors and exit codes (`error`) and the command lines
//! (`cli`). It runs in the CLI process, never on a shard: blocking std I/O
//! is right here, and it works against any Kafka-compatible broker.

pub mod cli;
pub mod client;
pub mod error;
pub mod group;
pub mod output;
pub mod time;
pub mod topic;

pub use client::{Client, ClientOptions};
pub use error::AdminError;
