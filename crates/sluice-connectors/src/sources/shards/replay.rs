//! A sharded stream's time window read again for `sluice replay`: every
//! shard (closed parents too) from the window's start, records kept by the
//! time the stream took them, enqueued under the replay's keys
//! (`replay/<id>/<kind>:<stream>:<shard>:<first>-<last>`).
//!
//! * A shard is read from an `AtTimestamp` iterator (Kinesis); a stream
//!   without one (DynamoDB Streams) is read from its oldest record and
//!   records before the window are skipped.
//! * A shard is done at its first record after the window, at its end
//!   (closed), or once a read comes back empty at the stream's tip.
//! * Nothing is checkpointed and no lease is taken: the running source's
//!   place in each shard is its own.

use bytes::Bytes;
use sluice_core::{NewBatch, replay_key};
use sluice_queue::Queue;

use super::{Position, ShardSettings, ShardedStream, StreamRecord};
use crate::sources::enqueue_when_room;

/// What a replay read and enqueued.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StreamReplayReport {
    pub shards: usize,
    /// Records read, in the window or not.
    pub records_read: u64,
    /// Events of the records in the window.
    pub events: u64,
    pub batches: u64,
}

/// Empty reads in a row that end a shard when the stream does not say how
/// far behind its tip a read is.
const EMPTY_READS_AT_TIP: u32 = 3;

/// Reads `[since_ms, until_ms]` of every shard of `stream` into `queue` as
/// source `source`'s batches of the replay `replay_id`; `progress` gets the
/// shards done and the shards listed.
pub(crate) async fn replay_window(
    stream: &dyn ShardedStream,
    settings: &ShardSettings,
    at_timestamp: bool,
    (source, replay_id): (&str, &str),
    (since_ms, until_ms): (i64, i64),
    queue: &dyn Queue,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<StreamReplayReport, String> {
    let shards = stream.shards().await?;
    let mut report = StreamReplayReport {
        shards: shards.len(),
        ..StreamReplayReport::default()
    };
    progress(0, shards.len() as u64);
    let start = if at_timestamp {
        Position::AtTimestamp(since_ms as f64 / 1000.0)
    } else {
        Position::TrimHorizon
    };
    for (done, shard) in shards.iter().enumerate() {
        let mut iterator = Some(stream.iterator(&shard.id, &start).await?);
        let mut batch: Vec<StreamRecord> = Vec::new();
        let mut empty_reads = 0;
        while let Some(current) = iterator.take() {
            let page = stream.read(&current, settings.max_records).await?;
            let at_tip = page.records.is_empty()
                && page.behind.map_or_else(
                    || {
                        empty_reads += 1;
                        empty_reads >= EMPTY_READS_AT_TIP
                    },
                    |behind| behind.is_zero(),
                );
            let mut past_window = false;
            for record in page.records {
                report.records_read += 1;
                match record.arrival_ms {
                    Some(ms) if ms > until_ms => {
                        past_window = true;
                        break;
                    }
                    Some(ms) if ms < since_ms => continue,
                    _ => {}
                }
                batch.push(record);
                let bytes: usize = batch.iter().map(|r| r.lines.len()).sum();
                if batch.len() >= settings.max_records || bytes >= settings.max_batch_bytes {
                    enqueue(queue, settings, &shard.id, (source, replay_id), &mut batch, &mut report).await?;
                }
            }
            if !(past_window || at_tip) {
                iterator = page.next;
            }
        }
        enqueue(queue, settings, &shard.id, (source, replay_id), &mut batch, &mut report).await?;
        progress(done as u64 + 1, shards.len() as u64);
    }
    Ok(report)
}

async fn enqueue(
    queue: &dyn Queue,
    settings: &ShardSettings,
    shard: &str,
    (source, replay_id): (&str, &str),
    batch: &mut Vec<StreamRecord>,
    report: &mut StreamReplayReport,
) -> Result<(), String> {
    let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
        return Ok(());
    };
    let key = format!(
        "{}:{}:{shard}:{}-{}",
        settings.kind, settings.stream, first.sequence, last.sequence
    );
    let events: u64 = batch.iter().map(|r| r.events).sum();
    let payload: Vec<u8> = batch.iter().flat_map(|r| r.lines.iter().copied()).collect();
    batch.clear();
    if payload.is_empty() {
        return Ok(());
    }
    let new = NewBatch {
        key: replay_key(replay_id, &key),
        source: source.to_string(),
        payload: Bytes::from(payload),
        maybe_committed: true,
        in_file: None,
    };
    enqueue_when_room(queue, &new).await?;
    report.events += events;
    report.batches += 1;
    Ok(())
}
