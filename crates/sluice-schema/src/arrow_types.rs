//! JSON Schema -> Arrow types, the column layout of lake tables.
//!
//! | JSON Schema | Arrow |
//! |---|---|
//! | `string` (`format: date-time`) | `Timestamp(µs, UTC)` |
//! | `string`, string `enum`/`const` | `Utf8` |
//! | `integer` | `Int64` |
//! | `number` | `Float64` |
//! | `boolean` | `Boolean` |
//! | `object` with `properties` | `Struct` of those properties |
//! | `object` without `properties` (free-form) | `Utf8` holding the JSON text |
//! | `array` with `items` | `List` of the item type |
//! | anything else (mixed types, `oneOf`, ...) | `Utf8` holding the JSON text |
//!
//! A `"null"` in a type list only makes the column nullable; every column is
//! nullable so that later schema versions can add fields. Properties not in
//! the schema are not stored. Columns whose values are kept as JSON text are
//! listed in [`ArrowLayout::json_text_paths`], so writers can turn those
//! values into strings first. Columns (and struct fields) come in the order
//! the schema writes its properties, which is why it is read as a [`JsonDoc`].

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use sluice_core::{JsonDoc, json_doc::Members};

/// The Arrow schema of a JSON Schema, and which values are stored as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrowLayout {
    pub schema: Arc<Schema>,
    /// Property paths (top-level name first) whose values are stored as JSON
    /// text. A path through an array addresses every element.
    pub json_text_paths: Vec<Vec<String>>,
}

/// Maps a JSON Schema whose root is an object with `properties`.
pub fn arrow_layout(schema: &JsonDoc) -> Result<ArrowLayout, String> {
    let Some(props) = schema.get("properties").and_then(JsonDoc::as_object) else {
        return Err("the schema's root must be an object with \"properties\"".into());
    };
    let mut json_text_paths = Vec::new();
    let mut path = Vec::new();
    let fields = struct_fields(props, &mut path, &mut json_text_paths);
    Ok(ArrowLayout {
        schema: Arc::new(Schema::new(fields)),
        json_text_paths,
    })
}

fn struct_fields(props: &Members, path: &mut Vec<String>, json_text: &mut Vec<Vec<String>>) -> Fields {
    props
        .iter()
        .map(|(name, sub)| {
            path.push(name.clone());
            let dt = data_type(sub, path, json_text);
            path.pop();
            Field::new(name, dt, true)
        })
        .collect()
}

fn data_type(node: &JsonDoc, path: &mut Vec<String>, json_text: &mut Vec<Vec<String>>) -> DataType {
    match node.declared_types().as_slice() {
        ["string"] if node.get("format").and_then(JsonDoc::as_str) == Some("date-time") => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        ["string"] => DataType::Utf8,
        ["integer"] => DataType::Int64,
        ["number"] | ["integer", "number"] | ["number", "integer"] => DataType::Float64,
        ["boolean"] => DataType::Boolean,
        ["object"] => match node.get("properties").and_then(JsonDoc::as_object) {
            Some(props) if !props.is_empty() => DataType::Struct(struct_fields(props, path, json_text)),
            _ => {
                json_text.push(path.clone());
                DataType::Utf8
            }
        },
        ["array"] => match node.get("items") {
            Some(items) if items.is_object() => {
                let item = data_type(items, path, json_text);
                DataType::List(Arc::new(Field::new("item", item, true)))
            }
            _ => {
                json_text.push(path.clone());
                DataType::Utf8
            }
        },
        _ => {
            json_text.push(path.clone());
            DataType::Utf8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> JsonDoc {
        text.parse().unwrap()
    }

    #[test]
    fn maps_scalars_structs_lists_and_free_form() {
        let layout = arrow_layout(&doc(r#"{
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "ts": {"type": "string", "format": "date-time"},
                "n": {"type": "integer"},
                "x": {"type": ["number", "null"]},
                "ok": {"type": "boolean"},
                "kind": {"enum": ["a", "b"]},
                "dev": {"type": "object", "properties": {"w": {"type": "integer"}}},
                "tags": {"type": "array", "items": {"type": "string"}},
                "extra": {"type": "object"},
                "any": {"oneOf": [{"type": "string"}, {"type": "integer"}]}
            }
        }"#))
        .unwrap();
        let s = &layout.schema;
        let dt = |n: &str| s.field_with_name(n).unwrap().data_type().clone();
        assert_eq!(dt("id"), DataType::Utf8);
        assert_eq!(dt("ts"), DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
        assert_eq!(dt("n"), DataType::Int64);
        assert_eq!(dt("x"), DataType::Float64);
        assert_eq!(dt("ok"), DataType::Boolean);
        assert_eq!(dt("kind"), DataType::Utf8);
        assert_eq!(
            dt("dev"),
            DataType::Struct(vec![Field::new("w", DataType::Int64, true)].into())
        );
        assert_eq!(
            dt("tags"),
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
        );
        assert_eq!(dt("extra"), DataType::Utf8);
        assert_eq!(
            layout.json_text_paths,
            vec![vec!["extra".to_string()], vec!["any".to_string()]]
        );
    }

    #[test]
    fn columns_come_in_the_order_the_schema_writes_them() {
        let layout = arrow_layout(&doc(r#"{"properties": {
            "zeta": {"type": "string"},
            "alpha": {"type": "object", "properties": {"y": {"type": "integer"}, "b": {"type": "integer"}}},
            "mid": {"type": "array", "items": {"type": "object", "properties": {"q": {"type": "string"}, "c": {"type": "string"}}}}
        }}"#))
        .unwrap();
        let names = |fields: &Fields| fields.iter().map(|f| f.name().clone()).collect::<Vec<_>>();
        assert_eq!(names(layout.schema.fields()), ["zeta", "alpha", "mid"]);
        let DataType::Struct(alpha) = layout.schema.field(1).data_type() else {
            panic!("alpha is a struct")
        };
        assert_eq!(names(alpha), ["y", "b"]);
        let DataType::List(item) = layout.schema.field(2).data_type() else {
            panic!("mid is a list")
        };
        let DataType::Struct(mid) = item.data_type() else {
            panic!("mid's items are structs")
        };
        assert_eq!(names(mid), ["q", "c"]);
    }

    #[test]
    fn refuses_a_root_without_properties() {
        assert!(arrow_layout(&doc(r#"{"type": "object"}"#)).is_err());
    }
}
