//! What `documents` stages and projections need from a loaded pipeline:
//! the stage a projection reads, the stage's store, the Redis writer. Used
//! by `run` (projection sinks) and by `snapshot` and `rehydrate`.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use sluice_documents::{
    config::DocumentsConfig,
    projection::{
        ProjectionConfig, Projector,
        redis::{ProjectionSink, RedisWriter},
    },
    store::DocumentStore,
};

use crate::config::{Pipeline, TransformConfig};

/// The `documents` stage `name`, or the only one.
pub fn documents_stage<'a>(pipeline: &'a Pipeline, name: Option<&str>) -> Result<(&'a str, &'a DocumentsConfig)> {
    let stages: Vec<(&str, &DocumentsConfig)> = pipeline
        .config
        .transforms
        .iter()
        .filter_map(|(n, t)| match &t.config {
            TransformConfig::Documents(d) => Some((n.as_str(), d)),
            _ => None,
        })
        .collect();
    let names: Vec<&str> = stages.iter().map(|(n, _)| *n).collect();
    let file = pipeline.file.display();
    match (name, stages.as_slice()) {
        (None, [one]) => Ok(*one),
        (None, []) => bail!("{file}: the pipeline has no `documents` stage"),
        (None, _) => {
            bail!("{file}: the pipeline has several `documents` stages; pick one with --sink (one of {names:?})")
        }
        (Some(name), _) => stages
            .iter()
            .find(|(n, _)| *n == name)
            .copied()
            .with_context(|| format!("{file}: no `documents` stage {name:?}; allowed: {names:?}")),
    }
}

/// Opens the store of the `documents` stage `name`.
pub async fn open_store(pipeline: &Pipeline, name: &str, stage: &DocumentsConfig) -> Result<Arc<dyn DocumentStore>> {
    let spec = stage.store_spec(name, &pipeline.data_dir).map_err(anyhow::Error::msg)?;
    spec.open()
        .await
        .with_context(|| format!("opening the document store of {name}"))
}

/// The projector, the store of the stage it reads, and a Redis writer.
pub async fn open_projection_parts(
    pipeline: &Pipeline,
    inputs: &[String],
    projection: &ProjectionConfig,
) -> Result<(Projector, Arc<dyn DocumentStore>, RedisWriter)> {
    let mut projector = projection.projector().map_err(anyhow::Error::msg)?;
    if let Some(custom) = &projection.custom {
        let factory = pipeline
            .extensions
            .projection(&custom.type_name)
            .with_context(|| format!("the projection type {:?} is not registered", custom.type_name))?;
        projector = projector.with_custom(factory(&custom.options).map_err(anyhow::Error::msg)?);
    }
    let input = inputs.first().map(String::as_str);
    let (stage_name, stage) = documents_stage(pipeline, input)?;
    let store = open_store(pipeline, stage_name, stage).await?;
    let writer = RedisWriter::connect(&projection.redis, projection.redis_ca_file.as_deref())
        .await
        .map_err(anyhow::Error::msg)?;
    Ok((projector, store, writer))
}

/// The `projection` sink `name`.
pub async fn open_projection(
    pipeline: &Pipeline,
    name: &str,
    inputs: &[String],
    projection: &ProjectionConfig,
) -> Result<ProjectionSink> {
    let (projector, store, writer) = open_projection_parts(pipeline, inputs, projection).await?;
    Ok(ProjectionSink::new(name, projector, store, writer))
}
