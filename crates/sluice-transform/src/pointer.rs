//! JSON pointers (RFC 6901) as field paths, and the edits the built-in
//! operations make through them. Objects are walked by key, arrays by index;
//! `set` creates missing objects on the way.

use serde_json::{Map, Value};
use sluice_core::json_kind;

/// A parsed pointer to a field (never the whole event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    text: String,
    segments: Vec<String>,
}

impl Pointer {
    pub fn parse(text: &str) -> Result<Pointer, String> {
        if !text.starts_with('/') || text.len() < 2 {
            return Err(format!(
                "{text:?} is not a JSON pointer to a field; write it like \"/props/revenue\""
            ));
        }
        Ok(Pointer {
            text: text.to_string(),
            segments: sluice_core::pointer_tokens(text),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn get<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        self.segments.iter().try_fold(root, step)
    }

    pub fn get_mut<'v>(&self, root: &'v mut Value) -> Option<&'v mut Value> {
        self.segments.iter().try_fold(root, step_mut)
    }

    /// Removes the field and returns it (array elements are not removed).
    pub fn take(&self, root: &mut Value) -> Option<Value> {
        let (last, parent) = self.segments.split_last().expect("a field pointer has a segment");
        let parent = parent.iter().try_fold(root, step_mut)?;
        parent.as_object_mut()?.remove(last)
    }

    /// Sets the field, creating missing objects on the way; fails when a
    /// value on the way is not an object (or an array with that index).
    pub fn set(&self, root: &mut Value, value: Value) -> Result<(), String> {
        let (last, parent_path) = self.segments.split_last().expect("a field pointer has a segment");
        let mut node = root;
        for segment in parent_path {
            node = match node {
                Value::Object(map) => map.entry(segment.clone()).or_insert_with(|| Value::Object(Map::new())),
                Value::Array(items) => segment
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get_mut(i))
                    .ok_or_else(|| format!("{}: no element {segment:?} in the array on the way", self.text))?,
                Value::Null => {
                    *node = Value::Object(Map::new());
                    node.as_object_mut()
                        .expect("just made an object")
                        .entry(segment.clone())
                        .or_insert_with(|| Value::Object(Map::new()))
                }
                other => {
                    return Err(format!(
                        "{}: the value on the way is {}, not an object",
                        self.text,
                        json_kind(other)
                    ));
                }
            };
        }
        match node {
            Value::Object(map) => {
                map.insert(last.clone(), value);
                Ok(())
            }
            Value::Array(items) => {
                let slot = last
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get_mut(i))
                    .ok_or_else(|| format!("{}: no element {last:?} in the array", self.text))?;
                *slot = value;
                Ok(())
            }
            Value::Null => {
                let mut map = Map::new();
                map.insert(last.clone(), value);
                *node = Value::Object(map);
                Ok(())
            }
            other => Err(format!(
                "{}: the parent is {}, not an object",
                self.text,
                json_kind(other)
            )),
        }
    }
}

fn step<'v>(node: &'v Value, segment: &String) -> Option<&'v Value> {
    match node {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => items.get(segment.parse::<usize>().ok()?),
        _ => None,
    }
}

fn step_mut<'v>(node: &'v mut Value, segment: &String) -> Option<&'v mut Value> {
    match node {
        Value::Object(map) => map.get_mut(segment),
        Value::Array(items) => items.get_mut(segment.parse::<usize>().ok()?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Pointer {
        Pointer::parse(s).unwrap()
    }

    #[test]
    fn get_take_and_set_walk_objects_and_arrays() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "list": [{"x": 1}], "s": "str"});
        assert_eq!(p("/list/0/x").get(&v), Some(&json!(1)));
        assert_eq!(p("/a/b").take(&mut v), Some(json!(1)));
        assert_eq!(p("/a/zz").take(&mut v), None);
        p("/new/deep/field").set(&mut v, json!(true)).unwrap();
        p("/list/0/y").set(&mut v, json!(2)).unwrap();
        assert_eq!(
            v,
            json!({"a": {"c": 2}, "list": [{"x": 1, "y": 2}], "s": "str", "new": {"deep": {"field": true}}})
        );
        assert!(p("/s/inner").set(&mut v, json!(1)).unwrap_err().contains("a string"));
        assert!(p("/list/5/y").set(&mut v, json!(1)).is_err());
        assert_eq!(p("/a~1b").segments, vec!["a/b"]);
        assert!(Pointer::parse("a").is_err() && Pointer::parse("/").is_err());
    }
}
