//! DescribeCluster: one broker, which is also the controller.

use bytes::Bytes;
use kafka_protocol::messages::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest};

use super::str;
use crate::config::NODE_ID;
use crate::protocol::dispatch::Ctx;

/// All operations a client may perform (bit set of AclOperation codes 2..=12).
pub const ALL_OPERATIONS: i32 = 0b1_1111_1111_1100;

pub fn handle(ctx: &Ctx, req: DescribeClusterRequest) -> Bytes {
    let (host, port) = ctx.broker.config.advertised();
    let mut resp = DescribeClusterResponse::default()
        .with_cluster_id(str(&ctx.broker.cluster_id))
        .with_controller_id(BrokerId(NODE_ID))
        .with_endpoint_type(req.endpoint_type)
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(NODE_ID))
            .with_host(str(&host))
            .with_port(port)]);
    if req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = ALL_OPERATIONS;
    }
    ctx.encode(&resp)
}
