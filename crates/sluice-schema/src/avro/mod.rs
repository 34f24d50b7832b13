//! Avro schemas in the registry, and Avro datums as JSON.
//!
//! An Avro schema is registered like a JSON Schema (format `avro` in its
//! key); its fingerprint is the CRC-64-AVRO (Rabin) fingerprint of its
//! Parsing Canonical Form, the 8 bytes Avro's single-object encoding puts
//! in front of each datum. For compatibility checks and lake columns an
//! Avro schema is read as the JSON Schema its datums decode to
//! ([`to_json_schema`]): a record is an object whose fields without a
//! default and not nullable are required; timestamps are RFC 3339 strings
//! (`format: date-time`), dates `YYYY-MM-DD`; maps, multi-type unions and
//! named references are free-form (stored as JSON text); bytes are arrays
//! of integers.

pub mod transform;

use apache_avro::{Schema as AvroSchema, rabin::Rabin, types::Value as AvroValue};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use digest::Digest;
use serde_json::Value;
use sluice_core::JsonDoc;

/// The registry format of Avro schemas.
pub const FORMAT: &str = "avro";

/// The first two bytes of a single-object-encoded datum.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];

/// Parses an Avro schema given as JSON.
pub fn parse(schema: &Value) -> Result<AvroSchema, String> {
    AvroSchema::parse(schema).map_err(|e| format!("not a valid Avro schema: {e}"))
}

/// The schema's Parsing Canonical Form. apache-avro 0.21 leaves a primitive
/// with a logical type as `{"type":"long"}` once `logicalType` is stripped,
/// where the specification (and Java's and fastavro's implementations)
/// reduce it to `"long"`: its fingerprints of such schemas would match no
/// other producer's. The reduction is done here.
pub fn canonical_form(schema: &AvroSchema) -> String {
    let mut form = schema.canonical_form();
    for primitive in ["null", "boolean", "int", "long", "float", "double", "bytes", "string"] {
        form = form.replace(&format!("{{\"type\":\"{primitive}\"}}"), &format!("\"{primitive}\""));
    }
    form
}

/// The schema's Rabin fingerprint as single-object encoding writes it
/// (little-endian).
pub fn fingerprint_bytes(schema: &AvroSchema) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&Rabin::digest(canonical_form(schema).as_bytes()));
    out
}

/// The fingerprint as the registry shows it: 16 hex digits, header order.
pub fn fingerprint_hex(bytes: &[u8; 8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits a single-object-encoded datum into its fingerprint and body.
pub fn split_single_object(bytes: &[u8]) -> Result<([u8; 8], &[u8]), String> {
    if bytes.len() < 10 || bytes[..2] != SINGLE_OBJECT_MAGIC {
        return Err("not Avro single-object encoding (it starts with C3 01 and an 8-byte fingerprint)".into());
    }
    let mut fingerprint = [0u8; 8];
    fingerprint.copy_from_slice(&bytes[2..10]);
    Ok((fingerprint, &bytes[10..]))
}

/// The JSON Schema an Avro schema's datums decode to; a record's
/// properties come in the order of its fields.
pub fn to_json_schema(schema: &AvroSchema) -> JsonDoc {
    let typed = |t: &str| JsonDoc::object([("type", t.into())]);
    let formatted = |format: &str| JsonDoc::object([("type", "string".into()), ("format", format.into())]);
    let array_of = |items: JsonDoc| JsonDoc::object([("type", "array".into()), ("items", items)]);
    match schema {
        AvroSchema::Null => typed("null"),
        AvroSchema::Boolean => typed("boolean"),
        AvroSchema::Int | AvroSchema::Long | AvroSchema::TimeMillis | AvroSchema::TimeMicros => typed("integer"),
        AvroSchema::Float | AvroSchema::Double => typed("number"),
        AvroSchema::String | AvroSchema::Uuid => typed("string"),
        AvroSchema::Enum(e) => JsonDoc::object([("enum", strings(&e.symbols))]),
        AvroSchema::Bytes | AvroSchema::Fixed(_) => array_of(typed("integer")),
        AvroSchema::Date => formatted("date"),
        AvroSchema::TimestampMillis
        | AvroSchema::TimestampMicros
        | AvroSchema::TimestampNanos
        | AvroSchema::LocalTimestampMillis
        | AvroSchema::LocalTimestampMicros
        | AvroSchema::LocalTimestampNanos => formatted("date-time"),
        AvroSchema::Array(a) => array_of(to_json_schema(&a.items)),
        AvroSchema::Map(m) => JsonDoc::object([
            ("type", "object".into()),
            ("additionalProperties", to_json_schema(&m.types)),
        ]),
        AvroSchema::Union(u) => {
            let others: Vec<&AvroSchema> = u.variants().iter().filter(|v| **v != AvroSchema::Null).collect();
            match others.as_slice() {
                [only] if u.is_nullable() => nullable(to_json_schema(only)),
                [only] => to_json_schema(only),
                _ => JsonDoc::Object(Default::default()),
            }
        }
        AvroSchema::Record(r) => {
            let mut required = Vec::new();
            let mut properties = Vec::new();
            for field in &r.fields {
                let optional = field.default.is_some()
                    || matches!(&field.schema, AvroSchema::Union(u) if u.is_nullable())
                    || field.schema == AvroSchema::Null;
                if !optional {
                    required.push(field.name.clone());
                }
                properties.push((field.name.clone(), to_json_schema(&field.schema)));
            }
            JsonDoc::object([
                ("type", "object".into()),
                ("properties", JsonDoc::object(properties)),
                ("required", strings(&required)),
            ])
        }
        AvroSchema::Decimal(_) | AvroSchema::BigDecimal | AvroSchema::Duration | AvroSchema::Ref { .. } => {
            JsonDoc::Object(Default::default())
        }
    }
}

fn strings(items: &[String]) -> JsonDoc {
    JsonDoc::Array(items.iter().map(|s| s.as_str().into()).collect())
}

/// `schema` allowing `null` as well.
fn nullable(mut schema: JsonDoc) -> JsonDoc {
    let JsonDoc::Object(members) = &mut schema else {
        return schema;
    };
    match members.get_mut("type") {
        Some(ty @ JsonDoc::String(_)) => {
            let named = std::mem::take(ty);
            *ty = vec![named, "null".into()].into();
        }
        _ => {
            if let Some(JsonDoc::Array(symbols)) = members.get_mut("enum") {
                symbols.push(JsonDoc::Null);
            }
        }
    }
    schema
}

/// A decoded datum as JSON, in the shapes [`to_json_schema`] gives.
pub fn to_json(value: AvroValue) -> Result<Value, String> {
    Ok(match value {
        AvroValue::Union(_, inner) => to_json(*inner)?,
        AvroValue::Record(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| to_json(v).map(|v| (k, v)))
                .collect::<Result<_, _>>()?,
        ),
        AvroValue::Map(items) => Value::Object(
            items
                .into_iter()
                .map(|(k, v)| to_json(v).map(|v| (k, v)))
                .collect::<Result<_, _>>()?,
        ),
        AvroValue::Array(items) => Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?),
        AvroValue::TimestampMillis(ms) | AvroValue::LocalTimestampMillis(ms) => {
            timestamp(DateTime::from_timestamp_millis(ms), ms)?
        }
        AvroValue::TimestampMicros(us) | AvroValue::LocalTimestampMicros(us) => {
            timestamp(DateTime::from_timestamp_micros(us), us)?
        }
        AvroValue::TimestampNanos(ns) | AvroValue::LocalTimestampNanos(ns) => {
            timestamp(Some(DateTime::from_timestamp_nanos(ns)), ns)?
        }
        AvroValue::Date(days) => {
            let date = NaiveDate::from_ymd_opt(1970, 1, 1)
                .and_then(|epoch| epoch.checked_add_signed(chrono::Duration::days(days.into())))
                .ok_or_else(|| format!("date {days} days from 1970-01-01 is out of range"))?;
            Value::String(date.format("%Y-%m-%d").to_string())
        }
        AvroValue::Uuid(u) => Value::String(u.to_string()),
        other => Value::try_from(other).map_err(|e| e.to_string())?,
    })
}

fn timestamp(at: Option<DateTime<Utc>>, raw: i64) -> Result<Value, String> {
    let at = at.ok_or_else(|| format!("timestamp {raw} is out of range"))?;
    Ok(Value::String(at.to_rfc3339_opts(SecondsFormat::AutoSi, true)))
}

#[cfg(test)]
mod tests;
