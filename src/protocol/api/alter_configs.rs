//! AlterConfigs (replace a topic's overrides) and IncrementalAlterConfigs
//! (SET, DELETE, APPEND, SUBTRACT). Broker configs are static: set them with
//! flags or the TOML file.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::alter_configs_response::{
    AlterConfigsResourceResponse, AlterConfigsResponse,
};
use kafka_protocol::messages::incremental_alter_configs_response::{
    AlterConfigsResourceResponse as IncResourceResponse, IncrementalAlterConfigsResponse,
};
use kafka_protocol::messages::{AlterConfigsRequest, IncrementalAlterConfigsRequest};
use kafka_protocol::protocol::StrBytes;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::str;
use crate::broker::Broker;
use crate::protocol::dispatch::Ctx;
use crate::protocol::errors::{self, INVALID_CONFIG, INVALID_REQUEST, NONE};
use crate::topics::{config, TopicError};

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

type Outcome = (i16, Option<StrBytes>);

fn refuse_non_topic(resource_type: i8) -> Option<Outcome> {
    match resource_type {
        RESOURCE_TOPIC => None,
        RESOURCE_BROKER => Some((
            INVALID_CONFIG,
            Some(str("Broker configs are static in Kairos: set them with command-line flags or the TOML file")),
        )),
        other => Some((INVALID_REQUEST, Some(str(&format!("Unsupported resource type {other}"))))),
    }
}

fn apply(
    broker: &Broker,
    topic: &str,
    edit: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), TopicError>,
    validate_only: bool,
) -> Outcome {
    let result = (|| {
        let t = broker.topics.get(topic).ok_or(TopicError::Unknown)?;
        let mut configs = t.overrides();
        edit(&mut configs)?;
        broker.topics.set_configs(topic, configs, validate_only)
    })();
    match result {
        Ok(()) => (NONE, None),
        Err(e) => (errors::topic_error(&e), Some(str(&e.to_string()))),
    }
}

pub fn handle(ctx: &Ctx, req: AlterConfigsRequest) -> Bytes {
    let mut resp = AlterConfigsResponse::default();
    for res in req.resources {
        let name = res.resource_name.to_string();
        let (code, msg) = refuse_non_topic(res.resource_type).unwrap_or_else(|| {
            let edit = |c: &mut BTreeMap<String, String>| {
                // AlterConfigs replaces the whole set of overrides.
                c.clear();
                for a in &res.configs {
                    if let Some(v) = &a.value {
                        c.insert(a.name.to_string(), v.to_string());
                    }
                }
                Ok(())
            };
            apply(&ctx.broker, &name, edit, req.validate_only)
        });
        resp.responses.push(
            AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(msg)
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name),
        );
    }
    ctx.encode(&resp)
}

pub fn handle_incremental(ctx: &Ctx, req: IncrementalAlterConfigsRequest) -> Bytes {
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let name = res.resource_name.to_string();
        let (code, msg) = refuse_non_topic(res.resource_type).unwrap_or_else(|| {
            let edit = |c: &mut BTreeMap<String, String>| {
                for a in &res.configs {
                    let key = a.name.to_string();
                    let d = config::def(&key).ok_or_else(|| TopicError::InvalidConfig(format!("Unknown topic config name: {key}")))?;
                    let value = a.value.as_ref().map(|v| v.to_string());
                    match (a.config_operation, value) {
                        (OP_SET, Some(v)) => {
                            c.insert(key, v);
                        }
                        (OP_DELETE, _) => {
                            c.remove(&key);
                        }
                        (op @ (OP_APPEND | OP_SUBTRACT), Some(v)) if d.kind == config::ConfigType::List => {
                            let current = c.get(&key).cloned().unwrap_or_else(|| d.default.to_string());
                            let mut items: Vec<String> = current.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
                            for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                                if op == OP_APPEND && !items.iter().any(|i| i == item) {
                                    items.push(item.to_string());
                                } else if op == OP_SUBTRACT {
                                    items.retain(|i| i != item);
                                }
                            }
                            c.insert(key, items.join(","));
                        }
                        (OP_APPEND | OP_SUBTRACT, _) => {
                            return Err(TopicError::InvalidConfig(format!("Config value append/subtract is not allowed for config {key} of non-list type")))
                        }
                        (OP_SET, None) => return Err(TopicError::InvalidConfig(format!("Null value not supported for {key}"))),
                        (op, _) => return Err(TopicError::InvalidRequest(format!("Unknown config operation {op}"))),
                    }
                }
                Ok(())
            };
            apply(&ctx.broker, &name, edit, req.validate_only)
        });
        resp.responses.push(
            IncResourceResponse::default()
                .with_error_code(code)
                .with_error_message(msg)
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name),
        );
    }
    ctx.encode(&resp)
}
