//! Client quotas: produce and fetch byte rates per client id, as Apache Kafka 4
//! enforces them (`ClientQuotaManager` with the default quota callback).
//!
//! Owns the quota entities (`client-id` = a name, or the default entity),
//! their persistence (column family `quotas`), resolution (an exact client-id
//! quota, else the default client-id quota, else unlimited; per key), the
//! DescribeClientQuotas filter semantics, AlterClientQuotas validation, and
//! the measured rate of every client id that has a quota ([`rate::Rate`]).
//! Kafka's `user` and `ip` entities and the `request_percentage` /
//! `controller_mutation_rate` keys are refused: Kairos enforces byte rates per
//! client id only.
//!
//! Thread-safe: the table is read through an `Arc` snapshot (the produce and
//! fetch paths never wait for an alteration's fsync), alterations are
//! serialized by one writer lock, rates live behind one mutex.

pub mod rate;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use indexmap::IndexMap;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

pub use rate::{Rate, RateConfig};

use crate::store::{MetaStore, StoreError, CF_QUOTAS};

/// Quota entity types (Kafka's `ClientQuotaEntity`).
pub const CLIENT_ID: &str = "client-id";
pub const USER: &str = "user";
pub const IP: &str = "ip";
/// Quota keys Kairos enforces (bytes per second, integral, > 0: Kafka's LONG configs).
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// Keys Kafka accepts for a client-id entity that Kairos does not enforce.
const UNSUPPORTED_KEYS: &[&str] = &["request_percentage", "controller_mutation_rate"];
/// DescribeClientQuotas match types: a name, the default entity, any entity of the type.
pub const MATCH_EXACT: i8 = 0;
pub const MATCH_DEFAULT: i8 = 1;
pub const MATCH_SPECIFIED: i8 = 2;
/// Longest client id a quota may name (Kafka has no bound; this keeps the table small).
pub const MAX_CLIENT_ID_BYTES: usize = 255;
/// Most quota entities the broker keeps.
pub const MAX_ENTITIES: usize = 10_000;
/// Most client ids whose rate is measured at once; beyond it new client ids
/// share one rate per kind until idle ones expire.
const MAX_RATES: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// Kafka's INVALID_REQUEST, with its message.
    #[error("{0}")]
    InvalidRequest(String),
    /// Kafka's UNSUPPORTED_VERSION (a DescribeClientQuotas filter on an unknown entity type).
    #[error("{0}")]
    UnsupportedVersion(String),
    /// The metadata store failed; nothing was changed.
    #[error("{0}")]
    Store(String),
}

impl From<StoreError> for QuotaError {
    fn from(e: StoreError) -> Self {
        QuotaError::Store(e.to_string())
    }
}

fn invalid(msg: impl Into<String>) -> QuotaError {
    QuotaError::InvalidRequest(msg.into())
}

/// What a quota limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    /// Bytes of Produce requests (`producer_byte_rate`).
    Produce,
    /// Bytes of Fetch responses (`consumer_byte_rate`).
    Fetch,
}

impl QuotaKind {
    pub fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => PRODUCER_BYTE_RATE,
            QuotaKind::Fetch => CONSUMER_BYTE_RATE,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            QuotaKind::Produce => "produce",
            QuotaKind::Fetch => "fetch",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The limits of one entity, in bytes per second; `None`: not limited by it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    #[serde(default)]
    pub producer_byte_rate: Option<f64>,
    #[serde(default)]
    pub consumer_byte_rate: Option<f64>,
}

impl Limits {
    pub fn get(&self, kind: QuotaKind) -> Option<f64> {
        match kind {
            QuotaKind::Produce => self.producer_byte_rate,
            QuotaKind::Fetch => self.consumer_byte_rate,
        }
    }

    fn slot(&mut self, key: &str) -> Option<&mut Option<f64>> {
        match key {
            PRODUCER_BYTE_RATE => Some(&mut self.producer_byte_rate),
            CONSUMER_BYTE_RATE => Some(&mut self.consumer_byte_rate),
            _ => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.producer_byte_rate.is_none() && self.consumer_byte_rate.is_none()
    }

    /// (key, value) of each limit set, in key order.
    pub fn values(&self) -> Vec<(&'static str, f64)> {
        let mut v = Vec::new();
        if let Some(c) = self.consumer_byte_rate {
            v.push((CONSUMER_BYTE_RATE, c));
        }
        if let Some(p) = self.producer_byte_rate {
            v.push((PRODUCER_BYTE_RATE, p));
        }
        v
    }
}

/// One client-id entity and its limits; also the stored value (key: [`store_key`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientQuota {
    /// The client id, or `None` for the default entity.
    pub client_id: Option<String>,
    #[serde(flatten)]
    pub limits: Limits,
}

/// The RocksDB key of an entity: `client-id` for the default, `client-id=<name>` otherwise
/// (names are never empty, so the two cannot collide).
pub fn store_key(client_id: Option<&str>) -> String {
    match client_id {
        None => CLIENT_ID.to_string(),
        Some(n) => format!("{CLIENT_ID}={n}"),
    }
}

/// An entity as a request names it: (entity type, name or `None` for the default).
pub type Entity = Vec<(String, Option<String>)>;

/// One entry of an AlterClientQuotas request: an entity and its operations,
/// (key, `Some(value)` to set or `None` to remove).
#[derive(Clone, Debug)]
pub struct Alteration {
    pub entity: Entity,
    pub ops: Vec<(String, Option<f64>)>,
}

/// The outcome for one distinct entity of an alteration request.
#[derive(Debug)]
pub struct AlterResult {
    pub entity: Entity,
    pub result: Result<(), QuotaError>,
}

/// A DescribeClientQuotas filter component.
#[derive(Clone, Debug)]
pub struct Component {
    pub entity_type: String,
    /// [`MATCH_EXACT`], [`MATCH_DEFAULT`] or [`MATCH_SPECIFIED`].
    pub match_type: i8,
    pub name: Option<String>,
}

/// What recording a request's bytes decided.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// How long the client must wait (Kafka's throttle time); 0: within its quota.
    pub throttle_ms: u32,
    /// The quota that applied was the default entity's.
    pub default_entity: bool,
}

#[derive(Clone, Debug, Default)]
struct Table {
    named: HashMap<String, Limits>,
    default: Limits,
}

impl Table {
    fn get(&self, client_id: Option<&str>) -> Limits {
        match client_id {
            None => self.default,
            Some(n) => self.named.get(n).copied().unwrap_or_default(),
        }
    }

    fn set(&mut self, client_id: Option<&str>, limits: Limits) {
        match client_id {
            None => self.default = limits,
            Some(n) if limits.is_empty() => {
                self.named.remove(n);
            }
            Some(n) => {
                self.named.insert(n.to_string(), limits);
            }
        }
    }

    fn enables(&self, kind: QuotaKind) -> bool {
        self.default.get(kind).is_some() || self.named.values().any(|l| l.get(kind).is_some())
    }

    fn all(&self) -> Vec<ClientQuota> {
        let mut out = Vec::with_capacity(self.named.len() + 1);
        if !self.default.is_empty() {
            out.push(ClientQuota {
                client_id: None,
                limits: self.default,
            });
        }
        let mut named: Vec<_> = self.named.iter().collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        out.extend(named.into_iter().map(|(n, l)| ClientQuota {
            client_id: Some(n.clone()),
            limits: *l,
        }));
        out
    }
}

/// Measured rates, one per client id and kind.
#[derive(Default)]
struct Rates {
    by_client: [HashMap<String, Rate>; 2],
    /// Shared by client ids beyond [`MAX_RATES`].
    overflow: [Rate; 2],
    purged_at_ms: i64,
}

impl Rates {
    fn len(&self) -> usize {
        self.by_client[0].len() + self.by_client[1].len()
    }

    fn rate(
        &mut self,
        kind: QuotaKind,
        client_id: &str,
        cfg: &RateConfig,
        now_ms: i64,
    ) -> &mut Rate {
        let i = kind.index();
        if !self.by_client[i].contains_key(client_id) {
            // An expired rate is the same as a new one: drop those now and then.
            let expire_ms = cfg.samples as i64 * cfg.window_ms;
            if self.len() >= MAX_RATES || now_ms - self.purged_at_ms >= expire_ms {
                for m in &mut self.by_client {
                    m.retain(|_, r| !r.is_idle(cfg, now_ms));
                }
                self.purged_at_ms = now_ms;
            }
            if self.len() >= MAX_RATES {
                return &mut self.overflow[i];
            }
            self.by_client[i].insert(client_id.to_string(), Rate::new());
        }
        self.by_client[i]
            .get_mut(client_id)
            .expect("inserted above")
    }
}

/// Milliseconds on a monotonic clock (rates must not jump with the wall clock).
pub fn now_ms() -> i64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as i64
}

pub struct Quotas {
    store: Arc<MetaStore>,
    config: RateConfig,
    table: RwLock<Arc<Table>>,
    /// Whether any entity limits a kind: the produce and fetch paths stop here when not.
    enabled: [AtomicBool; 2],
    /// Serializes alterations (validate, persist, publish).
    writer: Mutex<()>,
    rates: Mutex<Rates>,
}

impl Quotas {
    /// Loads the stored quotas.
    pub fn open(store: Arc<MetaStore>) -> Result<Quotas, StoreError> {
        Self::open_with(store, RateConfig::default())
    }

    pub fn open_with(store: Arc<MetaStore>, config: RateConfig) -> Result<Quotas, StoreError> {
        let mut table = Table::default();
        for (_, q) in store.scan_json::<ClientQuota>(CF_QUOTAS)? {
            table.set(q.client_id.as_deref(), q.limits);
        }
        let quotas = Quotas {
            store,
            config,
            table: RwLock::new(Arc::new(Table::default())),
            enabled: [AtomicBool::new(false), AtomicBool::new(false)],
            writer: Mutex::new(()),
            rates: Mutex::new(Rates::default()),
        };
        let count = table.named.len() + usize::from(!table.default.is_empty());
        quotas.publish(table);
        if count > 0 {
            tracing::info!(entities = count, "client quotas loaded");
        }
        Ok(quotas)
    }

    fn publish(&self, table: Table) {
        for kind in [QuotaKind::Produce, QuotaKind::Fetch] {
            self.enabled[kind.index()].store(table.enables(kind), Ordering::Relaxed);
        }
        *self.table.write() = Arc::new(table);
    }

    fn snapshot(&self) -> Arc<Table> {
        self.table.read().clone()
    }

    /// The quota of a client id for a kind, and whether it is the default
    /// entity's. A request without a client id (or an empty one) is never
    /// limited, as in Kafka.
    pub fn resolve(&self, kind: QuotaKind, client_id: Option<&str>) -> Option<(f64, bool)> {
        if !self.enabled[kind.index()].load(Ordering::Relaxed) {
            return None;
        }
        let client_id = client_id.filter(|c| !c.is_empty())?;
        let t = self.snapshot();
        if let Some(q) = t.named.get(client_id).and_then(|l| l.get(kind)) {
            return Some((q, false));
        }
        t.default.get(kind).map(|q| (q, true))
    }

    /// Records `bytes` for a client id at `now_ms` (see [`now_ms`]) and says
    /// how long it must be throttled.
    pub fn record(
        &self,
        kind: QuotaKind,
        client_id: Option<&str>,
        bytes: usize,
        now_ms: i64,
    ) -> Verdict {
        let Some((quota, default_entity)) = self.resolve(kind, client_id) else {
            return Verdict::default();
        };
        let client_id = client_id.unwrap_or_default();
        let mut rates = self.rates.lock();
        let rate = rates.rate(kind, client_id, &self.config, now_ms);
        Verdict {
            throttle_ms: rate.record_and_throttle_ms(&self.config, bytes as f64, quota, now_ms),
            default_entity,
        }
    }

    /// Takes back bytes recorded for a response that was not sent (a throttled fetch).
    pub fn unrecord(&self, kind: QuotaKind, client_id: Option<&str>, bytes: usize, now_ms: i64) {
        if self.resolve(kind, client_id).is_none() {
            return;
        }
        let client_id = client_id.unwrap_or_default();
        let mut rates = self.rates.lock();
        rates.rate(kind, client_id, &self.config, now_ms).record(
            &self.config,
            -(bytes as f64),
            now_ms,
        );
    }

    /// The most bytes one fetch of this client may return: more would be
    /// throttled even after an idle window (Kafka's `getMaxValueInQuotaWindow`).
    pub fn max_fetch_bytes(&self, client_id: Option<&str>) -> Option<usize> {
        let (quota, _) = self.resolve(QuotaKind::Fetch, client_id)?;
        let max = self.config.max_value_in_window(quota);
        Some(max.clamp(0.0, i32::MAX as f64) as usize)
    }

    /// Every entity with its limits: the default first, then by client id.
    pub fn list(&self) -> Vec<ClientQuota> {
        self.snapshot().all()
    }

    /// DescribeClientQuotas: the entities matching a filter, with Kafka's
    /// validation of the filter (Kafka's `ClientQuotasImage.describe`). Every
    /// Kairos entity is a client-id entity, so components on `user` or `ip`
    /// match nothing, as they would on a Kafka broker without such quotas.
    pub fn describe(
        &self,
        components: &[Component],
        strict: bool,
    ) -> Result<Vec<ClientQuota>, QuotaError> {
        let mut exact: BTreeMap<&str, Option<&str>> = BTreeMap::new();
        let mut any: Vec<&str> = Vec::new();
        for c in components {
            let t = c.entity_type.as_str();
            if t.is_empty() {
                return Err(invalid("Invalid empty entity type."));
            }
            if exact.contains_key(t) || any.contains(&t) {
                return Err(invalid(format!(
                    "Entity type {t} cannot appear more than once in the filter."
                )));
            }
            if ![IP, USER, CLIENT_ID].contains(&t) {
                return Err(QuotaError::UnsupportedVersion(format!(
                    "Unsupported entity type {t}"
                )));
            }
            match c.match_type {
                MATCH_EXACT => match &c.name {
                    None => {
                        return Err(invalid(
                            "Request specified MATCH_TYPE_EXACT, but set match string to null.",
                        ))
                    }
                    Some(n) => {
                        exact.insert(t, Some(n.as_str()));
                    }
                },
                MATCH_DEFAULT if c.name.is_some() => {
                    return Err(invalid(
                        "Request specified MATCH_TYPE_DEFAULT, but also specified a match string.",
                    ))
                }
                MATCH_DEFAULT => {
                    exact.insert(t, None);
                }
                MATCH_SPECIFIED if c.name.is_some() => return Err(invalid(
                    "Request specified MATCH_TYPE_SPECIFIED, but also specified a match string.",
                )),
                MATCH_SPECIFIED => any.push(t),
                other => return Err(invalid(format!("Unknown match type {other}"))),
            }
        }
        let has = |t: &str| exact.contains_key(t) || any.contains(&t);
        if has(IP) && (has(USER) || has(CLIENT_ID)) {
            return Err(invalid(
                "Invalid entity filter component combination. IP filter component should not be \
                 used with user or clientId filter component.",
            ));
        }
        let matches = |client_id: Option<&str>| {
            // The entity is {client-id: client_id}.
            if strict && exact.len() + any.len() != 1 {
                return false;
            }
            exact
                .iter()
                .all(|(t, n)| *t == CLIENT_ID && *n == client_id)
                && any.iter().all(|t| *t == CLIENT_ID)
        };
        Ok(self
            .list()
            .into_iter()
            .filter(|q| matches(q.client_id.as_deref()))
            .collect())
    }

    /// AlterClientQuotas: validates every entity (Kafka's
    /// `ClientQuotaControlManager` rules), then, unless `validate_only`,
    /// persists the valid ones in one synced write and publishes them. One
    /// result per distinct entity, in request order. An entity named twice is
    /// refused both times (Kafka applies its first occurrence).
    pub fn alter(&self, alterations: Vec<Alteration>, validate_only: bool) -> Vec<AlterResult> {
        let _writer = self.writer.lock();
        let current = self.snapshot();
        let mut next = (*current).clone();
        // entity (as a map, as Kafka parses it) -> its client id, or why it is refused
        type Outcome = Result<Option<String>, QuotaError>;
        let mut outcomes: IndexMap<BTreeMap<String, Option<String>>, Outcome> = IndexMap::new();
        for alt in alterations {
            let entity: BTreeMap<String, Option<String>> = alt.entity.into_iter().collect();
            if let Some(prev) = outcomes.get_mut(&entity) {
                if let Ok(client_id) = prev {
                    let id = client_id.as_deref();
                    next.set(id, current.get(id));
                }
                *prev = Err(invalid(format!(
                    "Ignoring duplicate entity {}",
                    entity_text(&entity)
                )));
                continue;
            }
            let outcome = alter_entity(&mut next, &entity, &alt.ops);
            outcomes.insert(entity, outcome);
        }
        let changed: Vec<Option<String>> = outcomes
            .values()
            .filter_map(|o| o.as_ref().ok().cloned())
            .filter(|id| next.get(id.as_deref()) != current.get(id.as_deref()))
            .collect();
        if !validate_only && !changed.is_empty() {
            match self.persist(&next, &changed) {
                Ok(()) => {
                    for id in &changed {
                        let l = next.get(id.as_deref());
                        tracing::info!(
                            client_id = id.as_deref().unwrap_or("<default>"),
                            producer_byte_rate = ?l.producer_byte_rate,
                            consumer_byte_rate = ?l.consumer_byte_rate,
                            "client quota altered"
                        );
                    }
                    self.publish(next);
                }
                Err(e) => {
                    tracing::error!("persisting client quotas: {e}");
                    let msg = e.to_string();
                    for o in outcomes.values_mut() {
                        if o.is_ok() {
                            *o = Err(QuotaError::Store(msg.clone()));
                        }
                    }
                }
            }
        }
        outcomes
            .into_iter()
            .map(|(entity, o)| AlterResult {
                entity: entity.into_iter().collect(),
                result: o.map(|_| ()),
            })
            .collect()
    }

    /// Replaces the limits of one client-id entity (the console's PUT): a
    /// limit not given is removed; an entity left without limits disappears.
    pub fn set(&self, client_id: Option<&str>, limits: Limits) -> Result<ClientQuota, QuotaError> {
        let ops = vec![
            (PRODUCER_BYTE_RATE.to_string(), limits.producer_byte_rate),
            (CONSUMER_BYTE_RATE.to_string(), limits.consumer_byte_rate),
        ];
        let alt = Alteration {
            entity: vec![(CLIENT_ID.to_string(), client_id.map(str::to_string))],
            ops,
        };
        let mut results = self.alter(vec![alt], false);
        results.pop().expect("one result per entity").result?;
        Ok(ClientQuota {
            client_id: client_id.map(str::to_string),
            limits: self.snapshot().get(client_id),
        })
    }

    fn persist(&self, next: &Table, changed: &[Option<String>]) -> Result<(), StoreError> {
        let db = self.store.db();
        let cf = self.store.cf(CF_QUOTAS);
        let mut batch = rocksdb::WriteBatch::default();
        for id in changed {
            let key = store_key(id.as_deref());
            let limits = next.get(id.as_deref());
            if limits.is_empty() {
                batch.delete_cf(cf, key.as_bytes());
            } else {
                let value = ClientQuota {
                    client_id: id.clone(),
                    limits,
                };
                let bytes =
                    serde_json::to_vec(&value).expect("serializing plain structs cannot fail");
                batch.put_cf(cf, key.as_bytes(), bytes);
            }
        }
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(true);
        db.write_opt(batch, &opts)?;
        Ok(())
    }
}

/// Kafka's text for an entity in messages: `{client-id=x}`, `<default>` for a null name.
fn entity_text(entity: &BTreeMap<String, Option<String>>) -> String {
    let mut s = String::from("{");
    for (i, (t, n)) in entity.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{t}={}", n.as_deref().unwrap_or("<default>"));
    }
    s.push('}');
    s
}

/// Validates one entity's alteration and applies it to `next`; answers its client id.
fn alter_entity(
    next: &mut Table,
    entity: &BTreeMap<String, Option<String>>,
    ops: &[(String, Option<f64>)],
) -> Result<Option<String>, QuotaError> {
    if entity.is_empty() {
        return Err(invalid("Invalid empty client quota entity"));
    }
    for (t, n) in entity {
        if ![USER, CLIENT_ID, IP].contains(&t.as_str()) {
            return Err(invalid(format!("Unhandled client quota entity type: {t}")));
        }
        if n.as_deref() == Some("") {
            return Err(invalid(format!("Empty {t} not supported")));
        }
    }
    if let Some(t) = entity.keys().find(|t| t.as_str() != CLIENT_ID) {
        return Err(invalid(format!(
            "Kairos supports client-id quotas only: entity type {t} is not supported ({})",
            entity_text(entity)
        )));
    }
    let client_id = entity[CLIENT_ID].clone();
    if let Some(n) = &client_id {
        if n.len() > MAX_CLIENT_ID_BYTES {
            return Err(invalid(format!(
                "client-id is {} bytes long; at most {MAX_CLIENT_ID_BYTES} are supported",
                n.len()
            )));
        }
    }
    let mut seen: Vec<&str> = Vec::with_capacity(ops.len());
    for (key, _) in ops {
        if seen.contains(&key.as_str()) {
            return Err(invalid(format!(
                "Duplicate quota key {key} not updating quota for this entity {}",
                entity_text(entity)
            )));
        }
        seen.push(key);
    }
    let before = next.get(client_id.as_deref());
    let mut limits = before;
    for (key, value) in ops {
        match value {
            // Removing a key the entity does not have (or that does not exist) does nothing.
            None => {
                if let Some(slot) = limits.slot(key) {
                    *slot = None;
                }
            }
            Some(v) => {
                validate_value(key, *v)?;
                *limits.slot(key).expect("validated key") = Some(*v);
            }
        }
    }
    let new_entity = before.is_empty() && !limits.is_empty() && client_id.is_some();
    if new_entity && next.named.len() >= MAX_ENTITIES {
        return Err(invalid(format!(
            "at most {MAX_ENTITIES} client quota entities are supported"
        )));
    }
    next.set(client_id.as_deref(), limits);
    Ok(client_id)
}

/// Kafka's `validateQuotaKeyValue` for the LONG byte-rate keys.
pub fn validate_value(key: &str, value: f64) -> Result<(), QuotaError> {
    if UNSUPPORTED_KEYS.contains(&key) {
        return Err(invalid(format!(
            "Quota {key} is not supported by Kairos (only {PRODUCER_BYTE_RATE} and {CONSUMER_BYTE_RATE})"
        )));
    }
    if key != PRODUCER_BYTE_RATE && key != CONSUMER_BYTE_RATE {
        return Err(invalid(format!("Invalid configuration key {key}")));
    }
    if !value.is_finite() {
        return Err(invalid(format!("Quota {key} must be a finite number")));
    }
    if value <= 0.0 {
        return Err(invalid(format!("Quota {key} must be greater than 0")));
    }
    if value > i64::MAX as f64 {
        return Err(invalid(format!(
            "Proposed value for {key} is too large for a LONG."
        )));
    }
    if (value % 1.0).abs() > 1e-6 {
        return Err(invalid(format!("{key} cannot be a fractional value.")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> Quotas {
        Quotas::open(Arc::new(MetaStore::open(dir).unwrap())).unwrap()
    }

    fn cid(name: Option<&str>) -> Entity {
        vec![(CLIENT_ID.to_string(), name.map(str::to_string))]
    }

    fn set_op(key: &str, v: f64) -> (String, Option<f64>) {
        (key.to_string(), Some(v))
    }

    fn alter_one(
        q: &Quotas,
        entity: Entity,
        ops: Vec<(String, Option<f64>)>,
    ) -> Result<(), String> {
        let mut r = q.alter(vec![Alteration { entity, ops }], false);
        assert_eq!(r.len(), 1);
        r.pop().unwrap().result.map_err(|e| e.to_string())
    }

    #[test]
    fn exact_then_default_then_unlimited_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path());
        assert_eq!(q.resolve(QuotaKind::Produce, Some("a")), None);
        alter_one(&q, cid(None), vec![set_op(PRODUCER_BYTE_RATE, 1000.0)]).unwrap();
        alter_one(&q, cid(Some("a")), vec![set_op(CONSUMER_BYTE_RATE, 50.0)]).unwrap();
        alter_one(&q, cid(Some("b")), vec![set_op(PRODUCER_BYTE_RATE, 7.0)]).unwrap();
        // "a" has only a fetch quota: its produce quota is the default's.
        assert_eq!(
            q.resolve(QuotaKind::Produce, Some("a")),
            Some((1000.0, true))
        );
        assert_eq!(q.resolve(QuotaKind::Fetch, Some("a")), Some((50.0, false)));
        assert_eq!(q.resolve(QuotaKind::Produce, Some("b")), Some((7.0, false)));
        assert_eq!(q.resolve(QuotaKind::Fetch, Some("b")), None);
        assert_eq!(
            q.resolve(QuotaKind::Produce, Some("zz")),
            Some((1000.0, true))
        );
        // No client id: never limited (Kafka's default callback).
        assert_eq!(q.resolve(QuotaKind::Produce, None), None);
        assert_eq!(q.resolve(QuotaKind::Produce, Some("")), None);
        assert_eq!(q.max_fetch_bytes(Some("a")), Some(500));
        assert_eq!(q.max_fetch_bytes(Some("b")), None);
    }

    #[test]
    fn quotas_survive_a_reopen_and_removal_deletes() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = open(dir.path());
            alter_one(&q, cid(Some("x")), vec![set_op(PRODUCER_BYTE_RATE, 100.0)]).unwrap();
            alter_one(&q, cid(None), vec![set_op(CONSUMER_BYTE_RATE, 200.0)]).unwrap();
            alter_one(&q, cid(Some("gone")), vec![set_op(CONSUMER_BYTE_RATE, 1.0)]).unwrap();
            alter_one(
                &q,
                cid(Some("gone")),
                vec![(CONSUMER_BYTE_RATE.into(), None)],
            )
            .unwrap();
        }
        let q = open(dir.path());
        let all = q.list();
        assert_eq!(
            all,
            vec![
                ClientQuota {
                    client_id: None,
                    limits: Limits {
                        producer_byte_rate: None,
                        consumer_byte_rate: Some(200.0)
                    }
                },
                ClientQuota {
                    client_id: Some("x".into()),
                    limits: Limits {
                        producer_byte_rate: Some(100.0),
                        consumer_byte_rate: None
                    }
                },
            ]
        );
        let stored = q.store.scan_json::<ClientQuota>(CF_QUOTAS).unwrap();
        let keys: Vec<_> = stored.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["client-id", "client-id=x"]);
    }

    #[test]
    fn validate_only_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path());
        let r = q.alter(
            vec![Alteration {
                entity: cid(Some("v")),
                ops: vec![set_op(PRODUCER_BYTE_RATE, 10.0)],
            }],
            true,
        );
        assert!(r[0].result.is_ok());
        assert!(q.list().is_empty());
        assert!(q
            .store
            .scan_json::<ClientQuota>(CF_QUOTAS)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn kafkas_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path());
        let p = |v| vec![set_op(PRODUCER_BYTE_RATE, v)];
        let user = vec![(USER.to_string(), Some("alice".to_string()))];
        let err = alter_one(&q, user, p(1.0)).unwrap_err();
        assert!(err.contains("entity type user is not supported"), "{err}");
        let ip = vec![(IP.to_string(), None)];
        assert!(alter_one(&q, ip, p(1.0)).is_err());
        let both = vec![
            (USER.to_string(), None),
            (CLIENT_ID.to_string(), Some("c".to_string())),
        ];
        assert!(alter_one(&q, both, p(1.0)).is_err());
        let err = alter_one(&q, vec![("group".into(), None)], p(1.0)).unwrap_err();
        assert_eq!(err, "Unhandled client quota entity type: group");
        let err = alter_one(&q, vec![], p(1.0)).unwrap_err();
        assert_eq!(err, "Invalid empty client quota entity");
        let err = alter_one(&q, cid(Some("")), p(1.0)).unwrap_err();
        assert_eq!(err, "Empty client-id not supported");
        let long = "x".repeat(MAX_CLIENT_ID_BYTES + 1);
        assert!(alter_one(&q, cid(Some(&long)), p(1.0)).is_err());
        let ok = "x".repeat(MAX_CLIENT_ID_BYTES);
        alter_one(&q, cid(Some(&ok)), p(1.0)).unwrap();
        for (v, msg) in [
            (0.0, "Quota producer_byte_rate must be greater than 0"),
            (-5.0, "Quota producer_byte_rate must be greater than 0"),
            (1.5, "producer_byte_rate cannot be a fractional value."),
            (f64::NAN, "Quota producer_byte_rate must be a finite number"),
            (
                1e300,
                "Proposed value for producer_byte_rate is too large for a LONG.",
            ),
        ] {
            assert_eq!(alter_one(&q, cid(Some("c")), p(v)).unwrap_err(), msg);
        }
        let err =
            alter_one(&q, cid(Some("c")), vec![set_op("request_percentage", 50.0)]).unwrap_err();
        assert!(err.contains("not supported by Kairos"), "{err}");
        let err = alter_one(&q, cid(Some("c")), vec![set_op("bogus", 5.0)]).unwrap_err();
        assert_eq!(err, "Invalid configuration key bogus");
        let err = alter_one(
            &q,
            cid(Some("c")),
            vec![
                set_op(PRODUCER_BYTE_RATE, 5.0),
                set_op(PRODUCER_BYTE_RATE, 6.0),
            ],
        )
        .unwrap_err();
        assert!(err.starts_with("Duplicate quota key"), "{err}");
        // Removing an unknown key is accepted and does nothing, as in Kafka.
        alter_one(&q, cid(Some("c")), vec![("bogus".into(), None)]).unwrap();
        assert_eq!(q.list().len(), 1);
    }

    #[test]
    fn one_result_per_entity_and_duplicates_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path());
        let r = q.alter(
            vec![
                Alteration {
                    entity: cid(Some("d")),
                    ops: vec![set_op(PRODUCER_BYTE_RATE, 10.0)],
                },
                Alteration {
                    entity: cid(Some("ok")),
                    ops: vec![set_op(PRODUCER_BYTE_RATE, 10.0)],
                },
                Alteration {
                    entity: cid(Some("d")),
                    ops: vec![set_op(PRODUCER_BYTE_RATE, 20.0)],
                },
                Alteration {
                    entity: cid(Some("bad")),
                    ops: vec![set_op(PRODUCER_BYTE_RATE, -1.0)],
                },
            ],
            false,
        );
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].entity, cid(Some("d")));
        assert!(r[0]
            .result
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("duplicate"));
        assert!(r[1].result.is_ok());
        assert!(r[2].result.is_err());
        let ids: Vec<_> = q.list().into_iter().map(|e| e.client_id).collect();
        assert_eq!(ids, vec![Some("ok".to_string())]);
    }

    #[test]
    fn describe_filters_like_kafka() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path());
        alter_one(&q, cid(None), vec![set_op(PRODUCER_BYTE_RATE, 1.0)]).unwrap();
        alter_one(&q, cid(Some("a")), vec![set_op(PRODUCER_BYTE_RATE, 2.0)]).unwrap();
        alter_one(&q, cid(Some("b")), vec![set_op(CONSUMER_BYTE_RATE, 3.0)]).unwrap();
        let c = |t: &str, m: i8, n: Option<&str>| Component {
            entity_type: t.into(),
            match_type: m,
            name: n.map(str::to_string),
        };
        let ids = |r: Vec<ClientQuota>| r.into_iter().map(|e| e.client_id).collect::<Vec<_>>();
        let all = ids(q.describe(&[], false).unwrap());
        assert_eq!(all, vec![None, Some("a".into()), Some("b".into())]);
        // strict with no component: only entities with no type at all, i.e. none.
        assert!(q.describe(&[], true).unwrap().is_empty());
        let r = q
            .describe(&[c(CLIENT_ID, MATCH_EXACT, Some("a"))], true)
            .unwrap();
        assert_eq!(ids(r), vec![Some("a".into())]);
        let r = q
            .describe(&[c(CLIENT_ID, MATCH_DEFAULT, None)], false)
            .unwrap();
        assert_eq!(ids(r), vec![None]);
        let r = q
            .describe(&[c(CLIENT_ID, MATCH_SPECIFIED, None)], true)
            .unwrap();
        assert_eq!(ids(r).len(), 3);
        // A user component matches nothing here (no user entities exist).
        let r = q
            .describe(&[c(USER, MATCH_SPECIFIED, None)], false)
            .unwrap();
        assert!(r.is_empty());
        let r = q
            .describe(
                &[
                    c(USER, MATCH_SPECIFIED, None),
                    c(CLIENT_ID, MATCH_SPECIFIED, None),
                ],
                false,
            )
            .unwrap();
        assert!(r.is_empty());
        assert!(matches!(
            q.describe(&[c("group", MATCH_SPECIFIED, None)], false),
            Err(QuotaError::UnsupportedVersion(_))
        ));
        for bad in [
            vec![c(CLIENT_ID, MATCH_EXACT, None)],
            vec![c(CLIENT_ID, MATCH_DEFAULT, Some("x"))],
            vec![c(CLIENT_ID, MATCH_SPECIFIED, Some("x"))],
            vec![c(CLIENT_ID, 7, None)],
            vec![c("", MATCH_SPECIFIED, None)],
            vec![
                c(CLIENT_ID, MATCH_SPECIFIED, None),
                c(CLIENT_ID, MATCH_DEFAULT, None),
            ],
            vec![
                c(IP, MATCH_SPECIFIED, None),
                c(CLIENT_ID, MATCH_DEFAULT, None),
            ],
        ] {
            assert!(
                matches!(q.describe(&bad, false), Err(QuotaError::InvalidRequest(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn recording_throttles_over_the_quota_only() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path());
        alter_one(
            &q,
            cid(Some("slow")),
            vec![set_op(PRODUCER_BYTE_RATE, 1000.0)],
        )
        .unwrap();
        // 10 s of credit: 10,000 bytes pass, the next 1,000 cost 1 s.
        let v = q.record(QuotaKind::Produce, Some("slow"), 10_000, 0);
        assert_eq!(v, Verdict::default());
        let v = q.record(QuotaKind::Produce, Some("slow"), 1_000, 0);
        assert_eq!(v.throttle_ms, 1000);
        assert!(!v.default_entity);
        // Other client ids and the fetch side are not limited.
        assert_eq!(
            q.record(QuotaKind::Produce, Some("fast"), 1 << 30, 0)
                .throttle_ms,
            0
        );
        assert_eq!(
            q.record(QuotaKind::Fetch, Some("slow"), 1 << 30, 0)
                .throttle_ms,
            0
        );
        // Taking the bytes back brings it under again.
        q.unrecord(QuotaKind::Produce, Some("slow"), 1_000, 0);
        assert_eq!(
            q.record(QuotaKind::Produce, Some("slow"), 0, 0).throttle_ms,
            0
        );
        // Raising the quota applies to the measured rate at once.
        alter_one(&q, cid(Some("slow")), vec![set_op(PRODUCER_BYTE_RATE, 1e9)]).unwrap();
        assert_eq!(
            q.record(QuotaKind::Produce, Some("slow"), 10_000, 0)
                .throttle_ms,
            0
        );
    }

    #[test]
    fn idle_rates_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path());
        alter_one(&q, cid(None), vec![set_op(PRODUCER_BYTE_RATE, 1000.0)]).unwrap();
        for i in 0..100 {
            q.record(QuotaKind::Produce, Some(&format!("c{i}")), 1, 0);
        }
        assert_eq!(q.rates.lock().len(), 100);
        q.record(QuotaKind::Produce, Some("late"), 1, 60_000);
        assert_eq!(q.rates.lock().len(), 1);
    }
}
