//! InitProducerId for idempotent producers: a fresh producer id, or, when the
//! client asks to bump its own (KIP-360), the same id with the next epoch.
//! Transactional ids are served by the transaction coordinator (a later issue).

use bytes::Bytes;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::protocol::dispatch::Ctx;
use crate::protocol::errors::{NONE, STORAGE_ERROR, UNSUPPORTED_VERSION};

pub fn handle(ctx: &Ctx, req: InitProducerIdRequest) -> Bytes {
    let mut resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        resp.error_code = UNSUPPORTED_VERSION;
        return ctx.encode(&resp);
    }
    let broker = &ctx.broker;
    let bump =
        req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1;
    if bump {
        resp.producer_id = req.producer_id;
        resp.producer_epoch = req.producer_epoch + 1;
        resp.error_code = NONE;
    } else {
        match broker.producer_ids.allocate(&broker.store) {
            Ok(id) => {
                resp.producer_id = ProducerId(id);
                resp.producer_epoch = 0;
                resp.error_code = NONE;
            }
            Err(e) => {
                tracing::error!("allocating a producer id: {e}");
                resp.error_code = STORAGE_ERROR;
            }
        }
    }
    ctx.encode(&resp)
}
