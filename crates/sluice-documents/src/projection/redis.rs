//! Writing projections to Redis: one hash per document, replaced whole by a
//! Lua script that refuses a revision older than the one stored (`_revision`
//! in the hash), so redelivered or re-hydrated writes are idempotent and a
//! late write never undoes a newer one. The sink buffers the latest
//! revision per key and writes at flush, in one pipeline.

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use async_trait::async_trait;
use redis::{Script, aio::MultiplexedConnection};
use sluice_core::{
    Accepted, Event, FlushReport, Rejected, Sink, StageError, parse_object, telemetry::DocumentsTelemetry,
};

use super::{Projected, Projector};
use crate::{
    apply::StoredDocument,
    change::{DocKey, key_text},
    store::DocumentStore,
};

/// KEYS[1]: the hash; ARGV[1]: revision; ARGV[2]: "set" or "del"; then field, value pairs.
const WRITE: &str = r"
local stored = tonumber(redis.call('HGET', KEYS[1], '_revision') or '-1')
if stored > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[2] == 'set' then
  redis.call('HSET', KEYS[1], '_revision', ARGV[1], unpack(ARGV, 3))
end
return 1
";

/// Writes projected hashes. A connection that failed is dropped and made
/// again at the next write, so the writer outlives a Redis restart.
pub struct RedisWriter {
    client: redis::Client,
    redacted_url: String,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    script: Script,
}

/// A Redis error as a stage error: `Unavailable` when the server cannot be
/// reached or the connection dropped.
fn redis_error(what: &str, e: &redis::RedisError) -> StageError {
    let message = format!("{what}: {e}");
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
        StageError::unavailable(message)
    } else {
        StageError::retriable(message)
    }
}

impl RedisWriter {
    /// Connects to `url`; a `rediss://` URL speaks TLS, trusting the CA
    /// certificates in `ca_file` (PEM) or else the operating system's.
    pub async fn connect(url: &sluice_core::Secret, ca_file: Option<&std::path::Path>) -> Result<Self, String> {
        let client = match ca_file {
            Some(path) => {
                let root_cert = std::fs::read(path).map_err(|e| format!("redis_ca_file {}: {e}", path.display()))?;
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                redis::Client::build_with_tls(url.expose(), certificates)
            }
            None => redis::Client::open(url.expose()),
        }
        .map_err(|e| format!("redis {}: {e}", url.redacted()))?;
        let writer = RedisWriter {
            client,
            redacted_url: url.redacted(),
            conn: tokio::sync::Mutex::new(None),
            script: Script::new(WRITE),
        };
        writer.connection().await.map_err(|e| e.message)?;
        Ok(writer)
    }

    async fn connection(&self) -> Result<MultiplexedConnection, StageError> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Ok(c.clone());
        }
        let fresh = self
            .client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| redis_error(&format!("connecting to redis {}", self.redacted_url), &e))?;
        *conn = Some(fresh.clone());
        Ok(fresh)
    }

    /// Writes every hash in one pipeline; returns how many were written
    /// (the rest held a newer revision already).
    pub async fn write(&self, projected: &[Projected]) -> Result<u64, StageError> {
        if projected.is_empty() {
            return Ok(0);
        }
        let written = self.write_on(self.connection().await?, projected).await;
        if written.as_ref().is_err_and(StageError::is_unavailable) {
            *self.conn.lock().await = None;
        }
        written
    }

    async fn write_on(&self, mut conn: MultiplexedConnection, projected: &[Projected]) -> Result<u64, StageError> {
        // A fresh server (or one that restarted) may not know the script yet.
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(WRITE)
            .query_async::<String>(&mut conn)
            .await
            .map_err(|e| redis_error("loading the write script", &e))?;
        let mut pipe = redis::pipe();
        for p in projected {
            let cmd = pipe
                .cmd("EVALSHA")
                .arg(self.script.get_hash())
                .arg(1)
                .arg(&p.key)
                .arg(p.revision)
                .arg(if p.fields.is_some() { "set" } else { "del" });
            for (field, value) in p.fields.iter().flatten() {
                cmd.arg(field).arg(value);
            }
        }
        let written: Vec<i64> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error("writing projections", &e))?;
        Ok(written.iter().filter(|w| **w == 1).count() as u64)
    }
}

/// Projects `docs` (looking up the other documents they name in `store`).
pub async fn project(
    projector: &Projector,
    store: &dyn DocumentStore,
    docs: &[StoredDocument],
) -> Result<Vec<Projected>, StageError> {
    let mut wanted = BTreeSet::new();
    for doc in docs {
        projector.lookup_keys(doc, &mut wanted);
    }
    let mut others = HashMap::new();
    for key in wanted {
        let found = store.get(&key).await.map_err(StageError::from)?;
        if let Some(document) = found.and_then(|d| d.document) {
            others.insert(key, document);
        }
    }
    Ok(docs.iter().map(|doc| projector.project(doc, &others)).collect())
}

/// Reads an outbound document event back, with when its change was received.
fn outbound(event: &Event) -> Result<(StoredDocument, Option<i64>), (&'static str, String)> {
    let value = parse_object(&event.payload)?;
    let text = |field: &str| value.get(field).and_then(key_text);
    let (Some(entity), Some(id), Some(revision)) = (text("entity"), text("id"), value["revision"].as_u64()) else {
        return Err((
            sluice_core::reason::PROJECTION_INPUT,
            "expected a document from a `documents` stage (entity, id, revision)".into(),
        ));
    };
    let doc = StoredDocument {
        key: DocKey { entity, id },
        version: crate::version::from_json(&value["version"]).unwrap_or(0),
        revision,
        updated_at: value["updated_at"].as_str().map(str::to_string),
        document: value.get("document").filter(|d| d.is_object()).cloned(),
    };
    Ok((doc, value["received_at_ms"].as_i64()))
}

/// The `projection` sink.
pub struct ProjectionSink {
    name: String,
    projector: Projector,
    store: std::sync::Arc<dyn DocumentStore>,
    writer: RedisWriter,
    /// The newest revision of each document since the last flush, with when
    /// its change was received.
    buffer: HashMap<DocKey, (StoredDocument, Option<i64>)>,
    batches: u64,
}

impl ProjectionSink {
    pub fn new(
        name: &str,
        projector: Projector,
        store: std::sync::Arc<dyn DocumentStore>,
        writer: RedisWriter,
    ) -> Self {
        ProjectionSink {
            name: name.to_string(),
            projector,
            store,
            writer,
            buffer: HashMap::new(),
            batches: 0,
        }
    }
}

#[async_trait]
impl Sink for ProjectionSink {
    async fn accept(&mut self, _key: &str, _maybe_committed: bool, events: Vec<Event>) -> Result<Accepted, StageError> {
        let mut rejected = Vec::new();
        for event in events {
            match outbound(&event) {
                Ok((doc, received)) if self.projector.wants(&doc.key.entity) => {
                    let newer = self
                        .buffer
                        .get(&doc.key)
                        .is_none_or(|(b, _)| b.revision <= doc.revision);
                    if newer {
                        self.buffer.insert(doc.key.clone(), (doc, received));
                    }
                }
                Ok(_) => {}
                Err((why, detail)) => rejected.push(Rejected::new(event, why, detail)),
            }
        }
        self.batches += 1;
        Ok(Accepted::Buffered { rejected })
    }

    fn buffered_bytes(&self) -> usize {
        self.buffer.len() * 256
    }

    fn max_buffered_bytes(&self) -> usize {
        4 * 1024 * 1024
    }

    async fn flush(&mut self) -> Result<FlushReport, StageError> {
        let docs: Vec<StoredDocument> = self.buffer.values().map(|(d, _)| d.clone()).collect();
        let projected = project(&self.projector, self.store.as_ref(), &docs).await?;
        let written = self.writer.write(&projected).await?;
        let now = sluice_core::now_ms();
        DocumentsTelemetry::new(&self.name).projected(
            written,
            self.buffer
                .values()
                .filter_map(|(_, r)| *r)
                .map(|received| Duration::from_millis((now - received).max(0) as u64)),
        );
        let report = FlushReport {
            rows: written,
            batches: std::mem::take(&mut self.batches),
            ..FlushReport::default()
        };
        self.buffer.clear();
        Ok(report)
    }

    fn reset(&mut self) {
        self.buffer.clear();
        self.batches = 0;
    }
}

/// Rebuilds a projection from every current document of `store`; returns
/// the hashes written. `progress` is called after each page with the
/// documents read and all the store held at the start.
pub async fn rehydrate(
    projector: &Projector,
    store: &dyn DocumentStore,
    writer: &RedisWriter,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<u64, String> {
    let mut after = 0;
    let mut written = 0;
    let mut read = 0;
    let total = store
        .count_changed_since(0)
        .await
        .map_err(|e| format!("reading the document store: {e}"))?;
    loop {
        let page = store
            .changed_since(after, 5_000)
            .await
            .map_err(|e| format!("reading the document store: {e}"))?;
        let Some(last) = page.last().map(|s| s.seq) else {
            return Ok(written);
        };
        read += page.len() as u64;
        let docs: Vec<StoredDocument> = page
            .into_iter()
            .map(|s| s.document)
            .filter(|d| projector.wants(&d.key.entity))
            .collect();
        let projected = project(projector, store, &docs).await.map_err(|e| e.message)?;
        written += writer.write(&projected).await.map_err(|e| e.message)?;
        after = last;
        progress(read, total);
    }
}
