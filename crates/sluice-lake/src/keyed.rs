//! Keyed tables: a Delta table holding one row per key, replaced row by row
//! (the snapshot of a document store). Rows are partitioned by `bucket`
//! (the key's hash, [`bucket_of`]), so an update rewrites only the buckets
//! its keys fall in: each touched bucket's files are read, rows of touched
//! keys dropped, the new rows added, and old files removed, all in one
//! commit that also records how far the table is up to date (a Delta `txn`
//! action: `app_id` at version `watermark`).
//!
//! Invariants: a key has at most one row (every row of a touched key is
//! dropped before its new one is written, in the same commit); the commit
//! never retries on top of a concurrent one, since that one may have
//! replaced the files this one read.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    sync::Arc,
};

use arrow_array::{Array, BooleanArray, RecordBatch, UInt32Array, cast::AsArray};
use delta_kernel::expressions::Scalar;
use deltalake::{
    ObjectStore,
    kernel::{
        Action, Transaction,
        transaction::{CommitBuilder, CommitProperties},
    },
    protocol::{DeltaOperation, SaveMode},
    writer::{DeltaWriter, RecordBatchWriter, WriteMode},
};
use indexmap::IndexMap;

use crate::{
    LakeError, ParquetCompression, StoreLocation,
    compaction::{active_files, remove_action},
    partition::{PartitionKey, bucket_of},
    storage::read_data_file,
    table::{check_schema, open_or_create, table_error, table_schema},
};

/// Rows to put and keys to delete in one update.
pub struct KeyedUpdate<'a> {
    /// The table's data columns (without `bucket`).
    pub schema: &'a arrow_schema::Schema,
    /// The string columns that together identify a row.
    pub key_columns: &'a [&'a str],
    pub buckets: u32,
    /// New rows: at most one per key, replacing the key's current row.
    pub rows: RecordBatch,
    /// Keys whose rows go away ([`row_key`] of their key values).
    pub deleted: Vec<String>,
    /// Recorded in the same commit: the table holds everything up to `watermark`.
    pub app_id: &'a str,
    pub watermark: i64,
}

/// What one update did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyedReport {
    pub buckets_rewritten: u64,
    pub rows_written: u64,
    pub files_removed: u64,
    pub files_added: u64,
    pub version: Option<i64>,
}

/// How far the table at `location` is up to date for `app_id` (none: no table, or never).
pub async fn watermark(location: &StoreLocation, app_id: &str) -> Result<Option<i64>, LakeError> {
    if let Ok(path) = location.url().to_file_path()
        && !path.join("_delta_log").exists()
    {
        return Ok(None);
    }
    let table = match location.builder()?.load().await {
        Ok(table) => table,
        Err(deltalake::DeltaTableError::NotATable(_)) => return Ok(None),
        Err(e) => return Err(table_error(location, e)),
    };
    let snapshot = table.snapshot().map_err(|e| table_error(location, e))?;
    snapshot
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| table_error(location, e))
}

/// The key of a row: its key values joined by U+001F.
pub fn row_key(values: &[&str]) -> String {
    values.join("\u{1f}")
}

/// The key of each row of `batch`.
fn keys_of(batch: &RecordBatch, key_columns: &[&str]) -> Result<Vec<String>, String> {
    let columns = key_columns
        .iter()
        .map(|name| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| format!("the key column {name} is not a string column"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    (0..batch.num_rows())
        .map(|row| {
            let values = columns
                .iter()
                .zip(key_columns)
                .map(|(c, name)| {
                    c.is_valid(row)
                        .then(|| c.value(row))
                        .ok_or_else(|| format!("a row has no {name}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(row_key(&values))
        })
        .collect()
}

/// Applies `update` to the keyed table at `location` (created if missing).
pub async fn update(location: &StoreLocation, update: KeyedUpdate<'_>) -> Result<KeyedReport, LakeError> {
    let fail = |e: &dyn std::fmt::Display| table_error(location, e);
    let partition_by = [PartitionKey::Bucket {
        count: update.buckets,
        pointer: format!("/{}", update.key_columns.join("+")),
    }];
    let mut table = open_or_create(location, update.schema, &partition_by).await?;
    check_schema(&table, location, &table_schema(update.schema, &partition_by))?;
    let keys = keys_of(&update.rows, update.key_columns).map_err(|e| fail(&e))?;
    let mut touched: HashSet<&str> = update.deleted.iter().map(String::as_str).collect();
    let mut new_rows: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut written = HashSet::new();
    for (i, key) in keys.iter().enumerate() {
        let key = key.as_str();
        if !written.insert(key) {
            return Err(fail(&format!("two rows for key {key:?}")));
        }
        touched.insert(key);
        new_rows
            .entry(bucket_of(key, update.buckets))
            .or_default()
            .push(i as u32);
    }
    let buckets: BTreeSet<String> = touched.iter().map(|k| bucket_of(k, update.buckets)).collect();
    if buckets.is_empty() {
        return Ok(KeyedReport::default());
    }
    let old_files: Vec<_> = active_files(&table)
        .map_err(|e| fail(&e))?
        .into_iter()
        .filter(|f| {
            f.partition
                .iter()
                .any(|(c, v)| c == "bucket" && v.as_ref().is_some_and(|v| buckets.contains(v)))
        })
        .collect();
    let store: Arc<dyn ObjectStore> = table.object_store();
    let mut writer = RecordBatchWriter::for_table(&table)
        .map_err(|e| fail(&e))?
        .with_writer_properties(ParquetCompression::Zstd.writer_properties(&[]));
    let mut report = KeyedReport {
        buckets_rewritten: buckets.len() as u64,
        ..KeyedReport::default()
    };
    for bucket in &buckets {
        let partition: IndexMap<String, Scalar> = [("bucket".to_string(), Scalar::String(bucket.clone()))].into();
        for file in old_files
            .iter()
            .filter(|f| f.partition.iter().any(|(_, v)| v.as_deref() == Some(bucket)))
        {
            let in_file = |e: &dyn std::fmt::Display| table_error(location, format!("{}: {e}", file.path));
            let batches = read_data_file(store.as_ref(), &file.path)
                .await
                .map_err(|e| table_error(location, e))?;
            for batch in batches {
                let batch = batch.map_err(|e| in_file(&e))?;
                let old_keys = keys_of(&batch, update.key_columns).map_err(|e| in_file(&e))?;
                let keep: BooleanArray = old_keys.iter().map(|k| Some(!touched.contains(k.as_str()))).collect();
                let kept = arrow_select::filter::filter_record_batch(&batch, &keep).map_err(|e| in_file(&e))?;
                if kept.num_rows() > 0 {
                    report.rows_written += kept.num_rows() as u64;
                    writer
                        .write_partition(kept, &partition, WriteMode::Default)
                        .await
                        .map_err(|e| fail(&e))?;
                }
            }
        }
        if let Some(indices) = new_rows.get(bucket) {
            let taken = arrow_select::take::take_record_batch(&update.rows, &UInt32Array::from(indices.clone()))
                .map_err(|e| fail(&e))?;
            report.rows_written += taken.num_rows() as u64;
            writer
                .write_partition(taken, &partition, WriteMode::Default)
                .await
                .map_err(|e| fail(&e))?;
        }
    }
    let adds = writer.flush().await.map_err(|e| fail(&e))?;
    let now = sluice_core::now_ms();
    report.files_removed = old_files.len() as u64;
    report.files_added = adds.len() as u64;
    let removes = old_files.iter().map(|f| remove_action(f, true, now));
    let actions: Vec<Action> = removes.chain(adds.into_iter().map(Action::Add)).collect();
    let txn = Transaction {
        app_id: update.app_id.to_string(),
        version: update.watermark,
        last_updated: Some(now),
    };
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: Some(vec!["bucket".to_string()]),
        predicate: None,
    };
    let snapshot = table.snapshot().map_err(|e| fail(&e))?;
    let done = CommitBuilder::from(
        CommitProperties::default()
            .with_application_transactions(vec![txn])
            .with_max_retries(0),
    )
    .with_actions(actions)
    .build(Some(snapshot), table.log_store(), operation)
    .await
    .map_err(|e| {
        fail(&format!(
            "committing (another writer may have updated the table; run again): {e}"
        ))
    })?;
    report.version = Some(done.version as i64);
    table.update_incremental(None).await.map_err(|e| fail(&e))?;
    Ok(report)
}
