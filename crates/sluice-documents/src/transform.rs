//! The `documents` stage: change events in, merged into stored documents,
//! the full new document out for every real change (the outbound document
//! stream). A redelivered batch re-emits what it emitted the first time.

use std::{path::PathBuf, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use sluice_core::{
    BatchInfo, Event, Rejected, StageError, Transform, TransformOutput, parse_object,
    telemetry::{DocumentsApplied, DocumentsTelemetry},
};
use tokio::sync::OnceCell;

use sluice_core::Secret;

use crate::{
    change::ChangeFields,
    store::{DocumentStore, StoreError, embedded::EmbeddedStore, postgres::PostgresStore},
};

/// Which store a stage keeps its documents in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    Embedded(PathBuf),
    Postgres { url: Secret, schema: String, table: String },
}

impl StoreSpec {
    pub async fn open(&self) -> Result<Arc<dyn DocumentStore>, StoreError> {
        Ok(match self {
            StoreSpec::Embedded(path) => Arc::new(EmbeddedStore::open(path)?),
            StoreSpec::Postgres { url, schema, table } => {
                Arc::new(PostgresStore::open(url.expose(), schema, table).await?)
            }
        })
    }
}

pub struct DocumentsTransform {
    name: String,
    fields: ChangeFields,
    spec: StoreSpec,
    store: OnceCell<Arc<dyn DocumentStore>>,
}

impl DocumentsTransform {
    pub fn new(name: &str, fields: ChangeFields, spec: StoreSpec) -> Self {
        DocumentsTransform {
            name: name.to_string(),
            fields,
            spec,
            store: OnceCell::new(),
        }
    }

    async fn store(&self) -> Result<&Arc<dyn DocumentStore>, StoreError> {
        self.store.get_or_try_init(|| self.spec.open()).await
    }
}

#[async_trait]
impl Transform for DocumentsTransform {
    async fn process(&self, batch: BatchInfo<'_>, events: Vec<Event>) -> Result<TransformOutput, StageError> {
        let mut output = TransformOutput::default();
        let mut changes = Vec::with_capacity(events.len());
        let mut sources = Vec::with_capacity(events.len());
        for event in events {
            let parsed = parse_object(&event.payload)
                .map_err(|(why, detail)| (why.to_string(), detail))
                .and_then(|value| self.fields.parse(&value));
            match parsed {
                Ok(change) => {
                    changes.push(change);
                    sources.push(event);
                }
                Err((why, detail)) => output.rejected.push(Rejected::new(event, why, detail)),
            }
        }
        let store = self.store().await?;
        let applied = store.apply(batch.key, batch.maybe_committed, &changes).await?;
        DocumentsTelemetry::new(&self.name).applied(&DocumentsApplied {
            applied: applied.stats.applied,
            noops: applied.stats.noops,
            stale_parts: applied.stats.stale_parts,
            stored: applied.stored,
            replayed: applied.replayed,
        });
        for emission in applied.emitted {
            let Some(source) = sources.get(emission.change) else {
                return Err(StageError::fatal(format!(
                    "batch {}: its record names change {} of {}; the batch changed since it was applied",
                    batch.key,
                    emission.change,
                    sources.len()
                )));
            };
            let doc = &emission.document;
            let mut payload = doc.to_event_json();
            payload["received_at_ms"] = batch.enqueued_at_ms.into();
            output.events.push(Event {
                line: source.line,
                raw: source.raw.clone(),
                payload: Bytes::from(payload.to_string()),
                id: Some(format!("{}/{}/{}", doc.key.entity, doc.key.id, doc.revision).into()),
                time_us: source.time_us,
                schema: None,
            });
        }
        Ok(output)
    }
}
