//! The Kafka consumer: a group member whose committed offsets follow the
//! queue.
//!
//! * Records are gathered per partition into batches (keyed
//!   `kafka/<group>/<topic>/<partition>/<first>-<last>`), each closed at
//!   `max_batch_records`, `max_batch_bytes` or `max_batch_wait_ms`.
//! * A partition's offset is committed only after its batch is durable in
//!   the queue (`enable.auto.commit` and `enable.auto.offset.store` are
//!   off). A crash between the enqueue and the commit makes the next owner
//!   read those records again: producer duplicates, dropped by the sinks'
//!   event-id dedupe.
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
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::{
    ClientConfig, ClientContext, Message, Offset, Statistics, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::KafkaError,
    message::{BorrowedMessage, Headers},
};
use serde_json::{Map, Value};
use sluice_core::{NewBatch, telemetry::SourceTelemetry};
use sluice_queue::QueueError;

use super::{KafkaSourceConfig, config::StartFrom};
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
                self.state.lock().unwrap_or_else(|e| e.into_inner()).assigned_at = Some(Instant::now());
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
    last_record: Instant,
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
        let mut reader = Reader {
            config: self.config,
            ctx,
            consumer,
            state,
            gathered: Gathered {
                pending: BTreeMap::new(),
                last_record: Instant::now(),
            },
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
                received = self.consumer.recv() => self.gathered.take(&self.ctx, &self.config.metadata_field, received),
                _ = tokio::time::sleep_until(due.into()) => {}
            }
            self.drop_revoked();
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

    /// Forgets records of partitions revoked meanwhile: their next owner
    /// reads them from the committed offset.
    fn drop_revoked(&mut self) {
        let revoked = std::mem::take(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()).revoked);
        for key in revoked {
            self.gathered.pending.remove(&key);
        }
    }

    /// Enqueues the batches that are full or old enough (`all`: every one).
    async fn flush(&mut self, all: bool) -> Result<(), SourceError> {
        let wait = Duration::from_millis(self.config.max_batch_wait_ms);
        let ready: Vec<PartitionKey> = self
            .gathered
            .pending
            .iter()
            .filter(|(_, p)| {
                all || p.records as usize >= self.config.max_batch_records
                    || p.lines.len() >= self.config.max_batch_bytes
                    || p.since.elapsed() >= wait
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
        if !pending.lines.is_empty() {
            let batch = NewBatch {
                key: format!(
                    "kafka/{}/{topic}/{partition}/{}-{}",
                    self.config.group_id, pending.first, pending.last
                ),
                source: self.ctx.name.clone(),
                payload: Bytes::from(pending.lines),
                maybe_committed: false,
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
                            self.gathered.take(&self.ctx, &self.config.metadata_field, received);
                        }
                    }
                }
            }
            if paused {
                self.set_paused(false);
            }
            self.ctx.telemetry.enqueued(pending.events, bytes);
        }
        self.settle(&topic, partition, pending.last + 1, pending.records);
        Ok(())
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
    /// One received record (or error) into its partition's batch.
    fn take(&mut self, ctx: &SourceContext, metadata_field: &str, received: Result<BorrowedMessage<'_>, KafkaError>) {
        let message = match received {
            Ok(m) => m,
            Err(e) => {
                ctx.telemetry.upstream_error("receive", &e);
                return;
            }
        };
        self.last_record = Instant::now();
        let key = (message.topic().to_string(), message.partition());
        let offset = message.offset();
        let pending = self.pending.entry(key).or_insert_with(|| Pending {
            first: offset,
            last: offset,
            records: 0,
            events: 0,
            lines: Vec::new(),
            since: Instant::now(),
        });
        pending.last = offset;
        pending.records += 1;
        if let Some(value) = message.payload() {
            pending.events += record_lines(&message, value, metadata_field, &mut pending.lines);
        }
    }
}

/// A record's value as one queue line (a record is one event: line breaks
/// become spaces, which changes no JSON value); with a `metadata_field`, a
/// JSON object gets the record's place and headers.
fn record_lines(message: &BorrowedMessage<'_>, value: &[u8], metadata_field: &str, out: &mut Vec<u8>) -> u64 {
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
