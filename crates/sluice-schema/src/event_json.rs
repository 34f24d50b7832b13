//! Events as sonic-rs documents, and the representation through which
//! jsonschema reads them ([`EventJson`]).
//!
//! An event is parsed once, into a sonic-rs `Value`: one arena per
//! document instead of a `serde_json::Value`'s allocation per key, string
//! and map node (measured: parsing a clickstream event takes a sixth of the
//! time). jsonschema validates any type implementing its `json` traits, so
//! the validator reads that document in place.
//!
//! Semantics kept from serde_json, which events were parsed with before:
//! * a member named twice counts with its last value, the one the lake
//!   stores (arrow-json keeps the last too): lookups find the last copy
//!   (sonic-rs keeps every copy and its own lookup finds the first).
//!   jsonschema checks an object's members in one pass where that is
//!   cheaper than lookups, and that pass sees every copy: an earlier copy
//!   can make an event invalid that serde_json's reading would have let
//!   through, never the other way round;
//! * documents nest at most [`MAX_DEPTH`] deep (sonic-rs's parser recurses
//!   without a limit, so deeper input would overflow the stack);
//! * numbers compare mathematically (`1` equals `1.0` in `enum`/`const`).

use std::borrow::Cow;

use jsonschema::{
    JsonType,
    json::{Array, Json, JsonNumber, Node, NodeIdentity, Object, cmp},
};
use serde_json::Value;
use sluice_core::{json_kind, reason};
use sonic_rs::{JsonContainerTrait, JsonNumberTrait, JsonValueTrait};

/// The deepest nesting accepted: serde_json's recursion limit.
pub(crate) const MAX_DEPTH: usize = 128;

/// Parses an event's payload: a JSON object, or the reason and detail why not.
pub fn parse_event(payload: &[u8]) -> Result<sonic_rs::Value, (&'static str, String)> {
    if !nests_within_limit(payload) {
        return Err((
            reason::INVALID_JSON,
            format!("nested deeper than {MAX_DEPTH} arrays and objects"),
        ));
    }
    let value: sonic_rs::Value = sonic_rs::from_slice(payload).map_err(|e| {
        // The message's first line; the rest quotes the payload around the error.
        let message = e.to_string();
        (
            reason::INVALID_JSON,
            message.lines().next().unwrap_or_default().to_string(),
        )
    })?;
    if !value.is_object() {
        return Err((
            reason::NOT_AN_OBJECT,
            format!("expected a JSON object, got {}", json_kind(&to_serde(&value))),
        ));
    }
    Ok(value)
}

/// Whether no array or object in `payload` lies deeper than [`MAX_DEPTH`].
/// Text with no more opening brackets than that cannot; only other text is
/// scanned (brackets inside strings do not count).
pub(crate) fn nests_within_limit(payload: &[u8]) -> bool {
    if opening_brackets(payload) <= MAX_DEPTH {
        return true;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in payload {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// How many `{` and `[` bytes `payload` holds. Counted per block of 255
/// bytes into a `u8`, which the compiler turns into vector compares and
/// adds: a quarter of the time of counting them one by one (`filter`,
/// then `count`), which does not vectorise.
fn opening_brackets(payload: &[u8]) -> usize {
    payload
        .chunks(usize::from(u8::MAX))
        .map(|block| {
            let in_block: u8 = block.iter().map(|&b| u8::from(b == b'{') + u8::from(b == b'[')).sum();
            usize::from(in_block)
        })
        .sum()
}

/// Whether `string` holds `min..=max` code points, as `minLength` and
/// `maxLength` count. A string of `b` UTF-8 bytes holds between `b / 4`
/// (rounded up) and `b` of them, so the byte length mostly decides; only a
/// string whose bounds straddle a limit is counted.
pub(crate) fn code_points_within(string: &str, min: u64, max: u64) -> bool {
    let bytes = string.len() as u64;
    let fewest = bytes.div_ceil(4);
    if fewest >= min && bytes <= max {
        return true;
    }
    if bytes < min || fewest > max {
        return false;
    }
    (min..=max).contains(&(string.chars().count() as u64))
}

fn json_type(value: &sonic_rs::Value) -> JsonType {
    match value.get_type() {
        sonic_rs::JsonType::Null => JsonType::Null,
        sonic_rs::JsonType::Boolean => JsonType::Boolean,
        sonic_rs::JsonType::Number => JsonType::Number,
        sonic_rs::JsonType::String => JsonType::String,
        sonic_rs::JsonType::Array => JsonType::Array,
        sonic_rs::JsonType::Object => JsonType::Object,
    }
}

/// The member named `key`; the last one if the name occurs more than once.
fn member<'a>(object: &'a sonic_rs::Object, key: &str) -> Option<&'a sonic_rs::Value> {
    object.iter().filter(|(name, _)| *name == key).last().map(|(_, v)| v)
}

/// The same value as a `serde_json::Value`: for error messages, and for
/// comparing arrays and objects with `enum`/`const` literals.
pub(crate) fn to_serde(value: &sonic_rs::Value) -> Value {
    match json_type(value) {
        JsonType::Null => Value::Null,
        JsonType::Boolean => Value::Bool(value.as_bool().unwrap_or_default()),
        JsonType::Integer | JsonType::Number => value
            .as_number()
            .map_or(Value::Null, |n| Value::Number(EventNumber(n).to_number().into_owned())),
        JsonType::String => Value::String(value.as_str().unwrap_or_default().to_string()),
        JsonType::Array => Value::Array(
            value
                .as_array()
                .map_or_else(Vec::new, |items| items.iter().map(to_serde).collect()),
        ),
        // Inserting in order keeps the last of repeated names, as `member` does.
        JsonType::Object => Value::Object(value.as_object().map_or_else(Default::default, |members| {
            members.iter().map(|(k, v)| (k.to_string(), to_serde(v))).collect()
        })),
    }
}

/// jsonschema's view of events parsed by [`parse_event`].
pub struct EventJson;

impl Json for EventJson {
    type Node<'a> = &'a sonic_rs::Value;
    type PreparedKey = String;
    type StringBuffer = ();

    /// A lookup scans the members, so visiting each member once beats a
    /// lookup per schema property once objects have a few of them.
    const KEYS_PER_LOOKUP: usize = 8;
    /// A parsed document is a tree.
    const ACYCLIC: bool = true;

    fn prepare_key(key: &str) -> String {
        key.to_owned()
    }

    fn with_string_node<T>((): &mut (), string: &str, f: impl FnOnce(&sonic_rs::Value) -> T) -> T {
        f(&sonic_rs::Value::copy_str(string))
    }
}

/// A number of a parsed event.
#[derive(Debug, Clone)]
pub struct EventNumber(sonic_rs::Number);

impl JsonNumber for EventNumber {
    fn as_u64(&self) -> Option<u64> {
        self.0.as_u64()
    }

    fn as_i64(&self) -> Option<i64> {
        self.0.as_i64()
    }

    fn as_f64(&self) -> Option<f64> {
        self.0.as_f64()
    }

    fn as_str(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_number().to_string())
    }

    fn to_number(&self) -> Cow<'_, serde_json::Number> {
        let number = match (self.0.as_u64(), self.0.as_i64()) {
            (Some(u), _) => u.into(),
            (None, Some(i)) => i.into(),
            // sonic-rs refuses non-finite numbers, so every float converts.
            _ => self
                .0
                .as_f64()
                .and_then(serde_json::Number::from_f64)
                .unwrap_or_else(|| 0.into()),
        };
        Cow::Owned(number)
    }

    fn is_written_as_integer(&self) -> bool {
        self.0.is_u64() || self.0.is_i64()
    }
}

impl<'a> Node<'a, EventJson> for &'a sonic_rs::Value {
    type Object = &'a sonic_rs::Object;
    type Array = &'a sonic_rs::Array;
    type Number = EventNumber;

    fn as_object(&self) -> Option<&'a sonic_rs::Object> {
        sonic_rs::Value::as_object(self)
    }

    fn as_array(&self) -> Option<&'a sonic_rs::Array> {
        sonic_rs::Value::as_array(self)
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        JsonValueTrait::as_str(*self).map(Cow::Borrowed)
    }

    fn as_number(&self) -> Option<EventNumber> {
        JsonValueTrait::as_number(*self).map(EventNumber)
    }

    fn string_length_within(&self, min: u64, max: u64) -> Option<bool> {
        JsonValueTrait::as_str(*self).map(|string| code_points_within(string, min, max))
    }

    fn as_boolean(&self) -> Option<bool> {
        JsonValueTrait::as_bool(*self)
    }

    fn is_null(&self) -> bool {
        JsonValueTrait::is_null(*self)
    }

    fn json_type(&self) -> JsonType {
        json_type(self)
    }

    /// Scalars compare without building a `serde_json::Value` (`enum` of
    /// strings is checked on every event).
    fn equals_value(&self, expected: &Value) -> bool {
        match (json_type(self), expected) {
            (JsonType::String, Value::String(e)) => JsonValueTrait::as_str(*self) == Some(e.as_str()),
            (JsonType::Number, Value::Number(e)) => {
                Node::<EventJson>::as_number(self).is_some_and(|n| cmp::equal_numbers(&n, e))
            }
            (JsonType::Boolean, Value::Bool(e)) => JsonValueTrait::as_bool(*self) == Some(*e),
            (JsonType::Null, Value::Null) => true,
            (JsonType::Array | JsonType::Object, Value::Array(_) | Value::Object(_)) => {
                cmp::equal(&to_serde(self), expected)
            }
            _ => false,
        }
    }

    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(to_serde(self))
    }

    /// Nodes live in the document's arena for as long as it does.
    fn identity(&self) -> Option<NodeIdentity> {
        Some(NodeIdentity::new(std::ptr::from_ref::<sonic_rs::Value>(*self) as usize))
    }
}

impl<'a> Object<'a, EventJson> for &'a sonic_rs::Object {
    type Node = &'a sonic_rs::Value;
    type MemberName = &'a str;
    type MembersIter = sonic_rs::value::object::Iter<'a>;

    fn len(&self) -> usize {
        sonic_rs::Object::len(self)
    }

    fn get(&self, key: &String) -> Option<&'a sonic_rs::Value> {
        member(self, key)
    }

    fn members(&self) -> Self::MembersIter {
        self.iter()
    }
}

impl<'a> Array<'a, EventJson> for &'a sonic_rs::Array {
    type Node = &'a sonic_rs::Value;
    type ElementsIter = std::slice::Iter<'a, sonic_rs::Value>;

    fn len(&self) -> usize {
        sonic_rs::Array::len(self)
    }

    fn elements(&self) -> Self::ElementsIter {
        self.as_slice().iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> sonic_rs::Value {
        parse_event(text.as_bytes()).unwrap()
    }

    #[test]
    fn meets_the_contract_jsonschema_checks() {
        let document = parse(&jsonschema::json::conformance::document().to_string());
        jsonschema::json::conformance::assert_conformance::<EventJson>(&&document);
    }

    /// Deciding by byte length gives what counting code points gives, for
    /// strings of 1- to 4-byte characters and every pair of limits around
    /// their lengths; anything but a string has no length.
    #[test]
    fn string_lengths_are_within_limits_as_counting_says() {
        for unit in ["a", "é", "日", "🦀"] {
            for chars in 0..=10 {
                let text = unit.repeat(chars);
                let document = parse(&json!({ "s": text }).to_string());
                let node = document.as_object().and_then(|o| o.get(&"s")).unwrap();
                for min in 0..=12 {
                    for max in min..=42 {
                        assert_eq!(
                            Node::<EventJson>::string_length_within(&node, min, max),
                            Some((min..=max).contains(&(chars as u64))),
                            "{unit} x {chars} within {min}..={max}"
                        );
                    }
                }
            }
        }
        let document = parse(r#"{"n": 1}"#);
        let node = document.as_object().and_then(|o| o.get(&"n")).unwrap();
        assert_eq!(Node::<EventJson>::string_length_within(&node, 0, 5), None);
    }

    #[test]
    fn converts_to_the_value_serde_json_parses() {
        let text = r#"{"s":"é\u00e9\n","i":-3,"u":18446744073709551615,"f":1.5e3,"b":false,"n":null,"a":[1,{"x":[]}],"o":{"k":"v"}}"#;
        let expected: Value = serde_json::from_str(text).unwrap();
        assert_eq!(to_serde(&parse(text)), expected);
    }

    #[test]
    fn a_repeated_name_is_found_with_its_last_value_and_every_copy_may_be_checked() {
        let text = r#"{"a":"first","b":2,"a":"last"}"#;
        let document = parse(text);
        let members = Node::<EventJson>::as_object(&&document).unwrap();
        assert_eq!(
            Object::get(&members, &"a".to_string()).and_then(|v| v.as_str()),
            Some("last")
        );
        assert_eq!(to_serde(&document), serde_json::from_str::<Value>(text).unwrap());
        let validator = jsonschema::options_for::<EventJson>()
            .build(&json!({"properties": {"a": {"type": "string"}}}))
            .unwrap();
        assert!(validator.is_valid(&document));
        // Never looser than serde_json's reading: the copy it keeps is checked.
        assert!(!validator.is_valid(&parse(r#"{"a":"first","a":1}"#)));
    }

    #[test]
    fn scalars_equal_schema_literals_as_json_defines_equality() {
        let document = parse(r#"{"one":1,"float_one":1.0,"text":"1","yes":true,"nothing":null,"list":[1,"a"]}"#);
        let get = |name: &str| document.get(name).unwrap();
        let equals = |name: &str, expected: Value| Node::<EventJson>::equals_value(&get(name), &expected);
        assert!(equals("one", json!(1)));
        assert!(equals("one", json!(1.0)));
        assert!(equals("float_one", json!(1)));
        assert!(!equals("one", json!(2)));
        assert!(!equals("one", json!("1")));
        assert!(equals("text", json!("1")));
        assert!(!equals("text", json!(1)));
        assert!(equals("yes", json!(true)));
        assert!(!equals("yes", json!(false)));
        assert!(equals("nothing", json!(null)));
        assert!(!equals("nothing", json!(false)));
        assert!(equals("list", json!([1.0, "a"])));
        assert!(!equals("list", json!(["a", 1])));
    }

    #[test]
    fn refuses_what_is_not_an_object_with_its_kind() {
        assert_eq!(parse_event(b"[1]").unwrap_err().0, reason::NOT_AN_OBJECT);
        assert_eq!(
            parse_event(b"\"text\"").unwrap_err().1,
            "expected a JSON object, got a string"
        );
        for text in [
            &b"{"[..],
            b"",
            b"{\"a\":1,}",
            b"{\"a\":\"\xff\"}",
            b"{\"a\":\"x\x01\"}",
            b"{} x",
        ] {
            let (why, detail) = parse_event(text).unwrap_err();
            assert_eq!(why, reason::INVALID_JSON, "{text:?}");
            assert!(!detail.contains('\n'), "{detail:?}");
        }
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_invalid_json_not_a_crash() {
        let nested = |depth: usize| format!(r#"{{"a":{}1{}}}"#, "[".repeat(depth - 1), "]".repeat(depth - 1));
        assert!(parse_event(nested(MAX_DEPTH).as_bytes()).is_ok());
        let (why, detail) = parse_event(nested(MAX_DEPTH + 1).as_bytes()).unwrap_err();
        assert_eq!(why, reason::INVALID_JSON);
        assert!(detail.contains("nested deeper than 128"), "{detail}");
        // Far deeper than a thread's stack would survive in sonic-rs's parser.
        assert!(parse_event(nested(1_000_000).as_bytes()).is_err());
    }

    #[test]
    fn opening_brackets_are_counted_across_block_boundaries() {
        // Lengths on and around the 255-byte blocks' edges, against counting one by one.
        for len in [0, 1, 254, 255, 256, 509, 510, 511, 1_000] {
            let text: Vec<u8> = (0..len)
                .map(|i| match i % 7 {
                    0 => b'{',
                    3 => b'[',
                    5 => b'}',
                    _ => b'a',
                })
                .collect();
            let expected = text.iter().filter(|&&b| b == b'{' || b == b'[').count();
            assert_eq!(opening_brackets(&text), expected, "length {len}");
        }
        assert_eq!(opening_brackets(&[b'['; 1_000]), 1_000, "a block all brackets");
    }

    #[test]
    fn brackets_inside_strings_do_not_count_as_nesting() {
        // After an escaped quote the string goes on: its 400 brackets are text.
        let text = format!(r#"{{"a":"\"{}","b":[[1]]}}"#, "[{".repeat(200));
        assert!(parse_event(text.as_bytes()).is_ok());
        // The same brackets outside a string nest 200 deep.
        let nested = format!(r#"{{"a":{}1{}}}"#, "[".repeat(200), "]".repeat(200));
        assert!(parse_event(nested.as_bytes()).is_err());
    }
}
