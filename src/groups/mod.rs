//! The group coordinator: classic consumer groups (JoinGroup/SyncGroup/
//! Heartbeat/LeaveGroup state machine, static membership), committed offsets
//! and group metadata persisted in the metadata store, listing, describing and
//! deleting groups. KIP-848 (ConsumerGroupHeartbeat) comes later.
//!
//! This module knows no Kafka request structs and no error codes: the
//! protocol handlers translate. It does not know topics either: handlers
//! check that a committed topic exists before calling in.
//!
//! Thread-safety: [`GroupCoordinator`] is shared in an `Arc`; each group has
//! its own lock, never held across an `.await`. Timers run on tokio time so
//! tests can pause it.

use std::sync::Arc;

use bytes::Bytes;

use crate::store::{MetaStore, StoreError};

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

#[derive(Clone, Debug)]
pub struct GroupOverview {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
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

pub struct GroupCoordinator {
    _store: Arc<MetaStore>,
    _config: GroupConfig,
}

impl GroupCoordinator {
    /// Loads committed offsets and group metadata from the store.
    pub fn open(
        store: Arc<MetaStore>,
        config: GroupConfig,
    ) -> Result<Arc<GroupCoordinator>, StoreError> {
        let _ = (&store, &config);
        todo!()
    }

    /// Runs the timers (session expiry, rebalance and initial delays, offset
    /// retention) until `shutdown` changes.
    pub async fn run(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let _ = shutdown;
        todo!()
    }

    pub async fn join_group(&self, req: JoinRequest) -> Result<JoinResponse, GroupError> {
        let _ = req;
        todo!()
    }

    pub async fn sync_group(&self, req: SyncRequest) -> Result<SyncResponse, GroupError> {
        let _ = req;
        todo!()
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        let _ = (group_id, generation_id, member_id, group_instance_id);
        todo!()
    }

    /// Removes members (by member id, or by instance id when the member id is empty).
    /// The outer error is for the group; the inner ones per member, in order.
    pub fn leave_group(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let _ = (group_id, members);
        todo!()
    }

    /// Commits offsets. `generation_id` -1 with an empty member id is a standalone
    /// (simple consumer) commit, allowed when the group has no members. Per-offset results in order.
    pub fn commit_offsets(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        offsets: Vec<CommitOffset>,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let _ = (
            group_id,
            generation_id,
            member_id,
            group_instance_id,
            offsets,
        );
        todo!()
    }

    /// Committed offsets of the given partitions (None: every committed partition of the group).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<(String, i32, Option<Committed>)>, GroupError> {
        let _ = (group_id, partitions);
        todo!()
    }

    /// Empty filters match everything; state names as Kafka spells them (case-insensitive).
    pub fn list_groups(&self, states: &[String], types: &[String]) -> Vec<GroupOverview> {
        let _ = (states, types);
        todo!()
    }

    /// An unknown group is described as Dead with no members (as Kafka does).
    pub fn describe_group(&self, group_id: &str) -> GroupDescription {
        let _ = group_id;
        todo!()
    }

    pub fn delete_groups(&self, group_ids: &[String]) -> Vec<Result<(), GroupError>> {
        let _ = group_ids;
        todo!()
    }

    /// OffsetDelete: per-partition results; GroupSubscribedToTopic when an active
    /// consumer-protocol member subscribes to the topic.
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let _ = (group_id, partitions);
        todo!()
    }

    /// Every (group, topic, partition, committed) for lag in the console and metrics.
    pub fn all_committed(&self) -> Vec<(String, String, i32, Committed)> {
        todo!()
    }
}
