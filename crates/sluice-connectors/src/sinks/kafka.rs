//! The `kafka` sink: events published to a Kafka topic, each batch once.
//!
//! A flush is one Kafka transaction (idempotent, transactional producer):
//! every buffered event, then, once the broker has acknowledged them all,
//! one marker record per batch key on the markers topic
//! (`<topic>.sluice-batches` unless named), committed together. A batch
//! delivered again (`maybe_committed`: a crash between the commit and the
//! queue's ack) is looked up among the markers, read
//! with `read_committed` up to the end of the markers topic, and skipped if
//! its marker is there. A crash before the commit leaves an open
//! transaction that the restarted producer aborts (`init_transactions`
//! fences the old one), so its records never reach a `read_committed`
//! reader; consumers of the topic must read with
//! `isolation.level=read_committed` (librdkafka's and the Java client's
//! default is `read_committed` / `read_uncommitted` respectively).
//!
//! `transactional_id` must be unique per running engine (two replicas with
//! one id fence each other); the default adds the host name.

use std::{collections::HashSet, path::Path, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer},
};
use serde::Deserialize;
use sluice_core::{Accepted, Event, FlushReport, Sink, StageError};

use crate::kafka::{KafkaSecurity, client_config, validate_options};

/// `type = "kafka"` in the pipeline file.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic events are published to.
    pub topic: String,
    /// JSON pointer of the value used as each record's key (its text, or
    /// the JSON of a non-string); none: records without a key.
    #[serde(default)]
    pub key_field: Option<String>,
    /// Record headers: header name -> JSON pointer of its value.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Where batch markers go (created with one partition if missing);
    /// default `<topic>.sluice-batches`.
    #[serde(default)]
    pub markers_topic: Option<String>,
    /// The producer's transactional id, unique per running engine; default
    /// `sluice-<topic>-<host name>`.
    #[serde(default)]
    pub transactional_id: Option<String>,
    /// Longest time an accepted event waits before it is published.
    #[serde(default = "default_flush_interval_secs")]
    pub flush_interval_secs: u64,
    /// Publish at this buffered size.
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: usize,
    /// TLS and SASL for managed Kafka (secrets from environment variables).
    #[serde(default)]
    pub security: Option<KafkaSecurity>,
    /// More librdkafka producer settings (`compression.type`, ...); those
    /// Sluice sets are refused.
    #[serde(default)]
    pub librdkafka_options: std::collections::BTreeMap<String, String>,
}

fn default_flush_interval_secs() -> u64 {
    1
}

fn default_max_buffered_bytes() -> usize {
    8 * 1024 * 1024
}

impl KafkaSinkConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.topic.is_empty() || self.topic.len() > 249 || !self.topic.chars().all(topic_char) {
            return Err(format!(
                "topic: {:?} is not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)",
                self.topic
            ));
        }
        if let Some(markers) = &self.markers_topic
            && (markers.is_empty() || !markers.chars().all(topic_char) || markers == &self.topic)
        {
            return Err(format!(
                "markers_topic: {markers:?} must be a topic name other than topic"
            ));
        }
        for (key, pointer) in self
            .key_field
            .iter()
            .map(|p| ("key_field", p))
            .chain(self.headers.values().map(|p| ("headers", p)))
        {
            if !pointer.starts_with('/') {
                return Err(format!("{key}: {pointer:?} is not a JSON pointer (it starts with '/')"));
            }
        }
        if let Some(security) = &self.security {
            security.validate()?;
        }
        validate_options(&self.librdkafka_options)
    }

    fn markers_topic(&self) -> String {
        self.markers_topic
            .clone()
            .unwrap_or_else(|| format!("{}.sluice-batches", self.topic))
    }
}

fn topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// A record waiting for the next flush.
struct Record {
    key: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    payload: Bytes,
}

pub struct KafkaSink {
    config: KafkaSinkConfig,
    producer: FutureProducer,
    markers: Markers,
    buffer: Vec<Record>,
    batches: Vec<String>,
    bytes: usize,
}

const TIMEOUT: Duration = Duration::from_secs(30);
/// How long markers are kept (as the lake keeps its `txn` entries): a batch
/// redelivered later than this is published again.
const MARKER_RETENTION_MS: &str = "604800000";

impl KafkaSink {
    /// Connects, creates the markers topic if missing, fences any earlier
    /// producer with the same transactional id (aborting its open
    /// transaction) and reads the markers already committed. `dir` is the
    /// pipeline file's folder (certificate paths are relative to it).
    pub async fn open(config: &KafkaSinkConfig, dir: &Path) -> Result<KafkaSink, StageError> {
        let mut config = config.clone();
        if let Some(security) = &mut config.security {
            security.resolve_paths(|p| dir.join(p));
        }
        let base = client_config(&config.brokers, config.security.as_ref(), &config.librdkafka_options)
            .map_err(StageError::fatal)?;
        let transactional_id = config.transactional_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
                .unwrap_or_default();
            format!("sluice-{}-{}", config.topic, host.trim())
        });
        let producer: FutureProducer = base
            .clone()
            .set("enable.idempotence", "true")
            .set("transactional.id", &transactional_id)
            .create()
            .map_err(|e| StageError::fatal(format!("kafka producer: {e}")))?;
        let markers_topic = config.markers_topic();
        ensure_topic(&base, &markers_topic).await?;
        let fencing = producer.clone();
        blocking(move || fencing.init_transactions(TIMEOUT), "initialising transactions").await?;
        let mut markers = Markers::open(&base, &markers_topic)?;
        markers.catch_up().await?;
        tracing::info!(topic = %config.topic, markers = %markers_topic, transactional_id, known = markers.keys.len(), "kafka sink ready");
        Ok(KafkaSink {
            config,
            producer,
            markers,
            buffer: Vec::new(),
            batches: Vec::new(),
            bytes: 0,
        })
    }

    fn record(&self, event: &Event) -> Record {
        let value: Option<serde_json::Value> = (self.config.key_field.is_some() || !self.config.headers.is_empty())
            .then(|| serde_json::from_slice(&event.payload).unwrap_or_default());
        let text = |pointer: &str| -> Option<Vec<u8>> {
            match value.as_ref()?.pointer(pointer)? {
                serde_json::Value::String(s) => Some(s.clone().into_bytes()),
                serde_json::Value::Null => None,
                other => Some(other.to_string().into_bytes()),
            }
        };
        Record {
            key: self.config.key_field.as_deref().and_then(text),
            headers: self
                .config
                .headers
                .iter()
                .filter_map(|(name, pointer)| Some((name.clone(), text(pointer)?)))
                .collect(),
            payload: event.payload.clone(),
        }
    }

    async fn publish(&mut self) -> Result<(), StageError> {
        let producer = self.producer.clone();
        blocking(move || producer.begin_transaction(), "beginning a transaction").await?;
        let markers_topic = self.config.markers_topic();
        let mut deliveries = Vec::with_capacity(self.buffer.len() + self.batches.len());
        for record in &self.buffer {
            let mut headers = OwnedHeaders::new();
            for (name, value) in &record.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value),
                });
            }
            let mut r = FutureRecord::to(&self.config.topic)
                .payload(record.payload.as_ref())
                .headers(headers);
            if let Some(key) = &record.key {
                r = r.key(key.as_slice());
            }
            deliveries.push(send(&self.producer, r).await?);
        }
        // The markers only once the broker has every event: a broker that
        // shows an aborted transaction's records (tansu does) must never
        // show a batch's marker without its events.
        if let Err(e) = delivered(deliveries).await {
            self.abort().await;
            return Err(e);
        }
        let mut deliveries = Vec::with_capacity(self.batches.len());
        for batch in &self.batches {
            let r = FutureRecord::to(&markers_topic)
                .key(batch.as_bytes())
                .payload(&[] as &[u8]);
            deliveries.push(send(&self.producer, r).await?);
        }
        let producer = self.producer.clone();
        let committed = blocking(
            move || producer.commit_transaction(TIMEOUT),
            "committing the transaction",
        )
        .await;
        if let Err(e) = committed {
            self.abort().await;
            return Err(e);
        }
        delivered(deliveries).await
    }

    async fn abort(&self) {
        let producer = self.producer.clone();
        let _ = blocking(move || producer.abort_transaction(TIMEOUT), "aborting the transaction").await;
    }
}

/// Waits for the broker's answer to each record of the transaction.
async fn delivered(deliveries: Vec<rdkafka::producer::DeliveryFuture>) -> Result<(), StageError> {
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(kafka_error("a record of the transaction", e)),
            Err(_) => {
                return Err(StageError::unavailable(
                    "kafka: a record of the transaction was dropped",
                ));
            }
        }
    }
    Ok(())
}

/// Produces one record, waiting while librdkafka's queue is full.
async fn send<'a>(
    producer: &FutureProducer,
    mut record: FutureRecord<'a, [u8], [u8]>,
) -> Result<rdkafka::producer::DeliveryFuture, StageError> {
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err((e, _)) => return Err(kafka_error("producing", e)),
        }
    }
}

fn kafka_error(what: &str, e: KafkaError) -> StageError {
    let message = format!("kafka: {what}: {e}");
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch) => {
            StageError::fatal(format!("{message}; another engine uses this transactional_id"))
        }
        _ => StageError::unavailable(message),
    }
}

/// Runs a blocking librdkafka call off the async threads.
async fn blocking(
    call: impl FnOnce() -> Result<(), KafkaError> + Send + 'static,
    what: &str,
) -> Result<(), StageError> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result.map_err(|e| kafka_error(what, e)),
        Err(e) => Err(StageError::retriable(format!("kafka: {what}: {e}"))),
    }
}

async fn ensure_topic(base: &ClientConfig, topic: &str) -> Result<(), StageError> {
    let admin: AdminClient<DefaultClientContext> = base
        .create()
        .map_err(|e| StageError::fatal(format!("kafka admin client: {e}")))?;
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(-1)).set("retention.ms", MARKER_RETENTION_MS)],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await
        .map_err(|e| kafka_error("creating the markers topic", e))?;
    for result in created {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(StageError::unavailable(format!("kafka: creating topic {name}: {code}")));
            }
        }
    }
    Ok(())
}

/// The batch keys committed to the markers topic, read with
/// `read_committed`.
struct Markers {
    consumer: Option<BaseConsumer>,
    topic: String,
    keys: HashSet<String>,
    /// The topic's end when last read to it: unchanged, nothing to read.
    read_to: i64,
}

impl Markers {
    fn open(base: &ClientConfig, topic: &str) -> Result<Markers, StageError> {
        let consumer: BaseConsumer = base
            .clone()
            .set("group.id", format!("{topic}.reader"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(|e| StageError::fatal(format!("kafka markers reader: {e}")))?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, 0, Offset::Beginning)
            .map_err(|e| kafka_error("assigning the markers topic", e))?;
        consumer
            .assign(&assignment)
            .map_err(|e| kafka_error("assigning the markers topic", e))?;
        Ok(Markers {
            consumer: Some(consumer),
            topic: topic.to_string(),
            keys: HashSet::new(),
            read_to: -1,
        })
    }

    /// Reads every committed marker up to the topic's current end.
    async fn catch_up(&mut self) -> Result<(), StageError> {
        let consumer = self
            .consumer
            .take()
            .expect("the reader is put back after each catch-up");
        let (topic, read_to) = (self.topic.clone(), self.read_to);
        let read = tokio::task::spawn_blocking(move || {
            let result = read_to_end(&consumer, &topic, read_to);
            (consumer, result)
        })
        .await
        .map_err(|e| StageError::retriable(format!("kafka markers: {e}")))?;
        self.consumer = Some(read.0);
        let (keys, end) = read.1?;
        self.keys.extend(keys);
        self.read_to = end;
        Ok(())
    }
}

/// The marker keys from the reader's position to the end of the topic as
/// it is now (its last stable offset: open transactions end first), and
/// that end; nothing to read when the end is still `read_to`.
fn read_to_end(consumer: &BaseConsumer, topic: &str, read_to: i64) -> Result<(Vec<String>, i64), StageError> {
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, TIMEOUT)
        .map_err(|e| kafka_error("reading the markers' end", e))?;
    if high == read_to {
        return Ok((Vec::new(), high));
    }
    let mut keys = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut quiet_polls = 0;
    loop {
        let position = consumer
            .position()
            .ok()
            .and_then(|p| match p.find_partition(topic, 0)?.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .unwrap_or(0);
        if position >= high {
            return Ok((keys, high));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                quiet_polls = 0;
                if let Some(key) = message.key() {
                    keys.push(String::from_utf8_lossy(key).into_owned());
                }
                if message.offset() + 1 >= high {
                    return Ok((keys, high));
                }
            }
            Some(Err(e)) => return Err(kafka_error("reading markers", e)),
            // One offset short of the end with nothing more to read: the
            // last is a transaction's commit record, never a marker.
            None => {
                quiet_polls += 1;
                if (quiet_polls >= 2 && high - position <= 1) || std::time::Instant::now() > deadline {
                    return Ok((keys, high));
                }
            }
        }
    }
}

#[async_trait]
impl Sink for KafkaSink {
    async fn accept(&mut self, key: &str, maybe_committed: bool, events: Vec<Event>) -> Result<Accepted, StageError> {
        if maybe_committed {
            self.markers.catch_up().await?;
            if self.markers.keys.contains(key) {
                return Ok(Accepted::AlreadyCommitted);
            }
        }
        for event in &events {
            let record = self.record(event);
            self.bytes += record.payload.len();
            self.buffer.push(record);
        }
        self.batches.push(key.to_string());
        Ok(Accepted::Buffered { rejected: Vec::new() })
    }

    fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    fn max_buffered_bytes(&self) -> usize {
        self.config.max_buffered_bytes
    }

    async fn flush(&mut self) -> Result<FlushReport, StageError> {
        if self.batches.is_empty() {
            return Ok(FlushReport::default());
        }
        self.publish().await?;
        self.markers.keys.extend(self.batches.iter().cloned());
        let report = FlushReport {
            rows: self.buffer.len() as u64,
            batches: self.batches.len() as u64,
            ..FlushReport::default()
        };
        self.reset();
        Ok(report)
    }

    fn reset(&mut self) {
        self.buffer.clear();
        self.batches.clear();
        self.bytes = 0;
    }
}
