//! ListOffsets: earliest (-2), latest (-1: the high watermark, or the last
//! stable offset for read_committed), max timestamp (-3), earliest local (-4,
//! the log start: there is no tiered storage), and by timestamp.

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::ListOffsetsRequest;

use crate::log::PartitionLog;
use crate::protocol::dispatch::Ctx;
use crate::protocol::errors::{
    self, check_leader_epoch, LEADER_EPOCH, NONE, UNKNOWN_TOPIC_OR_PARTITION, UNSUPPORTED_VERSION,
};

pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;
pub const EARLIEST_LOCAL: i64 = -4;

pub fn handle(ctx: &Ctx, req: ListOffsetsRequest) -> Bytes {
    let mut resp = ListOffsetsResponse::default();
    for t in req.topics {
        // A view has its source's offsets.
        let topic = ctx.broker.read_topic(t.name.as_str()).map(|(t, _)| t);
        let mut rt = ListOffsetsTopicResponse::default().with_name(t.name);
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1);
            match topic.as_ref().and_then(|t| t.partition(p.partition_index)) {
                None => pr.error_code = UNKNOWN_TOPIC_OR_PARTITION,
                Some(part) => {
                    let epoch_err = check_leader_epoch(p.current_leader_epoch);
                    if epoch_err != NONE {
                        pr.error_code = epoch_err;
                    } else {
                        let committed = req.isolation_level == 1;
                        match lookup(&part.log, p.timestamp, ctx.version, committed) {
                            Ok((offset, ts)) => {
                                pr.offset = offset;
                                pr.timestamp = ts;
                                if ctx.version >= 4 {
                                    pr.leader_epoch = if offset >= 0 { LEADER_EPOCH } else { -1 };
                                }
                            }
                            Err(code) => pr.error_code = code,
                        }
                    }
                }
            }
            rt.partitions.push(pr);
        }
        resp.topics.push(rt);
    }
    ctx.encode(&resp)
}

fn lookup(log: &PartitionLog, ts: i64, version: i16, committed: bool) -> Result<(i64, i64), i16> {
    match ts {
        LATEST if committed => Ok((log.last_stable_offset(), -1)),
        LATEST => Ok((log.high_watermark(), -1)),
        EARLIEST => Ok((log.log_start_offset(), -1)),
        EARLIEST_LOCAL if version >= 8 => Ok((log.log_start_offset(), -1)),
        MAX_TIMESTAMP if version >= 7 => match log.max_timestamp() {
            Ok(Some((o, t))) => Ok((o, t)),
            Ok(None) => Ok((-1, -1)),
            Err(e) => Err(errors::log_error(&e)),
        },
        t if t >= 0 => match log.offset_for_timestamp(t) {
            Ok(Some((o, t))) => Ok((o, t)),
            Ok(None) => Ok((-1, -1)),
            Err(e) => Err(errors::log_error(&e)),
        },
        _ => Err(UNSUPPORTED_VERSION),
    }
}
