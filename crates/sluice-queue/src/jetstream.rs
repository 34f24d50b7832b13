//! The JetStream queue: batches are messages of a work-queue stream (one
//! per pipeline), handed out by one durable pull consumer that every
//! replica shares, so replicas split the work and coordinate only through
//! NATS.
//!
//! * `enqueue` returns once JetStream acknowledged the publish (stored per
//!   the stream's storage); the stream's `max_bytes` with discard-new makes
//!   a full queue refuse publishes ([`QueueError::Full`]), never drop.
//!   JetStream counts each message's subject and headers too (about 100
//!   bytes), where the embedded queue counts payload only.
//! * The consumer's AckWait is the visibility timeout; `extend` sends
//!   in-progress, `nack` a delayed NAK, `ack` an ACK (the work-queue stream
//!   then deletes the message).
//! * A message delivered more than `max_attempts` times is turned into dead
//!   letters and terminated (MaxDeliver is one more than `max_attempts`, so
//!   the server never gives up first). Dead letters live in a stream beside
//!   the queue, shared by the replicas (`dead_letters.rs`).
//! * The last error of a NAK is remembered by the process that sent it
//!   (JetStream carries no text with a NAK); a batch dead-lettered by another
//!   replica says none was recorded.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_nats::{
    HeaderMap,
    jetstream::{
        self, AckKind,
        consumer::{AckPolicy, PullConsumer, pull},
        stream::{DiscardPolicy, RetentionPolicy, StorageType},
    },
};
use async_trait::async_trait;
use futures::StreamExt;
use sluice_core::{DeadLetter, Delivery, DeliveryId, NewBatch, now_ms};

use crate::{DeadLetterCounts, DeadLetterFilter, DeadLetterStore, Queue, QueueError, QueueSettings, QueueStats};

mod dead_letters;
pub mod lease;

const KEY_HEADER: &str = "Sluice-Batch-Key";
const SOURCE_HEADER: &str = "Sluice-Source";
const MAYBE_COMMITTED_HEADER: &str = "Sluice-Maybe-Committed";
/// How long `receive` waits for batches when none is ready.
const RECEIVE_WAIT: Duration = Duration::from_millis(100);

/// Stream, subject and consumer names of one pipeline's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamNames {
    pub stream: String,
    pub subject: String,
    pub consumer: String,
    /// The KV bucket of the replicas' leases.
    pub leases: String,
    /// The KV bucket of the sources' checkpoints.
    pub checkpoints: String,
    /// The dead-letter stream and its subject prefix.
    pub dead_stream: String,
    pub dead_subject: String,
}

impl JetStreamNames {
    /// `SLUICE_<PIPELINE>`, `sluice.<pipeline>.batches`, `sluice-<pipeline>`,
    /// `SLUICE_<PIPELINE>_LEASES`, `SLUICE_<PIPELINE>_CHECKPOINTS`, `SLUICE_<PIPELINE>_DLQ` and
    /// `sluice.<pipeline>.dead`, with anything but letters, digits, `-` and `_` replaced by `_`.
    pub fn for_pipeline(pipeline: &str) -> Self {
        let safe: String = pipeline
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        JetStreamNames {
            stream: format!("SLUICE_{}", safe.to_ascii_uppercase()),
            subject: format!("sluice.{safe}.batches"),
            consumer: format!("sluice-{safe}"),
            leases: format!("SLUICE_{}_LEASES", safe.to_ascii_uppercase()),
            checkpoints: format!("SLUICE_{}_CHECKPOINTS", safe.to_ascii_uppercase()),
            dead_stream: format!("SLUICE_{}_DLQ", safe.to_ascii_uppercase()),
            dead_subject: format!("sluice.{safe}.dead"),
        }
    }
}

pub struct JetStreamQueue {
    js: jetstream::Context,
    names: JetStreamNames,
    consumer: PullConsumer,
    settings: QueueSettings,
    in_flight: Mutex<HashMap<u64, jetstream::Message>>,
    last_errors: Mutex<HashMap<String, String>>,
    next_id: AtomicU64,
}

fn storage(e: impl std::fmt::Display) -> QueueError {
    QueueError::Storage(format!("JetStream: {e}"))
}

/// Connects to NATS at `url`. A user and password (or a token: a user
/// alone) in the URL go in the handshake's options, never in the address,
/// which async-nats logs.
pub async fn connect(url: &sluice_core::Secret) -> Result<async_nats::Client, String> {
    let text = url.expose();
    let (scheme, rest) = text.split_once("://").unwrap_or(("nats", text));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (options, address) = match rest[..authority_end].rsplit_once('@') {
        Some((credentials, host)) => {
            let options = match credentials.split_once(':') {
                Some((user, password)) => {
                    async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
                }
                None => async_nats::ConnectOptions::with_token(credentials.into()),
            };
            (options, format!("{scheme}://{host}{}", &rest[authority_end..]))
        }
        None => (async_nats::ConnectOptions::new(), text.to_string()),
    };
    options
        .connect(address)
        .await
        .map_err(|e| format!("connecting to {}: {e}", url.redacted()))
}

impl JetStreamQueue {
    /// Connects to `url` and creates the streams and consumer if missing
    /// (an existing one keeps its configuration).
    pub async fn open(
        url: &sluice_core::Secret,
        names: JetStreamNames,
        settings: QueueSettings,
    ) -> Result<Self, QueueError> {
        let client = connect(url).await.map_err(storage)?;
        let js = jetstream::new(client);
        let stream = js
            .get_or_create_stream(jetstream::stream::Config {
                name: names.stream.clone(),
                subjects: vec![names.subject.clone()],
                retention: RetentionPolicy::WorkQueue,
                discard: DiscardPolicy::New,
                storage: StorageType::File,
                max_bytes: i64::try_from(settings.max_bytes).unwrap_or(i64::MAX),
                ..Default::default()
            })
            .await
            .map_err(|e| storage(format!("stream {}: {e}", names.stream)))?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                &names.consumer,
                pull::Config {
                    durable_name: Some(names.consumer.clone()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: settings.visibility_timeout,
                    max_deliver: i64::from(settings.max_attempts) + 1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| storage(format!("consumer {}: {e}", names.consumer)))?;
        Self::open_dead_letters(&js, &names.dead_stream, &names.dead_subject).await?;
        Ok(JetStreamQueue {
            js,
            names,
            consumer,
            settings,
            in_flight: Mutex::new(HashMap::new()),
            last_errors: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// The replicas' leases, in this queue's KV bucket (created with `ttl`
    /// as its entries' time to live; an existing bucket keeps its own).
    pub async fn leases(&self, holder: &str, ttl: Duration) -> Result<lease::JetStreamLeases, QueueError> {
        lease::JetStreamLeases::open(&self.js, &self.names.leases, holder, ttl).await
    }

    /// The sources' checkpoints, in this queue's KV bucket.
    pub async fn checkpoints(&self) -> Result<crate::checkpoint::JetStreamCheckpoints, QueueError> {
        crate::checkpoint::JetStreamCheckpoints::open(&self.js, &self.names.checkpoints).await
    }

    /// Publishes a batch; `msg_id` lets JetStream drop a second publish of
    /// it within the stream's duplicate window.
    async fn publish(&self, batch: NewBatch, msg_id: Option<&str>) -> Result<(), QueueError> {
        let mut headers = HeaderMap::new();
        if let Some(id) = msg_id {
            headers.insert("Nats-Msg-Id", id);
        }
        headers.insert(KEY_HEADER, batch.key.as_str());
        headers.insert(SOURCE_HEADER, batch.source.as_str());
        headers.insert(MAYBE_COMMITTED_HEADER, if batch.maybe_committed { "1" } else { "0" });
        let published = self
            .js
            .publish_with_headers(self.names.subject.clone(), headers, batch.payload)
            .await
            .map_err(storage)?
            .await;
        match published {
            Ok(_) => Ok(()),
            // The server refuses with "maximum bytes exceeded" (or messages)
            // once the stream is full under discard-new.
            Err(e) if e.to_string().contains("maximum") => {
                let held_bytes = match self.js.get_stream(&self.names.stream).await {
                    Ok(mut stream) => stream.info().await.map_or(0, |info| info.state.bytes),
                    Err(_) => 0,
                };
                Err(QueueError::Full {
                    held_bytes,
                    max_bytes: self.settings.max_bytes,
                })
            }
            Err(e) => Err(storage(e)),
        }
    }

    fn take(&self, id: DeliveryId) -> Option<jetstream::Message> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(&id.0)
    }

    /// Turns a message delivered too often into dead letters, then ends it.
    async fn dead_letter(&self, key: String, source: String, message: jetstream::Message) -> Result<(), QueueError> {
        let last = self.last_errors.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        let letters = crate::exhausted_batch_letters(
            &key,
            &source,
            &message.payload,
            self.settings.max_attempts,
            last.as_deref(),
        );
        self.put_dead(letters).await?;
        message.ack_with(AckKind::Term).await.map_err(storage)
    }
}

fn header(headers: Option<&HeaderMap>, name: &str) -> Option<String> {
    headers.and_then(|h| h.get(name)).map(|v| v.as_str().to_string())
}

#[async_trait]
impl Queue for JetStreamQueue {
    async fn enqueue(&self, batch: NewBatch) -> Result<(), QueueError> {
        self.publish(batch, None).await
    }

    async fn receive(&self, max: usize) -> Result<Vec<Delivery>, QueueError> {
        let mut messages = self
            .consumer
            .batch()
            .max_messages(max.max(1))
            .expires(RECEIVE_WAIT)
            .messages()
            .await
            .map_err(storage)?;
        let mut deliveries = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message.map_err(storage)?;
            let (attempts, enqueued_at_ms) = {
                let info = message.info().map_err(storage)?;
                (info.delivered, info.published.timestamp_millis())
            };
            let headers = message.headers.as_ref();
            let key = header(headers, KEY_HEADER).unwrap_or_default();
            let source = header(headers, SOURCE_HEADER).unwrap_or_default();
            let maybe_committed = header(headers, MAYBE_COMMITTED_HEADER).as_deref() == Some("1");
            if attempts > i64::from(self.settings.max_attempts) {
                self.dead_letter(key, source, message).await?;
                continue;
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            deliveries.push(Delivery {
                id: DeliveryId(id),
                key,
                source,
                payload: message.payload.clone(),
                attempts: attempts as u32,
                maybe_committed: maybe_committed || attempts > 1,
                enqueued_at_ms,
            });
            self.in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, message);
        }
        Ok(deliveries)
    }

    async fn ack(&self, ids: Vec<DeliveryId>) -> Result<(), QueueError> {
        for id in ids {
            if let Some(message) = self.take(id) {
                self.last_errors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&header(message.headers.as_ref(), KEY_HEADER).unwrap_or_default());
                message.double_ack().await.map_err(storage)?;
            }
        }
        Ok(())
    }

    async fn nack(&self, id: DeliveryId, error: String, delay: Duration) -> Result<(), QueueError> {
        let Some(message) = self.take(id) else {
            return Ok(());
        };
        let key = header(message.headers.as_ref(), KEY_HEADER).unwrap_or_default();
        self.last_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, error);
        let delay = (!delay.is_zero()).then_some(delay);
        message.ack_with(AckKind::Nak(delay)).await.map_err(storage)
    }

    async fn extend(&self, ids: Vec<DeliveryId>) -> Result<(), QueueError> {
        let messages: Vec<jetstream::Message> = {
            let in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            ids.iter().filter_map(|id| in_flight.get(&id.0).cloned()).collect()
        };
        for message in messages {
            message.ack_with(AckKind::Progress).await.map_err(storage)?;
        }
        Ok(())
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut stream = self.js.get_stream(&self.names.stream).await.map_err(storage)?;
        let state = stream.info().await.map_err(storage)?.state.clone();
        let mut consumer = self.consumer.clone();
        let in_flight = consumer.info().await.map_err(storage)?.num_ack_pending as u64;
        Ok(QueueStats {
            batches: state.messages,
            bytes: state.bytes,
            in_flight,
            oldest_age_ms: if state.messages == 0 {
                0
            } else {
                (now_ms() - state.first_timestamp.timestamp_millis()).max(0)
            },
        })
    }
}

#[cfg(test)]
mod tests;

#[async_trait]
impl DeadLetterStore for JetStreamQueue {
    async fn put(&self, letters: Vec<DeadLetter>) -> Result<(), QueueError> {
        self.put_dead(letters).await
    }

    async fn counts(&self) -> Result<DeadLetterCounts, QueueError> {
        self.dead_counts().await
    }

    async fn list(&self, filter: DeadLetterFilter, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        Ok(self
            .read_dead(&filter, limit)
            .await?
            .into_iter()
            .map(|(_, l)| l)
            .collect())
    }

    async fn redrive(&self, filter: DeadLetterFilter) -> Result<u64, QueueError> {
        self.redrive_dead(filter).await
    }
}
