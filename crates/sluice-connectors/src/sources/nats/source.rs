//! Pulling JetStream messages into queue batches.
//!
//! A pull takes up to `max_batch_messages` / `max_batch_bytes`, waiting at
//! most `max_wait_ms`; the messages' payloads (each one or more NDJSON
//! lines) become one queue batch keyed `nats:<stream>:<first seq>-<last
//! seq>` (and a hash of its sequences when the range has gaps), and the messages are acknowledged only once the batch is durable
//! in the queue. While the queue is full the source reports progress, so
//! the messages stay with it instead of being redelivered. A crash between
//! enqueue and ack delivers the messages again, as a retrying HTTP client
//! would send a request again: the batch is flagged `maybe_committed` when
//! any message was delivered before, and its events are producer duplicates
//! that the lake's dedupe and compaction remove.

use std::time::Duration;

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, PullConsumer, pull},
    context::GetStreamErrorKind,
    stream::ConsumerErrorKind,
};
use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use sluice_core::{NewBatch, retry::Backoff};
use twox_hash::XxHash3_128;

use super::NatsSourceConfig;
use crate::sources::{Source, SourceContext, SourceError};

pub struct NatsSource {
    config: NatsSourceConfig,
}

impl NatsSource {
    pub fn new(config: NatsSourceConfig) -> Self {
        NatsSource { config }
    }

    async fn consumer(&self, source: &str) -> Result<Durable, ConsumerError> {
        let c = &self.config;
        let name = c.consumer.clone().unwrap_or_else(|| format!("sluice-{source}"));
        durable_consumer(
            &c.url,
            &c.stream,
            c.subject.as_deref(),
            &name,
            Duration::from_secs(c.ack_wait_secs),
        )
        .await
    }

    /// Enqueues `batch`, reporting progress on `messages` while the queue is full.
    async fn enqueue_holding(
        &self,
        ctx: &SourceContext,
        batch: NewBatch,
        messages: &[jetstream::Message],
    ) -> Result<(), SourceError> {
        let enqueue = ctx.enqueue_waiting(batch);
        tokio::pin!(enqueue);
        let every = Duration::from_secs(self.config.ack_wait_secs).max(Duration::from_secs(3)) / 3;
        let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                done = &mut enqueue => return done,
                _ = progress.tick() => {
                    for message in messages {
                        let _ = message.ack_with(AckKind::Progress).await;
                    }
                }
            }
        }
    }
}

/// A durable pull consumer and the client it pulls through, whose state
/// tells a pull that found nothing from one that could not reach NATS.
pub(crate) struct Durable {
    client: async_nats::Client,
    pub consumer: PullConsumer,
}

/// Why a durable consumer could not be had.
#[derive(Debug)]
pub(crate) enum ConsumerError {
    /// NATS could not be reached or did not answer: worth waiting for.
    Unreachable(String),
    /// NATS answered no (no such stream, refused credentials or TLS).
    Refused(String),
}

impl From<ConsumerError> for SourceError {
    fn from(e: ConsumerError) -> SourceError {
        match e {
            ConsumerError::Unreachable(why) | ConsumerError::Refused(why) => SourceError::Upstream(why),
        }
    }
}

/// The durable consumer `open` makes, waiting (with backoff, saying so
/// once) while NATS cannot be reached; `None` if the pipeline stops first.
pub(crate) async fn wait_for_consumer<F, Fut>(ctx: &SourceContext, mut open: F) -> Result<Option<Durable>, SourceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Durable, ConsumerError>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut shutdown = ctx.shutdown.clone();
    loop {
        match open().await {
            Ok(consumer) => {
                ctx.telemetry.upstream_answered();
                return Ok(Some(consumer));
            }
            Err(ConsumerError::Unreachable(why)) => ctx.telemetry.upstream_error("connect", &why),
            Err(refused) => return Err(refused.into()),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.wait_for(|s| *s) => return Ok(None),
        }
    }
}

/// Connects to `url` and returns the durable pull consumer `name` (explicit
/// acks, filtered to `subject`) on `stream`, creating it if missing; the
/// stream must exist.
pub(crate) async fn durable_consumer(
    url: &sluice_core::Secret,
    stream: &str,
    subject: Option<&str>,
    name: &str,
    ack_wait: Duration,
) -> Result<Durable, ConsumerError> {
    let client = sluice_queue::jetstream::connect(url)
        .await
        .map_err(|e| match e.permanent {
            true => ConsumerError::Refused(e.message),
            false => ConsumerError::Unreachable(e.message),
        })?;
    let js = jetstream::new(client.clone());
    let handle = js.get_stream(stream).await.map_err(|e| {
        let why = format!("stream {stream} (it must exist; its producers create it): {e}");
        match e.kind() {
            GetStreamErrorKind::Request => ConsumerError::Unreachable(why),
            _ => ConsumerError::Refused(why),
        }
    })?;
    handle
        .get_or_create_consumer(
            name,
            pull::Config {
                durable_name: Some(name.to_string()),
                filter_subject: subject.unwrap_or_default().to_string(),
                ack_policy: AckPolicy::Explicit,
                ack_wait,
                ..Default::default()
            },
        )
        .await
        .map(|consumer| Durable { client, consumer })
        .map_err(|e| {
            let why = format!("consumer {name} on stream {stream}: {e}");
            match e.kind() {
                ConsumerErrorKind::TimedOut | ConsumerErrorKind::Request => ConsumerError::Unreachable(why),
                _ => ConsumerError::Refused(why),
            }
        })
}

/// One pull: the messages (at most `max_messages`, about `max_bytes`) that
/// arrived within `wait`. An error while the client is not connected: a
/// pull then only waits out its expiry and would look like an empty stream.
pub(crate) async fn pull(
    durable: &Durable,
    max_messages: usize,
    max_bytes: usize,
    wait: Duration,
) -> Result<Vec<jetstream::Message>, String> {
    let connected = || durable.client.connection_state() == async_nats::connection::State::Connected;
    if !connected() {
        return Err("not connected to NATS".into());
    }
    let mut messages = durable
        .consumer
        .batch()
        .max_messages(max_messages)
        .max_bytes(max_bytes)
        .expires(wait)
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    let mut pulled = Vec::new();
    while let Some(message) = messages.next().await {
        pulled.push(message.map_err(|e| e.to_string())?);
    }
    if pulled.is_empty() && !connected() {
        return Err("the connection to NATS was lost during the pull".into());
    }
    Ok(pulled)
}

/// The queue batch of `messages`: their lines, key and redelivery flag.
fn batch_of(stream: &str, source: &str, messages: &[jetstream::Message]) -> (NewBatch, u64) {
    let mut payload = BytesMut::new();
    let mut lines = 0;
    let mut sequences = Vec::with_capacity(messages.len());
    let mut redelivered = false;
    for message in messages {
        if let Ok(info) = message.info() {
            sequences.push(info.stream_sequence);
            redelivered |= info.delivered > 1;
        }
        let body = message.payload.strip_suffix(b"\n").unwrap_or(&message.payload);
        if body.is_empty() {
            continue;
        }
        payload.put_slice(body);
        payload.put_u8(b'\n');
        lines += body.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    }
    let batch = NewBatch {
        key: batch_key(stream, sequences),
        source: source.to_string(),
        payload: Bytes::from(payload),
        maybe_committed: redelivered,
        in_file: None,
    };
    (batch, lines)
}

/// `nats:<stream>:<first>-<last>` when the batch holds every sequence of
/// its range; with gaps (replicas pulling from one consumer share a range),
/// a hash of its sequences follows, so a redelivery regrouped over the same
/// range is not taken for the committed batch.
fn batch_key(stream: &str, mut sequences: Vec<u64>) -> String {
    sequences.sort_unstable();
    sequences.dedup();
    let (Some(&first), Some(&last)) = (sequences.first(), sequences.last()) else {
        return format!("nats:{stream}:none");
    };
    if last - first + 1 == sequences.len() as u64 {
        return format!("nats:{stream}:{first}-{last}");
    }
    let mut hasher = XxHash3_128::new();
    for sequence in &sequences {
        hasher.write(&sequence.to_le_bytes());
    }
    format!("nats:{stream}:{first}-{last}:{:032x}", hasher.finish_128())
}

#[async_trait]
impl Source for NatsSource {
    async fn run(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
        let Some(durable) = wait_for_consumer(&ctx, || self.consumer(&ctx.name)).await? else {
            return Ok(());
        };
        let mut shutdown = ctx.shutdown.clone();
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            if ctx.stopping() {
                return Ok(());
            }
            let c = &self.config;
            let wait = Duration::from_millis(c.max_wait_ms);
            let messages = tokio::select! {
                pulled = pull(&durable, c.max_batch_messages, c.max_batch_bytes, wait) => pulled,
                _ = shutdown.wait_for(|s| *s) => return Ok(()),
            };
            let messages = match messages {
                Ok(messages) => {
                    backoff.reset();
                    ctx.telemetry.upstream_answered();
                    messages
                }
                Err(e) => {
                    ctx.telemetry.upstream_error("pull", &e);
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
            };
            if messages.is_empty() {
                if ctx.until_idle {
                    return Ok(());
                }
                continue;
            }
            let (batch, lines) = batch_of(&self.config.stream, &ctx.name, &messages);
            let bytes = batch.payload.len() as u64;
            if !batch.payload.is_empty() {
                match self.enqueue_holding(&ctx, batch, &messages).await {
                    Ok(()) => ctx.telemetry.enqueued(lines, bytes),
                    // Not acknowledged: JetStream delivers them again.
                    Err(SourceError::Stopped) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            for message in &messages {
                if let Err(e) = message.ack().await {
                    tracing::debug!(source = %ctx.name, error = %e, "ack lost; the message comes back and is a duplicate");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::batch_key;

    #[test]
    fn a_range_with_gaps_is_keyed_by_its_sequences() {
        assert_eq!(batch_key("S", vec![7, 5, 6]), "nats:S:5-7");
        let gaps = batch_key("S", vec![5, 7, 9]);
        assert!(gaps.starts_with("nats:S:5-9:"), "{gaps}");
        assert_ne!(gaps, batch_key("S", vec![5, 6, 9]), "same range, other messages");
        assert_eq!(gaps, batch_key("S", vec![9, 5, 7]));
    }
}
