//! The Kafka consumer: a group member whose committed offsets follow the
//! queue.
//!
//! * Records are gathered per partition into batches (keyed
//!   `kafka/<group>/<topic>/<partition>/<first>-<last>`), each closed at
//!   `max_batch_records`, `max_batch_bytes` or `max_batch_wait_ms`.
//! * A partition's offset is committed only after its batch is durable in
//!   the queue (`enable.auto.commit` and `enable.auto.offset.store` are
//!   off). A crash between the enqueue and the commit makes the next owner
//!   read those records again under the same batch key: each batch's
//!   offset range is saved before its enqueue ([`super::ranges`]), and a
//!   batch starting inside a saved range is formed as exactly that range,
//!   flagged `maybe_committed`, so sinks find it committed and its dead
//!   letters are not stored twice.
//! * On a rebalance, the partitions being revoked have their enqueued
//!   offsets committed synchronously before they go, and records of theirs
//!   not yet enqueued are dropped (the next owner reads them from there).
//! * A full queue pauses every assigned partition (the consumer keeps
//!   polling, so it stays in the group) until the batch is taken; nothing
//!   is dropped.
//! * librdkafka reconnects to brokers by itself; its errors mark the
//!   upstream down (`sluice_source_upstream_up`, `/ready`) until a broker
//!   is up again; per-partition consumer lag comes from its statistics.

use std::{
    collections::{BTreeMap, HashMap, btree_map::Entry},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::{
    ClientConfig, ClientContext, Message, Offset, Statistics, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::KafkaError,
    message::{BorrowedMessage, Headers, OwnedMessage},
};
use serde_json::{Map, Value};
use sluice_core::{DeadLetter, NewBatch, reason, telemetry::SourceTelemetry};
use sluice_queue::QueueError;

use super::{
    KafkaSourceConfig,
    config::StartFrom,
    ranges::{BatchRanges, checkpoint_name},
};
use crate::{
    kafka::client_config,
    sources::{Source, SourceContext, SourceError, message_body::push_one_line},
};

pub struct KafkaSource {
    config: KafkaSourceConfig,
    client: ClientConfig,
}

impl KafkaSource {
    /// Reads the security secrets from the environment; an error names the
    /// missing variable.
    pub fn new(config: KafkaSourceConfig) -> Result<Self, String> {
        let mut client = client_config(&config.brokers, config.security.as_ref(), &config.librdkafka_options)?;
        client
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                match config.start_from {
                    StartFrom::Earliest => "earliest",
                    StartFrom::Latest => "latest",
                },
            )
            .set("session.timeout.ms", config.session_timeout_ms.to_string());
        if client.get("statistics.interval.ms").is_none() {
            client.set("statistics.interval.ms", "5000");
        }
        Ok(KafkaSource { config, client })
    }
}

type PartitionKey = (String, i32);

/// What the rebalance callback and the reader share.
#[derive(Default)]
struct GroupState {
    /// The next offset of each partition whose batches are durable.
    enqueued: HashMap<PartitionKey, i64>,
    /// Partitions revoked since the reader last looked.
    revoked: Vec<PartitionKey>,
    /// Partitions assigned since the reader last looked, with the group's
    /// committed offset (their batch ranges are to be loaded).
    assigned: Vec<(PartitionKey, Option<i64>)>,
    /// When partitions were last assigned (batch mode's idle time counts
    /// from there at the earliest).
    assigned_at: Option<Instant>,
}

struct GroupContext {
    name: String,
    telemetry: SourceTelemetry,
    state: Arc<Mutex<GroupState>>,
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.telemetry.partition_lag(topic, *partition, p.consumer_lag);
                }
            }
        }
        if statistics.brokers.values().any(|b| b.state == "UP") {
            self.telemetry.upstream_answered();
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.telemetry.upstream_error("broker", &format!("{error} ({reason})"));
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let mut commit = TopicPartitionList::new();
                for p in partitions.elements() {
                    let key = (p.topic().to_string(), p.partition());
                    if let Some(next) = state.enqueued.remove(&key) {
                        let _ = commit.add_partition_offset(p.topic(), p.partition(), Offset::Offset(next));
                    }
                    state.revoked.push(key);
                }
                if commit.count() > 0
                    && let Err(e) = consumer.commit(&commit, CommitMode::Sync)
                {
                    tracing::warn!(source = %self.name, error = %e, "committing revoked partitions failed; their next owner reads their last batch again");
                }
                tracing::info!(source = %self.name, partitions = partitions.count(), "partitions revoked");
            }
            Rebalance::Assign(partitions) => {
                // Where the group resumes: only ranges saved from there on
                // are batches a lost commit left (a topic deleted and made
                // again starts with no committed offset, and nothing pins).
                let committed = consumer
                    .committed_offsets((*partitions).clone(), Duration::from_secs(10))
                    .map_err(|e| tracing::warn!(source = %self.name, error = %e, "reading the committed offsets failed; batches read again may get new keys"))
                    .ok();
                let offset_of = |topic: &str, partition: i32| match committed
                    .as_ref()
                    .and_then(|c| c.find_partition(topic, partition))
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(o)) => Some(o),
                    _ => None,
                };
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                state.assigned_at = Some(Instant::now());
                for p in partitions.elements() {
                    let key = (p.topic().to_string(), p.partition());
                    state.assigned.push((key, offset_of(p.topic(), p.partition())));
                }
                tracing::info!(source = %self.name, partitions = partitions.count(), "partitions assigned");
            }
            Rebalance::Error(e) => tracing::warn!(source = %self.name, error = %e, "rebalance failed"),
        }
    }
}

/// A partition's records not yet enqueued.
struct Pending {
    first: i64,
    last: i64,
    /// The end of the saved range this batch re-forms: it closes there, not
    /// by size or age.
    pinned_end: Option<i64>,
    /// Offsets and line sizes of records over `max_record_bytes`.
    too_large: Vec<(i64, usize)>,
    records: u64,
    events: u64,
    lines: Vec<u8>,
    since: Instant,
}

struct Reader {
    config: KafkaSourceConfig,
    ctx: SourceContext,
    consumer: StreamConsumer<GroupContext>,
    state: Arc<Mutex<GroupState>>,
    gathered: Gathered,
}

/// Records received and not yet enqueued, by partition.
struct Gathered {
    pending: BTreeMap<PartitionKey, Pending>,
    /// Batches closed when their pinned range ended, to be enqueued first.
    closed: Vec<(PartitionKey, Pending)>,
    /// Each held partition's saved batch ranges.
    ranges: HashMap<PartitionKey, BatchRanges>,
    /// Partitions assigned whose ranges are not loaded yet (with the
    /// committed offset); their records wait in `held`.
    unloaded: HashMap<PartitionKey, Option<i64>>,
    held: Vec<OwnedMessage>,
    last_record: Instant,
    metadata_field: String,
    max_record_bytes: usize,
}

#[async_trait]
impl Source for KafkaSource {
    async fn run(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
        let state = Arc::new(Mutex::new(GroupState::default()));
        let context = GroupContext {
            name: ctx.name.clone(),
            telemetry: ctx.telemetry.clone(),
            state: state.clone(),
        };
        let consumer: StreamConsumer<GroupContext> = self
            .client
            .create_with_context(context)
            .map_err(|e| SourceError::Upstream(format!("creating the consumer: {e}")))?;
        let topics: Vec<&str> = self.config.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| SourceError::Upstream(format!("subscribing to {topics:?}: {e}")))?;
        tracing::info!(source = %ctx.name, brokers = %self.config.brokers, group = %self.config.group_id, ?topics, "kafka consumer started");
        let gathered = Gathered {
            pending: BTreeMap::new(),
            closed: Vec::new(),
            ranges: HashMap::new(),
            unloaded: HashMap::new(),
            held: Vec::new(),
            last_record: Instant::now(),
            metadata_field: self.config.metadata_field.clone(),
            max_record_bytes: self.config.max_record_bytes,
        };
        let mut reader = Reader {
            config: self.config,
            ctx,
            consumer,
            state,
            gathered,
        };
        let result = reader.run().await;
        reader.commit_enqueued();
        result
    }
}

impl Reader {
    async fn run(&mut self) -> Result<(), SourceError> {
        let mut shutdown = self.ctx.shutdown.clone();
        let wait = Duration::from_millis(self.config.max_batch_wait_ms);
        let idle = Duration::from_secs(self.config.idle_secs);
        loop {
            let due = self
                .gathered
                .pending
                .values()
                .map(|p| p.since + wait)
                .min()
                .unwrap_or_else(|| Instant::now() + wait);
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return Ok(()),
                received = self.consumer.recv() => {
                    self.gathered.follow_rebalances(&self.state);
                    self.gathered.take(&self.ctx, received);
                }
                _ = tokio::time::sleep_until(due.into()) => {}
            }
            self.gathered.follow_rebalances(&self.state);
            self.load_ranges().await;
            self.flush(false).await?;
            if self.ctx.until_idle && self.idle(idle) {
                return self.flush(true).await;
            }
        }
    }

    /// Batch mode: nothing received for `idle` since the last record and
    /// the last assignment (before the first assignment, joining the group
    /// may take a session timeout more).
    fn idle(&self, idle: Duration) -> bool {
        let assigned_at = self.state.lock().unwrap_or_else(|e| e.into_inner()).assigned_at;
        let quiet = self.gathered.last_record.elapsed();
        match assigned_at {
            Some(at) => quiet > idle && at.elapsed() > idle,
            None => quiet > idle + Duration::from_millis(self.config.session_timeout_ms),
        }
    }

    /// Loads the saved batch ranges of newly assigned partitions, then takes
    /// the records that waited for them. A range that cannot be read is
    /// taken as none (at worst a re-read batch gets a new key).
    async fn load_ranges(&mut self) {
        if self.gathered.unloaded.is_empty() {
            return;
        }
        for (key, committed) in std::mem::take(&mut self.gathered.unloaded) {
            let name = checkpoint_name(&self.ctx.name, &key.0, key.1);
            let Some(committed) = committed else {
                self.gathered.ranges.insert(key, BatchRanges::default());
                continue;
            };
            let ranges = match self.ctx.checkpoints.load(&name).await {
                Ok(saved) => saved
                    .map(|text| BatchRanges::parse(&text).since(committed))
                    .unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(source = %self.ctx.name, checkpoint = %name, error = %e, "reading the partition's batch ranges failed; batches read again may get new keys");
                    BatchRanges::default()
                }
            };
            self.gathered.ranges.insert(key, ranges);
        }
        for message in std::mem::take(&mut self.gathered.held) {
            self.gathered.add(&message);
        }
    }

    /// Enqueues the batches that are full or old enough (`all`: every one).
    async fn flush(&mut self, all: bool) -> Result<(), SourceError> {
        for (key, pending) in std::mem::take(&mut self.gathered.closed) {
            self.enqueue(key, pending).await?;
        }
        let wait = Duration::from_millis(self.config.max_batch_wait_ms);
        let ready: Vec<PartitionKey> = self
            .gathered
            .pending
            .iter()
            .filter(|(_, p)| {
                all || p.pinned_end.is_none()
                    && (p.records as usize >= self.config.max_batch_records
                        || p.lines.len() >= self.config.max_batch_bytes
                        || p.since.elapsed() >= wait)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in ready {
            if let Some(pending) = self.gathered.pending.remove(&key) {
                self.enqueue(key, pending).await?;
            }
        }
        Ok(())
    }

    /// Puts one partition's batch on the queue, pausing the partitions while
    /// the queue is full, then commits the partition's offset.
    async fn enqueue(&mut self, (topic, partition): PartitionKey, pending: Pending) -> Result<(), SourceError> {
        // Counted per batch, not per record: the hot path takes no lock.
        self.ctx.telemetry.upstream_received(pending.records);
        let end = pending.pinned_end.unwrap_or(pending.last);
        let key = format!(
            "kafka/{}/{topic}/{partition}/{}-{end}",
            self.config.group_id, pending.first
        );
        if !pending.too_large.is_empty() {
            self.dead_letter_too_large(&key, &topic, partition, &pending.too_large)
                .await?;
        }
        if !pending.lines.is_empty() {
            self.remember(&topic, partition, (pending.first, end)).await;
            let batch = NewBatch {
                key,
                source: self.ctx.name.clone(),
                payload: Bytes::from(pending.lines),
                maybe_committed: pending.pinned_end.is_some(),
                in_file: None,
            };
            let bytes = batch.payload.len() as u64;
            let mut paused = false;
            let mut shutdown = self.ctx.shutdown.clone();
            loop {
                match self.ctx.queue.enqueue(batch.clone()).await {
                    Ok(()) => break,
                    Err(QueueError::Full { .. }) => {
                        self.ctx.telemetry.backpressure();
                        if !paused {
                            paused = self.set_paused(true);
                        }
                    }
                    Err(e) => tracing::warn!(source = %self.ctx.name, error = %e, "enqueue failed; retrying"),
                }
                // Keep polling while waiting: the group must hear from us.
                tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => return Err(SourceError::Stopped),
                    received = tokio::time::timeout(Duration::from_millis(200), self.consumer.recv()) => {
                        if let Ok(received) = received {
                            self.gathered.follow_rebalances(&self.state);
                            self.gathered.take(&self.ctx, received);
                        }
                    }
                }
            }
            if paused {
                self.set_paused(false);
            }
            self.ctx.telemetry.enqueued(pending.events, bytes);
        }
        self.settle(&topic, partition, end + 1, pending.records);
        Ok(())
    }

    /// Stores the dead letters of a batch's records over `max_record_bytes`
    /// (before the batch's offset can be committed).
    async fn dead_letter_too_large(
        &self,
        key: &str,
        topic: &str,
        partition: i32,
        records: &[(i64, usize)],
    ) -> Result<(), SourceError> {
        let letters = records
            .iter()
            .map(|(offset, size)| {
                DeadLetter::new(
                    format!("{key}#record-{offset}"),
                    0,
                    &self.ctx.name,
                    &self.ctx.name,
                    reason::RECORD_TOO_LARGE,
                    format!(
                        "{topic} partition {partition} offset {offset}: {size} bytes, more than max_record_bytes ({})",
                        self.config.max_record_bytes
                    ),
                    Bytes::new(),
                )
            })
            .collect();
        self.ctx
            .dead_letters
            .put(letters)
            .await
            .map_err(|e| SourceError::State(format!("storing dead letters: {e}")))
    }

    /// Saves a batch's range before it is enqueued. A failed save is logged:
    /// the batch still goes (at worst, read again, it gets a new key).
    async fn remember(&mut self, topic: &str, partition: i32, range: (i64, i64)) {
        let ranges = self.gathered.ranges.entry((topic.to_string(), partition)).or_default();
        ranges.push(range);
        let text = ranges.to_text();
        let name = checkpoint_name(&self.ctx.name, topic, partition);
        if let Err(e) = self.ctx.checkpoints.save(&name, &text).await {
            tracing::warn!(source = %self.ctx.name, checkpoint = %name, error = %e, "saving the batch's offsets failed; read again, it would get a new key");
        }
    }

    /// Records and commits `next` for a partition still held.
    fn settle(&mut self, topic: &str, partition: i32, next: i64, records: u64) {
        let held = self
            .consumer
            .assignment()
            .map(|a| a.find_partition(topic, partition).is_some())
            .unwrap_or(false);
        if !held {
            // Revoked while its batch waited: the next owner may read it
            // again (duplicates, dropped by dedupe); committing would
            // rewind its position.
            return;
        }
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .enqueued
            .insert((topic.to_string(), partition), next);
        let mut commit = TopicPartitionList::new();
        let _ = commit.add_partition_offset(topic, partition, Offset::Offset(next));
        match self.consumer.commit(&commit, CommitMode::Async) {
            Ok(()) => self.ctx.telemetry.upstream_settled(records),
            Err(e) => self.ctx.telemetry.upstream_error("commit", &e),
        }
    }

    fn set_paused(&self, pause: bool) -> bool {
        let Ok(assignment) = self.consumer.assignment() else {
            return false;
        };
        let result = if pause {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        match result {
            Ok(()) => {
                tracing::info!(source = %self.ctx.name, paused = pause, partitions = assignment.count(), "the queue is full: partitions paused until it takes the batch");
                true
            }
            Err(e) => {
                tracing::warn!(source = %self.ctx.name, error = %e, "pausing or resuming partitions failed");
                false
            }
        }
    }

    /// On the way out: the offsets of everything enqueued, committed and
    /// waited for.
    fn commit_enqueued(&self) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut commit = TopicPartitionList::new();
        for ((topic, partition), next) in &state.enqueued {
            let _ = commit.add_partition_offset(topic, *partition, Offset::Offset(*next));
        }
        if commit.count() > 0
            && let Err(e) = self.consumer.commit(&commit, CommitMode::Sync)
        {
            tracing::warn!(source = %self.ctx.name, error = %e, "committing offsets at stop failed; the last batches will be read again");
        }
    }
}

impl Gathered {
    /// Applies the rebalances the last poll ran: records of revoked
    /// partitions are forgotten (their next owner reads them from the
    /// committed offset); assigned ones wait for their ranges.
    fn follow_rebalances(&mut self, state: &Mutex<GroupState>) {
        let (revoked, assigned) = {
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            (std::mem::take(&mut state.revoked), std::mem::take(&mut state.assigned))
        };
        for key in &revoked {
            self.pending.remove(key);
            self.ranges.remove(key);
            self.unloaded.remove(key);
        }
        if !revoked.is_empty() {
            self.closed.retain(|(key, _)| !revoked.contains(key));
            self.held
                .retain(|m| !revoked.iter().any(|(t, p)| t == m.topic() && *p == m.partition()));
        }
        self.unloaded.extend(assigned);
    }

    /// One received record (or error) into its partition's batch.
    fn take(&mut self, ctx: &SourceContext, received: Result<BorrowedMessage<'_>, KafkaError>) {
        let message = match received {
            Ok(m) => m,
            Err(e) => {
                ctx.telemetry.upstream_error("receive", &e);
                return;
            }
        };
        self.last_record = Instant::now();
        if !self.unloaded.is_empty()
            && self
                .unloaded
                .keys()
                .any(|(t, p)| t == message.topic() && *p == message.partition())
        {
            self.held.push(message.detach());
            return;
        }
        self.add(&message);
    }

    /// A record into its partition's batch; a batch re-forming a saved
    /// range closes at the range's end.
    fn add<M: Message>(&mut self, message: &M) {
        let key = (message.topic().to_string(), message.partition());
        let offset = message.offset();
        if let Some(end) = self.pending.get(&key).and_then(|p| p.pinned_end)
            && offset > end
            && let Some(done) = self.pending.remove(&key)
        {
            self.closed.push((key.clone(), done));
        }
        let pending = match self.pending.entry(key) {
            Entry::Occupied(open) => open.into_mut(),
            Entry::Vacant(new) => {
                let pin = self.ranges.get(new.key()).and_then(|r| r.covering(offset));
                new.insert(Pending {
                    first: pin.map_or(offset, |(first, _)| first),
                    last: offset,
                    pinned_end: pin.map(|(_, last)| last),
                    records: 0,
                    events: 0,
                    lines: Vec::new(),
                    too_large: Vec::new(),
                    since: Instant::now(),
                })
            }
        };
        pending.last = offset;
        pending.records += 1;
        if let Some(value) = message.payload() {
            let before = pending.lines.len();
            let events = record_lines(message, value, &self.metadata_field, &mut pending.lines);
            let size = pending.lines.len() - before;
            if size > self.max_record_bytes {
                pending.lines.truncate(before);
                pending.too_large.push((offset, size));
            } else {
                pending.events += events;
            }
        }
        if pending.pinned_end == Some(offset) {
            let key = (message.topic().to_string(), message.partition());
            if let Some(done) = self.pending.remove(&key) {
                self.closed.push((key, done));
            }
        }
    }
}

/// A record's value as one queue line (a record is one event: line breaks
/// become spaces, which changes no JSON value); with a `metadata_field`, a
/// JSON object gets the record's place and headers.
pub(super) fn record_lines<M: Message>(message: &M, value: &[u8], metadata_field: &str, out: &mut Vec<u8>) -> u64 {
    if value.iter().all(u8::is_ascii_whitespace) {
        return 0;
    }
    if !metadata_field.is_empty()
        && let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(value)
    {
        let mut meta = Map::new();
        meta.insert("topic".into(), message.topic().into());
        meta.insert("partition".into(), message.partition().into());
        meta.insert("offset".into(), message.offset().into());
        if let Some(ms) = message.timestamp().to_millis() {
            meta.insert("timestamp".into(), ms.into());
        }
        if let Some(key) = message.key() {
            meta.insert("key".into(), String::from_utf8_lossy(key).into_owned().into());
        }
        if let Some(headers) = message.headers() {
            let headers: Map<String, Value> = headers
                .iter()
                .map(|h| {
                    let value = h
                        .value
                        .map_or(Value::Null, |v| String::from_utf8_lossy(v).into_owned().into());
                    (h.key.to_string(), value)
                })
                .collect();
            meta.insert("headers".into(), Value::Object(headers));
        }
        object.insert(metadata_field.to_string(), Value::Object(meta));
        push_one_line(Value::Object(object).to_string().as_bytes(), out);
        return 1;
    }
    push_one_line(value, out);
    1
}
