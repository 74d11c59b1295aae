//! Produce: validate and append each partition's batches, answer with offsets.
//! The hot path: batches are checked (header, CRC) and stored verbatim by the
//! log; records are never decoded here.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::FutureExt;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ApiKey, ProduceRequest};

use crate::config::FsyncPolicy;
use crate::protocol::dispatch::{encode_response, Ctx, Reply};
use crate::protocol::errors::{
    self, INVALID_RECORD, INVALID_REQUIRED_ACKS, INVALID_TOPIC, NONE, STORAGE_ERROR,
    UNKNOWN_TOPIC_OR_PARTITION, UNSUPPORTED_VERSION,
};
use crate::protocol::throttle;
use crate::quotas::QuotaKind;
use crate::topics::Partition;
use crate::util::now_ms;

pub async fn handle(ctx: Ctx, req: ProduceRequest) -> Reply {
    let acks = req.acks;
    let valid_acks = matches!(acks, -1..=1);
    let now = now_ms();
    let mut resp = ProduceResponse::default();
    // Partitions whose appends must be durable before an acks=all answer.
    let mut to_sync: Vec<(usize, usize, Arc<Partition>, i64)> = Vec::new();
    let probe = &ctx.broker.probe;
    for (ti, td) in req.topic_data.into_iter().enumerate() {
        let name = td.name.0.to_string();
        let topic = ctx.broker.topics.get(&name);
        let is_delay = crate::delay::target_of(&name).is_some();
        let mut tr = TopicProduceResponse::default()
            .with_name(td.name)
            .with_topic_id(td.topic_id);
        for (pi, pd) in td.partition_data.into_iter().enumerate() {
            let mut pr = PartitionProduceResponse::default().with_index(pd.index);
            let partition = topic.as_ref().and_then(|t| t.partition(pd.index));
            match (valid_acks, partition, pd.records) {
                (false, _, _) => pr.error_code = INVALID_REQUIRED_ACKS,
                // A view is read-only.
                (_, None, _) if ctx.broker.views.get(&name).is_some() => {
                    pr.error_code = INVALID_TOPIC
                }
                (_, None, _) => pr.error_code = UNKNOWN_TOPIC_OR_PARTITION,
                (_, Some(_), None) => pr.error_code = INVALID_RECORD,
                (_, Some(p), Some(records)) => {
                    match producer_check(&ctx, &name, pd.index, &records)
                        .map_err(Refused::Producer)
                        .and_then(|()| {
                            if is_delay {
                                delay_check(&ctx, &records, now)?;
                            }
                            p.log.append(&records, now).map_err(Refused::Log)
                        }) {
                        Ok(info) => {
                            if is_delay {
                                ctx.broker.delays.wake();
                            }
                            probe.produced(&p, records.len(), info.record_count);
                            pr.error_code = NONE;
                            pr.base_offset = info.base_offset;
                            pr.log_append_time_ms = info.log_append_time_ms;
                            if ctx.version >= 5 {
                                pr.log_start_offset = info.log_start_offset;
                            }
                            if acks == -1 && ctx.broker.config.fsync == FsyncPolicy::Always {
                                to_sync.push((ti, pi, p, info.last_offset + 1));
                            }
                        }
                        Err(Refused::Producer(code)) => {
                            probe.produce_failed();
                            pr.error_code = code;
                        }
                        Err(Refused::Record(index, message)) => {
                            probe.produce_failed();
                            pr.error_code = INVALID_RECORD;
                            if ctx.version >= 8 {
                                pr.record_errors = vec![BatchIndexAndErrorMessage::default()
                                    .with_batch_index(index)
                                    .with_batch_index_error_message(Some(super::str(&message)))];
                                pr.error_message = Some(super::str(&message));
                            }
                        }
                        Err(Refused::Log(e)) => {
                            tracing::debug!(topic = %name, partition = pd.index, "produce refused: {e}");
                            probe.produce_failed();
                            pr.error_code = errors::log_error(&e);
                            if ctx.version >= 8 {
                                pr.error_message = Some(super::str(&e.to_string()));
                            }
                        }
                    }
                }
            }
            tr.partition_responses.push(pr);
        }
        resp.responses.push(tr);
    }
    // Client quota: the request's size, after the append (acks=0 is muted too).
    resp.throttle_time_ms = throttle::record(&ctx, QuotaKind::Produce, ctx.request_bytes);
    if acks == 0 {
        return Reply::Nothing;
    }
    if to_sync.is_empty() {
        return Reply::Now(ctx.encode(&resp));
    }
    // Group commit: the fsync runs off the reactor; concurrent producers share it.
    Reply::Later(
        async move {
            let waits = to_sync.into_iter().map(|(ti, pi, p, end)| async move {
                let ok = tokio::task::spawn_blocking(move || p.log.sync_through(end))
                    .await
                    .map(|r| r.is_ok())
                    .unwrap_or(false);
                (ti, pi, ok)
            });
            for (ti, pi, ok) in futures::future::join_all(waits).await {
                if !ok {
                    let pr = &mut resp.responses[ti].partition_responses[pi];
                    pr.error_code = STORAGE_ERROR;
                    pr.base_offset = -1;
                }
            }
            Some(ctx.encode(&resp).into())
        }
        .boxed(),
    )
}

enum Refused {
    Producer(i16),
    /// A record of a delay topic with bad control headers: its index and why.
    Record(i32, String),
    Log(crate::log::LogError),
}

/// Records sent to a delay topic are decoded and their `kairos-*` headers checked
/// before anything is appended (the only produce path that looks inside batches).
fn delay_check(ctx: &Ctx, records: &Bytes, now: i64) -> Result<(), Refused> {
    crate::delay::validate_records(records, now, ctx.broker.delays.max_delay_ms())
        .map_err(|(i, m)| Refused::Record(i, m))
}

/// What the log cannot check about a batch's producer: the producer id was
/// issued by this broker (else UNKNOWN_PRODUCER_ID), and a transactional
/// batch belongs to an ongoing transaction that contains the partition
/// (Kafka's partition verification). Sequences and epochs are the log's.
fn producer_check(ctx: &Ctx, topic: &str, partition: i32, records: &[u8]) -> Result<(), i16> {
    let Some(h) = crate::log::BatchHeader::parse(records) else {
        return Ok(()); // the log refuses it with the right error
    };
    if h.producer_id < 0 {
        return Ok(());
    }
    let txns = &ctx.broker.txns;
    if !txns.is_issued(h.producer_id) {
        return Err(errors::UNKNOWN_PRODUCER_ID);
    }
    if h.is_transactional() {
        txns.verify_produce(h.producer_id, h.producer_epoch, topic, partition)
            .map_err(|e| errors::txn_error(&e))?;
    }
    Ok(())
}

/// Produce v0-v2 are advertised (old librdkafka needs v0 in range to
/// compress) but not served, as in Kafka 4: every partition gets
/// UNSUPPORTED_VERSION, in the v0-v2 response layout, which the crate does
/// not encode, so it is written here. An unparseable body gets an empty reply.
pub fn legacy_unsupported(correlation_id: i32, version: i16, frame: Bytes) -> Reply {
    match parse_legacy(frame) {
        Some((0, _)) => Reply::Nothing,
        Some((_, topics)) => {
            let mut b = BytesMut::new();
            b.put_i32(0);
            b.put_i32(correlation_id);
            b.put_i32(topics.len() as i32);
            for (name, parts) in topics {
                b.put_i16(name.len() as i16);
                b.put_slice(&name);
                b.put_i32(parts.len() as i32);
                for p in parts {
                    b.put_i32(p);
                    b.put_i16(UNSUPPORTED_VERSION);
                    b.put_i64(-1);
                    if version >= 2 {
                        b.put_i64(-1);
                    }
                }
            }
            if version >= 1 {
                b.put_i32(0);
            }
            let len = (b.len() - 4) as i32;
            b[0..4].copy_from_slice(&len.to_be_bytes());
            Reply::Now(b.freeze())
        }
        None => {
            tracing::debug!("malformed legacy produce v{version}");
            Reply::Now(encode_response(
                ApiKey::Produce,
                3,
                correlation_id,
                &ProduceResponse::default(),
            ))
        }
    }
}

type LegacyTopics = Vec<(Bytes, Vec<i32>)>;

fn parse_legacy(mut b: Bytes) -> Option<(i16, LegacyTopics)> {
    fn need(b: &Bytes, n: usize) -> Option<()> {
        (b.remaining() >= n).then_some(())
    }
    need(&b, 10)?;
    b.advance(8); // api key, version, correlation id
    let client_len = b.get_i16();
    if client_len > 0 {
        need(&b, client_len as usize)?;
        b.advance(client_len as usize);
    }
    need(&b, 10)?;
    let acks = b.get_i16();
    b.advance(4);
    let n_topics = b.get_i32();
    let mut topics = Vec::new();
    for _ in 0..n_topics.max(0).min(10_000) {
        need(&b, 2)?;
        let len = b.get_i16().max(0) as usize;
        need(&b, len + 4)?;
        let name = b.split_to(len);
        let n_parts = b.get_i32();
        let mut parts = Vec::new();
        for _ in 0..n_parts.max(0).min(100_000) {
            need(&b, 8)?;
            parts.push(b.get_i32());
            let size = b.get_i32().max(0) as usize;
            need(&b, size)?;
            b.advance(size);
        }
        topics.push((name, parts));
    }
    Some((acks, topics))
}
