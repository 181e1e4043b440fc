//! Storage: one append-only log per partition, made of preallocated segment
//! files written with O_DIRECT and group-committed (see `appender`), read
//! back through memory maps and an in-memory tail (see `reader`).
//!
//! The flush/ack contract lives in `appender.rs`; the on-disk format in
//! `segment.rs` and `batch.rs`; start-up repair in `recovery.rs`; lookups by
//! timestamp in `time_index.rs` and `time_lookup.rs`; DeleteRecords in
//! `delete_records.rs`.
//!
//! One module per concept, each the one owner of its state; `PartitionLog`
//! (`log`) composes them and is the only `impl PartitionLog`. Who uses whom
//! (a DAG: nothing below uses anything above it; `mod.rs` only re-exports):
//!
//! - `log` → every module below: `PartitionLog`, its tasks and its API
//! - `recovery` → appender, batch, config, delete_records, error, index,
//!   producer_state, segment, time_index: builds a `RecoveredLog`
//! - `reader`, `time_lookup` → state, batch, index/time_index, segment, error
//! - `state` → appender, batch, segment, segment_set, tail: `LogState`, the
//!   changes that span pieces, and the offsets' order
//! - `retention` → delete_records, segment, config, error
//! - `delete_records` → segment, producer_state, error
//! - `appender` → batch, segment, config, error: the pending queue and the
//!   commit pipeline
//! - `segment_set` → segment: sealed, active, prepared, placement
//! - `admission` → batch, config, producer_state, error: size checks and
//!   the queue of appends waiting for room
//! - `segment` → index, time_index, config, error: files, maps, segments
//! - `error` → batch, producer_state
//! - `producer_state` → batch: the idempotent-producer table
//! - `time_index` → index
//! - `batch`, `config`, `index`, `tail`: leaves

mod admission;
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
mod segment_set;
mod state;
mod tail;
pub mod time_index;
pub mod time_lookup;

pub use self::config::{FlushPolicy, LogConfig, Preallocation, PAGE_BYTES};
pub use self::error::StorageError;
pub use self::log::PartitionLog;
pub use self::retention::now_ms;

#[cfg(test)]
mod tests;
