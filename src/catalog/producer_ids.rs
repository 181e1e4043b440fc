//! Producer ids for InitProducerId, unique across shards and restarts.
//!
//! Scheme (Kafka's block allocator): the catalog shard (0) owns the counter
//! `next_block`, persisted in `<data-dir>/producer_ids`. A shard that needs ids
//! asks shard 0 (over the mesh) for a block of `BLOCK_SIZE` ids; shard 0
//! writes the block's end as the new `next_block` durably (temporary file,
//! fsync, rename, fsync of the directory) BEFORE it hands the block out, and
//! serialises these reservations. So:
//! - two blocks never overlap: each starts at the durable end of the previous;
//! - after a restart (clean or SIGKILL) allocation resumes at the persisted
//!   end, which is past every id ever handed out (the ids left unused in the
//!   blocks shards held are skipped, never reused);
//! - a shard only hands out ids from a block it was given, one at a time, on
//!   its own thread.
//!
//! File format: one line `next_block=<n> crc32c=<hex of crc32c("<n>")>`.
//! A missing file means a data dir from before producer ids: start at 0. A
//! damaged one stops the start-up (like a damaged catalog) rather than risk
//! handing out ids twice.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::path::{Path, PathBuf};

use glommio::sync::Semaphore;

pub const PRODUCER_IDS_FILE_NAME: &str = "producer_ids";
/// Ids per block handed to a shard (Kafka also uses 1000).
pub const BLOCK_SIZE: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("producer id file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("producer ids exhausted")]
    Exhausted,
    #[error("the catalog shard is not answering (stopping?)")]
    ShardGone,
    #[error("producer id allocation is only done on the catalog shard")]
    NotOwner,
}

/// Start-up failures read as catalog failures (same file family, same handling).
impl From<ProducerIdError> for super::CatalogError {
    fn from(e: ProducerIdError) -> super::CatalogError {
        match e {
            ProducerIdError::Io { context, source } => super::CatalogError::Io { context, source },
            ProducerIdError::Corrupt { path, reason } => super::CatalogError::Corrupt { path, reason },
            other => super::CatalogError::Io {
                context: "producer ids".into(),
                source: std::io::Error::other(other.to_string()),
            },
        }
    }
}

/// Ids `[first, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdBlock {
    pub first: i64,
    pub end: i64,
}

/// The persisted counter (catalog shard only).
#[derive(Debug)]
pub struct ProducerIdStore {
    dir: PathBuf,
    next_block: i64,
}

fn file_line(next_block: i64) -> String {
    let n = next_block.to_string();
    format!("next_block={n} crc32c={:08x}\n", crc32c::crc32c(n.as_bytes()))
}

impl ProducerIdStore {
    /// Reads `<data_dir>/producer_ids` (blocking; used at start-up).
    pub fn load(data_dir: &Path) -> Result<ProducerIdStore, ProducerIdError> {
        let path = data_dir.join(PRODUCER_IDS_FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ProducerIdStore { dir: data_dir.to_path_buf(), next_block: 0 })
            }
            Err(source) => return Err(ProducerIdError::Io { context: format!("read {}", path.display()), source }),
        };
        let corrupt = |reason: &str| ProducerIdError::Corrupt { path: path.clone(), reason: reason.to_string() };
        let line = text.trim_end();
        let (n, crc) = line
            .strip_prefix("next_block=")
            .and_then(|rest| rest.split_once(" crc32c="))
            .ok_or_else(|| corrupt("expected `next_block=<n> crc32c=<hex>`"))?;
        let crc = u32::from_str_radix(crc, 16).map_err(|_| corrupt("bad checksum field"))?;
        if crc32c::crc32c(n.as_bytes()) != crc {
            return Err(corrupt("checksum mismatch"));
        }
        let next_block: i64 = n.parse().map_err(|_| corrupt("bad number"))?;
        if next_block < 0 {
            return Err(corrupt("negative counter"));
        }
        Ok(ProducerIdStore { dir: data_dir.to_path_buf(), next_block })
    }

    pub fn next_block(&self) -> i64 {
        self.next_block
    }

    /// The next block and the counter to persist before handing it out.
    pub fn plan(&self) -> Result<(IdBlock, i64), ProducerIdError> {
        let end = self.next_block.checked_add(BLOCK_SIZE).ok_or(ProducerIdError::Exhausted)?;
        Ok((IdBlock { first: self.next_block, end }, end))
    }

    /// Makes `next_block` durable (blocking: run it on a helper thread).
    pub fn persist(dir: &Path, next_block: i64) -> Result<(), ProducerIdError> {
        let io = |context: String| move |source| ProducerIdError::Io { context, source };
        let path = dir.join(PRODUCER_IDS_FILE_NAME);
        let tmp = dir.join(format!("{PRODUCER_IDS_FILE_NAME}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(io(format!("create {}", tmp.display())))?;
        f.write_all(file_line(next_block).as_bytes()).map_err(io(format!("write {}", tmp.display())))?;
        f.sync_all().map_err(io(format!("fsync {}", tmp.display())))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(io(format!("rename to {}", path.display())))?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(format!("fsync dir {}", dir.display())))?;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn set_next_block(&mut self, next_block: i64) {
        self.next_block = next_block;
    }
}

/// One shard's producer-id state.
pub struct ShardProducerIds {
    /// Ids this shard hands out next: `[first, end)`.
    block: Cell<IdBlock>,
    /// Every id below this was handed out by some shard (for KIP-360 bumps).
    known_end: Cell<i64>,
    /// Serialises this shard's block requests.
    pub(crate) fetching: Semaphore,
    /// The persisted counter, on the catalog shard.
    pub(crate) store: Option<RefCell<ProducerIdStore>>,
    /// Serialises reservations on the catalog shard.
    pub(crate) storing: Semaphore,
}

impl ShardProducerIds {
    pub fn new(store: Option<ProducerIdStore>) -> ShardProducerIds {
        let known_end = store.as_ref().map_or(0, |s| s.next_block());
        ShardProducerIds {
            block: Cell::new(IdBlock { first: 0, end: 0 }),
            known_end: Cell::new(known_end),
            fetching: Semaphore::new(1),
            store: store.map(RefCell::new),
            storing: Semaphore::new(1),
        }
    }

    /// The next id of the current block, if any is left.
    pub fn take(&self) -> Option<i64> {
        let b = self.block.get();
        if b.first >= b.end {
            return None;
        }
        self.block.set(IdBlock { first: b.first + 1, end: b.end });
        Some(b.first)
    }

    pub fn install(&self, block: IdBlock) {
        self.block.set(block);
        self.note_allocated(block.end);
    }

    pub fn note_allocated(&self, end: i64) {
        self.known_end.set(self.known_end.get().max(end));
    }

    /// True if `id` is known to have been handed out by this broker.
    pub fn was_allocated(&self, id: i64) -> bool {
        (0..self.known_end.get()).contains(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_survives_a_reload_and_blocks_do_not_overlap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ProducerIdStore::load(dir.path()).expect("load empty");
        let (a, next) = store.plan().expect("plan");
        ProducerIdStore::persist(dir.path(), next).expect("persist");
        let store = ProducerIdStore::load(dir.path()).expect("reload");
        let (b, _) = store.plan().expect("plan");
        assert_eq!((a.first, a.end, b.first), (0, BLOCK_SIZE, BLOCK_SIZE));
    }

    #[test]
    fn damaged_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(PRODUCER_IDS_FILE_NAME), "next_block=5000 crc32c=00000000\n").expect("write");
        assert!(matches!(ProducerIdStore::load(dir.path()), Err(ProducerIdError::Corrupt { .. })));
    }
}
