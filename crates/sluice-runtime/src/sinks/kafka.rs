//! The `kafka` sink in the engine: events published to a Kafka topic, each
//! batch once (one transaction per flush, with batch markers).

use std::time::Duration;

use async_trait::async_trait;
use sluice_connectors::sinks::kafka::{KafkaSink, KafkaSinkConfig};

use super::{Graph, OpenedSink, SinkSpec};
use crate::config::{Component, Pipeline, SinkConfig};

#[async_trait]
impl SinkSpec for KafkaSinkConfig {
    fn check(&self, _inputs: &[String], _graph: &Graph<'_>) -> Result<(), String> {
        self.validate()
    }

    async fn open(
        &self,
        _name: &str,
        _sink: &Component<SinkConfig>,
        pipeline: &Pipeline,
    ) -> anyhow::Result<OpenedSink> {
        let dir = pipeline.file.parent().unwrap_or(std::path::Path::new("."));
        let sink = KafkaSink::open(self, dir).await?;
        Ok(OpenedSink {
            sink: Box::new(sink),
            compaction: None,
        })
    }

    fn flush_interval(&self) -> Duration {
        Duration::from_secs(self.flush_interval_secs)
    }
}
