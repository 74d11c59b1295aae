//! JoinGroup: hand the member to the group coordinator; the reply waits for
//! the rebalance to complete, so it is deferred. The join itself is
//! registered in request order (dispatch polls the reply once at once); only
//! the wait for the rebalance overlaps later requests on the connection.

use futures::FutureExt;
use kafka_protocol::messages::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};
use kafka_protocol::messages::JoinGroupRequest;

use super::str;
use crate::groups::{GroupError, JoinRequest};
use crate::protocol::dispatch::{Ctx, Reply};
use crate::protocol::errors;

pub fn handle(ctx: Ctx, req: JoinGroupRequest) -> Reply {
    let v = ctx.version;
    let join = JoinRequest {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: ctx.client_host(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if v >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: v >= 4,
    };
    Reply::Later(
        async move {
            let mut resp = JoinGroupResponse::default().with_generation_id(-1);
            match ctx.broker.groups.join_group(join).await {
                Ok(j) => {
                    resp.generation_id = j.generation_id;
                    if v >= 7 {
                        resp.protocol_type = Some(str(&j.protocol_type));
                    }
                    resp.protocol_name = Some(str(&j.protocol_name));
                    resp.leader = str(&j.leader);
                    resp.member_id = str(&j.member_id);
                    resp.members = j
                        .members
                        .into_iter()
                        .map(|m| {
                            let mut rm = JoinGroupResponseMember::default()
                                .with_member_id(str(&m.member_id))
                                .with_metadata(m.metadata);
                            if v >= 5 {
                                rm.group_instance_id = m.group_instance_id.map(|s| str(&s));
                            }
                            rm
                        })
                        .collect();
                }
                Err(e) => {
                    if let GroupError::MemberIdRequired(id) = &e {
                        resp.member_id = str(id);
                    }
                    tracing::debug!("join group: {e}");
                    resp.error_code = errors::group_error(&e);
                    if v < 7 {
                        // v0-v6 protocol name is not nullable.
                        resp.protocol_name = Some(str(""));
                    }
                }
            }
            Some(ctx.encode(&resp).into())
        }
        .boxed(),
    )
}
