//! Dead letters: input that cannot be processed, kept with a machine-readable
//! reason, a human-readable detail and the original bytes so it can be
//! inspected and redriven after a fix.

use bytes::Bytes;

use crate::event::Event;

/// Reason strings that several components produce. Schema violations use
/// `schema:<instance pointer>:<keyword>`, built by the validator.
pub mod reason {
    pub const INVALID_JSON: &str = "invalid_json";
    pub const NOT_AN_OBJECT: &str = "not_an_object";
    pub const MISSING_EVENT_ID: &str = "missing_event_id";
    pub const BAD_EVENT_TIME: &str = "bad_event_time";
    pub const MISSING_EVENT_TIME: &str = "missing_event_time";
    /// A value a partition key needs (e.g. the field a bucket hashes) is absent.
    pub const MISSING_PARTITION_VALUE: &str = "missing_partition_value";
    pub const MAX_ATTEMPTS: &str = "max_attempts";
    /// A file or object that could not be read to the end (the detail names it).
    pub const UNREADABLE_INPUT: &str = "unreadable_input";
    /// A record that does not fit its input's format (a CSV row with the
    /// wrong number of cells); the input's other records go on.
    pub const BAD_RECORD: &str = "bad_record";
    /// A self-describing event whose schema key names no registered schema
    /// (or is missing or malformed), or an Avro datum whose fingerprint no
    /// registered schema has.
    pub const UNKNOWN_SCHEMA: &str = "unknown_schema";
    /// An event whose schema version cannot go into its table: a column it
    /// declares has another type there (the detail names the column).
    pub const INCOMPATIBLE_SCHEMA: &str = "incompatible_schema";
    /// A line of the `avro` transform that is not base64 of an Avro
    /// single-object datum, or does not decode with its schema.
    pub const INVALID_AVRO: &str = "invalid_avro";
    /// An object notification that is not an S3 event.
    pub const BAD_NOTIFICATION: &str = "bad_notification";
    /// Prefix of reasons for values a sink could not encode.
    pub const ENCODE_PREFIX: &str = "encode";
}

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
