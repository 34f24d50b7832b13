//! Reading a sharded stream (Kinesis, DynamoDB Streams) into queue
//! batches, exactly once in effect, shared by replicas.
//!
//! * **Shards and leases.** Every `discovery_secs` the shards are listed;
//!   a shard is read by the replica holding the lease `<kind>.<source>.<shard>`
//!   (JetStream KV with a JetStream queue, in memory otherwise). A shard is
//!   started only once every parent still listed is finished (resharding:
//!   parents before children), and a child starts at its beginning.
//! * **Checkpoints** (`<kind>.<source>.<shard>` in the shared checkpoint
//!   store) hold the last sequence number enqueued and, while a batch is on
//!   its way, the sequence number it ends at. Before a batch is enqueued the
//!   checkpoint records its end; after, the end becomes the sequence. A
//!   reader that finds an end recorded (the last holder died between the
//!   two) reads from the sequence up to exactly that end again and enqueues
//!   the same batch under the same key (`<kind>:<stream>:<shard>:<first>-<end>`),
//!   flagged `maybe_committed`, so the sinks' commit records (or the queue
//!   still holding it) keep it from landing twice. No record is lost (the
//!   checkpoint never passes what is not enqueued) and none lands twice.
//! * A closed shard read to its end is checkpointed `finished` and its
//!   lease released; its children start at the next discovery.

mod checkpoint;
mod reader;
pub(crate) mod replay;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use tokio::task::JoinSet;

pub(crate) use checkpoint::ShardCheckpoint;
use reader::{ReadEnd, ShardReader};

use super::{SourceContext, SourceError};

/// One shard as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardInfo {
    pub id: String,
    pub parents: Vec<String>,
}

/// Where a shard without a checkpoint is read from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Position {
    /// The oldest record kept.
    TrimHorizon,
    /// Records that arrive from now on.
    Latest,
    /// Records that arrived at or after this time (seconds since the epoch).
    AtTimestamp(f64),
    /// Records after this sequence number.
    After(String),
}

/// One record, already turned into queue lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamRecord {
    pub sequence: String,
    /// NDJSON lines.
    pub lines: Vec<u8>,
    pub events: u64,
    /// When the stream took the record (ms since the epoch), if it says.
    pub arrival_ms: Option<i64>,
}

/// One read of a shard.
#[derive(Debug, Default)]
pub(crate) struct Page {
    pub records: Vec<StreamRecord>,
    /// `None` once a closed shard has been read to its end.
    pub next: Option<String>,
    /// How far behind the stream's tip the read is, when the service says.
    pub behind: Option<Duration>,
}

/// A sharded stream's calls.
#[async_trait]
pub(crate) trait ShardedStream: Send + Sync {
    /// Every shard the stream lists now.
    async fn shards(&self) -> Result<Vec<ShardInfo>, String>;
    /// An iterator of `shard` at `position`.
    async fn iterator(&self, shard: &str, position: &Position) -> Result<String, String>;
    /// Up to `limit` records from `iterator`.
    async fn read(&self, iterator: &str, limit: usize) -> Result<Page, String>;
}

/// How a source reads its stream.
#[derive(Debug, Clone)]
pub(crate) struct ShardSettings {
    /// `kinesis` or `dynamodb`: the first part of lease, checkpoint and batch key names.
    pub kind: &'static str,
    /// The stream's name, in batch keys.
    pub stream: String,
    /// Where shards without a checkpoint and without parents start.
    pub start: Position,
    pub max_records: usize,
    pub max_batch_bytes: usize,
    pub poll_interval: Duration,
    pub discovery_interval: Duration,
}

/// Defaults of the reading options every sharded source has.
pub(crate) fn default_max_records() -> usize {
    1000
}
pub(crate) fn default_poll_interval_ms() -> u64 {
    1000
}
pub(crate) fn default_shard_discovery_secs() -> u64 {
    30
}
pub(crate) fn default_max_batch_bytes() -> usize {
    512 * 1024
}

/// Checks the reading options every sharded source has; errors start with
/// the key. `service` and `most_records` name the service's own limit.
pub(crate) fn check_reading(
    service: &str,
    max_records: usize,
    most_records: usize,
    poll_interval_ms: u64,
    shard_discovery_secs: u64,
    max_batch_bytes: usize,
) -> Result<(), String> {
    if !(1..=most_records).contains(&max_records) {
        return Err(format!(
            "max_records: {max_records} is not allowed; {service} returns 1 to {most_records} records per call"
        ));
    }
    if poll_interval_ms < 200 {
        return Err(format!(
            "poll_interval_ms: must be at least 200 (a {service} shard serves a few reads a second, shared by its readers)"
        ));
    }
    if shard_discovery_secs == 0 {
        return Err("shard_discovery_secs: must be at least 1".into());
    }
    if max_batch_bytes < 1024 {
        return Err("max_batch_bytes: must be at least 1024".into());
    }
    Ok(())
}

/// Reads every shard this replica can lease until stopped (or, with
/// `until_idle`, until every shard it could take is caught up).
pub(crate) async fn run(
    ctx: &SourceContext,
    stream: Arc<dyn ShardedStream>,
    settings: ShardSettings,
) -> Result<(), SourceError> {
    let mut readers: JoinSet<(String, Result<ReadEnd, SourceError>)> = JoinSet::new();
    // Shards being read here, and (batch mode) shards read up to the tip.
    let mut running: HashSet<String> = HashSet::new();
    let mut idle: HashSet<String> = HashSet::new();
    let mut shutdown = ctx.shutdown.clone();
    let mut backoff = sluice_core::retry::Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        if ctx.stopping() {
            break;
        }
        let skip: HashSet<String> = running.union(&idle).cloned().collect();
        let started = match start_readers(ctx, &stream, &settings, &mut readers, &skip).await {
            Ok(started) => {
                backoff.reset();
                ctx.telemetry.upstream_answered();
                let count = started.len();
                for shard in &started {
                    tracing::info!(source = %ctx.name, shard, "reading shard");
                }
                running.extend(started);
                ctx.telemetry.shards_held(running.len());
                count
            }
            Err(e) => {
                ctx.telemetry.upstream_error("list_shards", &e);
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
                continue;
            }
        };
        if ctx.until_idle && started == 0 && readers.is_empty() {
            return Ok(());
        }
        let wait = tokio::time::sleep(if ctx.until_idle {
            Duration::from_secs(3600)
        } else {
            settings.discovery_interval
        });
        tokio::pin!(wait);
        tokio::select! {
            _ = &mut wait => {}
            Some(done) = readers.join_next(), if !readers.is_empty() => {
                let (shard, end) = done.map_err(|e| SourceError::State(format!("shard reader: {e}")))?;
                running.remove(&shard);
                ctx.telemetry.shards_held(running.len());
                match end {
                    Ok(ReadEnd::Finished) => tracing::info!(source = %ctx.name, shard, "shard read to its end; its children are next"),
                    Ok(ReadEnd::Idle) => {
                        idle.insert(shard);
                    }
                    Ok(ReadEnd::Stopped) => {}
                    Ok(ReadEnd::LeaseLost) => tracing::warn!(source = %ctx.name, shard, "lost the shard's lease; another replica reads it"),
                    Err(e) => return Err(e),
                }
            }
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    while let Some(done) = readers.join_next().await {
        let (_, end) = done.map_err(|e| SourceError::State(format!("shard reader: {e}")))?;
        end?;
    }
    Ok(())
}

/// Lists the shards and starts a reader on each one that may be read now
/// and whose lease this replica takes; returns how many it started.
async fn start_readers(
    ctx: &SourceContext,
    stream: &Arc<dyn ShardedStream>,
    settings: &ShardSettings,
    readers: &mut JoinSet<(String, Result<ReadEnd, SourceError>)>,
    skip: &HashSet<String>,
) -> Result<Vec<String>, String> {
    let shards = stream.shards().await?;
    let listed: HashSet<&str> = shards.iter().map(|s| s.id.as_str()).collect();
    let mut finished = HashMap::new();
    for shard in &shards {
        let checkpoint = load(ctx, settings, &shard.id).await.map_err(|e| e.to_string())?;
        finished.insert(shard.id.clone(), checkpoint.finished);
    }
    let mut started = Vec::new();
    for shard in &shards {
        if skip.contains(&shard.id) || finished[&shard.id] {
            continue;
        }
        let parents_done = shard
            .parents
            .iter()
            .all(|p| !listed.contains(p.as_str()) || finished.get(p).copied().unwrap_or(true));
        if !parents_done {
            continue;
        }
        let name = checkpoint::name(settings.kind, &ctx.name, &shard.id);
        let Some(lease) = ctx.leases.try_acquire(&name).await.map_err(|e| e.to_string())? else {
            continue;
        };
        let reader = ShardReader {
            ctx: ctx.clone(),
            stream: stream.clone(),
            settings: settings.clone(),
            shard: shard.clone(),
            name,
        };
        let id = shard.id.clone();
        started.push(id.clone());
        readers.spawn(async move { (id, reader.run(lease).await) });
    }
    Ok(started)
}

async fn load(ctx: &SourceContext, settings: &ShardSettings, shard: &str) -> Result<ShardCheckpoint, SourceError> {
    ShardCheckpoint::load(
        ctx.checkpoints.as_ref(),
        &checkpoint::name(settings.kind, &ctx.name, shard),
    )
    .await
}

/// Orders sequence numbers: decimal strings of any length.
pub(crate) fn sequence_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}
