//! ConsumerGroupDescribe (KIP-848): epochs, assignor and members of consumer
//! groups; a classic or unknown group is GROUP_ID_NOT_FOUND, as in Kafka.

use bytes::Bytes;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, ConsumerGroupDescribeResponse, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::ConsumerGroupDescribeRequest;

use super::describe_cluster::ALL_OPERATIONS;
use super::{str, topic_name};
use crate::protocol::dispatch::Ctx;
use crate::protocol::errors::{self, INVALID_GROUP_ID};

/// ConsumerGroupDescribe v1's member_type of a consumer-protocol member.
const CONSUMER_MEMBER: i8 = 1;

fn assignment(tps: Vec<(uuid::Uuid, String, Vec<i32>)>) -> Assignment {
    Assignment::default().with_topic_partitions(
        tps.into_iter()
            .map(|(id, name, ps)| {
                TopicPartitions::default()
                    .with_topic_id(id)
                    .with_topic_name(topic_name(&name))
                    .with_partitions(ps)
            })
            .collect(),
    )
}

pub fn handle(ctx: &Ctx, req: ConsumerGroupDescribeRequest) -> Bytes {
    let mut resp = ConsumerGroupDescribeResponse::default();
    for id in req.group_ids {
        let mut dg = DescribedGroup::default().with_group_id(id.clone());
        if id.is_empty() {
            dg.error_code = INVALID_GROUP_ID;
            resp.groups.push(dg);
            continue;
        }
        match ctx.broker.groups.describe_consumer_group(id.as_str()) {
            Ok(d) => {
                dg.group_state = str(d.state);
                dg.group_epoch = d.group_epoch;
                dg.assignment_epoch = d.assignment_epoch;
                dg.assignor_name = str(d.assignor);
                dg.members = d
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut member = Member::default()
                            .with_member_id(str(&m.member_id))
                            .with_instance_id(m.instance_id.as_deref().map(str))
                            .with_rack_id(m.rack_id.as_deref().map(str))
                            .with_member_epoch(m.member_epoch)
                            .with_client_id(str(&m.client_id))
                            .with_client_host(str(&m.client_host))
                            .with_subscribed_topic_names(
                                m.subscribed_topic_names
                                    .iter()
                                    .map(|n| topic_name(n))
                                    .collect(),
                            )
                            .with_subscribed_topic_regex(
                                m.subscribed_topic_regex.as_deref().map(str),
                            )
                            .with_assignment(assignment(m.assignment))
                            .with_target_assignment(assignment(m.target_assignment));
                        if ctx.version >= 1 {
                            member.member_type = CONSUMER_MEMBER;
                        }
                        member
                    })
                    .collect();
                dg.authorized_operations = if req.include_authorized_operations {
                    ALL_OPERATIONS
                } else {
                    i32::MIN
                };
            }
            Err(e) => {
                dg.error_code = errors::group_error(&e);
                dg.error_message = Some(str(&format!("Group {} not found.", id.as_str())));
            }
        }
        resp.groups.push(dg);
    }
    ctx.encode(&resp)
}
