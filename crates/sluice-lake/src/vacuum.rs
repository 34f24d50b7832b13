//! Vacuum: deleting data files that the current table version no longer
//! references (replaced by compaction, or left by a writer that died before
//! its commit) once they are older than the retention.
//!
//! Invariant: without `force`, the retention cannot be shorter than the
//! table's `delta.deletedFileRetentionDuration` (default 168 h), so readers
//! of recent versions and files a running writer is about to commit are safe.

use std::time::Duration;

use deltalake::{operations::vacuum::VacuumMode, table::config::TablePropertiesExt};
use serde::Serialize;

use crate::{LakeError, StoreLocation};

/// Default retention, in hours (Delta's own default).
pub const DEFAULT_RETENTION_HOURS: u64 = 168;

#[derive(Debug, Clone, Default, Serialize)]
pub struct VacuumReport {
    pub dry_run: bool,
    pub files_deleted: Vec<String>,
}

pub async fn vacuum(
    location: &StoreLocation,
    retention: Duration,
    force: bool,
    dry_run: bool,
) -> Result<VacuumReport, LakeError> {
    let err = |e: &dyn std::fmt::Display| LakeError::Table {
        uri: location.to_string(),
        message: e.to_string(),
    };
    let table = location.builder()?.load().await.map_err(|e| err(&e))?;
    let minimum = table
        .snapshot()
        .map_err(|e| err(&e))?
        .table_config()
        .deleted_file_retention_duration();
    if retention < minimum && !force {
        return Err(err(&format!(
            "a retention of {} h is shorter than the table's delta.deletedFileRetentionDuration ({} h); readers of older versions could lose files: pass --force to do it anyway",
            retention.as_secs() / 3600,
            minimum.as_secs() / 3600
        )));
    }
    let retention = chrono::Duration::from_std(retention).map_err(|e| err(&e))?;
    let (_, metrics) = table
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(false)
        .with_mode(VacuumMode::Full)
        .with_dry_run(dry_run)
        .await
        .map_err(|e| err(&e))?;
    Ok(VacuumReport {
        dry_run,
        files_deleted: metrics.files_deleted,
    })
}
