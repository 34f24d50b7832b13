//! Stage errors, classified once where they arise so the runtime knows what
//! to do: retry the batch later, or stop the pipeline. Per-event problems are
//! not errors; they are `Rejected` values that become dead letters.

/// What the runtime does with a failed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient (conflict, a refused write): retry with backoff; the
    /// delivery counts as an attempt.
    Retriable,
    /// The backend cannot be reached (connection refused, reset, timed out):
    /// retry with backoff until it is back; no attempt is spent, as it is
    /// not the batch's fault.
    Unavailable,
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

    pub fn unavailable(message: impl std::fmt::Display) -> Self {
        StageError {
            class: ErrorClass::Unavailable,
            message: message.to_string(),
        }
    }

    /// A retriable error from talking to a backend: `Unavailable` when
    /// `error` says the connection failed ([`is_connection_error`]).
    pub fn from_backend(message: impl std::fmt::Display, error: &(dyn std::error::Error + 'static)) -> Self {
        if is_connection_error(error) {
            StageError::unavailable(message)
        } else {
            StageError::retriable(message)
        }
    }

    pub fn fatal(message: impl std::fmt::Display) -> Self {
        StageError {
            class: ErrorClass::Fatal,
            message: message.to_string(),
        }
    }

    /// Worth another try (the backend may be unavailable).
    pub fn is_retriable(&self) -> bool {
        matches!(self.class, ErrorClass::Retriable | ErrorClass::Unavailable)
    }

    pub fn is_unavailable(&self) -> bool {
        self.class == ErrorClass::Unavailable
    }
}

/// Whether an error, or one it was caused by, says a connection could not
/// be made or was lost: an I/O error of a connection kind, or one whose
/// text says so (clients that keep only the text of their cause).
pub fn is_connection_error(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::*;
    const PHRASES: [&str; 9] = [
        "connection refused",
        "connection reset",
        "connection closed",
        "broken pipe",
        "timed out",
        "error sending request",
        "dns error",
        "no route to host",
        "network is unreachable",
    ];
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | NotConnected
                    | BrokenPipe
                    | TimedOut
                    | UnexpectedEof
                    | HostUnreachable
                    | NetworkUnreachable
                    | AddrNotAvailable
            )
        {
            return true;
        }
        let text = e.to_string().to_ascii_lowercase();
        if PHRASES.iter().any(|p| text.contains(p)) {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("writing the batch")]
    struct Wrapper(#[source] std::io::Error);

    #[test]
    fn connection_errors_are_found_through_their_causes() {
        let refused = Wrapper(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(is_connection_error(&refused));
        assert!(StageError::from_backend("pg", &refused).is_unavailable());
        let text_only = std::io::Error::other("Generic S3 error: error sending request for url");
        assert!(is_connection_error(&text_only));
        let refusal = Wrapper(std::io::Error::other("duplicate key value violates unique constraint"));
        assert!(!is_connection_error(&refusal));
        let e = StageError::from_backend("pg", &refusal);
        assert!(e.is_retriable() && !e.is_unavailable());
    }
}
