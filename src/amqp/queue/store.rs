//! Where a queue's messages live: a durable queue in a log of its own (the
//! same `PartitionLog` topics use: segment files, group commit, recovery),
//! with a second small log for its settle journal; a transient queue in
//! memory, within the shard's budget for memory queues.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use crate::storage::log::AckWait;
use crate::storage::{LogConfig, PartitionLog, StorageError};

/// Why a message was not taken.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("memory for transient queues on this shard is full ({used_bytes} of {max_bytes} bytes)")]
    MemoryFull { used_bytes: usize, max_bytes: usize },
    #[error("message {offset} is not in the queue")]
    Missing { offset: i64 },
}

/// Bytes held by this shard's memory queues, against a limit.
#[derive(Debug)]
pub struct MemoryBudget {
    pub used_bytes: Cell<usize>,
    pub max_bytes: usize,
}

/// A transient queue's messages: offset `base + i` is `items[i]`, `None`
/// once it was settled but an older one is still held.
pub struct MemStore {
    base: i64,
    items: VecDeque<Option<Bytes>>,
    budget: Rc<MemoryBudget>,
}

impl Drop for MemStore {
    fn drop(&mut self) {
        let held: usize = self.items.iter().flatten().map(Bytes::len).sum();
        self.budget.used_bytes.set(self.budget.used_bytes.get().saturating_sub(held));
    }
}

pub enum Store {
    Log { messages: Rc<PartitionLog>, journal: Rc<PartitionLog>, dir: PathBuf },
    Memory(RefCell<MemStore>),
}

/// Directories of a durable queue's two logs.
pub fn messages_dir(queue_dir: &Path) -> PathBuf {
    queue_dir.join("messages")
}

pub fn journal_dir(queue_dir: &Path) -> PathBuf {
    queue_dir.join("settled")
}

impl Store {
    /// Opens (recovering) or creates a durable queue's logs under `dir`.
    pub async fn open_log(
        dir: &Path,
        name: &str,
        messages: LogConfig,
        journal: LogConfig,
    ) -> Result<Store, StoreError> {
        let m = PartitionLog::open(messages_dir(dir), name.to_string(), 0, messages).await?;
        let j = match PartitionLog::open(journal_dir(dir), name.to_string(), 1, journal).await {
            Ok(j) => j,
            Err(e) => {
                m.close().await;
                return Err(e.into());
            }
        };
        Ok(Store::Log { messages: m, journal: j, dir: dir.to_path_buf() })
    }

    pub fn memory(budget: Rc<MemoryBudget>) -> Store {
        Store::Memory(RefCell::new(MemStore { base: 0, items: VecDeque::new(), budget }))
    }

    pub fn is_durable(&self) -> bool {
        matches!(self, Store::Log { .. })
    }

    /// First offset still held.
    pub fn start(&self) -> i64 {
        match self {
            Store::Log { messages, .. } => messages.offsets().log_start_offset,
            Store::Memory(m) => m.borrow().base,
        }
    }

    /// End of what may be delivered: durable (log) or held (memory).
    pub fn visible_end(&self) -> i64 {
        match self {
            Store::Log { messages, .. } => messages.high_watermark(),
            Store::Memory(m) => {
                let m = m.borrow();
                m.base + m.items.len() as i64
            }
        }
    }

    /// Appends one message batch; with `durable`, returns once it is on disk.
    pub async fn append(&self, mut batch: BytesMut, durable: bool) -> Result<i64, StoreError> {
        match self {
            Store::Log { messages, .. } => {
                let wait = if durable { AckWait::Commit } else { AckWait::None };
                Ok(messages.append(batch, wait).await?.base_offset)
            }
            Store::Memory(m) => {
                let mut m = m.borrow_mut();
                let budget = m.budget.clone();
                let used = budget.used_bytes.get();
                if used + batch.len() > budget.max_bytes {
                    return Err(StoreError::MemoryFull { used_bytes: used, max_bytes: budget.max_bytes });
                }
                let offset = m.base + m.items.len() as i64;
                crate::storage::batch::patch_base_offset(&mut batch, offset, 0);
                budget.used_bytes.set(used + batch.len());
                m.items.push_back(Some(batch.freeze()));
                Ok(offset)
            }
        }
    }

    /// The stored batch of the message at `offset`.
    pub fn read(&self, offset: i64) -> Result<Bytes, StoreError> {
        match self {
            Store::Log { messages, .. } => {
                let r = messages.read(offset, 1)?;
                let first = r.records.into_iter().next().ok_or(StoreError::Missing { offset })?;
                // One record per batch: the batch holding `offset` starts there.
                let base = first.get(0..8).and_then(|b| b.try_into().ok()).map(i64::from_be_bytes);
                if base != Some(offset) {
                    return Err(StoreError::Missing { offset });
                }
                Ok(first)
            }
            Store::Memory(m) => {
                let m = m.borrow();
                let i = usize::try_from(offset - m.base).map_err(|_| StoreError::Missing { offset })?;
                m.items.get(i).and_then(Clone::clone).ok_or(StoreError::Missing { offset })
            }
        }
    }

    /// Drops whole segments below `head` (every message there settled).
    /// A memory store releases messages as they settle instead (`release`).
    pub async fn trim(&self, head: i64) -> Result<(), StoreError> {
        if let Store::Log { messages, .. } = self {
            if head > messages.offsets().log_start_offset {
                messages.delete_records(head).await?;
            }
        }
        Ok(())
    }

    /// Lets a memory store free settled messages (a log keeps them until
    /// their segment goes, see `trim`).
    pub fn release(&self, settled: &[std::ops::Range<i64>]) {
        let Store::Memory(m) = self else { return };
        let mut m = m.borrow_mut();
        let mut freed = 0;
        for r in settled {
            for o in r.clone() {
                let Ok(i) = usize::try_from(o - m.base) else { continue };
                if let Some(item) = m.items.get_mut(i) {
                    freed += item.take().map_or(0, |b| b.len());
                }
            }
        }
        while m.items.front().is_some_and(Option::is_none) {
            m.items.pop_front();
            m.base += 1;
        }
        m.budget.used_bytes.set(m.budget.used_bytes.get().saturating_sub(freed));
    }

    /// Closes the logs (a memory store just drops).
    pub async fn close(&self) {
        if let Store::Log { messages, journal, .. } = self {
            messages.close().await;
            journal.close().await;
        }
    }

    pub fn dir(&self) -> Option<&Path> {
        match self {
            Store::Log { dir, .. } => Some(dir),
            Store::Memory(_) => None,
        }
    }

    pub fn journal(&self) -> Option<&Rc<PartitionLog>> {
        match self {
            Store::Log { journal, .. } => Some(journal),
            Store::Memory(_) => None,
        }
    }

    pub fn messages_log(&self) -> Option<&Rc<PartitionLog>> {
        match self {
            Store::Log { messages, .. } => Some(messages),
            Store::Memory(_) => None,
        }
    }
}
