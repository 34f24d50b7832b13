use bytes::Bytes;
use serde_json::json;
use sluice_core::{Event, JsonDoc};

use super::*;
use crate::ValidateTransform;

/// splitmix64, so a seed names one stream of cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The plan and the full check of one schema, pointers `/event_id`, `/ts`.
fn both(schema: &Value) -> (FastAccept, ValidateTransform) {
    let (for_validator, draft) = crate::iglu::for_validator(schema);
    let plan = FastAccept::compile(&for_validator, draft, "/event_id", "/ts").expect("a plan");
    let doc: JsonDoc = serde_json::from_value(schema.clone()).unwrap();
    (plan, ValidateTransform::new(&doc, "/event_id", "/ts").unwrap())
}

/// What the full check says of `line`: the id and time, or the reason.
fn fully(full: &ValidateTransform, line: &[u8]) -> Result<Accepted, String> {
    let mut event = Event::from_line(0, Bytes::copy_from_slice(line));
    full.check_fully(&mut event).map_err(|(why, _)| why)?;
    Ok(Accepted {
        id: event.id.unwrap(),
        time_us: event.time_us.unwrap(),
    })
}

/// Every line the plan accepts, the full check accepts with the same id
/// and time; returns how many lines the plan accepted.
fn assert_never_wrongly_accepts(plan: &FastAccept, full: &ValidateTransform, lines: &[Vec<u8>]) -> usize {
    let mut accepted = 0;
    for line in lines {
        if let Some(quick) = plan.accept(line) {
            assert_eq!(
                fully(full, line),
                Ok(quick),
                "accepted by the plan: {}",
                String::from_utf8_lossy(line)
            );
            accepted += 1;
        }
    }
    accepted
}

fn clickstream_schema() -> Value {
    serde_json::from_str(sluice_gen::CLICKSTREAM_SCHEMA).unwrap()
}

fn generated_lines(lines: u64, seed: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    sluice_gen::clickstream(&sluice_gen::ClickstreamOptions::noisy(lines, seed), &mut out).unwrap();
    out.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Values of every type and the edges of each.
fn odd_values() -> Vec<Value> {
    vec![
        json!(null),
        json!(true),
        json!(0),
        json!(-1),
        json!(1.0),
        json!(-0.0),
        json!(2.5),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(""),
        json!("x"),
        json!("DE"),
        json!("USD"),
        json!("click"),
        json!("ÿ".repeat(40)),
        json!("x".repeat(65)),
        json!("2026-11-01T00:00:00Z"),
        json!("2026-13-01T00:00:00Z"),
        json!("2026-11-01 00:00:00"),
        json!("00000000-0000-0000-0000-000000000000"),
        json!([]),
        json!([1, "a", null]),
        json!([{"sku": "a", "qty": 1, "price": 1.5}]),
        json!([{"sku": "a", "qty": 0, "price": 1}]),
        json!({}),
        json!({"url": "u"}),
        json!({"w": 1, "h": -1}),
    ]
}

/// `value` with one member somewhere replaced, removed or added.
fn mutate(rng: &mut Rng, value: &mut Value, odd: &[Value]) {
    let Value::Object(members) = value else {
        return;
    };
    let names: Vec<String> = members.keys().cloned().collect();
    if names.is_empty() || rng.below(8) == 0 {
        members.insert(
            rng.pick(&["extra", "w", "url", "sku", "event_id"]).to_string(),
            rng.pick(odd).clone(),
        );
        return;
    }
    let name = rng.pick(&names).clone();
    match rng.below(4) {
        0 => {
            members.remove(&name);
        }
        1 => {
            members.insert(name, rng.pick(odd).clone());
        }
        _ => {
            let child = members.get_mut(&name).unwrap();
            if let Value::Array(items) = child
                && !items.is_empty()
            {
                let i = rng.below(items.len());
                mutate(rng, &mut items[i], odd);
            } else if child.is_object() {
                mutate(rng, child, odd);
            } else {
                *child = rng.pick(odd).clone();
            }
        }
    }
}

/// Edits of the text itself: what a parse must refuse or a member named twice.
fn text_edits(line: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(line).to_string();
    let body = text.strip_suffix('}').unwrap_or(&text);
    let mut edits: Vec<String> = [
        r#","extra":[1,,2]}"#,
        r#","extra":01}"#,
        r#","extra":tru}"#,
        r#","extra":"\q"}"#,
        r#","extra":{"a" 1}}"#,
        r#","extra":"\ud800"}"#,
        r#","extra":"a\u0000b"}"#,
        ",\"extra\":\"a\u{1}b\"}",
        r#","extra":1e400}"#,
        r#","extra":-}"#,
        r#","extra":[1]]}"#,
        r#","event_id":"a0000000-0000-0000-0000-000000000000"}"#,
        r#","ts":"2026-11-01T00:00:00Z"}"#,
        r#","page":{"url":"u"}}"#,
        r#","geo":7}"#,
        "}}",
        "} x",
        "",
    ]
    .iter()
    .map(|tail| format!("{body}{tail}"))
    .collect();
    edits.push(text.replacen(r#""url":"#, r#""url":"a","url":"#, 1));
    edits.push(text.replacen(r#""w":"#, r#""w":1,"w":"#, 1));
    edits.push(text.replacen('"', "\"\\u0065", 1));
    edits.push(text.replacen("\":", "\" :", 3));
    edits.push(format!("[{text}]"));
    let mut bytes: Vec<Vec<u8>> = edits.into_iter().map(String::into_bytes).collect();
    let mut bad = line.to_vec();
    if let Some(at) = bad.iter().rposition(|&b| b == b'"') {
        bad.insert(at, 0xff);
    }
    bytes.push(bad);
    bytes.push(
        format!(
            r#"{{"event_id":"e","ts":"2026-11-01T00:00:00Z","x":{}}}"#,
            "[".repeat(200) + &"]".repeat(200)
        )
        .into_bytes(),
    );
    bytes
}

/// Generated lines and their variants.
struct Cases {
    /// The lines, and their values changed (no member named twice).
    mutated: Vec<Vec<u8>>,
    /// Their text edited.
    edited: Vec<Vec<u8>>,
}

impl Cases {
    fn all(&self) -> Vec<Vec<u8>> {
        self.mutated.iter().chain(&self.edited).cloned().collect()
    }
}

fn cases(lines: u64, seed: u64) -> Cases {
    let mut rng = Rng(seed);
    let odd = odd_values();
    let mut cases = Cases {
        mutated: Vec::new(),
        edited: Vec::new(),
    };
    for line in generated_lines(lines, seed) {
        if let Ok(value) = serde_json::from_slice::<Value>(&line) {
            for _ in 0..3 {
                let mut mutated = value.clone();
                for _ in 0..=rng.below(3) {
                    mutate(&mut rng, &mut mutated, &odd);
                }
                cases.mutated.push(serde_json::to_vec(&mutated).unwrap());
            }
        }
        if rng.below(4) == 0 {
            cases.edited.extend(text_edits(&line));
        }
        cases.mutated.push(line);
    }
    cases
}

#[test]
fn every_event_the_generator_calls_valid_is_accepted_quickly() {
    let (plan, full) = both(&clickstream_schema());
    let lines = generated_lines(20_000, 42);
    let valid: Vec<_> = lines.iter().filter(|l| fully(&full, l).is_ok()).cloned().collect();
    assert!(valid.len() > 19_000, "{}", valid.len());
    assert_eq!(assert_never_wrongly_accepts(&plan, &full, &valid), valid.len());
}

#[test]
fn what_the_plan_accepts_the_full_check_accepts_alike() {
    let (plan, full) = both(&clickstream_schema());
    let cases = cases(4_000, 7);
    assert_never_wrongly_accepts(&plan, &full, &cases.edited);
    let lines = &cases.mutated;
    let accepted = assert_never_wrongly_accepts(&plan, &full, lines);
    let valid = lines.iter().filter(|l| fully(&full, l).is_ok()).count();
    // Both kinds are well represented, so the comparison means something,
    // and the plan declines few valid events without members named twice.
    assert!(valid > lines.len() / 5, "{valid} valid of {}", lines.len());
    assert!(valid < lines.len() * 4 / 5, "{valid} valid of {}", lines.len());
    assert!(accepted * 100 >= valid * 95, "{accepted} accepted of {valid} valid");
}

#[test]
fn schemas_of_every_covered_keyword_agree_with_the_full_check() {
    let schemas = [
        json!({
            "type": "object",
            "required": ["event_id", "ts", "page"],
            "additionalProperties": false,
            "properties": {
                "event_id": {"type": "string", "minLength": 2, "maxLength": 40},
                "ts": {"type": "string", "format": "date-time"},
                "user_id": {"type": ["string", "null"], "maxLength": 3},
                "session_id": true,
                "event_type": {"enum": ["click", "search", 7, null]},
                "page": {"type": "object", "additionalProperties": {"type": "string"}},
                "device": {"type": "object", "properties": {"screen": {"properties": {
                    "w": {"type": "integer", "minimum": 100, "maximum": 1920},
                    "h": {"type": "number", "maximum": 5000}}}}},
                "geo": {"type": "object", "properties": {"country": {"pattern": "^D"}}},
                "props": {"properties": {"items": {"type": "array", "items": {"required": ["qty"],
                    "properties": {"qty": {"minimum": 1}}}}}}
            }
        }),
        // Iglu's meta-schema: jsonschema reads it as draft-04.
        json!({
            "$schema": "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#",
            "self": {"vendor": "com.acme", "name": "click", "format": "jsonschema", "version": "1-0-0"},
            "type": "object",
            "properties": {
                "event_id": {"type": "string", "format": "uuid"},
                "ts": {"type": "string", "format": "date-time"},
                "device": {"type": "object", "properties": {"screen": {"type": "object",
                    "properties": {"w": {"type": "integer", "minimum": 0, "exclusiveMinimum": true}}}}},
                "geo": {"type": ["object", "null"], "properties": {"country": {"type": "string",
                    "minLength": 2, "maxLength": 2}}}
            },
            "required": ["event_id", "ts"]
        }),
        json!({}),
        json!({"properties": {"page": false, "props": {"items": false}}}),
        // Names tracked without being properties (the id, a required name)
        // are still checked by `additionalProperties`.
        json!({"additionalProperties": false, "properties": {"ts": true, "user_id": true}, "required": ["user_id"]}),
        json!({
            "properties": {"event_id": true, "ts": true},
            "additionalProperties": {"type": "object"},
            "required": ["device", "geo"]
        }),
    ];
    for (i, schema) in schemas.iter().enumerate() {
        let (plan, full) = both(schema);
        let lines = cases(1_500, 100 + i as u64).all();
        let accepted = assert_never_wrongly_accepts(&plan, &full, &lines);
        let valid = lines.iter().filter(|l| fully(&full, l).is_ok()).count();
        assert_eq!(
            accepted > 0,
            valid > 0,
            "schema {i}: {accepted} accepted, {valid} valid"
        );
    }
}

#[test]
fn a_subschema_the_plan_does_not_cover_declines_only_the_events_that_reach_it() {
    let schema = json!({
        "type": "object",
        "properties": {"a": {"oneOf": [{"type": "string"}, {"type": "integer"}]}, "b": {"type": "string"}}
    });
    let (plan, full) = both(&schema);
    let without = br#"{"event_id":"e","ts":"2026-11-01T00:00:00Z","b":"x"}"#;
    let with = br#"{"event_id":"e","ts":"2026-11-01T00:00:00Z","a":"x"}"#;
    assert!(plan.accept(without).is_some());
    assert!(plan.accept(with).is_none());
    assert!(fully(&full, with).is_ok());
}

#[test]
fn ids_and_times_the_plan_does_not_read_are_left_to_the_full_check() {
    let (plan, full) = both(&json!({}));
    for line in [
        r#"{"event_id":7,"ts":"2026-11-01T00:00:00Z"}"#,
        r#"{"event_id":"","ts":"2026-11-01T00:00:00Z"}"#,
        r#"{"event_id":"a","ts":"2026-11-01T00:00:00Z","event_id":"b"}"#,
        r#"{"event_id":"a","ts":"yesterday"}"#,
        r#"{"event_id":"a"}"#,
    ] {
        assert_eq!(plan.accept(line.as_bytes()), None, "{line}");
    }
    let line = br#"{"event_id":"a\"b","ts":"2026-11-01T02:00:00+02:00"}"#;
    assert_eq!(plan.accept(line).map(Ok), Some(fully(&full, line)));
    let nested = json!({});
    assert!(FastAccept::compile(&nested, Draft::Draft202012, "/meta/id", "/ts").is_none());
    assert!(FastAccept::compile(&nested, Draft::Draft202012, "/ts", "/ts").is_none());
    assert!(FastAccept::compile(&nested, Draft::Draft202012, "", "/ts").is_none());
    let escaped = FastAccept::compile(&nested, Draft::Draft202012, "/a~1b~0c", "/ts").unwrap();
    let line = br#"{"a/b~c":"e","ts":"2026-11-01T00:00:00Z"}"#;
    assert_eq!(escaped.accept(line).map(|a| a.id), Some(Arc::from("e")));
    assert!(FastAccept::compile(&json!({"type": "array"}), Draft::Draft202012, "/id", "/ts").is_none());
}

#[test]
fn names_tracked_without_being_properties_are_checked_as_other_members_are() {
    let (plan, full) = both(&json!({
        "additionalProperties": false,
        "properties": {"ts": true, "user_id": true},
        "required": ["x"]
    }));
    for line in [
        r#"{"event_id":"e","ts":"2026-11-01T00:00:00Z","user_id":"u"}"#,
        r#"{"ts":"2026-11-01T00:00:00Z","x":1}"#,
        r#"{"event_id":"e","ts":"2026-11-01T00:00:00Z","x":1}"#,
    ] {
        assert!(fully(&full, line.as_bytes()).is_err(), "{line}");
        assert_eq!(plan.accept(line.as_bytes()), None, "{line}");
    }
    let (plan, full) = both(&json!({"additionalProperties": {"type": "integer"}, "required": ["x"]}));
    let line = br#"{"event_id":"e","ts":"2026-11-01T00:00:00Z","x":1}"#;
    assert!(fully(&full, line).is_err(), "the id is not an integer");
    assert_eq!(plan.accept(line), None);
}

/// A schema wider than the plan tracks gets no plan, and no panic: the
/// full check serves it alone.
#[test]
fn a_schema_wider_than_the_plan_tracks_is_left_to_the_full_check() {
    let properties: serde_json::Map<String, Value> =
        (0..300).map(|i| (format!("p{i}"), json!({"type": "string"}))).collect();
    let schema = json!({"type": "object", "properties": properties, "required": ["p299", "event_id"]});
    let (for_validator, draft) = crate::iglu::for_validator(&schema);
    assert!(FastAccept::compile(&for_validator, draft, "/event_id", "/ts").is_none());
    let full = ValidateTransform::new(&serde_json::from_value(schema).unwrap(), "/event_id", "/ts").unwrap();
    let line = br#"{"event_id":"e","ts":"2026-11-01T00:00:00Z","p299":"x"}"#;
    assert_eq!(fully(&full, line).map(|a| a.id), Ok(Arc::from("e")));
    let mut event = Event::from_line(0, Bytes::from_static(line));
    assert!(full.check(&mut event).is_ok());
}
