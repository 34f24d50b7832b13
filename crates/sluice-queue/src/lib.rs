//! The durable queue of batches between sources and stages, and the
//! dead-letter store, behind traits that every backend implements with the
//! same semantics:
//!
//! * `enqueue` returns only once the batches are durable; a full queue
//!   refuses with [`QueueError::Full`] (backpressure), never drops.
//! * `receive` hands out visible batches and hides them for the visibility
//!   timeout; a batch not acknowledged in time is delivered again.
//! * A batch delivered `max_attempts` times without an ack becomes dead
//!   letters with reason `max_attempts` and its last error.
//! * `extend` keeps batches that are still being worked on hidden.
//!
//! Backends: [`embedded`] (SQLite in the data directory, the default) and
//! [`jetstream`] (a NATS JetStream work-queue stream shared by replicas).
//! Each also gives [`lease`]s, for work one replica at a time must do, and
//! [`checkpoint`]s, for a source's place upstream that replicas share.

pub mod checkpoint;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod embedded;
pub mod jetstream;
pub mod lease;

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use serde::Serialize;
use sluice_core::{DeadLetter, Delivery, DeliveryId, NewBatch};

/// Queue behaviour shared by all backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    pub visibility_timeout: Duration,
    pub max_attempts: u32,
    /// Times the engine may die while a batch is the only one in flight
    /// before the batch becomes dead letters (`crashed_engine`).
    pub max_crashes: u32,
    /// Bytes of payload the queue holds before refusing new batches.
    pub max_bytes: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            visibility_timeout: Duration::from_secs(30),
            max_attempts: 5,
            max_crashes: 3,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue is full ({held_bytes} bytes held, limit {max_bytes})")]
    Full { held_bytes: u64, max_bytes: u64 },
    #[error("queue storage error: {0}")]
    Storage(String),
    #[error("queue is closed")]
    Closed,
}

/// Depth figures for metrics and `sluice status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Batches held (visible and in flight).
    pub batches: u64,
    pub bytes: u64,
    /// Batches delivered and not yet acknowledged.
    pub in_flight: u64,
    /// Age of the oldest batch held, in milliseconds (0 when empty).
    pub oldest_age_ms: i64,
}

#[async_trait]
pub trait Queue: Send + Sync {
    async fn enqueue(&self, batch: NewBatch) -> Result<(), QueueError>;
    async fn receive(&self, max: usize) -> Result<Vec<Delivery>, QueueError>;
    async fn ack(&self, ids: Vec<DeliveryId>) -> Result<(), QueueError>;
    /// Makes a batch visible again after `delay`, recording `error`; the
    /// delivery counts as a failed attempt.
    async fn nack(&self, id: DeliveryId, error: String, delay: Duration) -> Result<(), QueueError>;
    /// Makes a batch visible again after `delay` without spending an
    /// attempt: a backend it needs was unavailable, which is not the
    /// batch's fault. It comes back `maybe_committed`.
    async fn release(&self, id: DeliveryId, delay: Duration) -> Result<(), QueueError>;
    async fn extend(&self, ids: Vec<DeliveryId>) -> Result<(), QueueError>;
    async fn stats(&self) -> Result<QueueStats, QueueError>;
    /// Waits until `receive` may find a batch it would not have found
    /// before (one was enqueued or returned in this process), or `timeout`
    /// passed. A backend whose `receive` itself waits for messages returns
    /// at once, except while `receive` answers at once with nothing (it
    /// isolates a suspect): then it waits for a delivery to finish, or the
    /// consumer loop would spin.
    async fn wait_for_batches(&self, _timeout: Duration) {}
    /// True while `receive` holds batches back to run suspects (batches in
    /// flight when the engine last died) one at a time: what is in flight
    /// should be committed now rather than at the sinks' age bound.
    fn isolating(&self) -> bool {
        false
    }
}

/// The dead letters of a batch delivered `attempts` times without success:
/// one per line, reason `max_attempts`, with the last error recorded.
pub fn exhausted_batch_letters(
    key: &str,
    source: &str,
    payload: &bytes::Bytes,
    attempts: u32,
    last_error: Option<&str>,
) -> Vec<DeadLetter> {
    let detail = format!(
        "delivered {attempts} times without success; last error: {}",
        last_error.unwrap_or("none recorded (visibility timeout expired)")
    );
    batch_letters(key, source, payload, sluice_core::reason::MAX_ATTEMPTS, &detail)
}

/// One dead letter per line of a batch the queue sets aside.
fn batch_letters(key: &str, source: &str, payload: &bytes::Bytes, reason: &str, detail: &str) -> Vec<DeadLetter> {
    sluice_core::split_lines(payload)
        .map(|(line, bytes)| DeadLetter::new(key, line, source, "queue", reason, detail.to_string(), bytes))
        .collect()
}

/// The dead letters of a batch that was the only one in flight each of the
/// `crashes` times the engine died: one per line, reason `crashed_engine`.
pub fn crashed_batch_letters(key: &str, source: &str, payload: &bytes::Bytes, crashes: u32) -> Vec<DeadLetter> {
    let detail = format!(
        "the engine died {crashes} times while this batch was the only one in flight; \
         it is taken for the cause and set aside so the rest of the pipeline runs"
    );
    let letters = batch_letters(key, source, payload, sluice_core::reason::CRASHED_ENGINE, &detail);
    tracing::warn!(
        target: "sluice::queue",
        batch = key,
        source,
        crashes,
        lines = letters.len(),
        "a batch was the only one in flight each time the engine died; its lines are set aside as crashed_engine dead letters (`sluice dlq redrive --reason crashed_engine` after a fix)"
    );
    letters
}

/// A shared queue is a queue (tasks hold one `Arc` each).
#[async_trait]
impl<T: Queue + ?Sized> Queue for std::sync::Arc<T> {
    async fn enqueue(&self, batch: NewBatch) -> Result<(), QueueError> {
        (**self).enqueue(batch).await
    }
    async fn receive(&self, max: usize) -> Result<Vec<Delivery>, QueueError> {
        (**self).receive(max).await
    }
    async fn ack(&self, ids: Vec<DeliveryId>) -> Result<(), QueueError> {
        (**self).ack(ids).await
    }
    async fn nack(&self, id: DeliveryId, error: String, delay: Duration) -> Result<(), QueueError> {
        (**self).nack(id, error, delay).await
    }
    async fn release(&self, id: DeliveryId, delay: Duration) -> Result<(), QueueError> {
        (**self).release(id, delay).await
    }
    async fn extend(&self, ids: Vec<DeliveryId>) -> Result<(), QueueError> {
        (**self).extend(ids).await
    }
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        (**self).stats().await
    }
    async fn wait_for_batches(&self, timeout: Duration) {
        (**self).wait_for_batches(timeout).await
    }
    fn isolating(&self) -> bool {
        (**self).isolating()
    }
}

/// Counts of dead letters, as `sluice dlq list --json` prints them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeadLetterCounts {
    pub total: u64,
    pub by_reason: BTreeMap<String, u64>,
    /// When the newest letter of each reason was stored (ms since the epoch).
    pub newest_ms: BTreeMap<String, i64>,
}

/// Which dead letters an operation applies to.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    pub reason: Option<String>,
}

#[async_trait]
pub trait DeadLetterStore: Send + Sync {
    /// Stores dead letters durably; storing one twice keeps one copy.
    async fn put(&self, letters: Vec<DeadLetter>) -> Result<(), QueueError>;
    async fn counts(&self) -> Result<DeadLetterCounts, QueueError>;
    async fn list(&self, filter: DeadLetterFilter, limit: usize) -> Result<Vec<DeadLetter>, QueueError>;
    /// Moves matching dead letters back onto the queue as new batches, in one
    /// atomic step: running it again finds nothing left to move.
    async fn redrive(&self, filter: DeadLetterFilter) -> Result<u64, QueueError>;
}
