//! `/api/v1/delays`: pending delays per target, one target's pending records, and
//! cancel (DESIGN.md "Console"). The wheel itself is `crate::delay`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::broker::Broker;
use crate::delay::wheel::DelayId;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

/// `GET /api/v1/delays`: every target with pending count, next due time and counters.
pub async fn list(State(broker): State<Arc<Broker>>) -> Response {
    let b = broker.clone();
    match tokio::task::spawn_blocking(move || b.delays.overview()).await {
        Ok(targets) => Json(json!({ "targets": targets })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/v1/delays/{target}?limit=`: the target's pending records by id.
pub async fn target(
    State(broker): State<Arc<Broker>>,
    Path(target): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let limit = match q.get("limit").map(|v| v.parse::<usize>()) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("limit must be an integer in 1..={MAX_LIMIT}"),
            )
        }
    };
    let Some(stats) = broker.delays.stats(&target) else {
        if broker.topics.get(&target).is_some() {
            return Json(json!({"target": target, "pending": 0, "records": []})).into_response();
        }
        return error(
            StatusCode::NOT_FOUND,
            format!("no delays for target {target}"),
        );
    };
    let b = broker.clone();
    let t = target.clone();
    match tokio::task::spawn_blocking(move || b.delays.pending(&t, limit)).await {
        Ok(records) => Json(json!({
            "target": target,
            "pending": stats.pending,
            "records": records,
        }))
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `DELETE /api/v1/delays/{target}/{partition}/{offset}`: cancel a pending delay.
pub async fn cancel(
    State(broker): State<Arc<Broker>>,
    Path((target, partition, offset)): Path<(String, String, String)>,
) -> Response {
    let (Ok(partition), Ok(offset)) = (partition.parse::<i32>(), offset.parse::<i64>()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "partition and offset must be non-negative integers",
        );
    };
    if partition < 0 || offset < 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "partition and offset must be non-negative integers",
        );
    }
    let id = DelayId {
        target: target.clone(),
        partition,
        offset,
    };
    match broker.delays.cancel(id).await {
        Ok(true) => Json(json!({"cancelled": format!("{partition}:{offset}"), "target": target}))
            .into_response(),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!("no pending delay {partition}:{offset} for target {target}"),
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}
