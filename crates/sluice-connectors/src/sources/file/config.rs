//! Configuration of the file source.

use serde::Deserialize;

use super::FileSource;
use crate::sources::{BuildEnv, LoadEnv, Source, SourceSpec, chunks::DEFAULT_BATCH_BYTES};

/// `[sources.NAME] type = "file"`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Glob pattern (relative to the pipeline file). Names ending in `.gz` are gunzipped.
    pub path: String,
    /// How often to look for new files.
    #[serde(default = "default_poll_interval_secs")]
    pub poll_interval_secs: u64,
    /// Bytes of lines per queue batch; with a JetStream queue the default
    /// is 1044480, the most a NATS message carries. A file is cut with the
    /// size in force when it was first read, also when it is read again
    /// after a crash, so its batches keep their keys.
    #[serde(default)]
    #[schemars(extend("default" = 4194304))]
    pub max_batch_bytes: Option<usize>,
    /// A file is read only once it has not been modified for this long, so
    /// files still being written are left alone. `--until-idle` reads at once.
    #[serde(default = "default_settle_secs")]
    pub settle_secs: u64,
    /// What the queue keeps of a batch: `"copy"`, its lines, or
    /// `"reference"`, where they lie in the file (path, size, modification
    /// time, offset), read back when the batch is delivered. A reference
    /// spares writing every line to disk twice more, but the file must then
    /// stay as it is until its batches are committed: a batch whose file
    /// changed or went becomes an `unreadable_input` dead letter. Gzipped
    /// files are copied. Needs the embedded queue.
    #[serde(default)]
    #[schemars(extend("default" = "copy"))]
    pub queue_payloads: QueuePayloads,
}

/// What the queue keeps of a file source's batches.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueuePayloads {
    /// The lines themselves: the file may go once it is read.
    #[default]
    Copy,
    /// Where the lines lie in the file, which must stay until they are committed.
    Reference,
}

fn default_poll_interval_secs() -> u64 {
    1
}
fn default_settle_secs() -> u64 {
    1
}

impl FileSourceConfig {
    /// Bytes of lines per batch of a file read for the first time.
    pub fn batch_bytes(&self) -> usize {
        self.max_batch_bytes.unwrap_or(DEFAULT_BATCH_BYTES)
    }
}

impl SourceSpec for FileSourceConfig {
    fn validate(&self) -> Result<(), String> {
        glob::Pattern::new(&self.path).map_err(|e| format!("path: {:?} is not a glob pattern ({e})", self.path))?;
        if self.poll_interval_secs == 0 {
            return Err("poll_interval_secs: must be at least 1".into());
        }
        if self.max_batch_bytes.is_some_and(|b| b < 1024) {
            return Err("max_batch_bytes: must be at least 1024".into());
        }
        Ok(())
    }

    fn resolve(&mut self, env: &dyn LoadEnv) -> Result<(), String> {
        self.path = env.path(&self.path).to_string_lossy().into_owned();
        Ok(())
    }

    fn max_batch_bytes(&self) -> Option<usize> {
        Some(self.batch_bytes())
    }

    fn needs_local_queue(&self) -> Option<String> {
        (self.queue_payloads == QueuePayloads::Reference).then(|| {
            "queue_payloads: \"reference\" needs the embedded queue, which reads the lines back from this machine's files; allowed with queue = \"nats://...\": \"copy\" (the default)".into()
        })
    }

    fn fit_default_batches(&mut self, max: usize) {
        self.max_batch_bytes.get_or_insert(DEFAULT_BATCH_BYTES.min(max));
    }

    fn build(&self, _env: &dyn BuildEnv) -> Result<Box<dyn Source>, String> {
        Ok(Box::new(FileSource::new(self.clone())))
    }
}
