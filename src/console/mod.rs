//! The HTTP console (axum): the REST API under `/api/v1/` (DESIGN.md "Console";
//! the OpenAPI document at `/api/v1/openapi.json` lists every path), the web page at
//! `/`, Prometheus text at `/metrics`, liveness at `/healthz`.
//!
//! This file owns what every call shares: the router, JSON errors (`ApiError`,
//! `JsonBody`), the body limit, the bearer token on mutating calls and the audit
//! log. One file per resource holds its handlers. The metrics recorder and the
//! broker's [`Probe`] are `probe.rs`'s.

mod delays;
mod groups;
mod page;
mod probe;
mod quotas;
mod topics;
mod views;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use probe::{group_lags, Lag, OpenConnection, PartitionProbe, Probe, RequestTimer};

use crate::broker::Broker;

pub async fn serve(listener: TcpListener, broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/broker", get(overview))
        .route("/api/v1/audit", get(audit_log))
        .route("/api/v1/topics", get(topics::list).post(topics::create))
        .route(
            "/api/v1/topics/{name}",
            get(topics::detail).delete(topics::delete),
        )
        .route(
            "/api/v1/topics/{name}/configs",
            axum::routing::put(topics::set_configs),
        )
        .route(
            "/api/v1/topics/{name}/partitions",
            post(topics::add_partitions),
        )
        .route("/api/v1/topics/{name}/records", get(topics::records))
        .route("/api/v1/groups", get(groups::list))
        .route(
            "/api/v1/groups/{id}",
            get(groups::describe).delete(groups::delete),
        )
        .route("/api/v1/groups/{id}/reset", post(groups::reset))
        .route("/api/v1/delays", get(delays::list))
        .route("/api/v1/delays/{target}", get(delays::target))
        .route(
            "/api/v1/delays/{target}/{partition}/{offset}",
            axum::routing::delete(delays::cancel),
        )
        .route("/api/v1/views", get(views::list).post(views::create))
        .route("/api/v1/views/test", axum::routing::post(views::test))
        .route(
            "/api/v1/views/{name}",
            get(views::get).put(views::update).delete(views::delete),
        )
        .merge(page::routes())
        .merge(quotas::routes())
        .fallback(|| async { ApiError::not_found("no such path") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .layer(axum::middleware::from_fn_with_state(broker.clone(), guard))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(broker);
    let shutdown = async move {
        let _ = stop.changed().await;
    };
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!("console: {e}");
    }
}

async fn metrics_text(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        broker.probe.render(&broker),
    )
}

/// Largest request body the console reads (a view script, a topic's configs).
const MAX_BODY_BYTES: usize = 1 << 20;

/// A console error: a status and `{"error": message}` plus optional fields.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

impl ApiError {
    pub fn new(status: StatusCode, msg: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: json!({ "error": msg.into() }),
        }
    }
    pub fn bad_request(msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, msg)
    }
    pub fn not_found(msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, msg)
    }
    pub fn conflict(msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, msg)
    }
    pub fn internal(msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, msg)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    /// Bodies that are too large (413) or not JSON (415) keep axum's status; the
    /// rest (syntax, wrong fields) are 400.
    fn from(e: JsonRejection) -> ApiError {
        let status = match e.status() {
            s @ (StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE) => s,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.body_text())
    }
}

/// `Json<T>` whose rejections are JSON [`ApiError`]s.
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Ok(JsonBody(Json::<T>::from_request(req, state).await?.0))
    }
}

/// Calls that change nothing although they are POSTs.
fn is_mutating(method: &Method, path: &str) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) && path != "/api/v1/views/test"
}

/// Audit entries kept for `GET /api/v1/audit` (they also go to the log).
const AUDIT_KEPT: usize = 200;
/// Request bytes quoted in an audit entry.
const AUDIT_BODY_BYTES: usize = 512;

fn audit_ring() -> &'static Mutex<VecDeque<serde_json::Value>> {
    static RING: OnceLock<Mutex<VecDeque<serde_json::Value>>> = OnceLock::new();
    RING.get_or_init(|| Mutex::new(VecDeque::with_capacity(AUDIT_KEPT)))
}

/// Every mutating call passes here: the bearer token is checked when one is set,
/// then the call runs, then it is audited (target `kairos::audit`) with who, what
/// and the outcome, whether it succeeded or not.
async fn guard(
    State(broker): State<Arc<Broker>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if !is_mutating(&method, &path) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {MAX_BODY_BYTES} bytes"),
            )
            .into_response()
        }
    };
    let authorized = match &broker.config.console_token {
        None => true,
        Some(token) => parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| constant_time_eq(given.trim().as_bytes(), token.as_bytes())),
    };
    let quoted = String::from_utf8_lossy(&body[..body.len().min(AUDIT_BODY_BYTES)]).into_owned();
    let response = if authorized {
        next.run(Request::from_parts(parts, axum::body::Body::from(body)))
            .await
    } else {
        let mut r = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this call needs the console token: Authorization: Bearer <token>",
        )
        .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        r
    };
    let status = response.status().as_u16();
    tracing::info!(target: "kairos::audit", %peer, %method, %path, status, body = %quoted, "console call");
    let mut ring = audit_ring().lock();
    if ring.len() == AUDIT_KEPT {
        ring.pop_front();
    }
    ring.push_back(json!({
        "at_ms": crate::util::now_ms(),
        "peer": peer.to_string(),
        "method": method.as_str(),
        "path": path,
        "status": status,
        "body": quoted,
    }));
    response
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /api/v1/audit`: the latest mutating calls, newest last.
async fn audit_log() -> Response {
    let entries: Vec<serde_json::Value> = audit_ring().lock().iter().cloned().collect();
    Json(json!({ "entries": entries })).into_response()
}

/// `GET /api/v1/openapi.json`
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

/// `GET /api/v1/broker`: the overview: identity, uptime, sizes and the traffic
/// counters the page turns into rates.
async fn overview(State(broker): State<Arc<Broker>>) -> Response {
    let topics = broker.topics.list();
    let (mut partitions, mut size) = (0usize, 0u64);
    for t in &topics {
        for p in t.partitions() {
            partitions += 1;
            size += p.log.size_bytes();
        }
    }
    let (host, port) = broker.config.advertised();
    let counters = broker.probe.counters();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "cluster_id": broker.cluster_id,
        "node_id": crate::config::NODE_ID,
        "listen": broker.config.listen.to_string(),
        "advertised": format!("{host}:{port}"),
        "console": broker.config.console.to_string(),
        "data_dir": broker.config.data_dir.display().to_string(),
        "started_at_ms": broker.started_at_ms,
        "uptime_ms": crate::util::now_ms() - broker.started_at_ms,
        "topics": topics.len(),
        "partitions": partitions,
        "log_size_bytes": size,
        "produce_bytes_total": counters.produce_bytes,
        "produce_records_total": counters.produce_records,
        "fetch_bytes_total": counters.fetch_bytes,
        "connections": counters.connections,
        "groups": broker.groups.list_groups(&[], &[]).len(),
        "views": broker.views.list().len(),
        "delays_pending": broker.delays.pending_total(),
        "auth": broker.config.console_token.is_some(),
    }))
    .into_response()
}
