//! Dead letters: input that cannot be processed, kept with a machine-readable
//! reason, a human-readable detail and the original bytes so it can be
//! inspected and redriven after a fix.

use bytes::Bytes;

use crate::event::Event;

pub mod reason;

/// An event a stage refused, with why.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub event: Event,
    pub reason: String,
    pub detail: String,
}

impl Rejected {
    pub fn new(event: Event, reason: impl Into<String>, detail: impl Into<String>) -> Self {
        Rejected {
            event,
            reason: reason.into(),
            detail: detail.into(),
        }
    }
}

/// A dead letter as stored. `(batch_key, line)` identifies it, so storing the
/// same dead letter twice (after a redelivery) keeps one copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub batch_key: String,
    pub line: u32,
    pub source: String,
    /// The component that refused it (`standardize`, `lake`, `queue`, ...).
    pub component: String,
    pub reason: String,
    pub detail: String,
    pub bytes: Bytes,
    pub at_ms: i64,
}

impl DeadLetter {
    /// A dead letter stored now: line `line` of batch `batch_key`, which
    /// came from `source`, refused by `component`.
    pub fn new(
        batch_key: impl Into<String>,
        line: u32,
        source: impl Into<String>,
        component: impl Into<String>,
        reason: impl Into<String>,
        detail: impl Into<String>,
        bytes: Bytes,
    ) -> Self {
        DeadLetter {
            batch_key: batch_key.into(),
            line,
            source: source.into(),
            component: component.into(),
            reason: reason.into(),
            detail: detail.into(),
            bytes,
            at_ms: crate::now_ms(),
        }
    }

    /// The event `component` refused, from batch `batch_key` of `source`.
    pub fn refused(batch_key: &str, source: &str, component: &str, rejected: Rejected) -> Self {
        let Rejected { event, reason, detail } = rejected;
        DeadLetter::new(batch_key, event.line, source, component, reason, detail, event.raw)
    }
}
