//! The embedded document store: one SQLite database per `documents` stage
//! in the data directory, written by one process at a time (`sluice run`
//! holds the data directory's lock). Each batch is one transaction in WAL
//! mode with `synchronous=FULL`.
//!
//! ```text
//! documents(entity, id, state, version, revision, updated_at, document, seq)
//! batches(key, emitted, at_ms)      -- emitted: JSON [[entity, id], ...]
//! ```
//!
//! A version above 2^63 - 1 is kept as its digits in a blob: SQLite would
//! turn text too large for an integer into a float.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use rusqlite::{
    Connection, OptionalExtension, Row, Transaction, params,
    types::{FromSqlError, Value as SqlValue, ValueRef},
};
use sluice_core::now_ms;

use super::{Applied, DocumentStore, Sequenced, StoreError};
use crate::{
    apply::{Record, StoredDocument, apply_changes},
    change::{Change, DocKey},
    merge::Version,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS documents (
    entity TEXT NOT NULL,
    id TEXT NOT NULL,
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    updated_at TEXT,
    document TEXT,
    seq INTEGER NOT NULL,
    PRIMARY KEY (entity, id)
);
CREATE INDEX IF NOT EXISTS documents_seq ON documents(seq);
CREATE TABLE IF NOT EXISTS batches (
    key TEXT PRIMARY KEY,
    emitted TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_at ON batches(at_ms);
";

pub struct EmbeddedStore {
    conn: Arc<Mutex<Connection>>,
}

fn fatal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Fatal(e.to_string())
}

fn sqlite(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked | rusqlite::ErrorCode::DiskFull,
        ) => StoreError::Busy(e.to_string()),
        _ => StoreError::Fatal(e.to_string()),
    }
}

fn version_sql(version: Version) -> SqlValue {
    match i64::try_from(version) {
        Ok(small) => SqlValue::Integer(small),
        Err(_) => SqlValue::Blob(version.to_string().into_bytes()),
    }
}

fn version_at(row: &Row, column: usize) -> rusqlite::Result<Version> {
    let unreadable =
        || rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Blob, "not a version".into());
    match row.get_ref(column)? {
        ValueRef::Integer(small) => Version::try_from(small).map_err(|_| unreadable()),
        ValueRef::Blob(digits) => std::str::from_utf8(digits)
            .ok()
            .and_then(crate::version::parse_digits)
            .ok_or_else(unreadable),
        other => Err(rusqlite::Error::FromSqlConversionFailure(
            column,
            other.data_type(),
            Box::new(FromSqlError::InvalidType),
        )),
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fatal(format!("creating {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(|e| fatal(format!("opening {}: {e}", path.display())))?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;")
            .and_then(|_| conn.execute_batch(SCHEMA))
            .map_err(sqlite)?;
        Ok(EmbeddedStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&mut conn.lock().unwrap_or_else(|e| e.into_inner())))
            .await
            .map_err(|e| fatal(format!("store task: {e}")))?
    }
}

fn load(tx: &Transaction, key: &DocKey) -> Result<Option<Record>, StoreError> {
    let row = tx
        .prepare_cached(
            "SELECT state, version, revision, updated_at, document FROM documents WHERE entity = ?1 AND id = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![key.entity, key.id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    version_at(r, 1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            })
            .optional()
        })
        .map_err(sqlite)?;
    let Some((state, version, revision, updated_at, document)) = row else {
        return Ok(None);
    };
    Ok(Some(Record {
        state: serde_json::from_str(&state).map_err(|e| fatal(format!("stored state of {key:?}: {e}")))?,
        version,
        revision: revision as u64,
        updated_at,
        document: document
            .map(|d| serde_json::from_str(&d))
            .transpose()
            .map_err(|e| fatal(format!("stored document of {key:?}: {e}")))?,
    }))
}

fn apply_in(tx: &Transaction, key: &str, check_recorded: bool, changes: &[Change]) -> Result<Applied, StoreError> {
    if check_recorded {
        let emitted: Option<String> = tx
            .query_row("SELECT emitted FROM batches WHERE key = ?1", params![key], |r| r.get(0))
            .optional()
            .map_err(sqlite)?;
        if let Some(recorded) = emitted {
            let mut current = HashMap::new();
            for doc in super::recorded_keys(key, &recorded)? {
                if let Some(record) = load(tx, &doc)? {
                    current.insert(doc.clone(), StoredDocument::new(doc, &record));
                }
            }
            return super::replay(key, &recorded, |doc| current.get(doc).cloned());
        }
    }
    let mut records = HashMap::new();
    for change in changes {
        if !records.contains_key(&change.key)
            && let Some(record) = load(tx, &change.key)?
        {
            records.insert(change.key.clone(), record);
        }
    }
    let outcome = apply_changes(&mut records, changes);
    let last_seq: i64 = tx
        .query_row("SELECT coalesce(max(seq), 0) FROM documents", [], |r| r.get(0))
        .map_err(sqlite)?;
    for (seq, key) in (last_seq + 1..).zip(&outcome.dirty) {
        let record = &records[key];
        tx.prepare_cached(
            "INSERT INTO documents (entity, id, state, version, revision, updated_at, document, seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (entity, id) DO UPDATE SET state = ?3, version = ?4, revision = ?5,
                 updated_at = ?6, document = ?7, seq = ?8",
        )
        .and_then(|mut s| {
            s.execute(params![
                key.entity,
                key.id,
                serde_json::to_string(&record.state).expect("states serialise"),
                version_sql(record.version),
                record.revision as i64,
                record.updated_at,
                record.document.as_ref().map(|d| d.to_string()),
                seq,
            ])
        })
        .map_err(sqlite)?;
    }
    tx.execute(
        "INSERT OR IGNORE INTO batches (key, emitted, at_ms) VALUES (?1, ?2, ?3)",
        params![key, super::record_of(&outcome.emitted), now_ms()],
    )
    .map_err(sqlite)?;
    tx.execute(
        "DELETE FROM batches WHERE at_ms < ?1",
        params![now_ms() - super::BATCH_RECORD_RETENTION_MS],
    )
    .map_err(sqlite)?;
    Ok(Applied {
        stored: outcome.dirty.len() as u64,
        emitted: outcome.emitted,
        stats: outcome.stats,
        replayed: false,
    })
}

#[async_trait]
impl DocumentStore for EmbeddedStore {
    async fn apply(&self, key: &str, check_recorded: bool, changes: &[Change]) -> Result<Applied, StoreError> {
        let (key, changes) = (key.to_string(), changes.to_vec());
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(sqlite)?;
            let applied = apply_in(&tx, &key, check_recorded, &changes)?;
            tx.commit().map_err(sqlite)?;
            Ok(applied)
        })
        .await
    }

    async fn get(&self, key: &DocKey) -> Result<Option<StoredDocument>, StoreError> {
        let key = key.clone();
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(sqlite)?;
            Ok(load(&tx, &key)?.map(|record| StoredDocument::new(key, &record)))
        })
        .await
    }

    async fn count_changed_since(&self, after: i64) -> Result<u64, StoreError> {
        self.with_conn(move |conn| {
            conn.query_row("SELECT count(*) FROM documents WHERE seq > ?1", [after], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(sqlite)
        })
        .await
    }

    async fn changed_since(&self, after: i64, limit: usize) -> Result<Vec<Sequenced>, StoreError> {
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, entity, id, version, revision, updated_at, document FROM documents
                     WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(sqlite)?;
            let rows = stmt
                .query_map(params![after, limit as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        DocKey {
                            entity: r.get(1)?,
                            id: r.get(2)?,
                        },
                        version_at(r, 3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, Option<String>>(6)?,
                    ))
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(sqlite)?;
            rows.into_iter()
                .map(|(seq, key, version, revision, updated_at, document)| {
                    let document = document
                        .map(|d| serde_json::from_str(&d))
                        .transpose()
                        .map_err(|e| fatal(format!("stored document of {key:?}: {e}")))?;
                    Ok(Sequenced {
                        seq,
                        document: StoredDocument {
                            key,
                            version,
                            revision: revision as u64,
                            updated_at,
                            document,
                        },
                    })
                })
                .collect()
        })
        .await
    }
}
