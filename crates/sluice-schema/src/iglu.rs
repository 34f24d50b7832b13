//! Iglu's self-describing JSON Schemas as Snowplow publishes them. Their
//! `$schema` names Iglu's meta-schema (draft-04 with a `self` block), which
//! validators do not know: such a schema is compiled as draft-04, the
//! draft it extends, with `$schema` naming draft-04 so the validator does
//! not look the meta-schema up. Schemas without `$schema` are JSON Schema
//! 2020-12. A `$ref` to another Iglu schema (`iglu:vendor/name/format/M-R-A`
//! or its Iglu Central URL) is resolved from the registry: the registry
//! collects them ([`crate::registry::Registry::referenced`]) and the
//! validator reads them from a [`Referenced`] set, never the network.

use std::{borrow::Cow, collections::BTreeMap};

use jsonschema::{Draft, Retrieve, Uri};
use serde_json::Value;

/// Iglu's self-describing meta-schema, as schemas name it in `$schema`.
pub const META_SCHEMA: &str = "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#";

const DRAFT_04: &str = "http://json-schema.org/draft-04/schema#";

/// `schema` as a validator takes it, and the draft to compile it with.
pub fn for_validator(schema: &Value) -> (Cow<'_, Value>, Draft) {
    let named = schema
        .get("$schema")
        .and_then(Value::as_str)
        .map(|s| s.trim_end_matches('#'));
    match named {
        Some(meta) if meta == META_SCHEMA.trim_end_matches('#') => {
            let mut draft_04 = schema.clone();
            draft_04["$schema"] = Value::from(DRAFT_04);
            (Cow::Owned(draft_04), Draft::Draft4)
        }
        Some(meta) if meta == DRAFT_04.trim_end_matches('#') => (Cow::Borrowed(schema), Draft::Draft4),
        _ => (Cow::Borrowed(schema), Draft::Draft202012),
    }
}

const IGLU_CENTRAL: &str = "iglucentral.com/schemas/";

/// The Iglu key (`iglu:vendor/name/format/M-R-A`) a `$ref` names, if it
/// names one: an `iglu:` URI, or a schema's URL on Iglu Central.
pub fn key_of_ref(uri: &str) -> Option<String> {
    let uri = uri.split('#').next().unwrap_or(uri);
    if let Some(rest) = uri.strip_prefix("iglu:") {
        return Some(format!("iglu:{rest}"));
    }
    let path = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))?
        .strip_prefix(IGLU_CENTRAL)?;
    // Iglu's own meta-schemas are known to the validator as draft-04.
    (path.split('/').count() == 4 && !path.starts_with("com.snowplowanalytics.self-desc/schema/"))
        .then(|| format!("iglu:{path}"))
}

/// Every `$ref` in `schema` that names an Iglu schema, fragment removed.
pub fn refs(schema: &Value) -> Vec<String> {
    let mut found = Vec::new();
    collect_refs(schema, &mut found);
    found.sort();
    found.dedup();
    found
}

fn collect_refs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(uri)) = map.get("$ref")
                && key_of_ref(uri).is_some()
            {
                found.push(uri.split('#').next().unwrap_or(uri).to_string());
            }
            map.values().for_each(|v| collect_refs(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, found)),
        _ => {}
    }
}

/// The Iglu schemas a schema refers to, by the URI it wrote, as the
/// validator takes them; the validator's only source of references.
#[derive(Debug, Clone, Default)]
pub struct Referenced(BTreeMap<String, Value>);

impl Referenced {
    pub fn insert(&mut self, uri: String, schema: &Value) {
        self.0.insert(uri, for_validator(schema).0.into_owned());
    }
}

impl Retrieve for Referenced {
    fn retrieve(&self, uri: &Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let wanted = uri.as_str().split('#').next().unwrap_or_default();
        self.0
            .get(wanted)
            .cloned()
            .ok_or_else(|| format!("{wanted} is not a registered schema this one may refer to").into())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_iglu_schema_compiles_as_draft_04_and_keeps_draft_04_semantics() {
        let schema = json!({
            "$schema": META_SCHEMA,
            "self": {"vendor": "com.example", "name": "reading", "format": "jsonschema", "version": "1-0-0"},
            "type": "object",
            "properties": {"level": {"type": "number", "maximum": 10, "exclusiveMaximum": true}},
            "additionalProperties": false
        });
        let (view, draft) = for_validator(&schema);
        assert_eq!(draft, Draft::Draft4);
        let validator = jsonschema::options().with_draft(draft).build(&view).unwrap();
        assert!(validator.is_valid(&json!({"level": 9.5})));
        assert!(
            !validator.is_valid(&json!({"level": 10})),
            "draft-04's boolean exclusiveMaximum excludes the maximum"
        );
        assert!(!validator.is_valid(&json!({"other": 1})));
    }

    #[test]
    fn a_schema_without_an_iglu_meta_schema_is_left_as_it_is() {
        let schema = json!({"type": "object"});
        let (view, draft) = for_validator(&schema);
        assert!(matches!(view, Cow::Borrowed(_)));
        assert_eq!(draft, Draft::Draft202012);
    }

    #[test]
    fn iglu_refs_are_named_by_their_key() {
        assert_eq!(
            key_of_ref("http://iglucentral.com/schemas/com.acme/item/jsonschema/1-0-0#"),
            Some("iglu:com.acme/item/jsonschema/1-0-0".to_string())
        );
        assert_eq!(
            key_of_ref("iglu:com.acme/item/jsonschema/1-0-0"),
            Some("iglu:com.acme/item/jsonschema/1-0-0".to_string())
        );
        assert_eq!(key_of_ref("#/definitions/item"), None);
        assert_eq!(key_of_ref("http://json-schema.org/draft-04/schema#"), None);
        assert_eq!(key_of_ref(META_SCHEMA), None, "the meta-schema is not looked up");
        let schema = serde_json::json!({"properties": {
            "a": {"$ref": "iglu:com.acme/item/jsonschema/1-0-0"},
            "b": {"items": {"$ref": "http://iglucentral.com/schemas/com.acme/item/jsonschema/1-0-0#"}},
            "c": {"$ref": "#/definitions/local"}
        }});
        assert_eq!(
            refs(&schema),
            vec![
                "http://iglucentral.com/schemas/com.acme/item/jsonschema/1-0-0",
                "iglu:com.acme/item/jsonschema/1-0-0"
            ]
        );
    }

    #[test]
    fn a_reference_resolves_only_from_the_referenced_set() {
        let item = serde_json::json!({"$schema": META_SCHEMA, "type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"}}});
        let mut referenced = Referenced::default();
        referenced.insert("iglu:com.acme/item/jsonschema/1-0-0".into(), &item);
        let schema = serde_json::json!({"$schema": META_SCHEMA, "type": "object",
            "properties": {"item": {"$ref": "iglu:com.acme/item/jsonschema/1-0-0"}}});
        let (view, draft) = for_validator(&schema);
        let validator = jsonschema::options()
            .with_draft(draft)
            .with_retriever(referenced)
            .build(&view)
            .unwrap();
        assert!(validator.is_valid(&serde_json::json!({"item": {"sku": "a"}})));
        assert!(!validator.is_valid(&serde_json::json!({"item": {}})));
        assert!(
            jsonschema::options()
                .with_draft(draft)
                .with_retriever(Referenced::default())
                .build(&view)
                .is_err(),
            "an unknown reference is an error, not a fetch"
        );
    }
}
