//! Configuration of the HTTP collector.

use serde::Deserialize;

use super::{AuthConfig, HttpSource, RateLimitConfig};
use crate::{
    http_server::TlsFiles,
    sources::{BuildEnv, LoadEnv, Source, SourceSpec},
};

/// `[sources.NAME] type = "http"`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// `host:port` to listen on.
    pub address: String,
    /// Request path that accepts events.
    #[serde(default = "default_path")]
    pub path: String,
    /// Largest request body, as sent (compressed); larger bodies get 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Largest body after gzip decompression; larger bodies get 413.
    #[serde(default = "default_max_decompressed_bytes")]
    pub max_decompressed_bytes: usize,
    /// With `sluice run --until-idle`: stop listening after this long without a request.
    #[serde(default = "default_idle_secs")]
    pub idle_secs: u64,
    /// A client must send a request's headers within this many seconds,
    /// else its connection is closed (slow-loris clients).
    #[serde(default = "default_header_timeout_secs")]
    pub header_timeout_secs: u64,
    /// A client must send a request's body within this many seconds, else
    /// it gets 408 and nothing is stored.
    #[serde(default = "default_body_timeout_secs")]
    pub body_timeout_secs: u64,
    /// Connections served at once; more clients wait to be accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Who may post: bearer tokens and/or a webhook signature. Without it,
    /// anyone who reaches the address may.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Serve HTTPS with this certificate and key (reloaded when the files change).
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Let browser trackers on other origins post (CORS).
    #[serde(default)]
    pub cors: Option<CorsConfig>,
    /// Requests accepted per second; beyond it, 429 with `Retry-After`.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// What clients speak: `ndjson` (`POST <path>` with NDJSON or a JSON
    /// array, the default) or `segment` (Segment's HTTP tracking API on
    /// `/v1/batch`, `/v1/track`, ...; the write key by HTTP Basic auth,
    /// checked against `auth`'s tokens) or `snowplow` (Snowplow's tracker
    /// protocol: `POST /com.snowplowanalytics.snowplow/tp2`, `GET /i`; any
    /// origin may send with credentials unless `cors` says otherwise; feed
    /// it to a `snowplow` transform).
    #[serde(default)]
    pub protocol: Protocol,
}

/// `protocol`: what the collector's clients speak.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Ndjson,
    Segment,
    Snowplow,
}

/// `cors = { allowed_origins = [...] }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins that may post from a browser (`https://shop.example`), or
    /// `["*"]` for any.
    pub allowed_origins: Vec<String>,
    /// Let browsers send cookies and credentials along (not with `"*"`).
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long a browser may keep a preflight answer.
    #[serde(default = "default_cors_max_age_secs")]
    pub max_age_secs: u64,
}

fn default_header_timeout_secs() -> u64 {
    10
}
fn default_body_timeout_secs() -> u64 {
    30
}
fn default_max_connections() -> usize {
    1024
}
fn default_cors_max_age_secs() -> u64 {
    3600
}

fn default_path() -> String {
    "/v1/events".into()
}
fn default_max_body_bytes() -> usize {
    10 * 1024 * 1024
}
fn default_max_decompressed_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_idle_secs() -> u64 {
    2
}

impl SourceSpec for HttpSourceConfig {
    fn validate(&self) -> Result<(), String> {
        self.address
            .parse::<std::net::SocketAddr>()
            .map_err(|e| format!("address: {:?} is not host:port ({e})", self.address))?;
        if !self.path.starts_with('/') {
            return Err(format!("path: {:?} must start with '/'", self.path));
        }
        if self.max_body_bytes == 0 || self.max_decompressed_bytes < self.max_body_bytes {
            return Err("max_decompressed_bytes: must be at least max_body_bytes (and both above 0)".into());
        }
        if self.header_timeout_secs == 0 || self.body_timeout_secs == 0 {
            return Err("header_timeout_secs and body_timeout_secs: must be at least 1".into());
        }
        if self.max_connections == 0 {
            return Err("max_connections: must be at least 1".into());
        }
        if let Some(auth) = &self.auth {
            auth.validate()?;
        }
        if self.protocol == Protocol::Segment
            && self
                .auth
                .as_ref()
                .is_none_or(|a| a.bearer_tokens_env.is_none() && a.bearer_tokens_file.is_none())
        {
            return Err("protocol = \"segment\": set auth.bearer_tokens_env or auth.bearer_tokens_file to the accepted write keys".into());
        }
        if let Some(cors) = &self.cors {
            cors.validate()?;
        }
        if let Some(rate) = &self.rate_limit {
            rate.validate()?;
        }
        Ok(())
    }

    fn resolve(&mut self, env: &dyn LoadEnv) -> Result<(), String> {
        if let Some(tls) = &mut self.tls {
            tls.resolve(env);
        }
        if let Some(file) = self.auth.as_mut().and_then(|a| a.bearer_tokens_file.as_mut()) {
            *file = env.path(&file.to_string_lossy());
        }
        Ok(())
    }

    fn build(&self, _env: &dyn BuildEnv) -> Result<Box<dyn Source>, String> {
        Ok(Box::new(HttpSource::new(self.clone())?))
    }
}

impl CorsConfig {
    fn validate(&self) -> Result<(), String> {
        if self.allowed_origins.is_empty() {
            return Err("cors.allowed_origins: list at least one origin, or \"*\"".into());
        }
        let any = self.allowed_origins.iter().any(|o| o == "*");
        if any && self.allowed_origins.len() > 1 {
            return Err("cors.allowed_origins: \"*\" stands alone".into());
        }
        if any && self.allow_credentials {
            return Err(
                "cors.allow_credentials: browsers refuse credentials with allowed_origins = [\"*\"]; list the origins"
                    .into(),
            );
        }
        for origin in self.allowed_origins.iter().filter(|o| *o != "*") {
            let (scheme, host) = origin.split_once("://").unwrap_or(("", ""));
            if !matches!(scheme, "http" | "https") || host.is_empty() || host.contains('/') {
                return Err(format!(
                    "cors.allowed_origins: {origin:?} is not an origin (scheme://host[:port], no path)"
                ));
            }
        }
        Ok(())
    }
}
