use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use bytes::Bytes;
use sluice_core::Event;

use super::EventColumns;

fn schema() -> Arc<Schema> {
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let deep = Fields::from(vec![Field::new("z", DataType::Float64, true)]);
    let s = Fields::from(vec![
        Field::new("w", DataType::Int64, true),
        Field::new("label", DataType::Utf8, true),
        Field::new("deep", DataType::Struct(deep), true),
    ]);
    let item = Fields::from(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("v", DataType::Float64, true),
        Field::new("meta", DataType::Utf8, true),
    ]);
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("ts", utc, true),
        Field::new("n", DataType::Int64, true),
        Field::new("x", DataType::Float64, true),
        Field::new("ok", DataType::Boolean, true),
        Field::new("s", DataType::Struct(s), true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        Field::new(
            "items",
            DataType::List(Arc::new(Field::new("item", DataType::Struct(item), true))),
            true,
        ),
        Field::new("extra", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, true),
    ]))
}

fn json_text_paths() -> Vec<Vec<String>> {
    vec![vec!["extra".into()], vec!["items".into(), "meta".into()]]
}

/// An event whose payload `text` was parsed and kept, as `validate` does.
fn kept(text: &str) -> Event {
    let mut event = Event::from_line(0, Bytes::from(text.to_string()));
    let document: sonic_rs::Value = sonic_rs::from_str(text).unwrap();
    event.keep_parse(document);
    event
}

/// xorshift64*: the same values on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const STRINGS: &[&str] = &[
    r#""""#,
    r#""plain""#,
    r#""caf\u00e9 é""#,
    r#""\"quoted\" \\ back""#,
    r#""line\nbreak\ttab""#,
    r#""\ud83d\ude00 smile""#,
    r#""{\"looks\": \"like json\"}""#,
];
const FLOATS: &[&str] = &[
    "0",
    "1",
    "3.0",
    "2.5",
    "-17.25",
    "1e308",
    "5e-324",
    "1E5",
    "0.1",
    "123456789012345678901234567890",
    "9007199254740993",
    "-1.7976931348623157e308",
    "4.35e-7",
    "18446744073709551615",
];
const INTS: &[&str] = &[
    "0",
    "-1",
    "42",
    "9223372036854775807",
    "-9223372036854775808",
    "1700000000000",
];
const TIMES: &[&str] = &[
    r#""2026-12-04T10:11:12Z""#,
    r#""2026-12-04T10:11:12.123456Z""#,
    r#""2026-12-04T10:11:12+02:00""#,
    r#""2026-12-04T23:59:59.5-07:30""#,
    r#""1999-01-01T00:00:00.000001Z""#,
];
const FREE: &[&str] = &[
    r#"{"a": 1, "b": [true, null, 1.0, 1e20], "a": 2}"#,
    r#"[1, "two", {"three": 3.5}]"#,
    "12345678901234567890",
    "-5",
    "2.50",
    "true",
    r#""already text""#,
    r#"{"z": {"y": {"x": "\u00e9"}}, "a": -1.5e-3}"#,
];

/// A random event of `schema()`'s shape, as JSON text: members in any
/// order, some missing or null, some named twice, some unknown.
fn random_event(rng: &mut Rng, id: usize) -> String {
    let mut members = vec![format!(r#""event_id": "e{id}""#)];
    let value = |rng: &mut Rng, name: &str| -> Option<String> {
        if rng.below(10) == 0 {
            return Some("null".into());
        }
        Some(match name {
            "ts" => rng.pick(TIMES).into(),
            "n" => rng.pick(INTS).into(),
            "x" => rng.pick(FLOATS).into(),
            "ok" => rng.pick(&["true", "false"]).into(),
            "s" => format!(
                r#"{{"label": {}, "w": {}, "deep": {}, "unknown": [1]}}"#,
                rng.pick(STRINGS),
                rng.pick(INTS),
                if rng.below(3) == 0 {
                    "null".to_string()
                } else {
                    format!(r#"{{"z": {}}}"#, rng.pick(FLOATS))
                }
            ),
            "tags" => {
                let tags: Vec<&str> = (0..rng.below(4)).map(|_| rng.pick(STRINGS)).collect();
                format!("[{}]", tags.join(", "))
            }
            "items" => {
                let items: Vec<String> = (0..rng.below(3))
                    .map(|_| {
                        if rng.below(6) == 0 {
                            "null".to_string()
                        } else {
                            format!(
                                r#"{{"v": {}, "k": {}, "meta": {}}}"#,
                                rng.pick(FLOATS),
                                rng.pick(STRINGS),
                                rng.pick(FREE)
                            )
                        }
                    })
                    .collect();
                format!("[{}]", items.join(", "))
            }
            "extra" => rng.pick(FREE).into(),
            "name" => rng.pick(STRINGS).into(),
            _ => return None,
        })
    };
    for name in ["ts", "n", "x", "ok", "s", "tags", "items", "extra", "name"] {
        if rng.below(8) == 0 {
            continue;
        }
        members.push(format!(r#""{name}": {}"#, value(rng, name).unwrap()));
        if rng.below(12) == 0 {
            members.push(format!(r#""{name}": {}"#, value(rng, name).unwrap()));
        }
    }
    if rng.below(4) == 0 {
        members.push(r#""not_a_column": {"ignored": [1, 2]}"#.into());
    }
    for i in (1..members.len()).rev() {
        members.swap(i, rng.below(i + 1));
    }
    format!("{{{}}}", members.join(", "))
}

/// The builder gives arrow-json's batch for 4 000 random events of every
/// column type, with members missing, null, unknown, named twice and in
/// any order, strings with escapes, floats at their extremes, timestamps
/// with offsets and values stored as JSON text; and it builds every group.
#[test]
fn built_batches_equal_arrow_json_decoding() {
    let mut columns = EventColumns::new(schema(), json_text_paths());
    let mut rng = Rng(0x5eed_c01d);
    let mut rows = 0;
    for group in 0..80 {
        let events: Vec<Event> = (0..50).map(|i| kept(&random_event(&mut rng, group * 50 + i))).collect();
        let expected = columns.decode_with_arrow_json(&events).unwrap().unwrap();
        let built = columns
            .build_from_kept_parses(&events)
            .unwrap_or_else(|| panic!("group {group} was declined"));
        for (i, (b, e)) in built.columns().iter().zip(expected.columns()).enumerate() {
            assert_eq!(
                b.as_ref(),
                e.as_ref(),
                "column {} of group {group}",
                schema().field(i).name()
            );
        }
        assert_eq!(built, expected);
        rows += built.num_rows();
    }
    assert_eq!(rows, 4000);
}

/// A value arrow-json converts or refuses declines the group: `decode`
/// then gives what arrow-json gives (the row, or its rejection).
#[test]
fn values_arrow_json_converts_or_refuses_go_to_arrow_json() {
    let unusual = [
        r#"{"event_id": "a", "n": "7"}"#,
        r#"{"event_id": "a", "n": 7.0}"#,
        r#"{"event_id": "a", "n": 7.5}"#,
        r#"{"event_id": "a", "n": 18446744073709551615}"#,
        r#"{"event_id": "a", "x": "1.5"}"#,
        r#"{"event_id": "a", "name": 5}"#,
        r#"{"event_id": "a", "name": {"a": 1}}"#,
        r#"{"event_id": "a", "ts": 1700000000000000}"#,
        r#"{"event_id": "a", "ts": "yesterday"}"#,
        r#"{"event_id": "a", "ok": "true"}"#,
        r#"{"event_id": "a", "x": -0.0}"#,
        r#"{"event_id": "a", "x": 0.0}"#,
        r#"{"event_id": "a", "x": -0}"#,
        r#"{"event_id": "a", "extra": {"a": [-0.0]}}"#,
        r#"{"event_id": null}"#,
        r#"{"n": 1}"#,
        r#"{"event_id": "a", "s": [1]}"#,
        r#"{"event_id": "a", "tags": "a"}"#,
        r#"{"event_id": "a", "tags": [1]}"#,
    ];
    let mut columns = EventColumns::new(schema(), json_text_paths());
    for text in unusual {
        let events = vec![kept(r#"{"event_id": "usual", "n": 1}"#), kept(text)];
        assert!(columns.build_from_kept_parses(&events).is_none(), "{text} was built");
        let mut rejected = Vec::new();
        let decoded = columns.decode(events.clone(), &mut rejected).unwrap().unwrap();
        match columns.decode_with_arrow_json(&events) {
            Ok(expected) => {
                assert_eq!(decoded, expected.unwrap(), "{text}");
                assert!(rejected.is_empty(), "{text}");
            }
            Err(_) => {
                assert_eq!(decoded.num_rows(), 1, "{text}");
                assert_eq!(rejected.len(), 1, "{text}");
                assert_eq!(rejected[0].event.line, events[1].line);
            }
        }
    }
}

/// Events without a kept parse, or whose payload changed after it was
/// kept, are decoded from their payloads.
#[test]
fn payloads_without_a_current_parse_are_decoded_as_text() {
    let mut columns = EventColumns::new(schema(), json_text_paths());
    let plain = Event::from_line(0, Bytes::from_static(br#"{"event_id": "p", "n": 3}"#));
    assert!(columns.build_from_kept_parses(std::slice::from_ref(&plain)).is_none());

    let mut rewritten = kept(r#"{"event_id": "old", "n": 1}"#);
    rewritten.payload = Bytes::from_static(br#"{"event_id": "new", "n": 2}"#);
    assert!(
        columns
            .build_from_kept_parses(std::slice::from_ref(&rewritten))
            .is_none()
    );
    let batch = columns.decode(vec![rewritten], &mut Vec::new()).unwrap().unwrap();
    let ids = batch
        .column(0)
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
        .unwrap();
    assert_eq!(ids.value(0), "new");
}

/// A column type the builder does not build leaves the table to arrow-json.
#[test]
fn other_column_types_are_left_to_arrow_json() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("day", DataType::Date32, true),
    ]));
    let mut columns = EventColumns::new(schema, Vec::new());
    let events = vec![kept(r#"{"event_id": "a", "day": "2026-12-04"}"#)];
    assert!(columns.build_from_kept_parses(&events).is_none());
    let batch = columns.decode(events, &mut Vec::new()).unwrap().unwrap();
    assert_eq!(batch.num_rows(), 1);
}
