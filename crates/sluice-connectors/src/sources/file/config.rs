//! Configuration of the file source.

use serde::Deserialize;

use super::FileSource;
use crate::sources::{BuildEnv, LoadEnv, Source, SourceSpec};

/// `[sources.NAME] type = "file"`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Glob pattern (relative to the pipeline file). Names ending in `.gz` are gunzipped.
    pub path: String,
    /// How often to look for new files.
    #[serde(default = "default_poll_interval_secs")]
    pub poll_interval_secs: u64,
    /// Bytes of lines per queue batch. A file is cut with the size in force
    /// when it was first read, also when it is read again after a crash, so
    /// its batches keep their keys.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// A file is read only once it has not been modified for this long, so
    /// files still being written are left alone. `--until-idle` reads at once.
    #[serde(default = "default_settle_secs")]
    pub settle_secs: u64,
}

fn default_poll_interval_secs() -> u64 {
    1
}
fn default_max_batch_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_settle_secs() -> u64 {
    1
}

impl SourceSpec for FileSourceConfig {
    fn validate(&self) -> Result<(), String> {
        glob::Pattern::new(&self.path).map_err(|e| format!("path: {:?} is not a glob pattern ({e})", self.path))?;
        if self.poll_interval_secs == 0 {
            return Err("poll_interval_secs: must be at least 1".into());
        }
        if self.max_batch_bytes < 1024 {
            return Err("max_batch_bytes: must be at least 1024".into());
        }
        Ok(())
    }

    fn resolve(&mut self, env: &dyn LoadEnv) -> Result<(), String> {
        self.path = env.path(&self.path).to_string_lossy().into_owned();
        Ok(())
    }

    fn max_batch_bytes(&self) -> Option<usize> {
        Some(self.max_batch_bytes)
    }

    fn build(&self, _env: &dyn BuildEnv) -> Result<Box<dyn Source>, String> {
        Ok(Box::new(FileSource::new(self.clone())))
    }
}
