//! The source trait and its shared context. One folder per source.

mod chunks;
pub mod file;
pub mod http;
pub mod nats;
pub mod objects;

use std::{path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use sluice_core::NewBatch;
use sluice_queue::{DeadLetterStore, Queue, QueueError, lease::Leases};
use tokio::sync::watch;

/// Everything a running source needs from the pipeline.
#[derive(Clone)]
pub struct SourceContext {
    pub name: String,
    pub queue: Arc<dyn Queue>,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    /// Turns `true` when the pipeline stops taking input.
    pub shutdown: watch::Receiver<bool>,
    /// Batch mode: return once there is nothing more to read.
    pub until_idle: bool,
    /// Where a source keeps its own state (checkpoints).
    pub state_dir: PathBuf,
    /// Leases shared by the pipeline's replicas, for a source that must
    /// run on one replica at a time (`objects`).
    pub leases: Arc<dyn Leases>,
}

impl SourceContext {
    pub fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Enqueues a batch, waiting while the queue is full; gives up only when
    /// the pipeline stops (the caller then has not acknowledged upstream).
    pub async fn enqueue_waiting(&self, batch: NewBatch) -> Result<(), SourceError> {
        let mut shutdown = self.shutdown.clone();
        loop {
            match self.queue.enqueue(batch.clone()).await {
                Ok(()) => return Ok(()),
                Err(QueueError::Full { .. }) => {
                    metrics::counter!("sluice_source_backpressure_waits_total", "component" => self.name.clone())
                        .increment(1);
                }
                Err(e) => tracing::warn!(source = %self.name, error = %e, "enqueue failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.wait_for(|s| *s) => return Err(SourceError::Stopped),
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot listen on {address}: {message}")]
    Bind { address: String, message: String },
    #[error("source state: {0}")]
    State(String),
    #[error("upstream: {0}")]
    Upstream(String),
    #[error("stopped")]
    Stopped,
}

#[async_trait]
pub trait Source: Send {
    /// Runs until shutdown (or, with `until_idle`, until drained).
    async fn run(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError>;
}

/// Records events and bytes a source has put on the queue.
pub(crate) fn count_received(source: &str, events: u64, bytes: u64) {
    metrics::counter!("sluice_component_received_events_total", "component" => source.to_string()).increment(events);
    metrics::counter!("sluice_component_received_bytes_total", "component" => source.to_string()).increment(bytes);
    metrics::gauge!("sluice_source_last_event_timestamp_seconds", "component" => source.to_string())
        .set(sluice_core::now_ms() as f64 / 1000.0);
}
