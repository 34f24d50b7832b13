//! The PostgreSQL document store: one table per `documents` stage (JSONB
//! state and document), safe with several writers in several processes.
//!
//! ```text
//! <table>(entity, id, state jsonb, version, revision, updated_at, document jsonb, seq)
//! <table>_batches(key, emitted jsonb, at)       -- emitted: [[entity, id], ...]
//! <table>_seq                                    -- sequence numbers of writes
//! ```
//!
//! Invariants:
//! * A batch locks its documents (`SELECT ... FOR UPDATE`, in key order so
//!   two writers cannot deadlock on them) before reading their state, and
//!   writes them, their sequence numbers and the batch record in the same
//!   transaction: concurrent batches touching one document serialise on
//!   its row.
//! * Rows missing for new documents are inserted first (in key order, `ON
//!   CONFLICT DO NOTHING`) so there is always a row to lock.
//! * Values travel only as bind parameters; names are quoted.
//! * Versions are `numeric(38,0)`, bound and read as text; a table from
//!   before versions grew past 64 bits (`bigint`) is altered on open.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use sluice_core::now_ms;
use sluice_postgres::{db, ident::qualified};
use tokio::sync::Mutex;
use tokio_postgres::{Client, Transaction};

use super::{Applied, DocumentStore, Sequenced, StoreError};
use crate::{
    apply::{Record, StoredDocument, apply_changes},
    change::{Change, DocKey},
    merge::Version,
};

pub struct PostgresStore {
    url: String,
    documents: String,
    batches: String,
    sequence: String,
    client: Mutex<Option<Client>>,
}

/// Connection trouble is `Unavailable`; serialisation failures, deadlocks
/// and lack of resources (SQLSTATE 40, 53) are worth a retry; the rest is
/// fatal.
fn store_error(e: tokio_postgres::Error) -> StoreError {
    let message = db::describe(&e);
    if db::unreachable(&e) {
        return StoreError::Unavailable(message);
    }
    match e.code() {
        Some(code) if ["40", "53", "57"].iter().any(|class| code.code().starts_with(class)) => {
            StoreError::Busy(message)
        }
        Some(_) => StoreError::Fatal(message),
        None => StoreError::Busy(message),
    }
}

fn connect_error(e: db::ConnectError) -> StoreError {
    match e {
        db::ConnectError::Db(e) => store_error(e),
        settings => StoreError::Fatal(settings.to_string()),
    }
}

fn stored_version(key: &DocKey, text: &str) -> Result<Version, StoreError> {
    crate::version::parse_digits(text).ok_or_else(|| StoreError::Fatal(format!("stored version of {key:?}: {text:?}")))
}

impl PostgresStore {
    /// Connects and creates the schema, table, batch table and sequence if
    /// they are missing.
    pub async fn open(url: &str, schema: &str, table: &str) -> Result<Self, StoreError> {
        let store = PostgresStore {
            url: url.to_string(),
            documents: qualified(schema, table),
            batches: qualified(schema, &format!("{table}_batches")),
            sequence: qualified(schema, &format!("{table}_seq")),
            client: Mutex::new(None),
        };
        let mut guard = store.client().await?;
        let client = guard.as_mut().expect("connected above");
        let tx = client.transaction().await.map_err(store_error)?;
        // Concurrent `open`s of one store take turns creating it.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&store.documents])
            .await
            .map_err(store_error)?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {documents} (
                 entity text NOT NULL,
                 id text NOT NULL,
                 state jsonb NOT NULL,
                 version numeric(38,0) NOT NULL,
                 revision bigint NOT NULL,
                 updated_at text,
                 document jsonb,
                 seq bigint NOT NULL,
                 PRIMARY KEY (entity, id)
             );
             CREATE INDEX IF NOT EXISTS {seq_index} ON {documents} (seq);
             CREATE TABLE IF NOT EXISTS {batches} (
                 key text PRIMARY KEY,
                 emitted jsonb NOT NULL,
                 at_ms bigint NOT NULL
             );
             CREATE INDEX IF NOT EXISTS {at_index} ON {batches} (at_ms);
             CREATE SEQUENCE IF NOT EXISTS {sequence};",
            at_index = sluice_postgres::ident::quote(&format!("{table}_batches_at_idx")),
            schema = sluice_postgres::ident::quote(schema),
            documents = store.documents,
            seq_index = sluice_postgres::ident::quote(&format!("{table}_seq_idx")),
            batches = store.batches,
            sequence = store.sequence,
        ))
        .await
        .map_err(store_error)?;
        let version_type = tx
            .query_one(
                "SELECT data_type FROM information_schema.columns
                 WHERE table_schema = $1 AND table_name = $2 AND column_name = 'version'",
                &[&schema, &table],
            )
            .await
            .map_err(store_error)?;
        if version_type.get::<_, String>(0) == "bigint" {
            tx.batch_execute(&format!(
                "ALTER TABLE {} ALTER COLUMN version TYPE numeric(38,0)",
                store.documents
            ))
            .await
            .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)?;
        drop(guard);
        Ok(store)
    }

    /// The connection, opened again if it was lost.
    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, StoreError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(db::connect(&self.url).await.map_err(connect_error)?);
        }
        Ok(guard)
    }

    async fn load(
        &self,
        tx: &Transaction<'_>,
        keys: &[DocKey],
        lock: bool,
    ) -> Result<HashMap<DocKey, Record>, StoreError> {
        let (entities, ids): (Vec<&str>, Vec<&str>) = keys.iter().map(|k| (k.entity.as_str(), k.id.as_str())).unzip();
        let rows = tx
            .query(
                &format!(
                    "SELECT entity, id, state::text, version::text, revision, updated_at, document::text FROM {}
                     WHERE (entity, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
                     ORDER BY entity, id{}",
                    self.documents,
                    if lock { " FOR UPDATE" } else { "" }
                ),
                &[&entities, &ids],
            )
            .await
            .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                let key = DocKey {
                    entity: row.get(0),
                    id: row.get(1),
                };
                let state: String = row.get(2);
                let document: Option<String> = row.get(6);
                let record = Record {
                    state: serde_json::from_str(&state)
                        .map_err(|e| StoreError::Fatal(format!("stored state of {key:?}: {e}")))?,
                    version: stored_version(&key, row.get(3))?,
                    revision: row.get::<_, i64>(4) as u64,
                    updated_at: row.get(5),
                    document: document
                        .map(|d| serde_json::from_str(&d))
                        .transpose()
                        .map_err(|e| StoreError::Fatal(format!("stored document of {key:?}: {e}")))?,
                };
                Ok((key, record))
            })
            .collect()
    }

    async fn apply_in(
        &self,
        tx: &Transaction<'_>,
        key: &str,
        check_recorded: bool,
        changes: &[Change],
    ) -> Result<Applied, StoreError> {
        if check_recorded {
            let recorded = tx
                .query_opt(
                    &format!("SELECT emitted::text FROM {} WHERE key = $1", self.batches),
                    &[&key],
                )
                .await
                .map_err(store_error)?;
            if let Some(row) = recorded {
                let recorded: String = row.get(0);
                let keys = super::recorded_keys(key, &recorded)?;
                let records = self.load(tx, &keys, false).await?;
                return super::replay(key, &recorded, |doc| {
                    records.get(doc).map(|r| StoredDocument::new(doc.clone(), r))
                });
            }
        }
        let keys: Vec<DocKey> = changes
            .iter()
            .map(|c| c.key.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (entities, ids): (Vec<&str>, Vec<&str>) = keys.iter().map(|k| (k.entity.as_str(), k.id.as_str())).unzip();
        tx.execute(
            &format!(
                "INSERT INTO {} (entity, id, state, version, revision, seq)
                 SELECT entity, id, '{{}}', 0, 0, 0 FROM unnest($1::text[], $2::text[]) AS k(entity, id)
                 ORDER BY entity, id ON CONFLICT DO NOTHING",
                self.documents
            ),
            &[&entities, &ids],
        )
        .await
        .map_err(store_error)?;
        let mut records = self.load(tx, &keys, true).await?;
        let outcome = apply_changes(&mut records, changes);
        let mut columns = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for key in &outcome.dirty {
            let record = &records[key];
            columns.0.push(key.entity.as_str());
            columns.1.push(key.id.as_str());
            columns
                .2
                .push(serde_json::to_string(&record.state).expect("states serialise"));
            columns.3.push(record.version.to_string());
            columns.4.push(record.revision as i64);
            columns.5.push(record.updated_at.as_deref());
            columns.6.push(record.document.as_ref().map(|d| d.to_string()));
        }
        tx.execute(
            &format!(
                "UPDATE {documents} d SET state = u.state::jsonb, version = u.version::numeric, revision = u.revision,
                     updated_at = u.updated_at, document = u.document::jsonb, seq = nextval('{sequence}')
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::text[], $7::text[])
                     AS u(entity, id, state, version, revision, updated_at, document)
                 WHERE d.entity = u.entity AND d.id = u.id",
                documents = self.documents,
                sequence = self.sequence.replace('\'', "''"),
            ),
            &[
                &columns.0, &columns.1, &columns.2, &columns.3, &columns.4, &columns.5, &columns.6,
            ],
        )
        .await
        .map_err(store_error)?;
        tx.execute(
            &format!(
                "INSERT INTO {} (key, emitted, at_ms) VALUES ($1, $2::text::jsonb, $3) ON CONFLICT DO NOTHING",
                self.batches
            ),
            &[&key, &super::record_of(&outcome.emitted), &now_ms()],
        )
        .await
        .map_err(store_error)?;
        tx.execute(
            // SKIP LOCKED: concurrent writers prune disjoint records, never wait on each other.
            &format!(
                "DELETE FROM {batches} WHERE key IN
                     (SELECT key FROM {batches} WHERE at_ms < $1 LIMIT 1000 FOR UPDATE SKIP LOCKED)",
                batches = self.batches
            ),
            &[&(now_ms() - super::BATCH_RECORD_RETENTION_MS)],
        )
        .await
        .map_err(store_error)?;
        Ok(Applied {
            stored: outcome.dirty.len() as u64,
            emitted: outcome.emitted,
            stats: outcome.stats,
            replayed: false,
        })
    }
}

#[async_trait]
impl DocumentStore for PostgresStore {
    async fn apply(&self, key: &str, check_recorded: bool, changes: &[Change]) -> Result<Applied, StoreError> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().expect("connected by client()");
        let tx = client.transaction().await.map_err(store_error)?;
        let applied = self.apply_in(&tx, key, check_recorded, changes).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(applied)
    }

    async fn get(&self, key: &DocKey) -> Result<Option<StoredDocument>, StoreError> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().expect("connected by client()");
        let tx = client.transaction().await.map_err(store_error)?;
        let records = self.load(&tx, std::slice::from_ref(key), false).await?;
        Ok(records.get(key).map(|r| StoredDocument::new(key.clone(), r)))
    }

    async fn count_changed_since(&self, after: i64) -> Result<u64, StoreError> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().expect("connected by client()");
        let row = client
            .query_one(
                &format!("SELECT count(*) FROM {} WHERE seq > $1", self.documents),
                &[&after],
            )
            .await
            .map_err(store_error)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn changed_since(&self, after: i64, limit: usize) -> Result<Vec<Sequenced>, StoreError> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().expect("connected by client()");
        let tx = client.transaction().await.map_err(store_error)?;
        // Writers hold their row locks until commit and take sequence numbers
        // before it; waiting for them here means no write with a lower number
        // can appear after this read.
        tx.batch_execute(&format!("LOCK TABLE {} IN SHARE MODE", self.documents))
            .await
            .map_err(store_error)?;
        let rows = tx
            .query(
                &format!(
                    "SELECT seq, entity, id, version::text, revision, updated_at, document::text FROM {}
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                    self.documents
                ),
                &[&after, &(limit as i64)],
            )
            .await
            .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                let key = DocKey {
                    entity: row.get(1),
                    id: row.get(2),
                };
                let document: Option<String> = row.get(6);
                let document = document
                    .map(|d| serde_json::from_str(&d))
                    .transpose()
                    .map_err(|e| StoreError::Fatal(format!("stored document of {key:?}: {e}")))?;
                let version = stored_version(&key, row.get(3))?;
                Ok(Sequenced {
                    seq: row.get(0),
                    document: StoredDocument {
                        key,
                        version,
                        revision: row.get::<_, i64>(4) as u64,
                        updated_at: row.get(5),
                        document,
                    },
                })
            })
            .collect()
    }
}
