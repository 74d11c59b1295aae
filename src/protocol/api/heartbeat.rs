//! Heartbeat: keeps a member alive and tells it when a rebalance started.

use bytes::Bytes;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::protocol::dispatch::Ctx;
use crate::protocol::errors;

pub fn handle(ctx: &Ctx, req: HeartbeatRequest) -> Bytes {
    let instance = req.group_instance_id.as_ref().map(|s| s.as_str());
    let code = match ctx.broker.groups.heartbeat(
        req.group_id.as_str(),
        req.generation_id,
        req.member_id.as_str(),
        instance,
    ) {
        Ok(()) => errors::NONE,
        Err(e) => errors::group_error(&e),
    };
    ctx.encode(&HeartbeatResponse::default().with_error_code(code))
}
