//! The transaction coordinator (Kafka's `TransactionCoordinator` with the
//! classic protocol, transaction version 1): one record per transactional id
//! with its producer id and epoch, state, partitions, groups and pending
//! offsets, persisted in the metadata store before each answer.
//!
//! Single broker, so ending a transaction is synchronous: EndTxn persists
//! PrepareCommit/PrepareAbort, writes a marker to every partition of the
//! transaction, makes (or drops) its offsets, persists CompleteCommit/
//! CompleteAbort and only then answers. A crash in between leaves a Prepare
//! state that [`TxnCoordinator::recover`] completes at the next start (a
//! marker may then be written twice, which readers ignore).
//!
//! The coordinator knows no topics and no groups: what ending a transaction
//! does to them goes through [`TxnEffects`], which the broker implements.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::ProducerIds;
use crate::store::{MetaStore, StoreError, CF_TXNS};

/// Kafka's transaction.max.timeout.ms.
pub const MAX_TIMEOUT_MS: i32 = 900_000;

/// What ending a transaction does outside the coordinator.
pub trait TxnEffects {
    fn partition_exists(&self, topic: &str, partition: i32) -> bool;
    /// Appends a commit or abort marker for the producer to one partition.
    fn write_marker(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), String>;
    /// Makes a committed transaction's offsets the group's committed offsets.
    fn commit_offsets(&self, group: &str, offsets: &[TxnOffset]) -> Result<(), String>;
}

/// Transaction states as Kafka names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    pub fn as_str(&self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }
}

/// An offset committed inside a transaction (TxnOffsetCommit).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TxnError {
    #[error("The transaction timeout is larger than the maximum value allowed by the broker (transaction.max.timeout.ms)")]
    InvalidTransactionTimeout,
    #[error("The producer attempted to use a producer id which is not currently assigned to its transactional id")]
    InvalidProducerIdMapping,
    #[error(
        "There is a newer producer with the same transactionalId which fences the current one"
    )]
    ProducerFenced,
    #[error("The producer attempted to use an invalid or old epoch")]
    InvalidProducerEpoch,
    #[error("The producer attempted a transactional operation in an invalid state")]
    InvalidTxnState,
    #[error("The producer attempted to update a transaction while another concurrent operation on the same transaction was ongoing")]
    ConcurrentTransactions,
    #[error("This server does not host this topic-partition")]
    UnknownTopicOrPartition,
    #[error("The request was not attempted because another part of it failed")]
    OperationNotAttempted,
    #[error("The transactional id is invalid")]
    InvalidRequest,
    #[error("storage: {0}")]
    Storage(String),
}

impl From<StoreError> for TxnError {
    fn from(e: StoreError) -> Self {
        TxnError::Storage(e.to_string())
    }
}

/// One transactional id, as persisted (column family `txns`, key = the id).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TxnMeta {
    pub producer_id: i64,
    pub epoch: i16,
    /// The epoch before the last bump (-1): a producer retrying InitProducerId
    /// with it is not fenced (KIP-360).
    pub last_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    pub groups: BTreeSet<String>,
    /// group -> its offsets in this transaction (one per partition), made
    /// committed on commit.
    pub offsets: BTreeMap<String, Vec<TxnOffset>>,
    /// When the ongoing transaction started (Unix ms; -1 when none).
    pub start_ms: i64,
    pub update_ms: i64,
}

/// For DescribeTransactions and ListTransactions.
#[derive(Clone, Debug)]
pub struct TxnDescription {
    pub transactional_id: String,
    pub meta: TxnMeta,
}

#[derive(Default)]
struct Inner {
    txns: HashMap<String, TxnMeta>,
    /// Producer id -> transactional id.
    by_pid: HashMap<i64, String>,
}

/// Thread-safe: one lock over every transaction (transactional calls are per
/// transaction, not per record; produce verification is a map lookup).
pub struct TxnCoordinator {
    store: Arc<MetaStore>,
    ids: ProducerIds,
    inner: Mutex<Inner>,
    /// fsync each state change (the broker sets it with `--fsync always`);
    /// otherwise a change survives a process crash, not a power loss.
    sync: bool,
}

fn now_ms() -> i64 {
    crate::util::now_ms()
}

impl TxnCoordinator {
    /// Loads every transactional id. Transactions left in a Prepare state by a
    /// crash are finished by [`TxnCoordinator::recover`].
    pub fn open(store: Arc<MetaStore>, sync: bool) -> Result<TxnCoordinator, StoreError> {
        let ids = ProducerIds::open(&store)?;
        let mut inner = Inner::default();
        for (id, meta) in store.scan_json::<TxnMeta>(CF_TXNS)? {
            inner.by_pid.insert(meta.producer_id, id.clone());
            inner.txns.insert(id, meta);
        }
        tracing::info!(
            transactional_ids = inner.txns.len(),
            "transaction coordinator loaded"
        );
        Ok(TxnCoordinator {
            store,
            ids,
            inner: Mutex::new(inner),
            sync,
        })
    }

    /// Whether state changes wait for an fsync (then callers keep EndTxn off the reactor).
    pub fn syncs(&self) -> bool {
        self.sync
    }

    fn persist(&self, id: &str, meta: &TxnMeta) -> Result<(), TxnError> {
        self.store
            .put_json_many(CF_TXNS, &[(id.to_string(), meta)], self.sync)
            .map_err(TxnError::from)
    }

    /// A producer id for an idempotent producer (InitProducerId without a transactional id).
    pub fn allocate_producer_id(&self) -> Result<i64, StoreError> {
        self.ids.allocate(&self.store)
    }

    /// Whether `id` was ever handed out (Produce answers UNKNOWN_PRODUCER_ID otherwise).
    pub fn is_issued(&self, id: i64) -> bool {
        self.ids.is_issued(id)
    }

    /// Finishes transactions a crash left half-ended.
    pub fn recover(&self, fx: &dyn TxnEffects) {
        let mut inner = self.inner.lock();
        let ids: Vec<String> = inner
            .txns
            .iter()
            .filter(|(_, m)| matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let meta = inner.txns.get_mut(&id).expect("listed");
            let commit = meta.state == TxnState::PrepareCommit;
            match self.finish(&id, meta, commit, fx) {
                Ok(()) => {
                    tracing::info!(transactional_id = %id, commit, "completed a transaction interrupted by a restart")
                }
                Err(e) => {
                    tracing::error!(transactional_id = %id, error = %e, "could not complete a transaction")
                }
            }
        }
    }

    /// InitProducerId with a transactional id: a new producer id, or the
    /// current one with the next epoch (fencing the previous producer; an
    /// ongoing transaction is aborted first). `expected` is the (producer id,
    /// epoch) a v3+ client passes when it recovers (KIP-360), else None.
    pub fn init_producer_id(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        fx: &dyn TxnEffects,
    ) -> Result<(i64, i16), TxnError> {
        if transactional_id.is_empty() {
            return Err(TxnError::InvalidRequest);
        }
        if timeout_ms <= 0 || timeout_ms > MAX_TIMEOUT_MS {
            return Err(TxnError::InvalidTransactionTimeout);
        }
        let mut inner = self.inner.lock();
        let Some(meta) = inner.txns.get_mut(transactional_id) else {
            let producer_id = self.ids.allocate(&self.store)?;
            let meta = TxnMeta {
                producer_id,
                epoch: 0,
                last_epoch: -1,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                groups: BTreeSet::new(),
                offsets: BTreeMap::new(),
                start_ms: -1,
                update_ms: now_ms(),
            };
            self.persist(transactional_id, &meta)?;
            inner
                .by_pid
                .insert(producer_id, transactional_id.to_string());
            inner.txns.insert(transactional_id.to_string(), meta);
            return Ok((producer_id, 0));
        };
        if let Some((pid, epoch)) = expected {
            if pid != meta.producer_id || (epoch != meta.epoch && epoch != meta.last_epoch) {
                return Err(TxnError::ProducerFenced);
            }
            if epoch == meta.last_epoch && meta.state != TxnState::Ongoing {
                // A retry of a bump whose answer was lost: the same answer, no new bump.
                return Ok((meta.producer_id, meta.epoch));
            }
        }
        match meta.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Ongoing => {
                // The previous producer's transaction is aborted under a bumped epoch.
                self.bump_epoch(meta)?;
                self.finish(transactional_id, meta, false, fx)?;
            }
            _ => {}
        }
        let old_pid = meta.producer_id;
        self.bump_epoch(meta)?;
        if expected.is_none() {
            // A new producer: nobody may retry with the epoch before this bump.
            meta.last_epoch = -1;
        }
        meta.timeout_ms = timeout_ms;
        meta.state = TxnState::Empty;
        meta.update_ms = now_ms();
        self.persist(transactional_id, meta)?;
        let (pid, epoch) = (meta.producer_id, meta.epoch);
        if pid != old_pid {
            inner.by_pid.remove(&old_pid);
            inner.by_pid.insert(pid, transactional_id.to_string());
        }
        Ok((pid, epoch))
    }

    /// Next epoch, or a new producer id when the epoch is exhausted.
    fn bump_epoch(&self, meta: &mut TxnMeta) -> Result<(), TxnError> {
        if meta.epoch >= i16::MAX - 1 {
            meta.producer_id = self.ids.allocate(&self.store)?;
            meta.last_epoch = -1;
            meta.epoch = 0;
        } else {
            meta.last_epoch = meta.epoch;
            meta.epoch += 1;
        }
        Ok(())
    }

    /// The transaction of `transactional_id` if the producer owns it.
    fn owned<'a>(
        inner: &'a mut Inner,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<&'a mut TxnMeta, TxnError> {
        let meta = inner
            .txns
            .get_mut(transactional_id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        if meta.producer_id != producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if epoch != meta.epoch {
            return Err(TxnError::ProducerFenced);
        }
        if matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return Err(TxnError::ConcurrentTransactions);
        }
        Ok(meta)
    }

    fn begin_if_needed(meta: &mut TxnMeta) {
        if meta.state != TxnState::Ongoing {
            meta.state = TxnState::Ongoing;
            meta.partitions.clear();
            meta.groups.clear();
            meta.offsets.clear();
            meta.start_ms = now_ms();
        }
    }

    /// AddPartitionsToTxn (v0-v3). With an unknown partition nothing is added:
    /// it gets UnknownTopicOrPartition, the others OperationNotAttempted.
    pub fn add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        fx: &dyn TxnEffects,
    ) -> Result<Vec<Result<(), TxnError>>, TxnError> {
        let mut inner = self.inner.lock();
        let meta = Self::owned(&mut inner, transactional_id, producer_id, epoch)?;
        let exists: Vec<bool> = partitions
            .iter()
            .map(|(t, p)| fx.partition_exists(t, *p))
            .collect();
        if exists.iter().any(|e| !e) {
            return Ok(exists
                .into_iter()
                .map(|e| {
                    if e {
                        Err(TxnError::OperationNotAttempted)
                    } else {
                        Err(TxnError::UnknownTopicOrPartition)
                    }
                })
                .collect());
        }
        let before = (meta.state, meta.partitions.len());
        Self::begin_if_needed(meta);
        meta.partitions.extend(partitions.iter().cloned());
        if (meta.state, meta.partitions.len()) != before {
            meta.update_ms = now_ms();
            self.persist(transactional_id, meta)?;
        }
        Ok(partitions.iter().map(|_| Ok(())).collect())
    }

    /// AddOffsetsToTxn: the group's offsets become part of the transaction.
    pub fn add_offsets(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> Result<(), TxnError> {
        let mut inner = self.inner.lock();
        let meta = Self::owned(&mut inner, transactional_id, producer_id, epoch)?;
        Self::begin_if_needed(meta);
        if meta.groups.insert(group.to_string()) {
            meta.update_ms = now_ms();
            self.persist(transactional_id, meta)?;
        }
        Ok(())
    }

    /// TxnOffsetCommit, after the group coordinator accepted the member: the
    /// offsets wait in the transaction until it ends. The group must have been
    /// added with AddOffsetsToTxn.
    pub fn txn_offset_commit(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        offsets: Vec<TxnOffset>,
    ) -> Result<(), TxnError> {
        let mut inner = self.inner.lock();
        let meta = match Self::owned(&mut inner, transactional_id, producer_id, epoch) {
            Err(TxnError::ProducerFenced) => return Err(TxnError::InvalidProducerEpoch),
            other => other?,
        };
        if meta.state != TxnState::Ongoing || !meta.groups.contains(group) {
            return Err(TxnError::InvalidTxnState);
        }
        let pending = meta.offsets.entry(group.to_string()).or_default();
        for o in offsets {
            pending.retain(|p| (&p.topic, p.partition) != (&o.topic, o.partition));
            pending.push(o);
        }
        meta.update_ms = now_ms();
        self.persist(transactional_id, meta)
    }

    /// EndTxn: commit or abort the ongoing transaction (a retry of a
    /// completed end is answered as it was).
    pub fn end_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        fx: &dyn TxnEffects,
    ) -> Result<(), TxnError> {
        let mut inner = self.inner.lock();
        let meta = Self::owned(&mut inner, transactional_id, producer_id, epoch)?;
        match (meta.state, commit) {
            (TxnState::Ongoing, _) => self.finish(transactional_id, meta, commit, fx),
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(()),
            _ => Err(TxnError::InvalidTxnState),
        }
    }

    /// Prepare, markers, offsets, Complete (see the module doc).
    fn finish(
        &self,
        id: &str,
        meta: &mut TxnMeta,
        commit: bool,
        fx: &dyn TxnEffects,
    ) -> Result<(), TxnError> {
        meta.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        meta.update_ms = now_ms();
        self.persist(id, meta)?;
        for (topic, partition) in &meta.partitions {
            if !fx.partition_exists(topic, *partition) {
                continue; // deleted meanwhile: nothing to mark
            }
            fx.write_marker(topic, *partition, meta.producer_id, meta.epoch, commit)
                .map_err(TxnError::Storage)?;
        }
        if commit {
            for (group, offsets) in &meta.offsets {
                fx.commit_offsets(group, offsets)
                    .map_err(TxnError::Storage)?;
            }
        }
        meta.state = if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        meta.partitions.clear();
        meta.groups.clear();
        meta.offsets.clear();
        meta.start_ms = -1;
        meta.update_ms = now_ms();
        self.persist(id, meta)
    }

    /// Produce of a transactional batch: the producer must be the current one
    /// of an ongoing transaction that contains the partition.
    pub fn verify_produce(
        &self,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), TxnError> {
        let inner = self.inner.lock();
        let meta = inner
            .by_pid
            .get(&producer_id)
            .and_then(|id| inner.txns.get(id))
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        if epoch < meta.epoch {
            return Err(TxnError::InvalidProducerEpoch);
        }
        if meta.state != TxnState::Ongoing
            || !meta.partitions.contains(&(topic.to_string(), partition))
        {
            return Err(TxnError::InvalidTxnState);
        }
        Ok(())
    }

    /// The partitions for which an ongoing transaction holds an offset of the
    /// group (OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT).
    pub fn pending_offsets(&self, group: &str) -> Vec<(String, i32)> {
        let inner = self.inner.lock();
        inner
            .txns
            .values()
            .filter_map(|m| m.offsets.get(group))
            .flat_map(|o| o.iter().map(|o| (o.topic.clone(), o.partition)))
            .collect()
    }

    /// Aborts (under a bumped epoch, fencing the producer) every ongoing
    /// transaction older than its timeout; returns how many.
    pub fn abort_expired(&self, fx: &dyn TxnEffects) -> usize {
        let now = now_ms();
        let mut inner = self.inner.lock();
        let expired: Vec<String> = inner
            .txns
            .iter()
            .filter(|(_, m)| m.state == TxnState::Ongoing && now - m.start_ms > m.timeout_ms as i64)
            .map(|(id, _)| id.clone())
            .collect();
        let mut n = 0;
        for id in expired {
            let meta = inner.txns.get_mut(&id).expect("listed");
            let old_pid = meta.producer_id;
            let result = self
                .bump_epoch(meta)
                .and_then(|()| self.finish(&id, meta, false, fx));
            let new_pid = meta.producer_id;
            match result {
                Ok(()) => {
                    tracing::info!(transactional_id = %id, "transaction timed out: aborted");
                    n += 1;
                }
                Err(e) => {
                    tracing::error!(transactional_id = %id, error = %e, "could not abort a timed-out transaction")
                }
            }
            if new_pid != old_pid {
                inner.by_pid.remove(&old_pid);
                inner.by_pid.insert(new_pid, id);
            }
        }
        n
    }

    /// DescribeTransactions: None for an unknown id.
    pub fn describe(&self, transactional_id: &str) -> Option<TxnMeta> {
        self.inner.lock().txns.get(transactional_id).cloned()
    }

    /// ListTransactions: empty filters match everything.
    pub fn list(&self, states: &[String], producer_ids: &[i64]) -> Vec<TxnDescription> {
        let inner = self.inner.lock();
        let mut out: Vec<TxnDescription> = inner
            .txns
            .iter()
            .filter(|(_, m)| {
                (states.is_empty() || states.iter().any(|s| s == m.state.as_str()))
                    && (producer_ids.is_empty() || producer_ids.contains(&m.producer_id))
            })
            .map(|(id, m)| TxnDescription {
                transactional_id: id.clone(),
                meta: m.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    /// Records what the coordinator does to partitions and groups.
    #[derive(Default)]
    struct Fx {
        markers: StdMutex<Vec<(String, i32, i64, i16, bool)>>,
        offsets: StdMutex<Vec<(String, TxnOffset)>>,
    }

    impl TxnEffects for Fx {
        fn partition_exists(&self, topic: &str, partition: i32) -> bool {
            topic != "missing" && (0..4).contains(&partition)
        }
        fn write_marker(
            &self,
            t: &str,
            p: i32,
            pid: i64,
            epoch: i16,
            commit: bool,
        ) -> Result<(), String> {
            self.markers
                .lock()
                .unwrap()
                .push((t.into(), p, pid, epoch, commit));
            Ok(())
        }
        fn commit_offsets(&self, group: &str, offsets: &[TxnOffset]) -> Result<(), String> {
            let mut all = self.offsets.lock().unwrap();
            all.extend(offsets.iter().map(|o| (group.to_string(), o.clone())));
            Ok(())
        }
    }

    fn open(dir: &std::path::Path) -> TxnCoordinator {
        TxnCoordinator::open(Arc::new(MetaStore::open(dir).unwrap()), false).unwrap()
    }

    fn offset(topic: &str, partition: i32, offset: i64) -> TxnOffset {
        TxnOffset {
            topic: topic.into(),
            partition,
            offset,
            leader_epoch: -1,
            metadata: Some("m".into()),
        }
    }

    fn parts(v: &[(&str, i32)]) -> Vec<(String, i32)> {
        v.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    #[test]
    fn commit_writes_markers_then_offsets_and_a_retry_is_answered_alike() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path());
        let fx = Fx::default();
        let (pid, epoch) = c.init_producer_id("t1", 60_000, None, &fx).unwrap();
        assert_eq!(epoch, 0);
        let r = c
            .add_partitions("t1", pid, epoch, &parts(&[("a", 0), ("a", 1)]), &fx)
            .unwrap();
        assert!(r.iter().all(|r| r.is_ok()));
        assert!(c.verify_produce(pid, epoch, "a", 1).is_ok());
        assert_eq!(
            c.verify_produce(pid, epoch, "a", 2),
            Err(TxnError::InvalidTxnState)
        );
        assert_eq!(
            c.txn_offset_commit("t1", pid, epoch, "g", vec![offset("in", 0, 5)]),
            Err(TxnError::InvalidTxnState),
            "the group was not added"
        );
        c.add_offsets("t1", pid, epoch, "g").unwrap();
        c.txn_offset_commit("t1", pid, epoch, "g", vec![offset("in", 0, 5)])
            .unwrap();
        c.txn_offset_commit("t1", pid, epoch, "g", vec![offset("in", 0, 7)])
            .unwrap();
        assert_eq!(c.pending_offsets("g"), vec![("in".to_string(), 0)]);
        assert_eq!(c.describe("t1").unwrap().state, TxnState::Ongoing);
        c.end_txn("t1", pid, epoch, true, &fx).unwrap();
        let markers = fx.markers.lock().unwrap().clone();
        assert_eq!(
            markers,
            vec![("a".into(), 0, pid, 0, true), ("a".into(), 1, pid, 0, true)]
        );
        assert_eq!(
            *fx.offsets.lock().unwrap(),
            vec![("g".to_string(), offset("in", 0, 7))]
        );
        assert!(c.pending_offsets("g").is_empty());
        assert_eq!(c.describe("t1").unwrap().state, TxnState::CompleteCommit);
        // A retried commit succeeds without writing again; an abort now is invalid.
        c.end_txn("t1", pid, epoch, true, &fx).unwrap();
        assert_eq!(fx.markers.lock().unwrap().len(), 2);
        assert_eq!(
            c.end_txn("t1", pid, epoch, false, &fx),
            Err(TxnError::InvalidTxnState)
        );
        assert_eq!(
            c.verify_produce(pid, epoch, "a", 0),
            Err(TxnError::InvalidTxnState)
        );
    }

    #[test]
    fn abort_drops_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path());
        let fx = Fx::default();
        let (pid, e) = c.init_producer_id("t", 60_000, None, &fx).unwrap();
        c.add_partitions("t", pid, e, &parts(&[("a", 3)]), &fx)
            .unwrap();
        c.add_offsets("t", pid, e, "g").unwrap();
        c.txn_offset_commit("t", pid, e, "g", vec![offset("in", 0, 5)])
            .unwrap();
        c.end_txn("t", pid, e, false, &fx).unwrap();
        assert_eq!(
            *fx.markers.lock().unwrap(),
            vec![("a".into(), 3, pid, 0, false)]
        );
        assert!(fx.offsets.lock().unwrap().is_empty());
        assert_eq!(c.describe("t").unwrap().state, TxnState::CompleteAbort);
        // Ending an empty transaction is invalid.
        let (pid2, e2) = c.init_producer_id("u", 60_000, None, &fx).unwrap();
        assert_eq!(
            c.end_txn("u", pid2, e2, true, &fx),
            Err(TxnError::InvalidTxnState)
        );
    }

    #[test]
    fn a_new_producer_fences_the_old_one_and_aborts_its_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path());
        let fx = Fx::default();
        let (pid, e0) = c.init_producer_id("t", 60_000, None, &fx).unwrap();
        c.add_partitions("t", pid, e0, &parts(&[("a", 0)]), &fx)
            .unwrap();
        let (pid2, e) = c.init_producer_id("t", 60_000, None, &fx).unwrap();
        assert_eq!(pid2, pid);
        assert_eq!(e, 2, "one bump to abort, one for the new producer");
        assert_eq!(
            *fx.markers.lock().unwrap(),
            vec![("a".into(), 0, pid, 1, false)]
        );
        let zombie = [
            c.add_partitions("t", pid, e0, &parts(&[("a", 1)]), &fx)
                .map(|_| ()),
            c.add_offsets("t", pid, e0, "g"),
            c.end_txn("t", pid, e0, true, &fx),
        ];
        assert!(
            zombie.iter().all(|r| *r == Err(TxnError::ProducerFenced)),
            "{zombie:?}"
        );
        assert_eq!(
            c.txn_offset_commit("t", pid, e0, "g", vec![]),
            Err(TxnError::InvalidProducerEpoch)
        );
        assert_eq!(
            c.verify_produce(pid, e0, "a", 0),
            Err(TxnError::InvalidProducerEpoch)
        );
        // Someone else's producer id.
        assert_eq!(
            c.end_txn("t", pid + 1, e, true, &fx),
            Err(TxnError::InvalidProducerIdMapping)
        );
        assert_eq!(
            c.end_txn("nope", pid, e, true, &fx),
            Err(TxnError::InvalidProducerIdMapping)
        );
        // KIP-360: a producer retrying with its current or previous epoch is
        // not fenced; with an older one it is.
        assert!(c.init_producer_id("t", 60_000, Some((pid, e)), &fx).is_ok());
        assert_eq!(
            c.init_producer_id("t", 60_000, Some((pid, e0)), &fx),
            Err(TxnError::ProducerFenced)
        );
    }

    #[test]
    fn bad_requests_are_refused_and_nothing_is_added() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path());
        let fx = Fx::default();
        assert_eq!(
            c.init_producer_id("t", MAX_TIMEOUT_MS + 1, None, &fx),
            Err(TxnError::InvalidTransactionTimeout)
        );
        assert_eq!(
            c.init_producer_id("t", 0, None, &fx),
            Err(TxnError::InvalidTransactionTimeout)
        );
        assert_eq!(
            c.init_producer_id("", 1000, None, &fx),
            Err(TxnError::InvalidRequest)
        );
        let (pid, e) = c.init_producer_id("t", 1000, None, &fx).unwrap();
        let r = c
            .add_partitions("t", pid, e, &parts(&[("a", 0), ("missing", 0)]), &fx)
            .unwrap();
        assert_eq!(
            r,
            vec![
                Err(TxnError::OperationNotAttempted),
                Err(TxnError::UnknownTopicOrPartition)
            ]
        );
        assert_eq!(c.describe("t").unwrap().state, TxnState::Empty);
    }

    #[test]
    fn an_expired_transaction_is_aborted_and_its_producer_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path());
        let fx = Fx::default();
        let (pid, e) = c.init_producer_id("t", 1, None, &fx).unwrap();
        c.add_partitions("t", pid, e, &parts(&[("a", 0)]), &fx)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        assert_eq!(c.abort_expired(&fx), 1);
        assert_eq!(
            *fx.markers.lock().unwrap(),
            vec![("a".into(), 0, pid, 1, false)]
        );
        assert_eq!(
            c.end_txn("t", pid, e, true, &fx),
            Err(TxnError::ProducerFenced)
        );
        assert_eq!(c.abort_expired(&fx), 0);
    }

    #[test]
    fn state_survives_a_restart_and_a_half_ended_transaction_is_completed() {
        let dir = tempfile::tempdir().unwrap();
        let fx = Fx::default();
        let (pid, e) = {
            let c = open(dir.path());
            let (pid, e) = c.init_producer_id("t", 60_000, None, &fx).unwrap();
            c.add_partitions("t", pid, e, &parts(&[("a", 2)]), &fx)
                .unwrap();
            c.add_offsets("t", pid, e, "g").unwrap();
            c.txn_offset_commit("t", pid, e, "g", vec![offset("in", 1, 9)])
                .unwrap();
            // A crash between PrepareCommit and the markers.
            let mut inner = c.inner.lock();
            let meta = inner.txns.get_mut("t").unwrap();
            meta.state = TxnState::PrepareCommit;
            c.persist("t", meta).unwrap();
            (pid, e)
        };
        let c = open(dir.path());
        assert_eq!(c.describe("t").unwrap().state, TxnState::PrepareCommit);
        c.recover(&fx);
        assert_eq!(
            *fx.markers.lock().unwrap(),
            vec![("a".into(), 2, pid, e, true)]
        );
        assert_eq!(
            *fx.offsets.lock().unwrap(),
            vec![("g".to_string(), offset("in", 1, 9))]
        );
        assert_eq!(c.describe("t").unwrap().state, TxnState::CompleteCommit);
        // The id maps to its producer after the restart, and new ids are new.
        let (pid2, e2) = c.init_producer_id("t", 60_000, None, &fx).unwrap();
        assert_eq!((pid2, e2), (pid, e + 1));
        assert!(c.allocate_producer_id().unwrap() > pid);
        assert!(c.is_issued(pid) && !c.is_issued(pid + 100_000));
        assert_eq!(c.list(&["CompleteCommit".into()], &[]).len(), 0);
        assert_eq!(c.list(&[], &[pid]).len(), 1);
    }
}
