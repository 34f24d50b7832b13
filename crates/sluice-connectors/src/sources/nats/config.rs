//! Configuration of the NATS source.

use serde::Deserialize;

use super::NatsSource;
use crate::sources::{BuildEnv, Source, SourceSpec};

/// `[sources.NAME] type = "nats"`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NatsSourceConfig {
    /// `nats://host:4222`.
    pub url: sluice_core::Secret,
    /// The JetStream stream to read (it must exist; its producers own it).
    pub stream: String,
    /// Only messages on subjects matching this filter (`orders.>`).
    #[serde(default)]
    pub subject: Option<String>,
    /// The durable consumer's name; replicas of a pipeline share it.
    /// Default: `sluice-<source name>`.
    #[serde(default)]
    pub consumer: Option<String>,
    /// Messages per queue batch.
    #[serde(default = "default_max_batch_messages")]
    pub max_batch_messages: usize,
    /// Bytes of messages per queue batch.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// How long a pull waits for messages before a smaller batch is taken.
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
    /// A message not acknowledged within this time is delivered again
    /// (the source reports progress while the queue is full).
    #[serde(default = "default_ack_wait_secs")]
    pub ack_wait_secs: u64,
}

fn default_max_batch_messages() -> usize {
    1000
}
fn default_max_batch_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_max_wait_ms() -> u64 {
    500
}
fn default_ack_wait_secs() -> u64 {
    60
}

impl SourceSpec for NatsSourceConfig {
    fn validate(&self) -> Result<(), String> {
        check_endpoint("", &self.url, &self.stream, self.consumer.as_deref())?;
        if self.max_batch_messages == 0 {
            return Err("max_batch_messages: must be at least 1".into());
        }
        if self.max_batch_bytes < 1024 {
            return Err("max_batch_bytes: must be at least 1024".into());
        }
        if self.max_wait_ms == 0 || self.ack_wait_secs == 0 {
            return Err("max_wait_ms and ack_wait_secs: must be at least 1".into());
        }
        Ok(())
    }

    fn build(&self, _env: &dyn BuildEnv) -> Result<Box<dyn Source>, String> {
        Ok(Box::new(NatsSource::new(self.clone())))
    }
}

/// Checks a NATS URL and the stream and consumer names; errors start with
/// the key, under `prefix` (`"notifications."`).
pub(crate) fn check_endpoint(
    prefix: &str,
    url: &sluice_core::Secret,
    stream: &str,
    consumer: Option<&str>,
) -> Result<(), String> {
    if !url.expose().starts_with("nats://") && !url.expose().starts_with("tls://") {
        return Err(format!(
            "{prefix}url: {:?} is not a NATS URL (nats://host:4222)",
            url.redacted()
        ));
    }
    let name_ok = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok(stream) {
        return Err(format!(
            "{prefix}stream: {stream:?} is not a stream name (letters, digits, - and _)"
        ));
    }
    if let Some(consumer) = consumer
        && !name_ok(consumer)
    {
        return Err(format!(
            "{prefix}consumer: {consumer:?} is not a consumer name (letters, digits, - and _)"
        ));
    }
    Ok(())
}
