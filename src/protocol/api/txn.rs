//! The transactional APIs of a producer (AddPartitionsToTxn v0-3,
//! AddOffsetsToTxn, EndTxn, TxnOffsetCommit) and of the admin client
//! (DescribeTransactions, ListTransactions, DescribeProducers): decoding and
//! encoding only; the transaction coordinator decides.

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTxn;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;

use super::{str, topic_name};
use crate::protocol::dispatch::Ctx;
use crate::protocol::errors::{self, UNKNOWN_TOPIC_OR_PARTITION};
use crate::txn::{TxnOffset, TxnState};

pub fn add_partitions(ctx: &Ctx, req: AddPartitionsToTxnRequest) -> Bytes {
    let wanted: Vec<(String, i32)> = req
        .v3_and_below_topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.to_string(), *p)))
        .collect();
    let results = ctx.broker.txns.add_partitions(
        req.v3_and_below_transactional_id.as_str(),
        req.v3_and_below_producer_id.0,
        req.v3_and_below_producer_epoch,
        &wanted,
        &*ctx.broker,
    );
    let fenced_known = ctx.version >= 2;
    let code_of = |i: usize| match &results {
        Ok(per) => per[i]
            .as_ref()
            .err()
            .map_or(errors::NONE, |e| errors::txn_error_for(e, fenced_known)),
        Err(e) => errors::txn_error_for(e, fenced_known),
    };
    let mut i = 0;
    let mut resp = AddPartitionsToTxnResponse::default();
    for t in &req.v3_and_below_topics {
        let mut rt = AddPartitionsToTxnTopicResult::default().with_name(t.name.clone());
        for p in &t.partitions {
            rt.results_by_partition.push(
                AddPartitionsToTxnPartitionResult::default()
                    .with_partition_index(*p)
                    .with_partition_error_code(code_of(i)),
            );
            i += 1;
        }
        resp.results_by_topic_v3_and_below.push(rt);
    }
    ctx.encode(&resp)
}

pub fn add_offsets(ctx: &Ctx, req: AddOffsetsToTxnRequest) -> Bytes {
    let code = match ctx.broker.txns.add_offsets(
        req.transactional_id.as_str(),
        req.producer_id.0,
        req.producer_epoch,
        req.group_id.as_str(),
    ) {
        Ok(()) => errors::NONE,
        Err(e) => errors::txn_error_for(&e, ctx.version >= 2),
    };
    ctx.encode(&AddOffsetsToTxnResponse::default().with_error_code(code))
}

pub fn end_txn(ctx: &Ctx, req: EndTxnRequest) -> Bytes {
    let code = match ctx.broker.txns.end_txn(
        req.transactional_id.as_str(),
        req.producer_id.0,
        req.producer_epoch,
        req.committed,
        &*ctx.broker,
    ) {
        Ok(()) => errors::NONE,
        Err(e) => errors::txn_error_for(&e, ctx.version >= 2),
    };
    ctx.encode(&EndTxnResponse::default().with_error_code(code))
}

/// The group checks the member (as OffsetCommit does), then the transaction
/// keeps the offsets until it ends. Partitions of unknown topics are refused.
pub fn txn_offset_commit(ctx: &Ctx, req: TxnOffsetCommitRequest) -> Bytes {
    let broker = &ctx.broker;
    let member_check = broker.groups.validate_txn_commit(
        req.group_id.as_str(),
        req.generation_id,
        req.member_id.as_str(),
        req.group_instance_id.as_ref().map(|s| s.as_str()),
    );
    let mut offsets = Vec::new();
    let mut resp = TxnOffsetCommitResponse::default();
    for t in &req.topics {
        let topic = broker.topics.get(t.name.as_str());
        let mut rt = TxnOffsetCommitResponseTopic::default().with_name(t.name.clone());
        for p in &t.partitions {
            let known = topic
                .as_ref()
                .is_some_and(|t| t.partition(p.partition_index).is_some());
            if known {
                offsets.push(TxnOffset {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                });
            }
            rt.partitions.push(
                TxnOffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(if known {
                        errors::NONE
                    } else {
                        UNKNOWN_TOPIC_OR_PARTITION
                    }),
            );
        }
        resp.topics.push(rt);
    }
    let code = match member_check {
        Err(e) => errors::group_error(&e),
        Ok(()) if offsets.is_empty() => errors::NONE,
        Ok(()) => match broker.txns.txn_offset_commit(
            req.transactional_id.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            req.group_id.as_str(),
            offsets,
        ) {
            Ok(()) => errors::NONE,
            Err(e) => errors::txn_error(&e),
        },
    };
    if code != errors::NONE {
        for rp in resp.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
            if rp.error_code == errors::NONE {
                rp.error_code = code;
            }
        }
    }
    ctx.encode(&resp)
}

/// Partitions grouped by topic, in order.
fn by_topic(partitions: &std::collections::BTreeSet<(String, i32)>) -> Vec<TopicData> {
    let mut out: Vec<TopicData> = Vec::new();
    for (t, p) in partitions {
        match out.last_mut() {
            Some(last) if last.topic.as_str() == t => last.partitions.push(*p),
            _ => out.push(
                TopicData::default()
                    .with_topic(topic_name(t))
                    .with_partitions(vec![*p]),
            ),
        }
    }
    out
}

pub fn describe_transactions(ctx: &Ctx, req: DescribeTransactionsRequest) -> Bytes {
    let mut resp = DescribeTransactionsResponse::default();
    for id in req.transactional_ids {
        let mut ts = TransactionState::default().with_transactional_id(id.clone());
        match ctx.broker.txns.describe(id.as_str()) {
            Some(m) => {
                ts.transaction_state = str(m.state.as_str());
                ts.transaction_timeout_ms = m.timeout_ms;
                ts.transaction_start_time_ms = m.start_ms;
                ts.producer_id = ProducerId(m.producer_id);
                ts.producer_epoch = m.epoch;
                ts.topics = by_topic(&m.partitions);
            }
            None => {
                ts.error_code = kafka_protocol::ResponseError::TransactionalIdNotFound.code();
            }
        }
        resp.transaction_states.push(ts);
    }
    ctx.encode(&resp)
}

pub fn list_transactions(ctx: &Ctx, req: ListTransactionsRequest) -> Bytes {
    const STATES: [TxnState; 6] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
    ];
    let mut resp = ListTransactionsResponse::default();
    let states: Vec<String> = req.state_filters.iter().map(|s| s.to_string()).collect();
    resp.unknown_state_filters = req
        .state_filters
        .iter()
        .filter(|s| !STATES.iter().any(|k| k.as_str() == s.as_str()))
        .cloned()
        .collect();
    let pids: Vec<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    let now = crate::util::now_ms();
    resp.transaction_states = ctx
        .broker
        .txns
        .list(&states, &pids)
        .into_iter()
        // v1: only transactions running longer than duration_filter ms (-1: all).
        .filter(|t| {
            req.duration_filter < 0
                || (t.meta.state == TxnState::Ongoing
                    && now - t.meta.start_ms >= req.duration_filter)
        })
        .map(|t| {
            ListedTxn::default()
                .with_transactional_id(TransactionalId(str(&t.transactional_id)))
                .with_producer_id(ProducerId(t.meta.producer_id))
                .with_transaction_state(str(t.meta.state.as_str()))
        })
        .collect();
    ctx.encode(&resp)
}

pub fn describe_producers(ctx: &Ctx, req: DescribeProducersRequest) -> Bytes {
    let mut resp = DescribeProducersResponse::default();
    for t in req.topics {
        let topic = ctx.broker.topics.get(t.name.as_str());
        let mut rt = TopicResponse::default().with_name(t.name.clone());
        for p in t.partition_indexes {
            let mut rp = PartitionResponse::default().with_partition_index(p);
            match topic.as_ref().and_then(|t| t.partition(p)) {
                Some(part) => {
                    rp.active_producers = part
                        .log
                        .producers()
                        .into_iter()
                        .map(|s| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(s.producer_id))
                                .with_producer_epoch(s.epoch as i32)
                                .with_last_sequence(s.last_sequence)
                                .with_last_timestamp(s.last_timestamp)
                                .with_coordinator_epoch(s.coordinator_epoch)
                                .with_current_txn_start_offset(s.current_txn_start_offset)
                        })
                        .collect();
                }
                None => rp.error_code = UNKNOWN_TOPIC_OR_PARTITION,
            }
            rt.partitions.push(rp);
        }
        resp.topics.push(rt);
    }
    ctx.encode(&resp)
}
