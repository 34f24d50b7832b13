//! Record batches built from a sonic-rs parse of each payload: the values
//! are appended to typed builders while the document is fresh, then the
//! document is dropped, never leaving the thread or the cache (ADR 0088:
//! a little cheaper than arrow-json, which scans the text into a tape and
//! then reads the tape).
//!
//! Built for columns of the types JSON Schemas map to (string, 64-bit
//! integer and float, boolean, UTC microsecond timestamp, struct, list);
//! a schema with any other is left to arrow-json. The batch equals
//! arrow-json's of the same payloads: members named twice count with
//! their last value, unknown members are ignored, values at JSON text
//! paths become serde_json's text of them. A payload that does not parse,
//! or a value arrow-json would convert or refuse (a number for a string,
//! `"7"` or `7.0` for an integer, a number for a timestamp, a null in a
//! non-nullable column, a float zero that may have been negative, whose
//! sign sonic-rs drops) declines the whole group, which then goes to
//! arrow-json: this path never decides what an unusual value becomes.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, RecordBatch,
    builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder},
    timezone::Tz,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_cast::parse::string_to_datetime;
use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use sluice_core::Event;
use sonic_rs::{JsonContainerTrait, JsonValueTrait};

/// The columns of one table schema, ready to be built from documents.
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
            let document: sonic_rs::Value = sonic_rs::from_slice(&event.payload).ok()?;
            let payload = Payload(&event.payload);
            self.top.append_members(document.as_object()?, payload).ok()?;
        }
        let columns = self.top.finish_children();
        RecordBatch::try_new(self.schema, columns).ok()
    }
}

/// Structs of up to this many columns collect their members on the stack.
const INLINE_CHILDREN: usize = 16;

/// Why a value cannot be built here (the group goes to arrow-json).
struct Declined;

/// The text a document was parsed from, read only to settle what sonic-rs
/// does not keep (the sign of a float zero).
#[derive(Clone, Copy)]
struct Payload<'a>(&'a [u8]);

impl Payload<'_> {
    /// Whether the text may hold a negative zero: a number that follows a
    /// structural character or whitespace, starts `-0` and has no other
    /// digit than zeros before its exponent. It errs only towards yes
    /// (such text inside a string).
    fn may_hold_negative_zero(self) -> bool {
        let text = self.0;
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

    /// Appends one object's members to the children: the last member of
    /// each name counts; members without a column are ignored.
    fn append_members(&mut self, object: &sonic_rs::Object, payload: Payload) -> Result<(), Declined> {
        if self.children.len() <= INLINE_CHILDREN {
            let mut values = [None; INLINE_CHILDREN];
            self.append_found(object, &mut values[..self.children.len()], payload)
        } else {
            let mut values = vec![None; self.children.len()];
            self.append_found(object, &mut values, payload)
        }
    }

    /// [`StructColumn::append_members`] with `values`, one per child, as
    /// the place to collect them.
    fn append_found<'v>(
        &mut self,
        object: &'v sonic_rs::Object,
        values: &mut [Option<&'v sonic_rs::Value>],
        payload: Payload,
    ) -> Result<(), Declined> {
        for (name, value) in object.iter() {
            if let Some(i) = self.names.position(name) {
                values[i] = Some(value);
            }
        }
        for (slot, value) in self.children.iter_mut().zip(values.iter()) {
            slot.append(*value, payload)?;
        }
        Ok(())
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
    fn append(&mut self, value: Option<&sonic_rs::Value>, payload: Payload) -> Result<(), Declined> {
        match value {
            Some(v) if !v.is_null() => self.column.append(v, payload),
            _ if self.nullable => {
                self.column.append_null();
                Ok(())
            }
            _ => Err(Declined),
        }
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

    /// Appends a non-null value.
    fn append(&mut self, value: &sonic_rs::Value, payload: Payload) -> Result<(), Declined> {
        match self {
            Column::Utf8 { builder, json_text } => match value.as_str() {
                Some(s) => builder.append_value(s),
                None if *json_text => builder.append_value(json_text_of(value, payload)?),
                None => return Err(Declined),
            },
            Column::Int64(b) => b.append_value(value.as_i64().ok_or(Declined)?),
            Column::Float64(b) => {
                if is_float_zero(value) && payload.may_hold_negative_zero() {
                    return Err(Declined);
                }
                b.append_value(value.as_f64().ok_or(Declined)?);
            }
            Column::Boolean(b) => b.append_value(value.as_bool().ok_or(Declined)?),
            Column::Timestamp(b, tz) => {
                let text = value.as_str().ok_or(Declined)?;
                let time = string_to_datetime(tz, text).map_err(|_| Declined)?;
                b.append_value(time.timestamp_micros());
            }
            Column::Struct(s) => {
                s.append_members(value.as_object().ok_or(Declined)?, payload)?;
                s.valid.push(true);
            }
            Column::List(l) => {
                let items = value.as_array().ok_or(Declined)?;
                for item in items.iter() {
                    l.item.append(Some(item), payload)?;
                }
                let end = *l.offsets.last().unwrap_or(&0) + i32::try_from(items.len()).map_err(|_| Declined)?;
                l.offsets.push(end);
                l.valid.push(true);
            }
        }
        Ok(())
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

/// The JSON text arrow-json's path stores for a value at a JSON text
/// path: serde_json's, of the value as serde_json reads it.
fn json_text_of(value: &sonic_rs::Value, payload: Payload) -> Result<String, Declined> {
    if holds_float_zero(value) && payload.may_hold_negative_zero() {
        return Err(Declined);
    }
    let value: serde_json::Value = serde_json::to_value(value).map_err(|_| Declined)?;
    Ok(value.to_string())
}

/// Column names and where each is, looked up by member name: a scan for
/// a few columns, a map for many (Snowplow's table has over a hundred).
enum Names {
    Few(Vec<String>),
    Many(std::collections::HashMap<String, usize>),
}

impl Names {
    fn new(fields: &Fields) -> Names {
        let names = fields.iter().map(|f| f.name().clone());
        if fields.len() <= INLINE_CHILDREN {
            Names::Few(names.collect())
        } else {
            Names::Many(names.enumerate().map(|(i, n)| (n, i)).collect())
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        match self {
            Names::Few(names) => names.iter().position(|n| n == name),
            Names::Many(names) => names.get(name).copied(),
        }
    }
}

/// A float zero: sonic-rs 0.5 parses `-0.0` (and `-0`) as `0.0`, losing
/// the sign arrow-json and serde_json keep.
fn is_float_zero(value: &sonic_rs::Value) -> bool {
    value.is_f64() && value.as_f64() == Some(0.0)
}

fn holds_float_zero(value: &sonic_rs::Value) -> bool {
    if let Some(items) = value.as_array() {
        items.iter().any(holds_float_zero)
    } else if let Some(members) = value.as_object() {
        members.iter().any(|(_, v)| holds_float_zero(v))
    } else {
        is_float_zero(value)
    }
}
