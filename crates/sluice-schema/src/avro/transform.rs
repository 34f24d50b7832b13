//! The `avro` transform: each line is one Avro datum in single-object
//! encoding, base64-encoded (batches are lines of text). The 8-byte
//! fingerprint in its header names the registered Avro schema that decodes
//! it; the event goes on as the datum's JSON, stamped with id and time and
//! carrying its schema key (in a field, `/_schema` by default, and in
//! `Event::schema`, which a routed lake sink routes by).
//!
//! Schemas are kept once found (a version never changes). An unknown
//! fingerprint re-reads the registry at most every `recheck` and is an
//! `unknown_schema` dead letter meanwhile; a line that is not base64, not
//! single-object encoded or does not decode with its schema is an
//! `invalid_avro` dead letter. If the registry cannot be read for an
//! uncached fingerprint, the batch fails as retriable.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use apache_avro::Schema as AvroSchema;
use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use jsonschema::json::SerdeJson;
use serde_json::Value;
use sluice_core::{BatchInfo, Event, Rejected, StageError, Transform, TransformOutput, reason};

use super::{fingerprint_hex, split_single_object, to_json};
use crate::{registry::Registry, validate::EventFields};

/// A registered Avro schema, ready to decode.
struct Known {
    key: Arc<str>,
    schema: AvroSchema,
}

pub struct AvroTransform {
    registry: Registry,
    fields: EventFields,
    key_field: Option<String>,
    recheck: Duration,
    known: RwLock<HashMap<[u8; 8], Arc<Known>>>,
    /// When the registry was last read for fingerprints it did not have.
    last_scan: tokio::sync::Mutex<Option<Instant>>,
}

impl AvroTransform {
    /// `event_id` and `event_time` are JSON pointers into the decoded datum.
    pub fn new(
        registry: Registry,
        event_id: &str,
        event_time: &str,
        key_field: Option<String>,
        recheck: Duration,
    ) -> Self {
        AvroTransform {
            registry,
            fields: EventFields::new(event_id, event_time),
            key_field,
            recheck,
            known: RwLock::new(HashMap::new()),
            last_scan: tokio::sync::Mutex::new(None),
        }
    }

    fn cached(&self, fingerprint: &[u8; 8]) -> Option<Arc<Known>> {
        self.known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(fingerprint)
            .cloned()
    }

    /// The schema with `fingerprint`, reading the registry's Avro schemas
    /// again if the last read is older than `recheck`.
    async fn lookup(&self, fingerprint: &[u8; 8]) -> Result<Option<Arc<Known>>, StageError> {
        if let Some(known) = self.cached(fingerprint) {
            return Ok(Some(known));
        }
        let mut last_scan = self.last_scan.lock().await;
        if last_scan.is_some_and(|at| at.elapsed() < self.recheck) {
            return Ok(None);
        }
        let registered = self
            .registry
            .list()
            .await
            .map_err(|e| StageError::from_backend(format!("schema registry: {e}"), &e))?;
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        for r in registered.into_iter().filter(|r| r.key.format == super::FORMAT) {
            let Ok(schema) = super::parse(&r.schema.to_value()) else {
                continue;
            };
            known.insert(
                super::fingerprint_bytes(&schema),
                Arc::new(Known {
                    key: Arc::from(r.key.to_string()),
                    schema,
                }),
            );
        }
        *last_scan = Some(Instant::now());
        Ok(known.get(fingerprint).cloned())
    }

    /// One line decoded into the event's new payload.
    async fn decode(&self, event: &mut Event) -> Result<Result<(), (String, String)>, StageError> {
        let invalid = |detail: String| Ok(Err((reason::INVALID_AVRO.to_string(), detail)));
        let text = event.payload.trim_ascii();
        let bytes = match base64::engine::general_purpose::STANDARD.decode(text) {
            Ok(bytes) => bytes,
            Err(e) => return invalid(format!("not base64: {e}")),
        };
        let (fingerprint, mut body) = match split_single_object(&bytes) {
            Ok(parts) => parts,
            Err(e) => return invalid(e),
        };
        let Some(known) = self.lookup(&fingerprint).await? else {
            return Ok(Err((
                reason::UNKNOWN_SCHEMA.into(),
                format!(
                    "no registered Avro schema has fingerprint {}",
                    fingerprint_hex(&fingerprint)
                ),
            )));
        };
        let datum = match apache_avro::from_avro_datum(&known.schema, &mut body, None) {
            Ok(datum) => datum,
            Err(e) => return invalid(format!("{}: {e}", known.key)),
        };
        if !body.is_empty() {
            return invalid(format!("{}: {} bytes left after the datum", known.key, body.len()));
        }
        let mut value = match to_json(datum) {
            Ok(value @ Value::Object(_)) => value,
            Ok(_) => return invalid(format!("{}: the datum is not a record", known.key)),
            Err(e) => return invalid(format!("{}: {e}", known.key)),
        };
        if let Err(e) = self.fields.stamp::<SerdeJson>(&value, event) {
            return Ok(Err(e));
        }
        if let (Some(field), Value::Object(map)) = (&self.key_field, &mut value) {
            map.insert(field.clone(), Value::String(known.key.to_string()));
        }
        event.schema = Some(known.key.clone());
        event.payload = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
        Ok(Ok(()))
    }
}

#[async_trait]
impl Transform for AvroTransform {
    async fn process(&self, _batch: BatchInfo<'_>, events: Vec<Event>) -> Result<TransformOutput, StageError> {
        let mut out = TransformOutput {
            events: Vec::with_capacity(events.len()),
            ..TransformOutput::default()
        };
        for mut event in events {
            match self.decode(&mut event).await? {
                Ok(()) => out.events.push(event),
                Err((why, detail)) => out.rejected.push(Rejected::new(event, why, detail)),
            }
        }
        Ok(out)
    }
}
