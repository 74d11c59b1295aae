//! The broker as a library: start everything from a [`BrokerConfig`], hand
//! back a handle that knows the bound addresses and shuts down cleanly.
//!
//! Startup: data dir -> clean-shutdown marker -> metadata store -> topic
//! registry (opens and, after a crash, recovers every log) -> Kafka listener,
//! console, background tasks (retention, periodic fsync).
//! Shutdown: stop accepting, drain in-flight requests, fsync and close every
//! log, write the clean-shutdown marker.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{BrokerConfig, FsyncPolicy};
use crate::console::{self, Probe};
use crate::delay::Delays;
use crate::filter::views::{View, Views};
use crate::groups::GroupCoordinator;
use crate::quotas::Quotas;
use crate::store::MetaStore;
use crate::topics::Topic;
use crate::topics::TopicRegistry;
use crate::txn::{TxnCoordinator, TxnEffects, TxnOffset};
use crate::util::now_ms;

const CLEAN_SHUTDOWN_MARKER: &str = ".kairos-clean-shutdown";

/// Shared state every connection and task sees.
pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    pub store: Arc<MetaStore>,
    pub topics: TopicRegistry,
    pub groups: Arc<GroupCoordinator>,
    /// Producer ids and the transaction coordinator.
    pub txns: TxnCoordinator,
    /// Delay topics: the timing wheel and its worker.
    pub delays: Delays,
    /// Views: read-only topics made of a source topic and a script.
    pub views: Views,
    /// Client quotas: produce/fetch byte rates per client id.
    pub quotas: Quotas,
    pub probe: Probe,
    /// Wall-clock start (ms since the epoch), for the console.
    pub started_at_ms: i64,
    /// Becomes true when shutdown starts: long waits (fetch long-poll) end early.
    pub stopping: watch::Receiver<bool>,
}

pub struct BrokerHandle {
    pub broker: Arc<Broker>,
    pub kafka_addr: SocketAddr,
    pub console_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Broker {
    /// Opens the data directory and starts serving. Addresses with port 0
    /// get an ephemeral port (see [`BrokerHandle::kafka_addr`]).
    pub async fn start(mut config: BrokerConfig) -> anyhow::Result<BrokerHandle> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
        let marker: PathBuf = config.data_dir.join(CLEAN_SHUTDOWN_MARKER);
        let clean = marker.exists();
        let store = Arc::new(
            MetaStore::open(&config.data_dir.join("meta")).context("opening metadata store")?,
        );
        if clean {
            std::fs::remove_file(&marker).context("removing clean-shutdown marker")?;
        } else {
            tracing::warn!("no clean-shutdown marker: recovering logs");
        }
        let cluster_id = store.cluster_id()?;
        let topics = {
            let store = store.clone();
            let dir = config.data_dir.clone();
            let defaults = config.topic_defaults.clone();
            tokio::task::spawn_blocking(move || TopicRegistry::open(store, &dir, defaults, clean))
                .await??
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let kafka_addr = listener.local_addr()?;
        config.listen = kafka_addr;
        let console_listener = TcpListener::bind(config.console)
            .await
            .with_context(|| format!("binding console {}", config.console))?;
        let console_addr = console_listener.local_addr()?;
        config.console = console_addr;

        config.groups.sync_commits = config.fsync == FsyncPolicy::Always;
        let groups = GroupCoordinator::open(store.clone(), config.groups.clone())?;
        let txns = TxnCoordinator::open(store.clone(), config.fsync == FsyncPolicy::Always)?;
        let delays = Delays::open(
            store.clone(),
            config.delay_max_ms,
            config.fsync == FsyncPolicy::Always,
        );
        let views = Views::open(store.clone())?;
        let quotas = Quotas::open(store.clone())?;
        let (tx, rx) = watch::channel(false);
        let broker = Arc::new(Broker {
            config,
            cluster_id,
            store,
            topics,
            groups: groups.clone(),
            txns,
            delays,
            views,
            quotas,
            probe: Probe::new(),
            started_at_ms: crate::util::now_ms(),
            stopping: rx.clone(),
        });
        // Transactions a crash left half-ended are completed before anyone connects.
        broker.txns.recover(&*broker);
        let tasks = vec![
            tokio::spawn(crate::protocol::serve(listener, broker.clone(), rx.clone())),
            tokio::spawn(console::serve(console_listener, broker.clone(), rx.clone())),
            tokio::spawn(retention_task(broker.clone(), rx.clone())),
            tokio::spawn(flush_task(broker.clone(), rx.clone())),
            tokio::spawn(txn_timeout_task(broker.clone(), rx.clone())),
            tokio::spawn(delay_task(broker.clone(), rx.clone())),
            tokio::spawn(groups.run(rx)),
        ];
        tracing::info!(%kafka_addr, %console_addr, cluster_id = %broker.cluster_id, "kairos started");
        Ok(BrokerHandle {
            broker,
            kafka_addr,
            console_addr,
            shutdown: tx,
            tasks,
        })
    }
}

impl Broker {
    /// A topic as readers see it (Fetch, ListOffsets, offsets): the topic itself, or for a
    /// view its source topic and the view.
    pub fn read_topic(&self, name: &str) -> Option<(Arc<Topic>, Option<Arc<View>>)> {
        if let Some(t) = self.topics.get(name) {
            return Some((t, None));
        }
        let v = self.views.get(name)?;
        Some((self.topics.get(&v.source)?, Some(v)))
    }

    /// [`Broker::read_topic`] by topic (or view) id.
    pub fn read_topic_by_id(&self, id: &uuid::Uuid) -> Option<(Arc<Topic>, Option<Arc<View>>)> {
        if let Some(t) = self.topics.get_by_id(id) {
            return Some((t, None));
        }
        let v = self.views.get_by_id(id)?;
        Some((self.topics.get(&v.source)?, Some(v)))
    }

    /// Grows a topic to `count` partitions (CreatePartitions, the console); its delay
    /// topic, if it has one, grows with it (a delay topic has its target's count).
    pub fn add_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), crate::topics::TopicError> {
        self.topics.add_partitions(name, count, validate_only)?;
        let companion = format!("{name}{}", crate::delay::SUFFIX);
        if let Some(d) = self.topics.get(&companion) {
            if !validate_only && d.partition_count() < count {
                if let Err(e) = self.topics.add_partitions(&companion, count, false) {
                    tracing::error!(topic = %companion, "growing the delay topic with its target: {e}");
                }
            }
        }
        Ok(())
    }

    /// Deletes a topic with everything that refers to it (committed offsets).
    pub fn delete_topic(&self, name: &str) -> Result<uuid::Uuid, crate::topics::TopicError> {
        let id = self.topics.delete(name)?;
        if let Err(e) = self.groups.forget_topic(name) {
            tracing::error!(
                topic = name,
                "forgetting committed offsets of the deleted topic: {e}"
            );
        }
        Ok(id)
    }
}

impl BrokerHandle {
    /// Stops accepting, finishes in-flight requests, flushes, closes.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let broker = self.broker;
        let marker = broker.config.data_dir.join(CLEAN_SHUTDOWN_MARKER);
        let _ = tokio::task::spawn_blocking(move || {
            broker.topics.close_all();
            // Only after every log is closed may the next start skip recovery.
            if let Err(e) = std::fs::write(&marker, b"") {
                tracing::error!("writing clean-shutdown marker: {e}");
            }
        })
        .await;
        tracing::info!("kairos stopped");
    }
}

async fn retention_task(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_millis(broker.config.retention_check_interval_ms.max(100));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        let b = broker.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for p in b.topics.all_partitions() {
                match p.log.apply_retention(now_ms()) {
                    Ok(r) if r.segments_deleted > 0 => tracing::info!(
                        topic = %p.topic, partition = p.index,
                        "retention deleted {} segments ({} bytes); log start now {}",
                        r.segments_deleted, r.bytes_deleted, r.new_log_start_offset
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(topic = %p.topic, partition = p.index, "retention: {e}")
                    }
                }
            }
        })
        .await;
    }
}

/// Periodic fsync of partitions with unsynced data (`interval`, and under
/// `always` for acks=0/1 writes, which do not wait for their fsync).
async fn flush_task(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    if broker.config.fsync == FsyncPolicy::Never {
        return;
    }
    let period = Duration::from_millis(broker.config.fsync_interval_ms.max(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        let b = broker.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for p in b.topics.all_partitions() {
                if p.log.durable_offset() < p.log.log_end_offset() {
                    if let Err(e) = p.log.sync() {
                        tracing::error!(topic = %p.topic, partition = p.index, "fsync failed: {e}");
                    }
                }
            }
        })
        .await;
    }
}

/// Consumer groups see topics through this (the groups module does not know topics).
impl crate::groups::TopicLookup for TopicRegistry {
    fn topic(&self, name: &str) -> Option<(uuid::Uuid, i32)> {
        self.get(name).map(|t| (t.id, t.partition_count()))
    }

    fn topic_names(&self) -> Vec<String> {
        self.list().iter().map(|t| t.name.clone()).collect()
    }

    fn generation(&self) -> u64 {
        TopicRegistry::generation(self)
    }
}

/// The delay wheel's worker thread, stopped (and joined) at shutdown before the logs close.
async fn delay_task(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let b = broker.clone();
    let worker = tokio::task::spawn_blocking(move || crate::delay::run(b));
    let _ = stop.changed().await;
    broker.delays.stop();
    let _ = worker.await;
}

/// Aborts transactions that outlived their `transaction.timeout.ms`
/// (Kafka checks every 10 s; once a second here).
async fn txn_timeout_task(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
        let b = broker.clone();
        let _ = tokio::task::spawn_blocking(move || b.txns.abort_expired(&*b)).await;
    }
}

/// What ending a transaction does to logs and groups.
impl TxnEffects for Broker {
    fn partition_exists(&self, topic: &str, partition: i32) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|t| t.partition(partition).is_some())
    }

    fn write_marker(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), String> {
        let p = self
            .topics
            .get(topic)
            .and_then(|t| t.partition(partition))
            .ok_or_else(|| format!("{topic}-{partition} does not exist"))?;
        p.log
            .append_control(producer_id, epoch, commit, 0, now_ms())
            .map(|_| ())
            .map_err(|e| format!("marker to {topic}-{partition}: {e}"))
    }

    fn commit_offsets(&self, group: &str, offsets: &[TxnOffset]) -> Result<(), String> {
        let offsets = offsets
            .iter()
            .map(|o| crate::groups::CommitOffset {
                topic: o.topic.clone(),
                partition: o.partition,
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata: o.metadata.clone(),
            })
            .collect();
        self.groups
            .commit_transactional(group, offsets)
            .map_err(|e| format!("offsets of group {group}: {e}"))
    }
}
