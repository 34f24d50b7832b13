//! The columns of the Snowplow-shaped table, named as Snowplow's lake
//! loader names them:
//!
//! * a self-describing event of `iglu:VENDOR/NAME/FORMAT/M-R-A` goes to the
//!   struct column `unstruct_event_<vendor>_<name>_<M>`, its entities
//!   (contexts) to the list-of-structs column `contexts_<vendor>_<name>_<M>`;
//! * `<vendor>` is the vendor lowercased with every character other than
//!   `a-z` and `0-9` made `_` (`com.acme-corp` -> `com_acme_corp`);
//! * `<name>` and every field name inside are made snake case
//!   ([`snake_case`]: `buttonPress` -> `button_press`, `HTTPStatus` ->
//!   `http_status`, `page-id` -> `page_id`), values keep their field's new
//!   name;
//! * a schema whose root is not an object with properties is kept as JSON
//!   text in that column.
//!
//! An event's shape (which of these columns it fills, with which version) is
//! the text key its [`sluice_core::Event::schema`] carries: `unstruct:KEY`
//! and `contexts:KEY` tokens separated by spaces, sorted; `""` for an event
//! with atomic fields only.

use std::{collections::BTreeMap, sync::Arc};

use arrow_schema::{DataType, Field, Fields};
use serde_json::{Map, Value};

use crate::{ArrowLayout, registry::SchemaKey};

/// Which part of an event a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Entity {
    /// The self-describing event (`ue_pr`/`ue_px`): one struct column.
    Unstruct,
    /// An entity attached to the event (`co`/`cx`): one list column.
    Contexts,
}

impl Entity {
    fn token(self) -> &'static str {
        match self {
            Entity::Unstruct => "unstruct",
            Entity::Contexts => "contexts",
        }
    }

    fn column_prefix(self) -> &'static str {
        match self {
            Entity::Unstruct => "unstruct_event",
            Entity::Contexts => "contexts",
        }
    }
}

/// `buttonPress` -> `button_press`: a `_` before an upper-case letter that
/// follows a lower-case letter or digit, or that starts a word after an
/// acronym (`HTTPStatus` -> `http_status`); every character other than
/// ASCII letters and digits becomes `_`; all lower case.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
            if prev.is_ascii_lowercase() || prev.is_ascii_digit() || (prev.is_ascii_uppercase() && next_lower) {
                out.push('_');
            }
        }
        out.push(if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '_'
        });
    }
    out
}

/// The column of `key`'s MODEL for `entity`.
pub fn column_name(entity: Entity, key: &SchemaKey) -> String {
    let vendor: String = key
        .vendor
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{}_{vendor}_{}_{}",
        entity.column_prefix(),
        snake_case(&key.name),
        key.version.model
    )
}

/// `value` with the names of its object members (at any depth) made snake
/// case, as the columns are.
pub fn snake_case_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (snake_case(&k), snake_case_keys(v)))
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(snake_case_keys).collect()),
        other => other,
    }
}

/// The shape key of an event's entities (see the module doc).
pub fn shape_key<'a>(entities: impl IntoIterator<Item = (Entity, &'a str)>) -> String {
    let mut tokens: Vec<String> = entities
        .into_iter()
        .map(|(entity, key)| format!("{}:{key}", entity.token()))
        .collect();
    tokens.sort();
    tokens.dedup();
    tokens.join(" ")
}

/// The entities a shape key lists; `Err` names a token that is not one.
pub fn parse_shape(shape: &str) -> Result<Vec<(Entity, SchemaKey)>, String> {
    shape
        .split_whitespace()
        .map(|token| {
            let (entity, key) = match token.split_once(':') {
                Some(("unstruct", key)) => (Entity::Unstruct, key),
                Some(("contexts", key)) => (Entity::Contexts, key),
                _ => return Err(format!("{token:?} is not an entity of a Snowplow event")),
            };
            Ok((entity, key.parse()?))
        })
        .collect()
}

/// The column a version's events fill, and the paths in it kept as JSON
/// text. `layout` is the version's schema mapped to Arrow, `None` when its
/// root is not an object with properties (the column then holds JSON text).
pub fn entity_column(
    entity: Entity,
    key: &SchemaKey,
    layout: Option<&ArrowLayout>,
) -> Result<(Field, Vec<Vec<String>>), String> {
    let name = column_name(entity, key);
    let Some(layout) = layout else {
        return Ok((Field::new(&name, DataType::Utf8, true), vec![vec![name]]));
    };
    let fields = snake_case_fields(layout.schema.fields())
        .map_err(|e| format!("{key}: {e}; its events cannot go into one column"))?;
    let data_type = match entity {
        Entity::Unstruct => DataType::Struct(fields),
        Entity::Contexts => DataType::List(Arc::new(Field::new("item", DataType::Struct(fields), true))),
    };
    let json_text_paths = layout
        .json_text_paths
        .iter()
        .map(|path| {
            std::iter::once(name.clone())
                .chain(path.iter().map(|p| snake_case(p)))
                .collect()
        })
        .collect();
    Ok((Field::new(name, data_type, true), json_text_paths))
}

fn snake_case_fields(fields: &Fields) -> Result<Fields, String> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    let mut out = Vec::with_capacity(fields.len());
    for field in fields {
        let name = snake_case(field.name());
        if let Some(first) = seen.insert(name.clone(), field.name()) {
            return Err(format!("fields {first:?} and {:?} both become {name:?}", field.name()));
        }
        out.push(Field::new(name, snake_case_type(field.data_type())?, true));
    }
    Ok(out.into())
}

fn snake_case_type(data_type: &DataType) -> Result<DataType, String> {
    Ok(match data_type {
        DataType::Struct(fields) => DataType::Struct(snake_case_fields(fields)?),
        DataType::List(item) => DataType::List(Arc::new(
            item.as_ref().clone().with_data_type(snake_case_type(item.data_type())?),
        )),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{arrow_layout, doc};

    fn key(text: &str) -> SchemaKey {
        text.parse().unwrap()
    }

    #[test]
    fn names_follow_snowplows_lake_loader() {
        assert_eq!(snake_case("buttonPress"), "button_press");
        assert_eq!(snake_case("HTTPStatus"), "http_status");
        assert_eq!(snake_case("page-id"), "page_id");
        assert_eq!(snake_case("link_click"), "link_click");
        assert_eq!(snake_case("targetUrl2x"), "target_url2x");
        assert_eq!(
            column_name(
                Entity::Unstruct,
                &key("iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1")
            ),
            "unstruct_event_com_snowplowanalytics_snowplow_link_click_1"
        );
        assert_eq!(
            column_name(
                Entity::Contexts,
                &key("iglu:com.Acme-Corp/buttonPress/jsonschema/2-1-0")
            ),
            "contexts_com_acme_corp_button_press_2"
        );
    }

    #[test]
    fn values_get_the_snake_case_names_of_their_columns() {
        let v = snake_case_keys(serde_json::json!({"targetUrl": "x", "items": [{"skuCode": 1}], "n": null}));
        assert_eq!(
            v,
            serde_json::json!({"target_url": "x", "items": [{"sku_code": 1}], "n": null})
        );
    }

    #[test]
    fn shapes_round_trip_in_one_order() {
        let a = "iglu:com.acme/a/jsonschema/1-0-0";
        let b = "iglu:com.acme/b/jsonschema/1-0-0";
        let shape = shape_key([(Entity::Contexts, b), (Entity::Unstruct, a), (Entity::Contexts, b)]);
        assert_eq!(shape, format!("contexts:{b} unstruct:{a}"));
        let parsed = parse_shape(&shape).unwrap();
        assert_eq!(parsed, vec![(Entity::Contexts, key(b)), (Entity::Unstruct, key(a))]);
        assert!(parse_shape("").unwrap().is_empty());
        assert!(parse_shape("other:iglu:com.acme/a/jsonschema/1-0-0").is_err());
    }

    #[test]
    fn an_entity_is_a_struct_or_a_list_of_structs_with_snake_case_fields() {
        let layout = arrow_layout(&doc(serde_json::json!({"properties": {
            "targetUrl": {"type": "string"}, "extra": {"type": "object"}
        }})))
        .unwrap();
        let k = key("iglu:com.acme/clickEvent/jsonschema/1-0-0");
        let (field, text) = entity_column(Entity::Unstruct, &k, Some(&layout)).unwrap();
        assert_eq!(field.name(), "unstruct_event_com_acme_click_event_1");
        let DataType::Struct(fields) = field.data_type() else {
            panic!("a struct")
        };
        assert!(fields.find("target_url").is_some(), "{fields:?}");
        assert_eq!(
            text,
            vec![vec![
                "unstruct_event_com_acme_click_event_1".to_string(),
                "extra".into()
            ]]
        );
        let (field, _) = entity_column(Entity::Contexts, &k, Some(&layout)).unwrap();
        assert!(matches!(field.data_type(), DataType::List(_)));
        let (field, text) = entity_column(Entity::Contexts, &k, None).unwrap();
        assert_eq!(field.data_type(), &DataType::Utf8);
        assert_eq!(text, vec![vec![field.name().clone()]]);
        let clash = arrow_layout(&doc(serde_json::json!({"properties": {
            "pageId": {"type": "string"}, "page_id": {"type": "string"}
        }})))
        .unwrap();
        let e = entity_column(Entity::Unstruct, &k, Some(&clash)).unwrap_err();
        assert!(e.contains("both become \"page_id\""), "{e}");
    }
}
