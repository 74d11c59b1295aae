//! Metrics probe: the hot paths call domain verbs (`produced`, `fetched`,
//! `request_started`); this file alone knows metric names. Names carry their
//! unit last (`_bytes`, `_seconds`; counters end in `_total`).
//!
//! `/metrics` ([`Probe::render`]) has two sources:
//! - Events counted through the `metrics` recorder (one per process): requests
//!   and their latency per API, delay topics, views, quotas. The per-request
//!   handles are registered once per API and kept in a static table, so a
//!   request costs a counter and a histogram update, no allocation or lookup.
//! - Broker state written straight into the response at scrape: connections,
//!   per-topic traffic (summed from each partition's [`PartitionProbe`]),
//!   partition sizes and offsets, group offsets and lag. Read from the live
//!   topics and groups, a deleted topic or group is gone from the next scrape
//!   (a recorder gauge would stay until restart), and a series costs one
//!   formatted line instead of a registry lookup with label allocations plus
//!   the exporter's hashing and copying at every scrape.

use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use metrics::{counter, gauge, histogram, Counter, Histogram, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::broker::Broker;
use crate::log::batch::LOG_OVERHEAD;
use crate::log::BatchHeader;
use crate::topics::Partition;

const REQUESTS: &str = "kairos_requests_total";
const REQUEST_DURATION: &str = "kairos_request_duration_seconds";
const DELAY_LATENESS: &str = "kairos_delay_lateness_seconds";
/// Throttle time imposed by client quotas, per response throttled.
const QUOTA_THROTTLE: &str = "kairos_quota_throttle_seconds";
/// Buckets of `kairos_quota_throttle_seconds`: 10 ms to Kafka's 30 s cap and beyond.
const THROTTLE_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Buckets of `kairos_request_duration_seconds`: 100 µs to 10 s. Most requests take
/// well under a millisecond; a fetch that long-polls ends near its max wait
/// (librdkafka: 500 ms), an acks=all produce with `--fsync always` after an fsync.
const REQUEST_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Buckets of `kairos_delay_lateness_seconds`: 1 ms to 5 min.
const LATENESS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// How often histogram samples are folded into buckets when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// A group's lag on one partition: high watermark minus committed offset.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Lag {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    pub high_watermark: i64,
    pub lag: i64,
}

/// Lag of every committed partition whose topic (or view) still exists. A view's
/// offsets are its source's, so its lag is measured against the source's high watermark.
pub fn group_lags(broker: &Broker) -> Vec<Lag> {
    broker
        .groups
        .all_committed()
        .into_iter()
        .filter_map(|(group, topic, partition, c)| {
            let hw = broker
                .read_topic(&topic)?
                .0
                .partition(partition)?
                .log
                .high_watermark();
            Some(Lag {
                group,
                topic,
                partition,
                committed: c.offset,
                high_watermark: hw,
                lag: (hw - c.offset).max(0),
            })
        })
        .collect()
}

/// Broker-wide traffic totals the console's overview reads back (Prometheus
/// counters cannot be read): plain atomics. `/metrics` renders the connection
/// and error counts from them; traffic per topic comes from [`PartitionProbe`]s.
#[derive(Default)]
pub struct Traffic {
    produce_bytes: AtomicU64,
    produce_records: AtomicU64,
    fetch_bytes: AtomicU64,
    /// Kafka connections open now.
    pub connections: AtomicU64,
    /// Kafka connections accepted since start.
    accepted: AtomicU64,
    /// Partition appends refused (any error).
    produce_errors: AtomicU64,
}

/// A partition's traffic counters. They live in the partition
/// ([`Partition::probe`]) so that they go with it when its topic is deleted;
/// `/metrics` sums them per topic.
#[derive(Default)]
pub struct PartitionProbe {
    produce_bytes: AtomicU64,
    produce_records: AtomicU64,
    fetch_bytes: AtomicU64,
    fetch_records: AtomicU64,
}

/// A Kafka connection counted as open (`kairos_connections`) until dropped.
pub struct OpenConnection<'a>(&'a Traffic);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One request from the moment its frame was read; [`RequestTimer::replied`]
/// counts it and records its duration. A request whose connection closes before
/// its reply is written is not counted.
pub struct RequestTimer {
    slot: u8,
    read_at: Instant,
}

impl RequestTimer {
    /// The reply was written to the connection (or the request has none: acks=0).
    pub fn replied(self) {
        let s = api_series(self.slot as usize);
        s.requests.increment(1);
        s.duration.record(self.read_at.elapsed().as_secs_f64());
    }
}

/// A snapshot of [`Traffic`].
pub struct TrafficTotals {
    pub produce_bytes: u64,
    pub produce_records: u64,
    pub fetch_bytes: u64,
    pub connections: u64,
}

#[derive(Default)]
pub struct Probe {
    traffic: Traffic,
}

impl Probe {
    pub fn new() -> Probe {
        // Installed before any handle is registered: a handle taken earlier would
        // belong to the no-op recorder for good.
        recorder();
        Probe::default()
    }

    /// Totals since start, for the console's overview.
    pub fn counters(&self) -> TrafficTotals {
        let t = &self.traffic;
        TrafficTotals {
            produce_bytes: t.produce_bytes.load(Ordering::Relaxed),
            produce_records: t.produce_records.load(Ordering::Relaxed),
            fetch_bytes: t.fetch_bytes.load(Ordering::Relaxed),
            connections: t.connections.load(Ordering::Relaxed),
        }
    }

    /// A Kafka connection was accepted; it counts as open while the result lives.
    pub fn connection_opened(&self) -> OpenConnection<'_> {
        self.traffic.accepted.fetch_add(1, Ordering::Relaxed);
        self.traffic.connections.fetch_add(1, Ordering::Relaxed);
        OpenConnection(&self.traffic)
    }

    /// A request frame (its length prefix removed) read from its socket at `read_at`.
    pub fn request_started(&self, frame: &[u8], read_at: Instant) -> RequestTimer {
        let key = match frame {
            [a, b, ..] => i16::from_be_bytes([*a, *b]),
            _ => -1,
        };
        let slot = usize::try_from(key)
            .ok()
            .filter(|&k| k < UNKNOWN_API)
            .unwrap_or(UNKNOWN_API);
        RequestTimer {
            slot: slot as u8,
            read_at,
        }
    }

    /// Batches appended to `partition`: their bytes as stored and their records.
    pub fn produced(&self, partition: &Partition, bytes: usize, records: i64) {
        let (bytes, records) = (bytes as u64, records.max(0) as u64);
        let t = &self.traffic;
        t.produce_bytes.fetch_add(bytes, Ordering::Relaxed);
        t.produce_records.fetch_add(records, Ordering::Relaxed);
        let p = &partition.probe;
        p.produce_bytes.fetch_add(bytes, Ordering::Relaxed);
        p.produce_records.fetch_add(records, Ordering::Relaxed);
    }

    pub fn produce_failed(&self) {
        self.traffic.produce_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Stored batches of `partition` sent in a fetch response (a view's as filtered).
    /// Records are counted from the batch headers, never decoded.
    pub fn fetched(&self, partition: &Partition, batches: &[u8]) {
        let bytes = batches.len() as u64;
        self.traffic.fetch_bytes.fetch_add(bytes, Ordering::Relaxed);
        let p = &partition.probe;
        p.fetch_bytes.fetch_add(bytes, Ordering::Relaxed);
        p.fetch_records
            .fetch_add(records_in(batches), Ordering::Relaxed);
    }

    /// Records read from `<target>.delay` into the wheel, and cancels among them.
    pub fn delay_ingested(target: &str, ingested: u64, cancelled: u64) {
        counter!("kairos_delay_ingested_total", "target" => target.to_string()).increment(ingested);
        counter!("kairos_delay_cancelled_total", "target" => target.to_string())
            .increment(cancelled);
    }

    /// A pending delay record cancelled from the console.
    pub fn delay_cancelled(target: &str) {
        counter!("kairos_delay_cancelled_total", "target" => target.to_string()).increment(1);
    }

    /// Delay records now pending for a target (also called at startup, before
    /// the broker's probe exists: hence the recorder first).
    pub fn delay_pending(target: &str, pending: u64) {
        recorder();
        gauge!("kairos_delay_pending", "target" => target.to_string()).set(pending as f64);
    }

    /// Delay records delivered to their target.
    pub fn delay_fired(target: &str, records: u64) {
        counter!("kairos_delay_fired_total", "target" => target.to_string()).increment(records);
    }

    /// A delay record delivered `lateness_ms` after its due time.
    pub fn delay_late(lateness_ms: i64) {
        static LATENESS: OnceLock<Histogram> = OnceLock::new();
        LATENESS
            .get_or_init(|| {
                recorder();
                histogram!(DELAY_LATENESS)
            })
            .record(lateness_ms.max(0) as f64 / 1e3);
    }

    /// The whole `/metrics` text: the recorder's series, then the broker's state now.
    pub fn render(&self, broker: &Broker) -> String {
        let mut out = recorder().render();
        self.render_state(broker, &mut out);
        out
    }

    /// Connections, topics, partitions and group offsets, read now and written
    /// straight into `out` (no string per series). Each family's samples are
    /// written together, as the text format wants.
    fn render_state(&self, broker: &Broker, out: &mut String) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let topics = broker.topics.list();
        // Per topic: produce bytes, produce records, fetch bytes, fetch records.
        let mut traffic: Vec<(&str, [u64; 4])> = Vec::with_capacity(topics.len());
        let mut partitions: Vec<PartitionSample<'_>> = Vec::new();
        for topic in &topics {
            let mut sums = [0u64; 4];
            for p in topic.partitions() {
                let c = &p.probe;
                sums[0] += load(&c.produce_bytes);
                sums[1] += load(&c.produce_records);
                sums[2] += load(&c.fetch_bytes);
                sums[3] += load(&c.fetch_records);
                partitions.push(PartitionSample {
                    topic: &topic.name,
                    index: p.index,
                    size: p.log.size_bytes(),
                    start: p.log.log_start_offset(),
                    high_watermark: p.log.high_watermark(),
                });
            }
            traffic.push((&topic.name, sums));
        }
        let all_lags = group_lags(broker);
        // Sorted by reference: a `Lag` is over 100 bytes to move.
        let mut lags: Vec<&Lag> = all_lags.iter().collect();
        lags.sort_unstable_by(|a, b| {
            (&a.group, &a.topic, a.partition).cmp(&(&b.group, &b.topic, b.partition))
        });
        // About 100 bytes a sample: one allocation instead of doublings.
        out.reserve(100 * (4 * traffic.len() + 3 * partitions.len() + 2 * lags.len()) + 4096);

        let t = &self.traffic;
        let mut w = Text(out);
        w.single(
            "kairos_connections",
            "gauge",
            "Kafka connections open now.",
            load(&t.connections),
        );
        w.single(
            "kairos_connections_accepted_total",
            "counter",
            "Kafka connections accepted since start.",
            load(&t.accepted),
        );
        w.single(
            "kairos_produce_errors_total",
            "counter",
            "Partition appends refused with an error.",
            load(&t.produce_errors),
        );
        w.single("kairos_topics", "gauge", "Topics.", topics.len());
        w.single(
            "kairos_partitions",
            "gauge",
            "Partitions of all topics.",
            partitions.len(),
        );
        w.single(
            "kairos_log_size_bytes",
            "gauge",
            "Bytes of every partition's segment files.",
            partitions.iter().map(|p| p.size).sum::<u64>(),
        );
        let topic_families = [
            (
                "kairos_topic_produce_bytes_total",
                "Batch bytes appended to the topic by Produce since start.",
            ),
            (
                "kairos_topic_produce_records_total",
                "Records appended to the topic by Produce since start.",
            ),
            (
                "kairos_topic_fetch_bytes_total",
                "Batch bytes of the topic sent in Fetch responses since start (a view's count under its source).",
            ),
            (
                "kairos_topic_fetch_records_total",
                "Records of data batches of the topic sent in Fetch responses since start (from batch headers).",
            ),
        ];
        for (i, (name, help)) in topic_families.into_iter().enumerate() {
            w.family(name, "counter", help, &traffic, |(topic, sums)| {
                ([("topic", Label::Str(topic))], sums[i])
            });
        }
        w.family(
            "kairos_partition_log_size_bytes",
            "gauge",
            "Bytes of the partition's segment files.",
            &partitions,
            |p| (partition_labels(p), p.size),
        );
        w.family(
            "kairos_partition_log_start_offset",
            "gauge",
            "The partition's log start offset.",
            &partitions,
            |p| (partition_labels(p), p.start),
        );
        w.family(
            "kairos_partition_high_watermark",
            "gauge",
            "The partition's high watermark (its log end offset: one replica).",
            &partitions,
            |p| (partition_labels(p), p.high_watermark),
        );
        w.family(
            "kairos_group_committed_offset",
            "gauge",
            "The group's committed offset on the partition.",
            &lags,
            |l| (lag_labels(l), l.committed),
        );
        w.family(
            "kairos_group_lag_records",
            "gauge",
            "High watermark minus the group's committed offset.",
            &lags,
            |l| (lag_labels(l), l.lag),
        );
        let views = broker.views.list();
        let outcomes: Vec<(&str, &str, u64)> = views
            .iter()
            .flat_map(|v| {
                ["kept", "dropped", "failed"]
                    .into_iter()
                    .zip(&v.counts)
                    .map(|(o, c)| (v.name.as_str(), o, load(c)))
            })
            .collect();
        w.family(
            "kairos_view_records_total",
            "counter",
            "Records read through a view since start, by the script's outcome.",
            &outcomes,
            |&(view, outcome, n)| {
                (
                    [("view", Label::Str(view)), ("outcome", Label::Str(outcome))],
                    n,
                )
            },
        );
    }

    /// A response throttled by a client quota: `entity` is the quota's client id
    /// (`<default>` for the default entity), `kind` `produce` or `fetch`.
    pub fn quota_throttled(&self, entity: &str, kind: &'static str, throttle_ms: u64) {
        let labels = [
            ("client_id", entity.to_string()),
            ("kind", kind.to_string()),
        ];
        // `_count` is the number of throttled responses, `_sum` the seconds imposed.
        histogram!(QUOTA_THROTTLE, &labels).record(throttle_ms as f64 / 1000.0);
    }
}

/// The process-wide Prometheus recorder, installed at its first use (tests run
/// several brokers in one process; they share it). Its histograms keep raw
/// samples until a scrape or an upkeep folds them into buckets, so a thread does
/// that every `UPKEEP_EVERY` (the exporter's own upkeep task needs its
/// `async-runtime` feature, which is left out).
pub(super) fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), REQUEST_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(DELAY_LATENESS.into()), LATENESS_BUCKETS)
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(QUOTA_THROTTLE.into()), THROTTLE_BUCKETS)
            })
            .expect("bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then ours stays empty.
        if metrics::set_global_recorder(recorder).is_ok() {
            describe();
        }
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            });
        if let Err(e) = spawned {
            tracing::warn!("metrics upkeep thread: {e}");
        }
        handle
    })
}

/// HELP lines of the recorder's series.
fn describe() {
    metrics::describe_counter!(REQUESTS, "Requests answered, by API.");
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time from a request's frame read to its reply written (deferred replies: when ready), by API."
    );
    metrics::describe_counter!(
        "kairos_delay_ingested_total",
        "Delay records read from <target>.delay into the wheel."
    );
    metrics::describe_counter!(
        "kairos_delay_cancelled_total",
        "Delay records cancelled (by a kairos-cancel record or the console)."
    );
    metrics::describe_counter!(
        "kairos_delay_fired_total",
        "Delay records delivered to their target."
    );
    metrics::describe_gauge!(
        "kairos_delay_pending",
        "Delay records waiting in the wheel."
    );
    metrics::describe_histogram!(
        DELAY_LATENESS,
        metrics::Unit::Seconds,
        "Delivery time minus due time of delay records."
    );
}

/// The API slot of keys that are not Kafka's (theirs are below 128; the highest is 92).
const UNKNOWN_API: usize = 128;

/// The request series of one API, registered at its first request and kept.
struct ApiSeries {
    requests: Counter,
    duration: Histogram,
}

static API_SERIES: [OnceLock<ApiSeries>; UNKNOWN_API + 1] =
    [const { OnceLock::new() }; UNKNOWN_API + 1];

fn api_series(slot: usize) -> &'static ApiSeries {
    API_SERIES[slot].get_or_init(|| {
        recorder();
        // Keys this crate does not know share the label (and so the series) of slot 128.
        let api: SharedString = i16::try_from(slot)
            .ok()
            .filter(|_| slot < UNKNOWN_API)
            .and_then(|k| ApiKey::try_from(k).ok())
            .map(|k| SharedString::from(format!("{k:?}")))
            .unwrap_or(SharedString::const_str("unknown"));
        let labels = [("api", api)];
        ApiSeries {
            requests: counter!(REQUESTS, &labels),
            duration: histogram!(REQUEST_DURATION, &labels),
        }
    })
}

/// Records in the whole data batches of `batches`, from their headers; control
/// batches and a trailing partial batch are not counted.
fn records_in(mut batches: &[u8]) -> u64 {
    let mut n = 0;
    while let Some(h) = BatchHeader::parse(batches) {
        let len = LOG_OVERHEAD + h.batch_length.max(0) as usize;
        if len > batches.len() {
            break;
        }
        if !h.is_control() {
            n += h.record_count.max(0) as u64;
        }
        batches = &batches[len..];
    }
    n
}

/// One partition's gauges, read at scrape.
struct PartitionSample<'a> {
    topic: &'a str,
    index: i32,
    size: u64,
    start: i64,
    high_watermark: i64,
}

/// A label value.
enum Label<'a> {
    Str(&'a str),
    Int(i32),
}

fn partition_labels<'a>(p: &PartitionSample<'a>) -> [(&'static str, Label<'a>); 2] {
    [
        ("topic", Label::Str(p.topic)),
        ("partition", Label::Int(p.index)),
    ]
}

fn lag_labels<'a>(l: &&'a Lag) -> [(&'static str, Label<'a>); 3] {
    [
        ("group", Label::Str(&l.group)),
        ("topic", Label::Str(&l.topic)),
        ("partition", Label::Int(l.partition)),
    ]
}

/// Prometheus text format, written into a string.
struct Text<'a>(&'a mut String);

impl Text<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = write!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    /// A family of one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        self.header(name, kind, help);
        let _ = write!(self.0, "{name} {value}\n\n");
    }

    /// A family with a sample per item (`sample` gives its labels and value);
    /// nothing at all when there are no items.
    fn family<T, V: Display, const N: usize>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        items: &[T],
        sample: impl Fn(&T) -> ([(&'static str, Label<'_>); N], V),
    ) {
        if items.is_empty() {
            return;
        }
        self.header(name, kind, help);
        let out = &mut *self.0;
        for item in items {
            let (labels, value) = sample(item);
            out.push_str(name);
            for (i, (key, label)) in labels.iter().enumerate() {
                out.push_str(if i == 0 { "{" } else { "," });
                out.push_str(key);
                out.push_str("=\"");
                match label {
                    Label::Str(s) => push_escaped(out, s),
                    Label::Int(n) => {
                        let _ = write!(out, "{n}");
                    }
                }
                out.push('"');
            }
            if N > 0 {
                out.push('}');
            }
            let _ = writeln!(out, " {value}");
        }
        out.push('\n');
    }
}

/// Appends a label value escaped for the text format (backslash, double quote, newline).
fn push_escaped(out: &mut String, s: &str) {
    let mut done = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            b'\n' => "\\n",
            _ => continue,
        };
        // `i` is an ASCII byte's index, so a char boundary.
        out.push_str(&s[done..i]);
        out.push_str(escaped);
        done = i + 1;
    }
    out.push_str(&s[done..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let escaped = |v: &str| {
            let mut s = String::new();
            push_escaped(&mut s, v);
            s
        };
        assert_eq!(escaped("orders"), "orders");
        assert_eq!(escaped("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escaped("\n"), "\\n");
    }

    /// A v2 batch header of `count` records and `body` bytes after it.
    fn batch(count: i32, attributes: i16, body: usize) -> Vec<u8> {
        let mut b = vec![0u8; crate::log::batch::HEADER_LEN + body];
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[16] = 2;
        b[21..23].copy_from_slice(&attributes.to_be_bytes());
        b[57..61].copy_from_slice(&count.to_be_bytes());
        b
    }

    #[test]
    fn records_are_counted_from_batch_headers() {
        let mut bytes = batch(3, 0, 40);
        bytes.extend(batch(1, crate::log::ATTR_CONTROL, 10)); // a transaction marker
        bytes.extend(batch(5, 0, 0));
        assert_eq!(records_in(&bytes), 8);
        // A trailing partial batch (a fetch cut at max bytes) is not counted.
        let whole = bytes.len();
        bytes.extend(batch(7, 0, 100));
        assert_eq!(records_in(&bytes[..whole + 70]), 8);
        assert_eq!(records_in(&[]), 0);
    }

    #[test]
    fn request_timer_slots() {
        let p = Probe::default();
        let at = Instant::now();
        assert_eq!(p.request_started(&[0, 0, 0, 9], at).slot, 0);
        assert_eq!(p.request_started(&[0, 92], at).slot, 92);
        assert_eq!(p.request_started(&[0, 200], at).slot as usize, UNKNOWN_API);
        assert_eq!(
            p.request_started(&[0xff, 0xff], at).slot as usize,
            UNKNOWN_API
        );
        assert_eq!(p.request_started(&[1], at).slot as usize, UNKNOWN_API);
    }

    #[test]
    fn families_are_written_whole_or_not_at_all() {
        fn sample<'a>(item: &'a (&str, i32, i64)) -> ([(&'static str, Label<'a>); 2], i64) {
            let (topic, partition, value) = item;
            (
                [
                    ("topic", Label::Str(topic)),
                    ("partition", Label::Int(*partition)),
                ],
                *value,
            )
        }
        let mut s = String::new();
        Text(&mut s).family("kairos_x", "gauge", "X.", &[], sample);
        assert_eq!(s, "");
        let items = [("a", 0, 5), ("b\"", 1, -1)];
        Text(&mut s).family("kairos_x", "gauge", "X.", &items, sample);
        assert_eq!(
            s,
            "# HELP kairos_x X.\n# TYPE kairos_x gauge\n\
             kairos_x{topic=\"a\",partition=\"0\"} 5\n\
             kairos_x{topic=\"b\\\"\",partition=\"1\"} -1\n\n"
        );
    }
}
