//! The collector: `POST <path>` with NDJSON or a JSON array, or with
//! `protocol = "segment"` Segment's tracking API (`segment.rs`), or with
//! `protocol = "snowplow"` Snowplow's tracker protocol (`snowplow.rs`).
//!
//! Answers: 200 `{"accepted": N}` once the batch is durable in the queue
//! (Segment's and Snowplow's own answers for their trackers);
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
    extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Request, State},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::Bytes;
use sluice_core::{NewBatch, count_lines, now_ms};
use sluice_queue::QueueError;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::{
    HttpSourceConfig,
    auth::{Authenticator, Denied},
    body::{BodyError, decode_body},
    config::{CorsConfig, Protocol},
    rate::RateLimiter,
    segment, snowplow,
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
            protocol = ?config.protocol,
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
            Protocol::Snowplow => Router::new()
                .route(
                    snowplow::POST_PATH,
                    post(|State(shared): State<Arc<Shared>>, request: Request| async move {
                        receive(shared, request, Intake::SnowplowPost).await
                    }),
                )
                .route(
                    snowplow::PIXEL_PATH,
                    get(|State(shared): State<Arc<Shared>>, request: Request| async move {
                        receive(shared, request, Intake::SnowplowPixel).await
                    }),
                ),
        }
        .layer(DefaultBodyLimit::max(config.max_body_bytes));
        match (&config.cors, config.protocol) {
            (Some(cors), protocol) => app = app.layer(cors_layer(cors, signature_header.as_deref(), protocol)),
            (None, Protocol::Snowplow) => app = app.layer(snowplow_cors()),
            (None, _) => {}
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

fn cors_layer(cors: &CorsConfig, signature_header: Option<&str>, protocol: Protocol) -> CorsLayer {
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
    let mut methods = vec![Method::POST];
    if protocol == Protocol::Snowplow {
        headers.push(HeaderName::from_static(snowplow::ANONYMOUS_HEADER));
        methods.push(Method::GET);
    }
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods(methods)
        .allow_headers(headers)
        .allow_credentials(cors.allow_credentials)
        .max_age(Duration::from_secs(cors.max_age_secs))
}

/// Snowplow's collector default: any page may send, with its cookies (the
/// JavaScript tracker sends credentials), so the origin is mirrored.
fn snowplow_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            header::AUTHORIZATION,
            HeaderName::from_static(snowplow::ANONYMOUS_HEADER),
        ])
        .allow_credentials(true)
        .max_age(Duration::from_secs(3600))
}

/// What a request carries and how it is answered.
#[derive(Debug, Clone, Copy)]
enum Intake {
    /// NDJSON or a JSON array of events; answered `{"accepted": N}`.
    Ndjson,
    /// A Segment API call to `/v1/<kind>`; answered `{"success": true}`.
    Segment(&'static str),
    /// A Snowplow tracker's POST of events; answered `ok`.
    SnowplowPost,
    /// A Snowplow pixel (`GET /i?...`); answered with a 1x1 GIF.
    SnowplowPixel,
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
            Intake::Segment(_) => auth.check_write_key(authorization),
            _ => auth.check_token(authorization),
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
    let snowplow = matches!(intake, Intake::SnowplowPost | Intake::SnowplowPixel).then(|| snowplow_request(&request));
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
    // A Segment or Snowplow body is one JSON document: only decompressed here.
    let content_type = match intake {
        Intake::Ndjson => header_str(header::CONTENT_TYPE),
        _ => None,
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
        Intake::SnowplowPost | Intake::SnowplowPixel => {
            let (collected, query) = snowplow.clone().expect("read above for Snowplow requests");
            let lines = match intake {
                Intake::SnowplowPost => snowplow::post_lines(&payload, &collected),
                _ => Ok(snowplow::pixel_line(&query, &collected).unwrap_or_default()),
            };
            match lines {
                Ok(lines) => Bytes::from(lines),
                Err(why) => return error(StatusCode::BAD_REQUEST, &why),
            }
        }
    };
    let network_userid = snowplow.and_then(|(collected, _)| collected.network_userid);
    let events = count_lines(&payload) as u64;
    if events == 0 {
        return with_cookie(stored(0, intake), network_userid.as_deref());
    }
    let bytes = payload.len() as u64;
    let batch = NewBatch {
        key: format!("http/{}", uuid::Uuid::new_v4()),
        source: ctx.name.clone(),
        payload,
        maybe_committed: false,
        in_file: None,
    };
    match ctx.queue.enqueue(batch).await {
        Ok(()) => {
            ctx.telemetry.enqueued(events, bytes);
            with_cookie(stored(events, intake), network_userid.as_deref())
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
    let json = |body: String| (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    match intake {
        Intake::Ndjson => json(format!("{{\"accepted\":{n}}}")),
        Intake::Segment(_) => json("{\"success\":true}".to_string()),
        Intake::SnowplowPost => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "ok").into_response(),
        Intake::SnowplowPixel => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "image/gif")], snowplow::PIXEL).into_response()
        }
    }
}

/// What the collector records of a Snowplow request (its time, the
/// client's address and agent, the network user id from the `sp` cookie or
/// a new one), and the query string; none of the address and id when the
/// tracker sends `SP-Anonymous`.
fn snowplow_request(request: &Request) -> (snowplow::Collected, String) {
    let headers = request.headers();
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let anonymous = header_str(snowplow::ANONYMOUS_HEADER).is_some();
    let peer = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let collected = snowplow::Collected {
        collector_tstamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        user_ipaddress: (!anonymous)
            .then(|| snowplow::client_ip(header_str("x-forwarded-for"), peer))
            .flatten(),
        useragent: header_str(header::USER_AGENT.as_str()).map(str::to_string),
        network_userid: (!anonymous).then(|| {
            header_str(header::COOKIE.as_str())
                .and_then(snowplow::cookie_user_id)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
        }),
    };
    (collected, request.uri().query().unwrap_or_default().to_string())
}

/// Sets (or renews for a year) the `sp` cookie with the network user id.
fn with_cookie(mut response: Response, network_userid: Option<&str>) -> Response {
    if let Some(id) = network_userid
        && let Ok(value) = HeaderValue::from_str(&format!(
            "{}={id}; Path=/; Max-Age=31536000; HttpOnly; SameSite=None; Secure",
            snowplow::COOKIE
        ))
    {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn unauthorized(ctx: &SourceContext, denied: Denied, intake: Intake) -> Response {
    ctx.telemetry.refused("unauthorized");
    let mut r = error(StatusCode::UNAUTHORIZED, &denied.to_string());
    let scheme = match intake {
        Intake::Segment(_) => "Basic",
        _ => "Bearer",
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
