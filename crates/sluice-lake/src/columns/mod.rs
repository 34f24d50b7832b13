//! Events to Arrow record batches of a table's data columns, two ways:
//! appended to typed builders as sonic-rs parses each payload ([`built`]),
//! or decoded from the payloads' JSON text by arrow-json (any group the
//! first way declines, and tables with column types it does not build).
//! Both give the same batch (ADR 0088; floats too, since serde_json parses
//! them correctly rounded, ADR 0089). arrow-json's is the reference, and
//! the only one that rejects lines.
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

/// Decodes events into one record batch; events that do not decode are
/// returned as rejected (`encode:arrow`) and left out.
pub(crate) fn decode_events(
    schema: &Arc<Schema>,
    json_text_paths: &[Vec<String>],
    events: Vec<Event>,
    rejected: &mut Vec<Rejected>,
) -> Result<Option<RecordBatch>, StageError> {
    if let Some(batch) = build(schema, json_text_paths, &events) {
        return Ok(Some(batch));
    }
    let payloads: Vec<Bytes> = events.iter().map(|e| payload_for_columns(json_text_paths, e)).collect();
    match decode_payloads(schema, &payloads) {
        Ok(batch) => Ok(batch),
        Err(_) => {
            // Find the lines that fail, set them aside, decode the rest.
            let mut good = Vec::with_capacity(payloads.len());
            for (event, payload) in events.into_iter().zip(payloads) {
                match decode_payloads(schema, std::slice::from_ref(&payload)) {
                    Ok(_) => good.push(payload),
                    Err(e) => rejected.push(Rejected::new(event, format!("{}:arrow", reason::ENCODE), e)),
                }
            }
            decode_payloads(schema, &good).map_err(|e| StageError::fatal(format!("decoding checked rows: {e}")))
        }
    }
}

/// The batch built from the events' parsed payloads; `None` if there are
/// no events, a payload holds a value arrow-json would convert or refuse,
/// or a column is of a type only arrow-json decodes.
fn build(schema: &Arc<Schema>, json_text_paths: &[Vec<String>], events: &[Event]) -> Option<RecordBatch> {
    if events.is_empty() {
        return None;
    }
    built::Columns::plan(schema, json_text_paths)?.build(events)
}

/// The payload with values stored as JSON text turned into strings.
fn payload_for_columns(json_text_paths: &[Vec<String>], event: &Event) -> Bytes {
    if json_text_paths.is_empty() {
        return event.payload.clone();
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(&event.payload) else {
        return event.payload.clone();
    };
    for path in json_text_paths {
        stringify_at(&mut value, path);
    }
    Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
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
