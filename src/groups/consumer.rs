//! One KIP-848 consumer group: Kafka's `ConsumerGroup`, plus the parts of
//! `GroupMetadataManager.consumerGroupHeartbeat` and `CurrentAssignmentBuilder`
//! that act on one group. Pure like `group.rs`: no store, no tasks. The
//! coordinator holds the group's lock, passes the time and a view of the
//! topics, persists the group when `dirty` is set and fires its timers.
//!
//! Epochs: the group epoch moves on every change of membership, of a
//! subscription, or of a subscribed topic (created, deleted, more partitions).
//! The target assignment is recomputed lazily, at the next heartbeat of any
//! member, when the group epoch is ahead of the assignment epoch. Each member
//! then converges on its own target one heartbeat at a time: it first revokes
//! what is no longer its own (keeping its epoch), then takes the target epoch
//! and every target partition that no other member still owns. A partition
//! therefore never belongs to two members at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use tokio::time::{Duration, Instant};
use uuid::Uuid;

use super::assignor::{Assignment, Assignor, MemberSpec};
use super::group::Ctx;
use super::{GroupError, TopicLookup};

/// Partitions as they travel in requests and responses: topic id, partitions.
pub type TopicPartitions = Vec<(Uuid, Vec<i32>)>;

/// Epoch of a member that leaves for good, and of a static member that will return.
pub const LEAVE_EPOCH: i32 = -1;
pub const LEAVE_STATIC_EPOCH: i32 = -2;
/// The heartbeat interval asked of members while the group is not Stable.
pub const RECONCILING_HEARTBEAT_INTERVAL_MS: i32 = 250;
/// Limits on what one member may send.
const MAX_SUBSCRIBED_TOPICS: usize = 10_000;
const MAX_REGEX_LEN: usize = 1024;

/// A ConsumerGroupHeartbeat, as the handler decodes it.
#[derive(Clone, Debug, Default)]
pub struct ConsumerHeartbeat {
    pub group_id: String,
    /// v0: empty when joining (the coordinator picks one); v1: chosen by the client.
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    /// None: unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// None: unchanged; empty: no regex any more.
    pub subscribed_topic_regex: Option<String>,
    /// None: unchanged.
    pub server_assignor: Option<String>,
    /// None: unchanged since the last heartbeat.
    pub owned: Option<TopicPartitions>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Clone, Debug)]
pub struct ConsumerHeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// Sent on a full request, or when the member's assignment changed.
    pub assignment: Option<TopicPartitions>,
}

/// Where a member is in converging on its target assignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    /// Owns exactly what its epoch's target gives it.
    Stable,
    /// Must give up `revoking` before it moves to the target epoch.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions other members still own.
    UnreleasedPartitions,
}

/// A member as persisted (timers live beside it in [`ConsumerGroup`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub topic_names: BTreeSet<String>,
    pub topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    /// What the member owns and may consume.
    pub assigned: Assignment,
    /// What it still owns but must give up.
    pub revoking: Assignment,
    /// Its share of the group's target assignment.
    pub target: Assignment,
    /// A static member that left with epoch -2: it keeps its partitions until
    /// it rejoins under the same instance id or its session expires.
    pub departed: bool,
}

impl ConsumerMember {
    fn new(id: String, req: &ConsumerHeartbeat) -> ConsumerMember {
        ConsumerMember {
            id,
            instance_id: req.instance_id.clone(),
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: 0,
            topic_names: BTreeSet::new(),
            topic_regex: None,
            server_assignor: None,
            epoch: 0,
            previous_epoch: -1,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            revoking: Assignment::new(),
            target: Assignment::new(),
            departed: false,
        }
    }

    /// The epoch ConsumerGroupDescribe shows.
    pub fn shown_epoch(&self) -> i32 {
        if self.departed {
            LEAVE_STATIC_EPOCH
        } else {
            self.epoch
        }
    }
}

/// The persisted form of a consumer group (inside `persist::GroupRecord`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ConsumerGroupRecord {
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    /// Subscribed topics when the group epoch last moved: (id, name, partitions).
    pub topics: Vec<(Uuid, String, i32)>,
    pub members: Vec<ConsumerMember>,
}

struct Timers {
    session: Instant,
    /// Set while the member is revoking: it is fenced if still revoking then.
    revoke: Option<Instant>,
}

/// Consumer group states as Kafka names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerGroupState {
    Empty,
    Assigning,
    Reconciling,
    Stable,
}

impl ConsumerGroupState {
    pub fn as_str(&self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

pub(crate) struct ConsumerGroup {
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    /// Subscribed topics when the group epoch last moved: id -> (name, partitions).
    pub topics: BTreeMap<Uuid, (String, i32)>,
    timers: HashMap<String, Timers>,
    /// Partition -> the member that owns it (assigned or revoking).
    owners: HashMap<(Uuid, i32), String>,
    /// Compiled subscription regexes, by pattern.
    regexes: HashMap<String, regex::Regex>,
    /// The topics' generation `topics` was resolved at, and whether a
    /// subscription changed since: resolving again is needed only then.
    topics_generation: Option<u64>,
    subscriptions_changed: bool,
}

fn ms(v: i64) -> Duration {
    Duration::from_millis(v.max(0) as u64)
}

fn to_assignment(tps: &TopicPartitions) -> Assignment {
    let mut a = Assignment::new();
    for (id, ps) in tps {
        a.entry(*id).or_default().extend(ps.iter().copied());
    }
    a.retain(|_, ps| !ps.is_empty());
    a
}

pub(crate) fn to_topic_partitions(a: &Assignment) -> TopicPartitions {
    a.iter()
        .filter(|(_, ps)| !ps.is_empty())
        .map(|(id, ps)| (*id, ps.iter().copied().collect()))
        .collect()
}

fn is_subset(small: &Assignment, big: &Assignment) -> bool {
    small
        .iter()
        .all(|(t, ps)| ps.is_empty() || big.get(t).is_some_and(|b| ps.is_subset(b)))
}

fn overlaps(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .any(|(t, ps)| b.get(t).is_some_and(|o| !ps.is_disjoint(o)))
}

fn compile_regex(pattern: &str) -> Result<regex::Regex, GroupError> {
    // Kafka matches the whole topic name (Java's Matcher.matches()).
    regex::Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| GroupError::InvalidRegularExpression(e.to_string()))
}

impl ConsumerGroup {
    pub fn new() -> ConsumerGroup {
        ConsumerGroup {
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            topics: BTreeMap::new(),
            timers: HashMap::new(),
            owners: HashMap::new(),
            regexes: HashMap::new(),
            topics_generation: None,
            subscriptions_changed: false,
        }
    }

    /// A group as persisted; every member's session starts now.
    pub fn restore(rec: ConsumerGroupRecord, cx: &Ctx) -> ConsumerGroup {
        let mut g = ConsumerGroup::new();
        g.group_epoch = rec.group_epoch;
        g.assignment_epoch = rec.assignment_epoch;
        g.topics = rec
            .topics
            .into_iter()
            .map(|(id, name, n)| (id, (name, n)))
            .collect();
        for m in rec.members {
            if let Some(re) = &m.topic_regex {
                if let Ok(compiled) = compile_regex(re) {
                    g.regexes.insert(re.clone(), compiled);
                }
            }
            g.take_ownership(&m);
            g.touch(&m.id, cx);
            g.members.insert(m.id.clone(), m);
        }
        g
    }

    pub fn record(&self) -> ConsumerGroupRecord {
        ConsumerGroupRecord {
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            topics: self
                .topics
                .iter()
                .map(|(id, (name, n))| (*id, name.clone(), *n))
                .collect(),
            members: self.members.values().cloned().collect(),
        }
    }

    /// Kafka's ConsumerGroup.maybeUpdateGroupState.
    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// The assignor most members asked for, or the default (as Kafka).
    pub fn assignor(&self) -> Assignor {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.server_assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .and_then(|(name, _)| Assignor::by_name(name))
            .unwrap_or(Assignor::DEFAULT)
    }

    /// Topic names some member subscribes to (explicitly or by regex).
    pub fn subscribed_topic_names(&self) -> BTreeSet<String> {
        self.topics.values().map(|(name, _)| name.clone()).collect()
    }

    fn touch(&mut self, member_id: &str, cx: &Ctx) {
        let session = cx.now + ms(cx.config.consumer_session_timeout_ms as i64);
        self.timers
            .entry(member_id.to_string())
            .and_modify(|t| t.session = session)
            .or_insert(Timers {
                session,
                revoke: None,
            });
    }

    fn release_ownership(&mut self, m: &ConsumerMember) {
        for (t, ps) in m.assigned.iter().chain(m.revoking.iter()) {
            for p in ps {
                if self.owners.get(&(*t, *p)) == Some(&m.id) {
                    self.owners.remove(&(*t, *p));
                }
            }
        }
    }

    fn take_ownership(&mut self, m: &ConsumerMember) {
        for (t, ps) in m.assigned.iter().chain(m.revoking.iter()) {
            for p in ps {
                self.owners.insert((*t, *p), m.id.clone());
            }
        }
    }

    /// Removes a member for good: its partitions are free, the group epoch moves.
    pub fn remove_member(&mut self, member_id: &str) -> bool {
        let Some(m) = self.members.remove(member_id) else {
            return false;
        };
        self.release_ownership(&m);
        self.timers.remove(member_id);
        self.group_epoch += 1;
        self.subscriptions_changed = true;
        true
    }

    // ---- the heartbeat ----

    /// Validates what does not depend on the group's state (Kafka's
    /// throwIfConsumerGroupHeartbeatRequestIsInvalid).
    pub fn validate(req: &ConsumerHeartbeat, version: i16) -> Result<(), GroupError> {
        let invalid = |m: &str| Err(GroupError::InvalidRequest(m.to_string()));
        if req.group_id.is_empty() {
            return invalid("GroupId can't be empty.");
        }
        if version >= 1 && req.member_id.is_empty() {
            return invalid("MemberId can't be empty.");
        }
        if req.instance_id.as_deref() == Some("") {
            return invalid("InstanceId can't be empty.");
        }
        if req.rack_id.as_deref() == Some("") {
            return invalid("RackId can't be empty.");
        }
        match req.member_epoch {
            0 => {
                if req.rebalance_timeout_ms == -1 {
                    return invalid("RebalanceTimeoutMs must be provided in first request.");
                }
                if req.owned.as_ref().is_none_or(|o| !o.is_empty()) {
                    return invalid("TopicPartitions must be empty when (re-)joining.");
                }
                // Empty ones are fine: a member that subscribes to nothing.
                if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
                    return invalid(
                        "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.",
                    );
                }
            }
            LEAVE_STATIC_EPOCH if req.instance_id.is_none() => {
                return invalid("InstanceId can't be null.");
            }
            e if e < LEAVE_STATIC_EPOCH => return invalid("MemberEpoch is invalid."),
            _ => {}
        }
        if req.member_epoch != 0 && req.member_id.is_empty() {
            return invalid("MemberId can't be empty.");
        }
        if req.rebalance_timeout_ms < -1 {
            return invalid("RebalanceTimeoutMs is invalid.");
        }
        if let Some(a) = &req.server_assignor {
            if Assignor::by_name(a).is_none() {
                return Err(GroupError::UnsupportedAssignor(a.clone()));
            }
        }
        if req
            .subscribed_topic_names
            .as_ref()
            .is_some_and(|n| n.len() > MAX_SUBSCRIBED_TOPICS)
        {
            return invalid("SubscribedTopicNames has too many topics.");
        }
        if let Some(re) = &req.subscribed_topic_regex {
            if re.len() > MAX_REGEX_LEN {
                return Err(GroupError::InvalidRegularExpression(format!(
                    "longer than {MAX_REGEX_LEN} bytes"
                )));
            }
            if !re.is_empty() {
                compile_regex(re)?;
            }
        }
        Ok(())
    }

    /// A validated heartbeat. `new_member_id` is the id for a v0 member joining without one.
    pub fn heartbeat(
        &mut self,
        req: &ConsumerHeartbeat,
        new_member_id: impl FnOnce() -> String,
        topics: &dyn TopicLookup,
        cx: &Ctx,
    ) -> Result<(ConsumerHeartbeatResponse, bool), GroupError> {
        let interval = cx.config.consumer_heartbeat_interval_ms;
        if req.member_epoch == LEAVE_EPOCH || req.member_epoch == LEAVE_STATIC_EPOCH {
            self.leave(req)?;
            let resp = ConsumerHeartbeatResponse {
                member_id: req.member_id.clone(),
                member_epoch: req.member_epoch,
                heartbeat_interval_ms: 0,
                assignment: None,
            };
            return Ok((resp, true));
        }

        // Whatever changes in this heartbeat moves the group epoch once.
        let mut bump = false;
        let member_id = if req.member_epoch == 0 {
            let (id, joined) = self.join(req, new_member_id, cx)?;
            bump |= joined;
            id
        } else {
            let m = self
                .members
                .get(&req.member_id)
                .filter(|m| !m.departed)
                .ok_or(GroupError::UnknownMemberId)?;
            if req.instance_id.is_some() && req.instance_id != m.instance_id {
                return Err(GroupError::FencedInstanceId);
            }
            self.check_epoch(m, req)?;
            req.member_id.clone()
        };

        // Update what the member told us; a changed subscription moves the group epoch.
        let mut member = self.members.remove(&member_id).expect("member exists");
        let updated = self.update_member(&mut member, req);
        self.members.insert(member_id.clone(), member);
        let updated = updated?;
        self.subscriptions_changed |= updated;
        bump |= updated;
        bump |= self.refresh_topics(topics);
        // A join is persisted even when it moves nothing (a static member's return).
        let mut changed = bump || req.member_epoch == 0;
        if bump {
            self.group_epoch += 1;
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target();
            changed = true;
        }

        let before = self.members[&member_id].assigned.clone();
        let owned = req.owned.as_ref().map(to_assignment);
        changed |= self.reconcile(&member_id, owned.as_ref(), cx);
        self.touch(&member_id, cx);

        // While the group converges, members are asked to come back sooner
        // than the configured interval: each step of a rebalance (revoke,
        // confirm, take released partitions) waits for one heartbeat.
        let interval = if self.state() == ConsumerGroupState::Stable {
            interval
        } else {
            interval.min(RECONCILING_HEARTBEAT_INTERVAL_MS)
        };
        let m = &self.members[&member_id];
        let full = req.member_epoch == 0
            || (req.rebalance_timeout_ms != -1
                && (req.subscribed_topic_names.is_some() || req.subscribed_topic_regex.is_some())
                && req.owned.is_some());
        let resp = ConsumerHeartbeatResponse {
            member_id: member_id.clone(),
            member_epoch: m.epoch,
            heartbeat_interval_ms: interval,
            assignment: (full || m.assigned != before).then(|| to_topic_partitions(&m.assigned)),
        };
        Ok((resp, changed))
    }

    /// Epoch 0: a new member, a known one rejoining, or a static member
    /// returning under a new member id. Returns its id and whether it is new
    /// (which moves the group epoch).
    fn join(
        &mut self,
        req: &ConsumerHeartbeat,
        new_member_id: impl FnOnce() -> String,
        cx: &Ctx,
    ) -> Result<(String, bool), GroupError> {
        let member_id = if req.member_id.is_empty() {
            new_member_id()
        } else {
            req.member_id.clone()
        };
        if let Some(iid) = &req.instance_id {
            let existing = self
                .members
                .values()
                .find(|m| m.instance_id.as_deref() == Some(iid))
                .map(|m| (m.id.clone(), m.departed));
            match existing {
                Some((old, _)) if old == member_id => return Ok((member_id, false)),
                Some((_, false)) => {
                    return Err(GroupError::UnreleasedInstanceId(iid.clone()));
                }
                Some((old, true)) => {
                    // The static member returns: the new id takes over its
                    // partitions, epoch and target without a rebalance.
                    let mut m = self.members.remove(&old).expect("found");
                    self.release_ownership(&m);
                    self.timers.remove(&old);
                    m.id = member_id.clone();
                    m.departed = false;
                    self.take_ownership(&m);
                    self.members.insert(member_id.clone(), m);
                    self.touch(&member_id, cx);
                    return Ok((member_id, false));
                }
                None => {}
            }
        }
        if self.members.contains_key(&member_id) {
            return Ok((member_id, false));
        }
        if self.members.len() >= cx.config.max_members {
            return Err(GroupError::GroupMaxSizeReached);
        }
        let m = ConsumerMember::new(member_id.clone(), req);
        self.members.insert(member_id.clone(), m);
        self.touch(&member_id, cx);
        Ok((member_id, true))
    }

    /// Kafka's throwIfConsumerGroupMemberEpochIsInvalid: an epoch ahead of
    /// ours, or behind it unless it is the previous one and the member owns
    /// no more than it was given (our answer with the new epoch was lost).
    fn check_epoch(&self, m: &ConsumerMember, req: &ConsumerHeartbeat) -> Result<(), GroupError> {
        if req.member_epoch > m.epoch {
            return Err(GroupError::FencedMemberEpoch);
        }
        if req.member_epoch < m.epoch {
            let subset = req
                .owned
                .as_ref()
                .is_some_and(|o| is_subset(&to_assignment(o), &m.assigned));
            if req.member_epoch != m.previous_epoch || !subset {
                return Err(GroupError::FencedMemberEpoch);
            }
        }
        Ok(())
    }

    /// Applies the request's fields; true if the subscription or assignor changed.
    fn update_member(
        &mut self,
        m: &mut ConsumerMember,
        req: &ConsumerHeartbeat,
    ) -> Result<bool, GroupError> {
        let mut changed = false;
        if req.rebalance_timeout_ms != -1 {
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if req.rack_id.is_some() {
            m.rack_id = req.rack_id.clone();
        }
        m.client_id = req.client_id.clone();
        m.client_host = req.client_host.clone();
        if let Some(names) = &req.subscribed_topic_names {
            let names: BTreeSet<String> = names.iter().cloned().collect();
            if names != m.topic_names {
                m.topic_names = names;
                changed = true;
            }
        }
        if let Some(re) = &req.subscribed_topic_regex {
            let re = (!re.is_empty()).then(|| re.clone());
            if re != m.topic_regex {
                if let Some(p) = &re {
                    if !self.regexes.contains_key(p) {
                        self.regexes.insert(p.clone(), compile_regex(p)?);
                    }
                }
                m.topic_regex = re;
                changed = true;
            }
        }
        if let Some(a) = &req.server_assignor {
            if m.server_assignor.as_deref() != Some(a) {
                m.server_assignor = Some(a.clone());
                changed = true;
            }
        }
        Ok(changed)
    }

    /// Resolves every member's subscription against the topics; true if the
    /// set of subscribed topics or a partition count changed.
    fn refresh_topics(&mut self, topics: &dyn TopicLookup) -> bool {
        // Read before resolving, so that a change made meanwhile is seen next time.
        let generation = topics.generation();
        if !self.subscriptions_changed && self.topics_generation == Some(generation) {
            return false;
        }
        self.subscriptions_changed = false;
        self.topics_generation = Some(generation);
        let mut now: BTreeMap<Uuid, (String, i32)> = BTreeMap::new();
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for m in self.members.values() {
            names.extend(m.topic_names.iter().map(String::as_str));
        }
        let has_regex = self.members.values().any(|m| m.topic_regex.is_some());
        let all = if has_regex {
            topics.topic_names()
        } else {
            Vec::new()
        };
        for name in &all {
            let matched = self.members.values().any(|m| {
                m.topic_regex
                    .as_ref()
                    .and_then(|p| self.regexes.get(p))
                    .is_some_and(|re| re.is_match(name))
            });
            if matched {
                names.insert(name.as_str());
            }
        }
        for name in names {
            if let Some((id, n)) = topics.topic(name) {
                now.insert(id, (name.to_string(), n));
            }
        }
        // Prune compiled regexes nobody uses any more.
        let used: BTreeSet<&String> = self
            .members
            .values()
            .filter_map(|m| m.topic_regex.as_ref())
            .collect();
        self.regexes.retain(|p, _| used.contains(p));
        if now != self.topics {
            self.topics = now;
            return true;
        }
        false
    }

    /// The member's subscribed topic ids among `self.topics`.
    fn member_topics(&self, m: &ConsumerMember) -> BTreeSet<Uuid> {
        let re = m.topic_regex.as_ref().and_then(|p| self.regexes.get(p));
        self.topics
            .iter()
            .filter(|(_, (name, _))| {
                m.topic_names.contains(name) || re.is_some_and(|re| re.is_match(name))
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Runs the group's assignor and makes its result every member's target.
    fn compute_target(&mut self) {
        let subs: Vec<(String, BTreeSet<Uuid>)> = self
            .members
            .values()
            .map(|m| (m.id.clone(), self.member_topics(m)))
            .collect();
        let specs: Vec<MemberSpec> = subs
            .iter()
            .map(|(id, topics)| {
                let m = &self.members[id];
                MemberSpec {
                    member_id: id,
                    instance_id: m.instance_id.as_deref(),
                    topics,
                    current: &m.target,
                }
            })
            .collect();
        let counts: BTreeMap<Uuid, i32> =
            self.topics.iter().map(|(id, (_, n))| (*id, *n)).collect();
        let mut result = self.assignor().assign(&specs, &counts);
        for m in self.members.values_mut() {
            m.target = result.remove(&m.id).unwrap_or_default();
        }
        self.assignment_epoch = self.group_epoch;
    }

    /// Kafka's CurrentAssignmentBuilder: moves the member one step towards its
    /// target. `owned`: what the member says it owns (None: not told). True if
    /// the member changed.
    fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, cx: &Ctx) -> bool {
        let m = &self.members[member_id];
        let step = match m.state {
            MemberState::Stable => m.epoch != self.assignment_epoch,
            // Only once the member shows it gave up what it must.
            MemberState::UnrevokedPartitions => owned.is_some_and(|o| !overlaps(o, &m.revoking)),
            MemberState::UnreleasedPartitions => true,
        };
        if !step {
            return false;
        }
        let next = self.next_assignment(m, owned);
        let old = self.members.remove(member_id).expect("member exists");
        self.release_ownership(&old);
        let changed = next.epoch != old.epoch
            || next.state != old.state
            || next.assigned != old.assigned
            || next.revoking != old.revoking;
        self.take_ownership(&next);
        let timers = self.timers.get_mut(member_id);
        if let Some(t) = timers {
            t.revoke = match next.state {
                MemberState::UnrevokedPartitions
                    if old.state != MemberState::UnrevokedPartitions =>
                {
                    Some(cx.now + ms(next.rebalance_timeout_ms as i64))
                }
                MemberState::UnrevokedPartitions => t.revoke,
                _ => None,
            };
        }
        self.members.insert(member_id.to_string(), next);
        changed
    }

    /// Kafka's CurrentAssignmentBuilder.computeNextAssignment.
    fn next_assignment(&self, m: &ConsumerMember, owned: Option<&Assignment>) -> ConsumerMember {
        let mut assigned = Assignment::new();
        let mut revoking = Assignment::new();
        let mut pending = Assignment::new();
        let mut unreleased = false;
        let topics: BTreeSet<&Uuid> = m.target.keys().chain(m.assigned.keys()).collect();
        let empty = BTreeSet::new();
        for t in topics {
            let target = m.target.get(t).unwrap_or(&empty);
            let current = m.assigned.get(t).unwrap_or(&empty);
            let keep: BTreeSet<i32> = current.intersection(target).copied().collect();
            let revoke: BTreeSet<i32> = current.difference(&keep).copied().collect();
            let mut add = BTreeSet::new();
            for p in target.difference(&keep) {
                match self.owners.get(&(*t, *p)) {
                    Some(owner) if owner != &m.id => unreleased = true,
                    _ => {
                        add.insert(*p);
                    }
                }
            }
            if !keep.is_empty() {
                assigned.insert(*t, keep);
            }
            if !revoke.is_empty() {
                revoking.insert(*t, revoke);
            }
            if !add.is_empty() {
                pending.insert(*t, add);
            }
        }
        let mut next = m.clone();
        let still_owns = owned.is_none_or(|o| overlaps(o, &revoking));
        if !revoking.is_empty() && still_owns {
            next.state = MemberState::UnrevokedPartitions;
            next.assigned = assigned;
            next.revoking = revoking;
            return next;
        }
        for (t, ps) in pending {
            assigned.entry(t).or_default().extend(ps);
        }
        if next.epoch != self.assignment_epoch {
            next.previous_epoch = next.epoch;
            next.epoch = self.assignment_epoch;
        }
        next.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
        next.assigned = assigned;
        next.revoking = Assignment::new();
        next
    }

    /// Epoch -1 (leave for good) or -2 (a static member that will return).
    fn leave(&mut self, req: &ConsumerHeartbeat) -> Result<(), GroupError> {
        let member_id = match &req.instance_id {
            Some(iid) => {
                let m = self
                    .members
                    .values()
                    .find(|m| m.instance_id.as_deref() == Some(iid))
                    .ok_or(GroupError::UnknownMemberId)?;
                if m.id != req.member_id {
                    return Err(GroupError::FencedInstanceId);
                }
                m.id.clone()
            }
            None => {
                if !self.members.contains_key(&req.member_id) {
                    return Err(GroupError::UnknownMemberId);
                }
                req.member_id.clone()
            }
        };
        if req.member_epoch == LEAVE_STATIC_EPOCH {
            // It keeps what it was assigned, not what it was giving up.
            let mut m = self.members.remove(&member_id).expect("found");
            self.release_ownership(&m);
            m.revoking.clear();
            if m.state == MemberState::UnrevokedPartitions {
                m.state = MemberState::Stable;
            }
            m.departed = true;
            self.take_ownership(&m);
            if let Some(t) = self.timers.get_mut(&member_id) {
                t.revoke = None;
            }
            self.members.insert(member_id.clone(), m);
            tracing::info!(member = %member_id, "static member left temporarily");
        } else {
            self.remove_member(&member_id);
            tracing::info!(member = %member_id, "member left the group");
        }
        Ok(())
    }

    // ---- timers ----

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers
            .values()
            .flat_map(|t| std::iter::once(t.session).chain(t.revoke))
            .min()
    }

    /// Fences members whose session expired or who did not revoke in time.
    /// Returns the removed member ids.
    pub fn on_timers(&mut self, now: Instant) -> Vec<String> {
        let expired: Vec<String> = self
            .timers
            .iter()
            .filter(|(_, t)| t.session <= now || t.revoke.is_some_and(|r| r <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.remove_member(id);
        }
        // Timers of members that no longer exist (cannot happen; be safe).
        let members = &self.members;
        self.timers.retain(|id, _| members.contains_key(id));
        expired
    }

    // ---- offsets ----

    /// Kafka's ConsumerGroup.validateOffsetCommit for OffsetCommit v9+.
    pub fn validate_commit(&self, member_id: &str, epoch: i32) -> Result<(), GroupError> {
        if epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        self.check_member_epoch(member_id, epoch)
    }

    /// Kafka's ConsumerGroup.validateOffsetFetch: members must fetch with their
    /// current epoch; a fetch without member id and epoch (admin) is always fine.
    pub fn validate_fetch(&self, member_id: Option<&str>, epoch: i32) -> Result<(), GroupError> {
        let Some(member_id) = member_id else {
            return if epoch < 0 {
                Ok(())
            } else {
                Err(GroupError::UnknownMemberId)
            };
        };
        self.check_member_epoch(member_id, epoch)
    }

    /// Kafka's validateMemberEpoch: the member exists and `epoch` is its current one.
    fn check_member_epoch(&self, member_id: &str, epoch: i32) -> Result<(), GroupError> {
        let m = self
            .members
            .get(member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        if epoch != m.epoch {
            return Err(GroupError::StaleMemberEpoch);
        }
        Ok(())
    }
}
