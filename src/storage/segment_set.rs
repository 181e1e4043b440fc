//! The segment set of one partition: its sealed segments, the active one,
//! the file prepared to follow it, the count of recycled files, and the
//! placement of queued batches into segments (which batch starts the next
//! one). This module owns those fields: everything that changes them is a
//! method here, except the active segment's durable end and indexes, which
//! only the appender's complete step moves (`LogState::complete_write` lends
//! it the active segment). Each method asserts what it keeps true:
//!
//! - sealed segments are in offset order, each ending where the next begins,
//!   the last where the active segment begins;
//! - the active segment's durable end lies within its file;
//! - the bytes queued for the segment being filled fit the file they go to.
//!
//! A roll (see `PartitionLog::roll`) is `seal_work` and
//! `segment::write_sealed` (the old segment's file work), `prepared_fitting`
//! (take the prepared file, big enough for what is queued),
//! `segment::install_prepared` and `segment::open_installed` (the new file),
//! then `rotate`: the state change, with no await inside. Retention and
//! DeleteRecords take sealed segments out with `take_oldest`.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use glommio::io::DmaFile;

use super::segment::{ActiveSegment, InstalledFile, PreparedSegment, RetiredActive, SealWork, SealedSegment};

pub(crate) struct SegmentSet {
    pub sealed: BTreeMap<i64, SealedSegment>,
    pub active: ActiveSegment,
    pub prepared: Option<PreparedSegment>,
    /// Bytes the segment being filled will hold once every queued batch is
    /// written: the active segment, or the one the last queued batch that
    /// starts a segment begins.
    pub enqueued_segment_bytes: u64,
    /// Capacity of the segment file that the bytes counted in
    /// `enqueued_segment_bytes` go to; `u64::MAX` while that segment is still
    /// to be rolled, until the roll has picked a file big enough for what is
    /// queued (`prepared_fitting`). Keeps a grown `segment.bytes` from
    /// overfilling an already allocated file.
    pub filling_capacity_bytes: u64,
    /// Segments that took a retired segment's file (see `segment::recycle_retired`).
    pub recycled: u64,
}

impl SegmentSet {
    /// The set a recovered log starts with: appends fill the active segment
    /// from its durable end.
    pub fn new(sealed: BTreeMap<i64, SealedSegment>, active: ActiveSegment) -> SegmentSet {
        let set = SegmentSet {
            enqueued_segment_bytes: active.written_bytes,
            filling_capacity_bytes: active.capacity_bytes,
            sealed,
            active,
            prepared: None,
            recycled: 0,
        };
        set.check();
        set
    }

    /// Asserts the invariants in the module doc (O(sealed segments): debug
    /// builds, or where the set changes shape).
    fn check(&self) {
        let mut next = None;
        for (&base, seg) in &self.sealed {
            assert_eq!(base, seg.base_offset);
            assert!(next.is_none_or(|n| n == base), "sealed segments follow each other");
            assert!(seg.next_offset > base, "a sealed segment holds offsets");
            next = Some(seg.next_offset);
        }
        assert!(next.is_none_or(|n| n == self.active.base_offset), "the active segment follows the sealed ones");
        assert!(self.active.written_bytes <= self.active.capacity_bytes);
        assert!(self.enqueued_segment_bytes <= self.filling_capacity_bytes);
    }

    /// Places a queued batch of `len` bytes (at most `segment_bytes`, the
    /// limit new segments are made for): returns whether it starts a new
    /// segment, the one being filled having no room for it.
    pub fn place(&mut self, len: u64, segment_bytes: u64) -> bool {
        assert!(len <= segment_bytes, "a batch fits a segment (checked by the append)");
        // With nothing enqueued, the segment being filled is the empty active
        // one, whose file may be smaller (segment.bytes grew): the roll then
        // replaces it with one big enough.
        let starts_segment = self.enqueued_segment_bytes + len > segment_bytes.min(self.filling_capacity_bytes);
        if starts_segment {
            self.enqueued_segment_bytes = 0;
            self.filling_capacity_bytes = u64::MAX;
        }
        self.enqueued_segment_bytes += len;
        assert!(self.enqueued_segment_bytes <= self.filling_capacity_bytes);
        starts_segment
    }

    /// After a failed commit dropped every queued batch: appends fill the
    /// active segment from its durable end again.
    pub fn reset_placement(&mut self) {
        self.enqueued_segment_bytes = self.active.written_bytes;
        self.filling_capacity_bytes = self.active.capacity_bytes;
    }

    /// Whether the next segment's file should be prepared now: the active
    /// segment is half full and none is prepared.
    pub fn wants_prepared(&self) -> bool {
        self.prepared.is_none() && self.active.written_bytes >= self.active.capacity_bytes / 2
    }

    /// Takes the prepared file for the segment about to start if it holds
    /// `need_bytes`, the batches queued for that segment; otherwise drops it
    /// and returns the capacity it had (0 when there was none).
    ///
    /// `filling`: that segment is the one appends are filling, so its file's
    /// capacity becomes their limit, before any await of the roll lets more
    /// appends in (they then start the next segment when it is full).
    pub fn prepared_fitting(&mut self, need_bytes: u64, filling: bool) -> Result<PreparedSegment, u64> {
        let have = self.prepared.as_ref().map_or(0, |p| p.capacity_bytes);
        let Some(prepared) = self.prepared.take().filter(|_| need_bytes <= have) else { return Err(have) };
        if filling {
            assert_eq!(self.enqueued_segment_bytes, need_bytes, "the segment being filled is the one starting");
            self.filling_capacity_bytes = have;
        }
        Ok(prepared)
    }

    /// What sealing the active segment writes, or `None` when it is empty and
    /// starts at `base_offset` (its file too small for the batch that starts
    /// the new segment): then the active segment changes files instead.
    pub fn seal_work(&self, base_offset: i64) -> Option<SealWork> {
        let active = &self.active;
        (active.written_bytes != 0 || active.base_offset != base_offset).then(|| active.seal_work())
    }

    /// A prepared file for the next segment (replacing one too small).
    pub fn set_prepared(&mut self, prepared: PreparedSegment) {
        self.prepared = Some(prepared);
    }

    /// Counts an installed file that was a retired segment's.
    pub fn installed(&mut self, prepared: &PreparedSegment) {
        self.recycled += u64::from(prepared.recycled);
    }

    /// Seals the active segment (read through `sealed_data`, a map of its
    /// written bytes) and makes `installed` the new, empty active segment at
    /// `base_offset`. Returns what the old active segment leaves to close.
    pub fn rotate(&mut self, base_offset: i64, installed: InstalledFile, sealed_data: Bytes) -> RetiredActive {
        assert!(base_offset > self.active.base_offset, "a new segment starts after the active one");
        let new_active = ActiveSegment::fresh(base_offset, installed);
        let old = std::mem::replace(&mut self.active, new_active);
        let (sealed, retired) = old.seal(base_offset, sealed_data);
        let previous = self.sealed.insert(sealed.base_offset, sealed);
        assert!(previous.is_none(), "a segment is sealed once");
        self.check();
        retired
    }

    /// Moves the empty active segment into the bigger `installed` file (same
    /// name); returns the file it leaves.
    pub fn replace_active_file(&mut self, installed: InstalledFile) -> Rc<DmaFile> {
        let old = self.active.replace_file(installed);
        self.check();
        old
    }

    /// Bytes of log on disk: every sealed segment and the active one's
    /// durable part.
    pub fn size_bytes(&self) -> u64 {
        self.sealed.values().map(|seg| seg.size_bytes()).sum::<u64>() + self.active.written_bytes
    }

    pub fn oldest(&self) -> Option<&SealedSegment> {
        self.sealed.values().next()
    }

    /// Takes the oldest sealed segment out of the set.
    pub fn take_oldest(&mut self) -> Option<SealedSegment> {
        self.sealed.pop_first().map(|(_, seg)| seg)
    }
}

/// Whether the next segment's file is being prepared: set by whoever starts
/// a preparation, cleared when it ends (see `PartitionLog::spawn_prepare`).
#[derive(Default)]
pub(crate) struct PrepareFlag(Cell<bool>);

impl PrepareFlag {
    pub fn get(&self) -> bool {
        self.0.get()
    }

    /// Marks a preparation as started; `false` if one already is.
    pub fn begin(&self) -> bool {
        !self.0.replace(true)
    }

    pub fn end(&self) {
        assert!(self.0.replace(false), "a preparation ends once");
    }
}
