//! Produce and consume through librdkafka (the rdkafka crate) against a real
//! in-process broker: round trips, seeks inside batches, offsets, restarts.

mod common;

use std::time::Duration;

use common::{client_config, start, TIMEOUT};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

type Records = Vec<(
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
    i64,
)>;

fn produce(cfg: &rdkafka::ClientConfig, topic: &str, n: usize, codec: &str) {
    let p: ThreadedProducer<DefaultProducerContext> = cfg
        .clone()
        .set("compression.type", codec)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for i in 0..n {
        let key = format!("k{i}");
        let value = format!("value-{i}-{}", "x".repeat(i % 50));
        let headers = OwnedHeaders::new().insert(Header {
            key: "h",
            value: Some(&format!("{i}")),
        });
        let rec = BaseRecord::to(topic)
            .key(&key)
            .payload(&value)
            .headers(headers)
            .timestamp(1_700_000_000_000 + i as i64);
        p.send(rec).map_err(|(e, _)| e).unwrap();
    }
    p.flush(TIMEOUT).unwrap();
}

fn consume_from(
    cfg: &rdkafka::ClientConfig,
    topic: &str,
    partition: i32,
    offset: i64,
    n: usize,
) -> Records {
    let c: BaseConsumer = cfg
        .clone()
        .set("group.id", "unused")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while out.len() < n && std::time::Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = match m {
                Err(rdkafka::error::KafkaError::PartitionEOF(_)) => break,
                other => other.expect("no fetch errors"),
            };
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec())))
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                m.key().map(|k| k.to_vec()),
                m.payload().map(|v| v.to_vec()),
                headers,
                m.offset(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_every_codec_and_seek_inside_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |_| {}).await;
    let cfg = client_config(&h);
    tokio::task::spawn_blocking(move || {
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let topic = format!("rt-{codec}");
            produce(&cfg, &topic, 500, codec);
            let got = consume_from(&cfg, &topic, 0, 0, 500);
            assert_eq!(got.len(), 500, "{codec}");
            for (i, (k, v, hdrs, off)) in got.iter().enumerate() {
                assert_eq!(*off, i as i64);
                assert_eq!(k.as_deref(), Some(format!("k{i}").as_bytes()));
                assert_eq!(
                    v.as_deref(),
                    Some(format!("value-{i}-{}", "x".repeat(i % 50)).as_bytes())
                );
                assert_eq!(
                    hdrs,
                    &vec![("h".to_string(), Some(format!("{i}").into_bytes()))]
                );
            }
            // Seek into the middle of a (batched) range: exactly from that offset.
            let got = consume_from(&cfg, &topic, 0, 237, 263);
            assert_eq!(got.first().map(|r| r.3), Some(237), "{codec}");
            assert_eq!(got.len(), 263);
        }
    })
    .await
    .unwrap();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_topics_and_configs_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |_| {}).await;
    let cfg = client_config(&h);
    let admin: AdminClient<_> = cfg.create().unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let topic =
        NewTopic::new("persist", 3, TopicReplication::Fixed(1)).set("retention.ms", "123456789");
    let res = admin.create_topics([&topic], &opts).await.unwrap();
    assert!(res[0].is_ok(), "{res:?}");
    let res = admin
        .create_partitions([&NewPartitions::new("persist", 4)], &opts)
        .await
        .unwrap();
    assert!(res[0].is_ok(), "{res:?}");
    let c2 = cfg.clone();
    tokio::task::spawn_blocking(move || produce(&c2, "persist", 100, "lz4"))
        .await
        .unwrap();
    drop(admin);
    h.shutdown().await;

    let h = start(dir.path(), |_| {}).await;
    let cfg = client_config(&h);
    let admin: AdminClient<_> = cfg.create().unwrap();
    let md = tokio::task::spawn_blocking({
        let admin_cfg = cfg.clone();
        move || {
            let c: BaseConsumer = admin_cfg.create().unwrap();
            c.fetch_metadata(Some("persist"), TIMEOUT).unwrap().topics()[0]
                .partitions()
                .len()
        }
    })
    .await
    .unwrap();
    assert_eq!(md, 4);
    let described = admin
        .describe_configs(
            [&rdkafka::admin::ResourceSpecifier::Topic("persist")],
            &opts,
        )
        .await
        .unwrap();
    let cfgs = described[0].as_ref().unwrap();
    assert_eq!(
        cfgs.get("retention.ms")
            .and_then(|e| e.value.clone())
            .as_deref(),
        Some("123456789")
    );
    let got = tokio::task::spawn_blocking(move || {
        // Keys spread the records over the partitions: read them all, up to each end.
        (0..4)
            .map(|p| consume_from(&cfg, "persist", p, 0, 100))
            .map(|v| v.len())
            .sum::<usize>()
    });
    assert_eq!(got.await.unwrap(), 100);
    h.shutdown().await;
}
