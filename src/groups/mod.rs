//! Consumer groups, classic protocol: the group coordinator of one shard.
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
//! States follow Kafka's GroupCoordinator: Empty → PreparingRebalance (joins
//! gathered until every known member rejoined, or the rebalance timeout; the
//! first rebalance of an empty group also waits
//! `group-initial-rebalance-delay-ms`) → CompletingRebalance (JoinGroup
//! answered, the leader's SyncGroup awaited) → Stable. A periodic sweep
//! (glommio timer) expires members whose session timed out and rebalances
//! that ran out of time.

pub mod store;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use indexmap::IndexMap;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, OffsetCommitRequest,
    SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::kafka::codes;
use crate::placement::{shard_of, Fnv1a};
use crate::storage::log::AckWait;
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

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// One group operation, owned and `Send`: it travels to the group's shard.
pub enum GroupCall {
    Join {
        version: i16,
        client_id: String,
        req: JoinGroupRequest,
    },
    Sync {
        version: i16,
        req: SyncGroupRequest,
    },
    Heartbeat {
        req: HeartbeatRequest,
    },
    Leave {
        version: i16,
        req: LeaveGroupRequest,
    },
    Commit {
        version: i16,
        req: OffsetCommitRequest,
    },
    /// `topics` None: every committed offset of the group.
    Fetch {
        group: String,
        topics: Option<Vec<(String, Vec<i32>)>>,
    },
    Describe {
        version: i16,
        group: String,
    },
    /// Groups of this shard, in any of `states` (all when empty).
    List {
        states: Vec<String>,
    },
    Delete {
        group: String,
    },
}

/// A committed offset as OffsetFetch answers it.
#[derive(Debug, Clone)]
pub struct FetchedOffset {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// A shard's consumer group gauges, for the metrics endpoint.
#[derive(Debug, Clone, Copy, Default)]
pub struct GroupGauges {
    pub groups: u64,
    pub members: u64,
    pub committed_offsets: u64,
}

/// The answer to a `GroupCall`, by variant.
pub enum GroupAnswer {
    Join(JoinGroupResponse),
    Sync(SyncGroupResponse),
    Heartbeat(i16),
    /// Top-level error and per-member errors (v3+).
    Leave(i16, Vec<MemberResponse>),
    /// Per topic, per partition error codes.
    Commit(Vec<(String, Vec<(i32, i16)>)>),
    Fetch {
        error: i16,
        topics: Vec<(String, Vec<FetchedOffset>)>,
    },
    Describe(DescribedGroup),
    List(i16, Vec<(String, String, &'static str)>),
    Delete(i16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

struct JoinWaiter {
    version: i16,
    tx: oneshot::Sender<JoinGroupResponse>,
}

struct SyncWaiter {
    version: i16,
    tx: oneshot::Sender<SyncGroupResponse>,
}

struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    /// (name, metadata), in the member's order of preference.
    protocols: Vec<(String, Bytes)>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    last_seen: Instant,
    assignment: Bytes,
    join: Option<JoinWaiter>,
    sync: Option<SyncWaiter>,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(n, _)| n == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
struct Committed {
    offset: i64,
    leader_epoch: i32,
    metadata: Option<String>,
    /// Order of the commit that wrote it: a commit that finishes later but
    /// started earlier does not overwrite a newer value.
    seq: u64,
}

struct Group {
    id: String,
    state: State,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: IndexMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, valid until this instant.
    pending: HashMap<String, Instant>,
    /// End of the join phase (PreparingRebalance) or of the sync phase
    /// (CompletingRebalance).
    deadline: Option<Instant>,
    /// The first rebalance of an empty group waits for more members until then.
    initial_delay_until: Option<Instant>,
    offsets: BTreeMap<(String, i32), Committed>,
    /// Commits of this group admitted (caps checked) and not yet applied:
    /// the group stays in memory until they are.
    writes_in_flight: usize,
    /// Sequence of the last tombstone applied: a commit with a lower
    /// sequence precedes it in the log, so replay forgets it; memory too.
    deleted_seq: u64,
}

impl Group {
    fn new(id: &str) -> Group {
        Group {
            id: id.to_string(),
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: IndexMap::new(),
            pending: HashMap::new(),
            deadline: None,
            initial_delay_until: None,
            offsets: BTreeMap::new(),
            writes_in_flight: 0,
            deleted_seq: 0,
        }
    }

    fn member_by_instance(&self, instance: &str) -> Option<&str> {
        self.members.values().find(|m| m.instance_id.as_deref() == Some(instance)).map(|m| m.id.as_str())
    }

    /// Protocols every member supports, in `first`'s order of preference.
    fn common_protocols(&self, extra: Option<&[(String, Bytes)]>) -> Vec<String> {
        let mut lists: Vec<&[(String, Bytes)]> = self.members.values().map(|m| m.protocols.as_slice()).collect();
        if let Some(e) = extra {
            lists.push(e);
        }
        let Some(first) = lists.first() else { return Vec::new() };
        first.iter().map(|(n, _)| n.clone()).filter(|n| lists.iter().all(|l| l.iter().any(|(m, _)| m == n))).collect()
    }

    /// Kafka's choice: every member votes for the first candidate it lists;
    /// most votes wins (ties: the first member's preference).
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.common_protocols(None);
        let mut votes: Vec<usize> = vec![0; candidates.len()];
        for m in self.members.values() {
            if let Some(i) = m.protocols.iter().find_map(|(n, _)| candidates.iter().position(|c| c == n)) {
                votes[i] += 1;
            }
        }
        let best = votes.iter().copied().max()?;
        candidates.into_iter().zip(votes).find(|(_, v)| *v == best).map(|(c, _)| c)
    }

    fn all_rejoined(&self) -> bool {
        self.members.values().all(|m| m.join.is_some())
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or(Duration::from_secs(60))
    }

    /// Starts (or keeps) a rebalance: members must rejoin.
    fn prepare_rebalance(&mut self, now: Instant, initial_delay: Duration) {
        if self.state == State::CompletingRebalance {
            for m in self.members.values_mut() {
                if let Some(w) = m.sync.take() {
                    let _ = w.tx.send(sync_response(w.version, codes::REBALANCE_IN_PROGRESS, None, None, Bytes::new()));
                }
            }
        }
        if self.state == State::PreparingRebalance {
            return;
        }
        let was_empty = self.state == State::Empty;
        self.state = State::PreparingRebalance;
        let timeout = self.max_rebalance_timeout();
        self.deadline = Some(now + timeout);
        self.initial_delay_until = (was_empty && !initial_delay.is_zero()).then(|| now + initial_delay.min(timeout));
        tracing::debug!(group = %self.id, generation = self.generation, "rebalance started");
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(m) = self.members.shift_remove(id) {
            // Dropping the waiters answers them (UNKNOWN_MEMBER_ID / REBALANCE_IN_PROGRESS).
            drop(m);
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    /// After members left or expired: rebalance the rest, or become Empty.
    fn members_changed(&mut self, now: Instant) {
        if self.members.is_empty() {
            if self.state != State::Empty {
                self.state = State::Empty;
                self.generation += 1;
                // The protocol type stays: an empty consumer group is still one (ListGroups).
                self.protocol = None;
                self.leader = None;
                self.deadline = None;
                self.initial_delay_until = None;
                tracing::debug!(group = %self.id, generation = self.generation, "group is empty");
            }
            return;
        }
        match self.state {
            State::Stable | State::CompletingRebalance => self.prepare_rebalance(now, Duration::ZERO),
            State::PreparingRebalance => self.maybe_complete_join(now, false),
            State::Empty => {}
        }
    }

    /// Ends the join phase when every member rejoined (and the initial delay
    /// passed), or unconditionally at the deadline, dropping the members that
    /// did not rejoin.
    fn maybe_complete_join(&mut self, now: Instant, deadline_passed: bool) {
        if self.state != State::PreparingRebalance {
            return;
        }
        let delaying = self.initial_delay_until.is_some_and(|t| now < t);
        if !deadline_passed && (delaying || !self.all_rejoined()) {
            return;
        }
        let gone: Vec<String> = self.members.values().filter(|m| m.join.is_none()).map(|m| m.id.clone()).collect();
        for id in gone {
            tracing::debug!(group = %self.id, member = %id, "member did not rejoin in time; removed");
            self.remove_member(&id);
        }
        self.initial_delay_until = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.protocol = None;
            self.leader = None;
            self.deadline = None;
            return;
        }
        self.protocol = self.select_protocol();
        if self.leader.as_ref().is_none_or(|l| !self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = State::CompletingRebalance;
        self.deadline = Some(now + self.max_rebalance_timeout());
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let all: Vec<(String, Option<String>, Bytes)> =
            self.members.values().map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata_for(&protocol))).collect();
        tracing::info!(group = %self.id, generation = self.generation, members = all.len(), protocol = %protocol, leader = %leader, "rebalance: join phase complete");
        let (generation, protocol_type) = (self.generation, self.protocol_type.clone());
        for m in self.members.values_mut() {
            m.last_seen = now;
            m.assignment = Bytes::new();
            if let Some(w) = m.join.take() {
                let members = if m.id == leader { all.as_slice() } else { &[] };
                let resp = join_response(
                    w.version,
                    codes::NONE,
                    generation,
                    protocol_type.as_deref(),
                    Some(&protocol),
                    &leader,
                    &m.id,
                    members,
                );
                let _ = w.tx.send(resp);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn join_response(
    version: i16,
    error: i16,
    generation: i32,
    protocol_type: Option<&str>,
    protocol: Option<&str>,
    leader: &str,
    member_id: &str,
    members: &[(String, Option<String>, Bytes)],
) -> JoinGroupResponse {
    let protocol_name = match protocol {
        None if version >= 7 => None,
        p => Some(sb(p.unwrap_or(""))),
    };
    JoinGroupResponse::default()
        .with_error_code(error)
        .with_generation_id(generation)
        .with_protocol_type(if version >= 7 { protocol_type.map(sb) } else { None })
        .with_protocol_name(protocol_name)
        .with_leader(sb(leader))
        .with_member_id(sb(member_id))
        .with_members(
            members
                .iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(sb(id))
                        .with_group_instance_id(if version >= 5 { instance.as_deref().map(sb) } else { None })
                        .with_metadata(metadata.clone())
                })
                .collect(),
        )
}

pub fn join_error(version: i16, error: i16, member_id: &str) -> JoinGroupResponse {
    join_response(version, error, -1, None, None, "", member_id, &[])
}

pub fn sync_response(
    version: i16,
    error: i16,
    protocol_type: Option<&str>,
    protocol: Option<&str>,
    assignment: Bytes,
) -> SyncGroupResponse {
    let mut r = SyncGroupResponse::default().with_error_code(error).with_assignment(assignment);
    if version >= 5 {
        r.protocol_type = protocol_type.map(sb);
        r.protocol_name = protocol.map(sb);
    }
    r
}

/// The Kafka error code for a failed offsets write.
fn store_error_code(e: &StoreError) -> i16 {
    match e {
        StoreError::Storage(crate::storage::StorageError::Closed) => codes::COORDINATOR_NOT_AVAILABLE,
        StoreError::Storage(s) => crate::kafka::errors::for_storage(s),
        _ => codes::UNKNOWN_SERVER_ERROR,
    }
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
                self.offsets_count.set(self.offsets_count.get().saturating_sub(before - g.offsets.len()));
                if g.members.is_empty() && g.offsets.is_empty() && g.writes_in_flight == 0 {
                    self.pending_count.set(self.pending_count.get().saturating_sub(g.pending.len()));
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
            self.pending_count.set(self.pending_count.get().saturating_sub(before - g.pending.len()));
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
        groups.retain(|_, g| {
            !(g.state == State::Empty
                && g.members.is_empty()
                && g.offsets.is_empty()
                && g.pending.is_empty()
                && g.writes_in_flight == 0)
        });
    }

    /// Handles one group call on this (the group's) shard.
    pub async fn call(&self, call: GroupCall) -> GroupAnswer {
        match call {
            GroupCall::Join { version, client_id, req } => GroupAnswer::Join(self.join(version, client_id, req).await),
            GroupCall::Sync { version, req } => GroupAnswer::Sync(self.sync(version, req).await),
            GroupCall::Heartbeat { req } => GroupAnswer::Heartbeat(self.heartbeat(req)),
            GroupCall::Leave { version, req } => {
                let (e, m) = self.leave(version, req);
                GroupAnswer::Leave(e, m)
            }
            GroupCall::Commit { version, req } => GroupAnswer::Commit(self.commit(version, req).await),
            GroupCall::Fetch { group, topics } => {
                let (error, topics) = self.fetch(&group, topics);
                GroupAnswer::Fetch { error, topics }
            }
            GroupCall::Describe { version, group } => GroupAnswer::Describe(self.describe(version, &group)),
            GroupCall::List { states } => {
                let (e, l) = self.list(&states);
                GroupAnswer::List(e, l)
            }
            GroupCall::Delete { group } => GroupAnswer::Delete(self.delete(&group).await),
        }
    }

    /// The error every call answers before the offsets are loaded, if any.
    fn not_ready(&self) -> Option<i16> {
        if self.stopping.get() {
            Some(codes::COORDINATOR_NOT_AVAILABLE)
        } else if !self.loaded.get() {
            Some(codes::COORDINATOR_LOAD_IN_PROGRESS)
        } else {
            None
        }
    }

    fn new_member_id(client_id: &str, instance: Option<&str>) -> String {
        let prefix = instance.unwrap_or(client_id);
        let prefix: String = prefix.chars().take(64).collect();
        format!("{prefix}-{}", uuid::Uuid::new_v4())
    }

    async fn join(&self, version: i16, client_id: String, req: JoinGroupRequest) -> JoinGroupResponse {
        let member_id = req.member_id.to_string();
        let rx = match self.join_start(version, client_id, req) {
            Ok(rx) => rx,
            Err(resp) => return resp,
        };
        match rx.await {
            Ok(resp) => resp,
            // The member was removed (left, fenced, group deleted) while waiting.
            Err(_) => join_error(version, codes::UNKNOWN_MEMBER_ID, &member_id),
        }
    }

    /// The synchronous part of a join: either an immediate answer, or a
    /// receiver completed when the join phase ends.
    fn join_start(
        &self,
        version: i16,
        client_id: String,
        req: JoinGroupRequest,
    ) -> Result<oneshot::Receiver<JoinGroupResponse>, JoinGroupResponse> {
        let member_id = req.member_id.to_string();
        let fail = |code: i16| Err(join_error(version, code, &member_id));
        if let Some(code) = self.not_ready() {
            return fail(code);
        }
        let group_id = req.group_id.to_string();
        if group_id.is_empty() || group_id.len() > MAX_GROUP_ID_BYTES {
            return fail(codes::INVALID_GROUP_ID);
        }
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&req.session_timeout_ms) {
            return fail(codes::INVALID_SESSION_TIMEOUT);
        }
        let protocol_type = req.protocol_type.to_string();
        let protocols: Vec<(String, Bytes)> =
            req.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect();
        if protocol_type.is_empty() || protocols.is_empty() {
            return fail(codes::INCONSISTENT_GROUP_PROTOCOL);
        }
        if protocols.iter().map(|(n, m)| n.len() + m.len()).sum::<usize>() > MAX_MEMBER_METADATA_BYTES {
            tracing::warn!(group = %req.group_id.as_str(), max = MAX_MEMBER_METADATA_BYTES, "join refused: protocol metadata too large");
            return fail(codes::INVALID_REQUEST);
        }
        let session_timeout = Duration::from_millis(req.session_timeout_ms as u64);
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        let rebalance_timeout = if version == 0 || req.rebalance_timeout_ms <= 0 {
            session_timeout
        } else {
            Duration::from_millis(req.rebalance_timeout_ms as u64)
        };
        let instance = req.group_instance_id.as_ref().map(|s| s.to_string());
        let now = Instant::now();

        let mut groups = self.groups.borrow_mut();
        if !groups.contains_key(&group_id) {
            if groups.len() >= self.limits.max_groups {
                tracing::warn!(group = %group_id, max = self.limits.max_groups, "too many groups on this shard; join refused");
                return fail(codes::UNKNOWN_SERVER_ERROR);
            }
            if !member_id.is_empty() {
                return fail(codes::UNKNOWN_MEMBER_ID);
            }
            groups.insert(group_id.clone(), Group::new(&group_id));
        }
        let Some(g) = groups.get_mut(&group_id) else { return fail(codes::UNKNOWN_SERVER_ERROR) };
        if !g.members.is_empty() {
            if g.protocol_type.as_deref().is_some_and(|t| t != protocol_type)
                || g.common_protocols(Some(&protocols)).is_empty()
            {
                return fail(codes::INCONSISTENT_GROUP_PROTOCOL);
            }
        }

        // Who is joining.
        let existing_static = instance.as_deref().and_then(|i| g.member_by_instance(i)).map(str::to_string);
        let id = if member_id.is_empty() || g.pending.contains_key(&member_id) {
            if let Some(old) = existing_static {
                // A static member came back (restart): the old id is fenced.
                let new_id = Self::new_member_id(&client_id, instance.as_deref());
                tracing::info!(group = %group_id, old = %old, new = %new_id, "static member rejoined; replacing its old member id");
                if let Some(mut m) = g.members.shift_remove(&old) {
                    if let Some(w) = m.join.take() {
                        let _ = w.tx.send(join_error(w.version, codes::FENCED_INSTANCE_ID, &old));
                    }
                    if let Some(w) = m.sync.take() {
                        let _ =
                            w.tx.send(sync_response(w.version, codes::FENCED_INSTANCE_ID, None, None, Bytes::new()));
                    }
                    if g.leader.as_deref() == Some(old.as_str()) {
                        g.leader = Some(new_id.clone());
                    }
                    m.id = new_id.clone();
                    g.members.insert(new_id.clone(), m);
                }
                new_id
            } else if member_id.is_empty() && version >= 4 && instance.is_none() {
                // KIP-394: the client must come back with this id.
                if g.pending.len() >= MAX_PENDING_MEMBERS_PER_GROUP {
                    return fail(codes::GROUP_MAX_SIZE_REACHED);
                }
                if self.pending_count.get() >= self.limits.max_pending_members {
                    tracing::warn!(group = %group_id, max = self.limits.max_pending_members, "too many pending member ids on this shard; join refused");
                    return fail(codes::GROUP_MAX_SIZE_REACHED);
                }
                let new_id = Self::new_member_id(&client_id, None);
                g.pending.insert(new_id.clone(), now + session_timeout);
                self.pending_count.set(self.pending_count.get() + 1);
                return Err(join_error(version, codes::MEMBER_ID_REQUIRED, &new_id));
            } else {
                if g.members.len() >= MAX_MEMBERS_PER_GROUP {
                    return fail(codes::GROUP_MAX_SIZE_REACHED);
                }
                if g.pending.remove(&member_id).is_some() {
                    self.pending_count.set(self.pending_count.get().saturating_sub(1));
                }
                if member_id.is_empty() {
                    Self::new_member_id(&client_id, instance.as_deref())
                } else {
                    member_id.clone()
                }
            }
        } else {
            if !g.members.contains_key(&member_id) {
                return fail(codes::UNKNOWN_MEMBER_ID);
            }
            if let Some(other) = existing_static.filter(|o| *o != member_id) {
                tracing::debug!(group = %group_id, member = %member_id, current = %other, "fenced static member");
                return fail(codes::FENCED_INSTANCE_ID);
            }
            member_id.clone()
        };

        let known = g.members.contains_key(&id);
        if g.members.is_empty() {
            g.protocol_type = Some(protocol_type.clone());
        }
        let changed = match g.members.get(&id) {
            Some(m) => m.protocols != protocols,
            None => true,
        };
        let (tx, rx) = oneshot::channel();
        let waiter = JoinWaiter { version, tx };
        match g.members.get_mut(&id) {
            Some(m) => {
                m.protocols = protocols;
                m.session_timeout = session_timeout;
                m.rebalance_timeout = rebalance_timeout;
                m.last_seen = now;
                m.client_id = client_id;
                if let Some(old) = m.join.replace(waiter) {
                    drop(old);
                }
            }
            None => {
                g.members.insert(
                    id.clone(),
                    Member {
                        id: id.clone(),
                        instance_id: instance,
                        client_id,
                        protocols,
                        session_timeout,
                        rebalance_timeout,
                        last_seen: now,
                        assignment: Bytes::new(),
                        join: Some(waiter),
                        sync: None,
                    },
                );
            }
        }
        let is_leader = g.leader.as_deref() == Some(id.as_str());
        match g.state {
            State::PreparingRebalance => {
                // A new member extends the initial delay (bounded by the rebalance timeout).
                if !known {
                    if let (Some(until), Some(deadline)) = (g.initial_delay_until, g.deadline) {
                        g.initial_delay_until =
                            Some((until.max(now + self.initial_delay.min(rebalance_timeout))).min(deadline));
                    }
                    if let Some(d) = g.deadline {
                        g.deadline = Some(d.max(now + rebalance_timeout));
                    }
                }
                g.maybe_complete_join(now, false);
            }
            State::CompletingRebalance | State::Stable
                if known && !changed && !(g.state == State::Stable && is_leader) =>
            {
                // A rejoin that changes nothing: the current generation.
                let protocol = g.protocol.clone();
                let leader = g.leader.clone().unwrap_or_default();
                let members: Vec<(String, Option<String>, Bytes)> = if is_leader {
                    g.members
                        .values()
                        .map(|m| {
                            (m.id.clone(), m.instance_id.clone(), m.metadata_for(protocol.as_deref().unwrap_or("")))
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let (generation, ptype) = (g.generation, g.protocol_type.clone());
                if let Some(m) = g.members.get_mut(&id) {
                    if let Some(w) = m.join.take() {
                        let _ = w.tx.send(join_response(
                            w.version,
                            codes::NONE,
                            generation,
                            ptype.as_deref(),
                            protocol.as_deref(),
                            &leader,
                            &id,
                            &members,
                        ));
                    }
                }
            }
            _ => {
                g.prepare_rebalance(now, self.initial_delay);
                g.maybe_complete_join(now, false);
            }
        }
        Ok(rx)
    }

    async fn sync(&self, version: i16, req: SyncGroupRequest) -> SyncGroupResponse {
        let rx = match self.sync_start(version, req) {
            Ok(rx) => rx,
            Err(resp) => return resp,
        };
        match rx.await {
            Ok(resp) => resp,
            Err(_) => sync_response(version, codes::REBALANCE_IN_PROGRESS, None, None, Bytes::new()),
        }
    }

    fn sync_start(
        &self,
        version: i16,
        req: SyncGroupRequest,
    ) -> Result<oneshot::Receiver<SyncGroupResponse>, SyncGroupResponse> {
        let fail = |code: i16| Err(sync_response(version, code, None, None, Bytes::new()));
        if let Some(code) = self.not_ready() {
            return fail(code);
        }
        let member_id = req.member_id.to_string();
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(req.group_id.as_str()) else { return fail(codes::UNKNOWN_MEMBER_ID) };
        let Some(m) = g.members.get(&member_id) else { return fail(codes::UNKNOWN_MEMBER_ID) };
        if let Some(i) = req.group_instance_id.as_deref() {
            if m.instance_id.as_deref() != Some(i) {
                return fail(codes::FENCED_INSTANCE_ID);
            }
        }
        if req.generation_id != g.generation {
            return fail(codes::ILLEGAL_GENERATION);
        }
        if version >= 5 {
            let type_ok = req.protocol_type.as_deref().is_none_or(|t| g.protocol_type.as_deref() == Some(t));
            let name_ok = req.protocol_name.as_deref().is_none_or(|n| g.protocol.as_deref() == Some(n));
            if !type_ok || !name_ok {
                return fail(codes::INCONSISTENT_GROUP_PROTOCOL);
            }
        }
        let now = Instant::now();
        let (ptype, proto) = (g.protocol_type.clone(), g.protocol.clone());
        match g.state {
            State::Empty => fail(codes::UNKNOWN_MEMBER_ID),
            State::PreparingRebalance => fail(codes::REBALANCE_IN_PROGRESS),
            State::Stable => {
                let assignment = m.assignment.clone();
                if let Some(m) = g.members.get_mut(&member_id) {
                    m.last_seen = now;
                }
                Err(sync_response(version, codes::NONE, ptype.as_deref(), proto.as_deref(), assignment))
            }
            State::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = g.members.get_mut(&member_id) {
                    m.last_seen = now;
                    m.sync = Some(SyncWaiter { version, tx });
                }
                if g.leader.as_deref() == Some(member_id.as_str()) {
                    if req.assignments.iter().any(|a| a.assignment.len() > MAX_MEMBER_METADATA_BYTES) {
                        tracing::warn!(group = %g.id, max = MAX_MEMBER_METADATA_BYTES, "sync refused: an assignment is too large");
                        if let Some(m) = g.members.get_mut(&member_id) {
                            m.sync = None;
                        }
                        return fail(codes::INVALID_REQUEST);
                    }
                    let mut given: HashMap<String, Bytes> =
                        req.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect();
                    for m in g.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                        if let Some(w) = m.sync.take() {
                            let _ = w.tx.send(sync_response(
                                w.version,
                                codes::NONE,
                                ptype.as_deref(),
                                proto.as_deref(),
                                m.assignment.clone(),
                            ));
                        }
                    }
                    g.state = State::Stable;
                    g.deadline = None;
                    tracing::info!(group = %g.id, generation = g.generation, "rebalance complete: assignment distributed");
                }
                Ok(rx)
            }
        }
    }

    fn heartbeat(&self, req: HeartbeatRequest) -> i16 {
        if let Some(code) = self.not_ready() {
            return code;
        }
        let member_id = req.member_id.to_string();
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(req.group_id.as_str()) else { return codes::UNKNOWN_MEMBER_ID };
        let Some(m) = g.members.get_mut(&member_id) else {
            if let Some(i) = req.group_instance_id.as_deref() {
                if g.member_by_instance(i).is_some() {
                    return codes::FENCED_INSTANCE_ID;
                }
            }
            return codes::UNKNOWN_MEMBER_ID;
        };
        if let Some(i) = req.group_instance_id.as_deref() {
            if m.instance_id.as_deref() != Some(i) {
                return codes::FENCED_INSTANCE_ID;
            }
        }
        if req.generation_id != g.generation {
            return codes::ILLEGAL_GENERATION;
        }
        m.last_seen = Instant::now();
        match g.state {
            State::PreparingRebalance => codes::REBALANCE_IN_PROGRESS,
            State::Empty => codes::UNKNOWN_MEMBER_ID,
            State::CompletingRebalance | State::Stable => codes::NONE,
        }
    }

    fn leave(&self, version: i16, req: LeaveGroupRequest) -> (i16, Vec<MemberResponse>) {
        if let Some(code) = self.not_ready() {
            return (code, Vec::new());
        }
        let who: Vec<(String, Option<String>)> = if version >= 3 {
            req.members
                .iter()
                .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|s| s.to_string())))
                .collect()
        } else {
            vec![(req.member_id.to_string(), None)]
        };
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(req.group_id.as_str()) else {
            let per = who
                .iter()
                .map(|(id, inst)| {
                    MemberResponse::default()
                        .with_member_id(sb(id))
                        .with_group_instance_id(inst.as_deref().map(sb))
                        .with_error_code(codes::UNKNOWN_MEMBER_ID)
                })
                .collect();
            return (if version >= 3 { codes::NONE } else { codes::UNKNOWN_MEMBER_ID }, per);
        };
        let now = Instant::now();
        let mut results = Vec::with_capacity(who.len());
        let mut removed = false;
        for (id, instance) in &who {
            let code = match instance {
                Some(i) => match g.member_by_instance(i).map(str::to_string) {
                    None => codes::UNKNOWN_MEMBER_ID,
                    Some(current) if !id.is_empty() && *id != current => codes::FENCED_INSTANCE_ID,
                    Some(current) => {
                        g.remove_member(&current);
                        removed = true;
                        codes::NONE
                    }
                },
                None if g.pending.remove(id).is_some() => {
                    self.pending_count.set(self.pending_count.get().saturating_sub(1));
                    codes::NONE
                }
                None if g.members.contains_key(id) => {
                    g.remove_member(id);
                    removed = true;
                    codes::NONE
                }
                None => codes::UNKNOWN_MEMBER_ID,
            };
            if code == codes::NONE {
                tracing::info!(group = %g.id, member = %id, "member left");
            }
            results.push(
                MemberResponse::default()
                    .with_member_id(sb(id))
                    .with_group_instance_id(instance.as_deref().map(sb))
                    .with_error_code(code),
            );
        }
        if removed {
            g.members_changed(now);
        }
        let top = if version >= 3 { codes::NONE } else { results.first().map(|r| r.error_code).unwrap_or(codes::NONE) };
        (top, results)
    }

    async fn commit(&self, _version: i16, req: OffsetCommitRequest) -> Vec<(String, Vec<(i32, i16)>)> {
        let all = |code: i16, req: &OffsetCommitRequest| -> Vec<(String, Vec<(i32, i16)>)> {
            req.topics
                .iter()
                .map(|t| (t.name.to_string(), t.partitions.iter().map(|p| (p.partition_index, code)).collect()))
                .collect()
        };
        if let Some(code) = self.not_ready() {
            return all(code, &req);
        }
        let group_id = req.group_id.to_string();
        if group_id.is_empty() || group_id.len() > MAX_GROUP_ID_BYTES {
            return all(codes::INVALID_GROUP_ID, &req);
        }
        let member_id = req.member_id.to_string();
        let generation = req.generation_id_or_member_epoch;
        {
            let mut groups = self.groups.borrow_mut();
            let code = match groups.get_mut(&group_id) {
                // Simple consumers (no group membership) store offsets here.
                None if generation < 0 => codes::NONE,
                None => codes::ILLEGAL_GENERATION,
                Some(g) if generation < 0 && g.state == State::Empty => codes::NONE,
                Some(g) if g.state == State::CompletingRebalance => codes::REBALANCE_IN_PROGRESS,
                Some(g) => match g.members.get_mut(&member_id) {
                    None => codes::UNKNOWN_MEMBER_ID,
                    Some(_) if generation != g.generation => codes::ILLEGAL_GENERATION,
                    Some(m)
                        if req.group_instance_id.as_deref().is_some_and(|i| m.instance_id.as_deref() != Some(i)) =>
                    {
                        codes::FENCED_INSTANCE_ID
                    }
                    Some(m) => {
                        m.last_seen = Instant::now();
                        codes::NONE
                    }
                },
            };
            if code != codes::NONE {
                return all(code, &req);
            }
        }
        // Which partitions can be written.
        let now_ms = crate::storage::now_ms();
        let mut results: Vec<(String, Vec<(i32, i16)>)> = Vec::with_capacity(req.topics.len());
        let mut records = Vec::new();
        for t in &req.topics {
            let topic = t.name.to_string();
            let mut parts = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                let metadata = p.committed_metadata.as_ref().map(|m| m.to_string());
                let code = if metadata.as_ref().is_some_and(|m| m.len() > MAX_METADATA_BYTES) {
                    codes::OFFSET_METADATA_TOO_LARGE
                } else if topic.is_empty() || topic.len() > u16::MAX as usize || p.partition_index < 0 {
                    codes::UNKNOWN_TOPIC_OR_PARTITION
                } else {
                    records.push(OffsetRecord::Commit {
                        group: group_id.clone(),
                        topic: topic.clone(),
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata,
                        commit_ms: now_ms,
                    });
                    codes::NONE
                };
                parts.push((p.partition_index, code));
            }
            results.push((topic, parts));
        }
        if records.is_empty() {
            return results;
        }
        let failed = match self.admit(&group_id, &records) {
            Err(code) => code,
            Ok(reserved) => {
                let written = self.write(&group_id, &records).await;
                // Admitted: the group is still here (`writes_in_flight`).
                if let Some(g) = self.groups.borrow_mut().get_mut(&group_id) {
                    g.writes_in_flight = g.writes_in_flight.saturating_sub(1);
                }
                self.reserved_offsets.set(self.reserved_offsets.get().saturating_sub(reserved));
                match written {
                    Ok(seq) => {
                        for r in records {
                            self.apply(r, seq);
                        }
                        codes::NONE
                    }
                    Err(e) => {
                        tracing::warn!(group = %group_id, error = %e, "offset commit failed");
                        store_error_code(&e)
                    }
                }
            }
        };
        if failed != codes::NONE {
            for (_, parts) in results.iter_mut() {
                for (_, code) in parts.iter_mut() {
                    if *code == codes::NONE {
                        *code = failed;
                    }
                }
            }
        }
        results
    }

    /// Checks the shard's caps for a commit before it is written, and
    /// reserves what it adds: the group (created now), and its new offsets
    /// (the count returned, to give back once applied). A refused commit is
    /// not written, so it cannot come back at the next start.
    fn admit(&self, group_id: &str, records: &[OffsetRecord]) -> Result<usize, i16> {
        let mut groups = self.groups.borrow_mut();
        let created = !groups.contains_key(group_id);
        if created {
            if groups.len() >= self.limits.max_groups {
                tracing::warn!(group = %group_id, max = self.limits.max_groups, "too many groups on this shard; offset commit refused");
                return Err(codes::INVALID_COMMIT_OFFSET_SIZE);
            }
            groups.insert(group_id.to_string(), Group::new(group_id));
        }
        let Some(g) = groups.get_mut(group_id) else { return Err(codes::UNKNOWN_SERVER_ERROR) };
        // Offsets this commit adds (two commits adding the same one both
        // reserve it: the cap errs on the safe side while they are written).
        let new_keys: HashSet<(&str, i32)> = records
            .iter()
            .filter_map(|r| match r {
                OffsetRecord::Commit { topic, partition, .. }
                    if !g.offsets.contains_key(&(topic.clone(), *partition)) =>
                {
                    Some((topic.as_str(), *partition))
                }
                _ => None,
            })
            .collect();
        let wanted = new_keys.len();
        if wanted > 0 && self.offsets_count.get() + self.reserved_offsets.get() + wanted > self.limits.max_offsets {
            tracing::warn!(group = %group_id, offsets = self.offsets_count.get(), new = wanted, max = self.limits.max_offsets, "too many committed offsets on this shard; offset commit refused");
            if created {
                groups.remove(group_id);
            }
            return Err(codes::INVALID_COMMIT_OFFSET_SIZE);
        }
        g.writes_in_flight += 1;
        self.reserved_offsets.set(self.reserved_offsets.get() + wanted);
        Ok(wanted)
    }

    fn next_seq(&self) -> u64 {
        let seq = self.commit_seq.get() + 1;
        self.commit_seq.set(seq);
        seq
    }

    /// Appends records to the group's offsets log and waits until they are
    /// durable; returns their sequence. The caller applies them to memory
    /// afterwards.
    async fn write(&self, group: &str, records: &[OffsetRecord]) -> Result<u64, StoreError> {
        let log = self.log_for(offsets_partition(group)).await?;
        let bytes = store::encode(records, crate::storage::now_ms())?;
        // No await from here until the append has queued the records (it
        // serves waiting appends in arrival order): sequences follow log order.
        let seq = self.next_seq();
        self.in_flight.borrow_mut().insert(seq, records.to_vec());
        let result = log.append(bytes, AckWait::Commit).await;
        self.in_flight.borrow_mut().remove(&seq);
        result?;
        Ok(seq)
    }

    /// Offsets log `p`, created if it does not exist yet.
    async fn log_for(&self, p: i32) -> Result<Rc<PartitionLog>, StoreError> {
        let closed = || StoreError::Storage(crate::storage::StorageError::Closed);
        if let Some(log) = self.logs.borrow().get(&p).cloned() {
            return Ok(log);
        }
        let _permit = self.creating.acquire_permit(1).await.map_err(|_| closed())?;
        if let Some(log) = self.logs.borrow().get(&p).cloned() {
            return Ok(log);
        }
        if self.stopping.get() {
            return Err(closed());
        }
        let (dir, base) = self.storage.borrow().clone().ok_or_else(closed)?;
        let log = store::open(&dir, p, &base).await?;
        // The new directories must survive a crash with the commits in them.
        crate::storage::segment::sync_dir(&dir.join(OFFSETS_TOPIC)).await?;
        crate::storage::segment::sync_dir(&dir).await?;
        self.logs.borrow_mut().insert(p, log.clone());
        Ok(log)
    }

    /// Offsets logs whose sealed segments grew past the compaction threshold.
    fn logs_to_compact(&self) -> Vec<i32> {
        let logs = self.logs.borrow();
        let compacting = self.compacting.borrow();
        let snapshots = self.snapshot_bytes.borrow();
        let lossy = self.lossy.borrow();
        logs.iter()
            .filter(|(p, log)| {
                let sealed_bytes = log.sealed_segments() as u64 * store::SEGMENT_BYTES;
                !compacting.contains(p)
                    && !lossy.contains(p)
                    && sealed_bytes >= COMPACT_AFTER_BYTES + 2 * snapshots.get(p).copied().unwrap_or(0)
            })
            .map(|(p, _)| *p)
            .collect()
    }

    /// The state log `p` gives once the records queued so far are applied:
    /// memory, plus the appended records not applied yet (by sequence, so
    /// an older one applied late does not win over a newer one applied).
    fn snapshot(&self, p: i32, now_ms: i64) -> Vec<OffsetRecord> {
        let groups = self.groups.borrow();
        let mut live: BTreeMap<(String, String, i32), (u64, OffsetRecord)> = BTreeMap::new();
        for g in groups.values().filter(|g| offsets_partition(&g.id) == p) {
            for ((t, part), c) in &g.offsets {
                let rec = OffsetRecord::Commit {
                    group: g.id.clone(),
                    topic: t.clone(),
                    partition: *part,
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.clone(),
                    commit_ms: now_ms,
                };
                live.insert((g.id.clone(), t.clone(), *part), (c.seq, rec));
            }
        }
        for (&seq, recs) in self.in_flight.borrow().iter() {
            for r in recs {
                match r {
                    OffsetRecord::Commit { group, topic, partition, .. } if offsets_partition(group) == p => {
                        if groups.get(group).is_some_and(|g| seq < g.deleted_seq) {
                            continue;
                        }
                        let key = (group.clone(), topic.clone(), *partition);
                        if live.get(&key).is_none_or(|(s, _)| *s <= seq) {
                            live.insert(key, (seq, r.clone()));
                        }
                    }
                    OffsetRecord::GroupDeleted { group } if offsets_partition(group) == p => {
                        live.retain(|(g, _, _), (s, _)| g != group || *s > seq)
                    }
                    _ => {}
                }
            }
        }
        live.into_values().map(|(_, r)| r).collect()
    }

    /// Writes every live offset of log `p` again (one append whose offsets
    /// are assigned before any other commit can interleave), then deletes
    /// the segments before it: replaying the log still gives the same state.
    /// A log whose replay was lossy is left alone: memory is not all of it.
    async fn compact(&self, p: i32) {
        let Some(log) = self.logs.borrow().get(&p).cloned() else { return };
        // Queued appends could make ours wait (back-pressure) and let a newer
        // commit slip in before the snapshot: try again on a later sweep.
        if log.pending_bytes() > 0 || self.stopping.get() || self.lossy.borrow().contains(&p) {
            return;
        }
        self.compacting.borrow_mut().insert(p);
        let now_ms = crate::storage::now_ms();
        let records = self.snapshot(p, now_ms);
        let result = async {
            let start = log.offsets().log_end_offset;
            let mut written = 0u64;
            if !records.is_empty() {
                let bytes = store::encode(&records, now_ms)?;
                written = bytes.len() as u64;
                if bytes.len() > store::PENDING_MAX_BYTES {
                    tracing::warn!(
                        partition = p,
                        bytes = bytes.len(),
                        "offsets log too large to compact in one write; left as is"
                    );
                    return Ok((0, written));
                }
                log.append(bytes, AckWait::Commit).await?;
            }
            let deleted = log.delete_segments_below(start).await?;
            Ok::<_, StoreError>((deleted, written))
        }
        .await;
        match result {
            Ok((deleted, written)) => {
                tracing::info!(
                    partition = p,
                    offsets = records.len(),
                    bytes = written,
                    segments_deleted = deleted,
                    "compacted consumer offsets log"
                );
                self.snapshot_bytes.borrow_mut().insert(p, written);
            }
            Err(e) => tracing::warn!(partition = p, error = %e, "compacting consumer offsets log failed"),
        }
        self.compacting.borrow_mut().remove(&p);
    }

    fn fetch(&self, group: &str, topics: Option<Vec<(String, Vec<i32>)>>) -> (i16, Vec<(String, Vec<FetchedOffset>)>) {
        if let Some(code) = self.not_ready() {
            return (code, Vec::new());
        }
        let groups = self.groups.borrow();
        let g = groups.get(group);
        let lookup = |t: &str, p: i32| -> FetchedOffset {
            match g.and_then(|g| g.offsets.get(&(t.to_string(), p))) {
                Some(c) => FetchedOffset {
                    partition: p,
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.clone(),
                },
                None => FetchedOffset { partition: p, offset: -1, leader_epoch: -1, metadata: Some(String::new()) },
            }
        };
        let out = match topics {
            Some(ts) => ts
                .into_iter()
                .map(|(t, ps)| {
                    let fetched = ps.into_iter().map(|p| lookup(&t, p)).collect();
                    (t, fetched)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<FetchedOffset>> = BTreeMap::new();
                if let Some(g) = g {
                    for ((t, p), c) in &g.offsets {
                        by_topic.entry(t.clone()).or_default().push(FetchedOffset {
                            partition: *p,
                            offset: c.offset,
                            leader_epoch: c.leader_epoch,
                            metadata: c.metadata.clone(),
                        });
                    }
                }
                by_topic.into_iter().collect()
            }
        };
        (codes::NONE, out)
    }

    fn describe(&self, version: i16, group: &str) -> DescribedGroup {
        let base = DescribedGroup::default().with_group_id(GroupId(sb(group)));
        if let Some(code) = self.not_ready() {
            return base.with_error_code(code);
        }
        let groups = self.groups.borrow();
        let Some(g) = groups.get(group) else {
            return base.with_group_state(sb("Dead"));
        };
        let protocol = g.protocol.clone().unwrap_or_default();
        let stable = g.state == State::Stable;
        let members = g
            .members
            .values()
            .map(|m| {
                DescribedGroupMember::default()
                    .with_member_id(sb(&m.id))
                    .with_group_instance_id(if version >= 4 { m.instance_id.as_deref().map(sb) } else { None })
                    .with_client_id(sb(&m.client_id))
                    .with_client_host(sb(""))
                    .with_member_metadata(if stable { m.metadata_for(&protocol) } else { Bytes::new() })
                    .with_member_assignment(if stable { m.assignment.clone() } else { Bytes::new() })
            })
            .collect();
        base.with_group_state(sb(g.state.name()))
            .with_protocol_type(sb(g.protocol_type.as_deref().unwrap_or("")))
            .with_protocol_data(sb(if stable { &protocol } else { "" }))
            .with_members(members)
    }

    fn list(&self, states: &[String]) -> (i16, Vec<(String, String, &'static str)>) {
        if let Some(code) = self.not_ready() {
            return (code, Vec::new());
        }
        let groups = self.groups.borrow();
        let mut out: Vec<(String, String, &'static str)> = groups
            .values()
            .filter(|g| states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(g.state.name())))
            .map(|g| (g.id.clone(), g.protocol_type.clone().unwrap_or_default(), g.state.name()))
            .collect();
        out.sort();
        (codes::NONE, out)
    }

    async fn delete(&self, group: &str) -> i16 {
        if let Some(code) = self.not_ready() {
            return code;
        }
        {
            let groups = self.groups.borrow();
            match groups.get(group) {
                None => return codes::GROUP_ID_NOT_FOUND,
                Some(g) if !g.members.is_empty() => return codes::NON_EMPTY_GROUP,
                Some(_) => {}
            }
        }
        let rec = OffsetRecord::GroupDeleted { group: group.to_string() };
        let seq = match self.write(group, std::slice::from_ref(&rec)).await {
            Ok(seq) => seq,
            Err(e) => {
                tracing::warn!(group, error = %e, "deleting group failed");
                return store_error_code(&e);
            }
        };
        // The tombstone forgets what precedes it in the log, no more: a
        // commit written after it stays, as replay keeps it. A member that
        // joined while it was written keeps the group.
        self.apply(rec, seq);
        tracing::info!(group, "group deleted");
        codes::NONE
    }
}

#[cfg(test)]
mod tests;
