//! The `postgres` sink in the engine: its columns come from the schema its
//! `validate` inputs share, when they share one, or are inferred.

use std::time::Duration;

use async_trait::async_trait;
use sluice_postgres::{PostgresSink, PostgresSinkConfig, shape::check_primary_key};

use super::{Graph, OpenedSink, Places, ResolvedSink, SinkSpec, common_schema};
use crate::config::{Component, Pipeline, SinkConfig};

#[async_trait]
impl SinkSpec for PostgresSinkConfig {
    fn check(&self, _inputs: &[String], _graph: &Graph<'_>) -> Result<(), String> {
        self.validate()
    }

    fn resolve(&self, inputs: &[String], graph: &Graph<'_>, _places: &Places<'_>) -> Result<ResolvedSink, String> {
        let schema = common_schema(graph.file, inputs);
        if let Some(schema) = schema {
            check_primary_key(schema, &self.primary_key).map_err(|e| format!("primary_key: {e}"))?;
        }
        Ok(ResolvedSink::Postgres {
            schema: schema.cloned(),
        })
    }

    async fn open(
        &self,
        _name: &str,
        sink: &Component<SinkConfig>,
        _pipeline: &Pipeline,
    ) -> anyhow::Result<OpenedSink> {
        let schema = match &sink.resolved {
            ResolvedSink::Postgres { schema } => schema.clone(),
            _ => None,
        };
        Ok(OpenedSink {
            sink: Box::new(PostgresSink::open(self, schema).await?),
            compaction: None,
        })
    }

    fn flush_interval(&self) -> Duration {
        Duration::from_secs(self.flush_interval_secs)
    }
}
