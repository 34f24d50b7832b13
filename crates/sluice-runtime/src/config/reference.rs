//! `docs/reference/config.md`, rendered from the config types themselves:
//! schemars turns each struct into a JSON Schema whose descriptions are the
//! fields' doc comments and whose defaults are the `serde(default)` values,
//! and this module prints one table per section and component type. A test
//! fails when the file is stale, so a changed doc comment or default must be
//! regenerated with the code. Only the tests render it.

use std::{collections::BTreeSet, fmt::Write as _};

use serde_json::{Map, Value};

use super::model::PipelineFile;

/// The whole reference.
pub fn reference_markdown() -> String {
    let root = schemars::SchemaGenerator::default().into_root_schema_for::<PipelineFile>();
    let root = root.as_value();
    let schemas = Schemas {
        defs: root
            .get("$defs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
    };
    let mut out = String::from(
        "# Pipeline file reference\n\n\
         Generated from the config types' doc comments and defaults (`crates/sluice-runtime/src/config/model.rs`\n\
         and each component's `config.rs`) by `SLUICE_BLESS=1 cargo test -p sluice-runtime config_reference`;\n\
         do not edit by hand. A pipeline file is TOML; every table refuses keys it does not know.\n\
         `${NAME}` anywhere in the file is replaced by the environment variable `NAME` before parsing.\n",
    );
    let top = schemas.merged(root);
    let components = ["sources", "transforms", "sinks"];
    schemas.section(&mut out, "## Top level", "", &top, &components);
    for (kind, title) in [
        ("sources", "## Sources: `[sources.<name>]`"),
        ("transforms", "## Transforms: `[transforms.<name>]`"),
        ("sinks", "## Sinks: `[sinks.<name>]`"),
    ] {
        let _ = writeln!(out, "\n{title}");
        let Some(each) = top.properties.get(kind).and_then(|p| p.get("additionalProperties")) else {
            continue;
        };
        for (name, variant) in schemas.variants(each) {
            schemas.section(&mut out, &format!("### `type = \"{name}\"`"), "", &variant, &[]);
        }
    }
    out
}

/// An object schema with its `allOf` parts and references folded in.
#[derive(Default)]
struct Object {
    description: Option<String>,
    properties: Map<String, Value>,
    required: BTreeSet<String>,
}

struct Schemas {
    defs: Map<String, Value>,
}

impl Schemas {
    /// `schema` with a `$ref` followed (once per level).
    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => r
                .strip_prefix("#/$defs/")
                .and_then(|name| self.defs.get(name))
                .map_or(schema, |target| self.resolve(target)),
            None => schema,
        }
    }

    fn merged(&self, schema: &Value) -> Object {
        let mut object = Object::default();
        self.merge_into(schema, &mut object);
        object
    }

    fn merge_into(&self, schema: &Value, object: &mut Object) {
        let own_description = schema.get("description").and_then(Value::as_str);
        let schema = self.resolve(schema);
        for part in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
            self.merge_into(part, object);
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (key, value) in properties {
                object.properties.insert(key.clone(), value.clone());
            }
        }
        for key in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            if let Some(key) = key.as_str() {
                object.required.insert(key.to_string());
            }
        }
        if let Some(description) = own_description.or_else(|| schema.get("description").and_then(Value::as_str)) {
            object.description = Some(description.to_string());
        }
    }

    /// The variants of a `type`-tagged enum, by name, each with the keys the
    /// wrapper adds (`inputs`).
    fn variants(&self, schema: &Value) -> Vec<(String, Object)> {
        let wrapper = self.merged(schema);
        let mut found = Vec::new();
        self.collect_variants(self.resolve(schema), &wrapper, &mut found);
        found
    }

    fn collect_variants(&self, schema: &Value, wrapper: &Object, found: &mut Vec<(String, Object)>) {
        for part in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
            self.collect_variants(self.resolve(part), wrapper, found);
        }
        for member in schema.get("oneOf").and_then(Value::as_array).into_iter().flatten() {
            let mut variant = self.merged(member);
            let Some(name) = variant
                .properties
                .remove("type")
                .and_then(|t| t.get("const").and_then(Value::as_str).map(str::to_string))
            else {
                continue;
            };
            variant.required.remove("type");
            for (key, value) in &wrapper.properties {
                variant.properties.insert(key.clone(), value.clone());
            }
            variant.required.extend(wrapper.required.iter().cloned());
            found.push((name, variant));
        }
    }

    /// A heading, the object's description, a table of its keys, then a
    /// section per key that is a table of its own.
    fn section(&self, out: &mut String, heading: &str, prefix: &str, object: &Object, skip: &[&str]) {
        let _ = writeln!(out, "\n{heading}\n");
        if let Some(description) = &object.description {
            let _ = writeln!(out, "{}\n", one_paragraph(description));
        }
        out.push_str("| key | type | default | meaning |\n|---|---|---|---|\n");
        let mut nested = Vec::new();
        for (key, property) in &object.properties {
            if skip.contains(&key.as_str()) {
                let _ = writeln!(out, "| `{key}` | table | | see below |");
                continue;
            }
            let target = self.resolve(property);
            let default = match property.get("default").or_else(|| target.get("default")) {
                Some(Value::Null) => String::new(),
                Some(value) => format!("`{}`", toml_literal(value)),
                None if object.required.contains(key) => "required".to_string(),
                None => String::new(),
            };
            let meaning = property
                .get("description")
                .or_else(|| target.get("description"))
                .and_then(Value::as_str)
                .map(one_paragraph)
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| `{prefix}{key}` | {} | {default} | {meaning} |",
                self.type_name(property)
            );
            if let Some(inner) = self.table_of(property) {
                nested.push((format!("{prefix}{key}"), inner));
            }
        }
        for (path, inner) in nested {
            let heading_level = heading.split(' ').next().unwrap_or("###");
            self.section(
                out,
                &format!("{heading_level}# `{path}`"),
                &format!("{path}."),
                &inner,
                &[],
            );
        }
    }

    /// The keys of a property that is a table of named keys (a struct, or a
    /// map of structs as `<name>`).
    fn table_of(&self, property: &Value) -> Option<Object> {
        let target = self.non_null(property)?;
        if target.get("properties").is_some() || target.get("allOf").is_some() {
            return Some(self.merged(target));
        }
        let values = target.get("additionalProperties").map(|v| self.non_null(v))??;
        if values.get("properties").is_some() {
            let mut object = self.merged(values);
            object.properties = object
                .properties
                .into_iter()
                .map(|(key, value)| (format!("<name>.{key}"), value))
                .collect();
            object.required = object.required.into_iter().map(|k| format!("<name>.{k}")).collect();
            return Some(object);
        }
        None
    }

    /// The schema without its `null` alternative (an `Option`).
    fn non_null<'a>(&'a self, schema: &'a Value) -> Option<&'a Value> {
        let schema = self.resolve(schema);
        match schema.get("anyOf").and_then(Value::as_array) {
            Some(members) => {
                let mut rest = members
                    .iter()
                    .filter(|m| m.get("type").and_then(Value::as_str) != Some("null"));
                let only = rest.next()?;
                rest.next().is_none().then(|| self.resolve(only))
            }
            None => Some(schema),
        }
    }

    fn type_name(&self, schema: &Value) -> String {
        let schema = self.resolve(schema);
        if let Some(value) = schema.get("const") {
            return format!("`{}`", toml_literal(value));
        }
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            return values
                .iter()
                .map(|v| format!("`{}`", toml_literal(v)))
                .collect::<Vec<_>>()
                .join(" \\| ");
        }
        for alternatives in ["anyOf", "oneOf"] {
            if let Some(members) = schema.get(alternatives).and_then(Value::as_array) {
                let names: Vec<String> = members
                    .iter()
                    .filter(|m| m.get("type").and_then(Value::as_str) != Some("null"))
                    .map(|m| self.type_name(m))
                    .collect();
                return names.join(" \\| ");
            }
        }
        let kinds: Vec<&str> = match schema.get("type") {
            Some(Value::String(kind)) => vec![kind.as_str()],
            Some(Value::Array(kinds)) => kinds
                .iter()
                .filter_map(Value::as_str)
                .filter(|k| *k != "null")
                .collect(),
            _ => Vec::new(),
        };
        match kinds.as_slice() {
            ["array"] => match schema.get("items") {
                Some(items) => format!("array of {}", self.type_name(items)),
                None => "array".into(),
            },
            ["object"] => match schema.get("additionalProperties") {
                Some(values) if values.is_object() => format!("table of {}", self.type_name(values)),
                _ => "table".into(),
            },
            [] if schema.get("properties").is_some() || schema.get("allOf").is_some() => "table".into(),
            [] => "any".into(),
            kinds => kinds.join(" \\| "),
        }
    }
}

/// A default as it would be written in the file.
fn toml_literal(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!("[{}]", items.iter().map(toml_literal).collect::<Vec<_>>().join(", ")),
        Value::Object(map) if map.is_empty() => "{}".into(),
        other => other.to_string(),
    }
}

/// A doc comment as one table cell: lines joined, pipes escaped.
fn one_paragraph(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reference_is_current() {
        sluice_testkit::docs::assert_current(
            "docs/reference/config.md",
            &reference_markdown(),
            "cargo test -p sluice-runtime config_reference",
        );
    }

    #[test]
    fn every_component_type_and_its_documented_defaults_are_in_the_reference() {
        let text = reference_markdown();
        for source in ["http", "file", "nats", "objects", "generator"] {
            assert!(text.contains(&format!("### `type = \"{source}\"`")), "source {source}");
        }
        for transform in super::super::BUILT_IN_TRANSFORMS {
            assert!(
                text.contains(&format!("### `type = \"{transform}\"`")),
                "transform {transform}"
            );
        }
        for sink in ["lake", "postgres", "projection", "stream"] {
            assert!(text.contains(&format!("### `type = \"{sink}\"`")), "sink {sink}");
        }
        assert!(
            text.contains("| `delivery.visibility_timeout_secs` | integer | `30` |"),
            "a default from `default_visibility_timeout_secs`"
        );
        assert!(text.contains("| `inputs` | array of string | required |"));
    }

    #[test]
    fn every_key_says_what_it_means() {
        let text = reference_markdown();
        let undocumented: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("| `") && line.ends_with("|  |"))
            .collect();
        assert!(undocumented.is_empty(), "keys without a doc comment: {undocumented:#?}");
    }
}
