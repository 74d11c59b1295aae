//! ListGroups, with state (v4+) and type (v5+) filters.

use bytes::Bytes;
use kafka_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};
use kafka_protocol::messages::{GroupId, ListGroupsRequest};

use super::str;
use crate::protocol::dispatch::Ctx;

pub fn handle(ctx: &Ctx, req: ListGroupsRequest) -> Bytes {
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_string()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_string()).collect();
    let mut resp = ListGroupsResponse::default();
    resp.groups = ctx
        .broker
        .groups
        .list_groups(&states, &types)
        .into_iter()
        .map(|g| {
            let mut lg = ListedGroup::default()
                .with_group_id(GroupId(str(&g.group_id)))
                .with_protocol_type(str(&g.protocol_type));
            if ctx.version >= 4 {
                lg.group_state = str(g.state);
            }
            if ctx.version >= 5 {
                lg.group_type = str(g.group_type);
            }
            lg
        })
        .collect();
    ctx.encode(&resp)
}
