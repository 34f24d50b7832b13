//! What `sluice status` reports, as `--json` prints it. A field is `null`
//! when the pipeline is not running and nothing it left says it (rates,
//! a sink's rows), or when the engine does not export it for that
//! component (a lease only an `objects` source takes).

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Report {
    pub pipeline: String,
    pub file: String,
    /// `running` (its API answered) or `stopped`.
    pub state: &'static str,
    /// The API read, when running.
    pub api: Option<String>,
    pub verdict: Verdict,
    pub sources: Vec<SourceRow>,
    pub queue: QueueRow,
    pub transforms: Vec<TransformRow>,
    pub sinks: Vec<SinkRow>,
    pub dead_letters: DeadLetters,
}

/// Healthy, or degraded with why (one reason per problem found).
#[derive(Debug, Default, Serialize)]
pub struct Verdict {
    pub healthy: bool,
    pub reasons: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct SourceRow {
    pub name: String,
    /// Events enqueued since the engine started.
    pub events: Option<u64>,
    pub events_per_sec: Option<f64>,
    pub last_input_secs_ago: Option<f64>,
    pub errors: Option<u64>,
    pub backpressure_waits: Option<u64>,
    pub upstream_up: Option<bool>,
    pub lease_held: Option<bool>,
}

#[derive(Debug, Default, Serialize)]
pub struct QueueRow {
    pub batches: Option<u64>,
    pub bytes: Option<u64>,
    pub in_flight: Option<u64>,
    pub oldest_age_secs: Option<f64>,
    pub acked: Option<u64>,
    pub redelivered: Option<u64>,
}

#[derive(Debug, Default, Serialize)]
pub struct TransformRow {
    pub name: String,
    pub events_in: Option<u64>,
    pub events_out: Option<u64>,
    pub dropped: Option<u64>,
    pub dead_letters: Option<u64>,
}

#[derive(Debug, Default, Serialize)]
pub struct SinkRow {
    pub name: String,
    /// Rows committed since the engine started.
    pub rows: Option<u64>,
    pub rows_per_sec: Option<f64>,
    pub commits: Option<u64>,
    pub last_commit_secs_ago: Option<f64>,
    pub flush_p99_secs: Option<f64>,
    pub backend_up: Option<bool>,
    /// A lake sink's table version (its last commit).
    pub table_version: Option<i64>,
}

#[derive(Debug, Default, Serialize)]
pub struct DeadLetters {
    /// Held in the dead-letter store (`None` if it could not be read).
    pub total: Option<u64>,
    /// Most frequent first.
    pub by_reason: Vec<DeadLetterRow>,
}

#[derive(Debug, Serialize)]
pub struct DeadLetterRow {
    pub reason: String,
    pub count: u64,
    /// When the newest letter of the reason was stored (RFC 3339).
    pub newest: Option<String>,
}

impl SourceRow {
    pub fn named(name: String) -> SourceRow {
        SourceRow {
            name,
            ..Default::default()
        }
    }
}

impl TransformRow {
    pub fn named(name: String) -> TransformRow {
        TransformRow {
            name,
            ..Default::default()
        }
    }
}

impl SinkRow {
    pub fn named(name: String) -> SinkRow {
        SinkRow {
            name,
            ..Default::default()
        }
    }
}
