//! `/api/v1/quotas`: client quotas (produce/fetch byte rates per client id),
//! the same entities as Kafka's DescribeClientQuotas/AlterClientQuotas
//! (`crate::quotas`). `client_id: null` is the default entity.
//!
//! `PUT` replaces an entity's limits: a rate absent or null is removed, and an
//! entity left without limits disappears. The audit entry is written by the
//! console's guard, like every mutating call's.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::{ApiError, JsonBody};
use crate::broker::Broker;
use crate::quotas::{Limits, QuotaError, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE};

const CLIENT_ID: &str = "client_id";

pub fn routes() -> Router<Arc<Broker>> {
    Router::new().route("/api/v1/quotas", get(list).put(put))
}

/// `GET /api/v1/quotas`: `{"quotas": [{"client_id", "producer_byte_rate", "consumer_byte_rate"}]}`,
/// the default entity first.
async fn list(State(broker): State<Arc<Broker>>) -> Response {
    Json(json!({ "quotas": broker.quotas.list() })).into_response()
}

/// `PUT /api/v1/quotas` `{"client_id": "x" | null, "producer_byte_rate": n | null,
/// "consumer_byte_rate": n | null}` -> 200 with the entity as it now is.
async fn put(
    State(broker): State<Arc<Broker>>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let Value::Object(fields) = body else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    let (client_id, limits) = parse(fields)?;
    let saved = broker
        .quotas
        .set(client_id.as_deref(), limits)
        .map_err(|e| match e {
            QuotaError::Store(m) => ApiError::internal(m),
            e => ApiError::bad_request(e.to_string()),
        })?;
    Ok(Json(saved).into_response())
}

fn parse(mut fields: Map<String, Value>) -> Result<(Option<String>, Limits), ApiError> {
    if let Some(k) = fields
        .keys()
        .find(|k| ![CLIENT_ID, PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE].contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "unknown field {k:?}: expected {CLIENT_ID}, {PRODUCER_BYTE_RATE}, {CONSUMER_BYTE_RATE}"
        )));
    }
    let client_id = match fields.remove(CLIENT_ID) {
        None => {
            return Err(ApiError::bad_request(
                "client_id is required (null for the default entity)",
            ))
        }
        Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(ApiError::bad_request("client_id must be a string or null")),
    };
    let mut rate = |key: &str| match fields.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(ApiError::bad_request(format!(
            "{key} must be a number (bytes per second) or null"
        ))),
    };
    let limits = Limits {
        producer_byte_rate: rate(PRODUCER_BYTE_RATE)?,
        consumer_byte_rate: rate(CONSUMER_BYTE_RATE)?,
    };
    Ok((client_id, limits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_body_names_an_entity_and_its_rates() {
        let (id, l) = parse(fields(json!({"client_id": "a", "producer_byte_rate": 100}))).unwrap();
        assert_eq!(id.as_deref(), Some("a"));
        assert_eq!(l.producer_byte_rate, Some(100.0));
        assert_eq!(l.consumer_byte_rate, None);
        let (id, l) = parse(fields(
            json!({"client_id": null, "consumer_byte_rate": null}),
        ))
        .unwrap();
        assert_eq!(id, None);
        assert!(l.is_empty());
    }

    #[test]
    fn bad_bodies_are_refused() {
        for bad in [
            json!({"producer_byte_rate": 1}),
            json!({"client_id": 5}),
            json!({"client_id": "a", "producer_byte_rate": "fast"}),
            json!({"client_id": "a", "producer_byte_rate": [1]}),
            json!({"client_id": "a", "request_percentage": 1}),
        ] {
            let e = parse(fields(bad.clone())).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
