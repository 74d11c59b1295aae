//! KIP-848 consumer group tests: epochs, reconciliation (no partition is ever
//! owned by two members), fencing, leaving, static members, timeouts,
//! persistence, offset checks, type changes. Same hand-driven clock as
//! `tests.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex as StdMutex;

use uuid::Uuid;

use super::tests::{done, env_with, join_req, Env};
use super::*;

/// Topics for the tests: name -> (id, partitions), changeable while running;
/// the second field counts changes.
#[derive(Default)]
struct FakeTopics(StdMutex<BTreeMap<String, (Uuid, i32)>>, AtomicU64);

impl FakeTopics {
    fn with(topics: &[(&str, i32)]) -> FakeTopics {
        let t = FakeTopics::default();
        for (name, n) in topics {
            t.set(name, *n);
        }
        t
    }

    fn set(&self, name: &str, partitions: i32) {
        let mut map = self.0.lock().unwrap();
        let id = map
            .get(name)
            .map(|(id, _)| *id)
            .unwrap_or_else(Uuid::new_v4);
        map.insert(name.to_string(), (id, partitions));
        self.1.fetch_add(1, Ordering::SeqCst);
    }

    fn id(&self, name: &str) -> Uuid {
        self.0.lock().unwrap()[name].0
    }
}

impl TopicLookup for FakeTopics {
    fn topic(&self, name: &str) -> Option<(Uuid, i32)> {
        self.0.lock().unwrap().get(name).copied()
    }

    fn topic_names(&self) -> Vec<String> {
        self.0.lock().unwrap().keys().cloned().collect()
    }

    fn generation(&self) -> u64 {
        self.1.load(Ordering::SeqCst)
    }
}

fn config() -> GroupConfig {
    GroupConfig {
        consumer_session_timeout_ms: 10_000,
        ..GroupConfig::default()
    }
}

fn join(member: &str, topics: &[&str]) -> ConsumerHeartbeat {
    ConsumerHeartbeat {
        group_id: "g".into(),
        member_id: member.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(topics.iter().map(|t| t.to_string()).collect()),
        owned: Some(Vec::new()),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        ..ConsumerHeartbeat::default()
    }
}

/// A plain heartbeat: nothing changed, owned partitions as given.
fn beat(member: &str, epoch: i32, owned: Option<TopicPartitions>) -> ConsumerHeartbeat {
    ConsumerHeartbeat {
        group_id: "g".into(),
        member_id: member.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned,
        ..ConsumerHeartbeat::default()
    }
}

fn count(a: &Option<TopicPartitions>) -> usize {
    a.as_ref()
        .map_or(0, |tps| tps.iter().map(|(_, ps)| ps.len()).sum())
}

/// A client as librdkafka behaves: remembers its epoch and what it owns,
/// applies every assignment it gets at once and reports it on the next beat.
struct Client {
    id: String,
    epoch: i32,
    owned: TopicPartitions,
    report: bool,
    interval: i32,
}

impl Client {
    fn join(env: &Env, topics: &FakeTopics, id: &str, subscribe: &[&str]) -> Client {
        let r = env
            .c
            .consumer_heartbeat(&join(id, subscribe), 1, topics)
            .unwrap();
        let mut c = Client {
            id: id.into(),
            epoch: 0,
            owned: Vec::new(),
            report: false,
            interval: 0,
        };
        c.apply(r);
        c
    }

    fn apply(&mut self, r: ConsumerHeartbeatResponse) {
        self.epoch = r.member_epoch;
        self.interval = r.heartbeat_interval_ms;
        if let Some(a) = r.assignment {
            self.owned = a;
            self.report = true;
        }
    }

    fn beat(&mut self, env: &Env, topics: &FakeTopics) -> Result<(), GroupError> {
        let owned = std::mem::take(&mut self.report).then(|| self.owned.clone());
        let r = env
            .c
            .consumer_heartbeat(&beat(&self.id, self.epoch, owned), 1, topics)?;
        self.apply(r);
        Ok(())
    }

    fn count(&self) -> usize {
        self.owned.iter().map(|(_, ps)| ps.len()).sum()
    }
}

/// No partition is owned (assigned or being revoked) by two members, and the
/// coordinator's owner map agrees with the members.
fn check_ownership(env: &Env) {
    env.c
        .with_group("g", false, |g, _| {
            let c = g.consumer.as_ref().unwrap();
            let mut seen = std::collections::HashSet::new();
            for m in c.members.values() {
                for (t, ps) in m.assigned.iter().chain(m.revoking.iter()) {
                    for p in ps {
                        assert!(seen.insert((*t, *p)), "{t}/{p} owned twice");
                    }
                }
            }
        })
        .unwrap();
}

fn state(env: &Env) -> &'static str {
    env.c
        .list_groups(&[], &[])
        .into_iter()
        .find(|g| g.group_id == "g")
        .unwrap()
        .state
}

#[tokio::test]
async fn a_member_joins_and_gets_every_partition() {
    let env = env_with(config());
    let topics = FakeTopics::with(&[("t", 3)]);
    let r = env
        .c
        .consumer_heartbeat(&join("m1", &["t"]), 1, &topics)
        .unwrap();
    assert_eq!(r.member_id, "m1");
    assert_eq!(r.member_epoch, 1);
    assert_eq!(r.heartbeat_interval_ms, 5000);
    assert_eq!(r.assignment, Some(vec![(topics.id("t"), vec![0, 1, 2])]));
    // A plain heartbeat with nothing new carries no assignment.
    let r = env
        .c
        .consumer_heartbeat(&beat("m1", 1, None), 1, &topics)
        .unwrap();
    assert_eq!((r.member_epoch, r.assignment), (1, None));
    assert_eq!(state(&env), "Stable");
    let listed = env.c.list_groups(&[], &["consumer".into()]);
    assert_eq!(listed[0].group_type, "consumer");
    assert!(env.c.list_groups(&[], &["classic".into()]).is_empty());
    // v0: the coordinator picks the member id.
    let mut v0 = join("", &["t"]);
    v0.group_id = "g0".into();
    let r = env.c.consumer_heartbeat(&v0, 0, &topics).unwrap();
    assert!(!r.member_id.is_empty());
}

#[tokio::test]
async fn a_second_member_waits_for_the_first_to_revoke() {
    let env = env_with(config());
    let topics = FakeTopics::with(&[("t", 6)]);
    let mut a = Client::join(&env, &topics, "a", &["t"]);
    a.beat(&env, &topics).unwrap();
    assert_eq!((a.epoch, a.count()), (1, 6));

    let mut b = Client::join(&env, &topics, "b", &["t"]);
    // Everything b should get is still a's: b is at epoch 2 with nothing yet.
    assert_eq!((b.epoch, b.count()), (2, 0));
    assert_eq!(state(&env), "Reconciling");
    // Until the group is Stable again, members are asked to heartbeat sooner.
    assert_eq!(b.interval, 250);
    check_ownership(&env);

    // a learns it must give up 3 partitions, keeping its epoch until it has.
    a.beat(&env, &topics).unwrap();
    assert_eq!((a.epoch, a.count()), (1, 3));
    check_ownership(&env);
    // b gets nothing while a has not confirmed.
    b.beat(&env, &topics).unwrap();
    assert_eq!(b.count(), 0);
    // a confirms (reports what it owns now) and moves to epoch 2.
    a.beat(&env, &topics).unwrap();
    assert_eq!(a.epoch, 2);
    check_ownership(&env);
    b.beat(&env, &topics).unwrap();
    assert_eq!((b.epoch, b.count()), (2, 3));
    check_ownership(&env);
    b.beat(&env, &topics).unwrap();
    a.beat(&env, &topics).unwrap();
    assert_eq!(state(&env), "Stable");
    assert_eq!((a.interval, b.interval), (5000, 5000));

    let d = env.c.describe_consumer_group("g").unwrap();
    assert_eq!(
        (d.group_epoch, d.assignment_epoch, d.assignor),
        (2, 2, "uniform")
    );
    assert_eq!(d.members.len(), 2);
    assert!(d
        .members
        .iter()
        .all(|m| m.assignment[0].2.len() == 3 && m.member_epoch == 2));
}

#[tokio::test]
async fn many_members_converge_without_double_ownership() {
    let env = env_with(config());
    let topics = FakeTopics::with(&[("t", 20), ("u", 7)]);
    let mut clients: Vec<Client> = Vec::new();
    for i in 0..6 {
        let subs: &[&str] = if i % 2 == 0 { &["t", "u"] } else { &["t"] };
        clients.push(Client::join(&env, &topics, &format!("m{i}"), subs));
        for c in clients.iter_mut() {
            c.beat(&env, &topics).unwrap();
            check_ownership(&env);
        }
    }
    for _ in 0..4 {
        for c in clients.iter_mut() {
            c.beat(&env, &topics).unwrap();
            check_ownership(&env);
        }
    }
    assert_eq!(state(&env), "Stable");
    assert_eq!(clients.iter().map(Client::count).sum::<usize>(), 27);
    // One leaves: the rest take its partitions.
    let gone = clients.remove(0);
    let r = env
        .c
        .consumer_heartbeat(&beat(&gone.id, gone.epoch, None), 1, &topics);
    assert!(r.is_ok());
    let r = env
        .c
        .consumer_heartbeat(&beat(&gone.id, LEAVE_EPOCH_FOR_TESTS, None), 1, &topics)
        .unwrap();
    assert_eq!(r.member_epoch, -1);
    for _ in 0..4 {
        for c in clients.iter_mut() {
            c.beat(&env, &topics).unwrap();
            check_ownership(&env);
        }
    }
    assert_eq!(clients.iter().map(Client::count).sum::<usize>(), 27);
    assert_eq!(state(&env), "Stable");
}

const LEAVE_EPOCH_FOR_TESTS: i32 = -1;

#[tokio::test]
async fn epochs_are_checked() {
    let env = env_with(config());
    let topics = FakeTopics::with(&[("t", 2)]);
    let mut a = Client::join(&env, &topics, "a", &["t"]);
    let hb = |m: &str, e: i32, owned| env.c.consumer_heartbeat(&beat(m, e, owned), 1, &topics);
    assert!(matches!(
        hb("a", 5, None),
        Err(GroupError::FencedMemberEpoch)
    ));
    assert!(matches!(
        hb("zz", 1, None),
        Err(GroupError::UnknownMemberId)
    ));
    let mut other = beat("a", 1, None);
    other.group_id = "nope".into();
    // Kafka: GROUP_ID_NOT_FOUND, fatal to librdkafka; here the member rejoins.
    assert!(matches!(
        env.c.consumer_heartbeat(&other, 1, &topics),
        Err(GroupError::UnknownMemberId)
    ));
    // b joins; a moves to epoch 2 after revoking.
    let _b = Client::join(&env, &topics, "b", &["t"]);
    a.beat(&env, &topics).unwrap();
    a.beat(&env, &topics).unwrap();
    assert_eq!(a.epoch, 2);
    // The previous epoch is accepted with owned partitions within the assignment
    // (the answer that carried the new epoch may have been lost)...
    let owned = a.owned.clone();
    assert_eq!(hb("a", 1, Some(owned)).unwrap().member_epoch, 2);
    // ... but not without them, nor with partitions it does not have.
    assert!(matches!(
        hb("a", 1, None),
        Err(GroupError::FencedMemberEpoch)
    ));
    let all = vec![(topics.id("t"), vec![0, 1])];
    assert!(matches!(
        hb("a", 1, Some(all)),
        Err(GroupError::FencedMemberEpoch)
    ));
    // A fenced librdkafka member rejoins with epoch 0 and its own id: it is
    // taken back as it is, with its full assignment (Kafka 4.3, KAFKA-19233).
    let r = env
        .c
        .consumer_heartbeat(&join("a", &["t"]), 1, &topics)
        .unwrap();
    assert_eq!(r.member_epoch, 2);
    assert_eq!(r.assignment.unwrap(), a.owned);
}

#[tokio::test]
async fn bad_requests_are_refused() {
    let env = env_with(config());
    let topics = FakeTopics::with(&[("t", 2)]);
    let check =
        |req: ConsumerHeartbeat, version: i16| env.c.consumer_heartbeat(&req, version, &topics);
    assert!(matches!(
        check(join("", &["t"]), 1),
        Err(GroupError::InvalidRequest(_))
    ));
    let mut r = join("m", &["t"]);
    r.group_id = String::new();
    assert!(matches!(check(r, 1), Err(GroupError::InvalidRequest(_))));
    let mut r = join("m", &[]);
    r.subscribed_topic_names = None;
    assert!(matches!(check(r, 1), Err(GroupError::InvalidRequest(_))));
    let mut r = join("m", &["t"]);
    r.rebalance_timeout_ms = -1;
    assert!(matches!(check(r, 1), Err(GroupError::InvalidRequest(_))));
    let mut r = join("m", &["t"]);
    r.owned = Some(vec![(topics.id("t"), vec![0])]);
    assert!(matches!(check(r, 1), Err(GroupError::InvalidRequest(_))));
    let mut r = join("m", &["t"]);
    r.server_assignor = Some("nope".into());
    assert!(matches!(
        check(r, 1),
        Err(GroupError::UnsupportedAssignor(_))
    ));
    let mut r = join("m", &[]);
    r.subscribed_topic_regex = Some("(".into());
    assert!(matches!(
        check(r, 1),
        Err(GroupError::InvalidRegularExpression(_))
    ));
    assert!(matches!(
        check(beat("m", -3, None), 1),
        Err(GroupError::InvalidRequest(_))
    ));
    // -2 needs an instance id.
    assert!(matches!(
        check(beat("m", -2, None), 1),
        Err(GroupError::InvalidRequest(_))
    ));
    // Nothing of that created a group.
    assert!(!env.c.group_exists("g"));
}

#[tokio::test]
async fn a_silent_member_is_removed_after_the_session_timeout() {
    let env = env_with(config());
    let topics = FakeTopics::with(&[("t", 4)]);
    let mut a = Client::join(&env, &topics, "a", &["t"]);
    let mut b = Client::join(&env, &topics, "b", &["t"]);
    for _ in 0..3 {
        a.beat(&env, &topics).unwrap();
        b.beat(&env, &topics).unwrap();
    }
    assert_eq!((a.count(), b.count()), (2, 2));
    // b goes silent; a keeps beating.
    for _ in 0..9 {
        env.advance(1000).await;
        a.beat(&env, &topics).unwrap();
    }
    assert_eq!(a.count(), 2, "b is not removed before its session timeout");
    env.advance(1500).await;
    a.beat(&env, &topics).unwrap();
    assert_eq!(a.count(), 4);
    assert!(matches!(
        b.beat(&env, &topics),
        Err(GroupError::UnknownMemberId)
    ));
}

#[tokio::test]
async fn a_member_that_does_not_revoke_in_time_is_fenced() {
    // Sessions (45 s) outlive the rebalance timeout (30 s) here.
    let env = env_with(GroupConfig::default());
    let topics = FakeTopics::with(&[("t", 4)]);
    let mut a = Client::join(&env, &topics, "a", &["t"]);
    a.beat(&env, &topics).unwrap();
    let mut join_b = join("b", &["t"]);
    join_b.rebalance_timeout_ms = 30_000;
    env.c.consumer_heartbeat(&join_b, 1, &topics).unwrap();
    // a is told to revoke but keeps reporting nothing (it never confirms).
    let r = env
        .c
        .consumer_heartbeat(&beat("a", 1, None), 1, &topics)
        .unwrap();
    assert_eq!(count(&r.assignment), 2);
    for _ in 0..4 {
        env.advance(5000).await;
        env.c
            .consumer_heartbeat(&beat("a", 1, None), 1, &topics)
            .unwrap();
        env.c
            .consumer_heartbeat(&beat("b", 2, None), 1, &topics)
            .unwrap();
    }
    // Rebalance timeout is a's own (30 s): fenced after it.
    env.advance(11_000).await;
    assert!(matches!(
        env.c.consumer_heartbeat(&beat("a", 1, None), 1, &topics),
        Err(GroupError::UnknownMemberId)
    ));
    let r = env
        .c
        .consumer_heartbeat(&beat("b", 2, None), 1, &topics)
        .unwrap();
    assert_eq!(r.member_epoch, 3);
    assert_eq!(count(&r.assignment), 4);
}

#[tokio::test]
async fn a_static_member_returns_to_its_partitions() {
    let env = env_with(config());
    let topics = FakeTopics::with(&[("t", 4)]);
    let mut ja = join("a1", &["t"]);
    ja.instance_id = Some("inst-a".into());
    let r = env.c.consumer_heartbeat(&ja, 1, &topics).unwrap();
    let mut a = Client {
        id: "a1".into(),
        epoch: r.member_epoch,
        owned: r.assignment.unwrap(),
        report: true,
        interval: 0,
    };
    let mut b = Client::join(&env, &topics, "b", &["t"]);
    for _ in 0..3 {
        a.beat(&env, &topics).unwrap();
        b.beat(&env, &topics).unwrap();
    }
    let a_parts = a.owned.clone();
    let epoch = env.c.describe_consumer_group("g").unwrap().group_epoch;
    // A temporary leave keeps a's partitions; b gets none of them.
    let mut leave = beat("a1", a.epoch, None);
    leave.member_epoch = -2;
    leave.instance_id = Some("inst-a".into());
    assert_eq!(
        env.c
            .consumer_heartbeat(&leave, 1, &topics)
            .unwrap()
            .member_epoch,
        -2
    );
    b.beat(&env, &topics).unwrap();
    assert_eq!(b.count(), 2);
    // Another process with the same instance id while a is active is refused.
    let mut dup = join("b2", &["t"]);
    dup.instance_id = Some("inst-b".into());
    env.c.consumer_heartbeat(&dup, 1, &topics).unwrap();
    let mut dup2 = join("b3", &["t"]);
    dup2.instance_id = Some("inst-b".into());
    assert!(matches!(
        env.c.consumer_heartbeat(&dup2, 1, &topics),
        Err(GroupError::UnreleasedInstanceId(_))
    ));
    let mut leave_b2 = beat("b2", 0, None);
    leave_b2.member_epoch = -1;
    env.c.consumer_heartbeat(&leave_b2, 1, &topics).unwrap();
    // a returns under a new member id and gets the same partitions.
    let mut back = join("a2", &["t"]);
    back.instance_id = Some("inst-a".into());
    let r = env.c.consumer_heartbeat(&back, 1, &topics).unwrap();
    assert_eq!(r.member_id, "a2");
    assert_eq!(r.assignment.unwrap(), a_parts);
    let d = env.c.describe_consumer_group("g").unwrap();
    assert!(d.members.iter().all(|m| m.member_id != "a1"));
    // b2's join and leave moved the epoch; a's return did not.
    assert_eq!(d.group_epoch, epoch + 2);
}

#[tokio::test]
async fn a_departed_static_member_expires_with_its_session() {
    let env = env_with(config());
    let topics = FakeTopics::with(&[("t", 2)]);
    let mut ja = join("a", &["t"]);
    ja.instance_id = Some("i".into());
    env.c.consumer_heartbeat(&ja, 1, &topics).unwrap();
    let mut b = Client::join(&env, &topics, "b", &["t"]);
    let mut leave = beat("a", 1, None);
    leave.member_epoch = -2;
    leave.instance_id = Some("i".into());
    env.c.consumer_heartbeat(&leave, 1, &topics).unwrap();
    for _ in 0..12 {
        env.advance(1000).await;
        b.beat(&env, &topics).unwrap();
    }
    b.beat(&env, &topics).unwrap();
    assert_eq!(b.count(), 2);
}

#[tokio::test]
async fn new_topics_and_partitions_move_the_group_epoch() {
    let env = env_with(config());
    let topics = FakeTopics::with(&[("orders", 2), ("other", 1)]);
    let mut j = join("a", &[]);
    j.subscribed_topic_names = Some(Vec::new());
    j.subscribed_topic_regex = Some("ord.*".into());
    let r = env.c.consumer_heartbeat(&j, 1, &topics).unwrap();
    assert_eq!(count(&r.assignment), 2);
    topics.set("orders2", 3);
    topics.set("orders", 4);
    let r = env
        .c
        .consumer_heartbeat(&beat("a", r.member_epoch, None), 1, &topics)
        .unwrap();
    assert_eq!(count(&r.assignment), 7);
    assert_eq!(r.member_epoch, 2);
}

#[tokio::test]
async fn the_range_assignor_is_used_when_members_ask_for_it() {
    let env = env_with(config());
    let topics = FakeTopics::with(&[("x", 4), ("y", 4)]);
    let mut ja = join("a", &["x", "y"]);
    ja.server_assignor = Some("range".into());
    let mut jb = join("b", &["x", "y"]);
    jb.server_assignor = Some("range".into());
    env.c.consumer_heartbeat(&ja, 1, &topics).unwrap();
    env.c.consumer_heartbeat(&jb, 1, &topics).unwrap();
    let d = env.c.describe_consumer_group("g").unwrap();
    assert_eq!(d.assignor, "range");
    for m in &d.members {
        let parts: Vec<&Vec<i32>> = m.target_assignment.iter().map(|(_, _, ps)| ps).collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0], parts[1],
            "co-partitioned: same partitions of x and y"
        );
    }
}

#[tokio::test]
async fn consumer_groups_survive_a_restart() {
    let mut env = env_with(config());
    let topics = FakeTopics::with(&[("t", 4)]);
    let mut a = Client::join(&env, &topics, "a", &["t"]);
    let mut b = Client::join(&env, &topics, "b", &["t"]);
    for _ in 0..3 {
        a.beat(&env, &topics).unwrap();
        b.beat(&env, &topics).unwrap();
    }
    let before = env.c.describe_consumer_group("g").unwrap();
    env.restart();
    let after = env.c.describe_consumer_group("g").unwrap();
    assert_eq!(after.group_epoch, before.group_epoch);
    assert_eq!(after.members.len(), 2);
    // Members go on with their epochs and keep their partitions.
    let owned = a.owned.clone();
    a.beat(&env, &topics).unwrap();
    b.beat(&env, &topics).unwrap();
    assert_eq!(a.owned, owned);
    assert_eq!(state(&env), "Stable");
}

#[tokio::test]
async fn commits_and_fetches_check_the_member_epoch() {
    let env = env_with(config());
    let topics = FakeTopics::with(&[("t", 1)]);
    let a = Client::join(&env, &topics, "a", &["t"]);
    let offset = || {
        vec![CommitOffset {
            topic: "t".into(),
            partition: 0,
            offset: 5,
            leader_epoch: -1,
            metadata: None,
        }]
    };
    let commit =
        |member: &str, epoch: i32| env.c.commit_offsets("g", epoch, member, None, offset());
    assert!(commit("a", a.epoch).unwrap()[0].is_ok());
    assert!(matches!(
        commit("a", a.epoch + 1),
        Err(GroupError::StaleMemberEpoch)
    ));
    assert!(matches!(
        commit("x", a.epoch),
        Err(GroupError::UnknownMemberId)
    ));
    // An admin commit while the group has members.
    assert!(matches!(commit("", -1), Err(GroupError::UnknownMemberId)));
    assert!(env.c.validate_fetch_member("g", Some("a"), a.epoch).is_ok());
    assert!(matches!(
        env.c.validate_fetch_member("g", Some("a"), 0),
        Err(GroupError::StaleMemberEpoch)
    ));
    assert!(env.c.validate_fetch_member("g", None, -1).is_ok());
    assert!(env.c.is_consumer_group_member("g", "a"));
    assert!(!env.c.is_consumer_group_member("g", "x"));
    assert!(matches!(
        env.c.delete_groups(&["g".into()])[0],
        Err(GroupError::NonEmptyGroup)
    ));
    env.c
        .consumer_heartbeat(&beat("a", LEAVE_EPOCH_FOR_TESTS, None), 1, &topics)
        .unwrap();
    assert_eq!(state(&env), "Empty");
    assert!(commit("", -1).unwrap()[0].is_ok());
    let got = env.c.fetch_offsets("g", None).unwrap();
    assert_eq!(got[0].2.as_ref().unwrap().offset, 5);
    assert!(env.c.delete_groups(&["g".into()])[0].is_ok());
}

#[tokio::test]
async fn a_group_changes_type_only_when_empty() {
    let env = env_with(config());
    let topics = FakeTopics::with(&[("t", 1)]);
    let a = Client::join(&env, &topics, "a", &["t"]);
    // A classic member cannot join a consumer group with members...
    let h = env.join(join_req("g", "", &["t"]));
    assert!(matches!(
        done(h).await,
        Err(GroupError::InconsistentGroupProtocol)
    ));
    // ... and the classic DescribeGroups shows no classic group.
    assert_eq!(env.c.describe_group("g").state, GroupState::Dead);
    env.c
        .consumer_heartbeat(&beat(&a.id, LEAVE_EPOCH_FOR_TESTS, None), 1, &topics)
        .unwrap();
    // Empty: the classic member turns it into a classic group.
    let h = env.join(join_req("g", "", &["t"]));
    env.advance(3100).await;
    assert!(done(h).await.is_ok());
    assert_eq!(env.c.list_groups(&[], &[])[0].group_type, "classic");
    // Now a consumer-protocol member cannot join the classic group.
    assert!(matches!(
        env.c.consumer_heartbeat(&join("z", &["t"]), 1, &topics),
        Err(GroupError::GroupIdNotFound)
    ));
}
