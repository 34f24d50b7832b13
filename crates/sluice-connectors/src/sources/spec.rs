//! Source types, dispatched from one place. A pipeline file's
//! `[sources.<name>]` table is a [`SourceConfig`]; everything the loader
//! and the engine do with it goes through the [`SourceSpec`] each type
//! implements in its folder's `config.rs`, beside the config it reads: pure
//! checks, resolving paths against the pipeline file, and building the
//! running source. Adding a source type is its folder and one variant here.

use std::{collections::BTreeMap, sync::Arc};

use object_store::{ObjectStore, path::Path as StorePath};
use serde::Deserialize;
pub use sluice_core::config::{LoadEnv, ResolvedLocation};

use super::{
    Source, dynamodb_streams::DynamoDbStreamsSourceConfig, file::FileSourceConfig, generator::GeneratorSourceConfig,
    http::HttpSourceConfig, kafka::KafkaSourceConfig, kinesis::KinesisSourceConfig, nats::NatsSourceConfig,
    objects::ObjectsSourceConfig, sqs::SqsSourceConfig,
};

/// `[sources.<name>]`: `type` picks the variant; unknown keys are refused.
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    Http(HttpSourceConfig),
    File(FileSourceConfig),
    Nats(NatsSourceConfig),
    Objects(ObjectsSourceConfig),
    Generator(GeneratorSourceConfig),
    Sqs(SqsSourceConfig),
    Kinesis(KinesisSourceConfig),
    DynamodbStreams(DynamoDbStreamsSourceConfig),
    Kafka(KafkaSourceConfig),
}

impl SourceConfig {
    /// The type's behaviour.
    pub fn spec(&self) -> &dyn SourceSpec {
        match self {
            SourceConfig::Http(c) => c,
            SourceConfig::File(c) => c,
            SourceConfig::Nats(c) => c,
            SourceConfig::Objects(c) => c,
            SourceConfig::Generator(c) => c,
            SourceConfig::Sqs(c) => c,
            SourceConfig::Kinesis(c) => c,
            SourceConfig::DynamodbStreams(c) => c,
            SourceConfig::Kafka(c) => c,
        }
    }

    pub fn spec_mut(&mut self) -> &mut dyn SourceSpec {
        match self {
            SourceConfig::Http(c) => c,
            SourceConfig::File(c) => c,
            SourceConfig::Nats(c) => c,
            SourceConfig::Objects(c) => c,
            SourceConfig::Generator(c) => c,
            SourceConfig::Sqs(c) => c,
            SourceConfig::Kinesis(c) => c,
            SourceConfig::DynamodbStreams(c) => c,
            SourceConfig::Kafka(c) => c,
        }
    }
}

/// What every source type's config provides. Errors are `key: what is
/// wrong` (the loader puts `sources.<name>.` and the file in front).
pub trait SourceSpec: Send + Sync {
    /// Checks the values alone, without I/O.
    fn validate(&self) -> Result<(), String>;

    /// Turns relative paths and locations into absolute ones, once, at load.
    fn resolve(&mut self, _env: &dyn LoadEnv) -> Result<(), String> {
        Ok(())
    }

    /// The largest batch the source may put on the queue, when its config
    /// bounds it (a JetStream queue holds batches up to NATS's message size).
    fn max_batch_bytes(&self) -> Option<usize> {
        None
    }

    /// The queue carries batches of at most `max` bytes (a JetStream
    /// queue): a default batch size above that is lowered to it. A size the
    /// config gives is kept, for the loader to refuse if it does not fit.
    fn fit_default_batches(&mut self, _max: usize) {}

    /// Why the source cannot run on a shared (JetStream) queue, as `key:
    /// what is wrong`, when its config has it hand the queue places in
    /// local files rather than bytes: only the embedded queue, on the
    /// machine that has the files, reads them back.
    fn needs_local_queue(&self) -> Option<String> {
        None
    }

    /// The running source.
    fn build(&self, env: &dyn BuildEnv) -> Result<Box<dyn Source>, String>;
}

/// What building a source needs from the engine.
pub trait BuildEnv {
    /// The object store behind a resolved location, and the prefix in it.
    fn object_store(
        &self,
        url: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<(Arc<dyn ObjectStore>, StorePath), String>;
}
