//! The operating API: `GET /metrics` (Prometheus text), `/health` (the
//! process is up), `/ready` (the pipeline is taking input) and
//! `/tail/STAGE?limit=N` (what a stage emits from now on, as NDJSON, for
//! `sluice tail`; without `limit` it streams until the client goes). Started by
//! the commands that run a pipeline, beside the engine; served over TLS
//! when `[api] tls` names a certificate, with the collector's limits
//! against slow clients (`sluice_connectors::http_server`).

use std::{collections::BTreeSet, convert::Infallible, sync::Arc};

use anyhow::{Context, Result, anyhow};
use axum::{
    Router,
    body::Body,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::{BufMut, Bytes, BytesMut};
use metrics_exporter_prometheus::PrometheusHandle;
use sluice_connectors::http_server::{self, Limits, ReloadingTls};
use sluice_core::readiness::Readiness;
use sluice_runtime::tap::Tap;
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::RecvError;

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
        let c = &pipeline.config;
        let stages = c
            .sources
            .keys()
            .chain(c.transforms.keys())
            .chain(c.sinks.keys())
            .cloned()
            .collect();
        let state = ApiState {
            metrics: sluice_runtime::telemetry::prometheus(),
            ready: ready.clone(),
            stages: Arc::new(stages),
        };
        tokio::spawn(serve(listener, tls, state));
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
    /// The pipeline's sources, transforms and sinks, by name.
    stages: Arc<BTreeSet<String>>,
}

async fn serve(listener: TcpListener, tls: Option<Arc<ReloadingTls>>, state: ApiState) {
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(readiness))
        .route("/tail/{stage}", get(tail))
        .with_state(state);
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

#[derive(serde::Deserialize)]
struct TailQuery {
    limit: Option<usize>,
}

/// The events `stage` emits from now on, one JSON line each: `limit` of
/// them, or until the client goes.
async fn tail(State(s): State<ApiState>, Path(stage): Path<String>, Query(q): Query<TailQuery>) -> Response {
    if !s.stages.contains(&stage) {
        let known: Vec<&str> = s.stages.iter().map(String::as_str).collect();
        let why = format!(
            "no stage {stage:?} in this pipeline; its stages: {}\n",
            known.join(", ")
        );
        return (StatusCode::NOT_FOUND, why).into_response();
    }
    let tap = Tap::listen(&stage);
    let lines = futures::stream::unfold((tap, 0usize), move |(mut tap, sent)| async move {
        if q.limit.is_some_and(|limit| sent >= limit) {
            return None;
        }
        loop {
            match tap.events.recv().await {
                Ok(payload) => {
                    let mut line = BytesMut::with_capacity(payload.len() + 1);
                    line.put_slice(&payload);
                    line.put_u8(b'\n');
                    return Some((Ok::<Bytes, Infallible>(line.freeze()), (tap, sent + 1)));
                }
                // A sample: what the listener fell behind on is skipped.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}
