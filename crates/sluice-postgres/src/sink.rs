//! The `postgres` sink: flattens each event into rows as it arrives
//! (refusing what does not fit), and commits everything buffered in one
//! transaction: DDL for new fields, the rows, and one processed-batch marker
//! per batch key.
//!
//! Invariants:
//! * A batch key is in `_sluice_batches` iff its rows are in the tables:
//!   both are written by the same transaction. A redelivered batch whose key
//!   is there is `AlreadyCommitted`; a batch another writer commits first
//!   makes this commit fail and be redelivered, never written twice.
//! * In `upsert` mode a commit holds at most one version of each key (the
//!   last one accepted), so `ON CONFLICT` never meets its own rows; a key
//!   whose last event matches `delete_when` is deleted (children too)
//!   instead, before the commit writes its rows.
//! * After any failure the shape is read back from the database before the
//!   next batch, so it never believes in columns that were rolled back.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use serde_json::Value;
use sluice_core::{Accepted, Event, FlushReport, JsonDoc, Rejected, Sink, StageError, reason};
use tokio_postgres::Client;

use crate::{
    PostgresSinkConfig, WriteMode,
    db::{self, LoadError, Write},
    flatten::{Row, flatten, key_id, row_id},
    shape::Shape,
};

/// How often old processed-batch markers are deleted.
const EXPIRE_MARKERS_EVERY: Duration = Duration::from_secs(3600);

pub struct PostgresSink {
    config: PostgresSinkConfig,
    /// The JSON Schema of the events, if they were validated: it declares
    /// the columns before data arrives.
    schema: Option<JsonDoc>,
    client: Option<Client>,
    shape: Shape,
    /// The shape must be read back from the database before it is used.
    reload: bool,
    buffer: Buffer,
    markers_expired: Option<Instant>,
}

#[derive(Default)]
struct Buffer {
    /// Rows of each buffered event, root row first.
    events: Vec<Vec<Row>>,
    /// Upsert: root row id -> index in `events`.
    by_id: HashMap<[u8; 16], usize>,
    /// Upsert: keys whose last event deletes them (their entry in `events` is empty).
    deleted: HashSet<[u8; 16]>,
    keys: Vec<String>,
    rows_per_key: Vec<i64>,
    bytes: usize,
}

impl PostgresSink {
    /// Connects, creates Sluice's bookkeeping tables and the tables the
    /// schema declares (or adds its new columns), and checks that existing
    /// columns have the types the schema asks for.
    pub async fn open(config: &PostgresSinkConfig, schema: Option<JsonDoc>) -> Result<Self, StageError> {
        let mut sink = PostgresSink {
            config: config.clone(),
            schema,
            client: None,
            shape: Shape::new(&config.table),
            reload: true,
            buffer: Buffer::default(),
            markers_expired: None,
        };
        sink.prepare().await?;
        Ok(sink)
    }

    /// Connects if needed and reads the shape back, creating what the schema declares.
    async fn prepare(&mut self) -> Result<(), StageError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let client = db::connect(self.config.url.expose())
                .await
                .map_err(|e| connect_error(&e))?;
            self.client = Some(client);
            self.reload = true;
        }
        if !self.reload {
            return Ok(());
        }
        let (schema, table) = (self.config.schema.clone(), self.config.table.clone());
        let client = self.client.as_mut().expect("connected above");
        let tx = client.transaction().await.map_err(db_error)?;
        db::lock_family(&tx, &schema, &table).await.map_err(db_error)?;
        db::ensure_bookkeeping(&tx, &schema).await.map_err(db_error)?;
        let mut shape = db::load_shape(&tx, &schema, &table).await.map_err(load_error)?;
        if let Some(json_schema) = &self.schema {
            shape
                .add_schema(json_schema)
                .map_err(|e| StageError::fatal(format!("table {table:?}: {e}")))?;
        }
        db::sync_ddl(&tx, &schema, &shape).await.map_err(load_error)?;
        tx.commit().await.map_err(db_error)?;
        shape.set_synced();
        self.shape = shape;
        self.reload = false;
        Ok(())
    }
}

/// Settings and certificates that do not work stop the start with the
/// reason (waiting will not fix them); anything else is waited for.
fn connect_error(e: &db::ConnectError) -> StageError {
    let message = format!("connecting to PostgreSQL: {e}");
    if matches!(e, db::ConnectError::Settings(_)) || e.tls_refused() {
        StageError::fatal(message)
    } else {
        StageError::unavailable(message)
    }
}

fn db_error(e: db::DbError) -> StageError {
    let message = format!("PostgreSQL: {}", db::describe(&e));
    if db::unreachable(&e) {
        StageError::unavailable(message)
    } else {
        StageError::retriable(message)
    }
}

fn load_error(e: LoadError) -> StageError {
    match e {
        LoadError::Db(e) => db_error(e),
        LoadError::Conflict(m) => StageError::retriable(m),
    }
}

#[async_trait]
impl Sink for PostgresSink {
    async fn accept(&mut self, key: &str, maybe_committed: bool, events: Vec<Event>) -> Result<Accepted, StageError> {
        self.prepare().await?;
        if maybe_committed {
            let client = self.client.as_ref().expect("prepared");
            if db::is_committed(client, &self.config.schema, &self.config.table, key)
                .await
                .map_err(db_error)?
            {
                return Ok(Accepted::AlreadyCommitted);
            }
        }
        let mut rejected = Vec::new();
        let mut roots = 0i64;
        for (ordinal, event) in events.into_iter().enumerate() {
            let value: Value = match serde_json::from_slice(&event.payload) {
                Ok(v) => v,
                Err(e) => {
                    rejected.push(Rejected::new(event, reason::INVALID_JSON, e.to_string()));
                    continue;
                }
            };
            let id = match self.config.mode {
                WriteMode::Upsert => match key_id(&value, &self.config.primary_key) {
                    Ok(id) => id,
                    Err(r) => {
                        rejected.push(Rejected::new(event, r.reason, r.detail));
                        continue;
                    }
                },
                WriteMode::Append => row_id(&[key.as_bytes(), &(ordinal as u64).to_le_bytes()]),
            };
            if self.config.delete_when.as_ref().is_some_and(|d| d.matches(&value)) {
                self.buffer.bytes += event.payload.len();
                roots += 1;
                self.buffer.deleted.insert(id);
                match self.buffer.by_id.get(&id) {
                    Some(&i) => self.buffer.events[i] = Vec::new(),
                    None => {
                        self.buffer.by_id.insert(id, self.buffer.events.len());
                        self.buffer.events.push(Vec::new());
                    }
                }
                continue;
            }
            let Value::Object(map) = value else {
                let detail = format!("expected a JSON object, got {}", crate::cell::describe(&value));
                rejected.push(Rejected::new(event, reason::NOT_AN_OBJECT, detail));
                continue;
            };
            match flatten(&mut self.shape, map, id) {
                Ok(rows) => {
                    self.buffer.bytes += event.payload.len();
                    roots += 1;
                    self.buffer.deleted.remove(&id);
                    match self.buffer.by_id.get(&id) {
                        Some(&i) if self.config.mode == WriteMode::Upsert => self.buffer.events[i] = rows,
                        _ => {
                            if self.config.mode == WriteMode::Upsert {
                                self.buffer.by_id.insert(id, self.buffer.events.len());
                            }
                            self.buffer.events.push(rows);
                        }
                    }
                }
                Err(r) => rejected.push(Rejected::new(event, r.reason, r.detail)),
            }
        }
        self.buffer.keys.push(key.to_string());
        self.buffer.rows_per_key.push(roots);
        Ok(Accepted::Buffered { rejected })
    }

    fn buffered_bytes(&self) -> usize {
        self.buffer.bytes
    }

    fn max_buffered_bytes(&self) -> usize {
        self.config.max_buffered_bytes as usize
    }

    async fn flush(&mut self) -> Result<FlushReport, StageError> {
        if self.buffer.keys.is_empty() {
            return Ok(FlushReport::default());
        }
        let (schema, table) = (&self.config.schema, &self.config.table);
        let write = match self.config.mode {
            WriteMode::Append => Write::Append,
            WriteMode::Upsert => Write::Upsert,
        };
        let expire = self.markers_expired.is_none_or(|t| t.elapsed() >= EXPIRE_MARKERS_EVERY);
        let client = self
            .client
            .as_mut()
            .ok_or_else(|| StageError::unavailable("not connected to PostgreSQL"))?;
        let result: Result<(), StageError> = async {
            let tx = client.transaction().await.map_err(db_error)?;
            db::sync_ddl(&tx, schema, &self.shape).await.map_err(load_error)?;
            db::delete_rows(&tx, schema, &self.shape, &self.buffer.deleted)
                .await
                .map_err(db_error)?;
            let rows = self.buffer.events.iter().flatten();
            db::write_rows(&tx, schema, &self.shape, rows, write)
                .await
                .map_err(db_error)?;
            db::record_batches(&tx, schema, table, &self.buffer.keys, &self.buffer.rows_per_key)
                .await
                .map_err(db_error)?;
            if expire {
                let hours = i32::try_from(self.config.marker_retention_hours).unwrap_or(i32::MAX);
                db::expire_batches(&tx, schema, table, hours).await.map_err(db_error)?;
            }
            tx.commit().await.map_err(db_error)
        }
        .await;
        if let Err(e) = result {
            self.reload = true;
            return Err(e);
        }
        if expire {
            self.markers_expired = Some(Instant::now());
        }
        self.shape.set_synced();
        let report = FlushReport {
            rows: self.buffer.events.len() as u64,
            files: 0,
            batches: self.buffer.keys.len() as u64,
            duplicates_dropped: self.buffer.rows_per_key.iter().sum::<i64>() as u64 - self.buffer.events.len() as u64,
        };
        self.buffer = Buffer::default();
        Ok(report)
    }

    fn reset(&mut self) {
        self.buffer = Buffer::default();
        self.reload = true;
    }
}
