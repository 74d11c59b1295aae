//! CreatePartitions: grow a topic's partition count.

use bytes::Bytes;
use kafka_protocol::messages::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use kafka_protocol::messages::CreatePartitionsRequest;

use super::str;
use crate::protocol::dispatch::Ctx;
use crate::protocol::errors::{self, NONE};

pub fn handle(ctx: &Ctx, req: CreatePartitionsRequest) -> Bytes {
    let mut resp = CreatePartitionsResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut r = CreatePartitionsTopicResult::default().with_name(t.name);
        match ctx.broker.add_partitions(&name, t.count, req.validate_only) {
            Ok(()) => r.error_code = NONE,
            Err(e) => {
                r.error_code = errors::topic_error(&e);
                r.error_message = Some(str(&e.to_string()));
            }
        }
        resp.results.push(r);
    }
    ctx.encode(&resp)
}
