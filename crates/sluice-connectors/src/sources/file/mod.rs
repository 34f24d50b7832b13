//! The file source (`type = "file"`): NDJSON files, optionally gzip, found by
//! a glob pattern, each read once.

mod checkpoint;
mod config;
mod source;

pub use checkpoint::{FileCheckpoints, FileState, ReplayCandidate};
pub use config::{FileSourceConfig, QueuePayloads};
pub use source::FileSource;

#[cfg(test)]
mod tests;
