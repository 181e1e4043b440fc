//! ringmq: a Kafka-compatible, thread-per-core message broker on glommio.
//!
//! How the modules depend on each other (each uses those after its arrow);
//! there is no cycle, and the runtime knows no protocol:
//!
//! ```text
//! server  -> net, runtime, config
//! net     -> kafka, metrics, runtime
//! kafka   -> runtime, groups, catalog, storage, record_batch
//! metrics -> runtime, histogram
//! runtime -> groups, catalog, storage, placement, config, tune, histogram
//! groups  -> storage, placement, record_batch
//! catalog -> storage
//! config  -> catalog, storage
//! ```
//!
//! `server` wires the listeners (Kafka, metrics) into `runtime`, which runs
//! the shards, routes every operation to the shard owning its object
//! (`runtime::shard::Shard::route`) and hands accepted connections to the
//! handlers it was given. `kafka` speaks the protocol over `runtime`; the
//! consumer group coordinator (`groups`) and the catalog speak their own types.

pub mod admin;
pub mod catalog;
pub mod config;
pub mod groups;
pub mod histogram;
pub mod kafka;
pub mod metrics;
pub mod net;
pub mod placement;
pub mod record_batch;
pub mod runtime;
pub mod server;
pub mod storage;
pub mod tune;
