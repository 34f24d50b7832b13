//! Opening a lake table, creating it on first use, and checking that its
//! columns are the ones the schema gives.

use std::collections::HashMap;

use arrow_schema::{DataType, Field, Schema};
use deltalake::{
    DeltaTable, DeltaTableBuilder,
    kernel::{
        StructType,
        engine::arrow_conversion::{TryFromArrow, TryIntoArrow},
    },
    operations::create::CreateBuilder,
    protocol::SaveMode,
};
use url::Url;

use crate::{LakeError, partition::PartitionKey};

/// How long batch keys stay in the Delta log (`txn` retention). A batch
/// redelivered later than this could be written twice.
pub const TXN_RETENTION: &str = "interval 7 days";

pub(crate) fn table_error(url: &Url, e: impl std::fmt::Display) -> LakeError {
    LakeError::Table {
        uri: url.to_string(),
        message: e.to_string(),
    }
}

/// The table's full schema: data columns, then partition columns (strings).
pub fn table_schema(data: &Schema, partition_by: &[PartitionKey]) -> Schema {
    let mut fields: Vec<Field> = data.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(
        partition_by
            .iter()
            .map(|p| Field::new(p.column(), DataType::Utf8, true)),
    );
    Schema::new(fields)
}

/// Loads the table at `url`, creating it when there is none.
pub async fn open_or_create(url: &Url, data: &Schema, partition_by: &[PartitionKey]) -> Result<DeltaTable, LakeError> {
    if url.scheme() == "file" {
        let path = url.to_file_path().map_err(|()| table_error(url, "not a local path"))?;
        std::fs::create_dir_all(&path).map_err(|e| table_error(url, e))?;
        if !path.join("_delta_log").exists() {
            return create(url, data, partition_by).await;
        }
    }
    let builder = DeltaTableBuilder::from_url(url.clone()).map_err(|e| table_error(url, e))?;
    match builder.load().await {
        Ok(table) => Ok(table),
        Err(deltalake::DeltaTableError::NotATable(_)) => create(url, data, partition_by).await,
        Err(e) => Err(table_error(url, e)),
    }
}

async fn create(url: &Url, data: &Schema, partition_by: &[PartitionKey]) -> Result<DeltaTable, LakeError> {
    let schema = table_schema(data, partition_by);
    let kernel = StructType::try_from_arrow(&schema).map_err(|e| table_error(url, e))?;
    let config: HashMap<String, Option<String>> = [(
        "delta.setTransactionRetentionDuration".to_string(),
        Some(TXN_RETENTION.to_string()),
    )]
    .into();
    CreateBuilder::new()
        .with_location(url.as_str())
        .with_columns(kernel.fields().cloned())
        .with_partition_columns(partition_by.iter().map(|p| p.column()))
        .with_configuration(config)
        .with_save_mode(SaveMode::Ignore)
        .await
        .map_err(|e| table_error(url, e))
}

/// Checks the table's columns against the schema's, by name and type.
pub fn check_schema(table: &DeltaTable, url: &Url, expected: &Schema) -> Result<(), LakeError> {
    let snapshot = table.snapshot().map_err(|e| table_error(url, e))?;
    let found = snapshot.schema();
    let found_arrow: Schema = found
        .as_ref()
        .try_into_arrow()
        .map_err(|e: arrow_schema::ArrowError| table_error(url, e))?;
    let describe = |s: &Schema| {
        s.fields()
            .iter()
            .map(|f| format!("{}:{}", f.name(), type_name(f.data_type())))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if describe(&found_arrow) != describe(expected) {
        return Err(LakeError::SchemaMismatch {
            uri: url.to_string(),
            found: describe(&found_arrow),
            expected: describe(expected),
        });
    }
    Ok(())
}

/// A type name that ignores nullability and list item names.
fn type_name(t: &DataType) -> String {
    match t {
        DataType::Struct(fields) => format!(
            "struct<{}>",
            fields
                .iter()
                .map(|f| format!("{}:{}", f.name(), type_name(f.data_type())))
                .collect::<Vec<_>>()
                .join(",")
        ),
        DataType::List(item) | DataType::LargeList(item) => format!("list<{}>", type_name(item.data_type())),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        other => other.to_string(),
    }
}
