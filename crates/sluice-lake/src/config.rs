//! Configuration of the `lake` sink, as written in a pipeline file.

use serde::Deserialize;

use crate::partition::PartitionKey;

/// `[sinks.NAME] type = "lake"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LakeSinkConfig {
    pub inputs: Vec<String>,
    /// Table location: a path (relative to the pipeline file) or `file://` URL.
    pub uri: String,
    #[serde(default = "default_partition_by")]
    pub partition_by: Vec<PartitionKey>,
    /// Longest time an accepted event waits before it is committed.
    #[serde(default = "default_flush_interval_secs")]
    pub flush_interval_secs: u64,
    /// Commit once this many encoded bytes are buffered; also the size at
    /// which a data file is closed and a new one started.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
}

fn default_partition_by() -> Vec<PartitionKey> {
    vec![PartitionKey::Dt, PartitionKey::Hour]
}

fn default_flush_interval_secs() -> u64 {
    5
}

fn default_max_file_bytes() -> u64 {
    128 * 1024 * 1024
}

impl LakeSinkConfig {
    /// Pure checks: messages name the key and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        if self.uri.trim().is_empty() {
            return Err("uri: must not be empty".into());
        }
        if self.flush_interval_secs == 0 {
            return Err("flush_interval_secs: must be at least 1".into());
        }
        if self.max_file_bytes < 1024 * 1024 {
            return Err("max_file_bytes: must be at least 1048576 (1 MiB)".into());
        }
        let mut seen = Vec::new();
        for p in &self.partition_by {
            if seen.contains(p) {
                return Err(format!("partition_by: {p:?} is listed twice"));
            }
            seen.push(*p);
        }
        Ok(())
    }
}
