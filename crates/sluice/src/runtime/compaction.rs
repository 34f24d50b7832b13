//! Scheduled compaction inside `sluice run`: every `compaction.interval_secs`
//! each lake sink's table is compacted within its look-back, beside the
//! running writer (see `sluice_lake::compaction` for why that is safe). A
//! failed run is logged and counted; the next tick tries again. On stop, a
//! run finishes the partition it is on and returns: cancelling it mid-await
//! would leave delta-rs's blocking work running past the runtime.

use std::time::Duration;

use tokio::sync::watch;

use sluice_lake::{
    CompactionConfig,
    compaction::{CompactionReport, Scope, compact},
};
use url::Url;

/// Runs until `stop` turns true.
pub async fn run_schedule(
    sink: String,
    url: Url,
    config: CompactionConfig,
    id_column: Vec<String>,
    mut stop: watch::Receiver<bool>,
) {
    let every = Duration::from_secs(config.interval_secs);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let options = config.options(Scope::lookback_hours(config.lookback_hours), id_column.clone());
        let stopping = stop.clone();
        match compact(&url, &options, &|_, _| !*stopping.borrow()).await {
            Ok(report) => {
                record(&sink, &report);
                if !report.partitions.is_empty() {
                    tracing::info!(
                        sink,
                        partitions = report.partitions.len(),
                        files_in = report.sum(|p| p.files_in),
                        files_out = report.sum(|p| p.files_out),
                        duplicates_removed = report.sum(|p| p.duplicates_removed),
                        seconds = report.seconds,
                        "compacted"
                    );
                }
            }
            Err(e) => {
                metrics::counter!("sluice_compaction_errors_total", "component" => sink.clone()).increment(1);
                tracing::warn!(sink, error = %e, "compaction failed; retrying at the next interval");
            }
        }
    }
}

/// Compaction metrics of one run.
fn record(sink: &str, report: &CompactionReport) {
    let c = sink.to_string();
    metrics::counter!("sluice_compaction_runs_total", "component" => c.clone()).increment(1);
    metrics::histogram!("sluice_compaction_seconds", "component" => c.clone()).record(report.seconds);
    metrics::counter!("sluice_compaction_conflicts_total", "component" => c.clone()).increment(report.conflicts);
    let totals = [
        ("sluice_compaction_partitions_total", report.partitions.len() as u64),
        ("sluice_compaction_files_in_total", report.sum(|p| p.files_in)),
        ("sluice_compaction_files_out_total", report.sum(|p| p.files_out)),
        ("sluice_compaction_bytes_in_total", report.sum(|p| p.bytes_in)),
        ("sluice_compaction_bytes_out_total", report.sum(|p| p.bytes_out)),
        (
            "sluice_compaction_duplicates_removed_total",
            report.sum(|p| p.duplicates_removed),
        ),
    ];
    for (name, value) in totals {
        metrics::counter!(name, "component" => c.clone()).increment(value);
    }
}
