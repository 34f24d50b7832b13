//! The HTTP collector source (`type = "http"`).

mod body;
mod config;
mod source;

pub use body::{BodyError, decode_body};
pub use config::HttpSourceConfig;
pub use source::HttpSource;
