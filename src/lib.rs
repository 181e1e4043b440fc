//! ringmq: a Kafka-compatible, thread-per-core message broker on glommio.
//!
//! How the modules depend on each other (each uses those after its arrow);
//! there is no cycle, and the runtime knows no protocol:
//!
//! ```text
//! server  -> net, runtime, config
//! net     -> kafka, amqp, metrics, runtime
//! kafka   -> runtime, groups, catalog, storage, record_batch
//! amqp    -> runtime, storage, placement, durable_file, histogram
//! metrics -> runtime, histogram
//! runtime -> groups, catalog, storage, placement, config, tune, histogram
//! groups  -> storage, placement, record_batch
//! catalog -> storage, durable_file
//! config  -> amqp (its settings' type), catalog, storage
//! admin   -> kafka_protocol (a client; no broker module)
//! ```
//!
//! `server` wires the listeners (Kafka, AMQP, metrics) into `runtime`, which
//! runs the shards, routes every operation to the shard owning its object
//! (`runtime::shard::Shard::route`, `run_on`) and hands accepted connections
//! to the handlers it was given. `kafka` and `amqp` speak their protocols
//! over `runtime`; the consumer group coordinator (`groups`) and the catalog
//! speak their own types.

pub mod admin;
pub mod amqp;
pub mod catalog;
pub mod config;
pub mod durable_file;
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
