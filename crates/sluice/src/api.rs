//! The operating API: `GET /metrics` (Prometheus text), `/health` (the
//! process is up), `/ready` (the pipeline is taking input) and
//! `/tail/STAGE?limit=N` (what a stage emits from now on, as NDJSON, for
//! `sluice tail`; without `limit` it streams until the client goes); with
//! `[api] ui`, the status page at `/` (`api/status.html`, shipped in the
//! binary) and what it reads besides `/metrics`: `/api/pipeline` (the
//! graph) and `/api/dead-letters` (counts and a sample per reason). Started by
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
    response::{Html, IntoResponse, Response},
    routing::get,
};
use bytes::{BufMut, Bytes, BytesMut};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};
use sluice_connectors::http_server::{self, Limits, ReloadingTls};
use sluice_core::readiness::Readiness;
use sluice_queue::{DeadLetterFilter, DeadLetterStore};
use sluice_runtime::tap::Tap;
use tokio::{
    net::TcpListener,
    sync::{OnceCell, broadcast::error::RecvError},
};

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
            pipeline: Arc::new(pipeline.clone()),
            dead_letters: Arc::default(),
        };
        let ui = api.serves_ui();
        tokio::spawn(serve(listener, tls, state, ui));
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
    pipeline: Arc<Pipeline>,
    /// The dead-letter store, opened beside the engine on first use.
    dead_letters: Arc<OnceCell<Arc<dyn DeadLetterStore>>>,
}

/// The status page: plain HTML, CSS and JavaScript, no outside resources.
const STATUS_PAGE: &str = include_str!("api/status.html");

async fn serve(listener: TcpListener, tls: Option<Arc<ReloadingTls>>, state: ApiState, ui: bool) {
    let mut app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(readiness))
        .route("/tail/{stage}", get(tail));
    if ui {
        app = app
            .route("/", get(|| async { Html(STATUS_PAGE) }))
            .route("/api/pipeline", get(graph))
            .route("/api/dead-letters", get(dead_letters));
    }
    let app = app.with_state(state);
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

/// The pipeline's graph: sources, and transforms and sinks with their inputs.
async fn graph(State(s): State<ApiState>) -> Response {
    let c = &s.pipeline.config;
    let stage = |(name, inputs): (&String, &Vec<String>)| json!({ "name": name, "inputs": inputs });
    json_answer(&json!({
        "pipeline": s.pipeline.name,
        "sources": c.sources.keys().collect::<Vec<_>>(),
        "transforms": c.transforms.iter().map(|(n, t)| stage((n, &t.inputs))).collect::<Vec<_>>(),
        "sinks": c.sinks.iter().map(|(n, t)| stage((n, &t.inputs))).collect::<Vec<_>>(),
    }))
}

fn json_answer(body: &Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Dead letters held by reason, with the newest one's time and one
/// letter of each (its detail and bytes, as text).
async fn dead_letters(State(s): State<ApiState>) -> Response {
    let store = s
        .dead_letters
        .get_or_try_init(|| sluice_runtime::engine::open_dead_letters(&s.pipeline))
        .await;
    let answer = async {
        let store = store.map_err(|e| format!("{e:#}"))?;
        let counts = store.counts().await.map_err(|e| e.to_string())?;
        let mut reasons = Vec::new();
        for (reason, count) in &counts.by_reason {
            let filter = DeadLetterFilter {
                reason: Some(reason.clone()),
            };
            let sample = store.list(filter, 1).await.map_err(|e| e.to_string())?;
            reasons.push(json!({
                "reason": reason,
                "count": count,
                "newest_ms": counts.newest_ms.get(reason),
                "sample": sample.first().map(|l| json!({
                    "component": l.component,
                    "detail": l.detail,
                    "bytes": String::from_utf8_lossy(&l.bytes),
                })),
            }));
        }
        Ok::<Value, String>(json!({ "total": counts.total, "by_reason": reasons }))
    };
    match answer.await {
        Ok(body) => json_answer(&body),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("dead letters: {why}\n")).into_response(),
    }
}
