//! Generates the configured events and puts them on the queue in batches.
//!
//! Batch keys name the config that made them (`generator:<source>:<stream>:
//! <seed>:<events>:<batch>`) and every batch is flagged `maybe_committed`:
//! after a restart the source generates the same batches again and sinks
//! find the ones they committed in their logs, so the output holds each
//! event once.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sluice_core::NewBatch;
use sluice_gen::{CdcOptions, ClickstreamOptions};

use super::config::{GeneratedStream, GeneratorSourceConfig};
use crate::sources::{Source, SourceContext, SourceError};

pub struct GeneratorSource {
    config: GeneratorSourceConfig,
}

impl GeneratorSource {
    pub fn new(config: GeneratorSourceConfig) -> Self {
        GeneratorSource { config }
    }

    /// Every generated line, newline-terminated.
    fn generate(&self) -> Vec<u8> {
        let c = &self.config;
        let mut out = Vec::new();
        let written = match c.stream {
            GeneratedStream::Clickstream => sluice_gen::clickstream(
                &ClickstreamOptions {
                    bad_rate: c.bad_rate,
                    dup_rate: c.dup_rate,
                    ..ClickstreamOptions::clean(c.events, c.seed)
                },
                &mut out,
            )
            .map(drop),
            GeneratedStream::Cdc => sluice_gen::cdc(
                &CdcOptions {
                    changes: c.events,
                    docs: (c.events / 20).max(1),
                    seed: c.seed,
                    dup_rate: c.dup_rate,
                    ..CdcOptions::default()
                },
                &mut out,
            )
            .map(drop),
        };
        written.expect("writing to memory does not fail");
        out
    }
}

/// Newline-terminated `lines` cut into batches of `per_batch` lines (the
/// last one shorter), each a slice of the same buffer, with its line count.
fn batches(lines: &Bytes, per_batch: usize) -> Vec<(Bytes, u64)> {
    let mut out = Vec::new();
    let (mut start, mut count) = (0, 0);
    for end in memchr::memchr_iter(b'\n', lines) {
        count += 1;
        if count == per_batch {
            out.push((lines.slice(start..end + 1), count as u64));
            (start, count) = (end + 1, 0);
        }
    }
    if count > 0 {
        out.push((lines.slice(start..), count as u64));
    }
    out
}

#[async_trait]
impl Source for GeneratorSource {
    async fn run(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
        let generator = GeneratorSource::new(self.config.clone());
        let generated = tokio::task::spawn_blocking(move || generator.generate())
            .await
            .map_err(|e| SourceError::State(format!("generating events: {e}")))?;
        let generated = Bytes::from(generated);
        let c = &self.config;
        let stream = match c.stream {
            GeneratedStream::Clickstream => "clickstream",
            GeneratedStream::Cdc => "cdc",
        };
        for (index, (payload, events)) in batches(&generated, c.batch_events).into_iter().enumerate() {
            let bytes = payload.len() as u64;
            let batch = NewBatch {
                key: format!("generator:{}:{stream}:{}:{}:{index}", ctx.name, c.seed, c.events),
                source: ctx.name.clone(),
                payload,
                maybe_committed: true,
                in_file: None,
            };
            match ctx.enqueue_waiting(batch).await {
                Ok(()) => ctx.telemetry.enqueued(events, bytes),
                Err(SourceError::Stopped) => return Ok(()),
                Err(e) => return Err(e),
            }
            if c.interval_ms > 0 {
                tokio::time::sleep(Duration::from_millis(c.interval_ms)).await;
            }
        }
        if !ctx.until_idle {
            let mut shutdown = ctx.shutdown.clone();
            let _ = shutdown.wait_for(|stopping| *stopping).await;
        }
        Ok(())
    }
}
