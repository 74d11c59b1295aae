//! The topic registry: which topics exist, their ids, partitions and config
//! overrides; creating, deleting, growing and reconfiguring them; opening each
//! partition's log at startup. Topic metadata is persisted in the `topics`
//! column family of the [`MetaStore`]; partition data lives in
//! `<data>/logs/<topic>-<partition>/`.
//!
//! Thread-safety: [`TopicRegistry`] is shared (`Arc`) by every connection.
//! Lookups are lock-free map reads; mutations (create, delete, grow, alter)
//! serialize on one admin mutex, which keeps them simple and they are rare.

pub mod config;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::console::PartitionProbe;
use crate::log::{LogError, PartitionLog};
use crate::store::{MetaStore, StoreError, CF_TOPICS};

pub use config::{ConfigSource, ConfigType, Resolver};

/// Upper bound on partitions per topic (a limit on what the network may ask for).
pub const MAX_PARTITIONS: i32 = 10_000;
/// Kafka's limit: 249 characters of [a-zA-Z0-9._-].
pub const MAX_TOPIC_NAME_LEN: usize = 249;

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("{0}")]
    InvalidName(String),
    #[error("Topic '{0}' already exists.")]
    AlreadyExists(String),
    #[error("This server does not host this topic-partition.")]
    Unknown,
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("Replication factor must be 1 (or -1 for the default) on a single broker, was {0}.")]
    InvalidReplicationFactor(i32),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("storage: {0}")]
    Io(String),
}

/// What is persisted per topic.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TopicRecord {
    id: Uuid,
    partitions: i32,
    configs: BTreeMap<String, String>,
}

/// One partition: its log. Single broker: always its own leader, epoch 0.
pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub log: PartitionLog,
    /// Its traffic counters for `/metrics`; they go with the partition.
    pub probe: PartitionProbe,
}

pub struct Topic {
    pub name: String,
    pub id: Uuid,
    state: RwLock<TopicState>,
}

struct TopicState {
    configs: BTreeMap<String, String>,
    partitions: Vec<Arc<Partition>>,
}

impl Topic {
    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        if index < 0 {
            return None;
        }
        self.state.read().partitions.get(index as usize).cloned()
    }

    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.state.read().partitions.clone()
    }

    pub fn partition_count(&self) -> i32 {
        self.state.read().partitions.len() as i32
    }

    /// The topic's config overrides (not the effective values).
    pub fn overrides(&self) -> BTreeMap<String, String> {
        self.state.read().configs.clone()
    }
}

pub struct TopicRegistry {
    store: Arc<MetaStore>,
    logs_dir: PathBuf,
    broker_defaults: BTreeMap<String, String>,
    topics: DashMap<String, Arc<Topic>>,
    by_id: DashMap<Uuid, Arc<Topic>>,
    admin: Mutex<()>,
    /// Moves on every create, delete and partition increase (consumer groups
    /// re-resolve their subscriptions only when it moved).
    generation: std::sync::atomic::AtomicU64,
}

/// Kafka's topic name rule.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::InvalidName(
            "Topic name is illegal, it can't be empty".into(),
        ));
    }
    if name == "." || name == ".." {
        return Err(TopicError::InvalidName(
            "Topic name cannot be \".\" or \"..\"".into(),
        ));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(TopicError::InvalidName(format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters, topic name: {name}"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(TopicError::InvalidName(format!(
            "Topic name {name} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        )));
    }
    Ok(())
}

impl TopicRegistry {
    /// Loads every persisted topic and opens (and if needed recovers) its logs.
    pub fn open(
        store: Arc<MetaStore>,
        data_dir: &Path,
        broker_defaults: BTreeMap<String, String>,
        clean_shutdown: bool,
    ) -> Result<TopicRegistry, TopicError> {
        let logs_dir = data_dir.join("logs");
        std::fs::create_dir_all(&logs_dir)
            .map_err(|e| TopicError::Io(format!("{}: {e}", logs_dir.display())))?;
        let reg = TopicRegistry {
            store,
            logs_dir,
            broker_defaults,
            topics: DashMap::new(),
            by_id: DashMap::new(),
            admin: Mutex::new(()),
            generation: Default::default(),
        };
        for (name, rec) in reg.store.scan_json::<TopicRecord>(CF_TOPICS)? {
            let mut parts = Vec::with_capacity(rec.partitions as usize);
            for p in 0..rec.partitions {
                parts.push(Arc::new(reg.open_partition(
                    &name,
                    p,
                    &rec.configs,
                    clean_shutdown,
                )?));
            }
            reg.insert(Arc::new(Topic {
                name: name.clone(),
                id: rec.id,
                state: RwLock::new(TopicState {
                    configs: rec.configs,
                    partitions: parts,
                }),
            }));
        }
        reg.remove_leftover_dirs();
        Ok(reg)
    }

    fn insert(&self, t: Arc<Topic>) {
        self.by_id.insert(t.id, t.clone());
        self.topics.insert(t.name.clone(), t);
        self.bump_generation();
    }

    fn bump_generation(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// See the field: a counter of changes to the set of topics and partitions.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn resolver(&self) -> Resolver<'_> {
        Resolver {
            broker_defaults: &self.broker_defaults,
        }
    }

    pub fn broker_defaults(&self) -> &BTreeMap<String, String> {
        &self.broker_defaults
    }

    fn partition_dir(&self, topic: &str, p: i32) -> PathBuf {
        self.logs_dir.join(format!("{topic}-{p}"))
    }

    fn open_partition(
        &self,
        topic: &str,
        index: i32,
        configs: &BTreeMap<String, String>,
        clean_shutdown: bool,
    ) -> Result<Partition, TopicError> {
        let dir = self.partition_dir(topic, index);
        let (log, report) =
            PartitionLog::open(&dir, self.resolver().log_config(configs), clean_shutdown)?;
        tracing::info!(topic, partition = index, "opened log: {report}");
        Ok(Partition {
            topic: topic.to_string(),
            index,
            log,
            probe: PartitionProbe::default(),
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.get(name).map(|t| t.clone())
    }

    pub fn get_by_id(&self, id: &Uuid) -> Option<Arc<Topic>> {
        self.by_id.get(id).map(|t| t.clone())
    }

    /// All topics, sorted by name.
    pub fn list(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<Arc<Topic>> = self.topics.iter().map(|e| e.value().clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Checks a create request without side effects.
    pub fn validate_create(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), TopicError> {
        validate_topic_name(name)?;
        if self.topics.contains_key(name) {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        if partitions < 1 || partitions > MAX_PARTITIONS {
            return Err(TopicError::InvalidPartitions(format!(
                "Number of partitions must be between 1 and {MAX_PARTITIONS}, was {partitions}."
            )));
        }
        if replication_factor != 1 && replication_factor != -1 {
            return Err(TopicError::InvalidReplicationFactor(replication_factor));
        }
        for (k, v) in configs {
            config::validate(k, v).map_err(TopicError::InvalidConfig)?;
        }
        Ok(())
    }

    /// Creates a topic. `partitions == -1` means the broker default.
    pub fn create(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        configs: BTreeMap<String, String>,
        default_partitions: i32,
    ) -> Result<Arc<Topic>, TopicError> {
        let partitions = if partitions == -1 {
            default_partitions
        } else {
            partitions
        };
        let _g = self.admin.lock();
        self.validate_create(name, partitions, replication_factor, &configs)?;
        // Names that differ only in '.' vs '_' collide in Kafka's metric names; Kafka refuses them.
        let norm = name.replace('.', "_");
        if let Some(other) = self
            .topics
            .iter()
            .find(|t| t.key().replace('.', "_") == norm)
        {
            return Err(TopicError::InvalidName(format!(
                "Topic '{name}' collides with existing topic: {}",
                other.key()
            )));
        }
        let mut parts = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            // A stale directory (e.g. from a crash during delete) must not leak old data into the new topic.
            let dir = self.partition_dir(name, p);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| TopicError::Io(format!("{}: {e}", dir.display())))?;
            }
            parts.push(Arc::new(self.open_partition(name, p, &configs, true)?));
        }
        let rec = TopicRecord {
            id: Uuid::new_v4(),
            partitions,
            configs: configs.clone(),
        };
        self.store.put_json(CF_TOPICS, name, &rec)?;
        let t = Arc::new(Topic {
            name: name.to_string(),
            id: rec.id,
            state: RwLock::new(TopicState {
                configs,
                partitions: parts,
            }),
        });
        self.insert(t.clone());
        tracing::info!(topic = name, partitions, id = %rec.id, "created topic");
        Ok(t)
    }

    pub fn delete(&self, name: &str) -> Result<Uuid, TopicError> {
        let _g = self.admin.lock();
        let t = self
            .topics
            .remove(name)
            .map(|(_, t)| t)
            .ok_or(TopicError::Unknown)?;
        self.by_id.remove(&t.id);
        self.bump_generation();
        self.store.delete(CF_TOPICS, name)?;
        // The metadata is gone: from here on the topic does not exist, even if
        // removing its files fails (leftover directories are removed at startup).
        for p in t.partitions() {
            let _ = p.log.close();
            let dir = self.partition_dir(name, p.index);
            let doomed = self
                .logs_dir
                .join(format!("{name}-{}.{}-delete", p.index, t.id.simple()));
            match std::fs::rename(&dir, &doomed) {
                Ok(()) => {
                    std::thread::spawn(move || {
                        let _ = std::fs::remove_dir_all(&doomed);
                    });
                }
                Err(e) => tracing::warn!("deleting {}: {e}", dir.display()),
            }
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(t.id)
    }

    /// Grows a topic to `count` partitions (CreatePartitions).
    pub fn add_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _g = self.admin.lock();
        let t = self.get(name).ok_or(TopicError::Unknown)?;
        let current = t.partition_count();
        if count <= current {
            return Err(TopicError::InvalidPartitions(format!(
                "Topic currently has {current} partitions, which is higher than the requested {count}."
            )));
        }
        if count > MAX_PARTITIONS {
            return Err(TopicError::InvalidPartitions(format!(
                "Number of partitions must be at most {MAX_PARTITIONS}."
            )));
        }
        if validate_only {
            return Ok(());
        }
        let configs = t.overrides();
        let mut new_parts = Vec::new();
        for p in current..count {
            let dir = self.partition_dir(name, p);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| TopicError::Io(format!("{}: {e}", dir.display())))?;
            }
            new_parts.push(Arc::new(self.open_partition(name, p, &configs, true)?));
        }
        self.store.put_json(
            CF_TOPICS,
            name,
            &TopicRecord {
                id: t.id,
                partitions: count,
                configs,
            },
        )?;
        t.state.write().partitions.extend(new_parts);
        self.bump_generation();
        tracing::info!(topic = name, from = current, to = count, "added partitions");
        Ok(())
    }

    /// Replaces (AlterConfigs) or edits (IncrementalAlterConfigs, already
    /// applied by the caller to a copy) the topic's overrides.
    pub fn set_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        for (k, v) in &configs {
            config::validate(k, v).map_err(TopicError::InvalidConfig)?;
        }
        let _g = self.admin.lock();
        let t = self.get(name).ok_or(TopicError::Unknown)?;
        if validate_only {
            return Ok(());
        }
        self.store.put_json(
            CF_TOPICS,
            name,
            &TopicRecord {
                id: t.id,
                partitions: t.partition_count(),
                configs: configs.clone(),
            },
        )?;
        let log_config = self.resolver().log_config(&configs);
        let mut st = t.state.write();
        st.configs = configs;
        for p in &st.partitions {
            p.log.set_config(log_config.clone());
        }
        Ok(())
    }

    /// Every partition of every topic.
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.topics.iter().flat_map(|t| t.partitions()).collect()
    }

    /// Flushes and closes every log (clean shutdown).
    pub fn close_all(&self) {
        for p in self.all_partitions() {
            if let Err(e) = p.log.close() {
                tracing::error!(topic = %p.topic, partition = p.index, "close: {e}");
            }
        }
    }

    /// Removes directories of deleted topics that a crash left behind.
    fn remove_leftover_dirs(&self) {
        let Ok(rd) = std::fs::read_dir(&self.logs_dir) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let known = name
                .rsplit_once('-')
                .and_then(|(t, p)| p.parse::<i32>().ok().map(|p| (t, p)))
                .and_then(|(t, p)| self.get(t).map(|topic| p < topic.partition_count()))
                .unwrap_or(false);
            if !known {
                tracing::warn!("removing leftover log directory {name}");
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("bad name!").is_err());
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }

    #[test]
    fn topics_survive_reopen_and_delete_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MetaStore::open(&dir.path().join("meta")).unwrap());
        let reg = TopicRegistry::open(store.clone(), dir.path(), BTreeMap::new(), true).unwrap();
        let mut cfg = BTreeMap::new();
        cfg.insert("retention.ms".to_string(), "1234".to_string());
        let t = reg.create("a", 3, -1, cfg, 1).unwrap();
        let id = t.id;
        assert!(matches!(
            reg.create("a", 1, 1, BTreeMap::new(), 1),
            Err(TopicError::AlreadyExists(_))
        ));
        assert!(matches!(
            reg.create("b", 1, 3, BTreeMap::new(), 1),
            Err(TopicError::InvalidReplicationFactor(3))
        ));
        reg.add_partitions("a", 5, false).unwrap();
        reg.create("gone", 1, 1, BTreeMap::new(), 1).unwrap();
        reg.delete("gone").unwrap();
        reg.close_all();
        drop(reg);
        let reg = TopicRegistry::open(store, dir.path(), BTreeMap::new(), true).unwrap();
        let t = reg.get("a").unwrap();
        assert_eq!(t.id, id);
        assert_eq!(t.partition_count(), 5);
        assert_eq!(t.overrides()["retention.ms"], "1234");
        assert!(reg.get("gone").is_none());
        assert!(reg.get_by_id(&id).is_some());
    }
}
