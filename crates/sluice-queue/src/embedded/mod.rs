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
//! * A crash is not the batch's fault. `in_flight` marks batches delivered
//!   and neither acked nor nacked. When a consumer opens the queue, those
//!   the dead one left in flight become suspects with that delivery's
//!   attempt given back, and `receive` hands suspects out one at a time,
//!   each alone in flight (`isolated`), before anything else, the one with
//!   the most crashes first. A suspect that was alone in flight when the
//!   engine died gets a `crashes` count; at `max_crashes` it becomes dead
//!   letters (`crashed_engine`). An ack or a nack (a reported error,
//!   counted as an attempt) ends suspicion.
//! * `dead_letters` is unique on `(batch_key, line)`, so a redelivered batch
//!   cannot dead-letter the same line twice.
//! * A batch's payload is a row of its own (`batch_payloads`, same id),
//!   written and deleted in the same transaction as its `batches` row: the
//!   updates of delivery state (`attempts`, `visible_at`, `last_error`)
//!   then rewrite a row of a few bytes, where SQLite would otherwise read,
//!   rebuild and compare the whole payload for each. A file made before
//!   that split is migrated when it is opened ([`migrate_payloads`]).
//!
//! Tables:
//! ```text
//! batches(id, key, source, bytes, maybe_committed, attempts, visible_at, enqueued_at, last_error,
//!         in_flight, suspect, isolated, crashes)
//! batch_payloads(id, payload)
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
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use sluice_core::{DeadLetter, Delivery, DeliveryId, NewBatch, now_ms};
use tokio::sync::{Notify, oneshot};

use crate::{DeadLetterCounts, DeadLetterFilter, DeadLetterStore, Queue, QueueError, QueueSettings, QueueStats};

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
    /// Set by the last `receive` that held batches back to run a suspect alone.
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
        if lock.is_some() {
            recover_after_crash(&conn)?;
        }
        let held_bytes = held_bytes(&conn)?;
        let (commands, rx) = mpsc::channel();
        let isolating = Arc::new(AtomicBool::new(false));
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
    conn.execute_batch(SCHEMA).map_err(storage)?;
    migrate_payloads(&mut conn)?;
    migrate_crash_columns(&mut conn)?;
    Ok(conn)
}

/// Adds the crash-tracking columns to a file made before they existed.
fn migrate_crash_columns(conn: &mut Connection) -> Result<(), QueueError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(storage)?;
    for column in ["in_flight", "suspect", "isolated", "crashes"] {
        let present: bool = tx
            .query_row(
                "SELECT count(*) > 0 FROM pragma_table_info('batches') WHERE name = ?1",
                params![column],
                |r| r.get(0),
            )
            .map_err(storage)?;
        if !present {
            tx.execute_batch(&format!(
                "ALTER TABLE batches ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0"
            ))
            .map_err(storage)?;
        }
    }
    tx.commit().map_err(storage)
}

/// What a new consumer does with the batches the previous one left: those
/// in flight become suspects (maybe committed) and get back the attempt the
/// crash took (one alone in flight also counts a crash); every delivered
/// batch is visible again at once.
fn recover_after_crash(conn: &Connection) -> Result<(), QueueError> {
    let left: i64 = conn
        .query_row("SELECT count(*) FROM batches WHERE in_flight = 1", [], |r| r.get(0))
        .map_err(storage)?;
    if left > 0 {
        tracing::warn!(
            batches = left,
            "the last engine stopped with batches in flight; they run again one at a time, without spending an attempt"
        );
    }
    // A source may have enqueued the same input twice (re-read after the
    // crash): its copies share the key, and the suspicion and the count.
    conn.execute_batch(
        "UPDATE batches SET crashes = crashes + 1
             WHERE key IN (SELECT key FROM batches WHERE in_flight = 1 AND isolated = 1);
         UPDATE batches SET suspect = 1, maybe_committed = 1, attempts = max(attempts - 1, 0),
                 in_flight = 0, isolated = 0
             WHERE in_flight = 1;
         UPDATE batches SET suspect = 1 WHERE key IN (SELECT key FROM batches WHERE suspect = 1);
         UPDATE batches SET visible_at = 0 WHERE attempts > 0 OR suspect = 1;",
    )
    .map_err(storage)
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
        Command::Enqueue(_, r) | Command::Ack(_, r) | Command::Nack(_, _, _, r) | Command::Extend(_, r) => {
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
        batch.maybe_committed,
        now_ms(),
    )?;
    *held += size;
    Ok(())
}

/// Adds a visible batch: its `batches` row and its payload's row.
fn insert_batch(
    tx: &Transaction,
    key: &str,
    source: &str,
    payload: &[u8],
    maybe_committed: bool,
    now: i64,
) -> Result<(), QueueError> {
    tx.prepare_cached(
        "INSERT INTO batches (key, source, bytes, maybe_committed, visible_at, enqueued_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )
    .and_then(|mut s| s.execute(params![key, source, payload.len() as i64, maybe_committed, now]))
    .map_err(storage)?;
    tx.prepare_cached("INSERT INTO batch_payloads (id, payload) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![tx.last_insert_rowid(), payload]))
        .map_err(storage)?;
    Ok(())
}

/// A `batches` row as `receive` reads it: id, key, source, payload,
/// maybe_committed, attempts, enqueued_at, last_error, crashes.
type BatchRow = (i64, String, String, Vec<u8>, bool, u32, i64, Option<String>, u32);

fn receive(
    tx: &Transaction,
    settings: &QueueSettings,
    held: &mut u64,
    isolating: &AtomicBool,
    max: usize,
) -> Result<Vec<Delivery>, QueueError> {
    let now = now_ms();
    let suspects = |tx: &Transaction| -> Result<bool, QueueError> {
        tx.query_row("SELECT EXISTS (SELECT 1 FROM batches WHERE suspect = 1)", [], |r| {
            r.get(0)
        })
        .map_err(storage)
    };
    if suspects(tx)? {
        let alone = receive_suspect(tx, settings, held, now)?;
        // Empty with suspects left: held back until the one in flight ends.
        if !alone.is_empty() || suspects(tx)? {
            isolating.store(true, Ordering::Relaxed);
            return Ok(alone);
        }
    }
    isolating.store(false, Ordering::Relaxed);
    // The ids first, from the `visible_at` index alone: ordering whole rows
    // would copy every visible batch's row into SQLite's sorter on each
    // call, however few are taken.
    let ids: Vec<i64> = tx
        .prepare_cached("SELECT id FROM batches INDEXED BY batches_visible WHERE visible_at <= ?1 ORDER BY id LIMIT ?2")
        .and_then(|mut stmt| {
            stmt.query_map(params![now, max as i64], |r| r.get(0))?
                .collect::<Result<_, _>>()
        })
        .map_err(storage)?;
    let mut deliveries = Vec::with_capacity(ids.len());
    for id in ids {
        let row = read_row(tx, id)?;
        deliveries.extend(deliver(tx, settings, held, row, now, false)?);
    }
    Ok(deliveries)
}

/// A suspect alone: nothing while anything is in flight, then the suspect
/// with the most crashes (the oldest first), after dead-lettering those
/// that reached `max_crashes`. A batch that was alone when the engine died
/// is tried again first: a poison pill is confirmed in consecutive
/// restarts, and an innocent one (killed from outside) is done with as soon
/// as the next process runs it.
fn receive_suspect(
    tx: &Transaction,
    settings: &QueueSettings,
    held: &mut u64,
    now: i64,
) -> Result<Vec<Delivery>, QueueError> {
    let busy: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM batches WHERE in_flight = 1 AND visible_at > ?1)",
            params![now],
            |r| r.get(0),
        )
        .map_err(storage)?;
    if busy {
        return Ok(Vec::new());
    }
    loop {
        let next: Option<i64> = tx
            .query_row(
                "SELECT id FROM batches WHERE suspect = 1 AND visible_at <= ?1 ORDER BY crashes DESC, id LIMIT 1",
                params![now],
                |r| r.get(0),
            )
            .optional()
            .map_err(storage)?;
        let Some(id) = next else {
            return Ok(Vec::new());
        };
        let row = read_row(tx, id)?;
        if let Some(delivery) = deliver(tx, settings, held, row, now, true)? {
            return Ok(vec![delivery]);
        }
    }
}

fn read_row(tx: &Transaction, id: i64) -> Result<BatchRow, QueueError> {
    tx.prepare_cached(
        "SELECT b.id, b.key, b.source, p.payload, b.maybe_committed, b.attempts, b.enqueued_at, b.last_error, b.crashes
         FROM batches b JOIN batch_payloads p ON p.id = b.id WHERE b.id = ?1",
    )
    .and_then(|mut stmt| {
        stmt.query_row(params![id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
            ))
        })
    })
    .map_err(storage)
}

/// Hands `row` out (in flight, one attempt more), or turns it into dead
/// letters when its attempts are spent or it crashed the engine too often
/// (this copy, or another with its key that was set aside before).
fn deliver(
    tx: &Transaction,
    settings: &QueueSettings,
    held: &mut u64,
    row: BatchRow,
    now: i64,
    isolated: bool,
) -> Result<Option<Delivery>, QueueError> {
    let (id, key, source, payload, maybe_committed, attempts, enqueued_at, last_error, crashes) = row;
    let payload = Bytes::from(payload);
    let set_aside_before: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM dead_letters WHERE batch_key = ?1 AND reason = ?2)")
        .and_then(|mut s| s.query_row(params![key, sluice_core::reason::CRASHED_ENGINE], |r| r.get(0)))
        .map_err(storage)?;
    if crashes >= settings.max_crashes || set_aside_before {
        let letters = crate::crashed_batch_letters(&key, &source, &payload, crashes.max(settings.max_crashes));
        put_dead(tx, &letters)?;
        delete_batch(tx, held, id)?;
        return Ok(None);
    }
    if attempts >= settings.max_attempts {
        let letters = crate::exhausted_batch_letters(&key, &source, &payload, attempts, last_error.as_deref());
        put_dead(tx, &letters)?;
        delete_batch(tx, held, id)?;
        return Ok(None);
    }
    let visible_at = now + settings.visibility_timeout.as_millis() as i64;
    tx.prepare_cached(
        "UPDATE batches SET attempts = attempts + 1, visible_at = ?2, in_flight = 1, isolated = ?3 WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![id, visible_at, isolated]))
    .map_err(storage)?;
    Ok(Some(Delivery {
        id: DeliveryId(id as u64),
        key,
        source,
        payload,
        attempts: attempts + 1,
        maybe_committed: maybe_committed || attempts > 0,
        enqueued_at_ms: enqueued_at,
    }))
}

fn delete_batch(tx: &Transaction, held: &mut u64, id: i64) -> Result<(), QueueError> {
    let size: Option<i64> = tx
        .prepare_cached("DELETE FROM batches WHERE id = ?1 RETURNING bytes")
        .and_then(|mut s| s.query_row(params![id], |r| r.get(0)).optional())
        .map_err(storage)?;
    tx.prepare_cached("DELETE FROM batch_payloads WHERE id = ?1")
        .and_then(|mut s| s.execute(params![id]))
        .map_err(storage)?;
    *held = held.saturating_sub(size.unwrap_or(0) as u64);
    Ok(())
}

fn ack(tx: &Transaction, held: &mut u64, ids: &[DeliveryId]) -> Result<(), QueueError> {
    for id in ids {
        delete_batch(tx, held, id.0 as i64)?;
    }
    Ok(())
}

fn nack(tx: &Transaction, id: DeliveryId, error: &str, delay: Duration) -> Result<(), QueueError> {
    let visible_at = now_ms() + delay.as_millis() as i64;
    tx.prepare_cached(
        "UPDATE batches SET visible_at = ?2, last_error = ?3, in_flight = 0, suspect = 0, isolated = 0 WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![id.0 as i64, visible_at, error]))
    .map_err(storage)?;
    Ok(())
}

fn extend(tx: &Transaction, settings: &QueueSettings, ids: &[DeliveryId]) -> Result<(), QueueError> {
    let visible_at = now_ms() + settings.visibility_timeout.as_millis() as i64;
    let mut stmt = tx
        .prepare_cached("UPDATE batches SET visible_at = ?2 WHERE id = ?1")
        .map_err(storage)?;
    for id in ids {
        stmt.execute(params![id.0 as i64, visible_at]).map_err(storage)?;
    }
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
        .prepare_cached("SELECT reason, count(*) FROM dead_letters GROUP BY reason")
        .map_err(storage)?;
    let by_reason: std::collections::BTreeMap<String, u64> = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
        .and_then(|rows| rows.collect::<Result<_, _>>())
        .map_err(storage)?;
    Ok(DeadLetterCounts {
        total: by_reason.values().sum(),
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
        insert_batch(tx, &key, &first.1.source, &payload, false, now)?;
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
