//! The HTTP console (axum): `/healthz`, `/metrics` (Prometheus text) now; the
//! REST API and the web page come with their issue. Also owns the metrics
//! recorder and the broker's [`Probe`].

mod probe;

use std::sync::{Arc, OnceLock};

use axum::extract::State;
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
