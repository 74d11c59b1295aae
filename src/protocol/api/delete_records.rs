//! DeleteRecords: move a partition's log start offset forward (-1 = high watermark).

use bytes::Bytes;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsResponse, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::DeleteRecordsRequest;

use crate::protocol::dispatch::Ctx;
use crate::protocol::errors::{self, NONE, UNKNOWN_TOPIC_OR_PARTITION};

pub fn handle(ctx: &Ctx, req: DeleteRecordsRequest) -> Bytes {
    let mut resp = DeleteRecordsResponse::default();
    for t in req.topics {
        let topic = ctx.broker.topics.get(t.name.as_str());
        let mut rt = DeleteRecordsTopicResult::default().with_name(t.name);
        for p in t.partitions {
            let mut r = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            match topic.as_ref().and_then(|t| t.partition(p.partition_index)) {
                None => r.error_code = UNKNOWN_TOPIC_OR_PARTITION,
                Some(part) => {
                    let target = if p.offset == -1 {
                        part.log.high_watermark()
                    } else {
                        p.offset
                    };
                    match part.log.delete_records_before(target) {
                        Ok(low) => {
                            r.error_code = NONE;
                            r.low_watermark = low;
                        }
                        Err(e) => r.error_code = errors::log_error(&e),
                    }
                }
            }
            rt.partitions.push(r);
        }
        resp.topics.push(rt);
    }
    ctx.encode(&resp)
}
