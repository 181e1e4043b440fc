//! The topic catalog seen from a shard, and its changes. Shard 0
//! (`CATALOG_SHARD`) owns the catalog and every change to it: the change is
//! made durable first, then every shard opens or closes its partitions and
//! shows the new entry, then the change is answered. Other shards keep a
//! read-only snapshot and route changes to shard 0. Producer ids are handed
//! out the same way (blocks reserved durably by shard 0).

use std::collections::BTreeMap;
use std::rc::Rc;

use super::mesh::{CatalogMsg, ShardMsg};
use super::shard::{Shard, TopicOpError, CATALOG_SHARD};
use crate::catalog::producer_ids::{IdBlock, ProducerIdError, ProducerIdStore};
use crate::catalog::{self, Catalog, TopicError, TopicMeta, TopicUpdate};
use crate::storage::{segment, PartitionLog, StorageError};

impl Shard {
    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.catalog.borrow().topics.get(name).cloned()
    }

    pub fn topics(&self) -> Vec<(String, TopicMeta)> {
        self.catalog.borrow().topics.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Serves a catalog message from another shard.
    pub(super) async fn serve_catalog_msg(&self, msg: CatalogMsg) {
        match msg {
            CatalogMsg::CreateTopic { name, partitions, configs, validate_only, reply } => {
                self.answer(reply, self.create_topic(&name, partitions, configs, validate_only).await).await
            }
            CatalogMsg::DeleteTopic { name, reply } => self.answer(reply, self.delete_topic(&name).await).await,
            CatalogMsg::UpdateTopic { name, update, validate_only, reply } => {
                self.answer(reply, self.update_topic(&name, update, validate_only).await).await
            }
            CatalogMsg::TopicCreated { name, meta, reply } => {
                self.answer(reply, self.apply_created(&name, &meta).await).await
            }
            CatalogMsg::TopicDeleted { name, reply } => {
                self.apply_deleted(&name).await;
                self.answer(reply, ()).await
            }
            CatalogMsg::TopicChanged { name, meta, reply } => {
                self.answer(reply, self.apply_changed(&name, &meta).await).await
            }
            CatalogMsg::AllocateProducerIds { reply } => self.answer(reply, self.reserve_producer_ids().await).await,
        }
    }

    /// Creates a topic (on the catalog shard, wherever it is asked).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicMeta, TopicOpError> {
        catalog::validate_topic_name(name)?;
        if !(1..=catalog::MAX_PARTITIONS).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(partitions).into());
        }
        let mut probe = self.config.log.clone();
        for (k, v) in &configs {
            catalog::apply_config(&mut probe, k, v)?;
        }
        self.route(
            CATALOG_SHARD,
            configs,
            |configs| self.create_topic_here(name, partitions, configs, validate_only),
            |configs, reply| {
                ShardMsg::Catalog(CatalogMsg::CreateTopic {
                    name: name.to_string(),
                    partitions,
                    configs,
                    validate_only,
                    reply,
                })
            },
        )
        .await
        .unwrap_or(Err(TopicOpError::ShardGone(CATALOG_SHARD)))
    }

    async fn create_topic_here(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicMeta, TopicOpError> {
        assert_eq!(self.id, CATALOG_SHARD, "only the catalog shard changes the catalog");
        let _permit = self.catalog_change.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        if self.catalog.borrow().topics.contains_key(name) {
            return Err(TopicOpError::AlreadyExists(name.to_string()));
        }
        let meta = TopicMeta { id: uuid::Uuid::new_v4(), partitions, configs };
        if validate_only {
            return Ok(meta);
        }
        let mut next = self.catalog.borrow().clone();
        next.topics.insert(name.to_string(), meta.clone());
        self.store_catalog(next).await?;
        self.apply_created(name, &meta).await?;
        for peer in (0..self.count).filter(|&p| p != self.id) {
            let (n, m) = (name.to_string(), meta.clone());
            self.ask(peer, |reply| ShardMsg::Catalog(CatalogMsg::TopicCreated { name: n, meta: m, reply }))
                .await
                .unwrap_or(Err(TopicOpError::ShardGone(peer)))?;
        }
        tracing::info!(topic = name, partitions, "created topic");
        Ok(meta)
    }

    async fn store_catalog(&self, next: Catalog) -> Result<(), TopicOpError> {
        let dir = self.config.data_dir.clone();
        segment::blocking(move || next.store(&dir).map(|_| next)).await.map(|stored| {
            *self.catalog.borrow_mut() = stored;
        })?;
        Ok(())
    }

    async fn apply_created(&self, name: &str, meta: &TopicMeta) -> Result<(), TopicOpError> {
        self.open_partitions(name, meta).await?;
        self.catalog.borrow_mut().topics.insert(name.to_string(), meta.clone());
        Ok(())
    }

    async fn apply_deleted(&self, name: &str) {
        self.catalog.borrow_mut().topics.remove(name);
        let logs: Vec<Rc<PartitionLog>> = self.logs.borrow_mut().remove_topic(name);
        for log in logs {
            log.close().await;
        }
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

    /// Deletes a topic: the catalog change is made durable, every shard
    /// closes its logs of the topic, then its files are removed.
    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicOpError> {
        self.route(
            CATALOG_SHARD,
            (),
            |()| self.delete_topic_here(name),
            |(), reply| ShardMsg::Catalog(CatalogMsg::DeleteTopic { name: name.to_string(), reply }),
        )
        .await
        .unwrap_or(Err(TopicOpError::ShardGone(CATALOG_SHARD)))
    }

    async fn delete_topic_here(&self, name: &str) -> Result<(), TopicOpError> {
        assert_eq!(self.id, CATALOG_SHARD, "only the catalog shard changes the catalog");
        let _permit = self.catalog_change.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        let mut next = self.catalog.borrow().clone();
        if next.topics.remove(name).is_none() {
            return Err(TopicOpError::Unknown(name.to_string()));
        }
        self.store_catalog(next).await?;
        self.apply_deleted(name).await;
        for peer in (0..self.count).filter(|&p| p != self.id) {
            let n = name.to_string();
            self.ask(peer, |reply| ShardMsg::Catalog(CatalogMsg::TopicDeleted { name: n, reply })).await;
        }
        let topic_dir = self.topics_dir().join(name);
        segment::blocking(move || std::fs::remove_dir_all(&topic_dir))
            .await
            .map_err(|e| StorageError::io(format!("remove topic {name}"), e))?;
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Changes a topic's configs or partition count: once durable, every
    /// shard takes the new entry (opening new partitions, applying configs to
    /// running logs), then the call returns.
    pub async fn update_topic(
        &self,
        name: &str,
        update: TopicUpdate,
        validate_only: bool,
    ) -> Result<TopicMeta, TopicOpError> {
        self.route(
            CATALOG_SHARD,
            update,
            |update| self.update_topic_here(name, update, validate_only),
            |update, reply| {
                ShardMsg::Catalog(CatalogMsg::UpdateTopic { name: name.to_string(), update, validate_only, reply })
            },
        )
        .await
        .unwrap_or(Err(TopicOpError::ShardGone(CATALOG_SHARD)))
    }

    async fn update_topic_here(
        &self,
        name: &str,
        update: TopicUpdate,
        validate_only: bool,
    ) -> Result<TopicMeta, TopicOpError> {
        assert_eq!(self.id, CATALOG_SHARD, "only the catalog shard changes the catalog");
        let _permit = self.catalog_change.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        let meta = self.topic(name).ok_or_else(|| TopicOpError::Unknown(name.to_string()))?;
        let next_meta = catalog::apply_update(&meta, &update, &self.config.log)?;
        if validate_only || next_meta == meta {
            return Ok(next_meta);
        }
        let mut next = self.catalog.borrow().clone();
        next.topics.insert(name.to_string(), next_meta.clone());
        self.store_catalog(next).await?;
        self.apply_changed(name, &next_meta).await?;
        for peer in (0..self.count).filter(|&p| p != self.id) {
            let (n, m) = (name.to_string(), next_meta.clone());
            self.ask(peer, |reply| ShardMsg::Catalog(CatalogMsg::TopicChanged { name: n, meta: m, reply }))
                .await
                .unwrap_or(Err(TopicOpError::ShardGone(peer)))?;
        }
        tracing::info!(topic = name, partitions = next_meta.partitions, configs = ?next_meta.configs, "changed topic");
        Ok(next_meta)
    }

    async fn apply_changed(&self, name: &str, meta: &TopicMeta) -> Result<(), TopicOpError> {
        self.open_partitions(name, meta).await?;
        let log_config = catalog::log_config(&self.config.log, meta);
        for log in self.logs.borrow().of_topic(name) {
            log.set_config(log_config.clone());
        }
        self.catalog.borrow_mut().topics.insert(name.to_string(), meta.clone());
        Ok(())
    }

    // ---- producer ids ----

    /// A producer id never handed out before, by any shard or any earlier run.
    pub async fn new_producer_id(&self) -> Result<i64, ProducerIdError> {
        if let Some(id) = self.producer_ids.take() {
            return Ok(id);
        }
        let _permit = self.producer_ids.fetching.acquire_permit(1).await.map_err(|_| ProducerIdError::ShardGone)?;
        if let Some(id) = self.producer_ids.take() {
            return Ok(id);
        }
        let block = self
            .route(
                CATALOG_SHARD,
                (),
                |()| self.reserve_producer_ids(),
                |(), reply| ShardMsg::Catalog(CatalogMsg::AllocateProducerIds { reply }),
            )
            .await
            .unwrap_or(Err(ProducerIdError::ShardGone))?;
        self.producer_ids.install(block);
        self.producer_ids.take().ok_or(ProducerIdError::Exhausted)
    }

    /// On the catalog shard: the next block of producer ids, made durable
    /// before it is returned.
    async fn reserve_producer_ids(&self) -> Result<IdBlock, ProducerIdError> {
        let store = self.producer_ids.store.as_ref().ok_or(ProducerIdError::NotOwner)?;
        let _permit = self.producer_ids.storing.acquire_permit(1).await.map_err(|_| ProducerIdError::ShardGone)?;
        let (block, next, dir) = {
            let s = store.borrow();
            let (block, next) = s.plan()?;
            (block, next, s.dir().to_path_buf())
        };
        segment::blocking(move || ProducerIdStore::persist(&dir, next)).await?;
        store.borrow_mut().set_next_block(next);
        self.producer_ids.note_allocated(next);
        tracing::debug!(first = block.first, end = block.end, "reserved a block of producer ids");
        Ok(block)
    }
}
