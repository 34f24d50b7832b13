//! Opening a lake table, creating it on first use, and checking that its
//! columns are the ones the schema gives.

use std::collections::HashMap;

use arrow_schema::{DataType, Field, Schema};
use deltalake::{
    DeltaTable,
    kernel::transaction::CommitProperties,
    kernel::{
        StructType,
        engine::arrow_conversion::{TryFromArrow, TryIntoArrow},
    },
    operations::create::CreateBuilder,
    protocol::SaveMode,
};

use crate::{LakeError, TableLocation, partition::PartitionKey};

/// How long batch keys stay in the Delta log (`txn` retention). A batch
/// redelivered later than this could be written twice.
pub const TXN_RETENTION: &str = "interval 7 days";

pub(crate) fn table_error(location: &TableLocation, e: impl std::fmt::Display) -> LakeError {
    LakeError::Table {
        uri: location.to_string(),
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

/// Loads the table at `location`, creating it when there is none. Several
/// replicas may race to create it: the loser's put-if-absent of version 0
/// fails, and it loads the winner's table.
pub async fn open_or_create(
    location: &TableLocation,
    data: &Schema,
    partition_by: &[PartitionKey],
) -> Result<DeltaTable, LakeError> {
    // A local table without a log is created straight away (loading it
    // would be refused as a missing path); elsewhere loading tells.
    let log_exists = if location.is_local() {
        let path = location
            .url()
            .to_file_path()
            .map_err(|()| table_error(location, "not a local path"))?;
        std::fs::create_dir_all(&path).map_err(|e| table_error(location, e))?;
        path.join("_delta_log").exists()
    } else {
        true
    };
    if log_exists {
        match location.builder()?.load().await {
            Ok(table) => return Ok(table),
            Err(deltalake::DeltaTableError::NotATable(_)) => {}
            Err(e) => return Err(table_error(location, e)),
        }
    }
    match create(location, data, partition_by).await {
        Ok(table) => Ok(table),
        // Another writer created it first: use the winner's table.
        Err(create_error) => location.builder()?.load().await.map_err(|_| create_error),
    }
}

async fn create(
    location: &TableLocation,
    data: &Schema,
    partition_by: &[PartitionKey],
) -> Result<DeltaTable, LakeError> {
    let schema = table_schema(data, partition_by);
    let kernel = StructType::try_from_arrow(&schema).map_err(|e| table_error(location, e))?;
    let config: HashMap<String, Option<String>> = [(
        "delta.setTransactionRetentionDuration".to_string(),
        Some(TXN_RETENTION.to_string()),
    )]
    .into();
    let log_store = location
        .builder()?
        .build()
        .map_err(|e| table_error(location, e))?
        .log_store();
    CreateBuilder::new()
        .with_log_store(log_store)
        .with_columns(kernel.fields().cloned())
        .with_partition_columns(partition_by.iter().map(|p| p.column()))
        .with_configuration(config)
        .with_save_mode(SaveMode::Ignore)
        // A lost race to create must fail, not retry as a later version:
        // that would commit the table's metadata again and fail every
        // writer that loaded the winner's version 0.
        .with_commit_properties(CommitProperties::default().with_max_retries(0))
        .await
        .map_err(|e| table_error(location, e))
}

/// Checks the table's columns against the schema's, by name and type.
pub fn check_schema(table: &DeltaTable, location: &TableLocation, expected: &Schema) -> Result<(), LakeError> {
    let snapshot = table.snapshot().map_err(|e| table_error(location, e))?;
    let found = snapshot.schema();
    let found_arrow: Schema = found
        .as_ref()
        .try_into_arrow()
        .map_err(|e: arrow_schema::ArrowError| table_error(location, e))?;
    let describe = |s: &Schema| {
        s.fields()
            .iter()
            .map(|f| format!("{}:{}", f.name(), type_name(f.data_type())))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if describe(&found_arrow) != describe(expected) {
        return Err(LakeError::SchemaMismatch {
            uri: location.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writers_racing_to_create_a_local_table_all_open_it() {
        let schema = Schema::new(vec![Field::new("id", DataType::Utf8, true)]);
        for round in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let url = url::Url::from_directory_path(dir.path().join("t")).unwrap();
            let location = TableLocation::new(url, Default::default()).unwrap();
            let racers: Vec<_> = (0..4)
                .map(|_| {
                    let (location, schema) = (location.clone(), schema.clone());
                    tokio::spawn(async move { open_or_create(&location, &schema, &[PartitionKey::Dt]).await })
                })
                .collect();
            for racer in racers {
                let table = racer.await.unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
                assert_eq!(table.version(), Some(0));
            }
        }
    }
}
