//! The operating API: `GET /metrics` (Prometheus text), `/health` (the
//! process is up) and `/ready` (the pipeline is taking input). Started by
//! the commands that run a pipeline, beside the engine; served over TLS
//! when `[api] tls` names a certificate, with the collector's limits
//! against slow clients (`sluice_connectors::http_server`).

use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use axum::{Router, extract::State, http::StatusCode, routing::get};
use metrics_exporter_prometheus::PrometheusHandle;
use sluice_connectors::http_server::{self, Limits, ReloadingTls};
use sluice_core::readiness::Readiness;
use tokio::net::TcpListener;

use crate::config::Pipeline;

/// Serves the pipeline's `[api]`, if it has one, in the background; what
/// it returns is `/ready`, which the engine keeps.
pub async fn start(pipeline: &Pipeline) -> Result<Arc<Readiness>> {
    let ready = Arc::new(Readiness::default());
    if let Some(api) = &pipeline.config.api {
        let tls = match &api.tls {
            Some(files) => Some(Arc::new(ReloadingTls::load(files).map_err(|e| anyhow!("api.{e}"))?)),
            None => None,
        };
        let listener = bind(api.address).await?;
        tokio::spawn(serve(
            listener,
            tls,
            sluice_runtime::telemetry::prometheus(),
            ready.clone(),
        ));
    }
    Ok(ready)
}

async fn bind(address: std::net::SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("api.address: cannot listen on {address}"))
}

#[derive(Clone)]
struct ApiState {
    metrics: PrometheusHandle,
    ready: Arc<Readiness>,
}

async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ReloadingTls>>,
    metrics: PrometheusHandle,
    ready: Arc<Readiness>,
) {
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(readiness))
        .with_state(ApiState { metrics, ready });
    http_server::serve(listener, app, tls, Limits::default(), std::future::pending()).await;
}

async fn render_metrics(State(s): State<ApiState>) -> String {
    s.metrics.render()
}

async fn readiness(State(s): State<ApiState>) -> (StatusCode, String) {
    match s.ready.check() {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}
