//! Record batches built in the same pass as the parse of each payload:
//! sonic-rs's serde deserializer hands each member to a visitor that
//! appends it to its column's typed builder, so no document is built and
//! nothing but the builders outlives the parse (ADR 0088).
//!
//! Built for columns of the types JSON Schemas map to (string, 64-bit
//! integer and float, boolean, UTC microsecond timestamp, struct, list);
//! a schema with any other is left to arrow-json. The batch equals
//! arrow-json's of the same payloads: unknown members are ignored (and
//! still checked), missing ones are null, values at JSON text paths
//! become serde_json's text of them. Anything else declines the whole
//! group, which then goes to arrow-json, so this path never decides what
//! an unusual value becomes: a payload that does not parse, a member
//! named twice (arrow-json keeps the last; a builder cannot take back the
//! first), a value arrow-json would convert or refuse (a number for a
//! string, `"7"` or `7.0` for an integer, a number for a timestamp, a
//! null in a non-nullable column), a float zero that may have been
//! negative (sonic-rs drops the sign).

use std::{cell::OnceCell, fmt, sync::Arc};

use arrow_array::{
    ArrayRef, RecordBatch,
    builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder},
    timezone::Tz,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_cast::parse::string_to_datetime;
use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use sluice_core::{Event, same_name};

/// The columns of one table schema, ready to be built from payloads.
pub(super) struct Columns {
    schema: Arc<Schema>,
    top: StructColumn,
}

impl Columns {
    /// A plan for `schema`'s columns; `json_text_paths` are the paths
    /// (member names from the root, arrays passed through) whose values
    /// are stored as JSON text. `None`: the schema has a column this path
    /// does not build.
    pub(super) fn plan(schema: &Arc<Schema>, json_text_paths: &[Vec<String>]) -> Option<Columns> {
        let mut path = Vec::new();
        let top = StructColumn::plan(schema.fields(), &mut path, json_text_paths, true)?;
        // A JSON text path that names no string column: leave it to arrow-json.
        if top.json_text_columns() != json_text_paths.len() {
            return None;
        }
        Some(Columns {
            schema: schema.clone(),
            top,
        })
    }

    /// One record batch of `events`' payloads; `None` if a payload does
    /// not parse as an object or holds a value this path does not build.
    pub(super) fn build(mut self, events: &[Event]) -> Option<RecordBatch> {
        for event in events {
            // The whole payload, as arrow-json checks it: sonic-rs's own check
            // (`from_slice`) passes bad bytes inside an ignored member.
            let text = simdutf8::basic::from_utf8(&event.payload).ok()?;
            let mut parser = sonic_rs::Deserializer::from_str(text);
            let row = Members {
                columns: &mut self.top,
                payload: &Payload::new(&event.payload),
            };
            parser.deserialize_map(row).ok()?;
            parser.end().ok()?;
        }
        let columns = self.top.finish_children();
        RecordBatch::try_new(self.schema, columns).ok()
    }
}

/// Structs of up to this many columns find a member's column by a scan.
const SCANNED_NAMES: usize = 16;

/// The text a payload was parsed from, read only to settle what sonic-rs
/// does not keep (the sign of a float zero): scanned once, at the first
/// float zero, however many it holds.
struct Payload<'a> {
    text: &'a [u8],
    negative_zero: OnceCell<bool>,
}

impl<'a> Payload<'a> {
    fn new(text: &'a [u8]) -> Self {
        Payload {
            text,
            negative_zero: OnceCell::new(),
        }
    }

    /// Whether the text may hold a negative zero: a number that follows a
    /// structural character or whitespace, starts `-0` and has no other
    /// digit than zeros before its exponent. It errs only towards yes
    /// (such text inside a string).
    fn may_hold_negative_zero(&self) -> bool {
        *self.negative_zero.get_or_init(|| scan_negative_zero(self.text))
    }
}

fn scan_negative_zero(text: &[u8]) -> bool {
    text.windows(2).enumerate().any(|(i, pair)| {
        let starts_number = i == 0 || matches!(text[i - 1], b':' | b',' | b'[' | b' ' | b'\t' | b'\n' | b'\r');
        pair == b"-0"
            && starts_number
            && match text[i + 2..].split_first() {
                Some((b'.', fraction)) => fraction.iter().take_while(|b| b.is_ascii_digit()).all(|b| *b == b'0'),
                _ => true,
            }
    })
}

enum Column {
    Utf8 { builder: StringBuilder, json_text: bool },
    Int64(Int64Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder, Tz),
    Struct(StructColumn),
    List(ListColumn),
}

struct Slot {
    column: Column,
    nullable: bool,
}

struct StructColumn {
    fields: Fields,
    names: Names,
    children: Vec<Slot>,
    /// Each row's validity (structs inside a row; the top level has none).
    valid: Vec<bool>,
}

struct ListColumn {
    item_field: Arc<Field>,
    item: Box<Slot>,
    offsets: Vec<i32>,
    valid: Vec<bool>,
}

impl StructColumn {
    fn plan(fields: &Fields, path: &mut Vec<String>, json_text: &[Vec<String>], top: bool) -> Option<StructColumn> {
        let mut children = Vec::with_capacity(fields.len());
        for field in fields.iter() {
            // Below the top, a non-nullable child under a null parent is a
            // case arrow-json masks; not worth mirroring.
            if !top && !field.is_nullable() {
                return None;
            }
            path.push(field.name().clone());
            let column = Column::plan(field.data_type(), path, json_text)?;
            path.pop();
            children.push(Slot {
                column,
                nullable: field.is_nullable(),
            });
        }
        Some(StructColumn {
            fields: fields.clone(),
            names: Names::new(fields),
            children,
            valid: Vec::new(),
        })
    }

    fn json_text_columns(&self) -> usize {
        self.children.iter().map(|slot| slot.column.json_text_columns()).sum()
    }

    fn append_null_row(&mut self) {
        for slot in &mut self.children {
            slot.column.append_null();
        }
        self.valid.push(false);
    }

    fn finish_children(&mut self) -> Vec<ArrayRef> {
        self.children.iter_mut().map(|slot| slot.column.finish()).collect()
    }

    fn finish(&mut self) -> ArrayRef {
        let children = self.finish_children();
        let nulls = nulls(&mut self.valid);
        Arc::new(arrow_array::StructArray::new(self.fields.clone(), children, nulls))
    }
}

impl Slot {
    /// Appends a null; refused in a column that is not nullable.
    fn append_null(&mut self) -> Result<(), &'static str> {
        if !self.nullable {
            return Err("a null or missing value in a column that is not nullable");
        }
        self.column.append_null();
        Ok(())
    }
}

impl Column {
    fn plan(data_type: &DataType, path: &mut Vec<String>, json_text: &[Vec<String>]) -> Option<Column> {
        Some(match data_type {
            DataType::Utf8 => Column::Utf8 {
                builder: StringBuilder::new(),
                json_text: json_text.iter().any(|p| p == path),
            },
            DataType::Int64 => Column::Int64(Int64Builder::new()),
            DataType::Float64 => Column::Float64(Float64Builder::new()),
            DataType::Boolean => Column::Boolean(BooleanBuilder::new()),
            DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) => Column::Timestamp(
                TimestampMicrosecondBuilder::new().with_timezone(tz.clone()),
                tz.parse().ok()?,
            ),
            DataType::Struct(fields) => Column::Struct(StructColumn::plan(fields, path, json_text, false)?),
            DataType::List(item) if item.is_nullable() => Column::List(ListColumn {
                item_field: item.clone(),
                item: Box::new(Slot {
                    column: Column::plan(item.data_type(), path, json_text)?,
                    nullable: true,
                }),
                offsets: vec![0],
                valid: Vec::new(),
            }),
            _ => return None,
        })
    }

    fn json_text_columns(&self) -> usize {
        match self {
            Column::Utf8 { json_text, .. } => usize::from(*json_text),
            Column::Struct(s) => s.json_text_columns(),
            Column::List(l) => l.item.column.json_text_columns(),
            _ => 0,
        }
    }

    fn append_null(&mut self) {
        match self {
            Column::Utf8 { builder, .. } => builder.append_null(),
            Column::Int64(b) => b.append_null(),
            Column::Float64(b) => b.append_null(),
            Column::Boolean(b) => b.append_null(),
            Column::Timestamp(b, _) => b.append_null(),
            Column::Struct(s) => s.append_null_row(),
            Column::List(l) => {
                let end = *l.offsets.last().unwrap_or(&0);
                l.offsets.push(end);
                l.valid.push(false);
            }
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Utf8 { builder, .. } => Arc::new(builder.finish()),
            Column::Int64(b) => Arc::new(b.finish()),
            Column::Float64(b) => Arc::new(b.finish()),
            Column::Boolean(b) => Arc::new(b.finish()),
            Column::Timestamp(b, _) => Arc::new(b.finish()),
            Column::Struct(s) => s.finish(),
            Column::List(l) => {
                let values = l.item.column.finish();
                let offsets = OffsetBuffer::new(std::mem::replace(&mut l.offsets, vec![0]).into());
                let nulls = nulls(&mut l.valid);
                Arc::new(arrow_array::ListArray::new(
                    l.item_field.clone(),
                    offsets,
                    values,
                    nulls,
                ))
            }
        }
    }
}

/// The validity of the rows taken so far (`None` when all are valid).
fn nulls(valid: &mut Vec<bool>) -> Option<NullBuffer> {
    let nulls = NullBuffer::from(std::mem::take(valid));
    (nulls.null_count() > 0).then_some(nulls)
}

/// Column names and where each is, looked up by member name: a scan for
/// a few columns, a map for many (Snowplow's table has over a hundred).
/// Objects of one source mostly list their members in one order, so each
/// member's place is first checked against the column the member at the
/// same place had last time.
struct Names {
    names: Vec<String>,
    by_name: Option<std::collections::HashMap<String, usize>>,
    /// The column of the k-th member of the last object (`usize::MAX`: none).
    guesses: Vec<usize>,
}

impl Names {
    fn new(fields: &Fields) -> Names {
        let names: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
        let by_name = (names.len() > SCANNED_NAMES).then(|| names.iter().cloned().zip(0..).collect());
        Names {
            names,
            by_name,
            guesses: Vec::new(),
        }
    }

    /// The column of `name`, the `k`-th member of its object.
    fn position(&mut self, k: usize, name: &str) -> Option<usize> {
        if let Some(&guess) = self.guesses.get(k)
            && self.names.get(guess).is_some_and(|n| same_name(n, name))
        {
            return Some(guess);
        }
        let found = match &self.by_name {
            Some(by_name) => by_name.get(name).copied(),
            None => self.names.iter().position(|n| same_name(n, name)),
        };
        let remembered = found.unwrap_or(usize::MAX);
        if k < self.guesses.len() {
            self.guesses[k] = remembered;
        } else if k == self.guesses.len() {
            self.guesses.push(remembered);
        }
        found
    }
}

/// The error that declines a group: a value this path does not build
/// as arrow-json would (the group then goes to arrow-json).
fn declined<E: de::Error>(what: &str) -> E {
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
            names: &mut columns.names,
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
                slot: &mut columns.children[i],
                payload: self.payload,
            })?;
        }
        for (i, slot) in columns.children.iter_mut().enumerate() {
            if !seen.contains(i) {
                slot.append_null().map_err(declined)?;
            }
        }
        Ok(())
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
struct Key<'n> {
    names: &'n mut Names,
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
        Ok(self.names.position(self.k, name))
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
        match &mut self.slot.column {
            Column::Boolean(b) => b.append_value(v),
            _ => return Err(declined("a boolean")),
        }
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        match &mut self.slot.column {
            Column::Int64(b) => b.append_value(v),
            Column::Float64(b) => b.append_value(v as f64),
            _ => return Err(declined("a number")),
        }
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        match &mut self.slot.column {
            Column::Int64(b) => b.append_value(i64::try_from(v).map_err(|_| declined::<E>("an integer past i64"))?),
            Column::Float64(b) => b.append_value(v as f64),
            _ => return Err(declined("a number")),
        }
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        match &mut self.slot.column {
            Column::Float64(_) if v == 0.0 && self.payload.may_hold_negative_zero() => {
                return Err(declined("a float zero that may have been negative"));
            }
            Column::Float64(b) => b.append_value(v),
            _ => return Err(declined("a float")),
        }
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        match &mut self.slot.column {
            Column::Utf8 { builder, .. } => builder.append_value(v),
            Column::Timestamp(b, tz) => {
                let time = string_to_datetime(tz, v).map_err(|_| declined::<E>("a time arrow-json refuses"))?;
                b.append_value(time.timestamp_micros());
            }
            _ => return Err(declined("a string")),
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let Column::Struct(columns) = &mut self.slot.column else {
            return Err(declined("an object"));
        };
        Members {
            columns: &mut *columns,
            payload: self.payload,
        }
        .visit_map(map)?;
        columns.valid.push(true);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        let Column::List(list) = &mut self.slot.column else {
            return Err(declined("an array"));
        };
        let mut count: i32 = 0;
        while items
            .next_element_seed(Value {
                slot: &mut list.item,
                payload: self.payload,
            })?
            .is_some()
        {
            count = count
                .checked_add(1)
                .ok_or_else(|| declined::<A::Error>("a list too long"))?;
        }
        let end = *list.offsets.last().unwrap_or(&0) + count;
        list.offsets.push(end);
        list.valid.push(true);
        Ok(())
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
