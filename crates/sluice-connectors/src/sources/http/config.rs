//! Configuration of the HTTP collector.

use serde::Deserialize;

use super::HttpSource;
use crate::sources::{BuildEnv, Source, SourceSpec};

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
        Ok(())
    }

    fn build(&self, _env: &dyn BuildEnv) -> Result<Box<dyn Source>, String> {
        Ok(Box::new(HttpSource::new(self.clone())))
    }
}
