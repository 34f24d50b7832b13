//! Sink types in the engine, one file each: the checks that need the
//! pipeline's graph, what `load` works out from it once (a
//! [`ResolvedSink`], kept on the sink's [`Component`]), and opening the
//! running sink. The config structs live beside the sinks in their own
//! crates; this is the one place per type in the engine, dispatched by
//! [`SinkConfig::spec`]. Errors are `key: what is wrong`; the loader puts
//! `sinks.<name>.` and the file in front.

mod kafka;
mod lake;
mod postgres;
mod projection;
mod stream;

use std::{path::Path, time::Duration};

use async_trait::async_trait;
pub use lake::{LakeTable, RoutedLake};
use sluice_core::{JsonDoc, Sink};
use sluice_lake::CompactionConfig;

use crate::{
    config::{Component, Pipeline, RegistryLocation, SinkConfig, TransformConfig, model::PipelineFile},
    engine::compaction::Tables,
    extensions::Extensions,
};

/// What a sink learns about the pipeline at load.
pub struct Graph<'a> {
    pub file: &'a PipelineFile,
    pub extensions: &'a Extensions,
}

/// Where relative locations are resolved, and the schema registry.
pub struct Places<'a> {
    /// The pipeline file's folder.
    pub dir: &'a Path,
    pub registry: &'a RegistryLocation,
}

/// What `load` worked out for a sink from the graph.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ResolvedSink {
    /// The sink needs nothing beyond its config.
    #[default]
    Nothing,
    /// A lake sink with a `uri`: its table and columns.
    Lake(LakeTable),
    /// A lake sink with a `table_template`: a table per schema MODEL.
    RoutedLake(RoutedLake),
    /// A postgres sink: the JSON Schema of its events, when every input is
    /// a `validate` transform with the same schema (it declares the columns).
    Postgres { schema: Option<JsonDoc> },
}

/// A sink ready to run, and what its compaction schedule keeps, if any.
pub struct OpenedSink {
    pub sink: Box<dyn Sink>,
    pub compaction: Option<(Tables, CompactionConfig)>,
}

/// A sink type's part in the engine.
#[async_trait]
pub trait SinkSpec: Sync {
    /// Checks without I/O: its own keys and the kinds of its inputs.
    fn check(&self, inputs: &[String], graph: &Graph<'_>) -> Result<(), String>;

    /// What the sink needs from its inputs and locations, worked out once.
    fn resolve(&self, _inputs: &[String], _graph: &Graph<'_>, _places: &Places<'_>) -> Result<ResolvedSink, String> {
        Ok(ResolvedSink::Nothing)
    }

    /// The running sink `name`.
    async fn open(&self, name: &str, sink: &Component<SinkConfig>, pipeline: &Pipeline) -> anyhow::Result<OpenedSink>;

    /// Longest time an accepted event waits before it is committed.
    fn flush_interval(&self) -> Duration;
}

/// The schema the `validate` transform `name` loaded.
fn validated_schema<'a>(file: &'a PipelineFile, name: &str) -> Option<&'a JsonDoc> {
    match &file.transforms.get(name)?.config {
        TransformConfig::Validate(v) => v.loaded.as_ref(),
        _ => None,
    }
}

/// The schema every input validates against, if they all are `validate`
/// transforms with the same schema.
fn common_schema<'a>(file: &'a PipelineFile, inputs: &[String]) -> Option<&'a JsonDoc> {
    let mut found: Option<&JsonDoc> = None;
    for input in inputs {
        let schema = validated_schema(file, input)?;
        if found.is_some_and(|f| f != schema) {
            return None;
        }
        found = Some(schema);
    }
    found
}
