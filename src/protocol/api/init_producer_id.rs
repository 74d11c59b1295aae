//! InitProducerId: for an idempotent producer a fresh producer id, or, when
//! the client asks to bump its own (KIP-360), the same id with the next
//! epoch; for a transactional id, the transaction coordinator's answer
//! (fencing the previous producer of that id).

use bytes::Bytes;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::protocol::dispatch::Ctx;
use crate::protocol::errors::{self, NONE, STORAGE_ERROR};

pub fn handle(ctx: &Ctx, req: InitProducerIdRequest) -> Bytes {
    let mut resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let broker = &ctx.broker;
    let expected = (req.producer_id.0 >= 0 && req.producer_epoch >= 0)
        .then_some((req.producer_id.0, req.producer_epoch));
    if let Some(id) = &req.transactional_id {
        match broker.txns.init_producer_id(
            id.as_str(),
            req.transaction_timeout_ms,
            expected,
            &**broker,
        ) {
            Ok((pid, epoch)) => {
                resp.producer_id = ProducerId(pid);
                resp.producer_epoch = epoch;
            }
            Err(e) => resp.error_code = errors::txn_error(&e),
        }
        return ctx.encode(&resp);
    }
    match expected {
        Some((pid, epoch)) if epoch < i16::MAX - 1 => {
            resp.producer_id = ProducerId(pid);
            resp.producer_epoch = epoch + 1;
            resp.error_code = NONE;
        }
        _ => match broker.txns.allocate_producer_id() {
            Ok(id) => {
                resp.producer_id = ProducerId(id);
                resp.producer_epoch = 0;
                resp.error_code = NONE;
            }
            Err(e) => {
                tracing::error!("allocating a producer id: {e}");
                resp.error_code = STORAGE_ERROR;
            }
        },
    }
    ctx.encode(&resp)
}
