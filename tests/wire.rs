//! Wire-level behaviour with hand-built frames: version negotiation,
//! pipelining order, and hostile input that must not disturb anyone else.

mod common;

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[global_allocator]
static ALLOCATOR: kairos::alloc::Allocator = kairos::alloc::Allocator;

fn frame<R: Encodable>(api: ApiKey, version: i16, correlation_id: i32, req: &R) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("wire-test")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, api.request_header_version(version))
        .unwrap();
    req.encode(&mut body, version).unwrap();
    let mut out = BytesMut::new();
    out.put_i32(body.len() as i32);
    out.extend_from_slice(&body);
    out.freeze()
}

async fn read_frame(s: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut len))
        .await
        .ok()?
        .ok()?;
    let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.ok()?;
    Some(Bytes::from(buf))
}

async fn api_versions_ok(addr: std::net::SocketAddr) -> ApiVersionsResponse {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&frame(
        ApiKey::ApiVersions,
        3,
        1,
        &ApiVersionsRequest::default(),
    ))
    .await
    .unwrap();
    let mut b = read_frame(&mut s).await.expect("a response");
    let h = ResponseHeader::decode(&mut b, 0).unwrap();
    assert_eq!(h.correlation_id, 1);
    ApiVersionsResponse::decode(&mut b, 3).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_api_versions_version_falls_back_to_v0_with_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let h = common::start(dir.path(), |_| {}).await;
    let mut s = TcpStream::connect(h.kafka_addr).await.unwrap();
    // ApiVersions v99: the header layout is unknown to the broker beyond the correlation id.
    let mut f = BytesMut::new();
    f.put_i32(10);
    f.put_i16(ApiKey::ApiVersions as i16);
    f.put_i16(99);
    f.put_i32(42);
    f.put_i16(-1);
    s.write_all(&f).await.unwrap();
    let mut b = read_frame(&mut s).await.unwrap();
    assert_eq!(
        ResponseHeader::decode(&mut b, 0).unwrap().correlation_id,
        42
    );
    let r = ApiVersionsResponse::decode(&mut b, 0).unwrap();
    assert_eq!(r.error_code, 35);
    let produce = r.api_keys.iter().find(|k| k.api_key == 0).unwrap();
    assert_eq!((produce.min_version, produce.max_version), (0, 11));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let h = common::start(dir.path(), |_| {}).await;
    let mut s = TcpStream::connect(h.kafka_addr).await.unwrap();
    let mut burst = BytesMut::new();
    for i in 0..20 {
        if i % 2 == 0 {
            burst.extend_from_slice(&frame(
                ApiKey::ApiVersions,
                3,
                i,
                &ApiVersionsRequest::default(),
            ));
        } else {
            burst.extend_from_slice(&frame(
                ApiKey::Metadata,
                12,
                i,
                &MetadataRequest::default().with_topics(None),
            ));
        }
    }
    s.write_all(&burst).await.unwrap();
    for i in 0..20 {
        let mut b = read_frame(&mut s).await.unwrap();
        let hv = if i % 2 == 0 { 0 } else { 1 };
        assert_eq!(
            ResponseHeader::decode(&mut b, hv).unwrap().correlation_id,
            i
        );
        if i % 2 == 1 {
            let m = MetadataResponse::decode(&mut b, 12).unwrap();
            assert_eq!(m.brokers.len(), 1);
        }
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_do_not_disturb_other_clients() {
    let dir = tempfile::tempdir().unwrap();
    let h = common::start(dir.path(), |_| {}).await;
    let addr = h.kafka_addr;
    // A bystander keeps its connection across the attack.
    let mut bystander = TcpStream::connect(addr).await.unwrap();

    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut attacks: Vec<Vec<u8>> = vec![
        vec![0x7f, 0xff, 0xff, 0xff], // claims 2 GiB
        vec![0xff, 0xff, 0xff, 0xff], // negative length
        vec![0, 0, 0, 3, 1, 2, 3],    // shorter than a header
        {
            // A valid Metadata header whose topic array claims 2^31-1 entries.
            let mut f = BytesMut::new();
            let mut body = BytesMut::new();
            RequestHeader::default()
                .with_request_api_key(3)
                .with_request_api_version(4)
                .with_correlation_id(7)
                .encode(&mut body, 1)
                .unwrap();
            body.put_i32(i32::MAX);
            f.put_i32(body.len() as i32);
            f.extend_from_slice(&body);
            f.to_vec()
        },
        {
            // An unknown API key: answered with UNSUPPORTED_VERSION, not a crash.
            let mut f = BytesMut::new();
            f.put_i32(10);
            f.put_i16(999);
            f.put_i16(0);
            f.put_i32(5);
            f.put_i16(-1);
            f.to_vec()
        },
    ];
    // Random bodies behind valid headers of every supported API and version.
    for r in kairos::protocol::versions::SUPPORTED {
        for v in r.min..=r.max {
            for _ in 0..3 {
                let mut body = BytesMut::new();
                RequestHeader::default()
                    .with_request_api_key(r.key as i16)
                    .with_request_api_version(v)
                    .with_correlation_id(1)
                    .encode(&mut body, r.key.request_header_version(v))
                    .unwrap();
                let n = (rand() % 200) as usize;
                for _ in 0..n {
                    body.put_u8(rand() as u8);
                }
                let mut f = BytesMut::new();
                f.put_i32(body.len() as i32);
                f.extend_from_slice(&body);
                attacks.push(f.to_vec());
            }
        }
    }
    for a in &attacks {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(a).await;
        let _ = s.shutdown().await;
        // Drain whatever the broker answers until it closes.
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
    }
    // The unknown API key got a well-formed error answer.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&attacks[4]).await.unwrap();
    let mut b = read_frame(&mut s).await.unwrap();
    assert_eq!(b.get_i32(), 5);
    assert_eq!(b.get_i16(), 35);

    bystander
        .write_all(&frame(
            ApiKey::ApiVersions,
            3,
            9,
            &ApiVersionsRequest::default(),
        ))
        .await
        .unwrap();
    let mut b = read_frame(&mut bystander)
        .await
        .expect("bystander still served");
    assert_eq!(ResponseHeader::decode(&mut b, 0).unwrap().correlation_id, 9);
    assert_eq!(api_versions_ok(addr).await.error_code, 0);
    h.shutdown().await;
}

/// Regression: deferred replies used to start only when the writer reached
/// them, so a pipelined OffsetFetch ran before the OffsetCommit sent ahead of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_pipelined_commit_then_fetch_sees_the_commit() {
    use kafka_protocol::messages::*;
    let dir = tempfile::tempdir().unwrap();
    let h = common::start(dir.path(), |_| {}).await;
    h.broker
        .topics
        .create("t", 1, 1, Default::default(), 1)
        .unwrap();
    let mut s = TcpStream::connect(h.kafka_addr).await.unwrap();
    let mut burst = BytesMut::new();
    for (i, offset) in [10i64, 20, 30].iter().enumerate() {
        let commit = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("ordered")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(*offset),
                    ]),
            ]);
        burst.extend_from_slice(&frame(ApiKey::OffsetCommit, 8, 2 * i as i32, &commit));
        let fetch = OffsetFetchRequest::default().with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(StrBytes::from_static_str("ordered")))
                .with_topics(None),
        ]);
        burst.extend_from_slice(&frame(ApiKey::OffsetFetch, 8, 2 * i as i32 + 1, &fetch));
    }
    s.write_all(&burst).await.unwrap();
    for (i, offset) in [10i64, 20, 30].iter().enumerate() {
        let mut b = read_frame(&mut s).await.unwrap();
        assert_eq!(
            ResponseHeader::decode(&mut b, 1).unwrap().correlation_id,
            2 * i as i32
        );
        let mut b = read_frame(&mut s).await.unwrap();
        assert_eq!(
            ResponseHeader::decode(&mut b, 1).unwrap().correlation_id,
            2 * i as i32 + 1
        );
        let r = OffsetFetchResponse::decode(&mut b, 8).unwrap();
        assert_eq!(
            r.groups[0].topics[0].partitions[0].committed_offset,
            *offset
        );
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_with_a_generation_to_an_unknown_group_is_refused_as_kafka_does() {
    use kafka_protocol::messages::*;
    let dir = tempfile::tempdir().unwrap();
    let h = common::start(dir.path(), |_| {}).await;
    h.broker
        .topics
        .create("t", 1, 1, Default::default(), 1)
        .unwrap();
    let mut s = TcpStream::connect(h.kafka_addr).await.unwrap();
    for (version, want) in [(8i16, 22i16), (9, 69)] {
        let commit = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("never-joined")))
            .with_generation_id_or_member_epoch(5)
            .with_member_id(StrBytes::from_static_str("m"))
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(1),
                    ]),
            ]);
        s.write_all(&frame(ApiKey::OffsetCommit, version, 1, &commit))
            .await
            .unwrap();
        let mut b = read_frame(&mut s).await.unwrap();
        ResponseHeader::decode(
            &mut b,
            ApiKey::OffsetCommit.response_header_version(version),
        )
        .unwrap();
        let r = OffsetCommitResponse::decode(&mut b, version).unwrap();
        assert_eq!(r.topics[0].partitions[0].error_code, want, "v{version}");
    }
    h.shutdown().await;
}

/// Produce v9 to a delay topic with one bad record among good ones: INVALID_RECORD for the
/// partition, `record_errors` naming the bad record (its index in the batch) and why, and
/// nothing appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_delay_record_fails_its_batch_with_a_record_error() {
    use indexmap::IndexMap;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    let dir = tempfile::tempdir().unwrap();
    let h = common::start(dir.path(), |_| {}).await;
    // Metadata creates the delay topic (and its target) on demand.
    let mut s = TcpStream::connect(h.kafka_addr).await.unwrap();
    let md = MetadataRequest::default().with_topics(Some(vec![
        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("jobs.delay")))),
    ]));
    s.write_all(&frame(ApiKey::Metadata, 12, 1, &md))
        .await
        .unwrap();
    let mut b = read_frame(&mut s).await.unwrap();
    ResponseHeader::decode(&mut b, 1).unwrap();
    let md = MetadataResponse::decode(&mut b, 12).unwrap();
    assert_eq!(md.topics[0].error_code, 0);
    assert!(
        h.broker.topics.get("jobs").is_some(),
        "the target was created"
    );

    let rec = |delay: &str| {
        let mut headers = IndexMap::new();
        headers.insert(
            StrBytes::from_static_str("kairos-delay-ms"),
            Some(Bytes::from(delay.to_string())),
        );
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: 0,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers,
        }
    };
    let mut records: Vec<Record> = vec![rec("10"), rec("ten"), rec("30")];
    for (i, r) in records.iter_mut().enumerate() {
        r.offset = i as i64;
    }
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut batch,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("jobs.delay")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.freeze()))])]);
    s.write_all(&frame(ApiKey::Produce, 9, 2, &req))
        .await
        .unwrap();
    let mut b = read_frame(&mut s).await.unwrap();
    ResponseHeader::decode(&mut b, 1).unwrap();
    let resp = ProduceResponse::decode(&mut b, 9).unwrap();
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 87, "INVALID_RECORD");
    assert_eq!(p.record_errors.len(), 1);
    assert_eq!(p.record_errors[0].batch_index, 1);
    let msg = p.record_errors[0]
        .batch_index_error_message
        .as_ref()
        .unwrap()
        .to_string();
    assert!(msg.contains("kairos-delay-ms"), "{msg}");
    let log = &h
        .broker
        .topics
        .get("jobs.delay")
        .unwrap()
        .partition(0)
        .unwrap()
        .log;
    assert_eq!(log.log_end_offset(), 0, "nothing appended");
    h.shutdown().await;
}
