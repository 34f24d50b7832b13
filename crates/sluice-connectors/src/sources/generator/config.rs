//! Configuration of the generator source.

use serde::Deserialize;

use super::GeneratorSource;
use crate::sources::{BuildEnv, Source, SourceSpec};

/// `[sources.NAME] type = "generator"`.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneratorSourceConfig {
    /// What to generate: `clickstream` (web events; the schema is
    /// `sluice-gen`'s `clickstream.schema.json`) or `cdc` (document change
    /// events for a `documents` stage).
    #[serde(default)]
    pub stream: GeneratedStream,
    /// Events to generate (clickstream lines, or source changes for `cdc`).
    #[serde(default = "default_events")]
    pub events: u64,
    /// The same seed always gives the same events.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Share of clickstream lines that are malformed (dead-letter practice).
    #[serde(default)]
    pub bad_rate: f64,
    /// Share of events sent twice (producer duplicates).
    #[serde(default)]
    pub dup_rate: f64,
    /// Events per queue batch.
    #[serde(default = "default_batch_events")]
    pub batch_events: usize,
    /// Pause between batches; 0 puts them on the queue as fast as it takes them.
    #[serde(default)]
    pub interval_ms: u64,
}

/// `stream`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GeneratedStream {
    #[default]
    Clickstream,
    Cdc,
}

/// The most events one source generates (they are made in memory first).
pub const MAX_EVENTS: u64 = 5_000_000;

fn default_events() -> u64 {
    10_000
}
fn default_seed() -> u64 {
    1
}
fn default_batch_events() -> usize {
    1000
}

impl SourceSpec for GeneratorSourceConfig {
    fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_EVENTS).contains(&self.events) {
            return Err(format!(
                "events: {} is not allowed; from 1 to {MAX_EVENTS}",
                self.events
            ));
        }
        if self.batch_events == 0 {
            return Err("batch_events: must be at least 1".into());
        }
        for (key, rate) in [("bad_rate", self.bad_rate), ("dup_rate", self.dup_rate)] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{key}: {rate} is not allowed; a share from 0 to 1"));
            }
        }
        if self.stream == GeneratedStream::Cdc && self.bad_rate > 0.0 {
            return Err("bad_rate: only a clickstream has malformed lines".into());
        }
        Ok(())
    }

    fn build(&self, _env: &dyn BuildEnv) -> Result<Box<dyn Source>, String> {
        Ok(Box::new(GeneratorSource::new(self.clone())))
    }
}
