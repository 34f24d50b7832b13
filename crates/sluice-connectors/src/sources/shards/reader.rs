//! One shard's reader: reads pages, cuts batches, checkpoints around each
//! enqueue (see the module above), and keeps the shard's lease renewed.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use sluice_core::{NewBatch, retry::Backoff};
use sluice_queue::lease::Lease;

use super::{Page, Position, ShardCheckpoint, ShardInfo, ShardSettings, ShardedStream, StreamRecord, sequence_order};
use crate::sources::{SourceContext, SourceError};

/// The pause after an empty page behind the stream's tip (Kinesis allows
/// five reads a second per shard).
const BEHIND_PAUSE: Duration = Duration::from_millis(200);

/// Why a reader returned.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadEnd {
    /// The shard is closed and read to its end.
    Finished,
    /// Caught up, in batch mode.
    Idle,
    Stopped,
    LeaseLost,
}

pub(crate) struct ShardReader {
    pub ctx: SourceContext,
    pub stream: Arc<dyn ShardedStream>,
    pub settings: ShardSettings,
    pub shard: ShardInfo,
    /// The checkpoint's and the lease's name.
    pub name: String,
}

impl ShardReader {
    pub async fn run(self, mut lease: Box<dyn Lease>) -> Result<ReadEnd, SourceError> {
        let renew_every = self.ctx.leases.time_to_live().min(Duration::from_secs(3600)) / 3;
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
        let read = self.read();
        tokio::pin!(read);
        let end = loop {
            tokio::select! {
                end = &mut read => break end,
                _ = renew.tick() => {
                    if lease.renew().await.is_err() {
                        return Ok(ReadEnd::LeaseLost);
                    }
                }
            }
        };
        lease.release().await;
        end
    }

    /// Where a shard without a sequence starts: a child at its beginning.
    fn start(&self) -> Position {
        if self.shard.parents.is_empty() {
            self.settings.start.clone()
        } else {
            Position::TrimHorizon
        }
    }

    async fn checkpoint(&self) -> Result<ShardCheckpoint, SourceError> {
        ShardCheckpoint::load(self.ctx.checkpoints.as_ref(), &self.name).await
    }

    async fn save(&self, checkpoint: &ShardCheckpoint) -> Result<(), SourceError> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            match checkpoint.save(self.ctx.checkpoints.as_ref(), &self.name).await {
                Ok(()) => {
                    self.ctx.telemetry.upstream_answered();
                    return Ok(());
                }
                Err(e) => self.ctx.telemetry.upstream_error("checkpoint", &e),
            }
            if self.ctx.stopping() {
                return Err(SourceError::Stopped);
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// An iterator at the checkpoint, retried until it comes (or the
    /// pipeline stops: `None`).
    async fn iterator_at(&self, checkpoint: &ShardCheckpoint) -> Option<String> {
        let position = checkpoint
            .sequence
            .clone()
            .map_or_else(|| self.start(), Position::After);
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut shutdown = self.ctx.shutdown.clone();
        loop {
            match self.stream.iterator(&self.shard.id, &position).await {
                Ok(iterator) => {
                    self.ctx.telemetry.upstream_answered();
                    return Some(iterator);
                }
                Err(e) => self.ctx.telemetry.upstream_error("shard_iterator", &e),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = shutdown.wait_for(|s| *s) => return None,
            }
        }
    }

    async fn read(&self) -> Result<ReadEnd, SourceError> {
        let mut checkpoint = self.checkpoint().await?;
        if checkpoint.finished {
            return Ok(ReadEnd::Finished);
        }
        let Some(mut iterator) = self.iterator_at(&checkpoint).await else {
            return Ok(ReadEnd::Stopped);
        };
        let mut pending: Vec<StreamRecord> = Vec::new();
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut shutdown = self.ctx.shutdown.clone();
        loop {
            if self.ctx.stopping() {
                return Ok(ReadEnd::Stopped);
            }
            let page = tokio::select! {
                page = self.stream.read(&iterator, self.settings.max_records) => page,
                _ = shutdown.wait_for(|s| *s) => return Ok(ReadEnd::Stopped),
            };
            let page: Page = match page {
                Ok(page) => {
                    backoff.reset();
                    page
                }
                Err(e) => {
                    // An expired or refused iterator: start again from the checkpoint.
                    self.ctx.telemetry.upstream_error("get_records", &e);
                    tokio::time::sleep(backoff.next_delay()).await;
                    pending.clear();
                    match self.iterator_at(&checkpoint).await {
                        Some(fresh) => iterator = fresh,
                        None => return Ok(ReadEnd::Stopped),
                    }
                    continue;
                }
            };
            if let Some(behind) = page.behind {
                self.ctx.telemetry.upstream_lag(behind);
            }
            let caught_up = page.records.len() < self.settings.max_records;
            let empty = page.records.is_empty();
            self.ctx.telemetry.upstream_received(page.records.len() as u64);
            pending.extend(page.records);
            let closed = page.next.is_none();
            while let Some(cut) = self.cut(&mut pending, &checkpoint, caught_up || closed) {
                checkpoint = self.enqueue(checkpoint, cut).await?;
            }
            if closed && !pending.is_empty() {
                // The recorded end is not in the shard (trimmed away): what
                // is left goes as read.
                checkpoint.pending_end = None;
                while let Some(cut) = self.cut(&mut pending, &checkpoint, true) {
                    checkpoint = self.enqueue(checkpoint, cut).await?;
                }
            }
            match page.next {
                Some(next) => iterator = next,
                None => {
                    checkpoint.finished = true;
                    checkpoint.pending_end = None;
                    self.save(&checkpoint).await?;
                    return Ok(ReadEnd::Finished);
                }
            }
            if empty {
                // Behind the tip, an empty page only means an empty stretch
                // of the shard: read on soon (within the services' per-shard
                // call limits).
                let at_tip = page.behind.is_none_or(|b| b.is_zero());
                if self.ctx.until_idle && at_tip && pending.is_empty() {
                    return Ok(ReadEnd::Idle);
                }
                let pause = if at_tip {
                    self.settings.poll_interval
                } else {
                    BEHIND_PAUSE
                };
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.wait_for(|s| *s) => return Ok(ReadEnd::Stopped),
                }
            }
        }
    }

    /// The records of the next batch, taken off `pending`: up to the end a
    /// checkpoint recorded (once it is read), else, when the read caught up
    /// or `max_batch_bytes` are pending, as many as fit in it.
    fn cut(
        &self,
        pending: &mut Vec<StreamRecord>,
        checkpoint: &ShardCheckpoint,
        flush: bool,
    ) -> Option<Vec<StreamRecord>> {
        if pending.is_empty() {
            return None;
        }
        if let Some(end) = &checkpoint.pending_end {
            let at = pending
                .iter()
                .position(|r| sequence_order(&r.sequence, end) != std::cmp::Ordering::Less)?;
            let through = if pending[at].sequence == *end { at + 1 } else { at };
            return Some(pending.drain(..through).collect());
        }
        let max = self.settings.max_batch_bytes;
        let bytes: usize = pending.iter().map(|r| r.lines.len()).sum();
        if !flush && bytes < max {
            return None;
        }
        // At most `max` bytes (one record alone may be more), so a batch
        // fits the queue (a JetStream queue's messages are bounded).
        let mut size = 0;
        let take = pending
            .iter()
            .position(|r| {
                size += r.lines.len();
                size > max
            })
            .map_or(pending.len(), |i| i.max(1));
        Some(pending.drain(..take).collect())
    }

    /// Records the batch's end, enqueues it, then moves the sequence to it.
    async fn enqueue(
        &self,
        mut checkpoint: ShardCheckpoint,
        records: Vec<StreamRecord>,
    ) -> Result<ShardCheckpoint, SourceError> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(checkpoint);
        };
        let end = last.sequence.clone();
        let again = checkpoint.pending_end.as_deref() == Some(end.as_str());
        if !again {
            checkpoint.pending_end = Some(end.clone());
            self.save(&checkpoint).await?;
        }
        let key = format!(
            "{}:{}:{}:{}-{end}",
            self.settings.kind, self.settings.stream, self.shard.id, first.sequence
        );
        let events: u64 = records.iter().map(|r| r.events).sum();
        let mut payload = Vec::with_capacity(records.iter().map(|r| r.lines.len()).sum());
        for record in &records {
            payload.extend_from_slice(&record.lines);
        }
        if !payload.is_empty() {
            let bytes = payload.len() as u64;
            self.ctx
                .enqueue_waiting(NewBatch {
                    key,
                    source: self.ctx.name.clone(),
                    payload: Bytes::from(payload),
                    maybe_committed: again,
                    in_file: None,
                })
                .await?;
            self.ctx.telemetry.enqueued(events, bytes);
        }
        checkpoint.sequence = Some(end);
        checkpoint.pending_end = None;
        self.save(&checkpoint).await?;
        self.ctx.telemetry.upstream_settled(records.len() as u64);
        Ok(checkpoint)
    }
}
