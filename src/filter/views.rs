//! Views (DESIGN.md "Views"): named, read-only topics made of a source topic and a
//! script. The registry (persisted in the `views` column family) and the one function
//! the fetch path calls, [`View::filter`], which turns stored source batches into the
//! view's batches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Input, Outcome, Script};
use crate::log::{batch, records};
use crate::store::{MetaStore, StoreError, CF_VIEWS};

/// What a failing script does to its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    #[default]
    Drop,
    Pass,
}

/// A view as the console defines it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewDef {
    pub name: String,
    pub source: String,
    pub script: String,
    #[serde(default)]
    pub on_error: OnError,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    id: Uuid,
    source: String,
    script: String,
    on_error: OnError,
}

pub struct View {
    pub name: String,
    pub id: Uuid,
    pub source: String,
    pub script_source: String,
    pub on_error: OnError,
    script: Script,
    /// Records kept, dropped, and failed on since start (`kairos_view_records_total`,
    /// read at scrape: a deleted view leaves no series).
    pub counts: [AtomicU64; 3],
}

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("{0}")]
    Invalid(String),
    #[error("script: {0}")]
    Script(super::CompileError),
    #[error("{0} already exists")]
    Exists(String),
    #[error("no view {0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stored bytes above which a fetch filters with [`tokio::task::block_in_place`], so that
/// the other tasks of its worker thread move to another thread meanwhile: about 1 ms of
/// work, for a script that rhai runs and for one that runs natively (16 times faster;
/// below that, handing the worker over and back, with its thread wake-ups and cache
/// misses, costs more than it saves).
const BLOCKING_BYTES: usize = 256 * 1024;
const BLOCKING_BYTES_NATIVE: usize = 16 * BLOCKING_BYTES;

/// Source bytes one fetch of a view may read past records that are all dropped, looking
/// for one it keeps (see [`View::filter_for_fetch`]).
const MAX_SCAN_BYTES: usize = 64 << 20;

impl View {
    /// The view's batches for stored source batches (whole batches, as the log returns
    /// them). Control batches pass as they are (read_committed needs the markers), and so
    /// does a batch whose records are all kept unchanged (still compressed if it was);
    /// every other batch becomes one uncompressed batch over the same offset range holding
    /// the kept records, transformed, or an empty batch when none is kept.
    pub fn filter(&self, stored: &Bytes, partition: i32) -> Bytes {
        // None while every batch so far passes unchanged: then `stored` is the answer.
        let mut out: Option<Vec<u8>> = None;
        let (mut kept, mut dropped, mut failed) = (0u64, 0u64, 0u64);
        let mut keep = Vec::new();
        let mut pos = 0;
        while pos < stored.len() {
            let Ok((h, size)) = batch::frame(&stored[pos..]) else {
                break;
            };
            let start = pos;
            pos += size;
            let b = stored.slice(start..pos);
            let mut changed = false;
            if !h.is_control() {
                let recs = match records::decode(&b) {
                    Ok((_, r)) => r,
                    Err(e) => {
                        tracing::warn!(view = %self.name, offset = h.base_offset, "undecodable source batch: {e}");
                        changed = true;
                        Vec::new()
                    }
                };
                keep.clear();
                for mut r in recs {
                    let outcome = self.script.run(&Input {
                        key: r.key.as_deref(),
                        value: r.value.as_deref(),
                        headers: &r.headers,
                        timestamp: r.timestamp,
                        partition,
                        offset: r.offset,
                    });
                    match outcome {
                        Ok(Outcome::Keep) => keep.push(r),
                        Ok(Outcome::Replace(v)) => {
                            r.value = Some(v);
                            keep.push(r);
                            changed = true;
                        }
                        Ok(Outcome::Drop) => {
                            dropped += 1;
                            changed = true;
                        }
                        Err(e) => {
                            failed += 1;
                            tracing::debug!(view = %self.name, offset = r.offset, "script failed: {e}");
                            if self.on_error == OnError::Pass {
                                keep.push(r);
                            } else {
                                changed = true;
                            }
                        }
                    }
                }
                kept += keep.len() as u64;
            }
            match (&mut out, changed) {
                (None, false) => {}
                (Some(o), false) => o.extend_from_slice(&b),
                (o, true) => {
                    let o = o.get_or_insert_with(|| stored[..start].to_vec());
                    records::rewrite(o, &h, &keep);
                }
            }
        }
        for (c, n) in self.counts.iter().zip([kept, dropped, failed]) {
            c.fetch_add(n, Ordering::Relaxed);
        }
        match out {
            None => stored.slice(..pos),
            Some(o) => Bytes::from(o),
        }
    }

    /// [`View::filter`] for a fetch: `stored` was read from the source, `read(offset)`
    /// reads more from `offset` (same byte budget, nothing at or past `upper`, the end the
    /// fetch may see).
    ///
    /// When every record read was dropped, more is read and filtered until a record is
    /// kept, `upper` is reached, `MAX_SCAN_BYTES` were read or the answer reaches
    /// `max_bytes`: kafkajs takes a partition answer holding no record at all for "caught
    /// up" and moves its position to the high watermark, which would skip the records
    /// after a long dropped range. librdkafka and the Java client step over the empty
    /// batches either way; for them this only saves round trips.
    ///
    /// A large read is filtered with `block_in_place`, so that the other tasks of the
    /// worker thread go on meanwhile; the reply is still this fetch's future, so responses
    /// keep their order.
    pub fn filter_for_fetch(
        &self,
        stored: Bytes,
        partition: i32,
        upper: i64,
        max_bytes: usize,
        mut read: impl FnMut(i64) -> Option<Bytes>,
    ) -> Bytes {
        let mut out = self.filter_on_runtime(&stored, partition);
        let mut scanned = stored.len();
        loop {
            let (records, next) = summary(&out);
            let Some(next) = next else {
                return out;
            };
            if records > 0 || next >= upper || scanned >= MAX_SCAN_BYTES || out.len() >= max_bytes {
                return out;
            }
            let more = match read(next) {
                Some(b) if !b.is_empty() => b,
                _ => return out,
            };
            scanned += more.len();
            let more = self.filter_on_runtime(&more, partition);
            let mut joined = BytesMut::with_capacity(out.len() + more.len());
            joined.extend_from_slice(&out);
            joined.extend_from_slice(&more);
            out = joined.freeze();
        }
    }

    fn filter_on_runtime(&self, stored: &Bytes, partition: i32) -> Bytes {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let multi_thread =
            Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
        let blocking = if self.script.is_native() {
            BLOCKING_BYTES_NATIVE
        } else {
            BLOCKING_BYTES
        };
        if stored.len() >= blocking && multi_thread {
            tokio::task::block_in_place(|| self.filter(stored, partition))
        } else {
            self.filter(stored, partition)
        }
    }
}

/// Records in whole batches (control records included) and the offset after the last
/// batch (None: no whole batch).
fn summary(batches: &[u8]) -> (i64, Option<i64>) {
    let (mut records, mut next) = (0i64, None);
    let mut pos = 0;
    while let Ok((h, size)) = batch::frame(&batches[pos..]) {
        records += i64::from(h.record_count.max(0));
        next = Some(h.next_offset());
        pos += size;
    }
    (records, next)
}

/// Every view, by name and by id.
pub struct Views {
    store: Arc<MetaStore>,
    by_name: DashMap<String, Arc<View>>,
    by_id: DashMap<Uuid, Arc<View>>,
    admin: Mutex<()>,
}

impl Views {
    pub fn open(store: Arc<MetaStore>) -> Result<Views, StoreError> {
        let views = Views {
            store: store.clone(),
            by_name: DashMap::new(),
            by_id: DashMap::new(),
            admin: Mutex::new(()),
        };
        for (name, s) in store.scan_json::<Stored>(CF_VIEWS)? {
            match Script::compile(&s.script) {
                Ok(script) => views.insert(View {
                    name,
                    id: s.id,
                    source: s.source,
                    script_source: s.script,
                    on_error: s.on_error,
                    script,
                    counts: Default::default(),
                }),
                Err(e) => tracing::error!(view = %name, "stored view script does not compile: {e}"),
            }
        }
        Ok(views)
    }

    fn insert(&self, v: View) {
        let v = Arc::new(v);
        self.by_name.insert(v.name.clone(), v.clone());
        self.by_id.insert(v.id, v);
    }

    pub fn get(&self, name: &str) -> Option<Arc<View>> {
        self.by_name.get(name).map(|v| v.clone())
    }

    pub fn get_by_id(&self, id: &Uuid) -> Option<Arc<View>> {
        self.by_id.get(id).map(|v| v.clone())
    }

    /// All views, by name.
    pub fn list(&self) -> Vec<Arc<View>> {
        let mut v: Vec<_> = self.by_name.iter().map(|e| e.value().clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Creates (`create`) or replaces a view. `is_topic` tells whether a name is a topic.
    pub fn put(
        &self,
        def: ViewDef,
        create: bool,
        is_topic: impl Fn(&str) -> bool,
    ) -> Result<Arc<View>, ViewError> {
        crate::topics::validate_topic_name(&def.name)
            .map_err(|e| ViewError::Invalid(format!("view name: {e}")))?;
        if is_topic(&def.name) {
            return Err(ViewError::Exists(format!("topic {}", def.name)));
        }
        if !is_topic(&def.source) {
            return Err(ViewError::Invalid(format!(
                "source topic {} does not exist",
                def.source
            )));
        }
        let script = Script::compile(&def.script).map_err(ViewError::Script)?;
        let _g = self.admin.lock();
        let old = self.get(&def.name);
        let id = match (&old, create) {
            (Some(_), true) => return Err(ViewError::Exists(format!("view {}", def.name))),
            (None, false) => return Err(ViewError::NotFound(def.name)),
            (Some(v), false) => v.id,
            (None, true) => Uuid::new_v4(),
        };
        let stored = Stored {
            id,
            source: def.source.clone(),
            script: def.script.clone(),
            on_error: def.on_error,
        };
        self.store.put_json(CF_VIEWS, &def.name, &stored)?;
        let view = View {
            name: def.name.clone(),
            id,
            source: def.source,
            script_source: def.script,
            on_error: def.on_error,
            script,
            counts: Default::default(),
        };
        self.insert(view);
        Ok(self.get(&def.name).expect("just inserted"))
    }

    pub fn delete(&self, name: &str) -> Result<(), ViewError> {
        let _g = self.admin.lock();
        let v = self
            .get(name)
            .ok_or_else(|| ViewError::NotFound(name.to_string()))?;
        self.store.delete(CF_VIEWS, name)?;
        self.by_name.remove(name);
        self.by_id.remove(&v.id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::records::{ProducerStamp, Record};

    fn view(script: &str, on_error: OnError) -> View {
        View {
            name: "v".into(),
            id: Uuid::new_v4(),
            source: "s".into(),
            script_source: script.into(),
            on_error,
            script: Script::compile(script).unwrap(),
            counts: Default::default(),
        }
    }

    /// A batch of `n` records of about 1 KiB of JSON at `base`; record i has price i.
    fn json_batch(base: i64, n: usize) -> Bytes {
        let recs: Vec<Record> = (0..n)
            .map(|i| {
                let mut v = format!(r#"{{"city":"beijing","price":{i},"pad":""#).into_bytes();
                v.resize(1022, b'x');
                v.extend_from_slice(br#""}"#);
                Record {
                    offset: i as i64,
                    timestamp: 1000 + i as i64,
                    key: None,
                    value: Some(Bytes::from(v)),
                    headers: vec![],
                }
            })
            .collect();
        let stamp = ProducerStamp {
            id: -1,
            epoch: -1,
            base_sequence: -1,
        };
        let mut b = records::encode(&recs, stamp);
        b[batch::POS_BASE_OFFSET..][..8].copy_from_slice(&base.to_be_bytes());
        let crc = batch::compute_crc(&b);
        b[batch::POS_CRC..][..4].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(b)
    }

    fn batches(b: &Bytes) -> Vec<(batch::BatchHeader, Vec<Record>)> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < b.len() {
            let (h, size) = batch::frame(&b[pos..]).unwrap();
            out.push(records::decode(&b.slice(pos..pos + size)).unwrap());
            assert_eq!(out.last().unwrap().0.base_offset, h.base_offset);
            pos += size;
        }
        out
    }

    fn with_attributes(b: &Bytes, attributes: i16) -> Bytes {
        let mut v = b.to_vec();
        v[batch::POS_ATTRIBUTES..][..2].copy_from_slice(&attributes.to_be_bytes());
        let crc = batch::compute_crc(&v);
        v[batch::POS_CRC..][..4].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(v)
    }

    #[test]
    fn kept_batches_pass_as_stored_and_others_are_rewritten_over_the_same_range() {
        // Batches at 0, 10, 20 of 10 records with prices 0..9.
        let stored: Bytes = [json_batch(0, 10), json_batch(10, 10), json_batch(20, 10)]
            .concat()
            .into();
        // Everything kept: the very bytes read, not a copy.
        let all = view("json.price >= 0", OnError::Drop).filter(&stored, 0);
        assert_eq!(all.as_ptr(), stored.as_ptr());
        assert_eq!(all, stored);
        // Some kept: offsets are the source's, every batch keeps its range.
        let some = view("json.price > 7", OnError::Drop).filter(&stored, 0);
        let got = batches(&some);
        assert_eq!(got.len(), 3);
        for (k, (h, recs)) in got.iter().enumerate() {
            assert_eq!(
                (h.base_offset, h.last_offset()),
                (k as i64 * 10, k as i64 * 10 + 9)
            );
            let offsets: Vec<i64> = recs.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, [k as i64 * 10 + 8, k as i64 * 10 + 9]);
        }
        // None kept: empty batches over the same ranges.
        let none = view("false", OnError::Drop).filter(&stored, 0);
        let got = batches(&none);
        assert!(got.iter().all(|(_, r)| r.is_empty()));
        assert_eq!(got[2].0.next_offset(), 30);
        // A transformed value: rewritten, the rest of the record as it was.
        let t = view(
            r#"if json.price == 3 { "three" } else { true }"#,
            OnError::Drop,
        );
        let got = batches(&t.filter(&stored.slice(..json_batch(0, 10).len()), 0));
        assert_eq!(got[0].1.len(), 10);
        assert_eq!(got[0].1[3].value.as_deref(), Some(&b"three"[..]));
        assert_eq!(got[0].1[3].timestamp, 1003);
    }

    #[test]
    fn control_batches_pass_and_failures_follow_on_error() {
        let control = with_attributes(
            &json_batch(10, 1),
            batch::ATTR_CONTROL | batch::ATTR_TRANSACTIONAL,
        );
        let stored: Bytes = [json_batch(0, 10), control.clone()].concat().into();
        let out = view("false", OnError::Drop).filter(&stored, 0);
        assert!(out.ends_with(&control));
        // `json.price / 0` fails on the record of price 0 only.
        let failing = "json.price / (json.price - 2) >= -10";
        let pass = view(failing, OnError::Pass).filter(&stored, 0);
        assert_eq!(
            pass, stored,
            "a failing record passed unchanged: the batch is as stored"
        );
        let drop = view(failing, OnError::Drop).filter(&stored, 0);
        let got = batches(&drop);
        assert_eq!(got[0].1.len(), 9);
        assert!(got[0].1.iter().all(|r| r.offset != 2));
    }

    #[test]
    fn a_fetch_reads_on_past_dropped_records() {
        // Source: 5 batches of 10 records; the view keeps only prices 5.. of the last batch.
        let chunks: Vec<Bytes> = (0..5).map(|k| json_batch(k * 10, 10)).collect();
        let v = view("json.price >= 5 && offset >= 40", OnError::Drop);
        let reads = std::cell::Cell::new(0);
        let read = |from: i64| {
            reads.set(reads.get() + 1);
            chunks.get((from / 10) as usize).cloned()
        };
        let out = v.filter_for_fetch(chunks[0].clone(), 0, 50, 1 << 20, read);
        let got = batches(&out);
        assert_eq!(got.len(), 5, "read on to the batch with a kept record");
        assert_eq!(reads.get(), 4);
        assert_eq!(
            got[4].1.iter().map(|r| r.offset).collect::<Vec<_>>(),
            [45, 46, 47, 48, 49]
        );
        // Not past the end the fetch may see, nor past its byte budget.
        let out = v.filter_for_fetch(chunks[0].clone(), 0, 30, 1 << 20, &read);
        assert_eq!(summary(&out), (0, Some(30)));
        let out = v.filter_for_fetch(chunks[0].clone(), 0, 50, 1, read);
        assert_eq!(summary(&out), (0, Some(10)));
    }

    /// Time per record of `View::filter` on 1 KiB JSON records:
    /// `cargo test --release --lib filter::views::tests::filter_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn filter_speed() {
        let mut stored = BytesMut::new();
        for k in 0..64 {
            stored.extend_from_slice(&json_batch(k * 100, 100));
        }
        let stored = stored.freeze();
        for script in [
            r#"json.city == "beijing" && json.price > -1"#,
            r#"json.city == "beijing" && json.price > 89"#,
            r#"true"#,
        ] {
            let v = view(script, OnError::Drop);
            // The fastest of several rounds: the machine is shared.
            let mut best = f64::MAX;
            let mut out = 0;
            for _ in 0..15 {
                let t0 = std::time::Instant::now();
                out = v.filter(&stored, 0).len();
                best = best.min(t0.elapsed().as_secs_f64() / 6400.0);
            }
            println!("{script:50} {:6.0} ns/record ({out} bytes out)", best * 1e9);
        }
    }
}
