//! Telemetry of each kind of component: handles made once per component
//! (so the hot path never formats a label), and methods named after what
//! happened that record the metric and write the log line together. Log
//! lines carry `sluice::<kind>` targets, so `RUST_LOG=sluice=debug` (and
//! the CLI's default filter) covers them.

use std::{
    collections::BTreeSet,
    fmt::Display,
    sync::{Arc, Mutex},
    time::Duration,
};

use metrics::{Counter, Gauge, Histogram};

use super::catalogue::*;
use crate::readiness::Readiness;

/// Dead letters a component stored, by reason (reasons are open-ended, so
/// their counters are made when first seen).
fn dead_letter(component: &str, reason: &str) {
    DEAD_LETTERS.counter(&[component, reason]).increment(1);
}

/// The services a source calls: its upstream, and an objects source's
/// notification inbox.
const UPSTREAM: &str = "upstream";
const NOTIFICATIONS: &str = "notifications";

/// A source's metrics, and whether its upstream services answer: one is
/// down from a failed call (gauge 0, `/ready` names `source NAME`, one
/// warning) until a call to it succeeds (one line saying it is back).
#[derive(Clone)]
pub struct SourceTelemetry {
    name: String,
    received_events: Counter,
    received_bytes: Counter,
    last_event: Gauge,
    backpressure_waits: Counter,
    upstream_up: Gauge,
    /// The services (`upstream`, `notifications`) whose last call failed.
    services_down: Arc<Mutex<BTreeSet<&'static str>>>,
    readiness: Arc<Readiness>,
}

impl SourceTelemetry {
    pub fn new(name: &str) -> SourceTelemetry {
        let upstream_up = SOURCE_UPSTREAM_UP.gauge(&[name]);
        upstream_up.set(1.0);
        SourceTelemetry {
            name: name.to_string(),
            received_events: COMPONENT_RECEIVED_EVENTS.counter(&[name]),
            received_bytes: COMPONENT_RECEIVED_BYTES.counter(&[name]),
            last_event: SOURCE_LAST_EVENT_TIMESTAMP.gauge(&[name]),
            backpressure_waits: SOURCE_BACKPRESSURE_WAITS.counter(&[name]),
            upstream_up,
            services_down: Arc::default(),
            readiness: Arc::default(),
        }
    }

    /// The same, telling `readiness` when the upstream goes and comes back.
    pub fn reporting_to(self, readiness: Arc<Readiness>) -> SourceTelemetry {
        SourceTelemetry { readiness, ..self }
    }

    /// Events and their bytes are durable in the queue.
    pub fn enqueued(&self, events: u64, bytes: u64) {
        self.received_events.increment(events);
        self.received_bytes.increment(bytes);
        self.last_event.set(crate::now_ms() as f64 / 1000.0);
    }

    /// The queue was full; the source waits.
    pub fn backpressure(&self) {
        self.backpressure_waits.increment(1);
    }

    /// An upstream `operation` (`receive`, `delete`, ...) failed and will
    /// be retried: the upstream counts as down until a call succeeds.
    pub fn upstream_error(&self, operation: &str, error: &dyn Display) {
        SOURCE_ERRORS.counter(&[&self.name, operation]).increment(1);
        self.service_failed(UPSTREAM, operation, error);
    }

    /// The upstream answered an `operation` but refused some of its items
    /// (an expired receipt handle): counted and logged, the upstream is up.
    pub fn upstream_refused(&self, operation: &str, error: &dyn Display) {
        SOURCE_ERRORS.counter(&[&self.name, operation]).increment(1);
        self.upstream_answered();
        tracing::warn!(target: "sluice::source", source = %self.name, operation, error = %error, "upstream {operation} refused; retrying");
    }

    /// An upstream call succeeded: the upstream answers again if it did not.
    pub fn upstream_answered(&self) {
        self.service_answered(UPSTREAM);
    }

    /// Pulling notifications (an objects source's inbox, a service apart
    /// from the object store) failed and will be retried.
    pub fn notifications_error(&self, error: &dyn Display) {
        SOURCE_ERRORS.counter(&[&self.name, NOTIFICATIONS]).increment(1);
        self.service_failed(NOTIFICATIONS, NOTIFICATIONS, error);
    }

    /// Notifications were pulled: the inbox answers again if it did not.
    pub fn notifications_answered(&self) {
        self.service_answered(NOTIFICATIONS);
    }

    fn service_failed(&self, service: &'static str, operation: &str, error: &dyn Display) {
        let mut down = self.services_down.lock().unwrap_or_else(|e| e.into_inner());
        if !down.insert(service) {
            tracing::debug!(target: "sluice::source", source = %self.name, operation, error = %error, "upstream {operation} failed again; retrying");
            return;
        }
        if down.len() == 1 {
            self.upstream_up.set(0.0);
            self.readiness.backend_down(&format!("source {}", self.name));
        }
        tracing::warn!(target: "sluice::source", source = %self.name, service, operation, error = %error, "the source's upstream cannot be reached; it retries with backoff");
    }

    fn service_answered(&self, service: &'static str) {
        let mut down = self.services_down.lock().unwrap_or_else(|e| e.into_inner());
        if !down.remove(service) {
            return;
        }
        tracing::info!(target: "sluice::source", source = %self.name, service, "the source's upstream is back");
        if down.is_empty() {
            self.upstream_up.set(1.0);
            self.readiness.backend_up(&format!("source {}", self.name));
        }
    }

    /// How many shards this replica reads.
    pub fn shards_held(&self, n: usize) {
        SOURCE_SHARDS_HELD.gauge(&[&self.name]).set(n as f64);
    }

    /// Messages taken from the upstream service (which therefore answers).
    pub fn upstream_received(&self, messages: u64) {
        SOURCE_UPSTREAM_RECEIVED.counter(&[&self.name]).increment(messages);
        self.upstream_answered();
    }

    /// Upstream messages released (deleted) after their events were enqueued.
    pub fn upstream_settled(&self, messages: u64) {
        SOURCE_UPSTREAM_SETTLED.counter(&[&self.name]).increment(messages);
        if messages > 0 {
            self.upstream_answered();
        }
    }

    /// How old the oldest message of the last receive was.
    pub fn upstream_lag(&self, age: Duration) {
        SOURCE_UPSTREAM_LAG.gauge(&[&self.name]).set(age.as_secs_f64());
    }

    /// How many records a consumer group is behind the end of a partition.
    pub fn partition_lag(&self, topic: &str, partition: i32, records: i64) {
        SOURCE_PARTITION_LAG
            .gauge(&[&self.name, topic, &partition.to_string()])
            .set(records as f64);
    }

    /// The upstream queue's own counts.
    pub fn upstream_backlog(&self, visible: u64, in_flight: u64, delayed: u64) {
        for (state, n) in [("visible", visible), ("in_flight", in_flight), ("delayed", delayed)] {
            SOURCE_UPSTREAM_BACKLOG.gauge(&[&self.name, state]).set(n as f64);
        }
        self.upstream_answered();
    }

    /// The collector listens: its 503 counter exists (at 0) from here, so
    /// an alert on its rate sees the first one.
    pub fn collector_listening(&self) {
        HTTP_THROTTLED.counter(&[&self.name]).absolute(0);
    }

    /// The collector answered 503 (queue full).
    pub fn throttled(&self) {
        HTTP_THROTTLED.counter(&[&self.name]).increment(1);
    }

    /// The collector refused a request (`reason`: unauthorized,
    /// rate_limited, body_timeout).
    pub fn refused(&self, reason: &str) {
        HTTP_REFUSED.counter(&[&self.name, reason]).increment(1);
    }

    /// Whether this replica holds the source's lease.
    pub fn lease_held(&self, held: bool) {
        SOURCE_LEASE_HELD.gauge(&[&self.name]).set(if held { 1.0 } else { 0.0 });
    }

    /// New object versions found (`by`: sweep or notification).
    pub fn objects_found(&self, by: &str, n: u64) {
        OBJECTS_FOUND.counter(&[&self.name, by]).increment(n);
    }

    /// Objects of an objects source's ledger in `state`.
    pub fn objects_in_state(&self, state: &str, n: u64) {
        OBJECTS.gauge(&[&self.name, state]).set(n as f64);
    }

    /// An object read's outcome: `done`, `retry`, `unavailable` or `failed`.
    pub fn object_read(&self, outcome: &str) {
        OBJECTS_READ.counter(&[&self.name, outcome]).increment(1);
    }
}

/// A transform's metrics.
pub struct TransformTelemetry {
    name: String,
    seconds: Histogram,
    dropped: Counter,
    received: Counter,
    sent: Counter,
}

impl TransformTelemetry {
    pub fn new(name: &str) -> TransformTelemetry {
        TransformTelemetry {
            name: name.to_string(),
            seconds: TRANSFORM_SECONDS.histogram(&[name]),
            dropped: TRANSFORM_DROPPED_EVENTS.counter(&[name]),
            received: COMPONENT_RECEIVED_EVENTS.counter(&[name]),
            sent: COMPONENT_SENT_EVENTS.counter(&[name]),
        }
    }

    /// One batch went through: events in, out, left out, and the reasons of
    /// those refused.
    pub fn processed<'a>(
        &self,
        took: Duration,
        received: u64,
        sent: u64,
        dropped: u64,
        refused: impl Iterator<Item = &'a str>,
    ) {
        self.seconds.record(took.as_secs_f64());
        self.received.increment(received);
        self.sent.increment(sent);
        self.dropped.increment(dropped);
        for reason in refused {
            dead_letter(&self.name, reason);
        }
    }
}

/// What a sink's flush reports, for its telemetry.
pub struct Committed {
    pub rows: u64,
    pub files: u64,
    pub batches: u64,
    pub duplicates_dropped: u64,
    pub took: Duration,
}

/// A sink's metrics.
pub struct SinkTelemetry {
    name: String,
    received: Counter,
    sent: Counter,
    already_committed: Counter,
    commits: Counter,
    last_commit: Gauge,
    flush_seconds: Histogram,
    files: Counter,
    duplicates_dropped: Counter,
    errors: Counter,
}

impl SinkTelemetry {
    /// A sink's telemetry; `flush_interval` is exported beside the time of
    /// its last commit (its start, until it commits).
    pub fn new(name: &str, flush_interval: Duration) -> SinkTelemetry {
        SINK_FLUSH_INTERVAL.gauge(&[name]).set(flush_interval.as_secs_f64());
        let last_commit = SINK_LAST_COMMIT_TIMESTAMP.gauge(&[name]);
        last_commit.set(crate::now_ms() as f64 / 1000.0);
        SinkTelemetry {
            last_commit,
            name: name.to_string(),
            received: COMPONENT_RECEIVED_EVENTS.counter(&[name]),
            sent: COMPONENT_SENT_EVENTS.counter(&[name]),
            already_committed: SINK_ALREADY_COMMITTED_BATCHES.counter(&[name]),
            commits: SINK_COMMITS.counter(&[name]),
            flush_seconds: SINK_FLUSH_SECONDS.histogram(&[name]),
            files: SINK_FILES.counter(&[name]),
            duplicates_dropped: SINK_DUPLICATES_DROPPED.counter(&[name]),
            errors: COMPONENT_ERRORS.counter(&[name]),
        }
    }

    pub fn received(&self, events: u64) {
        self.received.increment(events);
    }

    /// A redelivered batch was found in the sink's log.
    pub fn already_committed(&self) {
        self.already_committed.increment(1);
    }

    /// An event the sink refused became a dead letter.
    pub fn refused(&self, reason: &str) {
        dead_letter(&self.name, reason);
    }

    pub fn committed(&self, c: &Committed) {
        let seconds = c.took.as_secs_f64();
        self.flush_seconds.record(seconds);
        self.commits.increment(1);
        self.last_commit.set(crate::now_ms() as f64 / 1000.0);
        self.sent.increment(c.rows);
        self.files.increment(c.files);
        self.duplicates_dropped.increment(c.duplicates_dropped);
        tracing::debug!(target: "sluice::sink", sink = %self.name, rows = c.rows, files = c.files, batches = c.batches, seconds, "committed");
    }

    /// A flush or an accept failed; its batches will be delivered again
    /// after `retry_in` (a fatal error is logged by whoever stops).
    /// The sink is open: its backend answered.
    pub fn backend_open(&self) {
        SINK_BACKEND_UP.gauge(&[&self.name]).set(1.0);
    }

    /// A flush could not reach the backend (it was up until now).
    pub fn backend_lost(&self, error: &dyn Display) {
        SINK_BACKEND_UP.gauge(&[&self.name]).set(0.0);
        tracing::warn!(target: "sluice::sink", sink = %self.name, error = %error, "the sink's backend cannot be reached; its batches wait for it without spending attempts, and /ready is false until it is back");
    }

    /// A flush succeeded after the backend was lost.
    pub fn backend_back(&self) {
        SINK_BACKEND_UP.gauge(&[&self.name]).set(1.0);
        tracing::info!(target: "sluice::sink", sink = %self.name, "the sink's backend is back");
    }

    pub fn failed(&self, error: &dyn Display, retry_in: Option<Duration>) {
        self.errors.increment(1);
        if let Some(retry_in) = retry_in {
            tracing::warn!(target: "sluice::sink", sink = %self.name, error = %error, ?retry_in, "sink failed; its batches will be delivered again");
        }
    }
}

/// What one compaction run of a table did, for its telemetry.
pub struct Compacted {
    pub partitions: u64,
    pub files_in: u64,
    pub files_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duplicates_removed: u64,
    pub conflicts: u64,
    pub seconds: f64,
}

/// Scheduled compaction of one lake sink.
pub struct CompactionTelemetry {
    name: String,
}

impl CompactionTelemetry {
    /// A table's compaction telemetry; its run and error counters exist
    /// (at 0) from here, so an alert on their increase sees the first one.
    pub fn new(sink: &str) -> CompactionTelemetry {
        COMPACTION_RUNS.counter(&[sink]).absolute(0);
        COMPACTION_ERRORS.counter(&[sink]).absolute(0);
        CompactionTelemetry { name: sink.to_string() }
    }

    pub fn finished(&self, c: &Compacted) {
        let n = [self.name.as_str()];
        COMPACTION_RUNS.counter(&n).increment(1);
        COMPACTION_SECONDS.histogram(&n).record(c.seconds);
        COMPACTION_CONFLICTS.counter(&n).increment(c.conflicts);
        COMPACTION_PARTITIONS.counter(&n).increment(c.partitions);
        COMPACTION_FILES_IN.counter(&n).increment(c.files_in);
        COMPACTION_FILES_OUT.counter(&n).increment(c.files_out);
        COMPACTION_BYTES_IN.counter(&n).increment(c.bytes_in);
        COMPACTION_BYTES_OUT.counter(&n).increment(c.bytes_out);
        COMPACTION_DUPLICATES_REMOVED
            .counter(&n)
            .increment(c.duplicates_removed);
        if c.partitions > 0 {
            tracing::info!(
                target: "sluice::compaction",
                sink = %self.name,
                partitions = c.partitions,
                files_in = c.files_in,
                files_out = c.files_out,
                duplicates_removed = c.duplicates_removed,
                seconds = c.seconds,
                "compacted"
            );
        }
    }

    pub fn failed(&self, what: &str, error: &dyn Display) {
        COMPACTION_ERRORS.counter(&[&self.name]).increment(1);
        tracing::warn!(target: "sluice::compaction", sink = %self.name, error = %error, "{what} failed; retrying at the next interval");
    }

    /// Another replica holds the lease.
    pub fn skipped_lease_held(&self) {
        COMPACTION_SKIPPED.counter(&[&self.name, "lease_held"]).increment(1);
    }
}

/// The queue and dead-letter store, as the runtime sees them.
pub struct QueueTelemetry;

/// A snapshot of the queue for its gauges.
pub struct QueueState {
    pub batches: u64,
    pub bytes: u64,
    pub in_flight: u64,
    pub oldest_age: Duration,
}

/// The queue operations whose failures the engine counts.
const QUEUE_OPERATIONS: [&str; 6] = ["receive", "ack", "nack", "release", "extend", "stats"];

impl QueueTelemetry {
    /// Makes the queue's counters exist at 0, so an alert on their
    /// increase sees the first acknowledgement, redelivery or error.
    pub fn start() {
        QUEUE_ACKED_BATCHES.counter(&[]).absolute(0);
        QUEUE_REDELIVERED_BATCHES.counter(&[]).absolute(0);
        for operation in QUEUE_OPERATIONS {
            QUEUE_ERRORS.counter(&[operation]).absolute(0);
        }
    }

    pub fn state(s: &QueueState) {
        QUEUE_DEPTH_BATCHES.gauge(&[]).set(s.batches as f64);
        QUEUE_BYTES.gauge(&[]).set(s.bytes as f64);
        QUEUE_IN_FLIGHT_BATCHES.gauge(&[]).set(s.in_flight as f64);
        QUEUE_OLDEST_BATCH_AGE.gauge(&[]).set(s.oldest_age.as_secs_f64());
    }

    pub fn dead_letters_held<'a>(total: u64, by_reason: impl Iterator<Item = (&'a str, u64)>) {
        DEAD_LETTER_DEPTH.gauge(&[]).set(total as f64);
        for (reason, n) in by_reason {
            DEAD_LETTER_DEPTH_BY_REASON.gauge(&[reason]).set(n as f64);
        }
    }

    pub fn acked(batches: u64) {
        QUEUE_ACKED_BATCHES.counter(&[]).increment(batches);
    }

    /// Batches received that had been delivered before.
    pub fn redelivered(batches: u64) {
        QUEUE_REDELIVERED_BATCHES.counter(&[]).increment(batches);
    }

    /// A queue operation failed; the runtime retries after a pause.
    pub fn error(operation: &str, error: &dyn Display) {
        Self::failed(operation);
        tracing::warn!(target: "sluice::queue", operation, error = %error, "queue operation failed; retrying");
    }

    /// A queue operation failed (its caller says what follows).
    pub fn failed(operation: &str) {
        QUEUE_ERRORS.counter(&[operation]).increment(1);
    }
}

/// A lookup's reference table.
pub struct LookupTelemetry {
    name: String,
}

impl LookupTelemetry {
    pub fn new(name: &str) -> LookupTelemetry {
        LookupTelemetry { name: name.to_string() }
    }

    pub fn loaded(&self, rows: usize) {
        LOOKUP_ROWS.gauge(&[&self.name]).set(rows as f64);
    }

    pub fn age(&self, age: Duration) {
        LOOKUP_AGE.gauge(&[&self.name]).set(age.as_secs_f64());
    }

    pub fn reload_failed(&self, error: &dyn Display) {
        LOOKUP_REFRESH_FAILURES.counter(&[&self.name]).increment(1);
        tracing::warn!(target: "sluice::lookup", transform = %self.name, error = %error, "loading the reference table failed; keeping the last good one");
    }
}

/// What a `documents` stage did with one batch.
pub struct DocumentsApplied {
    pub applied: u64,
    pub noops: u64,
    pub stale_parts: u64,
    pub stored: u64,
    pub replayed: bool,
}

/// A `documents` stage and its projections.
pub struct DocumentsTelemetry {
    name: String,
}

impl DocumentsTelemetry {
    pub fn new(name: &str) -> DocumentsTelemetry {
        DocumentsTelemetry { name: name.to_string() }
    }

    pub fn applied(&self, a: &DocumentsApplied) {
        let n = [self.name.as_str()];
        DOCUMENTS_CHANGES_APPLIED.counter(&n).increment(a.applied);
        DOCUMENTS_NOOPS.counter(&n).increment(a.noops);
        DOCUMENTS_STALE_PARTS.counter(&n).increment(a.stale_parts);
        DOCUMENTS_STORED.counter(&n).increment(a.stored);
        if a.replayed {
            DOCUMENTS_REPLAYED_BATCHES.counter(&n).increment(1);
        }
    }

    /// Read models written, with the lag of each from its document's arrival.
    pub fn projected(&self, written: u64, lags: impl Iterator<Item = Duration>) {
        PROJECTION_WRITES.counter(&[&self.name]).increment(written);
        let lag = PROJECTION_LAG.histogram(&[&self.name]);
        for l in lags {
            lag.record(l.as_secs_f64());
        }
    }
}
