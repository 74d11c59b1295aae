//! CreateTopics: partitions, configs, validate_only; replication factor 1.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult, CreateTopicsResponse,
};
use kafka_protocol::messages::CreateTopicsRequest;

use super::str;
use crate::protocol::dispatch::Ctx;
use crate::protocol::errors::{self, NONE};
use crate::topics::{config::TOPIC_CONFIGS, TopicError};

pub fn handle(ctx: &Ctx, req: CreateTopicsRequest) -> Bytes {
    let broker = &ctx.broker;
    let mut resp = CreateTopicsResponse::default();
    let mut seen = std::collections::HashSet::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut r = CreatableTopicResult::default().with_name(t.name.clone());
        let result = (|| {
            if !seen.insert(name.clone()) {
                return Err(TopicError::InvalidRequest(format!(
                    "Create topics request from client contains multiple entries for topic {name}"
                )));
            }
            if broker.views.get(&name).is_some() {
                return Err(TopicError::AlreadyExists(name.clone()));
            }
            if !t.assignments.is_empty() {
                return Err(TopicError::InvalidRequest(
                    "Manual replica assignment is not supported on a single broker".into(),
                ));
            }
            let mut configs = BTreeMap::new();
            for c in &t.configs {
                match &c.value {
                    Some(v) => configs.insert(c.name.to_string(), v.to_string()),
                    None => {
                        return Err(TopicError::InvalidConfig(format!(
                            "Null value not supported for topic config {}",
                            c.name
                        )))
                    }
                };
            }
            let partitions = if t.num_partitions == -1 {
                broker.config.default_partitions
            } else {
                t.num_partitions
            };
            if req.validate_only {
                broker.topics.validate_create(
                    &name,
                    partitions,
                    t.replication_factor as i32,
                    &configs,
                )?;
                Ok((None, partitions, configs))
            } else {
                let topic = broker.topics.create(
                    &name,
                    partitions,
                    t.replication_factor as i32,
                    configs.clone(),
                    partitions,
                )?;
                Ok((Some(topic.id), partitions, configs))
            }
        })();
        match result {
            Ok((id, partitions, overrides)) => {
                r.error_code = NONE;
                if let (Some(id), true) = (id, ctx.version >= 7) {
                    r.topic_id = id;
                }
                if ctx.version >= 5 {
                    r.num_partitions = partitions;
                    r.replication_factor = 1;
                }
                if ctx.version >= 5 {
                    let resolver = broker.topics.resolver();
                    r.configs = Some(
                        TOPIC_CONFIGS
                            .iter()
                            .map(|d| {
                                let (v, source) = resolver.value(&overrides, d.name);
                                CreatableTopicConfigs::default()
                                    .with_name(str(d.name))
                                    .with_value(Some(str(&v)))
                                    .with_config_source(source as i8)
                            })
                            .collect(),
                    );
                }
            }
            Err(e) => {
                tracing::debug!(topic = %name, "create topic refused: {e}");
                r.error_code = errors::topic_error(&e);
                r.error_message = Some(str(&e.to_string()));
            }
        }
        resp.topics.push(r);
    }
    ctx.encode(&resp)
}
