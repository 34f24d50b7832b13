//! Handing batches out and taking them back: `receive`, `ack`, `nack`,
//! `extend`, and what a new consumer does with the batches a dead one left.
//!
//! A crash is not the batch's fault. `in_flight` marks batches delivered
//! and neither acked nor nacked. When a consumer opens the queue, those the
//! dead one left in flight become suspects with that delivery's attempt
//! given back, and `receive` hands suspects out one at a time, each alone
//! in flight (`isolated`), before anything else, the one with the most
//! crashes first. A suspect that was alone in flight when the engine died
//! gets a `crashes` count; at `max_crashes` it becomes dead letters
//! (`crashed_engine`). Copies with one key share suspicion and count. An
//! ack or a nack (a reported error, counted as an attempt) ends suspicion.

use std::{
    io::{Read, Seek, SeekFrom},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use sluice_core::{DeadLetter, Delivery, DeliveryId, FileRange, mtime_ns, now_ms, reason};

use super::{put_dead, storage};
use crate::{QueueError, QueueSettings};

/// Adds the crash-tracking columns to a file made before they existed.
pub(super) fn migrate_crash_columns(conn: &mut Connection) -> Result<(), QueueError> {
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
/// batch is visible again at once. True when there are suspects to run.
pub(super) fn recover_after_crash(conn: &Connection) -> Result<bool, QueueError> {
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
    .map_err(storage)?;
    let suspects: bool = conn
        .query_row("SELECT EXISTS (SELECT 1 FROM batches WHERE suspect = 1)", [], |r| {
            r.get(0)
        })
        .map_err(storage)?;
    Ok(suspects)
}

/// A batch as `receive` reads it.
struct BatchRow {
    id: i64,
    key: String,
    source: String,
    stored: Stored,
    maybe_committed: bool,
    attempts: u32,
    enqueued_at: i64,
    last_error: Option<String>,
    crashes: u32,
}

/// A batch's payload as the queue holds it.
enum Stored {
    Bytes(Vec<u8>),
    /// `len` bytes of a local file, read back at delivery.
    InFile(FileRange, usize),
}

pub(super) fn receive(
    tx: &Transaction,
    settings: &QueueSettings,
    held: &mut u64,
    isolating: &AtomicBool,
    max: usize,
) -> Result<Vec<Delivery>, QueueError> {
    let now = now_ms();
    // Suspects are made only when this process opened the queue, so once
    // none is left the flag stays down and nothing scans for them again.
    if isolating.load(Ordering::Relaxed) {
        let alone = receive_suspect(tx, settings, held, now)?;
        let left: bool = tx
            .query_row("SELECT EXISTS (SELECT 1 FROM batches WHERE suspect = 1)", [], |r| {
                r.get(0)
            })
            .map_err(storage)?;
        // Empty with suspects left: held back until the one in flight ends.
        if !alone.is_empty() || left {
            return Ok(alone);
        }
        isolating.store(false, Ordering::Relaxed);
    }
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
        "SELECT b.id, b.key, b.source, p.payload, b.maybe_committed, b.attempts, b.enqueued_at, b.last_error,
                b.crashes, b.bytes, f.path, f.size, f.mtime_ns, f.offset
         FROM batches b LEFT JOIN batch_payloads p ON p.id = b.id LEFT JOIN batch_file_ranges f ON f.id = b.id
         WHERE b.id = ?1",
    )
    .and_then(|mut stmt| {
        stmt.query_row(params![id], |r| {
            let stored = match r.get::<_, Option<Vec<u8>>>(3)? {
                Some(payload) => Stored::Bytes(payload),
                None => Stored::InFile(
                    FileRange {
                        path: r.get(10)?,
                        size: r.get::<_, i64>(11)? as u64,
                        mtime_ns: r.get(12)?,
                        offset: r.get::<_, i64>(13)? as u64,
                    },
                    r.get::<_, i64>(9)? as usize,
                ),
            };
            Ok(BatchRow {
                id: r.get(0)?,
                key: r.get(1)?,
                source: r.get(2)?,
                stored,
                maybe_committed: r.get(4)?,
                attempts: r.get(5)?,
                enqueued_at: r.get(6)?,
                last_error: r.get(7)?,
                crashes: r.get(8)?,
            })
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
    let BatchRow {
        id,
        key,
        source,
        stored,
        maybe_committed,
        attempts,
        enqueued_at,
        last_error,
        crashes,
    } = row;
    let payload = match stored {
        Stored::Bytes(payload) => Bytes::from(payload),
        Stored::InFile(at, len) => match read_range(&at, len) {
            Ok(payload) => Bytes::from(payload),
            Err(why) => {
                let detail = format!(
                    "the queue held this batch as {len} bytes at offset {} of a file, and cannot read them back: {why}; restore the file and `sluice replay` it",
                    at.offset
                );
                tracing::warn!(target: "sluice::queue", batch = %key, %source, %detail, "a batch's lines are gone from its file");
                // Its own key: line 0 of the batch may hold a letter already.
                let letter = DeadLetter::new(
                    format!("{key}#unreadable"),
                    0,
                    &source,
                    "queue",
                    reason::UNREADABLE_INPUT,
                    detail,
                    Bytes::new(),
                );
                put_dead(tx, &[letter])?;
                delete_batch(tx, held, id)?;
                return Ok(None);
            }
        },
    };
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

/// The `len` bytes at `at`, if its file is still the one that was read
/// (same size and modification time); otherwise why not.
fn read_range(at: &FileRange, len: usize) -> Result<Vec<u8>, String> {
    let mut file = std::fs::File::open(&at.path).map_err(|e| format!("{}: {e}", at.path))?;
    let meta = file.metadata().map_err(|e| format!("{}: {e}", at.path))?;
    if meta.len() != at.size || mtime_ns(&meta) != at.mtime_ns {
        return Err(format!(
            "{}: changed since it was queued (size {} and modification time {} ns then, {} and {} ns now)",
            at.path,
            at.size,
            at.mtime_ns,
            meta.len(),
            mtime_ns(&meta)
        ));
    }
    let reading = |e: std::io::Error| format!("{}: reading {len} bytes at {}: {e}", at.path, at.offset);
    file.seek(SeekFrom::Start(at.offset)).map_err(reading)?;
    // Into spare capacity: nothing zeroes the buffer first.
    let mut bytes = Vec::with_capacity(len);
    file.take(len as u64).read_to_end(&mut bytes).map_err(reading)?;
    if bytes.len() != len {
        return Err(reading(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(bytes)
}

fn delete_batch(tx: &Transaction, held: &mut u64, id: i64) -> Result<(), QueueError> {
    let size: Option<i64> = tx
        .prepare_cached("DELETE FROM batches WHERE id = ?1 RETURNING bytes")
        .and_then(|mut s| s.query_row(params![id], |r| r.get(0)).optional())
        .map_err(storage)?;
    for table in [
        "DELETE FROM batch_payloads WHERE id = ?1",
        "DELETE FROM batch_file_ranges WHERE id = ?1",
    ] {
        tx.prepare_cached(table)
            .and_then(|mut s| s.execute(params![id]))
            .map_err(storage)?;
    }
    *held = held.saturating_sub(size.unwrap_or(0) as u64);
    Ok(())
}

pub(super) fn ack(tx: &Transaction, held: &mut u64, ids: &[DeliveryId]) -> Result<(), QueueError> {
    for id in ids {
        delete_batch(tx, held, id.0 as i64)?;
    }
    Ok(())
}

pub(super) fn nack(tx: &Transaction, id: DeliveryId, error: &str, delay: Duration) -> Result<(), QueueError> {
    let visible_at = now_ms() + delay.as_millis() as i64;
    tx.prepare_cached(
        "UPDATE batches SET visible_at = ?2, last_error = ?3, in_flight = 0, suspect = 0, isolated = 0 WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![id.0 as i64, visible_at, error]))
    .map_err(storage)?;
    Ok(())
}

/// Like `nack` without the attempt: the delivery is given back.
pub(super) fn release(tx: &Transaction, id: DeliveryId, delay: Duration) -> Result<(), QueueError> {
    let visible_at = now_ms() + delay.as_millis() as i64;
    tx.prepare_cached(
        "UPDATE batches SET visible_at = ?2, attempts = max(attempts - 1, 0), maybe_committed = 1,
                in_flight = 0, suspect = 0, isolated = 0 WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![id.0 as i64, visible_at]))
    .map_err(storage)?;
    Ok(())
}

pub(super) fn extend(tx: &Transaction, settings: &QueueSettings, ids: &[DeliveryId]) -> Result<(), QueueError> {
    let visible_at = now_ms() + settings.visibility_timeout.as_millis() as i64;
    let mut stmt = tx
        .prepare_cached("UPDATE batches SET visible_at = ?2 WHERE id = ?1")
        .map_err(storage)?;
    for id in ids {
        stmt.execute(params![id.0 as i64, visible_at]).map_err(storage)?;
    }
    Ok(())
}
