//! Consumer groups through librdkafka (the classic protocol and KIP-848's
//! `group.protocol=consumer`) against an in-process broker: partitions are
//! shared without overlap, commits round-trip with metadata, and a group
//! resumes after a broker restart.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{client_config, start, TIMEOUT};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

fn produce(cfg: &rdkafka::ClientConfig, topic: &str, range: std::ops::Range<usize>) {
    let p: ThreadedProducer<DefaultProducerContext> = cfg.create().unwrap();
    for i in range {
        let key = format!("key-{i}");
        let value = format!("v{i}");
        p.send(BaseRecord::to(topic).key(&key).payload(&value))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    p.flush(TIMEOUT).unwrap();
}

/// `protocol`: "classic" or "consumer" (KIP-848).
fn consumer(cfg: &rdkafka::ClientConfig, protocol: &str, group: &str, topic: &str) -> BaseConsumer {
    let mut cfg = cfg.clone();
    cfg.set("group.id", group)
        .set("group.protocol", protocol)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    if protocol == "classic" {
        // A KIP-848 member's session timeout is the broker's.
        cfg.set("session.timeout.ms", "6000");
    }
    let c: BaseConsumer = cfg.create().unwrap();
    c.subscribe(&[topic]).unwrap();
    c
}

/// Polls every consumer until `want` distinct values arrived or the deadline passes.
fn drain(consumers: &[&BaseConsumer], want: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < want && Instant::now() < deadline {
        for c in consumers {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                let v = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
                *seen.entry(v).or_insert(0) += 1;
            }
        }
    }
    seen
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn assigned(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment()
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_share_partitions_and_a_group_resumes_after_restart() {
    share_and_resume("classic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kip848_members_share_partitions_and_a_group_resumes_after_restart() {
    share_and_resume("consumer").await;
}

async fn share_and_resume(protocol: &'static str) {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |c| c.groups.initial_rebalance_delay_ms = 500).await;
    h.broker
        .topics
        .create("orders", 6, 1, Default::default(), 1)
        .unwrap();
    let cfg = client_config(&h);
    let cfg2 = cfg.clone();
    tokio::task::spawn_blocking(move || {
        let a = consumer(&cfg2, protocol, "g1", "orders");
        let b = consumer(&cfg2, protocol, "g1", "orders");
        // Records are produced once the group has settled: a KIP-848 group has no
        // initial delay, so the first member would otherwise consume some before
        // handing partitions over (with nothing committed yet, they would be read twice).
        let deadline = Instant::now() + Duration::from_secs(30);
        while (assigned(&a).is_empty() || assigned(&b).is_empty()) && Instant::now() < deadline {
            for c in [&a, &b] {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(20)) {
                    panic!(
                        "a record before anything was produced: offset {}",
                        m.offset()
                    );
                }
            }
        }
        produce(&cfg2, "orders", 0..300);
        let seen = drain(&[&a, &b], 300);
        assert_eq!(seen.len(), 300, "every record consumed");
        assert!(seen.values().all(|&n| n == 1), "no record consumed twice");
        let (pa, pb) = (assigned(&a), assigned(&b));
        assert!(pa.is_disjoint(&pb), "{pa:?} / {pb:?}");
        assert_eq!(pa.union(&pb).count(), 6);
        assert!(!pa.is_empty() && !pb.is_empty());
        a.commit_consumer_state(CommitMode::Sync).unwrap();
        b.commit_consumer_state(CommitMode::Sync).unwrap();
        // Metadata round trip through OffsetCommit/OffsetFetch.
        let mut tpl = TopicPartitionList::new();
        let p = *pa.iter().next().unwrap();
        tpl.add_partition_offset("orders", p, Offset::Offset(7))
            .unwrap();
        tpl.find_partition("orders", p)
            .unwrap()
            .set_metadata("checkpoint-7");
        a.commit(&tpl, CommitMode::Sync).unwrap();
        let committed = a.committed_offsets(tpl.clone(), TIMEOUT).unwrap();
        let e = committed.find_partition("orders", p).unwrap();
        assert_eq!(e.offset(), Offset::Offset(7));
        assert_eq!(e.metadata(), "checkpoint-7");
        a.commit_consumer_state(CommitMode::Sync).unwrap();
    })
    .await
    .unwrap();
    // Lag per partition is a Prometheus metric: everything consumed and committed -> 0.
    let metrics = http_get(h.console_addr, "/metrics");
    let lags: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("kairos_group_lag_records{"))
        .collect();
    assert_eq!(lags.len(), 6, "{metrics}");
    assert!(
        lags.iter()
            .all(|l| l.contains("group=\"g1\"") && l.ends_with(" 0")),
        "{lags:?}"
    );
    // And in the console: the group with its committed offsets and zero lag.
    let detail = http_get(h.console_addr, "/api/v1/groups/g1");
    let body: serde_json::Value =
        serde_json::from_str(detail.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["offsets"].as_array().unwrap().len(), 6, "{body}");
    assert_eq!(body["lag"], 0);
    assert_eq!(
        body["state"], "Empty",
        "both members left: an empty group is never Stable"
    );
    assert!(http_get(h.console_addr, "/api/v1/groups/nope").starts_with("HTTP/1.0 404"));
    h.shutdown().await;

    let h = start(dir.path(), |c| c.groups.initial_rebalance_delay_ms = 500).await;
    let cfg = client_config(&h);
    tokio::task::spawn_blocking(move || {
        produce(&cfg, "orders", 300..350);
        let c = consumer(&cfg, protocol, "g1", "orders");
        let seen = drain(&[&c], 50);
        // Exactly the records produced after the commit: the group resumed where it committed.
        let want: BTreeSet<String> = (300..350).map(|i| format!("v{i}")).collect();
        assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), want);
        // And nothing from before the commit arrives afterwards.
        let quiet_until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < quiet_until {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                panic!(
                    "unexpected record after resume: offset {} of partition {}",
                    m.offset(),
                    m.partition()
                );
            }
        }
    })
    .await
    .unwrap();
    h.shutdown().await;
}
