//! Snapshots: every current document of a `documents` stage in a Delta
//! table (`snapshot.uri`), one row per document (columns `entity`, `id`,
//! `version` as `decimal(38,0)`, `revision`, `updated_at`, `document` as
//! JSON text, and the configured typed columns). A table written before
//! versions grew past 64 bits keeps its `long` version column; a version
//! it cannot hold stops the run with an error saying to rebuild it.
//!
//! A run reads the store's writes after the table's watermark (the sequence
//! number recorded with its last commit), in pages; each page becomes one
//! commit that replaces the rows of the documents it names, removes the
//! deleted ones and moves the watermark. So a run is incremental, resumable
//! after a crash, and a second run with no new writes commits nothing.

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Decimal128Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use serde::Serialize;
use sluice_lake::{
    StoreLocation,
    keyed::{self, KeyedUpdate, row_key},
};

use serde_json::Value;

use crate::{
    apply::StoredDocument,
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

/// How the `version` column holds versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionColumn {
    /// `decimal(38,0)`: every version.
    Decimal,
    /// `long`, in tables written before versions grew past 64 bits.
    Long,
}

impl VersionColumn {
    fn data_type(self) -> DataType {
        match self {
            VersionColumn::Decimal => DataType::Decimal128(38, 0),
            VersionColumn::Long => DataType::Int64,
        }
    }

    fn array(self, live: &[(&StoredDocument, &Value)], location: &StoreLocation) -> Result<ArrayRef, String> {
        let versions = live.iter().map(|(d, _)| d.version);
        Ok(match self {
            VersionColumn::Decimal => Arc::new(
                Decimal128Array::from_iter_values(versions.map(|v| v as i128))
                    .with_precision_and_scale(38, 0)
                    .map_err(|e| e.to_string())?,
            ),
            VersionColumn::Long => Arc::new(Int64Array::from_iter_values(
                versions
                    .map(|v| {
                        i64::try_from(v).map_err(|_| {
                            format!(
                                "version {v} does not fit the long `version` column of the snapshot at {location} \
                                 (written before versions grew past 64 bits); delete the table and run the snapshot \
                                 again to rebuild it with a decimal(38,0) column"
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            )),
        })
    }
}

/// The snapshot table's columns.
pub fn schema(config: &SnapshotConfig, version: VersionColumn) -> Schema {
    let fixed = [
        Field::new("entity", DataType::Utf8, false),
        Field::new("id", DataType::Utf8, false),
        Field::new("version", version.data_type(), false),
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
/// `progress` is called after each commit with the documents done and the
/// documents the run has ahead of it at its start.
pub async fn snapshot(
    store: &dyn DocumentStore,
    location: &StoreLocation,
    stage: &str,
    config: &SnapshotConfig,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<SnapshotReport, String> {
    let app_id = format!("sluice-snapshot/{stage}");
    let existing = sluice_lake::existing_schema(location)
        .await
        .map_err(|e| e.to_string())?;
    let version_column = match existing
        .as_ref()
        .map(|s| s.field_with_name("version").map(|f| f.data_type().clone()))
    {
        Some(Ok(DataType::Int64)) => VersionColumn::Long,
        _ => VersionColumn::Decimal,
    };
    let schema = schema(config, version_column);
    let mut report = SnapshotReport {
        watermark: keyed::watermark(location, &app_id)
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or(0),
        ..SnapshotReport::default()
    };
    let total = store
        .count_changed_since(report.watermark)
        .await
        .map_err(|e| format!("reading the document store: {e}"))?;
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
            version_column.array(&live, location)?,
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
        progress(report.documents_written + report.documents_removed, total);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{
        change::{Change, DocKey, Op},
        store::embedded::EmbeddedStore,
    };

    fn upsert(id: &str, version: crate::merge::Version) -> Change {
        Change {
            key: DocKey {
                entity: "item".into(),
                id: id.into(),
            },
            version,
            ts: None,
            op: Op::Upsert(json!({"id": id}).as_object().unwrap().clone()),
        }
    }

    fn location(dir: &std::path::Path) -> StoreLocation {
        let url = url::Url::from_directory_path(dir).unwrap();
        StoreLocation::new(url, sluice_core::StorageOptions::default()).unwrap()
    }

    #[tokio::test]
    async fn versions_past_64_bits_fit_a_new_table_and_an_old_long_column_says_to_rebuild() {
        let dir = sluice_testkit::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("docs.sqlite3")).unwrap();
        let config = SnapshotConfig {
            uri: String::new(),
            storage_options: Default::default(),
            columns: Default::default(),
        };
        let sequence: crate::merge::Version = 4_421_584_500_000_000_017_450_439_091;
        store.apply("b1", false, &[upsert("a", 3)]).await.unwrap();

        let old = location(&dir.path().join("old"));
        keyed::update(
            &old,
            KeyedUpdate {
                schema: &schema(&config, VersionColumn::Long),
                key_columns: &["entity", "id"],
                buckets: BUCKETS,
                rows: RecordBatch::new_empty(Arc::new(schema(&config, VersionColumn::Long))),
                deleted: Vec::new(),
                app_id: "sluice-snapshot/items",
                watermark: 0,
            },
        )
        .await
        .unwrap();
        let seen = std::sync::Mutex::new(Vec::new());
        let report = snapshot(&store, &old, "items", &config, &|done, total| {
            seen.lock().unwrap().push((done, total))
        })
        .await
        .unwrap();
        assert_eq!(report.documents_written, 1, "small versions still fit the long column");
        assert_eq!(*seen.lock().unwrap(), vec![(1, 1)], "progress after the commit");

        store.apply("b2", false, &[upsert("b", sequence)]).await.unwrap();
        let refused = snapshot(&store, &old, "items", &config, &|_, _| {}).await.unwrap_err();
        assert!(
            refused.contains("version 4421584500000000017450439091 does not fit the long `version` column"),
            "{refused}"
        );

        let new = location(&dir.path().join("new"));
        let report = snapshot(&store, &new, "items", &config, &|_, _| {}).await.unwrap();
        assert_eq!(report.documents_written, 2);
        let columns = sluice_lake::existing_schema(&new).await.unwrap().unwrap();
        assert_eq!(
            columns.field_with_name("version").unwrap().data_type(),
            &DataType::Decimal128(38, 0)
        );
    }
}
