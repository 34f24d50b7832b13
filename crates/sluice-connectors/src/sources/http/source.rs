//! The collector: `POST <path>` with NDJSON or a JSON array.
//!
//! Answers: 200 `{"accepted": N}` once the batch is durable in the queue;
//! 400 when the body cannot be read at all; 413 above the size limits;
//! 503 with `Retry-After` when the queue is full or unavailable. Malformed
//! lines inside a readable body are accepted and dead-lettered downstream.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use axum::{
    Router,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use bytes::Bytes;
use sluice_core::{NewBatch, now_ms, split_lines};
use sluice_queue::QueueError;

use super::{
    HttpSourceConfig,
    body::{BodyError, decode_body},
};
use crate::sources::{Source, SourceContext, SourceError};

pub struct HttpSource {
    config: HttpSourceConfig,
}

impl HttpSource {
    pub fn new(config: HttpSourceConfig) -> Self {
        HttpSource { config }
    }
}

struct Shared {
    ctx: SourceContext,
    max_decompressed: usize,
    last_request_ms: AtomicI64,
}

#[async_trait]
impl Source for HttpSource {
    async fn run(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
        let listener = tokio::net::TcpListener::bind(&self.config.address)
            .await
            .map_err(|e| SourceError::Bind {
                address: self.config.address.clone(),
                message: e.to_string(),
            })?;
        tracing::info!(source = %ctx.name, address = %self.config.address, path = %self.config.path, "http collector listening");
        let shared = Arc::new(Shared {
            ctx: ctx.clone(),
            max_decompressed: self.config.max_decompressed_bytes,
            last_request_ms: AtomicI64::new(now_ms()),
        });
        let app = Router::new()
            .route(&self.config.path, post(ingest))
            .layer(DefaultBodyLimit::max(self.config.max_body_bytes))
            .with_state(shared.clone());
        let until_idle = ctx.until_idle;
        let idle_ms = (self.config.idle_secs * 1000) as i64;
        let mut shutdown = ctx.shutdown.clone();
        let stop = async move {
            loop {
                tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        if until_idle && now_ms() - shared.last_request_ms.load(Ordering::Relaxed) > idle_ms {
                            return;
                        }
                    }
                }
            }
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
            .map_err(|e| SourceError::Bind {
                address: self.config.address.clone(),
                message: e.to_string(),
            })
    }
}

async fn ingest(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared.last_request_ms.store(now_ms(), Ordering::Relaxed);
    let ctx = &shared.ctx;
    if ctx.stopping() {
        return unavailable("shutting down");
    }
    let header_str = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let payload = match decode_body(
        header_str(header::CONTENT_ENCODING),
        header_str(header::CONTENT_TYPE),
        body,
        shared.max_decompressed,
    ) {
        Ok(p) => p,
        Err(e @ BodyError::TooLarge(_)) => return error(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string()),
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let events = split_lines(&payload).count() as u64;
    if events == 0 {
        return accepted(0);
    }
    let bytes = payload.len() as u64;
    let batch = NewBatch {
        key: format!("http/{}", uuid::Uuid::new_v4()),
        source: ctx.name.clone(),
        payload,
        maybe_committed: false,
    };
    match ctx.queue.enqueue(batch).await {
        Ok(()) => {
            ctx.telemetry.enqueued(events, bytes);
            accepted(events)
        }
        Err(e @ QueueError::Full { .. }) => {
            ctx.telemetry.throttled();
            unavailable(&e.to_string())
        }
        Err(e) => {
            tracing::error!(source = %ctx.name, error = %e, "enqueue failed");
            unavailable(&e.to_string())
        }
    }
}

fn accepted(n: u64) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"accepted\":{n}}}"),
    )
        .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn unavailable(message: &str) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}
