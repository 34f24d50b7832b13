//! The `stream` sink: processed events published to a NATS JetStream
//! subject, the integration point for other consumers (as the processed
//! stream of the systems Sluice generalises).
//!
//! Each event is published with `Nats-Msg-Id: <batch key>/<line>`, so
//! JetStream drops a copy published again within the stream's duplicate
//! window (a redelivered batch after a crash); a flush returns only after
//! JetStream acknowledged every publish. Beyond the window a redelivered
//! batch is published again: consumers should treat the id as the
//! deduplication key. When `stream` is set, a stream capturing the subject
//! is created if missing, with a 10-minute duplicate window.

use std::time::Duration;

use async_nats::{HeaderMap, jetstream};
use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;
use sluice_core::{Accepted, Event, FlushReport, Sink, StageError};

/// `type = "stream"` in the pipeline file.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamSinkConfig {
    /// `nats://host:port`.
    pub url: sluice_core::Secret,
    /// The subject each event is published on.
    pub subject: String,
    /// A JetStream stream to create for the subject if it is missing.
    pub stream: Option<String>,
    /// Longest time an accepted event waits before it is published.
    #[serde(default = "default_flush_interval_secs")]
    pub flush_interval_secs: u64,
    /// Publish at this buffered size.
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: usize,
}

fn default_flush_interval_secs() -> u64 {
    1
}

fn default_max_buffered_bytes() -> usize {
    8 * 1024 * 1024
}

impl StreamSinkConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !self.url.expose().starts_with("nats://") && !self.url.expose().starts_with("tls://") {
            return Err(format!("url: {:?} is not a nats:// or tls:// URL", self.url.redacted()));
        }
        let valid = !self.subject.is_empty()
            && !self.subject.contains(['*', '>', ' '])
            && self.subject.split('.').all(|token| !token.is_empty());
        if !valid {
            return Err(format!(
                "subject: {:?} is not a subject to publish to (dot-separated tokens, no wildcards or spaces)",
                self.subject
            ));
        }
        Ok(())
    }
}

/// Duplicate window of a stream this sink creates.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

pub struct StreamSink {
    js: jetstream::Context,
    subject: String,
    max_buffered: usize,
    /// `(message id, payload)` of every event since the last flush.
    buffer: Vec<(String, Bytes)>,
    bytes: usize,
    batches: u64,
}

impl StreamSink {
    pub async fn open(config: &StreamSinkConfig) -> Result<Self, StageError> {
        let client = sluice_queue::jetstream::connect(&config.url).await.map_err(|e| {
            if e.permanent {
                StageError::fatal(e)
            } else {
                StageError::unavailable(e)
            }
        })?;
        let js = jetstream::new(client);
        if let Some(stream) = &config.stream {
            js.get_or_create_stream(jetstream::stream::Config {
                name: stream.clone(),
                subjects: vec![config.subject.clone()],
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await
            .map_err(|e| StageError::from_backend(format!("stream {stream}: {e}"), &e))?;
        }
        Ok(StreamSink {
            js,
            subject: config.subject.clone(),
            max_buffered: config.max_buffered_bytes,
            buffer: Vec::new(),
            bytes: 0,
            batches: 0,
        })
    }
}

#[async_trait]
impl Sink for StreamSink {
    async fn accept(&mut self, key: &str, _maybe_committed: bool, events: Vec<Event>) -> Result<Accepted, StageError> {
        for event in events {
            self.bytes += event.payload.len();
            self.buffer.push((format!("{key}/{}", event.line), event.payload));
        }
        self.batches += 1;
        Ok(Accepted::Buffered { rejected: Vec::new() })
    }

    fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    fn max_buffered_bytes(&self) -> usize {
        self.max_buffered
    }

    async fn flush(&mut self) -> Result<FlushReport, StageError> {
        let retriable = |e: &(dyn std::error::Error + 'static)| {
            StageError::from_backend(format!("publishing to {}: {e}", self.subject), e)
        };
        let mut acks = Vec::with_capacity(self.buffer.len());
        for (id, payload) in &self.buffer {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            let ack = self
                .js
                .publish_with_headers(self.subject.clone(), headers, payload.clone())
                .await
                .map_err(|e| retriable(&e))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(|e| retriable(&e))?;
        }
        let report = FlushReport {
            rows: self.buffer.len() as u64,
            batches: std::mem::take(&mut self.batches),
            ..FlushReport::default()
        };
        self.reset();
        Ok(report)
    }

    fn reset(&mut self) {
        self.buffer.clear();
        self.bytes = 0;
        self.batches = 0;
    }
}
