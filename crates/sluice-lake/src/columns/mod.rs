//! Events to Arrow record batches of a table's data columns, two ways:
//! built from the documents the `validate` transform parsed and kept on
//! the events ([`built`]: no second parse), or decoded from the payloads'
//! JSON text by arrow-json (every other event, and any group the first way
//! declines). Both give the same batch; arrow-json's is the reference.
//!
//! Values at JSON text paths (free-form objects the schema leaves open)
//! are stored as their JSON text, serde_json's.

mod built;

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_json::ReaderBuilder;
use arrow_schema::Schema;
use bytes::Bytes;
use serde_json::Value;
use sluice_core::{Event, Rejected, StageError, reason};

/// How the events of one table become record batches.
pub struct EventColumns {
    schema: Arc<Schema>,
    json_text_paths: Vec<Vec<String>>,
    /// `None` when a column's type is one only arrow-json decodes.
    built: Option<built::Columns>,
}

impl EventColumns {
    /// For the data columns `schema`, with values at `json_text_paths`
    /// (member names from the root; arrays passed through) stored as text.
    pub fn new(schema: Arc<Schema>, json_text_paths: Vec<Vec<String>>) -> EventColumns {
        EventColumns {
            built: built::Columns::plan(&schema, &json_text_paths),
            schema,
            json_text_paths,
        }
    }

    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    pub fn json_text_paths(&self) -> &[Vec<String>] {
        &self.json_text_paths
    }

    /// One record batch of `events`; events that do not decode are
    /// returned as rejected (`encode:arrow`) and left out.
    pub fn decode(
        &mut self,
        events: Vec<Event>,
        rejected: &mut Vec<Rejected>,
    ) -> Result<Option<RecordBatch>, StageError> {
        if let Some(batch) = self.build_from_kept_parses(&events) {
            return Ok(Some(batch));
        }
        let payloads: Vec<Bytes> = events.iter().map(|e| self.payload_as_text(e)).collect();
        match decode_payloads(&self.schema, &payloads) {
            Ok(batch) => Ok(batch),
            Err(_) => {
                // Find the lines that fail, set them aside, decode the rest.
                let mut good = Vec::with_capacity(payloads.len());
                for (event, payload) in events.into_iter().zip(payloads) {
                    match decode_payloads(&self.schema, std::slice::from_ref(&payload)) {
                        Ok(_) => good.push(payload),
                        Err(e) => rejected.push(Rejected::new(event, format!("{}:arrow", reason::ENCODE), e)),
                    }
                }
                decode_payloads(&self.schema, &good)
                    .map_err(|e| StageError::fatal(format!("decoding checked rows: {e}")))
            }
        }
    }

    /// The batch built from every event's kept parse; `None` if one has
    /// none, a value is one arrow-json would convert or refuse, or the
    /// columns are of types only arrow-json decodes.
    pub fn build_from_kept_parses(&mut self, events: &[Event]) -> Option<RecordBatch> {
        self.built.as_mut()?.build(events)
    }

    /// The batch arrow-json decodes from the payloads; the error of the
    /// first that does not decode.
    pub fn decode_with_arrow_json(&self, events: &[Event]) -> Result<Option<RecordBatch>, String> {
        let payloads: Vec<Bytes> = events.iter().map(|e| self.payload_as_text(e)).collect();
        decode_payloads(&self.schema, &payloads)
    }

    /// The payload with the values at JSON text paths turned into strings.
    fn payload_as_text(&self, event: &Event) -> Bytes {
        if self.json_text_paths.is_empty() {
            return event.payload.clone();
        }
        let Ok(mut value) = serde_json::from_slice::<Value>(&event.payload) else {
            return event.payload.clone();
        };
        for path in &self.json_text_paths {
            stringify_at(&mut value, path);
        }
        Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
    }
}

fn decode_payloads(schema: &Arc<Schema>, payloads: &[Bytes]) -> Result<Option<RecordBatch>, String> {
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(payloads.len().max(1))
        .with_strict_mode(false)
        .build_decoder()
        .map_err(|e| e.to_string())?;
    for payload in payloads {
        let mut rest: &[u8] = payload;
        while !rest.is_empty() {
            let used = decoder.decode(rest).map_err(|e| e.to_string())?;
            if used == 0 {
                break;
            }
            rest = &rest[used..];
        }
        decoder.decode(b"\n").map_err(|e| e.to_string())?;
    }
    decoder.flush().map_err(|e| e.to_string())
}

/// Replaces the value at `path` (through arrays: every element) by its JSON text.
fn stringify_at(value: &mut Value, path: &[String]) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|v| stringify_at(v, path)),
        Value::Object(map) => {
            let Some((first, rest)) = path.split_first() else {
                return;
            };
            let Some(child) = map.get_mut(first) else { return };
            if rest.is_empty() {
                if !child.is_null() && !child.is_string() {
                    *child = Value::String(child.to_string());
                }
            } else {
                stringify_at(child, rest);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
