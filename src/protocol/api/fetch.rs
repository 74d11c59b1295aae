//! Fetch: stored batches straight from the log, with long-poll.
//!
//! A fetch that has less than `min_bytes` waits until one of its partitions
//! is appended to (a `Notify` per partition log) or `max_wait_ms` passes; it
//! never sleeps in a loop. The read itself returns whole stored batches; a
//! fetch offset inside a batch returns that batch (the client skips ahead).
//! read_committed stops at the last stable offset and lists the aborted
//! transactions in range, so that the client drops their records.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchResponse, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, ProducerId};
use tokio::time::Instant;

use crate::filter::views::View;
use crate::log::LogError;
use crate::protocol::dispatch::{Ctx, Reply};
use crate::protocol::errors::{
    self, check_leader_epoch, NONE, UNKNOWN_TOPIC_ID, UNKNOWN_TOPIC_OR_PARTITION,
};
use crate::protocol::frame::Frame;
use crate::protocol::throttle;
use crate::quotas::QuotaKind;
use crate::topics::Partition;

/// Upper bound on a long-poll, whatever the client asks.
const MAX_WAIT_MS: i32 = 60_000;

struct Wanted {
    partition: Option<Arc<Partition>>,
    /// Reading a view: its source partition is `partition`.
    view: Option<Arc<View>>,
    index: i32,
    offset: i64,
    max_bytes: usize,
    error: i16,
}

pub fn handle(ctx: Ctx, req: FetchRequest) -> Reply {
    // Resolve topics once; the long-poll re-reads the same partitions.
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let by_id = ctx.version >= 13;
        let (topic, view) = if by_id {
            ctx.broker.read_topic_by_id(&t.topic_id)
        } else {
            ctx.broker.read_topic(t.topic.as_str())
        }
        .unzip();
        let view = view.flatten();
        let missing = if by_id {
            UNKNOWN_TOPIC_ID
        } else {
            UNKNOWN_TOPIC_OR_PARTITION
        };
        let wanted: Vec<Wanted> = t
            .partitions
            .iter()
            .map(|p| {
                let partition = topic.as_ref().and_then(|tp| tp.partition(p.partition));
                let error = match &partition {
                    None => missing,
                    Some(_) => check_leader_epoch(p.current_leader_epoch),
                };
                Wanted {
                    partition,
                    view: view.clone(),
                    index: p.partition,
                    offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                    error,
                }
            })
            .collect();
        let resp_topic = FetchableTopicResponse::default()
            .with_topic(t.topic)
            .with_topic_id(t.topic_id);
        topics.push((resp_topic, wanted));
    }
    let committed = req.isolation_level == 1;
    // A client with a fetch quota gets at most what one quota window allows (Kafka).
    let quota_max = ctx.broker.quotas.max_fetch_bytes(ctx.client_id.as_deref());
    let max_bytes = (req.max_bytes.max(0) as usize).min(quota_max.unwrap_or(usize::MAX));
    let min_bytes = (req.min_bytes.max(0) as usize).min(max_bytes);
    let wait = Duration::from_millis(req.max_wait_ms.clamp(0, MAX_WAIT_MS) as u64);
    Reply::Later(
        async move {
            let deadline = Instant::now() + wait;
            loop {
                // Register for wake-ups before reading, so no append is missed in between.
                let mut wakers: Vec<_> = topics
                    .iter()
                    .flat_map(|(_, ws)| ws.iter())
                    .filter_map(|w| w.partition.as_ref())
                    .map(|p| Box::pin(p.log.appended().notified()))
                    .collect();
                for w in wakers.iter_mut() {
                    w.as_mut().enable();
                }
                let (resp, bytes, errored) = read_all(&topics, max_bytes, ctx.version, committed);
                let done = bytes >= min_bytes
                    || errored
                    || wakers.is_empty()
                    || Instant::now() >= deadline;
                if done {
                    return Some(within_quota(&ctx, &topics, &resp));
                }
                let mut stopping = ctx.broker.stopping.clone();
                tokio::select! {
                    _ = futures::future::select_all(wakers) => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                    // Shutdown: answer with what there is rather than hold the drain up.
                    _ = stopping.wait_for(|s| *s) => {
                        let (resp, _, _) = read_all(&topics, max_bytes, ctx.version, committed);
                        return Some(ctx.encode_frame(&resp, &records_of(&resp)));
                    }
                }
            }
        }
        .boxed(),
    )
}

/// The encoded response, counted against the client's fetch quota. Over the
/// quota, as in Kafka, the client gets an empty response with the throttle
/// time instead (its bytes are taken back) and the connection is muted.
fn within_quota(
    ctx: &Ctx,
    topics: &[(FetchableTopicResponse, Vec<Wanted>)],
    resp: &FetchResponse,
) -> Frame {
    let encoded = ctx.encode_frame(resp, &records_of(resp));
    let throttle_ms = throttle::record(ctx, QuotaKind::Fetch, encoded.len());
    if throttle_ms == 0 {
        count_fetched(ctx, topics, resp);
        return encoded;
    }
    throttle::unrecord(ctx, QuotaKind::Fetch, encoded.len());
    ctx.encode(
        &FetchResponse::default()
            .with_throttle_time_ms(throttle_ms)
            .with_error_code(NONE)
            .with_session_id(0),
    )
    .into()
}

/// The records of every partition of `resp`: stored bytes, written as they are.
fn records_of(resp: &FetchResponse) -> Vec<Bytes> {
    resp.responses
        .iter()
        .flat_map(|t| &t.partitions)
        .filter_map(|p| p.records.clone())
        .collect()
}

/// Counts each partition's batches in a response that is sent (`read_all` builds
/// `resp` in the order of `topics`). A view's count under its source topic.
fn count_fetched(
    ctx: &Ctx,
    topics: &[(FetchableTopicResponse, Vec<Wanted>)],
    resp: &FetchResponse,
) {
    for ((_, wanted), sent) in topics.iter().zip(&resp.responses) {
        for (w, pd) in wanted.iter().zip(&sent.partitions) {
            if let (Some(p), Some(records)) = (&w.partition, &pd.records) {
                if !records.is_empty() {
                    ctx.broker.probe.fetched(p, records);
                }
            }
        }
    }
}

fn read_all(
    topics: &[(FetchableTopicResponse, Vec<Wanted>)],
    max_bytes: usize,
    version: i16,
    committed: bool,
) -> (FetchResponse, usize, bool) {
    let mut total = 0usize;
    let mut errored = false;
    let mut resp = FetchResponse::default()
        .with_error_code(NONE)
        .with_session_id(0);
    for (rt, wanted) in topics {
        let mut out = rt.clone();
        for w in wanted {
            let mut pd = PartitionData::default()
                .with_partition_index(w.index)
                .with_error_code(w.error);
            let Some(p) = w.partition.as_ref().filter(|_| w.error == NONE) else {
                errored = true;
                pd.records = Some(Bytes::new());
                out.partitions.push(pd);
                continue;
            };
            let log = &p.log;
            let hw = log.high_watermark();
            let lso = log.last_stable_offset();
            pd.high_watermark = hw;
            pd.last_stable_offset = lso;
            let upper = if committed { lso } else { hw };
            pd.aborted_transactions = committed.then(|| {
                log.aborted_transactions(w.offset, upper)
                    .into_iter()
                    .map(|(producer_id, first_offset)| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(producer_id))
                            .with_first_offset(first_offset)
                    })
                    .collect()
            });
            if version >= 5 {
                pd.log_start_offset = log.log_start_offset();
            }
            let budget = max_bytes.saturating_sub(total).min(w.max_bytes);
            // KIP-74: the first non-empty partition may exceed max_bytes by its first batch;
            // after that, an exhausted budget means no more data in this response.
            let records = if budget == 0 && total > 0 {
                Bytes::new()
            } else {
                match log.read(w.offset, budget.max(1), upper) {
                    Ok(r) if total > 0 && r.bytes.len() > budget => Bytes::new(),
                    Ok(r) => r.bytes,
                    Err(e) => {
                        if !matches!(e, LogError::OffsetOutOfRange { .. }) {
                            tracing::warn!(topic = %p.topic, partition = p.index, "fetch: {e}");
                        }
                        pd.error_code = errors::log_error(&e);
                        errored = true;
                        Bytes::new()
                    }
                }
            };
            // A view's batches: the source's, filtered and transformed (larger only when a
            // script lengthens values). A large read is filtered off the reactor.
            let records = match &w.view {
                Some(v) if !records.is_empty() => {
                    let more = |from| log.read(from, budget.max(1), upper).ok().map(|r| r.bytes);
                    v.filter_for_fetch(records, p.index, upper, budget.max(1), more)
                }
                _ => records,
            };
            total += records.len();
            pd.records = Some(records);
            out.partitions.push(pd);
        }
        resp.responses.push(out);
    }
    (resp, total, errored)
}
