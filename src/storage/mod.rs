//! Storage: one append-only log per partition, made of preallocated segment
//! files written with O_DIRECT and group-committed (see `appender`), read
//! back through memory maps and an in-memory tail (see `reader`).
//!
//! The flush/ack contract lives in `appender.rs`; the on-disk format in
//! `segment.rs` and `batch.rs`; start-up repair in `recovery.rs`; lookups by
//! timestamp in `time_index.rs` and `time_lookup.rs`; DeleteRecords in
//! `delete_records.rs`.

pub mod appender;
pub mod batch;
pub mod config;
pub mod delete_records;
pub mod error;
pub mod index;
pub mod log;
pub mod producer_state;
pub mod reader;
pub mod recovery;
pub mod retention;
pub mod segment;
pub mod time_index;
pub mod time_lookup;

pub use self::config::{FlushPolicy, LogConfig, Preallocation, PAGE_BYTES};
pub use self::error::StorageError;
pub use self::log::PartitionLog;
pub use self::retention::now_ms;

#[cfg(test)]
mod tests;
