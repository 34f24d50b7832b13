//! The `snowplow` transform: the collector's lines of Snowplow tracker
//! events (`protocol = "snowplow"` on an `http` source) made events of
//! Snowplow's canonical event model, shaped as Snowplow's lake loader
//! writes its table: the atomic fields ([`atomic`]), the self-describing
//! event in its `unstruct_event_*` column and each entity in its
//! `contexts_*` column ([`columns`]).
//!
//! The self-describing event (`ue_pr` as JSON or `ue_px` as base64) and the
//! entities (`co` or `cx`) are checked against exactly the registered
//! version they name. A tracker event becomes a dead letter, with its
//! bytes, when a parameter breaks the tracker protocol
//! (`tracker_protocol:<parameter>`), when a schema it names is not
//! registered (`unknown_schema`, the detail naming the schema and where it
//! was used), or when a part breaks its schema (`schema:<pointer>:<keyword>`
//! with the pointer under `/unstruct_event` or `/contexts/<i>`, the detail
//! naming the schema). Snowplow's enrich sends such events to its bad rows
//! whole, and so does this transform: no part of a failed event reaches a
//! table.
//!
//! Each output event carries its id (`event_id`), its time
//! (`collector_tstamp`, what the table is partitioned by) and its shape
//! (which columns it fills, in [`sluice_core::Event::schema`]), from which
//! the lake sink widens the table.

pub mod atomic;
pub mod columns;

use std::{sync::OnceLock, time::Duration};

use async_trait::async_trait;
use base64::{
    Engine,
    alphabet::URL_SAFE,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};
use sluice_core::{BatchInfo, Event, JsonDoc, Rejected, StageError, Transform, TransformOutput, reason};

use crate::{
    ArrowLayout, arrow_layout,
    registered::{Lookup, RegisteredValidators},
    registry::{Registry, SchemaKey},
    validate::schema_reason_under,
};
use atomic::ProtocolError;
use columns::{Entity, column_name, shape_key, snake_case_keys};

/// `user_ipaddress`: what the table keeps of the client's address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IpAddresses {
    /// The address as seen (or as the tracker's `ip` parameter gave it).
    #[default]
    Full,
    /// The last IPv4 octet, or the last 80 bits of an IPv6 address, made
    /// `x` (`203.0.113.x`), as Snowplow's IP anonymisation does.
    Anonymized,
    /// No address.
    None,
}

/// The atomic columns, as Arrow (`atomic.schema.json`).
pub fn atomic_layout() -> &'static ArrowLayout {
    static LAYOUT: OnceLock<ArrowLayout> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let schema: JsonDoc = include_str!("atomic.schema.json")
            .parse()
            .expect("atomic.schema.json is JSON");
        arrow_layout(&schema).expect("atomic.schema.json maps to Arrow")
    })
}

const UNSTRUCT_ENVELOPE: &str = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-";
const CONTEXTS_ENVELOPE: &str = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-";

pub struct SnowplowTransform {
    validators: RegisteredValidators,
    ip: IpAddresses,
}

/// Why an event is a dead letter: reason and detail.
type Refusal = (String, String);

impl SnowplowTransform {
    /// Schemas come from `registry`; one it did not have is looked up
    /// again after `recheck`.
    pub fn new(registry: Registry, recheck: Duration, ip: IpAddresses) -> Self {
        SnowplowTransform {
            validators: RegisteredValidators::new(registry, recheck),
            ip,
        }
    }

    async fn shape(&self, event: &mut Event, etl_tstamp: &str) -> Result<Result<(), Refusal>, StageError> {
        let line: Value = match serde_json::from_slice(&event.payload) {
            Ok(v) => v,
            Err(e) => return Ok(Err((reason::INVALID_JSON.into(), e.to_string()))),
        };
        let atomic = match atomic::atomic(line, &event.raw, etl_tstamp) {
            Ok(a) => a,
            Err(e) => return Ok(Err(protocol(e))),
        };
        let mut fields = atomic.fields;
        self.apply_ip_policy(&mut fields);
        let mut shape = Vec::new();
        if atomic.self_describing {
            let envelope = match self_describing(&atomic.parameters, "ue_pr", "ue_px", UNSTRUCT_ENVELOPE) {
                Ok(Some(envelope)) => envelope,
                Ok(None) => {
                    return Ok(Err(protocol(ProtocolError::new(
                        "ue_pr",
                        "an event with e=ue needs ue_pr or ue_px",
                    ))));
                }
                Err(e) => return Ok(Err(protocol(e))),
            };
            let (key, data) = match instance(envelope, "ue_px") {
                Ok(parts) => parts,
                Err(e) => return Ok(Err(protocol(e))),
            };
            let parsed = match self.check(&key, &data, "/unstruct_event").await? {
                Ok(parsed) => parsed,
                Err(refusal) => return Ok(Err(refusal)),
            };
            atomic::name_event(&parsed, &mut fields);
            fields.insert(column_name(Entity::Unstruct, &parsed), snake_case_keys(data));
            shape.push((Entity::Unstruct, key));
        }
        match self_describing(&atomic.parameters, "co", "cx", CONTEXTS_ENVELOPE) {
            Ok(None) => {}
            Ok(Some(Value::Array(entities))) => {
                let mut by_column: Map<String, Value> = Map::new();
                for (i, entity) in entities.into_iter().enumerate() {
                    let (key, data) = match instance(entity, "cx") {
                        Ok(parts) => parts,
                        Err(e) => return Ok(Err(protocol(e))),
                    };
                    let parsed = match self.check(&key, &data, &format!("/contexts/{i}")).await? {
                        Ok(parsed) => parsed,
                        Err(refusal) => return Ok(Err(refusal)),
                    };
                    let column = by_column
                        .entry(column_name(Entity::Contexts, &parsed))
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(items) = column {
                        items.push(snake_case_keys(data));
                    }
                    shape.push((Entity::Contexts, key));
                }
                fields.extend(by_column);
            }
            Ok(Some(_)) => {
                return Ok(Err(protocol(ProtocolError::new(
                    "cx",
                    "the contexts' data is not an array",
                ))));
            }
            Err(e) => return Ok(Err(protocol(e))),
        }
        event.id = fields.get("event_id").and_then(Value::as_str).map(Into::into);
        event.time_us = Some(atomic.collector_us);
        event.schema = Some(shape_key(shape.iter().map(|(e, k)| (*e, k.as_str()))).into());
        event.payload = Bytes::from(serde_json::to_vec(&Value::Object(fields)).unwrap_or_default());
        Ok(Ok(()))
    }

    /// `data` against the registered `key`, as the part at `pointer`; the
    /// key, parsed.
    async fn check(&self, key: &str, data: &Value, pointer: &str) -> Result<Result<SchemaKey, Refusal>, StageError> {
        let parsed: SchemaKey = match key.parse() {
            Ok(parsed) => parsed,
            Err(e) => return Ok(Err((reason::UNKNOWN_SCHEMA.into(), format!("{pointer}: {e}")))),
        };
        let validator = match self.validators.lookup(key).await? {
            Lookup::Found(v) => v,
            Lookup::Unknown(why) => {
                return Ok(Err((reason::UNKNOWN_SCHEMA.into(), format!("{pointer}: {why}"))));
            }
        };
        if !validator.is_valid(data)
            && let Some(error) = validator.iter_errors(data).next()
        {
            return Ok(Err((schema_reason_under(pointer, &error), format!("{key}: {error}"))));
        }
        Ok(Ok(parsed))
    }

    fn apply_ip_policy(&self, fields: &mut Map<String, Value>) {
        match self.ip {
            IpAddresses::Full => {}
            IpAddresses::None => {
                fields.remove("user_ipaddress");
            }
            IpAddresses::Anonymized => {
                if let Some(Value::String(ip)) = fields.get_mut("user_ipaddress") {
                    *ip = anonymized(ip);
                }
            }
        }
    }
}

fn protocol(e: ProtocolError) -> Refusal {
    (reason::at(reason::TRACKER_PROTOCOL, &e.parameter), e.detail)
}

/// The envelope a tracker sent as JSON in `json_param` or as base64 in
/// `base64_param`, checked to be `envelope_schema`'s; its `data`.
fn self_describing(
    parameters: &Map<String, Value>,
    json_param: &str,
    base64_param: &str,
    envelope_schema: &str,
) -> Result<Option<Value>, ProtocolError> {
    let (param, text) = match (parameters.get(json_param), parameters.get(base64_param)) {
        (Some(Value::String(json)), _) if !json.is_empty() => (json_param, json.clone()),
        (_, Some(Value::String(encoded))) if !encoded.is_empty() => {
            let bytes = base64_any(encoded)
                .ok_or_else(|| ProtocolError::new(base64_param, "not base64 (standard or URL-safe)"))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| ProtocolError::new(base64_param, "its base64 does not decode to UTF-8 text"))?;
            (base64_param, text)
        }
        _ => return Ok(None),
    };
    let envelope: Value =
        serde_json::from_str(&text).map_err(|e| ProtocolError::new(param, format!("not JSON: {e}")))?;
    let Value::Object(mut envelope) = envelope else {
        return Err(ProtocolError::new(param, "not a self-describing JSON object"));
    };
    let named = envelope.get("schema").and_then(Value::as_str).unwrap_or_default();
    if !named.starts_with(envelope_schema) {
        return Err(ProtocolError::new(
            param,
            format!("its schema is {named:?}, not {envelope_schema}*-*"),
        ));
    }
    envelope
        .remove("data")
        .map(Some)
        .ok_or_else(|| ProtocolError::new(param, "the envelope has no \"data\""))
}

/// A self-describing instance's schema key (text) and data.
fn instance(value: Value, param: &str) -> Result<(String, Value), ProtocolError> {
    let Value::Object(mut instance) = value else {
        return Err(ProtocolError::new(param, "a self-describing instance is not an object"));
    };
    let Some(Value::String(key)) = instance.remove("schema") else {
        return Err(ProtocolError::new(
            param,
            "a self-describing instance has no \"schema\" key",
        ));
    };
    let data = instance
        .remove("data")
        .ok_or_else(|| ProtocolError::new(param, format!("the instance of {key} has no \"data\"")))?;
    Ok((key, data))
}

/// Base64 in either alphabet, padded or not (trackers send URL-safe
/// without padding; hand-written pixels often send the standard form).
fn base64_any(text: &str) -> Option<Vec<u8>> {
    const ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
        &URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let url_safe: String = text
        .trim()
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    ANY_PADDING.decode(url_safe).ok()
}

/// `203.0.113.9` -> `203.0.113.x`; an IPv6 address keeps its first three
/// groups (`2001:db8:85a3:x:x:x:x:x`); anything else becomes `x`.
fn anonymized(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.x")
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:x:x:x:x:x", s[0], s[1], s[2])
        }
        Err(_) => "x".into(),
    }
}

#[async_trait]
impl Transform for SnowplowTransform {
    async fn process(&self, _batch: BatchInfo<'_>, events: Vec<Event>) -> Result<TransformOutput, StageError> {
        let etl_tstamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut out = TransformOutput {
            events: Vec::with_capacity(events.len()),
            ..TransformOutput::default()
        };
        for mut event in events {
            match self.shape(&mut event, &etl_tstamp).await? {
                Ok(()) => out.events.push(event),
                Err((why, detail)) => out.rejected.push(Rejected::new(event, why, detail)),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
