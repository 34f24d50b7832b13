//! Rows built by another stage's parse (ADR 0097): `validate` appends each
//! event it accepts to the lake's builders while it checks it, and the
//! lake sink gathers those rows instead of parsing the payloads again.
//!
//! A batch's rows are tied to the payload bytes they were built from:
//! each row keeps its payload's `Bytes`, and an event finds its row only
//! while its payload is those very bytes (same address and length, kept
//! alive by the row, so no other payload can take the address). A stage
//! that rewrites the payload makes the row lapse, and the sink builds
//! that event's row from the text as before.

use std::{any::Any, sync::Arc};

use arrow_array::{ArrayRef, RecordBatch, UInt32Array};
use arrow_cast::cast;
use arrow_schema::{DataType, Fields, Schema};
use arrow_select::take::take_record_batch;
use bytes::Bytes;
use sluice_core::{Event, EventRow};

use crate::builders::{Columns, StructColumn};

/// One batch's rows, appended one event at a time.
pub struct RowBuilder {
    columns: Columns,
    /// Each row's payload; an empty one for a row no event owns.
    payloads: Vec<Bytes>,
}

impl RowBuilder {
    pub fn new(columns: Columns) -> RowBuilder {
        RowBuilder {
            columns,
            payloads: Vec::new(),
        }
    }

    /// The top-level columns, for the next row's members.
    pub fn top(&mut self) -> &mut StructColumn {
        self.columns.top()
    }

    /// Ends the row appended for `payload`: its index if the parse that
    /// appended it `succeeded` and left every column one row longer;
    /// `None` otherwise, with whatever it appended closed into a row no
    /// event owns.
    pub fn end_row(&mut self, payload: &Bytes, succeeded: bool) -> Option<u32> {
        let rows = self.payloads.len();
        let index = u32::try_from(rows).ok();
        let top = self.columns.top();
        if succeeded && index.is_some() && top.all_hold(rows + 1) {
            self.payloads.push(payload.clone());
            return index;
        }
        top.close_partial_children();
        if top.any_past(rows) {
            top.pad_to(rows + 1);
            self.payloads.push(Bytes::new());
        }
        None
    }

    /// The rows, `None` if there are none.
    pub fn finish(self) -> Option<Arc<BuiltRows>> {
        if self.payloads.is_empty() {
            return None;
        }
        let batch = self.columns.finish()?;
        Some(Arc::new(BuiltRows {
            batch,
            payloads: self.payloads,
        }))
    }
}

/// A batch's rows, and the payload each was built from.
pub struct BuiltRows {
    batch: RecordBatch,
    payloads: Vec<Bytes>,
}

impl BuiltRows {
    /// Gives `event` its row `index` of these rows.
    pub fn attach(self: &Arc<Self>, event: &mut Event, index: u32) {
        event.row = Some(EventRow {
            rows: self.clone(),
            index,
        });
    }

    /// Whether `index` is the row of `payload`.
    fn holds(&self, index: u32, payload: &Bytes) -> bool {
        self.payloads.get(index as usize).is_some_and(|built| {
            !built.is_empty() && built.as_ptr() == payload.as_ptr() && built.len() == payload.len()
        })
    }
}

/// The rows built for `events` in columns of `schema`, gathered into
/// record batches (one per batch of rows they come from, the events'
/// order kept within each), and the events that have none: no rows,
/// rows of other columns, or a payload rewritten since.
pub fn gather(schema: &Arc<Schema>, events: Vec<Event>) -> (Vec<RecordBatch>, Vec<Event>) {
    let mut groups: Vec<Gathered> = Vec::new();
    let mut rest = Vec::new();
    for event in events {
        let Some(row) = &event.row else {
            rest.push(event);
            continue;
        };
        let at = match groups.iter().position(|g| Arc::ptr_eq(&g.rows, &row.rows)) {
            Some(at) => at,
            None => {
                groups.push(Gathered::new(&row.rows, schema));
                groups.len() - 1
            }
        };
        let group = &mut groups[at];
        match &group.built {
            Some(built) if built.holds(row.index, &event.payload) => {
                group.indices.push(row.index);
                group.events.push(event);
            }
            _ => rest.push(event),
        }
    }
    let mut batches = Vec::with_capacity(groups.len());
    for group in groups.into_iter().filter(|group| !group.indices.is_empty()) {
        match group
            .built
            .and_then(|built| rows_at(&built.batch, schema, group.indices))
        {
            Some(batch) => batches.push(batch),
            None => rest.extend(group.events),
        }
    }
    (batches, rest)
}

/// The events of one batch of rows, and where their rows are.
struct Gathered {
    rows: Arc<dyn Any + Send + Sync>,
    /// The rows, if they are of the wanted columns.
    built: Option<Arc<BuiltRows>>,
    indices: Vec<u32>,
    events: Vec<Event>,
}

impl Gathered {
    fn new(rows: &Arc<dyn Any + Send + Sync>, schema: &Schema) -> Gathered {
        let built = rows
            .clone()
            .downcast::<BuiltRows>()
            .ok()
            .filter(|built| same_columns(built.batch.schema().fields(), schema.fields()));
        Gathered {
            rows: rows.clone(),
            built,
            indices: Vec::new(),
            events: Vec::new(),
        }
    }
}

/// Whether columns `a` and `b` hold the same values alike: the same names,
/// types and nullability, where a list's item field may be named
/// differently (a Delta table's schema read back names it `element`,
/// arrow's default `item`).
fn same_columns(a: &Fields, b: &Fields) -> bool {
    a.len() == b.len()
        && a.iter().zip(b.iter()).all(|(a, b)| {
            a.name() == b.name() && a.is_nullable() == b.is_nullable() && same_type(a.data_type(), b.data_type())
        })
}

fn same_type(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        (DataType::Struct(a), DataType::Struct(b)) => same_columns(a, b),
        (DataType::List(a), DataType::List(b)) => {
            a.is_nullable() == b.is_nullable() && same_type(a.data_type(), b.data_type())
        }
        (a, b) => a == b,
    }
}

/// Rows `indices` of `batch`, under `schema`: the batch itself when they
/// are all its rows in order. Columns whose lists name their items
/// otherwise are given `schema`'s names (no values copied).
fn rows_at(batch: &RecordBatch, schema: &Arc<Schema>, indices: Vec<u32>) -> Option<RecordBatch> {
    let all_in_order = indices.len() == batch.num_rows() && indices.iter().zip(0u32..).all(|(i, n)| *i == n);
    let rows = if all_in_order {
        batch.clone()
    } else {
        take_record_batch(batch, &UInt32Array::from(indices)).ok()?
    };
    let columns = rows
        .columns()
        .iter()
        .zip(schema.fields().iter())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<ArrayRef>, _>>()
        .ok()?;
    RecordBatch::try_new(schema.clone(), columns).ok()
}
