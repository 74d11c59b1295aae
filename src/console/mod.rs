//! The HTTP console (axum): `/healthz`, `/metrics` (Prometheus text), and the
//! read-only group views `/api/v1/groups[/{id}]` (with lag), delays
//! `/api/v1/delays[/{target}[/{partition}/{offset}]]`, the view-script dry run
//! `/api/v1/views/test`; the rest of the
//! REST API and the web page come with their issue. Also owns the metrics
//! recorder and the broker's [`Probe`].

mod delays;
mod page;
mod probe;
mod quotas;
mod views;

use std::sync::{Arc, OnceLock};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use probe::{group_lags, Lag, Probe};

use crate::broker::Broker;

/// One process-wide recorder (tests start several brokers in one process).
fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then ours stays empty.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

pub async fn serve(listener: TcpListener, broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let _ = prometheus();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/groups", get(list_groups))
        .route("/api/v1/groups/{id}", get(describe_group))
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
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({"error": "not found"})),
            )
        })
        .with_state(broker);
    let shutdown = async move {
        let _ = stop.changed().await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!("console: {e}");
    }
}

/// `GET /api/v1/groups`: every group with its state, type and member count.
async fn list_groups(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    let groups: Vec<serde_json::Value> = broker
        .groups
        .list_groups(&[], &[])
        .into_iter()
        .map(|g| {
            serde_json::json!({
                "group": g.group_id,
                "type": g.group_type,
                "state": g.state,
                "protocol_type": g.protocol_type,
                "members": g.members,
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "groups": groups }))
}

/// `GET /api/v1/groups/{id}`: state, members, committed offsets and lag per partition.
async fn describe_group(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
) -> axum::response::Response {
    let offsets: Vec<Lag> = group_lags(&broker)
        .into_iter()
        .filter(|l| l.group == id)
        .collect();
    let lag = offsets.iter().map(|l| l.lag).sum::<i64>();
    if let Ok(c) = broker.groups.describe_consumer_group(&id) {
        let members: Vec<serde_json::Value> = c
            .members
            .iter()
            .map(|m| {
                let assigned: Vec<serde_json::Value> = m
                    .assignment
                    .iter()
                    .map(|(_, t, ps)| serde_json::json!({"topic": t, "partitions": ps}))
                    .collect();
                serde_json::json!({
                    "member_id": m.member_id,
                    "group_instance_id": m.instance_id,
                    "client_id": m.client_id,
                    "client_host": m.client_host,
                    "member_epoch": m.member_epoch,
                    "assignment": assigned,
                })
            })
            .collect();
        return axum::Json(serde_json::json!({
            "group": id,
            "type": "consumer",
            "state": c.state,
            "group_epoch": c.group_epoch,
            "assignor": c.assignor,
            "members": members,
            "offsets": offsets,
            "lag": lag,
        }))
        .into_response();
    }
    let d = broker.groups.describe_group(&id);
    if d.state == crate::groups::GroupState::Dead && offsets.is_empty() {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": format!("group {id} not found")})),
        )
            .into_response();
    }
    let members: Vec<serde_json::Value> = d
        .members
        .iter()
        .map(|m| {
            serde_json::json!({
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "client_id": m.client_id,
                "client_host": m.client_host,
            })
        })
        .collect();
    axum::Json(serde_json::json!({
        "group": id,
        "type": "classic",
        "state": d.state.as_str(),
        "protocol_type": d.protocol_type,
        "protocol": d.protocol_name,
        "members": members,
        "offsets": offsets,
        "lag": lag,
    }))
    .into_response()
}

async fn metrics_text(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    broker.probe.sample_gauges(&broker);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        prometheus().render(),
    )
}
