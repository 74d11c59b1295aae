//! LeaveGroup: one member (v0-v2) or a batch of members (v3+).

use bytes::Bytes;
use kafka_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};
use kafka_protocol::messages::LeaveGroupRequest;

use crate::protocol::dispatch::Ctx;
use crate::protocol::errors;

pub fn handle(ctx: &Ctx, req: LeaveGroupRequest) -> Bytes {
    let batched = ctx.version >= 3;
    let members: Vec<(String, Option<String>)> = if batched {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let mut resp = LeaveGroupResponse::default();
    match ctx
        .broker
        .groups
        .leave_group(req.group_id.as_str(), &members)
    {
        Ok(results) => {
            if batched {
                resp.members = req
                    .members
                    .into_iter()
                    .zip(results)
                    .map(|(m, r)| {
                        MemberResponse::default()
                            .with_member_id(m.member_id)
                            .with_group_instance_id(m.group_instance_id)
                            .with_error_code(
                                r.as_ref()
                                    .map(|_| errors::NONE)
                                    .unwrap_or_else(errors::group_error),
                            )
                    })
                    .collect();
            } else if let Some(Err(e)) = results.first() {
                resp.error_code = errors::group_error(e);
            }
        }
        Err(e) => resp.error_code = errors::group_error(&e),
    }
    ctx.encode(&resp)
}
