//! FindCoordinator: this single broker coordinates every group and transaction.

use bytes::Bytes;
use kafka_protocol::messages::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest};

use super::str;
use crate::config::NODE_ID;
use crate::protocol::dispatch::Ctx;
use crate::protocol::errors::NONE;

pub fn handle(ctx: &Ctx, req: FindCoordinatorRequest) -> Bytes {
    let (host, port) = ctx.broker.config.advertised();
    let mut resp = FindCoordinatorResponse::default();
    if ctx.version >= 4 {
        resp.coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(NODE_ID))
                    .with_host(str(&host))
                    .with_port(port)
                    .with_error_code(NONE)
            })
            .collect();
    } else {
        resp.error_code = NONE;
        resp.node_id = BrokerId(NODE_ID);
        resp.host = str(&host);
        resp.port = port;
    }
    ctx.encode(&resp)
}
