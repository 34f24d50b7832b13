//! The `stream` sink in the engine: processed events published to NATS
//! JetStream for other systems.

use std::time::Duration;

use async_trait::async_trait;
use sluice_connectors::sinks::stream::{StreamSink, StreamSinkConfig};

use super::{Graph, OpenedSink, SinkSpec};
use crate::config::{Component, Pipeline, SinkConfig};

#[async_trait]
impl SinkSpec for StreamSinkConfig {
    fn check(&self, _inputs: &[String], _graph: &Graph<'_>) -> Result<(), String> {
        self.validate()
    }

    async fn open(
        &self,
        _name: &str,
        _sink: &Component<SinkConfig>,
        _pipeline: &Pipeline,
    ) -> anyhow::Result<OpenedSink> {
        let sink = StreamSink::open(self).await?;
        Ok(OpenedSink {
            sink: Box::new(sink),
            compaction: None,
        })
    }

    fn flush_interval(&self) -> Duration {
        Duration::from_secs(self.flush_interval_secs)
    }
}
