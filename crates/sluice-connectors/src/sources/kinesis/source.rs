//! Kinesis's calls behind [`ShardedStream`]: ListShards (paginated),
//! GetShardIterator and GetRecords. A record's data (or each user record of
//! a KPL aggregate) is decoded as an SQS body is: one JSON value, a JSON
//! array, or NDJSON lines.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use aws_sdk_kinesis::{Client, error::DisplayErrorContext, primitives::DateTime, types::ShardIteratorType};

use super::{KinesisSourceConfig, StartingPosition, kpl};
use crate::sources::{
    Source, SourceContext, SourceError, message_body,
    shards::{self, Page, Position, ShardInfo, ShardSettings, ShardedStream, StreamRecord},
};

pub struct KinesisSource {
    config: KinesisSourceConfig,
    /// A client made beforehand (tests); otherwise `run` makes one.
    client: Option<Client>,
}

impl KinesisSource {
    pub fn new(config: KinesisSourceConfig) -> Self {
        KinesisSource { config, client: None }
    }

    /// A source reading through `client`.
    #[cfg(test)]
    pub(crate) fn with_client(config: KinesisSourceConfig, client: Client) -> Self {
        KinesisSource {
            config,
            client: Some(client),
        }
    }

    fn settings(&self) -> Result<ShardSettings, String> {
        let c = &self.config;
        let start = match c.starting_position {
            StartingPosition::TrimHorizon => Position::TrimHorizon,
            StartingPosition::Latest => Position::Latest,
            StartingPosition::AtTimestamp => Position::AtTimestamp(c.starting_seconds()?.unwrap_or_default()),
        };
        Ok(ShardSettings {
            kind: "kinesis",
            stream: c.stream.clone(),
            start,
            max_records: c.max_records,
            max_batch_bytes: c.max_batch_bytes,
            poll_interval: Duration::from_millis(c.poll_interval_ms),
            discovery_interval: Duration::from_secs(c.shard_discovery_secs),
        })
    }
}

struct KinesisStream {
    client: Client,
    stream: String,
}

fn error_text<E: std::error::Error>(what: &str, e: E) -> String {
    format!("{what}: {}", DisplayErrorContext(e))
}

#[async_trait]
impl ShardedStream for KinesisStream {
    async fn shards(&self) -> Result<Vec<ShardInfo>, String> {
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let call = self.client.list_shards();
            let call = match &next_token {
                Some(token) => call.next_token(token),
                None => call.stream_name(&self.stream),
            };
            let out = call.send().await.map_err(|e| error_text("ListShards", e))?;
            shards.extend(out.shards().iter().map(|s| {
                ShardInfo {
                    id: s.shard_id().to_string(),
                    parents: s
                        .parent_shard_id()
                        .into_iter()
                        .chain(s.adjacent_parent_shard_id())
                        .map(str::to_string)
                        .collect(),
                }
            }));
            match out.next_token() {
                Some(token) => next_token = Some(token.to_string()),
                None => return Ok(shards),
            }
        }
    }

    async fn iterator(&self, shard: &str, position: &Position) -> Result<String, String> {
        let call = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(shard);
        let call = match position {
            Position::TrimHorizon => call.shard_iterator_type(ShardIteratorType::TrimHorizon),
            Position::Latest => call.shard_iterator_type(ShardIteratorType::Latest),
            Position::AtTimestamp(seconds) => call
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from_secs_f64(*seconds)),
            Position::After(sequence) => call
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(sequence),
        };
        let out = call.send().await.map_err(|e| error_text("GetShardIterator", e))?;
        out.shard_iterator()
            .map(str::to_string)
            .ok_or_else(|| format!("GetShardIterator gave no iterator for {shard}"))
    }

    async fn read(&self, iterator: &str, limit: usize) -> Result<Page, String> {
        let out = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(limit as i32)
            .send()
            .await
            .map_err(|e| error_text("GetRecords", e))?;
        let records = out
            .records()
            .iter()
            .map(|r| {
                let mut lines = Vec::new();
                let data = r.data().as_ref();
                let events = match kpl::user_records(data) {
                    Some(users) => users
                        .iter()
                        .map(|user| message_body::append_bytes(user, &mut lines))
                        .sum(),
                    None => message_body::append_bytes(data, &mut lines),
                };
                StreamRecord {
                    sequence: r.sequence_number().to_string(),
                    lines,
                    events,
                    arrival_ms: r.approximate_arrival_timestamp().and_then(|t| t.to_millis().ok()),
                }
            })
            .collect();
        Ok(Page {
            records,
            next: out.next_shard_iterator().map(str::to_string),
            behind: out
                .millis_behind_latest()
                .map(|ms| Duration::from_millis(ms.max(0) as u64)),
        })
    }
}

/// Reads `window` (ms since the epoch) of the stream again onto `queue`
/// for `sluice replay`, as source `source`'s batches of `replay_id`;
/// `progress` gets shards done and listed.
pub async fn replay_window(
    config: &KinesisSourceConfig,
    (source, replay_id): (&str, &str),
    window: (i64, i64),
    queue: &dyn sluice_queue::Queue,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<shards::replay::StreamReplayReport, String> {
    let sdk = config.target().sdk_config().await?;
    replay_through(Client::new(&sdk), config, (source, replay_id), window, queue, progress).await
}

/// [`replay_window`] through `client`.
pub(crate) async fn replay_through(
    client: Client,
    config: &KinesisSourceConfig,
    names: (&str, &str),
    window: (i64, i64),
    queue: &dyn sluice_queue::Queue,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<shards::replay::StreamReplayReport, String> {
    let stream = KinesisStream {
        client,
        stream: config.stream.clone(),
    };
    let settings = KinesisSource::new(config.clone()).settings()?;
    shards::replay::replay_window(&stream, &settings, true, names, window, queue, progress).await
}

#[async_trait]
impl Source for KinesisSource {
    async fn run(mut self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
        let settings = self.settings().map_err(SourceError::Upstream)?;
        let client = match self.client.take() {
            Some(client) => client,
            None => {
                let config = self
                    .config
                    .target()
                    .sdk_config()
                    .await
                    .map_err(|e| SourceError::Upstream(format!("sources.{}.{e}", ctx.name)))?;
                Client::new(&config)
            }
        };
        let stream = Arc::new(KinesisStream {
            client,
            stream: self.config.stream.clone(),
        });
        shards::run(&ctx, stream, settings).await
    }
}
