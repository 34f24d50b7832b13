//! Events: one JSON object on its way from a batch to the sinks.

use bytes::Bytes;
use std::{any::Any, sync::Arc};

/// One event. `payload` is the event's current JSON text (a transform may
/// rewrite it); `raw` is the line exactly as received, kept for dead letters.
/// `id` and `time_us` are filled by the stage that knows where they live
/// (the `validate` transform) and are what sinks partition and dedupe by;
/// `schema` is the registry key of the version the event was checked
/// against (set by `self_describing`), which a routed lake sink routes by.
/// `parsed` is a parse of the payload a stage kept for the stages after it
/// ([`Event::keep_parse`]).
#[derive(Debug, Clone)]
pub struct Event {
    pub line: u32,
    pub raw: Bytes,
    pub payload: Bytes,
    pub id: Option<Arc<str>>,
    /// Event time, microseconds since the Unix epoch, UTC.
    pub time_us: Option<i64>,
    pub schema: Option<Arc<str>>,
    pub parsed: Option<KeptParse>,
}

/// A parsed payload kept on its event, and the payload it was parsed
/// from: it stands only while the event's payload is still those bytes.
/// Holding them keeps their memory from being reused, so the same address
/// and length mean the same, unchanged bytes; a stage that rewrites the
/// payload needs to do nothing for the kept parse to lapse.
#[derive(Clone)]
pub struct KeptParse {
    of: Bytes,
    document: Arc<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for KeptParse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeptParse")
    }
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
            parsed: None,
        }
    }

    /// Keeps `document`, a parse of the current payload, for later stages.
    pub fn keep_parse<T: Any + Send + Sync>(&mut self, document: T) {
        self.parsed = Some(KeptParse {
            of: self.payload.clone(),
            document: Arc::new(document),
        });
    }

    /// The kept parse of the current payload, if one of type `T` was kept
    /// and the payload has not changed since.
    pub fn kept_parse<T: Any>(&self) -> Option<&T> {
        let kept = self.parsed.as_ref()?;
        let same = kept.of.as_ptr() == self.payload.as_ptr() && kept.of.len() == self.payload.len();
        if same { kept.document.downcast_ref() } else { None }
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
    fn a_kept_parse_stands_only_for_the_payload_it_was_made_from() {
        let mut event = Event::from_line(1, Bytes::from_static(br#"{"a": 1}"#));
        event.keep_parse(7_u32);
        assert_eq!(event.kept_parse::<u32>(), Some(&7));
        assert_eq!(event.kept_parse::<String>(), None, "another type");
        assert_eq!(
            event.clone().kept_parse::<u32>(),
            Some(&7),
            "a clone shares the payload"
        );
        // The same text in other bytes: a rewritten payload, whatever it says.
        event.payload = Bytes::from(br#"{"a": 1}"#.to_vec());
        assert_eq!(event.kept_parse::<u32>(), None);
        // A payload cut from the same bytes but shorter.
        let mut event = Event::from_line(1, Bytes::from_static(br#"{"a": 1}  "#));
        event.keep_parse(7_u32);
        event.payload = event.payload.slice(..8);
        assert_eq!(event.kept_parse::<u32>(), None);
    }

    #[test]
    fn pointer_tokens_are_unescaped_in_rfc_order() {
        assert_eq!(pointer_tokens("/page/url"), ["page", "url"]);
        assert_eq!(pointer_tokens("/a~1b/c~0d"), ["a/b", "c~d"]);
        // `~01` is a literal `~1`, not a slash: `~1` is replaced first.
        assert_eq!(pointer_tokens("/~01"), ["~1"]);
        assert!(pointer_tokens("").is_empty());
    }
}
