//! The component traits the runtime drives.
//!
//! Transforms see the events of one batch at a time and return what goes on
//! plus what they refused. Sinks buffer events from many batches and commit
//! them together; a sink records the keys of the batches each commit holds in
//! the same atomic commit, and reports a batch it has already committed as
//! `Accepted::AlreadyCommitted`, which is how redelivery avoids duplicates.

use async_trait::async_trait;

use crate::{dead_letter::Rejected, error::StageError, event::Event};

/// What a transform made of one batch's events.
#[derive(Debug, Default)]
pub struct TransformOutput {
    pub events: Vec<Event>,
    pub rejected: Vec<Rejected>,
    /// Events left out on purpose (a filter, a jq program emitting nothing).
    pub dropped: u64,
}

/// The batch a transform is working on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo<'a> {
    /// The batch's stable key ([`crate::NewBatch::key`]).
    pub key: &'a str,
    /// The batch may have been processed before (a redelivery, a re-read
    /// input): a transform that keeps state per batch checks its records.
    pub maybe_committed: bool,
    /// When the batch entered the queue (ms since the epoch).
    pub enqueued_at_ms: i64,
}

impl<'a> BatchInfo<'a> {
    /// A batch seen for the first time, enqueued now.
    pub fn first(key: &'a str) -> Self {
        BatchInfo {
            key,
            maybe_committed: false,
            enqueued_at_ms: crate::now_ms(),
        }
    }
}

/// A per-batch transform (validate, jq, lookup, documents, ...).
#[async_trait]
pub trait Transform: Send + Sync {
    async fn process(&self, batch: BatchInfo<'_>, events: Vec<Event>) -> Result<TransformOutput, StageError>;
}

/// Result of handing one batch's events to a sink.
#[derive(Debug)]
pub enum Accepted {
    /// Buffered; the batch is done for this sink once the next flush commits.
    /// Events the sink could not encode are returned for the dead-letter store.
    Buffered { rejected: Vec<Rejected> },
    /// The sink's log already holds this batch key: nothing was buffered.
    AlreadyCommitted,
}

/// What one flush committed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlushReport {
    pub rows: u64,
    pub files: u64,
    pub batches: u64,
    pub duplicates_dropped: u64,
}

/// A commit set going in the background; it resolves once the sink's log
/// holds it.
pub type PendingCommit = std::pin::Pin<Box<dyn std::future::Future<Output = Result<FlushReport, StageError>> + Send>>;

/// What starting a flush did.
pub enum Flushing {
    /// Committed in place.
    Done(FlushReport),
    /// The window is sealed and its commit runs in the background; the sink
    /// takes the next batches meanwhile.
    Committing(PendingCommit),
}

/// A destination that commits atomically (lake table, database, stream).
#[async_trait]
pub trait Sink: Send {
    /// Buffers the events of batch `key`. `maybe_committed` is true when the
    /// batch may already be in the sink (redelivery, re-read input).
    async fn accept(&mut self, key: &str, maybe_committed: bool, events: Vec<Event>) -> Result<Accepted, StageError>;

    /// Approximate bytes buffered since the last flush.
    fn buffered_bytes(&self) -> usize;

    /// The size at which the runtime flushes without waiting for the age bound.
    fn max_buffered_bytes(&self) -> usize;

    /// Commits everything buffered, with the keys of its batches, atomically.
    /// After an error the caller calls [`Sink::reset`]: a sink never retries
    /// a flush in place, its batches are delivered again instead.
    async fn flush(&mut self) -> Result<FlushReport, StageError>;

    /// Starts committing everything buffered. A sink that can commit in the
    /// background seals its window, sets the commit going and returns
    /// [`Flushing::Committing`]; it accepts the next batches while that
    /// runs. The caller lets at most one commit run at a time, completes the
    /// sealed window's batches only when it resolves, and then calls
    /// [`Sink::commit_landed`] if it succeeded, or [`Sink::reset`] if not,
    /// before anything else. The default commits in place.
    async fn start_flush(&mut self) -> Result<Flushing, StageError> {
        self.flush().await.map(Flushing::Done)
    }

    /// The background commit [`Sink::start_flush`] set going succeeded.
    fn commit_landed(&mut self) {}

    /// Discards everything not yet committed (after an error); the batches
    /// it held are delivered again.
    fn reset(&mut self);
}
