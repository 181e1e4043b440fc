//! ringmq: a Kafka-compatible, thread-per-core message broker on glommio.
//! See `../shared/DESIGN.md` (the project's map) for how the parts fit.

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
