//! The sink's Parquet files, written on a task of their own: the sink
//! decodes a batch's events to Arrow while this task encodes the previous
//! batch into Parquet, so the two halves of the sink's work run on two of
//! the runtime's threads when it has them.
//!
//! Invariants:
//! * Operations run in the order they were sent: a close returns the files
//!   of every write sent before it, and nothing sent after.
//! * A write that fails poisons the files until the next close or reset:
//!   later writes are skipped and the close returns the error, so the
//!   window is never committed without rows it was given.
//! * At most [`WRITES_QUEUED`] writes wait for the task; the sink waits
//!   for room beyond that, so decoded batches cannot pile up in memory.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
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
    ops: mpsc::UnboundedSender<Op>,
    room: Arc<Semaphore>,
    buffered: Arc<AtomicUsize>,
}

impl Files {
    /// Starts the task that owns `writer`.
    pub fn start(writer: RecordBatchWriter) -> Self {
        let (ops, rx) = mpsc::unbounded_channel();
        let buffered = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(writer, rx, buffered.clone()));
        Files {
            ops,
            room: Arc::new(Semaphore::new(WRITES_QUEUED)),
            buffered,
        }
    }

    /// Queues `rows` for their partitions' open files.
    pub async fn write(&self, rows: Vec<PartitionRows>) -> Result<(), WriterGone> {
        let permit = self.room.clone().acquire_owned().await.map_err(|_| WriterGone)?;
        self.ops.send(Op::Write(rows, permit)).map_err(|_| WriterGone)
    }

    /// Closes the open files once every write sent before is in them.
    pub async fn close(&self) -> Result<Result<Vec<Add>, DeltaTableError>, WriterGone> {
        let (reply, answer) = oneshot::channel();
        self.ops.send(Op::Close(reply)).map_err(|_| WriterGone)?;
        answer.await.map_err(|_| WriterGone)
    }

    /// Drops the open files and any write queued before this.
    pub fn reset(&self) {
        let _ = self.ops.send(Op::Reset);
    }

    /// Writes from now on go to files of `writer`'s schema. Close first:
    /// files still open are dropped.
    pub fn replace(&self, writer: RecordBatchWriter) {
        let _ = self.ops.send(Op::Replace(Box::new(writer)));
    }

    /// Bytes in the open files, as of the last write the task took up.
    pub fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }
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
