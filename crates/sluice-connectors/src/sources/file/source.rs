//! Reading files into queue batches.
//!
//! Each file is cut into batches of whole lines (`max_batch_bytes`), keyed
//! `file:<path>@<size>:<mtime>#<chunk>`, so reading the same file again gives
//! the same keys. A reader thread does the blocking I/O and decompression;
//! the async side enqueues and waits while the queue is full.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use bytes::Bytes;
use sluice_core::{DeadLetter, NewBatch, now_ms, reason, split_lines};
use tokio::sync::mpsc;

use super::{FileCheckpoints, FileSourceConfig, FileState};
use crate::sources::{Source, SourceContext, SourceError, count_received};

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

enum Chunk {
    Lines(Bytes),
    Failed(String),
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
                if state == FileState::Done {
                    continue;
                }
                checkpoints
                    .mark(&shown, file.size, file.mtime_ns, FileState::Reading)
                    .map_err(SourceError::State)?;
                match self.read_file(&ctx, &file, state == FileState::Reading).await {
                    Ok(()) => checkpoints
                        .mark(&shown, file.size, file.mtime_ns, FileState::Done)
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

pub(super) fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64)
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
                    mtime_ns: mtime_ns(&meta),
                    path,
                })
            })
            .collect();
        found.sort_by(|a, b| a.path.cmp(&b.path));
        found
    }

    async fn read_file(&self, ctx: &SourceContext, file: &Candidate, reread: bool) -> Result<(), SourceError> {
        let (tx, mut rx) = mpsc::channel::<Chunk>(2);
        let path = file.path.clone();
        let max = self.config.max_batch_bytes;
        let reader = std::thread::spawn(move || read_chunks(&path, max, &tx));
        let base = format!("file:{}@{}:{}", file.path.display(), file.size, file.mtime_ns);
        let mut chunk_no = 0u64;
        let mut result = Ok(());
        while let Some(chunk) = rx.recv().await {
            match chunk {
                Chunk::Lines(payload) => {
                    let events = split_lines(&payload).count() as u64;
                    let bytes = payload.len() as u64;
                    let batch = NewBatch {
                        key: format!("{base}#{chunk_no}"),
                        source: ctx.name.clone(),
                        payload,
                        maybe_committed: reread,
                    };
                    if let Err(e) = ctx.enqueue_waiting(batch).await {
                        result = Err(e);
                        break;
                    }
                    count_received(&ctx.name, events, bytes);
                    chunk_no += 1;
                }
                Chunk::Failed(message) => {
                    tracing::warn!(source = %ctx.name, file = %file.path.display(), error = %message, "unreadable file");
                    let letter = DeadLetter {
                        batch_key: format!("{base}#error"),
                        line: 0,
                        source: ctx.name.clone(),
                        component: ctx.name.clone(),
                        reason: reason::UNREADABLE_INPUT.into(),
                        detail: format!("{}: {message} (after {chunk_no} batches)", file.path.display()),
                        bytes: Bytes::new(),
                        at_ms: now_ms(),
                    };
                    if let Err(e) = ctx.dead_letters.put(vec![letter]).await {
                        result = Err(SourceError::State(format!("storing dead letter: {e}")));
                    }
                }
            }
        }
        drop(rx);
        let _ = reader.join();
        result
    }
}

/// Reads whole lines into chunks of about `max` bytes; runs on its own thread.
fn read_chunks(path: &Path, max: usize, tx: &mpsc::Sender<Chunk>) {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.blocking_send(Chunk::Failed(e.to_string()));
            return;
        }
    };
    let gz = path.extension().is_some_and(|e| e == "gz");
    let inner: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut reader = BufReader::with_capacity(256 * 1024, inner);
    let mut chunk = Vec::with_capacity(max + 4096);
    loop {
        match reader.read_until(b'\n', &mut chunk) {
            Ok(0) => break,
            Ok(_) => {
                if chunk.len() >= max {
                    if tx
                        .blocking_send(Chunk::Lines(Bytes::from(std::mem::take(&mut chunk))))
                        .is_err()
                    {
                        return;
                    }
                    chunk.reserve(max + 4096);
                }
            }
            Err(e) => {
                // Keep whole lines read so far; the partial last line is lost with the error.
                if let Some(end) = chunk.iter().rposition(|&b| b == b'\n') {
                    chunk.truncate(end + 1);
                } else {
                    chunk.clear();
                }
                if !chunk.is_empty() {
                    let _ = tx.blocking_send(Chunk::Lines(Bytes::from(std::mem::take(&mut chunk))));
                }
                let _ = tx.blocking_send(Chunk::Failed(e.to_string()));
                return;
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.blocking_send(Chunk::Lines(Bytes::from(chunk)));
    }
}
