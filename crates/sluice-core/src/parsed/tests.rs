use bytes::Bytes;
use serde::{Deserialize, de::IgnoredAny};
use serde_json::{Value, json};

use super::*;

/// Writes `value`'s tokens as a parse of `payload` would: each string
/// found unescaped in `payload` is taken from there, others are copied.
fn write_value(tape: &mut TapeWriter, payload: &str, value: &Value) {
    match value {
        Value::Null => tape.null(),
        Value::Bool(v) => tape.bool(*v),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(v), _) => tape.u64(v),
            (None, Some(v)) => tape.i64(v),
            _ => tape.f64(n.as_f64().unwrap()),
        },
        Value::String(s) => write_str(tape, payload, s),
        Value::Array(items) => {
            tape.array();
            items.iter().for_each(|item| write_value(tape, payload, item));
            tape.end();
        }
        Value::Object(members) => {
            tape.object();
            for (name, member) in members {
                write_str(tape, payload, name);
                write_value(tape, payload, member);
            }
            tape.end();
        }
    }
}

fn write_str(tape: &mut TapeWriter, payload: &str, s: &str) {
    match payload.find(&format!("\"{s}\"")) {
        Some(at) => tape.str(&payload[at + 1..at + 1 + s.len()]),
        None => tape.str(s),
    }
}

/// One event's parsed payload, written from its serde_json value.
fn parsed(payload: &Bytes) -> ParsedPayload {
    let text = std::str::from_utf8(payload).unwrap();
    let mut tape = TapeWriter::default();
    tape.begin(payload);
    write_value(&mut tape, text, &serde_json::from_str(text).unwrap());
    let event = tape.keep(payload).unwrap();
    ParsedPayload::new(tape.finish(), event)
}

fn read(parsed: &ParsedPayload, payload: &Bytes) -> Value {
    let text = std::str::from_utf8(payload).unwrap();
    let mut reader = parsed.reader(text).expect("the payload the tape was read from");
    let value = Value::deserialize(&mut reader).unwrap();
    reader.end().unwrap();
    value
}

#[test]
fn a_tape_reads_back_as_the_value_it_was_written_from() {
    let payload = Bytes::from_static(
        br#"{"a":1,"b":[true,null,-2,1.5,[],{}],"c":"x\"y","d":{"e":"plain","f":{"g":[{"h":"\u00e9"}]}}}"#,
    );
    let value: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(read(&parsed(&payload), &payload), value);
}

#[test]
fn strings_found_in_the_payload_are_borrowed_from_it_and_escaped_ones_copied() {
    let payload = Bytes::from_static(br#"{"plain":"x\ty"}"#);
    let parsed = parsed(&payload);
    assert_eq!(parsed.tape.text, "x\ty", "only the escaped string is copied");
    assert_eq!(parsed.tape.words.len(), 4, "an object, a name, a string, its end");
    assert_eq!(read(&parsed, &payload), json!({"plain": "x\ty"}));
}

#[test]
fn a_replaced_payload_gets_no_reader_even_with_the_same_text() {
    let payload = Bytes::from(br#"{"a":1}"#.to_vec());
    let parsed = parsed(&payload);
    let copy = Bytes::from(payload.to_vec());
    assert!(parsed.reader(std::str::from_utf8(&copy).unwrap()).is_none());
    assert!(parsed.reader(std::str::from_utf8(&payload[..6]).unwrap()).is_none());
    assert!(parsed.reader(std::str::from_utf8(&payload).unwrap()).is_some());
}

#[test]
fn a_dropped_event_leaves_nothing_in_the_tape() {
    let first = Bytes::from_static(br#"{"gone":"a\nb"}"#);
    let second = Bytes::from_static(br#"{"kept":[1,-2,0.5]}"#);
    let mut tape = TapeWriter::default();
    tape.begin(&first);
    write_value(&mut tape, "", &serde_json::from_slice(&first).unwrap());
    tape.drop_event();
    tape.begin(&second);
    write_value(
        &mut tape,
        std::str::from_utf8(&second).unwrap(),
        &serde_json::from_slice(&second).unwrap(),
    );
    assert_eq!(tape.keep(&second), Some(0));
    let tape = tape.finish();
    assert!(tape.text.is_empty(), "the dropped event's copies are gone");
    assert_eq!(
        tape.words.len(),
        11,
        "object, name, array, three numbers of two words, two ends"
    );
    let parsed = ParsedPayload::new(tape, 0);
    assert_eq!(read(&parsed, &second), json!({"kept": [1, -2, 0.5]}));
}

#[test]
fn an_event_is_kept_only_for_the_payload_it_began_with() {
    let payload = Bytes::from_static(br#"{}"#);
    let other = Bytes::from(payload.to_vec());
    let mut tape = TapeWriter::default();
    tape.begin(&payload);
    tape.object();
    tape.end();
    assert_eq!(tape.keep(&other), None);
    tape.begin(&payload);
    tape.object();
    tape.end();
    assert_eq!(tape.keep(&payload), Some(0));
    assert_eq!(
        tape.finish().words.len(),
        2,
        "the event kept for another payload is gone"
    );
}

#[test]
fn an_ignored_value_is_skipped_whole_and_a_visitor_may_stop_early() {
    let payload = Bytes::from_static(br#"{"skip":{"a":[1,{"b":[]}]},"then":"x"}"#);
    let parsed = parsed(&payload);
    let text = std::str::from_utf8(&payload).unwrap();

    struct SecondValue;
    impl<'de> Visitor<'de> for SecondValue {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
            map.next_key::<IgnoredAny>()?;
            map.next_value::<IgnoredAny>()?;
            map.next_key::<IgnoredAny>()?;
            map.next_value::<String>()
        }
    }
    let mut reader = parsed.reader(text).unwrap();
    assert_eq!((&mut reader).deserialize_map(SecondValue).unwrap(), "x");
    reader.end().unwrap();

    struct FirstName;
    impl<'de> Visitor<'de> for FirstName {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
            Ok(map.next_key::<String>()?.unwrap_or_default())
        }
    }
    let mut reader = parsed.reader(text).unwrap();
    assert_eq!((&mut reader).deserialize_map(FirstName).unwrap(), "skip");
    reader.end().expect("the members left are skipped");
}

#[test]
fn an_event_with_a_place_past_what_a_word_holds_is_not_kept() {
    // A gibibyte of text is too much for a unit test: the flag a place
    // past `MAX_PLACE` sets is set by hand.
    let payload = Bytes::from_static(b"{}");
    let mut tape = TapeWriter::default();
    tape.begin(&payload);
    tape.object();
    tape.str("copied");
    tape.spoiled = true;
    tape.end();
    assert_eq!(tape.keep(&payload), None);
    tape.begin(&payload);
    tape.object();
    tape.end();
    assert_eq!(tape.keep(&payload), Some(0));
    let tape = tape.finish();
    assert_eq!(tape.words.len(), 2, "the spoiled event's words are gone");
    assert!(tape.text.is_empty(), "and its copies");
}

#[test]
fn a_tape_cut_short_is_an_error_not_a_panic() {
    let payload = Bytes::from_static(br#"{"a":[1]}"#);
    let mut tape = TapeWriter::default();
    tape.begin(&payload);
    tape.object();
    tape.str(&std::str::from_utf8(&payload).unwrap()[2..3]);
    tape.array();
    let event = tape.keep(&payload).unwrap();
    let parsed = ParsedPayload::new(tape.finish(), event);
    let mut reader = parsed.reader(std::str::from_utf8(&payload).unwrap()).unwrap();
    assert!(Value::deserialize(&mut reader).is_err());
}
