//! The group coordinator: classic consumer groups (JoinGroup/SyncGroup/
//! Heartbeat/LeaveGroup state machine, static membership), committed offsets
//! and group metadata persisted in the metadata store, listing, describing and
//! deleting groups; and KIP-848 consumer groups (ConsumerGroupHeartbeat,
//! server-side assignors) in `consumer.rs`. A group id names one group of
//! either type; an empty group changes type when a member of the other
//! protocol joins it, as Kafka's online migration does for empty groups.
//!
//! This module knows no Kafka request structs and no error codes: the
//! protocol handlers translate. It does not know topics either: handlers
//! check that a committed topic exists before calling in, and consumer
//! groups see topics through [`TopicLookup`].
//!
//! Thread-safety: [`GroupCoordinator`] is shared in an `Arc`; each group has
//! its own lock, never held across an `.await`. Timers run on tokio time so
//! tests can pause it.

mod assignor;
mod consumer;
#[cfg(test)]
mod consumer_tests;
mod group;
mod persist;
mod subscription;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::{Duration, Instant};

use crate::store::{MetaStore, StoreError, CF_GROUPS, CF_OFFSETS};
use consumer::ConsumerGroup;
pub use consumer::{ConsumerHeartbeat, ConsumerHeartbeatResponse, TopicPartitions};
use group::{Ctx, Group, Outcome};
use persist::{offset_key, GroupRecord, OffsetRecord};

/// Coordinator settings (Kafka broker config names in the comments).
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// group.initial.rebalance.delay.ms
    pub initial_rebalance_delay_ms: u64,
    /// group.min.session.timeout.ms
    pub min_session_timeout_ms: i32,
    /// group.max.session.timeout.ms
    pub max_session_timeout_ms: i32,
    /// offsets.retention.ms: committed offsets of an empty group expire after this.
    pub offsets_retention_ms: i64,
    /// group.max.size
    pub max_members: usize,
    /// Limit on one member's protocol metadata or assignment (bytes).
    pub max_member_bytes: usize,
    /// offset.metadata.max.bytes
    pub max_offset_metadata_bytes: usize,
    /// fsync each offset commit before answering (the broker sets it with `--fsync always`);
    /// otherwise a commit survives a process crash but not a power loss.
    pub sync_commits: bool,
    /// group.consumer.session.timeout.ms (KIP-848 members)
    pub consumer_session_timeout_ms: i32,
    /// group.consumer.heartbeat.interval.ms (KIP-848 members)
    pub consumer_heartbeat_interval_ms: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
            max_members: 1000,
            max_member_bytes: 1 << 20,
            max_offset_metadata_bytes: 4096,
            sync_commits: false,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
        }
    }
}

/// Errors, one per Kafka error a client can get from the coordinator.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("The group id is invalid")]
    InvalidGroupId,
    #[error("The coordinator is not aware of this member")]
    UnknownMemberId,
    #[error("The generation id is not the current one")]
    IllegalGeneration,
    #[error("The group is rebalancing")]
    RebalanceInProgress,
    #[error("The member's protocol type or protocols are incompatible with the group")]
    InconsistentGroupProtocol,
    #[error("The session timeout is not within the range allowed by the broker")]
    InvalidSessionTimeout,
    #[error("The group has reached its maximum size")]
    GroupMaxSizeReached,
    /// JoinGroup v4+: the member must rejoin with this assigned member id.
    #[error("The group member needs to have a valid member id")]
    MemberIdRequired(String),
    #[error("The static member was fenced by another member with the same group.instance.id")]
    FencedInstanceId,
    #[error("The group does not exist")]
    GroupIdNotFound,
    #[error("The group is not empty")]
    NonEmptyGroup,
    #[error("The offset metadata is too large")]
    OffsetMetadataTooLarge,
    #[error("The group is subscribed to the topic")]
    GroupSubscribedToTopic,
    #[error("Invalid request: {0}")]
    InvalidRequest(String),
    #[error("The member epoch is fenced by the group coordinator; the member must rejoin")]
    FencedMemberEpoch,
    #[error("The instance id {0} is still used by another member of the group")]
    UnreleasedInstanceId(String),
    #[error("The assignor {0} is not supported")]
    UnsupportedAssignor(String),
    #[error("The member epoch is stale")]
    StaleMemberEpoch,
    #[error("The regular expression is not valid: {0}")]
    InvalidRegularExpression(String),
    #[error("{0}")]
    UnsupportedVersion(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Group states as Kafka names them (ListGroups/DescribeGroups strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn as_str(&self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

#[derive(Clone, Debug)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty for a new member.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    /// v0 has none: pass the session timeout.
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member without id gets MemberIdRequired first.
    pub require_known_member_id: bool,
}

#[derive(Clone, Debug)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Clone, Debug)]
pub struct JoinResponse {
    pub generation_id: i32,
    pub protocol_type: String,
    pub protocol_name: String,
    pub leader: String,
    pub member_id: String,
    /// Every member with its metadata for the chosen protocol: only for the leader.
    pub members: Vec<JoinedMember>,
}

#[derive(Clone, Debug)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// v5+: must match the group's when given.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// From the leader: (member id, assignment).
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Clone, Debug)]
pub struct SyncResponse {
    pub protocol_type: String,
    pub protocol_name: String,
    pub assignment: Bytes,
}

#[derive(Clone, Debug)]
pub struct CommitOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp_ms: i64,
}

/// What consumer groups need to know of topics (the broker implements it).
pub trait TopicLookup {
    /// Id and partition count of an existing topic.
    fn topic(&self, name: &str) -> Option<(uuid::Uuid, i32)>;
    /// Every topic name (for regex subscriptions).
    fn topic_names(&self) -> Vec<String>;
    /// Moves whenever a topic is created or deleted or gains partitions.
    fn generation(&self) -> u64;
}

#[derive(Clone, Debug)]
pub struct GroupOverview {
    pub group_id: String,
    pub protocol_type: String,
    /// "classic" or "consumer" (ListGroups v5's group type).
    pub group_type: &'static str,
    /// As Kafka spells it for the group's type.
    pub state: &'static str,
    pub members: usize,
}

/// One member of a consumer group, for ConsumerGroupDescribe.
#[derive(Clone, Debug)]
pub struct ConsumerMemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    /// (topic id, topic name, partitions)
    pub assignment: Vec<(uuid::Uuid, String, Vec<i32>)>,
    pub target_assignment: Vec<(uuid::Uuid, String, Vec<i32>)>,
}

#[derive(Clone, Debug)]
pub struct ConsumerGroupDescription {
    pub group_id: String,
    pub state: &'static str,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: &'static str,
    pub members: Vec<ConsumerMemberDescription>,
}

#[derive(Clone, Debug)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Metadata for the group's chosen protocol.
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Clone, Debug)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<MemberDescription>,
}

/// How often offset retention runs and empty groups are dropped.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// The timer loop wakes at least this often even with nothing due.
const MAX_IDLE: Duration = Duration::from_secs(1);
/// Limit on protocols one JoinGroup may list.
const MAX_PROTOCOLS: usize = 64;

/// Time for the coordinator: tokio's clock (so `tokio::time::pause` works),
/// and Unix ms derived from it so that commit timestamps and retention move
/// with it. Unit tests may drive it by hand instead.
struct Clock {
    base: Instant,
    base_ms: i64,
    /// Milliseconds past `base`, when tests drive the clock.
    manual_ms: Option<AtomicU64>,
}

impl Clock {
    fn new(manual: bool) -> Clock {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Clock {
            base: Instant::now(),
            base_ms: unix_ms,
            manual_ms: manual.then(|| AtomicU64::new(0)),
        }
    }

    fn now(&self) -> Instant {
        match &self.manual_ms {
            Some(ms) => self.base + Duration::from_millis(ms.load(Ordering::SeqCst)),
            None => Instant::now(),
        }
    }

    fn unix_ms(&self, now: Instant) -> i64 {
        self.base_ms + now.saturating_duration_since(self.base).as_millis() as i64
    }
}

/// The classic group coordinator. Thread-safe: share it in an `Arc`.
///
/// Locking: the map of groups is a `DashMap` whose guards are never held
/// while a group's mutex is taken; a group's mutex is never held across an
/// `.await` (waiting joins and syncs get oneshot receivers instead). A group
/// that is removed is first marked Dead under its lock, then taken out of
/// the map; whoever finds a Dead group removes it and looks again.
pub struct GroupCoordinator {
    store: Arc<MetaStore>,
    config: GroupConfig,
    groups: DashMap<String, Arc<Mutex<Group>>>,
    clock: Clock,
    /// Wakes the timer loop when a deadline may have moved earlier.
    wake: Notify,
    next_sweep: Mutex<Instant>,
}

impl GroupCoordinator {
    /// Loads committed offsets and group metadata from the store.
    pub fn open(
        store: Arc<MetaStore>,
        config: GroupConfig,
    ) -> Result<Arc<GroupCoordinator>, StoreError> {
        Self::open_with_clock(store, config, Clock::new(false))
    }

    fn open_with_clock(
        store: Arc<MetaStore>,
        config: GroupConfig,
        clock: Clock,
    ) -> Result<Arc<GroupCoordinator>, StoreError> {
        let now = clock.now();
        let coordinator = GroupCoordinator {
            store,
            config,
            groups: DashMap::new(),
            next_sweep: Mutex::new(now + SWEEP_INTERVAL),
            clock,
            wake: Notify::new(),
        };
        let records: Vec<(String, GroupRecord)> = coordinator.store.scan_json(CF_GROUPS)?;
        let group_count = records.len();
        let cx = coordinator.ctx(now);
        for (id, rec) in records {
            let group = Group::restore(&id, rec, &cx);
            coordinator.groups.insert(id, Arc::new(Mutex::new(group)));
        }
        let offsets: Vec<(String, OffsetRecord)> = coordinator.store.scan_json(CF_OFFSETS)?;
        let offset_count = offsets.len();
        for (_, o) in offsets {
            let entry = coordinator
                .groups
                .entry(o.group.clone())
                .or_insert_with(|| {
                    Arc::new(Mutex::new(Group::new(&o.group, o.commit_timestamp_ms)))
                })
                .clone();
            entry.lock().offsets.insert(
                (o.topic, o.partition),
                Committed {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata,
                    commit_timestamp_ms: o.commit_timestamp_ms,
                },
            );
        }
        tracing::info!(
            groups = group_count,
            offsets = offset_count,
            "group coordinator loaded"
        );
        Ok(Arc::new(coordinator))
    }

    fn ctx(&self, now: Instant) -> Ctx<'_> {
        Ctx {
            config: &self.config,
            now,
            now_ms: self.clock.unix_ms(now),
        }
    }

    /// Runs the timers (session expiry, rebalance and initial delays, offset
    /// retention) until `shutdown` changes.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let next = self.tick();
            let now = self.clock.now();
            // A deadline that is already due again (a zero timeout) is retried
            // a millisecond later rather than in a busy loop.
            let at = next.min(now + MAX_IDLE).max(now + Duration::from_millis(1));
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = self.wake.notified() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Fires every due timer of every group; returns when to look again.
    fn tick(&self) -> Instant {
        let now = self.clock.now();
        let cx = self.ctx(now);
        let sweep = {
            let mut next = self.next_sweep.lock();
            let due = now >= *next;
            if due {
                *next = now + SWEEP_INTERVAL;
            }
            due
        };
        let mut next = *self.next_sweep.lock();
        let groups: Vec<Arc<Mutex<Group>>> =
            self.groups.iter().map(|e| e.value().clone()).collect();
        for arc in groups {
            let mut g = arc.lock();
            if g.state == GroupState::Dead {
                continue;
            }
            if g.next_deadline().is_some_and(|d| d <= now) {
                g.on_timers(&cx);
            }
            if sweep {
                self.expire_offsets(&mut g, &cx);
            }
            self.persist_if_dirty(&mut g);
            if sweep && g.is_removable() {
                if let Err(e) = self.store.delete(CF_GROUPS, &g.id) {
                    tracing::error!(group = %g.id, error = %e, "could not delete an expired group");
                    continue;
                }
                tracing::info!(group = %g.id, "empty group without offsets removed");
                g.state = GroupState::Dead;
                let id = g.id.clone();
                drop(g);
                self.groups.remove_if(&id, |_, v| Arc::ptr_eq(v, &arc));
                continue;
            }
            if let Some(d) = g.next_deadline() {
                next = next.min(d);
            }
        }
        next
    }

    fn expire_offsets(&self, g: &mut Group, cx: &Ctx) {
        let expired = g.expired_offsets(cx.now_ms, self.config.offsets_retention_ms);
        for (topic, partition) in expired {
            if let Err(e) = self
                .store
                .delete(CF_OFFSETS, &offset_key(&g.id, &topic, partition))
            {
                tracing::error!(group = %g.id, error = %e, "could not delete an expired offset");
                return;
            }
            g.offsets.remove(&(topic, partition));
        }
    }

    fn persist_if_dirty(&self, g: &mut Group) {
        if !g.dirty {
            return;
        }
        g.dirty = false;
        if let Err(e) = self.store.put_json(CF_GROUPS, &g.id, &g.record()) {
            // The group keeps working from memory; a restart would go back
            // to its previous record and the members would rejoin.
            tracing::error!(group = %g.id, error = %e, "could not persist group metadata");
        }
    }

    /// Runs `f` on the group under its lock (creating the group if asked),
    /// then persists it if `f` changed what is persisted. None: no such group.
    fn with_group<R>(
        &self,
        group_id: &str,
        create: bool,
        f: impl FnOnce(&mut Group, &Ctx) -> R,
    ) -> Option<R> {
        let mut f = Some(f);
        loop {
            let found = self.groups.get(group_id).map(|e| e.value().clone());
            let arc = match found {
                Some(arc) => arc,
                None if create => self
                    .groups
                    .entry(group_id.to_string())
                    .or_insert_with(|| {
                        Arc::new(Mutex::new(Group::new(
                            group_id,
                            self.clock.unix_ms(self.clock.now()),
                        )))
                    })
                    .value()
                    .clone(),
                None => return None,
            };
            let mut g = arc.lock();
            if g.state == GroupState::Dead {
                drop(g);
                self.groups.remove_if(group_id, |_, v| Arc::ptr_eq(v, &arc));
                continue;
            }
            let cx = self.ctx(self.clock.now());
            let result = (f.take().expect("f runs once"))(&mut g, &cx);
            self.persist_if_dirty(&mut g);
            return Some(result);
        }
    }

    fn validate_join(&self, req: &JoinRequest) -> Result<(), GroupError> {
        if req.group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return Err(GroupError::InvalidSessionTimeout);
        }
        if req.protocols.len() > MAX_PROTOCOLS {
            return Err(GroupError::InvalidRequest(format!(
                "{} protocols, at most {MAX_PROTOCOLS}",
                req.protocols.len()
            )));
        }
        let size: usize = req.protocols.iter().map(|(n, m)| n.len() + m.len()).sum();
        if size > self.config.max_member_bytes {
            return Err(GroupError::InvalidRequest(format!(
                "member metadata of {size} bytes, at most {}",
                self.config.max_member_bytes
            )));
        }
        Ok(())
    }

    pub async fn join_group(&self, req: JoinRequest) -> Result<JoinResponse, GroupError> {
        self.validate_join(&req)?;
        let create = req.member_id.is_empty();
        let outcome = self
            .with_group(&req.group_id, create, |g, cx| g.join(&req, cx))
            .ok_or(GroupError::UnknownMemberId)?;
        self.wake.notify_one();
        match outcome {
            Outcome::Ready(result) => result,
            Outcome::Wait(rx) => rx.await.unwrap_or(Err(GroupError::UnknownMemberId)),
        }
    }

    pub async fn sync_group(&self, req: SyncRequest) -> Result<SyncResponse, GroupError> {
        if req.group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        if req.assignments.len() > self.config.max_members {
            return Err(GroupError::InvalidRequest(format!(
                "{} assignments, the group may have at most {} members",
                req.assignments.len(),
                self.config.max_members
            )));
        }
        if let Some((id, a)) = req
            .assignments
            .iter()
            .find(|(_, a)| a.len() > self.config.max_member_bytes)
        {
            return Err(GroupError::InvalidRequest(format!(
                "assignment of {} bytes for {id}, at most {}",
                a.len(),
                self.config.max_member_bytes
            )));
        }
        let outcome = self
            .with_group(&req.group_id, false, |g, cx| g.sync(&req, cx))
            .ok_or(GroupError::UnknownMemberId)?;
        self.wake.notify_one();
        match outcome {
            Outcome::Ready(result) => result,
            Outcome::Wait(rx) => rx.await.unwrap_or(Err(GroupError::UnknownMemberId)),
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        self.with_group(group_id, false, |g, cx| {
            g.heartbeat(generation_id, member_id, group_instance_id, cx)
        })
        .unwrap_or(Err(GroupError::UnknownMemberId))
    }

    /// Removes members (by member id, or by instance id when the member id is empty).
    /// The outer error is for the group; the inner ones per member, in order.
    pub fn leave_group(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let results = self
            .with_group(group_id, false, |g, cx| g.leave(members, cx))
            .ok_or(GroupError::UnknownMemberId)?;
        self.wake.notify_one();
        Ok(results)
    }

    /// Commits offsets. `generation_id` -1 with an empty member id is a standalone
    /// (simple consumer) commit, allowed when the group has no members. Per-offset results in order.
    ///
    /// A commit with a generation to a group that does not exist is
    /// IllegalGeneration (the OffsetCommit handler answers v9+ GROUP_ID_NOT_FOUND there).
    pub fn commit_offsets(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        offsets: Vec<CommitOffset>,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        self.with_group(group_id, generation_id < 0, |g, cx| {
            g.validate_commit(generation_id, member_id, group_instance_id, cx)?;
            self.write_offsets(g, cx, offsets)
        })
        .unwrap_or(Err(GroupError::IllegalGeneration))
    }

    /// Writes every offset whose metadata fits in one store write; per-offset results.
    fn write_offsets(
        &self,
        g: &mut Group,
        cx: &Ctx,
        offsets: Vec<CommitOffset>,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let mut results = Vec::with_capacity(offsets.len());
        let mut records = Vec::new();
        for o in offsets {
            if o.metadata.as_ref().map_or(0, String::len) > self.config.max_offset_metadata_bytes {
                results.push(Err(GroupError::OffsetMetadataTooLarge));
                continue;
            }
            results.push(Ok(()));
            let record = OffsetRecord {
                group: g.id.clone(),
                topic: o.topic,
                partition: o.partition,
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata: o.metadata,
                commit_timestamp_ms: cx.now_ms,
            };
            records.push((offset_key(&g.id, &record.topic, record.partition), record));
        }
        self.store
            .put_json_many(CF_OFFSETS, &records, self.config.sync_commits)?;
        for (_, r) in records {
            let committed = Committed {
                offset: r.offset,
                leader_epoch: r.leader_epoch,
                metadata: r.metadata,
                commit_timestamp_ms: r.commit_timestamp_ms,
            };
            g.offsets.insert((r.topic, r.partition), committed);
        }
        Ok(results)
    }

    /// TxnOffsetCommit's member check (Kafka's validateOffsetCommit with
    /// isTransactional): a commit without member id, generation and instance
    /// id is always accepted; otherwise as OffsetCommit, a consumer group's
    /// stale member epoch being ILLEGAL_GENERATION.
    pub fn validate_txn_commit(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        if generation_id < 0 && member_id.is_empty() && group_instance_id.is_none() {
            return Ok(());
        }
        self.with_group(group_id, false, |g, cx| {
            g.validate_commit(generation_id, member_id, group_instance_id, cx)
        })
        .unwrap_or(Err(GroupError::IllegalGeneration))
        .map_err(|e| match e {
            GroupError::StaleMemberEpoch => GroupError::IllegalGeneration,
            e => e,
        })
    }

    /// A committed transaction's offsets become the group's committed offsets
    /// (checked when they were sent; the group is created if it is gone).
    pub fn commit_transactional(
        &self,
        group_id: &str,
        offsets: Vec<CommitOffset>,
    ) -> Result<(), GroupError> {
        self.with_group(group_id, true, |g, cx| self.write_offsets(g, cx, offsets))
            .unwrap_or(Err(GroupError::GroupIdNotFound))
            .map(|_| ())
    }

    /// Committed offsets of the given partitions (None: every committed partition of the group).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<(String, i32, Option<Committed>)>, GroupError> {
        let found = self.with_group(group_id, false, |g, _| match partitions {
            Some(ps) => ps
                .iter()
                .map(|(t, p)| (t.clone(), *p, g.offsets.get(&(t.clone(), *p)).cloned()))
                .collect(),
            None => g
                .offsets
                .iter()
                .map(|((t, p), c)| (t.clone(), *p, Some(c.clone())))
                .collect(),
        });
        Ok(found.unwrap_or_else(|| {
            partitions
                .unwrap_or(&[])
                .iter()
                .map(|(t, p)| (t.clone(), *p, None))
                .collect()
        }))
    }

    /// Empty filters match everything; state names as Kafka spells them
    /// (case-insensitive); types are "classic" and "consumer" (ListGroups v5).
    pub fn list_groups(&self, states: &[String], types: &[String]) -> Vec<GroupOverview> {
        let groups: Vec<Arc<Mutex<Group>>> =
            self.groups.iter().map(|e| e.value().clone()).collect();
        let mut out: Vec<GroupOverview> = groups
            .iter()
            .filter_map(|arc| {
                let g = arc.lock();
                if g.state == GroupState::Dead {
                    return None;
                }
                let (protocol_type, group_type, state, members) = match &g.consumer {
                    Some(c) => (
                        "consumer".to_string(),
                        "consumer",
                        c.state().as_str(),
                        c.members.len(),
                    ),
                    None => (
                        g.protocol_type.clone().unwrap_or_default(),
                        "classic",
                        g.state.as_str(),
                        g.members.len(),
                    ),
                };
                let state_ok =
                    states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(state));
                let type_ok =
                    types.is_empty() || types.iter().any(|t| t.eq_ignore_ascii_case(group_type));
                (state_ok && type_ok).then(|| GroupOverview {
                    group_id: g.id.clone(),
                    protocol_type,
                    group_type,
                    state,
                    members,
                })
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// An unknown group, or a consumer group (not a classic one), is described
    /// as Dead with no members (as Kafka does for DescribeGroups up to v5).
    /// Outside Stable, members are listed without metadata or assignment and
    /// the protocol name is empty (as Kafka does).
    pub fn describe_group(&self, group_id: &str) -> GroupDescription {
        let found = self.with_group(group_id, false, |g, _| {
            if g.consumer.is_some() {
                return None;
            }
            let stable = g.state == GroupState::Stable;
            let protocol = if stable {
                g.protocol_name.clone().unwrap_or_default()
            } else {
                String::new()
            };
            Some(GroupDescription {
                group_id: g.id.clone(),
                state: g.state,
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                members: g
                    .members
                    .values()
                    .map(|m| MemberDescription {
                        member_id: m.id.clone(),
                        group_instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        metadata: if stable {
                            m.metadata(&protocol)
                        } else {
                            Bytes::new()
                        },
                        assignment: if stable {
                            m.assignment.clone()
                        } else {
                            Bytes::new()
                        },
                    })
                    .collect(),
                protocol_name: protocol,
            })
        });
        found.flatten().unwrap_or_else(|| GroupDescription {
            group_id: group_id.to_string(),
            state: GroupState::Dead,
            protocol_type: String::new(),
            protocol_name: String::new(),
            members: Vec::new(),
        })
    }

    // ---- KIP-848 consumer groups ----

    /// ConsumerGroupHeartbeat (joins with epoch 0, leaves with -1/-2).
    pub fn consumer_heartbeat(
        &self,
        req: &ConsumerHeartbeat,
        version: i16,
        topics: &dyn TopicLookup,
    ) -> Result<ConsumerHeartbeatResponse, GroupError> {
        ConsumerGroup::validate(req, version)?;
        let joining = req.member_epoch == 0;
        let result = self
            .with_group(&req.group_id, joining, |g, cx| {
                if g.consumer.is_none() {
                    let classic_empty = g.state == GroupState::Empty
                        && g.members.is_empty()
                        && g.pending.is_empty();
                    if !classic_empty {
                        // Kafka converts a non-empty classic group online; Kairos does not.
                        return Err(GroupError::GroupIdNotFound);
                    }
                    if !joining {
                        return Err(GroupError::UnknownMemberId);
                    }
                    // An empty classic group (or a new one) becomes a consumer group.
                    g.consumer = Some(ConsumerGroup::new());
                    g.protocol_type = None;
                    g.protocol_name = None;
                    g.generation = 0;
                }
                let c = g.consumer.as_mut().expect("set above");
                let was_empty = c.members.is_empty();
                let (resp, changed) =
                    c.heartbeat(req, || uuid::Uuid::new_v4().to_string(), topics, cx)?;
                if c.members.is_empty() != was_empty {
                    g.state_timestamp_ms = cx.now_ms;
                }
                g.dirty |= changed;
                Ok(resp)
            })
            // Kafka answers GROUP_ID_NOT_FOUND here, which librdkafka treats as
            // fatal; UNKNOWN_MEMBER_ID makes the member rejoin (and recreate the group).
            .unwrap_or(Err(GroupError::UnknownMemberId));
        self.wake.notify_one();
        result
    }

    /// ConsumerGroupDescribe: GroupIdNotFound for an unknown or classic group.
    pub fn describe_consumer_group(
        &self,
        group_id: &str,
    ) -> Result<ConsumerGroupDescription, GroupError> {
        self.with_group(group_id, false, |g, _| {
            let c = g.consumer.as_ref().ok_or(GroupError::GroupIdNotFound)?;
            let named = |a: &assignor::Assignment| -> Vec<(uuid::Uuid, String, Vec<i32>)> {
                a.iter()
                    .filter(|(_, ps)| !ps.is_empty())
                    .map(|(id, ps)| {
                        let name = c.topics.get(id).map(|(n, _)| n.clone()).unwrap_or_default();
                        (*id, name, ps.iter().copied().collect())
                    })
                    .collect()
            };
            Ok(ConsumerGroupDescription {
                group_id: g.id.clone(),
                state: c.state().as_str(),
                group_epoch: c.group_epoch,
                assignment_epoch: c.assignment_epoch,
                assignor: c.assignor().name(),
                members: c
                    .members
                    .values()
                    .map(|m| ConsumerMemberDescription {
                        member_id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        rack_id: m.rack_id.clone(),
                        member_epoch: m.shown_epoch(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        subscribed_topic_names: m.topic_names.iter().cloned().collect(),
                        subscribed_topic_regex: m.topic_regex.clone(),
                        assignment: named(&m.assigned),
                        target_assignment: named(&m.target),
                    })
                    .collect(),
            })
        })
        .unwrap_or(Err(GroupError::GroupIdNotFound))
    }

    /// Whether `member_id` is a member of the consumer group `group_id`
    /// (OffsetCommit below v9 cannot carry its epoch: UNSUPPORTED_VERSION, as Kafka).
    pub fn is_consumer_group_member(&self, group_id: &str, member_id: &str) -> bool {
        self.with_group(group_id, false, |g, _| {
            g.consumer
                .as_ref()
                .is_some_and(|c| c.members.contains_key(member_id))
        })
        .unwrap_or(false)
    }

    /// OffsetFetch v9+: a consumer-group member must fetch with its current
    /// epoch (STALE_MEMBER_EPOCH, UNKNOWN_MEMBER_ID); classic groups and
    /// unknown groups accept any fetch.
    pub fn validate_fetch_member(
        &self,
        group_id: &str,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), GroupError> {
        self.with_group(group_id, false, |g, _| match &g.consumer {
            Some(c) => c.validate_fetch(member_id, member_epoch),
            None => Ok(()),
        })
        .unwrap_or(Ok(()))
    }

    /// Whether a group (of either type) exists.
    pub fn group_exists(&self, group_id: &str) -> bool {
        self.with_group(group_id, false, |_, _| ()).is_some()
    }

    pub fn delete_groups(&self, group_ids: &[String]) -> Vec<Result<(), GroupError>> {
        group_ids.iter().map(|id| self.delete_group(id)).collect()
    }

    fn delete_group(&self, group_id: &str) -> Result<(), GroupError> {
        let Some(arc) = self.groups.get(group_id).map(|e| e.value().clone()) else {
            return Err(GroupError::GroupIdNotFound);
        };
        let mut g = arc.lock();
        match g.state {
            GroupState::Dead => return Err(GroupError::GroupIdNotFound),
            GroupState::Empty => {}
            _ => return Err(GroupError::NonEmptyGroup),
        }
        if g.consumer.as_ref().is_some_and(|c| !c.members.is_empty()) {
            return Err(GroupError::NonEmptyGroup);
        }
        let keys: Vec<(String, i32)> = g.offsets.keys().cloned().collect();
        for (topic, partition) in keys {
            self.store
                .delete(CF_OFFSETS, &offset_key(group_id, &topic, partition))?;
            g.offsets.remove(&(topic, partition));
        }
        self.store.delete(CF_GROUPS, group_id)?;
        g.state = GroupState::Dead;
        drop(g);
        self.groups.remove_if(group_id, |_, v| Arc::ptr_eq(v, &arc));
        tracing::info!(group = %group_id, "group deleted");
        Ok(())
    }

    /// OffsetDelete: per-partition results; GroupSubscribedToTopic when an active
    /// consumer-protocol member subscribes to the topic.
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        self.with_group(group_id, false, |g, _| {
            let consumer_protocol =
                g.consumer.is_some() || g.protocol_type.as_deref() == Some("consumer");
            if g.state != GroupState::Empty && !consumer_protocol {
                return Err(GroupError::NonEmptyGroup);
            }
            let subscribed = g.subscribed_topics().unwrap_or_default();
            Ok(partitions
                .iter()
                .map(|(topic, partition)| {
                    if subscribed.contains(topic) {
                        return Err(GroupError::GroupSubscribedToTopic);
                    }
                    let key = (topic.clone(), *partition);
                    if g.offsets.contains_key(&key) {
                        self.store
                            .delete(CF_OFFSETS, &offset_key(&g.id, topic, *partition))?;
                        g.offsets.remove(&key);
                    }
                    Ok(())
                })
                .collect())
        })
        .unwrap_or(Err(GroupError::GroupIdNotFound))
    }

    /// Whether commits wait for an fsync (then callers keep them off the reactor).
    pub fn syncs_commits(&self) -> bool {
        self.config.sync_commits
    }

    /// A deleted topic's committed offsets are forgotten by every group (as Kafka
    /// does), so that a topic re-created under the same name starts fresh.
    pub fn forget_topic(&self, topic: &str) -> Result<(), StoreError> {
        let groups: Vec<Arc<Mutex<Group>>> =
            self.groups.iter().map(|e| e.value().clone()).collect();
        for arc in groups {
            let mut g = arc.lock();
            let doomed: Vec<(String, i32)> = g
                .offsets
                .keys()
                .filter(|(t, _)| t == topic)
                .cloned()
                .collect();
            for (t, p) in doomed {
                self.store.delete(CF_OFFSETS, &offset_key(&g.id, &t, p))?;
                g.offsets.remove(&(t, p));
            }
        }
        Ok(())
    }

    /// Every (group, topic, partition, committed) for lag in the console and metrics.
    pub fn all_committed(&self) -> Vec<(String, String, i32, Committed)> {
        let groups: Vec<Arc<Mutex<Group>>> =
            self.groups.iter().map(|e| e.value().clone()).collect();
        let mut out = Vec::new();
        for arc in groups {
            let g = arc.lock();
            if g.state == GroupState::Dead {
                continue;
            }
            out.extend(
                g.offsets
                    .iter()
                    .map(|((t, p), c)| (g.id.clone(), t.clone(), *p, c.clone())),
            );
        }
        out
    }
}
