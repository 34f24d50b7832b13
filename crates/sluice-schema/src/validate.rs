//! The `validate` transform: each event is checked against a JSON Schema
//! 2020-12 (formats asserted), and its event id and event time are read
//! from configured JSON pointers. Most events get their yes from the quick
//! check (`fast_accept.rs`) as they are parsed; the rest are parsed
//! into a document that jsonschema checks, which alone refuses. Refused
//! events carry a machine-readable reason:
//!
//! * `invalid_json` — the line is not JSON (or not UTF-8);
//! * `not_an_object` — valid JSON, but not an object;
//! * `schema:<instance pointer>:<keyword>` — the first schema violation, e.g.
//!   `schema:/device/screen/w:type`; for `required`, the pointer names the
//!   missing property (`schema:/event_id:required`);
//! * `missing_event_id`, `missing_event_time`, `bad_event_time` — the
//!   pointers found nothing usable (only when the schema did not already say so).

use std::{path::Path, sync::Arc};

use crate::iglu::Referenced;
use async_trait::async_trait;
use chrono::DateTime;
use jsonschema::{
    ValidationError, Validator,
    error::ValidationErrorKind,
    json::{Array, Json, JsonNumber, Node, Object},
};
use serde_json::Value;
use sluice_core::{
    BatchInfo, Event, JsonDoc, Rejected, StageError, Transform, TransformOutput, json_kind, pointer_tokens, reason,
};

use crate::{
    event_json::{EventJson, parse_event},
    fast_accept::FastAccept,
};

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot read schema {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("schema {path} is not JSON: {source}")]
    Parse { path: String, source: serde_json::Error },
    #[error("schema {path} is not a valid JSON Schema 2020-12: {message}")]
    Compile { path: String, message: String },
}

/// Reads a JSON Schema file and checks that it compiles.
pub fn load_schema(path: &Path) -> Result<JsonDoc, SchemaError> {
    let shown = path.display().to_string();
    let text = std::fs::read(path).map_err(|source| SchemaError::Read {
        path: shown.clone(),
        source,
    })?;
    let schema: JsonDoc = serde_json::from_slice(&text).map_err(|source| SchemaError::Parse {
        path: shown.clone(),
        source,
    })?;
    compile::<EventJson>(&schema.to_value()).map_err(|message| SchemaError::Compile { path: shown, message })?;
    Ok(schema)
}

/// A validator for instances in representation `F` (`serde_json::Value`
/// unless named).
pub(crate) fn compile<F: Json>(schema: &Value) -> Result<Validator<F>, String> {
    compile_with(schema, Referenced::default())
}

/// [`compile`], with the Iglu schemas `schema` refers to.
pub(crate) fn compile_with<F: Json>(schema: &Value, referenced: Referenced) -> Result<Validator<F>, String> {
    let (schema, draft) = crate::iglu::for_validator(schema);
    jsonschema::options_for::<F>()
        .with_draft(draft)
        .with_retriever(referenced)
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| e.to_string())
}

/// Validates events against one schema and stamps their id and time.
pub struct ValidateTransform {
    validator: Validator<EventJson>,
    fields: EventFields,
    /// The quick yes, when the schema and the pointers allow one.
    fast: Option<FastAccept>,
}

impl ValidateTransform {
    /// `event_id` and `event_time` are JSON pointers (`/ts`).
    pub fn new(schema: &JsonDoc, event_id: &str, event_time: &str) -> Result<Self, String> {
        let schema = schema.to_value();
        let (for_validator, draft) = crate::iglu::for_validator(&schema);
        Ok(ValidateTransform {
            validator: compile(&schema)?,
            fields: EventFields::new(event_id, event_time),
            fast: FastAccept::compile(&for_validator, draft, event_id, event_time),
        })
    }

    /// Checks one event; on success sets its id and time.
    pub fn check(&self, event: &mut Event) -> Result<(), (String, String)> {
        if let Some(accepted) = self.fast.as_ref().and_then(|fast| fast.accept(&event.payload)) {
            event.id = Some(accepted.id);
            event.time_us = Some(accepted.time_us);
            return Ok(());
        }
        self.check_fully(event)
    }

    /// [`check`](Self::check) without the quick yes: the one that names reasons.
    pub(crate) fn check_fully(&self, event: &mut Event) -> Result<(), (String, String)> {
        let document = parse_event(&event.payload).map_err(|(why, detail)| (why.to_string(), detail))?;
        // `is_valid` stops at the first failure without building errors;
        // only an invalid event pays for the error that names the reason.
        if !self.validator.is_valid(&document)
            && let Some(error) = self.validator.iter_errors(&document).next()
        {
            return Err((schema_reason(&error), error.to_string()));
        }
        self.fields.stamp::<EventJson>(&document, event)
    }
}

/// A JSON pointer split into its reference tokens once, so looking it up
/// in every event allocates nothing (`Value::pointer` unescapes each token
/// into a new string on every call).
#[derive(Debug, Clone)]
struct FieldPointer {
    text: String,
    /// `None` for text that is not a pointer (it finds nothing).
    tokens: Option<Vec<String>>,
}

impl FieldPointer {
    fn new(text: &str) -> Self {
        let is_pointer = text.is_empty() || text.starts_with('/');
        FieldPointer {
            text: text.to_string(),
            tokens: is_pointer.then(|| pointer_tokens(text)),
        }
    }

    /// What `Value::pointer` with the same text finds, in any
    /// representation jsonschema reads.
    fn find<'v, F: Json<PreparedKey = String>>(&self, value: F::Node<'v>) -> Option<F::Node<'v>> {
        self.tokens.as_ref()?.iter().try_fold(value, |at, token| {
            if let Some(members) = at.as_object() {
                return members.get(token);
            }
            array_index(token).and_then(|i| at.as_array()?.elements().nth(i))
        })
    }
}

/// An array index token as RFC 6901 writes it: digits, no leading zero.
fn array_index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() > 1) {
        return None;
    }
    token.parse().ok()
}

/// Where events keep their id and their time (JSON pointers).
#[derive(Debug, Clone)]
pub(crate) struct EventFields {
    id: FieldPointer,
    time: FieldPointer,
}

impl EventFields {
    pub(crate) fn new(event_id: &str, event_time: &str) -> Self {
        EventFields {
            id: FieldPointer::new(event_id),
            time: FieldPointer::new(event_time),
        }
    }

    /// The nodes at the id and the time pointers. When both name members
    /// of the top-level object (`/event_id`, `/ts`) and the representation
    /// finds a pass over that many members cheaper than two lookups
    /// ([`Json::KEYS_PER_LOOKUP`]: a sonic-rs lookup scans every member,
    /// since a name given twice counts with its last value), one pass
    /// finds both.
    fn find<'v, F: Json<PreparedKey = String>>(
        &self,
        value: F::Node<'v>,
    ) -> (Option<F::Node<'v>>, Option<F::Node<'v>>) {
        if let (Some([id]), Some([time])) = (self.id.tokens.as_deref(), self.time.tokens.as_deref())
            && let Some(members) = value.as_object()
            && members.len() <= 2 * F::KEYS_PER_LOOKUP
        {
            let (mut at_id, mut at_time) = (None, None);
            for (name, node) in members.members() {
                let name: &str = name.as_ref();
                if name == id {
                    at_id = Some(node.clone());
                }
                if name == time {
                    at_time = Some(node);
                }
            }
            return (at_id, at_time);
        }
        (self.id.find::<F>(value.clone()), self.time.find::<F>(value))
    }

    /// Sets `event`'s id and time from `value` (an event in representation
    /// `F`); the reason and detail if they are unusable.
    pub(crate) fn stamp<'v, F: Json<PreparedKey = String>>(
        &self,
        value: F::Node<'v>,
        event: &mut Event,
    ) -> Result<(), (String, String)> {
        let (event_id, event_time) = (&self.id.text, &self.time.text);
        let (found, time) = self.find::<F>(value);
        let id = match (
            found.as_ref().and_then(Node::as_string),
            found.as_ref().and_then(Node::as_number),
        ) {
            (Some(s), _) if !s.is_empty() => Arc::<str>::from(s.as_ref()),
            (None, Some(n)) => Arc::<str>::from(n.as_str().as_ref()),
            _ => {
                return Err((
                    reason::MISSING_EVENT_ID.into(),
                    format!("no string or number at {}", event_id),
                ));
            }
        };
        let time_us = match time {
            Some(node) => match node.as_string() {
                Some(s) => DateTime::parse_from_rfc3339(&s)
                    .map_err(|e| {
                        (
                            reason::BAD_EVENT_TIME.to_string(),
                            format!("{s:?} at {}: {e}", event_time),
                        )
                    })?
                    .timestamp_micros(),
                None => {
                    return Err((
                        reason::BAD_EVENT_TIME.into(),
                        format!(
                            "expected an RFC 3339 string at {}, got {}",
                            event_time,
                            json_kind(&node.to_value())
                        ),
                    ));
                }
            },
            None => {
                return Err((reason::MISSING_EVENT_TIME.into(), format!("nothing at {}", event_time)));
            }
        };
        event.id = Some(id);
        event.time_us = Some(time_us);
        Ok(())
    }
}

/// `schema:<pointer>:<keyword>`; for `required` the pointer names the missing property.
pub(crate) fn schema_reason(error: &ValidationError) -> String {
    schema_reason_under("", error)
}

/// [`schema_reason`] for a value checked at `prefix` (a JSON pointer) of the event.
pub(crate) fn schema_reason_under(prefix: &str, error: &ValidationError) -> String {
    let mut pointer = format!("{prefix}{}", error.instance_path().as_str());
    if let ValidationErrorKind::Required { property } = error.kind() {
        let name = property.as_str().map_or_else(|| property.to_string(), str::to_string);
        pointer.push('/');
        pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
    }
    if pointer.is_empty() {
        pointer.push('/');
    }
    format!("{}:{pointer}:{}", sluice_core::reason::SCHEMA, error.kind().keyword())
}

#[async_trait]
impl Transform for ValidateTransform {
    async fn process(&self, _batch: BatchInfo<'_>, events: Vec<Event>) -> Result<TransformOutput, StageError> {
        let mut out = TransformOutput {
            events: Vec::with_capacity(events.len()),
            ..TransformOutput::default()
        };
        for mut event in events {
            match self.check(&mut event) {
                Ok(()) => out.events.push(event),
                Err((why, detail)) => out.rejected.push(Rejected::new(event, why, detail)),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_json::to_serde;
    use bytes::Bytes;
    use jsonschema::json::SerdeJson;
    use serde_json::json;

    fn event(line: &str) -> Event {
        Event::from_line(0, Bytes::from(line.to_string()))
    }

    /// The generator's oracle holds for the validator: every line it calls
    /// valid passes its schema, every malformed one fails, and the distinct
    /// ids that pass are the oracle's.
    #[test]
    fn generated_lines_validate_as_the_generator_says() {
        let options = sluice_gen::ClickstreamOptions::noisy(20_000, 42);
        let mut out = Vec::new();
        let oracle = sluice_gen::clickstream(&options, &mut out).unwrap();
        let schema: JsonDoc = sluice_gen::CLICKSTREAM_SCHEMA.parse().unwrap();
        let v = ValidateTransform::new(&schema, "/event_id", "/ts").unwrap();
        let (mut valid, mut invalid) = (std::collections::HashSet::new(), 0);
        for line in String::from_utf8(out).unwrap().lines() {
            let mut e = event(line);
            match v.check(&mut e) {
                Ok(()) => {
                    valid.insert(e.id.unwrap().to_string());
                }
                Err(_) => invalid += 1,
            }
        }
        assert_eq!(valid.len() as u64, oracle.valid_unique);
        assert_eq!(invalid, oracle.invalid);
    }

    fn transform() -> ValidateTransform {
        let schema = json!({
            "type": "object",
            "required": ["id", "ts"],
            "properties": {
                "id": {"type": "string"},
                "ts": {"type": "string", "format": "date-time"},
                "device": {"type": "object", "properties": {"screen": {"type": "object",
                    "properties": {"w": {"type": "integer"}}}}},
                "kind": {"enum": ["a", "b"]}
            }
        });
        ValidateTransform::new(&crate::doc(schema), "/id", "/ts").unwrap()
    }

    fn reason_of(line: &str) -> String {
        transform().check(&mut event(line)).unwrap_err().0
    }

    #[test]
    fn field_pointers_find_what_value_pointer_finds_in_either_representation() {
        let doc = json!({"a/b": {"c~d": [10, {"e": 11}]}, "": 12, "n": {"01": 13}});
        let parsed = parse_event(doc.to_string().as_bytes()).unwrap();
        for text in [
            "",
            "/a~1b",
            "/a~1b/c~0d/0",
            "/a~1b/c~0d/1/e",
            "/a~1b/c~0d/01",
            "/a~1b/c~0d/+1",
            "/a~1b/c~0d/2",
            "/",
            "/n/01",
            "/missing/x",
            "no-slash",
        ] {
            let pointer = FieldPointer::new(text);
            assert_eq!(pointer.find::<SerdeJson>(&doc), doc.pointer(text), "{text:?}");
            assert_eq!(
                pointer.find::<EventJson>(&parsed).map(to_serde).as_ref(),
                doc.pointer(text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn id_and_time_found_together_are_what_each_pointer_finds_alone() {
        let text = r#"{"id":"first","ts":"2026-11-01T00:00:00Z","n":{"id":"inner"},"id":"last","ts":7}"#;
        let doc: Value = serde_json::from_str(text).unwrap();
        let parsed = parse_event(text.as_bytes()).unwrap();
        for (id, time) in [
            ("/id", "/ts"),
            ("/ts", "/id"),
            ("/id", "/id"),
            ("/n/id", "/ts"),
            ("/id", "/n/id"),
            ("/missing", "/ts"),
            ("/id", "/missing"),
            ("", "/ts"),
            ("no-slash", "/id"),
        ] {
            let fields = EventFields::new(id, time);
            let (at_id, at_time) = fields.find::<EventJson>(&parsed);
            assert_eq!(
                (at_id.map(to_serde), at_time.map(to_serde)),
                (
                    fields.id.find::<EventJson>(&parsed).map(to_serde),
                    fields.time.find::<EventJson>(&parsed).map(to_serde)
                ),
                "{id:?} {time:?}"
            );
            let (at_id, at_time) = fields.find::<SerdeJson>(&doc);
            assert_eq!(
                (at_id, at_time),
                (doc.pointer(id), doc.pointer(time)),
                "{id:?} {time:?}"
            );
        }
        let (at_id, at_time) = EventFields::new("/id", "/ts").find::<EventJson>(&parsed);
        assert_eq!(
            (at_id.map(to_serde), at_time.map(to_serde)),
            (Some(json!("last")), Some(json!(7)))
        );
        // Wider than a members pass pays for: each pointer is looked up.
        let wide = format!(
            r#"{{"id":"first",{}"ts":"2026-11-01T00:00:00Z","id":"last"}}"#,
            (0..40).map(|i| format!(r#""f{i}":{i},"#)).collect::<String>()
        );
        let doc: Value = serde_json::from_str(&wide).unwrap();
        let parsed = parse_event(wide.as_bytes()).unwrap();
        let fields = EventFields::new("/id", "/ts");
        let (at_id, at_time) = fields.find::<EventJson>(&parsed);
        assert_eq!(
            (at_id.map(to_serde), at_time.map(to_serde)),
            (Some(json!("last")), Some(json!("2026-11-01T00:00:00Z")))
        );
        let (at_id, at_time) = fields.find::<SerdeJson>(&doc);
        assert_eq!((at_id, at_time), (doc.pointer("/id"), doc.pointer("/ts")));
    }

    #[test]
    fn valid_event_gets_id_and_utc_time() {
        let mut e = event(r#"{"id":"e1","ts":"2026-11-01T02:30:00.500+02:00"}"#);
        transform().check(&mut e).unwrap();
        assert_eq!(e.id.as_deref(), Some("e1"));
        assert_eq!(
            e.time_us,
            Some(
                DateTime::parse_from_rfc3339("2026-11-01T00:30:00.5Z")
                    .unwrap()
                    .timestamp_micros()
            )
        );
    }

    #[test]
    fn a_numeric_id_is_its_number_text_and_a_repeated_member_is_read_with_its_last_value() {
        let any = ValidateTransform::new(&crate::doc(json!({})), "/id", "/ts").unwrap();
        let mut e = event(r#"{"id":"first","ts":"2026-11-01T00:00:00Z","id":1.5e3}"#);
        any.check(&mut e).unwrap();
        assert_eq!(e.id.as_deref(), Some("1500.0"));
        let mut e = event(r#"{"id":-42,"ts":"2026-11-01T00:00:00Z"}"#);
        any.check(&mut e).unwrap();
        assert_eq!(e.id.as_deref(), Some("-42"));
        let (why, detail) = any.check(&mut event(r#"{"id":"e","ts":[2026]}"#)).unwrap_err();
        assert_eq!(
            (why.as_str(), detail.as_str()),
            ("bad_event_time", "expected an RFC 3339 string at /ts, got an array")
        );
        let mut e = event(r#"{"id":"e6","ts":"2026-11-01T00:00:00Z","id":"e7"}"#);
        transform().check(&mut e).unwrap();
        assert_eq!(e.id.as_deref(), Some("e7"));
        // The copy the lake keeps (the last) is always checked.
        assert_eq!(
            reason_of(r#"{"id":"e7","ts":"2026-11-01T00:00:00Z","id":7}"#),
            "schema:/id:type"
        );
        assert_eq!(
            reason_of(r#"{"id":"","ts":"2026-11-01T00:00:00Z"}"#),
            "missing_event_id"
        );
    }

    #[test]
    fn reasons_are_machine_readable() {
        assert_eq!(reason_of(r#"{"id":"e1","ts":"#), "invalid_json");
        assert_eq!(reason_of("[1,2]"), "not_an_object");
        assert_eq!(reason_of("null"), "not_an_object");
        assert_eq!(reason_of(r#"{"a":1}{"b":2}"#), "invalid_json");
        assert_eq!(reason_of(r#"{"ts":"2026-11-01T00:00:00Z"}"#), "schema:/id:required");
        assert_eq!(reason_of(r#"{"id":"e","ts":"yesterday"}"#), "schema:/ts:format");
        assert_eq!(
            reason_of(r#"{"id":"e","ts":"2026-11-01T00:00:00Z","device":{"screen":{"w":"wide"}}}"#),
            "schema:/device/screen/w:type"
        );
        assert_eq!(
            reason_of(r#"{"id":"e","ts":"2026-11-01T00:00:00Z","kind":"../../etc/passwd"}"#),
            "schema:/kind:enum"
        );
    }

    #[test]
    fn invalid_utf8_is_invalid_json() {
        let mut e = Event::from_line(0, Bytes::from_static(b"{\"id\":\"\xff\"}"));
        assert_eq!(transform().check(&mut e).unwrap_err().0, "invalid_json");
    }

    #[test]
    fn hostile_input_is_refused_without_crashing() {
        let deep_array = "[".repeat(100_000) + &"]".repeat(100_000);
        assert_eq!(reason_of(&deep_array), "invalid_json");
        let deep_field = format!(
            r#"{{"id":"e","ts":"2026-11-01T00:00:00Z","x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(reason_of(&deep_field), "invalid_json");
        assert_eq!(
            reason_of("{\"id\":\"a\u{0}b\",\"ts\":\"2026-11-01T00:00:00Z\"}"),
            "invalid_json"
        );
        assert_eq!(
            reason_of(r#"{"id":"e","ts":"2026-11-01T00:00:00Z","kind":"dt=1970-01-01"}"#),
            "schema:/kind:enum"
        );
        assert_eq!(reason_of(r#"{"id":"e","ts":"../../x"}"#), "schema:/ts:format");
    }

    #[test]
    fn escaped_nul_and_megabyte_strings_are_ordinary_values() {
        let big = "x".repeat(4 << 20);
        let mut e = event(&format!(
            r#"{{"id":"a\u0000b","ts":"2026-11-01T00:00:00Z","note":"{big}"}}"#
        ));
        transform().check(&mut e).unwrap();
        assert_eq!(e.id.as_deref(), Some("a\u{0}b"));
    }

    #[tokio::test]
    async fn a_bad_event_does_not_stop_its_batch() {
        let events = vec![
            event(r#"{"id":"a","ts":"2026-11-01T00:00:00Z"}"#),
            event("{"),
            event(r#"{"id":"b","ts":"2026-11-01T00:00:00Z"}"#),
        ];
        let out = transform().process(BatchInfo::first("test"), events).await.unwrap();
        assert_eq!(out.events.len(), 2);
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(out.rejected[0].event.raw, Bytes::from_static(b"{"));
    }
}
