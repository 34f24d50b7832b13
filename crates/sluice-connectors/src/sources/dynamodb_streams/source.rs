//! DynamoDB Streams' calls behind [`ShardedStream`]: ListStreams finds the
//! table's newest stream, DescribeStream (paginated) its key schema, view
//! type and shards, GetShardIterator and GetRecords read them.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use aws_sdk_dynamodbstreams::{
    Client,
    error::DisplayErrorContext,
    types::{KeyType, ShardIteratorType, StreamViewType},
};

use super::{
    DynamoDbStartingPosition, DynamoDbStreamsSourceConfig,
    change::{KeyNames, change_event},
};
use crate::sources::{
    Source, SourceContext, SourceError,
    shards::{self, Page, Position, ShardInfo, ShardSettings, ShardedStream, StreamRecord},
};

pub struct DynamoDbStreamsSource {
    config: DynamoDbStreamsSourceConfig,
}

impl DynamoDbStreamsSource {
    pub fn new(config: DynamoDbStreamsSourceConfig) -> Self {
        DynamoDbStreamsSource { config }
    }

    fn settings(&self) -> ShardSettings {
        let c = &self.config;
        ShardSettings {
            kind: "dynamodb",
            stream: c.table.clone(),
            start: match c.starting_position {
                DynamoDbStartingPosition::TrimHorizon => Position::TrimHorizon,
                DynamoDbStartingPosition::Latest => Position::Latest,
            },
            max_records: c.max_records,
            max_batch_bytes: c.max_batch_bytes,
            poll_interval: Duration::from_millis(c.poll_interval_ms),
            discovery_interval: Duration::from_secs(c.shard_discovery_secs),
        }
    }
}

fn error_text<E: std::error::Error>(what: &str, e: E) -> String {
    format!("{what}: {}", DisplayErrorContext(e))
}

/// Why a table's stream cannot be read yet, or ever.
enum Unready {
    /// Worth asking again (no stream yet, a failed call).
    Retry(&'static str, String),
    /// The stream cannot give documents.
    Refused(String),
}

/// The table's newest stream and its key attribute names.
async fn describe_table_stream(client: &Client, table: &str) -> Result<(String, KeyNames), Unready> {
    let listed = client
        .list_streams()
        .table_name(table)
        .send()
        .await
        .map_err(|e| Unready::Retry("list_streams", error_text("ListStreams", e)))?;
    // Stream labels are creation times (ISO 8601): the greatest is the newest.
    let arn = listed
        .streams()
        .iter()
        .filter(|s| s.table_name() == Some(table))
        .max_by_key(|s| s.stream_label().unwrap_or_default())
        .and_then(|s| s.stream_arn())
        .ok_or_else(|| {
            Unready::Retry(
                "list_streams",
                format!("table {table} has no stream; enable one with the view type NEW_AND_OLD_IMAGES"),
            )
        })?
        .to_string();
    let described = client
        .describe_stream()
        .stream_arn(&arn)
        .limit(1)
        .send()
        .await
        .map_err(|e| Unready::Retry("describe_stream", error_text("DescribeStream", e)))?;
    let description = described.stream_description().ok_or_else(|| {
        Unready::Retry(
            "describe_stream",
            format!("DescribeStream gave no description of {arn}"),
        )
    })?;
    if description.stream_view_type() != Some(&StreamViewType::NewAndOldImages) {
        let found = description.stream_view_type().map_or("none", |v| v.as_str());
        return Err(Unready::Refused(format!(
            "the stream of table {table} has the view type {found}; documents need NEW_AND_OLD_IMAGES \
             (the old image tells which attributes a change removed)"
        )));
    }
    let mut keys: Vec<_> = description.key_schema().iter().collect();
    keys.sort_by_key(|k| *k.key_type() != KeyType::Hash);
    Ok((arn, keys.iter().map(|k| k.attribute_name().to_string()).collect()))
}

struct DynamoDbStream {
    client: Client,
    arn: String,
    entity: String,
    key_names: KeyNames,
}

#[async_trait]
impl ShardedStream for DynamoDbStream {
    async fn shards(&self) -> Result<Vec<ShardInfo>, String> {
        let mut shards = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_stream()
                .stream_arn(&self.arn)
                .set_exclusive_start_shard_id(after.take())
                .send()
                .await
                .map_err(|e| error_text("DescribeStream", e))?;
            let Some(description) = out.stream_description() else {
                return Ok(shards);
            };
            shards.extend(description.shards().iter().filter_map(|s| {
                Some(ShardInfo {
                    id: s.shard_id()?.to_string(),
                    parents: s.parent_shard_id().into_iter().map(str::to_string).collect(),
                })
            }));
            match description.last_evaluated_shard_id() {
                Some(last) => after = Some(last.to_string()),
                None => return Ok(shards),
            }
        }
    }

    async fn iterator(&self, shard: &str, position: &Position) -> Result<String, String> {
        let call = self.client.get_shard_iterator().stream_arn(&self.arn).shard_id(shard);
        let call = match position {
            Position::TrimHorizon => call.shard_iterator_type(ShardIteratorType::TrimHorizon),
            Position::Latest => call.shard_iterator_type(ShardIteratorType::Latest),
            Position::AtTimestamp(_) => return Err("DynamoDB Streams cannot start at a time".into()),
            Position::After(sequence) => call
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(sequence),
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
        let mut records = Vec::with_capacity(out.records().len());
        for record in out.records() {
            let Some(sequence) = record.dynamodb().and_then(|r| r.sequence_number()) else {
                return Err(format!(
                    "GetRecords gave a record without a sequence number: {record:?}"
                ));
            };
            let mut lines = change_event(&self.entity, &self.key_names, record)
                .to_string()
                .into_bytes();
            lines.push(b'\n');
            let arrival_ms = record
                .dynamodb()
                .and_then(|r| r.approximate_creation_date_time())
                .and_then(|t| t.to_millis().ok());
            records.push(StreamRecord {
                sequence: sequence.to_string(),
                lines,
                events: 1,
                arrival_ms,
            });
        }
        // DynamoDB Streams tells no distance to the tip: the newest record's age stands for it.
        let behind = out
            .records()
            .last()
            .and_then(|r| r.dynamodb()?.approximate_creation_date_time())
            .and_then(|t| SystemTime::try_from(*t).ok())
            .map(|t| SystemTime::now().duration_since(t).unwrap_or_default());
        Ok(Page {
            records,
            next: out.next_shard_iterator().map(str::to_string),
            behind,
        })
    }
}

#[async_trait]
impl Source for DynamoDbStreamsSource {
    async fn run(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
        let config = self
            .config
            .target()
            .sdk_config()
            .await
            .map_err(|e| SourceError::Upstream(format!("sources.{}.{e}", ctx.name)))?;
        let client = Client::new(&config);
        let mut backoff = sluice_core::retry::Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut shutdown = ctx.shutdown.clone();
        let (arn, key_names) = loop {
            match describe_table_stream(&client, &self.config.table).await {
                Ok(found) => {
                    ctx.telemetry.upstream_answered();
                    break found;
                }
                Err(Unready::Refused(why)) => {
                    return Err(SourceError::Upstream(format!("sources.{}: {why}", ctx.name)));
                }
                Err(Unready::Retry(operation, why)) => {
                    ctx.telemetry.upstream_error(operation, &why);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = shutdown.wait_for(|s| *s) => return Ok(()),
                    }
                }
            }
        };
        tracing::info!(source = %ctx.name, stream = %arn, keys = ?key_names, "reading the table's stream");
        let stream = Arc::new(DynamoDbStream {
            client,
            arn,
            entity: self.config.entity().to_string(),
            key_names,
        });
        shards::run(&ctx, stream, self.settings()).await
    }
}
