//! The web page at `/` (static files compiled into the binary).

use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

use crate::broker::Broker;

pub fn routes() -> Router<Arc<Broker>> {
    Router::new().route("/", get(index))
}

async fn index() -> impl IntoResponse {
    Html("<!doctype html><title>Kairos</title><p>Kairos console: coming soon</p>")
}
