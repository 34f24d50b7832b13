//! Loading a pipeline file: parse, check the component graph, read and
//! compile schemas, resolve relative paths against the file's folder.
//! Every error names the file, the key and what is allowed.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Component as PathComponent, Path, PathBuf},
    sync::Arc,
};

use sluice_connectors::sources::{LoadEnv, ResolvedLocation};
use sluice_core::JsonDoc;
use sluice_documents::projection::ProjectionConfig;
use sluice_lake::StoreLocation;
use sluice_schema::{ArrowLayout, arrow_layout, registry::SchemaKey};
use url::Url;

use super::{
    RegistryLocation,
    build::check_transform,
    interpolate::interpolate,
    model::{PipelineFile, QueueBackend, SinkConfig, TransformConfig},
};
use crate::extensions::Extensions;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read pipeline file {file}: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

/// A checked pipeline with every path resolved.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub file: PathBuf,
    /// The file's stem; names the data directory by default.
    pub name: String,
    pub data_dir: PathBuf,
    pub config: PipelineFile,
    /// Table and columns of each lake sink with a `uri`.
    pub lakes: BTreeMap<String, LakeTable>,
    /// Each lake sink with a `table_template` (a table per schema MODEL).
    pub routed_lakes: BTreeMap<String, RoutedLake>,
    /// The JSON Schema of each postgres sink's events, when every input is
    /// a `validate` transform with the same schema (it declares the columns).
    pub postgres: BTreeMap<String, Option<JsonDoc>>,
    /// Where the schema registry is.
    pub registry: RegistryLocation,
    /// The transform and projection types the program registered.
    pub extensions: Arc<Extensions>,
}

/// What a lake sink writes: where, which columns, and where the event id is.
#[derive(Debug, Clone)]
pub struct LakeTable {
    pub location: StoreLocation,
    pub layout: ArrowLayout,
    /// JSON pointer of the event id (from the `validate` inputs).
    pub event_id: String,
    /// The column holding the event id, through structs (for compaction).
    pub id_column: Vec<String>,
}

/// A lake sink that routes self-describing events to a table per schema
/// family and MODEL.
#[derive(Debug, Clone)]
pub struct RoutedLake {
    /// `table_template` with a relative path made absolute.
    pub template: String,
    pub storage_options: BTreeMap<String, String>,
    /// JSON pointer of the event id (from the `self_describing` inputs).
    pub event_id: String,
    /// The top-level field holding each row's schema key, if kept.
    pub key_field: Option<String>,
    pub registry: RegistryLocation,
}

impl RoutedLake {
    /// The table of `key`'s family and MODEL.
    pub fn location(&self, key: &SchemaKey) -> Result<StoreLocation, String> {
        let filled = sluice_lake::LakeSinkConfig::table_uri(
            &self.template,
            &key.vendor,
            &key.name,
            &key.format,
            key.version.model,
        );
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

/// Reads and checks a pipeline file; `extensions` are the types a program
/// using Sluice as a library registered.
pub fn load(path: &Path, extensions: &Arc<Extensions>) -> Result<Pipeline, ConfigError> {
    let file = absolute(path);
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
        file: shown.clone(),
        source,
    })?;
    let invalid = |message: String| ConfigError::Invalid {
        file: shown.clone(),
        message,
    };
    let text = interpolate(&text, |name| std::env::var(name).ok()).map_err(invalid)?;
    let mut config: PipelineFile = toml::from_str(&text).map_err(|e| invalid(e.to_string().trim_end().to_string()))?;
    let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = file
        .file_stem()
        .map_or_else(|| "pipeline".into(), |s| s.to_string_lossy().into_owned());
    resolve_stream_aliases(&mut config);
    check(&config, extensions).map_err(invalid)?;

    let data_dir = match &config.data_dir {
        Some(d) => resolve(&dir, d),
        None => dir.join(".sluice").join(&name),
    };
    let env = PipelineDir(&dir);
    for (name, source) in &mut config.sources {
        source
            .spec_mut()
            .resolve(&env)
            .map_err(|e| invalid(format!("sources.{name}.{e}")))?;
    }
    let registry = RegistryLocation::resolve(&config.registry, |uri, options| store_location(&dir, uri, options))
        .map_err(|e| invalid(format!("registry.{e}")))?;
    for (tname, transform) in &mut config.transforms {
        match &mut transform.config {
            TransformConfig::SelfDescribing(sd) => sd.registry = Some(registry.clone()),
            TransformConfig::Avro(avro) => avro.registry = Some(registry.clone()),
            _ => {}
        }
        if let Some(spec) = transform.config.spec_mut() {
            spec.resolve(&env)
                .map_err(|e| invalid(format!("transforms.{tname}.{e}")))?;
        }
    }
    for (tname, transform) in &config.transforms {
        check_transform(tname, &transform.config, &data_dir, extensions)
            .map_err(|e| invalid(format!("transforms.{tname}.{e}")))?;
    }
    let mut lakes = BTreeMap::new();
    let mut routed_lakes = BTreeMap::new();
    let mut postgres = BTreeMap::new();
    for (sname, sink) in &config.sinks {
        let lake = match &sink.config {
            SinkConfig::Lake(lake) if lake.table_template.is_some() => {
                let routed = routed_lake(&config, &dir, &registry, sname, &sink.inputs, lake).map_err(invalid)?;
                routed_lakes.insert(sname.clone(), routed);
                continue;
            }
            SinkConfig::Lake(lake) => lake,
            SinkConfig::Projection(_) | SinkConfig::Stream(_) => continue,
            SinkConfig::Postgres(pg) => {
                let schema = common_schema(&config, &sink.inputs);
                if let Some(schema) = &schema {
                    sluice_postgres::shape::check_primary_key(schema, &pg.primary_key)
                        .map_err(|e| invalid(format!("sinks.{sname}.primary_key: {e}")))?;
                }
                postgres.insert(sname.clone(), schema.cloned());
                continue;
            }
        };
        let location = store_location(&dir, &lake.uri, &lake.storage_options)
            .map_err(|e| invalid(format!("sinks.{sname}.{e}")))?;
        let (schema, event_id) = lake_schema(&config, sname, &sink.inputs).map_err(invalid)?;
        let layout =
            arrow_layout(schema).map_err(|e| invalid(format!("sinks.{sname}: the schema of its inputs: {e}")))?;
        for p in &lake.partition_by {
            if layout.schema.field_with_name(p.column()).is_ok() {
                return Err(invalid(format!(
                    "sinks.{sname}.partition_by: the schema already has a field named {:?}; partition columns must be new names",
                    p.column()
                )));
            }
        }
        let id_column = column_path(&layout.schema, &event_id).map_err(|e| {
            invalid(format!(
                "sinks.{sname}: the event id {event_id} {e}; compaction needs it as a column"
            ))
        })?;
        for p in &lake.partition_by {
            if let sluice_lake::partition::PartitionKey::Bucket { pointer, .. } = p {
                column_path(&layout.schema, pointer)
                    .map_err(|e| invalid(format!("sinks.{sname}.partition_by: \"{p}\": {pointer} {e}")))?;
            }
        }
        lakes.insert(
            sname.clone(),
            LakeTable {
                location,
                layout,
                event_id,
                id_column,
            },
        );
    }
    Ok(Pipeline {
        file,
        name,
        data_dir,
        config,
        lakes,
        routed_lakes,
        postgres,
        registry,
        extensions: extensions.clone(),
    })
}

/// Pure checks of the file's content.
/// NATS's default `max_payload`, the largest batch a JetStream queue takes.
const NATS_MAX_PAYLOAD: usize = 1024 * 1024 - 4096;

fn check(config: &PipelineFile, extensions: &Extensions) -> Result<(), String> {
    if let QueueBackend::JetStream { .. } = config.queue {
        // A batch is one JetStream message: NATS refuses payloads over its
        // max_payload (1 MiB unless the server raises it).
        for (name, source) in &config.sources {
            let Some(max_batch_bytes) = source.spec().max_batch_bytes() else {
                continue;
            };
            if max_batch_bytes > NATS_MAX_PAYLOAD {
                return Err(format!(
                    "sources.{name}.max_batch_bytes: {max_batch_bytes} is more than a JetStream queue's messages hold; allowed: at most {NATS_MAX_PAYLOAD} (NATS max_payload) with queue = \"nats://...\""
                ));
            }
        }
    }
    let d = &config.delivery;
    if d.visibility_timeout_secs == 0
        || d.max_attempts == 0
        || d.max_in_flight == 0
        || d.max_queue_bytes < 1024 * 1024
        || d.max_in_flight_bytes < 1024 * 1024
        || d.lease_secs < 3
    {
        return Err("delivery: visibility_timeout_secs, max_attempts and max_in_flight must be at least 1, lease_secs at least 3, max_queue_bytes and max_in_flight_bytes at least 1048576".into());
    }
    if config.sources.is_empty() {
        return Err("sources: a pipeline needs at least one source".into());
    }
    if config.sinks.is_empty() && !config.transforms.values().any(|t| stores_itself(&t.config)) {
        return Err(
            "sinks: a pipeline needs at least one sink (or a `documents` stage, which stores its documents)".into(),
        );
    }
    let mut names = BTreeSet::new();
    let all = config
        .sources
        .keys()
        .map(|n| ("sources", n))
        .chain(config.transforms.keys().map(|n| ("transforms", n)))
        .chain(config.sinks.keys().map(|n| ("sinks", n)));
    for (kind, name) in all {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(format!(
                "{kind}.{name}: component names may only use letters, digits, '_' and '-'"
            ));
        }
        if !names.insert(name.clone()) {
            return Err(format!("{kind}.{name}: the name is used by another component"));
        }
    }
    for (name, s) in &config.sources {
        s.spec().validate().map_err(|e| format!("sources.{name}.{e}"))?;
    }
    for (name, t) in &config.transforms {
        let TransformConfig::Validate(v) = &t.config else {
            continue;
        };
        for (key, pointer) in [("event_id", &v.event_id), ("event_time", &v.event_time)] {
            if !pointer.starts_with('/') {
                return Err(format!(
                    "transforms.{name}.{key}: {pointer:?} is not a JSON pointer; write it like \"/ts\""
                ));
            }
        }
    }
    for (name, s) in &config.sinks {
        match &s.config {
            SinkConfig::Lake(l) => l.validate(),
            SinkConfig::Postgres(p) => p.validate(),
            SinkConfig::Projection(p) => check_projection(config, &s.inputs, p, extensions),
            SinkConfig::Stream(s) => s.validate(),
        }
        .map_err(|e| format!("sinks.{name}.{e}"))?;
    }
    check_graph(config)
}

/// A projection reads the outbound stream of exactly one `documents` stage
/// (whose store its lookups read).
fn check_projection(
    config: &PipelineFile,
    inputs: &[String],
    p: &ProjectionConfig,
    extensions: &Extensions,
) -> Result<(), String> {
    p.projector()?;
    if let Some(custom) = &p.custom {
        let factory = extensions.projection(&custom.type_name).ok_or_else(|| {
            format!(
                "custom.type: {:?} is not a registered projection; registered: {:?}",
                custom.type_name,
                extensions.projection_types()
            )
        })?;
        factory(&custom.options).map_err(|e| format!("custom.{e}"))?;
    }
    match inputs {
        [input] if config.transforms.get(input).is_some_and(|t| stores_itself(&t.config)) => Ok(()),
        _ => Err(format!(
            "inputs: {inputs:?}: a projection reads the outbound stream of one `documents` stage (inputs = [\"doctors.changes\"])"
        )),
    }
}

/// A `documents` stage stores what it receives, so a pipeline may end with it.
fn stores_itself(transform: &TransformConfig) -> bool {
    matches!(transform, TransformConfig::Documents(_))
}

/// `inputs = ["doctors.changes"]` names the outbound document stream of the
/// `documents` stage `doctors`, which is its output.
fn resolve_stream_aliases(config: &mut PipelineFile) {
    let documents: BTreeSet<String> = config
        .transforms
        .iter()
        .filter(|(_, t)| stores_itself(&t.config))
        .map(|(name, _)| name.clone())
        .collect();
    let consumers = config
        .transforms
        .values_mut()
        .map(|t| &mut t.inputs)
        .chain(config.sinks.values_mut().map(|s| &mut s.inputs));
    for inputs in consumers {
        for input in inputs.iter_mut() {
            if let Some(stage) = input.strip_suffix(".changes")
                && documents.contains(stage)
            {
                *input = stage.to_string();
            }
        }
    }
}

fn check_graph(config: &PipelineFile) -> Result<(), String> {
    let consumers = config
        .transforms
        .iter()
        .map(|(n, t)| (format!("transforms.{n}"), &t.inputs))
        .chain(config.sinks.iter().map(|(n, s)| (format!("sinks.{n}"), &s.inputs)));
    let mut used = BTreeSet::new();
    for (key, inputs) in consumers {
        if inputs.is_empty() {
            return Err(format!("{key}.inputs: must name at least one source or transform"));
        }
        for input in inputs {
            if !config.sources.contains_key(input) && !config.transforms.contains_key(input) {
                let allowed: Vec<&String> = config.sources.keys().chain(config.transforms.keys()).collect();
                return Err(format!(
                    "{key}.inputs: {input:?} is not a source or transform; allowed: {allowed:?}"
                ));
            }
            used.insert(input.clone());
        }
    }
    for (kind, names) in [
        ("sources", config.sources.keys().collect::<Vec<_>>()),
        ("transforms", config.transforms.keys().collect()),
    ] {
        for name in names {
            if !used.contains(name) && !config.transforms.get(name).is_some_and(|t| stores_itself(&t.config)) {
                return Err(format!(
                    "{kind}.{name}: nothing takes its events; name it in a transform's or sink's inputs"
                ));
            }
        }
    }
    // Transforms must not form a cycle.
    fn visit<'a>(
        name: &'a str,
        config: &'a PipelineFile,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Result<(), String> {
        if done.contains(name) {
            return Ok(());
        }
        if path.contains(&name) {
            return Err(format!(
                "transforms.{name}.inputs: the transforms form a cycle ({} -> {name})",
                path.join(" -> ")
            ));
        }
        path.push(name);
        if let Some(t) = config.transforms.get(name) {
            for input in &t.inputs {
                visit(input, config, path, done)?;
            }
        }
        path.pop();
        done.insert(name);
        Ok(())
    }
    let mut done = BTreeSet::new();
    for name in config.transforms.keys() {
        visit(name, config, &mut Vec::new(), &mut done)?;
    }
    Ok(())
}

/// The schema a lake sink's events follow and the pointer of their id:
/// every input must be a `validate` transform, all with the same schema and
/// event id.
fn lake_schema<'a>(config: &'a PipelineFile, sink: &str, inputs: &[String]) -> Result<(&'a JsonDoc, String), String> {
    let mut found: Option<&JsonDoc> = None;
    let mut event_id: Option<&str> = None;
    for input in inputs {
        let Some(schema) = validated_schema(config, input) else {
            let what = if config.sources.contains_key(input) {
                "a source"
            } else {
                "not a validate transform"
            };
            return Err(format!(
                "sinks.{sink}.inputs: {input:?} is {what}; a lake sink needs events checked by a `validate` transform (it gives the columns and the event time)"
            ));
        };
        if found.is_some_and(|f| f != schema) {
            return Err(format!(
                "sinks.{sink}.inputs: the inputs validate against different schemas; one table has one schema"
            ));
        }
        found = Some(schema);
        if let Some(TransformConfig::Validate(v)) = config.transforms.get(input).map(|t| &t.config) {
            if event_id.is_some_and(|id| id != v.event_id) {
                return Err(format!(
                    "sinks.{sink}.inputs: the inputs take the event id from different fields; one table has one id column"
                ));
            }
            event_id = Some(&v.event_id);
        }
    }
    match (found, event_id) {
        (Some(schema), Some(id)) => Ok((schema, id.to_string())),
        _ => Err(format!("sinks.{sink}.inputs: must not be empty")),
    }
}

/// A `table_template` lake sink: every input is a `self_describing`
/// transform, all with one event id pointer.
fn routed_lake(
    config: &PipelineFile,
    dir: &Path,
    registry: &RegistryLocation,
    sink: &str,
    inputs: &[String],
    lake: &sluice_lake::LakeSinkConfig,
) -> Result<RoutedLake, String> {
    let template = lake.table_template.clone().unwrap_or_default();
    let mut found: Option<(&String, &String)> = None;
    for input in inputs {
        let (event_id, key_field) = match config.transforms.get(input).map(|t| &t.config) {
            Some(TransformConfig::SelfDescribing(sd)) => (&sd.event_id, &sd.key_field),
            Some(TransformConfig::Avro(avro)) => (&avro.event_id, &avro.key_field),
            _ => {
                return Err(format!(
                    "sinks.{sink}.inputs: {input:?} is not a self_describing or avro transform; a lake sink with table_template routes events by the registered schema version they were checked against"
                ));
            }
        };
        if found.is_some_and(|(id, key)| id != event_id || key != key_field) {
            return Err(format!(
                "sinks.{sink}.inputs: the inputs take the event id or keep the schema key in different fields; the tables have one of each"
            ));
        }
        found = Some((event_id, key_field));
    }
    let (event_id, key_field) = found.ok_or_else(|| format!("sinks.{sink}.inputs: must not be empty"))?;
    let routed = RoutedLake {
        template: if template.contains("://") {
            template
        } else {
            resolve(dir, &template).to_string_lossy().into_owned()
        },
        storage_options: lake.storage_options.clone(),
        event_id: event_id.clone(),
        key_field: (!key_field.is_empty()).then(|| key_field.trim_start_matches('/').to_string()),
        registry: registry.clone(),
    };
    let sample: SchemaKey = "iglu:com.example/sample/jsonschema/1-0-0"
        .parse()
        .expect("a valid sample key");
    routed.location(&sample).map_err(|e| format!("sinks.{sink}.{e}"))?;
    Ok(routed)
}

/// The schema every input validates against, if they all are `validate`
/// transforms with the same schema.
fn common_schema<'a>(config: &'a PipelineFile, inputs: &[String]) -> Option<&'a JsonDoc> {
    let mut found: Option<&JsonDoc> = None;
    for input in inputs {
        let schema = validated_schema(config, input)?;
        if found.is_some_and(|f| f != schema) {
            return None;
        }
        found = Some(schema);
    }
    found
}

/// The schema the `validate` transform `name` loaded.
fn validated_schema<'a>(config: &'a PipelineFile, name: &str) -> Option<&'a JsonDoc> {
    match &config.transforms.get(name)?.config {
        TransformConfig::Validate(v) => v.loaded.as_ref(),
        _ => None,
    }
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

/// What sources resolve their paths and locations against: the pipeline
/// file's folder.
struct PipelineDir<'a>(&'a Path);

impl LoadEnv for PipelineDir<'_> {
    fn path(&self, path: &str) -> PathBuf {
        resolve(self.0, path)
    }

    fn location(&self, uri: &str, options: &BTreeMap<String, String>) -> Result<ResolvedLocation, String> {
        let location = store_location(self.0, uri, options)?;
        Ok(ResolvedLocation {
            url: location.url().to_string(),
            is_local: location.is_local(),
        })
    }
}

/// A folder or URI with its options, resolved against the pipeline file;
/// errors start with the key they are about.
fn store_location(dir: &Path, uri: &str, options: &BTreeMap<String, String>) -> Result<StoreLocation, String> {
    let url = if uri.contains("://") {
        Url::parse(uri).map_err(|e| format!("uri: {uri:?} is not a URL ({e})"))?
    } else {
        Url::from_directory_path(resolve(dir, uri)).map_err(|()| format!("uri: {uri:?} is not a usable path"))?
    };
    StoreLocation::new(url, options.clone()).map_err(|e| {
        if e.starts_with("storage_options") {
            e
        } else {
            format!("uri: {e}")
        }
    })
}

/// `p` relative to `dir` (unless absolute), with `.` and `..` folded.
fn resolve(dir: &Path, p: &str) -> PathBuf {
    normalize(&dir.join(p))
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        normalize(p)
    } else {
        normalize(&std::env::current_dir().unwrap_or_default().join(p))
    }
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            PathComponent::CurDir => {}
            PathComponent::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests;
