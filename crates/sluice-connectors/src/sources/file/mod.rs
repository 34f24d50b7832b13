//! The file source (`type = "file"`): NDJSON files, optionally gzip, found by
//! a glob pattern, each read once.

mod checkpoint;
mod config;
mod source;

pub use checkpoint::{FileCheckpoints, FileState, ReplayCandidate};
pub use config::FileSourceConfig;
pub use source::{FileSource, mtime_ns};

#[cfg(test)]
mod tests;
