//! Topic configs: the names Kafka users set, their types, defaults, validation,
//! the broker-level synonym of each, and the mapping to [`LogConfig`].
//!
//! A topic stores only its overrides; the effective value of a config is the
//! override, else the broker's `topic_defaults` (TOML), else the static default.

use std::collections::BTreeMap;

use crate::log::{LogConfig, TimestampType};

/// DescribeConfigs `config_type` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
}

/// DescribeConfigs `config_source` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic = 1,
    StaticBroker = 4,
    Default = 5,
}

impl ConfigSource {
    /// Kafka's name for the source (DescribeConfigs' `ConfigSource` enum).
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigSource::DynamicTopic => "DYNAMIC_TOPIC_CONFIG",
            ConfigSource::StaticBroker => "STATIC_BROKER_CONFIG",
            ConfigSource::Default => "DEFAULT_CONFIG",
        }
    }
}

pub struct ConfigDef {
    pub name: &'static str,
    /// The broker config that sets this topic config's default.
    pub broker_synonym: &'static str,
    pub kind: ConfigType,
    pub default: &'static str,
    /// Inclusive bounds for Int/Long.
    pub min: i64,
    pub doc: &'static str,
}

const LONG_MAX: &str = "9223372036854775807";

/// Every topic config Kairos accepts. Unknown names are refused (INVALID_CONFIG).
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        broker_synonym: "log.cleanup.policy",
        kind: ConfigType::List,
        default: "delete",
        min: 0,
        doc: "delete, compact, or compact,delete (compaction is enforced in a later release)",
    },
    ConfigDef {
        name: "compression.type",
        broker_synonym: "compression.type",
        kind: ConfigType::String,
        default: "producer",
        min: 0,
        doc: "batches are stored as the producer compressed them",
    },
    ConfigDef {
        name: "delete.retention.ms",
        broker_synonym: "log.cleaner.delete.retention.ms",
        kind: ConfigType::Long,
        default: "86400000",
        min: 0,
        doc: "how long delete tombstones are kept (compacted topics)",
    },
    ConfigDef {
        name: "file.delete.delay.ms",
        broker_synonym: "log.segment.delete.delay.ms",
        kind: ConfigType::Long,
        default: "60000",
        min: 0,
        doc: "delay before a deleted segment's file is removed",
    },
    ConfigDef {
        name: "flush.messages",
        broker_synonym: "log.flush.interval.messages",
        kind: ConfigType::Long,
        default: LONG_MAX,
        min: 1,
        doc: "accepted for compatibility; durability is set by --fsync",
    },
    ConfigDef {
        name: "flush.ms",
        broker_synonym: "log.flush.interval.ms",
        kind: ConfigType::Long,
        default: LONG_MAX,
        min: 0,
        doc: "accepted for compatibility; durability is set by --fsync",
    },
    ConfigDef {
        name: "index.interval.bytes",
        broker_synonym: "log.index.interval.bytes",
        kind: ConfigType::Int,
        default: "4096",
        min: 0,
        doc: "bytes of log between offset index entries",
    },
    ConfigDef {
        name: "max.compaction.lag.ms",
        broker_synonym: "log.cleaner.max.compaction.lag.ms",
        kind: ConfigType::Long,
        default: LONG_MAX,
        min: 1,
        doc: "compaction (later release)",
    },
    ConfigDef {
        name: "max.message.bytes",
        broker_synonym: "message.max.bytes",
        kind: ConfigType::Int,
        default: "1048588",
        min: 0,
        doc: "largest record batch accepted",
    },
    ConfigDef {
        name: "message.timestamp.after.max.ms",
        broker_synonym: "log.message.timestamp.after.max.ms",
        kind: ConfigType::Long,
        default: "3600000",
        min: 0,
        doc: "how far in the future a CreateTime timestamp may be",
    },
    ConfigDef {
        name: "message.timestamp.before.max.ms",
        broker_synonym: "log.message.timestamp.before.max.ms",
        kind: ConfigType::Long,
        default: LONG_MAX,
        min: 0,
        doc: "how far in the past a CreateTime timestamp may be",
    },
    ConfigDef {
        name: "message.timestamp.type",
        broker_synonym: "log.message.timestamp.type",
        kind: ConfigType::String,
        default: "CreateTime",
        min: 0,
        doc: "CreateTime or LogAppendTime",
    },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        broker_synonym: "log.cleaner.min.cleanable.ratio",
        kind: ConfigType::Double,
        default: "0.5",
        min: 0,
        doc: "compaction (later release)",
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        broker_synonym: "log.cleaner.min.compaction.lag.ms",
        kind: ConfigType::Long,
        default: "0",
        min: 0,
        doc: "compaction (later release)",
    },
    ConfigDef {
        name: "min.insync.replicas",
        broker_synonym: "min.insync.replicas",
        kind: ConfigType::Int,
        default: "1",
        min: 1,
        doc: "single broker: always satisfied by 1",
    },
    ConfigDef {
        name: "preallocate",
        broker_synonym: "log.preallocate",
        kind: ConfigType::Boolean,
        default: "false",
        min: 0,
        doc: "accepted for compatibility",
    },
    ConfigDef {
        name: "retention.bytes",
        broker_synonym: "log.retention.bytes",
        kind: ConfigType::Long,
        default: "-1",
        min: -1,
        doc: "size bound per partition; -1 unlimited",
    },
    ConfigDef {
        name: "retention.ms",
        broker_synonym: "log.retention.ms",
        kind: ConfigType::Long,
        default: "604800000",
        min: -1,
        doc: "time bound; -1 forever",
    },
    ConfigDef {
        name: "segment.bytes",
        broker_synonym: "log.segment.bytes",
        kind: ConfigType::Int,
        default: "1073741824",
        min: 1024,
        doc: "segment file size before a roll",
    },
    ConfigDef {
        name: "segment.index.bytes",
        broker_synonym: "log.index.size.max.bytes",
        kind: ConfigType::Int,
        default: "10485760",
        min: 4096,
        doc: "maximum index file size",
    },
    ConfigDef {
        name: "segment.jitter.ms",
        broker_synonym: "log.roll.jitter.ms",
        kind: ConfigType::Long,
        default: "0",
        min: 0,
        doc: "accepted for compatibility",
    },
    ConfigDef {
        name: "segment.ms",
        broker_synonym: "log.roll.ms",
        kind: ConfigType::Long,
        default: "604800000",
        min: 1,
        doc: "segment age before a roll",
    },
    ConfigDef {
        name: "unclean.leader.election.enable",
        broker_synonym: "unclean.leader.election.enable",
        kind: ConfigType::Boolean,
        default: "false",
        min: 0,
        doc: "single broker: no effect",
    },
];

pub fn def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one (name, value) pair; the error is the message clients see with INVALID_CONFIG.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let d = def(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
    let bad = || format!("Invalid value {value} for configuration {name}");
    match d.kind {
        ConfigType::Int | ConfigType::Short => {
            let v: i32 = value.trim().parse().map_err(|_| bad())?;
            if (v as i64) < d.min {
                return Err(format!(
                    "Invalid value {value} for configuration {name}: Value must be at least {}",
                    d.min
                ));
            }
        }
        ConfigType::Long => {
            let v: i64 = value.trim().parse().map_err(|_| bad())?;
            if v < d.min {
                return Err(format!(
                    "Invalid value {value} for configuration {name}: Value must be at least {}",
                    d.min
                ));
            }
        }
        ConfigType::Double => {
            let v: f64 = value.trim().parse().map_err(|_| bad())?;
            if !(0.0..=1.0).contains(&v) {
                return Err(bad());
            }
        }
        ConfigType::Boolean => {
            if !matches!(value.trim().to_ascii_lowercase().as_str(), "true" | "false") {
                return Err(bad());
            }
        }
        ConfigType::String | ConfigType::List => {}
    }
    match name {
        "cleanup.policy" => {
            let parts: Vec<&str> = value.split(',').map(str::trim).collect();
            if parts.is_empty() || parts.iter().any(|p| *p != "delete" && *p != "compact") {
                return Err(format!("Invalid value {value} for configuration cleanup.policy: String must be one of: compact, delete"));
            }
        }
        "message.timestamp.type" if value != "CreateTime" && value != "LogAppendTime" => {
            return Err(format!("Invalid value {value} for configuration message.timestamp.type: String must be one of: CreateTime, LogAppendTime"));
        }
        "compression.type" if value != "producer" => {
            return Err(format!(
                "Invalid value {value} for configuration compression.type: Kairos stores batches as the producer compressed them; only 'producer' is supported"
            ));
        }
        _ => {}
    }
    Ok(())
}

/// Resolves effective values: topic override > broker default > static default.
pub struct Resolver<'a> {
    pub broker_defaults: &'a BTreeMap<String, String>,
}

impl Resolver<'_> {
    pub fn value(
        &self,
        overrides: &BTreeMap<String, String>,
        name: &str,
    ) -> (String, ConfigSource) {
        if let Some(v) = overrides.get(name) {
            return (v.clone(), ConfigSource::DynamicTopic);
        }
        if let Some(v) = self.broker_defaults.get(name) {
            return (v.clone(), ConfigSource::StaticBroker);
        }
        (
            def(name).map(|d| d.default).unwrap_or("").to_string(),
            ConfigSource::Default,
        )
    }

    fn num(&self, overrides: &BTreeMap<String, String>, name: &str) -> i64 {
        let (v, _) = self.value(overrides, name);
        v.trim()
            .parse()
            .unwrap_or_else(|_| def(name).and_then(|d| d.default.parse().ok()).unwrap_or(0))
    }

    pub fn log_config(&self, overrides: &BTreeMap<String, String>) -> LogConfig {
        let (ts_type, _) = self.value(overrides, "message.timestamp.type");
        LogConfig {
            segment_bytes: self.num(overrides, "segment.bytes").max(1024) as u64,
            segment_ms: self.num(overrides, "segment.ms"),
            index_interval_bytes: self
                .num(overrides, "index.interval.bytes")
                .clamp(0, u32::MAX as i64) as u32,
            index_max_bytes: self
                .num(overrides, "segment.index.bytes")
                .clamp(4096, i32::MAX as i64) as u32,
            max_message_bytes: self
                .num(overrides, "max.message.bytes")
                .clamp(0, i32::MAX as i64) as u32,
            timestamp_type: if ts_type == "LogAppendTime" {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            retention_ms: self.num(overrides, "retention.ms"),
            retention_bytes: self.num(overrides, "retention.bytes"),
            timestamp_after_max_ms: self.num(overrides, "message.timestamp.after.max.ms"),
            timestamp_before_max_ms: self.num(overrides, "message.timestamp.before.max.ms"),
            // A broker setting in Kafka (producer.id.expiration.ms), not a topic config.
            ..LogConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_accepts_kafka_values_and_refuses_bad_ones() {
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("retention.ms", "abc").is_err());
        assert!(validate("cleanup.policy", "compact,delete").is_ok());
        assert!(validate("cleanup.policy", "archive").is_err());
        assert!(validate("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate("message.timestamp.type", "Now").is_err());
        assert!(validate("no.such.config", "1").is_err());
        assert!(validate("segment.bytes", "3000000000").is_err());
    }

    #[test]
    fn override_beats_broker_default_beats_static_default() {
        let mut broker = BTreeMap::new();
        broker.insert("retention.ms".to_string(), "1000".to_string());
        let r = Resolver {
            broker_defaults: &broker,
        };
        let mut topic = BTreeMap::new();
        assert_eq!(
            r.value(&topic, "retention.ms"),
            ("1000".into(), ConfigSource::StaticBroker)
        );
        assert_eq!(
            r.value(&topic, "segment.ms"),
            ("604800000".into(), ConfigSource::Default)
        );
        topic.insert("retention.ms".to_string(), "5".to_string());
        assert_eq!(r.log_config(&topic).retention_ms, 5);
    }
}
