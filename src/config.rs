//! Broker configuration: the command line contract of DESIGN.md, an optional
//! TOML file with the same settings, and broker-level topic defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// When acknowledged data is fsynced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// acks=all produce waits for an fsync (group commit); acks=0/1 trigger it without waiting.
    Always,
    /// A background task fsyncs every dirty partition every `fsync_interval_ms`.
    Interval,
    /// Leave it to the OS page cache (Kafka's default): survives kill -9, not power loss.
    Never,
}

/// Everything the broker needs to start. `Default` is `kairos serve` with no flags.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub listen: SocketAddr,
    pub console: SocketAddr,
    pub data_dir: PathBuf,
    /// host:port given to clients in Metadata; defaults to the listen address.
    pub advertise: Option<String>,
    /// Partition count of auto-created topics (and CreateTopics with -1).
    pub default_partitions: i32,
    pub auto_create_topics: bool,
    pub fsync: FsyncPolicy,
    pub fsync_interval_ms: u64,
    /// `socket.request.max.bytes`: a larger frame closes the connection.
    pub max_request_bytes: usize,
    /// How often retention runs (`log.retention.check.interval.ms`).
    pub retention_check_interval_ms: u64,
    /// Broker-level topic config defaults (Kafka topic config names, e.g. "retention.ms").
    pub topic_defaults: BTreeMap<String, String>,
    /// Group coordinator settings (`group.initial.rebalance.delay.ms`, ...).
    pub groups: crate::groups::GroupConfig,
    /// Longest delay a delay record may ask for (`--delay-max-ms`, default 365 days).
    pub delay_max_ms: i64,
    /// Bearer token the console requires on mutating calls (`--console-token`); none: open.
    pub console_token: Option<String>,
}

pub const NODE_ID: i32 = 1;

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: "127.0.0.1:9092".parse().expect("static address"),
            console: "127.0.0.1:8080".parse().expect("static address"),
            data_dir: PathBuf::from("./data"),
            advertise: None,
            default_partitions: 1,
            auto_create_topics: true,
            fsync: FsyncPolicy::Interval,
            fsync_interval_ms: 1000,
            max_request_bytes: 100 * 1024 * 1024,
            retention_check_interval_ms: 30_000,
            topic_defaults: BTreeMap::new(),
            groups: crate::groups::GroupConfig::default(),
            delay_max_ms: crate::delay::DEFAULT_MAX_DELAY_MS,
            console_token: None,
        }
    }
}

/// The TOML file: the same settings as the flags, all optional, plus
/// `[topic_defaults]` with Kafka topic config names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub console: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub advertise: Option<String>,
    pub partitions: Option<i32>,
    pub auto_create: Option<bool>,
    pub fsync: Option<FsyncPolicy>,
    pub fsync_interval_ms: Option<u64>,
    pub max_request_bytes: Option<usize>,
    pub retention_check_interval_ms: Option<u64>,
    pub delay_max_ms: Option<i64>,
    pub console_token: Option<String>,
    /// Kafka's group.initial.rebalance.delay.ms (default 3000).
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Kafka's group.consumer.session.timeout.ms (default 45000; KIP-848 members).
    pub group_consumer_session_timeout_ms: Option<i32>,
    /// Kafka's group.consumer.heartbeat.interval.ms (default 5000; KIP-848 members).
    pub group_consumer_heartbeat_interval_ms: Option<i32>,
    #[serde(default, alias = "topic_defaults")]
    pub topic_defaults: BTreeMap<String, toml::Value>,
}

impl FileConfig {
    pub fn parse(text: &str) -> Result<FileConfig, toml::de::Error> {
        toml::from_str(text)
    }

    /// Applies the file over `cfg` (flags given explicitly are applied after this by the CLI).
    pub fn apply(self, cfg: &mut BrokerConfig) {
        if let Some(v) = self.listen {
            cfg.listen = v;
        }
        if let Some(v) = self.console {
            cfg.console = v;
        }
        if let Some(v) = self.data_dir {
            cfg.data_dir = v;
        }
        if let Some(v) = self.advertise {
            cfg.advertise = Some(v);
        }
        if let Some(v) = self.partitions {
            cfg.default_partitions = v;
        }
        if let Some(v) = self.auto_create {
            cfg.auto_create_topics = v;
        }
        if let Some(v) = self.fsync {
            cfg.fsync = v;
        }
        if let Some(v) = self.fsync_interval_ms {
            cfg.fsync_interval_ms = v;
        }
        if let Some(v) = self.max_request_bytes {
            cfg.max_request_bytes = v;
        }
        if let Some(v) = self.retention_check_interval_ms {
            cfg.retention_check_interval_ms = v;
        }
        if let Some(v) = self.delay_max_ms {
            cfg.delay_max_ms = v;
        }
        if let Some(v) = self.console_token {
            cfg.console_token = Some(v);
        }
        if let Some(v) = self.group_initial_rebalance_delay_ms {
            cfg.groups.initial_rebalance_delay_ms = v;
        }
        if let Some(v) = self.group_consumer_session_timeout_ms {
            cfg.groups.consumer_session_timeout_ms = v.max(1);
        }
        if let Some(v) = self.group_consumer_heartbeat_interval_ms {
            cfg.groups.consumer_heartbeat_interval_ms = v.max(1);
        }
        for (k, v) in self.topic_defaults {
            let s = match v {
                toml::Value::String(s) => s,
                other => other.to_string(),
            };
            cfg.topic_defaults.insert(k, s);
        }
    }
}

impl BrokerConfig {
    /// The (host, port) clients are told to connect to.
    pub fn advertised(&self) -> (String, i32) {
        if let Some(a) = &self.advertise {
            if let Some((h, p)) = a.rsplit_once(':') {
                if let Ok(port) = p.parse::<u16>() {
                    return (
                        h.trim_matches(|c| c == '[' || c == ']').to_string(),
                        port as i32,
                    );
                }
            }
        }
        (self.listen.ip().to_string(), self.listen.port() as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_file_overrides_defaults() {
        let f = FileConfig::parse(
            "listen = \"127.0.0.1:19092\"\nfsync = \"always\"\npartitions = 4\ngroup-initial-rebalance-delay-ms = 0\ngroup-consumer-session-timeout-ms = 10000\n[topic_defaults]\n\"retention.ms\" = 1000\n",
        )
        .unwrap();
        let mut c = BrokerConfig::default();
        f.apply(&mut c);
        assert_eq!(c.listen.port(), 19092);
        assert_eq!(c.fsync, FsyncPolicy::Always);
        assert_eq!(c.default_partitions, 4);
        assert_eq!(c.groups.initial_rebalance_delay_ms, 0);
        assert_eq!(c.groups.consumer_session_timeout_ms, 10000);
        assert_eq!(c.topic_defaults["retention.ms"], "1000");
    }

    #[test]
    fn unknown_toml_keys_are_refused() {
        assert!(FileConfig::parse("lisen = \"x\"").is_err());
    }

    #[test]
    fn advertise_overrides_listen() {
        let mut c = BrokerConfig::default();
        assert_eq!(c.advertised(), ("127.0.0.1".to_string(), 9092));
        c.advertise = Some("kairos.local:29092".into());
        assert_eq!(c.advertised(), ("kairos.local".to_string(), 29092));
    }
}
