//! Stage errors, classified once where they arise so the runtime knows what
//! to do: retry the batch later, or stop the pipeline. Per-event problems are
//! not errors; they are `Rejected` values that become dead letters.

/// What the runtime does with a failed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient (storage unavailable, conflict): retry with backoff; the
    /// batch stays unacknowledged and is redelivered if the process dies.
    Retriable,
    /// The pipeline cannot go on (misconfiguration found at run time).
    Fatal,
}

/// An error from a transform or sink.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StageError {
    pub class: ErrorClass,
    pub message: String,
}

impl StageError {
    pub fn retriable(message: impl std::fmt::Display) -> Self {
        StageError {
            class: ErrorClass::Retriable,
            message: message.to_string(),
        }
    }

    pub fn fatal(message: impl std::fmt::Display) -> Self {
        StageError {
            class: ErrorClass::Fatal,
            message: message.to_string(),
        }
    }

    pub fn is_retriable(&self) -> bool {
        self.class == ErrorClass::Retriable
    }
}
