//! The `self_describing` transform: events that name their schema
//! (`{"schema": "iglu:com.acme/page_view/jsonschema/1-0-2", "data": {...}}`,
//! pointers configurable) are validated against exactly that registered
//! version, stamped with id and time from `data`, and passed on as their
//! `data` object, with the schema key kept in a field (`/_schema` by default)
//! and in [`Event::schema`] (what a routed lake sink routes by).
//!
//! Schemas come from the registry and are cached once compiled: a version
//! never changes, so a cached one is never stale. A key the registry does
//! not have makes the event a dead letter (`unknown_schema`); the miss is
//! remembered for `recheck_secs`, after which a newly registered version is
//! found. If the registry cannot be read for a key not yet cached, the
//! batch fails as retriable and comes back later; events of cached schemas
//! never need the registry.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use jsonschema::json::SerdeJson;
use serde_json::Value;
use sluice_core::{BatchInfo, Event, Rejected, StageError, Transform, TransformOutput, parse_object, reason};

use crate::{
    registered::{Lookup, RegisteredValidators},
    registry::Registry,
    validate::{EventFields, schema_reason},
};

/// Where a self-describing event keeps its parts.
#[derive(Debug, Clone)]
pub struct Pointers {
    pub schema: String,
    pub data: String,
    pub event_id: String,
    pub event_time: String,
    /// Where the output keeps the schema key (`None`: left out).
    pub key_field: Option<String>,
}

pub struct SelfDescribingTransform {
    validators: RegisteredValidators,
    pointers: Pointers,
    fields: EventFields,
}

impl SelfDescribingTransform {
    pub fn new(registry: Registry, pointers: Pointers, recheck: Duration) -> Self {
        SelfDescribingTransform {
            validators: RegisteredValidators::new(registry, recheck),
            fields: EventFields::new(&pointers.event_id, &pointers.event_time),
            pointers,
        }
    }

    /// One event: its data, checked and stamped, as the new payload.
    async fn check(&self, event: &mut Event) -> Result<Result<(), (String, String)>, StageError> {
        let mut value = match parse_object(&event.payload) {
            Ok(v) => v,
            Err((why, detail)) => return Ok(Err((why.to_string(), detail))),
        };
        let p = &self.pointers;
        let Some(Value::String(key)) = value.pointer(&p.schema).cloned() else {
            return Ok(Err((
                reason::UNKNOWN_SCHEMA.into(),
                format!("no schema key (a string) at {}", p.schema),
            )));
        };
        let validator = match self.validators.lookup(&key).await? {
            Lookup::Found(v) => v,
            Lookup::Unknown(why) => return Ok(Err((reason::UNKNOWN_SCHEMA.into(), why))),
        };
        let Some(data @ Value::Object(_)) = value.pointer(&p.data) else {
            return Ok(Err((
                reason::NOT_AN_OBJECT.into(),
                format!("no object at {} (the event's data)", p.data),
            )));
        };
        if !validator.is_valid(data)
            && let Some(error) = validator.iter_errors(data).next()
        {
            return Ok(Err((schema_reason(&error), error.to_string())));
        }
        if let Err(e) = self.fields.stamp::<SerdeJson>(data, event) {
            return Ok(Err(e));
        }
        let mut out = value.pointer_mut(&p.data).map(Value::take).unwrap_or_default();
        event.schema = Some(Arc::from(key.as_str()));
        if let (Some(field), Value::Object(map)) = (&p.key_field, &mut out) {
            map.insert(field.trim_start_matches('/').to_string(), Value::String(key));
        }
        event.payload = Bytes::from(serde_json::to_vec(&out).unwrap_or_default());
        Ok(Ok(()))
    }
}

#[async_trait]
impl Transform for SelfDescribingTransform {
    async fn process(&self, _batch: BatchInfo<'_>, events: Vec<Event>) -> Result<TransformOutput, StageError> {
        let mut out = TransformOutput {
            events: Vec::with_capacity(events.len()),
            ..TransformOutput::default()
        };
        for mut event in events {
            match self.check(&mut event).await? {
                Ok(()) => out.events.push(event),
                Err((why, detail)) => out.rejected.push(Rejected::new(event, why, detail)),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
