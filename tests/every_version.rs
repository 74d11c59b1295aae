//! Every advertised API at every served version, with a realistic request
//! against an existing topic: the broker must answer with a response that
//! decodes at that version and reports no error. (Response fields that do
//! not exist in an old version must stay unset, or encoding fails.)

mod common;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn t(v: &str) -> TopicName {
    TopicName(s(v))
}

fn batch() -> Bytes {
    let rec = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: kairos_now(),
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::from_static(b"v")),
        headers: IndexMap::new(),
    };
    let mut b = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut b,
        [&rec],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    b.freeze()
}

fn kairos_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn request(api: ApiKey, v: i16, topic_id: uuid::Uuid) -> RequestKind {
    use ApiKey::*;
    match api {
        Produce => RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(1000)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(t("t"))
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch())),
                    ])]),
        ),
        Fetch => {
            let mut topic = fetch_request::FetchTopic::default().with_partitions(vec![
                fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20),
            ]);
            if v >= 13 {
                topic.topic_id = topic_id;
            } else {
                topic.topic = t("t");
            }
            RequestKind::Fetch(
                FetchRequest::default()
                    .with_max_wait_ms(0)
                    .with_max_bytes(1 << 20)
                    .with_topics(vec![topic]),
            )
        }
        ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(t("t"))
                    .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(0)]),
            ])),
        Metadata => {
            let mut r =
                MetadataRequest::default().with_topics(if v == 0 { Some(vec![]) } else { None });
            if v >= 8 {
                r.include_topic_authorized_operations = true;
            }
            if (8..=10).contains(&v) {
                r.include_cluster_authorized_operations = true;
            }
            RequestKind::Metadata(r)
        }
        FindCoordinator => RequestKind::FindCoordinator(if v >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g")])
        } else {
            FindCoordinatorRequest::default().with_key(s("g"))
        }),
        ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
        CreateTopics => {
            RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(t(&format!("c{v}")))
                .with_num_partitions(2)
                .with_replication_factor(1),
        ]))
        }
        DeleteTopics => RequestKind::DeleteTopics(if v >= 6 {
            DeleteTopicsRequest::default()
                .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(t(&format!("d{v}"))))])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![t(&format!("d{v}"))])
        }),
        DeleteRecords => {
            RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_topics(vec![
                delete_records_request::DeleteRecordsTopic::default()
                    .with_name(t("t"))
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(0),
                    ]),
            ]))
        }
        OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(
            OffsetForLeaderEpochRequest::default().with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(t("t"))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_leader_epoch(0),
                    ]),
            ]),
        ),
        DescribeConfigs => RequestKind::DescribeConfigs(
            DescribeConfigsRequest::default()
                .with_include_synonyms(true)
                .with_include_documentation(v >= 3)
                .with_resources(vec![
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s("t")),
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(s("1")),
                ]),
        ),
        AlterConfigs => {
            RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_configs(vec![alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("86400000")))]),
            ]))
        }
        CreatePartitions => {
            RequestKind::CreatePartitions(CreatePartitionsRequest::default().with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(t("p"))
                    .with_count(2 + v as i32),
            ]))
        }
        IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(s("cleanup.policy"))
                            .with_config_operation(2)
                            .with_value(Some(s("compact"))),
                    ]),
            ]),
        ),
        InitProducerId => RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
        DescribeCluster => RequestKind::DescribeCluster(
            DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
        ),
        JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(s(&format!("j{v}"))))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0"))]),
        ),
        SyncGroup => RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_generation_id(1)
                .with_member_id(s("nobody")),
        ),
        Heartbeat => RequestKind::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_generation_id(1)
                .with_member_id(s("nobody")),
        ),
        LeaveGroup => RequestKind::LeaveGroup(if v >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_members(vec![
                    leave_group_request::MemberIdentity::default().with_member_id(s("nobody"))
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_member_id(s("nobody"))
        }),
        OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(t("t"))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(1)
                                .with_committed_metadata(Some(s("meta"))),
                        ]),
                ]),
        ),
        OffsetFetch => RequestKind::OffsetFetch(if v >= 8 {
            OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("g")))
                    .with_topics(None),
            ])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(None)
        }),
        ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        DescribeGroups => RequestKind::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
        ),
        DeleteGroups => RequestKind::DeleteGroups(
            DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(&format!("nog{v}")))]),
        ),
        OffsetDelete => RequestKind::OffsetDelete(
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(t("t"))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(0),
                        ]),
                ]),
        ),
        ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s(&format!("cg{v}"))))
                .with_member_id(s(&format!("member-{v}")))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![t("t")]))
                .with_topic_partitions(Some(vec![])),
        ),
        ConsumerGroupDescribe => RequestKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("cg1"))]),
        ),
        // A transactional id that was never initialised.
        AddPartitionsToTxn => RequestKind::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(s("nope")))
                .with_v3_and_below_producer_id(ProducerId(1))
                .with_v3_and_below_topics(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(t("t"))
                        .with_partitions(vec![0]),
                ]),
        ),
        AddOffsetsToTxn => RequestKind::AddOffsetsToTxn(
            AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s("nope")))
                .with_group_id(GroupId(s("g"))),
        ),
        EndTxn => RequestKind::EndTxn(
            EndTxnRequest::default().with_transactional_id(TransactionalId(s("nope"))),
        ),
        TxnOffsetCommit => RequestKind::TxnOffsetCommit(
            TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(s("nope")))
                .with_group_id(GroupId(s("g")))
                .with_generation_id(-1)
                .with_topics(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                        .with_name(t("t"))
                        .with_partitions(vec![
                            txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(1),
                        ]),
                ]),
        ),
        DescribeTransactions => RequestKind::DescribeTransactions(
            DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(s("nope"))]),
        ),
        ListTransactions => RequestKind::ListTransactions(
            ListTransactionsRequest::default().with_duration_filter(-1),
        ),
        DescribeProducers => {
            RequestKind::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(t("t"))
                    .with_partition_indexes(vec![0]),
            ]))
        }
        DescribeClientQuotas => RequestKind::DescribeClientQuotas(
            DescribeClientQuotasRequest::default().with_components(vec![
                describe_client_quotas_request::ComponentData::default()
                    .with_entity_type(s("client-id"))
                    .with_match_type(2)
                    .with_match(None),
            ]),
        ),
        AlterClientQuotas => RequestKind::AlterClientQuotas(
            AlterClientQuotasRequest::default()
                .with_validate_only(true)
                .with_entries(vec![alter_client_quotas_request::EntryData::default()
                    .with_entity(vec![alter_client_quotas_request::EntityData::default()
                        .with_entity_type(s("client-id"))
                        .with_entity_name(Some(s("every-version")))])
                    .with_ops(vec![alter_client_quotas_request::OpData::default()
                        .with_key(s("producer_byte_rate"))
                        .with_value(1e9)])]),
        ),
        other => panic!("no request built for {other:?}: add one when advertising a new API"),
    }
}

/// The error a request of `request()` must get: those addressed to members that
/// do not exist are refused with Kafka's code; everything else succeeds.
fn expected_error(api: ApiKey, v: i16) -> i16 {
    match api {
        ApiKey::JoinGroup if v >= 4 => 79, // MEMBER_ID_REQUIRED: the first join of a new member
        ApiKey::SyncGroup | ApiKey::Heartbeat | ApiKey::LeaveGroup => 25, // UNKNOWN_MEMBER_ID
        ApiKey::DeleteGroups => 69,        // GROUP_ID_NOT_FOUND
        // INVALID_PRODUCER_ID_MAPPING: a transactional id never initialised
        ApiKey::AddPartitionsToTxn
        | ApiKey::AddOffsetsToTxn
        | ApiKey::EndTxn
        | ApiKey::TxnOffsetCommit => 49,
        ApiKey::DescribeTransactions => 105, // TRANSACTIONAL_ID_NOT_FOUND
        _ => 0,
    }
}

/// Error codes found anywhere we can cheaply look.
fn errors(r: &ResponseKind) -> Vec<i16> {
    match r {
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code))
            .collect(),
        ResponseKind::Fetch(r) => r
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        ResponseKind::Metadata(r) => r.topics.iter().map(|t| t.error_code).collect(),
        ResponseKind::FindCoordinator(r) => std::iter::once(r.error_code)
            .chain(r.coordinators.iter().map(|c| c.error_code))
            .collect(),
        ResponseKind::ApiVersions(r) => vec![r.error_code],
        ResponseKind::CreateTopics(r) => r.topics.iter().map(|t| t.error_code).collect(),
        ResponseKind::DeleteTopics(r) => r.responses.iter().map(|t| t.error_code).collect(),
        ResponseKind::DeleteRecords(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        ResponseKind::OffsetForLeaderEpoch(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        ResponseKind::DescribeConfigs(r) => r.results.iter().map(|x| x.error_code).collect(),
        ResponseKind::AlterConfigs(r) => r.responses.iter().map(|x| x.error_code).collect(),
        ResponseKind::CreatePartitions(r) => r.results.iter().map(|x| x.error_code).collect(),
        ResponseKind::IncrementalAlterConfigs(r) => {
            r.responses.iter().map(|x| x.error_code).collect()
        }
        ResponseKind::DescribeCluster(r) => vec![r.error_code],
        ResponseKind::InitProducerId(r) => vec![r.error_code],
        ResponseKind::JoinGroup(r) => vec![r.error_code],
        ResponseKind::SyncGroup(r) => vec![r.error_code],
        ResponseKind::Heartbeat(r) => vec![r.error_code],
        ResponseKind::LeaveGroup(r) => std::iter::once(r.error_code)
            .chain(r.members.iter().map(|m| m.error_code))
            .filter(|&e| e != 0)
            .collect(),
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        ResponseKind::OffsetFetch(r) => {
            let mut v: Vec<i16> = r
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect();
            v.push(r.error_code);
            v.extend(r.groups.iter().map(|g| g.error_code));
            v
        }
        ResponseKind::ListGroups(r) => vec![r.error_code],
        ResponseKind::DescribeGroups(r) => r.groups.iter().map(|g| g.error_code).collect(),
        ResponseKind::DeleteGroups(r) => r.results.iter().map(|g| g.error_code).collect(),
        ResponseKind::OffsetDelete(r) => std::iter::once(r.error_code)
            .chain(
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            )
            .collect(),
        ResponseKind::ConsumerGroupHeartbeat(r) => vec![r.error_code],
        ResponseKind::AddPartitionsToTxn(r) => r
            .results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| {
                t.results_by_partition
                    .iter()
                    .map(|p| p.partition_error_code)
            })
            .collect(),
        ResponseKind::AddOffsetsToTxn(r) => vec![r.error_code],
        ResponseKind::EndTxn(r) => vec![r.error_code],
        ResponseKind::TxnOffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        ResponseKind::DescribeTransactions(r) => {
            r.transaction_states.iter().map(|t| t.error_code).collect()
        }
        ResponseKind::ListTransactions(r) => vec![r.error_code],
        ResponseKind::DescribeProducers(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        ResponseKind::ConsumerGroupDescribe(r) => r.groups.iter().map(|g| g.error_code).collect(),
        ResponseKind::DescribeClientQuotas(r) => vec![r.error_code],
        ResponseKind::AlterClientQuotas(r) => r.entries.iter().map(|e| e.error_code).collect(),
        _ => vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_served_version_of_every_api_answers_as_kafka_would() {
    let dir = tempfile::tempdir().unwrap();
    let h = common::start(dir.path(), |c| c.groups.initial_rebalance_delay_ms = 0).await;
    let topics = &h.broker.topics;
    let topic_id = topics.create("t", 1, 1, Default::default(), 1).unwrap().id;
    topics.create("p", 1, 1, Default::default(), 1).unwrap();
    let mut conn = TcpStream::connect(h.kafka_addr).await.unwrap();
    let mut correlation = 0;
    for range in kairos::protocol::versions::SUPPORTED {
        for v in range.min..=range.max {
            if range.key == ApiKey::DeleteTopics {
                topics
                    .create(&format!("d{v}"), 1, 1, Default::default(), 1)
                    .unwrap();
            }
            correlation += 1;
            let req = request(range.key, v, topic_id);
            let header = RequestHeader::default()
                .with_request_api_key(range.key as i16)
                .with_request_api_version(v)
                .with_correlation_id(correlation)
                .with_client_id(Some(s("every-version")));
            let mut body = BytesMut::new();
            header
                .encode(&mut body, range.key.request_header_version(v))
                .unwrap();
            req.encode(&mut body, v).unwrap();
            let mut frame = BytesMut::new();
            frame.put_i32(body.len() as i32);
            frame.extend_from_slice(&body);
            conn.write_all(&frame).await.unwrap();

            let mut len = [0u8; 4];
            tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut len))
                .await
                .unwrap_or_else(|_| panic!("{:?} v{v}: no response", range.key))
                .unwrap_or_else(|e| panic!("{:?} v{v}: connection closed: {e}", range.key));
            let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
            conn.read_exact(&mut buf).await.unwrap();
            let mut b = Bytes::from(buf);
            let rh = ResponseHeader::decode(&mut b, range.key.response_header_version(v)).unwrap();
            assert_eq!(rh.correlation_id, correlation);
            let resp = ResponseKind::decode(range.key, &mut b, v)
                .unwrap_or_else(|e| panic!("{:?} v{v}: undecodable response: {e}", range.key));
            let want = expected_error(range.key, v);
            let got = errors(&resp);
            assert!(
                got.iter().all(|&e| e == want),
                "{:?} v{v}: errors {got:?}, want {want}",
                range.key
            );
            assert!(
                !errors(&resp).is_empty() || range.key == ApiKey::Metadata,
                "{:?} v{v}: nothing checked",
                range.key
            );
        }
    }
    h.shutdown().await;
}
