//! OffsetDelete: forget a group's committed offsets for some partitions.

use bytes::Bytes;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponse, OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::OffsetDeleteRequest;

use crate::protocol::dispatch::Ctx;
use crate::protocol::errors::{self, NONE, UNKNOWN_TOPIC_OR_PARTITION};

pub fn handle(ctx: &Ctx, req: OffsetDeleteRequest) -> Bytes {
    let topics = &ctx.broker.topics;
    let mut resp = OffsetDeleteResponse::default();
    let mut slots = Vec::new();
    let mut pairs = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let topic = topics.get(t.name.as_str());
        let mut rt = OffsetDeleteResponseTopic::default().with_name(t.name.clone());
        for (pi, p) in t.partitions.iter().enumerate() {
            let mut rp =
                OffsetDeleteResponsePartition::default().with_partition_index(p.partition_index);
            if topic
                .as_ref()
                .and_then(|t| t.partition(p.partition_index))
                .is_none()
            {
                rp.error_code = UNKNOWN_TOPIC_OR_PARTITION;
            } else {
                slots.push((ti, pi));
                pairs.push((t.name.to_string(), p.partition_index));
            }
            rt.partitions.push(rp);
        }
        resp.topics.push(rt);
    }
    match ctx
        .broker
        .groups
        .delete_offsets(req.group_id.as_str(), &pairs)
    {
        Ok(results) => {
            resp.error_code = NONE;
            for ((ti, pi), r) in slots.into_iter().zip(results) {
                if let Err(e) = r {
                    resp.topics[ti].partitions[pi].error_code = errors::group_error(&e);
                }
            }
        }
        Err(e) => {
            resp.error_code = errors::group_error(&e);
            resp.topics.clear();
        }
    }
    ctx.encode(&resp)
}
