//! DescribeConfigs: topic configs (override, broker default, static default,
//! with synonyms and documentation when asked) and this broker's configs.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
    DescribeConfigsSynonym,
};
use kafka_protocol::messages::DescribeConfigsRequest;

use super::str;
use crate::broker::Broker;
use crate::config::NODE_ID;
use crate::protocol::dispatch::Ctx;
use crate::protocol::errors::{INVALID_REQUEST, NONE, UNKNOWN_TOPIC_OR_PARTITION};
use crate::topics::config::{ConfigSource, ConfigType, TOPIC_CONFIGS};

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

struct Entry {
    name: String,
    value: String,
    source: ConfigSource,
    kind: ConfigType,
    read_only: bool,
    doc: &'static str,
    synonyms: Vec<(String, String, ConfigSource)>,
}

pub fn handle(ctx: &Ctx, req: DescribeConfigsRequest) -> Bytes {
    let mut resp = DescribeConfigsResponse::default();
    for res in req.resources {
        let name = res.resource_name.to_string();
        let mut r = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let entries = match res.resource_type {
            RESOURCE_TOPIC => match ctx.broker.topics.get(&name) {
                Some(t) => Ok(topic_entries(&ctx.broker, &t.overrides())),
                None => Err((
                    UNKNOWN_TOPIC_OR_PARTITION,
                    format!("Topic {name} does not exist"),
                )),
            },
            RESOURCE_BROKER if name.is_empty() || name == NODE_ID.to_string() => {
                Ok(broker_entries(&ctx.broker))
            }
            RESOURCE_BROKER => Err((
                INVALID_REQUEST,
                format!("Unexpected broker id, expected {NODE_ID} but received {name}"),
            )),
            other => Err((
                INVALID_REQUEST,
                format!("Unsupported resource type {other}"),
            )),
        };
        match entries {
            Ok(entries) => {
                r.error_code = NONE;
                let keys: Option<Vec<String>> = res
                    .configuration_keys
                    .map(|k| k.iter().map(|s| s.to_string()).collect());
                r.configs = entries
                    .into_iter()
                    .filter(|e| keys.as_ref().map(|k| k.contains(&e.name)).unwrap_or(true))
                    .map(|e| {
                        let mut c = DescribeConfigsResourceResult::default()
                            .with_name(str(&e.name))
                            .with_value(Some(str(&e.value)))
                            .with_read_only(e.read_only)
                            .with_config_source(e.source as i8)
                            .with_is_sensitive(false);
                        if ctx.version >= 3 {
                            c.config_type = e.kind as i8;
                            if req.include_documentation {
                                c.documentation = Some(str(e.doc));
                            }
                        }
                        if req.include_synonyms {
                            c.synonyms = e
                                .synonyms
                                .iter()
                                .map(|(n, v, s)| {
                                    DescribeConfigsSynonym::default()
                                        .with_name(str(n))
                                        .with_value(Some(str(v)))
                                        .with_source(*s as i8)
                                })
                                .collect();
                        }
                        c
                    })
                    .collect();
            }
            Err((code, msg)) => {
                r.error_code = code;
                r.error_message = Some(str(&msg));
            }
        }
        resp.results.push(r);
    }
    ctx.encode(&resp)
}

fn topic_entries(broker: &Broker, overrides: &BTreeMap<String, String>) -> Vec<Entry> {
    let defaults = broker.topics.broker_defaults();
    TOPIC_CONFIGS
        .iter()
        .map(|d| {
            let (value, source) = broker.topics.resolver().value(overrides, d.name);
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.get(d.name) {
                synonyms.push((d.name.to_string(), v.clone(), ConfigSource::DynamicTopic));
            }
            if let Some(v) = defaults.get(d.name) {
                synonyms.push((
                    d.broker_synonym.to_string(),
                    v.clone(),
                    ConfigSource::StaticBroker,
                ));
            }
            synonyms.push((
                d.broker_synonym.to_string(),
                d.default.to_string(),
                ConfigSource::Default,
            ));
            Entry {
                name: d.name.to_string(),
                value,
                source,
                kind: d.kind,
                read_only: false,
                doc: d.doc,
                synonyms,
            }
        })
        .collect()
}

fn broker_entries(broker: &Broker) -> Vec<Entry> {
    let c = &broker.config;
    let (host, port) = c.advertised();
    let fixed = |name: &str, value: String, kind: ConfigType, doc: &'static str| Entry {
        name: name.to_string(),
        value,
        source: ConfigSource::StaticBroker,
        kind,
        read_only: true,
        doc,
        synonyms: Vec::new(),
    };
    let mut v = vec![
        fixed(
            "node.id",
            NODE_ID.to_string(),
            ConfigType::Int,
            "this broker's id",
        ),
        fixed(
            "broker.id",
            NODE_ID.to_string(),
            ConfigType::Int,
            "this broker's id",
        ),
        fixed(
            "listeners",
            format!("PLAINTEXT://{}", c.listen),
            ConfigType::List,
            "the Kafka listener (--listen)",
        ),
        fixed(
            "advertised.listeners",
            format!("PLAINTEXT://{host}:{port}"),
            ConfigType::List,
            "what clients are told (--advertise)",
        ),
        fixed(
            "log.dirs",
            c.data_dir.join("logs").display().to_string(),
            ConfigType::String,
            "partition logs (--data-dir)",
        ),
        fixed(
            "num.partitions",
            c.default_partitions.to_string(),
            ConfigType::Int,
            "partitions of auto-created topics (--partitions)",
        ),
        fixed(
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
            ConfigType::Boolean,
            "--no-auto-create turns it off",
        ),
        fixed(
            "default.replication.factor",
            "1".into(),
            ConfigType::Int,
            "single broker",
        ),
        fixed(
            "offsets.topic.replication.factor",
            "1".into(),
            ConfigType::Short,
            "single broker",
        ),
        fixed(
            "transaction.state.log.replication.factor",
            "1".into(),
            ConfigType::Short,
            "single broker",
        ),
        fixed(
            "socket.request.max.bytes",
            c.max_request_bytes.to_string(),
            ConfigType::Int,
            "largest request frame",
        ),
        fixed(
            "log.retention.check.interval.ms",
            c.retention_check_interval_ms.to_string(),
            ConfigType::Long,
            "how often retention runs",
        ),
        fixed(
            "kairos.fsync",
            format!("{:?}", c.fsync).to_lowercase(),
            ConfigType::String,
            "--fsync always|interval|never",
        ),
        fixed(
            "kairos.fsync.interval.ms",
            c.fsync_interval_ms.to_string(),
            ConfigType::Long,
            "fsync period for --fsync interval",
        ),
    ];
    for d in TOPIC_CONFIGS {
        if v.iter().any(|e| e.name == d.broker_synonym) {
            continue;
        }
        let (value, source) = match c.topic_defaults.get(d.name) {
            Some(val) => (val.clone(), ConfigSource::StaticBroker),
            None => (d.default.to_string(), ConfigSource::Default),
        };
        v.push(Entry {
            name: d.broker_synonym.to_string(),
            value,
            source,
            kind: d.kind,
            read_only: true,
            doc: d.doc,
            synonyms: Vec::new(),
        });
    }
    v
}
