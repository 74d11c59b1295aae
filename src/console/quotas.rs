//! `/api/v1/quotas`: client quotas (produce/fetch byte rates per client id).

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::broker::Broker;

pub fn routes() -> Router<Arc<Broker>> {
    Router::new().route("/api/v1/quotas", get(unimplemented).put(unimplemented))
}

async fn unimplemented() -> Response {
    (StatusCode::NOT_IMPLEMENTED, Json(json!({"error": "quotas: not yet"}))).into_response()
}
