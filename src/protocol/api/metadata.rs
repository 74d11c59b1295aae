//! Metadata: brokers, cluster id, topics with ids and partitions; auto-creates
//! topics when the broker and the request allow it (as Kafka does).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest};

use super::describe_cluster::ALL_OPERATIONS;
use super::{str, topic_name};
use crate::config::NODE_ID;
use crate::filter::views::View;
use crate::protocol::dispatch::Ctx;
use crate::protocol::errors::{
    self, LEADER_EPOCH, NONE, UNKNOWN_TOPIC_ID, UNKNOWN_TOPIC_OR_PARTITION,
};
use crate::topics::{validate_topic_name, Topic, TopicError};

pub fn handle(ctx: &Ctx, req: MetadataRequest) -> Bytes {
    let broker = &ctx.broker;
    let (host, port) = broker.config.advertised();
    let v = ctx.version;
    let mut resp = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(NODE_ID))
            .with_host(str(&host))
            .with_port(port)])
        .with_controller_id(BrokerId(if ctx.version >= 1 { NODE_ID } else { -1 }));
    if ctx.version >= 2 {
        resp.cluster_id = Some(str(&broker.cluster_id));
    }
    if req.include_cluster_authorized_operations && (8..=10).contains(&v) {
        resp.cluster_authorized_operations = ALL_OPERATIONS;
    }
    let auto_create =
        broker.config.auto_create_topics && (ctx.version < 4 || req.allow_auto_topic_creation);
    let want_all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && ctx.version == 0,
    };
    let include_ops = req.include_topic_authorized_operations;
    if want_all {
        resp.topics = broker
            .topics
            .list()
            .iter()
            .map(|t| describe(t, include_ops, v))
            .collect();
        resp.topics.extend(
            broker
                .views
                .list()
                .iter()
                .filter_map(|view| describe_view(ctx, view, include_ops)),
        );
    } else {
        for rt in req.topics.unwrap_or_default() {
            let entry = match rt.name {
                Some(name) => {
                    let name = name.0.to_string();
                    match broker.topics.get(&name) {
                        Some(t) => describe(&t, include_ops, v),
                        None => match broker.views.get(&name) {
                            Some(view) => {
                                describe_view(ctx, &view, include_ops).unwrap_or_else(|| {
                                    MetadataResponseTopic::default()
                                        .with_name(Some(topic_name(&name)))
                                        .with_error_code(UNKNOWN_TOPIC_OR_PARTITION)
                                })
                            }
                            None => missing(ctx, &name, auto_create, include_ops),
                        },
                    }
                }
                None => match broker.topics.get_by_id(&rt.topic_id) {
                    Some(t) => describe(&t, include_ops, v),
                    None => broker
                        .views
                        .get_by_id(&rt.topic_id)
                        .and_then(|view| describe_view(ctx, &view, include_ops))
                        .unwrap_or_else(|| {
                            MetadataResponseTopic::default()
                                .with_error_code(UNKNOWN_TOPIC_ID)
                                .with_topic_id(rt.topic_id)
                        }),
                },
            };
            resp.topics.push(entry);
        }
    }
    ctx.encode(&resp)
}

fn missing(ctx: &Ctx, name: &str, auto_create: bool, include_ops: bool) -> MetadataResponseTopic {
    let unknown = MetadataResponseTopic::default().with_name(Some(topic_name(name)));
    if let Err(e) = validate_topic_name(name) {
        return unknown.with_error_code(errors::topic_error(&e));
    }
    // A delay topic is created on demand whenever its target exists (or may be created).
    if crate::delay::target_of(name).is_some() {
        return match crate::delay::ensure_topic(&ctx.broker, name, auto_create) {
            Ok(t) => describe(&t, include_ops, ctx.version),
            Err(e) => {
                tracing::debug!(topic = name, "delay topic not created: {e}");
                unknown.with_error_code(errors::topic_error(&e))
            }
        };
    }
    if !auto_create {
        return unknown.with_error_code(UNKNOWN_TOPIC_OR_PARTITION);
    }
    let broker = &ctx.broker;
    match broker.topics.create(
        name,
        -1,
        -1,
        BTreeMap::new(),
        broker.config.default_partitions,
    ) {
        Ok(t) => describe(&t, include_ops, ctx.version),
        // Lost a race with another creator: describe what exists.
        Err(TopicError::AlreadyExists(_)) => match broker.topics.get(name) {
            Some(t) => describe(&t, include_ops, ctx.version),
            None => unknown.with_error_code(UNKNOWN_TOPIC_OR_PARTITION),
        },
        Err(e) => {
            tracing::debug!(topic = name, "auto-create failed: {e}");
            unknown.with_error_code(errors::topic_error(&e))
        }
    }
}

/// A view looks like its source topic (same partitions) under its own name and id.
fn describe_view(ctx: &Ctx, view: &View, include_ops: bool) -> Option<MetadataResponseTopic> {
    let source = ctx.broker.topics.get(&view.source)?;
    let mut t = describe(&source, include_ops, ctx.version).with_name(Some(topic_name(&view.name)));
    if ctx.version >= 10 {
        t.topic_id = view.id;
    }
    Some(t)
}

pub fn describe(t: &Arc<Topic>, include_ops: bool, version: i16) -> MetadataResponseTopic {
    let partitions = (0..t.partition_count())
        .map(|p| {
            MetadataResponsePartition::default()
                .with_error_code(NONE)
                .with_partition_index(p)
                .with_leader_id(BrokerId(NODE_ID))
                .with_leader_epoch(if version >= 7 { LEADER_EPOCH } else { -1 })
                .with_replica_nodes(vec![BrokerId(NODE_ID)])
                .with_isr_nodes(vec![BrokerId(NODE_ID)])
        })
        .collect();
    let mut topic = MetadataResponseTopic::default()
        .with_error_code(NONE)
        .with_name(Some(topic_name(&t.name)))
        .with_partitions(partitions);
    if version >= 10 {
        topic.topic_id = t.id;
    }
    if include_ops {
        topic.topic_authorized_operations = ALL_OPERATIONS;
    }
    topic
}
