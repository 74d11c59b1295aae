//! Shared helpers: a real broker in this process on ephemeral ports, with a
//! temp data dir, and rdkafka (librdkafka) clients pointed at it.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use kairos::{Broker, BrokerConfig, BrokerHandle};
use rdkafka::config::ClientConfig;

pub async fn start(data_dir: &Path, tweak: impl FnOnce(&mut BrokerConfig)) -> BrokerHandle {
    let mut cfg = BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        console: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        ..BrokerConfig::default()
    };
    tweak(&mut cfg);
    Broker::start(cfg).await.expect("broker starts")
}

pub fn client_config(h: &BrokerHandle) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", h.kafka_addr.to_string());
    c
}

pub const TIMEOUT: Duration = Duration::from_secs(10);
