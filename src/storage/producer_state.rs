//! Idempotent-producer state of one partition: for each producer id seen in
//! the log, its current epoch and the sequence numbers and offsets of its
//! last `MAX_BATCHES_PER_PRODUCER` batches (Kafka's `ProducerStateManager`).
//!
//! This module owns:
//! - the checks a batch carrying a producer id must pass before it gets
//!   offsets (`ProducerStateTable::check`): an older epoch is fenced
//!   (INVALID_PRODUCER_EPOCH); a newer epoch must start at sequence 0; within
//!   an epoch the base sequence must follow the last one (wrapping after
//!   `i32::MAX`), else OUT_OF_ORDER_SEQUENCE_NUMBER; a batch equal (same
//!   epoch, first and last sequence) to one of the last five is a retry and
//!   gets that batch's offsets instead of being appended again. A producer
//!   the table does not know is accepted at any sequence, as Kafka does since
//!   KIP-360 (its state may have been evicted or removed by retention).
//! - recording a batch once it has offsets (`record`), in the same
//!   synchronous section of `PartitionLog::append` as the check, so no other
//!   append of the partition can come in between;
//! - forgetting batches whose commit failed (`rollback`), so their retries are
//!   appended rather than acknowledged at offsets that were never written;
//! - rebuilding the table at start-up (`recover`): from the snapshot written
//!   at the last segment roll (`<base offset>.producers`, the state of every
//!   batch before that segment, all committed and fdatasynced by the roll)
//!   plus the headers of the batches after it in the recovered (durable) log;
//!   without a usable snapshot, from the headers of every segment. Torn tails
//!   were cut by recovery first, so only durable batches count;
//! - its bound: at most `max_producers` producers per partition; beyond that
//!   the least recently used one is forgotten (like Kafka's producer-id
//!   expiration, by use instead of time).
//!
//! The table is plain data: it knows nothing of the log. Its snapshot files
//! are read and written by the functions at the end of this module
//! (`recover`, `write_snapshot`), called by recovery and by the log's roll.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::path::Path;

use super::batch::BatchHeader;

/// Batches remembered per producer for duplicate detection (Kafka: 5, the
/// largest `max.in.flight.requests.per.connection` an idempotent producer uses).
pub const MAX_BATCHES_PER_PRODUCER: usize = 5;
/// Producers remembered per partition by default.
pub const DEFAULT_MAX_PRODUCERS: usize = 10_000;
// A snapshot stores each producer's batch count in one byte.
const _: () = assert!(MAX_BATCHES_PER_PRODUCER <= u8::MAX as usize);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error("producer {producer_id}: epoch {epoch} is older than the current epoch {current_epoch} (fenced)")]
    FencedEpoch { producer_id: i64, epoch: i16, current_epoch: i16 },
    #[error("producer {producer_id} epoch {epoch}: base sequence {found} out of order, expected {expected}")]
    OutOfOrder { producer_id: i64, epoch: i16, expected: i32, found: i32 },
    #[error("producer {producer_id}: new epoch {epoch} must start at sequence 0, got {found}")]
    NewEpochNotAtZero { producer_id: i64, epoch: i16, found: i32 },
    #[error("a produce request from an idempotent producer must hold exactly one record batch per partition, found {batches}")]
    MultipleBatches { batches: usize },
    #[error("transactional and control batches are not supported (producer {producer_id})")]
    Transactional { producer_id: i64 },
    #[error("producer {producer_id}: invalid epoch {epoch} or base sequence {base_sequence}")]
    InvalidFields { producer_id: i64, epoch: i16, base_sequence: i32 },
    #[error("producer {producer_id}: the commit of the original of this retried batch failed; retry")]
    OriginalFailed { producer_id: i64 },
}

/// The producer fields of a batch that carries a producer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
}

impl ProducerBatch {
    /// The producer fields of `h`, `None` when it carries no producer id.
    pub fn of(h: &BatchHeader) -> Result<Option<ProducerBatch>, ProducerError> {
        if h.producer_id < 0 {
            return Ok(None);
        }
        if h.producer_epoch < 0 || h.base_sequence < 0 {
            return Err(ProducerError::InvalidFields {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                base_sequence: h.base_sequence,
            });
        }
        Ok(Some(ProducerBatch {
            producer_id: h.producer_id,
            epoch: h.producer_epoch,
            first_seq: h.base_sequence,
            last_seq: add_sequence(h.base_sequence, h.last_offset_delta),
        }))
    }

    /// The producer batch of a produce request's batches: `None` when none
    /// carries a producer id; an error for idempotent requests Kafka refuses
    /// too (several batches, transactional or control batches).
    pub fn of_request(batches: &[(Range<usize>, BatchHeader)]) -> Result<Option<ProducerBatch>, ProducerError> {
        let Some((_, first)) = batches.iter().find(|(_, h)| h.producer_id >= 0) else { return Ok(None) };
        if batches.len() != 1 {
            return Err(ProducerError::MultipleBatches { batches: batches.len() });
        }
        if first.is_transactional() || first.is_control() {
            return Err(ProducerError::Transactional { producer_id: first.producer_id });
        }
        ProducerBatch::of(first)
    }
}

/// `seq + delta` wrapping from `i32::MAX` to 0, as Kafka sequences do.
pub fn add_sequence(seq: i32, delta: i32) -> i32 {
    let sum = i64::from(seq) + i64::from(delta.max(0));
    (sum % (i64::from(i32::MAX) + 1)) as i32
}

/// Offsets and sequences of one remembered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug)]
struct ProducerEntry {
    epoch: i16,
    /// Oldest first; empty once a rollback removed all of them (the entry
    /// stays, so its epoch still fences older ones).
    batches: VecDeque<BatchMeta>,
    /// Key of this entry in `by_use`.
    last_use: u64,
}

/// What to do with a batch that passed the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New: assign offsets, then `record` it.
    Append,
    /// A retry of this remembered batch: answer with its offsets.
    Duplicate(BatchMeta),
}

/// The producer table of one partition (see the module doc).
#[derive(Debug)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
    /// Use tick → producer id, oldest first (for eviction).
    by_use: BTreeMap<u64, i64>,
    tick: u64,
    max_producers: usize,
    /// Incremented by every `rollback`: a duplicate waiting for its original's
    /// commit gives up when it changes.
    rollbacks: u64,
}

impl Default for ProducerStateTable {
    fn default() -> Self {
        ProducerStateTable::new(DEFAULT_MAX_PRODUCERS)
    }
}

impl ProducerStateTable {
    pub fn new(max_producers: usize) -> ProducerStateTable {
        ProducerStateTable {
            producers: HashMap::new(),
            by_use: BTreeMap::new(),
            tick: 0,
            max_producers: max_producers.max(1),
            rollbacks: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn rollbacks(&self) -> u64 {
        self.rollbacks
    }

    /// Checks `b` against the producer's state without changing it.
    pub fn check(&self, b: &ProducerBatch) -> Result<Verdict, ProducerError> {
        let Some(entry) = self.producers.get(&b.producer_id) else {
            return Ok(Verdict::Append);
        };
        if b.epoch < entry.epoch {
            return Err(ProducerError::FencedEpoch {
                producer_id: b.producer_id,
                epoch: b.epoch,
                current_epoch: entry.epoch,
            });
        }
        if b.epoch > entry.epoch {
            if b.first_seq != 0 {
                return Err(ProducerError::NewEpochNotAtZero {
                    producer_id: b.producer_id,
                    epoch: b.epoch,
                    found: b.first_seq,
                });
            }
            return Ok(Verdict::Append);
        }
        if let Some(dup) = entry.batches.iter().find(|m| m.first_seq == b.first_seq && m.last_seq == b.last_seq) {
            return Ok(Verdict::Duplicate(*dup));
        }
        // No batch left (all rolled back): as for an unknown producer, any
        // sequence of the current epoch is accepted.
        let Some(last) = entry.batches.back().map(|m| m.last_seq) else {
            return Ok(Verdict::Append);
        };
        let expected = if last == i32::MAX { 0 } else { last + 1 };
        if b.first_seq != expected {
            return Err(ProducerError::OutOfOrder {
                producer_id: b.producer_id,
                epoch: b.epoch,
                expected,
                found: b.first_seq,
            });
        }
        Ok(Verdict::Append)
    }

    /// Records a batch that got offsets `base_offset..=last_offset`. A newer
    /// epoch replaces the producer's remembered batches.
    pub fn record(&mut self, b: &ProducerBatch, base_offset: i64, last_offset: i64) {
        self.tick += 1;
        let tick = self.tick;
        let meta = BatchMeta { first_seq: b.first_seq, last_seq: b.last_seq, base_offset, last_offset };
        if let Some(entry) = self.producers.get_mut(&b.producer_id) {
            self.by_use.remove(&entry.last_use);
            entry.last_use = tick;
            if b.epoch != entry.epoch {
                entry.epoch = b.epoch;
                entry.batches.clear();
            }
            entry.batches.push_back(meta);
            while entry.batches.len() > MAX_BATCHES_PER_PRODUCER {
                entry.batches.pop_front();
            }
            self.by_use.insert(tick, b.producer_id);
            return;
        }
        while self.producers.len() >= self.max_producers {
            let Some((_, oldest)) = self.by_use.pop_first() else { break };
            self.producers.remove(&oldest);
            tracing::debug!(producer_id = oldest, "producer table full: forgot the least recently used producer");
        }
        self.producers
            .insert(b.producer_id, ProducerEntry { epoch: b.epoch, batches: VecDeque::from([meta]), last_use: tick });
        self.by_use.insert(tick, b.producer_id);
    }

    /// Forgets every remembered batch at or after `from_offset` (their commit
    /// failed and the log end went back to `from_offset`). A producer left
    /// with no batch keeps its entry and epoch: a zombie on an older epoch is
    /// still fenced.
    pub fn rollback(&mut self, from_offset: i64) {
        self.rollbacks += 1;
        for entry in self.producers.values_mut() {
            while entry.batches.back().is_some_and(|m| m.last_offset >= from_offset) {
                entry.batches.pop_back();
            }
        }
    }

    /// Rebuilds the table from the batches of `segments` (each a segment's
    /// valid bytes, oldest segment first). Only headers are read; the bytes
    /// were validated by recovery (active segment) or at seal time.
    pub fn rebuild<'a>(segments: impl IntoIterator<Item = &'a [u8]>, max_producers: usize) -> ProducerStateTable {
        let mut table = ProducerStateTable::new(max_producers);
        for data in segments {
            table.scan_into(data);
        }
        table
    }

    /// Records every producer batch of one segment's bytes.
    fn scan_into(&mut self, data: &[u8]) {
        let mut pos = 0usize;
        while let Some(rest) = data.get(pos..) {
            let Ok(h) = BatchHeader::parse(rest) else { break };
            if h.batch_length <= 0 || rest.len() < h.total_bytes() {
                break;
            }
            if let Ok(Some(b)) = ProducerBatch::of(&h) {
                self.record(&b, h.base_offset, h.last_offset());
            }
            pos += h.total_bytes();
        }
    }

    /// The remembered batches that end before `offset`, as snapshot bytes:
    /// crc32c (of the rest) u32, producer count u32, then per producer, least
    /// recently used first: id i64, epoch i16, batch count u8, and per batch
    /// first and last sequence (i32) and base and last offset (i64). Big-endian.
    pub fn encode_snapshot(&self, offset: i64) -> Vec<u8> {
        let mut entries: Vec<(i64, &ProducerEntry)> = self.producers.iter().map(|(&id, e)| (id, e)).collect();
        entries.sort_by_key(|(_, e)| e.last_use);
        let mut body = Vec::with_capacity(4 + entries.len() * 64);
        let mut count = 0u32;
        body.extend_from_slice(&0u32.to_be_bytes());
        for (id, e) in entries {
            let batches: Vec<&BatchMeta> = e.batches.iter().filter(|m| m.last_offset < offset).collect();
            if batches.is_empty() {
                continue;
            }
            count += 1;
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.push(batches.len() as u8);
            for m in batches {
                body.extend_from_slice(&m.first_seq.to_be_bytes());
                body.extend_from_slice(&m.last_seq.to_be_bytes());
                body.extend_from_slice(&m.base_offset.to_be_bytes());
                body.extend_from_slice(&m.last_offset.to_be_bytes());
            }
        }
        body[..4].copy_from_slice(&count.to_be_bytes());
        let mut out = crc32c::crc32c(&body).to_be_bytes().to_vec();
        out.extend_from_slice(&body);
        out
    }

    /// Reads `encode_snapshot` bytes; `None` if they are damaged.
    pub fn decode_snapshot(bytes: &[u8], max_producers: usize) -> Option<ProducerStateTable> {
        let (crc, body) = bytes.split_first_chunk::<4>()?;
        if crc32c::crc32c(body) != u32::from_be_bytes(*crc) {
            return None;
        }
        let mut r = Reader(body);
        let count = r.u32()?;
        let mut table = ProducerStateTable::new(max_producers);
        for _ in 0..count {
            let producer_id = r.i64()?;
            let epoch = r.i16()?;
            let batches = r.u8()?;
            if producer_id < 0 || epoch < 0 || usize::from(batches) > MAX_BATCHES_PER_PRODUCER {
                return None;
            }
            for _ in 0..batches {
                let (first_seq, last_seq, base_offset, last_offset) = (r.i32()?, r.i32()?, r.i64()?, r.i64()?);
                table.record(&ProducerBatch { producer_id, epoch, first_seq, last_seq }, base_offset, last_offset);
            }
        }
        r.0.is_empty().then_some(table)
    }
}

/// A cursor over snapshot bytes.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}

// --- Snapshot files (blocking I/O; the table above does none) ---

/// `<base offset, 20 digits>.producers`: the producer state before that
/// segment, written when the log rolled to it.
pub fn snapshot_file_name(offset: i64) -> String {
    format!("{offset:020}.producers")
}

fn parse_snapshot_file_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".producers")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Snapshot offsets present in `dir`, newest first.
fn snapshots_in(dir: &Path) -> Vec<i64> {
    let mut found: Vec<i64> = std::fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().filter_map(|e| parse_snapshot_file_name(&e.file_name().to_string_lossy())).collect()
        })
        .unwrap_or_default();
    found.sort_unstable_by(|a, b| b.cmp(a));
    found
}

/// Deletes the snapshots whose write a crash cut short.
fn remove_torn_snapshots(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".producers.tmp")) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The table of a partition being opened, whose segments are `segments`
/// (base offset and valid bytes, oldest first, the active one last): from
/// the newest readable snapshot taken at one of their bases, plus the
/// segments from that base on; without one, from every segment. Blocking
/// reads, like the rest of recovery.
pub(crate) fn recover(dir: &Path, segments: &[(i64, &[u8])], max_producers: usize) -> ProducerStateTable {
    remove_torn_snapshots(dir);
    for offset in snapshots_in(dir) {
        let Some(from) = segments.iter().position(|&(base, _)| base == offset) else { continue };
        let path = dir.join(snapshot_file_name(offset));
        let Some(mut table) =
            std::fs::read(&path).ok().and_then(|b| ProducerStateTable::decode_snapshot(&b, max_producers))
        else {
            tracing::warn!(snapshot = %path.display(), "producer state snapshot unreadable; trying an older one");
            continue;
        };
        for &(_, data) in &segments[from..] {
            table.scan_into(data);
        }
        return table;
    }
    ProducerStateTable::rebuild(segments.iter().map(|&(_, data)| data), max_producers)
}

/// Snapshots kept per partition (the newest, and one in case it is damaged).
const SNAPSHOTS_KEPT: usize = 2;

/// Writes `bytes` (`encode_snapshot` at `base_offset`) as the snapshot at
/// `base_offset` (through a temporary file and a rename) and removes all but
/// the newest `SNAPSHOTS_KEPT` snapshots. Blocking: run it on a helper
/// thread. Not fsynced: a snapshot lost in a crash only makes the next start
/// scan more of the log.
pub(crate) fn write_snapshot(dir: &Path, base_offset: i64, bytes: &[u8]) -> std::io::Result<()> {
    let path = dir.join(snapshot_file_name(base_offset));
    let tmp = dir.join(format!("{}.tmp", snapshot_file_name(base_offset)));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &path)?;
    for old in snapshots_in(dir).into_iter().skip(SNAPSHOTS_KEPT) {
        let _ = std::fs::remove_file(dir.join(snapshot_file_name(old)));
    }
    Ok(())
}
#[cfg(test)]
mod tests {
    use super::*;

    fn b(producer_id: i64, epoch: i16, first_seq: i32, records: i32) -> ProducerBatch {
        ProducerBatch { producer_id, epoch, first_seq, last_seq: add_sequence(first_seq, records - 1) }
    }

    /// Checks and records like `PartitionLog::append` does; returns the base offset given.
    fn append(t: &mut ProducerStateTable, end: &mut i64, batch: ProducerBatch) -> Result<i64, ProducerError> {
        match t.check(&batch)? {
            Verdict::Duplicate(m) => Ok(m.base_offset),
            Verdict::Append => {
                let base = *end;
                let count = i64::from(batch.last_seq.wrapping_sub(batch.first_seq)) + 1;
                *end += count;
                t.record(&batch, base, *end - 1);
                Ok(base)
            }
        }
    }

    #[test]
    fn retry_of_any_of_the_last_five_batches_gets_its_original_offset() {
        let (mut t, mut end) = (ProducerStateTable::default(), 0);
        let bases: Vec<i64> = (0..6).map(|i| append(&mut t, &mut end, b(7, 0, i * 2, 2)).unwrap()).collect();
        assert_eq!(bases, vec![0, 2, 4, 6, 8, 10]);
        assert_eq!(
            t.check(&b(7, 0, 2, 2)),
            Ok(Verdict::Duplicate(BatchMeta { first_seq: 2, last_seq: 3, base_offset: 2, last_offset: 3 }))
        );
        // The first batch fell out of the window: no longer recognised.
        assert!(matches!(t.check(&b(7, 0, 0, 2)), Err(ProducerError::OutOfOrder { expected: 12, found: 0, .. })));
    }

    #[test]
    fn gap_older_epoch_and_new_epoch_rules() {
        let (mut t, mut end) = (ProducerStateTable::default(), 0);
        append(&mut t, &mut end, b(1, 3, 0, 5)).unwrap();
        assert!(matches!(t.check(&b(1, 3, 6, 1)), Err(ProducerError::OutOfOrder { expected: 5, found: 6, .. })));
        assert!(matches!(t.check(&b(1, 2, 5, 1)), Err(ProducerError::FencedEpoch { current_epoch: 3, .. })));
        assert!(matches!(t.check(&b(1, 4, 5, 1)), Err(ProducerError::NewEpochNotAtZero { .. })));
        assert_eq!(t.check(&b(1, 4, 0, 1)), Ok(Verdict::Append));
        // Unknown producers are accepted at any sequence (KIP-360).
        assert_eq!(t.check(&b(2, 0, 42, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        let (mut t, mut end) = (ProducerStateTable::default(), 0);
        append(&mut t, &mut end, b(1, 0, i32::MAX - 1, 2)).unwrap();
        assert_eq!(t.check(&b(1, 0, 0, 1)), Ok(Verdict::Append));
        assert_eq!(add_sequence(i32::MAX - 1, 3), 1);
    }

    #[test]
    fn rollback_forgets_failed_batches_so_their_retry_is_appended() {
        let (mut t, mut end) = (ProducerStateTable::default(), 0);
        append(&mut t, &mut end, b(1, 0, 0, 2)).unwrap();
        append(&mut t, &mut end, b(1, 0, 2, 2)).unwrap();
        append(&mut t, &mut end, b(9, 0, 0, 1)).unwrap();
        t.rollback(2);
        end = 2;
        assert_eq!(append(&mut t, &mut end, b(1, 0, 2, 2)), Ok(2));
        // Producer 9 had only the failed batch: its retry is appended.
        assert_eq!(append(&mut t, &mut end, b(9, 0, 0, 1)), Ok(4));
    }

    #[test]
    fn rollback_of_all_batches_keeps_the_epoch_fencing_older_ones() {
        let (mut t, mut end) = (ProducerStateTable::default(), 0);
        append(&mut t, &mut end, b(9, 3, 0, 2)).unwrap();
        t.rollback(0);
        assert!(
            matches!(t.check(&b(9, 2, 0, 1)), Err(ProducerError::FencedEpoch { current_epoch: 3, .. })),
            "a zombie on epoch 2 must stay fenced"
        );
        // The current epoch's retry (at whatever sequence) is appended again.
        assert_eq!(t.check(&b(9, 3, 0, 2)), Ok(Verdict::Append));
        assert_eq!(t.check(&b(9, 3, 5, 1)), Ok(Verdict::Append));
        assert!(matches!(t.check(&b(9, 4, 1, 1)), Err(ProducerError::NewEpochNotAtZero { .. })));
    }

    #[test]
    fn snapshot_keeps_the_batches_before_its_offset() {
        let (mut t, mut end) = (ProducerStateTable::default(), 0);
        append(&mut t, &mut end, b(1, 2, 0, 3)).unwrap();
        append(&mut t, &mut end, b(2, 0, 0, 1)).unwrap();
        append(&mut t, &mut end, b(1, 2, 3, 2)).unwrap();
        let bytes = t.encode_snapshot(4);
        let back = ProducerStateTable::decode_snapshot(&bytes, 100).expect("decode");
        assert_eq!(back.len(), 2);
        assert!(matches!(back.check(&b(1, 2, 0, 3)), Ok(Verdict::Duplicate(BatchMeta { base_offset: 0, .. }))));
        assert_eq!(back.check(&b(1, 2, 3, 2)), Ok(Verdict::Append), "the batch at offset 4 is not in the snapshot");
        let mut damaged = bytes.clone();
        damaged[6] ^= 1;
        assert!(ProducerStateTable::decode_snapshot(&damaged, 100).is_none());
        assert!(ProducerStateTable::decode_snapshot(&bytes[..bytes.len() - 1], 100).is_none());
    }

    #[test]
    fn least_recently_used_producer_is_evicted_beyond_the_cap() {
        let (mut t, mut end) = (ProducerStateTable::new(2), 0);
        append(&mut t, &mut end, b(1, 0, 0, 1)).unwrap();
        append(&mut t, &mut end, b(2, 0, 0, 1)).unwrap();
        append(&mut t, &mut end, b(1, 0, 1, 1)).unwrap();
        append(&mut t, &mut end, b(3, 0, 0, 1)).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.check(&b(2, 0, 0, 1)), Ok(Verdict::Append), "producer 2 was forgotten");
        assert!(matches!(t.check(&b(1, 0, 0, 1)), Ok(Verdict::Duplicate(_))));
    }
}
