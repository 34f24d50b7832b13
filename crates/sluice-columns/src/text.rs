//! Record batches built in the same pass as the parse of each payload:
//! sonic-rs's serde deserializer hands each member to a visitor that
//! appends it to its column's builder, so no document is built and
//! nothing but the builders outlives the parse (ADR 0088).
//!
//! The batch equals arrow-json's of the same payloads: unknown members
//! are ignored (and still checked), missing ones are null, values at JSON
//! text paths become serde_json's text of them. Anything else declines
//! the whole group, which then goes to arrow-json, so this path never
//! decides what an unusual value becomes: a payload that does not parse,
//! a member named twice (arrow-json keeps the last; a builder cannot take
//! back the first), a value the builders refuse.

use std::fmt;

use arrow_array::RecordBatch;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::builders::{Column, Columns, Payload, Refused, Slot, StructColumn};

impl Columns {
    /// One record batch of `payloads`; `None` if a payload does not parse
    /// as an object or holds a value the builders refuse.
    pub fn build<'a>(mut self, payloads: impl IntoIterator<Item = &'a [u8]>) -> Option<RecordBatch> {
        for payload in payloads {
            // The whole payload, as arrow-json checks it: sonic-rs's own check
            // (`from_slice`) passes bad bytes inside an ignored member.
            let text = simdutf8::basic::from_utf8(payload).ok()?;
            let mut parser = sonic_rs::Deserializer::from_str(text);
            let row = Members {
                columns: self.top(),
                payload: &Payload::new(payload),
            };
            parser.deserialize_map(row).ok()?;
            parser.end().ok()?;
        }
        self.finish()
    }
}

impl Slot {
    /// Appends the value `parser` reads next, whatever it is, as
    /// [`Columns::build`] does (for a value no one else checks).
    pub fn append_parsed<'de, D: Deserializer<'de>>(&mut self, parser: D, payload: &Payload) -> Result<(), D::Error> {
        Value { slot: self, payload }.deserialize(parser)
    }
}

impl StructColumn {
    /// Appends the object `map` reads as a row of these columns, as
    /// [`Columns::build`] does (for an object no one else checks).
    pub fn append_members<'de, A: MapAccess<'de>>(&mut self, map: A, payload: &Payload) -> Result<(), A::Error> {
        Members { columns: self, payload }.visit_map(map)
    }
}

/// The error that declines a group: a value this path does not build
/// as arrow-json would (the group then goes to arrow-json).
fn declined<E: de::Error>(what: Refused) -> E {
    E::custom(what)
}

/// One JSON object appended as a row of a struct column's children: a
/// member without a column is skipped (and still checked), a missing
/// member is null, a member named twice declines (arrow-json keeps the
/// last, which a builder cannot take back).
struct Members<'c, 'p> {
    columns: &'c mut StructColumn,
    payload: &'p Payload<'p>,
}

impl<'de> Visitor<'de> for Members<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let columns = self.columns;
        let mut seen = Seen::new(columns.children.len());
        let mut k = 0;
        while let Some(found) = map.next_key_seed(Key {
            columns: &mut *columns,
            k,
        })? {
            k += 1;
            let Some(i) = found else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if !seen.insert(i) {
                return Err(declined("a member named twice"));
            }
            map.next_value_seed(Value {
                slot: columns.child(i),
                payload: self.payload,
            })?;
        }
        columns.fill_missing(|i| seen.contains(i)).map_err(declined)
    }
}

/// Which of a struct's columns a row has given a value.
enum Seen {
    Few(u64),
    Many(Vec<bool>),
}

impl Seen {
    fn new(columns: usize) -> Seen {
        if columns <= 64 {
            Seen::Few(0)
        } else {
            Seen::Many(vec![false; columns])
        }
    }

    /// Marks column `i`; false if it was marked already.
    fn insert(&mut self, i: usize) -> bool {
        match self {
            Seen::Few(bits) => {
                let fresh = *bits & (1 << i) == 0;
                *bits |= 1 << i;
                fresh
            }
            Seen::Many(seen) => !std::mem::replace(&mut seen[i], true),
        }
    }

    fn contains(&self, i: usize) -> bool {
        match self {
            Seen::Few(bits) => bits & (1 << i) != 0,
            Seen::Many(seen) => seen[i],
        }
    }
}

/// The `k`-th member name of an object, read as the index of its column
/// (`None`: no column).
struct Key<'c> {
    columns: &'c mut StructColumn,
    k: usize,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, parser: D) -> Result<Option<usize>, D::Error> {
        parser.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Option<usize>, E> {
        Ok(self.columns.column_of(self.k, name))
    }
}

/// One value appended to its column.
struct Value<'c, 'p> {
    slot: &'c mut Slot,
    payload: &'p Payload<'p>,
}

impl<'de> DeserializeSeed<'de> for Value<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, parser: D) -> Result<(), D::Error> {
        if let Column::Utf8 {
            builder,
            json_text: true,
        } = &mut self.slot.column
        {
            // Stored as serde_json's text of the value, as arrow-json's path does.
            let value: serde_json::Value = serde::Deserialize::deserialize(parser)?;
            return match value {
                serde_json::Value::Null => self.slot.append_null().map_err(declined),
                serde_json::Value::String(text) => {
                    builder.append_value(text);
                    Ok(())
                }
                other if holds_float_zero(&other) && self.payload.may_hold_negative_zero() => {
                    Err(declined("a float zero that may have been negative"))
                }
                other => {
                    builder.append_value(other.to_string());
                    Ok(())
                }
            };
        }
        parser.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Value<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value of the column's type")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.slot.append_null().map_err(declined)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.slot.append_bool(v).map_err(declined)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.slot.append_i64(v).map_err(declined)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.slot.append_u64(v).map_err(declined)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.slot.append_f64(v, self.payload).map_err(declined)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.slot.append_str(v).map_err(declined)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let Some(columns) = self.slot.as_struct() else {
            return Err(declined("an object"));
        };
        columns.append_members(map, self.payload)?;
        columns.end_row();
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        let Some(list) = self.slot.as_list() else {
            return Err(declined("an array"));
        };
        while items
            .next_element_seed(Value {
                slot: list.item(),
                payload: self.payload,
            })?
            .is_some()
        {}
        list.end_row().map_err(declined)
    }
}

/// Whether a value holds a float zero, whose sign sonic-rs 0.5 drops
/// (`-0.0` and `-0` are read as `0.0`).
fn holds_float_zero(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Array(items) => items.iter().any(holds_float_zero),
        serde_json::Value::Object(members) => members.values().any(holds_float_zero),
        serde_json::Value::Number(n) => n.is_f64() && n.as_f64() == Some(0.0),
        _ => false,
    }
}
