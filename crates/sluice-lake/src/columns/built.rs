//! Record batches built straight from the documents the `validate`
//! transform kept on its events ([`Event::kept_parse`]): the values are
//! appended to typed builders, with no second parse of the payload.
//!
//! Built for columns of the types JSON Schemas map to (string, 64-bit
//! integer and float, boolean, UTC microsecond timestamp, struct, list);
//! a schema with any other is left to arrow-json. The batch equals
//! arrow-json's of the same payloads: members named twice count with
//! their last value, unknown members are ignored, values at JSON text
//! paths become serde_json's text of them. A value arrow-json would
//! convert or refuse (a number for a string, `"7"` or `7.0` for an
//! integer, a number for a timestamp, a null in a non-nullable column, a
//! float zero, whose sign sonic-rs drops) declines the whole group, which then goes to arrow-json: this path
//! never decides what an unusual value becomes.

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
/// `None` from [`Columns::plan`]: the schema has a column the fast path
/// does not build.
pub(super) struct Columns {
    schema: Arc<Schema>,
    top: StructColumn,
}

impl Columns {
    /// A plan for `schema`'s columns; `json_text_paths` are the paths
    /// (member names from the root, arrays passed through) whose values
    /// are stored as JSON text.
    pub(super) fn plan(schema: &Arc<Schema>, json_text_paths: &[Vec<String>]) -> Option<Columns> {
        let mut path = Vec::new();
        let top = StructColumn::plan(schema.fields(), &mut path, json_text_paths, true)?;
        // A JSON text path that names no string column: leave it to arrow-json.
        let strings = top.json_text_columns();
        if strings != json_text_paths.len() {
            return None;
        }
        Some(Columns {
            schema: schema.clone(),
            top,
        })
    }

    /// One record batch of `events`' kept documents; `None` if an event
    /// has none or holds a value the fast path does not build.
    pub(super) fn build(&mut self, events: &[Event]) -> Option<RecordBatch> {
        self.top.clear();
        for event in events {
            let document = event.kept_parse::<sonic_rs::Value>()?;
            self.top.append_members(document.as_object()?).ok()?;
        }
        let columns = self.top.finish_children();
        RecordBatch::try_new(self.schema.clone(), columns).ok()
    }
}

/// Structs of up to this many columns collect their members on the stack.
const INLINE_CHILDREN: usize = 16;

/// Why a value cannot be built here (the group goes to arrow-json).
struct Declined;

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

    fn clear(&mut self) {
        self.valid.clear();
        for slot in &mut self.children {
            slot.column.clear();
        }
    }

    /// Appends one object's members to the children: the last member of
    /// each name counts; members without a column are ignored.
    fn append_members(&mut self, object: &sonic_rs::Object) -> Result<(), Declined> {
        if self.children.len() <= INLINE_CHILDREN {
            let mut values = [None; INLINE_CHILDREN];
            self.append_found(object, &mut values[..self.children.len()])
        } else {
            let mut values = vec![None; self.children.len()];
            self.append_found(object, &mut values)
        }
    }

    /// [`StructColumn::append_members`] with `values`, one per child, as
    /// the place to collect them.
    fn append_found<'v>(
        &mut self,
        object: &'v sonic_rs::Object,
        values: &mut [Option<&'v sonic_rs::Value>],
    ) -> Result<(), Declined> {
        for (name, value) in object.iter() {
            if let Some(i) = self.names.position(name) {
                values[i] = Some(value);
            }
        }
        for (slot, value) in self.children.iter_mut().zip(values.iter()) {
            slot.append(*value)?;
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
    fn append(&mut self, value: Option<&sonic_rs::Value>) -> Result<(), Declined> {
        match value {
            Some(v) if !v.is_null() => self.column.append(v),
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

    fn clear(&mut self) {
        match self {
            Column::Struct(s) => s.clear(),
            Column::List(l) => {
                l.offsets.truncate(1);
                l.valid.clear();
                l.item.column.clear();
            }
            // Finishing a builder empties it; one left half-filled by a
            // declined build is emptied the same way.
            other => {
                other.finish();
            }
        }
    }

    /// Appends a non-null value.
    fn append(&mut self, value: &sonic_rs::Value) -> Result<(), Declined> {
        match self {
            Column::Utf8 { builder, json_text } => match value.as_str() {
                Some(s) => builder.append_value(s),
                None if *json_text => builder.append_value(json_text_of(value).ok_or(Declined)?),
                None => return Err(Declined),
            },
            Column::Int64(b) => b.append_value(value.as_i64().ok_or(Declined)?),
            Column::Float64(b) => {
                if is_unsigned_zero_float(value) {
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
                s.append_members(value.as_object().ok_or(Declined)?)?;
                s.valid.push(true);
            }
            Column::List(l) => {
                let items = value.as_array().ok_or(Declined)?;
                for item in items.iter() {
                    l.item.append(Some(item))?;
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

/// The JSON text the slow path stores for a value at a JSON text path:
/// serde_json's, of the value as serde_json reads it.
fn json_text_of(value: &sonic_rs::Value) -> Option<String> {
    if holds_zero_float(value) {
        return None;
    }
    let value: serde_json::Value = serde_json::to_value(value).ok()?;
    Some(value.to_string())
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
        if fields.len() <= 16 {
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
/// the sign arrow-json and serde_json keep, so a float zero may have been
/// either.
fn is_unsigned_zero_float(value: &sonic_rs::Value) -> bool {
    value.is_f64() && value.as_f64() == Some(0.0)
}

fn holds_zero_float(value: &sonic_rs::Value) -> bool {
    if let Some(items) = value.as_array() {
        items.iter().any(holds_zero_float)
    } else if let Some(members) = value.as_object() {
        members.iter().any(|(_, v)| holds_zero_float(v))
    } else {
        is_unsigned_zero_float(value)
    }
}
