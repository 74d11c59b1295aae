//! Delay topics (DESIGN.md "Delay topics"): a producer writes to `<target>.delay`
//! with `kairos-*` headers ([`control`]); the record is appended to that topic's log
//! like any other (its offset is the delay id), then one worker thread moves it into
//! a RocksDB timing wheel ([`wheel`] has the layout) and, when due, appends it to
//! `<target>`.
//!
//! Owns: the `delay_*` column families, the worker thread, the on-demand creation of
//! delay topics, produce-time validation of delay records, cancel and listing for the
//! console.
//!
//! Invariants:
//! - One writer: only the worker thread changes the wheel (console cancels are sent
//!   to it), so counters and checkpoints need no further locking.
//! - Ingest is exactly once: the wheel entries of a read and the delay partition's
//!   next offset are written in one RocksDB WriteBatch.
//! - Delivery is exactly once: the worker appends to a target partition as an
//!   idempotent producer of its own (one producer id, a sequence per target
//!   partition). Before the append it writes an intent (sequence + wheel keys); after
//!   it, one WriteBatch deletes the entries and the intent and advances the sequence.
//!   An intent found at start is appended again with the same sequence: if the first
//!   append reached the log, the log's producer state answers it as a duplicate and
//!   writes nothing.
//! - Never early: an entry fires only when `now_ms() >= due`. Memory is bounded: each
//!   round reads at most [`INGEST_BYTES`] and fires at most [`FIRE_MAX`] records.

pub mod control;
pub mod wheel;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};

use crate::broker::Broker;
use crate::console::Probe;
use crate::log::{batch, records};
use crate::store::{MetaStore, CF_DELAY_IDS, CF_DELAY_META, CF_DELAY_WHEEL};
use crate::topics::{Topic, TopicError};
use crate::util::now_ms;
use control::Control;
use uuid::Uuid;
use wheel::{DelayId, Entry, Intent, Stats};

/// Suffix of a delay topic's name.
pub const SUFFIX: &str = ".delay";
/// Default for `--delay-max-ms`: 365 days.
pub const DEFAULT_MAX_DELAY_MS: i64 = 365 * 24 * 3600 * 1000;
/// Bytes of a delay partition read per ingest step.
const INGEST_BYTES: usize = 1 << 20;
/// Records, and bytes of wheel entries, fired per round at most.
const FIRE_MAX: usize = 20_000;
const FIRE_BYTES: usize = 32 << 20;
/// Records per batch appended to a target partition at most.
const BATCH_RECORDS: usize = 4096;

/// The target of a delay topic name (`orders.delay` -> `orders`).
pub fn target_of(name: &str) -> Option<&str> {
    name.strip_suffix(SUFFIX)
        .filter(|t| !t.is_empty() && !t.ends_with(SUFFIX))
}

/// A delay topic, created on demand with the target's partition count and
/// LogAppendTime (so `kairos-delay-ms` counts from the broker's receive time). The
/// target is created first when it is missing and `auto_create` allows it.
pub fn ensure_topic(
    broker: &Broker,
    name: &str,
    auto_create: bool,
) -> Result<Arc<Topic>, TopicError> {
    let target_name = target_of(name).ok_or_else(|| {
        TopicError::InvalidName(format!(
            "{name} is not a delay topic name (<target>{SUFFIX}, target not itself a delay topic)"
        ))
    })?;
    let create = |n: &str, partitions: i32, configs: BTreeMap<String, String>| match broker
        .topics
        .create(n, partitions, -1, configs, broker.config.default_partitions)
    {
        Err(TopicError::AlreadyExists(_)) => broker.topics.get(n).ok_or(TopicError::Unknown),
        r => r,
    };
    let target = match broker.topics.get(target_name) {
        Some(t) => t,
        None if auto_create => create(target_name, -1, BTreeMap::new())?,
        None => return Err(TopicError::Unknown),
    };
    let configs = BTreeMap::from([(
        "message.timestamp.type".to_string(),
        "LogAppendTime".to_string(),
    )]);
    create(name, target.partition_count(), configs)
}

/// Checks every record of a produce request to a delay topic. Err: the index of the
/// first bad record in the request and why (Produce v8+ record errors).
pub fn validate_records(records: &Bytes, now: i64, max_delay_ms: i64) -> Result<(), (i32, String)> {
    let mut pos = 0;
    let mut index = 0i32;
    while pos < records.len() {
        let (h, size) = batch::frame(&records[pos..]).map_err(|e| (index, e.to_string()))?;
        if h.is_transactional() {
            return Err((
                index,
                "transactional writes to delay topics are not supported".into(),
            ));
        }
        let (_, recs) = records::decode(&records.slice(pos..pos + size))
            .map_err(|e| (index, format!("undecodable record batch: {e}")))?;
        for r in &recs {
            control::parse(&r.headers, now, now, max_delay_ms).map_err(|e| (index, e))?;
            index += 1;
        }
        pos += size;
    }
    Ok(())
}

/// A target's pending records and counters, for the console.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TargetOverview {
    pub target: String,
    pub pending: u64,
    pub next_due_ms: Option<i64>,
    pub fired: u64,
    pub cancelled: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PendingRecord {
    pub id: String,
    pub partition: i32,
    pub offset: i64,
    pub due_ms: i64,
    pub key: Option<String>,
    pub value: Option<String>,
    /// Deliveries left (None: unbounded until `repeat_until`).
    pub remaining: Option<u32>,
    pub repeat_ms: Option<i64>,
}

enum Command {
    Cancel(DelayId, tokio::sync::oneshot::Sender<Result<bool, String>>),
}

#[derive(Default)]
struct Signal {
    woken: bool,
    stopping: bool,
    commands: Vec<Command>,
}

/// The delay service: shared by produce (wake), the console (cancel, listing) and
/// the worker thread ([`run`]).
pub struct Delays {
    store: Arc<MetaStore>,
    max_delay_ms: i64,
    /// Sync RocksDB writes and fsync target appends (`--fsync always`).
    sync: bool,
    signal: Mutex<Signal>,
    cv: Condvar,
    stats: Mutex<HashMap<String, Stats>>,
}

impl Delays {
    pub fn open(store: Arc<MetaStore>, max_delay_ms: i64, sync: bool) -> Delays {
        let mut stats = HashMap::new();
        let db = store.db();
        for item in db.prefix_iterator_cf(store.cf(CF_DELAY_META), b"stats/") {
            let Ok((k, v)) = item else { break };
            let Some(target) = k.strip_prefix(b"stats/") else {
                break;
            };
            if let (Ok(t), Some(s)) = (std::str::from_utf8(target), Stats::decode(&v)) {
                Probe::delay_pending(t, s.pending);
                stats.insert(t.to_string(), s);
            }
        }
        Delays {
            store,
            max_delay_ms,
            sync,
            signal: Mutex::new(Signal::default()),
            cv: Condvar::new(),
            stats: Mutex::new(stats),
        }
    }

    pub fn max_delay_ms(&self) -> i64 {
        self.max_delay_ms
    }

    /// New records in a delay topic: wake the worker.
    pub fn wake(&self) {
        self.signal.lock().woken = true;
        self.cv.notify_one();
    }

    pub fn stop(&self) {
        self.signal.lock().stopping = true;
        self.cv.notify_one();
    }

    /// Cancels a pending delay. Ok(false): it is not pending.
    pub async fn cancel(&self, id: DelayId) -> Result<bool, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut s = self.signal.lock();
            if s.stopping {
                return Err("the broker is stopping".into());
            }
            s.commands.push(Command::Cancel(id, tx));
        }
        self.cv.notify_one();
        rx.await
            .map_err(|_| "the delay worker stopped".to_string())?
    }

    /// Every target with counters, and its earliest pending due time (found by a scan
    /// of at most 100,000 wheel keys from the earliest; None past that).
    pub fn overview(&self) -> Vec<TargetOverview> {
        let stats = self.stats.lock().clone();
        let mut next: HashMap<String, i64> = HashMap::new();
        let want = stats.values().filter(|s| s.pending > 0).count();
        let db = self.store.db();
        for item in db
            .iterator_cf(self.store.cf(CF_DELAY_WHEEL), IteratorMode::Start)
            .take(100_000)
        {
            let Ok((k, _)) = item else { break };
            if let Some((due, id)) = wheel::parse_wheel_key(&k) {
                next.entry(id.target).or_insert(due);
                if next.len() >= want {
                    break;
                }
            }
        }
        let mut out: Vec<TargetOverview> = stats
            .into_iter()
            .map(|(target, s)| TargetOverview {
                next_due_ms: next.get(&target).copied(),
                target,
                pending: s.pending,
                fired: s.fired,
                cancelled: s.cancelled,
            })
            .collect();
        out.sort_by(|a, b| a.target.cmp(&b.target));
        out
    }

    /// Counters of one target, None if it never had a delay.
    pub fn stats(&self, target: &str) -> Option<Stats> {
        self.stats.lock().get(target).copied()
    }

    /// Pending delays over all targets (from the counters; no scan).
    pub fn pending_total(&self) -> u64 {
        self.stats.lock().values().map(|s| s.pending).sum()
    }

    /// Up to `limit` pending records of a target, by id.
    pub fn pending(&self, target: &str, limit: usize) -> Vec<PendingRecord> {
        let db = self.store.db();
        let prefix = wheel::id_prefix(target);
        let mut out = Vec::new();
        let iter = db.iterator_cf(
            self.store.cf(CF_DELAY_IDS),
            IteratorMode::From(&prefix, Direction::Forward),
        );
        for item in iter {
            let Ok((k, v)) = item else { break };
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let (Some(id), Some(due)) = (wheel::parse_id_key(&k), wheel::parse_due(&v)) else {
                continue; // undecodable
            };
            let Ok(Some(value)) =
                db.get_cf(self.store.cf(CF_DELAY_WHEEL), wheel::wheel_key(due, &id))
            else {
                continue;
            };
            let Some(e) = Entry::decode(due, &value) else {
                continue;
            };
            let text = |b: &Option<Bytes>| {
                b.as_ref().map(|b| {
                    let s = String::from_utf8_lossy(&b[..b.len().min(1024)]);
                    s.into_owned()
                })
            };
            out.push(PendingRecord {
                id: id.to_string(),
                partition: id.partition,
                offset: id.offset,
                due_ms: due,
                key: text(&e.key),
                value: text(&e.value),
                remaining: (e.schedule.remaining > 0).then_some(e.schedule.remaining),
                repeat_ms: (e.schedule.repeat_ms > 0).then_some(e.schedule.repeat_ms),
            });
        }
        out
    }

    /// Sleeps until woken, a command arrives, or `until_ms` (None: no timer).
    /// Returns false when stopping.
    fn wait(&self, until_ms: Option<i64>) -> bool {
        let mut s = self.signal.lock();
        loop {
            if s.stopping {
                return false;
            }
            if s.woken || !s.commands.is_empty() {
                s.woken = false;
                return true;
            }
            match until_ms {
                None => self.cv.wait(&mut s),
                Some(t) => {
                    let left = t - now_ms();
                    if left <= 0 {
                        return true;
                    }
                    self.cv.wait_for(&mut s, Duration::from_millis(left as u64));
                }
            }
        }
    }

    fn take_commands(&self) -> Vec<Command> {
        std::mem::take(&mut self.signal.lock().commands)
    }

    fn write(&self, batch: WriteBatch) -> Result<(), rocksdb::Error> {
        let mut o = WriteOptions::default();
        o.set_sync(self.sync);
        self.store.db().write_opt(batch, &o)
    }
}

/// Runs the worker until [`Delays::stop`]. Storage errors are logged and retried after
/// a second; they never stop the broker.
pub fn run(broker: Arc<Broker>) {
    let mut w = Worker::new(broker.clone());
    loop {
        let busy = match w.round() {
            Ok(busy) => busy,
            Err(e) => {
                tracing::error!("delay wheel: {e}; retrying in 1 s");
                if !broker.delays.wait(Some(now_ms() + 1000)) {
                    return;
                }
                continue;
            }
        };
        if busy {
            if broker.delays.signal.lock().stopping {
                return;
            }
            continue;
        }
        let next = w.next_due();
        if !broker.delays.wait(next) {
            return;
        }
    }
}

struct Worker {
    broker: Arc<Broker>,
    /// The wheel's producer id (None until the first delivery or recovery).
    pid: Option<i64>,
    recovered: bool,
    /// No wheel key below this one exists: the timer seeks here, past the RocksDB
    /// tombstones of what it already delivered (empty: from the start).
    floor: Vec<u8>,
    /// Cancels waiting for their delay record (`cancel/` keys in `delay_meta`).
    early_cancels: usize,
    checkpoints: HashMap<(Uuid, i32), i64>,
    sequences: HashMap<(String, i32), i32>,
    /// Delay topics, refreshed when the topic registry's generation moves.
    delay_topics: Vec<Arc<Topic>>,
    topics_generation: u64,
}

type WorkResult<T> = Result<T, String>;

fn db_err(e: rocksdb::Error) -> String {
    format!("metadata store: {e}")
}

impl Worker {
    fn new(broker: Arc<Broker>) -> Worker {
        Worker {
            broker,
            pid: None,
            recovered: false,
            floor: Vec::new(),
            early_cancels: 0,
            checkpoints: HashMap::new(),
            sequences: HashMap::new(),
            delay_topics: Vec::new(),
            topics_generation: u64::MAX,
        }
    }

    fn delays(&self) -> &Delays {
        &self.broker.delays
    }

    fn meta_get(&self, key: &str) -> WorkResult<Option<Vec<u8>>> {
        let s = &self.delays().store;
        s.db()
            .get_cf(s.cf(CF_DELAY_META), key.as_bytes())
            .map_err(db_err)
    }

    /// One round: console commands, then ingest, then fire. Ok(true): there is more
    /// to do at once.
    fn round(&mut self) -> WorkResult<bool> {
        if !self.recovered {
            self.recover()?;
            self.recovered = true;
        }
        for c in self.delays().take_commands() {
            match c {
                Command::Cancel(id, reply) => {
                    let r = self.cancel_now(&id);
                    let _ = reply.send(r);
                }
            }
        }
        let more_in = self.ingest()?;
        let more_out = self.fire()?;
        Ok(more_in || more_out)
    }

    fn refresh_topics(&mut self) {
        let g = self.broker.topics.generation();
        if g != self.topics_generation {
            self.topics_generation = g;
            self.delay_topics = self
                .broker
                .topics
                .list()
                .into_iter()
                .filter(|t| target_of(&t.name).is_some())
                .collect();
        }
    }

    /// The next offset to ingest from a delay partition. Keyed by topic id: a delay topic
    /// deleted and created again starts from 0.
    fn checkpoint(&mut self, topic: Uuid, partition: i32) -> WorkResult<i64> {
        let k = (topic, partition);
        if let Some(c) = self.checkpoints.get(&k) {
            return Ok(*c);
        }
        let v = self
            .meta_get(&ckpt_key(topic, partition))?
            .and_then(|v| v.try_into().ok().map(i64::from_be_bytes))
            .unwrap_or(0);
        self.checkpoints.insert(k, v);
        Ok(v)
    }

    /// Moves new delay records into the wheel. Ok(true): a partition has more.
    fn ingest(&mut self) -> WorkResult<bool> {
        self.refresh_topics();
        let mut more = false;
        for t in self.delay_topics.clone() {
            let Some(target) = target_of(&t.name).map(str::to_string) else {
                continue;
            };
            for p in t.partitions() {
                let mut from = self.checkpoint(t.id, p.index)?;
                let leo = p.log.log_end_offset();
                if from >= leo {
                    if from > leo {
                        tracing::warn!(topic = %t.name, partition = p.index,
                            "delay log ends at {leo}, before the ingested offset {from} (truncated by recovery?)");
                        self.checkpoints.insert((t.id, p.index), leo);
                    }
                    continue;
                }
                let start = p.log.log_start_offset();
                if from < start {
                    tracing::warn!(topic = %t.name, partition = p.index,
                        "delay records {from}..{start} were removed by retention before they were read");
                    from = start;
                }
                let read = p
                    .log
                    .read(from, INGEST_BYTES, leo)
                    .map_err(|e| format!("reading {}-{}: {e}", t.name, p.index))?;
                let next = self.ingest_bytes(&target, &t, p.index, from, &read.bytes)?;
                more |= next < leo;
            }
        }
        Ok(more)
    }

    /// Ingests whole batches read from a delay partition; returns the next offset.
    fn ingest_bytes(
        &mut self,
        target: &str,
        delay_topic: &Topic,
        partition: i32,
        from: i64,
        bytes: &Bytes,
    ) -> WorkResult<i64> {
        let topic = delay_topic.name.as_str();
        let store = self.delays().store.clone();
        let (cf_wheel, cf_ids, cf_meta) = (
            store.cf(CF_DELAY_WHEEL),
            store.cf(CF_DELAY_IDS),
            store.cf(CF_DELAY_META),
        );
        let target_partitions = self
            .broker
            .topics
            .get(target)
            .map(|t| t.partition_count())
            .unwrap_or(0);
        let mut wb = WriteBatch::default();
        let mut stats = self.delays().stats(target).unwrap_or_default();
        // Ids inserted in this batch (a cancel may follow its record in the same read).
        let mut inserted: Vec<(DelayId, i64)> = Vec::new();
        // Cancels of pending records, and cancels met by their record (never pending).
        let (mut added, mut removed, mut cancelled) = (0u64, 0u64, 0u64);
        let mut next = from;
        let mut pos = 0;
        while pos < bytes.len() {
            let Ok((h, size)) = batch::frame(&bytes[pos..]) else {
                break;
            };
            let b = bytes.slice(pos..pos + size);
            pos += size;
            next = h.next_offset();
            if h.is_control() || h.next_offset() <= from {
                continue;
            }
            let recs = match records::decode(&b) {
                Ok((_, recs)) => recs,
                Err(e) => {
                    tracing::warn!(
                        topic,
                        partition,
                        offset = h.base_offset,
                        "undecodable delay batch skipped: {e}"
                    );
                    continue;
                }
            };
            for r in recs {
                if r.offset < from {
                    continue;
                }
                // A LogAppendTime batch (delay topics are created so): the receive time.
                let received = r.timestamp;
                let id = DelayId {
                    target: target.to_string(),
                    partition,
                    offset: r.offset,
                };
                match control::parse(&r.headers, received, received, i64::MAX) {
                    Err(e) => {
                        tracing::warn!(
                            topic,
                            partition,
                            offset = r.offset,
                            "delay record skipped: {e}"
                        )
                    }
                    Ok(Control::Cancel {
                        partition: cp,
                        offset: co,
                    }) => {
                        let victim = DelayId {
                            target: target.to_string(),
                            partition: cp,
                            offset: co,
                        };
                        let due = match inserted.iter().rposition(|(i, _)| *i == victim) {
                            Some(at) => Some(inserted.swap_remove(at).1),
                            None => self.pending_due(&victim)?,
                        };
                        match due {
                            Some(due) => {
                                wb.delete_cf(cf_wheel, wheel::wheel_key(due, &victim));
                                wb.delete_cf(cf_ids, wheel::id_key(&victim));
                                removed += 1;
                            }
                            None if cp < delay_topic.partition_count()
                                && co >= self.checkpoint(delay_topic.id, cp)?
                                && !(cp == partition && co < r.offset) =>
                            {
                                // Its record is not ingested yet: remember the cancel.
                                wb.put_cf(cf_meta, early_cancel_key(&victim), b"");
                                self.early_cancels += 1;
                            }
                            None => {} // already delivered, cancelled, or never existed
                        }
                    }
                    Ok(Control::Delay(schedule)) => {
                        if self.early_cancels > 0 {
                            let ck = early_cancel_key(&id);
                            if self.meta_has(&ck)? {
                                wb.delete_cf(cf_meta, &ck);
                                self.early_cancels -= 1;
                                cancelled += 1;
                                continue;
                            }
                        }
                        let target_partition = match &r.key {
                            Some(k) if target_partitions > 0 => {
                                wheel::key_partition(k, target_partitions)
                            }
                            _ => partition % target_partitions.max(1),
                        };
                        let due = schedule.due_ms;
                        let entry = Entry {
                            target_partition,
                            schedule,
                            key: r.key,
                            value: r.value,
                            headers: r
                                .headers
                                .into_iter()
                                .filter(|(k, _)| !k.starts_with(control::PREFIX.as_bytes()))
                                .collect(),
                        };
                        let wk = wheel::wheel_key(due, &id);
                        self.lower_floor(&wk);
                        wb.put_cf(cf_wheel, wk, entry.encode());
                        wb.put_cf(cf_ids, wheel::id_key(&id), wheel::due_value(due));
                        inserted.push((id, due));
                        added += 1;
                    }
                }
            }
        }
        stats.pending = (stats.pending + added).saturating_sub(removed);
        let cancelled = cancelled + removed;
        stats.cancelled += cancelled;
        wb.put_cf(
            cf_meta,
            ckpt_key(delay_topic.id, partition),
            next.to_be_bytes(),
        );
        wb.put_cf(cf_meta, format!("stats/{target}"), stats.encode());
        self.delays().write(wb).map_err(db_err)?;
        self.checkpoints.insert((delay_topic.id, partition), next);
        self.publish(target, stats);
        Probe::delay_ingested(target, added, cancelled);
        Ok(next)
    }

    fn publish(&self, target: &str, stats: Stats) {
        Probe::delay_pending(target, stats.pending);
        self.delays().stats.lock().insert(target.to_string(), stats);
    }

    /// The due time of a pending id, None if it is not pending.
    fn pending_due(&self, id: &DelayId) -> WorkResult<Option<i64>> {
        let s = &self.delays().store;
        Ok(s.db()
            .get_cf(s.cf(CF_DELAY_IDS), wheel::id_key(id))
            .map_err(db_err)?
            .and_then(|v| wheel::parse_due(&v)))
    }

    fn meta_has(&self, key: &[u8]) -> WorkResult<bool> {
        let s = &self.delays().store;
        Ok(s.db()
            .get_cf(s.cf(CF_DELAY_META), key)
            .map_err(db_err)?
            .is_some())
    }

    fn lower_floor(&mut self, wheel_key: &[u8]) {
        if wheel_key < self.floor.as_slice() {
            self.floor = wheel_key.to_vec();
        }
    }

    /// A console cancel. Ok(false): not pending.
    fn cancel_now(&mut self, id: &DelayId) -> Result<bool, String> {
        let Some(due) = self.pending_due(id)? else {
            return Ok(false);
        };
        let s = self.delays().store.clone();
        let mut wb = WriteBatch::default();
        wb.delete_cf(s.cf(CF_DELAY_WHEEL), wheel::wheel_key(due, id));
        wb.delete_cf(s.cf(CF_DELAY_IDS), wheel::id_key(id));
        let mut stats = self.delays().stats(&id.target).unwrap_or_default();
        stats.pending = stats.pending.saturating_sub(1);
        stats.cancelled += 1;
        wb.put_cf(
            s.cf(CF_DELAY_META),
            format!("stats/{}", id.target),
            stats.encode(),
        );
        self.delays().write(wb).map_err(db_err)?;
        self.publish(&id.target, stats);
        Probe::delay_cancelled(&id.target);
        Ok(true)
    }

    /// The earliest due time in the wheel.
    fn next_due(&self) -> Option<i64> {
        let s = &self.delays().store;
        let mut it = s.db().iterator_cf(
            s.cf(CF_DELAY_WHEEL),
            IteratorMode::From(&self.floor, Direction::Forward),
        );
        match it.next() {
            Some(Ok((k, _))) => wheel::parse_wheel_key(&k).map(|(due, _)| due),
            _ => None,
        }
    }

    /// Delivers due records. Ok(true): more are due.
    fn fire(&mut self) -> WorkResult<bool> {
        let now = now_ms();
        let store = self.delays().store.clone();
        let mut groups: BTreeMap<(String, i32), Vec<(Vec<u8>, DelayId, Entry)>> = BTreeMap::new();
        let (mut n, mut bytes) = (0, 0);
        let mut more = false;
        // Where the next scan starts: the first key not taken now.
        let mut next_floor = None;
        for item in store.db().iterator_cf(
            store.cf(CF_DELAY_WHEEL),
            IteratorMode::From(&self.floor, Direction::Forward),
        ) {
            let (k, v) = item.map_err(db_err)?;
            let Some((due, id)) = wheel::parse_wheel_key(&k) else {
                continue;
            };
            if due > now || n >= FIRE_MAX || bytes >= FIRE_BYTES {
                more = due <= now;
                next_floor = Some(k.to_vec());
                break;
            }
            bytes += v.len();
            let mut after = k.to_vec();
            after.push(0);
            next_floor = Some(after);
            let Some(entry) = Entry::decode(due, &v) else {
                tracing::warn!(target = %id.target, id = %id, "undecodable wheel entry dropped");
                continue;
            };
            groups
                .entry((id.target.clone(), entry.target_partition))
                .or_default()
                .push((k.to_vec(), id, entry));
            n += 1;
        }
        if let Some(f) = next_floor {
            self.floor = f;
        }
        for ((target, tp), entries) in groups {
            for chunk in entries.chunks(BATCH_RECORDS) {
                if let Err(e) = self.deliver(&target, tp, chunk, None) {
                    // Taken entries may still be in the wheel, and an intent may be left:
                    // replay intents first (as after a crash), then scan from the start.
                    self.floor.clear();
                    self.recovered = false;
                    return Err(e);
                }
            }
        }
        Ok(more)
    }

    fn pid(&mut self) -> WorkResult<i64> {
        if let Some(p) = self.pid {
            return Ok(p);
        }
        match self.meta_get("pid")? {
            Some(v) if v.len() == 8 => {
                self.pid = Some(i64::from_be_bytes(v.try_into().unwrap_or_default()))
            }
            _ => self.renew_pid()?,
        }
        Ok(self.pid.unwrap_or(-1))
    }

    fn renew_pid(&mut self) -> WorkResult<()> {
        let p = self
            .broker
            .txns
            .allocate_producer_id()
            .map_err(|e| e.to_string())?;
        let s = &self.delays().store;
        s.db()
            .put_cf(s.cf(CF_DELAY_META), b"pid", p.to_be_bytes())
            .map_err(db_err)?;
        self.pid = Some(p);
        self.sequences.clear();
        Ok(())
    }

    fn sequence(&mut self, target: &str, tp: i32) -> WorkResult<i32> {
        let k = (target.to_string(), tp);
        if let Some(s) = self.sequences.get(&k) {
            return Ok(*s);
        }
        let pid = self.pid()?;
        let v = self
            .meta_get(&seq_key(pid, target, tp))?
            .and_then(|v| v.try_into().ok().map(i32::from_be_bytes))
            .unwrap_or(0);
        self.sequences.insert(k, v);
        Ok(v)
    }

    /// Appends entries to a target partition as one batch of the wheel's producer and
    /// removes them from the wheel (repeats go back in at their next due time).
    /// `sequence` is given when recovering an intent; otherwise the next one is used
    /// and an intent is written first.
    fn deliver(
        &mut self,
        target: &str,
        tp: i32,
        entries: &[(Vec<u8>, DelayId, Entry)],
        sequence: Option<i32>,
    ) -> WorkResult<()> {
        let store = self.delays().store.clone();
        let (cf_wheel, cf_ids, cf_meta) = (
            store.cf(CF_DELAY_WHEEL),
            store.cf(CF_DELAY_IDS),
            store.cf(CF_DELAY_META),
        );
        let intent_key = format!("intent/{target}/{tp}");
        let pid = self.pid()?;
        let seq = match sequence {
            Some(s) => s,
            None => {
                let s = self.sequence(target, tp)?;
                let intent = Intent {
                    sequence: s,
                    keys: entries.iter().map(|(k, _, _)| k.clone()).collect(),
                };
                let mut wb = WriteBatch::default();
                wb.put_cf(cf_meta, &intent_key, intent.encode());
                self.delays().write(wb).map_err(db_err)?;
                s
            }
        };
        let partition = self.broker.topics.get(target).and_then(|t| t.partition(tp));
        let mut delivered = true;
        match &partition {
            None => {
                tracing::warn!(
                    target,
                    partition = tp,
                    records = entries.len(),
                    "delay target partition does not exist: due records dropped"
                );
                delivered = false;
            }
            Some(p) => {
                let recs: Vec<records::Record> = entries
                    .iter()
                    .map(|(_, id, e)| delivery_record(id, e))
                    .collect();
                let stamp = records::ProducerStamp {
                    id: pid,
                    epoch: 0,
                    base_sequence: seq,
                };
                match p.log.append(&records::encode(&recs, stamp), now_ms()) {
                    Ok(info) => {
                        if self.delays().sync {
                            p.log
                                .sync_through(info.last_offset + 1)
                                .map_err(|e| format!("fsync {target}-{tp}: {e}"))?;
                        }
                        crash_point_after_append(info.duplicate);
                    }
                    Err(
                        e @ (crate::log::LogError::MessageTooLarge { .. }
                        | crate::log::LogError::InvalidTimestamp(_)
                        | crate::log::LogError::InvalidRecord(_)),
                    ) => {
                        tracing::error!(
                            target,
                            partition = tp,
                            records = entries.len(),
                            "the target refused due records, dropped: {e}"
                        );
                        delivered = false;
                    }
                    Err(
                        e @ (crate::log::LogError::OutOfOrderSequence(_)
                        | crate::log::LogError::InvalidProducerEpoch(_)),
                    ) => {
                        // The log's state of the wheel's producer does not match the wheel's
                        // (never expected): continue under a new producer id, whose
                        // sequences start at 0, rather than stall every delivery.
                        tracing::error!(
                            target,
                            partition = tp,
                            "delivery refused ({e}); the wheel takes a new producer id"
                        );
                        self.renew_pid()?;
                        return Err(format!("appending to {target}-{tp}: {e}"));
                    }
                    Err(e) => return Err(format!("appending to {target}-{tp}: {e}")),
                }
            }
        }
        let now = now_ms();
        let mut wb = WriteBatch::default();
        let mut stats = self.delays().stats(target).unwrap_or_default();
        for (k, id, e) in entries {
            wb.delete_cf(cf_wheel, k);
            let lateness = (now - e.schedule.due_ms).max(0);
            Probe::delay_late(lateness);
            match e.schedule.next().filter(|_| delivered) {
                Some(next) => {
                    let again = Entry {
                        schedule: next,
                        ..e.clone()
                    };
                    let due = again.schedule.due_ms;
                    let wk = wheel::wheel_key(due, id);
                    self.lower_floor(&wk);
                    wb.put_cf(cf_wheel, wk, again.encode());
                    wb.put_cf(cf_ids, wheel::id_key(id), wheel::due_value(due));
                }
                None => {
                    wb.delete_cf(cf_ids, wheel::id_key(id));
                    stats.pending = stats.pending.saturating_sub(1);
                }
            }
        }
        let n = entries.len() as i32;
        let next_seq = if seq > i32::MAX - n {
            n - (i32::MAX - seq) - 1
        } else {
            seq + n
        };
        if delivered {
            stats.fired += entries.len() as u64;
        }
        wb.put_cf(cf_meta, seq_key(pid, target, tp), next_seq.to_be_bytes());
        wb.put_cf(cf_meta, format!("stats/{target}"), stats.encode());
        wb.delete_cf(cf_meta, &intent_key);
        self.delays().write(wb).map_err(db_err)?;
        self.sequences.insert((target.to_string(), tp), next_seq);
        self.publish(target, stats);
        if delivered {
            Probe::delay_fired(target, entries.len() as u64);
        }
        Ok(())
    }

    /// Finishes deliveries a crash interrupted (see the module invariants).
    fn recover(&mut self) -> WorkResult<()> {
        let store = self.delays().store.clone();
        self.early_cancels = store
            .db()
            .prefix_iterator_cf(store.cf(CF_DELAY_META), b"cancel/")
            .take_while(|i| i.as_ref().is_ok_and(|(k, _)| k.starts_with(b"cancel/")))
            .count();
        let mut intents = Vec::new();
        for item in store
            .db()
            .prefix_iterator_cf(store.cf(CF_DELAY_META), b"intent/")
        {
            let (k, v) = item.map_err(db_err)?;
            let Some(rest) = k.strip_prefix(b"intent/") else {
                break;
            };
            let rest = String::from_utf8_lossy(rest).into_owned();
            let Some((target, tp)) = rest.rsplit_once('/') else {
                continue;
            };
            let (Ok(tp), Some(intent)) = (tp.parse::<i32>(), Intent::decode(&v)) else {
                continue;
            };
            intents.push((target.to_string(), tp, intent));
        }
        for (target, tp, intent) in intents {
            let mut entries = Vec::new();
            for k in &intent.keys {
                let Some((due, id)) = wheel::parse_wheel_key(k) else {
                    continue;
                };
                let v = store
                    .db()
                    .get_cf(store.cf(CF_DELAY_WHEEL), k)
                    .map_err(db_err)?;
                if let Some(e) = v.and_then(|v| Entry::decode(due, &v)) {
                    entries.push((k.clone(), id, e));
                }
            }
            tracing::info!(
                target,
                partition = tp,
                records = entries.len(),
                "delay wheel: finishing a delivery interrupted by a crash"
            );
            self.deliver(&target, tp, &entries, Some(intent.sequence))?;
        }
        Ok(())
    }
}

fn ckpt_key(topic: Uuid, partition: i32) -> String {
    format!("ckpt/{topic}/{partition}")
}

/// A cancel that arrived before its delay record (`delay_meta`).
fn early_cancel_key(id: &DelayId) -> Vec<u8> {
    let mut k = b"cancel/".to_vec();
    k.extend_from_slice(&wheel::id_key(id));
    k
}

/// Next sequence of the wheel's producer `pid` on a target partition.
fn seq_key(pid: i64, target: &str, tp: i32) -> String {
    format!("seq/{pid}/{target}/{tp}")
}

/// Test hook for the crash tests (compat-tests/test_delay_crash.py): with
/// `KAIROSTEST_CRASH_AFTER_DELAY_APPEND=1` in its environment the process aborts right
/// after its first delivery reached the target log, before the wheel forgot it. Read once.
fn crash_point_after_append(duplicate: bool) {
    static ARMED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !duplicate
        && *ARMED.get_or_init(|| std::env::var_os("KAIROSTEST_CRASH_AFTER_DELAY_APPEND").is_some())
    {
        tracing::error!("KAIROSTEST_CRASH_AFTER_DELAY_APPEND: aborting after a delivery append");
        std::process::abort();
    }
}

/// The record delivered for a wheel entry: its key, value and user headers, plus
/// `kairos-delay-id`; timestamp = its due time.
fn delivery_record(id: &DelayId, e: &Entry) -> records::Record {
    let mut headers = e.headers.clone();
    headers.push((
        Bytes::from_static(control::DELAY_ID.as_bytes()),
        Some(Bytes::from(id.to_string())),
    ));
    records::Record {
        offset: 0,
        timestamp: e.schedule.due_ms,
        key: e.key.clone(),
        value: e.value.clone(),
        headers,
    }
}
