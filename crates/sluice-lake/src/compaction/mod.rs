//! Compaction of a lake table: each partition that received new files within
//! the look-back is rewritten into files of the target size with duplicate
//! event ids removed. Partitions are rewritten one at a time and committed
//! in groups (up to [`GROUP_PARTITIONS`] partitions or [`GROUP_BYTES`] of
//! input), one atomic commit per group: a small table does not pay a commit
//! per partition, and a lost race costs one group's rewrite, after which
//! its partitions are done one commit each.
//!
//! Invariants:
//! * A commit removes exactly the files its rewrites read, and only while
//!   every one of them is still active: the commit is attempted on top of
//!   the version it was checked against, and only there (no automatic
//!   rebase). delta-rs' conflict checker ignores `dataChange = false`
//!   removals, so two compactions could otherwise both replace the same
//!   files and duplicate their rows.
//! * Files a writer appends meanwhile are never touched: they are not in the
//!   rewrite's input, so the next compaction folds them in.
//! * Output files carry the [`COMPACTED_TAG`] tag; a partition whose files
//!   all carry it is not rewritten again, so re-running commits nothing.
//! * Removals and additions are `dataChange = false`: streaming readers of
//!   the table do not see compacted rows as new data.

pub mod plan;
pub(crate) mod rewrite;

use std::{collections::HashSet, time::Instant};

use deltalake::{
    DeltaTable, Path,
    kernel::{
        Action, Remove,
        transaction::{CommitBuilder, CommitProperties},
    },
    protocol::DeltaOperation,
};
use object_store::ObjectStoreExt;
use serde::Serialize;

pub use plan::{FileInfo, PartitionJob, Scope};
pub use rewrite::COMPACTED_TAG;
use rewrite::{RewriteError, Rewritten, rewrite};

use crate::{LakeError, ParquetCompression, StoreLocation, table::table_error};

/// The `commitInfo` key that names the compaction run of a commit.
pub const RUN_ID_KEY: &str = "sluice.compaction.run";

/// How often one partition is re-planned after losing a race before the
/// compaction gives up on it (it is retried by the next run).
const MAX_ATTEMPTS: u32 = 8;

/// Most partitions committed together.
pub const GROUP_PARTITIONS: usize = 64;
/// Most input bytes committed together (a group holds at least one partition).
pub const GROUP_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone)]
pub struct CompactionOptions {
    pub scope: Scope,
    pub target_file_bytes: u64,
    /// Codec of the files written.
    pub compression: ParquetCompression,
    /// Path of the event id column (through structs), e.g. `["event_id"]`.
    pub id_column: Vec<String>,
    /// Names this run in its commits' `commitInfo` (`sluice.compaction.run`),
    /// so the log shows which replica compacted what, and when.
    pub run_id: Option<String>,
}

/// What one partition's compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PartitionReport {
    pub partition: String,
    pub files_in: u64,
    pub files_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rows_in: u64,
    pub rows_out: u64,
    pub duplicates_removed: u64,
    /// The commit that replaced the files.
    pub version: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CompactionReport {
    pub partitions: Vec<PartitionReport>,
    /// Partitions planned but left for a later run after losing races.
    pub skipped: Vec<String>,
    /// Commits lost to concurrent compactions (each one re-planned).
    pub conflicts: u64,
    pub seconds: f64,
}

impl CompactionReport {
    pub fn sum(&self, field: impl Fn(&PartitionReport) -> u64) -> u64 {
        self.partitions.iter().map(field).sum()
    }
}

/// The table's active files as the plan sees them.
pub fn active_files(table: &DeltaTable) -> Result<Vec<FileInfo>, deltalake::DeltaTableError> {
    let snapshot = table.snapshot()?;
    let columns = snapshot.metadata().partition_columns().to_vec();
    Ok(snapshot
        .log_data()
        .iter()
        .map(|file| {
            let values = file.partition_values_map();
            // delta-rs offers a file's tags only through its `add` action.
            #[allow(deprecated)]
            let tags = file.add_action().tags;
            FileInfo {
                path: file.path().into_owned(),
                partition: columns
                    .iter()
                    .map(|c| (c.clone(), values.get(c).cloned().flatten()))
                    .collect(),
                size: file.size().max(0) as u64,
                modification_time_ms: file.modification_time(),
                compacted: tags.is_some_and(|t| t.contains_key(COMPACTED_TAG)),
            }
        })
        .collect())
}

/// The `remove` action of an active file, at `now` (ms).
pub(crate) fn remove_action(file: &FileInfo, data_change: bool, now: i64) -> Action {
    Action::Remove(Remove {
        path: file.path.clone(),
        data_change,
        deletion_timestamp: Some(now),
        extended_file_metadata: Some(true),
        partition_values: Some(file.partition.iter().cloned().collect()),
        size: Some(file.size as i64),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
    })
}

/// Compacts the table at `location`. `progress` is called for each partition
/// committed with its report and the number of partitions planned; when it
/// returns `false`, the compaction stops after that partition's group
/// (each group is its own commit, so stopping between them leaves nothing
/// half done).
pub async fn compact(
    location: &StoreLocation,
    options: &CompactionOptions,
    progress: &(dyn Fn(&PartitionReport, usize) -> bool + Send + Sync),
) -> Result<CompactionReport, LakeError> {
    let started = Instant::now();
    let mut table = location.builder()?.load().await.map_err(|e| table_error(location, e))?;
    let jobs = plan::plan(
        &active_files(&table).map_err(|e| table_error(location, e))?,
        options.scope,
    );
    let mut report = CompactionReport::default();
    let planned = jobs.len();
    let mut jobs = jobs.into_iter().peekable();
    let mut go_on = true;
    while go_on && jobs.peek().is_some() {
        let mut group: Vec<PartitionJob> = Vec::new();
        let mut bytes = 0;
        while let Some(job) =
            jobs.next_if(|j| group.is_empty() || (group.len() < GROUP_PARTITIONS && bytes + j.bytes <= GROUP_BYTES))
        {
            bytes += job.bytes;
            group.push(job);
        }
        for outcome in compact_group(&mut table, location, group, options, &mut report.conflicts).await? {
            match outcome {
                Outcome::Compacted(done) => {
                    go_on &= progress(&done, planned);
                    report.partitions.push(done);
                }
                Outcome::LeftForLater(name) => report.skipped.push(name),
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Rewrites the partitions of `group` and commits them together; after a
/// lost race (an input replaced meanwhile), each partition on its own.
async fn compact_group(
    table: &mut DeltaTable,
    location: &StoreLocation,
    group: Vec<PartitionJob>,
    options: &CompactionOptions,
    conflicts: &mut u64,
) -> Result<Vec<Outcome>, LakeError> {
    if group.len() > 1 {
        let mut rewritten = Vec::with_capacity(group.len());
        let mut lost = false;
        for job in &group {
            match rewrite(table, job, options).await {
                Ok(r) => rewritten.push(r),
                Err(RewriteError::InputGone(_)) => {
                    lost = true;
                    break;
                }
                Err(RewriteError::Other(message)) => {
                    for r in &rewritten {
                        delete_unused(table, r).await;
                    }
                    return Err(table_error(location, format!("compacting {}: {message}", job.name())));
                }
            }
        }
        if !lost {
            let pairs: Vec<(&PartitionJob, &Rewritten)> = group.iter().zip(&rewritten).collect();
            if let Some(version) = commit_while_inputs_active(table, location, &pairs, options).await? {
                return Ok(pairs
                    .into_iter()
                    .map(|(job, r)| Outcome::Compacted(partition_report(job, r, version)))
                    .collect());
            }
        }
        *conflicts += 1;
        for r in &rewritten {
            delete_unused(table, r).await;
        }
        tracing::info!(%location, partitions = group.len(), "inputs were replaced meanwhile; compacting the group's partitions one by one");
    }
    let mut outcomes = Vec::with_capacity(group.len());
    for job in group {
        outcomes.push(compact_partition(table, location, job, options, conflicts).await?);
    }
    Ok(outcomes)
}

fn partition_report(job: &PartitionJob, rewritten: &Rewritten, version: i64) -> PartitionReport {
    PartitionReport {
        partition: job.name(),
        files_in: job.files.len() as u64,
        files_out: rewritten.adds.len() as u64,
        bytes_in: job.bytes,
        bytes_out: rewritten.adds.iter().map(|a| a.size.max(0) as u64).sum(),
        rows_in: rewritten.rows_in,
        rows_out: rewritten.rows_out,
        duplicates_removed: rewritten.rows_in - rewritten.rows_out,
        version,
    }
}

enum Outcome {
    Compacted(PartitionReport),
    /// Lost too many races, or another compaction did the work meanwhile.
    LeftForLater(String),
}

/// Rewrites and commits one partition, re-planning it after lost races.
async fn compact_partition(
    table: &mut DeltaTable,
    location: &StoreLocation,
    mut job: PartitionJob,
    options: &CompactionOptions,
    conflicts: &mut u64,
) -> Result<Outcome, LakeError> {
    for _ in 0..MAX_ATTEMPTS {
        let rewritten = match rewrite(table, &job, options).await {
            Ok(r) => r,
            Err(RewriteError::InputGone(path)) => {
                tracing::info!(%location, partition = %job.name(), %path, "an input file was replaced meanwhile; re-planning");
                *conflicts += 1;
                match replan(table, location, &job, options.scope).await? {
                    Some(next) => {
                        job = next;
                        continue;
                    }
                    None => return Ok(Outcome::LeftForLater(job.name())),
                }
            }
            Err(RewriteError::Other(message)) => {
                return Err(table_error(location, format!("compacting {}: {message}", job.name())));
            }
        };
        if let Some(version) = commit_while_inputs_active(table, location, &[(&job, &rewritten)], options).await? {
            return Ok(Outcome::Compacted(partition_report(&job, &rewritten, version)));
        }
        *conflicts += 1;
        delete_unused(table, &rewritten).await;
        match replan(table, location, &job, options.scope).await? {
            Some(next) => job = next,
            None => return Ok(Outcome::LeftForLater(job.name())),
        }
    }
    Ok(Outcome::LeftForLater(job.name()))
}

/// The partition's job planned afresh from the latest table version, if it
/// still needs one.
async fn replan(
    table: &mut DeltaTable,
    location: &StoreLocation,
    job: &PartitionJob,
    scope: Scope,
) -> Result<Option<PartitionJob>, LakeError> {
    table
        .update_incremental(None)
        .await
        .map_err(|e| table_error(location, e))?;
    let files: Vec<FileInfo> = active_files(table)
        .map_err(|e| table_error(location, e))?
        .into_iter()
        .filter(|f| f.partition == job.partition)
        .collect();
    Ok(plan::plan(&files, scope).into_iter().next())
}

/// Commits the removes + adds of `rewrites` on top of the latest version,
/// as long as every input file is still active there; returns the
/// commit's version, or `None` when an input was replaced.
async fn commit_while_inputs_active(
    table: &mut DeltaTable,
    location: &StoreLocation,
    rewrites: &[(&PartitionJob, &Rewritten)],
    options: &CompactionOptions,
) -> Result<Option<i64>, LakeError> {
    let now = sluice_core::now_ms();
    let inputs: Vec<&FileInfo> = rewrites.iter().flat_map(|(job, _)| &job.files).collect();
    let removes = inputs.iter().map(|f| remove_action(f, false, now));
    let adds = rewrites
        .iter()
        .flat_map(|(_, r)| r.adds.iter().cloned().map(Action::Add));
    let actions: Vec<Action> = removes.chain(adds).collect();
    let partition_predicate = |job: &PartitionJob| {
        job.partition
            .iter()
            .map(|(k, v)| format!("{k} = '{}'", v.as_deref().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let names = || {
        rewrites
            .iter()
            .map(|(job, _)| job.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let operation = DeltaOperation::Optimize {
        predicate: Some(match rewrites {
            [(job, _)] => partition_predicate(job),
            _ => rewrites
                .iter()
                .map(|(job, _)| format!("({})", partition_predicate(job)))
                .collect::<Vec<_>>()
                .join(" OR "),
        }),
        target_size: options.target_file_bytes as i64,
    };
    for _ in 0..MAX_ATTEMPTS * 4 {
        table
            .update_incremental(None)
            .await
            .map_err(|e| table_error(location, e))?;
        let active: HashSet<String> = active_files(table)
            .map_err(|e| table_error(location, e))?
            .into_iter()
            .map(|f| f.path)
            .collect();
        if !inputs.iter().all(|f| active.contains(&f.path)) {
            return Ok(None);
        }
        let read_version = table.version();
        let snapshot = table.snapshot().map_err(|e| table_error(location, e))?;
        let properties = CommitProperties::default().with_max_retries(0).with_metadata(
            options
                .run_id
                .iter()
                .map(|id| (RUN_ID_KEY.to_string(), id.as_str().into())),
        );
        let committed = CommitBuilder::from(properties)
            .with_actions(actions.clone())
            .build(Some(snapshot), table.log_store(), operation.clone())
            .await;
        match committed {
            Ok(done) => {
                table
                    .update_incremental(None)
                    .await
                    .map_err(|e| table_error(location, e))?;
                return Ok(Some(done.version as i64));
            }
            Err(e) => {
                table
                    .update_incremental(None)
                    .await
                    .map_err(|e| table_error(location, e))?;
                if table.version() == read_version {
                    for (_, rewritten) in rewrites {
                        delete_unused(table, rewritten).await;
                    }
                    return Err(table_error(
                        location,
                        format!("committing the compaction of {}: {e}", names()),
                    ));
                }
                tracing::debug!(%location, partitions = %names(), "the table moved on during the commit; checking inputs again");
            }
        }
    }
    Ok(None)
}

/// Best-effort removal of output files that will not be committed (vacuum
/// removes any that remain).
async fn delete_unused(table: &DeltaTable, rewritten: &Rewritten) {
    let store = table.object_store();
    for add in &rewritten.adds {
        if let Err(e) = store.delete(&Path::from(add.path.as_str())).await {
            tracing::debug!(path = %add.path, error = %e, "could not delete an unused compaction output");
        }
    }
}

#[cfg(test)]
mod tests;
