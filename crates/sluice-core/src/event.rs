//! Events: one JSON object on its way from a batch to the sinks.

use bytes::Bytes;
use std::sync::Arc;

/// One event. `payload` is the event's current JSON text (a transform may
/// rewrite it); `raw` is the line exactly as received, kept for dead letters.
/// `id` and `time_us` are filled by the stage that knows where they live
/// (the `validate` transform) and are what sinks partition and dedupe by;
/// `schema` is the registry key of the version the event was checked
/// against (set by `self_describing`), which a routed lake sink routes by.
#[derive(Debug, Clone)]
pub struct Event {
    pub line: u32,
    pub raw: Bytes,
    pub payload: Bytes,
    pub id: Option<Arc<str>>,
    /// Event time, microseconds since the Unix epoch, UTC.
    pub time_us: Option<i64>,
    pub schema: Option<Arc<str>>,
}

impl Event {
    /// A fresh event from a batch line: payload and raw bytes are the same.
    pub fn from_line(line: u32, bytes: Bytes) -> Self {
        Event {
            line,
            raw: bytes.clone(),
            payload: bytes,
            id: None,
            time_us: None,
            schema: None,
        }
    }
}

/// An event's payload parsed as a JSON object (the `Value` is always an
/// object), or the dead-letter reason (`invalid_json`, `not_an_object`)
/// and detail for one that is not.
pub fn parse_object(payload: &[u8]) -> Result<serde_json::Value, (&'static str, String)> {
    use crate::dead_letter::reason;
    match serde_json::from_slice(payload) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(other) => Err((
            reason::NOT_AN_OBJECT,
            format!("expected a JSON object, got {}", json_kind(&other)),
        )),
        Err(e) => Err((reason::INVALID_JSON, e.to_string())),
    }
}

/// The reference tokens of a JSON pointer (RFC 6901), unescaped:
/// `/a~1b/c~0d` -> `["a/b", "c~d"]`; `""` (the whole document) -> `[]`.
pub fn pointer_tokens(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// What kind of JSON value `v` is, for messages: `a string`, `an object`, ...
pub fn json_kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_tokens_are_unescaped_in_rfc_order() {
        assert_eq!(pointer_tokens("/page/url"), ["page", "url"]);
        assert_eq!(pointer_tokens("/a~1b/c~0d"), ["a/b", "c~d"]);
        // `~01` is a literal `~1`, not a slash: `~1` is replaced first.
        assert_eq!(pointer_tokens("/~01"), ["~1"]);
        assert!(pointer_tokens("").is_empty());
    }

    /// A payload's floats keep the correctly rounded double: every stage
    /// that reads a payload through `parse_object` (self-describing
    /// routing, document changes) passes on what the event said.
    #[test]
    fn parsed_floats_are_correctly_rounded() {
        for text in sluice_testkit::floats::HARD_FLOATS {
            let parsed = parse_object(format!(r#"{{"x": {text}}}"#).as_bytes()).unwrap();
            let nearest: f64 = text.parse().unwrap();
            assert_eq!(parsed["x"].as_f64().unwrap().to_bits(), nearest.to_bits(), "{text}");
        }
    }
}
