//! Committed offsets: commits checked against the shard's caps, written to
//! the group's offsets log and applied once durable; OffsetFetch answered
//! from memory; offsets logs compacted once they grow; groups deleted with
//! a tombstone.

use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;

use super::api::{CommitOutcome, CommitPartition, CommitRequest, FetchedOffset, GroupError};
use super::group::{Group, State};
use super::store::{self, OffsetRecord, StoreError};
use super::{
    offsets_partition, Coordinator, COMPACT_AFTER_BYTES, MAX_GROUP_ID_BYTES, MAX_METADATA_BYTES, OFFSETS_TOPIC,
};
use crate::storage::log::AckWait;
use crate::storage::PartitionLog;

type Offsets = Vec<(String, Vec<FetchedOffset>)>;

impl Coordinator {
    /// OffsetCommit: every offset of the request is written (one append to
    /// the group's offsets log) and answered once durable, or refused.
    pub(crate) async fn commit_offsets(&self, req: CommitRequest) -> CommitOutcome {
        let refuse_all = |error: GroupError, req: &CommitRequest| -> CommitOutcome {
            req.topics
                .iter()
                .map(|(t, ps)| (t.clone(), ps.iter().map(|p| (p.partition, Err(error.clone()))).collect()))
                .collect()
        };
        if let Err(e) = self.ready() {
            return refuse_all(e, &req);
        }
        if req.group_id.is_empty() || req.group_id.len() > MAX_GROUP_ID_BYTES {
            return refuse_all(GroupError::InvalidGroupId, &req);
        }
        if let Err(e) = self.check_committer(&req) {
            return refuse_all(e, &req);
        }
        let (mut results, records) = commit_records(&req);
        if records.is_empty() {
            return results;
        }
        if let Err(e) = self.write_commit(&req.group_id, records).await {
            for (_, parts) in results.iter_mut() {
                for (_, result) in parts.iter_mut().filter(|(_, r)| r.is_ok()) {
                    *result = Err(e.clone());
                }
            }
        }
        results
    }

    /// Whether the committer may commit for the group: a member of its
    /// current generation, or a consumer outside the group's membership
    /// (negative generation) while the group has no members.
    fn check_committer(&self, req: &CommitRequest) -> Result<(), GroupError> {
        let mut groups = self.groups.borrow_mut();
        match groups.get_mut(&req.group_id) {
            // Simple consumers (no group membership) store offsets here.
            None if req.generation < 0 => Ok(()),
            None => Err(GroupError::IllegalGeneration),
            Some(g) if req.generation < 0 && g.state == State::Empty => Ok(()),
            Some(g) if g.state == State::CompletingRebalance => Err(GroupError::RebalanceInProgress),
            Some(g) => match g.members.get_mut(&req.member_id) {
                None => Err(GroupError::UnknownMember),
                Some(_) if req.generation != g.generation => Err(GroupError::IllegalGeneration),
                Some(m) if req.instance_id.as_deref().is_some_and(|i| m.instance_id.as_deref() != Some(i)) => {
                    Err(GroupError::FencedInstance)
                }
                Some(m) => {
                    m.last_seen = std::time::Instant::now();
                    Ok(())
                }
            },
        }
    }

    /// Admits, writes and applies the records of one commit.
    async fn write_commit(&self, group_id: &str, records: Vec<OffsetRecord>) -> Result<(), GroupError> {
        let reserved = self.admit(group_id, &records)?;
        let written = self.write(group_id, &records).await;
        // Admitted: the group is still here (`writes_in_flight`).
        if let Some(g) = self.groups.borrow_mut().get_mut(group_id) {
            assert!(g.writes_in_flight > 0, "group {group_id}: a commit written that was not admitted");
            g.writes_in_flight -= 1;
        }
        assert!(self.reserved_offsets.get() >= reserved, "more offsets given back than reserved");
        self.reserved_offsets.set(self.reserved_offsets.get() - reserved);
        match written {
            Ok(seq) => {
                for r in records {
                    self.apply(r, seq);
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(group = %group_id, error = %e, "offset commit failed");
                Err(e.into())
            }
        }
    }

    /// Checks the shard's caps for a commit before it is written, and
    /// reserves what it adds: the group (created now), and its new offsets
    /// (the count returned, to give back once applied). A refused commit is
    /// not written, so it cannot come back at the next start.
    pub(super) fn admit(&self, group_id: &str, records: &[OffsetRecord]) -> Result<usize, GroupError> {
        let mut groups = self.groups.borrow_mut();
        let created = !groups.contains_key(group_id);
        if created && groups.len() >= self.limits.max_groups {
            tracing::warn!(group = %group_id, max = self.limits.max_groups, "too many groups on this shard; offset commit refused");
            return Err(GroupError::TooManyGroups);
        }
        let g = groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id));
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
            return Err(GroupError::TooManyOffsets);
        }
        g.writes_in_flight += 1;
        self.reserved_offsets.set(self.reserved_offsets.get() + wanted);
        assert!(!created || groups.len() <= self.limits.max_groups, "a group created past the cap");
        Ok(wanted)
    }

    pub(super) fn next_seq(&self) -> u64 {
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
    pub(super) fn logs_to_compact(&self) -> Vec<i32> {
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
    pub(super) fn snapshot(&self, p: i32, now_ms: i64) -> Vec<OffsetRecord> {
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
    pub(super) async fn compact(&self, p: i32) {
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

    pub(crate) fn fetch_offsets(
        &self,
        group: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Offsets, GroupError> {
        self.ready()?;
        let groups = self.groups.borrow();
        let g = groups.get(group);
        let committed = |p: i32, c: &super::group::Committed| FetchedOffset {
            partition: p,
            offset: c.offset,
            leader_epoch: c.leader_epoch,
            metadata: c.metadata.clone(),
        };
        let lookup = |t: &str, p: i32| -> FetchedOffset {
            match g.and_then(|g| g.offsets.get(&(t.to_string(), p))) {
                Some(c) => committed(p, c),
                None => FetchedOffset { partition: p, offset: -1, leader_epoch: -1, metadata: Some(String::new()) },
            }
        };
        Ok(match topics {
            Some(ts) => ts
                .into_iter()
                .map(|(t, ps)| {
                    let fetched = ps.into_iter().map(|p| lookup(&t, p)).collect();
                    (t, fetched)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<FetchedOffset>> = BTreeMap::new();
                for ((t, p), c) in g.iter().flat_map(|g| g.offsets.iter()) {
                    by_topic.entry(t.clone()).or_default().push(committed(*p, c));
                }
                by_topic.into_iter().collect()
            }
        })
    }

    /// Deletes a group without members: a tombstone in its offsets log, then
    /// its offsets forgotten.
    pub(crate) async fn delete_group(&self, group: &str) -> Result<(), GroupError> {
        self.ready()?;
        match self.groups.borrow().get(group) {
            None => return Err(GroupError::GroupNotFound),
            Some(g) if !g.members.is_empty() => return Err(GroupError::NotEmpty),
            Some(_) => {}
        }
        let rec = OffsetRecord::GroupDeleted { group: group.to_string() };
        let seq = self.write(group, std::slice::from_ref(&rec)).await.map_err(|e| {
            tracing::warn!(group, error = %e, "deleting group failed");
            GroupError::from(e)
        })?;
        // The tombstone forgets what precedes it in the log, no more: a
        // commit written after it stays, as replay keeps it. A member that
        // joined while it was written keeps the group.
        self.apply(rec, seq);
        tracing::info!(group, "group deleted");
        Ok(())
    }
}

/// The records a commit writes, and the answer for every partition: Ok for
/// those written (if the write succeeds), the reason for the others.
fn commit_records(req: &CommitRequest) -> (CommitOutcome, Vec<OffsetRecord>) {
    let now_ms = crate::storage::now_ms();
    let mut results: CommitOutcome = Vec::with_capacity(req.topics.len());
    let mut records = Vec::new();
    for (topic, partitions) in &req.topics {
        let mut parts = Vec::with_capacity(partitions.len());
        for p in partitions {
            let CommitPartition { partition, offset, leader_epoch, ref metadata } = *p;
            let result = if metadata.as_ref().is_some_and(|m| m.len() > MAX_METADATA_BYTES) {
                Err(GroupError::OffsetMetadataTooLarge)
            } else if topic.is_empty() || topic.len() > u16::MAX as usize || partition < 0 {
                Err(GroupError::InvalidPartition)
            } else {
                records.push(OffsetRecord::Commit {
                    group: req.group_id.clone(),
                    topic: topic.clone(),
                    partition,
                    offset,
                    leader_epoch,
                    metadata: metadata.clone(),
                    commit_ms: now_ms,
                });
                Ok(())
            };
            parts.push((partition, result));
        }
        results.push((topic.clone(), parts));
    }
    (results, records)
}
