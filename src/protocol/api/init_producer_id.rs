//! InitProducerId: for an idempotent producer always a fresh producer id;
//! for a transactional id, the transaction coordinator's answer (the next
//! epoch, fencing the previous producer of that id; KIP-360 retries).

use bytes::Bytes;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::protocol::dispatch::Ctx;
use crate::protocol::errors::{self, NONE, STORAGE_ERROR};

pub fn handle(ctx: &Ctx, req: InitProducerIdRequest) -> Bytes {
    let mut resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let broker = &ctx.broker;
    let expected = match (req.producer_id.0, req.producer_epoch) {
        (-1, -1) => None,
        (pid, epoch) if pid >= 0 && epoch >= 0 => Some((pid, epoch)),
        _ => {
            // An id without an epoch or an epoch without an id (as Kafka).
            resp.error_code = errors::INVALID_REQUEST;
            return ctx.encode(&resp);
        }
    };
    let result = match &req.transactional_id {
        Some(id) => broker
            .txns
            .init_producer_id(id.as_str(), req.transaction_timeout_ms, expected, &**broker)
            .map_err(|e| errors::txn_error_for(&e, ctx.version >= 4)),
        // An idempotent producer always gets a new id (Kafka ignores the
        // given one: taking it over would let a client use anyone's id).
        None => broker
            .txns
            .allocate_producer_id()
            .map(|pid| (pid, 0))
            .map_err(|e| {
                tracing::error!("allocating a producer id: {e}");
                STORAGE_ERROR
            }),
    };
    match result {
        Ok((pid, epoch)) => {
            resp.producer_id = ProducerId(pid);
            resp.producer_epoch = epoch;
            resp.error_code = NONE;
        }
        Err(code) => resp.error_code = code,
    }
    ctx.encode(&resp)
}
