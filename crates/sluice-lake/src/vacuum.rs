//! Vacuum: deleting data files that the current table version no longer
//! references (replaced by compaction, or left by a writer that died before
//! its commit) once they are older than the retention.
//!
//! Invariant: without `force`, the retention cannot be shorter than the
//! table's `delta.deletedFileRetentionDuration` (default 168 h), so readers
//! of recent versions and files a running writer is about to commit are safe.

use std::time::Duration;

use deltalake::{DeltaTableBuilder, operations::vacuum::VacuumMode};
use serde::Serialize;
use url::Url;

use crate::LakeError;

/// Default retention, in hours (Delta's own default).
pub const DEFAULT_RETENTION_HOURS: u64 = 168;

#[derive(Debug, Clone, Default, Serialize)]
pub struct VacuumReport {
    pub dry_run: bool,
    pub files_deleted: Vec<String>,
}

pub async fn vacuum(url: &Url, retention: Duration, force: bool, dry_run: bool) -> Result<VacuumReport, LakeError> {
    let err = |e: &dyn std::fmt::Display| LakeError::Table {
        uri: url.to_string(),
        message: e.to_string(),
    };
    let table = DeltaTableBuilder::from_url(url.clone())
        .map_err(|e| err(&e))?
        .load()
        .await
        .map_err(|e| err(&e))?;
    let retention = chrono::Duration::from_std(retention).map_err(|e| err(&e))?;
    let (_, metrics) = table
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(!force)
        .with_mode(VacuumMode::Full)
        .with_dry_run(dry_run)
        .await
        .map_err(|e| {
            let message = e.to_string();
            if message.contains("retention") && !force {
                err(&format!("{message}; a shorter retention needs --force"))
            } else {
                err(&message)
            }
        })?;
    Ok(VacuumReport {
        dry_run,
        files_deleted: metrics.files_deleted,
    })
}
