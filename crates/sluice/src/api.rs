//! The operating API: `GET /metrics` (Prometheus text), `/health` (the
//! process is up) and `/ready` (the pipeline is taking input).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use anyhow::{Context, Result};
use axum::{Router, extract::State, http::StatusCode, routing::get};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

pub async fn bind(address: std::net::SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("api.address: cannot listen on {address}"))
}

#[derive(Clone)]
struct ApiState {
    metrics: PrometheusHandle,
    ready: Arc<AtomicBool>,
}

pub async fn serve(listener: TcpListener, metrics: PrometheusHandle, ready: Arc<AtomicBool>) {
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(readiness))
        .with_state(ApiState { metrics, ready });
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "api server failed");
    }
}

async fn render_metrics(State(s): State<ApiState>) -> String {
    s.metrics.render()
}

async fn readiness(State(s): State<ApiState>) -> (StatusCode, &'static str) {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
