//! One shard's state: the partition logs it owns and its view of the topic
//! catalog. With one shard it also owns the catalog (DESIGN §2: shard 0).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;

use glommio::sync::Semaphore;

use crate::catalog::{self, Catalog, TopicError, TopicMeta};
use crate::config::ServeConfig;
use crate::storage::{segment, PartitionLog, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum TopicOpError {
    #[error("topic `{0}` already exists")]
    AlreadyExists(String),
    #[error("unknown topic `{0}`")]
    Unknown(String),
    #[error(transparent)]
    Invalid(#[from] TopicError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("catalog: {0}")]
    Catalog(#[from] catalog::CatalogError),
}

pub struct Shard {
    pub id: usize,
    pub count: usize,
    pub config: ServeConfig,
    /// Host and port given to clients in Metadata.
    pub advertised: RefCell<(String, u16)>,
    catalog: RefCell<Catalog>,
    logs: RefCell<HashMap<(String, i32), Rc<PartitionLog>>>,
    /// Serialises catalog changes (create/delete/auto-create).
    catalog_change: Semaphore,
    pub stopping: Cell<bool>,
}

/// Which shard owns a partition: a stable function of the topic, the
/// partition and the shard count (FNV-1a), needing no lookup table.
pub fn shard_of(topic: &str, partition: i32, shard_count: usize) -> usize {
    assert!(shard_count > 0);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in topic.bytes().chain(partition.to_be_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % shard_count as u64) as usize
}

impl Shard {
    fn topics_dir(&self) -> PathBuf {
        self.config.data_dir.join("topics")
    }

    fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.topics_dir().join(topic).join(partition.to_string())
    }

    pub fn owns(&self, topic: &str, partition: i32) -> bool {
        shard_of(topic, partition, self.count) == self.id
    }

    /// Loads the catalog and opens (recovers) every partition this shard owns.
    pub async fn open(id: usize, count: usize, config: ServeConfig) -> Result<Rc<Shard>, TopicOpError> {
        let catalog = Catalog::load(&config.data_dir)?;
        let advertised = (config.listen.ip().to_string(), config.listen.port());
        let shard = Rc::new(Shard {
            id,
            count,
            config,
            advertised: RefCell::new(advertised),
            catalog: RefCell::new(catalog),
            logs: RefCell::new(HashMap::new()),
            catalog_change: Semaphore::new(1),
            stopping: Cell::new(false),
        });
        // Directories of topics the catalog does not know: a create or delete
        // that a crash cut short. They were never visible to clients.
        if let Ok(entries) = std::fs::read_dir(shard.topics_dir()) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if !shard.catalog.borrow().topics.contains_key(&name) {
                    tracing::warn!(topic = %name, "removing directory of a topic that is not in the catalog");
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let topics: Vec<(String, TopicMeta)> = shard.catalog.borrow().topics.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (name, meta) in topics {
            shard.open_partitions(&name, &meta).await?;
        }
        Ok(shard)
    }

    async fn open_partitions(&self, name: &str, meta: &TopicMeta) -> Result<(), TopicOpError> {
        let log_config = catalog::log_config(&self.config.log, meta);
        for p in 0..meta.partitions {
            if !self.owns(name, p) {
                continue;
            }
            let log = PartitionLog::open(self.partition_dir(name, p), name.to_string(), p, log_config.clone()).await?;
            self.logs.borrow_mut().insert((name.to_string(), p), log);
        }
        Ok(())
    }

    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.catalog.borrow().topics.get(name).cloned()
    }

    pub fn topics(&self) -> Vec<(String, TopicMeta)> {
        self.catalog.borrow().topics.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The log of a partition owned by this shard.
    pub fn log(&self, topic: &str, partition: i32) -> Option<Rc<PartitionLog>> {
        self.logs.borrow().get(&(topic.to_string(), partition)).cloned()
    }

    pub fn logs(&self) -> Vec<Rc<PartitionLog>> {
        self.logs.borrow().values().cloned().collect()
    }

    /// Creates a topic durably: logs first, then the catalog entry.
    pub async fn create_topic(&self, name: &str, partitions: i32, configs: BTreeMap<String, String>, validate_only: bool) -> Result<TopicMeta, TopicOpError> {
        catalog::validate_topic_name(name)?;
        if !(1..=catalog::MAX_PARTITIONS).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(partitions).into());
        }
        let mut probe = self.config.log.clone();
        for (k, v) in &configs {
            catalog::apply_config(&mut probe, k, v)?;
        }
        let _permit = self.catalog_change.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        if self.catalog.borrow().topics.contains_key(name) {
            return Err(TopicOpError::AlreadyExists(name.to_string()));
        }
        let meta = TopicMeta { id: uuid::Uuid::new_v4(), partitions, configs };
        if validate_only {
            return Ok(meta);
        }
        self.open_partitions(name, &meta).await?;
        let mut next = self.catalog.borrow().clone();
        next.topics.insert(name.to_string(), meta.clone());
        let dir = self.config.data_dir.clone();
        let stored = next.clone();
        segment::blocking(move || stored.store(&dir)).await?;
        *self.catalog.borrow_mut() = next;
        tracing::info!(topic = name, partitions, "created topic");
        Ok(meta)
    }

    /// The topic, created with the default partition count when auto-creation is on.
    pub async fn ensure_topic(&self, name: &str) -> Option<TopicMeta> {
        if let Some(meta) = self.topic(name) {
            return Some(meta);
        }
        if !self.config.auto_create_topics {
            return None;
        }
        match self.create_topic(name, self.config.default_partitions, BTreeMap::new(), false).await {
            Ok(meta) => Some(meta),
            Err(TopicOpError::AlreadyExists(_)) => self.topic(name),
            Err(e) => {
                tracing::warn!(topic = name, error = %e, "auto-creating topic failed");
                None
            }
        }
    }

    /// Deletes a topic: catalog entry first (durably), then its logs and files.
    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicOpError> {
        let _permit = self.catalog_change.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        let mut next = self.catalog.borrow().clone();
        if next.topics.remove(name).is_none() {
            return Err(TopicOpError::Unknown(name.to_string()));
        }
        let dir = self.config.data_dir.clone();
        let stored = next.clone();
        segment::blocking(move || stored.store(&dir)).await?;
        *self.catalog.borrow_mut() = next;
        let logs: Vec<Rc<PartitionLog>> = {
            let mut all = self.logs.borrow_mut();
            let keys: Vec<_> = all.keys().filter(|(t, _)| t == name).cloned().collect();
            keys.into_iter().filter_map(|k| all.remove(&k)).collect()
        };
        for log in logs {
            log.close().await;
        }
        let topic_dir = self.topics_dir().join(name);
        segment::blocking(move || std::fs::remove_dir_all(&topic_dir))
            .await
            .map_err(|e| StorageError::io(format!("remove topic {name}"), e))?;
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Commits what is queued and closes every log.
    pub async fn shutdown(&self) {
        self.stopping.set(true);
        for log in self.logs() {
            log.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_of_is_stable_and_in_range() {
        for n in 1..8 {
            for p in 0..64 {
                let s = shard_of("orders", p, n);
                assert!(s < n);
                assert_eq!(s, shard_of("orders", p, n));
            }
        }
        assert_eq!(shard_of("t", 3, 1), 0);
    }

    #[test]
    fn shard_of_spreads_a_topics_partitions_over_shards() {
        let owners: std::collections::HashSet<usize> = (0..8).map(|p| shard_of("orders", p, 2)).collect();
        assert_eq!(owners.len(), 2);
    }
}
