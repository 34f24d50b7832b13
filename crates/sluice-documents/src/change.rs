//! Change events as the `documents` stage reads them: where each field
//! lives (JSON pointers, configurable) and what a well-formed change is.

use serde::Deserialize;
use serde_json::{Map, Value};
use sluice_core::json_kind;

use crate::merge::Version;

/// Where a change event keeps its parts; the defaults are the shape
/// `sluice-gen cdc` writes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeFields {
    /// JSON pointer to the entity the document belongs to (`"doctor"`).
    #[serde(default = "default_entity")]
    pub entity: String,
    /// JSON pointer to the document id within its entity.
    #[serde(default = "default_id")]
    pub id: String,
    /// JSON pointer to the change's version (any integer that grows with
    /// each change at the source, up to 38 digits: a number, or a string of
    /// digits such as a stream's sequence number).
    #[serde(default = "default_version")]
    pub version: String,
    /// JSON pointer to the operation: `"upsert"` (merge the patch) or
    /// `"delete"`.
    #[serde(default = "default_op")]
    pub op: String,
    /// JSON pointer to the partial document (JSON merge patch: absent =
    /// unchanged, null = delete).
    #[serde(default = "default_patch")]
    pub patch: String,
    /// JSON pointer to the change's time (RFC 3339), kept with the document.
    #[serde(default = "default_ts")]
    pub ts: String,
}

fn default_entity() -> String {
    "/entity".into()
}
fn default_id() -> String {
    "/id".into()
}
fn default_version() -> String {
    "/version".into()
}
fn default_op() -> String {
    "/op".into()
}
fn default_patch() -> String {
    "/patch".into()
}
fn default_ts() -> String {
    "/ts".into()
}

impl Default for ChangeFields {
    fn default() -> Self {
        ChangeFields {
            entity: default_entity(),
            id: default_id(),
            version: default_version(),
            op: default_op(),
            patch: default_patch(),
            ts: default_ts(),
        }
    }
}

/// A document's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocKey {
    pub entity: String,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// An RFC 7396 merge patch of the document.
    Upsert(Map<String, Value>),
    Delete,
}

/// One well-formed change event.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub key: DocKey,
    pub version: Version,
    /// The change's time as the source wrote it, if it has one.
    pub ts: Option<String>,
    pub op: Op,
}

impl ChangeFields {
    /// Checks that every field is a JSON pointer; errors name the key.
    pub fn check(&self) -> Result<(), String> {
        for (key, pointer) in self.named() {
            if !pointer.starts_with('/') {
                return Err(format!(
                    "{key}: {pointer:?} is not a JSON pointer; write it like \"/id\""
                ));
            }
        }
        Ok(())
    }

    fn named(&self) -> [(&'static str, &str); 6] {
        [
            ("entity", &self.entity),
            ("id", &self.id),
            ("version", &self.version),
            ("op", &self.op),
            ("patch", &self.patch),
            ("ts", &self.ts),
        ]
    }

    /// Reads one change event; a malformed one gives the dead-letter reason
    /// (`invalid_change:/pointer`) and what is wrong.
    pub fn parse(&self, event: &Value) -> Result<Change, (String, String)> {
        let invalid = |pointer: &str, detail: String| {
            (
                sluice_core::reason::at(sluice_core::reason::INVALID_CHANGE, pointer),
                detail,
            )
        };
        let text = |pointer: &str| match event.pointer(pointer) {
            Some(v) => key_text(v).ok_or_else(|| {
                let detail = format!("expected a non-empty string or an integer, got {}", describe(v));
                invalid(pointer, detail)
            }),
            None => Err(invalid(pointer, "missing".into())),
        };
        let key = DocKey {
            entity: text(&self.entity)?,
            id: text(&self.id)?,
        };
        let version = match event.pointer(&self.version) {
            Some(value) => crate::version::from_json(value).map_err(|detail| invalid(&self.version, detail))?,
            None => return Err(invalid(&self.version, "missing".into())),
        };
        let ts = match event.pointer(&self.ts) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let op = match event.pointer(&self.op).and_then(Value::as_str) {
            Some("upsert") => match event.pointer(&self.patch) {
                Some(Value::Object(patch)) if holds_nul(patch) => {
                    let detail = "the patch holds U+0000, which PostgreSQL's jsonb cannot store".to_string();
                    return Err(invalid(&self.patch, detail));
                }
                Some(Value::Object(patch)) => Op::Upsert(patch.clone()),
                Some(other) => {
                    let detail = format!("an upsert's patch must be an object, got {}", json_kind(other));
                    return Err(invalid(&self.patch, detail));
                }
                None => return Err(invalid(&self.patch, "an upsert needs a patch".into())),
            },
            Some("delete") => Op::Delete,
            _ => {
                let got = event
                    .pointer(&self.op)
                    .map_or_else(|| "nothing".into(), |v| v.to_string());
                return Err(invalid(
                    &self.op,
                    format!("expected \"upsert\" or \"delete\", got {got}"),
                ));
            }
        };
        Ok(Change { key, version, ts, op })
    }
}

/// The text of an entity or id: a non-empty string, or an integer.
pub fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

/// Whether a key or string anywhere in `patch` holds U+0000 (refused by
/// every store alike, so both stores keep the same documents).
fn holds_nul(patch: &Map<String, Value>) -> bool {
    fn value(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(value),
            Value::Object(fields) => holds_nul(fields),
            _ => false,
        }
    }
    patch.iter().any(|(k, v)| k.contains('\0') || value(v))
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(_) => "an empty string".into(),
        Value::Number(n) => format!("the number {n}"),
        other => json_kind(other).into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_generator_shape_parses_with_the_defaults() {
        let fields = ChangeFields::default();
        let change = fields
            .parse(&json!({"entity": "doctor", "id": "d1", "version": 3, "ts": "2026-11-01T00:00:00Z", "op": "upsert", "patch": {"a": 1}}))
            .unwrap();
        assert_eq!(
            change.key,
            DocKey {
                entity: "doctor".into(),
                id: "d1".into()
            }
        );
        assert_eq!(
            (change.version, change.ts.as_deref()),
            (3, Some("2026-11-01T00:00:00Z"))
        );
        assert_eq!(change.op, Op::Upsert(json!({"a": 1}).as_object().unwrap().clone()));
        let delete = fields
            .parse(&json!({"entity": "doctor", "id": 7, "version": 4, "op": "delete"}))
            .unwrap();
        assert_eq!((delete.key.id.as_str(), delete.op, delete.ts), ("7", Op::Delete, None));
    }

    #[test]
    fn malformed_changes_name_the_field_and_the_problem() {
        let fields = ChangeFields {
            version: "/meta/v".into(),
            ..ChangeFields::default()
        };
        let base = json!({"entity": "doctor", "id": "d1", "meta": {"v": 1}, "op": "upsert", "patch": {}});
        let broken = |pointer: &str, value: Value| {
            let mut event = base.clone();
            *event.pointer_mut(pointer).unwrap() = value;
            fields.parse(&event).unwrap_err()
        };
        assert_eq!(
            broken("/meta/v", json!(-1)),
            (
                "invalid_change:/meta/v".into(),
                "expected an integer from 0 to 10^38-1, as a number or a string of digits, got -1".into()
            )
        );
        assert_eq!(
            broken("/meta/v", json!("1x")).1,
            "expected an integer from 0 to 10^38-1, as a number or a string of digits, got \"1x\""
        );
        let mut sequence = base.clone();
        sequence["meta"]["v"] = json!("4421584500000000017450439091");
        assert_eq!(
            fields.parse(&sequence).unwrap().version,
            4_421_584_500_000_000_017_450_439_091
        );
        assert_eq!(
            broken("/id", json!("")),
            (
                "invalid_change:/id".into(),
                "expected a non-empty string or an integer, got an empty string".into()
            )
        );
        assert_eq!(
            broken("/op", json!("merge")),
            (
                "invalid_change:/op".into(),
                "expected \"upsert\" or \"delete\", got \"merge\"".into()
            )
        );
        assert_eq!(
            broken("/patch", json!([1])),
            (
                "invalid_change:/patch".into(),
                "an upsert's patch must be an object, got an array".into()
            )
        );
        assert_eq!(
            broken("/patch", json!({"a": [{"b": "x\u{0}y"}]})).1,
            "the patch holds U+0000, which PostgreSQL's jsonb cannot store"
        );
        assert_eq!(
            fields
                .parse(&json!({"entity": "doctor", "id": "d1", "op": "delete"}))
                .unwrap_err(),
            ("invalid_change:/meta/v".into(), "missing".into())
        );
        assert!(
            ChangeFields {
                id: "id".into(),
                ..ChangeFields::default()
            }
            .check()
            .unwrap_err()
            .starts_with("id: \"id\" is not a JSON pointer")
        );
    }
}
