//! The source trait and its shared context; the source types and their
//! dispatch (`spec.rs`). One folder per source.

mod chunks;
pub mod dynamodb_streams;
pub mod file;
pub mod generator;
pub mod http;
pub mod kafka;
pub mod kinesis;
mod message_body;
pub mod nats;
pub mod objects;
mod shards;
mod spec;
pub mod sqs;

use std::{path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use sluice_core::{NewBatch, telemetry::SourceTelemetry};
use sluice_queue::{DeadLetterStore, Queue, QueueError, checkpoint::Checkpoints, lease::Leases};
use tokio::sync::watch;

pub use spec::{BuildEnv, LoadEnv, ResolvedLocation, SourceConfig, SourceSpec};

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
    /// run on one replica at a time (`objects`) or share its shards.
    pub leases: Arc<dyn Leases>,
    /// Places upstream (shard sequence numbers), shared by the replicas.
    pub checkpoints: Arc<dyn Checkpoints>,
    /// This source's metrics and log lines.
    pub telemetry: SourceTelemetry,
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
                Err(QueueError::Full { .. }) => self.telemetry.backpressure(),
                Err(e) => tracing::warn!(source = %self.name, error = %e, "enqueue failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.wait_for(|s| *s) => return Err(SourceError::Stopped),
            }
        }
    }
}

/// Enqueues `batch` outside a running source (`sluice replay`), waiting
/// while the queue is full; other errors are returned.
pub(crate) async fn enqueue_when_room(queue: &dyn Queue, batch: &NewBatch) -> Result<(), String> {
    loop {
        match queue.enqueue(batch.clone()).await {
            Ok(()) => return Ok(()),
            Err(QueueError::Full { .. }) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => return Err(format!("enqueueing {}: {e}", batch.key)),
        }
    }
}

/// The context of a source run alone in a test, on an embedded queue,
/// with its state in `state`.
#[cfg(test)]
pub(crate) fn test_context(
    name: &str,
    queue: &Arc<sluice_queue::embedded::EmbeddedQueue>,
    shutdown: watch::Receiver<bool>,
    until_idle: bool,
    state: &std::path::Path,
) -> SourceContext {
    SourceContext {
        name: name.into(),
        queue: queue.clone(),
        dead_letters: queue.clone(),
        shutdown,
        until_idle,
        state_dir: state.to_path_buf(),
        checkpoints: local_checkpoints(state),
        leases: Arc::new(sluice_queue::lease::LocalLeases::default()),
        telemetry: SourceTelemetry::new(name),
    }
}

/// Checkpoints in `dir`, for tests that run a source alone.
#[cfg(test)]
pub(crate) fn local_checkpoints(dir: &std::path::Path) -> Arc<dyn Checkpoints> {
    Arc::new(sluice_queue::checkpoint::LocalCheckpoints::open(dir).unwrap())
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
