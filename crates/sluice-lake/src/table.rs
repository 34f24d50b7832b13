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

use crate::{LakeError, StoreLocation, partition::PartitionKey};

/// How long batch keys stay in the Delta log (`txn` retention). A batch
/// redelivered later than this could be written twice.
pub const TXN_RETENTION: &str = "interval 7 days";

pub(crate) fn table_error(location: &StoreLocation, e: impl std::fmt::Display) -> LakeError {
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
    location: &StoreLocation,
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

/// Whether a table is at `location` (a Delta log with a version).
pub async fn table_exists(location: &StoreLocation) -> Result<bool, LakeError> {
    if location.is_local() {
        let path = location
            .url()
            .to_file_path()
            .map_err(|()| table_error(location, "not a local path"))?;
        return Ok(path.join("_delta_log").exists());
    }
    match location.builder()?.load().await {
        Ok(_) => Ok(true),
        Err(deltalake::DeltaTableError::NotATable(_)) => Ok(false),
        Err(e) => Err(table_error(location, e)),
    }
}

/// The columns of the table at `location`, if there is one.
pub async fn existing_schema(location: &StoreLocation) -> Result<Option<Schema>, LakeError> {
    if !table_exists(location).await? {
        return Ok(None);
    }
    let table = location.builder()?.load().await.map_err(|e| table_error(location, e))?;
    let snapshot = table.snapshot().map_err(|e| table_error(location, e))?;
    let schema: Schema = snapshot
        .schema()
        .as_ref()
        .try_into_arrow()
        .map_err(|e: arrow_schema::ArrowError| table_error(location, e))?;
    Ok(Some(schema))
}

async fn create(
    location: &StoreLocation,
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
pub fn check_schema(table: &DeltaTable, location: &StoreLocation, expected: &Schema) -> Result<(), LakeError> {
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

/// `current`'s columns with those of `incoming` it lacks added at the end
/// (in structs too, also under lists), or `None` when it has them all. A
/// column both have must have the same type (nullability and list item
/// names aside): types never change, only columns get added.
pub fn merge_columns(current: &Schema, incoming: &Schema) -> Result<Option<Schema>, String> {
    let mut path = Vec::new();
    let merged = merge_fields(current.fields(), incoming.fields(), &mut path)?;
    Ok(merged.map(Schema::new))
}

fn merge_fields(
    current: &arrow_schema::Fields,
    incoming: &arrow_schema::Fields,
    path: &mut Vec<String>,
) -> Result<Option<Vec<Field>>, String> {
    let mut out: Vec<Field> = current.iter().map(|f| f.as_ref().clone()).collect();
    let mut changed = false;
    for new in incoming {
        path.push(new.name().clone());
        match out.iter_mut().find(|f| f.name() == new.name()) {
            None => {
                out.push(new.as_ref().clone().with_nullable(true));
                changed = true;
            }
            Some(old) => {
                if let Some(widened) = merge_types(old.data_type(), new.data_type(), path)? {
                    *old = old.clone().with_data_type(widened);
                    changed = true;
                }
            }
        }
        path.pop();
    }
    Ok(changed.then_some(out))
}

fn merge_types(current: &DataType, incoming: &DataType, path: &mut Vec<String>) -> Result<Option<DataType>, String> {
    match (current, incoming) {
        (DataType::Struct(a), DataType::Struct(b)) => {
            Ok(merge_fields(a, b, path)?.map(|fields| DataType::Struct(fields.into())))
        }
        (DataType::List(a), DataType::List(b)) => Ok(merge_types(a.data_type(), b.data_type(), path)?
            .map(|item| DataType::List(std::sync::Arc::new(a.as_ref().clone().with_data_type(item))))),
        _ if type_name(current) == type_name(incoming) => Ok(None),
        _ => Err(format!(
            "column {} is {} in the table but {} in the new schema; a column's type never changes (register a new MODEL)",
            path.join("."),
            type_name(current),
            type_name(incoming)
        )),
    }
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

    #[test]
    fn columns_are_merged_by_name_and_types_never_change() {
        let inner = |names: &[&str]| {
            DataType::Struct(
                names
                    .iter()
                    .map(|n| Field::new(*n, DataType::Int64, true))
                    .collect::<Vec<_>>()
                    .into(),
            )
        };
        let table = Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("dev", inner(&["w"]), true),
            Field::new(
                "tags",
                DataType::List(std::sync::Arc::new(Field::new("element", DataType::Utf8, true))),
                true,
            ),
        ]);
        let same = Schema::new(vec![
            Field::new(
                "tags",
                DataType::List(std::sync::Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
            Field::new("id", DataType::Utf8, true),
        ]);
        assert_eq!(merge_columns(&table, &same), Ok(None));

        let wider = Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("dev", inner(&["w", "h"]), true),
            Field::new("ref", DataType::Utf8, false),
        ]);
        let merged = merge_columns(&table, &wider).unwrap().unwrap();
        let names: Vec<&str> = merged.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "dev", "tags", "ref"], "new columns come last");
        assert_eq!(merged.field_with_name("dev").unwrap().data_type(), &inner(&["w", "h"]));
        assert!(merged.field_with_name("ref").unwrap().is_nullable());

        let changed = Schema::new(vec![
            Field::new("dev", inner(&["w"]), true),
            Field::new("id", DataType::Int64, true),
        ]);
        let err = merge_columns(&table, &changed).unwrap_err();
        assert!(err.contains("column id is string in the table but Int64"), "{err}");
        let nested = Schema::new(vec![Field::new(
            "dev",
            DataType::Struct(vec![Field::new("w", DataType::Utf8, true)].into()),
            true,
        )]);
        assert!(merge_columns(&table, &nested).unwrap_err().contains("column dev.w"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writers_racing_to_create_a_local_table_all_open_it() {
        let schema = Schema::new(vec![Field::new("id", DataType::Utf8, true)]);
        for round in 0..5 {
            let dir = sluice_testkit::tempdir().unwrap();
            let url = url::Url::from_directory_path(dir.path().join("t")).unwrap();
            let location = StoreLocation::new(url, std::collections::BTreeMap::new()).unwrap();
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
