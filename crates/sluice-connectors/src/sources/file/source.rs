//! Reading files into queue batches.
//!
//! Each file is cut into batches of whole lines (`max_batch_bytes` when it
//! was first read, kept in its checkpoint), keyed
//! `file:<path>@<size>:<mtime>#<chunk>`, so reading the same file again gives
//! the same keys; a file `sluice replay` asked for is read under
//! [`sluice_core::replay_key`]s of that replay. A reader thread does the blocking I/O and decompression;
//! the async side enqueues and waits while the queue is full. With
//! `queue_payloads = "reference"` each batch of a plain file also names
//! where its lines lie, and the embedded queue keeps that instead of them.

use std::{
    fs::File,
    io::Read,
    path::PathBuf,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use tokio::sync::mpsc;

use sluice_core::FileRange;

use super::{FileCheckpoints, FileSourceConfig, FileState, QueuePayloads};
use crate::sources::{
    Source, SourceContext, SourceError,
    chunks::{Chunk, GZIP_MAGIC, Layout, ReadError, dead_letter_unreadable, enqueue_chunks, read_chunks},
};

pub struct FileSource {
    config: FileSourceConfig,
}

impl FileSource {
    /// `config.path` must already be absolute (the pipeline loader resolves it).
    pub fn new(config: FileSourceConfig) -> Self {
        FileSource { config }
    }
}

struct Candidate {
    path: PathBuf,
    size: u64,
    mtime_ns: i64,
}

#[async_trait]
impl Source for FileSource {
    async fn run(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
        let checkpoints =
            FileCheckpoints::open(&ctx.state_dir.join(format!("{}.sqlite3", ctx.name))).map_err(SourceError::State)?;
        let mut shutdown = ctx.shutdown.clone();
        loop {
            for file in self.scan(ctx.until_idle) {
                let shown = file.path.display().to_string();
                let state = checkpoints
                    .state(&shown, file.size, file.mtime_ns)
                    .map_err(SourceError::State)?;
                let (reread, replay) = match state {
                    FileState::Done => continue,
                    FileState::New => (false, None),
                    FileState::Reading { replay } => (true, replay),
                    FileState::Replay(replay) => {
                        tracing::info!(source = %ctx.name, file = %shown, %replay, "replaying a file");
                        (true, Some(replay))
                    }
                };
                let batch_bytes = checkpoints
                    .start(&shown, file.size, file.mtime_ns, self.config.batch_bytes())
                    .map_err(SourceError::State)?;
                match self
                    .read_file(&ctx, &file, batch_bytes, reread, replay.as_deref())
                    .await
                {
                    Ok(()) => checkpoints
                        .finish(&shown, file.size, file.mtime_ns, sluice_core::now_ms())
                        .map_err(SourceError::State)?,
                    Err(SourceError::Stopped) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            if ctx.until_idle || ctx.stopping() {
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(self.config.poll_interval_secs)) => {}
                _ = shutdown.wait_for(|s| *s) => return Ok(()),
            }
        }
    }
}

/// Whether the file starts with gzip's magic bytes (as the reader unpacks it).
fn gzipped(path: &std::path::Path) -> bool {
    let mut magic = [0u8; 2];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == GZIP_MAGIC)
}

impl FileSource {
    /// Matching regular files, in name order, that have settled.
    fn scan(&self, until_idle: bool) -> Vec<Candidate> {
        let Ok(paths) = glob::glob(&self.config.path) else {
            return Vec::new();
        };
        let settle = Duration::from_secs(self.config.settle_secs);
        let mut found: Vec<Candidate> = paths
            .filter_map(Result::ok)
            .filter_map(|path| {
                let meta = std::fs::metadata(&path).ok()?;
                if !meta.is_file() {
                    return None;
                }
                let age = meta
                    .modified()
                    .ok()
                    .and_then(|m| SystemTime::now().duration_since(m).ok());
                if !until_idle && age.is_none_or(|a| a < settle) {
                    return None;
                }
                Some(Candidate {
                    size: meta.len(),
                    mtime_ns: sluice_core::mtime_ns(&meta),
                    path,
                })
            })
            .collect();
        found.sort_by(|a, b| a.path.cmp(&b.path));
        found
    }

    /// Where `file`'s first batch lies, when the queue is to keep places
    /// rather than lines and the file's bytes are its lines: not gzipped
    /// (or unreadable, which the read reports), its path UTF-8.
    fn in_place(&self, file: &Candidate) -> Option<FileRange> {
        if self.config.queue_payloads != QueuePayloads::Reference || gzipped(&file.path) {
            return None;
        }
        Some(FileRange {
            path: file.path.to_str()?.to_string(),
            size: file.size,
            mtime_ns: file.mtime_ns,
            offset: 0,
        })
    }

    /// Reads `file` into batches of about `max` bytes; `reread` flags them
    /// (they may be committed), `replay` keys them as that replay's.
    async fn read_file(
        &self,
        ctx: &SourceContext,
        file: &Candidate,
        max: usize,
        reread: bool,
        replay: Option<&str>,
    ) -> Result<(), SourceError> {
        let (tx, rx) = mpsc::channel::<Chunk>(2);
        let path = file.path.clone();
        let reader = std::thread::spawn(move || match File::open(&path) {
            Ok(f) => read_chunks(Box::new(f), Layout::Ndjson, max, &tx),
            Err(e) => {
                let _ = tx.blocking_send(Chunk::Failed(ReadError {
                    message: e.to_string(),
                    retriable: false,
                    unavailable: false,
                }));
            }
        });
        let mut base = format!("file:{}@{}:{}", file.path.display(), file.size, file.mtime_ns);
        if let Some(replay) = replay {
            base = sluice_core::replay_key(replay, &base);
        }
        let result = enqueue_chunks(ctx, rx, &base, reread, self.in_place(file)).await;
        let _ = reader.join();
        let done = result?;
        if let Some(e) = done.failed {
            tracing::warn!(source = %ctx.name, file = %file.path.display(), error = %e.message, "unreadable file");
            let detail = format!(
                "{}: {} (after {} batches)",
                file.path.display(),
                e.message,
                done.batches
            );
            dead_letter_unreadable(ctx, &base, detail).await?;
        }
        Ok(())
    }
}
