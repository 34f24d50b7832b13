//! Reading a lake table's state: files, rows and partitions from the Delta
//! log (the `numRecords` statistic of each file), for summaries and checks.

use std::collections::{BTreeMap, HashSet};

use deltalake::{
    Path,
    arrow::array::AsArray,
    parquet::arrow::{ProjectionMask, arrow_reader::ParquetRecordBatchReaderBuilder},
};
use object_store::ObjectStoreExt;
use serde::Serialize;

use crate::{LakeError, StoreLocation, compaction::plan::partition_name};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableSummary {
    pub version: i64,
    pub files: u64,
    pub rows: u64,
    /// `dt=2026-11-01/hour=03` (columns in name order) -> its files.
    pub partitions: BTreeMap<String, PartitionStats>,
    /// Paths of the active data files, relative to the table root.
    pub file_paths: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PartitionStats {
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
}

pub async fn summarize(location: &StoreLocation) -> Result<TableSummary, LakeError> {
    let err = |e: deltalake::DeltaTableError| LakeError::Table {
        uri: location.to_string(),
        message: e.to_string(),
    };
    let table = location.builder()?.load().await.map_err(err)?;
    let snapshot = table.snapshot().map_err(err)?;
    let mut summary = TableSummary {
        version: snapshot.version() as i64,
        ..Default::default()
    };
    for file in snapshot.log_data().iter() {
        summary.files += 1;
        summary.file_paths.push(file.path().into_owned());
        let rows = file.num_records().unwrap_or(0) as u64;
        summary.rows += rows;
        let mut parts: Vec<(String, Option<String>)> = file.partition_values_map().into_iter().collect();
        parts.sort();
        let stats = summary.partitions.entry(partition_name(&parts)).or_default();
        stats.files += 1;
        stats.rows += rows;
        stats.bytes += file.size().max(0) as u64;
    }
    Ok(summary)
}

/// A table's latest commit: its version, and when it was made (ms since
/// the epoch, from the commit's provenance; `None` if it has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LastCommit {
    pub version: i64,
    pub at_ms: Option<i64>,
}

/// The latest commit of the table at `location`.
pub async fn last_commit(location: &StoreLocation) -> Result<LastCommit, LakeError> {
    use futures::StreamExt;
    let err = |e: deltalake::DeltaTableError| LakeError::Table {
        uri: location.to_string(),
        message: e.to_string(),
    };
    let table = location.builder()?.load().await.map_err(err)?;
    let version = table.version().unwrap_or(0) as i64;
    let newest = table.history(Some(1)).next().await.transpose().map_err(err)?;
    Ok(LastCommit {
        version,
        at_ms: newest.and_then(|c| c.in_commit_timestamp.or(c.timestamp)),
    })
}

/// The distinct non-null values of a top-level string column over the
/// table's active files (for summaries and checks). Files written before the
/// column was added hold none.
pub async fn distinct_strings(location: &StoreLocation, column: &str) -> Result<HashSet<String>, LakeError> {
    let err = |e: String| LakeError::Table {
        uri: location.to_string(),
        message: e,
    };
    let store = location
        .builder()?
        .build()
        .map_err(|e| err(e.to_string()))?
        .object_store();
    let summary = summarize(location).await?;
    let mut values = HashSet::new();
    for relative in &summary.file_paths {
        let read = |e: object_store::Error| err(format!("{relative}: {e}"));
        let file = store
            .get(&Path::from(relative.as_str()))
            .await
            .map_err(read)?
            .bytes()
            .await
            .map_err(read)?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| err(e.to_string()))?;
        let Some(index) = builder
            .parquet_schema()
            .columns()
            .iter()
            .position(|c| c.path().string() == column)
        else {
            continue;
        };
        let mask = ProjectionMask::leaves(builder.parquet_schema(), [index]);
        for batch in builder.with_projection(mask).build().map_err(|e| err(e.to_string()))? {
            let batch = batch.map_err(|e| err(e.to_string()))?;
            let strings = batch
                .column(0)
                .as_string_opt::<i32>()
                .ok_or_else(|| err(format!("{column} is not a string column")))?;
            values.extend(strings.iter().flatten().map(str::to_string));
        }
    }
    Ok(values)
}
