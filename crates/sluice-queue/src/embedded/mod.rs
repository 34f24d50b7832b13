//! Embedded queue and dead-letter store: one SQLite database in the data
//! directory (`queue.sqlite3`), in WAL mode with `synchronous=FULL` and, when
//! created here, 64 KiB pages (a 4 MiB batch is 64 overflow pages to write,
//! checkpoint and read back, not 1 024).
//!
//! Invariants:
//! * One actor thread owns the connection of a process. It takes every
//!   command waiting, applies them in one transaction and replies only after
//!   that transaction committed: an `enqueue` answered `Ok` is on disk, and
//!   many concurrent enqueues share one fsync (group commit).
//! * Other processes (`sluice dlq ...`) open the same file; SQLite's locking
//!   and `busy_timeout` serialise them.
//! * `batches.visible_at` hides delivered batches until it passes;
//!   `attempts` counts deliveries. A batch is deleted only by `ack`, by
//!   becoming dead letters, never otherwise.
//! * A crash is not the batch's fault ([`delivery`]).
//! * `dead_letters` is unique on `(batch_key, line)`, so a redelivered batch
//!   cannot dead-letter the same line twice.
//! * A batch's payload is a row of its own (`batch_payloads`, same id),
//!   written and deleted in the same transaction as its `batches` row: the
//!   updates of delivery state (`attempts`, `visible_at`, `last_error`)
//!   then rewrite a row of a few bytes, where SQLite would otherwise read,
//!   rebuild and compare the whole payload for each. A file made before
//!   that split is migrated when it is opened ([`migrate_payloads`]).
//! * A batch enqueued with [`NewBatch::in_file`] has a `batch_file_ranges`
//!   row instead of a payload row: where its bytes lie in a local file.
//!   Delivering it reads them back; a file changed or gone by then makes
//!   the batch one `unreadable_input` dead letter naming it. Every byte of
//!   such a batch is then written to disk once (the file), not twice more
//!   (the WAL, then the checkpoint).
//!
//! Tables:
//! ```text
//! batches(id, key, source, bytes, maybe_committed, attempts, visible_at, enqueued_at, last_error,
//!         in_flight, suspect, isolated, crashes)
//! batch_payloads(id, payload)
//! batch_file_ranges(id, path, size, mtime_ns, offset)
//! dead_letters(id, batch_key, line, source, component, reason, detail, bytes, at)
//! ```

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, Transaction, params};
use sluice_core::{DeadLetter, Delivery, DeliveryId, FileRange, NewBatch, now_ms};
use tokio::sync::{Notify, oneshot};

use crate::{DeadLetterCounts, DeadLetterFilter, DeadLetterStore, Queue, QueueError, QueueSettings, QueueStats};

mod delivery;

use delivery::{ack, extend, migrate_crash_columns, nack, receive, recover_after_crash, release};

/// Largest payload of one batch built by `redrive`.
const REDRIVE_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Most commands applied in one transaction.
const MAX_COMMANDS_PER_COMMIT: usize = 4096;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    source TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    maybe_committed INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    visible_at INTEGER NOT NULL,
    enqueued_at INTEGER NOT NULL,
    last_error TEXT,
    in_flight INTEGER NOT NULL DEFAULT 0,
    suspect INTEGER NOT NULL DEFAULT 0,
    isolated INTEGER NOT NULL DEFAULT 0,
    crashes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS batch_payloads (
    id INTEGER PRIMARY KEY,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_file_ranges (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    offset INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_visible ON batches(visible_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_key TEXT NOT NULL,
    line INTEGER NOT NULL,
    source TEXT NOT NULL,
    component TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    bytes BLOB NOT NULL,
    at INTEGER NOT NULL,
    UNIQUE(batch_key, line)
);
CREATE INDEX IF NOT EXISTS dead_letters_reason ON dead_letters(reason);
";

type Reply<T> = oneshot::Sender<Result<T, QueueError>>;

enum Command {
    Enqueue(NewBatch, Reply<()>),
    Receive(usize, Reply<Vec<Delivery>>),
    Ack(Vec<DeliveryId>, Reply<()>),
    Nack(DeliveryId, String, Duration, Reply<()>),
    Release(DeliveryId, Duration, Reply<()>),
    Extend(Vec<DeliveryId>, Reply<()>),
    Stats(Reply<QueueStats>),
    PutDead(Vec<DeadLetter>, Reply<()>),
    Counts(Reply<DeadLetterCounts>),
    List(DeadLetterFilter, usize, Reply<Vec<DeadLetter>>),
    Redrive(DeadLetterFilter, Reply<u64>),
}

/// Handle to the embedded queue; cheap to clone, shared by all components.
#[derive(Clone)]
pub struct EmbeddedQueue {
    commands: mpsc::Sender<Command>,
    path: PathBuf,
    /// Signalled when a batch becomes visible in this process (enqueued,
    /// returned without delay, redriven); `wait_for_batches` awaits it.
    arrived: Arc<Notify>,
    /// Up while suspects (batches a dead consumer left in flight) remain:
    /// `receive` runs them alone before anything else.
    isolating: Arc<AtomicBool>,
}

impl EmbeddedQueue {
    /// Opens (creating if needed) `queue.sqlite3` in `data_dir`, for tools
    /// that inspect or redrive beside a running pipeline.
    pub fn open(data_dir: &Path, settings: QueueSettings) -> Result<Self, QueueError> {
        Self::start(data_dir, settings, None)
    }

    /// Opens the queue as its one consumer: takes an exclusive lock on
    /// `data_dir/lock` (held while the queue is open) and makes batches a
    /// previous, killed consumer had in flight visible again at once, as
    /// suspects ([`recover_after_crash`]).
    pub fn open_consumer(data_dir: &Path, settings: QueueSettings) -> Result<Self, QueueError> {
        create_dir(data_dir)?;
        let lock_path = data_dir.join("lock");
        let lock = std::fs::File::create(&lock_path)
            .map_err(|e| QueueError::Storage(format!("creating {}: {e}", lock_path.display())))?;
        lock.try_lock().map_err(|_| {
            QueueError::Storage(format!(
                "{} is locked: another sluice process is running this pipeline",
                data_dir.display()
            ))
        })?;
        Self::start(data_dir, settings, Some(lock))
    }

    fn start(data_dir: &Path, settings: QueueSettings, lock: Option<std::fs::File>) -> Result<Self, QueueError> {
        create_dir(data_dir)?;
        let path = data_dir.join("queue.sqlite3");
        let conn = open_connection(&path)?;
        let suspects = lock.is_some() && recover_after_crash(&conn)?;
        let held_bytes = held_bytes(&conn)?;
        let (commands, rx) = mpsc::channel();
        let isolating = Arc::new(AtomicBool::new(suspects));
        let mut actor = Actor {
            conn,
            settings,
            held_bytes,
            isolating: isolating.clone(),
            _lock: lock,
        };
        thread::Builder::new()
            .name("sluice-queue".into())
            .spawn(move || actor.run(rx))
            .map_err(|e| QueueError::Storage(format!("starting queue thread: {e}")))?;
        Ok(EmbeddedQueue {
            commands,
            path,
            arrived: Arc::new(Notify::new()),
            isolating,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, QueueError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).map_err(|_| QueueError::Closed)?;
        rx.await.map_err(|_| QueueError::Closed)?
    }
}

fn create_dir(dir: &Path) -> Result<(), QueueError> {
    std::fs::create_dir_all(dir).map_err(|e| QueueError::Storage(format!("creating {}: {e}", dir.display())))
}

fn storage(e: rusqlite::Error) -> QueueError {
    QueueError::Storage(e.to_string())
}

fn open_connection(path: &Path) -> Result<Connection, QueueError> {
    let mut conn =
        Connection::open(path).map_err(|e| QueueError::Storage(format!("opening {}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(storage)?;
    conn.pragma_update(None, "page_size", 65536).map_err(storage)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(storage)?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(storage)?;
    // One transaction: each statement committed alone would write the
    // schema's 64 KiB first page to the WAL again (a fresh file then
    // needed about 1 MiB before its first batch).
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(storage)?;
    tx.execute_batch(SCHEMA).map_err(storage)?;
    tx.commit().map_err(storage)?;
    migrate_payloads(&mut conn)?;
    migrate_crash_columns(&mut conn)?;
    Ok(conn)
}

/// Moves the payloads of a file made before `batch_payloads` existed (a
/// `payload` column in `batches`) into their own rows, in one transaction;
/// a file already migrated (or new) is left as it is. Processes opening the
/// file at once are serialised by the immediate transaction, and the second
/// finds nothing to do.
fn migrate_payloads(conn: &mut Connection) -> Result<(), QueueError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(storage)?;
    let old_layout: bool = tx
        .query_row(
            "SELECT count(*) > 0 FROM pragma_table_info('batches') WHERE name = 'payload'",
            [],
            |r| r.get(0),
        )
        .map_err(storage)?;
    if old_layout {
        tx.execute_batch(
            "INSERT INTO batch_payloads (id, payload) SELECT id, payload FROM batches;
             ALTER TABLE batches ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
             UPDATE batches SET bytes = length(payload);
             ALTER TABLE batches DROP COLUMN payload;",
        )
        .map_err(storage)?;
    }
    tx.commit().map_err(storage)
}

fn held_bytes(conn: &Connection) -> Result<u64, QueueError> {
    conn.query_row("SELECT coalesce(sum(bytes), 0) FROM batches", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|b| b as u64)
    .map_err(storage)
}

struct Actor {
    conn: Connection,
    settings: QueueSettings,
    /// Payload bytes held; refreshed from the table by `stats`, since other
    /// processes (`sluice dlq redrive`) may add batches.
    held_bytes: u64,
    isolating: Arc<AtomicBool>,
    /// The consumer's lock on the data directory, released when the actor ends.
    _lock: Option<std::fs::File>,
}

/// A reply to send once the transaction that produced it has committed.
type Pending = Box<dyn FnOnce(Option<&QueueError>) + Send>;

fn pending<T: Send + 'static>(reply: Reply<T>, result: Result<T, QueueError>) -> Pending {
    Box::new(move |commit_error| {
        let result = match commit_error {
            Some(e) => Err(QueueError::Storage(format!("commit failed: {e}"))),
            None => result,
        };
        let _ = reply.send(result);
    })
}

impl Actor {
    fn run(&mut self, rx: mpsc::Receiver<Command>) {
        while let Ok(first) = rx.recv() {
            let mut commands = vec![first];
            while commands.len() < MAX_COMMANDS_PER_COMMIT {
                match rx.try_recv() {
                    Ok(c) => commands.push(c),
                    Err(_) => break,
                }
            }
            self.apply(commands);
        }
    }

    fn apply(&mut self, commands: Vec<Command>) {
        let held_before = self.held_bytes;
        let tx = match self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(e) => {
                let err = QueueError::Storage(format!("begin: {e}"));
                for c in commands {
                    fail(c, &err);
                }
                return;
            }
        };
        let mut replies: Vec<Pending> = Vec::with_capacity(commands.len());
        for command in commands {
            replies.push(execute(
                &tx,
                &self.settings,
                &mut self.held_bytes,
                &self.isolating,
                command,
            ));
        }
        let commit = tx.commit().map_err(|e| QueueError::Storage(e.to_string())).err();
        if commit.is_some() {
            self.held_bytes = held_before;
        }
        for reply in replies {
            reply(commit.as_ref());
        }
    }
}

fn fail(command: Command, err: &QueueError) {
    let e = || QueueError::Storage(err.to_string());
    match command {
        Command::Enqueue(_, r)
        | Command::Ack(_, r)
        | Command::Nack(_, _, _, r)
        | Command::Release(_, _, r)
        | Command::Extend(_, r) => {
            let _ = r.send(Err(e()));
        }
        Command::PutDead(_, r) => {
            let _ = r.send(Err(e()));
        }
        Command::Receive(_, r) => {
            let _ = r.send(Err(e()));
        }
        Command::Stats(r) => {
            let _ = r.send(Err(e()));
        }
        Command::Counts(r) => {
            let _ = r.send(Err(e()));
        }
        Command::List(_, _, r) => {
            let _ = r.send(Err(e()));
        }
        Command::Redrive(_, r) => {
            let _ = r.send(Err(e()));
        }
    }
}

fn execute(
    tx: &Transaction,
    settings: &QueueSettings,
    held: &mut u64,
    isolating: &AtomicBool,
    command: Command,
) -> Pending {
    match command {
        Command::Enqueue(batch, r) => pending(r, enqueue(tx, settings, held, batch)),
        Command::Receive(max, r) => pending(r, receive(tx, settings, held, isolating, max)),
        Command::Ack(ids, r) => pending(r, ack(tx, held, &ids)),
        Command::Nack(id, error, delay, r) => pending(r, nack(tx, id, &error, delay)),
        Command::Release(id, delay, r) => pending(r, release(tx, id, delay)),
        Command::Extend(ids, r) => pending(r, extend(tx, settings, &ids)),
        Command::Stats(r) => pending(r, stats(tx, held)),
        Command::PutDead(letters, r) => pending(r, put_dead(tx, &letters)),
        Command::Counts(r) => pending(r, counts(tx)),
        Command::List(filter, limit, r) => pending(r, list(tx, &filter, limit)),
        Command::Redrive(filter, r) => pending(r, redrive(tx, held, &filter)),
    }
}

fn enqueue(tx: &Transaction, settings: &QueueSettings, held: &mut u64, batch: NewBatch) -> Result<(), QueueError> {
    let size = batch.payload.len() as u64;
    if *held > 0 && *held + size > settings.max_bytes {
        return Err(QueueError::Full {
            held_bytes: *held,
            max_bytes: settings.max_bytes,
        });
    }
    insert_batch(
        tx,
        &batch.key,
        &batch.source,
        &batch.payload,
        batch.in_file.as_ref(),
        batch.maybe_committed,
        now_ms(),
    )?;
    *held += size;
    Ok(())
}

/// Adds a visible batch: its `batches` row and its payload's row, or where
/// the payload lies when `in_file` says.
fn insert_batch(
    tx: &Transaction,
    key: &str,
    source: &str,
    payload: &[u8],
    in_file: Option<&FileRange>,
    maybe_committed: bool,
    now: i64,
) -> Result<(), QueueError> {
    tx.prepare_cached(
        "INSERT INTO batches (key, source, bytes, maybe_committed, visible_at, enqueued_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )
    .and_then(|mut s| s.execute(params![key, source, payload.len() as i64, maybe_committed, now]))
    .map_err(storage)?;
    let id = tx.last_insert_rowid();
    match in_file {
        Some(at) => tx
            .prepare_cached(
                "INSERT INTO batch_file_ranges (id, path, size, mtime_ns, offset) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| s.execute(params![id, at.path, at.size as i64, at.mtime_ns, at.offset as i64])),
        None => tx
            .prepare_cached("INSERT INTO batch_payloads (id, payload) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![id, payload])),
    }
    .map_err(storage)?;
    Ok(())
}

fn stats(tx: &Transaction, held: &mut u64) -> Result<QueueStats, QueueError> {
    let now = now_ms();
    let (batches, bytes, in_flight, oldest): (i64, i64, i64, Option<i64>) = tx
        .query_row(
            "SELECT count(*), coalesce(sum(bytes), 0),
                    coalesce(sum(attempts > 0 AND visible_at > ?1), 0), min(enqueued_at)
             FROM batches",
            params![now],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .map_err(storage)?;
    *held = bytes as u64;
    Ok(QueueStats {
        batches: batches as u64,
        bytes: bytes as u64,
        in_flight: in_flight as u64,
        oldest_age_ms: oldest.map_or(0, |t| (now - t).max(0)),
    })
}

fn put_dead(tx: &Transaction, letters: &[DeadLetter]) -> Result<(), QueueError> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO dead_letters (batch_key, line, source, component, reason, detail, bytes, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(storage)?;
    for l in letters {
        stmt.execute(params![
            l.batch_key,
            l.line,
            l.source,
            l.component,
            l.reason,
            l.detail,
            &l.bytes[..],
            l.at_ms
        ])
        .map_err(storage)?;
    }
    Ok(())
}

fn counts(tx: &Transaction) -> Result<DeadLetterCounts, QueueError> {
    let mut stmt = tx
        .prepare_cached("SELECT reason, count(*), max(at) FROM dead_letters GROUP BY reason")
        .map_err(storage)?;
    let rows: Vec<(String, u64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?)))
        .and_then(|rows| rows.collect::<Result<_, _>>())
        .map_err(storage)?;
    let by_reason: std::collections::BTreeMap<String, u64> = rows.iter().map(|(r, n, _)| (r.clone(), *n)).collect();
    Ok(DeadLetterCounts {
        total: by_reason.values().sum(),
        newest_ms: rows.into_iter().map(|(r, _, at)| (r, at)).collect(),
        by_reason,
    })
}

fn select_dead(
    tx: &Transaction,
    filter: &DeadLetterFilter,
    limit: usize,
) -> Result<Vec<(i64, DeadLetter)>, QueueError> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT id, batch_key, line, source, component, reason, detail, bytes, at FROM dead_letters
             WHERE ?1 IS NULL OR reason = ?1 ORDER BY id LIMIT ?2",
        )
        .map_err(storage)?;
    stmt.query_map(params![filter.reason, limit.min(i64::MAX as usize) as i64], |r| {
        Ok((
            r.get(0)?,
            DeadLetter {
                batch_key: r.get(1)?,
                line: r.get(2)?,
                source: r.get(3)?,
                component: r.get(4)?,
                reason: r.get(5)?,
                detail: r.get(6)?,
                bytes: Bytes::from(r.get::<_, Vec<u8>>(7)?),
                at_ms: r.get(8)?,
            },
        ))
    })
    .and_then(|rows| rows.collect::<Result<_, _>>())
    .map_err(storage)
}

fn list(tx: &Transaction, filter: &DeadLetterFilter, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
    Ok(select_dead(tx, filter, limit)?.into_iter().map(|(_, l)| l).collect())
}

fn redrive(tx: &Transaction, held: &mut u64, filter: &DeadLetterFilter) -> Result<u64, QueueError> {
    let mut letters = select_dead(tx, filter, usize::MAX)?;
    letters.sort_by(|a, b| a.1.source.cmp(&b.1.source).then(a.0.cmp(&b.0)));
    let now = now_ms();
    let mut moved = 0u64;
    let mut chunk: Vec<(i64, DeadLetter)> = Vec::new();
    let mut chunk_bytes = 0usize;
    let flush = |chunk: &mut Vec<(i64, DeadLetter)>, held: &mut u64| -> Result<(), QueueError> {
        let Some(first) = chunk.first() else { return Ok(()) };
        let mut payload = Vec::new();
        for (_, l) in chunk.iter() {
            payload.extend_from_slice(&l.bytes);
            payload.push(b'\n');
        }
        let key = format!("redrive/{}-{}", first.0, chunk.last().map_or(first.0, |l| l.0));
        insert_batch(tx, &key, &first.1.source, &payload, None, false, now)?;
        *held += payload.len() as u64;
        let mut delete = tx
            .prepare_cached("DELETE FROM dead_letters WHERE id = ?1")
            .map_err(storage)?;
        for (id, _) in chunk.iter() {
            delete.execute(params![id]).map_err(storage)?;
        }
        chunk.clear();
        Ok(())
    };
    for (id, letter) in letters {
        let new_source = chunk.first().is_some_and(|c| c.1.source != letter.source);
        if new_source || chunk_bytes + letter.bytes.len() > REDRIVE_BATCH_BYTES {
            flush(&mut chunk, held)?;
            chunk_bytes = 0;
        }
        chunk_bytes += letter.bytes.len() + 1;
        moved += 1;
        chunk.push((id, letter));
    }
    flush(&mut chunk, held)?;
    Ok(moved)
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn enqueue(&self, batch: NewBatch) -> Result<(), QueueError> {
        self.call(|r| Command::Enqueue(batch, r)).await?;
        self.arrived.notify_one();
        Ok(())
    }
    async fn receive(&self, max: usize) -> Result<Vec<Delivery>, QueueError> {
        self.call(|r| Command::Receive(max, r)).await
    }
    async fn ack(&self, ids: Vec<DeliveryId>) -> Result<(), QueueError> {
        self.call(|r| Command::Ack(ids, r)).await
    }
    async fn nack(&self, id: DeliveryId, error: String, delay: Duration) -> Result<(), QueueError> {
        self.call(|r| Command::Nack(id, error, delay, r)).await?;
        if delay.is_zero() {
            self.arrived.notify_one();
        }
        Ok(())
    }
    async fn release(&self, id: DeliveryId, delay: Duration) -> Result<(), QueueError> {
        self.call(|r| Command::Release(id, delay, r)).await?;
        if delay.is_zero() {
            self.arrived.notify_one();
        }
        Ok(())
    }
    async fn extend(&self, ids: Vec<DeliveryId>) -> Result<(), QueueError> {
        self.call(|r| Command::Extend(ids, r)).await
    }
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.call(Command::Stats).await
    }
    /// A batch enqueued or returned by this process wakes the wait; ones
    /// whose delay or visibility timeout runs out, or that another process
    /// redrove, are found when `timeout` passes.
    async fn wait_for_batches(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.arrived.notified()).await;
    }
    fn isolating(&self) -> bool {
        self.isolating.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl DeadLetterStore for EmbeddedQueue {
    async fn put(&self, letters: Vec<DeadLetter>) -> Result<(), QueueError> {
        self.call(|r| Command::PutDead(letters, r)).await
    }
    async fn counts(&self) -> Result<DeadLetterCounts, QueueError> {
        self.call(Command::Counts).await
    }
    async fn list(&self, filter: DeadLetterFilter, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        self.call(|r| Command::List(filter, limit, r)).await
    }
    async fn redrive(&self, filter: DeadLetterFilter) -> Result<u64, QueueError> {
        let moved = self.call(|r| Command::Redrive(filter, r)).await?;
        if moved > 0 {
            self.arrived.notify_one();
        }
        Ok(moved)
    }
}

#[cfg(test)]
mod tests;
