//! Metrics probe: the hot paths call domain verbs (`produced`, `fetched`);
//! this file alone knows metric names. Names carry their unit last.

use metrics::{counter, gauge};

use crate::broker::Broker;

#[derive(Default)]
pub struct Probe;

impl Probe {
    pub fn new() -> Probe {
        Probe
    }

    pub fn produced(&self, bytes: usize, records: i64) {
        counter!("kairos_produce_bytes_total").increment(bytes as u64);
        counter!("kairos_produce_records_total").increment(records.max(0) as u64);
    }

    pub fn produce_failed(&self) {
        counter!("kairos_produce_errors_total").increment(1);
    }

    pub fn fetched(&self, bytes: usize) {
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
    }
}
