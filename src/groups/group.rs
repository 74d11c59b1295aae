//! One classic group's state machine (Kafka's `ClassicGroup` plus the parts of
//! `GroupMetadataManager` that act on one group). Pure: no store, no tasks.
//! The coordinator holds the group's lock while calling in, gives it the
//! current time, persists it when `dirty` is set, and fires its timers.
//!
//! Waiting JoinGroup/SyncGroup requests are oneshot senders kept on the member;
//! every path that drops a member or supersedes a request answers them.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use indexmap::IndexMap;
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};

use super::consumer::ConsumerGroup;
use super::persist::{GroupRecord, MemberRecord};
use super::{
    Committed, GroupConfig, GroupError, GroupState, JoinRequest, JoinResponse, JoinedMember,
    SyncRequest, SyncResponse,
};

pub(crate) type JoinTx = oneshot::Sender<Result<JoinResponse, GroupError>>;
pub(crate) type JoinRx = oneshot::Receiver<Result<JoinResponse, GroupError>>;
pub(crate) type SyncTx = oneshot::Sender<Result<SyncResponse, GroupError>>;
pub(crate) type SyncRx = oneshot::Receiver<Result<SyncResponse, GroupError>>;

/// How long a new member may take to complete its first join before it is
/// dropped (Kafka's group.new.member.join.timeout.ms).
const NEW_MEMBER_JOIN_TIMEOUT: Duration = Duration::from_secs(300);

/// What the coordinator passes into every call: settings and the time.
pub(crate) struct Ctx<'a> {
    pub config: &'a GroupConfig,
    pub now: Instant,
    /// Wall-clock Unix ms consistent with `now` (commit timestamps, retention).
    pub now_ms: i64,
}

fn ms(v: i64) -> Duration {
    Duration::from_millis(v.max(0) as u64)
}

pub(crate) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub session_deadline: Instant,
    /// Joined but not yet answered once: expires by the new-member timeout,
    /// not kept alive by its waiting join.
    pub is_new: bool,
    pub awaiting_join: Option<JoinTx>,
    pub awaiting_sync: Option<SyncTx>,
}

impl Member {
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(n, _)| n == protocol)
    }

    fn touch(&mut self, now: Instant) {
        self.session_deadline = now + ms(self.session_timeout_ms as i64);
    }

    /// Answers whatever the member is waiting for with `err()`.
    fn fail_waiters(&mut self, err: fn() -> GroupError) {
        if let Some(tx) = self.awaiting_join.take() {
            let _ = tx.send(Err(err()));
        }
        if let Some(tx) = self.awaiting_sync.take() {
            let _ = tx.send(Err(err()));
        }
    }
}

/// The first rebalance of an empty group waits `delay_ms` after the last new
/// member joined, never past `cap` (start + rebalance timeout). Kafka instead
/// extends by whole delays (a group joining over 1 s is Stable after 2 delays);
/// this keeps a group that forms at once Stable within one delay of its last join.
pub(crate) struct InitialDelay {
    delay_ms: u64,
    cap: Instant,
}

pub(crate) enum Outcome<T, R> {
    Ready(Result<T, GroupError>),
    Wait(R),
}

pub(crate) struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    /// In join order: the first is the next leader when the leader leaves.
    pub members: IndexMap<String, Member>,
    /// Member ids handed out with MemberIdRequired, not yet joined: deadline.
    pub pending: HashMap<String, Instant>,
    /// group.instance.id -> current member id.
    pub static_members: HashMap<String, String>,
    /// Members that have not sent SyncGroup in this generation.
    pub pending_sync: HashSet<String>,
    /// PreparingRebalance: when the join phase ends (or the initial delay ticks).
    pub join_deadline: Option<Instant>,
    pub initial: Option<InitialDelay>,
    /// CompletingRebalance/Stable: members still in `pending_sync` by then are removed.
    pub sync_deadline: Option<Instant>,
    pub state_timestamp_ms: i64,
    pub offsets: BTreeMap<(String, i32), Committed>,
    /// The group's metadata changed in a way that must be persisted.
    pub dirty: bool,
    /// Set when the group is a KIP-848 consumer group: then the classic
    /// fields stay empty and `state` stays Empty (Dead once removed).
    pub consumer: Option<ConsumerGroup>,
}

impl Group {
    pub fn new(id: &str, now_ms: i64) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: IndexMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            pending_sync: HashSet::new(),
            join_deadline: None,
            initial: None,
            sync_deadline: None,
            state_timestamp_ms: now_ms,
            offsets: BTreeMap::new(),
            dirty: false,
            consumer: None,
        }
    }

    /// A group as persisted: Stable with every member's session starting now
    /// (as Kafka does when it loads its log), or Empty.
    pub fn restore(id: &str, rec: GroupRecord, cx: &Ctx) -> Group {
        let now = cx.now;
        let mut g = Group::new(id, rec.state_timestamp_ms);
        if let Some(c) = rec.consumer {
            g.consumer = Some(ConsumerGroup::restore(c, cx));
            return g;
        }
        g.generation = rec.generation;
        g.protocol_type = rec.protocol_type;
        g.protocol_name = rec.protocol_name;
        let protocol = g.protocol_name.clone().unwrap_or_default();
        for m in rec.members {
            let mut member = Member {
                id: m.member_id,
                instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                protocols: vec![(protocol.clone(), Bytes::from(m.metadata))],
                assignment: Bytes::from(m.assignment),
                session_deadline: now,
                is_new: false,
                awaiting_join: None,
                awaiting_sync: None,
            };
            member.touch(now);
            if let Some(iid) = &member.instance_id {
                g.static_members.insert(iid.clone(), member.id.clone());
            }
            g.members.insert(member.id.clone(), member);
        }
        g.leader = rec.leader.filter(|l| g.members.contains_key(l));
        if g.members.is_empty() {
            g.protocol_name = None;
        } else {
            if g.leader.is_none() {
                g.leader = g.members.keys().next().cloned();
            }
            g.state = GroupState::Stable;
        }
        g
    }

    pub fn record(&self) -> GroupRecord {
        let protocol = self.protocol_name.as_deref().unwrap_or("");
        GroupRecord {
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| MemberRecord {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    metadata: m.metadata(protocol).to_vec(),
                    assignment: m.assignment.to_vec(),
                })
                .collect(),
            consumer: self.consumer.as_ref().map(ConsumerGroup::record),
        }
    }

    fn transition(&mut self, to: GroupState, cx: &Ctx) {
        tracing::debug!(group = %self.id, from = self.state.as_str(), to = to.as_str(), generation = self.generation, "group state");
        self.state = to;
        self.state_timestamp_ms = cx.now_ms;
    }

    fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms as i64)
            .max()
            .unwrap_or(0)
    }

    fn has_all_members_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// Whether a join may add a member (Kafka's acceptJoiningMember, simplified:
    /// an existing member always, a new one up to group.max.size).
    fn accepts(&self, member_id: &str, cx: &Ctx) -> bool {
        self.members.contains_key(member_id) || self.members.len() < cx.config.max_members
    }

    /// Kafka's supportsProtocols, checked against the other members.
    fn supports_protocols(
        &self,
        member_id: &str,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
    ) -> bool {
        let others = || self.members.values().filter(|m| m.id != member_id);
        if others().next().is_none() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|(name, _)| others().all(|m| m.supports(name)))
    }

    /// The protocol every member supports with the most first-choice votes;
    /// ties go to the earliest vote in member (join) order.
    fn select_protocol(&self) -> Option<String> {
        let mut votes: Vec<(&str, usize)> = Vec::new();
        for m in self.members.values() {
            let choice = m
                .protocols
                .iter()
                .map(|(n, _)| n.as_str())
                .find(|n| self.members.values().all(|o| o.supports(n)));
            if let Some(c) = choice {
                match votes.iter_mut().find(|(n, _)| *n == c) {
                    Some((_, count)) => *count += 1,
                    None => votes.push((c, 1)),
                }
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (n, c) in votes {
            if best.is_none_or(|(_, bc)| c > bc) {
                best = Some((n, c));
            }
        }
        best.map(|(n, _)| n.to_string())
    }

    pub fn validate_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        match instance_id {
            Some(iid) => match self.static_members.get(iid) {
                None => Err(GroupError::UnknownMemberId),
                Some(current) if current != member_id => Err(GroupError::FencedInstanceId),
                Some(_) => Ok(()),
            },
            None if self.members.contains_key(member_id) => Ok(()),
            None => Err(GroupError::UnknownMemberId),
        }
    }

    fn current_members(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or("");
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m.metadata(protocol),
            })
            .collect()
    }

    /// The answer for `member_id` in the current generation: the member list
    /// only for the leader.
    fn join_response(&self, member_id: &str, members: &[JoinedMember]) -> JoinResponse {
        let is_leader = self.leader.as_deref() == Some(member_id);
        JoinResponse {
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: self.protocol_name.clone().unwrap_or_default(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if is_leader {
                members.to_vec()
            } else {
                Vec::new()
            },
        }
    }

    fn add_member(&mut self, member: Member) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member.id.clone());
        }
        if let Some(iid) = &member.instance_id {
            self.static_members.insert(iid.clone(), member.id.clone());
        }
        self.members.insert(member.id.clone(), member);
    }

    /// Drops a member, answering its waiting requests with UnknownMemberId
    /// (the client then rejoins as a new member). Does not rebalance.
    fn remove_member(&mut self, member_id: &str) -> bool {
        let Some(mut m) = self.members.shift_remove(member_id) else {
            return false;
        };
        m.fail_waiters(|| GroupError::UnknownMemberId);
        if let Some(iid) = &m.instance_id {
            if self.static_members.get(iid).map(String::as_str) == Some(member_id) {
                self.static_members.remove(iid);
            }
        }
        self.pending_sync.remove(member_id);
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        true
    }

    /// After members left or expired (Kafka's removeMemberAndUpdateClassicGroup).
    fn after_removal(&mut self, cx: &Ctx) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(cx),
            GroupState::PreparingRebalance if self.has_all_members_joined() => {
                self.complete_join(cx)
            }
            _ => {}
        }
    }

    fn maybe_prepare_rebalance_or_complete_join(&mut self, cx: &Ctx) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty => {
                self.prepare_rebalance(cx)
            }
            _ => self.maybe_complete_join(cx),
        }
    }

    /// Completes the join phase as soon as every member has rejoined, except
    /// during the initial delay of a group that was empty.
    fn maybe_complete_join(&mut self, cx: &Ctx) {
        if self.state == GroupState::PreparingRebalance
            && self.initial.is_none()
            && self.has_all_members_joined()
        {
            self.complete_join(cx);
        }
    }

    fn prepare_rebalance(&mut self, cx: &Ctx) {
        if self.state == GroupState::CompletingRebalance {
            // The assignment being synced is void: waiting followers retry.
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(tx) = m.awaiting_sync.take() {
                    let _ = tx.send(Err(GroupError::RebalanceInProgress));
                }
            }
        }
        self.sync_deadline = None;
        self.pending_sync.clear();
        let initial = self.state == GroupState::Empty;
        self.transition(GroupState::PreparingRebalance, cx);
        let timeout_ms = self.rebalance_timeout_ms();
        if initial {
            let delay_ms = cx.config.initial_rebalance_delay_ms;
            let cap = cx.now + Duration::from_millis((timeout_ms.max(0) as u64).max(delay_ms));
            self.initial = Some(InitialDelay { delay_ms, cap });
            self.join_deadline = Some(cx.now + Duration::from_millis(delay_ms));
        } else {
            self.initial = None;
            if self.has_all_members_joined() {
                self.complete_join(cx);
            } else {
                self.join_deadline = Some(cx.now + ms(timeout_ms));
            }
        }
    }

    /// Ends the join phase: members that did not rejoin are dropped (static
    /// ones keep their slot until their session expires), a new generation
    /// starts and every waiting join is answered.
    fn complete_join(&mut self, cx: &Ctx) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        self.join_deadline = None;
        self.initial = None;
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            tracing::info!(group = %self.id, member = %id, "member did not rejoin in time");
            self.remove_member(&id);
        }
        if !self.members.is_empty() && !self.elect_joined_leader() {
            // Only static members that did not rejoin are left: wait for
            // them to rejoin or for their sessions to expire.
            self.join_deadline = Some(cx.now + ms(self.rebalance_timeout_ms()));
            return;
        }
        self.generation = self.generation.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition(GroupState::Empty, cx);
            self.dirty = true;
            return;
        }
        self.protocol_name = self.select_protocol();
        self.transition(GroupState::CompletingRebalance, cx);
        self.pending_sync = self.members.keys().cloned().collect();
        self.sync_deadline = Some(cx.now + ms(self.rebalance_timeout_ms()));
        let all = self.current_members();
        let mut answers = Vec::new();
        for m in self.members.values_mut() {
            m.is_new = false;
            m.touch(cx.now);
            if let Some(tx) = m.awaiting_join.take() {
                answers.push((tx, m.id.clone()));
            }
        }
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), protocol = ?self.protocol_name, "rebalance: join phase complete");
        for (tx, id) in answers {
            let _ = tx.send(Ok(self.join_response(&id, &all)));
        }
    }

    /// Keeps the leader if it rejoined, else picks the first member that did.
    fn elect_joined_leader(&mut self) -> bool {
        if let Some(l) = &self.leader {
            if self
                .members
                .get(l)
                .is_some_and(|m| m.awaiting_join.is_some())
            {
                return true;
            }
        }
        match self.members.values().find(|m| m.awaiting_join.is_some()) {
            Some(m) => {
                self.leader = Some(m.id.clone());
                true
            }
            None => false,
        }
    }

    // ---- JoinGroup ----

    /// The coordinator has validated the group id, the session timeout and sizes.
    pub fn join(&mut self, req: &JoinRequest, cx: &Ctx) -> Outcome<JoinResponse, JoinRx> {
        if let Some(c) = &self.consumer {
            if !c.members.is_empty() {
                return Outcome::Ready(Err(GroupError::InconsistentGroupProtocol));
            }
            // An empty consumer group becomes a classic one.
            self.consumer = None;
            self.dirty = true;
        }
        if req.member_id.is_empty() {
            return self.join_new_member(req, cx);
        }
        if !self.accepts(&req.member_id, cx) {
            return Outcome::Ready(Err(GroupError::GroupMaxSizeReached));
        }
        if !self.supports_protocols(&req.member_id, &req.protocol_type, &req.protocols) {
            return Outcome::Ready(Err(GroupError::InconsistentGroupProtocol));
        }
        if self.pending.remove(&req.member_id).is_some() {
            return self.add_member_and_rebalance(req.member_id.clone(), req, cx);
        }
        if let Err(e) = self.validate_member(&req.member_id, req.group_instance_id.as_deref()) {
            return Outcome::Ready(Err(e));
        }
        let member = self.members.get_mut(&req.member_id).expect("validated");
        member.touch(cx.now);
        let unchanged = member.protocols == req.protocols;
        let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(req, cx),
            GroupState::CompletingRebalance if unchanged => Outcome::Ready(Ok(
                self.join_response(&req.member_id, &self.current_members())
            )),
            GroupState::Stable if unchanged && !is_leader => {
                Outcome::Ready(Ok(self.join_response(&req.member_id, &[])))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member_and_rebalance(req, cx)
            }
            GroupState::Empty | GroupState::Dead => {
                Outcome::Ready(Err(GroupError::UnknownMemberId))
            }
        }
    }

    fn join_new_member(&mut self, req: &JoinRequest, cx: &Ctx) -> Outcome<JoinResponse, JoinRx> {
        let existing_static = req
            .group_instance_id
            .as_ref()
            .and_then(|iid| self.static_members.get(iid).cloned());
        let accepted = match &existing_static {
            Some(old) => self.accepts(old, cx),
            None => self.accepts("", cx),
        };
        if !accepted {
            return Outcome::Ready(Err(GroupError::GroupMaxSizeReached));
        }
        let me = existing_static.as_deref().unwrap_or("");
        if !self.supports_protocols(me, &req.protocol_type, &req.protocols) {
            return Outcome::Ready(Err(GroupError::InconsistentGroupProtocol));
        }
        let uuid = uuid::Uuid::new_v4();
        if let Some(iid) = &req.group_instance_id {
            let new_id = format!("{iid}-{uuid}");
            return match existing_static {
                Some(old) => self.replace_static_member(&old, new_id, req, cx),
                None => self.add_member_and_rebalance(new_id, req, cx),
            };
        }
        let new_id = format!("{}-{uuid}", req.client_id);
        if req.require_known_member_id {
            if self.pending.len() >= cx.config.max_members {
                return Outcome::Ready(Err(GroupError::GroupMaxSizeReached));
            }
            self.pending
                .insert(new_id.clone(), cx.now + ms(req.session_timeout_ms as i64));
            return Outcome::Ready(Err(GroupError::MemberIdRequired(new_id)));
        }
        self.add_member_and_rebalance(new_id, req, cx)
    }

    fn add_member_and_rebalance(
        &mut self,
        id: String,
        req: &JoinRequest,
        cx: &Ctx,
    ) -> Outcome<JoinResponse, JoinRx> {
        let (tx, rx) = oneshot::channel();
        if let Some(init) = self.initial.as_ref() {
            if self.state == GroupState::PreparingRebalance {
                self.join_deadline =
                    Some((cx.now + Duration::from_millis(init.delay_ms)).min(init.cap));
            }
        }
        self.add_member(Member {
            id,
            instance_id: req.group_instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocol_type: req.protocol_type.clone(),
            protocols: req.protocols.clone(),
            assignment: Bytes::new(),
            session_deadline: cx.now + NEW_MEMBER_JOIN_TIMEOUT,
            is_new: true,
            awaiting_join: Some(tx),
            awaiting_sync: None,
        });
        self.maybe_prepare_rebalance_or_complete_join(cx);
        Outcome::Wait(rx)
    }

    fn update_member_and_rebalance(
        &mut self,
        req: &JoinRequest,
        cx: &Ctx,
    ) -> Outcome<JoinResponse, JoinRx> {
        let (tx, rx) = oneshot::channel();
        let m = self
            .members
            .get_mut(&req.member_id)
            .expect("caller checked");
        m.protocols = req.protocols.clone();
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        if let Some(old) = m.awaiting_join.replace(tx) {
            // A retried join supersedes the first: that one is answered so it does not hang.
            let _ = old.send(Err(GroupError::RebalanceInProgress));
        }
        self.maybe_prepare_rebalance_or_complete_join(cx);
        Outcome::Wait(rx)
    }

    /// KIP-345: a static member rejoining without member id takes over its
    /// instance's slot under a new id; the old id is fenced. In a Stable
    /// group whose chosen protocol stays the same, nothing rebalances: the
    /// member gets the current generation and keeps its assignment.
    fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        req: &JoinRequest,
        cx: &Ctx,
    ) -> Outcome<JoinResponse, JoinRx> {
        let Some(index) = self.members.get_index_of(old_id) else {
            return Outcome::Ready(Err(GroupError::UnknownMemberId));
        };
        let mut m = self.members.shift_remove(old_id).expect("index found");
        m.fail_waiters(|| GroupError::FencedInstanceId);
        m.id = new_id.clone();
        m.client_id = req.client_id.clone();
        m.client_host = req.client_host.clone();
        m.protocols = req.protocols.clone();
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.touch(cx.now);
        self.members.shift_insert(index, new_id.clone(), m);
        if let Some(iid) = &req.group_instance_id {
            self.static_members.insert(iid.clone(), new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        tracing::info!(group = %self.id, old = %old_id, new = %new_id, "static member replaced");
        if self.state == GroupState::Stable && self.select_protocol() == self.protocol_name {
            self.dirty = true;
            return Outcome::Ready(Ok(self.join_response(&new_id, &self.current_members())));
        }
        let (tx, rx) = oneshot::channel();
        self.members
            .get_mut(&new_id)
            .expect("inserted")
            .awaiting_join = Some(tx);
        self.maybe_prepare_rebalance_or_complete_join(cx);
        Outcome::Wait(rx)
    }

    // ---- SyncGroup ----

    pub fn sync(&mut self, req: &SyncRequest, cx: &Ctx) -> Outcome<SyncResponse, SyncRx> {
        if let Err(e) = self.validate_member(&req.member_id, req.group_instance_id.as_deref()) {
            return Outcome::Ready(Err(e));
        }
        if req.generation_id != self.generation {
            return Outcome::Ready(Err(GroupError::IllegalGeneration));
        }
        let inconsistent = |given: &Option<String>, ours: &Option<String>| matches!((given, ours), (Some(g), Some(o)) if g != o);
        if inconsistent(&req.protocol_type, &self.protocol_type)
            || inconsistent(&req.protocol_name, &self.protocol_name)
        {
            return Outcome::Ready(Err(GroupError::InconsistentGroupProtocol));
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => {
                Outcome::Ready(Err(GroupError::UnknownMemberId))
            }
            GroupState::PreparingRebalance => Outcome::Ready(Err(GroupError::RebalanceInProgress)),
            GroupState::Stable => {
                self.synced(&req.member_id, cx);
                let m = &self.members[&req.member_id];
                Outcome::Ready(Ok(self.sync_response(m)))
            }
            GroupState::CompletingRebalance => {
                self.synced(&req.member_id, cx);
                let (tx, rx) = oneshot::channel();
                let m = self.members.get_mut(&req.member_id).expect("validated");
                if let Some(old) = m.awaiting_sync.replace(tx) {
                    let _ = old.send(Err(GroupError::RebalanceInProgress));
                }
                if self.leader.as_deref() == Some(req.member_id.as_str()) {
                    self.apply_assignments(&req.assignments, cx);
                }
                Outcome::Wait(rx)
            }
        }
    }

    fn synced(&mut self, member_id: &str, cx: &Ctx) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.touch(cx.now);
        }
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty() {
            self.sync_deadline = None;
        }
    }

    fn sync_response(&self, m: &Member) -> SyncResponse {
        SyncResponse {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: self.protocol_name.clone().unwrap_or_default(),
            assignment: m.assignment.clone(),
        }
    }

    /// The leader's assignment: members it left out get empty bytes, ids that
    /// are not members are ignored (as Kafka does). The group becomes Stable.
    fn apply_assignments(&mut self, assignments: &[(String, Bytes)], cx: &Ctx) {
        let by_member: HashMap<&str, &Bytes> =
            assignments.iter().map(|(id, a)| (id.as_str(), a)).collect();
        for m in self.members.values_mut() {
            m.assignment = by_member
                .get(m.id.as_str())
                .map(|a| (*a).clone())
                .unwrap_or_default();
        }
        self.transition(GroupState::Stable, cx);
        self.dirty = true;
        let mut answers = Vec::new();
        for m in self.members.values_mut() {
            if let Some(tx) = m.awaiting_sync.take() {
                answers.push((tx, m.assignment.clone()));
            }
        }
        for (tx, assignment) in answers {
            let _ = tx.send(Ok(SyncResponse {
                protocol_type: self.protocol_type.clone().unwrap_or_default(),
                protocol_name: self.protocol_name.clone().unwrap_or_default(),
                assignment,
            }));
        }
        tracing::info!(group = %self.id, generation = self.generation, "group stable");
    }

    // ---- Heartbeat, LeaveGroup ----

    pub fn heartbeat(
        &mut self,
        generation_id: i32,
        member_id: &str,
        instance_id: Option<&str>,
        cx: &Ctx,
    ) -> Result<(), GroupError> {
        self.validate_member(member_id, instance_id)?;
        if generation_id != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                self.members
                    .get_mut(member_id)
                    .expect("validated")
                    .touch(cx.now);
                Err(GroupError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.members
                    .get_mut(member_id)
                    .expect("validated")
                    .touch(cx.now);
                Ok(())
            }
        }
    }

    pub fn leave(
        &mut self,
        leaving: &[(String, Option<String>)],
        cx: &Ctx,
    ) -> Vec<Result<(), GroupError>> {
        let mut removed = false;
        let results = leaving
            .iter()
            .map(|(member_id, instance_id)| match instance_id {
                None => {
                    if self.pending.remove(member_id).is_some() || self.remove_member(member_id) {
                        removed = true;
                        Ok(())
                    } else {
                        Err(GroupError::UnknownMemberId)
                    }
                }
                Some(iid) => match self.static_members.get(iid).cloned() {
                    None => Err(GroupError::UnknownMemberId),
                    Some(current) if !member_id.is_empty() && &current != member_id => {
                        Err(GroupError::FencedInstanceId)
                    }
                    Some(current) => {
                        removed |= self.remove_member(&current);
                        Ok(())
                    }
                },
            })
            .collect();
        if removed {
            tracing::info!(group = %self.id, "members left");
            self.after_removal(cx);
        }
        results
    }

    // ---- timers ----

    pub fn next_deadline(&self) -> Option<Instant> {
        if let Some(c) = &self.consumer {
            return c.next_deadline();
        }
        let members = self.members.values().map(|m| m.session_deadline);
        let pending = self.pending.values().copied();
        let join = self
            .join_deadline
            .filter(|_| self.state == GroupState::PreparingRebalance);
        members
            .chain(pending)
            .chain(join)
            .chain(self.sync_deadline)
            .min()
    }

    /// Fires every timer that is due at `cx.now`.
    pub fn on_timers(&mut self, cx: &Ctx) {
        let now = cx.now;
        if let Some(c) = &mut self.consumer {
            let removed = c.on_timers(now);
            if !removed.is_empty() {
                tracing::info!(group = %self.id, members = ?removed, "consumer group members fenced (session or rebalance timeout)");
                if c.members.is_empty() {
                    self.state_timestamp_ms = cx.now_ms;
                }
                self.dirty = true;
            }
            return;
        }
        let before = self.pending.len();
        self.pending.retain(|_, deadline| *deadline > now);
        let mut removed = self.pending.len() != before;

        let mut expired = Vec::new();
        for m in self.members.values_mut() {
            if m.session_deadline > now {
                continue;
            }
            if !m.is_new && (m.awaiting_join.is_some() || m.awaiting_sync.is_some()) {
                // A member waiting on the coordinator cannot heartbeat.
                m.touch(now);
            } else {
                expired.push(m.id.clone());
            }
        }
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            removed |= self.remove_member(&id);
        }
        if removed {
            self.after_removal(cx);
        }

        if self.state == GroupState::PreparingRebalance
            && self.join_deadline.is_some_and(|d| d <= now)
        {
            self.join_deadline = None;
            self.complete_join(cx);
        }

        if self.sync_deadline.is_some_and(|d| d <= now) {
            self.sync_deadline = None;
            if matches!(
                self.state,
                GroupState::CompletingRebalance | GroupState::Stable
            ) && !self.pending_sync.is_empty()
            {
                let late: Vec<String> = self.pending_sync.drain().collect();
                tracing::info!(group = %self.id, members = ?late, "members did not sync in time");
                for id in late {
                    self.remove_member(&id);
                }
                self.prepare_rebalance(cx);
            }
        }
    }

    // ---- offsets ----

    /// Kafka's ClassicGroup.validateOffsetCommit; a valid commit from a member
    /// also counts as a sign of life.
    pub fn validate_commit(
        &mut self,
        generation_id: i32,
        member_id: &str,
        instance_id: Option<&str>,
        cx: &Ctx,
    ) -> Result<(), GroupError> {
        if let Some(c) = &self.consumer {
            return c.validate_commit(member_id, generation_id);
        }
        if generation_id < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if generation_id >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.validate_member(member_id, instance_id)?;
            if generation_id != self.generation {
                return Err(GroupError::IllegalGeneration);
            }
            self.members
                .get_mut(member_id)
                .expect("validated")
                .touch(cx.now);
        } else if self.state != GroupState::Empty {
            return Err(GroupError::UnknownMemberId);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Topics some member subscribes to, when the group uses the consumer
    /// protocol and every subscription parses (else None, as Kafka).
    pub fn subscribed_topics(&self) -> Option<HashSet<String>> {
        if let Some(c) = &self.consumer {
            return (!c.members.is_empty())
                .then(|| c.subscribed_topic_names().into_iter().collect());
        }
        if self.protocol_type.as_deref() != Some("consumer") || self.members.is_empty() {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = HashSet::new();
        for m in self.members.values() {
            topics.extend(super::subscription::subscribed_topics(
                &m.metadata(protocol),
            )?);
        }
        Some(topics)
    }

    /// Offsets past retention (Kafka's offsetExpirationCondition): in an Empty
    /// group, `retention_ms` after both the last commit and the group
    /// becoming Empty; a Stable consumer group's offsets of topics no member
    /// subscribes to, `retention_ms` after their commit.
    pub fn expired_offsets(&self, now_ms: i64, retention_ms: i64) -> Vec<(String, i32)> {
        let old = |base: i64| now_ms.saturating_sub(base) >= retention_ms;
        let state = match &self.consumer {
            Some(c) if c.members.is_empty() => GroupState::Empty,
            Some(_) => GroupState::Stable,
            None => self.state,
        };
        match state {
            GroupState::Empty => {
                let since = if self.protocol_type.is_some() || self.consumer.is_some() {
                    self.state_timestamp_ms
                } else {
                    i64::MIN
                };
                self.offsets
                    .iter()
                    .filter(|(_, c)| old(c.commit_timestamp_ms.max(since)))
                    .map(|(k, _)| k.clone())
                    .collect()
            }
            GroupState::Stable => match self.subscribed_topics() {
                Some(topics) => self
                    .offsets
                    .iter()
                    .filter(|((t, _), c)| !topics.contains(t) && old(c.commit_timestamp_ms))
                    .map(|(k, _)| k.clone())
                    .collect(),
                None => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// Nothing left to keep: no members, no pending joins, no offsets.
    pub fn is_removable(&self) -> bool {
        self.state == GroupState::Empty
            && self.consumer.as_ref().is_none_or(|c| c.members.is_empty())
            && self.members.is_empty()
            && self.pending.is_empty()
            && self.offsets.is_empty()
    }
}
