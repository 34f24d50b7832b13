//! Deterministic test data for Sluice, with its oracle.
//!
//! Two streams: [`clickstream`] (web events as NDJSON, with producer
//! duplicates, malformed lines of every kind the validator must catch, late
//! events and hostile values) and [`cdc`] (document change events: partial
//! updates, explicit nulls, deletes, out-of-order and duplicated deliveries).
//! Each returns what a correct pipeline must end up with, so tests, the bench
//! and `sluice demo` compare their output with it. The same seed always gives
//! the same bytes.

mod cdc;
mod clickstream;
mod rng;

pub use cdc::{CdcOptions, CdcOracle, cdc};
pub use clickstream::{ClickstreamOptions, ClickstreamOracle, clickstream};

/// The JSON Schema (2020-12) every valid clickstream event satisfies and
/// every malformed line breaks.
pub const CLICKSTREAM_SCHEMA: &str = include_str!("../schemas/clickstream.schema.json");

/// Where [`CLICKSTREAM_SCHEMA`] lives in the source tree, for pipeline files
/// written by tests and the bench.
pub fn clickstream_schema_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/clickstream.schema.json")
}

/// `2026-11-01T00:00:00Z`, where both streams start by default.
pub fn default_start() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_793_491_200, 0).expect("in range")
}

/// Event time as the generator writes it: milliseconds, `Z`.
fn iso(ts: chrono::DateTime<chrono::Utc>) -> String {
    ts.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}
