//! Coordinator tests. Timers run on a clock the test moves by hand
//! (`Env::advance`), which fires due timers exactly as `run()` would;
//! waiting joins and syncs are spawned tasks.

use super::subscription::encode_subscription;
use super::*;
use tokio::task::JoinHandle;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 60_000;

pub(super) struct Env {
    _dir: tempfile::TempDir,
    store: Arc<MetaStore>,
    pub c: Arc<GroupCoordinator>,
    config: GroupConfig,
}

fn env() -> Env {
    env_with(GroupConfig::default())
}

pub(super) fn env_with(config: GroupConfig) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MetaStore::open(dir.path()).unwrap());
    let c =
        GroupCoordinator::open_with_clock(store.clone(), config.clone(), Clock::new(true)).unwrap();
    Env {
        _dir: dir,
        store,
        c,
        config,
    }
}

impl Env {
    /// Drops the coordinator and opens a new one on the same store (a restart).
    pub fn restart(&mut self) {
        self.c = GroupCoordinator::open_with_clock(
            self.store.clone(),
            self.config.clone(),
            Clock::new(true),
        )
        .unwrap();
    }

    /// Moves the clock in 100 ms steps, firing due timers at each, then lets
    /// woken tasks run.
    pub async fn advance(&self, ms: u64) {
        settle().await;
        let clock = self.c.clock.manual_ms.as_ref().unwrap();
        let mut left = ms;
        while left > 0 {
            let step = left.min(100);
            clock.fetch_add(step, Ordering::SeqCst);
            self.c.tick();
            left -= step;
        }
        settle().await;
    }

    pub fn join(&self, req: JoinRequest) -> JoinHandle<Result<JoinResponse, GroupError>> {
        let c = self.c.clone();
        tokio::spawn(async move { c.join_group(req).await })
    }

    fn sync(&self, req: SyncRequest) -> JoinHandle<Result<SyncResponse, GroupError>> {
        let c = self.c.clone();
        tokio::spawn(async move { c.sync_group(req).await })
    }

    fn state(&self, group: &str) -> GroupState {
        self.c.describe_group(group).state
    }
}

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// The result of a task that must have finished by now.
pub(super) async fn done<T>(h: JoinHandle<T>) -> T {
    settle().await;
    assert!(h.is_finished(), "request still waiting");
    h.await.unwrap()
}

pub(super) fn join_req(group: &str, member_id: &str, topics: &[&str]) -> JoinRequest {
    JoinRequest {
        group_id: group.into(),
        member_id: member_id.into(),
        group_instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from(encode_subscription(topics)))],
        require_known_member_id: false,
    }
}

fn static_req(group: &str, member_id: &str, instance: &str) -> JoinRequest {
    JoinRequest {
        group_instance_id: Some(instance.into()),
        ..join_req(group, member_id, &["t"])
    }
}

fn sync_req(
    group: &str,
    generation: i32,
    member_id: &str,
    assignments: &[(&str, &str)],
) -> SyncRequest {
    SyncRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member_id.into(),
        group_instance_id: None,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments: assignments
            .iter()
            .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
            .collect(),
    }
}

fn commit(topic: &str, partition: i32, offset: i64, metadata: Option<&str>) -> CommitOffset {
    CommitOffset {
        topic: topic.into(),
        partition,
        offset,
        leader_epoch: 0,
        metadata: metadata.map(String::from),
    }
}

struct Pair {
    leader: String,
    follower: String,
    generation: i32,
}

/// Two members (requests built by `req`) joined and synced: the leader got
/// "A", the follower "B".
async fn stable_pair(env: &Env, group: &str, req: impl Fn(&str) -> JoinRequest) -> Pair {
    let a = env.join(req("a"));
    settle().await;
    let b = env.join(req("b"));
    settle().await;
    // The second member joined during the initial delay: Kafka extends it once.
    env.advance(6000).await;
    let (a, b) = (done(a).await.unwrap(), done(b).await.unwrap());
    assert_eq!(a.generation_id, b.generation_id);
    let (leader, follower) = if a.leader == a.member_id {
        (a, b)
    } else {
        (b, a)
    };
    let g = leader.generation_id;
    let f = env.sync(sync_req(group, g, &follower.member_id, &[]));
    settle().await;
    let l = env.sync(sync_req(
        group,
        g,
        &leader.member_id,
        &[(&leader.member_id, "A"), (&follower.member_id, "B")],
    ));
    assert_eq!(done(l).await.unwrap().assignment, Bytes::from("A"));
    assert_eq!(done(f).await.unwrap().assignment, Bytes::from("B"));
    assert_eq!(env.state(group), GroupState::Stable);
    Pair {
        leader: leader.member_id,
        follower: follower.member_id,
        generation: g,
    }
}

#[tokio::test]
async fn two_members_join_one_generation_one_leader_and_sync_delivers_assignments() {
    let env = env();
    let a = env.join(join_req("g", "", &["t1"]));
    settle().await;
    env.advance(1000).await;
    let b = env.join(join_req("g", "", &["t2"]));
    settle().await;
    assert_eq!(env.state("g"), GroupState::PreparingRebalance);
    // The initial delay (3 s) restarts when b arrives at 1 s: done at 4 s (Kafka: 6 s).
    env.advance(2900).await;
    assert!(!a.is_finished() && !b.is_finished());
    env.advance(100).await;
    let (a, b) = (done(a).await.unwrap(), done(b).await.unwrap());
    assert_eq!((a.generation_id, b.generation_id), (1, 1));
    assert_eq!(a.leader, a.member_id, "the first to join leads");
    assert_eq!(b.leader, a.member_id);
    assert_eq!(a.protocol_name, "range");
    assert_eq!(a.protocol_type, "consumer");
    assert!(b.members.is_empty());
    let metas: Vec<_> = a
        .members
        .iter()
        .map(|m| (m.member_id.clone(), m.metadata.clone()))
        .collect();
    assert_eq!(
        metas,
        vec![
            (
                a.member_id.clone(),
                Bytes::from(encode_subscription(&["t1"]))
            ),
            (
                b.member_id.clone(),
                Bytes::from(encode_subscription(&["t2"]))
            ),
        ]
    );
    assert!(a.member_id.starts_with("client-"));
    assert_eq!(env.state("g"), GroupState::CompletingRebalance);
    assert!(
        matches!(env.c.heartbeat("g", 1, &b.member_id, None), Ok(())),
        "heartbeat ok while completing"
    );

    let follower = env.sync(sync_req("g", 1, &b.member_id, &[]));
    settle().await;
    assert!(!follower.is_finished(), "followers wait for the leader");
    let leader = env.sync(sync_req(
        "g",
        1,
        &a.member_id,
        &[(&a.member_id, "A"), (&b.member_id, "B")],
    ));
    assert_eq!(done(leader).await.unwrap().assignment, Bytes::from("A"));
    assert_eq!(done(follower).await.unwrap().assignment, Bytes::from("B"));
    assert_eq!(env.state("g"), GroupState::Stable);
    assert!(env.c.heartbeat("g", 1, &a.member_id, None).is_ok());
    // A late sync in Stable gets the assignment at once.
    let again = env.sync(sync_req("g", 1, &b.member_id, &[]));
    assert_eq!(done(again).await.unwrap().assignment, Bytes::from("B"));
    let d = env.c.describe_group("g");
    assert_eq!(d.protocol_name, "range");
    assert_eq!(d.members.len(), 2);
    assert_eq!(d.members[1].assignment, Bytes::from("B"));
}

#[tokio::test]
async fn lone_member_is_answered_right_after_the_initial_delay() {
    let env = env();
    let a = env.join(join_req("g", "", &["t"]));
    env.advance(2900).await;
    assert!(!a.is_finished());
    env.advance(100).await;
    assert_eq!(done(a).await.unwrap().generation_id, 1);
}

#[tokio::test]
async fn third_member_rebalance_completes_when_all_rejoined_without_waiting_for_timeouts() {
    let env = env();
    let p = stable_pair(&env, "g", |_| join_req("g", "", &["t"])).await;
    let c = env.join(join_req("g", "", &["t"]));
    settle().await;
    assert_eq!(env.state("g"), GroupState::PreparingRebalance);
    assert!(matches!(
        env.c.heartbeat("g", p.generation, &p.leader, None),
        Err(GroupError::RebalanceInProgress)
    ));
    assert!(matches!(
        env.c.heartbeat("g", p.generation, &p.follower, None),
        Err(GroupError::RebalanceInProgress)
    ));
    let a = env.join(join_req("g", &p.leader, &["t"]));
    let b = env.join(join_req("g", &p.follower, &["t"]));
    // No clock movement: the join phase ends as soon as everyone is in.
    let (a, b, c) = (
        done(a).await.unwrap(),
        done(b).await.unwrap(),
        done(c).await.unwrap(),
    );
    assert_eq!(
        (a.generation_id, b.generation_id, c.generation_id),
        (2, 2, 2)
    );
    assert_eq!(a.leader, p.leader, "the leader stays the leader");
    assert_eq!(a.members.len(), 3);
    assert!(b.members.is_empty() && c.members.is_empty());
}

#[tokio::test]
async fn member_that_stops_heartbeating_is_removed_after_its_session_timeout() {
    let env = env();
    let p = stable_pair(&env, "g", |_| join_req("g", "", &["t"])).await;
    for _ in 0..3 {
        env.advance(3000).await;
        assert!(env.c.heartbeat("g", p.generation, &p.leader, None).is_ok());
    }
    env.advance(1100).await; // the follower's session (10 s) has now run out
    assert_eq!(env.state("g"), GroupState::PreparingRebalance);
    assert!(matches!(
        env.c.heartbeat("g", p.generation, &p.leader, None),
        Err(GroupError::RebalanceInProgress)
    ));
    assert!(matches!(
        env.c.heartbeat("g", p.generation, &p.follower, None),
        Err(GroupError::UnknownMemberId)
    ));
    let a = done(env.join(join_req("g", &p.leader, &["t"])))
        .await
        .unwrap();
    assert_eq!(a.generation_id, p.generation + 1);
    assert_eq!(a.members.len(), 1);
}

#[tokio::test]
async fn rebalance_timeout_drops_members_that_did_not_rejoin() {
    let env = env();
    let p = stable_pair(&env, "g", |_| join_req("g", "", &["t"])).await;
    // The leader rejoining forces a rebalance; the follower never rejoins
    // but keeps heartbeating (and is told to rejoin).
    let a = env.join(join_req("g", &p.leader, &["t"]));
    for _ in 0..19 {
        env.advance(3000).await;
        assert!(!a.is_finished());
        assert!(matches!(
            env.c.heartbeat("g", p.generation, &p.follower, None),
            Err(GroupError::RebalanceInProgress)
        ));
    }
    env.advance(3000).await;
    let a = done(a).await.unwrap();
    assert_eq!(a.generation_id, p.generation + 1);
    assert_eq!(a.members.len(), 1);
}

#[tokio::test]
async fn waiting_follower_is_answered_when_the_leader_never_syncs() {
    let env = env();
    let a = env.join(join_req("g", "", &["t"]));
    settle().await;
    let b = env.join(join_req("g", "", &["t"]));
    env.advance(3000).await;
    let (a, b) = (done(a).await.unwrap(), done(b).await.unwrap());
    let f = env.sync(sync_req("g", 1, &b.member_id, &[]));
    // The leader heartbeats but never syncs: the rebalance timeout (60 s) ends it.
    for _ in 0..19 {
        env.advance(3000).await;
        env.c.heartbeat("g", 1, &a.member_id, None).unwrap();
        assert!(!f.is_finished());
    }
    env.advance(3000).await;
    assert!(matches!(
        done(f).await,
        Err(GroupError::RebalanceInProgress)
    ));
    assert_eq!(env.state("g"), GroupState::PreparingRebalance);
    assert!(matches!(
        env.c.heartbeat("g", 1, &a.member_id, None),
        Err(GroupError::UnknownMemberId)
    ));
    let b2 = done(env.join(join_req("g", &b.member_id, &["t"])))
        .await
        .unwrap();
    assert_eq!(
        (b2.generation_id, b2.leader.as_str()),
        (2, b.member_id.as_str())
    );
}

#[tokio::test]
async fn leave_triggers_rebalance_and_last_leave_empties_the_group() {
    let env = env();
    let p = stable_pair(&env, "g", |_| join_req("g", "", &["t"])).await;
    let results = env
        .c
        .leave_group("g", &[(p.follower.clone(), None), ("nobody".into(), None)])
        .unwrap();
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(GroupError::UnknownMemberId)));
    assert!(matches!(
        env.c.heartbeat("g", p.generation, &p.leader, None),
        Err(GroupError::RebalanceInProgress)
    ));
    let a = done(env.join(join_req("g", &p.leader, &["t"])))
        .await
        .unwrap();
    assert_eq!((a.generation_id, a.members.len()), (p.generation + 1, 1));
    env.c.leave_group("g", &[(p.leader.clone(), None)]).unwrap()[0]
        .as_ref()
        .unwrap();
    assert_eq!(
        env.state("g"),
        GroupState::Empty,
        "an empty group is Empty, never Stable"
    );
    assert!(env.c.describe_group("g").members.is_empty());
    assert!(matches!(
        env.c.leave_group("nope", &[]),
        Err(GroupError::UnknownMemberId)
    ));
}

#[tokio::test]
async fn member_id_required_round_trip() {
    let env = env();
    let mut req = join_req("g", "", &["t"]);
    req.require_known_member_id = true;
    let id = match env.c.join_group(req.clone()).await {
        Err(GroupError::MemberIdRequired(id)) => id,
        other => panic!("{other:?}"),
    };
    assert!(id.starts_with("client-"));
    assert_eq!(env.state("g"), GroupState::Empty);
    req.member_id = id.clone();
    let j = env.join(req.clone());
    env.advance(3000).await;
    let r = done(j).await.unwrap();
    assert_eq!(
        (r.member_id.as_str(), r.leader.as_str()),
        (id.as_str(), id.as_str())
    );
    req.member_id = "client-made-up".into();
    assert!(matches!(
        env.c.join_group(req.clone()).await,
        Err(GroupError::UnknownMemberId)
    ));
    req.group_id = "other".into();
    assert!(matches!(
        env.c.join_group(req).await,
        Err(GroupError::UnknownMemberId)
    ));
}

#[tokio::test]
async fn pending_member_that_never_rejoins_expires() {
    let env = env();
    let mut req = join_req("g", "", &["t"]);
    req.require_known_member_id = true;
    let Err(GroupError::MemberIdRequired(id)) = env.c.join_group(req.clone()).await else {
        panic!()
    };
    env.advance(SESSION_MS as u64 + 100).await;
    req.member_id = id;
    assert!(matches!(
        env.c.join_group(req).await,
        Err(GroupError::UnknownMemberId)
    ));
}

#[tokio::test]
async fn join_validation_errors() {
    let env = env_with(GroupConfig {
        max_members: 2,
        max_member_bytes: 100,
        ..GroupConfig::default()
    });
    let ok = join_req("g", "", &["t"]);
    assert!(matches!(
        env.c
            .join_group(JoinRequest {
                group_id: "".into(),
                ..ok.clone()
            })
            .await,
        Err(GroupError::InvalidGroupId)
    ));
    assert!(matches!(
        env.c
            .join_group(JoinRequest {
                session_timeout_ms: 10,
                ..ok.clone()
            })
            .await,
        Err(GroupError::InvalidSessionTimeout)
    ));
    let big = vec![("range".to_string(), Bytes::from(vec![0u8; 200]))];
    assert!(matches!(
        env.c
            .join_group(JoinRequest {
                protocols: big,
                ..ok.clone()
            })
            .await,
        Err(GroupError::InvalidRequest(_))
    ));
    assert!(matches!(
        env.c
            .join_group(JoinRequest {
                protocols: vec![],
                ..ok.clone()
            })
            .await,
        Err(GroupError::InconsistentGroupProtocol)
    ));
    let first = env.join(ok.clone());
    settle().await;
    let other_type = JoinRequest {
        protocol_type: "connect".into(),
        ..ok.clone()
    };
    assert!(matches!(
        env.c.join_group(other_type).await,
        Err(GroupError::InconsistentGroupProtocol)
    ));
    let second = env.join(ok.clone());
    settle().await;
    assert!(matches!(
        env.c.join_group(ok.clone()).await,
        Err(GroupError::GroupMaxSizeReached)
    ));
    env.advance(6000).await;
    assert!(done(first).await.is_ok());
    assert!(done(second).await.is_ok());
}

#[tokio::test]
async fn no_common_protocol_is_inconsistent_and_most_voted_protocol_wins() {
    let env = env();
    let proto = |names: &[&str]| -> Vec<(String, Bytes)> {
        names
            .iter()
            .map(|n| (n.to_string(), Bytes::from(encode_subscription(&["t"]))))
            .collect()
    };
    let a = env.join(JoinRequest {
        protocols: proto(&["range", "roundrobin"]),
        ..join_req("g", "", &[])
    });
    settle().await;
    let b = env.join(JoinRequest {
        protocols: proto(&["roundrobin", "range"]),
        ..join_req("g", "", &[])
    });
    settle().await;
    let c = env.join(JoinRequest {
        protocols: proto(&["roundrobin", "range"]),
        ..join_req("g", "", &[])
    });
    settle().await;
    let bad = JoinRequest {
        protocols: proto(&["sticky"]),
        ..join_req("g", "", &[])
    };
    assert!(matches!(
        env.c.join_group(bad).await,
        Err(GroupError::InconsistentGroupProtocol)
    ));
    env.advance(6000).await;
    for h in [a, b, c] {
        assert_eq!(done(h).await.unwrap().protocol_name, "roundrobin");
    }
}

#[tokio::test]
async fn static_member_restart_within_session_timeout_keeps_assignment_without_rebalance() {
    let env = env();
    let p = stable_pair(&env, "g", |i| static_req("g", "", i)).await;
    let d = env.c.describe_group("g");
    let leader_instance = d
        .members
        .iter()
        .find(|m| m.member_id == p.leader)
        .unwrap()
        .group_instance_id
        .clone()
        .unwrap();
    let follower_instance = d
        .members
        .iter()
        .find(|m| m.member_id == p.follower)
        .unwrap()
        .group_instance_id
        .clone()
        .unwrap();

    // The follower restarts: no member id, same instance id.
    let r = done(env.join(static_req("g", "", &follower_instance)))
        .await
        .unwrap();
    assert_ne!(r.member_id, p.follower);
    assert!(r.member_id.starts_with(&format!("{follower_instance}-")));
    assert_eq!(
        (r.generation_id, r.leader.as_str()),
        (p.generation, p.leader.as_str())
    );
    assert!(r.members.is_empty());
    assert_eq!(env.state("g"), GroupState::Stable, "no rebalance");
    let s = done(env.sync(SyncRequest {
        group_instance_id: Some(follower_instance.clone()),
        ..sync_req("g", p.generation, &r.member_id, &[])
    }))
    .await
    .unwrap();
    assert_eq!(s.assignment, Bytes::from("B"));
    assert!(env
        .c
        .heartbeat("g", p.generation, &p.leader, Some(&leader_instance))
        .is_ok());

    // The old incarnation is fenced.
    assert!(matches!(
        env.c
            .heartbeat("g", p.generation, &p.follower, Some(&follower_instance)),
        Err(GroupError::FencedInstanceId)
    ));
    assert!(matches!(
        env.c
            .join_group(static_req("g", &p.follower, &follower_instance))
            .await,
        Err(GroupError::FencedInstanceId)
    ));
    let commit_err = env.c.commit_offsets(
        "g",
        p.generation,
        &p.follower,
        Some(&follower_instance),
        vec![commit("t", 0, 1, None)],
    );
    assert!(matches!(commit_err, Err(GroupError::FencedInstanceId)));

    // The leader restarts: it stays the leader and gets the member list.
    let l = done(env.join(static_req("g", "", &leader_instance)))
        .await
        .unwrap();
    assert_eq!(
        (l.leader.as_str(), l.generation_id),
        (l.member_id.as_str(), p.generation)
    );
    assert_eq!(l.members.len(), 2);
    assert_eq!(env.state("g"), GroupState::Stable);
    let s = done(env.sync(sync_req("g", p.generation, &l.member_id, &[])))
        .await
        .unwrap();
    assert_eq!(s.assignment, Bytes::from("A"));

    // Static members leave only with their instance id.
    let left = env
        .c
        .leave_group("g", &[(String::new(), Some(follower_instance.clone()))])
        .unwrap();
    assert!(left[0].is_ok());
    assert_eq!(env.state("g"), GroupState::PreparingRebalance);
}

#[tokio::test]
async fn static_member_rejoin_answers_the_fenced_waiting_join() {
    let env = env();
    let old = env.join(static_req("g", "", "i1"));
    settle().await;
    let new = env.join(static_req("g", "", "i1"));
    settle().await;
    assert!(matches!(done(old).await, Err(GroupError::FencedInstanceId)));
    env.advance(3000).await;
    assert_eq!(done(new).await.unwrap().members.len(), 1);
}

#[tokio::test]
async fn stale_generation_commit_is_illegal_generation() {
    let env = env();
    let a = env.join(join_req("g", "", &["t"]));
    env.advance(3000).await;
    let a = done(a).await.unwrap();
    let r = env
        .c
        .commit_offsets("g", 1, &a.member_id, None, vec![commit("t", 0, 5, None)]);
    assert!(
        matches!(r, Err(GroupError::RebalanceInProgress)),
        "commit while CompletingRebalance"
    );
    done(env.sync(sync_req("g", 1, &a.member_id, &[(&a.member_id, "x")])))
        .await
        .unwrap();
    assert!(matches!(
        env.c
            .commit_offsets("g", 0, &a.member_id, None, vec![commit("t", 0, 5, None)]),
        Err(GroupError::IllegalGeneration)
    ));
    assert!(matches!(
        env.c
            .commit_offsets("g", 1, "who", None, vec![commit("t", 0, 5, None)]),
        Err(GroupError::UnknownMemberId)
    ));
    assert!(
        matches!(
            env.c
                .commit_offsets("g", -1, "", None, vec![commit("t", 0, 5, None)]),
            Err(GroupError::UnknownMemberId)
        ),
        "standalone commit into a group with members"
    );
    assert!(matches!(
        env.c
            .commit_offsets("nope", 3, "m", None, vec![commit("t", 0, 5, None)]),
        Err(GroupError::IllegalGeneration)
    ));
    let ok = env
        .c
        .commit_offsets("g", 1, &a.member_id, None, vec![commit("t", 0, 5, None)])
        .unwrap();
    assert!(ok[0].is_ok());
    assert_eq!(
        env.c.fetch_offsets("g", Some(&[("t".into(), 0)])).unwrap()[0]
            .2
            .as_ref()
            .unwrap()
            .offset,
        5
    );
}

#[tokio::test]
async fn standalone_commits_fetch_and_metadata_round_trip() {
    let env = env_with(GroupConfig {
        max_offset_metadata_bytes: 10,
        ..GroupConfig::default()
    });
    let results = env
        .c
        .commit_offsets(
            "simple",
            -1,
            "",
            None,
            vec![
                commit("t", 0, 10, None),
                commit("t", 1, 11, Some("")),
                commit("t", 2, 12, Some("héllo")),
                commit("t", 3, 13, Some("far too long metadata")),
            ],
        )
        .unwrap();
    assert!(results[..3].iter().all(Result::is_ok));
    assert!(matches!(
        results[3],
        Err(GroupError::OffsetMetadataTooLarge)
    ));
    let asked: Vec<(String, i32)> = (0..5).map(|p| ("t".to_string(), p)).collect();
    let got = env.c.fetch_offsets("simple", Some(&asked)).unwrap();
    let view: Vec<_> = got
        .iter()
        .map(|(_, p, c)| (*p, c.as_ref().map(|c| (c.offset, c.metadata.clone()))))
        .collect();
    assert_eq!(
        view,
        vec![
            (0, Some((10, None))),
            (1, Some((11, Some(String::new())))),
            (2, Some((12, Some("héllo".to_string())))),
            (3, None),
            (4, None),
        ]
    );
    assert_eq!(env.c.fetch_offsets("simple", None).unwrap().len(), 3);
    assert!(env.c.fetch_offsets("unknown", None).unwrap().is_empty());
    assert_eq!(
        env.c.fetch_offsets("unknown", Some(&asked[..1])).unwrap()[0].2,
        None
    );
    assert_eq!(env.state("simple"), GroupState::Empty);
    assert_eq!(env.c.all_committed().len(), 3);
}

#[tokio::test]
async fn restart_keeps_offsets_metadata_and_the_stable_group() {
    let mut env = env();
    let p = stable_pair(&env, "g", |_| join_req("g", "", &["t"])).await;
    env.c
        .commit_offsets(
            "g",
            p.generation,
            &p.leader,
            None,
            vec![commit("t", 0, 42, Some("m")), commit("t", 1, 7, None)],
        )
        .unwrap();
    env.c
        .commit_offsets("simple", -1, "", None, vec![commit("u", 0, 1, Some(""))])
        .unwrap();
    let before = env.c.fetch_offsets("g", None).unwrap();

    env.restart();
    assert_eq!(env.c.fetch_offsets("g", None).unwrap(), before);
    assert_eq!(
        env.c.fetch_offsets("simple", None).unwrap()[0]
            .2
            .as_ref()
            .unwrap()
            .metadata,
        Some(String::new())
    );
    let d = env.c.describe_group("g");
    assert_eq!(d.state, GroupState::Stable);
    assert_eq!(d.protocol_name, "range");
    let ids: Vec<_> = d.members.iter().map(|m| m.member_id.clone()).collect();
    assert_eq!(ids, vec![p.leader.clone(), p.follower.clone()]);
    assert_eq!(d.members[1].assignment, Bytes::from("B"));
    assert_eq!(
        d.members[0].metadata,
        Bytes::from(encode_subscription(&["t"]))
    );
    assert_eq!(env.state("simple"), GroupState::Empty);

    // Consumers that heartbeat through the restart keep their assignment.
    assert!(env.c.heartbeat("g", p.generation, &p.leader, None).is_ok());
    let s = done(env.sync(sync_req("g", p.generation, &p.follower, &[])))
        .await
        .unwrap();
    assert_eq!(s.assignment, Bytes::from("B"));
    // One that never comes back expires and the group rebalances.
    for _ in 0..3 {
        env.advance(3000).await;
        assert!(env.c.heartbeat("g", p.generation, &p.leader, None).is_ok());
    }
    env.advance(1100).await;
    assert!(matches!(
        env.c.heartbeat("g", p.generation, &p.follower, None),
        Err(GroupError::UnknownMemberId)
    ));
    assert!(matches!(
        env.c.heartbeat("g", p.generation, &p.leader, None),
        Err(GroupError::RebalanceInProgress)
    ));
}

#[tokio::test]
async fn restart_after_the_group_emptied_restores_it_empty() {
    let mut env = env();
    let p = stable_pair(&env, "g", |_| join_req("g", "", &["t"])).await;
    env.c
        .commit_offsets(
            "g",
            p.generation,
            &p.leader,
            None,
            vec![commit("t", 0, 1, None)],
        )
        .unwrap();
    env.c
        .leave_group("g", &[(p.leader.clone(), None), (p.follower.clone(), None)])
        .unwrap();
    assert_eq!(env.state("g"), GroupState::Empty);
    env.restart();
    let d = env.c.describe_group("g");
    assert_eq!(
        (d.state, d.members.len(), d.protocol_type.as_str()),
        (GroupState::Empty, 0, "consumer")
    );
}

#[tokio::test]
async fn list_describe_and_delete_groups() {
    let env = env();
    let p = stable_pair(&env, "g", |_| join_req("g", "", &["t"])).await;
    env.c
        .commit_offsets("simple", -1, "", None, vec![commit("t", 0, 1, None)])
        .unwrap();
    let names = |v: Vec<GroupOverview>| v.into_iter().map(|o| o.group_id).collect::<Vec<_>>();
    assert_eq!(names(env.c.list_groups(&[], &[])), vec!["g", "simple"]);
    assert_eq!(names(env.c.list_groups(&["stable".into()], &[])), vec!["g"]);
    assert_eq!(
        names(env.c.list_groups(&["Empty".into()], &[])),
        vec!["simple"]
    );
    // The type filter is the group type (classic/consumer), not the protocol type.
    assert!(names(env.c.list_groups(&[], &["consumer".into()])).is_empty());
    assert_eq!(
        names(env.c.list_groups(&[], &["classic".into()])),
        vec!["g", "simple"]
    );
    let unknown = env.c.describe_group("nope");
    assert_eq!(
        (unknown.state, unknown.members.len()),
        (GroupState::Dead, 0)
    );

    let r = env
        .c
        .delete_groups(&["nope".into(), "g".into(), "simple".into()]);
    assert!(matches!(r[0], Err(GroupError::GroupIdNotFound)));
    assert!(matches!(r[1], Err(GroupError::NonEmptyGroup)));
    assert!(r[2].is_ok());
    assert_eq!(env.state("simple"), GroupState::Dead);
    assert!(env.c.fetch_offsets("simple", None).unwrap().is_empty());
    assert!(env
        .store
        .scan_json::<serde_json::Value>(CF_OFFSETS)
        .unwrap()
        .is_empty());
    let _ = p;
    // A deleted group can be created again.
    env.c
        .commit_offsets("simple", -1, "", None, vec![commit("t", 0, 2, None)])
        .unwrap();
    assert_eq!(
        env.c.fetch_offsets("simple", None).unwrap()[0]
            .2
            .as_ref()
            .unwrap()
            .offset,
        2
    );
}

#[tokio::test]
async fn offsets_of_an_empty_group_expire_after_retention_and_the_group_goes() {
    let env = env_with(GroupConfig {
        offsets_retention_ms: 60_000,
        ..GroupConfig::default()
    });
    env.c
        .commit_offsets("simple", -1, "", None, vec![commit("t", 0, 1, None)])
        .unwrap();
    env.advance(30_000).await;
    env.c
        .commit_offsets("simple", -1, "", None, vec![commit("t", 1, 1, None)])
        .unwrap();
    env.advance(35_000).await;
    let left = env.c.fetch_offsets("simple", None).unwrap();
    assert_eq!(left.len(), 1, "only the first commit has expired");
    assert_eq!(left[0].1, 1);
    env.advance(30_000).await;
    assert!(env.c.fetch_offsets("simple", None).unwrap().is_empty());
    assert!(
        env.c.list_groups(&[], &[]).is_empty(),
        "the group is removed when nothing is left"
    );
    assert!(env
        .store
        .scan_json::<serde_json::Value>(CF_OFFSETS)
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn offsets_of_an_active_group_do_not_expire() {
    let env = env_with(GroupConfig {
        offsets_retention_ms: 60_000,
        ..GroupConfig::default()
    });
    let p = stable_pair(&env, "g", |_| join_req("g", "", &["t"])).await;
    env.c
        .commit_offsets(
            "g",
            p.generation,
            &p.leader,
            None,
            vec![commit("t", 0, 1, None), commit("gone", 0, 1, None)],
        )
        .unwrap();
    for _ in 0..30 {
        env.advance(3000).await;
        env.c.heartbeat("g", p.generation, &p.leader, None).unwrap();
        env.c
            .heartbeat("g", p.generation, &p.follower, None)
            .unwrap();
    }
    let left = env.c.fetch_offsets("g", None).unwrap();
    assert_eq!(
        left.len(),
        1,
        "only the unsubscribed topic's offset expired"
    );
    assert_eq!(left[0].0, "t");
}

#[tokio::test]
async fn delete_offsets_refuses_topics_a_member_subscribes_to() {
    let env = env();
    let p = stable_pair(&env, "g", |_| join_req("g", "", &["t1"])).await;
    env.c
        .commit_offsets(
            "g",
            p.generation,
            &p.leader,
            None,
            vec![commit("t1", 0, 1, None), commit("t2", 0, 1, None)],
        )
        .unwrap();
    let r = env
        .c
        .delete_offsets("g", &[("t1".into(), 0), ("t2".into(), 0), ("t3".into(), 0)])
        .unwrap();
    assert!(matches!(r[0], Err(GroupError::GroupSubscribedToTopic)));
    assert!(r[1].is_ok() && r[2].is_ok());
    let left = env.c.fetch_offsets("g", None).unwrap();
    assert_eq!(
        left.iter().map(|(t, _, _)| t.as_str()).collect::<Vec<_>>(),
        vec!["t1"]
    );
    assert!(matches!(
        env.c.delete_offsets("nope", &[]),
        Err(GroupError::GroupIdNotFound)
    ));
}

#[tokio::test]
async fn garbage_subscription_metadata_does_not_block_offset_delete() {
    let env = env();
    let garbage = |_: &str| JoinRequest {
        protocols: vec![(
            "range".into(),
            Bytes::from_static(&[0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 1]),
        )],
        ..join_req("g", "", &[])
    };
    let p = stable_pair(&env, "g", garbage).await;
    env.c
        .commit_offsets(
            "g",
            p.generation,
            &p.leader,
            None,
            vec![commit("t1", 0, 1, None)],
        )
        .unwrap();
    assert!(env.c.delete_offsets("g", &[("t1".into(), 0)]).unwrap()[0].is_ok());
}

#[tokio::test]
async fn superseded_join_is_answered_instead_of_hanging() {
    let env = env();
    let p = stable_pair(&env, "g", |_| join_req("g", "", &["t"])).await;
    // A changed subscription starts a rebalance; the client retries its join.
    let first = env.join(join_req("g", &p.follower, &["t", "u"]));
    settle().await;
    let second = env.join(join_req("g", &p.follower, &["t", "u"]));
    assert!(matches!(
        done(first).await,
        Err(GroupError::RebalanceInProgress)
    ));
    let a = env.join(join_req("g", &p.leader, &["t"]));
    assert_eq!(done(second).await.unwrap().generation_id, p.generation + 1);
    assert_eq!(done(a).await.unwrap().members.len(), 2);
}

#[tokio::test]
async fn sync_errors() {
    let env = env();
    let p = stable_pair(&env, "g", |_| join_req("g", "", &["t"])).await;
    let c = &env.c;
    let err = |r: SyncRequest| async move { c.sync_group(r).await.unwrap_err() };
    assert!(matches!(
        err(sync_req("nope", 1, &p.leader, &[])).await,
        GroupError::UnknownMemberId
    ));
    assert!(matches!(
        err(sync_req("g", 1, "who", &[])).await,
        GroupError::UnknownMemberId
    ));
    assert!(matches!(
        err(sync_req("g", 9, &p.leader, &[])).await,
        GroupError::IllegalGeneration
    ));
    let wrong = SyncRequest {
        protocol_name: Some("roundrobin".into()),
        ..sync_req("g", p.generation, &p.leader, &[])
    };
    assert!(matches!(
        err(wrong).await,
        GroupError::InconsistentGroupProtocol
    ));
    let _c = env.join(join_req("g", "", &["t"]));
    settle().await;
    assert!(matches!(
        err(sync_req("g", p.generation, &p.leader, &[])).await,
        GroupError::RebalanceInProgress
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_loop_fires_timers_on_real_time() {
    let env = env_with(GroupConfig {
        initial_rebalance_delay_ms: 50,
        min_session_timeout_ms: 10,
        ..GroupConfig::default()
    });
    // run() on a coordinator with the tokio clock.
    let c = GroupCoordinator::open(env.store.clone(), env.c.config.clone()).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let timers = tokio::spawn(c.clone().run(rx));
    let started = std::time::Instant::now();
    let a = c.join_group(JoinRequest {
        session_timeout_ms: 200,
        ..join_req("g", "", &["t"])
    });
    let a = tokio::time::timeout(Duration::from_secs(5), a)
        .await
        .unwrap()
        .unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(50));
    c.sync_group(sync_req("g", 1, &a.member_id, &[]))
        .await
        .unwrap();
    // No heartbeats: the session (200 ms) expires and the group empties.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while c.describe_group("g").state != GroupState::Empty {
        assert!(
            std::time::Instant::now() < deadline,
            "session never expired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), timers)
        .await
        .unwrap()
        .unwrap();
}
