//! Cells: one JSON value checked against its column's type and kept in the
//! form the binary COPY protocol sends. A value that does not fit is never
//! cast; the caller refuses the event with the reason built here.

use bytes::{BufMut, BytesMut};
use chrono::DateTime;
use serde_json::Value;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::shape::PgType;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Microseconds since the Unix epoch, UTC.
    Time(i64),
    /// JSON text.
    Json(String),
    Uuid([u8; 16]),
}

/// Why a value cannot be stored in its column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misfit {
    /// The value's JSON type or range does not fit the column type.
    Type(String),
    /// PostgreSQL cannot store it at all (U+0000 in text or jsonb).
    Unstorable(String),
}

impl Cell {
    /// The cell for `value` in a column of type `ty` (`value` is not null).
    pub fn from_json(ty: PgType, value: Value) -> Result<Cell, Misfit> {
        let misfit = |v: &Value| Misfit::Type(format!("expected {}, got {}", ty.sql(), describe(v)));
        match (ty, value) {
            (PgType::Text, Value::String(s)) => {
                if s.contains('\0') {
                    return Err(nul());
                }
                Ok(Cell::Text(s))
            }
            (PgType::BigInt, Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Ok(Cell::Int(i)),
                // JSON Schema's `integer` includes 3.0; 1.5 and 2^63 do not fit.
                (None, Some(f)) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => {
                    Ok(Cell::Int(f as i64))
                }
                _ => Err(Misfit::Type(format!("{n} does not fit bigint"))),
            },
            (PgType::Double, Value::Number(n)) => n
                .as_f64()
                .map(Cell::Float)
                .ok_or_else(|| Misfit::Type(format!("{n} does not fit double precision"))),
            (PgType::Boolean, Value::Bool(b)) => Ok(Cell::Bool(b)),
            (PgType::Timestamptz, Value::String(s)) => DateTime::parse_from_rfc3339(&s)
                .map(|t| Cell::Time(t.timestamp_micros()))
                .map_err(|e| Misfit::Type(format!("{s:?} is not an RFC 3339 timestamp ({e})"))),
            (PgType::Jsonb, v) => {
                if has_nul(&v) {
                    return Err(nul());
                }
                Ok(Cell::Json(v.to_string()))
            }
            (_, v) => Err(misfit(&v)),
        }
    }
}

fn nul() -> Misfit {
    Misfit::Unstorable("PostgreSQL text and jsonb cannot hold the character U+0000".into())
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// A short description of a JSON value for messages.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.chars().count() > 40 => format!("a string of {} characters", s.chars().count()),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

impl ToSql for Cell {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Cell::Text(s) => out.put_slice(s.as_bytes()),
            Cell::Int(i) => out.put_i64(*i),
            Cell::Float(f) => out.put_f64(*f),
            Cell::Bool(b) => out.put_u8(u8::from(*b)),
            Cell::Time(us) => out.put_i64(us - PG_EPOCH_OFFSET_US),
            Cell::Json(text) => {
                // jsonb's binary format: a version byte, then the JSON text.
                out.put_u8(1);
                out.put_slice(text.as_bytes());
            }
            Cell::Uuid(bytes) => out.put_slice(bytes),
        }
        Ok(IsNull::No)
    }

    /// The flattener made each cell for its column's type.
    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_fit_their_column_type_or_are_refused_without_a_cast() {
        let ok = |ty, v: Value| Cell::from_json(ty, v).unwrap();
        let bad = |ty, v: Value| Cell::from_json(ty, v).unwrap_err();
        assert_eq!(ok(PgType::BigInt, json!(3)), Cell::Int(3));
        assert_eq!(ok(PgType::BigInt, json!(3.0)), Cell::Int(3));
        assert_eq!(ok(PgType::Double, json!(3)), Cell::Float(3.0));
        assert_eq!(
            ok(PgType::Timestamptz, json!("1970-01-01T00:00:01Z")),
            Cell::Time(1_000_000)
        );
        assert_eq!(ok(PgType::Jsonb, json!(["a", 1])), Cell::Json("[\"a\",1]".into()));
        assert_eq!(
            bad(PgType::Text, json!(5)),
            Misfit::Type("expected text, got number 5".into())
        );
        assert_eq!(
            bad(PgType::BigInt, json!(1.5)),
            Misfit::Type("1.5 does not fit bigint".into())
        );
        assert!(matches!(bad(PgType::BigInt, json!(u64::MAX)), Misfit::Type(_)));
        assert!(matches!(bad(PgType::Boolean, json!("true")), Misfit::Type(_)));
        assert!(matches!(bad(PgType::Timestamptz, json!("yesterday")), Misfit::Type(_)));
        assert!(matches!(bad(PgType::Text, json!("a\u{0}b")), Misfit::Unstorable(_)));
        assert!(matches!(
            bad(PgType::Jsonb, json!({"k": ["\u{0}"]})),
            Misfit::Unstorable(_)
        ));
    }
}
