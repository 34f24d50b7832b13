//! Typed Arrow builders for a table schema's columns, and the appends a
//! parse makes to them: the one place that says what a JSON value becomes
//! in a column, and which values it leaves to arrow-json (ADR 0088).
//!
//! Built for columns of the types JSON Schemas map to (string, 64-bit
//! integer and float, boolean, UTC microsecond timestamp, struct, list);
//! a schema with any other has no plan. An append that arrow-json would
//! make differently is refused with what the value was: a number for a
//! string, `"7"` or `7.0` for an integer, a number for a timestamp, a null
//! in a non-nullable column, a float zero that may have been negative
//! (sonic-rs drops the sign).

use std::{cell::OnceCell, sync::Arc};

use arrow_array::{
    ArrayRef, ListArray, RecordBatch, StructArray,
    builder::{ArrayBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder},
    timezone::Tz,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_cast::parse::string_to_datetime;
use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use sluice_core::same_name;

/// Why an append was refused: the value, as arrow-json would not take it
/// as this path does.
pub type Refused = &'static str;

/// The builders of one table schema's columns.
pub struct Columns {
    schema: Arc<Schema>,
    top: StructColumn,
}

impl Columns {
    /// Builders for `schema`'s columns; `json_text_paths` are the paths
    /// (member names from the root, arrays passed through) whose values
    /// are stored as JSON text. `None`: the schema has a column this path
    /// does not build, or a JSON text path names no string column.
    pub fn plan(schema: &Arc<Schema>, json_text_paths: &[Vec<String>]) -> Option<Columns> {
        let mut path = Vec::new();
        let top = StructColumn::plan(schema.fields(), &mut path, json_text_paths, true)?;
        if top.json_text_columns() != json_text_paths.len() {
            return None;
        }
        Some(Columns {
            schema: schema.clone(),
            top,
        })
    }

    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// The top-level columns, one per member of each row's object.
    pub fn top(&mut self) -> &mut StructColumn {
        &mut self.top
    }

    /// The rows appended so far, as one record batch (`None` if arrow
    /// refuses the arrays, which a complete row never makes it do).
    pub fn finish(mut self) -> Option<RecordBatch> {
        let columns = self.top.finish_children()?;
        RecordBatch::try_new(self.schema, columns).ok()
    }
}

/// The text a payload was parsed from, read only to settle what sonic-rs
/// does not keep (the sign of a float zero): scanned once, at the first
/// float zero, however many it holds.
pub struct Payload<'a> {
    text: &'a [u8],
    negative_zero: OnceCell<bool>,
}

impl<'a> Payload<'a> {
    pub fn new(text: &'a [u8]) -> Self {
        Payload {
            text,
            negative_zero: OnceCell::new(),
        }
    }

    /// Whether the text may hold a negative zero: a number that follows a
    /// structural character or whitespace, starts `-0` and has no other
    /// digit than zeros before its exponent. It errs only towards yes
    /// (such text inside a string).
    pub(crate) fn may_hold_negative_zero(&self) -> bool {
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

pub(crate) enum Column {
    Utf8 { builder: StringBuilder, json_text: bool },
    Int64(Int64Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder, Tz),
    Struct(StructColumn),
    List(ListColumn),
}

/// One column and whether it takes nulls.
pub struct Slot {
    pub(crate) column: Column,
    nullable: bool,
}

/// A struct's columns (or the table's top-level ones).
pub struct StructColumn {
    fields: Fields,
    names: Names,
    pub(crate) children: Vec<Slot>,
    /// Each row's validity (structs inside a row; the top level has none).
    valid: Vec<bool>,
}

/// A list's offsets, validity and item column.
pub struct ListColumn {
    item_field: Arc<Field>,
    pub(crate) item: Box<Slot>,
    offsets: Vec<i32>,
    valid: Vec<bool>,
}

/// Structs of up to this many columns find a member's column by a scan.
const SCANNED_NAMES: usize = 16;

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

    /// The columns' fields, in order.
    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    /// The column of `name`, the `k`-th member of its object (objects of
    /// one source mostly list their members in one order).
    pub fn column_of(&mut self, k: usize, name: &str) -> Option<usize> {
        self.names.position(k, name)
    }

    /// Column `i`.
    pub fn child(&mut self, i: usize) -> &mut Slot {
        &mut self.children[i]
    }

    /// Appends a null to every column the row has not given a value, as
    /// to a missing member.
    pub fn fill_missing(&mut self, given: impl Fn(usize) -> bool) -> Result<(), Refused> {
        for (i, slot) in self.children.iter_mut().enumerate() {
            if !given(i) {
                slot.append_null()?;
            }
        }
        Ok(())
    }

    /// Ends a struct value's row, its members appended (not for the top level).
    pub fn end_row(&mut self) {
        self.valid.push(true);
    }

    fn append_null_row(&mut self) {
        for slot in &mut self.children {
            slot.column.append_null();
        }
        self.valid.push(false);
    }

    /// Whether any column holds more rows than `rows`.
    pub(crate) fn any_past(&self, rows: usize) -> bool {
        self.children.iter().any(|slot| slot.column.len() > rows)
    }

    /// Whether every column holds `rows` rows.
    pub(crate) fn all_hold(&self, rows: usize) -> bool {
        self.children.iter().all(|slot| slot.column.len() == rows)
    }

    /// Gives every column that holds `rows - 1` rows a null, so all hold
    /// `rows`.
    pub(crate) fn pad_to(&mut self, rows: usize) {
        for slot in &mut self.children {
            if slot.column.len() < rows {
                slot.column.append_null();
            }
        }
    }

    /// Closes a value a parse left half-appended in any column: see
    /// [`Column::close_partial`].
    pub(crate) fn close_partial_children(&mut self) {
        for slot in &mut self.children {
            slot.column.close_partial();
        }
    }

    pub(crate) fn finish_children(&mut self) -> Option<Vec<ArrayRef>> {
        self.children.iter_mut().map(|slot| slot.column.finish()).collect()
    }

    fn finish(&mut self) -> Option<ArrayRef> {
        let children = self.finish_children()?;
        let nulls = nulls(&mut self.valid);
        Some(Arc::new(
            StructArray::try_new(self.fields.clone(), children, nulls).ok()?,
        ))
    }
}

impl ListColumn {
    /// The column of the list's items.
    pub fn item(&mut self) -> &mut Slot {
        &mut self.item
    }

    /// Ends a list value's row, its items appended.
    pub fn end_row(&mut self) -> Result<(), Refused> {
        let end = i32::try_from(self.item.column.len()).map_err(|_| "a list too long")?;
        self.offsets.push(end);
        self.valid.push(true);
        Ok(())
    }
}

impl Slot {
    /// Appends a null; refused in a column that is not nullable.
    pub fn append_null(&mut self) -> Result<(), Refused> {
        if !self.nullable {
            return Err("a null or missing value in a column that is not nullable");
        }
        self.column.append_null();
        Ok(())
    }

    pub fn append_bool(&mut self, v: bool) -> Result<(), Refused> {
        match &mut self.column {
            Column::Boolean(b) => b.append_value(v),
            _ => return Err("a boolean"),
        }
        Ok(())
    }

    pub fn append_i64(&mut self, v: i64) -> Result<(), Refused> {
        match &mut self.column {
            Column::Int64(b) => b.append_value(v),
            Column::Float64(b) => b.append_value(v as f64),
            _ => return Err("a number"),
        }
        Ok(())
    }

    pub fn append_u64(&mut self, v: u64) -> Result<(), Refused> {
        match &mut self.column {
            Column::Int64(b) => b.append_value(i64::try_from(v).map_err(|_| "an integer past i64")?),
            Column::Float64(b) => b.append_value(v as f64),
            _ => return Err("a number"),
        }
        Ok(())
    }

    /// `payload` is the text the float was parsed from.
    pub fn append_f64(&mut self, v: f64, payload: &Payload) -> Result<(), Refused> {
        match &mut self.column {
            Column::Float64(_) if v == 0.0 && payload.may_hold_negative_zero() => {
                return Err("a float zero that may have been negative");
            }
            Column::Float64(b) => b.append_value(v),
            _ => return Err("a float"),
        }
        Ok(())
    }

    pub fn append_str(&mut self, v: &str) -> Result<(), Refused> {
        match &mut self.column {
            Column::Utf8 { builder, .. } => builder.append_value(v),
            Column::Timestamp(b, tz) => {
                let time = string_to_datetime(tz, v).map_err(|_| "a time arrow-json refuses")?;
                b.append_value(time.timestamp_micros());
            }
            _ => return Err("a string"),
        }
        Ok(())
    }

    /// The struct column, if this is one.
    pub fn as_struct(&mut self) -> Option<&mut StructColumn> {
        match &mut self.column {
            Column::Struct(columns) => Some(columns),
            _ => None,
        }
    }

    /// The list column, if this is one.
    pub fn as_list(&mut self) -> Option<&mut ListColumn> {
        match &mut self.column {
            Column::List(list) => Some(list),
            _ => None,
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
                time_zone(tz)?,
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

    /// The rows (values, nulls included) appended so far.
    fn len(&self) -> usize {
        match self {
            Column::Utf8 { builder, .. } => builder.len(),
            Column::Int64(b) => b.len(),
            Column::Float64(b) => b.len(),
            Column::Boolean(b) => b.len(),
            Column::Timestamp(b, _) => b.len(),
            Column::Struct(s) => s.valid.len(),
            Column::List(l) => l.offsets.len() - 1,
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

    /// Closes a value that a parse stopped inside, so that every column
    /// holds whole rows again: a struct whose members were partly
    /// appended ends as a null row (the rest of its members null), a list
    /// partly appended ends as a null row over the items it has. A
    /// scalar is appended whole or not at all. The row it closes is
    /// never read (ADR 0097).
    fn close_partial(&mut self) {
        match self {
            Column::Struct(s) => {
                let rows = s.valid.len();
                s.close_partial_children();
                if s.any_past(rows) {
                    s.pad_to(rows + 1);
                    s.valid.push(false);
                }
            }
            Column::List(l) => {
                l.item.column.close_partial();
                let items = l.item.column.len();
                let end = *l.offsets.last().unwrap_or(&0);
                if usize::try_from(end).is_ok_and(|end| items > end) {
                    l.offsets.push(i32::try_from(items).unwrap_or(i32::MAX));
                    l.valid.push(false);
                }
            }
            _ => {}
        }
    }

    fn finish(&mut self) -> Option<ArrayRef> {
        Some(match self {
            Column::Utf8 { builder, .. } => Arc::new(builder.finish()),
            Column::Int64(b) => Arc::new(b.finish()),
            Column::Float64(b) => Arc::new(b.finish()),
            Column::Boolean(b) => Arc::new(b.finish()),
            Column::Timestamp(b, _) => Arc::new(b.finish()),
            Column::Struct(s) => s.finish()?,
            Column::List(l) => {
                let values = l.item.column.finish()?;
                let offsets = OffsetBuffer::new(std::mem::replace(&mut l.offsets, vec![0]).into());
                let nulls = nulls(&mut l.valid);
                Arc::new(ListArray::try_new(l.item_field.clone(), offsets, values, nulls).ok()?)
            }
        })
    }
}

/// A column's time zone: an offset, or a name arrow reads (named zones
/// need arrow's `chrono-tz` feature, but for UTC, read here as `+00:00`
/// whatever the features a build unifies).
fn time_zone(tz: &str) -> Option<Tz> {
    tz.parse()
        .ok()
        .or_else(|| matches!(tz, "UTC" | "Z").then(|| "+00:00".parse().ok()).flatten())
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
