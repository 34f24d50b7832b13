//! Scheduled compaction inside `sluice run`: every `compaction.interval_secs`
//! each lake sink's table (a `table_template` sink: each of its tables that
//! exists) is compacted within its look-back, beside the running writer
//! (see `sluice_lake::compaction` for why that is safe).
//!
//! Replicas take turns: a run first takes the lease `compaction.<sink>`
//! (in JetStream KV when the queue is JetStream), keeps it renewed while it
//! works, and stops after the group of partitions it is committing if the
//! lease is lost; a replica
//! that finds the lease held skips the tick. So at most one compaction runs
//! on a table at a time, and a killed holder's lease lapses after its time
//! to live. Each commit names its run (`sluice.compaction.run`).
//!
//! A failed run is logged and counted; the next tick tries again. On stop,
//! a run finishes the group of partitions it is on and returns: cancelling it
//! mid-await would leave delta-rs's blocking work running past the runtime.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::sync::{oneshot, watch};

use sluice_lake::{
    CompactionConfig, StoreLocation,
    compaction::{CompactionReport, Scope, compact},
    table_exists,
};

use crate::sinks::RoutedLake;
use sluice_core::telemetry::{Compacted, CompactionTelemetry};
use sluice_queue::lease::{Lease, Leases};

/// What a scheduled compaction works on, and who it is.
pub struct Schedule {
    pub sink: String,
    pub tables: Tables,
    pub config: CompactionConfig,
    pub leases: Arc<dyn Leases>,
    /// This replica's name in leases and commits.
    pub replica: String,
}

/// The tables of a lake sink.
pub enum Tables {
    /// A sink's one table, with its event id column.
    One(StoreLocation, Vec<String>),
    /// A `table_template` sink's tables: those of the registry's schema
    /// MODELs that exist, found anew at every run.
    Routed(RoutedLake),
}

impl Tables {
    async fn existing(&self) -> Result<Vec<(StoreLocation, Vec<String>)>, String> {
        let all = match self {
            Tables::One(location, id_column) => return Ok(vec![(location.clone(), id_column.clone())]),
            Tables::Routed(routed) => routed.tables().await?,
        };
        let mut existing = Vec::new();
        for (location, id_column) in all {
            if table_exists(&location).await.map_err(|e| e.to_string())? {
                existing.push((location, id_column));
            }
        }
        Ok(existing)
    }
}

/// Runs until `stop` turns true.
pub async fn run_schedule(schedule: Schedule, mut stop: watch::Receiver<bool>) {
    let Schedule {
        sink,
        tables,
        config,
        leases,
        replica,
    } = schedule;
    let telemetry = CompactionTelemetry::new(&sink);
    let every = Duration::from_secs(config.interval_secs);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lease_name = format!("compaction.{sink}");
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let lease = match leases.try_acquire(&lease_name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                telemetry.skipped_lease_held();
                continue;
            }
            Err(e) => {
                telemetry.failed("taking the compaction lease", &e);
                continue;
            }
        };
        let lost = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = oneshot::channel();
        let renewer = tokio::spawn(keep_renewed(lease, leases.time_to_live() / 3, lost.clone(), done_rx));
        let run_id = format!("{replica}/{}", sluice_core::now_ms());
        let outcomes = match tables.existing().await {
            Ok(found) => {
                let mut outcomes = Vec::new();
                for (location, id_column) in found {
                    if *stop.borrow() || lost.load(Ordering::Relaxed) {
                        break;
                    }
                    let mut options = config.options(Scope::lookback_hours(config.lookback_hours), id_column);
                    options.run_id = Some(run_id.clone());
                    let stopping = stop.clone();
                    let outcome = compact(&location, &options, &|_, _| {
                        !*stopping.borrow() && !lost.load(Ordering::Relaxed)
                    })
                    .await
                    .map_err(|e| e.to_string());
                    outcomes.push(outcome);
                }
                outcomes
            }
            Err(e) => vec![Err(format!("listing the tables: {e}"))],
        };
        let _ = done_tx.send(());
        if let Ok(lease) = renewer.await {
            lease.release().await;
        }
        for outcome in outcomes {
            match outcome {
                Ok(report) => telemetry.finished(&compacted(&report)),
                Err(e) => telemetry.failed("compaction", &e),
            }
        }
    }
}

/// Renews `lease` every `every` until `done`; a failed renewal sets `lost`
/// (the run stops at its next partition). Returns the lease to release.
async fn keep_renewed(
    mut lease: Box<dyn Lease>,
    every: Duration,
    lost: Arc<AtomicBool>,
    mut done: oneshot::Receiver<()>,
) -> Box<dyn Lease> {
    loop {
        tokio::select! {
            _ = &mut done => return lease,
            _ = tokio::time::sleep(every) => {
                if let Err(e) = lease.renew().await {
                    tracing::warn!(error = %e, "compaction lease lost; stopping after this partition");
                    lost.store(true, Ordering::Relaxed);
                    return lease;
                }
            }
        }
    }
}

/// What a run's telemetry reports.
fn compacted(report: &CompactionReport) -> Compacted {
    Compacted {
        partitions: report.partitions.len() as u64,
        files_in: report.sum(|p| p.files_in),
        files_out: report.sum(|p| p.files_out),
        bytes_in: report.sum(|p| p.bytes_in),
        bytes_out: report.sum(|p| p.bytes_out),
        duplicates_removed: report.sum(|p| p.duplicates_removed),
        conflicts: report.conflicts,
        seconds: report.seconds,
    }
}
