//! JSON documents whose objects keep their members in the order written.
//!
//! Sluice builds serde_json's `Value` without `preserve_order`: transforms
//! parse events into one, and a sorted map is cheaper to build and drop than
//! an insertion-ordered one. Where the order of members carries meaning — a
//! JSON Schema's `properties` are a table's columns, in that order — the
//! document is read into a [`JsonDoc`] instead, and turned into a `Value`
//! ([`JsonDoc::to_value`]) for code that only checks against it.

use std::{ops::Index, str::FromStr};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

/// An object's members, in the order written.
pub type Members = IndexMap<String, JsonDoc>;

/// A JSON value whose objects keep their members' order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JsonDoc {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<JsonDoc>),
    Object(Members),
}

static NULL: JsonDoc = JsonDoc::Null;

impl JsonDoc {
    /// An object of these members, in this order.
    pub fn object<K: Into<String>>(members: impl IntoIterator<Item = (K, JsonDoc)>) -> JsonDoc {
        JsonDoc::Object(members.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&JsonDoc> {
        self.as_object()?.get(key)
    }

    pub fn as_object(&self) -> Option<&Members> {
        match self {
            JsonDoc::Object(members) => Some(members),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            JsonDoc::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, JsonDoc::Object(_))
    }

    pub fn is_string(&self) -> bool {
        matches!(self, JsonDoc::String(_))
    }

    pub fn is_null(&self) -> bool {
        matches!(self, JsonDoc::Null)
    }

    /// The JSON types this schema node declares, `"null"` left out: its
    /// `type`, or `string` for a non-empty `enum` of strings (and nulls) or a
    /// string `const`. The lake's and PostgreSQL's column types start here.
    pub fn declared_types(&self) -> Vec<&str> {
        match self.get("type") {
            Some(JsonDoc::String(t)) => vec![t.as_str()],
            Some(JsonDoc::Array(ts)) => ts.iter().filter_map(JsonDoc::as_str).filter(|t| *t != "null").collect(),
            Some(_) => vec![],
            None => match (self.get("enum"), self.get("const")) {
                (Some(JsonDoc::Array(vs)), _) if !vs.is_empty() && vs.iter().all(|v| v.is_string() || v.is_null()) => {
                    vec!["string"]
                }
                (_, Some(JsonDoc::String(_))) => vec!["string"],
                _ => vec![],
            },
        }
    }

    /// The same document as a serde_json `Value` (whose objects sort their keys).
    pub fn to_value(&self) -> Value {
        match self {
            JsonDoc::Null => Value::Null,
            JsonDoc::Bool(b) => Value::Bool(*b),
            JsonDoc::Number(n) => Value::Number(n.clone()),
            JsonDoc::String(s) => Value::String(s.clone()),
            JsonDoc::Array(items) => Value::Array(items.iter().map(JsonDoc::to_value).collect()),
            JsonDoc::Object(members) => Value::Object(members.iter().map(|(k, v)| (k.clone(), v.to_value())).collect()),
        }
    }
}

impl From<&str> for JsonDoc {
    fn from(s: &str) -> Self {
        JsonDoc::String(s.to_string())
    }
}

impl From<Vec<JsonDoc>> for JsonDoc {
    fn from(items: Vec<JsonDoc>) -> Self {
        JsonDoc::Array(items)
    }
}

impl FromStr for JsonDoc {
    type Err = serde_json::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        serde_json::from_str(text)
    }
}

/// `doc["key"]`: the member, or null when there is none (as `Value` does).
impl Index<&str> for JsonDoc {
    type Output = JsonDoc;

    fn index(&self, key: &str) -> &JsonDoc {
        self.get(key).unwrap_or(&NULL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_read_type_or_string_literals_and_leave_out_null() {
        let types = |text: &str| -> Vec<String> {
            let node: JsonDoc = text.parse().unwrap();
            node.declared_types().into_iter().map(str::to_string).collect()
        };
        assert_eq!(types(r#"{"type": "integer"}"#), ["integer"]);
        assert_eq!(
            types(r#"{"type": ["null", "number", "integer"]}"#),
            ["number", "integer"]
        );
        assert_eq!(types(r#"{"enum": ["a", null, "b"]}"#), ["string"]);
        assert_eq!(types(r#"{"const": "a"}"#), ["string"]);
        assert_eq!(types(r#"{"enum": ["a", 1], "const": "a"}"#), ["string"]);
        for nothing in [
            r#"{"enum": ["a", 1]}"#,
            r#"{"enum": []}"#,
            r#"{"const": null}"#,
            r#"{"const": 1}"#,
            r#"{"type": 5, "const": "a"}"#,
            r#"{"oneOf": [{"type": "string"}]}"#,
        ] {
            assert!(types(nothing).is_empty(), "{nothing}");
        }
    }

    #[test]
    fn objects_keep_the_order_written_at_every_depth() {
        let doc: JsonDoc = r#"{"z": 1, "a": {"y": [true, null, "s"], "b": 2.5}, "m": -3}"#.parse().unwrap();
        let keys: Vec<&str> = doc.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["z", "a", "m"]);
        let inner: Vec<&str> = doc["a"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(inner, ["y", "b"]);
        assert_eq!(
            serde_json::to_string(&doc).unwrap(),
            r#"{"z":1,"a":{"y":[true,null,"s"],"b":2.5},"m":-3}"#
        );
    }

    #[test]
    fn converts_to_the_value_serde_json_parses() {
        let text = r#"{"z": 1, "a": {"y": [true, null, "s"], "b": 2.5, "big": 18446744073709551615}, "m": -3}"#;
        let doc: JsonDoc = text.parse().unwrap();
        assert_eq!(doc.to_value(), serde_json::from_str::<Value>(text).unwrap());
        assert!(doc["missing"].is_null());
        assert!(matches!(&doc["a"]["y"], JsonDoc::Array(items) if items.len() == 3));
    }

    #[test]
    fn syntax_errors_say_where() {
        let e = "{\"a\": 1,\n \"b\": }".parse::<JsonDoc>().unwrap_err();
        assert_eq!((e.line(), e.column()), (2, 7), "{e}");
    }
}
