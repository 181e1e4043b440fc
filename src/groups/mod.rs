//! Consumer groups, classic protocol: the group coordinator of one shard,
//! protocol-neutral (`api` is what it is asked and answers; `kafka::groups`
//! speaks Kafka for it).
//!
//! A group lives on one shard, chosen from its id only: the group maps to
//! one of `OFFSETS_PARTITIONS` internal offsets logs (FNV-1a of the id), and
//! the group's shard is the shard owning that log (`shard_of`). Changing
//! `--cores` moves groups between shards, but a group's offsets stay in the
//! same log, which its new shard replays at start-up.
//!
//! Membership state (members, generations, assignments) is in memory only,
//! as in Kafka: after a restart members rejoin. Committed offsets are
//! durable (see `store`): an OffsetCommit is answered after its records are
//! on disk.
//!
//! States follow Kafka's GroupCoordinator (see `group`). A periodic sweep
//! (glommio timer) expires members whose session timed out and rebalances
//! that ran out of time, and compacts offsets logs that grew.

mod api;
mod group;
mod membership;
mod offsets;
pub mod store;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

pub use api::*;
use group::{Committed, Group, State};

use crate::placement::{shard_of, Fnv1a};
use crate::storage::PartitionLog;
use store::{OffsetRecord, StoreError};

/// Internal offsets logs; fixed, since a group's log is a function of its id.
pub const OFFSETS_PARTITIONS: i32 = 16;
/// Directory (under the data dir) and log name of the offsets logs.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Groups one shard creates at most (a join or commit that would create one
/// more is refused); replay restores every group on disk even past it.
pub const MAX_GROUPS_PER_SHARD: usize = 10_000;
/// Members of one group at most (GROUP_MAX_SIZE_REACHED beyond).
pub const MAX_MEMBERS_PER_GROUP: usize = 1_000;
/// Members given an id by MEMBER_ID_REQUIRED and not yet rejoined, per group.
pub const MAX_PENDING_MEMBERS_PER_GROUP: usize = 1_000;
/// The same over all the groups of one shard: each pending id lives up to
/// its session timeout (30 minutes at most), so without this cap 10 000
/// groups could hold 10 million of them. Beyond it a join without a member
/// id answers GROUP_MAX_SIZE_REACHED until ids expire or are used.
pub const MAX_PENDING_MEMBERS_PER_SHARD: usize = 100_000;
/// Committed offsets one shard accepts at most, over all its groups. A
/// commit that would add offsets beyond it is refused before anything is
/// written (INVALID_COMMIT_OFFSET_SIZE). Start-up replay restores every
/// offset on disk even past the cap (fewer `--cores` give a shard more
/// offsets logs): the cap then only refuses new ones.
pub const MAX_OFFSETS_PER_SHARD: usize = 200_000;
/// An offsets log is compacted (its live offsets written again, older
/// segments deleted) once its sealed segments hold this much more than the
/// last compaction wrote.
pub const COMPACT_AFTER_BYTES: u64 = 16 * 1024 * 1024;
/// Longest commit metadata string (OFFSET_METADATA_TOO_LARGE beyond).
pub const MAX_METADATA_BYTES: usize = 4096;
/// Protocol metadata of one member (all its protocols), or one assignment, at most.
pub const MAX_MEMBER_METADATA_BYTES: usize = 1024 * 1024;
/// Longest group id accepted.
pub const MAX_GROUP_ID_BYTES: usize = 1024;
pub const MIN_SESSION_TIMEOUT_MS: i32 = 1_000;
pub const MAX_SESSION_TIMEOUT_MS: i32 = 1_800_000;
/// How often session and rebalance deadlines are checked.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// The offsets log of a group: stable across restarts and core counts.
pub fn offsets_partition(group: &str) -> i32 {
    (Fnv1a::new().bytes(group.as_bytes()).finish() % OFFSETS_PARTITIONS as u64) as i32
}

/// The shard coordinating a group.
pub fn group_shard(group: &str, shard_count: usize) -> usize {
    shard_of(OFFSETS_TOPIC, offsets_partition(group), shard_count)
}

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("offsets log {partition}: {source}")]
    Store { partition: i32, source: StoreError },
}

impl CoordinatorError {
    /// As the storage error start-up reports (opening a shard's logs).
    pub fn into_storage(self) -> crate::storage::StorageError {
        match self {
            CoordinatorError::Store { source: StoreError::Storage(s), .. } => s,
            other => crate::storage::StorageError::Io {
                context: other.to_string(),
                source: std::io::Error::other("consumer group offsets cannot be replayed"),
            },
        }
    }
}

/// The caps of one shard's coordinator (the constants above; tests lower them).
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_groups: usize,
    max_offsets: usize,
    max_pending_members: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_groups: MAX_GROUPS_PER_SHARD,
            max_offsets: MAX_OFFSETS_PER_SHARD,
            max_pending_members: MAX_PENDING_MEMBERS_PER_SHARD,
        }
    }
}

/// The group coordinator of one shard.
pub struct Coordinator {
    shard_id: usize,
    shard_count: usize,
    initial_delay: Duration,
    limits: Limits,
    groups: RefCell<HashMap<String, Group>>,
    /// Offsets logs this shard owns.
    logs: RefCell<HashMap<i32, Rc<PartitionLog>>>,
    loaded: Cell<bool>,
    stopping: Cell<bool>,
    /// Orders every record: taken just before its append is queued, so on
    /// one offsets log sequences follow log order (replay numbers records
    /// the same way, in log order).
    commit_seq: Cell<u64>,
    offsets_count: Cell<usize>,
    /// New offsets that admitted commits will add once written: counted
    /// against `max_offsets` before the write, so `apply` never refuses.
    reserved_offsets: Cell<usize>,
    /// Pending member ids over all groups (`max_pending_members`).
    pending_count: Cell<usize>,
    /// Offsets logs whose replay did not understand every record: their
    /// in-memory state is not the whole log, so they are never compacted.
    lossy: RefCell<HashSet<i32>>,
    /// Records appended and not yet applied, by commit sequence: a
    /// compaction snapshot must include them (they precede it in the log).
    in_flight: RefCell<BTreeMap<u64, Vec<OffsetRecord>>>,
    /// Offsets logs being compacted, and the bytes each last compaction wrote.
    compacting: RefCell<HashSet<i32>>,
    snapshot_bytes: RefCell<HashMap<i32, u64>>,
    /// Where offsets logs are created on first use, and their base settings.
    storage: RefCell<Option<(std::path::PathBuf, crate::storage::LogConfig)>>,
    /// Serialises creating an offsets log.
    creating: glommio::sync::Semaphore,
}

impl Coordinator {
    pub fn new(shard_id: usize, shard_count: usize, initial_delay: Duration) -> Coordinator {
        Coordinator {
            shard_id,
            shard_count,
            initial_delay,
            limits: Limits::default(),
            groups: RefCell::new(HashMap::new()),
            logs: RefCell::new(HashMap::new()),
            loaded: Cell::new(false),
            stopping: Cell::new(false),
            commit_seq: Cell::new(0),
            offsets_count: Cell::new(0),
            reserved_offsets: Cell::new(0),
            pending_count: Cell::new(0),
            lossy: RefCell::new(HashSet::new()),
            in_flight: RefCell::new(BTreeMap::new()),
            compacting: RefCell::new(HashSet::new()),
            snapshot_bytes: RefCell::new(HashMap::new()),
            storage: RefCell::new(None),
            creating: glommio::sync::Semaphore::new(1),
        }
    }

    pub fn owns(&self, group: &str) -> bool {
        group_shard(group, self.shard_count) == self.shard_id
    }

    pub fn gauges(&self) -> GroupGauges {
        let groups = self.groups.borrow();
        GroupGauges {
            groups: groups.len() as u64,
            members: groups.values().map(|g| g.members.len() as u64).sum(),
            committed_offsets: self.offsets_count.get() as u64,
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.get()
    }

    /// Opens and replays the offsets logs this shard owns (those that exist:
    /// the others are created on first commit), then starts the sweep. Until
    /// it finishes, group calls answer COORDINATOR_LOAD_IN_PROGRESS.
    pub async fn load(
        self: &Rc<Self>,
        data_dir: &std::path::Path,
        base: &crate::storage::LogConfig,
    ) -> Result<(), CoordinatorError> {
        let started = Instant::now();
        let mut records = 0usize;
        *self.storage.borrow_mut() = Some((data_dir.to_path_buf(), base.clone()));
        for p in 0..OFFSETS_PARTITIONS {
            if shard_of(OFFSETS_TOPIC, p, self.shard_count) != self.shard_id || !store::exists(data_dir, p) {
                continue;
            }
            let log = store::open(data_dir, p, base)
                .await
                .map_err(|source| CoordinatorError::Store { partition: p, source })?;
            let replayed = store::replay(&log).map_err(|source| CoordinatorError::Store { partition: p, source })?;
            records += replayed.records.len();
            if !replayed.is_lossless() {
                tracing::warn!(
                    partition = p,
                    skipped = replayed.skipped,
                    unread = replayed.unread,
                    "offsets log not fully understood; it will not be compacted"
                );
                self.lossy.borrow_mut().insert(p);
            }
            self.restore(replayed.records);
            self.logs.borrow_mut().insert(p, log);
        }
        self.loaded.set(true);
        let (groups, offsets) = (self.groups.borrow().len(), self.offsets_count.get());
        if groups > self.limits.max_groups || offsets > self.limits.max_offsets {
            // Fewer cores than when they were written: kept, but no new ones until below the caps.
            tracing::warn!(shard = self.shard_id, groups, max_groups = self.limits.max_groups, offsets, max_offsets = self.limits.max_offsets, "replayed consumer groups exceed this shard's caps; new groups and offsets are refused until below them");
        }
        tracing::info!(
            shard = self.shard_id,
            groups,
            offsets,
            records,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "consumer group offsets loaded"
        );
        let me = self.clone();
        glommio::spawn_local(async move {
            while !me.stopping.get() {
                glommio::timer::sleep(SWEEP_INTERVAL).await;
                me.sweep(Instant::now());
                for p in me.logs_to_compact() {
                    let me = me.clone();
                    glommio::spawn_local(async move { me.compact(p).await }).detach();
                }
            }
        })
        .detach();
        Ok(())
    }

    /// Commits what is queued and closes the offsets logs.
    pub async fn close(&self) {
        self.stopping.set(true);
        let logs: Vec<Rc<PartitionLog>> = self.logs.borrow().values().cloned().collect();
        for log in logs {
            log.close().await;
        }
    }

    /// Replays records read from an offsets log, in log order: everything on
    /// disk is restored, whatever the caps (they are checked before a write,
    /// never after: the disk must not hold what memory refused).
    fn restore(&self, records: Vec<OffsetRecord>) {
        for r in records {
            let seq = self.next_seq();
            self.apply(r, seq);
        }
    }

    /// Applies one durable record, of sequence `seq`, to the in-memory state.
    /// Never refuses: caps were checked before the record was written.
    /// Records of one log may be applied out of order (their writers wake in
    /// any order); sequences make the result the one replay gives.
    fn apply(&self, r: OffsetRecord, seq: u64) {
        let mut groups = self.groups.borrow_mut();
        match r {
            OffsetRecord::Commit { group, topic, partition, offset, leader_epoch, metadata, .. } => {
                let g = groups.entry(group.clone()).or_insert_with(|| Group::new(&group));
                if seq < g.deleted_seq {
                    // Written before a tombstone applied already: replay forgets it too.
                    return;
                }
                match g.offsets.entry((topic, partition)) {
                    std::collections::btree_map::Entry::Occupied(mut e) => {
                        if e.get().seq <= seq {
                            e.insert(Committed { offset, leader_epoch, metadata, seq });
                        }
                    }
                    std::collections::btree_map::Entry::Vacant(e) => {
                        self.offsets_count.set(self.offsets_count.get() + 1);
                        e.insert(Committed { offset, leader_epoch, metadata, seq });
                    }
                }
            }
            OffsetRecord::GroupDeleted { group } => {
                let Some(g) = groups.get_mut(&group) else { return };
                // Only what precedes the tombstone in the log: a commit
                // written after it but applied first survives, as in replay.
                g.deleted_seq = g.deleted_seq.max(seq);
                let before = g.offsets.len();
                g.offsets.retain(|_, c| c.seq > seq);
                let forgotten = before - g.offsets.len();
                assert!(self.offsets_count.get() >= forgotten, "more offsets forgotten than counted");
                self.offsets_count.set(self.offsets_count.get() - forgotten);
                if g.members.is_empty() && g.offsets.is_empty() && g.writes_in_flight == 0 {
                    self.forget_pending(g.pending.len());
                    groups.remove(&group);
                }
            }
        }
    }

    /// Expires silent members and overdue rebalances.
    fn sweep(&self, now: Instant) {
        let mut groups = self.groups.borrow_mut();
        for g in groups.values_mut() {
            let before = g.pending.len();
            g.pending.retain(|_, until| *until > now);
            self.forget_pending(before - g.pending.len());
            let expired: Vec<String> = g
                .members
                .values()
                .filter(|m| m.join.is_none() && m.sync.is_none() && m.last_seen + m.session_timeout < now)
                .map(|m| m.id.clone())
                .collect();
            if !expired.is_empty() {
                for id in &expired {
                    tracing::info!(group = %g.id, member = %id, "member session expired");
                    g.remove_member(id);
                }
                g.members_changed(now);
            }
            let overdue = g.deadline.is_some_and(|d| d <= now);
            match g.state {
                State::PreparingRebalance => g.maybe_complete_join(now, overdue),
                State::CompletingRebalance if overdue => {
                    // The leader never sent its assignment (or members never synced).
                    let silent: Vec<String> =
                        g.members.values().filter(|m| m.sync.is_none()).map(|m| m.id.clone()).collect();
                    for id in &silent {
                        tracing::info!(group = %g.id, member = %id, "member did not sync in time; removed");
                        g.remove_member(id);
                    }
                    g.members_changed(now);
                }
                _ => {}
            }
        }
        groups.retain(|_, g| !g.is_unused());
        debug_assert_eq!(self.pending_count.get(), groups.values().map(|g| g.pending.len()).sum::<usize>());
        debug_assert_eq!(self.offsets_count.get(), groups.values().map(|g| g.offsets.len()).sum::<usize>());
    }

    /// Handles one group call on this (the group's) shard.
    pub async fn call(&self, call: GroupCall) -> GroupAnswer {
        match call {
            GroupCall::Join(req) => GroupAnswer::Join(self.join_group(req).await),
            GroupCall::Sync(req) => GroupAnswer::Sync(self.sync_group(req).await),
            GroupCall::Heartbeat(hb) => GroupAnswer::Heartbeat(self.heartbeat_member(&hb)),
            GroupCall::Leave(req) => GroupAnswer::Leave(self.leave_group(&req)),
            GroupCall::Commit(req) => GroupAnswer::Commit(self.commit_offsets(req).await),
            GroupCall::Fetch { group, topics } => GroupAnswer::Fetch(self.fetch_offsets(&group, topics)),
            GroupCall::Describe { group } => GroupAnswer::Describe(self.describe_group(&group)),
            GroupCall::List { states } => GroupAnswer::List(self.list_groups(&states)),
            GroupCall::Delete { group } => GroupAnswer::Delete(self.delete_group(&group).await),
        }
    }

    /// Every call is refused while the offsets load, and once stopping.
    fn ready(&self) -> Result<(), GroupError> {
        if self.stopping.get() {
            Err(GroupError::NotAvailable)
        } else if !self.loaded.get() {
            Err(GroupError::Loading)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
