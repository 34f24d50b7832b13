//! Snapshots: every current document of a `documents` stage in a Delta
//! table (`snapshot.uri`), one row per document (columns `entity`, `id`,
//! `version`, `revision`, `updated_at`, `document` as JSON text, and the
//! configured typed columns).
//!
//! A run reads the store's writes after the table's watermark (the sequence
//! number recorded with its last commit), in pages; each page becomes one
//! commit that replaces the rows of the documents it names, removes the
//! deleted ones and moves the watermark. So a run is incremental, resumable
//! after a crash, and a second run with no new writes commits nothing.

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use serde::Serialize;
use sluice_lake::{
    StoreLocation,
    keyed::{self, KeyedUpdate, row_key},
};

use serde_json::Value;

use crate::{
    config::{ColumnType, SnapshotConfig},
    store::DocumentStore,
};

/// The columns every snapshot table has.
pub const FIXED_COLUMNS: [&str; 6] = ["entity", "id", "version", "revision", "updated_at", "document"];

/// Hash buckets of the snapshot table: an update rewrites only the buckets
/// its documents fall in.
pub const BUCKETS: u32 = 16;
/// Store writes read (and committed) at a time.
const PAGE: usize = 20_000;

/// The snapshot table's columns.
pub fn schema(config: &SnapshotConfig) -> Schema {
    let fixed = [
        Field::new("entity", DataType::Utf8, false),
        Field::new("id", DataType::Utf8, false),
        Field::new("version", DataType::Int64, false),
        Field::new("revision", DataType::Int64, false),
        Field::new("updated_at", DataType::Utf8, true),
        Field::new("document", DataType::Utf8, false),
    ];
    let typed = config.columns.iter().map(|(name, column)| {
        let data_type = match column.kind {
            ColumnType::String => DataType::Utf8,
            ColumnType::Long => DataType::Int64,
            ColumnType::Double => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
        };
        Field::new(name, data_type, true)
    });
    Schema::new(fixed.into_iter().chain(typed).collect::<Vec<_>>())
}

/// A typed column of `documents`: the value at `pointer` where it has the type, else null.
fn typed_column(documents: &[&Value], pointer: &str, kind: ColumnType) -> ArrayRef {
    let at = documents.iter().map(|d| d.pointer(pointer));
    match kind {
        ColumnType::String => Arc::new(StringArray::from_iter(at.map(|v| v.and_then(Value::as_str)))),
        ColumnType::Long => Arc::new(Int64Array::from_iter(at.map(|v| v.and_then(Value::as_i64)))),
        ColumnType::Double => Arc::new(Float64Array::from_iter(at.map(|v| v.and_then(Value::as_f64)))),
        ColumnType::Boolean => Arc::new(BooleanArray::from_iter(at.map(|v| v.and_then(Value::as_bool)))),
    }
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotReport {
    pub documents_written: u64,
    pub documents_removed: u64,
    pub commits: u64,
    /// The store sequence number the table is up to date with.
    pub watermark: i64,
}

/// Brings the snapshot of stage `stage` at `url` up to date with `store`.
pub async fn snapshot(
    store: &dyn DocumentStore,
    location: &StoreLocation,
    stage: &str,
    config: &SnapshotConfig,
) -> Result<SnapshotReport, String> {
    let app_id = format!("sluice-snapshot/{stage}");
    let schema = schema(config);
    let mut report = SnapshotReport {
        watermark: keyed::watermark(location, &app_id)
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or(0),
        ..SnapshotReport::default()
    };
    loop {
        let page = store
            .changed_since(report.watermark, PAGE)
            .await
            .map_err(|e| format!("reading the document store: {e}"))?;
        let Some(last) = page.last().map(|s| s.seq) else {
            return Ok(report);
        };
        let mut deleted = Vec::new();
        let mut live = Vec::new();
        for written in &page {
            let doc = &written.document;
            match &doc.document {
                Some(document) => live.push((doc, document)),
                None => deleted.push(row_key(&[&doc.key.entity, &doc.key.id])),
            }
        }
        let documents: Vec<&Value> = live.iter().map(|(_, d)| *d).collect();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                live.iter().map(|(d, _)| d.key.entity.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                live.iter().map(|(d, _)| d.key.id.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(live.iter().map(|(d, _)| d.version as i64))),
            Arc::new(Int64Array::from_iter_values(
                live.iter().map(|(d, _)| d.revision as i64),
            )),
            Arc::new(StringArray::from_iter(
                live.iter().map(|(d, _)| d.updated_at.as_deref()),
            )),
            Arc::new(StringArray::from_iter_values(documents.iter().map(|d| d.to_string()))),
        ];
        for column in config.columns.values() {
            columns.push(typed_column(&documents, &column.pointer, column.kind));
        }
        let rows = RecordBatch::try_new(Arc::new(schema.clone()), columns).map_err(|e| e.to_string())?;
        report.documents_written += live.len() as u64;
        report.documents_removed += deleted.len() as u64;
        keyed::update(
            location,
            KeyedUpdate {
                schema: &schema,
                key_columns: &["entity", "id"],
                buckets: BUCKETS,
                rows,
                deleted,
                app_id: &app_id,
                watermark: last,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        report.commits += 1;
        report.watermark = last;
    }
}
