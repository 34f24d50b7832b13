//! The `projection` sink in the engine: read models in Redis, built from
//! the outbound document stream of one `documents` stage and lookups in its
//! store.

use std::time::Duration;

use async_trait::async_trait;
use sluice_documents::projection::ProjectionConfig;

use super::{Graph, OpenedSink, SinkSpec};
use crate::config::{Component, Pipeline, SinkConfig, TransformConfig};

#[async_trait]
impl SinkSpec for ProjectionConfig {
    /// A projection reads the outbound stream of exactly one `documents`
    /// stage (whose store its lookups read); a `custom` type must be
    /// registered and take its options.
    fn check(&self, inputs: &[String], graph: &Graph<'_>) -> Result<(), String> {
        self.projector()?;
        if let Some(custom) = &self.custom {
            let factory = graph.extensions.projection(&custom.type_name).ok_or_else(|| {
                format!(
                    "custom.type: {:?} is not a registered projection; registered: {:?}",
                    custom.type_name,
                    graph.extensions.projection_types()
                )
            })?;
            factory(&custom.options).map_err(|e| format!("custom.{e}"))?;
        }
        match inputs {
            [input]
                if graph
                    .file
                    .transforms
                    .get(input)
                    .is_some_and(|t| matches!(t.config, TransformConfig::Documents(_))) =>
            {
                Ok(())
            }
            _ => Err(format!(
                "inputs: {inputs:?}: a projection reads the outbound stream of one `documents` stage (inputs = [\"doctors.changes\"])"
            )),
        }
    }

    async fn open(&self, name: &str, sink: &Component<SinkConfig>, pipeline: &Pipeline) -> anyhow::Result<OpenedSink> {
        let opened = crate::documents::open_projection(pipeline, name, &sink.inputs, self).await?;
        Ok(OpenedSink {
            sink: Box::new(opened),
            compaction: None,
        })
    }

    fn flush_interval(&self) -> Duration {
        Duration::from_secs(self.flush_interval_secs)
    }
}
