use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use bytes::Bytes;
use sluice_core::Event;
use sonic_rs::JsonContainerTrait;

use super::{build, decode_events, decode_payloads, payload_for_columns};

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

/// The batch arrow-json decodes from the payloads; the error of the
/// first that does not decode.
fn decode_with_arrow_json(
    schema: &Arc<Schema>,
    json_text_paths: &[Vec<String>],
    events: &[Event],
) -> Result<Option<RecordBatch>, String> {
    let payloads: Vec<Bytes> = events.iter().map(|e| payload_for_columns(json_text_paths, e)).collect();
    decode_payloads(schema, &payloads)
}

fn event(text: &str) -> Event {
    Event::from_line(0, Bytes::from(text.to_string()))
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
    "0.0",
    "0e0",
    "-0.5",
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
    r#""1969-12-31T23:59:59.999999999Z""#,
    r#""2026-12-04T10:11:12.123456789+05:45""#,
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
/// order, some missing or null, some unknown; with `twice`, some top-level
/// members named twice.
fn random_event(rng: &mut Rng, id: usize, twice: bool) -> String {
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
        if twice && rng.below(12) == 0 {
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
/// column type, with members missing, null, unknown and in any order,
/// strings with escapes, floats at their extremes and zero, timestamps
/// with offsets and values stored as JSON text; and it builds every group.
#[test]
fn built_batches_equal_arrow_json_decoding() {
    let (schema, paths) = (schema(), json_text_paths());
    let mut rng = Rng(0x5eed_c01d);
    let mut rows = 0;
    for group in 0..80 {
        let events: Vec<Event> = (0..50)
            .map(|i| event(&random_event(&mut rng, group * 50 + i, false)))
            .collect();
        let expected = decode_with_arrow_json(&schema, &paths, &events).unwrap().unwrap();
        let built = build(&schema, &paths, &events).unwrap_or_else(|| panic!("group {group} was declined"));
        for (i, (b, e)) in built.columns().iter().zip(expected.columns()).enumerate() {
            assert_eq!(
                b.as_ref(),
                e.as_ref(),
                "column {} of group {group}",
                schema.field(i).name()
            );
        }
        assert_eq!(built, expected);
        rows += built.num_rows();
    }
    assert_eq!(rows, 4000);
}

/// A member named twice (arrow-json keeps the last) declines its group,
/// and `decode_events` gives arrow-json's batch; groups without one are
/// built.
#[test]
fn members_named_twice_go_to_arrow_json() {
    let (schema, paths) = (schema(), json_text_paths());
    let mut rng = Rng(0xd0_b1e5);
    let (mut built, mut declined) = (0, 0);
    for group in 0..200 {
        let events: Vec<Event> = (0..2)
            .map(|i| event(&random_event(&mut rng, group * 2 + i, true)))
            .collect();
        let expected = decode_with_arrow_json(&schema, &paths, &events).unwrap().unwrap();
        let twice = events.iter().any(|e| {
            let document: sonic_rs::Value = sonic_rs::from_slice(&e.payload).unwrap();
            let names: Vec<&str> = document.as_object().unwrap().iter().map(|(name, _)| name).collect();
            let distinct: std::collections::HashSet<&&str> = names.iter().collect();
            distinct.len() < names.len()
        });
        match build(&schema, &paths, &events) {
            Some(batch) => {
                assert!(!twice, "group {group} has a member named twice and was built");
                assert_eq!(batch, expected);
                built += 1;
            }
            None => {
                assert!(twice, "group {group} was declined");
                declined += 1;
            }
        }
        let decoded = decode_events(&schema, &paths, events, &mut Vec::new())
            .unwrap()
            .unwrap();
        assert_eq!(decoded, expected, "group {group}");
    }
    assert!(built > 20 && declined > 20, "built {built}, declined {declined}");
}

/// A payload that does not parse, or a value arrow-json converts or
/// refuses, declines the group: `decode_events` then gives what arrow-json
/// gives (the row, or its rejection).
#[test]
fn values_arrow_json_converts_or_refuses_go_to_arrow_json() {
    let unusual = [
        r#"{"event_id": "a", "n": "7"}"#,
        r#"{"event_id": "a", "n": 7.0}"#,
        r#"{"event_id": "a", "n": 7.5}"#,
        r#"{"event_id": "a", "n": 18446744073709551615}"#,
        r#"{"event_id": "a", "n": -0}"#,
        r#"{"event_id": "a", "x": "1.5"}"#,
        r#"{"event_id": "a", "name": 5}"#,
        r#"{"event_id": "a", "name": {"a": 1}}"#,
        r#"{"event_id": "a", "ts": 1700000000000000}"#,
        r#"{"event_id": "a", "ts": "yesterday"}"#,
        r#"{"event_id": "a", "ok": "true"}"#,
        r#"{"event_id": "a", "x": -0.0}"#,
        r#"{"event_id": "a", "x":-0}"#,
        r#"{"event_id": "a", "s": {"deep": {"z": -0.0e5}}}"#,
        r#"{"event_id": "a", "extra": {"a": [-0.0]}}"#,
        r#"{"event_id": "a", "extra": -0}"#,
        r#"{"event_id": null}"#,
        r#"{"n": 1}"#,
        r#"{"event_id": "a", "s": [1]}"#,
        r#"{"event_id": "a", "tags": "a"}"#,
        r#"{"event_id": "a", "tags": [1]}"#,
        r#"{"event_id": "a"} {"event_id": "b"}"#,
        r#"{"event_id": "a", "n": 1"#,
        r#"["event_id", "a"]"#,
        "not json",
    ];
    for text in unusual {
        declined_then_decoded_as_arrow_json(text.as_bytes());
    }
}

/// A group of a usual payload and `unusual` (line 1) is not built, and
/// `decode_events` gives what arrow-json gives: both rows, or the usual
/// row and `unusual` rejected.
fn declined_then_decoded_as_arrow_json(unusual: &[u8]) {
    let (schema, paths) = (schema(), json_text_paths());
    let shown = String::from_utf8_lossy(unusual);
    let events = vec![
        event(r#"{"event_id": "usual", "n": 1}"#),
        Event::from_line(1, Bytes::copy_from_slice(unusual)),
    ];
    assert!(build(&schema, &paths, &events).is_none(), "{shown} was built");
    let mut rejected = Vec::new();
    let decoded = decode_events(&schema, &paths, events.clone(), &mut rejected)
        .unwrap()
        .unwrap();
    match decode_with_arrow_json(&schema, &paths, &events) {
        Ok(expected) => {
            assert_eq!(decoded, expected.unwrap(), "{shown}");
            assert!(rejected.is_empty(), "{shown}");
        }
        Err(_) => {
            assert_eq!(decoded.num_rows(), 1, "{shown}");
            assert_eq!(rejected.len(), 1, "{shown}");
            assert_eq!(rejected[0].event.line, 1, "{shown}");
        }
    }
}

/// Text beyond ASCII is built as arrow-json decodes it (names and values,
/// in columns, JSON text and ignored members); a payload that is not
/// UTF-8, wherever the bad byte lies (an ignored member too, which
/// sonic-rs's own check passes), declines its group, and `decode_events`
/// then gives what arrow-json gives.
#[test]
fn payloads_are_built_only_when_they_are_utf8() {
    let (schema, paths) = (schema(), json_text_paths());
    let wide = [
        r#"{"event_id": "é", "name": "日本語", "tags": ["ü", "🦀"]}"#,
        r#"{"event_id": "a", "s": {"label": "naïve"}, "extra": {"ключ": "значение"}}"#,
        r#"{"event_id": "a", "ünknown": "ß", "name": "\u00e9\ud83e\udd80"}"#,
    ];
    let events: Vec<Event> = wide.iter().map(|text| event(text)).collect();
    let expected = decode_with_arrow_json(&schema, &paths, &events).unwrap().unwrap();
    assert_eq!(build(&schema, &paths, &events), Some(expected));

    for bad in [
        &b"{\"event_id\": \"a\", \"name\": \"\xff\"}"[..],
        b"{\"event_id\": \"a\", \"unknown\": \"\xc3\"}",
        b"{\"event_id\": \"a\", \"\xe6\x97\": 1}",
        b"{\"event_id\": \"a\"} \xf0",
    ] {
        declined_then_decoded_as_arrow_json(bad);
    }
}

/// A float zero is built when no number in its payload is a negative
/// zero, even beside dates (whose `-0` follows a digit) and negative
/// fractions; a payload with one declines.
#[test]
fn float_zeros_are_built_unless_the_payload_may_hold_a_negative_one() {
    let (schema, paths) = (schema(), json_text_paths());
    for text in [
        r#"{"event_id": "a", "x": 0.0, "ts": "2026-01-05T00:00:00Z", "extra": {"a": [0.0]}}"#,
        r#"{"event_id": "a", "x": 0.0, "extra": {"b": -0.5, "c": -0.005e3}}"#,
    ] {
        let events = vec![event(text)];
        let built = build(&schema, &paths, &events).unwrap_or_else(|| panic!("{text} was declined"));
        assert_eq!(
            built,
            decode_with_arrow_json(&schema, &paths, &events).unwrap().unwrap()
        );
    }
    for text in [
        r#"{"event_id": "a", "x": 0.0, "extra": {"b": -0.00}}"#,
        r#"{"event_id": "a", "x": 0.0, "extra": {"b": [1,-0e7]}}"#,
        r#"{"event_id": "a", "x": 0.0, "extra": {"b":-0}}"#,
    ] {
        assert!(build(&schema, &paths, &[event(text)]).is_none(), "{text} was built");
    }
}

/// A column type the builder does not build leaves the table to arrow-json.
#[test]
fn other_column_types_are_left_to_arrow_json() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("day", DataType::Date32, true),
    ]));
    let events = vec![event(r#"{"event_id": "a", "day": "2026-12-04"}"#)];
    assert!(build(&schema, &[], &events).is_none());
    let batch = decode_events(&schema, &[], events, &mut Vec::new()).unwrap().unwrap();
    assert_eq!(batch.num_rows(), 1);
}

/// No events, no batch, either way.
#[test]
fn no_events_make_no_batch() {
    let (schema, paths) = (schema(), json_text_paths());
    assert!(build(&schema, &paths, &[]).is_none());
    assert!(
        decode_events(&schema, &paths, Vec::new(), &mut Vec::new())
            .unwrap()
            .is_none()
    );
}

/// A table of more columns than a scan serves (a map finds them), with
/// members missing, unknown, and in the same or a changed order from one
/// event to the next, is built as arrow-json decodes it.
#[test]
fn wide_tables_are_built_as_arrow_json_decodes_them() {
    let fields: Vec<Field> = (0..40)
        .map(|i| {
            let data_type = if i % 2 == 0 { DataType::Int64 } else { DataType::Utf8 };
            Field::new(format!("c{i}"), data_type, true)
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let mut rng = Rng(0x71de);
    let events: Vec<Event> = (0..300)
        .map(|_| {
            let mut members = Vec::new();
            for i in 0..40 {
                if rng.below(5) == 0 {
                    continue;
                }
                let value = rng.below(1000);
                members.push(match i % 2 {
                    0 => format!(r#""c{i}": {value}"#),
                    _ => format!(r#""c{i}": "v{value}""#),
                });
            }
            members.insert(rng.below(members.len() + 1), r#""unknown": [1]"#.into());
            if rng.below(3) == 0 {
                for i in (1..members.len()).rev() {
                    members.swap(i, rng.below(i + 1));
                }
            }
            event(&format!("{{{}}}", members.join(", ")))
        })
        .collect();
    let built = build(&schema, &[], &events).expect("a wide table is built");
    assert_eq!(built, decode_with_arrow_json(&schema, &[], &events).unwrap().unwrap());
    assert_eq!(built.num_rows(), 300);
}

/// Floats whose nearest double is hard to find are stored as that double
/// (as Rust's own parse finds it), in float columns and in JSON text.
/// The arrow-json fallback agrees, also with JSON text paths, where it
/// first parses the payload with serde_json: the workspace turns on
/// serde_json's `float_roundtrip`, without which it may miss by one unit
/// in the last place.
#[test]
fn hard_floats_are_stored_correctly_rounded() {
    let hard = sluice_testkit::floats::HARD_FLOATS;
    let schema = Arc::new(Schema::new(vec![
        Field::new("x", DataType::Float64, true),
        Field::new("extra", DataType::Utf8, true),
    ]));
    let paths = vec![vec!["extra".to_string()]];
    let events: Vec<Event> = hard
        .iter()
        .map(|f| event(&format!(r#"{{"x": {f}, "extra": [{f}]}}"#)))
        .collect();
    let built = build(&schema, &paths, &events).expect("built");
    let x = built
        .column(0)
        .as_any()
        .downcast_ref::<arrow_array::Float64Array>()
        .unwrap();
    let extra = built
        .column(1)
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
        .unwrap();
    for (i, f) in hard.iter().enumerate() {
        let nearest: f64 = f.parse().unwrap();
        assert_eq!(x.value(i).to_bits(), nearest.to_bits(), "{f}");
        assert_eq!(extra.value(i), serde_json::to_string(&[nearest]).unwrap(), "{f}");
    }
    assert_eq!(
        built,
        decode_with_arrow_json(&schema, &paths, &events).unwrap().unwrap(),
        "the fallback, which reads JSON text paths with serde_json, rounds as the builders do"
    );

    let plain = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true)]));
    let events: Vec<Event> = hard.iter().map(|f| event(&format!(r#"{{"x": {f}}}"#))).collect();
    assert_eq!(
        build(&plain, &[], &events).unwrap(),
        decode_with_arrow_json(&plain, &[], &events).unwrap().unwrap()
    );
}
