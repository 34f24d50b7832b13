//! A quicker yes for `validate` (ADR 0094): events checked while sonic-rs
//! reads them, against a plan compiled from the schema's common keywords,
//! with no document built and no walk over one afterwards.
//!
//! It only ever accepts. Every doubt declines, and a declined event goes
//! the full way (a sonic-rs document checked by jsonschema), which alone
//! names reasons and alone decides what an unusual event is. The plan
//! covers `type`, `enum` (its string members), `minLength`, `maxLength`,
//! `minimum` and `maximum` (integer limits), `properties`, `required`,
//! `additionalProperties`, `items` (one schema) and annotations; `pattern`
//! and `format` are checked by a jsonschema validator of those keywords
//! alone, so they mean exactly what they mean in the full check. A
//! subschema with any other keyword declines every value that reaches it.
//! At run time it declines:
//! * text that is not UTF-8, nests too deep, or does not parse;
//! * a member named twice where the plan names it (the full check knows
//!   which copy counts);
//! * a number that is not written as an integer where the plan wants an
//!   integer or compares it with a limit;
//! * any value of a type an `enum` does not list as strings;
//! * an event id that is not a non-empty string, an event time that is not
//!   an RFC 3339 string.

use std::{cell::RefCell, collections::HashMap, fmt, sync::Arc};

use chrono::DateTime;
use jsonschema::{Draft, Validator};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use sluice_core::{pointer_tokens, same_name};

use crate::event_json::{code_points_within, nests_within_limit};

/// An event the plan accepted, with its id and its time.
#[derive(Debug, PartialEq)]
pub(crate) struct Accepted {
    pub(crate) id: Arc<str>,
    pub(crate) time_us: i64,
}

/// A schema's plan, for events whose id and time are top-level members.
pub(crate) struct FastAccept {
    root: ObjectRules,
    id: usize,
    time: usize,
}

impl FastAccept {
    /// The plan of `schema` (as handed to jsonschema, in `draft`); `None`
    /// when it would decline every event: the root is not an object
    /// schema it covers, or the id or time pointer is not one top-level
    /// member (two different ones).
    pub(crate) fn compile(schema: &Value, draft: Draft, event_id: &str, event_time: &str) -> Option<FastAccept> {
        let (id, time) = (top_level_member(event_id)?, top_level_member(event_time)?);
        if id == time {
            return None;
        }
        let meta = schema.get("$schema").cloned();
        let compiler = Compiler { draft, meta };
        let mut root = match compiler.node(schema) {
            Node::Any => ObjectRules::default(),
            Node::Check(rules) if rules.types & OBJECT != 0 && rules.enum_strings.is_none() => {
                rules.object.unwrap_or_default()
            }
            _ => return None,
        };
        let (id, time) = (root.slot(&id), root.slot(&time));
        (root.names.len() <= MAX_PROPERTIES).then_some(FastAccept { root, id, time })
    }

    /// The event's id and time if `payload` is certainly valid; `None`
    /// when the full check must decide.
    pub(crate) fn accept(&self, payload: &[u8]) -> Option<Accepted> {
        if !nests_within_limit(payload) {
            return None;
        }
        let text = simdutf8::basic::from_utf8(payload).ok()?;
        let mut parser = sonic_rs::Deserializer::from_str(text);
        let mut found = Found::default();
        parser
            .deserialize_map(TopLevel {
                plan: self,
                found: &mut found,
            })
            .ok()?;
        parser.end().ok()?;
        Some(Accepted {
            id: found.id?,
            time_us: found.time_us?,
        })
    }
}

/// The member a pointer names if it names one of the top-level object
/// (`/ts`), unescaped as the full check reads it.
fn top_level_member(pointer: &str) -> Option<String> {
    let mut tokens = pointer_tokens(pointer);
    (pointer.starts_with('/') && tokens.len() == 1).then(|| tokens.remove(0))
}

const NULL: u8 = 1;
const BOOLEAN: u8 = 2;
const OBJECT: u8 = 4;
const ARRAY: u8 = 8;
const INTEGER: u8 = 16;
/// Any number, integers included.
const NUMBER: u8 = 32;
const STRING: u8 = 64;
const ANY_TYPE: u8 = 127;

/// Keywords that never change whether a value is valid.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "id",
    "self",
    "title",
    "description",
    "$comment",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$defs",
    "definitions",
];

/// The most properties an object's plan tracks.
const MAX_PROPERTIES: usize = 256;

enum Node {
    /// Every value is valid (`true`, `{}`, annotations only).
    Any,
    /// The plan does not cover this subschema (or it is `false`).
    Decline,
    Check(Box<Rules>),
}

/// What a subschema asks of each type of value.
struct Rules {
    types: u8,
    /// `enum`'s string members; values of other types decline.
    enum_strings: Option<Vec<Box<str>>>,
    min_length: u64,
    max_length: u64,
    /// `pattern` and `format`, checked by jsonschema itself.
    strings: Option<Validator>,
    minimum: Option<i128>,
    maximum: Option<i128>,
    /// `None`: any object.
    object: Option<ObjectRules>,
    items: Node,
}

struct ObjectRules {
    names: Vec<Box<str>>,
    /// Member names to their place, for objects of many properties.
    by_name: Option<HashMap<Box<str>, usize>>,
    /// Each place's subschema; `None` for a name that is not among the
    /// properties (tracked for `required` or as the event id or time),
    /// whose value `additional` checks, as for any other member.
    nodes: Vec<Option<Node>>,
    required: Slots,
    additional: Node,
}

impl Default for ObjectRules {
    fn default() -> Self {
        ObjectRules {
            names: Vec::new(),
            by_name: None,
            nodes: Vec::new(),
            required: Slots::default(),
            additional: Node::Any,
        }
    }
}

/// Structs of up to this many properties find a member by a scan.
const SCANNED_NAMES: usize = 16;

impl ObjectRules {
    /// The place of member `name`, added (checked by `additional`) if it
    /// has none.
    fn slot(&mut self, name: &str) -> usize {
        if let Some(i) = self.position(name) {
            return i;
        }
        self.names.push(name.into());
        self.nodes.push(None);
        self.index_names();
        self.names.len() - 1
    }

    fn index_names(&mut self) {
        self.by_name = (self.names.len() > SCANNED_NAMES).then(|| self.names.iter().cloned().zip(0..).collect());
    }

    fn position(&self, name: &str) -> Option<usize> {
        match &self.by_name {
            Some(by_name) => by_name.get(name).copied(),
            None => self.names.iter().position(|n| same_name(n, name)),
        }
    }

    /// [`position`](Self::position), trying `guess` first: members mostly
    /// come in one order, so the property after the last one found.
    fn position_after(&self, guess: usize, name: &str) -> Option<usize> {
        if self.names.get(guess).is_some_and(|n| same_name(n, name)) {
            return Some(guess);
        }
        self.position(name)
    }
}

/// A set of property places.
#[derive(Default, Clone, Copy, PartialEq)]
struct Slots([u64; MAX_PROPERTIES / 64]);

impl Slots {
    /// Adds `i`; false if it was there already.
    fn insert(&mut self, i: usize) -> bool {
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        let new = self.0[word] & bit == 0;
        self.0[word] |= bit;
        new
    }

    fn contains_all(&self, other: &Slots) -> bool {
        self.0.iter().zip(other.0).all(|(have, need)| have & need == need)
    }
}

struct Compiler {
    draft: Draft,
    /// The root's `$schema`, which the `pattern` and `format` validators
    /// keep so that jsonschema reads them in the same draft.
    meta: Option<Value>,
}

impl Compiler {
    fn node(&self, schema: &Value) -> Node {
        match schema {
            Value::Bool(true) => Node::Any,
            Value::Object(keywords) => self.rules(keywords).map_or(Node::Decline, |rules| {
                if rules.is_trivial() {
                    Node::Any
                } else {
                    Node::Check(Box::new(rules))
                }
            }),
            _ => Node::Decline,
        }
    }

    /// `None` when a keyword is not covered.
    fn rules(&self, keywords: &Map<String, Value>) -> Option<Rules> {
        let mut rules = Rules {
            types: ANY_TYPE,
            enum_strings: None,
            min_length: 0,
            max_length: u64::MAX,
            strings: None,
            minimum: None,
            maximum: None,
            object: None,
            items: Node::Any,
        };
        let mut delegated = Map::new();
        let mut object = ObjectRules::default();
        let mut required = Vec::new();
        let mut is_object_checked = false;
        for (keyword, value) in keywords {
            match keyword.as_str() {
                k if ANNOTATIONS.contains(&k) => {}
                "type" => rules.types = types(value)?,
                "enum" => {
                    let strings = value.as_array()?.iter().filter_map(Value::as_str).map(Box::from);
                    rules.enum_strings = Some(strings.collect());
                }
                "minLength" => rules.min_length = value.as_u64()?,
                "maxLength" => rules.max_length = value.as_u64()?,
                "pattern" | "format" => {
                    delegated.insert(keyword.clone(), value.clone());
                }
                "minimum" => rules.minimum = Some(integer(value)?),
                "maximum" => rules.maximum = Some(integer(value)?),
                "properties" => {
                    for (name, schema) in value.as_object()? {
                        let i = object.slot(name);
                        object.nodes[i] = Some(self.node(schema));
                    }
                    is_object_checked = true;
                }
                "required" => {
                    for name in value.as_array()? {
                        required.push(object.slot(name.as_str()?));
                    }
                    is_object_checked = true;
                }
                "additionalProperties" => {
                    object.additional = self.node(value);
                    is_object_checked = true;
                }
                "items" if value.is_object() || value.is_boolean() => rules.items = self.node(value),
                _ => return None,
            }
        }
        if object.names.len() > MAX_PROPERTIES {
            return None;
        }
        for i in required {
            object.required.insert(i);
        }
        if is_object_checked {
            rules.object = Some(object);
        }
        if !delegated.is_empty() {
            if let Some(meta) = &self.meta {
                delegated.insert("$schema".into(), meta.clone());
            }
            let validator = jsonschema::options()
                .with_draft(self.draft)
                .should_validate_formats(true)
                .build(&Value::Object(delegated))
                .ok()?;
            rules.strings = Some(validator);
        }
        Some(rules)
    }
}

impl Rules {
    fn is_trivial(&self) -> bool {
        self.types == ANY_TYPE
            && self.enum_strings.is_none()
            && self.min_length == 0
            && self.max_length == u64::MAX
            && self.strings.is_none()
            && self.minimum.is_none()
            && self.maximum.is_none()
            && self.object.is_none()
            && matches!(self.items, Node::Any)
    }

    fn accepts_str(&self, s: &str) -> bool {
        self.types & STRING != 0
            && self
                .enum_strings
                .as_ref()
                .is_none_or(|strings| strings.iter().any(|e| **e == *s))
            && code_points_within(s, self.min_length, self.max_length)
            && self.strings.as_ref().is_none_or(|v| string_is_valid(v, s))
    }

    fn accepts_integer(&self, n: i128) -> bool {
        self.types & (INTEGER | NUMBER) != 0
            && self.enum_strings.is_none()
            && self.minimum.is_none_or(|min| n >= min)
            && self.maximum.is_none_or(|max| n <= max)
    }

    fn accepts_float(&self) -> bool {
        self.types & NUMBER != 0 && self.enum_strings.is_none() && self.minimum.is_none() && self.maximum.is_none()
    }

    fn accepts_scalar(&self, kind: u8) -> bool {
        self.types & kind != 0 && self.enum_strings.is_none()
    }
}

thread_local! {
    /// The string a `pattern` and `format` validator reads, reused.
    static SCRATCH: RefCell<Value> = const { RefCell::new(Value::String(String::new())) };
}

/// The most the scratch string keeps between values; a longer value's
/// room is given back.
const SCRATCH_KEPT: usize = 64 * 1024;

/// Whether `validator` passes `s`, held in this thread's scratch value
/// rather than a new one per call.
fn string_is_valid(validator: &Validator, s: &str) -> bool {
    SCRATCH.with_borrow_mut(|scratch| {
        if let Value::String(held) = scratch {
            held.clear();
            held.push_str(s);
        }
        let valid = validator.is_valid(scratch);
        if let Value::String(held) = scratch
            && held.capacity() > SCRATCH_KEPT
        {
            *held = String::new();
        }
        valid
    })
}

fn types(value: &Value) -> Option<u8> {
    let one = |name: &Value| {
        Some(match name.as_str()? {
            "null" => NULL,
            "boolean" => BOOLEAN,
            "object" => OBJECT,
            "array" => ARRAY,
            "integer" => INTEGER,
            "number" => NUMBER,
            "string" => STRING,
            _ => return None,
        })
    };
    match value {
        Value::Array(names) => names.iter().try_fold(0, |all, name| Some(all | one(name)?)),
        name => one(name),
    }
}

/// A limit written as an integer.
fn integer(value: &Value) -> Option<i128> {
    value
        .as_i64()
        .map(i128::from)
        .or_else(|| value.as_u64().map(i128::from))
}

/// The error that ends a parse the plan declines.
fn decline<E: de::Error>() -> E {
    E::custom("declined by the quick check")
}

impl<'de> DeserializeSeed<'de> for &Node {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self {
            Node::Any => deserializer.deserialize_any(AnyValue),
            Node::Decline => Err(decline()),
            Node::Check(rules) => deserializer.deserialize_any(Checked(rules)),
        }
    }
}

/// A value checked against its rules.
struct Checked<'p>(&'p Rules);

impl<'de> Visitor<'de> for Checked<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.accepts_scalar(NULL).then_some(()).ok_or_else(decline)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.0.accepts_scalar(BOOLEAN).then_some(()).ok_or_else(decline)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<(), E> {
        self.0.accepts_integer(n.into()).then_some(()).ok_or_else(decline)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<(), E> {
        self.0.accepts_integer(n.into()).then_some(()).ok_or_else(decline)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.0.accepts_float().then_some(()).ok_or_else(decline)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.0.accepts_str(s).then_some(()).ok_or_else(decline)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        if !self.0.accepts_scalar(OBJECT) {
            return Err(decline());
        }
        match &self.0.object {
            Some(object) => members(object, map, None),
            None => skip_members(map),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        if !self.0.accepts_scalar(ARRAY) {
            return Err(decline());
        }
        while items.next_element_seed(&self.0.items)?.is_some() {}
        Ok(())
    }
}

fn skip_members<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_key_seed(AnyName)?.is_some() {
        map.next_value_seed(&Node::Any)?;
    }
    Ok(())
}

/// Any value, read in full: sonic-rs's skipping of an ignored value
/// passes escapes its parse of the same text refuses (a lone surrogate,
/// `"\ud800"`), so a value the plan does not check is parsed all the same.
struct AnyValue;

impl<'de> Visitor<'de> for AnyValue {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        skip_members(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        while items.next_element_seed(&Node::Any)?.is_some() {}
        Ok(())
    }
}

/// A member name, read in full and not kept.
struct AnyName;

impl<'de> DeserializeSeed<'de> for AnyName {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(AnyValue)
    }
}

/// The top-level member places of the event id and time, and what they held.
#[derive(Default)]
struct Found {
    id: Option<Arc<str>>,
    time_us: Option<i64>,
}

/// Checks an object's members against `object`; at the top level,
/// `top` also takes the event id and time.
fn members<'de, A: MapAccess<'de>>(
    object: &ObjectRules,
    mut map: A,
    mut top: Option<(&FastAccept, &mut Found)>,
) -> Result<(), A::Error> {
    let mut seen = Slots::default();
    let mut guess = 0;
    while let Some(place) = map.next_key_seed(Place { object, guess })? {
        let Some(i) = place else {
            map.next_value_seed(&object.additional)?;
            continue;
        };
        if !seen.insert(i) {
            return Err(decline());
        }
        guess = i + 1;
        let node = object.nodes[i].as_ref().unwrap_or(&object.additional);
        match top.as_mut() {
            Some((plan, found)) if i == plan.id => found.id = Some(map.next_value_seed(EventId(node))?),
            Some((plan, found)) if i == plan.time => found.time_us = Some(map.next_value_seed(EventTime(node))?),
            _ => map.next_value_seed(node)?,
        }
    }
    if !seen.contains_all(&object.required) {
        return Err(decline());
    }
    Ok(())
}

/// The top-level object.
struct TopLevel<'p> {
    plan: &'p FastAccept,
    found: &'p mut Found,
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        members(&self.plan.root, map, Some((self.plan, self.found)))
    }
}

/// A member name's place among an object's properties (`None`: not one),
/// `guess` tried first.
struct Place<'p> {
    object: &'p ObjectRules,
    guess: usize,
}

impl<'de> DeserializeSeed<'de> for Place<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Place<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Option<usize>, E> {
        Ok(self.object.position_after(self.guess, name))
    }
}

/// A string value checked against `node`.
fn string_at<E: de::Error>(node: &Node, s: &str) -> Result<(), E> {
    match node {
        Node::Any => Ok(()),
        Node::Check(rules) if rules.accepts_str(s) => Ok(()),
        _ => Err(decline()),
    }
}

/// The event id: a non-empty string.
struct EventId<'p>(&'p Node);

impl<'de> DeserializeSeed<'de> for EventId<'_> {
    type Value = Arc<str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Arc<str>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EventId<'_> {
    type Value = Arc<str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event id")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Arc<str>, E> {
        string_at(self.0, s)?;
        if s.is_empty() {
            return Err(decline());
        }
        Ok(Arc::from(s))
    }
}

/// The event time: an RFC 3339 string, in microseconds since the epoch.
struct EventTime<'p>(&'p Node);

impl<'de> DeserializeSeed<'de> for EventTime<'_> {
    type Value = i64;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<i64, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EventTime<'_> {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event time")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<i64, E> {
        string_at(self.0, s)?;
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_micros())
            .map_err(|_| decline())
    }
}

#[cfg(test)]
mod tests;
