//! OffsetForLeaderEpoch: there is only epoch 0, which ends at the log end.

use bytes::Bytes;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::OffsetForLeaderEpochRequest;

use crate::protocol::dispatch::Ctx;
use crate::protocol::errors::{check_leader_epoch, LEADER_EPOCH, NONE, UNKNOWN_TOPIC_OR_PARTITION};

pub fn handle(ctx: &Ctx, req: OffsetForLeaderEpochRequest) -> Bytes {
    let mut resp = OffsetForLeaderEpochResponse::default();
    for t in req.topics {
        let topic = ctx.broker.topics.get(t.topic.as_str());
        let mut rt = OffsetForLeaderTopicResult::default().with_topic(t.topic);
        for p in t.partitions {
            let mut e = EpochEndOffset::default()
                .with_partition(p.partition)
                .with_leader_epoch(-1)
                .with_end_offset(-1);
            match topic.as_ref().and_then(|t| t.partition(p.partition)) {
                None => e.error_code = UNKNOWN_TOPIC_OR_PARTITION,
                Some(part) => {
                    e.error_code = check_leader_epoch(p.current_leader_epoch);
                    if e.error_code == NONE && p.leader_epoch == LEADER_EPOCH {
                        e.leader_epoch = LEADER_EPOCH;
                        e.end_offset = part.log.log_end_offset();
                    }
                }
            }
            rt.partitions.push(e);
        }
        resp.topics.push(rt);
    }
    ctx.encode(&resp)
}
