//! The collector: `POST <path>` with NDJSON or a JSON array, or with
//! `protocol = "segment"` Segment's tracking API (`segment.rs`).
//!
//! Answers: 200 `{"accepted": N}` once the batch is durable in the queue;
//! 400 when the body cannot be read at all; 401 without a valid token or
//! signature; 408 when the body is not sent within `body_timeout_secs`;
//! 413 above the size limits; 429 with `Retry-After` above the rate limit;
//! 503 with `Retry-After` when the queue is full or unavailable. Nothing is
//! stored for any answer but 200. Malformed lines inside a readable body
//! are accepted and dead-lettered downstream.
//!
//! Order of checks: token (before the body is read), rate limit, body,
//! signature (over the body as sent), decoding, enqueue.

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
    extract::{DefaultBodyLimit, FromRequest, Request, State},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use bytes::Bytes;
use sluice_core::{NewBatch, now_ms, split_lines};
use sluice_queue::QueueError;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::{
    HttpSourceConfig,
    auth::{Authenticator, Denied},
    body::{BodyError, decode_body},
    config::{CorsConfig, Protocol},
    rate::RateLimiter,
    segment,
};
use crate::{
    http_server::{self, Limits, ReloadingTls},
    sources::{Source, SourceContext, SourceError},
};

pub struct HttpSource {
    config: HttpSourceConfig,
    auth: Option<Authenticator>,
    tls: Option<Arc<ReloadingTls>>,
}

impl HttpSource {
    /// Reads the tokens, secret and certificate the config names; an error
    /// says which key and what is missing.
    pub fn new(config: HttpSourceConfig) -> Result<HttpSource, String> {
        let auth = config.auth.as_ref().map(Authenticator::build).transpose()?;
        let tls = config
            .tls
            .as_ref()
            .map(|files| ReloadingTls::load(files).map(Arc::new))
            .transpose()?;
        Ok(HttpSource { config, auth, tls })
    }
}

struct Shared {
    ctx: SourceContext,
    auth: Option<Authenticator>,
    rate: Option<RateLimiter>,
    max_decompressed: usize,
    body_timeout: Duration,
    last_request_ms: AtomicI64,
}

#[async_trait]
impl Source for HttpSource {
    async fn run(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
        let HttpSource { config, auth, tls } = *self;
        let listener = tokio::net::TcpListener::bind(&config.address)
            .await
            .map_err(|e| SourceError::Bind {
                address: config.address.clone(),
                message: e.to_string(),
            })?;
        tracing::info!(
            source = %ctx.name,
            address = %config.address,
            path = %config.path,
            tls = tls.is_some(),
            auth = auth.is_some(),
            "http collector listening"
        );
        ctx.telemetry.collector_listening();
        let signature_header = config
            .auth
            .as_ref()
            .and_then(|a| a.hmac.as_ref())
            .map(|h| h.header.clone());
        let shared = Arc::new(Shared {
            ctx: ctx.clone(),
            auth,
            rate: config.rate_limit.map(RateLimiter::new),
            max_decompressed: config.max_decompressed_bytes,
            body_timeout: Duration::from_secs(config.body_timeout_secs),
            last_request_ms: AtomicI64::new(now_ms()),
        });
        let mut app = match config.protocol {
            Protocol::Ndjson => Router::new().route(&config.path, post(ingest)),
            Protocol::Segment => ["batch"]
                .into_iter()
                .chain(segment::TYPES)
                .fold(Router::new(), |app, kind| {
                    let handler = move |State(shared): State<Arc<Shared>>, request: Request| async move {
                        receive(shared, request, Intake::Segment(kind)).await
                    };
                    app.route(&format!("/v1/{kind}"), post(handler))
                }),
        }
        .layer(DefaultBodyLimit::max(config.max_body_bytes));
        if let Some(cors) = &config.cors {
            app = app.layer(cors_layer(cors, signature_header.as_deref()));
        }
        let app = app.with_state(shared.clone());
        let until_idle = ctx.until_idle;
        let idle_ms = (config.idle_secs * 1000) as i64;
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
        let limits = Limits {
            headers: Duration::from_secs(config.header_timeout_secs),
            max_connections: config.max_connections,
            ..Limits::default()
        };
        http_server::serve(listener, app, tls, limits, stop).await;
        Ok(())
    }
}

fn cors_layer(cors: &CorsConfig, signature_header: Option<&str>) -> CorsLayer {
    let origins = if cors.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            cors.allowed_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    let mut headers = vec![header::CONTENT_TYPE, header::CONTENT_ENCODING, header::AUTHORIZATION];
    headers.extend(signature_header.and_then(|h| HeaderName::try_from(h).ok()));
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::POST])
        .allow_headers(headers)
        .allow_credentials(cors.allow_credentials)
        .max_age(Duration::from_secs(cors.max_age_secs))
}

/// What a request carries and how it is answered.
#[derive(Debug, Clone, Copy)]
enum Intake {
    /// NDJSON or a JSON array of events; answered `{"accepted": N}`.
    Ndjson,
    /// A Segment API call to `/v1/<kind>`; answered `{"success": true}`.
    Segment(&'static str),
}

async fn ingest(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    receive(shared, request, Intake::Ndjson).await
}

async fn receive(shared: Arc<Shared>, mut request: Request, intake: Intake) -> Response {
    shared.last_request_ms.store(now_ms(), Ordering::Relaxed);
    let ctx = &shared.ctx;
    if ctx.stopping() {
        return unavailable("shutting down");
    }
    if let Some(auth) = &shared.auth {
        let authorization = request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
        let checked = match intake {
            Intake::Ndjson => auth.check_token(authorization),
            Intake::Segment(_) => auth.check_write_key(authorization),
        };
        if let Err(denied) = checked {
            return unauthorized(ctx, denied, intake);
        }
    }
    if let Some(rate) = &shared.rate
        && let Err(retry_after) = rate.take()
    {
        ctx.telemetry.refused("rate_limited");
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "request rate limit reached");
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        return r;
    }
    // Moved out, not copied: reading the body needs only the extensions.
    let headers = std::mem::take(request.headers_mut());
    let body = match tokio::time::timeout(shared.body_timeout, Bytes::from_request(request, &())).await {
        Ok(Ok(body)) => body,
        Ok(Err(rejection)) => return rejection.into_response(),
        Err(_) => {
            ctx.telemetry.refused("body_timeout");
            let message = format!("body not received within {} s", shared.body_timeout.as_secs());
            return error(StatusCode::REQUEST_TIMEOUT, &message);
        }
    };
    if let Some(auth) = &shared.auth
        && let Err(denied) = auth.check_signature(&headers, &body)
    {
        return unauthorized(ctx, denied, intake);
    }
    let header_str = |name| headers.get(name).and_then(|v| v.to_str().ok());
    // A Segment body is one JSON document: only decompressed here.
    let content_type = match intake {
        Intake::Ndjson => header_str(header::CONTENT_TYPE),
        Intake::Segment(_) => None,
    };
    let payload = match decode_body(
        header_str(header::CONTENT_ENCODING),
        content_type,
        body,
        shared.max_decompressed,
    ) {
        Ok(p) => p,
        Err(e @ BodyError::TooLarge(_)) => return error(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string()),
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let payload = match intake {
        Intake::Ndjson => payload,
        Intake::Segment(kind) => match segment::lines(kind, &payload, chrono::Utc::now()) {
            Ok(lines) => Bytes::from(lines),
            Err(why) => return error(StatusCode::BAD_REQUEST, &why),
        },
    };
    let events = split_lines(&payload).count() as u64;
    if events == 0 {
        return stored(0, intake);
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
            stored(events, intake)
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

/// The answer to a request whose `n` events are durable: the number for
/// NDJSON clients, Segment's own answer for its libraries.
fn stored(n: u64, intake: Intake) -> Response {
    let body = match intake {
        Intake::Ndjson => format!("{{\"accepted\":{n}}}"),
        Intake::Segment(_) => "{\"success\":true}".to_string(),
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn unauthorized(ctx: &SourceContext, denied: Denied, intake: Intake) -> Response {
    ctx.telemetry.refused("unauthorized");
    let mut r = error(StatusCode::UNAUTHORIZED, &denied.to_string());
    let scheme = match intake {
        Intake::Ndjson => "Bearer",
        Intake::Segment(_) => "Basic",
    };
    if denied == Denied::Token {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(scheme));
    }
    r
}

fn unavailable(message: &str) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}
