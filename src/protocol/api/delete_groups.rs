//! DeleteGroups: only empty groups can be deleted (NON_EMPTY_GROUP otherwise).

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::{
    DeletableGroupResult, DeleteGroupsResponse,
};
use kafka_protocol::messages::DeleteGroupsRequest;

use crate::protocol::dispatch::Ctx;
use crate::protocol::errors;

pub fn handle(ctx: &Ctx, req: DeleteGroupsRequest) -> Bytes {
    let ids: Vec<String> = req.groups_names.iter().map(|g| g.to_string()).collect();
    let results = ctx.broker.groups.delete_groups(&ids);
    let mut resp = DeleteGroupsResponse::default();
    resp.results = req
        .groups_names
        .into_iter()
        .zip(results)
        .map(|(g, r)| {
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(
                    r.as_ref()
                        .map(|_| errors::NONE)
                        .unwrap_or_else(errors::group_error),
                )
        })
        .collect();
    ctx.encode(&resp)
}
