//! OffsetCommit: partitions of unknown topics are refused here; the rest go
//! to the group coordinator, which checks member and generation.

use bytes::Bytes;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::OffsetCommitRequest;

use crate::groups::{CommitOffset, GroupError};
use crate::protocol::dispatch::Ctx;
use crate::protocol::errors::{self, UNKNOWN_TOPIC_OR_PARTITION};

pub fn handle(ctx: &Ctx, req: OffsetCommitRequest) -> Bytes {
    // (topic index, partition index) of each offset sent to the coordinator.
    let mut slots = Vec::new();
    let mut offsets = Vec::new();
    let mut resp = OffsetCommitResponse::default();
    for (ti, t) in req.topics.iter().enumerate() {
        let topic = ctx.broker.read_topic(t.name.as_str()).map(|(t, _)| t);
        let mut rt = OffsetCommitResponseTopic::default().with_name(t.name.clone());
        for (pi, p) in t.partitions.iter().enumerate() {
            let mut rp =
                OffsetCommitResponsePartition::default().with_partition_index(p.partition_index);
            if topic
                .as_ref()
                .and_then(|t| t.partition(p.partition_index))
                .is_none()
            {
                rp.error_code = UNKNOWN_TOPIC_OR_PARTITION;
            } else {
                slots.push((ti, pi));
                offsets.push(CommitOffset {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                });
            }
            rt.partitions.push(rp);
        }
        resp.topics.push(rt);
    }
    let groups = &ctx.broker.groups;
    if !offsets.is_empty()
        && ctx.version < 9
        && groups.is_consumer_group_member(req.group_id.as_str(), req.member_id.as_str())
    {
        // A KIP-848 member's epoch only travels in v9+ (Kafka: UNSUPPORTED_VERSION);
        // anyone else gets the usual member checks.
        for (ti, pi) in slots.drain(..) {
            resp.topics[ti].partitions[pi].error_code = errors::UNSUPPORTED_VERSION;
        }
        offsets.clear();
    }
    if !offsets.is_empty() {
        let instance = req.group_instance_id.as_ref().map(|s| s.as_str());
        let result = ctx.broker.groups.commit_offsets(
            req.group_id.as_str(),
            req.generation_id_or_member_epoch,
            req.member_id.as_str(),
            instance,
            offsets,
        );
        match result {
            Ok(results) => {
                for ((ti, pi), r) in slots.into_iter().zip(results) {
                    if let Err(e) = r {
                        resp.topics[ti].partitions[pi].error_code = errors::group_error(&e);
                    }
                }
            }
            Err(e) => {
                // Kafka 4: a generation-bearing commit to a group that does not
                // exist is GROUP_ID_NOT_FOUND from v9, ILLEGAL_GENERATION before.
                let unknown_group = matches!(e, GroupError::IllegalGeneration)
                    && !ctx.broker.groups.group_exists(req.group_id.as_str());
                let code = if unknown_group && ctx.version >= 9 {
                    errors::GROUP_ID_NOT_FOUND
                } else {
                    errors::group_error(&e)
                };
                for (ti, pi) in slots {
                    resp.topics[ti].partitions[pi].error_code = code;
                }
            }
        }
    }
    ctx.encode(&resp)
}
