//! Rewriting one partition: read its files one at a time in ingest order,
//! drop rows whose event id was already seen, and write what is left into
//! files of the target size. Nothing is committed here. Memory: one input
//! file's bytes, the output file being built, and 16 bytes per event id.

use std::{collections::HashSet, sync::Arc};

use arrow_array::{ArrayRef, BooleanArray, RecordBatch, cast::AsArray};
use arrow_schema::DataType;
use delta_kernel::expressions::Scalar;
use deltalake::{
    DeltaTable, ObjectStore, Path,
    kernel::Add,
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder,
    writer::{DeltaWriter, RecordBatchWriter, WriteMode},
};
use indexmap::IndexMap;
use object_store::ObjectStoreExt;
use twox_hash::XxHash3_128;

use super::{
    CompactionOptions,
    plan::{PartitionJob, PartitionValues},
};

/// Tag on the `add` action of every file a compaction writes.
pub const COMPACTED_TAG: &str = "sluice.compacted";

/// What a partition's rewrite produced.
#[derive(Debug)]
pub struct Rewritten {
    pub adds: Vec<Add>,
    pub rows_in: u64,
    pub rows_out: u64,
}

/// Why a rewrite failed.
#[derive(Debug)]
pub enum RewriteError {
    /// An input file is gone: a concurrent compaction replaced it.
    InputGone(String),
    Other(String),
}

pub async fn rewrite(
    table: &DeltaTable,
    job: &PartitionJob,
    options: &CompactionOptions,
) -> Result<Rewritten, RewriteError> {
    let other = |e: &dyn std::fmt::Display| RewriteError::Other(e.to_string());
    let store: Arc<dyn ObjectStore> = table.object_store();
    let mut writer = RecordBatchWriter::for_table(table)
        .map_err(|e| other(&e))?
        .with_writer_properties(options.compression.writer_properties(&options.id_column))
        .with_target_file_size(options.target_file_bytes);
    let file_schema = writer.arrow_schema();
    let partition = partition_scalars(&job.partition);
    let partition_columns: Vec<&str> = job.partition.iter().map(|(k, _)| k.as_str()).collect();
    let data_schema = Arc::new(arrow_schema::Schema::new(
        file_schema
            .fields()
            .iter()
            .filter(|f| !partition_columns.contains(&f.name().as_str()))
            .cloned()
            .collect::<Vec<_>>(),
    ));
    let mut seen: HashSet<u128> = HashSet::new();
    let (mut rows_in, mut rows_out) = (0u64, 0u64);
    for file in &job.files {
        let in_file = |e: &dyn std::fmt::Display| RewriteError::Other(format!("{}: {e}", file.path));
        let bytes = match store.get(&Path::from(file.path.as_str())).await {
            Ok(got) => got.bytes().await.map_err(|e| in_file(&e))?,
            Err(object_store::Error::NotFound { .. }) => return Err(RewriteError::InputGone(file.path.clone())),
            Err(e) => return Err(in_file(&e)),
        };
        let batches = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.with_batch_size(8192).build())
            .map_err(|e| in_file(&e))?;
        for batch in batches {
            let batch = batch.map_err(|e| in_file(&e))?;
            rows_in += batch.num_rows() as u64;
            let keep =
                first_seen(&batch, &options.id_column, &mut seen).map_err(|e| other(&format!("{}: {e}", file.path)))?;
            let kept = arrow_select::filter::filter_record_batch(&batch, &keep).map_err(|e| other(&e))?;
            if kept.num_rows() == 0 {
                continue;
            }
            let kept = conform(kept, &data_schema).map_err(|e| other(&format!("{}: {e}", file.path)))?;
            rows_out += kept.num_rows() as u64;
            writer
                .write_partition(kept, &partition, WriteMode::Default)
                .await
                .map_err(|e| other(&e))?;
        }
    }
    let compacted_at = sluice_core::now_ms().to_string();
    let mut adds = writer.flush().await.map_err(|e| other(&e))?;
    for add in &mut adds {
        add.data_change = false;
        add.tags
            .get_or_insert_with(Default::default)
            .insert(COMPACTED_TAG.to_string(), Some(compacted_at.clone()));
    }
    Ok(Rewritten {
        adds,
        rows_in,
        rows_out,
    })
}

/// Partition values as a writer takes them (a missing value is null).
pub(crate) fn partition_scalars(values: &PartitionValues) -> IndexMap<String, Scalar> {
    values
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Some(v) => Scalar::String(v.clone()),
                None => Scalar::Null(delta_kernel::schema::DataType::STRING),
            };
            (k.clone(), value)
        })
        .collect()
}

/// A mask that keeps each row whose event id was not seen before (rows
/// without an id are kept), and records the ids.
fn first_seen(batch: &RecordBatch, id_column: &[String], seen: &mut HashSet<u128>) -> Result<BooleanArray, String> {
    let ids = id_strings(batch, id_column)?;
    let ids = ids.as_string::<i32>();
    Ok(ids
        .iter()
        .map(|id| Some(id.is_none_or(|id| seen.insert(XxHash3_128::oneshot(id.as_bytes())))))
        .collect())
}

/// The event id column (nested through structs) as UTF-8 strings.
pub(crate) fn id_strings(batch: &RecordBatch, path: &[String]) -> Result<ArrayRef, String> {
    let missing = || format!("the event id column {} is not in the file", path.join("."));
    let (first, rest) = path.split_first().ok_or_else(missing)?;
    let mut column: ArrayRef = batch.column_by_name(first).ok_or_else(missing)?.clone();
    for name in rest {
        let parent = column.as_struct_opt().ok_or_else(missing)?;
        column = parent.column_by_name(name).ok_or_else(missing)?.clone();
    }
    arrow_cast::cast(&column, &DataType::Utf8).map_err(|e| format!("the event id column: {e}"))
}

/// The batch with the writer's schema: same columns; types cast where an
/// older file differs in details such as nullability or metadata.
pub(crate) fn conform(batch: RecordBatch, schema: &Arc<arrow_schema::Schema>) -> Result<RecordBatch, String> {
    if batch.schema().fields() == schema.fields() {
        return RecordBatch::try_new(schema.clone(), batch.columns().to_vec()).map_err(|e| e.to_string());
    }
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) => arrow_cast::cast(column, field.data_type()).map_err(|e| format!("{}: {e}", field.name())),
            None => Ok(arrow_array::new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use arrow_array::{Int64Array, StringArray, StructArray};
    use arrow_schema::{Field, Fields, Schema};

    use super::*;

    #[test]
    fn keeps_first_occurrence_across_batches_and_rows_without_id() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true)]));
        let batch = |ids: Vec<Option<&str>>| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(ids)) as ArrayRef]).unwrap()
        };
        let mut seen = HashSet::new();
        let path = vec!["id".to_string()];
        let first = first_seen(&batch(vec![Some("a"), Some("b"), Some("a"), None]), &path, &mut seen).unwrap();
        assert_eq!(first, BooleanArray::from(vec![true, true, false, true]));
        let second = first_seen(&batch(vec![Some("b"), None, Some("c")]), &path, &mut seen).unwrap();
        assert_eq!(second, BooleanArray::from(vec![false, true, true]));
    }

    #[test]
    fn older_files_are_cast_to_the_writer_schema() {
        let old = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, false)])),
            vec![Arc::new(arrow_array::Int32Array::from(vec![1, 2])) as ArrayRef],
        )
        .unwrap();
        let writer = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("added", DataType::Utf8, true),
        ]));
        let conformed = conform(old, &writer).unwrap();
        assert_eq!(conformed.schema(), writer);
        assert_eq!(
            conformed.column(0).as_ref(),
            &Int64Array::from(vec![1, 2]) as &dyn arrow_array::Array
        );
        assert_eq!(
            conformed.column(1).null_count(),
            2,
            "a column the old file lacks is null"
        );
    }

    #[test]
    fn finds_nested_and_numeric_ids() {
        let inner = Fields::from(vec![Field::new("id", DataType::Int64, true)]);
        let meta = StructArray::new(
            inner.clone(),
            vec![Arc::new(Int64Array::from(vec![7, 7, 8])) as ArrayRef],
            None,
        );
        let schema = Arc::new(Schema::new(vec![Field::new("meta", DataType::Struct(inner), true)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(meta) as ArrayRef]).unwrap();
        let mut seen = HashSet::new();
        let path = vec!["meta".to_string(), "id".to_string()];
        assert_eq!(
            first_seen(&batch, &path, &mut seen).unwrap(),
            BooleanArray::from(vec![true, false, true])
        );
        let wrong = first_seen(&batch, &["nope".to_string()], &mut seen).unwrap_err();
        assert!(wrong.contains("nope"), "{wrong}");
    }
}
