//! ConsumerGroupHeartbeat (KIP-848): join, heartbeat and leave of a consumer
//! group member; the coordinator answers its epoch and assignment.

use bytes::Bytes;
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment, ConsumerGroupHeartbeatResponse, TopicPartitions,
};
use kafka_protocol::messages::ConsumerGroupHeartbeatRequest;

use super::str;
use crate::groups::ConsumerHeartbeat;
use crate::protocol::dispatch::Ctx;
use crate::protocol::errors;

pub fn handle(ctx: &Ctx, req: ConsumerGroupHeartbeatRequest) -> Bytes {
    let hb = ConsumerHeartbeat {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req
            .subscribed_topic_names
            .as_ref()
            .map(|ns| ns.iter().map(|n| n.to_string()).collect()),
        subscribed_topic_regex: req.subscribed_topic_regex.as_ref().map(|s| s.to_string()),
        server_assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
        owned: req.topic_partitions.as_ref().map(|tps| {
            tps.iter()
                .map(|tp| (tp.topic_id, tp.partitions.clone()))
                .collect()
        }),
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: ctx.client_host(),
    };
    let mut resp = ConsumerGroupHeartbeatResponse::default();
    match ctx
        .broker
        .groups
        .consumer_heartbeat(&hb, ctx.version, &ctx.broker.topics)
    {
        Ok(r) => {
            resp.member_id = Some(str(&r.member_id));
            resp.member_epoch = r.member_epoch;
            resp.heartbeat_interval_ms = r.heartbeat_interval_ms;
            resp.assignment = r.assignment.map(|tps| {
                Assignment::default().with_topic_partitions(
                    tps.into_iter()
                        .map(|(id, ps)| {
                            TopicPartitions::default()
                                .with_topic_id(id)
                                .with_partitions(ps)
                        })
                        .collect(),
                )
            });
        }
        Err(e) => {
            resp.error_code = errors::group_error(&e);
            resp.error_message = Some(str(&e.to_string()));
        }
    }
    ctx.encode(&resp)
}
