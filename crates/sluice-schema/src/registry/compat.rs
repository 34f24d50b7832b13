//! What changed between two versions of a JSON Schema, for readers of data
//! written with the older one: additions of optional fields are compatible;
//! a removed field, a narrowed type and a field that is (or became)
//! required are breaking. Types compare as sets of JSON types, read from
//! `type`, or else from the values an `enum` or `const` allows (an enum of
//! strings is a string); gaining a type (`null`, or `number` where
//! `integer` was) only widens what validates and is compatible, reported
//! as an addition when a non-null type is gained (a lake column keeps its
//! type, so such a version's events do not fit an existing table).

use std::collections::BTreeSet;

use serde_json::Value;

/// The changes found, each with the JSON pointer of the field it is about.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// What breaks readers of the older version, e.g. `/device: removed`.
    pub breaking: Vec<String>,
    /// Compatible additions, e.g. `/device_name: new optional field`.
    pub additions: Vec<String>,
}

/// Compares `new` against `old` (both JSON Schemas of objects).
pub fn compare(old: &Value, new: &Value) -> Changes {
    let mut changes = Changes::default();
    diff(old, new, "", &mut changes);
    changes
}

/// The JSON types a schema allows; empty for any.
fn types(schema: &Value) -> BTreeSet<String> {
    match schema.get("type") {
        Some(Value::String(t)) => [t.clone()].into(),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => match (schema.get("enum"), schema.get("const")) {
            (Some(Value::Array(values)), _) => values.iter().map(|v| kind(v).to_string()).collect(),
            (None, Some(value)) => [kind(value).to_string()].into(),
            _ => BTreeSet::new(),
        },
    }
}

/// A value's JSON Schema type.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Whether every value of a type in `old` is of a type in `new` (empty:
/// any type).
fn covers(new: &BTreeSet<String>, old: &BTreeSet<String>) -> bool {
    if new.is_empty() {
        return true;
    }
    !old.is_empty()
        && old
            .iter()
            .all(|t| new.contains(t) || (t == "integer" && new.contains("number")))
}

fn required(schema: &Value) -> BTreeSet<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn shown(types: &BTreeSet<String>) -> String {
    if types.is_empty() {
        "any".into()
    } else {
        types.iter().cloned().collect::<Vec<_>>().join("|")
    }
}

fn diff(old: &Value, new: &Value, path: &str, changes: &mut Changes) {
    let (old_types, new_types) = (types(old), types(new));
    let mut old_non_null = old_types.clone();
    old_non_null.remove("null");
    let mut new_non_null = new_types.clone();
    new_non_null.remove("null");
    let at = if path.is_empty() { "/" } else { path };
    let loses_null = old_types.contains("null") && !new_types.contains("null") && !new_types.is_empty();
    if !covers(&new_non_null, &old_non_null) || loses_null {
        changes
            .breaking
            .push(format!("{at}: type {} -> {}", shown(&old_types), shown(&new_types)));
        return;
    }
    if old_non_null != new_non_null {
        changes.additions.push(format!(
            "{at}: type {} -> {} (widened)",
            shown(&old_types),
            shown(&new_types)
        ));
    }
    if let (Some(old_props), Some(new_props)) = (
        old.get("properties").and_then(Value::as_object),
        new.get("properties").and_then(Value::as_object),
    ) {
        let (old_required, new_required) = (required(old), required(new));
        for (name, old_field) in old_props {
            let field = format!("{path}/{}", escape(name));
            match new_props.get(name) {
                None => changes.breaking.push(format!("{field}: removed")),
                Some(new_field) => {
                    if new_required.contains(name) && !old_required.contains(name) {
                        changes.breaking.push(format!("{field}: became required"));
                    }
                    diff(old_field, new_field, &field, changes);
                }
            }
        }
        for name in new_props.keys().filter(|n| !old_props.contains_key(*n)) {
            let field = format!("{path}/{}", escape(name));
            if new_required.contains(name) {
                changes.breaking.push(format!("{field}: new required field"));
            } else {
                changes.additions.push(format!("{field}: new optional field"));
            }
        }
    }
    if let (Some(old_items), Some(new_items)) = (old.get("items"), new.get("items")) {
        diff(old_items, new_items, &format!("{path}/items"), changes);
    }
}

/// A property name as a JSON pointer token.
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn v1() -> Value {
        json!({"type": "object", "required": ["id"], "properties": {
            "id": {"type": "string"},
            "device": {"type": "string"},
            "price": {"type": "number"},
            "items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}}
        }})
    }

    #[test]
    fn an_optional_field_is_an_addition() {
        let mut v2 = v1();
        v2["properties"]["coupon"] = json!({"type": ["string", "null"]});
        v2["properties"]["items"]["items"]["properties"]["qty"] = json!({"type": "integer"});
        v2["properties"]["device"] = json!({"type": ["string", "null"]});
        let changes = compare(&v1(), &v2);
        assert!(changes.breaking.is_empty(), "{changes:?}");
        assert_eq!(
            changes.additions,
            vec!["/items/items/qty: new optional field", "/coupon: new optional field"]
        );
    }

    #[test]
    fn removals_type_changes_and_new_requirements_break_and_say_where() {
        let mut v2 = v1();
        let device = v2["properties"].as_object_mut().unwrap().remove("device").unwrap();
        v2["properties"]["device_name"] = device;
        v2["required"] = json!(["id", "device_name", "price"]);
        v2["properties"]["items"]["items"]["properties"]["sku"] = json!({"type": "integer"});
        let changes = compare(&v1(), &v2);
        assert_eq!(
            changes.breaking,
            vec![
                "/device: removed",
                "/items/items/sku: type string -> integer",
                "/price: became required",
                "/device_name: new required field",
            ],
            "the old version's fields by name, then the new ones"
        );
        let mut nullable = v1();
        nullable["properties"]["price"] = json!({"type": ["number", "null"]});
        assert_eq!(
            compare(&nullable, &v1()).breaking,
            vec!["/price: type null|number -> number"]
        );
    }

    #[test]
    fn an_enum_or_const_fixes_the_type_and_widening_is_not_a_break() {
        let old = json!({"type": "object", "properties": {
            "kind": {"enum": ["a", "b"]},
            "level": {"const": 3},
            "flag": {"type": "string"}
        }});
        let new = json!({"type": "object", "properties": {
            "kind": {"type": "string", "enum": ["a", "b", "c"]},
            "level": {"type": "number"},
            "flag": {"type": ["string", "boolean"]}
        }});
        let changes = compare(&old, &new);
        assert!(changes.breaking.is_empty(), "{changes:?}");
        assert_eq!(
            changes.additions,
            vec![
                "/flag: type string -> boolean|string (widened)",
                "/level: type integer -> number (widened)"
            ]
        );
        assert_eq!(
            compare(&new, &old).breaking,
            vec!["/flag: type boolean|string -> string", "/level: type number -> integer"],
            "narrowing back breaks; an enum of strings is still a string"
        );
        let untyped = json!({"type": "object", "properties": {"free": {}}});
        let typed = json!({"type": "object", "properties": {"free": {"type": "string"}}});
        assert_eq!(compare(&untyped, &typed).breaking, vec!["/free: type any -> string"]);
        assert!(
            compare(&typed, &untyped).breaking.is_empty(),
            "any value validates again"
        );
    }
}
