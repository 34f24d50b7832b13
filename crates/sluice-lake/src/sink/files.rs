//! The sink's Parquet files, written on tasks of their own: the sink
//! decodes a batch's events to Arrow while these tasks encode earlier
//! batches into Parquet, so the sink's work runs on as many of the
//! runtime's threads as it has. There is one task (a shard) per worker
//! thread; each partition's rows go to the shard its values hash to, so a
//! partition's file is written by one task (ADR 0096).
//!
//! Invariants:
//! * Operations run in the order they were sent, in every shard: a close
//!   returns the files of every write sent before it, and nothing sent
//!   after.
//! * A write that fails poisons its shard's files until the next close or
//!   reset: later writes are skipped and the close returns the error, so
//!   the window is never committed without rows it was given.
//! * At most [`WRITES_QUEUED`] writes wait for each shard; the sink waits
//!   for room beyond that, so decoded batches cannot pile up in memory.

use std::{
    hash::{Hash, Hasher},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use arrow_array::RecordBatch;
use delta_kernel::expressions::Scalar;
use deltalake::{
    DeltaTableError,
    kernel::Add,
    writer::{DeltaWriter, RecordBatchWriter, WriteMode},
};
use indexmap::IndexMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// Writes sent and not yet taken up by the task.
const WRITES_QUEUED: usize = 2;

/// One partition's share of a batch: its rows and partition values.
pub(super) type PartitionRows = (RecordBatch, IndexMap<String, Scalar>);

enum Op {
    Write(Vec<PartitionRows>, OwnedSemaphorePermit),
    Close(oneshot::Sender<Result<Vec<Add>, DeltaTableError>>),
    Reset,
    /// A writer for a wider schema takes over (after a close).
    Replace(Box<RecordBatchWriter>),
}

/// The task's closed channel: it ended (a panic in the writer).
#[derive(Debug, thiserror::Error)]
#[error("the Parquet writer's task has ended")]
pub struct WriterGone;

pub(super) struct Files {
    shards: Vec<Shard>,
}

/// One task and the writer it owns.
struct Shard {
    ops: mpsc::UnboundedSender<Op>,
    room: Arc<Semaphore>,
    buffered: Arc<AtomicUsize>,
}

impl Shard {
    fn start(writer: RecordBatchWriter) -> Self {
        let (ops, rx) = mpsc::unbounded_channel();
        let buffered = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(writer, rx, buffered.clone()));
        Shard {
            ops,
            room: Arc::new(Semaphore::new(WRITES_QUEUED)),
            buffered,
        }
    }
}

impl Files {
    /// Starts a task for each of `writers` (one per shard; at least one).
    pub fn start(writers: Vec<RecordBatchWriter>) -> Self {
        Files {
            shards: writers.into_iter().map(Shard::start).collect(),
        }
    }

    /// Queues `rows` for their partitions' open files.
    pub async fn write(&self, rows: Vec<PartitionRows>) -> Result<(), WriterGone> {
        let mut by_shard: Vec<Vec<PartitionRows>> = self.shards.iter().map(|_| Vec::new()).collect();
        for part in rows {
            by_shard[shard_of(&part.1, self.shards.len())].push(part);
        }
        for (shard, rows) in self.shards.iter().zip(by_shard) {
            if rows.is_empty() {
                continue;
            }
            let permit = shard.room.clone().acquire_owned().await.map_err(|_| WriterGone)?;
            shard.ops.send(Op::Write(rows, permit)).map_err(|_| WriterGone)?;
        }
        Ok(())
    }

    /// Closes the open files once every write sent before is in them.
    pub async fn close(&self) -> Result<Result<Vec<Add>, DeltaTableError>, WriterGone> {
        let mut answers = Vec::with_capacity(self.shards.len());
        for shard in &self.shards {
            let (reply, answer) = oneshot::channel();
            shard.ops.send(Op::Close(reply)).map_err(|_| WriterGone)?;
            answers.push(answer);
        }
        let mut adds = Vec::new();
        let mut failed = None;
        for answer in answers {
            match answer.await.map_err(|_| WriterGone)? {
                Ok(closed) => adds.extend(closed),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        Ok(failed.map_or(Ok(adds), Err))
    }

    /// Drops the open files and any write queued before this.
    pub fn reset(&self) {
        for shard in &self.shards {
            let _ = shard.ops.send(Op::Reset);
        }
    }

    /// Writes from now on go to files of the `writers`' schema (one per
    /// shard, as many as [`start`](Self::start) was given). Close first:
    /// files still open are dropped.
    pub fn replace(&self, writers: Vec<RecordBatchWriter>) {
        for (shard, writer) in self.shards.iter().zip(writers) {
            let _ = shard.ops.send(Op::Replace(Box::new(writer)));
        }
    }

    /// How many shards write files.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Bytes in the open files, as of the last write each task took up.
    pub fn buffered(&self) -> usize {
        self.shards.iter().map(|s| s.buffered.load(Ordering::Relaxed)).sum()
    }
}

/// The shard of the partition with `values`: the same for every batch.
pub(super) fn shard_of(values: &IndexMap<String, Scalar>, shards: usize) -> usize {
    if shards == 1 {
        return 0;
    }
    let mut hasher = std::hash::DefaultHasher::new();
    for (column, value) in values {
        column.hash(&mut hasher);
        value.to_string().hash(&mut hasher);
    }
    (hasher.finish() % shards as u64) as usize
}

async fn run(mut writer: RecordBatchWriter, mut ops: mpsc::UnboundedReceiver<Op>, buffered: Arc<AtomicUsize>) {
    let mut failed: Option<DeltaTableError> = None;
    while let Some(op) = ops.recv().await {
        match op {
            Op::Write(rows, _permit) => {
                if failed.is_some() {
                    continue;
                }
                for (batch, partition) in rows {
                    if let Err(e) = writer.write_partition(batch, &partition, WriteMode::Default).await {
                        failed = Some(e);
                        break;
                    }
                }
            }
            Op::Close(reply) => {
                let closed = match failed.take() {
                    Some(e) => {
                        writer.reset();
                        Err(e)
                    }
                    None => writer.flush().await,
                };
                let _ = reply.send(closed);
            }
            Op::Reset => {
                writer.reset();
                failed = None;
            }
            Op::Replace(wider) => {
                writer.reset();
                writer = *wider;
            }
        }
        buffered.store(writer.buffer_len(), Ordering::Relaxed);
    }
}
