//! Metrics probe: the hot paths call domain verbs (`produced`, `fetched`);
//! this file alone knows metric names. Names carry their unit last.

use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{counter, gauge};

use crate::broker::Broker;

/// A group's lag on one partition: high watermark minus committed offset.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Lag {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    pub high_watermark: i64,
    pub lag: i64,
}

/// Lag of every committed partition whose topic (or view) still exists. A view's
/// offsets are its source's, so its lag is measured against the source's high watermark.
pub fn group_lags(broker: &Broker) -> Vec<Lag> {
    broker
        .groups
        .all_committed()
        .into_iter()
        .filter_map(|(group, topic, partition, c)| {
            let hw = broker
                .read_topic(&topic)?
                .0
                .partition(partition)?
                .log
                .high_watermark();
            Some(Lag {
                group,
                topic,
                partition,
                committed: c.offset,
                high_watermark: hw,
                lag: (hw - c.offset).max(0),
            })
        })
        .collect()
}

/// Broker-wide traffic totals the console's overview reads back (Prometheus
/// counters cannot be read): plain atomics, bumped next to the counters.
#[derive(Default)]
pub struct Traffic {
    produce_bytes: AtomicU64,
    produce_records: AtomicU64,
    fetch_bytes: AtomicU64,
    pub connections: AtomicU64,
}

/// A snapshot of [`Traffic`].
pub struct TrafficTotals {
    pub produce_bytes: u64,
    pub produce_records: u64,
    pub fetch_bytes: u64,
    pub connections: u64,
}

#[derive(Default)]
pub struct Probe {
    traffic: Traffic,
}

impl Probe {
    pub fn new() -> Probe {
        Probe::default()
    }

    /// Totals since start, for the console's overview.
    pub fn counters(&self) -> TrafficTotals {
        let t = &self.traffic;
        TrafficTotals {
            produce_bytes: t.produce_bytes.load(Ordering::Relaxed),
            produce_records: t.produce_records.load(Ordering::Relaxed),
            fetch_bytes: t.fetch_bytes.load(Ordering::Relaxed),
            connections: t.connections.load(Ordering::Relaxed),
        }
    }

    pub fn produced(&self, bytes: usize, records: i64) {
        self.traffic
            .produce_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.traffic
            .produce_records
            .fetch_add(records.max(0) as u64, Ordering::Relaxed);
        counter!("kairos_produce_bytes_total").increment(bytes as u64);
        counter!("kairos_produce_records_total").increment(records.max(0) as u64);
    }

    pub fn produce_failed(&self) {
        counter!("kairos_produce_errors_total").increment(1);
    }

    pub fn fetched(&self, bytes: usize) {
        self.traffic
            .fetch_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        counter!("kairos_fetch_bytes_total").increment(bytes as u64);
    }

    /// Gauges computed on scrape rather than on every write.
    pub fn sample_gauges(&self, broker: &Broker) {
        let topics = broker.topics.list();
        gauge!("kairos_topics").set(topics.len() as f64);
        let mut size = 0u64;
        let mut partitions = 0usize;
        for t in &topics {
            for p in t.partitions() {
                partitions += 1;
                size += p.log.size_bytes();
            }
        }
        gauge!("kairos_partitions").set(partitions as f64);
        gauge!("kairos_log_size_bytes").set(size as f64);
        for lag in group_lags(broker) {
            let labels = [
                ("group", lag.group),
                ("topic", lag.topic),
                ("partition", lag.partition.to_string()),
            ];
            gauge!("kairos_group_committed_offset", &labels).set(lag.committed as f64);
            gauge!("kairos_group_lag_records", &labels).set(lag.lag as f64);
        }
    }
}
