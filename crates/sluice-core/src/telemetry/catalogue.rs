//! Every metric Sluice exports, defined once: name, kind, labels and what
//! it means. Code records metrics only through these definitions (the
//! handles in [`super::events`]), the Prometheus exporter describes them
//! from here, and `docs/reference/metrics.md` is rendered from here
//! ([`reference_markdown`]; a test fails when the file is stale).

use std::fmt::Write as _;

/// How a metric behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// One exported metric.
#[derive(Debug, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub kind: MetricKind,
    /// Label names, in the order handles pass their values.
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

impl Metric {
    /// A counter handle for these label values (one per label, in order).
    pub fn counter(&'static self, values: &[&str]) -> metrics::Counter {
        debug_assert_eq!(self.kind, MetricKind::Counter, "{}", self.name);
        metrics::counter!(self.name, &self.label_pairs(values))
    }

    /// A gauge handle for these label values.
    pub fn gauge(&'static self, values: &[&str]) -> metrics::Gauge {
        debug_assert_eq!(self.kind, MetricKind::Gauge, "{}", self.name);
        metrics::gauge!(self.name, &self.label_pairs(values))
    }

    /// A histogram handle for these label values.
    pub fn histogram(&'static self, values: &[&str]) -> metrics::Histogram {
        debug_assert_eq!(self.kind, MetricKind::Histogram, "{}", self.name);
        metrics::histogram!(self.name, &self.label_pairs(values))
    }

    fn label_pairs(&self, values: &[&str]) -> Vec<(&'static str, String)> {
        debug_assert_eq!(values.len(), self.labels.len(), "labels of {}", self.name);
        self.labels
            .iter()
            .zip(values)
            .map(|(name, value)| (*name, (*value).to_string()))
            .collect()
    }
}

macro_rules! catalogue {
    ($($id:ident: $kind:ident $name:literal [$($label:literal),*] $help:literal;)*) => {
        $(
            #[doc = $help]
            pub static $id: Metric = Metric {
                name: $name,
                kind: MetricKind::$kind,
                labels: &[$($label),*],
                help: $help,
            };
        )*
        /// Every metric, in the order the reference lists them.
        pub static ALL: &[&Metric] = &[$(&$id),*];
    };
}

catalogue! {
    COMPONENT_RECEIVED_EVENTS: Counter "sluice_component_received_events_total" ["component"]
        "Events a component took in: a source's events put on the queue, a transform's or sink's input.";
    COMPONENT_RECEIVED_BYTES: Counter "sluice_component_received_bytes_total" ["component"]
        "Bytes of events a source put on the queue.";
    COMPONENT_SENT_EVENTS: Counter "sluice_component_sent_events_total" ["component"]
        "Events a transform passed on, or a sink committed.";
    COMPONENT_ERRORS: Counter "sluice_component_errors_total" ["component"]
        "Failed sink flushes and commits; the batches they held are delivered again.";
    DEAD_LETTERS: Counter "sluice_dead_letters_total" ["component", "reason"]
        "Events a component refused, stored as dead letters with this reason.";
    READY: Gauge "sluice_ready" []
        "1 while /ready answers 200 (taking input, every backend answering), else 0.";
    DEAD_LETTER_DEPTH: Gauge "sluice_dead_letter_depth" []
        "Dead letters held, all reasons.";
    DEAD_LETTER_DEPTH_BY_REASON: Gauge "sluice_dead_letter_depth_by_reason" ["reason"]
        "Dead letters held with this reason.";
    QUEUE_DEPTH_BATCHES: Gauge "sluice_queue_depth_batches" []
        "Batches in the queue, in flight or waiting.";
    QUEUE_BYTES: Gauge "sluice_queue_bytes" []
        "Payload bytes in the queue.";
    QUEUE_IN_FLIGHT_BATCHES: Gauge "sluice_queue_in_flight_batches" []
        "Batches delivered and not yet acknowledged.";
    QUEUE_OLDEST_BATCH_AGE: Gauge "sluice_queue_oldest_batch_age_seconds" []
        "Age of the oldest batch in the queue.";
    QUEUE_ACKED_BATCHES: Counter "sluice_queue_acked_batches_total" []
        "Batches acknowledged after every sink they feed committed them.";
    QUEUE_REDELIVERED_BATCHES: Counter "sluice_queue_redelivered_batches_total" []
        "Batches delivered again (a failure, a release, an expired visibility timeout or a crash before their acknowledgement).";
    QUEUE_ERRORS: Counter "sluice_queue_errors_total" ["operation"]
        "Queue operations (receive, ack, nack, extend, stats) that failed and were retried.";
    SOURCE_LAST_EVENT_TIMESTAMP: Gauge "sluice_source_last_event_timestamp_seconds" ["component"]
        "Unix time a source last put events on the queue (for data-stopped alerts).";
    SOURCE_BACKPRESSURE_WAITS: Counter "sluice_source_backpressure_waits_total" ["component"]
        "Times a source found the queue full and waited.";
    SOURCE_ERRORS: Counter "sluice_source_errors_total" ["component", "operation"]
        "Errors of a source's upstream by operation (list, receive, delete, ...), retried.";
    SOURCE_SHARDS_HELD: Gauge "sluice_source_shards_held" ["component"]
        "Shards of a stream (Kinesis) this replica holds the lease of and reads.";
    SOURCE_UPSTREAM_RECEIVED: Counter "sluice_source_upstream_received_total" ["component"]
        "Messages or records a source took from its upstream service (SQS messages, Kinesis records), before any was enqueued.";
    SOURCE_UPSTREAM_SETTLED: Counter "sluice_source_upstream_settled_total" ["component"]
        "Upstream messages or records released once their events were durable in the queue (SQS messages deleted, Kinesis records checkpointed).";
    SOURCE_UPSTREAM_LAG: Gauge "sluice_source_upstream_lag_seconds" ["component"]
        "How far a source is behind its upstream: the oldest message of the last SQS receive (SentTimestamp), or Kinesis's MillisBehindLatest.";
    SOURCE_PARTITION_LAG: Gauge "sluice_source_partition_lag_records" ["component", "topic", "partition"]
        "Records a Kafka source's consumer group is behind the end of each partition this replica holds (librdkafka's consumer_lag).";
    SOURCE_UPSTREAM_BACKLOG: Gauge "sluice_source_upstream_backlog_messages" ["component", "state"]
        "Messages waiting upstream as the service counts them (SQS: visible, in_flight, delayed).";
    SOURCE_LEASE_HELD: Gauge "sluice_source_lease_held" ["component"]
        "1 while this replica holds the source's lease (it sweeps and reads), else 0.";
    SOURCE_UPSTREAM_UP: Gauge "sluice_source_upstream_up" ["component"]
        "1 while the source's upstream service answers, 0 from a failed call until one succeeds.";
    SINK_LAST_COMMIT_TIMESTAMP: Gauge "sluice_sink_last_commit_timestamp_seconds" ["component"]
        "Unix time of the sink's last commit (of its start until the first), for data-stopped alerts.";
    SINK_FLUSH_INTERVAL: Gauge "sluice_sink_flush_interval_seconds" ["component"]
        "The sink's configured flush interval: a sink fed input commits at least this often.";
    SINK_BACKEND_UP: Gauge "sluice_sink_backend_up" ["component"]
        "1 while the sink's backend answers, 0 from a flush that could not reach it until one succeeds.";
    HTTP_THROTTLED: Counter "sluice_http_throttled_total" ["component"]
        "Requests the collector answered 503 because the queue was full.";
    HTTP_REFUSED: Counter "sluice_http_refused_total" ["component", "reason"]
        "Requests the collector refused before storing anything: unauthorized (401), rate_limited (429), body_timeout (408).";
    OBJECTS: Gauge "sluice_objects" ["component", "state"]
        "Objects in an objects source's ledger by state (pending, reading, done, failed).";
    OBJECTS_FOUND: Counter "sluice_objects_found_total" ["component", "by"]
        "New object versions found, by sweep or by notification.";
    OBJECTS_READ: Counter "sluice_objects_read_total" ["component", "outcome"]
        "Object reads by outcome: done (read to the end), retry (failed, tried again), unavailable (the store could not be reached; no attempt spent), failed (given up).";
    TRANSFORM_SECONDS: Histogram "sluice_transform_seconds" ["component"]
        "Time a transform took per batch.";
    TRANSFORM_DROPPED_EVENTS: Counter "sluice_transform_dropped_events_total" ["component"]
        "Events a transform left out on purpose (a filter, an empty jq output).";
    LOOKUP_ROWS: Gauge "sluice_lookup_rows" ["component"]
        "Rows of a lookup's reference table.";
    LOOKUP_AGE: Gauge "sluice_lookup_age_seconds" ["component"]
        "Age of the reference table a lookup uses.";
    LOOKUP_REFRESH_FAILURES: Counter "sluice_lookup_refresh_failures_total" ["component"]
        "Reloads of a reference table that failed (the last good table stays).";
    DOCUMENTS_CHANGES_APPLIED: Counter "sluice_documents_changes_applied_total" ["component"]
        "Change events that altered a document.";
    DOCUMENTS_NOOPS: Counter "sluice_documents_noops_total" ["component"]
        "Change events that altered nothing (emitted nothing).";
    DOCUMENTS_STALE_PARTS: Counter "sluice_documents_stale_parts_total" ["component"]
        "Parts of change events older than what a path holds.";
    DOCUMENTS_STORED: Counter "sluice_documents_stored_total" ["component"]
        "Document records written to the store.";
    DOCUMENTS_REPLAYED_BATCHES: Counter "sluice_documents_replayed_batches_total" ["component"]
        "Redelivered batches whose documents were emitted again from the store's record.";
    PROJECTION_WRITES: Counter "sluice_projection_writes_total" ["component"]
        "Read-model entries written to Redis.";
    PROJECTION_LAG: Histogram "sluice_projection_lag_seconds" ["component"]
        "Time from a document's arrival to its read model being written.";
    SINK_COMMITS: Counter "sluice_sink_commits_total" ["component"]
        "Commits of a sink.";
    SINK_FLUSH_SECONDS: Histogram "sluice_sink_flush_seconds" ["component"]
        "Time a sink's flush (write and commit) took.";
    SINK_FILES: Counter "sluice_sink_files_total" ["component"]
        "Files a lake sink wrote.";
    SINK_DUPLICATES_DROPPED: Counter "sluice_sink_duplicates_dropped_total" ["component"]
        "Events dropped as producer duplicates within the dedupe window.";
    SINK_ALREADY_COMMITTED_BATCHES: Counter "sluice_sink_already_committed_batches_total" ["component"]
        "Redelivered batches a sink found already committed (acknowledged without writing).";
    COMPACTION_RUNS: Counter "sluice_compaction_runs_total" ["component"]
        "Compaction runs of a lake sink's table.";
    COMPACTION_ERRORS: Counter "sluice_compaction_errors_total" ["component"]
        "Compaction runs (or lease requests) that failed; retried at the next interval.";
    COMPACTION_SKIPPED: Counter "sluice_compaction_skipped_total" ["component", "reason"]
        "Scheduled compactions skipped (lease_held: another replica holds the lease).";
    COMPACTION_SECONDS: Histogram "sluice_compaction_seconds" ["component"]
        "Time a compaction run took.";
    COMPACTION_PARTITIONS: Counter "sluice_compaction_partitions_total" ["component"]
        "Partitions compacted.";
    COMPACTION_FILES_IN: Counter "sluice_compaction_files_in_total" ["component"]
        "Files compaction read.";
    COMPACTION_FILES_OUT: Counter "sluice_compaction_files_out_total" ["component"]
        "Files compaction wrote.";
    COMPACTION_BYTES_IN: Counter "sluice_compaction_bytes_in_total" ["component"]
        "Bytes compaction read.";
    COMPACTION_BYTES_OUT: Counter "sluice_compaction_bytes_out_total" ["component"]
        "Bytes compaction wrote.";
    COMPACTION_DUPLICATES_REMOVED: Counter "sluice_compaction_duplicates_removed_total" ["component"]
        "Rows compaction dropped as duplicates of an earlier event id.";
    COMPACTION_CONFLICTS: Counter "sluice_compaction_conflicts_total" ["component"]
        "Partitions whose compaction lost a race and was planned again.";
}

/// Gives the installed recorder every metric's help text.
pub fn describe_all() {
    for m in ALL {
        match m.kind {
            MetricKind::Counter => metrics::describe_counter!(m.name, m.help),
            MetricKind::Gauge => metrics::describe_gauge!(m.name, m.help),
            MetricKind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// The metric a Prometheus sample name belongs to (histograms are exported
/// as summaries: `<name>_sum`, `<name>_count` and quantile samples).
pub fn find(sample: &str) -> Option<&'static Metric> {
    let summary_of = sample.strip_suffix("_sum").or_else(|| sample.strip_suffix("_count"));
    ALL.iter()
        .copied()
        .find(|m| sample == m.name || (m.kind == MetricKind::Histogram && summary_of == Some(m.name)))
}

/// `docs/reference/metrics.md`.
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Metrics reference\n\n\
         Generated from `crates/sluice-core/src/telemetry/catalogue.rs` by\n\
         `SLUICE_BLESS=1 cargo test -p sluice-core reference`; do not edit by hand.\n\
         Every metric is served at the API's `/metrics` (Prometheus text format;\n\
         histograms as summaries with `_sum` and `_count`).\n\n\
         | metric | kind | labels | meaning |\n|---|---|---|---|\n",
    );
    for m in ALL {
        let labels = m.labels.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", ");
        let _ = writeln!(out, "| `{}` | {} | {} | {} |", m.name, m.kind.as_str(), labels, m.help);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prometheus_shaped() {
        let mut seen = std::collections::BTreeSet::new();
        for m in ALL {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.name.starts_with("sluice_"), "{}", m.name);
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            );
            assert_eq!(m.kind == MetricKind::Counter, m.name.ends_with("_total"), "{}", m.name);
        }
    }

    #[test]
    fn reference_is_current() {
        sluice_testkit::docs::assert_current(
            "docs/reference/metrics.md",
            &reference_markdown(),
            "cargo test -p sluice-core reference",
        );
    }

    #[test]
    fn samples_find_their_metric() {
        assert_eq!(find("sluice_sink_commits_total"), Some(&SINK_COMMITS));
        assert_eq!(find("sluice_sink_flush_seconds_count"), Some(&SINK_FLUSH_SECONDS));
        assert_eq!(find("sluice_sink_commits_total_count"), None);
        assert_eq!(find("sluice_nothing"), None);
    }
}
