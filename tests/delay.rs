//! Delay topics through librdkafka (the rdkafka crate) against a real in-process
//! broker: delivery to the contract's partition with the contract's headers and
//! timestamps, never early, in due order, cancels, repeats, pending records across a
//! restart, and bad control headers refused.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::{client_config, start, TIMEOUT};
use kairos::delay::wheel::key_partition;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;

#[derive(Debug, Clone)]
struct Got {
    partition: i32,
    offset: i64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: BTreeMap<String, String>,
}

/// Every record of `topic` (all partitions) until `n` arrived or the deadline.
fn read(cfg: &ClientConfig, topic: &str, partitions: i32, n: usize, wait: Duration) -> Vec<Got> {
    let c: BaseConsumer = cfg
        .clone()
        .set("group.id", "unused")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + wait;
    while out.len() < n && std::time::Instant::now() < deadline {
        let Some(m) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.expect("no fetch errors");
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Got {
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis().unwrap_or(-1),
            key: m.key().map(|k| k.to_vec()),
            value: m.payload().map(|v| v.to_vec()),
            headers,
        });
    }
    out
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Sends (partition, key, headers) records to `topic`; panics on a failed delivery.
fn send(cfg: &ClientConfig, topic: &str, recs: &[(i32, Option<String>, Vec<(String, String)>)]) {
    let p: ThreadedProducer<DefaultProducerContext> =
        cfg.clone().set("linger.ms", "5").create().unwrap();
    for (i, (partition, key, hdrs)) in recs.iter().enumerate() {
        let mut h = OwnedHeaders::new();
        for (k, v) in hdrs {
            h = h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let value = format!("value-{i}");
        let mut rec = BaseRecord::<String, String>::to(topic)
            .partition(*partition)
            .payload(&value)
            .headers(h);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        p.send(rec).map_err(|(e, _)| e).unwrap();
    }
    p.flush(TIMEOUT).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_are_delivered_on_time_in_order_once_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |_| {}).await;
    let cfg = client_config(&h);
    let admin: AdminClient<_> = cfg.create().unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let res = admin
        .create_topics(
            [&NewTopic::new("orders", 3, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .unwrap();
    assert!(res[0].is_ok(), "{res:?}");

    // 300 records: every third keyed, delays 300..2300 ms in a scrambled order,
    // repeats on record 7, two cancelled (one by a record, one by id below).
    let mut recs = Vec::new();
    for i in 0..300usize {
        let delay = 300 + (i * 7919) % 2000;
        let key = (i % 3 == 0).then(|| format!("key-{i}"));
        let mut hdrs = vec![
            ("kairos-delay-ms".to_string(), delay.to_string()),
            ("n".to_string(), i.to_string()),
        ];
        if i == 7 {
            hdrs.push(("kairos-repeat-ms".into(), "200".into()));
            hdrs.push(("kairos-repeat-count".into(), "3".into()));
        }
        recs.push(((i % 3) as i32, key, hdrs));
    }
    let c2 = cfg.clone();
    let recs2 = recs.clone();
    tokio::task::spawn_blocking(move || send(&c2, "orders.delay", &recs2))
        .await
        .unwrap();
    // The delay records as stored: their ids and the broker's receive times.
    let c2 = cfg.clone();
    let stored = tokio::task::spawn_blocking(move || read(&c2, "orders.delay", 3, 300, TIMEOUT))
        .await
        .unwrap();
    assert_eq!(stored.len(), 300);
    let by_n: HashMap<usize, Got> = stored
        .iter()
        .map(|g| (g.headers["n"].parse().unwrap(), g.clone()))
        .collect();
    let id_of = |n: usize| format!("{}:{}", by_n[&n].partition, by_n[&n].offset);
    // Cancel record 173 with a cancel record, and 247 through the service: the two
    // longest delays (2,287 and 2,293 ms), so that a slow machine still cancels in time.
    let cancel = vec![(2, None, vec![("kairos-cancel".to_string(), id_of(173))])];
    let c2 = cfg.clone();
    tokio::task::spawn_blocking(move || send(&c2, "orders.delay", &cancel))
        .await
        .unwrap();
    let g247 = &by_n[&247];
    let cancelled = h
        .broker
        .delays
        .cancel(kairos::delay::wheel::DelayId {
            target: "orders".into(),
            partition: g247.partition,
            offset: g247.offset,
        })
        .await
        .unwrap();
    assert!(cancelled, "record 247 was pending");

    // Restart while most are pending.
    h.shutdown().await;
    let h = start(dir.path(), |_| {}).await;
    let cfg = client_config(&h);
    let want = 300 - 2 + 2; // two cancelled, record 7 delivered 3 times
    let c2 = cfg.clone();
    let got =
        tokio::task::spawn_blocking(move || read(&c2, "orders", 3, want, Duration::from_secs(20)))
            .await
            .unwrap();
    let received_at = now_ms();
    assert_eq!(got.len(), want, "deliveries");

    let mut seen: HashMap<(String, i64), usize> = HashMap::new();
    let mut last_ts: HashMap<i32, i64> = HashMap::new();
    for g in &got {
        let n: usize = g.headers["n"].parse().unwrap();
        assert!(n != 173 && n != 247, "cancelled record {n} was delivered");
        let src = &by_n[&n];
        let id = &g.headers["kairos-delay-id"];
        assert_eq!(id, &id_of(n));
        assert!(
            !g.headers
                .keys()
                .any(|k| k.starts_with("kairos-") && k != "kairos-delay-id"),
            "control headers removed: {:?}",
            g.headers
        );
        assert_eq!(g.value, src.value);
        assert_eq!(g.key, src.key);
        let first_due = src.timestamp + (300 + (n * 7919) % 2000) as i64;
        let k = (id.clone(), g.timestamp);
        *seen.entry(k).or_default() += 1;
        if n == 7 {
            assert!([0, 200, 400].contains(&(g.timestamp - first_due)), "{g:?}");
        } else {
            assert_eq!(
                g.timestamp, first_due,
                "the timestamp is the due time: {g:?}"
            );
        }
        assert!(g.timestamp <= received_at);
        let expected_partition = match &g.key {
            Some(k) => key_partition(k, 3),
            None => src.partition,
        };
        assert_eq!(g.partition, expected_partition, "{g:?}");
        let prev = last_ts.insert(g.partition, g.timestamp).unwrap_or(i64::MIN);
        assert!(
            g.timestamp >= prev,
            "due order within a partition: {g:?} after {prev}"
        );
    }
    assert!(seen.values().all(|&c| c == 1), "each delivery once");
    let stats = h.broker.delays.stats("orders").unwrap();
    assert_eq!(stats.pending, 0);
    assert_eq!(stats.cancelled, 2);
    assert_eq!(stats.fired, want as u64);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_control_headers_refuse_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(dir.path(), |c| c.delay_max_ms = 60_000).await;
    let cfg = client_config(&h);
    tokio::task::spawn_blocking(move || {
        let p: ThreadedProducer<DefaultProducerContext> = cfg.clone().create().unwrap();
        let bad: &[&[(&str, &str)]] = &[
            &[],
            &[("kairos-delay-ms", "soon")],
            &[("kairos-delay-ms", "10"), ("kairos-deliver-at", "10")],
            &[("kairos-delay-sec", "1")],
            &[("kairos-delay-ms", "120000")],
            &[("kairos-cancel", "x")],
        ];
        for hdrs in bad {
            let mut h = OwnedHeaders::new();
            for (k, v) in *hdrs {
                h = h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            let rec = BaseRecord::<(), str>::to("bad.delay")
                .payload("x")
                .headers(h);
            p.send(rec).map_err(|(e, _)| e).unwrap();
            p.flush(TIMEOUT).unwrap();
        }
        let c: BaseConsumer = cfg.clone().set("group.id", "x").create().unwrap();
        let (lo, hi) = c
            .fetch_watermarks("bad.delay", 0, TIMEOUT)
            .expect("the delay topic exists");
        assert_eq!((lo, hi), (0, 0), "nothing appended");
        let (_, hi) = c.fetch_watermarks("bad", 0, TIMEOUT).unwrap();
        assert_eq!(hi, 0, "nothing delivered");
    })
    .await
    .unwrap();
    h.shutdown().await;
}
