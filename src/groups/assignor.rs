//! Server-side partition assignors for KIP-848 consumer groups: the broker
//! computes each member's target assignment itself, as Apache Kafka 4.x's
//! group coordinator does with its `UniformAssignor` ("uniform", the default)
//! and `RangeAssignor` ("range").
//!
//! Both assignors guarantee, for any input:
//! - every partition of every existing topic (partition count > 0) that at
//!   least one member subscribes to is assigned to exactly one member, and that
//!   member subscribes to the topic; nothing else is assigned;
//! - every member gets an entry in the result (empty if it subscribes to
//!   nothing), and assignments never contain empty partition sets;
//! - the result depends only on the set of members, not on their order;
//! - no panics (non-positive partition counts mean "no partitions"; a
//!   duplicated member id keeps one of its specs, chosen deterministically).
//!
//! Uniform: balanced first, sticky second. When all members subscribe to the
//! same topics every member gets floor or ceil of partitions/members, and
//! exactly as many partitions move as that requires. Otherwise no partition
//! could move to another subscriber of its topic that has two or more fewer
//! partitions (as Kafka's heterogeneous builder aims for; load is not shifted
//! along chains of members). Members keep their current partitions wherever
//! balance allows, and re-running with the result as the current assignment
//! changes nothing.
//!
//! Range: per topic, the subscribers are ordered (static members first, by
//! instance id, then dynamic members, by member id) and each gets a contiguous
//! range, the first `partitions % subscribers` getting one extra. Like
//! Kafka's, it is not sticky: it depends only on subscriptions, so topics with
//! the same partition count and subscribers are co-partitioned.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use uuid::Uuid;

/// Partitions per topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// One member as the assignor sees it.
pub struct MemberSpec<'a> {
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    /// Topic ids the member subscribes to that exist (the caller resolves names/regex and drops unknown topics).
    pub topics: &'a BTreeSet<Uuid>,
    /// The member's current target assignment (for stickiness); may name partitions/topics that no longer exist or are no longer subscribed.
    pub current: &'a Assignment,
}

/// A server-side assignor, selected by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assignor {
    Uniform,
    Range,
}

impl Assignor {
    pub const DEFAULT: Assignor = Assignor::Uniform;

    /// "uniform" / "range" (the names Kafka uses in group.consumer.assignors and in ConsumerGroupHeartbeat.server_assignor); None for anything else.
    pub fn by_name(name: &str) -> Option<Assignor> {
        match name {
            "uniform" => Some(Assignor::Uniform),
            "range" => Some(Assignor::Range),
            _ => None,
        }
    }

    /// The assignor's protocol name.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
        }
    }

    /// `topics`: partition count per existing topic id. Returns an entry for EVERY member (possibly empty), keyed by member id.
    pub fn assign(
        self,
        members: &[MemberSpec],
        topics: &BTreeMap<Uuid, i32>,
    ) -> BTreeMap<String, Assignment> {
        let group = Group::new(members, topics);
        let owners = match self {
            Assignor::Uniform => assign_uniform(&group),
            Assignor::Range => assign_range(&group),
        };
        group.output(&owners)
    }
}

/// Marks a partition that no member owns.
const NONE: usize = usize::MAX;

/// Partition owners: `owners[t][p]` is the index (into `Group::members`) of the
/// member owning partition `p` of topic `t`, or `NONE`.
type Owners = Vec<Vec<usize>>;

/// The assignor's input, indexed: members and topics are numbered so the
/// algorithms work on plain vectors.
struct Group<'m, 'a> {
    /// Members deduplicated by member id, sorted by member id.
    members: Vec<&'m MemberSpec<'a>>,
    /// Topics with at least one partition and at least one subscriber, ascending.
    topic_ids: Vec<Uuid>,
    /// Partition count of each topic in `topic_ids`.
    sizes: Vec<usize>,
    /// Per member: its topics (indexes into `topic_ids`), ascending.
    subscriptions: Vec<Vec<usize>>,
    /// Per topic: its subscribers (member indexes), ascending.
    subscribers: Vec<Vec<usize>>,
}

impl<'m, 'a> Group<'m, 'a> {
    /// Indexes the members and the assignable topics.
    fn new(specs: &'m [MemberSpec<'a>], topics: &BTreeMap<Uuid, i32>) -> Self {
        let members = sorted_unique_members(specs);
        let subscribed: BTreeSet<Uuid> = members
            .iter()
            .flat_map(|m| m.topics.iter().copied())
            .collect();
        let (topic_ids, sizes): (Vec<Uuid>, Vec<usize>) = subscribed
            .into_iter()
            .filter_map(|id| match topics.get(&id) {
                Some(&n) if n > 0 => Some((id, n as usize)),
                _ => None,
            })
            .unzip();
        let subscriptions: Vec<Vec<usize>> = members
            .iter()
            .map(|m| {
                m.topics
                    .iter()
                    .filter_map(|id| topic_ids.binary_search(id).ok())
                    .collect()
            })
            .collect();
        let mut subscribers = vec![Vec::new(); topic_ids.len()];
        for (m, topics) in subscriptions.iter().enumerate() {
            for &t in topics {
                subscribers[t].push(m);
            }
        }
        Group {
            members,
            topic_ids,
            sizes,
            subscriptions,
            subscribers,
        }
    }

    /// True if member `m` subscribes to topic `t`.
    fn subscribes(&self, m: usize, t: usize) -> bool {
        self.subscriptions[m].binary_search(&t).is_ok()
    }

    /// An owner table with every partition unowned.
    fn unowned(&self) -> Owners {
        self.sizes.iter().map(|&n| vec![NONE; n]).collect()
    }

    /// Owners from the members' current assignments, keeping only existing
    /// partitions of topics the member still subscribes to. A partition
    /// claimed by several members goes to the first in member order.
    fn current_owners(&self) -> Owners {
        let mut owners = self.unowned();
        for (m, member) in self.members.iter().enumerate() {
            for (id, partitions) in member.current {
                let Ok(t) = self.topic_ids.binary_search(id) else {
                    continue;
                };
                if !self.subscribes(m, t) {
                    continue;
                }
                let size = owners[t].len() as i32; // came from an i32
                for &p in partitions.range(0..size) {
                    let owner = &mut owners[t][p as usize];
                    if *owner == NONE {
                        *owner = m;
                    }
                }
            }
        }
        owners
    }

    /// Number of partitions each member owns.
    fn counts(&self, owners: &Owners) -> Vec<usize> {
        let mut counts = vec![0; self.members.len()];
        for &o in owners.iter().flatten().filter(|&&o| o != NONE) {
            counts[o] += 1;
        }
        counts
    }

    /// Converts an owner table to the public result, with an entry per member.
    fn output(&self, owners: &Owners) -> BTreeMap<String, Assignment> {
        let mut assignments = vec![Assignment::new(); self.members.len()];
        for (t, topic_owners) in owners.iter().enumerate() {
            for (p, &o) in topic_owners.iter().enumerate() {
                if o != NONE {
                    assignments[o]
                        .entry(self.topic_ids[t])
                        .or_default()
                        .insert(p as i32);
                }
            }
        }
        self.members
            .iter()
            .map(|m| m.member_id.to_string())
            .zip(assignments)
            .collect()
    }
}

/// The members sorted by member id, one per id. For a duplicated id (a caller
/// bug) the spec that sorts first on all its fields is kept, so the choice
/// does not depend on input order.
fn sorted_unique_members<'m, 'a>(specs: &'m [MemberSpec<'a>]) -> Vec<&'m MemberSpec<'a>> {
    let mut members: Vec<&MemberSpec> = specs.iter().collect();
    members.sort_by(|a, b| {
        (a.member_id, a.instance_id, a.topics, a.current).cmp(&(
            b.member_id,
            b.instance_id,
            b.topics,
            b.current,
        ))
    });
    members.dedup_by(|later, earlier| later.member_id == earlier.member_id);
    members
}

// ---------------------------------------------------------------- uniform

/// Uniform assignor: start from the current owners, then balance.
fn assign_uniform(group: &Group) -> Owners {
    let mut owners = group.current_owners();
    let homogeneous = group.subscriptions.windows(2).all(|w| w[0] == w[1]);
    if homogeneous {
        balance_homogeneous(group, &mut owners);
    } else {
        balance_heterogeneous(group, &mut owners);
    }
    owners
}

/// All members subscribe to every topic. Each member gets a quota of floor or
/// ceil of partitions/members (the ceilings go to the members currently owning
/// the most), keeps its current partitions up to its quota (lowest topic and
/// partition first), and the freed and unowned partitions fill the members
/// below quota, in member order, in (topic, partition) order.
fn balance_homogeneous(group: &Group, owners: &mut Owners) {
    let quotas = homogeneous_quotas(&group.counts(owners), group.sizes.iter().sum());
    let mut kept = vec![0; quotas.len()];
    for owner in owners.iter_mut().flatten().filter(|o| **o != NONE) {
        if kept[*owner] < quotas[*owner] {
            kept[*owner] += 1;
        } else {
            *owner = NONE;
        }
    }
    let mut next = 0;
    for owner in owners.iter_mut().flatten().filter(|o| **o == NONE) {
        while next < quotas.len() && kept[next] >= quotas[next] {
            next += 1;
        }
        if next == quotas.len() {
            break; // unreachable: the quotas add up to the partition count
        }
        *owner = next;
        kept[next] += 1;
    }
}

/// Per-member quotas summing to `total`: floor(total/members) each, plus one
/// for the `total % members` members with the largest `counts` (ties: lower
/// index first), so that as few current partitions as possible are revoked.
fn homogeneous_quotas(counts: &[usize], total: usize) -> Vec<usize> {
    if counts.is_empty() {
        return Vec::new();
    }
    let (base, extra) = (total / counts.len(), total % counts.len());
    let mut by_count: Vec<usize> = (0..counts.len()).collect();
    by_count.sort_by_key(|&m| (Reverse(counts[m]), m));
    let mut quotas = vec![base; counts.len()];
    for &m in &by_count[..extra] {
        quotas[m] += 1;
    }
    quotas
}

/// Members subscribe to different topics. Current owners stay, unowned
/// partitions go to their topic's least loaded subscriber, then partitions
/// move from most to least loaded subscribers until no partition could move
/// to a subscriber of its topic with two or more fewer partitions.
fn balance_heterogeneous(group: &Group, owners: &mut Owners) {
    let mut counts = group.counts(owners);
    let original = owners.clone();
    let order = topic_order(group);
    assign_unowned(group, &order, owners, &mut counts);
    rebalance(group, &order, owners, &original, &mut counts);
}

/// Topics ordered as Kafka's heterogeneous uniform builder does: partitions
/// per subscriber descending, then subscriber count ascending, then topic id.
/// Topics that are hardest to balance come first.
fn topic_order(group: &Group) -> Vec<usize> {
    let mut order: Vec<usize> = (0..group.topic_ids.len()).collect();
    order.sort_by(|&a, &b| {
        let (na, sa) = (group.sizes[a] as u128, group.subscribers[a].len() as u128);
        let (nb, sb) = (group.sizes[b] as u128, group.subscribers[b].len() as u128);
        (nb * sa).cmp(&(na * sb)).then(sa.cmp(&sb)).then(a.cmp(&b))
    });
    order
}

/// Gives each unowned partition to the subscriber of its topic that owns the
/// fewest partitions at that moment (ties: lowest member index).
fn assign_unowned(group: &Group, order: &[usize], owners: &mut Owners, counts: &mut [usize]) {
    for &t in order {
        if !owners[t].contains(&NONE) {
            continue;
        }
        let mut least: BinaryHeap<Reverse<(usize, usize)>> = group.subscribers[t]
            .iter()
            .map(|&m| Reverse((counts[m], m)))
            .collect();
        for owner in owners[t].iter_mut().filter(|o| **o == NONE) {
            let Some(Reverse((count, m))) = least.pop() else {
                break;
            };
            *owner = m;
            counts[m] = count + 1;
            least.push(Reverse((count + 1, m)));
        }
    }
}

/// Balances topics until none can improve: a worklist of topics, where a topic
/// whose balancing changed some members' counts re-queues the other topics
/// those members subscribe to. Terminates because every move lowers the sum of
/// squared member counts.
fn rebalance(
    group: &Group,
    order: &[usize],
    owners: &mut Owners,
    original: &Owners,
    counts: &mut [usize],
) {
    let mut queue: VecDeque<usize> = order.iter().copied().collect();
    let mut queued = vec![true; group.topic_ids.len()];
    while let Some(t) = queue.pop_front() {
        queued[t] = false;
        let changed = balance_topic(&group.subscribers[t], &mut owners[t], &original[t], counts);
        for m in changed {
            for &u in &group.subscriptions[m] {
                if u != t && !queued[u] {
                    queued[u] = true;
                    queue.push_back(u);
                }
            }
        }
    }
}

/// Whether some partition of the topic could move to a subscriber with two or
/// more fewer partitions than its owner.
fn topic_unbalanced(subscribers: &[usize], owner: &[usize], counts: &[usize]) -> bool {
    let least = subscribers.iter().map(|&m| counts[m]).min();
    let most = owner
        .iter()
        .filter(|&&o| o != NONE)
        .map(|&o| counts[o])
        .max();
    matches!((least, most), (Some(least), Some(most)) if most >= least + 2)
}

/// Moves partitions of one topic from its most loaded owner to its least
/// loaded subscriber while they differ by two or more. A donor gives away
/// partitions it did not own originally first, then its highest-numbered.
/// Returns the members whose counts changed.
fn balance_topic(
    subscribers: &[usize],
    owner: &mut [usize],
    original: &[usize],
    counts: &mut [usize],
) -> Vec<usize> {
    if !topic_unbalanced(subscribers, owner, counts) {
        return Vec::new();
    }
    // held[i]: the topic's partitions owned by subscribers[i], next to give away last.
    let mut held: Vec<Vec<usize>> = vec![Vec::new(); subscribers.len()];
    for (p, &o) in owner.iter().enumerate() {
        if let Ok(i) = subscribers.binary_search(&o) {
            held[i].push(p);
        }
    }
    for (i, partitions) in held.iter_mut().enumerate() {
        partitions.sort_by_key(|&p| (original[p] != subscribers[i], p));
    }
    // Heaps of (count, subscriber position), with stale entries skipped lazily.
    let mut donors: BinaryHeap<(usize, Reverse<usize>)> = (0..subscribers.len())
        .filter(|&i| !held[i].is_empty())
        .map(|i| (counts[subscribers[i]], Reverse(i)))
        .collect();
    let mut receivers: BinaryHeap<Reverse<(usize, usize)>> = (0..subscribers.len())
        .map(|i| Reverse((counts[subscribers[i]], i)))
        .collect();
    let mut changed = Vec::new();
    loop {
        let donor = loop {
            match donors.pop() {
                None => break None,
                Some((c, Reverse(i))) if c == counts[subscribers[i]] && !held[i].is_empty() => {
                    break Some((c, i))
                }
                Some(_) => {}
            }
        };
        let receiver = loop {
            match receivers.peek() {
                None => break None,
                Some(&Reverse((c, i))) if c == counts[subscribers[i]] => break Some((c, i)),
                Some(_) => {
                    receivers.pop();
                }
            }
        };
        let (Some((dc, d)), Some((rc, r))) = (donor, receiver) else {
            break;
        };
        if dc < rc + 2 {
            break;
        }
        let Some(p) = held[d].pop() else { break }; // non-empty: checked above
        receivers.pop();
        owner[p] = subscribers[r];
        held[r].push(p);
        counts[subscribers[d]] = dc - 1;
        counts[subscribers[r]] = rc + 1;
        for (i, c) in [(d, dc - 1), (r, rc + 1)] {
            donors.push((c, Reverse(i)));
            receivers.push(Reverse((c, i)));
            changed.push(subscribers[i]);
        }
    }
    changed.sort_unstable();
    changed.dedup();
    changed
}

// ---------------------------------------------------------------- range

/// Range assignor: per topic, subscribers in range order each get a
/// contiguous range; the first `partitions % subscribers` get one extra.
fn assign_range(group: &Group) -> Owners {
    let mut owners = group.unowned();
    let mut ordered_subscribers = vec![Vec::new(); group.topic_ids.len()];
    for m in range_member_order(group) {
        for &t in &group.subscriptions[m] {
            ordered_subscribers[t].push(m);
        }
    }
    for (topic_owners, subscribers) in owners.iter_mut().zip(&ordered_subscribers) {
        if subscribers.is_empty() {
            continue;
        }
        let (base, extra) = (
            topic_owners.len() / subscribers.len(),
            topic_owners.len() % subscribers.len(),
        );
        let mut start = 0;
        for (i, &m) in subscribers.iter().enumerate() {
            let end = start + base + usize::from(i < extra);
            topic_owners[start..end].fill(m);
            start = end;
        }
    }
    owners
}

/// Member indexes in Kafka's range order: members with an instance id first,
/// by instance id, then the others by member id (member id breaks ties).
fn range_member_order(group: &Group) -> Vec<usize> {
    let mut order: Vec<usize> = (0..group.members.len()).collect();
    order.sort_by_key(|&m| {
        let member = group.members[m];
        (
            member.instance_id.is_none(),
            member.instance_id,
            member.member_id,
        )
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owned data behind a `MemberSpec`.
    #[derive(Clone)]
    struct Member {
        id: String,
        instance: Option<String>,
        topics: BTreeSet<Uuid>,
        current: Assignment,
    }

    impl Member {
        fn new(id: &str, topics: &[Uuid]) -> Member {
            Member {
                id: id.to_string(),
                instance: None,
                topics: topics.iter().copied().collect(),
                current: Assignment::new(),
            }
        }

        fn with_instance(mut self, instance: &str) -> Member {
            self.instance = Some(instance.to_string());
            self
        }

        fn spec(&self) -> MemberSpec<'_> {
            MemberSpec {
                member_id: &self.id,
                instance_id: self.instance.as_deref(),
                topics: &self.topics,
                current: &self.current,
            }
        }
    }

    fn topic(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn topics(counts: &[(Uuid, i32)]) -> BTreeMap<Uuid, i32> {
        counts.iter().copied().collect()
    }

    fn run(
        assignor: Assignor,
        members: &[Member],
        topics: &BTreeMap<Uuid, i32>,
    ) -> BTreeMap<String, Assignment> {
        let specs: Vec<MemberSpec> = members.iter().map(Member::spec).collect();
        assignor.assign(&specs, topics)
    }

    /// Sets each member's current assignment from a previous result.
    fn with_current(members: &[Member], result: &BTreeMap<String, Assignment>) -> Vec<Member> {
        members
            .iter()
            .map(|m| Member {
                current: result.get(&m.id).cloned().unwrap_or_default(),
                ..m.clone()
            })
            .collect()
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    fn counts(result: &BTreeMap<String, Assignment>) -> Vec<usize> {
        result.values().map(count).collect()
    }

    /// (topic, partition) -> owner.
    fn owner_map(result: &BTreeMap<String, Assignment>) -> BTreeMap<(Uuid, i32), String> {
        let mut owners = BTreeMap::new();
        for (m, a) in result {
            for (t, ps) in a {
                for &p in ps {
                    owners.insert((*t, p), m.clone());
                }
            }
        }
        owners
    }

    /// Partitions owned in both results by different members.
    fn moved(before: &BTreeMap<String, Assignment>, after: &BTreeMap<String, Assignment>) -> usize {
        let (b, a) = (owner_map(before), owner_map(after));
        b.iter()
            .filter(|(k, owner)| a.get(*k).is_some_and(|o| o != *owner))
            .count()
    }

    /// The properties common to both assignors (members deduplicated by id).
    fn check_valid(
        members: &[Member],
        topics: &BTreeMap<Uuid, i32>,
        result: &BTreeMap<String, Assignment>,
    ) {
        let ids: BTreeSet<&str> = members.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            result.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            ids
        );
        let subscriptions: BTreeMap<&str, &BTreeSet<Uuid>> = kept_members(members)
            .into_iter()
            .map(|(id, m)| (id, &m.topics))
            .collect();
        let mut seen = BTreeSet::new();
        for (m, a) in result {
            for (t, ps) in a {
                assert!(!ps.is_empty(), "empty partition set for {m}");
                assert!(
                    subscriptions[m.as_str()].contains(t),
                    "{m} got unsubscribed topic {t}"
                );
                let n = topics.get(t).copied().unwrap_or(0);
                for &p in ps {
                    assert!(
                        (0..n).contains(&p),
                        "{m} got non-existent partition {t}/{p}"
                    );
                    assert!(seen.insert((*t, p)), "{t}/{p} assigned twice");
                }
            }
        }
        let subscribed: BTreeSet<Uuid> = subscriptions
            .values()
            .flat_map(|ts| ts.iter().copied())
            .collect();
        let wanted: BTreeSet<(Uuid, i32)> = subscribed
            .into_iter()
            .flat_map(|t| (0..topics.get(&t).copied().unwrap_or(0).max(0)).map(move |p| (t, p)))
            .collect();
        assert_eq!(seen, wanted, "not every subscribed partition is assigned");
    }

    /// The spec the assignor keeps for each (possibly duplicated) member id.
    fn kept_members(members: &[Member]) -> BTreeMap<&str, &Member> {
        let mut kept: BTreeMap<&str, &Member> = BTreeMap::new();
        for m in members {
            let slot = kept.entry(m.id.as_str()).or_insert(m);
            if (&m.instance, &m.topics, &m.current) < (&slot.instance, &slot.topics, &slot.current)
            {
                *slot = m;
            }
        }
        kept
    }

    /// No partition could move to a subscriber of its topic with 2+ fewer partitions.
    fn check_locally_balanced(members: &[Member], result: &BTreeMap<String, Assignment>) {
        let mut least: BTreeMap<Uuid, usize> = BTreeMap::new();
        for m in members {
            for t in &m.topics {
                let c = count(&result[&m.id]);
                least
                    .entry(*t)
                    .and_modify(|l| *l = (*l).min(c))
                    .or_insert(c);
            }
        }
        for (owner, a) in result {
            for t in a.keys() {
                assert!(
                    count(a) < least[t] + 2,
                    "{owner} ({}) could give {t} to a member with {}",
                    count(a),
                    least[t]
                );
            }
        }
    }

    /// Tiny deterministic generator for randomized tests.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n.max(1)
        }
    }

    fn random_case(rng: &mut Rng) -> (Vec<Member>, BTreeMap<Uuid, i32>) {
        let topic_count = 1 + rng.below(5) as u128;
        let counts: BTreeMap<Uuid, i32> = (0..topic_count)
            .map(|t| (topic(t), rng.below(24) as i32 - 2))
            .collect();
        let homogeneous = rng.below(3) == 0;
        let shared: Vec<Uuid> = (0..topic_count + 1)
            .filter(|_| rng.below(2) == 0)
            .map(topic)
            .collect();
        let members = (0..rng.below(12))
            .map(|i| {
                let subscribed: Vec<Uuid> = if homogeneous {
                    shared.clone()
                } else {
                    (0..topic_count + 1)
                        .filter(|_| rng.below(2) == 0)
                        .map(topic)
                        .collect()
                };
                let mut m = Member::new(&format!("m{}", rng.below(20)), &subscribed);
                if rng.below(3) == 0 {
                    m = m.with_instance(&format!("i{i}"));
                }
                for _ in 0..rng.below(10) {
                    let (t, p) = (
                        topic(rng.below(topic_count as u64 + 1) as u128),
                        rng.below(25) as i32 - 2,
                    );
                    m.current.entry(t).or_default().insert(p);
                }
                m
            })
            .collect();
        (members, counts)
    }

    #[test]
    fn names() {
        assert_eq!(Assignor::by_name("uniform"), Some(Assignor::Uniform));
        assert_eq!(Assignor::by_name("range"), Some(Assignor::Range));
        assert_eq!(Assignor::by_name("Range"), None);
        assert_eq!(Assignor::by_name("sticky"), None);
        assert_eq!(Assignor::DEFAULT, Assignor::Uniform);
        for a in [Assignor::Uniform, Assignor::Range] {
            assert_eq!(Assignor::by_name(a.name()), Some(a));
        }
    }

    #[test]
    fn empty_inputs() {
        let t = topics(&[(topic(1), 3)]);
        for a in [Assignor::Uniform, Assignor::Range] {
            assert!(a.assign(&[], &t).is_empty());
            let members = [Member::new("a", &[]), Member::new("b", &[topic(1)])];
            let result = run(a, &members, &t);
            assert_eq!(result["a"], Assignment::new());
            assert_eq!(count(&result["b"]), 3);
            let none = run(a, &[Member::new("a", &[]), Member::new("b", &[])], &t);
            assert_eq!(counts(&none), vec![0, 0]);
        }
    }

    #[test]
    fn bad_partition_counts_and_unknown_topics() {
        let t = topics(&[(topic(1), 0), (topic(2), -5), (topic(3), 2)]);
        let mut m = Member::new("a", &[topic(1), topic(2), topic(3), topic(4)]);
        m.current.insert(topic(1), [0, 1].into());
        m.current.insert(topic(3), [-1, 0, 7].into());
        m.current.insert(topic(4), [0].into());
        let members = [m, Member::new("b", &[topic(2)])];
        for a in [Assignor::Uniform, Assignor::Range] {
            let result = run(a, &members, &t);
            check_valid(&members, &t, &result);
            assert_eq!(result["a"], Assignment::from([(topic(3), [0, 1].into())]));
            assert_eq!(result["b"], Assignment::new());
        }
    }

    #[test]
    fn duplicate_member_ids_do_not_panic() {
        let t = topics(&[(topic(1), 6)]);
        let mut a2 = Member::new("a", &[topic(1)]);
        a2.current.insert(topic(1), [0, 1, 2, 3, 4, 5].into());
        let members = [
            Member::new("a", &[topic(1)]),
            Member::new("b", &[topic(1)]),
            a2,
        ];
        for a in [Assignor::Uniform, Assignor::Range] {
            let result = run(a, &members, &t);
            check_valid(&members, &t, &result);
            assert_eq!(counts(&result), vec![3, 3]);
            let reversed: Vec<Member> = members.iter().rev().cloned().collect();
            assert_eq!(run(a, &reversed, &t), result);
        }
    }

    #[test]
    fn uniform_homogeneous_is_floor_or_ceil() {
        let t = topics(&[(topic(1), 7), (topic(2), 5)]);
        let subs = [topic(1), topic(2)];
        for n in 1..=14 {
            let members: Vec<Member> = (0..n)
                .map(|i| Member::new(&format!("m{i:02}"), &subs))
                .collect();
            let result = run(Assignor::Uniform, &members, &t);
            check_valid(&members, &t, &result);
            for c in counts(&result) {
                assert!(
                    c == 12 / n || c == 12_usize.div_ceil(n),
                    "{n} members: count {c}"
                );
            }
        }
    }

    #[test]
    fn uniform_fresh_group_gets_contiguous_ranges() {
        let t = topics(&[(topic(1), 6)]);
        let members = [Member::new("a", &[topic(1)]), Member::new("b", &[topic(1)])];
        let result = run(Assignor::Uniform, &members, &t);
        assert_eq!(result["a"][&topic(1)], [0, 1, 2].into());
        assert_eq!(result["b"][&topic(1)], [3, 4, 5].into());
    }

    #[test]
    fn uniform_heterogeneous_is_balanced() {
        // Kafka's example: two topics, each shared by a different pair of members.
        let t = topics(&[(topic(1), 20), (topic(2), 10), (topic(3), 1)]);
        let members = [
            Member::new("a", &[topic(1)]),
            Member::new("b", &[topic(1), topic(2)]),
            Member::new("c", &[topic(2), topic(3)]),
            Member::new("d", &[]),
        ];
        let result = run(Assignor::Uniform, &members, &t);
        check_valid(&members, &t, &result);
        check_locally_balanced(&members, &result);
        assert_eq!(count(&result["a"]), 10);
        assert_eq!(count(&result["b"]), 10);
        assert_eq!(count(&result["c"]), 11);
        assert_eq!(result["d"], Assignment::new());
    }

    #[test]
    fn uniform_sticky_when_member_joins() {
        let t = topics(&[(topic(1), 12)]);
        let mut members: Vec<Member> = ["a", "b", "c"]
            .iter()
            .map(|id| Member::new(id, &[topic(1)]))
            .collect();
        let before = run(Assignor::Uniform, &members, &t);
        assert_eq!(counts(&before), vec![4, 4, 4]);
        members = with_current(&members, &before);
        members.push(Member::new("d", &[topic(1)]));
        let after = run(Assignor::Uniform, &members, &t);
        assert_eq!(counts(&after), vec![3, 3, 3, 3]);
        assert_eq!(moved(&before, &after), 3);
    }

    #[test]
    fn uniform_sticky_when_member_leaves() {
        let t = topics(&[(topic(1), 12)]);
        let members: Vec<Member> = ["a", "b", "c"]
            .iter()
            .map(|id| Member::new(id, &[topic(1)]))
            .collect();
        let before = run(Assignor::Uniform, &members, &t);
        let remaining = with_current(&members[..2], &before);
        let after = run(Assignor::Uniform, &remaining, &t);
        assert_eq!(counts(&after), vec![6, 6]);
        for id in ["a", "b"] {
            assert!(before[id][&topic(1)].is_subset(&after[id][&topic(1)]));
        }
    }

    #[test]
    fn uniform_sticky_with_remainders() {
        // 11 partitions: a and b hold 4, c holds 3; a 4th member should take only 2.
        let t = topics(&[(topic(1), 11)]);
        let mut members: Vec<Member> = ["c", "a", "b"]
            .iter()
            .map(|id| Member::new(id, &[topic(1)]))
            .collect();
        members[0].current.insert(topic(1), (0..3).collect());
        members[1].current.insert(topic(1), (3..7).collect());
        members[2].current.insert(topic(1), (7..11).collect());
        let before = run(Assignor::Uniform, &members, &t);
        assert_eq!(
            moved(
                &before,
                &run(Assignor::Uniform, &with_current(&members, &before), &t)
            ),
            0
        );
        members.push(Member::new("d", &[topic(1)]));
        let after = run(Assignor::Uniform, &members, &t);
        assert_eq!(moved(&before, &after), 2);
    }

    #[test]
    fn uniform_heterogeneous_sticky_when_member_joins() {
        let t = topics(&[(topic(1), 12), (topic(2), 12)]);
        let mut members = vec![
            Member::new("a", &[topic(1)]),
            Member::new("b", &[topic(1), topic(2)]),
            Member::new("c", &[topic(2)]),
        ];
        let before = run(Assignor::Uniform, &members, &t);
        // Balanced by single moves (like Kafka: 8/8/8 would need a chain a -> b -> c).
        check_locally_balanced(&members, &before);
        assert_eq!(counts(&before), vec![7, 8, 9]);
        members = with_current(&members, &before);
        members.push(Member::new("d", &[topic(1), topic(2)]));
        let after = run(Assignor::Uniform, &members, &t);
        check_locally_balanced(&members, &after);
        assert_eq!(counts(&after).iter().sum::<usize>(), 24);
        // d takes its share; the others keep the rest.
        assert!(moved(&before, &after) <= 8, "{}", moved(&before, &after));
    }

    #[test]
    fn uniform_is_stable() {
        let mut rng = Rng(0x5eed);
        for _ in 0..300 {
            let (members, t) = random_case(&mut rng);
            let first = run(Assignor::Uniform, &members, &t);
            let again = run(Assignor::Uniform, &with_current(&members, &first), &t);
            assert_eq!(first, again);
        }
    }

    #[test]
    fn uniform_drops_invalid_current_partitions() {
        let t = topics(&[(topic(1), 4), (topic(2), 4)]);
        let mut a = Member::new("a", &[topic(1)]);
        a.current.insert(topic(1), [0, 1, 9].into());
        a.current.insert(topic(2), [0].into()); // no longer subscribed
        let mut b = Member::new("b", &[topic(1), topic(2)]);
        b.current.insert(topic(1), [1, 2].into()); // 1 is also claimed by a
        let members = [a, b];
        let result = run(Assignor::Uniform, &members, &t);
        check_valid(&members, &t, &result);
        check_locally_balanced(&members, &result);
    }

    #[test]
    fn randomized_properties() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for _ in 0..2000 {
            let (members, t) = random_case(&mut rng);
            let mut shuffled = members.clone();
            shuffled.reverse();
            if !shuffled.is_empty() {
                let k = rng.below(shuffled.len() as u64) as usize;
                shuffled.rotate_left(k);
            }
            for a in [Assignor::Uniform, Assignor::Range] {
                let result = run(a, &members, &t);
                check_valid(&members, &t, &result);
                assert_eq!(
                    run(a, &shuffled, &t),
                    result,
                    "{a:?} depends on member order"
                );
            }
            let result = run(Assignor::Uniform, &members, &t);
            let kept: Vec<Member> = kept_members(&members).into_values().cloned().collect();
            check_locally_balanced(&kept, &result);
            let subscriptions: BTreeSet<_> = kept.iter().map(|m| &m.topics).collect();
            if subscriptions.len() == 1 {
                let (lo, hi) = (
                    counts(&result).into_iter().min(),
                    counts(&result).into_iter().max(),
                );
                assert!(hi.unwrap_or(0) <= lo.unwrap_or(0) + 1);
            }
        }
    }

    #[test]
    fn range_kafka_example() {
        let t = topics(&[(topic(1), 3), (topic(2), 3)]);
        let members = [
            Member::new("m1", &[topic(1), topic(2)]),
            Member::new("m0", &[topic(1), topic(2)]),
        ];
        let result = run(Assignor::Range, &members, &t);
        let expected = |ps: &[i32]| -> Assignment {
            [
                (topic(1), ps.iter().copied().collect()),
                (topic(2), ps.iter().copied().collect()),
            ]
            .into()
        };
        assert_eq!(result["m0"], expected(&[0, 1]));
        assert_eq!(result["m1"], expected(&[2]));
    }

    #[test]
    fn range_extra_partitions_go_first_and_empty_ranges_omitted() {
        let t = topics(&[(topic(1), 7), (topic(2), 2)]);
        let members: Vec<Member> = ["a", "b", "c"]
            .iter()
            .map(|id| Member::new(id, &[topic(1), topic(2)]))
            .collect();
        let result = run(Assignor::Range, &members, &t);
        assert_eq!(result["a"][&topic(1)], [0, 1, 2].into());
        assert_eq!(result["b"][&topic(1)], [3, 4].into());
        assert_eq!(result["c"][&topic(1)], [5, 6].into());
        assert_eq!(result["a"][&topic(2)], [0].into());
        assert_eq!(result["b"][&topic(2)], [1].into());
        assert!(!result["c"].contains_key(&topic(2)));
    }

    #[test]
    fn range_orders_static_members_first_by_instance_id() {
        let t = topics(&[(topic(1), 4)]);
        let members = [
            Member::new("a", &[topic(1)]),
            Member::new("b", &[topic(1)]).with_instance("z"),
            Member::new("c", &[topic(1)]).with_instance("y"),
            Member::new("0", &[topic(1)]),
        ];
        let result = run(Assignor::Range, &members, &t);
        assert_eq!(result["c"][&topic(1)], [0].into());
        assert_eq!(result["b"][&topic(1)], [1].into());
        assert_eq!(result["0"][&topic(1)], [2].into());
        assert_eq!(result["a"][&topic(1)], [3].into());
    }

    #[test]
    fn range_copartitions_and_ignores_current() {
        let t = topics(&[(topic(1), 5), (topic(2), 5), (topic(3), 3)]);
        let mut members = vec![
            Member::new("a", &[topic(1), topic(2), topic(3)]),
            Member::new("b", &[topic(1), topic(2)]),
            Member::new("c", &[topic(1), topic(2), topic(3)]),
        ];
        members[0].current.insert(topic(1), [4].into());
        let result = run(Assignor::Range, &members, &t);
        check_valid(&members, &t, &result);
        for a in result.values() {
            assert_eq!(a.get(&topic(1)), a.get(&topic(2)));
        }
        assert_eq!(result["a"][&topic(1)], [0, 1].into());
        assert_eq!(result["a"][&topic(3)], [0, 1].into());
        assert_eq!(result["c"][&topic(3)], [2].into());
    }

    #[test]
    fn scale_homogeneous_1000_members_10000_partitions() {
        let t: BTreeMap<Uuid, i32> = (0..10).map(|i| (topic(i), 1000)).collect();
        let subs: Vec<Uuid> = t.keys().copied().collect();
        let mut members: Vec<Member> = (0..1000)
            .map(|i| Member::new(&format!("member-{i:04}"), &subs))
            .collect();
        for a in [Assignor::Uniform, Assignor::Range] {
            let result = run(a, &members, &t);
            assert!(counts(&result).iter().all(|&c| c == 10));
        }
        let before = run(Assignor::Uniform, &members, &t);
        members = with_current(&members[1..], &before);
        members.push(Member::new("member-new", &subs));
        let after = run(Assignor::Uniform, &members, &t);
        // Only the departed member's partitions move, all to the newcomer.
        assert_eq!(moved(&before, &after), 10);
        assert_eq!(after["member-new"], before["member-0000"]);
    }

    #[test]
    fn scale_heterogeneous_1000_members_10000_partitions() {
        let t: BTreeMap<Uuid, i32> = (0..100).map(|i| (topic(i), 100)).collect();
        let subscription = |i: u128| -> Vec<Uuid> {
            (0..100)
                .filter(|t| !(t + i).is_multiple_of(3))
                .map(topic)
                .collect()
        };
        let mut members: Vec<Member> = (0..1000)
            .map(|i| Member::new(&format!("member-{i:04}"), &subscription(i as u128)))
            .collect();
        let before = run(Assignor::Uniform, &members, &t);
        check_locally_balanced(&members, &before);
        members = with_current(&members[10..], &before);
        members.extend((0..20).map(|i| Member::new(&format!("new-{i}"), &subscription(i))));
        let after = run(Assignor::Uniform, &members, &t);
        check_valid(&members, &t, &after);
        check_locally_balanced(&members, &after);
        assert!(run(Assignor::Range, &members, &t).len() == members.len());
    }
}
