//! Per-partition producer state for idempotent and transactional producers (Kafka's
//! `ProducerStateManager`, `ProducerStateEntry`, `ProducerAppendInfo`): the epoch, the last
//! five batches and the open transaction of every producer id, the open transactions by first
//! offset (for the last stable offset), and transaction markers (control batches).
//!
//! Pure in-memory logic over batch headers; files are in `snapshot.rs` and `txnindex.rs`.
//! Owned by the partition's single writer (behind its mutex), so nothing here is shared.

use super::batch::{
    self, BatchHeader, ATTR_CONTROL, ATTR_TRANSACTIONAL, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2,
};
use super::records::{put_varint, Reader};
use super::LogError;
use std::collections::{BTreeMap, HashMap};

/// Batches remembered per producer for duplicate detection (Kafka: `NUM_BATCHES_TO_RETAIN`).
pub const NUM_BATCHES_TO_RETAIN: usize = 5;
/// "No epoch": the producer has no state.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// "No sequence" (baseSequence of non-idempotent batches and of markers).
pub const NO_SEQUENCE: i32 = -1;

/// What DescribeProducers reports about one producer of a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerInfo {
    pub producer_id: i64,
    pub epoch: i16,
    /// Last sequence number appended, -1 when none is remembered.
    pub last_sequence: i32,
    /// Max timestamp of its last batch (or the append time of its last marker).
    pub last_timestamp: i64,
    /// Coordinator epoch of its last transaction marker, -1 before any.
    pub coordinator_epoch: i32,
    /// First offset of its open transaction, -1 when none is open.
    pub current_txn_start_offset: i64,
}

/// Kafka's `DefaultRecordBatch.incrementSequence`: sequences wrap from i32::MAX to 0.
/// (In i64, so that garbage from a stored header cannot overflow.)
pub fn increment_sequence(seq: i32, inc: i32) -> i32 {
    let (seq, inc, max) = (i64::from(seq), i64::from(inc), i64::from(i32::MAX));
    (if seq > max - inc {
        inc - (max - seq) - 1
    } else {
        seq + inc
    }) as i32
}

/// Kafka's `DefaultRecordBatch.decrementSequence`.
pub fn decrement_sequence(seq: i32, dec: i32) -> i32 {
    let (seq, dec, max) = (i64::from(seq), i64::from(dec), i64::from(i32::MAX));
    (if seq < dec {
        max - (dec - seq) + 1
    } else {
        seq - dec
    }) as i32
}

/// Last sequence of a batch (-1 when it has none).
pub fn last_sequence(h: &BatchHeader) -> i32 {
    if h.base_sequence == NO_SEQUENCE {
        NO_SEQUENCE
    } else {
        increment_sequence(h.base_sequence, h.last_offset_delta)
    }
}

fn in_sequence(last_seq: i32, next_seq: i32) -> bool {
    i64::from(next_seq) == i64::from(last_seq) + 1 || (next_seq == 0 && last_seq == i32::MAX)
}

/// One remembered batch (Kafka's `BatchMetadata`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchMeta {
    pub last_seq: i32,
    /// last offset - first offset.
    pub offset_delta: i32,
    pub last_offset: i64,
    /// The batch's max timestamp (as stored, so the append time for LogAppendTime).
    pub timestamp: i64,
}

impl BatchMeta {
    pub fn first_seq(&self) -> i32 {
        decrement_sequence(self.last_seq, self.offset_delta)
    }
    pub fn first_offset(&self) -> i64 {
        self.last_offset - i64::from(self.offset_delta)
    }
}

/// The state of one producer id (Kafka's `ProducerStateEntry`). `Copy`, no heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub coordinator_epoch: i32,
    pub last_timestamp: i64,
    /// First offset of the open transaction, -1 when none.
    pub txn_first_offset: i64,
    batches: [BatchMeta; NUM_BATCHES_TO_RETAIN],
    len: u8,
}

impl Default for ProducerEntry {
    fn default() -> Self {
        ProducerEntry {
            epoch: NO_PRODUCER_EPOCH,
            coordinator_epoch: -1,
            last_timestamp: -1,
            txn_first_offset: -1,
            batches: [BatchMeta::default(); NUM_BATCHES_TO_RETAIN],
            len: 0,
        }
    }
}

impl ProducerEntry {
    /// The remembered batches, oldest first.
    pub fn batches(&self) -> &[BatchMeta] {
        &self.batches[..usize::from(self.len)]
    }
    pub fn last_seq(&self) -> i32 {
        self.batches().last().map_or(NO_SEQUENCE, |b| b.last_seq)
    }
    pub fn has_txn(&self) -> bool {
        self.txn_first_offset >= 0
    }

    /// Remember a batch, forgetting the oldest beyond [`NUM_BATCHES_TO_RETAIN`].
    pub fn push_batch(&mut self, b: BatchMeta) {
        if usize::from(self.len) == NUM_BATCHES_TO_RETAIN {
            self.batches.copy_within(1.., 0);
            self.len -= 1;
        }
        self.batches[usize::from(self.len)] = b;
        self.len += 1;
    }

    /// A new epoch forgets the batches of the old one.
    fn set_epoch(&mut self, epoch: i16) {
        if self.epoch != epoch {
            self.len = 0;
            self.epoch = epoch;
        }
    }

    /// Kafka's `addBatch`.
    fn add_batch(&mut self, h: &BatchHeader, last_offset: i64) {
        self.set_epoch(h.producer_epoch);
        self.push_batch(BatchMeta {
            last_seq: last_sequence(h),
            offset_delta: h.last_offset_delta,
            last_offset,
            timestamp: h.max_timestamp,
        });
        self.last_timestamp = h.max_timestamp;
    }

    /// The remembered batch with exactly this epoch and sequence range (a retried batch).
    fn find_duplicate(&self, h: &BatchHeader) -> Option<BatchMeta> {
        if h.producer_epoch != self.epoch {
            return None;
        }
        let (first, last) = (h.base_sequence, last_sequence(h));
        self.batches()
            .iter()
            .find(|b| b.first_seq() == first && b.last_seq == last)
            .copied()
    }

    fn info(&self, producer_id: i64) -> ProducerInfo {
        ProducerInfo {
            producer_id,
            epoch: self.epoch,
            last_sequence: self.last_seq(),
            last_timestamp: self.last_timestamp,
            coordinator_epoch: self.coordinator_epoch,
            current_txn_start_offset: self.txn_first_offset,
        }
    }
}

/// One aborted transaction (Kafka's `AbortedTxn`): its data is in
/// `[first_offset, last_offset)`, its abort marker at `last_offset`; `last_stable_offset` is
/// the LSO right after the abort (lets a search stop early).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

/// Kafka's `collectAbortedTxns` over a list sorted by `last_offset`: the transactions with
/// `last_offset >= from` and `first_offset < upper`, as (producer id, first offset).
pub fn collect_aborted(list: &[AbortedTxn], from: i64, upper: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let start = list.partition_point(|t| t.last_offset < from);
    for t in &list[start..] {
        if t.first_offset < upper {
            out.push((t.producer_id, t.first_offset));
        }
        // Every later abort happened after this LSO, so its data starts at or after it.
        if t.last_stable_offset >= upper {
            break;
        }
    }
    out
}

/// A producer's state as changed by the request being validated (applied only if the
/// whole request is written).
#[derive(Clone, Copy, Debug)]
pub struct Staged {
    pub producer_id: i64,
    /// The epoch before the request (NO_PRODUCER_EPOCH for an unknown producer).
    orig_epoch: i16,
    pub entry: ProducerEntry,
    /// The request opened the entry's transaction.
    opened_txn: bool,
}

/// What validating a request found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Staging {
    /// Write it, then `commit` the staged state.
    Append,
    /// Every batch was already written: answer with the original offsets, write nothing.
    Duplicate {
        first_offset: i64,
        last_offset: i64,
        timestamp: i64,
    },
}

/// Every producer's state and the open transactions of one partition.
#[derive(Debug, Default)]
pub struct ProducerState {
    map: HashMap<i64, ProducerEntry>,
    /// first offset -> producer id, for every open transaction.
    ongoing: BTreeMap<i64, i64>,
    /// Changed since the last snapshot.
    pub dirty: bool,
}

impl ProducerState {
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.map.get(&producer_id)
    }
    /// Every entry (unordered).
    pub fn entries(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.map.iter().map(|(k, v)| (*k, v))
    }
    /// DescribeProducers, by producer id.
    pub fn infos(&self) -> Vec<ProducerInfo> {
        let mut v: Vec<_> = self.map.iter().map(|(id, e)| e.info(*id)).collect();
        v.sort_unstable_by_key(|i| i.producer_id);
        v
    }

    /// Insert an entry as loaded from a snapshot.
    pub fn load_entry(&mut self, producer_id: i64, entry: ProducerEntry) {
        if entry.has_txn() {
            self.ongoing.insert(entry.txn_first_offset, producer_id);
        }
        self.map.insert(producer_id, entry);
    }

    /// First offset of the oldest open transaction; `i64::MAX` when none is open.
    pub fn first_unstable_offset(&self) -> i64 {
        self.ongoing.keys().next().copied().unwrap_or(i64::MAX)
    }

    /// Validate the producer fields of a request's batches (those with a producer id) as
    /// Kafka's `analyzeAndValidateProducerState` does for client appends, `base_offset`
    /// being the offset the first batch will get. Nothing changes here: the new states go
    /// to `staged` (cleared first) for [`ProducerState::commit`].
    ///
    /// A request made only of duplicates (epoch and sequence range of one of the producer's
    /// last 5 batches) is `Staging::Duplicate` with the original offsets. A request mixing
    /// duplicates with other batches is refused (OutOfOrderSequence): clients send one batch
    /// per partition, and answering for only part of a request would lose the rest.
    pub fn stage<'a>(
        &self,
        batches: impl Iterator<Item = &'a BatchHeader>,
        base_offset: i64,
        staged: &mut Vec<Staged>,
    ) -> Result<Staging, LogError> {
        staged.clear();
        let mut next = base_offset;
        let (mut total, mut dups) = (0usize, 0usize);
        let mut dup: Option<(i64, i64, i64)> = None;
        for h in batches {
            let (first_offset, last_offset) = (next, next + i64::from(h.last_offset_delta));
            next = last_offset + 1;
            total += 1;
            if h.producer_id < 0 {
                continue;
            }
            if h.base_sequence < 0 {
                return Err(LogError::InvalidRecord(format!(
                    "invalid sequence number {} in a batch with producer id {}",
                    h.base_sequence, h.producer_id
                )));
            }
            if let Some(b) = self
                .map
                .get(&h.producer_id)
                .and_then(|e| e.find_duplicate(h))
            {
                dups += 1;
                let d = dup.get_or_insert((b.first_offset(), b.last_offset, b.timestamp));
                d.1 = b.last_offset;
                continue;
            }
            let i = match staged.iter().position(|s| s.producer_id == h.producer_id) {
                Some(i) => i,
                None => {
                    let entry = self.map.get(&h.producer_id).copied().unwrap_or_default();
                    staged.push(Staged {
                        producer_id: h.producer_id,
                        orig_epoch: entry.epoch,
                        entry,
                        opened_txn: false,
                    });
                    staged.len() - 1
                }
            };
            let s = &mut staged[i];
            check_data_batch(s, h, first_offset)?;
            s.entry.add_batch(h, last_offset);
            match (s.entry.has_txn(), h.is_transactional()) {
                (true, false) => {
                    return Err(LogError::InvalidTxnState(format!(
                        "non-transactional batch from producer {} while its transaction from offset {} is open",
                        h.producer_id, s.entry.txn_first_offset
                    )))
                }
                (false, true) => {
                    s.entry.txn_first_offset = first_offset;
                    s.opened_txn = true;
                }
                _ => {}
            }
        }
        match dup {
            None => Ok(Staging::Append),
            Some((first_offset, last_offset, timestamp)) if dups == total => {
                Ok(Staging::Duplicate {
                    first_offset,
                    last_offset,
                    timestamp,
                })
            }
            Some(_) => Err(LogError::OutOfOrderSequence(
                "request mixes already written (duplicate) batches with new ones".into(),
            )),
        }
    }

    /// Apply what [`ProducerState::stage`] validated (after the request was written).
    pub fn commit(&mut self, staged: &[Staged]) {
        for s in staged {
            if s.opened_txn {
                self.ongoing.insert(s.entry.txn_first_offset, s.producer_id);
            }
            self.map.insert(s.producer_id, s.entry);
        }
        self.dirty |= !staged.is_empty();
    }

    /// Kafka's checks for a transaction marker from the coordinator
    /// (`checkProducerEpoch`, `checkCoordinatorEpoch`).
    pub fn check_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), LogError> {
        let Some(e) = self.map.get(&producer_id) else {
            return Ok(());
        };
        if epoch < e.epoch {
            return Err(LogError::InvalidProducerEpoch(format!(
                "marker epoch {epoch} of producer {producer_id} is older than its epoch {}",
                e.epoch
            )));
        }
        if coordinator_epoch < e.coordinator_epoch {
            return Err(LogError::TransactionCoordinatorFenced(format!(
                "marker coordinator epoch {coordinator_epoch} for producer {producer_id} is older than {}",
                e.coordinator_epoch
            )));
        }
        Ok(())
    }

    /// A transaction marker at `offset` (Kafka's `appendEndTxnMarker` + `completeTxn`): the
    /// producer's open transaction ends. Returns the aborted transaction to index, if the
    /// marker aborts a non-empty one.
    pub fn end_txn(
        &mut self,
        producer_id: i64,
        epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        offset: i64,
        timestamp: i64,
    ) -> Option<AbortedTxn> {
        let mut aborted = None;
        let e = self.map.entry(producer_id).or_default();
        if e.has_txn() {
            let first = e.txn_first_offset;
            self.ongoing.remove(&first);
            if !commit {
                // Kafka's lastStableOffset(completedTxn): the next open transaction of
                // another producer, else right after the marker.
                let lso = self
                    .ongoing
                    .iter()
                    .find(|(_, p)| **p != producer_id)
                    .map_or(offset + 1, |(f, _)| *f);
                aborted = Some(AbortedTxn {
                    producer_id,
                    first_offset: first,
                    last_offset: offset,
                    last_stable_offset: lso,
                });
            }
        }
        let e = self.map.get_mut(&producer_id).expect("inserted above");
        e.set_epoch(epoch);
        e.coordinator_epoch = coordinator_epoch;
        e.txn_first_offset = -1;
        e.last_timestamp = timestamp;
        self.dirty = true;
        aborted
    }

    /// Rebuild from a stored data batch (no validation, like Kafka's replication origin).
    pub fn replay_data(&mut self, h: &BatchHeader) {
        let e = self.map.entry(h.producer_id).or_default();
        e.add_batch(h, h.last_offset());
        if h.is_transactional() && !e.has_txn() {
            e.txn_first_offset = h.base_offset;
            self.ongoing.insert(h.base_offset, h.producer_id);
        }
        self.dirty = true;
    }

    /// Kafka's `removeExpiredProducers`: forget producers without an open transaction
    /// whose last timestamp is `expiration_ms` or more before `now_ms`. Returns how many.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.map.len();
        self.map
            .retain(|_, e| e.has_txn() || now_ms.saturating_sub(e.last_timestamp) < expiration_ms);
        let n = before - self.map.len();
        self.dirty |= n > 0;
        n
    }
}

/// Kafka's epoch and sequence checks for a data batch (`checkProducerEpoch`,
/// `checkSequence`) against the staged state of its producer.
fn check_data_batch(s: &Staged, h: &BatchHeader, offset: i64) -> Result<(), LogError> {
    let (pid, epoch, first_seq) = (h.producer_id, h.producer_epoch, h.base_sequence);
    let e = &s.entry;
    if epoch < e.epoch {
        return Err(LogError::InvalidProducerEpoch(format!(
            "epoch {epoch} of producer {pid} at offset {offset} is older than its epoch {}",
            e.epoch
        )));
    }
    if epoch != e.epoch {
        if first_seq != 0 && e.epoch != NO_PRODUCER_EPOCH {
            return Err(LogError::OutOfOrderSequence(format!(
                "new epoch {epoch} of producer {pid} must start at sequence 0, not {first_seq}"
            )));
        }
    } else if s.orig_epoch != NO_PRODUCER_EPOCH && !in_sequence(e.last_seq(), first_seq) {
        return Err(LogError::OutOfOrderSequence(format!(
            "producer {pid} epoch {epoch}: sequence {first_seq} at offset {offset} does not follow {}",
            e.last_seq()
        )));
    }
    Ok(())
}

/// Control record key type of an abort / a commit marker.
const CONTROL_ABORT: i16 = 0;
const CONTROL_COMMIT: i16 = 1;

/// The control batch Kafka's `MemoryRecords.withEndTransactionMarker` builds: a v2 batch
/// (transactional | control, base sequence -1) holding one record with key
/// `[version i16 = 0, type i16 (0 abort, 1 commit)]` and value
/// `[version i16 = 0, coordinator_epoch i32]`, CRC computed. Base offset 0.
pub fn control_batch(
    producer_id: i64,
    epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Vec<u8> {
    let kind = if commit {
        CONTROL_COMMIT
    } else {
        CONTROL_ABORT
    };
    let mut key = [0u8; 4];
    key[2..].copy_from_slice(&kind.to_be_bytes());
    let mut value = [0u8; 6];
    value[2..].copy_from_slice(&coordinator_epoch.to_be_bytes());
    // Record body: attributes, timestampDelta, offsetDelta, key, value, header count.
    let mut body = vec![0u8, 0, 0];
    put_varint(&mut body, key.len() as i64);
    body.extend_from_slice(&key);
    put_varint(&mut body, value.len() as i64);
    body.extend_from_slice(&value);
    put_varint(&mut body, 0);

    let mut b = vec![0u8; HEADER_LEN];
    put_varint(&mut b, body.len() as i64);
    b.extend_from_slice(&body);
    let batch_length = (b.len() - LOG_OVERHEAD) as i32;
    b[batch::POS_BATCH_LENGTH..][..4].copy_from_slice(&batch_length.to_be_bytes());
    b[batch::POS_PARTITION_LEADER_EPOCH..][..4].copy_from_slice(&(-1i32).to_be_bytes());
    b[batch::POS_MAGIC] = MAGIC_V2 as u8;
    b[batch::POS_ATTRIBUTES..][..2]
        .copy_from_slice(&(ATTR_TRANSACTIONAL | ATTR_CONTROL).to_be_bytes());
    b[batch::POS_LAST_OFFSET_DELTA..][..4].copy_from_slice(&0i32.to_be_bytes());
    b[batch::POS_BASE_TIMESTAMP..][..8].copy_from_slice(&timestamp.to_be_bytes());
    b[batch::POS_MAX_TIMESTAMP..][..8].copy_from_slice(&timestamp.to_be_bytes());
    b[batch::POS_PRODUCER_ID..][..8].copy_from_slice(&producer_id.to_be_bytes());
    b[batch::POS_PRODUCER_EPOCH..][..2].copy_from_slice(&epoch.to_be_bytes());
    b[batch::POS_BASE_SEQUENCE..][..4].copy_from_slice(&NO_SEQUENCE.to_be_bytes());
    b[batch::POS_RECORD_COUNT..][..4].copy_from_slice(&1i32.to_be_bytes());
    let crc = batch::compute_crc(&b);
    b[batch::POS_CRC..][..4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// The marker in a stored control batch: `(commit, coordinator_epoch)`. `None` when the
/// batch holds no record or its first record is not a readable end-transaction marker
/// (control batches are never compressed, so no decompression is needed).
pub fn parse_marker(batch: &[u8]) -> Option<(bool, i32)> {
    let h = BatchHeader::parse(batch)?;
    if h.record_count < 1 || h.compression() != 0 {
        return None;
    }
    let mut r = Reader(batch.get(HEADER_LEN..h.size().min(batch.len()))?);
    let _len = r.varint()?;
    let _attributes = r.take(1)?;
    let _ts_delta = r.varint()?;
    let _offset_delta = r.varint()?;
    let key_len = usize::try_from(r.varint()?).ok()?;
    let key = r.take(key_len)?;
    if key.len() < 4 {
        return None;
    }
    let commit = match i16::from_be_bytes([key[2], key[3]]) {
        CONTROL_ABORT => false,
        CONTROL_COMMIT => true,
        _ => return None,
    };
    let value_len = usize::try_from(r.varint()?).ok()?;
    let value = r.take(value_len)?;
    if value.len() < 6 {
        return None;
    }
    let coordinator_epoch = i32::from_be_bytes(value[2..6].try_into().ok()?);
    Some((commit, coordinator_epoch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_arithmetic_wraps_like_kafka() {
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(decrement_sequence(1, 3), i32::MAX - 1);
        assert_eq!(decrement_sequence(8, 3), 5);
        // Garbage does not overflow.
        let _ = decrement_sequence(-1, i32::MAX);
        let _ = decrement_sequence(i32::MIN, i32::MAX);
        let _ = increment_sequence(i32::MIN, i32::MAX);
        assert!(in_sequence(i32::MAX, 0));
        assert!(in_sequence(-1, 0));
        assert!(!in_sequence(3, 5));
    }

    #[test]
    fn entries_keep_the_last_five_batches_and_forget_them_on_a_new_epoch() {
        let mut e = ProducerEntry::default();
        for i in 0..7 {
            e.push_batch(BatchMeta {
                last_seq: i,
                offset_delta: 0,
                last_offset: i64::from(i),
                timestamp: 0,
            });
        }
        assert_eq!(
            e.batches().iter().map(|b| b.last_seq).collect::<Vec<_>>(),
            vec![2, 3, 4, 5, 6]
        );
        e.set_epoch(e.epoch);
        assert_eq!(e.batches().len(), 5);
        e.set_epoch(4);
        assert!(e.batches().is_empty());
        assert_eq!(e.last_seq(), NO_SEQUENCE);
    }

    #[test]
    fn marker_parsing_never_panics_on_garbage() {
        let good = control_batch(1, 2, true, 3, 4);
        assert_eq!(parse_marker(&good), Some((true, 3)));
        for cut in 0..good.len() {
            let _ = parse_marker(&good[..cut]);
        }
        for i in HEADER_LEN..good.len() {
            for v in [0x00u8, 0x7f, 0x80, 0xff] {
                let mut b = good.clone();
                b[i] = v;
                let _ = parse_marker(&b);
            }
        }
        // An unknown control type is not a transaction marker.
        let mut b = good.clone();
        let key_type_at = HEADER_LEN + 1 + 1 + 1 + 1 + 1 + 2;
        assert_eq!(b[key_type_at + 1], 1);
        b[key_type_at + 1] = 9;
        assert_eq!(parse_marker(&b), None);
    }
}
