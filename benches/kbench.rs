//! # kbench — the Kairos benchmark
//!
//! One command measures Kairos with a stock Kafka client (librdkafka, through the `rdkafka`
//! crate), prints a Markdown table and writes it to a file:
//!
//! ```text
//! cargo bench --bench kbench                      # full run, about 6 minutes, writes bench-results.md
//! cargo bench --bench kbench -- --quick           # smoke run, about 30 seconds
//! cargo bench --bench kbench -- --out results.md --only produce,latency
//! cargo bench --bench kbench -- --only groups      # the consumer-group table only, about 1 minute
//! cargo bench --bench kbench -- --only delay       # the delay-topic table only, about 4 minutes
//! cargo bench --bench kbench -- --only metrics     # the /metrics row only, about 20 seconds
//! ```
//!
//! `--only` takes broker words (`default`, `fsync`) and scenario words (`produce`, `consume`, `view`,
//! `latency`, `groups`, `txn`, `delay`, `metrics`); each kind left out of a list means all of that kind. The
//! `--fsync always` broker is started only when produce or latency scenarios are selected.
//!
//! It builds and starts the broker itself: the binary is `$KAIROS_BIN`, else the `kairos`
//! binary cargo built alongside this bench, else `$CARGO_TARGET_DIR/release/kairos`, else
//! `target/release/kairos`. Each broker runs as a child process as
//! `kairos serve --listen 127.0.0.1:P --console 127.0.0.1:C --data-dir D [--fsync always]`
//! on free loopback ports with a fresh temporary data directory, and is stopped with SIGTERM
//! (a non-zero exit or a slow shutdown is reported under "Notes"). The scenarios with the
//! default fsync policy run on one broker, the `--fsync always` ones on a second, fresh one.
//!
//! Other servers:
//! * `--bootstrap ADDR [--broker-pid PID]` runs the default-fsync scenarios against a server
//!   that is already running (CPU and RSS columns need `--broker-pid`). For the client-bound
//!   ceiling: `python3 /work/shared/tools/nullsink.py --port 19092` (a sink that acknowledges
//!   produce and stores nothing) and `kbench --bootstrap 127.0.0.1:19092 --only produce,latency`.
//! * `--broker-cmd 'CMD'` starts `sh -c 'exec CMD'` instead of kairos, with `{port}` in CMD
//!   replaced by a free port and `{data}` by a fresh directory.
//!
//! ## Scenarios
//! Every run uses a fresh topic with one partition (created with CreateTopics, or by
//! auto-creation when the server refuses CreateTopics), null keys, and values of fixed
//! pseudo-random bytes. Producers use librdkafka's defaults (batching, no compression) with
//! `linger.ms=5`; a tight `send()` loop on a `BaseProducer`, polled for delivery reports every
//! 1024 sends and whenever the queue is full. Each scenario runs `--repeats` times (3; 1 with
//! `--quick`) and the tables quote the median of each column separately.
//! * 1-4: produce 100 B / 1 KiB records with acks=1 / acks=all for `--secs` seconds (5) or
//!   `--records` records; then flush. The rate counts acknowledged records over the time from
//!   the first send to the last acknowledgement.
//!   With `--produce-api batch` the loop hands librdkafka 1024 records per
//!   `rd_kafka_produce_batch` call (partition 0, values not copied), which roughly halves the
//!   client's CPU per record; use it when the client, not the broker, is the limit (see the
//!   CPU columns), e.g. to compare with a ceiling measured that way.
//! * 5-8: the same on a broker started with `--fsync always`.
//! * 9, 9b: consume catch-up: a topic pre-filled with `--consume-records` (5,000,000) records
//!   of 100 B is read from offset 0 by a fresh `BaseConsumer` (`assign`, no commits, librdkafka's
//!   fetch defaults), timed from `assign` to the last record. Row 9 takes records with
//!   `BaseConsumer::poll`, one call per record (the rdkafka crate's API); row 9b with
//!   `rd_kafka_consume_batch_queue`, up to 8192 per call (as confluent-kafka-python's
//!   `consume(num_messages)` does). The difference is client overhead only.
//! * V1-V3 (`--only view`): a topic of `--consume-records`/10 records of 1 KiB JSON
//!   (`{"city":"beijing","price":P,"pad":"xx…"}`, P cycling over 11..=110, the last record's
//!   110) read from offset 0 with the batch API, directly (V1), through a view whose script
//!   (`json.city == "beijing" && json.price > 10`) keeps every record (V2: each record is
//!   decoded, parsed as JSON and run through the script), and through a view keeping 10 %
//!   (V3: `json.price > 100`, so most batches are re-encoded). V3's records/s and CPU s/M
//!   count source records filtered, not records received; runs interleaved.
//! * 10a, 10b (`--fsync always`), 10c (linger.ms=0): produce latency: 50,000 records/s
//!   (`--latency-rate`) of 100 B with acks=all for `--latency-secs` (10) on a
//!   `ThreadedProducer`, paced in 200 µs steps. A record's latency is
//!   the time of its delivery report minus the time just before its `send()`. Note that with
//!   `linger.ms=5` librdkafka holds each record up to 5 ms before sending its batch, so about
//!   half of p50 and most of p99 is the client's linger; row 10c (linger.ms=0) shows the rest.
//!
//! ### Consumer groups (default-fsync broker, after the rows above)
//! * G1: stable time. A fresh 50-partition topic; 10 librdkafka `BaseConsumer`s (classic
//!   protocol, librdkafka's default assignors, one group id per run) are created, then all
//!   `subscribe` one after another and are polled round-robin from one thread; the figure is the
//!   time from the first `subscribe` until every consumer has a non-empty assignment and
//!   together they own each of the 50 partitions exactly once (checked every ~2 ms). The target
//!   is the broker's initial rebalance delay (3 s, kairos's and Kafka's default) + 1 s.
//! * G2a, G2b: offset commits. A raw kafka-protocol client (no librdkafka) on 4 TCP connections,
//!   each with up to 64 requests in flight, sends standalone OffsetCommit v8 (generation -1,
//!   empty member id) for groups `bench-g0` .. `bench-g999` round-robin (each group always on
//!   the same connection), committing an increasing offset for 1 (G2a) or 10 (G2b) partitions
//!   of an existing topic per request, for 5 s (1 s with `--quick`). The rate counts partition
//!   offsets committed per second, over the time to the last response; every response must
//!   name each partition with error code 0 and arrive in order, or the row fails.
//! * G3: idle group memory. 100 groups (20 with `--quick`) of 10 members, one connection per
//!   member (all opened and warmed with ApiVersions before the first measurement, so connection
//!   buffers are not counted). Each member sends JoinGroup v5 with an empty member id, expects
//!   MEMBER_ID_REQUIRED (79) and rejoins with the id (session and rebalance timeouts 60 s, protocol
//!   `consumer`/`range`, a ConsumerProtocolSubscription of the topic); the leader then sends
//!   SyncGroup v5 with a ConsumerProtocolAssignment of 5 partitions for every member and the
//!   followers SyncGroup too. The run checks one leader and one generation per group and that
//!   each group's 50 partitions were handed out once each. The figure is the broker's VmRSS 2 s
//!   after the last SyncGroup minus its VmRSS just before the first JoinGroup, divided by the
//!   number of groups; the connections stay open meanwhile. Afterwards each group is emptied
//!   with one batched LeaveGroup.
//!
//! ### Delay topics (default-fsync broker started by kbench, after the rows above)
//! Each run creates a fresh target topic `<t>` (one partition) and lets the broker create
//! `<t>.delay` (Metadata naming it), then deletes both. Records are 100 B, keyless, sent with
//! acks=1 and one `kairos-*` header. Pending counts come from the console
//! (`GET /api/v1/delays/<t>?limit=1`, polled every 20 ms), so these rows are skipped with
//! `--bootstrap` / `--broker-cmd`. D1-D3 run `--repeats` times, interleaved; D4 once, last.
//! * D1 ingest: `--delay-records` (1,000,000; 100,000 with `--quick`) records with
//!   `kairos-deliver-at` = now + 1 h, sent as in rows 1-4; the rate counts them over the time
//!   from the first send until the console shows all of them pending (in the wheel).
//! * D2 fire: as many records, all due at one instant T (now + 2 s + N / 50,000 s), ingested
//!   before T (the run fails otherwise); the rate is N over the time from T until the target's
//!   high watermark (ListOffsets every 5 ms) reaches N. CPU columns cover that time only.
//! * D3 lateness: 10,000 records/s with `kairos-delay-ms: 1000` for `--latency-secs` (10; 2 with
//!   `--quick`) on a `ThreadedProducer` paced as in row 10a, while a `BaseConsumer` reads the
//!   target (fetch.wait.max.ms=5). Lateness = the consumer's receive time (wall clock, after
//!   `poll` returns) minus the record's timestamp (its due time); it includes the consumer's own
//!   fetch latency, so it is an upper bound of the broker's. A record received before its
//!   timestamp counts as early (must be 0). The run fails unless every record arrived once
//!   (distinct `kairos-delay-id` headers, high watermark = records acknowledged).
//! * D4 pending memory: the broker's VmRSS just before, and 2 s after, `--delay-pending`
//!   (10,000,000; 200,000 with `--quick`) records with deliver-at = now + 1 day are all pending
//!   (produced with batch.size=1000000, linger.ms=50); the figure is the growth. The notes give
//!   the ingest rate.
//!
//! ### /metrics (default-fsync broker started by kbench, after the rows above)
//! * M1: 100 fresh topics of 10 partitions (1,000 partitions) get 10 records of 100 B in each
//!   partition (acks=1), and 100 groups commit offset 4 on every partition of one topic each
//!   (standalone OffsetCommit v8 on a raw connection), so `/metrics` carries 1,000 series of
//!   each partition gauge and 1,000 group lags. Each run then GETs `/metrics` 50 times in a row
//!   (a new connection each, `Connection: close`), each timed from connect to the response's
//!   last byte; the row quotes the median over runs of each run's p50, p99 and max, and the
//!   response size. The run fails unless the response holds the 1,000 group lags. Target: p99
//!   ≤ 20 ms. The notes give each run's sample count and the p50 of 50 `GET /healthz` (the
//!   HTTP round trip alone). Skipped with `--bootstrap` / `--broker-cmd` (it needs the console). The topics are
//!   deleted afterwards (their committed offsets with them).
//!
//! ## Columns
//! * **records/s**: median acknowledged (produce) or received (consume) records per second.
//! * **MB/s**: record value bytes per second, 10^6 bytes (keys are null, framing not counted).
//! * **broker CPU s/M**: broker CPU time (user + system, all threads, from `/proc/PID/stat`)
//!   spent during the run, per million records. The figure to cut.
//! * **broker CPU %** and **client CPU %**: CPU time over wall time of the broker and of this
//!   process (librdkafka's threads included); 100 % is one core and the machine's cores are
//!   shared by both, so their sum against `cores × 100 %` shows who is saturated.
//! * **other CPU %**: CPU used meanwhile by every other process of the machine (/proc/stat minus
//!   the two above). Anything well above 0 means the run competed with other work and its
//!   figures are low; rerun on an idle machine.
//! * **peak RSS MB**: the broker's largest `VmRSS` sampled every 50 ms during the run.
//! * **runs**: every run's records/s, to judge the spread.
//! * **p50/p99/p99.9/max ms**: latency percentiles of all records of a run (median over runs).
//! * **idle RSS**: the broker's `VmRSS` 1 s after it became ready, before any client connected;
//!   **peak RSS during produce**: the largest sample of rows 1-4 (or 5-8); **VmHWM**: the
//!   kernel's own peak RSS of the process over its life (consume and latency included).
//! * **target**: the issue's target for that figure and whether the median meets it.
//! * Consumer groups table: **result** is G1's seconds to Stable, G2's partition offsets
//!   committed per second, or G3's broker VmRSS growth per idle 10-member group in KB (VmRSS's
//!   kB, 1024 bytes); **broker CPU s/M commits** is broker CPU seconds per million offsets
//!   committed (G2 only); the CPU % columns are as above over the measured time (G1: subscribe to
//!   Stable; G3: first JoinGroup to last SyncGroup); **runs** lists each run's result.
//! * Delay topics table: **result** is D1/D2's records/s, D3's lateness percentiles (median over
//!   runs of each) with the early records of all runs, or D4's VmRSS growth in MiB; the CPU
//!   and RSS columns are as above, per million records ingested (D1, D4), fired (D2) or
//!   delivered (D3); **runs** lists each run's result (D3: p99 and max).
//!
//! Rates use MB = 10^6 bytes; RSS figures are MiB (2^20 bytes). Progress goes to stderr, the
//! report to stdout and to `--out`. Run on an otherwise idle machine: client and broker share
//! its cores, so any other load shows up in the numbers.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use clap::Parser;
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopicPartition;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, ConsumerProtocolAssignment,
    ConsumerProtocolSubscription, GroupId, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, OffsetCommitRequest, OffsetCommitResponse, RequestHeader, ResponseHeader,
    SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser, Debug)]
#[command(
    name = "kbench",
    about = "Kairos benchmark: starts the broker, measures it with librdkafka, writes a Markdown table"
)]
struct Args {
    /// Write the Markdown report here.
    #[arg(long, value_name = "FILE", default_value = "bench-results.md")]
    out: PathBuf,
    /// Short smoke run (about 30 s): 1 repeat, short runs, few records, fewer idle groups.
    #[arg(long)]
    quick: bool,
    /// Measure a server that is already running at ADDR instead of starting kairos.
    #[arg(long, value_name = "ADDR", conflicts_with = "broker_cmd")]
    bootstrap: Option<String>,
    /// PID of the --bootstrap server, for the CPU and RSS columns.
    #[arg(long, value_name = "PID", requires = "bootstrap")]
    broker_pid: Option<u32>,
    /// Start this shell command as the server ({port}: a free port, {data}: a fresh dir).
    #[arg(long, value_name = "CMD")]
    broker_cmd: Option<String>,
    /// The kairos binary (default: the one cargo built, else target/release/kairos).
    #[arg(long, value_name = "PATH", env = "KAIROS_BIN")]
    kairos_bin: Option<PathBuf>,
    /// Runs per scenario; tables quote the median [3, --quick: 1].
    #[arg(long, value_name = "N")]
    repeats: Option<usize>,
    /// Seconds per produce run [5, --quick: 0.4].
    #[arg(long, value_name = "S")]
    secs: Option<f64>,
    /// Records per produce run, instead of --secs.
    #[arg(long, value_name = "N")]
    records: Option<u64>,
    /// How produce rows hand records to librdkafka.
    #[arg(long, value_enum, default_value_t = ProduceApi::Send)]
    produce_api: ProduceApi,
    /// Records pre-filled for the consume catch-up [5000000, --quick: 200000].
    #[arg(long, value_name = "N")]
    consume_records: Option<u64>,
    /// Records per second in the latency scenario.
    #[arg(long, value_name = "N", default_value_t = 50_000)]
    latency_rate: u64,
    /// Seconds per latency run [10, --quick: 1].
    #[arg(long, value_name = "S")]
    latency_secs: Option<f64>,
    /// Only these: any of default,fsync (brokers) and produce,consume,latency,groups,txn,view,delay,metrics (kinds).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    only: Vec<String>,
    /// Records per delay ingest and fire run (D1, D2) [1000000, --quick: 100000].
    #[arg(long, value_name = "N")]
    delay_records: Option<u64>,
    /// Records left pending in the delay memory run (D4) [10000000, --quick: 200000].
    #[arg(long, value_name = "N")]
    delay_pending: Option<u64>,
    /// Extra librdkafka producer property (repeatable), e.g. -X batch.size=2000000.
    #[arg(short = 'X', long = "producer-prop", value_name = "KEY=VALUE")]
    producer_props: Vec<String>,
    /// Extra librdkafka consumer property (repeatable), e.g. -C fetch.max.bytes=104857600.
    #[arg(short = 'C', long = "consumer-prop", value_name = "KEY=VALUE")]
    consumer_props: Vec<String>,
    /// Do not use CreateTopics/DeleteTopics; rely on auto-creation.
    #[arg(long)]
    auto_create: bool,
    /// Parent directory for the brokers' data directories and logs [system temp dir].
    #[arg(long, value_name = "DIR")]
    tmp_dir: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Sizes of one invocation, after --quick and the explicit options.
#[derive(Clone, Debug)]
struct Plan {
    repeats: usize,
    produce: Amount,
    produce_api: ProduceApi,
    consume_records: u64,
    latency_rate: u64,
    latency_secs: f64,
    settle: Duration,
    /// Seconds per offset-commit run (G2).
    commit_secs: f64,
    /// Groups formed in the idle-memory scenario (G3).
    idle_groups: usize,
    /// Records per delay ingest and fire run (D1, D2).
    delay_records: u64,
    /// Records pending in the delay memory run (D4).
    delay_pending: u64,
    /// Seconds of the delay lateness run (D3).
    delay_secs: f64,
    producer_props: Vec<(String, String)>,
    consumer_props: Vec<(String, String)>,
}

/// How the producer hands records to librdkafka.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
enum ProduceApi {
    /// `BaseProducer::send`, one call per record (the rdkafka crate's API).
    Send,
    /// `rd_kafka_produce_batch`, 1024 records per call, to partition 0, values not copied.
    Batch,
}

#[derive(Clone, Copy, Debug)]
enum Amount {
    Secs(f64),
    Records(u64),
}

/// What to run: broker groups and scenario kinds.
#[derive(Clone, Debug)]
struct Selection {
    default_group: bool,
    fsync_group: bool,
    produce: bool,
    consume: bool,
    latency: bool,
    groups: bool,
    txn: bool,
    view: bool,
    delay: bool,
    metrics: bool,
}

impl Selection {
    fn parse(only: &[String]) -> Result<Selection, String> {
        let known = [
            "default", "fsync", "produce", "consume", "latency", "groups", "txn", "view", "delay",
            "metrics",
        ];
        for w in only {
            if !known.contains(&w.as_str()) {
                return Err(format!(
                    "--only: unknown word {w:?} (known: {})",
                    known.join(",")
                ));
            }
        }
        let has = |w: &str| only.iter().any(|x| x == w);
        let any_group = has("default") || has("fsync");
        let any_kind = [
            "produce", "consume", "latency", "groups", "txn", "delay", "view", "metrics",
        ]
        .iter()
        .any(|w| has(w));
        Ok(Selection {
            default_group: !any_group || has("default"),
            fsync_group: !any_group || has("fsync"),
            produce: !any_kind || has("produce"),
            consume: !any_kind || has("consume"),
            latency: !any_kind || has("latency"),
            groups: !any_kind || has("groups"),
            txn: !any_kind || has("txn"),
            view: !any_kind || has("view"),
            delay: !any_kind || has("delay"),
            metrics: !any_kind || has("metrics"),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// /proc helpers

fn clk_tck() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// CPU seconds (user + system, all threads) of a process; `None` = this process.
fn cpu_secs(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let s = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces):
    // state(3) ppid(4) ... utime(14) stime(15).
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clk_tck())
}

/// CPU seconds the whole machine has been busy (all cores; /proc/stat minus idle and iowait).
fn machine_busy_secs() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<f64> = s
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = f.iter().take(8).sum();
    Some((total - f.get(3)? - f.get(4)?) / clk_tck())
}

/// A `Vm*` line of /proc/PID/status, in KiB.
fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
        .and_then(|l| l[key.len() + 1..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Samples a process's VmRSS every 50 ms and keeps the largest.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    handle: JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: Option<u32>) -> Option<RssSampler> {
        let pid = pid?;
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(proc_status_kb(pid, "VmRSS").unwrap_or(0)));
        let (s, p) = (stop.clone(), peak.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kb) = proc_status_kb(pid, "VmRSS") {
                    p.fetch_max(kb, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Some(RssSampler { stop, peak, handle })
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
        self.peak.load(Ordering::Relaxed)
    }
}

/// CPU of the broker and of this process between `start` and `stop`, plus the broker's peak RSS.
struct Meter {
    pid: Option<u32>,
    broker0: Option<f64>,
    client0: Option<f64>,
    machine0: Option<f64>,
    sampler: Option<RssSampler>,
}

struct Metered {
    broker_cpu: Option<f64>,
    client_cpu: Option<f64>,
    /// CPU used by every other process of the machine.
    other_cpu: Option<f64>,
    peak_rss_kb: Option<u64>,
}

impl Meter {
    fn start(pid: Option<u32>) -> Meter {
        Meter {
            pid,
            broker0: pid.and_then(|p| cpu_secs(Some(p))),
            client0: cpu_secs(None),
            machine0: machine_busy_secs(),
            sampler: RssSampler::start(pid),
        }
    }

    fn stop(self) -> Metered {
        let broker1 = self.pid.and_then(|p| cpu_secs(Some(p)));
        let client1 = cpu_secs(None);
        let machine1 = machine_busy_secs();
        let broker_cpu = self.broker0.zip(broker1).map(|(a, b)| b - a);
        let client_cpu = self.client0.zip(client1).map(|(a, b)| b - a);
        let machine = self.machine0.zip(machine1).map(|(a, b)| b - a);
        Metered {
            broker_cpu,
            client_cpu,
            other_cpu: machine
                .map(|m| (m - broker_cpu.unwrap_or(0.0) - client_cpu.unwrap_or(0.0)).max(0.0)),
            peak_rss_kb: self.sampler.map(RssSampler::finish),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The broker process

/// The PID of the running broker child and its data dir, for the signal handler.
static CHILD_PID: AtomicU32 = AtomicU32::new(0);
static CHILD_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn send_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

struct Broker {
    child: Option<Child>,
    pid: u32,
    addr: String,
    console: Option<String>,
    command_line: String,
    log_path: PathBuf,
    data_dir: PathBuf,
}

struct Stopped {
    status: Option<ExitStatus>,
    /// It had exited before it was asked to.
    died: bool,
    secs: f64,
    hwm_kb: Option<u64>,
}

impl Broker {
    fn start_kairos(
        bin: &Path,
        fsync_always: bool,
        tmp: &Path,
        tag: &str,
    ) -> Result<Broker, String> {
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let console_port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let data = tmp.join(format!("data-{tag}"));
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--console".into(),
            format!("127.0.0.1:{console_port}"),
            "--data-dir".into(),
            data.display().to_string(),
        ];
        if fsync_always {
            args.push("--fsync".into());
            args.push("always".into());
        }
        let mut cmd = Command::new(bin);
        cmd.args(&args);
        let line = format!("{} {}", bin.display(), args.join(" "));
        Broker::spawn(
            cmd,
            line,
            format!("127.0.0.1:{port}"),
            Some(format!("127.0.0.1:{console_port}")),
            tmp,
            tag,
            data,
        )
    }

    fn start_cmd(template: &str, tmp: &Path, tag: &str) -> Result<Broker, String> {
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let data = tmp.join(format!("data-{tag}"));
        std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        let line = template
            .replace("{port}", &port.to_string())
            .replace("{data}", &data.display().to_string());
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!("exec {line}"));
        Broker::spawn(cmd, line, format!("127.0.0.1:{port}"), None, tmp, tag, data)
    }

    fn spawn(
        mut cmd: Command,
        command_line: String,
        addr: String,
        console: Option<String>,
        tmp: &Path,
        tag: &str,
        data_dir: PathBuf,
    ) -> Result<Broker, String> {
        let log_path = tmp.join(format!("broker-{tag}.log"));
        let log =
            std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        eprintln!("kbench: starting {command_line}");
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {command_line}: {e}"))?;
        let pid = child.id();
        CHILD_PID.store(pid, Ordering::SeqCst);
        *CHILD_DIR.lock().unwrap_or_else(|e| e.into_inner()) = Some(data_dir.clone());
        let mut b = Broker {
            child: Some(child),
            pid,
            addr,
            console,
            command_line,
            log_path,
            data_dir,
        };
        b.wait_ready(Duration::from_secs(60))?;
        Ok(b)
    }

    fn log_tail(&self, lines: usize) -> String {
        let s = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let v: Vec<&str> = s.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let t0 = Instant::now();
        let sa: SocketAddr = self
            .addr
            .parse()
            .map_err(|e| format!("{}: {e}", self.addr))?;
        loop {
            if let Some(st) = self.exited() {
                return Err(format!(
                    "broker exited during start-up ({st}); log:\n{}",
                    self.log_tail(30)
                ));
            }
            if TcpStream::connect_timeout(&sa, Duration::from_millis(200)).is_ok() {
                break;
            }
            if t0.elapsed() > timeout {
                return Err(format!(
                    "broker not listening on {} after {timeout:?}; log:\n{}",
                    self.addr,
                    self.log_tail(30)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(console) = self.console.clone() {
            loop {
                match http_status(&console, "/healthz") {
                    Some(200) => break,
                    _ if t0.elapsed() > timeout => {
                        eprintln!("kbench: warning: GET http://{console}/healthz did not answer 200; going on");
                        break;
                    }
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        eprintln!(
            "kbench: broker pid {} ready on {} after {:.2} s",
            self.pid,
            self.addr,
            t0.elapsed().as_secs_f64()
        );
        Ok(())
    }

    fn stop(mut self) -> Stopped {
        let hwm_kb = proc_status_kb(self.pid, "VmHWM");
        let early = self.exited();
        let died = early.is_some();
        let t0 = Instant::now();
        let mut status = early;
        if !died {
            send_sigterm(self.pid);
        }
        if let (Some(child), false) = (self.child.as_mut(), died) {
            while t0.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(st)) = child.try_wait() {
                    status = Some(st);
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if status.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        self.child = None;
        CHILD_PID.store(0, Ordering::SeqCst);
        let _ = std::fs::remove_dir_all(&self.data_dir);
        Stopped {
            status,
            died,
            secs,
            hwm_kb,
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            CHILD_PID.store(0, Ordering::SeqCst);
        }
    }
}

/// Status code of `GET path` over HTTP/1.1, if any.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    http_get(addr, path).map(|(code, _)| code)
}

/// Status code and body of `GET path` over HTTP/1.1 (`Connection: close`, read to the end; the
/// console answers with a Content-Length, not chunked), if any.
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    http_call(addr, "GET", path, None)
}

/// [`http_get`] for any method, with an optional JSON body.
fn http_call(addr: &str, method: &str, path: &str, json: Option<&str>) -> Option<(u16, String)> {
    let sa: SocketAddr = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let body = json.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    Some((code, body.to_string()))
}

/// SIGINT/SIGTERM: stop the broker child, remove its data, exit.
fn install_signal_handler() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        });
        let pid = CHILD_PID.load(Ordering::SeqCst);
        if pid != 0 {
            eprintln!("kbench: interrupted; stopping broker pid {pid}");
            send_sigterm(pid);
            let t0 = Instant::now();
            // Gone, or a zombie (the main thread, which owns the child, does not reap it).
            let alive = || {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                    s.rfind(')')
                        .is_some_and(|i| !s[i + 1..].trim_start().starts_with('Z'))
                })
            };
            while alive() && t0.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Some(d) = CHILD_DIR.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = std::fs::remove_dir_all(d);
        }
        std::process::exit(130);
    });
}

// ---------------------------------------------------------------------------------------------
// librdkafka clients

/// Counts delivery reports; optionally records per-record latency (opaque = send time in ns
/// since `base`).
struct ProdCtx {
    base: Instant,
    ok: AtomicU64,
    err: AtomicU64,
    first_err: Mutex<Option<String>>,
    lat: Option<Mutex<Vec<u64>>>,
    logged: AtomicU64,
}

impl ProdCtx {
    fn new(latency_capacity: Option<usize>) -> ProdCtx {
        ProdCtx {
            base: Instant::now(),
            ok: AtomicU64::new(0),
            err: AtomicU64::new(0),
            first_err: Mutex::new(None),
            lat: latency_capacity.map(|n| Mutex::new(Vec::with_capacity(n))),
            logged: AtomicU64::new(0),
        }
    }

    fn now_ns(&self) -> usize {
        self.base.elapsed().as_nanos() as usize
    }
}

/// Prints the first few librdkafka warnings and errors of a client.
fn client_log(logged: &AtomicU64, what: &str, msg: &str) {
    let n = logged.fetch_add(1, Ordering::Relaxed);
    if n < 5 {
        eprintln!("kbench: librdkafka {what}: {msg}");
    } else if n == 5 {
        eprintln!("kbench: (more librdkafka messages of this client suppressed)");
    }
}

fn log_is_warning(level: RDKafkaLogLevel) -> bool {
    matches!(
        level,
        RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning
    )
}

impl ClientContext for ProdCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        if log_is_warning(level) {
            client_log(&self.logged, fac, msg);
        }
    }
    fn error(&self, error: KafkaError, reason: &str) {
        client_log(&self.logged, "error", &format!("{error}: {reason}"));
    }
}

impl ProducerContext for ProdCtx {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_ns: usize) {
        match result {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                if let Some(lat) = &self.lat {
                    let d = self.now_ns().saturating_sub(sent_ns) as u64;
                    lat.lock().unwrap_or_else(|e| e.into_inner()).push(d);
                }
            }
            Err((e, _)) => {
                self.err.fetch_add(1, Ordering::Relaxed);
                let mut f = self.first_err.lock().unwrap_or_else(|e| e.into_inner());
                if f.is_none() {
                    *f = Some(e.to_string());
                }
            }
        }
    }
}

struct ConsCtx {
    logged: AtomicU64,
}

impl ClientContext for ConsCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        if log_is_warning(level) {
            client_log(&self.logged, fac, msg);
        }
    }
    fn error(&self, error: KafkaError, reason: &str) {
        client_log(&self.logged, "error", &format!("{error}: {reason}"));
    }
}

impl ConsumerContext for ConsCtx {}

/// A consumer that commits nothing and starts at the earliest offset; `props` and then the
/// plan's consumer properties override librdkafka's defaults.
fn new_consumer(
    bootstrap: &str,
    group: &str,
    props: &[(&str, &str)],
    plan: &Plan,
) -> Result<BaseConsumer<ConsCtx>, String> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("client.id", "kbench")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest");
    for (k, v) in props {
        c.set(*k, *v);
    }
    for (k, v) in &plan.consumer_props {
        c.set(k, v);
    }
    c.create_with_context(ConsCtx {
        logged: AtomicU64::new(0),
    })
    .map_err(|e| format!("consumer: {e}"))
}

fn producer_config(bootstrap: &str, acks: &str, linger_ms: u32, plan: &Plan) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set("linger.ms", linger_ms.to_string())
        // Not a tuning: makes a dead or stuck server fail the run in 30 s instead of 300 s.
        .set("message.timeout.ms", "30000")
        .set("client.id", "kbench");
    for (k, v) in &plan.producer_props {
        c.set(k, v);
    }
    c
}

/// Waits until the topic's partition 0 has a leader (auto-creating it if the server does that);
/// returns the topic's partition count.
fn wait_topic<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
) -> Result<usize, String> {
    let t0 = Instant::now();
    let mut last = String::new();
    while t0.elapsed() < Duration::from_secs(20) {
        match client.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(md) => {
                if let Some(t) = md.topics().iter().find(|t| t.name() == topic) {
                    if t.error().is_none()
                        && t.partitions()
                            .iter()
                            .any(|p| p.id() == 0 && p.leader() >= 0)
                    {
                        return Ok(t.partitions().len());
                    }
                    last = format!("topic error {:?}", t.error());
                }
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("topic {topic} has no leader after 20 s ({last})"))
}

fn partitions_note(n: usize) -> Option<String> {
    (n != 1).then(|| format!("the topic has {n} partitions, not 1"))
}

/// CreateTopics / DeleteTopics, falling back to auto-creation when the server refuses.
struct Admin {
    client: Option<AdminClient<DefaultClientContext>>,
    rt: tokio::runtime::Runtime,
    nonce: String,
    counter: u32,
}

impl Admin {
    fn new(bootstrap: &str, enabled: bool) -> Admin {
        let client = if enabled {
            ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .create::<AdminClient<DefaultClientContext>>()
                .ok()
        } else {
            None
        };
        let nonce = format!(
            "{:x}",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
                & 0xffffff
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        Admin {
            client,
            rt,
            nonce,
            counter: 0,
        }
    }

    /// A fresh topic name, created with one partition when CreateTopics works.
    fn topic(&mut self, what: &str) -> String {
        self.topic_n(what, 1)
    }

    /// A fresh topic name, created with `partitions` partitions when CreateTopics works.
    fn topic_n(&mut self, what: &str, partitions: i32) -> String {
        self.counter += 1;
        let name = format!("kbench-{what}-{}-{}", self.nonce, self.counter);
        if let Some(admin) = &self.client {
            let opts = AdminOptions::new()
                .operation_timeout(Some(Duration::from_secs(10)))
                .request_timeout(Some(Duration::from_secs(10)));
            let nt = NewTopic::new(&name, partitions, TopicReplication::Fixed(1));
            let res = self.rt.block_on(admin.create_topics([&nt], &opts));
            let ok = match res {
                Ok(v) => {
                    match v.first() {
                        Some(Ok(_)) | Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => true,
                        Some(Err((_, code))) => {
                            eprintln!("kbench: CreateTopics {name}: {code}; using auto-creation from now on");
                            false
                        }
                        None => false,
                    }
                }
                Err(e) => {
                    eprintln!("kbench: CreateTopics {name}: {e}; using auto-creation from now on");
                    false
                }
            };
            if !ok {
                self.client = None;
            }
        }
        name
    }

    fn delete(&mut self, topic: &str) {
        if let Some(admin) = &self.client {
            let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
            match self.rt.block_on(admin.delete_topics(&[topic], &opts)) {
                Ok(v) => {
                    if let Some(Err((_, code))) = v.first() {
                        eprintln!("kbench: warning: DeleteTopics {topic}: {code}");
                    }
                }
                Err(e) => eprintln!("kbench: warning: DeleteTopics {topic}: {e}"),
            }
        }
    }
}

/// Fixed pseudo-random bytes (xorshift), the same for every record of a size.
fn value_bytes(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ len as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Scenarios

#[derive(Clone, Debug, Default)]
struct Run {
    records: u64,
    bytes: u64,
    secs: f64,
    broker_cpu: Option<f64>,
    client_cpu: Option<f64>,
    other_cpu: Option<f64>,
    peak_rss_kb: Option<u64>,
    lat: Option<Lat>,
    /// The figure of a groups row that is not a rate: seconds (G1) or KB per group (G3).
    value: Option<f64>,
    note: Option<String>,
}

#[derive(Clone, Debug, Default)]
struct Lat {
    rate: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    /// Delay lateness only: records received before their due time.
    early: u64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.records as f64 / self.secs.max(1e-9)
    }
    fn mbps(&self) -> f64 {
        self.bytes as f64 / self.secs.max(1e-9) / 1e6
    }
    fn broker_s_per_m(&self) -> Option<f64> {
        self.broker_cpu
            .map(|c| c / (self.records.max(1) as f64) * 1e6)
    }
    fn broker_pct(&self) -> Option<f64> {
        self.broker_cpu.map(|c| c / self.secs.max(1e-9) * 100.0)
    }
    fn client_pct(&self) -> Option<f64> {
        self.client_cpu.map(|c| c / self.secs.max(1e-9) * 100.0)
    }
    fn other_pct(&self) -> Option<f64> {
        self.other_cpu.map(|c| c / self.secs.max(1e-9) * 100.0)
    }
}

fn apply(metered: Metered, run: &mut Run) {
    run.broker_cpu = metered.broker_cpu;
    run.client_cpu = metered.client_cpu;
    run.other_cpu = metered.other_cpu;
    run.peak_rss_kb = metered.peak_rss_kb;
}

/// `rd_kafka_produce_batch` to partition 0, 1024 records a call, values not copied (they live
/// as long as the run). Returns the number of records enqueued.
fn produce_batch_loop(
    producer: &BaseProducer<ProdCtx>,
    topic: &str,
    value: &[u8],
    deadline: Option<Instant>,
    limit: u64,
) -> Result<u64, String> {
    use rdkafka::bindings as rd;
    const BATCH: usize = 1024;
    let ctopic = std::ffi::CString::new(topic).map_err(|e| e.to_string())?;
    let mut sent = 0u64;
    // SAFETY: librdkafka's C API as documented: the topic handle is released once, and with
    // msgflags 0 the payload pointers must stay valid until delivery, which `value` does
    // (the caller flushes before returning it). The message array is only read by the call.
    unsafe {
        let rkt = rd::rd_kafka_topic_new(
            producer.client().native_ptr(),
            ctopic.as_ptr(),
            std::ptr::null_mut(),
        );
        if rkt.is_null() {
            return Err("rd_kafka_topic_new failed".into());
        }
        let template = rd::rd_kafka_message_t {
            err: rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
            rkt: std::ptr::null_mut(),
            partition: 0,
            payload: value.as_ptr() as *mut std::ffi::c_void,
            len: value.len(),
            key: std::ptr::null_mut(),
            key_len: 0,
            offset: 0,
            _private: std::ptr::null_mut(),
        };
        let mut msgs: Vec<rd::rd_kafka_message_t> = (0..BATCH).map(|_| template).collect();
        while sent < limit {
            let n = (limit - sent).min(BATCH as u64) as usize;
            for m in &mut msgs[..n] {
                m.err = rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR;
            }
            let k = rd::rd_kafka_produce_batch(rkt, 0, 0, msgs.as_mut_ptr(), n as std::ffi::c_int);
            sent += k.max(0) as u64;
            if (k as usize) < n {
                let bad = msgs[..n]
                    .iter()
                    .find(|m| m.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
                match bad.map(|m| m.err) {
                    Some(rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__QUEUE_FULL) | None => {
                        producer.poll(Duration::from_millis(1))
                    }
                    Some(e) => {
                        rd::rd_kafka_topic_destroy(rkt);
                        return Err(format!("rd_kafka_produce_batch: {e:?}"));
                    }
                }
            } else {
                producer.poll(Duration::ZERO);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        rd::rd_kafka_topic_destroy(rkt);
    }
    Ok(sent)
}

/// `BaseProducer::send` in a tight loop until `limit` records were enqueued or the deadline,
/// polled for delivery reports every 1024 sends and whenever the queue is full; every record
/// gets the header `(key, value)` if one is given. Returns the number of records enqueued.
fn send_loop(
    producer: &BaseProducer<ProdCtx>,
    topic: &str,
    value: &[u8],
    deadline: Option<Instant>,
    limit: u64,
    header: Option<(&str, &[u8])>,
) -> Result<u64, String> {
    let mut sent: u64 = 0;
    while sent < limit {
        let mut rec = BaseRecord::<(), [u8], usize>::with_opaque_to(topic, 0).payload(value);
        if let Some((key, v)) = header {
            rec = rec.headers(OwnedHeaders::new_with_capacity(1).insert(Header {
                key,
                value: Some(v),
            }));
        }
        match producer.send(rec) {
            Ok(()) => {
                sent += 1;
                if sent & 1023 == 0 {
                    producer.poll(Duration::ZERO);
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                }
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(1));
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
            }
            Err((e, _)) => return Err(format!("send: {e}")),
        }
    }
    Ok(sent)
}

/// Tight-loop produce on a BaseProducer for a duration or a record count; then flush.
fn produce_run(
    bootstrap: &str,
    pid: Option<u32>,
    topic: &str,
    value: &[u8],
    acks: &str,
    amount: Amount,
    plan: &Plan,
) -> Result<Run, String> {
    let producer: BaseProducer<ProdCtx> = producer_config(bootstrap, acks, 5, plan)
        .create_with_context(ProdCtx::new(None))
        .map_err(|e| format!("producer: {e}"))?;
    let partitions = wait_topic(producer.client(), topic)?;
    let meter = Meter::start(pid);
    let t0 = Instant::now();
    let (deadline, limit) = match amount {
        Amount::Secs(s) => (Some(t0 + Duration::from_secs_f64(s)), u64::MAX),
        Amount::Records(n) => (None, n),
    };
    let sent = match plan.produce_api {
        ProduceApi::Batch => produce_batch_loop(&producer, topic, value, deadline, limit)?,
        ProduceApi::Send => send_loop(&producer, topic, value, deadline, limit, None)?,
    };
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| format!("flush: {e}"))?;
    let secs = t0.elapsed().as_secs_f64();
    let metered = meter.stop();
    let ctx = producer.context();
    let err = ctx.err.load(Ordering::Relaxed);
    // With delivery.report.only.error=true only failures are reported; after the flush every
    // other record sent has been acknowledged.
    let only_errors = plan
        .producer_props
        .iter()
        .any(|(k, v)| k == "delivery.report.only.error" && v == "true");
    let ok = if only_errors {
        sent.saturating_sub(err)
    } else {
        ctx.ok.load(Ordering::Relaxed)
    };
    let mut run = Run {
        records: ok,
        bytes: ok * value.len() as u64,
        secs,
        ..Run::default()
    };
    apply(metered, &mut run);
    run.note = partitions_note(partitions);
    if err > 0 {
        let first = ctx
            .first_err
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default();
        run.note = Some(format!("{err} of {sent} records failed (first: {first})"));
    }
    if ok == 0 {
        return Err(run.note.unwrap_or_else(|| "no record acknowledged".into()));
    }
    Ok(run)
}

/// How the consumer takes records from librdkafka.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ConsumeApi {
    /// `BaseConsumer::poll`, one call per record (the rdkafka crate's API).
    Poll,
    /// `rd_kafka_consume_batch_queue`, up to 8192 records per call (what confluent-kafka-python's
    /// `consume(num_messages)` does).
    Batch,
}

/// A fresh consumer reads partition 0 of the topic from offset 0 up to its high watermark, or
/// until `expect` records arrived (control records and aborted ones never reach the application).
fn consume_run(
    bootstrap: &str,
    pid: Option<u32>,
    topic: &str,
    group: &str,
    api: ConsumeApi,
    expect: Option<u64>,
    plan: &Plan,
) -> Result<Run, String> {
    let consumer = new_consumer(bootstrap, group, &[], plan)?;
    let partitions = wait_topic(consumer.client(), topic)?;
    let (lo, hi) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .map_err(|e| format!("ListOffsets: {e}"))?;
    let expect = expect.unwrap_or((hi - lo).max(0) as u64);
    if expect == 0 {
        return Err(format!("partition 0 is empty (watermarks {lo}..{hi})"));
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|e| e.to_string())?;
    let meter = Meter::start(pid);
    let t0 = Instant::now();
    consumer.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut errors = 0u64;
    let mut first_err: Option<String> = None;
    // Stall detection runs only when a poll comes back empty, to keep the per-record path lean.
    let (mut seen, mut seen_at) = (0u64, Instant::now());
    let mut stalled = |n: u64, errors: u64, first_err: &Option<String>| -> Result<(), String> {
        if n != seen {
            (seen, seen_at) = (n, Instant::now());
        } else if seen_at.elapsed() > Duration::from_secs(15) {
            return Err(format!(
                "stalled at {n} of {expect} records{}",
                first_err
                    .as_ref()
                    .map(|e| format!(" ({errors} errors, first: {e})"))
                    .unwrap_or_default()
            ));
        }
        Ok(())
    };
    let outcome: Result<(), String> = match api {
        ConsumeApi::Poll => loop {
            if n >= expect {
                break Ok(());
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    n += 1;
                    bytes += m.payload_len() as u64;
                }
                Some(Err(e)) => {
                    errors += 1;
                    first_err.get_or_insert_with(|| e.to_string());
                    if let Err(e) = stalled(n, errors, &first_err) {
                        break Err(e);
                    }
                }
                None => {
                    if let Err(e) = stalled(n, errors, &first_err) {
                        break Err(e);
                    }
                }
            }
        },
        ConsumeApi::Batch => {
            use rdkafka::bindings as rd;
            // SAFETY: the queue and the messages are librdkafka objects used as its C API says:
            // every message returned is destroyed once, the queue handle is released at the end,
            // and the consumer outlives both.
            unsafe {
                let q = rd::rd_kafka_queue_get_consumer(consumer.client().native_ptr());
                if q.is_null() {
                    return Err("no consumer queue".into());
                }
                let mut buf: Vec<*mut rd::rd_kafka_message_t> = vec![std::ptr::null_mut(); 8192];
                let r = loop {
                    if n >= expect {
                        break Ok(());
                    }
                    // Take what is there without waiting (a timeout makes librdkafka wait for a
                    // full buffer); when nothing is, wait up to 100 ms for one record.
                    let mut k = rd::rd_kafka_consume_batch_queue(q, 0, buf.as_mut_ptr(), buf.len());
                    if k == 0 {
                        k = rd::rd_kafka_consume_batch_queue(q, 100, buf.as_mut_ptr(), 1);
                    }
                    if k < 0 {
                        break Err("rd_kafka_consume_batch_queue failed".to_string());
                    }
                    for &m in &buf[..k as usize] {
                        if (*m).err as i32 == 0 {
                            n += 1;
                            bytes += (*m).len as u64;
                        } else {
                            errors += 1;
                            first_err.get_or_insert_with(|| format!("{:?}", (*m).err));
                        }
                        rd::rd_kafka_message_destroy(m);
                    }
                    if k == 0 || errors > 0 {
                        if let Err(e) = stalled(n, errors, &first_err) {
                            break Err(e);
                        }
                    }
                };
                rd::rd_kafka_queue_destroy(q);
                r
            }
        }
    };
    if let Err(e) = outcome {
        let _ = meter.stop();
        return Err(e);
    }
    let secs = t0.elapsed().as_secs_f64();
    let metered = meter.stop();
    let mut run = Run {
        records: n,
        bytes,
        secs,
        ..Run::default()
    };
    apply(metered, &mut run);
    run.note = partitions_note(partitions)
        .map(|p| format!("{p}; read partition 0 only ({expect} records)"));
    if errors > 0 {
        run.note = Some(format!(
            "{errors} consumer errors (first: {})",
            first_err.unwrap_or_default()
        ));
    }
    Ok(run)
}

/// What a paced send did.
struct Paced {
    sent: u64,
    /// From the first send to the end of the pacing.
    secs: f64,
    /// Sends refused because the producer's queue was full (retried in the next step).
    queue_full: u64,
}

/// Sends `rate` records per second for `secs` seconds on a ThreadedProducer, in 200 µs steps,
/// each record made by `record` just before its send.
fn paced_send<'a>(
    producer: &ThreadedProducer<ProdCtx>,
    rate: f64,
    secs: f64,
    mut record: impl FnMut() -> BaseRecord<'a, (), [u8], usize>,
) -> Result<Paced, String> {
    let t0 = Instant::now();
    let dur = Duration::from_secs_f64(secs);
    let mut sent: u64 = 0;
    let mut queue_full = 0u64;
    loop {
        let el = t0.elapsed();
        if el >= dur {
            break;
        }
        let due = (rate * el.as_secs_f64()) as u64;
        while sent < due {
            match producer.send(record()) {
                Ok(()) => sent += 1,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    queue_full += 1;
                    break;
                }
                Err((e, _)) => return Err(format!("send: {e}")),
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(Paced {
        sent,
        secs: t0.elapsed().as_secs_f64(),
        queue_full,
    })
}

/// Paced produce on a ThreadedProducer; latency = delivery report time - send time.
fn latency_run(
    bootstrap: &str,
    pid: Option<u32>,
    topic: &str,
    value: &[u8],
    linger_ms: u32,
    plan: &Plan,
) -> Result<Run, String> {
    let rate = plan.latency_rate as f64;
    let secs = plan.latency_secs;
    let cap = (rate * secs * 1.1) as usize + 1024;
    let producer: ThreadedProducer<ProdCtx> = producer_config(bootstrap, "all", linger_ms, plan)
        .create_with_context(ProdCtx::new(Some(cap)))
        .map_err(|e| format!("producer: {e}"))?;
    let partitions = wait_topic(producer.client(), topic)?;
    let ctx = producer.context().clone();
    // Warm-up: a few records to set up the connection and the producer's state.
    for _ in 0..100 {
        let rec = BaseRecord::<(), [u8], usize>::with_opaque_to(topic, ctx.now_ns()).payload(value);
        producer.send(rec).map_err(|(e, _)| format!("send: {e}"))?;
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| format!("flush: {e}"))?;
    let ok0 = ctx.ok.load(Ordering::Relaxed);
    if let Some(l) = &ctx.lat {
        l.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
    let meter = Meter::start(pid);
    let paced = paced_send(&producer, rate, secs, || {
        BaseRecord::with_opaque_to(topic, ctx.now_ns()).payload(value)
    })?;
    let (sent, send_secs, queue_full) = (paced.sent, paced.secs, paced.queue_full);
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| format!("flush: {e}"))?;
    let metered = meter.stop();
    let ok = ctx.ok.load(Ordering::Relaxed) - ok0;
    let err = ctx.err.load(Ordering::Relaxed);
    let mut lat = std::mem::take(
        &mut *ctx
            .lat
            .as_ref()
            .expect("latency vector")
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    if lat.is_empty() {
        return Err("no record acknowledged".into());
    }
    lat.sort_unstable();
    let q =
        |p: f64| lat[((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1] as f64 / 1e6;
    let mut run = Run {
        records: ok,
        bytes: ok * value.len() as u64,
        secs: send_secs,
        lat: Some(Lat {
            rate: sent as f64 / send_secs,
            p50: q(0.50),
            p99: q(0.99),
            p999: q(0.999),
            max: q(1.0),
            early: 0,
        }),
        ..Run::default()
    };
    apply(metered, &mut run);
    let mut notes: Vec<String> = partitions_note(partitions).into_iter().collect();
    if err > 0 {
        notes.push(format!("{err} records failed"));
    }
    if queue_full > 0 {
        notes.push(format!("producer queue full {queue_full} times"));
    }
    if !notes.is_empty() {
        run.note = Some(notes.join("; "));
    }
    Ok(run)
}

// ---------------------------------------------------------------------------------------------
// Idempotent and transactional producers, read_committed

/// Records per transaction in rows T5, T5p; producers in T5p.
const TXN_RECORDS: u64 = 100;
const TXN_PRODUCERS: usize = 8;
/// Records per transaction when filling the topic of rows T6/T7; every `FILL_ABORT_EVERY`th
/// transaction is aborted.
const FILL_TXN_RECORDS: u64 = 1000;
const FILL_ABORT_EVERY: u64 = 10;

/// A plan whose producers (or consumers) also get these properties.
fn with_props(plan: &Plan, producer: &[(&str, &str)], consumer: &[(&str, &str)]) -> Plan {
    let mut p = plan.clone();
    let own = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    p.producer_props.extend(own(producer));
    p.consumer_props.extend(own(consumer));
    p
}

/// What a transactional producer wrote: records in committed and in aborted transactions.
struct TxnOutcome {
    run: Run,
    committed: u64,
    aborted: u64,
}

/// `producers` transactional producers (each its own `transactional.id` and thread, acks=all as
/// librdkafka requires; producer i writes partition i) write transactions of `per_txn`
/// records (begin, `per_txn` sends, flush, commit), aborting every `abort_every`th one, for
/// the plan's amount (a record count is split between them). The rate counts records of
/// committed transactions over the time from the first begin to the last commit.
#[allow(clippy::too_many_arguments)]
fn txn_run(
    server: &Server,
    topic: &str,
    value: &[u8],
    per_txn: u64,
    abort_every: Option<u64>,
    amount: Amount,
    producers: usize,
    plan: &Plan,
) -> Result<TxnOutcome, String> {
    static TXN_IDS: AtomicU32 = AtomicU32::new(0);
    let timeout = Duration::from_secs(30);
    let mut clients = Vec::new();
    let mut partitions = 0;
    for _ in 0..producers {
        let tid = format!(
            "kbench-{}-{}",
            std::process::id(),
            TXN_IDS.fetch_add(1, Ordering::Relaxed)
        );
        // A BaseProducer: the rdkafka crate's flush inside commit_transaction polls in 100 ms
        // slices, which a ThreadedProducer's own poll thread turns into a 100 ms wait per commit.
        let producer: BaseProducer<ProdCtx> = producer_config(server.bootstrap, "all", 5, plan)
            .set("transactional.id", &tid)
            .create_with_context(ProdCtx::new(None))
            .map_err(|e| format!("producer: {e}"))?;
        partitions = wait_topic(producer.client(), topic)?;
        producer
            .init_transactions(timeout)
            .map_err(|e| format!("init_transactions: {e}"))?;
        clients.push(producer);
    }
    if partitions < producers {
        return Err(format!(
            "{producers} producers need {producers} partitions, the topic has {partitions}"
        ));
    }
    let meter = Meter::start(server.pid);
    let t0 = Instant::now();
    let (deadline, limit) = match amount {
        Amount::Secs(s) => (Some(t0 + Duration::from_secs_f64(s)), u64::MAX),
        Amount::Records(n) => (None, n.div_ceil(producers as u64)),
    };
    let one = |(i, producer): (usize, &BaseProducer<ProdCtx>)| -> Result<[u64; 3], String> {
        let (mut committed, mut aborted, mut txns) = (0u64, 0u64, 0u64);
        while committed + aborted < limit && deadline.is_none_or(|d| Instant::now() < d) {
            producer
                .begin_transaction()
                .map_err(|e| format!("begin_transaction: {e}"))?;
            let n = per_txn.min(limit - committed - aborted);
            let mut sent = 0;
            while sent < n {
                let rec = BaseRecord::<(), [u8], usize>::with_opaque_to(topic, 0)
                    .partition(i as i32)
                    .payload(value);
                match producer.send(rec) {
                    Ok(()) => sent += 1,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        producer.poll(Duration::from_millis(1));
                    }
                    Err((e, _)) => return Err(format!("send: {e}")),
                }
            }
            txns += 1;
            flush_quickly(producer, timeout)?;
            if abort_every.is_some_and(|k| txns % k == 0) {
                producer
                    .abort_transaction(timeout)
                    .map_err(|e| format!("abort_transaction: {e}"))?;
                aborted += n;
            } else {
                producer
                    .commit_transaction(timeout)
                    .map_err(|e| format!("commit_transaction: {e}"))?;
                committed += n;
            }
        }
        // The records were flushed before each commit or abort: every one was acknowledged.
        let (ok, err) = (
            producer.context().ok.load(Ordering::Relaxed),
            producer.context().err.load(Ordering::Relaxed),
        );
        if ok != committed + aborted || err != 0 {
            return Err(format!(
                "{ok} records acknowledged and {err} failed of {}",
                committed + aborted
            ));
        }
        Ok([committed, aborted, txns])
    };
    let results: Vec<Result<[u64; 3], String>> = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|c| s.spawn(move || one(c)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("producer thread panicked".into()))
            })
            .collect()
    });
    let secs = t0.elapsed().as_secs_f64();
    let metered = meter.stop();
    let mut sum = [0u64; 3];
    for r in results {
        let r = r?;
        for k in 0..3 {
            sum[k] += r[k];
        }
    }
    let [committed, aborted, txns] = sum;
    let mut run = Run {
        records: committed,
        bytes: committed * value.len() as u64,
        secs,
        ..Run::default()
    };
    apply(metered, &mut run);
    let mut notes: Vec<String> = Vec::new();
    if producers == 1 {
        notes.extend(partitions_note(partitions));
    }
    notes.push(format!(
        "{txns} transactions in {secs:.1} s ({:.2} ms each per producer)",
        secs * 1000.0 * producers as f64 / txns.max(1) as f64
    ));
    run.note = Some(notes.join("; "));
    Ok(TxnOutcome {
        run,
        committed,
        aborted,
    })
}

/// The value of record `i` of `n` in the view rows: 1 KiB of JSON whose price cycles over
/// 11..=110 and is 110 for the last record.
fn view_value(i: u64, n: u64) -> Vec<u8> {
    let price = 110 - (n - 1 - i) % 100;
    let mut v = format!(r#"{{"city":"beijing","price":{price},"pad":""#).into_bytes();
    v.resize(1022, b'x');
    v.extend_from_slice(br#""}"#);
    v
}

/// How many of the `n` records of [`view_value`] have a price above 100.
fn view_selected(n: u64) -> u64 {
    n / 100 * 10 + (n % 100).min(10)
}

/// Produces the `n` records of [`view_value`] with acks=1 (one `send` each, values copied).
fn produce_view_values(bootstrap: &str, topic: &str, n: u64, plan: &Plan) -> Result<(), String> {
    let producer: BaseProducer<ProdCtx> = producer_config(bootstrap, "1", 5, plan)
        .create_with_context(ProdCtx::new(None))
        .map_err(|e| format!("producer: {e}"))?;
    wait_topic(producer.client(), topic)?;
    let mut i = 0;
    while i < n {
        let value = view_value(i, n);
        let rec = BaseRecord::<(), [u8], usize>::with_opaque_to(topic, 0).payload(&value[..]);
        match producer.send(rec) {
            Ok(()) => {
                i += 1;
                if i & 1023 == 0 {
                    producer.poll(Duration::ZERO);
                }
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(1))
            }
            Err((e, _)) => return Err(format!("send: {e}")),
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| format!("flush: {e}"))?;
    let ok = producer.context().ok.load(Ordering::Relaxed);
    if ok != n {
        return Err(format!("{ok} of {n} records acknowledged"));
    }
    Ok(())
}

/// V1-V3: a topic of 1 KiB JSON records read directly, through a view whose script keeps
/// every record (each one decoded, parsed as JSON and run through the script; batches pass
/// as stored) and through one that keeps 10 % (batches re-encoded); runs interleaved. The
/// consumer takes batches (`rd_kafka_consume_batch_queue`) as in row 9b.
fn view_rows(server: &Server, plan: &Plan, admin: &mut Admin) -> Vec<Row> {
    let Some(console) = server.console else {
        return Vec::new();
    };
    let n = (plan.consume_records / 10).max(1);
    let topic = admin.topic("vsrc");
    let records = thousands(n as f64);
    eprintln!("kbench: V1-V3: pre-filling {records} × 1 KiB JSON records");
    let mut error = produce_view_values(server.bootstrap, &topic, n, plan)
        .err()
        .map(|e| format!("pre-fill: {e}"));
    let scripts = [
        ("all", r#"json.city == \"beijing\" && json.price > 10"#),
        ("tenth", r#"json.city == \"beijing\" && json.price > 100"#),
    ];
    let mut views = Vec::new();
    for (suffix, script) in scripts {
        let view = format!("{topic}-{suffix}");
        if error.is_none() {
            let def = format!(r#"{{"name":"{view}","source":"{topic}","script":"{script}"}}"#);
            match http_call(console, "POST", "/api/v1/views", Some(&def)) {
                Some((201, _)) => {}
                other => error = Some(format!("creating the view: {other:?}")),
            }
        }
        views.push(view);
    }
    let selected = view_selected(n);
    // (id, topic or view, records the consumer receives, description)
    let cases = [
        (
            "V1",
            topic.clone(),
            n,
            format!("consume {records} × 1 KiB JSON records, the topic itself, batch"),
        ),
        (
            "V2",
            views[0].clone(),
            n,
            "the same through a view with a JSON filter that keeps every record".to_string(),
        ),
        (
            "V3",
            views[1].clone(),
            selected,
            format!(
                "the same through a view keeping 10 % ({}); records/s and CPU s/M per source record",
                thousands(selected as f64)
            ),
        ),
    ];
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); cases.len()];
    let mut errors: Vec<Option<String>> = vec![error; cases.len()];
    for i in 0..plan.repeats {
        for (k, (id, t, expect, _)) in cases.iter().enumerate() {
            if errors[k].is_some() {
                continue;
            }
            match consume_run(
                server.bootstrap,
                server.pid,
                t,
                &format!("{t}-{i}"),
                ConsumeApi::Batch,
                Some(*expect),
                plan,
            ) {
                Ok(mut run) => {
                    // Rates per source record: the view read all n of them.
                    run.records = n;
                    eprintln!(
                        "kbench:   {id} run {}: {} records/s, {} broker CPU s/M",
                        i + 1,
                        thousands(run.rate()),
                        opt(run.broker_s_per_m(), |x| format!("{x:.2}"))
                    );
                    runs[k].push(run);
                }
                Err(e) => {
                    eprintln!("kbench:   {id} run {} failed: {e}", i + 1);
                    errors[k] = Some(e);
                }
            }
            std::thread::sleep(plan.settle);
        }
    }
    for view in &views {
        let _ = http_call(console, "DELETE", &format!("/api/v1/views/{view}"), None);
    }
    admin.delete(&topic);
    // Target: a view costs at most 3x the broker CPU per record of reading the topic.
    let direct = med_of(&runs[0], Run::broker_s_per_m);
    cases
        .into_iter()
        .zip(runs.into_iter().zip(errors))
        .map(|((id, _, _, mut name), (runs, error))| {
            if let (Some(d), Some(v)) = (direct, med_of(&runs, Run::broker_s_per_m)) {
                if id != "V1" && d > 0.0 {
                    let _ = write!(name, "; broker CPU per record {:.1}× V1's (≤ 3×)", v / d);
                }
            }
            (id, name, runs, error)
        })
        .map(|(id, name, runs, error)| Row {
            id,
            name,
            kind: Kind::Throughput,
            runs,
            error,
            target: (id != "V1").then_some(Target::MinRate(300_000.0)),
        })
        .collect()
}

/// Flushes in 1 ms slices. The rdkafka crate's `flush` (also called by its `commit_transaction`)
/// polls for delivery reports in 100 ms slices that run to their end, which would add up to
/// 100 ms to every transaction; this leaves the crate's flush nothing to wait for.
fn flush_quickly(producer: &BaseProducer<ProdCtx>, timeout: Duration) -> Result<(), String> {
    use rdkafka::bindings as rd;
    let t0 = Instant::now();
    loop {
        // SAFETY: the producer handle is valid for the call; rd_kafka_flush only waits on it.
        let r = unsafe { rd::rd_kafka_flush(producer.client().native_ptr(), 1) };
        match r {
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => return Ok(()),
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__TIMED_OUT if t0.elapsed() < timeout => {
                producer.poll(Duration::ZERO)
            }
            e => return Err(format!("flush: {e:?}")),
        }
    }
}

/// T1-T5: plain, idempotent and transactional produce, the runs of each repeat interleaved
/// so that the rows compare under the same load; T6/T7: one topic of transactions read with
/// both isolation levels.
fn txn_rows(server: &Server, plan: &Plan, admin: &mut Admin) -> Vec<Row> {
    let small = value_bytes(100);
    let large = value_bytes(1024);
    let idem = with_props(plan, &[("enable.idempotence", "true")], &[]);
    let plain = with_props(plan, &[("enable.idempotence", "false")], &[]);
    type Case<'a> = (
        &'static str,
        String,
        &'a [u8],
        Option<&'a Plan>,
        Option<Target>,
    );
    let per = thousands(TXN_RECORDS as f64);
    let cases: Vec<Case> = vec![
        (
            "T1",
            "produce 100 B, acks=all, enable.idempotence=false".into(),
            &small,
            Some(&plain),
            None,
        ),
        (
            "T2",
            "produce 100 B, acks=all, enable.idempotence=true".into(),
            &small,
            Some(&idem),
            Some(Target::RelRate("T1", 0.95)),
        ),
        (
            "T3",
            "produce 1 KiB, acks=all, enable.idempotence=false".into(),
            &large,
            Some(&plain),
            None,
        ),
        (
            "T4",
            "produce 1 KiB, acks=all, enable.idempotence=true".into(),
            &large,
            Some(&idem),
            Some(Target::RelRate("T3", 0.95)),
        ),
        (
            "T5",
            format!(
                "produce 100 B in transactions of {per} records (transactional.id, commit each)"
            ),
            &small,
            None,
            Some(Target::RelRate("T1", 0.5)),
        ),
        (
            "T5p",
            format!("the same with {TXN_PRODUCERS} transactional producers in parallel, one partition each"),
            &small,
            None,
            Some(Target::RelRate("T1", 0.5)),
        ),
    ];
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); cases.len()];
    let mut errors: Vec<Option<String>> = vec![None; cases.len()];
    for i in 0..plan.repeats {
        for (k, (id, name, value, p, _)) in cases.iter().enumerate() {
            if errors[k].is_some() {
                continue;
            }
            if i == 0 {
                eprintln!("kbench: {id}: {name}");
            }
            let producers = if *id == "T5p" { TXN_PRODUCERS } else { 1 };
            let topic = admin.topic_n(&id.to_lowercase(), producers as i32);
            let r = match p {
                Some(p) => produce_run(
                    server.bootstrap,
                    server.pid,
                    &topic,
                    value,
                    "all",
                    plan.produce,
                    p,
                ),
                None => txn_run(
                    server,
                    &topic,
                    value,
                    TXN_RECORDS,
                    None,
                    plan.produce,
                    producers,
                    plan,
                )
                .map(|o| o.run),
            };
            admin.delete(&topic);
            match r {
                Ok(run) => {
                    eprintln!(
                        "kbench:   {id} run {}: {} records/s",
                        i + 1,
                        thousands(run.rate())
                    );
                    runs[k].push(run);
                }
                Err(e) => {
                    eprintln!("kbench:   {id} run {} failed: {e}", i + 1);
                    errors[k] = Some(e);
                }
            }
            std::thread::sleep(plan.settle);
        }
    }
    let mut rows: Vec<Row> = cases
        .into_iter()
        .zip(runs.into_iter().zip(errors))
        .map(|((id, name, _, _, target), (runs, error))| Row {
            id,
            name,
            kind: Kind::Throughput,
            runs,
            error,
            target,
        })
        .collect();

    let total = plan.consume_records;
    eprintln!(
        "kbench: T6/T7: filling with {} records in transactions of {FILL_TXN_RECORDS}, every {FILL_ABORT_EVERY}th aborted",
        thousands(total as f64)
    );
    let topic = admin.topic("t67");
    let fill = txn_run(
        server,
        &topic,
        &small,
        FILL_TXN_RECORDS,
        Some(FILL_ABORT_EVERY),
        Amount::Records(total),
        1,
        plan,
    );
    let reads = [
        ("T6", "read_uncommitted", None),
        ("T7", "read_committed", Some(Target::RelRate("T6", 0.9))),
    ];
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); reads.len()];
    let mut errors: Vec<Option<String>> =
        vec![fill.as_ref().err().map(|e| format!("fill: {e}")); reads.len()];
    if let Ok(f) = &fill {
        eprintln!("kbench:   filled at {} records/s", thousands(f.run.rate()));
        std::thread::sleep(plan.settle);
        for i in 0..plan.repeats {
            for (k, (id, level, _)) in reads.iter().enumerate() {
                if errors[k].is_some() {
                    continue;
                }
                let expect = if *level == "read_committed" {
                    f.committed
                } else {
                    f.committed + f.aborted
                };
                let p = with_props(plan, &[], &[("isolation.level", level)]);
                match consume_run(
                    server.bootstrap,
                    server.pid,
                    &topic,
                    &format!("{topic}-{id}-{i}"),
                    ConsumeApi::Batch,
                    Some(expect),
                    &p,
                ) {
                    Ok(run) => {
                        eprintln!(
                            "kbench:   {id} run {}: {} records/s",
                            i + 1,
                            thousands(run.rate())
                        );
                        runs[k].push(run);
                    }
                    Err(e) => {
                        eprintln!("kbench:   {id} run {} failed: {e}", i + 1);
                        errors[k] = Some(e);
                    }
                }
                std::thread::sleep(plan.settle);
            }
        }
    }
    admin.delete(&topic);
    let records = thousands(total as f64);
    for ((id, level, target), (runs, error)) in reads.into_iter().zip(runs.into_iter().zip(errors))
    {
        rows.push(Row {
            id,
            name: format!("consume catch-up, {records} × 100 B in transactions (10 % aborted), batch, isolation.level={level}"),
            kind: Kind::Throughput,
            runs,
            error,
            target,
        });
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// /metrics render time

/// M1's broker: topics of `METRICS_PARTITIONS` partitions each, records per partition, and
/// groups that each commit every partition of one topic.
const METRICS_TOPICS: usize = 100;
const METRICS_PARTITIONS: i32 = 10;
const METRICS_RECORDS_EACH: usize = 10;
const METRICS_GROUPS: usize = 100;
/// Offset each group commits (lag = records per partition minus this).
const METRICS_COMMITTED: i64 = 4;
/// GETs per run.
const METRICS_GETS: usize = 50;
/// The issue's target for one GET /metrics.
const METRICS_TARGET_MS: f64 = 20.0;

/// M1: the time of `GET /metrics` with 1,000 partitions and 1,000 committed offsets.
fn metrics_rows(server: &Server, plan: &Plan, admin: &mut Admin) -> Vec<Row> {
    let Some(console) = server.console else {
        return Vec::new();
    };
    let partitions = METRICS_TOPICS * METRICS_PARTITIONS as usize;
    let name = format!(
        "GET /metrics × {METRICS_GETS}: {} partitions ({METRICS_TOPICS} topics × {METRICS_PARTITIONS}, \
         {METRICS_RECORDS_EACH} records each), {METRICS_GROUPS} groups × {METRICS_PARTITIONS} committed offsets",
        thousands(partitions as f64)
    );
    eprintln!("kbench: M1: {name}");
    let mut topics = Vec::new();
    let setup = metrics_setup(server.bootstrap, plan, admin, &mut topics);
    let (runs, error) = match setup {
        Err(e) => (Vec::new(), Some(format!("setup: {e}"))),
        Ok(()) => repeat_runs(
            plan,
            "M1",
            |r| {
                let l = r.lat.clone().unwrap_or_default();
                format!(
                    "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} bytes",
                    l.p50,
                    l.p99,
                    l.max,
                    r.value.unwrap_or(0.0)
                )
            },
            |_| metrics_run(console, server.pid),
        ),
    };
    for t in &topics {
        admin.delete(t);
    }
    vec![Row {
        id: "M1",
        name,
        kind: Kind::Metrics,
        runs,
        error,
        target: Some(Target::MaxP99(METRICS_TARGET_MS)),
    }]
}

/// Creates M1's topics (names pushed to `topics`, so the caller deletes them whatever
/// happens), produces to every partition and commits the groups' offsets.
fn metrics_setup(
    bootstrap: &str,
    plan: &Plan,
    admin: &mut Admin,
    topics: &mut Vec<String>,
) -> Result<(), String> {
    for _ in 0..METRICS_TOPICS {
        topics.push(admin.topic_n("m", METRICS_PARTITIONS));
    }
    let producer: BaseProducer<ProdCtx> = producer_config(bootstrap, "1", 5, plan)
        .create_with_context(ProdCtx::new(None))
        .map_err(|e| format!("producer: {e}"))?;
    for t in topics.iter() {
        let n = wait_topic(producer.client(), t)?;
        if n != METRICS_PARTITIONS as usize {
            return Err(format!(
                "topic {t} has {n} partitions, not {METRICS_PARTITIONS} (this scenario needs CreateTopics)"
            ));
        }
    }
    let value = value_bytes(100);
    for t in topics.iter() {
        for p in 0..METRICS_PARTITIONS {
            for _ in 0..METRICS_RECORDS_EACH {
                let mut rec = BaseRecord::<(), [u8], usize>::with_opaque_to(t, 0)
                    .payload(&value[..])
                    .partition(p);
                loop {
                    match producer.send(rec) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            rec = r;
                            producer.poll(Duration::from_millis(10));
                        }
                        Err((e, _)) => return Err(format!("send to {t}-{p}: {e}")),
                    }
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| format!("flush: {e}"))?;
    let expect = (METRICS_TOPICS * METRICS_PARTITIONS as usize * METRICS_RECORDS_EACH) as u64;
    let ok = producer.context().ok.load(Ordering::Relaxed);
    if ok != expect {
        return Err(format!("{ok} of {expect} records acknowledged"));
    }
    // Group g commits every partition of topic g (standalone commits, generation -1).
    let rt = raw_runtime()?;
    rt.block_on(async {
        let mut conn = RawConn::connect(bootstrap).await?;
        for g in 0..METRICS_GROUPS {
            let topic = &topics[g % topics.len()];
            let group = format!("{topic}-g{g}");
            let req = OffsetCommitRequest::default()
                .with_group_id(GroupId(sb(group.clone())))
                .with_generation_id_or_member_epoch(-1)
                .with_member_id(StrBytes::default())
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(sb(topic.clone())))
                    .with_partitions(
                        (0..METRICS_PARTITIONS)
                            .map(|p| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(METRICS_COMMITTED)
                            })
                            .collect(),
                    )]);
            let resp: OffsetCommitResponse = conn
                .call(ApiKey::OffsetCommit, 8, &req, RAW_TIMEOUT)
                .await?;
            check_commit(&resp, METRICS_PARTITIONS, &group)?;
        }
        Ok::<(), String>(())
    })
}

/// One M1 run: `METRICS_GETS` sequential GETs, each timed from connect to the response's last
/// byte (`Connection: close`). The response must hold every partition's and group's series.
fn metrics_run(console: &str, pid: Option<u32>) -> Result<Run, String> {
    let partitions = METRICS_TOPICS * METRICS_PARTITIONS as usize;
    let lags = METRICS_GROUPS * METRICS_PARTITIONS as usize;
    let meter = Meter::start(pid);
    let t0 = Instant::now();
    let mut times = Vec::with_capacity(METRICS_GETS);
    let mut body = String::new();
    for _ in 0..METRICS_GETS {
        let t = Instant::now();
        let (code, b) =
            http_get(console, "/metrics").ok_or_else(|| "GET /metrics: no answer".to_string())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if code != 200 {
            return Err(format!("GET /metrics: HTTP {code}"));
        }
        body = b;
    }
    let secs = t0.elapsed().as_secs_f64();
    let metered = meter.stop();
    // The same round trip for a constant answer: what HTTP and the client cost by themselves.
    let mut base = Vec::with_capacity(METRICS_GETS);
    for _ in 0..METRICS_GETS {
        let t = Instant::now();
        let _ = http_get(console, "/healthz");
        base.push(t.elapsed().as_secs_f64() * 1e3);
    }
    base.sort_by(|a, b| a.total_cmp(b));
    let count = |prefix: &str| body.lines().filter(|l| l.starts_with(prefix)).count();
    let samples = body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    let (hw, lag) = (
        count("kairos_partition_high_watermark{"),
        count("kairos_group_lag_records{"),
    );
    if lag < lags {
        return Err(format!(
            "the response has {lag} kairos_group_lag_records series, expected at least {lags}"
        ));
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| times[((p * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1];
    let mut run = Run {
        records: METRICS_GETS as u64,
        bytes: body.len() as u64 * METRICS_GETS as u64,
        secs,
        lat: Some(Lat {
            rate: METRICS_GETS as f64 / secs,
            p50: q(0.50),
            p99: q(0.99),
            p999: q(0.999),
            max: q(1.0),
            early: 0,
        }),
        value: Some(body.len() as f64),
        ..Run::default()
    };
    apply(metered, &mut run);
    run.note = Some(format!(
        "{samples} samples, {hw} of {partitions} partitions' high watermarks, {lag} group lags; \
         GET /healthz p50 {:.2} ms",
        base[base.len() / 2]
    ));
    Ok(run)
}

// ---------------------------------------------------------------------------------------------
// Delay topics

/// The delay headers of DESIGN.md "Delay topics (contract)".
const DELIVER_AT: &str = "kairos-deliver-at";
const DELAY_MS: &str = "kairos-delay-ms";
const DELAY_ID: &str = "kairos-delay-id";
/// Records per second, and their delay, in the lateness run (D3).
const LATENESS_RATE: f64 = 10_000.0;
const LATENESS_DELAY_MS: u64 = 1000;

/// Wall-clock time in Unix milliseconds (the clock the broker stamps due times with).
fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(0.0)
}

/// The console's count of pending delays for a target (`GET /api/v1/delays/{target}?limit=1`,
/// which reads the target's counters and one record, not the whole wheel).
fn delay_pending(console: &str, target: &str) -> Result<u64, String> {
    let path = format!("/api/v1/delays/{target}?limit=1");
    let (code, body) = http_get(console, &path).ok_or_else(|| format!("GET {path}: no answer"))?;
    if code != 200 {
        return Err(format!("GET {path}: HTTP {code}: {}", body.trim()));
    }
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("GET {path}: {e}: {body}"))?;
    v["pending"]
        .as_u64()
        .ok_or_else(|| format!("GET {path}: no pending count in {body}"))
}

/// Polls the console every 20 ms until it counts `n` pending delays for the target; an error
/// after `within` or when it counts more.
fn wait_pending(console: &str, target: &str, n: u64, within: Duration) -> Result<(), String> {
    let t0 = Instant::now();
    loop {
        let last = match delay_pending(console, target) {
            Ok(p) if p == n => return Ok(()),
            Ok(p) if p > n => return Err(format!("{p} delays pending for {target}, {n} sent")),
            Ok(p) => format!("{p} pending"),
            Err(e) => e,
        };
        if t0.elapsed() > within {
            return Err(format!(
                "not all {n} delays pending after {:.1} s ({last})",
                t0.elapsed().as_secs_f64()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Produces `n` records (acks=1) to `<target>.delay`, each with `kairos-deliver-at: at_ms`,
/// then waits until the console counts `n` pending for the target, at most `within` from the
/// first send. The run is timed from the first send to that moment.
#[allow(clippy::too_many_arguments)]
fn delay_ingest(
    server: &Server,
    console: &str,
    target: &str,
    value: &[u8],
    n: u64,
    at_ms: f64,
    within: Duration,
    plan: &Plan,
) -> Result<Run, String> {
    let topic = format!("{target}.delay");
    let producer: BaseProducer<ProdCtx> = producer_config(server.bootstrap, "1", 5, plan)
        .create_with_context(ProdCtx::new(None))
        .map_err(|e| format!("producer: {e}"))?;
    // Metadata naming the delay topic creates it with the target's partition count.
    let partitions = wait_topic(producer.client(), &topic)?;
    if partitions != 1 {
        return Err(format!(
            "{topic} has {partitions} partitions, the delay rows need 1"
        ));
    }
    let at = format!("{at_ms:.0}");
    let meter = Meter::start(server.pid);
    let t0 = Instant::now();
    let sent = send_loop(
        &producer,
        &topic,
        value,
        None,
        n,
        Some((DELIVER_AT, at.as_bytes())),
    )
    .and_then(|sent| {
        producer
            .flush(Duration::from_secs(60))
            .map(|_| sent)
            .map_err(|e| format!("flush: {e}"))
    });
    let acked = t0.elapsed().as_secs_f64();
    let ctx = producer.context();
    let ok = ctx.ok.load(Ordering::Relaxed);
    let waited = match sent {
        Ok(_) if ok == n => wait_pending(console, target, n, within.saturating_sub(t0.elapsed())),
        Ok(sent) => Err(format!(
            "{ok} of {sent} records acknowledged (first error: {})",
            ctx.first_err
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_default()
        )),
        Err(e) => Err(e),
    };
    let secs = t0.elapsed().as_secs_f64();
    let metered = meter.stop();
    waited?;
    let mut run = Run {
        records: n,
        bytes: n * value.len() as u64,
        secs,
        note: Some(format!(
            "acknowledged at {} records/s; all pending {:.2} s after the last acknowledgement",
            thousands(n as f64 / acked.max(1e-9)),
            secs - acked
        )),
        ..Run::default()
    };
    apply(metered, &mut run);
    Ok(run)
}

/// D2: `n` records due at one instant T, ingested before T (else the run fails); timed from T
/// until the target's high watermark reaches `n` (ListOffsets every 5 ms).
fn delay_fire_run(
    server: &Server,
    console: &str,
    target: &str,
    value: &[u8],
    n: u64,
    plan: &Plan,
) -> Result<Run, String> {
    // Time to produce and ingest them at 50,000/s (a quarter of the target, for a busy
    // machine), plus 2 s.
    let lead_ms = 2000.0 + n as f64 / 50.0;
    let due = (unix_ms() + lead_ms).round();
    let ingest = delay_ingest(
        server,
        console,
        target,
        value,
        n,
        due,
        Duration::from_secs_f64(lead_ms / 1e3),
        plan,
    )
    .map_err(|e| format!("ingest before the due time: {e}"))?;
    let consumer = new_consumer(server.bootstrap, &format!("{target}-watch"), &[], plan)?;
    wait_topic(consumer.client(), target)?;
    let high = || {
        consumer
            .fetch_watermarks(target, 0, Duration::from_secs(5))
            .map(|(_, h)| h.max(0) as u64)
            .map_err(|e| format!("ListOffsets: {e}"))
    };
    let h0 = high()?;
    let ahead = due - unix_ms();
    if ahead <= 0.0 {
        return Err(format!(
            "ingest ({} records/s) was not done before the due time",
            thousands(ingest.rate())
        ));
    }
    if h0 != 0 {
        return Err(format!("{h0} records delivered before their due time"));
    }
    std::thread::sleep(Duration::from_secs_f64(ahead / 1e3));
    // The due instant on the monotonic clock.
    let t0 = Instant::now() - Duration::from_secs_f64(((unix_ms() - due) / 1e3).max(0.0));
    let meter = Meter::start(server.pid);
    let limit = Duration::from_secs_f64(30.0 + n as f64 / 20_000.0);
    let mut first: Option<f64> = None;
    let fired = loop {
        let h = match high() {
            Ok(h) => h,
            Err(e) => break Err(e),
        };
        if h > 0 && first.is_none() {
            first = Some(t0.elapsed().as_secs_f64());
        }
        if h >= n {
            break if h == n {
                Ok(())
            } else {
                Err(format!("{h} records in the target, {n} were due"))
            };
        }
        if t0.elapsed() > limit {
            break Err(format!(
                "{h} of {n} records delivered {:.0} s after their due time",
                limit.as_secs_f64()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let secs = t0.elapsed().as_secs_f64();
    let metered = meter.stop();
    fired?;
    let mut run = Run {
        records: n,
        bytes: n * value.len() as u64,
        secs,
        note: Some(format!(
            "ingested at {} records/s beforehand; first record in the target {:.0} ms after the due time",
            thousands(ingest.rate()),
            first.unwrap_or(secs) * 1e3
        )),
        ..Run::default()
    };
    apply(metered, &mut run);
    Ok(run)
}

/// What the lateness reader saw.
#[derive(Default)]
struct Delivered {
    /// Receive time minus record timestamp (the due time), ms, per record.
    lateness_ms: Vec<f64>,
    /// Received before their due time.
    early: u64,
    /// Records with a `kairos-delay-id` seen before, or without one.
    duplicates: u64,
    missing_id: u64,
    /// Records whose timestamp is not CreateTime.
    not_create_time: u64,
}

/// Reads delivered records until `expect` (set by the producer once it knows) arrived; an error
/// when none arrived for 5 s after that.
fn read_delivered(
    consumer: &BaseConsumer<ConsCtx>,
    expect: &AtomicU64,
) -> Result<Delivered, String> {
    let mut d = Delivered::default();
    let mut ids = std::collections::HashSet::new();
    let mut received = 0u64;
    let mut last = Instant::now();
    loop {
        let want = expect.load(Ordering::Acquire);
        if received >= want {
            return Ok(d);
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let now = unix_ms();
                last = Instant::now();
                received += 1;
                let ts = m.timestamp();
                if !matches!(ts, rdkafka::Timestamp::CreateTime(_)) {
                    d.not_create_time += 1;
                }
                let ts = ts.to_millis().unwrap_or(0) as f64;
                if now < ts {
                    d.early += 1;
                }
                d.lateness_ms.push(now - ts);
                let id = m.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == DELAY_ID)
                        .and_then(|h| h.value.map(<[u8]>::to_vec))
                });
                match id {
                    Some(id) => {
                        if !ids.insert(id) {
                            d.duplicates += 1;
                        }
                    }
                    None => d.missing_id += 1,
                }
            }
            Some(Err(e)) => return Err(format!("consumer: {e}")),
            None => {}
        }
        if want != u64::MAX && last.elapsed() > Duration::from_secs(5) {
            return Err(format!("stalled at {received} of {want} delivered records"));
        }
    }
}

/// D3: `LATENESS_RATE` records/s with `kairos-delay-ms: LATENESS_DELAY_MS` for the plan's
/// delay seconds, on a ThreadedProducer (acks=1); a consumer reads the target meanwhile.
/// Lateness = the consumer's receive time - the record's timestamp (its due time).
fn delay_lateness_run(
    server: &Server,
    target: &str,
    value: &[u8],
    plan: &Plan,
) -> Result<Run, String> {
    let topic = format!("{target}.delay");
    let producer: ThreadedProducer<ProdCtx> = producer_config(server.bootstrap, "1", 5, plan)
        .create_with_context(ProdCtx::new(None))
        .map_err(|e| format!("producer: {e}"))?;
    let partitions = wait_topic(producer.client(), &topic)?;
    if partitions != 1 {
        return Err(format!(
            "{topic} has {partitions} partitions, the delay rows need 1"
        ));
    }
    let consumer = new_consumer(
        server.bootstrap,
        &format!("{target}-reader"),
        &[("fetch.wait.max.ms", "5")],
        plan,
    )?;
    wait_topic(consumer.client(), target)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(target, 0, Offset::Beginning)
        .map_err(|e| e.to_string())?;
    consumer.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
    let delay = LATENESS_DELAY_MS.to_string();
    let expect = AtomicU64::new(u64::MAX);
    let meter = Meter::start(server.pid);
    let t0 = Instant::now();
    let (paced, read) = std::thread::scope(|s| {
        let reader = s.spawn(|| read_delivered(&consumer, &expect));
        let paced = paced_send(&producer, LATENESS_RATE, plan.delay_secs, || {
            BaseRecord::with_opaque_to(&topic, 0)
                .payload(value)
                .headers(OwnedHeaders::new_with_capacity(1).insert(Header {
                    key: DELAY_MS,
                    value: Some(delay.as_bytes()),
                }))
        })
        .and_then(|p| {
            producer
                .flush(Duration::from_secs(60))
                .map(|_| p)
                .map_err(|e| format!("flush: {e}"))
        });
        let ok = producer.context().ok.load(Ordering::Relaxed);
        expect.store(if paced.is_ok() { ok } else { 0 }, Ordering::Release);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err("reader thread panicked".into()));
        (paced, read)
    });
    let secs = t0.elapsed().as_secs_f64();
    let metered = meter.stop();
    let (paced, mut d) = (paced?, read?);
    let ok = expect.load(Ordering::Relaxed);
    let (_, high) = consumer
        .fetch_watermarks(target, 0, Duration::from_secs(5))
        .map_err(|e| format!("ListOffsets: {e}"))?;
    if d.duplicates > 0 || d.missing_id > 0 || high != ok as i64 || ok != paced.sent {
        return Err(format!(
            "{} sent, {ok} acknowledged, {} received, {} duplicate and {} without {DELAY_ID}, {high} in the target",
            paced.sent,
            d.lateness_ms.len(),
            d.duplicates,
            d.missing_id
        ));
    }
    d.lateness_ms.sort_by(|a, b| a.total_cmp(b));
    let l = &d.lateness_ms;
    let q = |p: f64| l[((p * l.len() as f64).ceil() as usize).clamp(1, l.len()) - 1];
    let mut run = Run {
        records: ok,
        bytes: ok * value.len() as u64,
        secs,
        lat: Some(Lat {
            rate: paced.sent as f64 / paced.secs,
            p50: q(0.50),
            p99: q(0.99),
            p999: q(0.999),
            max: q(1.0),
            early: d.early,
        }),
        ..Run::default()
    };
    apply(metered, &mut run);
    let mut notes = Vec::new();
    if paced.queue_full > 0 {
        notes.push(format!("producer queue full {} times", paced.queue_full));
    }
    if d.not_create_time > 0 {
        notes.push(format!(
            "{} delivered records without a CreateTime timestamp",
            d.not_create_time
        ));
    }
    if !notes.is_empty() {
        run.note = Some(notes.join("; "));
    }
    Ok(run)
}

/// D4: the broker's VmRSS growth from `n` records left pending (deliver-at +1 day), produced
/// with large batches; measured 2 s after the console counts all of them.
fn delay_memory_run(
    server: &Server,
    console: &str,
    target: &str,
    value: &[u8],
    n: u64,
    plan: &Plan,
) -> Result<Run, String> {
    let pid = server.pid.ok_or("the broker's PID is unknown")?;
    let rss = || proc_status_kb(pid, "VmRSS").ok_or("cannot read the broker's VmRSS");
    let before = rss()?;
    let p = with_props(plan, &[("linger.ms", "50"), ("batch.size", "1000000")], &[]);
    let within = Duration::from_secs_f64(n as f64 / 50_000.0 + 60.0);
    let at = unix_ms() + 86_400_000.0;
    let mut run = delay_ingest(server, console, target, value, n, at, within, &p)?;
    std::thread::sleep(Duration::from_secs(2));
    let after = rss()?;
    run.value = Some((after as f64 - before as f64) / 1024.0);
    run.note = Some(format!(
        "ingested at {} records/s (first send to all pending; {}); VmRSS {:.1} MB before, {:.1} MB 2 s after",
        thousands(run.rate()),
        run.note.unwrap_or_default(),
        mib(before),
        mib(after)
    ));
    Ok(run)
}

/// D1-D3 (each repeat runs them in turn, so they compare under the same load), then D4 once.
/// Each run uses a fresh target and delay topic, both deleted afterwards.
fn delay_rows(server: &Server, plan: &Plan, admin: &mut Admin) -> Vec<Row> {
    let Some(console) = server.console else {
        return Vec::new();
    };
    let value = value_bytes(100);
    let n = plan.delay_records;
    let count = thousands(n as f64);
    let cases = [
        (
            "D1",
            format!("ingest: {count} × 100 B to <t>.delay (acks=1), deliver-at +1 h, first send to {count} pending"),
            DelayFig::Rate,
            Target::MinRate(200_000.0),
        ),
        (
            "D2",
            format!("fire: {count} pending records due at one instant, due time to all {count} in <t>"),
            DelayFig::Rate,
            Target::MinRate(200_000.0),
        ),
        (
            "D3",
            format!(
                "lateness: {} records/s with {DELAY_MS}: {LATENESS_DELAY_MS} for {} s, consumer receive time - due time",
                thousands(LATENESS_RATE),
                plan.delay_secs
            ),
            DelayFig::Lateness,
            Target::MaxLateness { p99: 20.0, max: 100.0 },
        ),
    ];
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); cases.len()];
    let mut errors: Vec<Option<String>> = vec![None; cases.len()];
    let fresh = |admin: &mut Admin, id: &str, f: &mut dyn FnMut(&str) -> Result<Run, String>| {
        let target = admin.topic(&id.to_lowercase());
        let r = f(&target);
        admin.delete(&format!("{target}.delay"));
        admin.delete(&target);
        r
    };
    for i in 0..plan.repeats {
        for (k, (id, name, fig, _)) in cases.iter().enumerate() {
            if errors[k].is_some() {
                continue;
            }
            if i == 0 {
                eprintln!("kbench: {id}: {name}");
            }
            let r = fresh(admin, id, &mut |target| match *id {
                "D1" => delay_ingest(
                    server,
                    console,
                    target,
                    &value,
                    n,
                    unix_ms() + 3_600_000.0,
                    Duration::from_secs_f64(30.0 + n as f64 / 20_000.0),
                    plan,
                ),
                "D2" => delay_fire_run(server, console, target, &value, n, plan),
                _ => delay_lateness_run(server, target, &value, plan),
            });
            match r {
                Ok(run) => {
                    eprintln!("kbench:   {id} run {}: {}", i + 1, fig.show_run(&run));
                    runs[k].push(run);
                }
                Err(e) => {
                    eprintln!("kbench:   {id} run {} failed: {e}", i + 1);
                    errors[k] = Some(e);
                }
            }
            std::thread::sleep(plan.settle);
        }
    }
    let mut rows: Vec<Row> = cases
        .into_iter()
        .zip(runs.into_iter().zip(errors))
        .map(|((id, name, fig, target), (runs, error))| Row {
            id,
            name,
            kind: Kind::Delay(fig),
            runs,
            error,
            target: Some(target),
        })
        .collect();

    let pending = plan.delay_pending;
    let name = format!(
        "pending memory: {} × 100 B pending (deliver-at +1 day, batch.size=1000000, linger.ms=50): broker VmRSS growth",
        thousands(pending as f64)
    );
    eprintln!("kbench: D4: {name}");
    let r = fresh(admin, "d4", &mut |target| {
        delay_memory_run(server, console, target, &value, pending, plan)
    });
    let (runs, error) = match r {
        Ok(run) => {
            eprintln!("kbench:   D4: {}", DelayFig::ExtraMb.show_run(&run));
            (vec![run], None)
        }
        Err(e) => {
            eprintln!("kbench:   D4 failed: {e}");
            (Vec::new(), Some(e))
        }
    };
    rows.push(Row {
        id: "D4",
        name,
        kind: Kind::Delay(DelayFig::ExtraMb),
        runs,
        error,
        target: Some(Target::MaxMb(64.0)),
    });
    rows
}

// ---------------------------------------------------------------------------------------------
// Consumer groups

/// Partitions of the topic of the stable-time and idle-memory groups.
const GROUP_PARTITIONS: i32 = 50;
/// Members of each group in the stable-time and idle-memory scenarios.
const GROUP_MEMBERS: usize = 10;
/// The broker's `group.initial.rebalance.delay.ms` (kairos's default, and Kafka's).
const INITIAL_DELAY_S: f64 = 3.0;
/// Groups the offset-commit scenarios spread their commits over.
const COMMIT_GROUPS: usize = 1000;
/// Connections of the offset-commit scenarios, and requests in flight on each.
const COMMIT_CONNS: usize = 4;
const COMMIT_PIPELINE: usize = 64;
/// Partitions per assigned member in the idle-memory scenario (50 / 10).
const IDLE_PARTITIONS_EACH: i32 = 5;
/// Every single wait on the broker in the raw-protocol scenarios gives up after this.
const RAW_TIMEOUT: Duration = Duration::from_secs(15);
/// A JoinGroup or SyncGroup may wait for the initial rebalance delay: give it more.
const REBALANCE_TIMEOUT: Duration = Duration::from_secs(60);

fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// "79 MemberIdRequired"
fn error_name(code: i16) -> String {
    match code.err() {
        None => "0 (none)".into(),
        Some(e) => format!("{code} {e:?}"),
    }
}

/// Appends one request frame (length prefix, header, body) to `buf`.
fn put_request<R: Encodable>(
    buf: &mut BytesMut,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    req: &R,
) -> Result<(), String> {
    let start = buf.len();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("kbench")))
        .encode(buf, api.request_header_version(version))
        .map_err(|e| format!("encoding a {api:?} v{version} request header: {e}"))?;
    req.encode(buf, version)
        .map_err(|e| format!("encoding a {api:?} v{version} request: {e}"))?;
    let len = (buf.len() - start - 4) as i32;
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// One response frame without its length prefix; `None` at a clean end of stream.
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(rd: &mut R) -> Result<Option<Bytes>, String> {
    let mut len = [0u8; 4];
    match rd.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(format!("reading a response: {e}")),
    }
    let n = i32::from_be_bytes(len);
    if !(4..=(64 << 20)).contains(&n) {
        return Err(format!("the broker sent a response frame of {n} bytes"));
    }
    let mut b = vec![0u8; n as usize];
    rd.read_exact(&mut b)
        .await
        .map_err(|e| format!("reading a response: {e}"))?;
    Ok(Some(Bytes::from(b)))
}

/// Correlation id and body of a response frame.
fn decode_response<R: Decodable>(
    api: ApiKey,
    version: i16,
    mut frame: Bytes,
) -> Result<(i32, R), String> {
    let h = ResponseHeader::decode(&mut frame, api.response_header_version(version))
        .map_err(|e| format!("malformed {api:?} v{version} response header: {e}"))?;
    let r = R::decode(&mut frame, version)
        .map_err(|e| format!("malformed {api:?} v{version} response: {e}"))?;
    Ok((h.correlation_id, r))
}

async fn raw_connect(addr: &str) -> Result<tokio::net::TcpStream, String> {
    let s = tokio::time::timeout(RAW_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect {addr}: no answer within {RAW_TIMEOUT:?}"))?
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// A raw kafka-protocol connection with one request in flight at a time.
struct RawConn {
    stream: tokio::net::TcpStream,
    next: i32,
    buf: BytesMut,
}

impl RawConn {
    async fn connect(addr: &str) -> Result<RawConn, String> {
        Ok(RawConn {
            stream: raw_connect(addr).await?,
            next: 0,
            buf: BytesMut::with_capacity(1024),
        })
    }

    async fn call<Q: Encodable, P: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Q,
        wait: Duration,
    ) -> Result<P, String> {
        let corr = self.next;
        self.next = self.next.wrapping_add(1);
        let RawConn { stream, buf, .. } = self;
        buf.clear();
        put_request(buf, api, version, corr, req)?;
        let exchange = async {
            stream
                .write_all(buf)
                .await
                .map_err(|e| format!("{api:?}: sending: {e}"))?;
            read_frame(stream)
                .await?
                .ok_or_else(|| format!("{api:?}: the broker closed the connection"))
        };
        let frame = tokio::time::timeout(wait, exchange)
            .await
            .map_err(|_| format!("{api:?} v{version}: no response within {wait:?}"))??;
        let (c, resp) = decode_response(api, version, frame)?;
        if c != corr {
            return Err(format!(
                "{api:?}: response with correlation id {c}, expected {corr}"
            ));
        }
        Ok(resp)
    }
}

fn raw_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

/// Partition count of a topic (waiting for it to have a leader).
fn topic_partitions(bootstrap: &str, topic: &str) -> Result<usize, String> {
    let c: BaseConsumer<ConsCtx> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "kbench")
        .create_with_context(ConsCtx {
            logged: AtomicU64::new(0),
        })
        .map_err(|e| format!("metadata client: {e}"))?;
    wait_topic(c.client(), topic)
}

/// A fresh topic with `partitions` partitions, or an error if the server made another count.
fn group_topic(
    admin: &mut Admin,
    bootstrap: &str,
    what: &str,
    partitions: i32,
) -> Result<String, String> {
    let topic = admin.topic_n(what, partitions);
    let n = topic_partitions(bootstrap, &topic)?;
    if n != partitions as usize {
        admin.delete(&topic);
        return Err(format!(
            "topic {topic} has {n} partitions, not {partitions} (this scenario needs CreateTopics)"
        ));
    }
    Ok(topic)
}

/// G1: 10 librdkafka consumers subscribe together; seconds until every one has a non-empty
/// assignment and together they own each partition exactly once.
/// `protocol`: librdkafka's group.protocol ("classic" or "consumer", KIP-848).
fn stable_run(
    bootstrap: &str,
    pid: Option<u32>,
    topic: &str,
    group: &str,
    protocol: &str,
) -> Result<Run, String> {
    let consumers = (0..GROUP_MEMBERS)
        .map(|i| {
            ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .set("group.protocol", protocol)
                .set("group.id", group)
                .set("client.id", format!("kbench-stable-{i}"))
                .set("enable.auto.commit", "false")
                .set("enable.partition.eof", "false")
                .create_with_context::<_, BaseConsumer<ConsCtx>>(ConsCtx {
                    logged: AtomicU64::new(0),
                })
                .map_err(|e| format!("consumer: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let limit = Duration::from_secs(30);
    let meter = Meter::start(pid);
    let t0 = Instant::now();
    for c in &consumers {
        c.subscribe(&[topic])
            .map_err(|e| format!("subscribe: {e}"))?;
    }
    let mut first_err: Option<String> = None;
    let outcome = loop {
        for c in &consumers {
            if let Some(Err(e)) = c.poll(Duration::ZERO) {
                first_err.get_or_insert_with(|| e.to_string());
            }
        }
        let mut owners = vec![0u32; GROUP_PARTITIONS as usize];
        let mut sizes = Vec::with_capacity(GROUP_MEMBERS);
        let mut foreign = 0;
        for c in &consumers {
            let a = c.assignment().map_err(|e| format!("assignment: {e}"))?;
            sizes.push(a.count());
            for e in a.elements() {
                match usize::try_from(e.partition()) {
                    Ok(p) if e.topic() == topic && p < owners.len() => owners[p] += 1,
                    _ => foreign += 1,
                }
            }
        }
        let done = foreign == 0 && sizes.iter().all(|&n| n > 0) && owners.iter().all(|&n| n == 1);
        if done {
            break Ok(t0.elapsed().as_secs_f64());
        }
        if t0.elapsed() > limit {
            let unowned = owners.iter().filter(|&&n| n == 0).count();
            let twice = owners.iter().filter(|&&n| n > 1).count();
            break Err(format!(
                "not Stable after {limit:?}: assignment sizes {sizes:?}, {unowned} partitions unowned, \
                 {twice} owned more than once, {foreign} unexpected{}",
                first_err
                    .as_ref()
                    .map(|e| format!("; first consumer error: {e}"))
                    .unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let metered = meter.stop();
    // Leave the group off the clock; closing librdkafka consumers can be slow, so bounded.
    for c in &consumers {
        let _ = c.unsubscribe();
    }
    let closer = std::thread::spawn(move || drop(consumers));
    let tc = Instant::now();
    while !closer.is_finished() && tc.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let slow_close = !closer.is_finished();
    let secs = outcome?;
    let mut run = Run {
        secs,
        value: Some(secs),
        ..Run::default()
    };
    apply(metered, &mut run);
    if slow_close {
        run.note = Some("the consumers had not closed 30 s after the run".into());
    } else if let Some(e) = first_err {
        run.note = Some(format!("consumer error during the run: {e}"));
    }
    Ok(run)
}

fn check_commit(resp: &OffsetCommitResponse, parts: i32, group: &str) -> Result<(), String> {
    let [t] = resp.topics.as_slice() else {
        return Err(format!(
            "{group}: OffsetCommit response with {} topics, expected 1",
            resp.topics.len()
        ));
    };
    if t.partitions.len() != parts as usize {
        return Err(format!(
            "{group}: OffsetCommit response with {} partitions, expected {parts}",
            t.partitions.len()
        ));
    }
    if let Some(p) = t.partitions.iter().find(|p| p.error_code != 0) {
        return Err(format!(
            "{group}: OffsetCommit of partition {} answered error {}",
            p.partition_index,
            error_name(p.error_code)
        ));
    }
    Ok(())
}

/// One connection of G2: OffsetCommit v8 standalone commits, up to COMMIT_PIPELINE in flight,
/// until `deadline`. Request `seq` goes to group `(seq * COMMIT_CONNS + conn) % COMMIT_GROUPS`
/// (so each group is always committed on the same connection) and commits offset `seq` for
/// partitions 0..parts. Returns the requests answered and when the last answer came.
async fn commit_conn(
    stream: tokio::net::TcpStream,
    conn: usize,
    topic: TopicName,
    groups: Arc<Vec<GroupId>>,
    parts: i32,
    deadline: Instant,
) -> Result<(u64, Instant), String> {
    const V: i16 = 8;
    let group_of = move |seq: u64| (seq as usize * COMMIT_CONNS + conn) % COMMIT_GROUPS;
    let (rd, mut wr) = stream.into_split();
    let sem = Arc::new(tokio::sync::Semaphore::new(COMMIT_PIPELINE));
    let rsem = sem.clone();
    let rgroups = groups.clone();
    let reader = tokio::spawn(async move {
        let mut rd = tokio::io::BufReader::with_capacity(256 << 10, rd);
        let mut got = 0u64;
        let mut last = Instant::now();
        let r: Result<(), String> = async {
            loop {
                let frame = match tokio::time::timeout(RAW_TIMEOUT, read_frame(&mut rd)).await {
                    Err(_) => {
                        return Err(format!(
                            "no OffsetCommit response for {RAW_TIMEOUT:?} ({got} answered)"
                        ))
                    }
                    Ok(r) => match r? {
                        None => return Ok(()),
                        Some(f) => f,
                    },
                };
                let (corr, resp): (i32, OffsetCommitResponse) =
                    decode_response(ApiKey::OffsetCommit, V, frame)?;
                if corr != got as i32 {
                    return Err(format!(
                        "OffsetCommit response with correlation id {corr}, expected {}",
                        got as i32
                    ));
                }
                check_commit(&resp, parts, rgroups[group_of(got)].0.as_str())?;
                got += 1;
                last = Instant::now();
                rsem.add_permits(1);
            }
        }
        .await;
        if r.is_err() {
            rsem.close();
        }
        r.map(|()| (got, last))
    });
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut seq: u64 = 0;
    let mut failure: Option<String> = None;
    'send: while Instant::now() < deadline {
        match tokio::time::timeout(RAW_TIMEOUT, sem.acquire()).await {
            Err(_) => {
                failure = Some(format!(
                    "{COMMIT_PIPELINE} OffsetCommit requests unanswered for {RAW_TIMEOUT:?}"
                ));
                break;
            }
            Ok(Err(_)) => break, // the reader failed; its error is the one to report
            Ok(Ok(p)) => p.forget(),
        }
        // Batch every free slot into one write.
        let mut n = 0;
        loop {
            let req = OffsetCommitRequest::default()
                .with_group_id(groups[group_of(seq)].clone())
                .with_generation_id_or_member_epoch(-1)
                .with_member_id(StrBytes::default())
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(topic.clone())
                    .with_partitions(
                        (0..parts)
                            .map(|p| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(seq as i64)
                            })
                            .collect(),
                    )]);
            if let Err(e) = put_request(&mut buf, ApiKey::OffsetCommit, V, seq as i32, &req) {
                failure = Some(e);
                break 'send;
            }
            seq += 1;
            n += 1;
            if n >= COMMIT_PIPELINE {
                break;
            }
            match sem.try_acquire() {
                Ok(p) => p.forget(),
                Err(_) => break,
            }
        }
        match tokio::time::timeout(RAW_TIMEOUT, wr.write_all(&buf)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure = Some(format!("sending OffsetCommit: {e}"));
                break;
            }
            Err(_) => {
                failure = Some(format!("OffsetCommit write blocked for {RAW_TIMEOUT:?}"));
                break;
            }
        }
        buf.clear();
    }
    if failure.is_none() {
        // Every slot back = every request answered.
        match tokio::time::timeout(RAW_TIMEOUT, sem.acquire_many(COMMIT_PIPELINE as u32)).await {
            Ok(Ok(p)) => p.forget(),
            Ok(Err(_)) => {}
            Err(_) => {
                failure = Some(format!(
                    "OffsetCommit requests still unanswered {RAW_TIMEOUT:?} after the last was sent"
                ))
            }
        }
    }
    // End of our stream: the broker answers what it has and closes; the reader sees the end.
    let _ = tokio::time::timeout(RAW_TIMEOUT, wr.shutdown()).await;
    let answered = match tokio::time::timeout(RAW_TIMEOUT, reader).await {
        Err(_) => {
            return Err("the broker did not close the connection after the last request".into())
        }
        Ok(Err(e)) => return Err(format!("reader task: {e}")),
        Ok(Ok(r)) => r?,
    };
    if let Some(f) = failure {
        return Err(f);
    }
    if answered.0 != seq {
        return Err(format!(
            "{} OffsetCommit requests sent, {} answered",
            seq, answered.0
        ));
    }
    Ok(answered)
}

/// G2: standalone offset commits across COMMIT_GROUPS groups for `secs` seconds.
fn commits_run(
    bootstrap: &str,
    pid: Option<u32>,
    topic: &str,
    parts: i32,
    secs: f64,
) -> Result<Run, String> {
    let rt = raw_runtime()?;
    let groups: Arc<Vec<GroupId>> = Arc::new(
        (0..COMMIT_GROUPS)
            .map(|g| GroupId(sb(format!("bench-g{g}"))))
            .collect(),
    );
    let topic = TopicName(sb(topic));
    rt.block_on(async {
        let mut streams = Vec::new();
        for _ in 0..COMMIT_CONNS {
            streams.push(raw_connect(bootstrap).await?);
        }
        let meter = Meter::start(pid);
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs_f64(secs);
        let tasks: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(c, s)| {
                tokio::spawn(commit_conn(
                    s,
                    c,
                    topic.clone(),
                    groups.clone(),
                    parts,
                    deadline,
                ))
            })
            .collect();
        let mut requests = 0u64;
        let mut last = t0;
        let mut error: Option<String> = None;
        for (c, t) in tasks.into_iter().enumerate() {
            match t.await {
                Ok(Ok((n, l))) => {
                    requests += n;
                    last = last.max(l);
                }
                Ok(Err(e)) => {
                    error.get_or_insert(format!("connection {c}: {e}"));
                }
                Err(e) => {
                    error.get_or_insert(format!("connection {c}: task: {e}"));
                }
            }
        }
        let metered = meter.stop();
        if let Some(e) = error {
            return Err(e);
        }
        if requests == 0 {
            return Err("no OffsetCommit answered".into());
        }
        let mut run = Run {
            records: requests * parts as u64,
            secs: (last - t0).as_secs_f64(),
            ..Run::default()
        };
        apply(metered, &mut run);
        Ok(run)
    })
}

/// Version-prefixed ConsumerProtocolSubscription (v0) for one topic, as JoinGroup metadata.
fn subscription_bytes(topic: &str) -> Result<Bytes, String> {
    let mut b = BytesMut::new();
    b.put_i16(0);
    ConsumerProtocolSubscription::default()
        .with_topics(vec![sb(topic)])
        .encode(&mut b, 0)
        .map_err(|e| format!("encoding a subscription: {e}"))?;
    Ok(b.freeze())
}

/// Version-prefixed ConsumerProtocolAssignment (v0): partitions `[j*5, j*5+5)` of the topic.
fn assignment_bytes(topic: &str, j: usize) -> Result<Bytes, String> {
    let first = j as i32 * IDLE_PARTITIONS_EACH;
    let mut b = BytesMut::new();
    b.put_i16(0);
    ConsumerProtocolAssignment::default()
        .with_assigned_partitions(vec![AssignedTopicPartition::default()
            .with_topic(TopicName(sb(topic)))
            .with_partitions((first..first + IDLE_PARTITIONS_EACH).collect())])
        .encode(&mut b, 0)
        .map_err(|e| format!("encoding an assignment: {e}"))?;
    Ok(b.freeze())
}

/// Partitions of `topic` in a version-prefixed ConsumerProtocolAssignment.
fn parse_assignment(topic: &str, mut b: Bytes) -> Result<Vec<i32>, String> {
    if b.len() < 2 {
        return Err(format!("assignment of {} bytes", b.len()));
    }
    let v = b.get_i16();
    let a = ConsumerProtocolAssignment::decode(&mut b, v)
        .map_err(|e| format!("malformed assignment: {e}"))?;
    Ok(a.assigned_partitions
        .iter()
        .filter(|t| t.topic.0.as_str() == topic)
        .flat_map(|t| t.partitions.iter().copied())
        .collect())
}

/// What one G3 member ended with.
struct Member {
    group: usize,
    member_id: StrBytes,
    generation: i32,
    leader: bool,
    /// The members the leader was given (leader only).
    members: Vec<StrBytes>,
    partitions: Vec<i32>,
}

/// One G3 member: JoinGroup v5 (empty id → MEMBER_ID_REQUIRED → rejoin with the id), then
/// SyncGroup v5 (the leader with an assignment for every member).
async fn idle_member(
    conn: &mut RawConn,
    g: usize,
    group: &str,
    topic: &str,
    metadata: Bytes,
) -> Result<Member, String> {
    let join = |id: StrBytes| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(sb(group)))
            .with_session_timeout_ms(60_000)
            .with_rebalance_timeout_ms(60_000)
            .with_member_id(id)
            .with_protocol_type(sb("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(sb("range"))
                .with_metadata(metadata.clone())])
    };
    let r: JoinGroupResponse = conn
        .call(
            ApiKey::JoinGroup,
            5,
            &join(StrBytes::default()),
            RAW_TIMEOUT,
        )
        .await?;
    if r.error_code != 79 || r.member_id.is_empty() {
        return Err(format!(
            "{group}: JoinGroup without a member id answered error {} and member id {:?}; \
             expected 79 MemberIdRequired with an id",
            error_name(r.error_code),
            r.member_id.as_str()
        ));
    }
    let id = r.member_id;
    let r: JoinGroupResponse = conn
        .call(ApiKey::JoinGroup, 5, &join(id.clone()), REBALANCE_TIMEOUT)
        .await?;
    if r.error_code != 0 {
        return Err(format!(
            "{group}: JoinGroup with member id {:?} answered error {}",
            id.as_str(),
            error_name(r.error_code)
        ));
    }
    let leader = r.leader == id;
    let mut members: Vec<StrBytes> = r.members.iter().map(|m| m.member_id.clone()).collect();
    members.sort();
    let mut assignments = Vec::new();
    if leader {
        if members.len() != GROUP_MEMBERS {
            return Err(format!(
                "{group}: the leader's JoinGroup response lists {} members, expected {GROUP_MEMBERS}",
                members.len()
            ));
        }
        for (j, m) in members.iter().enumerate() {
            assignments.push(
                SyncGroupRequestAssignment::default()
                    .with_member_id(m.clone())
                    .with_assignment(assignment_bytes(topic, j)?),
            );
        }
    }
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_generation_id(r.generation_id)
        .with_member_id(id.clone())
        .with_protocol_type(Some(sb("consumer")))
        .with_protocol_name(Some(sb("range")))
        .with_assignments(assignments);
    let s: SyncGroupResponse = conn
        .call(ApiKey::SyncGroup, 5, &sync, REBALANCE_TIMEOUT)
        .await?;
    if s.error_code != 0 {
        return Err(format!(
            "{group}: SyncGroup of member {:?} answered error {}",
            id.as_str(),
            error_name(s.error_code)
        ));
    }
    let partitions = parse_assignment(topic, s.assignment).map_err(|e| format!("{group}: {e}"))?;
    Ok(Member {
        group: g,
        member_id: id,
        generation: r.generation_id,
        leader,
        members,
        partitions,
    })
}

/// Checks that each group has one leader, one generation, every member once, and the
/// partitions split without overlap.
fn check_groups(members: &[Member], groups: usize, names: &[String]) -> Result<(), String> {
    let mut by_group: Vec<Vec<&Member>> = (0..groups).map(|_| Vec::new()).collect();
    for m in members {
        by_group[m.group].push(m);
    }
    for (g, ms) in by_group.iter().enumerate() {
        let name = &names[g];
        let leaders: Vec<&&Member> = ms.iter().filter(|m| m.leader).collect();
        let [leader] = leaders.as_slice() else {
            return Err(format!("{name}: {} members think they lead", leaders.len()));
        };
        let mut ids: Vec<StrBytes> = ms.iter().map(|m| m.member_id.clone()).collect();
        ids.sort();
        if ids != leader.members {
            return Err(format!(
                "{name}: the members are not the ones the leader was given"
            ));
        }
        if ms.iter().any(|m| m.generation != leader.generation) {
            return Err(format!("{name}: members in different generations"));
        }
        let mut owned: Vec<i32> = ms
            .iter()
            .flat_map(|m| m.partitions.iter().copied())
            .collect();
        owned.sort_unstable();
        if owned != (0..GROUP_PARTITIONS).collect::<Vec<_>>() {
            return Err(format!(
                "{name}: the members received {} partitions in all, not 0..{GROUP_PARTITIONS} once each",
                owned.len()
            ));
        }
    }
    Ok(())
}

/// G3: forms `groups` groups of GROUP_MEMBERS members (one connection each) and reports the
/// broker's VmRSS growth per group, 2 s after the last SyncGroup, connections still open.
fn idle_groups_run(
    bootstrap: &str,
    pid: Option<u32>,
    topic: &str,
    prefix: &str,
    groups: usize,
) -> Result<Run, String> {
    let pid = pid.ok_or("needs the broker's PID (--broker-pid) to read its VmRSS")?;
    let rss =
        || proc_status_kb(pid, "VmRSS").ok_or_else(|| format!("cannot read VmRSS of pid {pid}"));
    let names: Vec<String> = (0..groups).map(|g| format!("{prefix}-{g}")).collect();
    let metadata = subscription_bytes(topic)?;
    let rt = raw_runtime()?;
    rt.block_on(async {
        // Connections first, each warmed with ApiVersions, so their cost is in "before".
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..groups * GROUP_MEMBERS {
            let addr = bootstrap.to_string();
            set.spawn(async move {
                let mut c = RawConn::connect(&addr).await?;
                let req = ApiVersionsRequest::default()
                    .with_client_software_name(sb("kbench"))
                    .with_client_software_version(sb("1"));
                let r: ApiVersionsResponse =
                    c.call(ApiKey::ApiVersions, 3, &req, RAW_TIMEOUT).await?;
                if r.error_code != 0 {
                    return Err(format!("ApiVersions answered error {}", error_name(r.error_code)));
                }
                Ok::<RawConn, String>(c)
            });
        }
        let mut conns = Vec::with_capacity(groups * GROUP_MEMBERS);
        while let Some(r) = set.join_next().await {
            conns.push(r.map_err(|e| format!("connect task: {e}"))??);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss()?;
        let meter = Meter::start(Some(pid));
        let t0 = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for (i, mut conn) in conns.into_iter().enumerate() {
            let g = i / GROUP_MEMBERS;
            let name = names[g].clone();
            let topic = topic.to_string();
            let metadata = metadata.clone();
            set.spawn(async move {
                let r = idle_member(&mut conn, g, &name, &topic, metadata).await;
                (conn, r)
            });
        }
        let mut conns = Vec::new();
        let mut members = Vec::new();
        let mut error: Option<String> = None;
        let all = tokio::time::timeout(REBALANCE_TIMEOUT + RAW_TIMEOUT, async {
            while let Some(r) = set.join_next().await {
                match r {
                    Ok((conn, Ok(m))) => {
                        conns.push(conn);
                        members.push(m);
                    }
                    Ok((conn, Err(e))) => {
                        conns.push(conn);
                        error.get_or_insert(e);
                    }
                    Err(e) => {
                        error.get_or_insert(format!("member task: {e}"));
                    }
                }
            }
        })
        .await;
        let formed = t0.elapsed().as_secs_f64();
        let metered = meter.stop();
        if all.is_err() {
            return Err(format!(
                "groups not formed within {:?}: {} of {} members done",
                REBALANCE_TIMEOUT + RAW_TIMEOUT,
                members.len(),
                groups * GROUP_MEMBERS
            ));
        }
        if let Some(e) = error {
            return Err(e);
        }
        check_groups(&members, groups, &names)?;
        // Idle: no heartbeats needed within the 60 s session timeout.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss()?;
        // Clean up: each leader removes its whole group (batched LeaveGroup v4).
        let mut leave_errors = 0;
        let mut first_leave_error = None;
        for m in members.iter().filter(|m| m.leader) {
            let Some(conn) = conns.first_mut() else {
                break;
            };
            let req = LeaveGroupRequest::default()
                .with_group_id(GroupId(sb(names[m.group].as_str())))
                .with_members(
                    m.members
                        .iter()
                        .map(|id| MemberIdentity::default().with_member_id(id.clone()))
                        .collect(),
                );
            let r: Result<LeaveGroupResponse, String> =
                conn.call(ApiKey::LeaveGroup, 4, &req, RAW_TIMEOUT).await;
            let problem = match r {
                Ok(r) if r.error_code != 0 => Some(error_name(r.error_code)),
                Ok(r) => r
                    .members
                    .iter()
                    .find(|x| x.error_code != 0)
                    .map(|x| format!("member: {}", error_name(x.error_code))),
                Err(e) => Some(e),
            };
            if let Some(p) = problem {
                leave_errors += 1;
                first_leave_error.get_or_insert(format!("{}: {p}", names[m.group]));
            }
        }
        drop(conns);
        let mut run = Run {
            secs: formed,
            value: Some((after as f64 - before as f64) / groups as f64),
            ..Run::default()
        };
        apply(metered, &mut run);
        run.note = Some(format!(
            "{groups} groups × {GROUP_MEMBERS} members formed in {formed:.2} s; broker VmRSS {:.1} MiB before, {:.1} MiB after{}",
            mib(before),
            mib(after),
            first_leave_error
                .map(|e| format!("; {leave_errors} LeaveGroup failures at clean-up (first: {e})"))
                .unwrap_or_default()
        ));
        Ok(run)
    })
}

/// Runs a groups scenario `plan.repeats` times.
fn repeat_runs(
    plan: &Plan,
    id: &str,
    show: impl Fn(&Run) -> String,
    mut f: impl FnMut(usize) -> Result<Run, String>,
) -> (Vec<Run>, Option<String>) {
    let mut runs = Vec::new();
    for i in 0..plan.repeats {
        match f(i) {
            Ok(run) => {
                eprintln!("kbench:   {id} run {}: {}", i + 1, show(&run));
                runs.push(run);
            }
            Err(e) => {
                eprintln!("kbench:   {id} run {} failed: {e}", i + 1);
                return (runs, Some(e));
            }
        }
        std::thread::sleep(plan.settle);
    }
    (runs, None)
}

/// The consumer-group rows (default-fsync broker only).
fn group_rows(server: &Server, plan: &Plan, admin: &mut Admin) -> Vec<Row> {
    let mut rows = Vec::new();
    let bootstrap = server.bootstrap;

    for (id, protocol, what) in [
        ("G1", "classic", "classic protocol"),
        ("G1k", "consumer", "KIP-848 group.protocol=consumer"),
    ] {
        let name = format!(
            "{GROUP_MEMBERS} consumers subscribe to a {GROUP_PARTITIONS}-partition topic ({what}): until Stable"
        );
        eprintln!("kbench: {id}: {name}");
        let (runs, error) = repeat_runs(
            plan,
            id,
            |r| format!("Stable after {:.2} s", r.secs),
            |i| {
                let topic = group_topic(admin, bootstrap, "g1", GROUP_PARTITIONS)?;
                let group = format!("{topic}-g{i}");
                let r = stable_run(bootstrap, server.pid, &topic, &group, protocol);
                admin.delete(&topic);
                r
            },
        );
        rows.push(Row {
            id,
            name,
            kind: Kind::Group(GroupFig::StableSecs),
            runs,
            error,
            // KIP-848 has no initial delay; the same bound is kept for comparison.
            target: Some(Target::MaxSecs(INITIAL_DELAY_S + 1.0)),
        });
    }

    for (id, parts) in [("G2a", 1), ("G2b", 10)] {
        let name = format!(
            "standalone OffsetCommit v8 across {} groups, {parts} partition{} per request",
            thousands(COMMIT_GROUPS as f64),
            if parts == 1 { "" } else { "s" }
        );
        eprintln!("kbench: {id}: {name}");
        let topic = group_topic(admin, bootstrap, &id.to_lowercase(), parts);
        let (runs, error) = match &topic {
            Err(e) => (Vec::new(), Some(e.clone())),
            Ok(topic) => repeat_runs(
                plan,
                id,
                |r| {
                    format!(
                        "{} commits/s, {} broker CPU s per M",
                        thousands(r.rate()),
                        opt(r.broker_s_per_m(), |v| format!("{v:.2}"))
                    )
                },
                |_| commits_run(bootstrap, server.pid, topic, parts, plan.commit_secs),
            ),
        };
        if let Ok(t) = &topic {
            admin.delete(t);
        }
        rows.push(Row {
            id,
            name,
            kind: Kind::Group(GroupFig::Commits),
            runs,
            error,
            target: Some(Target::MinRate(50_000.0)),
        });
    }

    let name = format!(
        "{} idle groups × {GROUP_MEMBERS} members: broker RSS per group",
        plan.idle_groups
    );
    eprintln!("kbench: G3: {name}");
    let (runs, error) = repeat_runs(
        plan,
        "G3",
        |r| {
            format!(
                "{:.1} KB per group ({})",
                r.value.unwrap_or(f64::NAN),
                r.note.as_deref().unwrap_or_default()
            )
        },
        |i| {
            let topic = group_topic(admin, bootstrap, "g3", GROUP_PARTITIONS)?;
            let prefix = format!("{topic}-idle{i}");
            let r = idle_groups_run(bootstrap, server.pid, &topic, &prefix, plan.idle_groups);
            admin.delete(&topic);
            r
        },
    );
    rows.push(Row {
        id: "G3",
        name,
        kind: Kind::Group(GroupFig::IdleKb),
        runs,
        error,
        target: Some(Target::MaxKb(50.0)),
    });
    rows
}

// ---------------------------------------------------------------------------------------------
// Report

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Throughput,
    Latency,
    Group(GroupFig),
    Delay(DelayFig),
    /// `GET /metrics` times (`Run::lat`, ms) and response size (`Run::value`, bytes).
    Metrics,
}

/// What a consumer-groups row reports.
#[derive(Clone, Copy, Debug, PartialEq)]
enum GroupFig {
    /// Seconds from subscribe to Stable (`Run::value`).
    StableSecs,
    /// Offsets committed per second (`Run::rate`).
    Commits,
    /// Broker RSS KB per idle group (`Run::value`).
    IdleKb,
}

/// What a delay-topics row reports.
#[derive(Clone, Copy, Debug, PartialEq)]
enum DelayFig {
    /// Records ingested or fired per second (`Run::rate`).
    Rate,
    /// Delivery lateness percentiles and early deliveries (`Run::lat`).
    Lateness,
    /// Broker VmRSS growth in MiB (`Run::value`).
    ExtraMb,
}

impl DelayFig {
    /// The figure the row's median is taken of.
    fn figure(self, r: &Run) -> Option<f64> {
        match self {
            DelayFig::Rate => Some(r.rate()),
            DelayFig::Lateness => r.lat.as_ref().map(|l| l.p99),
            DelayFig::ExtraMb => r.value,
        }
    }

    /// One run's result, as progress and in the runs column.
    fn show_run(self, r: &Run) -> String {
        match (self, &r.lat) {
            (DelayFig::Lateness, Some(l)) => format!(
                "p99 {:.1} ms, max {:.1} ms, {} early",
                l.p99, l.max, l.early
            ),
            _ => self.figure(r).map(|v| self.show(v)).unwrap_or_default(),
        }
    }

    fn show(self, v: f64) -> String {
        match self {
            DelayFig::Rate => format!("{} records/s", thousands(v)),
            DelayFig::Lateness => format!("{v:.1} ms"),
            DelayFig::ExtraMb => format!("{v:.1} MB"),
        }
    }
}

#[derive(Clone, Debug)]
enum Target {
    MinRate(f64),
    /// At least this fraction of the median rate of the row with this id (same run).
    RelRate(&'static str, f64),
    MaxP99(f64),
    MaxSecs(f64),
    MaxKb(f64),
    /// Delay lateness: p99 and max at most these ms, no record early.
    MaxLateness {
        p99: f64,
        max: f64,
    },
    MaxMb(f64),
}

struct Row {
    id: &'static str,
    name: String,
    kind: Kind,
    runs: Vec<Run>,
    error: Option<String>,
    target: Option<Target>,
}

struct BrokerInfo {
    label: String,
    command_line: String,
    idle_rss_kb: Option<u64>,
    peak_rss_kb: Option<u64>,
    hwm_kb: Option<u64>,
    stop: Option<String>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn med_of(runs: &[Run], f: impl Fn(&Run) -> Option<f64>) -> Option<f64> {
    median(runs.iter().filter_map(f).collect())
}

fn thousands(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn opt(x: Option<f64>, f: impl Fn(f64) -> String) -> String {
    x.map(f).unwrap_or_else(|| "–".into())
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

struct Report {
    header: Vec<String>,
    rows: Vec<Row>,
    brokers: Vec<BrokerInfo>,
    notes: Vec<String>,
}

/// Header and alignment rows of the report's tables.
const THROUGHPUT_HEADER: &str =
    "| # | scenario | records/s | MB/s | broker CPU s/M | broker CPU % | client CPU % | other CPU % | peak RSS MB | target | runs (records/s) |";
const THROUGHPUT_ALIGN: &str = "|---|---|--:|--:|--:|--:|--:|--:|--:|---|---|";
const LATENCY_HEADER: &str =
    "| # | scenario | sent/s | p50 ms | p99 ms | p99.9 ms | max ms | broker CPU s/M | broker CPU % | other CPU % | target | runs (p99 ms) |";
const LATENCY_ALIGN: &str = "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|";
const GROUPS_HEADER: &str =
    "| # | scenario | result | broker CPU s/M commits | broker CPU % | client CPU % | other CPU % | target | runs |";
const GROUPS_ALIGN: &str = "|---|---|--:|--:|--:|--:|--:|---|---|";
const DELAYS_HEADER: &str =
    "| # | scenario | result | broker CPU s/M | broker CPU % | client CPU % | other CPU % | peak RSS MB | target | runs |";
const DELAYS_ALIGN: &str = "|---|---|--:|--:|--:|--:|--:|--:|---|---|";
const METRICS_HEADER: &str =
    "| # | scenario | p50 ms | p99 ms | max ms | bytes | broker CPU ms/GET | broker CPU % | other CPU % | target | runs (p50 / p99 ms) |";
const METRICS_ALIGN: &str = "|---|---|--:|--:|--:|--:|--:|--:|--:|---|---|";

/// One table of the report: its title, header and alignment rows, and a line per
/// row: `| id | name |` and the cells `cells` gives (a row of another kind gives
/// None and is skipped), or the row's error across the remaining columns.
fn section<'a>(
    s: &mut String,
    rows: impl Iterator<Item = &'a Row>,
    title: &str,
    header: &str,
    align: &str,
    cells: impl Fn(&Row) -> Option<Vec<String>>,
) {
    let rows: Vec<&Row> = rows.collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n## {title}\n\n{header}\n{align}");
    let columns = align.matches('|').count() - 1;
    for r in rows {
        let cells = match &r.error {
            Some(e) => {
                let mut c = vec![format!(
                    "failed: {}",
                    e.replace('\n', " ").replace('|', "/")
                )];
                c.resize(columns - 2, String::new());
                c
            }
            None => match cells(r) {
                Some(c) => c,
                None => continue,
            },
        };
        let _ = writeln!(s, "| {} | {} | {} |", r.id, r.name, cells.join(" | "));
    }
}

impl Report {
    fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Kairos benchmark\n");
        for h in &self.header {
            let _ = writeln!(s, "- {h}");
        }
        section(
            &mut s,
            self.rows.iter().filter(|r| r.kind == Kind::Throughput),
            "Throughput",
            THROUGHPUT_HEADER,
            THROUGHPUT_ALIGN,
            |r| {
                let rate = med_of(&r.runs, |x| Some(x.rate()));
                let target = match (&r.target, rate) {
                    (Some(Target::MinRate(t)), Some(v)) => {
                        format!(
                            "≥ {}: {}",
                            thousands(*t),
                            if v >= *t { "met" } else { "**missed**" }
                        )
                    }
                    (Some(Target::RelRate(of, f)), Some(v)) => {
                        let base = self
                            .rows
                            .iter()
                            .find(|x| x.id == *of && x.error.is_none())
                            .and_then(|x| med_of(&x.runs, |y| Some(y.rate())));
                        match base {
                            Some(b) if b > 0.0 => format!(
                                "≥ {:.0} % of {of}: {:.0} %, {}",
                                f * 100.0,
                                v / b * 100.0,
                                if v >= f * b { "met" } else { "**missed**" }
                            ),
                            _ => format!("≥ {:.0} % of {of}: no figure for {of}", f * 100.0),
                        }
                    }
                    _ => String::new(),
                };
                let runs: Vec<String> = r.runs.iter().map(|x| thousands(x.rate())).collect();
                Some(vec![
                    opt(rate, thousands),
                    opt(med_of(&r.runs, |x| Some(x.mbps())), |v| format!("{v:.1}")),
                    opt(med_of(&r.runs, Run::broker_s_per_m), |v| format!("{v:.3}")),
                    opt(med_of(&r.runs, Run::broker_pct), |v| format!("{v:.0}")),
                    opt(med_of(&r.runs, Run::client_pct), |v| format!("{v:.0}")),
                    opt(med_of(&r.runs, Run::other_pct), |v| format!("{v:.0}")),
                    opt(med_of(&r.runs, |x| x.peak_rss_kb.map(mib)), |v| {
                        format!("{v:.1}")
                    }),
                    target,
                    runs.join(" / "),
                ])
            },
        );
        section(
            &mut s,
            self.rows.iter().filter(|r| r.kind == Kind::Latency),
            "Produce latency (send to delivery report)",
            LATENCY_HEADER,
            LATENCY_ALIGN,
            |r| {
                let l = |f: fn(&Lat) -> f64| med_of(&r.runs, move |x| x.lat.as_ref().map(f));
                let p99 = l(|x| x.p99);
                let target = match (&r.target, p99) {
                    (Some(Target::MaxP99(t)), Some(v)) => {
                        format!(
                            "p99 ≤ {t} ms: {}",
                            if v <= *t { "met" } else { "**missed**" }
                        )
                    }
                    _ => String::new(),
                };
                let runs: Vec<String> = r
                    .runs
                    .iter()
                    .map(|x| {
                        x.lat
                            .as_ref()
                            .map(|l| format!("{:.2}", l.p99))
                            .unwrap_or_default()
                    })
                    .collect();
                Some(vec![
                    opt(l(|x| x.rate), thousands),
                    opt(l(|x| x.p50), |v| format!("{v:.2}")),
                    opt(p99, |v| format!("{v:.2}")),
                    opt(l(|x| x.p999), |v| format!("{v:.2}")),
                    opt(l(|x| x.max), |v| format!("{v:.2}")),
                    opt(med_of(&r.runs, Run::broker_s_per_m), |v| format!("{v:.3}")),
                    opt(med_of(&r.runs, Run::broker_pct), |v| format!("{v:.0}")),
                    opt(med_of(&r.runs, Run::other_pct), |v| format!("{v:.0}")),
                    target,
                    runs.join(" / "),
                ])
            },
        );
        section(
            &mut s,
            self.rows
                .iter()
                .filter(|r| matches!(r.kind, Kind::Group(_))),
            "Consumer groups",
            GROUPS_HEADER,
            GROUPS_ALIGN,
            |r| {
                let Kind::Group(fig) = r.kind else {
                    return None;
                };
                let figure = |x: &Run| match fig {
                    GroupFig::Commits => Some(x.rate()),
                    GroupFig::StableSecs | GroupFig::IdleKb => x.value,
                };
                let show = |v: f64| match fig {
                    GroupFig::StableSecs => format!("{v:.2} s"),
                    GroupFig::Commits => format!("{} commits/s", thousands(v)),
                    GroupFig::IdleKb => format!("{v:.1} KB/group"),
                };
                let value = med_of(&r.runs, |x| figure(x));
                let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
                let target = match (&r.target, value) {
                    (Some(Target::MaxSecs(t)), Some(v)) => format!(
                        "≤ {t} s (initial rebalance delay {INITIAL_DELAY_S} s + 1 s): {}",
                        verdict(v <= *t)
                    ),
                    (Some(Target::MinRate(t)), Some(v)) => {
                        format!("≥ {}/s: {}", thousands(*t), verdict(v >= *t))
                    }
                    (Some(Target::MaxKb(t)), Some(v)) => {
                        format!("< {t} KB: {}", verdict(v < *t))
                    }
                    _ => String::new(),
                };
                let runs: Vec<String> = r
                    .runs
                    .iter()
                    .map(|x| figure(x).map(show).unwrap_or_default())
                    .collect();
                let per_m = match fig {
                    GroupFig::Commits => {
                        opt(med_of(&r.runs, Run::broker_s_per_m), |v| format!("{v:.2}"))
                    }
                    _ => "–".into(),
                };
                Some(vec![
                    opt(value, show),
                    per_m,
                    opt(med_of(&r.runs, Run::broker_pct), |v| format!("{v:.0}")),
                    opt(med_of(&r.runs, Run::client_pct), |v| format!("{v:.0}")),
                    opt(med_of(&r.runs, Run::other_pct), |v| format!("{v:.0}")),
                    target,
                    runs.join(" / "),
                ])
            },
        );
        section(
            &mut s,
            self.rows
                .iter()
                .filter(|r| matches!(r.kind, Kind::Delay(_))),
            "Delay topics",
            DELAYS_HEADER,
            DELAYS_ALIGN,
            |r| {
                let Kind::Delay(fig) = r.kind else {
                    return None;
                };
                let l = |f: fn(&Lat) -> f64| med_of(&r.runs, move |x| x.lat.as_ref().map(f));
                let early: u64 = r
                    .runs
                    .iter()
                    .filter_map(|x| x.lat.as_ref())
                    .map(|l| l.early)
                    .sum();
                let value = med_of(&r.runs, |x| fig.figure(x));
                let result = match fig {
                    DelayFig::Lateness => format!(
                        "p50 {} / p99 {} / p99.9 {} / max {} ms; {early} early",
                        opt(l(|x| x.p50), |v| format!("{v:.1}")),
                        opt(l(|x| x.p99), |v| format!("{v:.1}")),
                        opt(l(|x| x.p999), |v| format!("{v:.1}")),
                        opt(l(|x| x.max), |v| format!("{v:.1}")),
                    ),
                    _ => opt(value, |v| fig.show(v)),
                };
                let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
                let target = match (&r.target, value) {
                    (Some(Target::MinRate(t)), Some(v)) => {
                        format!("≥ {}/s: {}", thousands(*t), verdict(v >= *t))
                    }
                    (Some(Target::MaxLateness { p99, max }), Some(v)) => format!(
                        "p99 ≤ {p99} ms, max ≤ {max} ms, none early: {}",
                        verdict(v <= *p99 && l(|x| x.max).is_some_and(|m| m <= *max) && early == 0)
                    ),
                    (Some(Target::MaxMb(t)), Some(v)) => format!("≤ {t} MB: {}", verdict(v <= *t)),
                    _ => String::new(),
                };
                let runs: Vec<String> = r.runs.iter().map(|x| fig.show_run(x)).collect();
                Some(vec![
                    result,
                    opt(med_of(&r.runs, Run::broker_s_per_m), |v| format!("{v:.3}")),
                    opt(med_of(&r.runs, Run::broker_pct), |v| format!("{v:.0}")),
                    opt(med_of(&r.runs, Run::client_pct), |v| format!("{v:.0}")),
                    opt(med_of(&r.runs, Run::other_pct), |v| format!("{v:.0}")),
                    opt(med_of(&r.runs, |x| x.peak_rss_kb.map(mib)), |v| {
                        format!("{v:.1}")
                    }),
                    target,
                    runs.join(" / "),
                ])
            },
        );
        section(
            &mut s,
            self.rows.iter().filter(|r| r.kind == Kind::Metrics),
            "/metrics (connect to last byte of the response)",
            METRICS_HEADER,
            METRICS_ALIGN,
            |r| {
                let l = |f: fn(&Lat) -> f64| med_of(&r.runs, move |x| x.lat.as_ref().map(f));
                let p99 = l(|x| x.p99);
                let target = match (&r.target, p99) {
                    (Some(Target::MaxP99(t)), Some(v)) => format!(
                        "p99 ≤ {t} ms: {}",
                        if v <= *t { "met" } else { "**missed**" }
                    ),
                    _ => String::new(),
                };
                let runs: Vec<String> = r
                    .runs
                    .iter()
                    .filter_map(|x| x.lat.as_ref())
                    .map(|l| format!("{:.2} / {:.2}", l.p50, l.p99))
                    .collect();
                Some(vec![
                    opt(l(|x| x.p50), |v| format!("{v:.2}")),
                    opt(p99, |v| format!("{v:.2}")),
                    opt(l(|x| x.max), |v| format!("{v:.2}")),
                    opt(med_of(&r.runs, |x| x.value), thousands),
                    opt(
                        med_of(&r.runs, |x| {
                            x.broker_cpu.map(|c| c * 1e3 / x.records.max(1) as f64)
                        }),
                        |v| format!("{v:.2}"),
                    ),
                    opt(med_of(&r.runs, Run::broker_pct), |v| format!("{v:.0}")),
                    opt(med_of(&r.runs, Run::other_pct), |v| format!("{v:.0}")),
                    target,
                    runs.join(" · "),
                ])
            },
        );
        if !self.brokers.is_empty() {
            let _ = writeln!(s, "\n## Broker memory\n");
            let _ = writeln!(
                s,
                "| broker | idle RSS MB | peak RSS MB during produce | VmHWM MB at stop | target |"
            );
            let _ = writeln!(s, "|---|--:|--:|--:|---|");
            for b in &self.brokers {
                let target = b
                    .idle_rss_kb
                    .map(|kb| {
                        format!(
                            "idle ≤ 32 MB: {}",
                            if mib(kb) <= 32.0 { "met" } else { "**missed**" }
                        )
                    })
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} |",
                    b.label,
                    opt(b.idle_rss_kb.map(mib), |v| format!("{v:.1}")),
                    opt(b.peak_rss_kb.map(mib), |v| format!("{v:.1}")),
                    opt(b.hwm_kb.map(mib), |v| format!("{v:.1}")),
                    target
                );
            }
        }
        let mut notes = self.notes.clone();
        let busiest = self
            .rows
            .iter()
            .filter_map(|r| med_of(&r.runs, Run::other_pct))
            .fold(0.0, f64::max);
        if busiest > 15.0 {
            notes.insert(
                0,
                format!("**other processes used up to {busiest:.0} % CPU during the runs (column \"other CPU %\"): those figures are low; rerun on an idle machine**"),
            );
        }
        for b in &self.brokers {
            notes.push(format!(
                "{}: `{}`{}",
                b.label,
                b.command_line,
                b.stop
                    .as_deref()
                    .map(|x| format!("; {x}"))
                    .unwrap_or_default()
            ));
        }
        for r in &self.rows {
            for (i, run) in r.runs.iter().enumerate() {
                if let Some(n) = &run.note {
                    notes.push(format!("{} run {}: {n}", r.id, i + 1));
                }
            }
        }
        if !notes.is_empty() {
            let _ = writeln!(s, "\n## Notes\n");
            for n in notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Driver

/// Where the scenarios connect, and the server's PID and console address if known.
struct Server<'a> {
    bootstrap: &'a str,
    pid: Option<u32>,
    console: Option<&'a str>,
}

fn repeat(
    plan: &Plan,
    admin: &mut Admin,
    what: &str,
    mut f: impl FnMut(&str) -> Result<Run, String>,
) -> (Vec<Run>, Option<String>) {
    let mut runs = Vec::new();
    for i in 0..plan.repeats {
        let topic = admin.topic(what);
        let r = f(&topic);
        admin.delete(&topic);
        match r {
            Ok(run) => {
                eprintln!(
                    "kbench:   {what} run {}: {} records/s, {:.1} MB/s{}",
                    i + 1,
                    thousands(run.rate()),
                    run.mbps(),
                    run.lat
                        .as_ref()
                        .map(|l| format!(
                            ", p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
                            l.p50, l.p99, l.p999
                        ))
                        .unwrap_or_default()
                );
                runs.push(run);
            }
            Err(e) => {
                eprintln!("kbench:   {what} run {} failed: {e}", i + 1);
                return (runs, Some(e));
            }
        }
        std::thread::sleep(plan.settle);
    }
    (runs, None)
}

/// Runs one broker group's scenarios; returns its rows and the peak RSS seen.
fn run_group(
    server: &Server,
    fsync_always: bool,
    sel: &Selection,
    plan: &Plan,
    auto_create: bool,
) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut admin = Admin::new(server.bootstrap, !auto_create);
    let small = value_bytes(100);
    let large = value_bytes(1024);
    let suffix = if fsync_always { ", fsync always" } else { "" };
    if sel.produce {
        let cases: [(&'static str, &'static str, &[u8], &str); 4] = if fsync_always {
            [
                ("5", "100 B", &small, "1"),
                ("6", "1 KiB", &large, "1"),
                ("7", "100 B", &small, "all"),
                ("8", "1 KiB", &large, "all"),
            ]
        } else {
            [
                ("1", "100 B", &small, "1"),
                ("2", "1 KiB", &large, "1"),
                ("3", "100 B", &small, "all"),
                ("4", "1 KiB", &large, "all"),
            ]
        };
        for (id, size, value, acks) in cases {
            let name = format!("produce {size}, acks={acks}{suffix}");
            eprintln!("kbench: {id}: {name}");
            let (runs, error) = repeat(plan, &mut admin, &format!("p{id}"), |topic| {
                produce_run(
                    server.bootstrap,
                    server.pid,
                    topic,
                    value,
                    acks,
                    plan.produce,
                    plan,
                )
            });
            let target = match (id, size) {
                ("1", _) => Some(Target::MinRate(2_000_000.0)),
                ("5", _) | ("7", _) => Some(Target::MinRate(500_000.0)),
                _ => None,
            };
            rows.push(Row {
                id,
                name,
                kind: Kind::Throughput,
                runs,
                error,
                target,
            });
        }
    }
    if sel.consume && !fsync_always {
        let records = thousands(plan.consume_records as f64);
        let cases = [
            (
                "9",
                format!("consume catch-up, {records} × 100 B, poll()"),
                ConsumeApi::Poll,
            ),
            (
                "9b",
                format!("consume catch-up, {records} × 100 B, batch"),
                ConsumeApi::Batch,
            ),
        ];
        eprintln!("kbench: 9: consume catch-up, pre-filling {records} records");
        let topic = admin.topic("c9");
        let fill = produce_run(
            server.bootstrap,
            None,
            &topic,
            &small,
            "1",
            Amount::Records(plan.consume_records),
            plan,
        );
        match &fill {
            Ok(f) => eprintln!(
                "kbench:   pre-filled {} records at {} records/s",
                thousands(f.records as f64),
                thousands(f.rate())
            ),
            Err(e) => eprintln!("kbench:   pre-fill failed: {e}"),
        }
        std::thread::sleep(plan.settle);
        for (id, name, api) in cases {
            let mut runs = Vec::new();
            let mut error = fill.as_ref().err().map(|e| format!("pre-fill: {e}"));
            if error.is_none() {
                eprintln!("kbench: {id}: {name}");
                for i in 0..plan.repeats {
                    match consume_run(
                        server.bootstrap,
                        server.pid,
                        &topic,
                        &format!("{topic}-{id}-{i}"),
                        api,
                        None,
                        plan,
                    ) {
                        Ok(run) => {
                            eprintln!(
                                "kbench:   c{id} run {}: {} records/s, {:.1} MB/s",
                                i + 1,
                                thousands(run.rate()),
                                run.mbps()
                            );
                            runs.push(run);
                        }
                        Err(e) => {
                            eprintln!("kbench:   c{id} run {} failed: {e}", i + 1);
                            error = Some(e);
                            break;
                        }
                    }
                    std::thread::sleep(plan.settle);
                }
            }
            rows.push(Row {
                id,
                name,
                kind: Kind::Throughput,
                runs,
                error,
                target: Some(Target::MinRate(3_000_000.0)),
            });
        }
        admin.delete(&topic);
    }
    if sel.latency {
        let mut cases: Vec<(&'static str, u32)> = Vec::new();
        if fsync_always {
            cases.push(("10b", 5));
        } else {
            cases.push(("10a", 5));
            cases.push(("10c", 0));
        }
        for (id, linger) in cases {
            let name = format!(
                "{} × 100 B/s, acks=all, linger.ms={linger}{suffix}",
                thousands(plan.latency_rate as f64)
            );
            eprintln!("kbench: {id}: latency {name}");
            let (runs, error) = repeat(plan, &mut admin, &format!("l{id}"), |topic| {
                latency_run(server.bootstrap, server.pid, topic, &small, linger, plan)
            });
            let target = if id == "10a" {
                Some(Target::MaxP99(3.0))
            } else {
                None
            };
            rows.push(Row {
                id,
                name,
                kind: Kind::Latency,
                runs,
                error,
                target,
            });
        }
    }
    if sel.groups && !fsync_always {
        rows.extend(group_rows(server, plan, &mut admin));
    }
    if sel.txn && !fsync_always {
        rows.extend(txn_rows(server, plan, &mut admin));
    }
    if sel.view && !fsync_always {
        rows.extend(view_rows(server, plan, &mut admin));
    }
    if sel.metrics && !fsync_always {
        rows.extend(metrics_rows(server, plan, &mut admin));
    }
    if sel.delay && !fsync_always {
        rows.extend(delay_rows(server, plan, &mut admin));
    }
    rows
}

fn locate_kairos(arg: Option<PathBuf>) -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = arg {
        candidates.push(p);
    }
    if let Some(p) = option_env!("CARGO_BIN_EXE_kairos") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(d).join("release/kairos"));
    }
    candidates.push(PathBuf::from("target/release/kairos"));
    for c in candidates {
        if c.is_file() {
            return Ok(c);
        }
        tried.push(c.display().to_string());
    }
    Err(format!(
        "kairos binary not found (tried {}); build it with `cargo build --release` or set KAIROS_BIN",
        tried.join(", ")
    ))
}

fn parse_props(v: &[String]) -> Result<Vec<(String, String)>, String> {
    v.iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("property {p:?} is not KEY=VALUE"))
        })
        .collect()
}

fn host_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), Linux {kernel}; client and broker share them")
}

fn now_utc() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn main() {
    if std::env::args_os().len() <= 1 {
        // `cargo test --benches` / `--all-targets` runs bench targets without arguments;
        // `cargo bench` always passes `--bench`.
        eprintln!("kbench: not started by `cargo bench` (no arguments); skipping. Run `cargo bench --bench kbench [-- --quick]`.");
        return;
    }
    let args = Args::parse();
    match real_main(args) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("kbench: error: {e}");
            std::process::exit(1);
        }
    }
}

fn real_main(args: Args) -> Result<(), String> {
    let sel = Selection::parse(&args.only)?;
    let quick = args.quick;
    let plan = Plan {
        repeats: args.repeats.unwrap_or(if quick { 1 } else { 3 }).max(1),
        produce_api: args.produce_api,
        produce: match args.records {
            Some(n) => Amount::Records(n.max(1)),
            None => Amount::Secs(args.secs.unwrap_or(if quick { 0.4 } else { 5.0 })),
        },
        consume_records: args
            .consume_records
            .unwrap_or(if quick { 200_000 } else { 5_000_000 })
            .max(1),
        latency_rate: args.latency_rate.max(1),
        latency_secs: args.latency_secs.unwrap_or(if quick { 1.0 } else { 10.0 }),
        settle: Duration::from_millis(if quick { 50 } else { 500 }),
        commit_secs: if quick { 1.0 } else { 5.0 },
        idle_groups: if quick { 20 } else { 100 },
        delay_records: args
            .delay_records
            .unwrap_or(if quick { 100_000 } else { 1_000_000 })
            .max(1),
        delay_pending: args
            .delay_pending
            .unwrap_or(if quick { 200_000 } else { 10_000_000 })
            .max(1),
        delay_secs: args.latency_secs.unwrap_or(if quick { 2.0 } else { 10.0 }),
        producer_props: parse_props(&args.producer_props)?,
        consumer_props: parse_props(&args.consumer_props)?,
    };
    install_signal_handler();
    let tmp = match &args.tmp_dir {
        Some(d) => tempfile::Builder::new().prefix("kbench-").tempdir_in(d),
        None => tempfile::Builder::new().prefix("kbench-").tempdir(),
    }
    .map_err(|e| format!("temp dir: {e}"))?;

    let (_, rdk_version) = rdkafka::util::get_rdkafka_version();
    let mut header = vec![
        format!("{} — {}", now_utc(), host_description()),
        format!("client: librdkafka {rdk_version} (rdkafka crate), linger.ms=5, other settings default unless noted"),
        format!(
            "{} run(s) per scenario, median quoted; produce runs of {}; latency runs of {} s",
            plan.repeats,
            match plan.produce {
                Amount::Secs(s) => format!("{s} s"),
                Amount::Records(n) => format!("{} records", thousands(n as f64)),
            },
            plan.latency_secs
        ),
    ];
    if sel.groups && sel.default_group {
        header.push(format!(
            "consumer groups: G1/G1k with librdkafka consumers (classic / KIP-848 protocol, defaults); G2 and G3 with a raw \
             kafka-protocol client; G2 runs of {} s over {COMMIT_CONNS} connections × {COMMIT_PIPELINE} in flight; \
             G3 with {} groups",
            plan.commit_secs, plan.idle_groups
        ));
    }
    if sel.delay && sel.default_group {
        header.push(format!(
            "delay topics: D1/D2 runs of {} records, D3 runs of {} s at {} records/s, D4 with {} pending (once)",
            thousands(plan.delay_records as f64),
            plan.delay_secs,
            thousands(LATENESS_RATE),
            thousands(plan.delay_pending as f64)
        ));
    }
    if !plan.producer_props.is_empty() {
        header.push(format!("producer properties: {:?}", plan.producer_props));
    }
    if !plan.consumer_props.is_empty() {
        header.push(format!("consumer properties: {:?}", plan.consumer_props));
    }
    let mut report = Report {
        header,
        rows: Vec::new(),
        brokers: Vec::new(),
        notes: Vec::new(),
    };
    let settle_idle = if quick {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(1)
    };

    let kairos_bin = if args.bootstrap.is_none() && args.broker_cmd.is_none() {
        Some(locate_kairos(args.kairos_bin.clone())?)
    } else {
        None
    };
    let trouble = std::cell::RefCell::new(false);
    // One broker group: start (unless external), run, stop, note its memory.
    let group = |report: &mut Report, fsync_always: bool| -> Result<(), String> {
        let label = if fsync_always {
            "kairos, --fsync always"
        } else {
            "kairos, default fsync"
        };
        if let Some(addr) = &args.bootstrap {
            let server = Server {
                bootstrap: addr,
                pid: args.broker_pid,
                console: None,
            };
            let idle = args.broker_pid.and_then(|p| proc_status_kb(p, "VmRSS"));
            report
                .rows
                .extend(run_group(&server, false, &sel, &plan, args.auto_create));
            let peak = peak_of(&report.rows);
            report.brokers.push(BrokerInfo {
                label: format!("external server at {addr}"),
                command_line: format!(
                    "pid {}",
                    args.broker_pid
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "unknown".into())
                ),
                idle_rss_kb: idle,
                peak_rss_kb: peak,
                hwm_kb: args.broker_pid.and_then(|p| proc_status_kb(p, "VmHWM")),
                stop: None,
            });
            return Ok(());
        }
        let tag = if fsync_always {
            "fsync-always"
        } else {
            "default"
        };
        let broker = match (&args.broker_cmd, &kairos_bin) {
            (Some(cmd), _) => Broker::start_cmd(cmd, tmp.path(), tag)?,
            (None, Some(bin)) => Broker::start_kairos(bin, fsync_always, tmp.path(), tag)?,
            (None, None) => return Err("no server to start".into()),
        };
        std::thread::sleep(settle_idle);
        let idle = proc_status_kb(broker.pid, "VmRSS");
        let first = report.rows.len();
        let server = Server {
            bootstrap: &broker.addr,
            pid: Some(broker.pid),
            console: broker.console.as_deref(),
        };
        let rows = run_group(&server, fsync_always, &sel, &plan, args.auto_create);
        report.rows.extend(rows);
        let peak = peak_of(&report.rows[first..]);
        let command_line = broker.command_line.clone();
        let failed = report.rows[first..].iter().any(|r| r.error.is_some());
        let log_path = broker.log_path.clone();
        let st = broker.stop();
        let mut stop = match st.status {
            Some(s) if st.died => format!("**had exited on its own before the end: {s}**"),
            Some(s) if s.success() => format!("exited 0 {:.2} s after SIGTERM", st.secs),
            Some(s) => format!("**{s} {:.2} s after SIGTERM**", st.secs),
            None => format!(
                "**did not exit within {:.0} s of SIGTERM; killed**",
                st.secs
            ),
        };
        if failed || st.died || !st.status.is_some_and(|s| s.success()) {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "kbench: last lines of the broker's log:\n{}",
                lines[lines.len().saturating_sub(30)..].join("\n")
            );
            stop.push_str(" (its log tail is on stderr)");
            *trouble.borrow_mut() = true;
        }
        report.brokers.push(BrokerInfo {
            label: if args.broker_cmd.is_some() {
                "custom server".into()
            } else {
                label.into()
            },
            command_line,
            idle_rss_kb: idle,
            peak_rss_kb: peak,
            hwm_kb: st.hwm_kb,
            stop: Some(stop),
        });
        Ok(())
    };

    if sel.default_group {
        if let Err(e) = group(&mut report, false) {
            eprintln!("kbench: {e}");
            report.notes.push(format!(
                "**default-fsync broker: {}**",
                e.lines().next().unwrap_or_default()
            ));
            *trouble.borrow_mut() = true;
        }
    }
    // The fsync broker runs only produce and latency scenarios.
    if sel.fsync_group && (sel.produce || sel.latency) {
        if args.bootstrap.is_some() || args.broker_cmd.is_some() {
            report.notes.push(
                "rows 5-8 and 10b (--fsync always) skipped: the harness did not start kairos"
                    .into(),
            );
        } else if let Err(e) = group(&mut report, true) {
            eprintln!("kbench: {e}");
            report.notes.push(format!(
                "**--fsync always broker: {}**",
                e.lines().next().unwrap_or_default()
            ));
            *trouble.borrow_mut() = true;
        }
    }
    if sel.metrics && sel.default_group && (args.bootstrap.is_some() || args.broker_cmd.is_some()) {
        report.notes.push(
            "row M1 (/metrics) skipped: it reads the kairos console, whose address is known only when the harness starts kairos"
                .into(),
        );
    }
    if sel.delay && sel.default_group && (args.bootstrap.is_some() || args.broker_cmd.is_some()) {
        report.notes.push(
            "rows D1-D4 (delay topics) skipped: they read the kairos console, whose address is known only when the harness starts kairos"
                .into(),
        );
    }
    if sel.latency && sel.default_group {
        report.notes.push(
            "latency includes librdkafka's linger: with linger.ms=5 each batch waits up to 5 ms in the client \
             before it is sent, so p99 ≥ about 5 ms whatever the broker does; 10c (linger.ms=0) shows the rest"
                .into(),
        );
    }

    let md = report.render();
    println!("{md}");
    std::fs::write(&args.out, &md).map_err(|e| format!("{}: {e}", args.out.display()))?;
    eprintln!("kbench: wrote {}", args.out.display());
    drop(tmp);
    if trouble.into_inner() || report.rows.iter().any(|r| r.error.is_some()) {
        return Err("some scenarios failed or a broker misbehaved; see the report".into());
    }
    Ok(())
}

/// The largest RSS sampled during the produce scenarios of these rows.
fn peak_of(rows: &[Row]) -> Option<u64> {
    rows.iter()
        .filter(|r| r.name.starts_with("produce"))
        .flat_map(|r| r.runs.iter())
        .filter_map(|r| r.peak_rss_kb)
        .max()
}
