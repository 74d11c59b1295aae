//! DescribeClientQuotas (48) and AlterClientQuotas (49): client-id byte-rate
//! quotas (`crate::quotas`). A bad filter fails the whole describe (top-level
//! error and message, no entries); an alteration answers per entity.

use bytes::Bytes;
use kafka_protocol::messages::alter_client_quotas_response::{
    AlterClientQuotasResponse, EntityData as AlterEntity, EntryData as AlterEntry,
};
use kafka_protocol::messages::describe_client_quotas_response::{
    DescribeClientQuotasResponse, EntityData, EntryData, ValueData,
};
use kafka_protocol::messages::{AlterClientQuotasRequest, DescribeClientQuotasRequest};
use kafka_protocol::protocol::StrBytes;

use super::str;
use crate::protocol::dispatch::Ctx;
use crate::protocol::errors::{quota_error, NONE};
use crate::quotas::{Alteration, Component, CLIENT_ID};

fn opt(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

pub fn describe(ctx: &Ctx, req: DescribeClientQuotasRequest) -> Bytes {
    let components: Vec<Component> = req
        .components
        .iter()
        .map(|c| Component {
            entity_type: c.entity_type.to_string(),
            match_type: c.match_type,
            name: opt(&c._match),
        })
        .collect();
    let resp = match ctx.broker.quotas.describe(&components, req.strict) {
        Ok(found) => {
            let entries = found
                .into_iter()
                .map(|q| {
                    EntryData::default()
                        .with_entity(vec![EntityData::default()
                            .with_entity_type(str(CLIENT_ID))
                            .with_entity_name(q.client_id.as_deref().map(str))])
                        .with_values(
                            q.limits
                                .values()
                                .into_iter()
                                .map(|(k, v)| ValueData::default().with_key(str(k)).with_value(v))
                                .collect(),
                        )
                })
                .collect();
            DescribeClientQuotasResponse::default()
                .with_error_code(NONE)
                .with_error_message(None)
                .with_entries(Some(entries))
        }
        Err(e) => DescribeClientQuotasResponse::default()
            .with_error_code(quota_error(&e))
            .with_error_message(Some(str(&e.to_string())))
            .with_entries(None),
    };
    ctx.encode(&resp)
}

pub fn alter(ctx: &Ctx, req: AlterClientQuotasRequest) -> Bytes {
    let alterations = req
        .entries
        .iter()
        .map(|e| Alteration {
            entity: e
                .entity
                .iter()
                .map(|d| (d.entity_type.to_string(), opt(&d.entity_name)))
                .collect(),
            ops: e
                .ops
                .iter()
                .map(|o| (o.key.to_string(), (!o.remove).then_some(o.value)))
                .collect(),
        })
        .collect();
    let entries = ctx
        .broker
        .quotas
        .alter(alterations, req.validate_only)
        .into_iter()
        .map(|r| {
            let entity = r
                .entity
                .iter()
                .map(|(t, n)| {
                    AlterEntity::default()
                        .with_entity_type(str(t))
                        .with_entity_name(n.as_deref().map(str))
                })
                .collect();
            let (code, message) = match &r.result {
                Ok(()) => (NONE, None),
                Err(e) => (quota_error(e), Some(str(&e.to_string()))),
            };
            AlterEntry::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_entity(entity)
        })
        .collect();
    ctx.encode(&AlterClientQuotasResponse::default().with_entries(entries))
}
