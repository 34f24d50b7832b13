//! Receiving SQS messages into queue batches.
//!
//! `receivers` loops run at once, each: receive (long polling, up to
//! `max_messages`), and keep receiving while full receives come back and
//! the batch is under `max_batch_messages` / `max_batch_bytes`; enqueue the
//! messages' lines as one batch keyed by its exact set of messages
//! (`sqs:<queue>:<least message id>+<others>:<hash of every id>`);
//! once it is durable, delete the messages (batch delete, retried with
//! jittered backoff). While the enqueue waits on a full queue, the
//! messages' visibility is extended every third of `visibility_timeout_secs`,
//! so SQS does not hand them to anyone else because Sluice was slow.
//!
//! A message is deleted only after its events are durable in Sluice's
//! queue, so SQS's own redrive policy (`maxReceiveCount` to a dead-letter
//! queue) sees only messages Sluice failed to enqueue. A crash between
//! enqueue and delete, or a delete that keeps failing, lets SQS deliver the
//! message again, as SQS may do anyway (standard queues deliver at least
//! once): its batch is flagged `maybe_committed` (`ApproximateReceiveCount`
//! above one) and its events are producer duplicates, which the lake's
//! dedupe window and compaction remove by event id.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sluice_core::{NewBatch, now_ms, retry::Backoff};
use twox_hash::XxHash3_128;

use super::SqsSourceConfig;
use crate::{
    aws::sqs::{Received, SqsQueue},
    sources::{Source, SourceContext, SourceError, message_body},
};

/// How often the queue's approximate counts are read for the backlog gauges.
const BACKLOG_EVERY: Duration = Duration::from_secs(15);

/// Attempts at deleting a batch's messages before leaving them to come back.
const DELETE_ATTEMPTS: u32 = 5;

pub struct SqsSource {
    config: SqsSourceConfig,
    /// A queue connected beforehand (tests); otherwise `run` connects.
    connected: Option<SqsQueue>,
}

/// A received message and its events as queue lines.
struct Decoded {
    message: Received,
    lines: Vec<u8>,
    events: u64,
}

/// Received messages on their way to the queue.
#[derive(Default)]
struct Pending {
    messages: Vec<Decoded>,
    bytes: usize,
}

impl Pending {
    fn add(&mut self, message: Received, unwrap_sns: bool) {
        let mut lines = Vec::new();
        let events = message_body::append_lines(&message.body, unwrap_sns, &mut lines);
        self.bytes += lines.len();
        self.messages.push(Decoded { message, lines, events });
    }

    fn receipts(&self) -> Vec<String> {
        self.messages.iter().map(|d| d.message.receipt.clone()).collect()
    }

    /// The queue batches, each at most `max_bytes` unless one message alone
    /// is bigger, with their event counts; messages without events ride in
    /// a batch's key only.
    fn batches(&self, queue: &str, source: &str, max_bytes: usize) -> Vec<(NewBatch, u64)> {
        let mut groups: Vec<Vec<&Decoded>> = Vec::new();
        let mut size = 0;
        for decoded in &self.messages {
            match groups.last_mut() {
                Some(group) if size + decoded.lines.len() <= max_bytes => group.push(decoded),
                _ => {
                    groups.push(vec![decoded]);
                    size = 0;
                }
            }
            size += decoded.lines.len();
        }
        groups
            .into_iter()
            .filter(|group| group.iter().any(|d| !d.lines.is_empty()))
            .map(|group| batch_of(&group, queue, source))
            .collect()
    }
}

/// One batch of `group`, keyed by its exact set of messages: a message
/// delivered again after a crash may come back with other messages, and a
/// key naming only one of them would let a sink take the new batch for the
/// committed one and drop the rest.
fn batch_of(group: &[&Decoded], queue: &str, source: &str) -> (NewBatch, u64) {
    let mut ids: Vec<&str> = group.iter().map(|d| d.message.id.as_str()).collect();
    ids.sort_unstable();
    let mut hasher = XxHash3_128::new();
    for id in &ids {
        hasher.write(&(id.len() as u64).to_le_bytes());
        hasher.write(id.as_bytes());
    }
    let mut payload = Vec::with_capacity(group.iter().map(|d| d.lines.len()).sum());
    for decoded in group {
        payload.extend_from_slice(&decoded.lines);
    }
    let batch = NewBatch {
        key: format!("sqs:{queue}:{}+{}:{:032x}", ids[0], ids.len() - 1, hasher.finish_128()),
        source: source.to_string(),
        payload: Bytes::from(payload),
        maybe_committed: group.iter().any(|d| d.message.receive_count > 1),
        in_file: None,
    };
    (batch, group.iter().map(|d| d.events).sum())
}

impl SqsSource {
    pub fn new(config: SqsSourceConfig) -> Self {
        SqsSource {
            config,
            connected: None,
        }
    }

    /// A source on a queue already connected.
    #[cfg(test)]
    pub(crate) fn on(config: SqsSourceConfig, queue: SqsQueue) -> Self {
        SqsSource {
            config,
            connected: Some(queue),
        }
    }

    /// One receive; `None` when the pipeline stopped meanwhile.
    async fn receive(
        &self,
        ctx: &SourceContext,
        queue: &SqsQueue,
        backoff: &mut Backoff,
    ) -> Result<Option<Vec<Received>>, SourceError> {
        let c = &self.config;
        let wait = if ctx.until_idle {
            c.wait_time_secs.min(1)
        } else {
            c.wait_time_secs
        };
        let mut shutdown = ctx.shutdown.clone();
        loop {
            let received = tokio::select! {
                received = queue.receive(c.max_messages, wait, c.visibility_timeout_secs) => received,
                _ = shutdown.wait_for(|s| *s) => return Ok(None),
            };
            match received {
                Ok(messages) => {
                    backoff.reset();
                    ctx.telemetry.upstream_received(messages.len() as u64);
                    if let Some(oldest) = messages.iter().filter_map(|m| m.sent_ms).min() {
                        let age_ms = now_ms().saturating_sub(oldest as i64).max(0) as u64;
                        ctx.telemetry.upstream_lag(Duration::from_millis(age_ms));
                    }
                    return Ok(Some(messages));
                }
                Err(e) => {
                    ctx.telemetry.upstream_error("receive", &e);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = shutdown.wait_for(|s| *s) => return Ok(None),
                    }
                }
            }
        }
    }

    /// One receiver: receive, enqueue, delete, until stopped (or, with
    /// `until_idle`, until the queue is empty).
    async fn receiver(&self, ctx: &SourceContext, queue: &SqsQueue) -> Result<(), SourceError> {
        let c = &self.config;
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            if ctx.stopping() {
                return Ok(());
            }
            let Some(first) = self.receive(ctx, queue, &mut backoff).await? else {
                return Ok(());
            };
            if first.is_empty() {
                if ctx.until_idle && self.drained(ctx, queue).await {
                    return Ok(());
                }
                continue;
            }
            let mut pending = Pending::default();
            let mut full = first.len() >= c.max_messages;
            for message in first {
                pending.add(message, c.unwrap_sns);
            }
            while full && pending.messages.len() < c.max_batch_messages && pending.bytes < c.max_batch_bytes {
                let Some(more) = self.receive(ctx, queue, &mut backoff).await? else {
                    // Stopping: these messages are not deleted and come back.
                    return Ok(());
                };
                full = more.len() >= c.max_messages;
                for message in more {
                    pending.add(message, c.unwrap_sns);
                }
            }
            let receipts = pending.receipts();
            for (batch, events) in pending.batches(queue.name(), &ctx.name, c.max_batch_bytes) {
                let bytes = batch.payload.len() as u64;
                match self.enqueue_holding(ctx, queue, batch, &receipts).await {
                    Ok(()) => ctx.telemetry.enqueued(events, bytes),
                    // Not deleted: SQS delivers them again.
                    Err(SourceError::Stopped) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            self.delete(ctx, queue, receipts).await;
        }
    }

    /// Enqueues `batch`, keeping its messages invisible while the queue is full.
    async fn enqueue_holding(
        &self,
        ctx: &SourceContext,
        queue: &SqsQueue,
        batch: NewBatch,
        receipts: &[String],
    ) -> Result<(), SourceError> {
        let enqueue = ctx.enqueue_waiting(batch);
        tokio::pin!(enqueue);
        let visibility = self.config.visibility_timeout_secs;
        let every = Duration::from_secs(u64::from(visibility)).max(Duration::from_secs(3)) / 3;
        let mut extend = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                done = &mut enqueue => return done,
                _ = extend.tick() => match queue.extend(receipts, visibility).await {
                    Ok(0) => {}
                    Ok(missed) => tracing::warn!(source = %ctx.name, messages = missed, "could not extend the visibility of messages held for a full queue; they may be delivered again"),
                    Err(e) => ctx.telemetry.upstream_error("extend_visibility", &e),
                },
            }
        }
    }

    /// Deletes the messages of `receipts`, retrying what fails; what still
    /// fails comes back from SQS and is absorbed as duplicates.
    async fn delete(&self, ctx: &SourceContext, queue: &SqsQueue, mut receipts: Vec<String>) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        for attempt in 1..=DELETE_ATTEMPTS {
            let total = receipts.len();
            let failed = queue.delete(&receipts).await;
            ctx.telemetry.upstream_settled((total - failed.len()) as u64);
            let Some(first) = failed.first() else { return };
            if attempt == DELETE_ATTEMPTS {
                tracing::warn!(source = %ctx.name, messages = failed.len(), error = %first.why, "gave up deleting messages whose events are enqueued; SQS delivers them again and they are dropped as duplicates");
                return;
            }
            match failed.iter().find(|f| f.call_failed) {
                Some(unreachable) => ctx.telemetry.upstream_error("delete", &unreachable.why),
                None => ctx.telemetry.upstream_refused("delete", &first.why),
            }
            receipts = failed.into_iter().map(|f| f.receipt).collect();
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Whether the queue holds nothing, in flight or delayed (batch mode's end).
    async fn drained(&self, ctx: &SourceContext, queue: &SqsQueue) -> bool {
        match queue.backlog().await {
            Ok(backlog) => backlog.total() == 0,
            Err(e) => {
                ctx.telemetry.upstream_error("queue_attributes", &e);
                false
            }
        }
    }

    /// Keeps the backlog gauges current until the pipeline stops.
    async fn watch_backlog(&self, ctx: &SourceContext, queue: &SqsQueue) -> Result<(), SourceError> {
        let mut shutdown = ctx.shutdown.clone();
        loop {
            match queue.backlog().await {
                Ok(b) => ctx.telemetry.upstream_backlog(b.visible, b.in_flight, b.delayed),
                Err(e) => ctx.telemetry.upstream_error("queue_attributes", &e),
            }
            tokio::select! {
                _ = tokio::time::sleep(BACKLOG_EVERY) => {}
                _ = shutdown.wait_for(|s| *s) => return Ok(()),
            }
        }
    }
}

#[async_trait]
impl Source for SqsSource {
    async fn run(mut self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
        let queue = match self.connected.take() {
            Some(queue) => queue,
            None => SqsQueue::connect(&self.config.target(), &self.config.queue_url)
                .await
                .map_err(|e| SourceError::Upstream(format!("sources.{}.{e}", ctx.name)))?,
        };
        let receivers = futures::future::try_join_all((0..self.config.receivers).map(|_| self.receiver(&ctx, &queue)));
        if ctx.until_idle {
            return receivers.await.map(|_| ());
        }
        tokio::try_join!(receivers, self.watch_backlog(&ctx, &queue)).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(ids: &[&str]) -> Pending {
        let mut pending = Pending::default();
        for id in ids {
            pending.add(
                Received {
                    id: id.to_string(),
                    receipt: format!("r-{id}"),
                    body: format!("{{\"id\":\"{id}\"}}"),
                    receive_count: 1,
                    sent_ms: None,
                },
                false,
            );
        }
        pending
    }

    #[test]
    fn a_batch_key_names_its_exact_set_of_messages() {
        let key = |ids: &[&str]| pending(ids).batches("clicks", "s", 1 << 20).remove(0).0.key;
        assert_eq!(
            key(&["b", "a", "c"]),
            key(&["c", "b", "a"]),
            "the order does not matter"
        );
        assert_ne!(key(&["a", "b"]), key(&["a", "c"]), "same least id, other messages");
        assert_ne!(key(&["a", "b"]), key(&["a", "b", "c"]));
        assert!(key(&["b", "a"]).starts_with("sqs:clicks:a+1:"), "{}", key(&["b", "a"]));
    }

    #[test]
    fn batches_stay_under_max_bytes_unless_one_message_is_bigger() {
        // Each message is `{"id":"x"}\n`: 11 bytes.
        let batches = pending(&["a", "b", "c", "d", "e"]).batches("q", "s", 25);
        let sizes: Vec<(usize, u64)> = batches.iter().map(|(b, n)| (b.payload.len(), *n)).collect();
        assert_eq!(sizes, vec![(22, 2), (22, 2), (11, 1)]);
        let keys: std::collections::HashSet<&str> = batches.iter().map(|(b, _)| b.key.as_str()).collect();
        assert_eq!(keys.len(), 3, "each batch its own key");
        let alone = pending(&["a", "b"]).batches("q", "s", 5);
        assert_eq!(alone.len(), 2, "a message bigger than max_bytes is a batch of its own");
    }
}
