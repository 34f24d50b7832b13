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
//! * A crash is not the batch's fault (ADR 0066): only NAKs (errors a
//!   transform or sink reported) count toward `max_attempts`. A redelivery
//!   nobody answered (the process died or hung) is a suspect and runs
//!   alone in its process; a batch alone in flight `max_crashes` times when
//!   the engine died becomes `crashed_engine` dead letters. The counts and
//!   the last error live in a KV bucket shared by the replicas
//!   (`record.rs`), so any replica can give up on a batch with its reason.
//!   MaxDeliver is unlimited: the queue, not the server, gives up.
//! * While a suspect runs, the messages fetched beside it are held (kept
//!   invisible with in-progress acks) and handed out after it.
//! * Dead letters live in a stream beside the queue, shared by the
//!   replicas (`dead_letters.rs`).

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::{
    HeaderMap,
    jetstream::{
        self, AckKind,
        consumer::{AckPolicy, PullConsumer, pull},
        kv,
        stream::{DiscardPolicy, RetentionPolicy, StorageType},
    },
};
use async_trait::async_trait;
use futures::StreamExt;
use sluice_core::{DeadLetter, Delivery, DeliveryId, NewBatch, now_ms};

use crate::{DeadLetterCounts, DeadLetterFilter, DeadLetterStore, Queue, QueueError, QueueSettings, QueueStats};

mod dead_letters;
pub mod lease;
mod record;

use record::{Record, Verdict};

const KEY_HEADER: &str = "Sluice-Batch-Key";
const SOURCE_HEADER: &str = "Sluice-Source";
const MAYBE_COMMITTED_HEADER: &str = "Sluice-Maybe-Committed";
/// How long `receive` waits for batches when none is ready.
const RECEIVE_WAIT: Duration = Duration::from_millis(100);
/// How long a delivery record outlives its last write (a message acked or
/// dead-lettered has its record deleted at once).
const RECORD_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

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
    /// The KV bucket of the messages' delivery records.
    pub deliveries: String,
    /// The dead-letter stream and its subject prefix.
    pub dead_stream: String,
    pub dead_subject: String,
}

impl JetStreamNames {
    /// `SLUICE_<PIPELINE>`, `sluice.<pipeline>.batches`, `sluice-<pipeline>`,
    /// `SLUICE_<PIPELINE>_LEASES`, `SLUICE_<PIPELINE>_CHECKPOINTS`,
    /// `SLUICE_<PIPELINE>_DELIVERIES`, `SLUICE_<PIPELINE>_DLQ` and `sluice.<pipeline>.dead`, with anything but letters, digits, `-` and `_` replaced by `_`.
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
            deliveries: format!("SLUICE_{}_DELIVERIES", safe.to_ascii_uppercase()),
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
    records: kv::Store,
    local: Mutex<Local>,
    next_id: AtomicU64,
    /// Disconnects from NATS (each one the client reports, and each time
    /// `receive` or `extend` finds it down): a delivery whose ack wait ran
    /// out across one was not too slow, it could not say it was still
    /// working.
    disconnects: Arc<AtomicU64>,
    /// Signalled when a delivery leaves flight, which is what a queue
    /// running a suspect alone waits for before it can hand out more.
    finished: tokio::sync::Notify,
}

/// This process's messages: handed out, or fetched and held back.
struct Local {
    in_flight: HashMap<u64, Fetched>,
    held: VecDeque<Fetched>,
    /// The suspect running alone, if one is.
    alone: Option<u64>,
    /// When the held messages were last marked in progress.
    progressed: Instant,
}

/// A fetched message and what `receive` learned about it.
struct Fetched {
    message: jetstream::Message,
    sequence: u64,
    delivered: u64,
    /// Read when the message was delivered before; `None` when it has none.
    record: Option<Record>,
    suspect: bool,
    key: String,
    source: String,
    maybe_committed: bool,
    enqueued_at_ms: i64,
    /// `disconnects` when it was fetched.
    disconnects: u64,
}

fn storage(e: impl std::fmt::Display) -> QueueError {
    QueueError::Storage(format!("JetStream: {e}"))
}

/// Connects to NATS at `url`. A user and password (or a token: a user
/// alone) in the URL go in the handshake's options, never in the address,
/// which async-nats logs. TLS and other credentials come from the
/// environment variables the `nats` command reads ([`options_from_env`]).
pub async fn connect(url: &sluice_core::Secret) -> Result<async_nats::Client, ConnectError> {
    connect_with(url, |options| options).await
}

/// [`connect`], with `configure` adding options of the caller's.
async fn connect_with(
    url: &sluice_core::Secret,
    configure: impl FnOnce(async_nats::ConnectOptions) -> async_nats::ConnectOptions,
) -> Result<async_nats::Client, ConnectError> {
    let text = url.expose();
    let (scheme, rest) = text.split_once("://").unwrap_or(("nats", text));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let mut options = options_from_env().await.map_err(|message| ConnectError {
        message,
        permanent: true,
    })?;
    let address = match rest[..authority_end].rsplit_once('@') {
        Some((credentials, host)) => {
            options = match credentials.split_once(':') {
                Some((user, password)) => options.user_and_password(user.into(), password.into()),
                None => options.token(credentials.into()),
            };
            format!("{scheme}://{host}{}", &rest[authority_end..])
        }
        None => text.to_string(),
    };
    configure(options).connect(address).await.map_err(|e| ConnectError {
        message: format!("connecting to {}: {e}", url.redacted()),
        permanent: matches!(
            e.kind(),
            async_nats::ConnectErrorKind::Tls | async_nats::ConnectErrorKind::Authentication
        ) || refused_by_tls(&e),
    })
}

/// Whether a TLS handshake failed somewhere in `error`'s causes (async-nats
/// reports a certificate it does not trust as an I/O error).
fn refused_by_tls(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
        if inner || e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        next = e.source();
    }
    false
}

/// Why NATS could not be reached. `permanent` when waiting will not help:
/// the TLS settings or credentials are refused, or cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    pub message: String,
    pub permanent: bool,
}

/// Connection options from the `nats` command's environment variables:
/// `NATS_CA` (CA certificates, PEM; TLS is then required), `NATS_CERT` and
/// `NATS_KEY` (a client certificate), `NATS_CREDS` (a credentials file)
/// and `NATS_NKEY` (a file holding an NKey seed). Secrets stay in files.
pub async fn options_from_env() -> Result<async_nats::ConnectOptions, String> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    };
    let mut options = async_nats::ConnectOptions::new();
    if let Some(ca) = var("NATS_CA") {
        if !ca.is_file() {
            return Err(format!("NATS_CA: {} is not a readable file", ca.display()));
        }
        options = options.add_root_certificates(ca).require_tls(true);
    }
    match (var("NATS_CERT"), var("NATS_KEY")) {
        (Some(cert), Some(key)) => options = options.add_client_certificate(cert, key),
        (None, None) => {}
        _ => return Err("NATS_CERT and NATS_KEY: set both or neither".into()),
    }
    if let Some(creds) = var("NATS_CREDS") {
        options = options
            .credentials_file(&creds)
            .await
            .map_err(|e| format!("NATS_CREDS {}: {e}", creds.display()))?;
    }
    if let Some(nkey) = var("NATS_NKEY") {
        let seed = std::fs::read_to_string(&nkey).map_err(|e| format!("NATS_NKEY {}: {e}", nkey.display()))?;
        options = options.nkey(seed.trim().to_string());
    }
    Ok(options)
}

impl JetStreamQueue {
    /// Connects to `url` and creates the streams and consumer if missing
    /// (an existing one keeps its configuration).
    pub async fn open(
        url: &sluice_core::Secret,
        names: JetStreamNames,
        settings: QueueSettings,
    ) -> Result<Self, QueueError> {
        // Every disconnect the client goes through is counted, not only
        // those `receive` and `extend` happen to see.
        let disconnects = Arc::new(AtomicU64::new(0));
        let counted = disconnects.clone();
        let client = connect_with(url, move |options| {
            options.event_callback(move |event| {
                if matches!(event, async_nats::Event::Disconnected) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                std::future::ready(())
            })
        })
        .await
        .map_err(storage)?;
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
        let config = pull::Config {
            durable_name: Some(names.consumer.clone()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: settings.visibility_timeout,
            max_deliver: -1,
            ..Default::default()
        };
        // Creating an existing durable consumer updates its editable
        // settings (ack wait, max deliver); a server that refuses keeps the
        // consumer as it is.
        let consumer: PullConsumer = match stream.create_consumer(config.clone()).await {
            Ok(consumer) => consumer,
            Err(e) => {
                tracing::warn!(consumer = %names.consumer, error = %e, "the queue's consumer keeps its earlier settings");
                stream
                    .get_or_create_consumer(&names.consumer, config)
                    .await
                    .map_err(|e| storage(format!("consumer {}: {e}", names.consumer)))?
            }
        };
        Self::open_dead_letters(&js, &names.dead_stream, &names.dead_subject).await?;
        let records = lease::open_bucket(&js, &names.deliveries, RECORD_MAX_AGE)
            .await
            .map_err(|e| storage(format!("delivery records {}: {e}", names.deliveries)))?;
        Ok(JetStreamQueue {
            js,
            names,
            consumer,
            settings,
            records,
            local: Mutex::new(Local {
                in_flight: HashMap::new(),
                held: VecDeque::new(),
                alone: None,
                progressed: Instant::now(),
            }),
            next_id: AtomicU64::new(1),
            disconnects,
            finished: tokio::sync::Notify::new(),
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

    fn local(&self) -> MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fetches up to `max` messages and sorts them: dead letters are
    /// written and ended here; the rest come back with their verdict.
    async fn fetch(&self, max: usize) -> Result<Vec<Fetched>, QueueError> {
        let mut messages = self
            .consumer
            .batch()
            .max_messages(max.max(1))
            .expires(RECEIVE_WAIT)
            .messages()
            .await
            .map_err(storage)?;
        let mut fetched = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message.map_err(storage)?;
            let (delivered, sequence, enqueued_at_ms) = {
                let info = message.info().map_err(storage)?;
                (
                    info.delivered.max(1) as u64,
                    info.stream_sequence,
                    info.published.timestamp_millis(),
                )
            };
            let headers = message.headers.as_ref();
            let key = header(headers, KEY_HEADER).unwrap_or_default();
            let source = header(headers, SOURCE_HEADER).unwrap_or_default();
            let maybe_committed = header(headers, MAYBE_COMMITTED_HEADER).as_deref() == Some("1");
            let mut record = if delivered > 1 {
                self.read_record(sequence).await?
            } else {
                None
            };
            if let Some((was_alone, disconnected)) = self.expired_here(sequence) {
                // This process still held the earlier delivery: it was too
                // slow, not dead. That counts as an attempt, as on the
                // embedded queue, unless the connection was lost meanwhile
                // (its in-progress acks could not reach the server).
                let mut r = record.unwrap_or_default();
                if !disconnected {
                    r.failures += 1;
                }
                r.answered = delivered - 1;
                if was_alone {
                    r.crashes = r.crashes.saturating_sub(1);
                }
                self.write_record(sequence, &r).await?;
                record = Some(r);
            }
            let known = record.clone().unwrap_or_default();
            let verdict = known.verdict(delivered, self.settings.max_attempts, self.settings.max_crashes);
            let letters = match verdict {
                Verdict::Deliver | Verdict::Suspect => None,
                Verdict::Exhausted => Some(crate::exhausted_batch_letters(
                    &key,
                    &source,
                    &message.payload,
                    known.failures,
                    known.last_error.as_deref(),
                )),
                Verdict::CrashedEngine => {
                    tracing::error!(batch = %key, crashes = known.crashes, "a batch was alone in flight each time the engine died; it is set aside as dead letters");
                    Some(crate::crashed_batch_letters(
                        &key,
                        &source,
                        &message.payload,
                        known.crashes,
                    ))
                }
            };
            if let Some(letters) = letters {
                self.put_dead(letters).await?;
                message.ack_with(AckKind::Term).await.map_err(storage)?;
                self.forget(sequence).await;
                continue;
            }
            fetched.push(Fetched {
                message,
                sequence,
                delivered,
                record,
                suspect: verdict == Verdict::Suspect,
                disconnects: self.disconnects.load(Ordering::Relaxed),
                key,
                source,
                maybe_committed: maybe_committed || delivered > 1,
                enqueued_at_ms,
            });
        }
        Ok(fetched)
    }

    /// Drops this process's earlier delivery of `sequence`, if it still
    /// holds one (its ack wait ran out); says whether it did, whether that
    /// delivery was a suspect running alone, and whether the connection was
    /// lost since it was fetched.
    fn expired_here(&self, sequence: u64) -> Option<(bool, bool)> {
        let mut local = self.local();
        // A held copy whose ack wait ran out is stale: the new one replaces it.
        local.held.retain(|f| f.sequence != sequence);
        let id = local
            .in_flight
            .iter()
            .find_map(|(id, f)| (f.sequence == sequence).then_some(*id))?;
        let earlier = local.in_flight.remove(&id)?;
        let alone = local.alone == Some(id);
        if alone {
            local.alone = None;
        }
        Some((alone, earlier.disconnects != self.disconnects.load(Ordering::Relaxed)))
    }

    /// Whether the client is connected; counts the times it is not.
    fn connected(&self) -> bool {
        let up = self.js.client().connection_state() == async_nats::connection::State::Connected;
        if !up {
            self.disconnects.fetch_add(1, Ordering::Relaxed);
        }
        up
    }

    async fn read_record(&self, sequence: u64) -> Result<Option<Record>, QueueError> {
        let entry = self.records.get(sequence.to_string()).await.map_err(storage)?;
        Ok(entry.map(|bytes| Record::decode(&bytes)))
    }

    async fn write_record(&self, sequence: u64, record: &Record) -> Result<(), QueueError> {
        self.records
            .put(sequence.to_string(), record.encode())
            .await
            .map(|_| ())
            .map_err(storage)
    }

    /// Deletes a finished message's record; one left behind only waits for
    /// its age limit, as the message is never delivered again.
    async fn forget(&self, sequence: u64) {
        if let Err(e) = self.records.delete(sequence.to_string()).await {
            tracing::debug!(sequence, error = %e, "delivery record left to expire");
        }
    }

    /// Marks held messages in progress, so they stay hidden while held.
    async fn keep_held(&self) {
        let messages: Vec<jetstream::Message> = {
            let mut local = self.local();
            if local.held.is_empty() || local.progressed.elapsed() < self.settings.visibility_timeout / 4 {
                return;
            }
            local.progressed = Instant::now();
            local.held.iter().map(|f| f.message.clone()).collect()
        };
        for message in messages {
            if let Err(e) = message.ack_with(AckKind::Progress).await {
                tracing::debug!(error = %e, "a held batch was not marked in progress");
            }
        }
    }

    /// Hands a fetched message out under a new delivery id.
    fn start(&self, local: &mut Local, fetched: Fetched) -> Delivery {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let failures = fetched.record.as_ref().map_or(0, |r| r.failures);
        let delivery = Delivery {
            id: DeliveryId(id),
            key: fetched.key.clone(),
            source: fetched.source.clone(),
            payload: fetched.message.payload.clone(),
            attempts: failures + 1,
            maybe_committed: fetched.maybe_committed,
            enqueued_at_ms: fetched.enqueued_at_ms,
        };
        local.in_flight.insert(id, fetched);
        delivery
    }

    /// Takes a delivery out of flight; frees the isolation if it was the
    /// suspect running alone. Returns it and whether it was.
    fn finish(&self, id: DeliveryId) -> Option<(Fetched, bool)> {
        let mut local = self.local();
        let fetched = local.in_flight.remove(&id.0)?;
        let alone = local.alone == Some(id.0);
        if alone {
            local.alone = None;
        }
        self.finished.notify_one();
        Some((fetched, alone))
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
        // While the client reconnects, a fetch only waits out its expiry:
        // say the queue is unreachable instead of that it is empty.
        if !self.connected() {
            tokio::time::sleep(RECEIVE_WAIT).await;
            return Err(storage("not connected to NATS; reconnecting"));
        }
        let fetch = {
            let local = self.local();
            local.held.is_empty() && local.alone.is_none()
        };
        if fetch {
            let fetched = self.fetch(max).await?;
            self.local().held.extend(fetched);
        }
        self.keep_held().await;
        let suspect = {
            let mut local = self.local();
            if local.alone.is_some() {
                return Ok(Vec::new());
            }
            match local.held.iter().position(|f| f.suspect) {
                // Alone means alone in this process: wait for the others.
                Some(_) if !local.in_flight.is_empty() => return Ok(Vec::new()),
                Some(at) => local.held.remove(at),
                None => None,
            }
        };
        if let Some(mut fetched) = suspect {
            let mut record = fetched.record.take().unwrap_or_default();
            record.crashes += 1;
            if let Err(e) = self.write_record(fetched.sequence, &record).await {
                self.local().held.push_front(fetched);
                return Err(e);
            }
            tracing::warn!(
                batch = %fetched.key,
                deliveries = fetched.delivered,
                "a batch was in flight when an engine stopped answering; it runs alone, without spending an attempt"
            );
            fetched.record = Some(record);
            let mut local = self.local();
            let delivery = self.start(&mut local, fetched);
            local.alone = Some(delivery.id.0);
            return Ok(vec![delivery]);
        }
        let mut local = self.local();
        let n = max.max(1).min(local.held.len());
        let taken: Vec<Fetched> = local.held.drain(..n).collect();
        Ok(taken.into_iter().map(|f| self.start(&mut local, f)).collect())
    }

    async fn ack(&self, ids: Vec<DeliveryId>) -> Result<(), QueueError> {
        for id in ids {
            if let Some((fetched, _)) = self.finish(id) {
                fetched.message.double_ack().await.map_err(storage)?;
                if fetched.record.is_some() {
                    self.forget(fetched.sequence).await;
                }
            }
        }
        Ok(())
    }

    async fn nack(&self, id: DeliveryId, error: String, delay: Duration) -> Result<(), QueueError> {
        let Some((fetched, alone)) = self.finish(id) else {
            return Ok(());
        };
        // The record first, so whichever replica gets the message next
        // counts this answer.
        let mut record = fetched.record.clone().unwrap_or_default();
        record.failures += 1;
        record.answered = fetched.delivered;
        if alone {
            record.crashes = record.crashes.saturating_sub(1);
        }
        record.last_error = Some(error);
        self.write_record(fetched.sequence, &record).await?;
        let delay = (!delay.is_zero()).then_some(delay);
        fetched.message.ack_with(AckKind::Nak(delay)).await.map_err(storage)
    }

    async fn release(&self, id: DeliveryId, delay: Duration) -> Result<(), QueueError> {
        let Some((fetched, alone)) = self.finish(id) else {
            return Ok(());
        };
        // Answered (so not a suspect next time), with no failure counted.
        let mut record = fetched.record.clone().unwrap_or_default();
        record.answered = fetched.delivered;
        if alone {
            record.crashes = record.crashes.saturating_sub(1);
        }
        self.write_record(fetched.sequence, &record).await?;
        let delay = (!delay.is_zero()).then_some(delay);
        fetched.message.ack_with(AckKind::Nak(delay)).await.map_err(storage)
    }

    async fn extend(&self, ids: Vec<DeliveryId>) -> Result<(), QueueError> {
        if !self.connected() {
            return Err(storage("not connected to NATS; reconnecting"));
        }
        let messages: Vec<jetstream::Message> = {
            let local = self.local();
            ids.iter()
                .filter_map(|id| local.in_flight.get(&id.0).map(|f| f.message.clone()))
                .collect()
        };
        for message in messages {
            message.ack_with(AckKind::Progress).await.map_err(storage)?;
        }
        self.keep_held().await;
        Ok(())
    }

    /// A fetch waits for messages itself; only while it isolates does
    /// `receive` answer at once with nothing, until a delivery finishes.
    async fn wait_for_batches(&self, timeout: Duration) {
        if self.isolating() {
            let _ = tokio::time::timeout(timeout, self.finished.notified()).await;
        }
    }

    fn isolating(&self) -> bool {
        let local = self.local();
        local.alone.is_some() || local.held.iter().any(|f| f.suspect)
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
