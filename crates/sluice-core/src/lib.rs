//! Core vocabulary shared by every Sluice component: batches as they sit in
//! the durable queue, events as they flow through stages, dead letters, the
//! `Transform` and `Sink` traits, the error classes that decide between
//! retry, dead letter and stop, and `JsonDoc` for documents whose member
//! order means something (schemas), and the catalogue of every metric with
//! the typed handles that record them (`telemetry`).
//!
//! This crate does no I/O and depends on no runtime, so every other crate can
//! use it without pulling in storage or network code.

pub mod batch;
pub mod component;
pub mod config;
pub mod dead_letter;
pub mod error;
pub mod event;
pub mod json_doc;
pub mod member_name;
pub mod readiness;
pub mod retry;
pub mod secret;
pub mod telemetry;

pub use batch::{Delivery, DeliveryId, FileRange, NewBatch, count_lines, is_replay, mtime_ns, replay_key, split_lines};
pub use component::{Accepted, BatchInfo, FlushReport, Flushing, PendingCommit, Sink, Transform, TransformOutput};
pub use dead_letter::{DeadLetter, Rejected, reason};
pub use error::{ErrorClass, StageError, is_connection_error};
pub use event::{Event, json_kind, parse_object, pointer_tokens};
pub use json_doc::JsonDoc;
pub use member_name::same_name;
pub use secret::{Secret, StorageOptions};

/// Milliseconds since the Unix epoch, the time unit of queue and dead-letter records.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
