//! Reading a `kafka` source's topics again for `sluice replay`: every
//! record whose timestamp falls in the window, enqueued under the replay's
//! keys (`replay/<id>/kafka/<group>/<topic>/<partition>/<first>-<last>`).
//!
//! * A partition is read from the broker's offset for the window's start
//!   (ListOffsets by time). An answer of -1 (no record that late, or a
//!   broker that cannot look up by time, as librdkafka's mock cluster) is
//!   read from the earliest offset: records are kept by their own
//!   timestamps either way.
//! * It is read up to its high watermark when the replay starts: records
//!   produced later are the running source's.
//! * The replay has its own consumer and commits nothing: the group's
//!   offsets stay the running source's.

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
};
use sluice_core::{NewBatch, replay_key};
use sluice_queue::Queue;

use super::{KafkaSourceConfig, source::record_lines};
use crate::{kafka::client_config, sources::enqueue_when_room};

/// How long broker calls (metadata, offsets) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a replay read and enqueued.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KafkaReplayReport {
    pub partitions: usize,
    /// Records read between each partition's start and end.
    pub records_read: u64,
    /// Of those, the records in the window (one event each).
    pub events: u64,
    pub batches: u64,
}

/// A topic's partition.
type PartitionKey = (String, i32);

/// A partition's batch being gathered.
#[derive(Default)]
struct Gathering {
    first: i64,
    last: i64,
    events: u64,
    lines: Vec<u8>,
}

/// Reads the window `[since_ms, until_ms]` of `config`'s topics again into
/// `queue` as source `source`'s batches of the replay `replay_id`.
/// `progress` gets the records read and the records to read.
pub async fn replay_window(
    config: &KafkaSourceConfig,
    source: &str,
    replay_id: &str,
    (since_ms, until_ms): (i64, i64),
    queue: &dyn Queue,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<KafkaReplayReport, String> {
    if let Some(pattern) = config.topics.iter().find(|t| t.starts_with('^')) {
        return Err(format!(
            "topics: replay reads named topics; {pattern:?} is a pattern (name its topics in the source to replay them)"
        ));
    }
    let mut client = client_config(&config.brokers, config.security.as_ref(), &config.librdkafka_options)?;
    client
        .set("group.id", format!("{}.replay.{replay_id}", config.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    let consumer: StreamConsumer = client.create().map_err(|e| format!("creating the consumer: {e}"))?;
    let ends = partition_ends(&consumer, config, since_ms)?;
    let total: u64 = ends.values().map(|(start, end)| (end - start).max(0) as u64).sum();
    let mut report = KafkaReplayReport {
        partitions: ends.len(),
        ..KafkaReplayReport::default()
    };
    let mut assignment = TopicPartitionList::new();
    for ((topic, partition), (start, end)) in &ends {
        if start < end {
            assignment
                .add_partition_offset(topic, *partition, Offset::Offset(*start))
                .map_err(|e| e.to_string())?;
        }
    }
    progress(0, total);
    if assignment.count() == 0 {
        return Ok(report);
    }
    consumer
        .assign(&assignment)
        .map_err(|e| format!("assigning partitions: {e}"))?;
    let mut open: BTreeMap<PartitionKey, Gathering> = BTreeMap::new();
    let mut remaining: BTreeMap<PartitionKey, i64> = ends
        .iter()
        .filter(|(_, (start, end))| start < end)
        .map(|(key, (_, end))| (key.clone(), *end))
        .collect();
    while !remaining.is_empty() {
        let message = tokio::time::timeout(CALL_TIMEOUT, consumer.recv())
            .await
            .map_err(|_| {
                format!(
                    "no record for {}s; partitions left: {remaining:?}",
                    CALL_TIMEOUT.as_secs()
                )
            })?
            .map_err(|e| format!("reading: {e}"))?;
        let key = (message.topic().to_string(), message.partition());
        let Some(end) = remaining.get(&key).copied() else {
            continue;
        };
        let offset = message.offset();
        if offset >= end {
            remaining.remove(&key);
            continue;
        }
        report.records_read += 1;
        let in_window = message
            .timestamp()
            .to_millis()
            .is_some_and(|ms| (since_ms..=until_ms).contains(&ms));
        if in_window && let Some(value) = message.payload() {
            let batch = open.entry(key.clone()).or_insert_with(|| Gathering {
                first: offset,
                ..Gathering::default()
            });
            batch.last = offset;
            batch.events += record_lines(&message, value, &config.metadata_field, &mut batch.lines);
            let full = batch.events as usize >= config.max_batch_records || batch.lines.len() >= config.max_batch_bytes;
            if full && let Some(batch) = open.remove(&key) {
                enqueue(queue, config, source, replay_id, &key, batch, &mut report).await?;
            }
        }
        if offset + 1 >= end {
            remaining.remove(&key);
        }
        if report.records_read.is_multiple_of(1000) {
            progress(report.records_read, total);
        }
    }
    for (key, batch) in std::mem::take(&mut open) {
        enqueue(queue, config, source, replay_id, &key, batch, &mut report).await?;
    }
    progress(report.records_read, total);
    Ok(report)
}

/// Each partition of the source's topics with where the replay starts and
/// ends (exclusive).
fn partition_ends(
    consumer: &StreamConsumer,
    config: &KafkaSourceConfig,
    since_ms: i64,
) -> Result<BTreeMap<PartitionKey, (i64, i64)>, String> {
    let mut at_start = TopicPartitionList::new();
    for topic in &config.topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), CALL_TIMEOUT)
            .map_err(|e| format!("reading topic {topic}: {e}"))?;
        for t in metadata.topics() {
            if t.partitions().is_empty() {
                return Err(format!("topic {topic} has no partitions (does it exist?)"));
            }
            for p in t.partitions() {
                at_start
                    .add_partition_offset(t.name(), p.id(), Offset::Offset(since_ms))
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    let by_time = consumer
        .offsets_for_times(at_start.clone(), CALL_TIMEOUT)
        .map_err(|e| format!("looking up offsets by time: {e}"))?;
    let mut ends = BTreeMap::new();
    for element in at_start.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, CALL_TIMEOUT)
            .map_err(|e| format!("reading {topic} partition {partition}'s offsets: {e}"))?;
        let start = match by_time.find_partition(topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(o)) if o >= low => o,
            _ => low,
        };
        ends.insert((topic.to_string(), partition), (start, high));
    }
    Ok(ends)
}

async fn enqueue(
    queue: &dyn Queue,
    config: &KafkaSourceConfig,
    source: &str,
    replay_id: &str,
    (topic, partition): &PartitionKey,
    batch: Gathering,
    report: &mut KafkaReplayReport,
) -> Result<(), String> {
    if batch.lines.is_empty() {
        return Ok(());
    }
    let key = format!(
        "kafka/{}/{topic}/{partition}/{}-{}",
        config.group_id, batch.first, batch.last
    );
    let batch_events = batch.events;
    let new = NewBatch {
        key: replay_key(replay_id, &key),
        source: source.to_string(),
        payload: Bytes::from(batch.lines),
        maybe_committed: true,
        in_file: None,
    };
    enqueue_when_room(queue, &new).await?;
    report.events += batch_events;
    report.batches += 1;
    Ok(())
}
