//! One consumer group's state machine, as Kafka's GroupCoordinator: Empty →
//! PreparingRebalance (joins gathered until every known member rejoined, or
//! the rebalance timeout; the first rebalance of an empty group also waits
//! the initial delay) → CompletingRebalance (joins answered, the leader's
//! assignment awaited) → Stable. Members leaving or expiring send the group
//! back to PreparingRebalance, or to Empty when none is left. Every state
//! change goes through `set_state`, which refuses a transition Kafka's
//! coordinator would not make.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use indexmap::IndexMap;

use super::api::{GroupError, JoinOutcome, JoinReply, Joined, JoinedMember, SyncReply, Synced};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    pub(super) fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }

    fn may_become(self, next: State) -> bool {
        use State::*;
        matches!(
            (self, next),
            (Empty, PreparingRebalance)
                | (PreparingRebalance, CompletingRebalance | Empty)
                | (CompletingRebalance, Stable | PreparingRebalance | Empty)
                | (Stable, PreparingRebalance | Empty)
        )
    }
}

pub(super) struct Member {
    pub(super) id: String,
    pub(super) instance_id: Option<String>,
    pub(super) client_id: String,
    /// (name, metadata), in the member's order of preference.
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) session_timeout: Duration,
    pub(super) rebalance_timeout: Duration,
    pub(super) last_seen: Instant,
    pub(super) assignment: Bytes,
    /// Its JoinGroup, waiting for the end of the join phase.
    pub(super) join: Option<JoinReply>,
    /// Its SyncGroup, waiting for the leader's assignment.
    pub(super) sync: Option<SyncReply>,
}

impl Member {
    pub(super) fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(n, _)| n == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub(super) struct Committed {
    pub(super) offset: i64,
    pub(super) leader_epoch: i32,
    pub(super) metadata: Option<String>,
    /// Order of the commit that wrote it: a commit that finishes later but
    /// started earlier does not overwrite a newer value.
    pub(super) seq: u64,
}

pub(super) struct Group {
    pub(super) id: String,
    pub(super) state: State,
    pub(super) generation: i32,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol: Option<String>,
    pub(super) leader: Option<String>,
    pub(super) members: IndexMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, valid until this instant.
    pub(super) pending: HashMap<String, Instant>,
    /// End of the join phase (PreparingRebalance) or of the sync phase
    /// (CompletingRebalance).
    pub(super) deadline: Option<Instant>,
    /// The first rebalance of an empty group waits for more members until then.
    pub(super) initial_delay_until: Option<Instant>,
    pub(super) offsets: BTreeMap<(String, i32), Committed>,
    /// Commits of this group admitted (caps checked) and not yet applied:
    /// the group stays in memory until they are.
    pub(super) writes_in_flight: usize,
    /// Sequence of the last tombstone applied: a commit with a lower
    /// sequence precedes it in the log, so replay forgets it; memory too.
    pub(super) deleted_seq: u64,
}

impl Group {
    pub(super) fn new(id: &str) -> Group {
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

    fn set_state(&mut self, next: State) {
        assert!(self.state.may_become(next), "group {}: {} cannot become {}", self.id, self.state.name(), next.name());
        self.state = next;
    }

    /// A new generation: members of an older one are told ILLEGAL_GENERATION.
    fn next_generation(&mut self) {
        let previous = self.generation;
        self.generation = previous.wrapping_add(1);
        // Monotonic, but for the wrap after 2^31 generations (as in Kafka).
        assert!(self.generation > previous || previous == i32::MAX);
    }

    /// Nothing is emptier: no members, offsets, pending ids or writes.
    pub(super) fn is_unused(&self) -> bool {
        self.state == State::Empty
            && self.members.is_empty()
            && self.offsets.is_empty()
            && self.pending.is_empty()
            && self.writes_in_flight == 0
    }

    pub(super) fn member_by_instance(&self, instance: &str) -> Option<&str> {
        self.members.values().find(|m| m.instance_id.as_deref() == Some(instance)).map(|m| m.id.as_str())
    }

    /// Protocols every member supports, in `first`'s order of preference.
    pub(super) fn common_protocols(&self, extra: Option<&[(String, Bytes)]>) -> Vec<String> {
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
    pub(super) fn prepare_rebalance(&mut self, now: Instant, initial_delay: Duration) {
        if self.state == State::CompletingRebalance {
            for m in self.members.values_mut() {
                if let Some(reply) = m.sync.take() {
                    reply(Err(GroupError::RebalanceInProgress));
                }
            }
        }
        if self.state == State::PreparingRebalance {
            return;
        }
        let was_empty = self.state == State::Empty;
        self.set_state(State::PreparingRebalance);
        let timeout = self.max_rebalance_timeout();
        self.deadline = Some(now + timeout);
        self.initial_delay_until = (was_empty && !initial_delay.is_zero()).then(|| now + initial_delay.min(timeout));
        tracing::debug!(group = %self.id, generation = self.generation, "rebalance started");
    }

    pub(super) fn remove_member(&mut self, id: &str) {
        if let Some(m) = self.members.shift_remove(id) {
            // Dropping the waiters answers them (UNKNOWN_MEMBER_ID / REBALANCE_IN_PROGRESS).
            drop(m);
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    /// A static member came back under a new member id: its old id is
    /// fenced (waiters answered FENCED_INSTANCE_ID), its place kept.
    pub(super) fn replace_static_member(&mut self, old: &str, new_id: String) {
        tracing::info!(group = %self.id, old = %old, new = %new_id, "static member rejoined; replacing its old member id");
        if let Some(mut m) = self.members.shift_remove(old) {
            if let Some(reply) = m.join.take() {
                reply(JoinOutcome::Failed { error: GroupError::FencedInstance, member_id: old.to_string() });
            }
            if let Some(reply) = m.sync.take() {
                reply(Err(GroupError::FencedInstance));
            }
            if self.leader.as_deref() == Some(old) {
                self.leader = Some(new_id.clone());
            }
            m.id = new_id.clone();
            self.members.insert(new_id, m);
        }
    }

    /// After members left or expired: rebalance the rest, or become Empty.
    pub(super) fn members_changed(&mut self, now: Instant) {
        if self.members.is_empty() {
            if self.state != State::Empty {
                self.set_state(State::Empty);
                self.next_generation();
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
    pub(super) fn maybe_complete_join(&mut self, now: Instant, deadline_passed: bool) {
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
        self.next_generation();
        if self.members.is_empty() {
            self.set_state(State::Empty);
            self.protocol = None;
            self.leader = None;
            self.deadline = None;
            return;
        }
        self.protocol = self.select_protocol();
        if self.leader.as_ref().is_none_or(|l| !self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(State::CompletingRebalance);
        self.deadline = Some(now + self.max_rebalance_timeout());
        self.answer_joins(now);
    }

    /// The join phase is over: every waiting join learns the new generation
    /// (the leader with every member's metadata).
    fn answer_joins(&mut self, now: Instant) {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let all = self.joined_members(&protocol);
        tracing::info!(group = %self.id, generation = self.generation, members = all.len(), protocol = %protocol, leader = %leader, "rebalance: join phase complete");
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let members = if id == leader { all.clone() } else { Vec::new() };
            let joined = self.joined(&id, Some(protocol.clone()), members);
            if let Some(m) = self.members.get_mut(&id) {
                m.last_seen = now;
                m.assignment = Bytes::new();
                if let Some(reply) = m.join.take() {
                    reply(JoinOutcome::Joined(Box::new(joined)));
                }
            }
        }
        debug_assert!(self.members.values().all(|m| m.join.is_none()), "a join left waiting");
        assert!(self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)), "the leader is a member");
    }

    /// Every member's metadata for `protocol`, as the leader gets it.
    pub(super) fn joined_members(&self, protocol: &str) -> Vec<JoinedMember> {
        self.members
            .values()
            .map(|m| JoinedMember {
                id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata_for(protocol),
            })
            .collect()
    }

    /// What member `id` is told of the current generation.
    pub(super) fn joined(&self, id: &str, protocol: Option<String>, members: Vec<JoinedMember>) -> Joined {
        Joined {
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol,
            leader: self.leader.clone().unwrap_or_default(),
            member_id: id.to_string(),
            members,
        }
    }

    /// The leader's assignment: each member gets its part (its waiting
    /// sync is answered) and the group is Stable.
    pub(super) fn distribute(&mut self, assignments: Vec<(String, Bytes)>) {
        let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
        let (protocol_type, protocol) = (self.protocol_type.clone(), self.protocol.clone());
        for m in self.members.values_mut() {
            m.assignment = given.remove(&m.id).unwrap_or_default();
            if let Some(reply) = m.sync.take() {
                reply(Ok(Synced {
                    protocol_type: protocol_type.clone(),
                    protocol: protocol.clone(),
                    assignment: m.assignment.clone(),
                }));
            }
        }
        self.set_state(State::Stable);
        self.deadline = None;
        tracing::info!(group = %self.id, generation = self.generation, "rebalance complete: assignment distributed");
        debug_assert!(self.members.values().all(|m| m.sync.is_none() && m.join.is_none()), "a call left waiting");
    }
}
