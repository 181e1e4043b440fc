//! What the coordinator is asked and what it answers, in its own terms (no
//! protocol types): `kafka::groups` decodes Kafka requests into these and
//! encodes the answers, and the error codes, for the version the client
//! asked. Every type here is owned and `Send`: calls and answers travel
//! between shards.

use std::sync::Arc;

use bytes::Bytes;

use super::store::StoreError;

/// Why a group operation was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GroupError {
    #[error("the coordinator is stopping")]
    NotAvailable,
    #[error("the coordinator is still loading the committed offsets")]
    Loading,
    #[error("empty or overlong group id")]
    InvalidGroupId,
    #[error("session timeout out of range")]
    InvalidSessionTimeout,
    #[error("no protocol type or no protocol the group's members all support")]
    InconsistentProtocol,
    #[error("protocol metadata or an assignment over the size limit")]
    MemberDataTooLarge,
    #[error("unknown member id")]
    UnknownMember,
    #[error("the static member's instance id belongs to another member id")]
    FencedInstance,
    #[error("not the group's current generation")]
    IllegalGeneration,
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    #[error("no room for one more member")]
    GroupFull,
    #[error("too many groups on this shard")]
    TooManyGroups,
    #[error("too many committed offsets on this shard")]
    TooManyOffsets,
    #[error("commit metadata over the size limit")]
    OffsetMetadataTooLarge,
    #[error("empty or overlong topic name, or a negative partition")]
    InvalidPartition,
    #[error("no such group")]
    GroupNotFound,
    #[error("the group has members")]
    NotEmpty,
    /// Shared: one failed write fails every offset it carried.
    #[error("writing the offsets log: {0}")]
    Store(Arc<StoreError>),
}

impl From<StoreError> for GroupError {
    fn from(e: StoreError) -> GroupError {
        GroupError::Store(Arc::new(e))
    }
}

/// A member joining (or rejoining) a group.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty for a member joining for the first time.
    pub member_id: String,
    /// Static membership: the same instance keeps its place across restarts.
    pub instance_id: Option<String>,
    pub client_id: String,
    pub protocol_type: String,
    /// (name, metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout_ms: i32,
    /// At most 0: the session timeout.
    pub rebalance_timeout_ms: i32,
    /// A new member without a member id is given one and must join again
    /// with it before it counts (KIP-394).
    pub member_id_required: bool,
}

/// A join that ended with the member in the new generation.
#[derive(Debug, Clone)]
pub struct Joined {
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member's metadata for the protocol chosen: for the leader only.
    pub members: Vec<JoinedMember>,
}

#[derive(Debug, Clone)]
pub struct JoinedMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug)]
pub enum JoinOutcome {
    /// Boxed: far larger than the other outcomes.
    Joined(Box<Joined>),
    /// Join again with this member id (KIP-394).
    MemberIdRequired(String),
    Failed {
        error: GroupError,
        member_id: String,
    },
}

/// Where a join waiting for the end of the join phase is answered. Dropped
/// unanswered when the member is removed first (left, expired, fenced).
pub type JoinReply = Box<dyn FnOnce(JoinOutcome)>;

/// A member asking for its assignment; the leader brings everyone's.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    /// Checked against the group's when given.
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    /// From the leader: (member id, assignment).
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone)]
pub struct Synced {
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

pub type SyncOutcome = Result<Synced, GroupError>;

/// Where a sync waiting for the leader's assignment is answered. Dropped
/// unanswered when the member is removed first.
pub type SyncReply = Box<dyn FnOnce(SyncOutcome)>;

#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
}

#[derive(Debug, Clone)]
pub struct LeaveRequest {
    pub group_id: String,
    pub members: Vec<LeavingMember>,
}

#[derive(Debug, Clone)]
pub struct LeavingMember {
    /// May be empty when `instance_id` names the member.
    pub member_id: String,
    pub instance_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct MemberLeft {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub result: Result<(), GroupError>,
}

#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    /// Negative: a consumer outside the group's membership (simple consumer).
    pub generation: i32,
    pub topics: Vec<(String, Vec<CommitPartition>)>,
}

#[derive(Debug, Clone)]
pub struct CommitPartition {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// Per topic, per partition: committed, or why not.
pub type CommitOutcome = Vec<(String, Vec<(i32, Result<(), GroupError>)>)>;

/// A committed offset as OffsetFetch answers it.
#[derive(Debug, Clone)]
pub struct FetchedOffset {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: &'static str,
    pub protocol_type: String,
    /// Empty unless the group is Stable.
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    /// Empty unless the group is Stable.
    pub metadata: Bytes,
    /// Empty unless the group is Stable.
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListedGroup {
    pub id: String,
    pub protocol_type: String,
    pub state: &'static str,
}

/// A shard's consumer group gauges, for the metrics endpoint.
#[derive(Debug, Clone, Copy, Default)]
pub struct GroupGauges {
    pub groups: u64,
    pub members: u64,
    pub committed_offsets: u64,
}

/// One group operation: it travels to the group's shard.
#[derive(Debug)]
pub enum GroupCall {
    Join(JoinRequest),
    Sync(SyncRequest),
    Heartbeat(Heartbeat),
    Leave(LeaveRequest),
    Commit(CommitRequest),
    /// `topics` None: every committed offset of the group.
    Fetch {
        group: String,
        topics: Option<Vec<(String, Vec<i32>)>>,
    },
    Describe {
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

/// The answer to a `GroupCall`, by variant.
#[derive(Debug)]
pub enum GroupAnswer {
    Join(JoinOutcome),
    Sync(SyncOutcome),
    Heartbeat(Result<(), GroupError>),
    Leave(Result<Vec<MemberLeft>, GroupError>),
    Commit(CommitOutcome),
    Fetch(Result<Vec<(String, Vec<FetchedOffset>)>, GroupError>),
    Describe(Result<GroupDescription, GroupError>),
    List(Result<Vec<ListedGroup>, GroupError>),
    Delete(Result<(), GroupError>),
}
