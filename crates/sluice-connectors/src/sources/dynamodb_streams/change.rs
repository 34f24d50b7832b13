//! A DynamoDB stream record as a change event for the `documents` stage
//! (its default field names): `entity`, `id` (the item's key), `version`
//! (the stream sequence number, as digits), `op` (`upsert` for INSERT and
//! MODIFY, `delete` for REMOVE), `patch`, `ts` (the record's approximate
//! creation time) and, for transforms, `event_name` and `keys`.
//!
//! * **Values.** DynamoDB's typed attribute values become plain JSON: `S`
//!   a string, `N` a number when JSON's number reads back as the same
//!   decimal (integers in 64 bits, decimals a double holds exactly in its
//!   shortest form), otherwise a string of the exact digits; `BOOL`,
//!   `NULL`, `M` an object, `L` an array, `SS`/`NS`/`BS` arrays, `B`/`BS`
//!   base64 text.
//! * **Id.** A simple key's value as text; a composite key (hash and
//!   range) as the JSON array `[hash, range]` of the values.
//! * **Patch.** The new image with `null` for every attribute, at any
//!   depth of nested maps, that the old image has and the new one lacks:
//!   a JSON merge patch that turns any part of the old item into exactly
//!   the new one, so removed attributes leave the document.

use std::collections::HashMap;

use aws_sdk_dynamodbstreams::{
    primitives::DateTimeFormat,
    types::{AttributeValue, OperationType, Record},
};
use base64::Engine;
use serde_json::{Map, Value};

/// The table's key attribute names, hash first.
pub(crate) type KeyNames = Vec<String>;

type Item = HashMap<String, AttributeValue>;

/// The change event of one stream record.
pub(crate) fn change_event(entity: &str, key_names: &KeyNames, record: &Record) -> Value {
    let mut event = Map::new();
    event.insert("entity".into(), Value::from(entity));
    let stream_record = record.dynamodb();
    let keys = stream_record.and_then(|r| r.keys()).map(item_json).unwrap_or_default();
    if let Some(id) = document_id(key_names, &keys) {
        event.insert("id".into(), Value::String(id));
    }
    if let Some(sequence) = stream_record.and_then(|r| r.sequence_number()) {
        event.insert("version".into(), Value::from(sequence));
    }
    let name = record.event_name();
    match name {
        Some(OperationType::Remove) => {
            event.insert("op".into(), Value::from("delete"));
        }
        Some(_) => {
            let new = stream_record.and_then(|r| r.new_image()).map(item_json);
            let old = stream_record.and_then(|r| r.old_image()).map(item_json);
            event.insert("op".into(), Value::from("upsert"));
            if let Some(new) = new {
                event.insert("patch".into(), Value::Object(replacing_patch(old.as_ref(), new)));
            }
        }
        None => {}
    }
    if let Some(time) = stream_record
        .and_then(|r| r.approximate_creation_date_time())
        .and_then(|t| t.fmt(DateTimeFormat::DateTime).ok())
    {
        event.insert("ts".into(), Value::String(time));
    }
    if let Some(name) = name {
        event.insert("event_name".into(), Value::from(name.as_str()));
    }
    event.insert("keys".into(), Value::Object(keys));
    Value::Object(event)
}

/// The document id of an item's key: the one value as text, or `[hash, range]`.
fn document_id(key_names: &KeyNames, keys: &Map<String, Value>) -> Option<String> {
    let names: Vec<&String> = if key_names.is_empty() {
        let mut names: Vec<&String> = keys.keys().collect();
        names.sort();
        names
    } else {
        key_names.iter().collect()
    };
    let values: Vec<&Value> = names.iter().filter_map(|n| keys.get(*n)).collect();
    match values.as_slice() {
        [] => None,
        [Value::String(text)] => Some(text.clone()),
        [single] => Some(single.to_string()),
        several => Some(Value::Array(several.iter().map(|v| (*v).clone()).collect()).to_string()),
    }
}

/// `new` with `null` for what `old` has and `new` lacks, into nested maps.
fn replacing_patch(old: Option<&Map<String, Value>>, mut new: Map<String, Value>) -> Map<String, Value> {
    let Some(old) = old else {
        return new;
    };
    for (name, before) in old {
        match new.remove(name) {
            None => {
                new.insert(name.clone(), Value::Null);
            }
            Some(Value::Object(after)) => {
                let patched = replacing_patch(before.as_object(), after);
                new.insert(name.clone(), Value::Object(patched));
            }
            Some(after) => {
                new.insert(name.clone(), after);
            }
        }
    }
    new
}

fn item_json(item: &Item) -> Map<String, Value> {
    item.iter()
        .map(|(name, value)| (name.clone(), attribute_json(value)))
        .collect()
}

/// One typed attribute value as plain JSON.
pub(crate) fn attribute_json(value: &AttributeValue) -> Value {
    let base64 = |bytes: &[u8]| Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    match value {
        AttributeValue::S(text) => Value::String(text.clone()),
        AttributeValue::N(number) => number_json(number),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::M(item) => Value::Object(item_json(item)),
        AttributeValue::L(items) => Value::Array(items.iter().map(attribute_json).collect()),
        AttributeValue::Ss(texts) => Value::Array(texts.iter().cloned().map(Value::String).collect()),
        AttributeValue::Ns(numbers) => Value::Array(numbers.iter().map(|n| number_json(n)).collect()),
        AttributeValue::B(blob) => base64(blob.as_ref()),
        AttributeValue::Bs(blobs) => Value::Array(blobs.iter().map(|b| base64(b.as_ref())).collect()),
        _ => Value::Null,
    }
}

/// A DynamoDB number (up to 38 significant digits) as a JSON number when
/// that is exact, else as a string of its digits.
fn number_json(text: &str) -> Value {
    if let Ok(n) = text.parse::<i64>() {
        return Value::from(n);
    }
    if let Ok(n) = text.parse::<u64>() {
        return Value::from(n);
    }
    let exact = text
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .filter(|f| decimal(text).is_some() && decimal(text) == decimal(&f.to_string()));
    match exact.and_then(serde_json::Number::from_f64) {
        Some(n) => Value::Number(n),
        None => Value::String(text.to_string()),
    }
}

/// A decimal as (negative, significant digits, power of ten of the last
/// digit), the same for every way of writing one value.
fn decimal(text: &str) -> Option<(bool, String, i64)> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty() || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    let significant = digits.trim_start_matches('0');
    let trimmed = significant.trim_end_matches('0');
    if trimmed.is_empty() {
        return Some((false, String::new(), 0));
    }
    let power = exponent - fraction.len() as i64 + (significant.len() - trimmed.len()) as i64;
    Some((negative, trimmed.to_string(), power))
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodbstreams::{
        primitives::{Blob, DateTime},
        types::StreamRecord,
    };
    use serde_json::json;

    use super::*;

    fn n(text: &str) -> AttributeValue {
        AttributeValue::N(text.into())
    }
    fn s(text: &str) -> AttributeValue {
        AttributeValue::S(text.into())
    }

    #[test]
    fn attribute_values_become_plain_json_and_numbers_stay_exact() {
        let item = AttributeValue::M(HashMap::from([
            ("s".to_string(), s("text")),
            ("int".to_string(), n("-42")),
            ("dec".to_string(), n("3.50")),
            ("exp".to_string(), n("1.5E3")),
            ("big".to_string(), n("12345678901234567890123456789012345678")),
            ("precise".to_string(), n("0.1000000000000000000001")),
            ("flag".to_string(), AttributeValue::Bool(true)),
            ("nothing".to_string(), AttributeValue::Null(true)),
            ("list".to_string(), AttributeValue::L(vec![n("1"), s("a")])),
            ("ss".to_string(), AttributeValue::Ss(vec!["a".into(), "b".into()])),
            ("ns".to_string(), AttributeValue::Ns(vec!["1".into(), "2.25".into()])),
            ("b".to_string(), AttributeValue::B(Blob::new(b"hi".to_vec()))),
            (
                "bs".to_string(),
                AttributeValue::Bs(vec![Blob::new(b"\x00\xff".to_vec())]),
            ),
        ]));
        assert_eq!(
            attribute_json(&item),
            json!({
                "s": "text", "int": -42, "dec": 3.5, "exp": 1500.0,
                "big": "12345678901234567890123456789012345678",
                "precise": "0.1000000000000000000001",
                "flag": true, "nothing": null, "list": [1, "a"],
                "ss": ["a", "b"], "ns": [1, 2.25], "b": "aGk=", "bs": ["AP8="]
            })
        );
        assert_eq!(number_json("18446744073709551615"), json!(u64::MAX));
        assert_eq!(number_json("18446744073709551616"), json!("18446744073709551616"));
        assert_eq!(number_json("0.1"), json!(0.1));
        assert_eq!(number_json("-0"), json!(0));
    }

    fn record(name: OperationType, sequence: &str, keys: Item, old: Option<Item>, new: Option<Item>) -> Record {
        let stream = StreamRecord::builder()
            .sequence_number(sequence)
            .set_keys(Some(keys))
            .set_old_image(old)
            .set_new_image(new)
            .approximate_creation_date_time(DateTime::from_secs(1_796_119_200))
            .build();
        Record::builder().event_name(name).dynamodb(stream).build()
    }

    #[test]
    fn records_become_changes_whose_patch_removes_what_the_new_image_lacks() {
        let keys = HashMap::from([("pk".to_string(), s("u1"))]);
        let old = HashMap::from([
            ("pk".to_string(), s("u1")),
            ("gone".to_string(), n("1")),
            (
                "address".to_string(),
                AttributeValue::M(HashMap::from([
                    ("city".to_string(), s("Oslo")),
                    ("zip".to_string(), s("0150")),
                ])),
            ),
        ]);
        let new = HashMap::from([
            ("pk".to_string(), s("u1")),
            (
                "address".to_string(),
                AttributeValue::M(HashMap::from([("city".to_string(), s("Bergen"))])),
            ),
        ]);
        let key_names = vec!["pk".to_string()];
        let modify = record(
            OperationType::Modify,
            "4421584500000000017450439091",
            keys.clone(),
            Some(old),
            Some(new),
        );
        assert_eq!(
            change_event("users", &key_names, &modify),
            json!({
                "entity": "users", "id": "u1", "version": "4421584500000000017450439091", "op": "upsert",
                "patch": {"pk": "u1", "gone": null, "address": {"city": "Bergen", "zip": null}},
                "ts": "2026-12-01T10:00:00Z", "event_name": "MODIFY", "keys": {"pk": "u1"}
            })
        );
        let remove = record(OperationType::Remove, "4421584500000000017450439092", keys, None, None);
        let removed = change_event("users", &key_names, &remove);
        assert_eq!((removed["op"].as_str(), removed.get("patch")), (Some("delete"), None));
    }

    #[test]
    fn a_composite_key_is_the_json_array_of_hash_and_range() {
        let keys = HashMap::from([("sk".to_string(), n("7")), ("pk".to_string(), s("u1"))]);
        let insert = record(OperationType::Insert, "1", keys.clone(), None, Some(keys));
        let event = change_event("orders", &vec!["pk".into(), "sk".into()], &insert);
        assert_eq!(event["id"], json!("[\"u1\",7]"));
    }
}
