//! Membership calls on the coordinator: join (in named steps: checks, the
//! group, who is joining, the member's record, what the group does next),
//! sync, heartbeat, leave, and the read-only describe and list.

use std::time::{Duration, Instant};

use futures_channel::oneshot;

use super::api::{
    GroupDescription, GroupError, Heartbeat, JoinOutcome, JoinReply, JoinRequest, LeaveRequest, ListedGroup,
    MemberDescription, MemberLeft, SyncOutcome, SyncReply, SyncRequest, Synced,
};
use super::group::{Group, Member, State};
use super::{
    Coordinator, MAX_GROUP_ID_BYTES, MAX_MEMBERS_PER_GROUP, MAX_MEMBER_METADATA_BYTES, MAX_PENDING_MEMBERS_PER_GROUP,
    MAX_SESSION_TIMEOUT_MS, MIN_SESSION_TIMEOUT_MS,
};

/// A join's timeouts, once checked.
#[derive(Clone, Copy)]
struct Timeouts {
    session: Duration,
    rebalance: Duration,
}

/// The checks a join passes before the group is looked at.
fn check_join(req: &JoinRequest) -> Result<Timeouts, GroupError> {
    if req.group_id.is_empty() || req.group_id.len() > MAX_GROUP_ID_BYTES {
        return Err(GroupError::InvalidGroupId);
    }
    if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&req.session_timeout_ms) {
        return Err(GroupError::InvalidSessionTimeout);
    }
    if req.protocol_type.is_empty() || req.protocols.is_empty() {
        return Err(GroupError::InconsistentProtocol);
    }
    if req.protocols.iter().map(|(n, m)| n.len() + m.len()).sum::<usize>() > MAX_MEMBER_METADATA_BYTES {
        tracing::warn!(group = %req.group_id, max = MAX_MEMBER_METADATA_BYTES, "join refused: protocol metadata too large");
        return Err(GroupError::MemberDataTooLarge);
    }
    let session = Duration::from_millis(req.session_timeout_ms as u64);
    let rebalance =
        if req.rebalance_timeout_ms <= 0 { session } else { Duration::from_millis(req.rebalance_timeout_ms as u64) };
    Ok(Timeouts { session, rebalance })
}

impl Coordinator {
    fn new_member_id(client_id: &str, instance: Option<&str>) -> String {
        let prefix = instance.unwrap_or(client_id);
        let prefix: String = prefix.chars().take(64).collect();
        format!("{prefix}-{}", uuid::Uuid::new_v4())
    }

    /// JoinGroup, to its end: answered when the join phase ends.
    pub(crate) async fn join_group(&self, req: JoinRequest) -> JoinOutcome {
        let member_id = req.member_id.clone();
        let (tx, rx) = oneshot::channel();
        let reply: JoinReply = Box::new(move |outcome| {
            let _ = tx.send(outcome);
        });
        if let Some(outcome) = self.begin_join(req, reply) {
            return outcome;
        }
        // The member was removed (left, fenced, group deleted) while waiting.
        rx.await.unwrap_or(JoinOutcome::Failed { error: GroupError::UnknownMember, member_id })
    }

    /// The synchronous part of a join: the outcome when it is known at once
    /// (`reply` is dropped), else None and `reply` is given the outcome when
    /// the join phase ends.
    pub(crate) fn begin_join(&self, req: JoinRequest, reply: JoinReply) -> Option<JoinOutcome> {
        let fail = |error: GroupError| Some(JoinOutcome::Failed { error, member_id: req.member_id.clone() });
        if let Err(e) = self.ready() {
            return fail(e);
        }
        let timeouts = match check_join(&req) {
            Ok(t) => t,
            Err(e) => return fail(e),
        };
        let now = Instant::now();
        let mut groups = self.groups.borrow_mut();
        let created = !groups.contains_key(&req.group_id);
        if created && groups.len() >= self.limits.max_groups {
            tracing::warn!(group = %req.group_id, max = self.limits.max_groups, "too many groups on this shard; join refused");
            return fail(GroupError::TooManyGroups);
        }
        if created && !req.member_id.is_empty() {
            return fail(GroupError::UnknownMember);
        }
        let g = groups.entry(req.group_id.clone()).or_insert_with(|| Group::new(&req.group_id));
        if !g.members.is_empty()
            && (g.protocol_type.as_deref().is_some_and(|t| t != req.protocol_type)
                || g.common_protocols(Some(&req.protocols)).is_empty())
        {
            return fail(GroupError::InconsistentProtocol);
        }
        let id = match self.joining_member(g, &req, timeouts.session, now) {
            Ok(id) => id,
            Err(outcome) => return Some(outcome),
        };
        let known = g.members.contains_key(&id);
        let changed = upsert_member(g, &id, req, timeouts, now, reply);
        self.after_join(g, &id, known, changed, timeouts.rebalance, now);
        None
    }

    /// Who is joining: a known member rejoining, a static member back under
    /// a new id, or a new member (given an id first when it must ask again).
    fn joining_member(
        &self,
        g: &mut Group,
        req: &JoinRequest,
        session: Duration,
        now: Instant,
    ) -> Result<String, JoinOutcome> {
        let fail = |error: GroupError| Err(JoinOutcome::Failed { error, member_id: req.member_id.clone() });
        let member_id = &req.member_id;
        let instance = req.instance_id.as_deref();
        let existing_static = instance.and_then(|i| g.member_by_instance(i)).map(str::to_string);
        if !member_id.is_empty() && !g.pending.contains_key(member_id) {
            if !g.members.contains_key(member_id) {
                return fail(GroupError::UnknownMember);
            }
            if let Some(other) = existing_static.filter(|o| o != member_id) {
                tracing::debug!(group = %g.id, member = %member_id, current = %other, "fenced static member");
                return fail(GroupError::FencedInstance);
            }
            return Ok(member_id.clone());
        }
        if let Some(old) = existing_static {
            let new_id = Self::new_member_id(&req.client_id, instance);
            g.replace_static_member(&old, new_id.clone());
            return Ok(new_id);
        }
        if member_id.is_empty() && req.member_id_required && instance.is_none() {
            return Err(self.hand_out_member_id(g, &req.client_id, session, now));
        }
        if g.members.len() >= MAX_MEMBERS_PER_GROUP {
            return fail(GroupError::GroupFull);
        }
        if g.pending.remove(member_id).is_some() {
            self.forget_pending(1);
        }
        Ok(if member_id.is_empty() { Self::new_member_id(&req.client_id, instance) } else { member_id.clone() })
    }

    /// KIP-394: a new member is given an id to join again with, valid for
    /// its session timeout, within the group's and the shard's caps.
    fn hand_out_member_id(&self, g: &mut Group, client_id: &str, session: Duration, now: Instant) -> JoinOutcome {
        let full = JoinOutcome::Failed { error: GroupError::GroupFull, member_id: String::new() };
        if g.pending.len() >= MAX_PENDING_MEMBERS_PER_GROUP {
            return full;
        }
        if self.pending_count.get() >= self.limits.max_pending_members {
            tracing::warn!(group = %g.id, max = self.limits.max_pending_members, "too many pending member ids on this shard; join refused");
            return full;
        }
        let new_id = Self::new_member_id(client_id, None);
        g.pending.insert(new_id.clone(), now + session);
        self.pending_count.set(self.pending_count.get() + 1);
        assert!(
            g.pending.len() <= MAX_PENDING_MEMBERS_PER_GROUP
                && self.pending_count.get() <= self.limits.max_pending_members
        );
        JoinOutcome::MemberIdRequired(new_id)
    }

    /// Gives back `n` pending member ids of the shard's count.
    pub(super) fn forget_pending(&self, n: usize) {
        assert!(self.pending_count.get() >= n, "more pending member ids forgotten than handed out");
        self.pending_count.set(self.pending_count.get() - n);
    }

    /// What the group does once member `id` joined: wait for the others, or
    /// answer at once with the current generation, or start a rebalance.
    fn after_join(&self, g: &mut Group, id: &str, known: bool, changed: bool, rebalance: Duration, now: Instant) {
        let is_leader = g.leader.as_deref() == Some(id);
        match g.state {
            State::PreparingRebalance => {
                // A new member extends the initial delay (bounded by the rebalance timeout).
                if !known {
                    if let (Some(until), Some(deadline)) = (g.initial_delay_until, g.deadline) {
                        g.initial_delay_until =
                            Some((until.max(now + self.initial_delay.min(rebalance))).min(deadline));
                    }
                    if let Some(d) = g.deadline {
                        g.deadline = Some(d.max(now + rebalance));
                    }
                }
                g.maybe_complete_join(now, false);
            }
            State::CompletingRebalance | State::Stable
                if known && !changed && !(g.state == State::Stable && is_leader) =>
            {
                // A rejoin that changes nothing: the current generation.
                let protocol = g.protocol.clone();
                let members = if is_leader { g.joined_members(protocol.as_deref().unwrap_or("")) } else { Vec::new() };
                let joined = g.joined(id, protocol, members);
                if let Some(reply) = g.members.get_mut(id).and_then(|m| m.join.take()) {
                    reply(JoinOutcome::Joined(Box::new(joined)));
                }
            }
            _ => {
                g.prepare_rebalance(now, self.initial_delay);
                g.maybe_complete_join(now, false);
            }
        }
        debug_assert!(
            g.state == State::PreparingRebalance || g.members.values().all(|m| m.join.is_none()),
            "a join waits outside the join phase"
        );
    }

    /// SyncGroup, to its end: the leader's assignment, when it comes.
    pub(crate) async fn sync_group(&self, req: SyncRequest) -> SyncOutcome {
        let (tx, rx) = oneshot::channel();
        let reply: SyncReply = Box::new(move |outcome| {
            let _ = tx.send(outcome);
        });
        if let Some(outcome) = self.begin_sync(req, reply) {
            return outcome;
        }
        rx.await.unwrap_or(Err(GroupError::RebalanceInProgress))
    }

    /// The synchronous part of a sync: the outcome when it is known at once
    /// (`reply` is dropped), else None and `reply` is given the member's
    /// assignment when the leader's arrives.
    pub(crate) fn begin_sync(&self, req: SyncRequest, reply: SyncReply) -> Option<SyncOutcome> {
        if let Err(e) = self.ready() {
            return Some(Err(e));
        }
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(&req.group_id) else { return Some(Err(GroupError::UnknownMember)) };
        if let Err(e) = check_sync(g, &req) {
            return Some(Err(e));
        }
        let now = Instant::now();
        let (protocol_type, protocol) = (g.protocol_type.clone(), g.protocol.clone());
        let Some(m) = g.members.get_mut(&req.member_id) else { return Some(Err(GroupError::UnknownMember)) };
        match g.state {
            State::Empty => Some(Err(GroupError::UnknownMember)),
            State::PreparingRebalance => Some(Err(GroupError::RebalanceInProgress)),
            State::Stable => {
                m.last_seen = now;
                Some(Ok(Synced { protocol_type, protocol, assignment: m.assignment.clone() }))
            }
            State::CompletingRebalance => {
                m.last_seen = now;
                m.sync = Some(reply);
                if g.leader.as_deref() != Some(req.member_id.as_str()) {
                    return None;
                }
                if req.assignments.iter().any(|(_, a)| a.len() > MAX_MEMBER_METADATA_BYTES) {
                    tracing::warn!(group = %g.id, max = MAX_MEMBER_METADATA_BYTES, "sync refused: an assignment is too large");
                    if let Some(m) = g.members.get_mut(&req.member_id) {
                        m.sync = None;
                    }
                    return Some(Err(GroupError::MemberDataTooLarge));
                }
                g.distribute(req.assignments);
                None
            }
        }
    }

    pub(crate) fn heartbeat_member(&self, hb: &Heartbeat) -> Result<(), GroupError> {
        self.ready()?;
        let mut groups = self.groups.borrow_mut();
        let g = groups.get_mut(&hb.group_id).ok_or(GroupError::UnknownMember)?;
        let Some(m) = g.members.get_mut(&hb.member_id) else {
            if hb.instance_id.as_deref().is_some_and(|i| g.member_by_instance(i).is_some()) {
                return Err(GroupError::FencedInstance);
            }
            return Err(GroupError::UnknownMember);
        };
        if hb.instance_id.as_deref().is_some_and(|i| m.instance_id.as_deref() != Some(i)) {
            return Err(GroupError::FencedInstance);
        }
        if hb.generation != g.generation {
            return Err(GroupError::IllegalGeneration);
        }
        m.last_seen = Instant::now();
        match g.state {
            State::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            State::Empty => Err(GroupError::UnknownMember),
            State::CompletingRebalance | State::Stable => Ok(()),
        }
    }

    /// LeaveGroup: each member leaves, or is told why not.
    pub(crate) fn leave_group(&self, req: &LeaveRequest) -> Result<Vec<MemberLeft>, GroupError> {
        self.ready()?;
        let left = |i: usize, result: Result<(), GroupError>| MemberLeft {
            member_id: req.members[i].member_id.clone(),
            instance_id: req.members[i].instance_id.clone(),
            result,
        };
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(&req.group_id) else {
            return Ok((0..req.members.len()).map(|i| left(i, Err(GroupError::UnknownMember))).collect());
        };
        let mut results = Vec::with_capacity(req.members.len());
        let mut removed = false;
        for (i, leaving) in req.members.iter().enumerate() {
            let id = &leaving.member_id;
            let result = match leaving.instance_id.as_deref() {
                Some(instance) => match g.member_by_instance(instance).map(str::to_string) {
                    None => Err(GroupError::UnknownMember),
                    Some(current) if !id.is_empty() && *id != current => Err(GroupError::FencedInstance),
                    Some(current) => {
                        g.remove_member(&current);
                        removed = true;
                        Ok(())
                    }
                },
                None if g.pending.remove(id).is_some() => {
                    self.forget_pending(1);
                    Ok(())
                }
                None if g.members.contains_key(id) => {
                    g.remove_member(id);
                    removed = true;
                    Ok(())
                }
                None => Err(GroupError::UnknownMember),
            };
            if result.is_ok() {
                tracing::info!(group = %g.id, member = %id, "member left");
            }
            results.push(left(i, result));
        }
        if removed {
            g.members_changed(Instant::now());
        }
        Ok(results)
    }

    pub(crate) fn describe_group(&self, group: &str) -> Result<GroupDescription, GroupError> {
        self.ready()?;
        let groups = self.groups.borrow();
        let Some(g) = groups.get(group) else {
            return Ok(GroupDescription {
                state: "Dead",
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            });
        };
        let protocol = g.protocol.clone().unwrap_or_default();
        let stable = g.state == State::Stable;
        let members = g
            .members
            .values()
            .map(|m| MemberDescription {
                id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                metadata: if stable { m.metadata_for(&protocol) } else { Default::default() },
                assignment: if stable { m.assignment.clone() } else { Default::default() },
            })
            .collect();
        Ok(GroupDescription {
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if stable { protocol } else { String::new() },
            members,
        })
    }

    /// This shard's groups in any of `states` (all when empty), sorted.
    pub(crate) fn list_groups(&self, states: &[String]) -> Result<Vec<ListedGroup>, GroupError> {
        self.ready()?;
        let groups = self.groups.borrow();
        let mut out: Vec<ListedGroup> = groups
            .values()
            .filter(|g| states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(g.state.name())))
            .map(|g| ListedGroup {
                id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state.name(),
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

/// Adds the joining member, or updates it; whether its protocols changed.
fn upsert_member(g: &mut Group, id: &str, req: JoinRequest, t: Timeouts, now: Instant, reply: JoinReply) -> bool {
    if g.members.is_empty() {
        g.protocol_type = Some(req.protocol_type);
    }
    if let Some(m) = g.members.get_mut(id) {
        let changed = m.protocols != req.protocols;
        m.protocols = req.protocols;
        m.session_timeout = t.session;
        m.rebalance_timeout = t.rebalance;
        m.last_seen = now;
        m.client_id = req.client_id;
        // A join already waiting is dropped (answered UNKNOWN_MEMBER_ID).
        m.join = Some(reply);
        return changed;
    }
    let member = Member {
        id: id.to_string(),
        instance_id: req.instance_id,
        client_id: req.client_id,
        protocols: req.protocols,
        session_timeout: t.session,
        rebalance_timeout: t.rebalance,
        last_seen: now,
        assignment: Default::default(),
        join: Some(reply),
        sync: None,
    };
    g.members.insert(id.to_string(), member);
    assert!(g.members.len() <= MAX_MEMBERS_PER_GROUP, "group {} past its member cap", g.id);
    true
}

/// The checks a sync passes before the group's state is looked at.
fn check_sync(g: &Group, req: &SyncRequest) -> Result<(), GroupError> {
    let m = g.members.get(&req.member_id).ok_or(GroupError::UnknownMember)?;
    if req.instance_id.as_deref().is_some_and(|i| m.instance_id.as_deref() != Some(i)) {
        return Err(GroupError::FencedInstance);
    }
    if req.generation != g.generation {
        return Err(GroupError::IllegalGeneration);
    }
    let type_ok = req.protocol_type.as_deref().is_none_or(|t| g.protocol_type.as_deref() == Some(t));
    let name_ok = req.protocol.as_deref().is_none_or(|n| g.protocol.as_deref() == Some(n));
    if !type_ok || !name_ok {
        return Err(GroupError::InconsistentProtocol);
    }
    Ok(())
}
