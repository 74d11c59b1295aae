//! Views (DESIGN.md "Views"): named, read-only topics made of a source topic and a
//! script. The registry (persisted in the `views` column family) and the one function
//! the fetch path calls, [`View::filter`], which turns stored source batches into the
//! view's batches.

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

/// Counters of what views did, by outcome.
fn count(view: &str, what: &'static str, n: u64) {
    if n > 0 {
        metrics::counter!("kairos_view_records_total", "view" => view.to_string(), "outcome" => what)
            .increment(n);
    }
}

impl View {
    /// The view's batches for stored source batches (whole batches, as the log returns
    /// them). Control batches pass as they are (read_committed needs the markers); every
    /// other batch becomes one uncompressed batch over the same offset range holding the
    /// kept records, transformed, or an empty batch when none is kept.
    pub fn filter(&self, stored: &Bytes, partition: i32) -> Bytes {
        let mut out = BytesMut::with_capacity(stored.len().min(1 << 20));
        let (mut kept, mut dropped, mut failed) = (0u64, 0u64, 0u64);
        let mut pos = 0;
        while pos < stored.len() {
            let Ok((h, size)) = batch::frame(&stored[pos..]) else {
                break;
            };
            let b = stored.slice(pos..pos + size);
            pos += size;
            if h.is_control() {
                out.extend_from_slice(&b);
                continue;
            }
            let recs = match records::decode(&b) {
                Ok((_, r)) => r,
                Err(e) => {
                    tracing::warn!(view = %self.name, offset = h.base_offset, "undecodable source batch: {e}");
                    Vec::new()
                }
            };
            let mut keep = Vec::with_capacity(recs.len());
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
                    }
                    Ok(Outcome::Drop) => dropped += 1,
                    Err(e) => {
                        failed += 1;
                        tracing::debug!(view = %self.name, offset = r.offset, "script failed: {e}");
                        if self.on_error == OnError::Pass {
                            keep.push(r);
                        }
                    }
                }
            }
            kept += keep.len() as u64;
            out.extend_from_slice(&records::rewrite(&h, &keep));
        }
        count(&self.name, "kept", kept);
        count(&self.name, "dropped", dropped);
        count(&self.name, "failed", failed);
        out.freeze()
    }
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
