//! The `lake` sink in the engine: one table whose columns come from the
//! schema its `validate` inputs check against, or (`table_template`) a
//! table per schema MODEL of self-describing or Avro events; and the
//! scheduled compaction of those tables.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use sluice_core::{JsonDoc, Sink};
use sluice_lake::{LakeSink, LakeSinkConfig, RoutedLakeSink, StoreLocation, partition::PartitionKey};
use sluice_schema::{ArrowLayout, arrow_layout, registry::SchemaKey};
use url::Url;

use super::{Graph, OpenedSink, Places, ResolvedSink, SinkSpec, validated_schema};
use crate::{
    config::{
        Component, Pipeline, RegistryLocation, SinkConfig, TransformConfig, load::store_location, model::PipelineFile,
    },
    engine::{
        compaction::Tables,
        snowplow_columns::SnowplowColumns,
        table_routes::{RegistryRoutes, Remembered},
    },
};

/// What a lake sink writes: where, which columns, and where the event id is.
#[derive(Debug, Clone, PartialEq)]
pub struct LakeTable {
    pub location: StoreLocation,
    /// The columns (for a Snowplow table, the atomic ones it starts with).
    pub layout: ArrowLayout,
    /// JSON pointer of the event id (from the `validate` inputs).
    pub event_id: String,
    /// The column holding the event id, through structs (for compaction).
    pub id_column: Vec<String>,
    /// Fed by `snowplow` transforms: the Snowplow-shaped table, whose
    /// entity columns come from this registry and are added as events of
    /// new schemas arrive.
    pub snowplow: Option<RegistryLocation>,
}

/// A lake sink that routes self-describing events to a table per schema
/// family and MODEL.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutedLake {
    /// `table_template` with a relative path made absolute.
    pub template: String,
    pub storage_options: sluice_core::StorageOptions,
    /// JSON pointer of the event id (from the `self_describing` inputs).
    pub event_id: String,
    /// The top-level field holding each row's schema key, if kept.
    pub key_field: Option<String>,
    pub registry: RegistryLocation,
}

impl RoutedLake {
    /// The table of `key`'s family and MODEL.
    pub fn location(&self, key: &SchemaKey) -> Result<StoreLocation, String> {
        let filled = LakeSinkConfig::table_uri(&self.template, &key.vendor, &key.name, &key.format, key.version.model);
        let url = if filled.contains("://") {
            Url::parse(&filled).map_err(|e| format!("table_template: {filled:?} is not a URL ({e})"))?
        } else {
            Url::from_directory_path(&filled)
                .map_err(|()| format!("table_template: {filled:?} is not a usable path"))?
        };
        StoreLocation::new(url, self.storage_options.clone()).map_err(|e| format!("table_template: {e}"))
    }

    /// The table of each schema family and MODEL in the registry, with its
    /// event id column (from the newest version), whether or not it exists
    /// yet. Versions a table cannot hold, or without the id as a column,
    /// are left out: no event of theirs reaches a table.
    pub async fn tables(&self) -> Result<Vec<(StoreLocation, Vec<String>)>, String> {
        let registered = self.registry.open()?.list().await.map_err(|e| e.to_string())?;
        let mut newest: BTreeMap<String, &sluice_schema::registry::Registered> = BTreeMap::new();
        for r in &registered {
            let Ok(location) = self.location(&r.key) else {
                continue;
            };
            // `list` is ordered by version: the last one of a table wins.
            newest.insert(location.url().to_string(), r);
        }
        let mut tables = Vec::new();
        for r in newest.into_values() {
            let Ok(layout) = r.json_schema().and_then(|s| arrow_layout(&s)) else {
                continue;
            };
            let (Ok(location), Ok(id_column)) = (self.location(&r.key), column_path(&layout.schema, &self.event_id))
            else {
                continue;
            };
            tables.push((location, id_column));
        }
        Ok(tables)
    }
}

#[async_trait]
impl SinkSpec for LakeSinkConfig {
    fn check(&self, _inputs: &[String], _graph: &Graph<'_>) -> Result<(), String> {
        self.validate()
    }

    fn resolve(&self, inputs: &[String], graph: &Graph<'_>, places: &Places<'_>) -> Result<ResolvedSink, String> {
        if self.table_template.is_some() {
            return routed_lake(self, inputs, graph.file, places).map(ResolvedSink::RoutedLake);
        }
        let location = store_location(places.dir, &self.uri, &self.storage_options)?;
        let (layout, event_id, snowplow) = if snowplow_inputs(graph.file, inputs)? {
            let layout = sluice_schema::snowplow::atomic_layout().clone();
            (layout, "/event_id".to_string(), Some(places.registry.clone()))
        } else {
            let (schema, event_id) = lake_schema(graph.file, inputs)?;
            let layout = arrow_layout(schema).map_err(|e| format!("inputs: the schema they validate against: {e}"))?;
            (layout, event_id, None)
        };
        for p in &self.partition_by {
            if layout.schema.field_with_name(p.column()).is_ok() {
                return Err(format!(
                    "partition_by: the schema already has a field named {:?}; partition columns must be new names",
                    p.column()
                ));
            }
        }
        let id_column = column_path(&layout.schema, &event_id)
            .map_err(|e| format!("inputs: the event id {event_id} {e}; compaction needs it as a column"))?;
        for p in &self.partition_by {
            if let PartitionKey::Bucket { pointer, .. } = p {
                column_path(&layout.schema, pointer).map_err(|e| format!("partition_by: \"{p}\": {pointer} {e}"))?;
            }
        }
        Ok(ResolvedSink::Lake(LakeTable {
            location,
            layout,
            event_id,
            id_column,
            snowplow,
        }))
    }

    async fn open(&self, name: &str, sink: &Component<SinkConfig>, _pipeline: &Pipeline) -> anyhow::Result<OpenedSink> {
        let (tables, opened): (Tables, Box<dyn Sink>) = match &sink.resolved {
            ResolvedSink::RoutedLake(routed) => (
                Tables::Routed(routed.clone()),
                Box::new(RoutedLakeSink::new(
                    self.clone(),
                    &routed.event_id,
                    Arc::new(Remembered::new(
                        RegistryRoutes::new(routed.clone()).map_err(anyhow::Error::msg)?,
                    )),
                )),
            ),
            ResolvedSink::Lake(
                table @ LakeTable {
                    snowplow: Some(registry),
                    ..
                },
            ) => {
                let columns =
                    SnowplowColumns::new(table.location.clone(), registry.open().map_err(anyhow::Error::msg)?);
                (
                    Tables::One(table.location.clone(), table.id_column.clone()),
                    Box::new(RoutedLakeSink::new(
                        self.clone(),
                        &table.event_id,
                        Arc::new(Remembered::new(columns)),
                    )),
                )
            }
            ResolvedSink::Lake(table) => {
                let opened = LakeSink::open(
                    table.location.clone(),
                    self,
                    &table.layout.schema,
                    table.layout.json_text_paths.clone(),
                    &table.event_id,
                )
                .await?;
                (
                    Tables::One(table.location.clone(), table.id_column.clone()),
                    Box::new(opened),
                )
            }
            other => anyhow::bail!("lake sink {name} was loaded as {other:?}"),
        };
        Ok(OpenedSink {
            sink: opened,
            compaction: self.compaction.enabled.then(|| (tables, self.compaction.clone())),
        })
    }

    fn flush_interval(&self) -> Duration {
        Duration::from_secs(self.flush_interval_secs)
    }
}

/// Whether the inputs are `snowplow` transforms (then all must be: their
/// events go to a Snowplow-shaped table of their own).
fn snowplow_inputs(file: &PipelineFile, inputs: &[String]) -> Result<bool, String> {
    let is_snowplow = |input: &String| {
        matches!(
            file.transforms.get(input).map(|t| &t.config),
            Some(TransformConfig::Snowplow(_))
        )
    };
    match inputs.iter().filter(|i| is_snowplow(i)).count() {
        0 => Ok(false),
        n if n == inputs.len() => Ok(true),
        _ => Err(
            "inputs: mixes snowplow transforms with other inputs; a Snowplow-shaped table takes only Snowplow events"
                .into(),
        ),
    }
}

/// The schema a lake sink's events follow and the pointer of their id:
/// every input must be a `validate` transform, all with the same schema and
/// event id.
fn lake_schema<'a>(file: &'a PipelineFile, inputs: &[String]) -> Result<(&'a JsonDoc, String), String> {
    let mut found: Option<&JsonDoc> = None;
    let mut event_id: Option<&str> = None;
    for input in inputs {
        let Some(schema) = validated_schema(file, input) else {
            let what = if file.sources.contains_key(input) {
                "a source"
            } else {
                "not a validate transform"
            };
            return Err(format!(
                "inputs: {input:?} is {what}; a lake sink needs events checked by a `validate` transform (it gives the columns and the event time)"
            ));
        };
        if found.is_some_and(|f| f != schema) {
            return Err("inputs: the inputs validate against different schemas; one table has one schema".into());
        }
        found = Some(schema);
        if let Some(TransformConfig::Validate(v)) = file.transforms.get(input).map(|t| &t.config) {
            if event_id.is_some_and(|id| id != v.event_id) {
                return Err(
                    "inputs: the inputs take the event id from different fields; one table has one id column".into(),
                );
            }
            event_id = Some(&v.event_id);
        }
    }
    match (found, event_id) {
        (Some(schema), Some(id)) => Ok((schema, id.to_string())),
        _ => Err("inputs: must not be empty".into()),
    }
}

/// A `table_template` lake sink: every input is a `self_describing` or
/// `avro` transform, all with one event id pointer.
fn routed_lake(
    lake: &LakeSinkConfig,
    inputs: &[String],
    file: &PipelineFile,
    places: &Places<'_>,
) -> Result<RoutedLake, String> {
    let template = lake.table_template.clone().unwrap_or_default();
    let mut found: Option<(&String, &String)> = None;
    for input in inputs {
        let (event_id, key_field) = match file.transforms.get(input).map(|t| &t.config) {
            Some(TransformConfig::SelfDescribing(sd)) => (&sd.event_id, &sd.key_field),
            Some(TransformConfig::Avro(avro)) => (&avro.event_id, &avro.key_field),
            _ => {
                return Err(format!(
                    "inputs: {input:?} is not a self_describing or avro transform; a lake sink with table_template routes events by the registered schema version they were checked against"
                ));
            }
        };
        if found.is_some_and(|(id, key)| id != event_id || key != key_field) {
            return Err("inputs: the inputs take the event id or keep the schema key in different fields; the tables have one of each".into());
        }
        found = Some((event_id, key_field));
    }
    let (event_id, key_field) = found.ok_or("inputs: must not be empty")?;
    let routed = RoutedLake {
        template: if template.contains("://") {
            template
        } else {
            crate::config::load::resolve(places.dir, &template)
                .to_string_lossy()
                .into_owned()
        },
        storage_options: lake.storage_options.clone(),
        event_id: event_id.clone(),
        key_field: (!key_field.is_empty()).then(|| key_field.trim_start_matches('/').to_string()),
        registry: places.registry.clone(),
    };
    let sample: SchemaKey = "iglu:com.example/sample/jsonschema/1-0-0"
        .parse()
        .map_err(|e| format!("table_template: {e}"))?;
    routed.location(&sample)?;
    Ok(routed)
}

/// The column a JSON pointer names, through struct fields.
fn column_path(schema: &arrow_schema::Schema, pointer: &str) -> Result<Vec<String>, String> {
    let path = sluice_core::pointer_tokens(pointer);
    let mut fields = schema.fields().clone();
    for (i, name) in path.iter().enumerate() {
        let field = fields
            .iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| "is not a column of the table (fields under arrays cannot be used)".to_string())?;
        match field.data_type() {
            arrow_schema::DataType::Struct(children) if i + 1 < path.len() => fields = children.clone(),
            arrow_schema::DataType::Struct(_) | arrow_schema::DataType::List(_) => {
                return Err("is not a string or number column".into());
            }
            _ if i + 1 < path.len() => return Err("is not a column of the table".into()),
            _ => {}
        }
    }
    Ok(path)
}
