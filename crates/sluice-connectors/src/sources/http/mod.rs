//! The HTTP collector source (`type = "http"`).

mod auth;
mod body;
mod config;
mod rate;
mod segment;
mod snowplow;
mod source;

pub use auth::{AuthConfig, HmacConfig, SignatureEncoding};
pub use body::{BodyError, decode_body};
pub use config::{CorsConfig, HttpSourceConfig, Protocol};
pub use rate::RateLimitConfig;
pub use source::HttpSource;
