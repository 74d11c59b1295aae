//! DescribeGroups: state, protocol and members with metadata and assignment.

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use kafka_protocol::messages::DescribeGroupsRequest;

use super::describe_cluster::ALL_OPERATIONS;
use super::str;
use crate::protocol::dispatch::Ctx;
use crate::protocol::errors::{INVALID_GROUP_ID, NONE};

pub fn handle(ctx: &Ctx, req: DescribeGroupsRequest) -> Bytes {
    let mut resp = DescribeGroupsResponse::default();
    for id in req.groups {
        let mut dg = DescribedGroup::default().with_group_id(id.clone());
        if id.is_empty() {
            dg.error_code = INVALID_GROUP_ID;
            resp.groups.push(dg);
            continue;
        }
        let d = ctx.broker.groups.describe_group(id.as_str());
        dg.error_code = NONE;
        dg.group_state = str(d.state.as_str());
        dg.protocol_type = str(&d.protocol_type);
        dg.protocol_data = str(&d.protocol_name);
        dg.members = d
            .members
            .into_iter()
            .map(|m| {
                let mut dm = DescribedGroupMember::default()
                    .with_member_id(str(&m.member_id))
                    .with_client_id(str(&m.client_id))
                    .with_client_host(str(&m.client_host))
                    .with_member_metadata(m.metadata)
                    .with_member_assignment(m.assignment);
                if ctx.version >= 4 {
                    dm.group_instance_id = m.group_instance_id.map(|s| str(&s));
                }
                dm
            })
            .collect();
        if ctx.version >= 3 && req.include_authorized_operations {
            dg.authorized_operations = ALL_OPERATIONS;
        }
        resp.groups.push(dg);
    }
    ctx.encode(&resp)
}
