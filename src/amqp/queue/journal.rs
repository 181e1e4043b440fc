//! A durable queue's settle journal: its bookkeeping (what waits to be
//! written, the delivery mark wanted and durable), reading the settle state
//! back at open (the checkpoint, then the journal after it), and writing a
//! checkpoint. The task that writes records is the queue's
//! (`Queue::journal_loop`), which owns the settled set they describe.

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::path::Path;

use event_listener::Event;

use super::super::message::SingleRecord;
use super::super::settle::{Checkpoint, RangeSet, SettleRecord};
use super::store::{Store, StoreError};

pub(super) const CHECKPOINT_FILE: &str = "checkpoint";

/// Settle journal bookkeeping (durable queues).
#[derive(Default)]
pub(super) struct Journal {
    pub(super) pending: RefCell<Vec<Range<i64>>>,
    /// Mark wanted and mark durable.
    pub(super) mark_wanted: Cell<i64>,
    pub(super) mark_durable: Cell<i64>,
    pub(super) bytes_since_checkpoint: Cell<u64>,
    pub(super) work: Event,
    pub(super) flushed: Event,
    pub(super) running: Cell<bool>,
    pub(super) stopped: Event,
}

/// Writes `checkpoint` to `dir` (replaced whole, durably).
pub(super) async fn write_checkpoint(dir: &Path, checkpoint: &Checkpoint) -> Result<(), StoreError> {
    let text = checkpoint.encode();
    let path = dir.join(CHECKPOINT_FILE);
    crate::storage::segment::blocking(move || crate::durable_file::store(&path, &text).map_err(std::io::Error::other))
        .await
        .map_err(|e| StoreError::Storage(crate::storage::StorageError::io("write settle checkpoint", e)))
}

/// The settled set and delivery mark of a durable queue: its checkpoint,
/// then every journal record after it, clamped to the messages still held.
pub(super) async fn recover_settled(store: &Store) -> Result<(RangeSet, i64), StoreError> {
    let (Some(journal), Some(dir)) = (store.journal(), store.dir()) else { return Ok((RangeSet::default(), 0)) };
    let path = dir.join(CHECKPOINT_FILE);
    let shown = path.display().to_string();
    let loaded =
        crate::storage::segment::blocking(move || crate::durable_file::load(&path).map_err(std::io::Error::other))
            .await
            .map_err(|e| StoreError::Storage(crate::storage::StorageError::io(format!("read {shown}"), e)))?;
    let mut checkpoint = match loaded.as_deref().map(Checkpoint::decode) {
        Some(Some(c)) => c,
        Some(None) => {
            tracing::warn!(checkpoint = %shown, "unreadable settle checkpoint; replaying the whole journal");
            Checkpoint::default()
        }
        None => Checkpoint::default(),
    };
    let offsets = journal.offsets();
    let mut at = checkpoint.journal_offset.max(offsets.log_start_offset);
    let mut replayed = 0u64;
    while at < offsets.high_watermark {
        let read = journal.read(at, 1 << 20)?;
        if read.records.is_empty() {
            break;
        }
        for batch in &read.records {
            let record = SingleRecord::parse(batch)
                .ok()
                .and_then(|r| SettleRecord::decode(&batch[r.value.clone()]).map(|s| (r.offset, s)));
            let Some((offset, record)) = record else {
                tracing::warn!(offset = at, "unreadable settle journal record skipped");
                at += 1;
                continue;
            };
            for r in record.settled {
                checkpoint.settled.insert(r);
            }
            checkpoint.delivered_mark = checkpoint.delivered_mark.max(record.delivered_mark);
            at = offset + 1;
            replayed += 1;
        }
    }
    let start = store.start();
    let end = store.visible_end();
    checkpoint.settled.truncate_below(start);
    checkpoint.settled.truncate_at_or_above(end);
    tracing::debug!(replayed, start, end, "settle state recovered");
    Ok((checkpoint.settled, checkpoint.delivered_mark))
}
