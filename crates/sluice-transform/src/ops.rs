//! Built-in field operations that need no program: `rename`, `drop`, `set`,
//! `cast`, `filter` and `hash` (keyed HMAC-SHA256 for PII). Each is an
//! [`Edit`] of one parsed event; [`EditTransform`] runs an edit over a batch
//! and turns refusals into dead letters.
//!
//! Edits that name several fields read every source before writing any
//! target, so the order of keys in the pipeline file never matters.

use async_trait::async_trait;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use sluice_core::{
    BatchInfo, Event, Rejected, StageError, Transform, TransformOutput, json_kind, parse_object, reason,
};

use crate::pointer::Pointer;

/// What an edit decided about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Drop,
}

/// `(reason, detail)` of a refused event.
pub type Refusal = (String, String);

/// One operation on one parsed event.
pub trait Edit: Send + Sync {
    fn edit(&self, event: &mut Value) -> Result<Verdict, Refusal>;

    /// Whether the edit can change the event (else its bytes are kept as they are).
    fn modifies(&self) -> bool {
        true
    }
}

/// Runs an [`Edit`] over each event of a batch.
pub struct EditTransform<E>(pub E);

#[async_trait]
impl<E: Edit> Transform for EditTransform<E> {
    async fn process(&self, _batch: BatchInfo<'_>, events: Vec<Event>) -> Result<TransformOutput, StageError> {
        let mut output = TransformOutput::default();
        for mut event in events {
            let mut value = match parse_object(&event.payload) {
                Ok(v) => v,
                Err((why, detail)) => {
                    output.rejected.push(Rejected::new(event, why, detail));
                    continue;
                }
            };
            match self.0.edit(&mut value) {
                Ok(Verdict::Keep) => {
                    if self.0.modifies() {
                        event.payload = Bytes::from(value.to_string());
                    }
                    output.events.push(event);
                }
                Ok(Verdict::Drop) => output.dropped += 1,
                Err((why, detail)) => output.rejected.push(Rejected::new(event, why, detail)),
            }
        }
        Ok(output)
    }
}

fn refusal(reason: &str, pointer: &Pointer, detail: String) -> Refusal {
    (reason::at(reason, pointer.as_str()), detail)
}

/// `rename`: moves each field to its new place (absent fields are skipped).
pub struct Rename(pub Vec<(Pointer, Pointer)>);

impl Edit for Rename {
    fn edit(&self, event: &mut Value) -> Result<Verdict, Refusal> {
        let taken: Vec<(Option<Value>, &Pointer)> = self.0.iter().map(|(from, to)| (from.take(event), to)).collect();
        for (value, to) in taken {
            if let Some(value) = value {
                to.set(event, value)
                    .map_err(|e| refusal(reason::FIELD_CONFLICT, to, e))?;
            }
        }
        Ok(Verdict::Keep)
    }
}

/// `drop`: removes fields.
pub struct DropFields(pub Vec<Pointer>);

impl Edit for DropFields {
    fn edit(&self, event: &mut Value) -> Result<Verdict, Refusal> {
        for p in &self.0 {
            p.take(event);
        }
        Ok(Verdict::Keep)
    }
}

/// What `set` writes into a field.
#[derive(Debug, Clone, PartialEq)]
pub enum SetValue {
    Constant(Value),
    /// A copy of another field (nothing is written when it is absent).
    From(Pointer),
}

/// `set`: writes constants or copies of other fields.
pub struct Set(pub Vec<(Pointer, SetValue)>);

impl Edit for Set {
    fn edit(&self, event: &mut Value) -> Result<Verdict, Refusal> {
        let values: Vec<(&Pointer, Option<Value>)> = self
            .0
            .iter()
            .map(|(target, value)| {
                let v = match value {
                    SetValue::Constant(c) => Some(c.clone()),
                    SetValue::From(source) => source.get(event).cloned(),
                };
                (target, v)
            })
            .collect();
        for (target, value) in values {
            if let Some(value) = value {
                target
                    .set(event, value)
                    .map_err(|e| refusal(reason::FIELD_CONFLICT, target, e))?;
            }
        }
        Ok(Verdict::Keep)
    }
}

/// The JSON types `cast` converts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CastType {
    String,
    Integer,
    Number,
    Boolean,
}

/// `cast`: converts fields to another JSON type; a value that does not
/// convert refuses the event. Null and absent fields are left alone.
pub struct Cast(pub Vec<(Pointer, CastType)>);

impl Edit for Cast {
    fn edit(&self, event: &mut Value) -> Result<Verdict, Refusal> {
        for (pointer, to) in &self.0 {
            let Some(slot) = pointer.get_mut(event) else { continue };
            if slot.is_null() {
                continue;
            }
            *slot = cast(slot, *to).map_err(|e| refusal(reason::CAST, pointer, e))?;
        }
        Ok(Verdict::Keep)
    }
}

fn cast(value: &Value, to: CastType) -> Result<Value, String> {
    let fail = || format!("cannot cast {} {value} to {to:?}", json_kind(value)).to_lowercase();
    match (to, value) {
        (CastType::String, Value::String(_)) => Ok(value.clone()),
        (CastType::String, Value::Number(_) | Value::Bool(_)) => Ok(Value::String(value.to_string())),
        (CastType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(value.clone()),
        (CastType::Integer, Value::Number(n)) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => Ok(Value::from(f as i64)),
            _ => Err(fail()),
        },
        (CastType::Integer, Value::String(s)) => s.parse::<i64>().map(Value::from).map_err(|_| fail()),
        (CastType::Number, Value::Number(_)) => Ok(value.clone()),
        (CastType::Number, Value::String(s)) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(fail),
        (CastType::Boolean, Value::Bool(_)) => Ok(value.clone()),
        (CastType::Boolean, Value::String(s)) if s == "true" || s == "false" => Ok(Value::Bool(s == "true")),
        _ => Err(fail()),
    }
}

/// A test on one field.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Equals(Value),
    NotEquals(Value),
    In(Vec<Value>),
    /// Present and not null (true), or absent or null (false).
    Exists(bool),
}

/// `filter`: keeps (or drops) the events whose field passes the test.
pub struct Filter {
    pub field: Pointer,
    pub test: Test,
    /// Keep the events that pass (`keep_if`), or drop them (`drop_if`).
    pub keep_passing: bool,
}

impl Edit for Filter {
    fn edit(&self, event: &mut Value) -> Result<Verdict, Refusal> {
        let value = self.field.get(event);
        let passes = match &self.test {
            Test::Equals(v) => value == Some(v),
            Test::NotEquals(v) => value != Some(v),
            Test::In(vs) => value.is_some_and(|v| vs.contains(v)),
            Test::Exists(want) => value.is_some_and(|v| !v.is_null()) == *want,
        };
        Ok(if passes == self.keep_passing {
            Verdict::Keep
        } else {
            Verdict::Drop
        })
    }

    fn modifies(&self) -> bool {
        false
    }
}

/// `hash`: replaces fields with the hex HMAC-SHA256 of their value (a
/// string's text, or a number's or boolean's JSON text) under a secret key.
pub struct Hash {
    pub fields: Vec<Pointer>,
    key: Vec<u8>,
}

impl Hash {
    pub fn new(fields: Vec<Pointer>, key: Vec<u8>) -> Self {
        Hash { fields, key }
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hash")
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

impl Edit for Hash {
    fn edit(&self, event: &mut Value) -> Result<Verdict, Refusal> {
        for pointer in &self.fields {
            let Some(slot) = pointer.get_mut(event) else { continue };
            let text = match &*slot {
                Value::Null => continue,
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) => slot.to_string(),
                other => {
                    return Err(refusal(
                        reason::HASH,
                        pointer,
                        format!("cannot hash {}; name its fields instead", json_kind(other)),
                    ));
                }
            };
            let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
            mac.update(text.as_bytes());
            *slot = Value::String(hex(&mac.finalize().into_bytes()));
        }
        Ok(Verdict::Keep)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Pointer {
        Pointer::parse(s).unwrap()
    }

    fn edit(e: &dyn Edit, mut v: Value) -> Result<(Verdict, Value), Refusal> {
        e.edit(&mut v).map(|verdict| (verdict, v))
    }

    #[test]
    fn rename_swaps_without_order_effects_and_drop_removes() {
        let swap = Rename(vec![(p("/a"), p("/b")), (p("/b"), p("/a"))]);
        assert_eq!(edit(&swap, json!({"a": 1, "b": 2})).unwrap().1, json!({"b": 1, "a": 2}));
        let nest = Rename(vec![(p("/user_id"), p("/user/id"))]);
        assert_eq!(
            edit(&nest, json!({"user_id": "u"})).unwrap().1,
            json!({"user": {"id": "u"}})
        );
        let conflict = Rename(vec![(p("/a"), p("/s/x"))]);
        assert_eq!(
            edit(&conflict, json!({"a": 1, "s": "str"})).unwrap_err().0,
            "field_conflict:/s/x"
        );
        let drop = DropFields(vec![p("/page/referrer"), p("/missing")]);
        assert_eq!(
            edit(&drop, json!({"page": {"url": "u", "referrer": "r"}})).unwrap().1,
            json!({"page": {"url": "u"}})
        );
    }

    #[test]
    fn set_writes_constants_and_copies_and_cast_converts_or_refuses() {
        let set = Set(vec![
            (p("/source"), SetValue::Constant(json!("web"))),
            (p("/copy"), SetValue::From(p("/geo/country"))),
            (p("/none"), SetValue::From(p("/absent"))),
        ]);
        assert_eq!(
            edit(&set, json!({"geo": {"country": "DE"}})).unwrap().1,
            json!({"geo": {"country": "DE"}, "source": "web", "copy": "DE"})
        );
        let cast = Cast(vec![
            (p("/a"), CastType::Integer),
            (p("/b"), CastType::String),
            (p("/c"), CastType::Number),
            (p("/d"), CastType::Boolean),
            (p("/e"), CastType::Integer),
        ]);
        assert_eq!(
            edit(&cast, json!({"a": "42", "b": 7, "c": "1.5", "d": "true", "e": null}))
                .unwrap()
                .1,
            json!({"a": 42, "b": "7", "c": 1.5, "d": true, "e": null})
        );
        let (why, detail) = edit(&cast, json!({"a": "4x2"})).unwrap_err();
        assert_eq!(why, "cast:/a");
        assert_eq!(detail, "cannot cast a string \"4x2\" to integer");
        assert_eq!(edit(&cast, json!({"a": 1.5})).unwrap_err().0, "cast:/a");
    }

    #[test]
    fn filter_keeps_or_drops_by_a_test() {
        let purchases = Filter {
            field: p("/event_type"),
            test: Test::In(vec![json!("purchase"), json!("add_to_cart")]),
            keep_passing: true,
        };
        assert_eq!(
            edit(&purchases, json!({"event_type": "purchase"})).unwrap().0,
            Verdict::Keep
        );
        assert_eq!(
            edit(&purchases, json!({"event_type": "click"})).unwrap().0,
            Verdict::Drop
        );
        let no_bots = Filter {
            field: p("/bot"),
            test: Test::Exists(true),
            keep_passing: false,
        };
        assert_eq!(edit(&no_bots, json!({"bot": true})).unwrap().0, Verdict::Drop);
        assert_eq!(edit(&no_bots, json!({"bot": null})).unwrap().0, Verdict::Keep);
    }

    #[test]
    fn hash_is_keyed_hmac_sha256_and_refuses_containers() {
        let hash = Hash::new(vec![p("/user_id"), p("/n")], b"key".to_vec());
        let (_, v) = edit(
            &hash,
            json!({"user_id": "The quick brown fox jumps over the lazy dog", "n": 1}),
        )
        .unwrap();
        // RFC 4231-style known answer for HMAC-SHA256("key", "The quick brown fox ...").
        assert_eq!(
            v["user_id"],
            json!("f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8")
        );
        assert_ne!(v["n"], json!(1));
        let other_key = Hash::new(vec![p("/user_id")], b"other".to_vec());
        assert_ne!(
            edit(&other_key, json!({"user_id": "x"})).unwrap().1,
            edit(&hash, json!({"user_id": "x"})).unwrap().1
        );
        assert_eq!(
            edit(&hash, json!({"user_id": {"a": 1}})).unwrap_err().0,
            "hash:/user_id"
        );
        let secret = Hash::new(vec![p("/a")], b"s3cr3t".to_vec());
        let shown = format!("{secret:?}");
        assert!(!shown.contains("s3cr3t") && !shown.contains("115, 51"), "{shown}");
    }
}
