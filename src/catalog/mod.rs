//! The topic catalog: names, ids, partition counts and per-topic configs.
//! Persisted as `<data-dir>/catalog` (`durable_file`): a first line
//! `crc32c=<hex>` over the TOML body that follows, written to a temporary
//! file, fsynced and renamed
//! over the old one, so a crash leaves either the old or the new catalog.

pub mod producer_ids;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::storage::LogConfig;

pub const CATALOG_FILE_NAME: &str = "catalog";
pub const MAX_TOPIC_NAME_BYTES: usize = 249;
pub const MAX_PARTITIONS: i32 = 10_000;

/// Topic configs ringmq understands; others are rejected (INVALID_CONFIG).
pub const SUPPORTED_CONFIGS: &[&str] =
    &["segment.bytes", "retention.ms", "retention.bytes", "max.message.bytes", "cleanup.policy"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicMeta {
    pub id: uuid::Uuid,
    pub partitions: i32,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Catalog {
    #[serde(default)]
    pub topics: BTreeMap<String, TopicMeta>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("catalog {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopicError {
    #[error("invalid topic name `{0}`: use 1-249 of [a-zA-Z0-9._-], not `.` or `..`")]
    InvalidName(String),
    #[error("invalid partition count {0} (1..={MAX_PARTITIONS})")]
    InvalidPartitions(i32),
    #[error("invalid config {key}={value}: {reason}")]
    InvalidConfig { key: String, value: String, reason: String },
    #[error("topic has {current} partitions; the count can only grow, not become {requested}")]
    PartitionsNotIncreased { current: i32, requested: i32 },
}

/// One change of an IncrementalAlterConfigs request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOp {
    Set {
        key: String,
        value: String,
    },
    /// Back to the broker default.
    Delete {
        key: String,
    },
    /// List configs only (`cleanup.policy`).
    Append {
        key: String,
        value: String,
    },
    Subtract {
        key: String,
        value: String,
    },
}

/// A change of a topic's catalog entry, made by the catalog shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicUpdate {
    /// IncrementalAlterConfigs: the listed changes, all or none.
    Configs(Vec<ConfigOp>),
    /// AlterConfigs (legacy): these overrides replace all the others.
    ReplaceConfigs(BTreeMap<String, String>),
    /// CreatePartitions: the new, larger, partition count.
    Partitions(i32),
}

/// The topic entry after `update`, every config checked against `defaults`.
pub fn apply_update(meta: &TopicMeta, update: &TopicUpdate, defaults: &LogConfig) -> Result<TopicMeta, TopicError> {
    let mut next = meta.clone();
    match update {
        TopicUpdate::Partitions(count) => {
            if !(1..=MAX_PARTITIONS).contains(count) {
                return Err(TopicError::InvalidPartitions(*count));
            }
            if *count <= meta.partitions {
                return Err(TopicError::PartitionsNotIncreased { current: meta.partitions, requested: *count });
            }
            next.partitions = *count;
        }
        TopicUpdate::ReplaceConfigs(configs) => next.configs = configs.clone(),
        TopicUpdate::Configs(ops) => {
            for op in ops {
                match op {
                    ConfigOp::Set { key, value } => {
                        next.configs.insert(key.clone(), value.clone());
                    }
                    ConfigOp::Delete { key } => {
                        if !SUPPORTED_CONFIGS.contains(&key.as_str()) {
                            return Err(TopicError::InvalidConfig {
                                key: key.clone(),
                                value: String::new(),
                                reason: "unknown topic config".into(),
                            });
                        }
                        next.configs.remove(key);
                    }
                    ConfigOp::Append { key, value } | ConfigOp::Subtract { key, value } => {
                        let bad = |reason: &str| TopicError::InvalidConfig {
                            key: key.clone(),
                            value: value.clone(),
                            reason: reason.into(),
                        };
                        if key != "cleanup.policy" {
                            return Err(bad("APPEND and SUBTRACT apply to list configs only (cleanup.policy)"));
                        }
                        if matches!(op, ConfigOp::Subtract { .. }) || value != "delete" {
                            return Err(bad("only `delete` is supported"));
                        }
                        next.configs.insert(key.clone(), value.clone());
                    }
                }
            }
        }
    }
    let mut probe = defaults.clone();
    for (k, v) in &next.configs {
        apply_config(&mut probe, k, v)?;
    }
    Ok(next)
}

pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TOPIC_NAME_BYTES
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(TopicError::InvalidName(name.to_string()))
    }
}

/// Checks one topic config and applies it to `log`.
pub fn apply_config(log: &mut LogConfig, key: &str, value: &str) -> Result<(), TopicError> {
    let bad = |reason: &str| TopicError::InvalidConfig { key: key.into(), value: value.into(), reason: reason.into() };
    let int = || value.parse::<i64>().map_err(|_| bad("not an integer"));
    match key {
        "segment.bytes" => {
            let v = int()?;
            if !(14..=1 << 30).contains(&v) {
                return Err(bad("must be between 14 and 1073741824"));
            }
            log.segment_bytes = (v as u64).max(64 * 1024);
        }
        "retention.ms" => {
            let v = int()?;
            if v < -1 {
                return Err(bad("must be -1 or more"));
            }
            log.retention_ms = v;
        }
        "retention.bytes" => {
            let v = int()?;
            if v < -1 {
                return Err(bad("must be -1 or more"));
            }
            log.retention_bytes = v;
        }
        "max.message.bytes" => {
            let v = int()?;
            if !(0..=i32::MAX as i64).contains(&v) {
                return Err(bad("must be between 0 and 2147483647"));
            }
            log.max_message_bytes = v as usize;
        }
        "cleanup.policy" => {
            if value != "delete" {
                return Err(bad("only `delete` is supported"));
            }
        }
        _ => return Err(bad("unknown topic config")),
    }
    Ok(())
}

/// The log config of a topic: broker defaults overridden by its configs.
pub fn log_config(defaults: &LogConfig, meta: &TopicMeta) -> LogConfig {
    let mut c = defaults.clone();
    for (k, v) in &meta.configs {
        // Stored configs were validated when set; a bad one is skipped, not fatal.
        if let Err(e) = apply_config(&mut c, k, v) {
            tracing::warn!(error = %e, "ignoring stored topic config");
        }
    }
    c
}

impl Catalog {
    /// The catalog in `data_dir` (empty when there is none yet).
    pub fn load(data_dir: &Path) -> Result<Catalog, CatalogError> {
        let path = data_dir.join(CATALOG_FILE_NAME);
        let Some(body) = crate::durable_file::load(&path).map_err(CatalogError::from)? else {
            return Ok(Catalog::default());
        };
        toml::from_str(&body).map_err(|e| CatalogError::Corrupt { path, reason: e.to_string() })
    }

    /// Writes the catalog durably (blocking: call from a helper thread).
    pub fn store(&self, data_dir: &Path) -> Result<(), CatalogError> {
        let body = toml::to_string(self)
            .map_err(|e| CatalogError::Io { context: "encode catalog".into(), source: std::io::Error::other(e) })?;
        crate::durable_file::store(&data_dir.join(CATALOG_FILE_NAME), &body).map_err(CatalogError::from)
    }
}

impl From<crate::durable_file::DurableFileError> for CatalogError {
    fn from(e: crate::durable_file::DurableFileError) -> CatalogError {
        match e {
            crate::durable_file::DurableFileError::Io { context, source } => CatalogError::Io { context, source },
            crate::durable_file::DurableFileError::Corrupt { path, reason } => CatalogError::Corrupt { path, reason },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_round_trips_through_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Catalog::default();
        let mut configs = BTreeMap::new();
        configs.insert("retention.ms".to_string(), "1000".to_string());
        c.topics.insert("t".into(), TopicMeta { id: uuid::Uuid::new_v4(), partitions: 3, configs });
        c.store(dir.path()).expect("store");
        let back = Catalog::load(dir.path()).expect("load");
        assert_eq!(back.topics, c.topics);
    }

    #[test]
    fn corrupt_catalog_is_rejected_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Catalog::default();
        c.topics.insert("t".into(), TopicMeta { id: uuid::Uuid::new_v4(), partitions: 3, configs: BTreeMap::new() });
        c.store(dir.path()).expect("store");
        let path = dir.path().join(CATALOG_FILE_NAME);
        let text = std::fs::read_to_string(&path).expect("read").replace("partitions = 3", "partitions = 4");
        std::fs::write(&path, text).expect("write");
        assert!(matches!(Catalog::load(dir.path()), Err(CatalogError::Corrupt { .. })));
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders-v2_x.y").is_ok());
        for bad in ["", ".", "..", "a/b", "spaced name", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }
}
