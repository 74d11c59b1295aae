//! SyncGroup: the leader's assignments go in; every member's comes out once
//! the leader has synced (deferred reply).

use futures::FutureExt;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::str;
use crate::groups::SyncRequest;
use crate::protocol::dispatch::{Ctx, Reply};
use crate::protocol::errors;

pub fn handle(ctx: Ctx, req: SyncGroupRequest) -> Reply {
    let v = ctx.version;
    let sync = SyncRequest {
        group_id: req.group_id.0.to_string(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        protocol_type: req.protocol_type.map(|s| s.to_string()),
        protocol_name: req.protocol_name.map(|s| s.to_string()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    Reply::Later(
        async move {
            let mut resp = SyncGroupResponse::default();
            match ctx.broker.groups.sync_group(sync).await {
                Ok(s) => {
                    if v >= 5 {
                        resp.protocol_type = Some(str(&s.protocol_type));
                        resp.protocol_name = Some(str(&s.protocol_name));
                    }
                    resp.assignment = s.assignment;
                }
                Err(e) => {
                    tracing::debug!("sync group: {e}");
                    resp.error_code = errors::group_error(&e);
                }
            }
            Some(ctx.encode(&resp).into())
        }
        .boxed(),
    )
}
