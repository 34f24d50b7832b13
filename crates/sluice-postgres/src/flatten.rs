//! Flattening: one JSON event into one root row plus a row per array item
//! in the child tables, against a [`Shape`] that grows with new fields.
//!
//! Row ids are 128-bit hashes: the root row's comes from the caller (the
//! primary key's values, or the batch and position), a child row's from its
//! parent's id, its table and its list index, so a redelivered event gets
//! the same ids. An event with a value that does not fit is refused whole,
//! and what it added to the shape is undone.

use serde_json::{Map, Value};
use sluice_core::reason;
use twox_hash::XxHash3_128;

use crate::{
    cell::{Cell, Misfit, describe},
    shape::{PgType, Shape, Slot, pointer},
};

/// One row for one table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub table: usize,
    pub id: [u8; 16],
    /// For child rows: the parent's and the root row's ids and the list index.
    pub parent: [u8; 16],
    pub root: [u8; 16],
    pub index: i64,
    /// `(column index, cell)`; absent columns are null.
    pub cells: Vec<(usize, Cell)>,
}

/// Why an event was refused: `reason:pointer` and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
    pub detail: String,
}

/// The root row id for primary-key values (or any identifying bytes).
pub fn row_id(parts: &[&[u8]]) -> [u8; 16] {
    let mut hasher = XxHash3_128::new();
    for p in parts {
        hasher.write(&(p.len() as u64).to_le_bytes());
        hasher.write(p);
    }
    hasher.finish_128().to_be_bytes()
}

/// The root id for the primary key at `pointers`, or why there is none.
pub fn key_id(event: &Value, pointers: &[String]) -> Result<[u8; 16], Refusal> {
    let mut texts = Vec::with_capacity(pointers.len());
    for p in pointers {
        match event.pointer(p) {
            Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => texts.push(v.to_string()),
            other => {
                return Err(Refusal {
                    reason: reason::at(reason::MISSING_PRIMARY_KEY, p),
                    detail: format!(
                        "the primary key needs a string, number or boolean at {p}, got {}",
                        other.map_or_else(|| "nothing".into(), describe)
                    ),
                });
            }
        }
    }
    let parts: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
    Ok(row_id(&parts))
}

/// Flattens `event` (an object) into rows; the root row comes first.
pub fn flatten(shape: &mut Shape, event: Map<String, Value>, root_id: [u8; 16]) -> Result<Vec<Row>, Refusal> {
    let mark = shape.mark();
    let mut f = Flattener {
        shape,
        rows: vec![Row {
            table: 0,
            id: root_id,
            parent: root_id,
            root: root_id,
            index: 0,
            cells: Vec::new(),
        }],
    };
    match f.object(0, 0, event, &mut Vec::new()) {
        Ok(()) => Ok(f.rows),
        Err(refusal) => {
            f.shape.rollback(&mark);
            Err(refusal)
        }
    }
}

struct Flattener<'s> {
    shape: &'s mut Shape,
    rows: Vec<Row>,
}

impl Flattener<'_> {
    fn object(
        &mut self,
        table: usize,
        row: usize,
        map: Map<String, Value>,
        path: &mut Vec<String>,
    ) -> Result<(), Refusal> {
        for (key, value) in map {
            path.push(key);
            self.value(table, row, value, path)?;
            path.pop();
        }
        Ok(())
    }

    fn value(&mut self, table: usize, row: usize, value: Value, path: &mut Vec<String>) -> Result<(), Refusal> {
        if value.is_null() {
            return Ok(());
        }
        match self.shape.tables[table].slot(path) {
            Some(Slot::Column(column)) => self.cell(table, row, column, value, path),
            Some(Slot::Child(child)) => match value {
                Value::Array(items) => self.items(child, row, items),
                other => Err(self.misfit(
                    table,
                    path,
                    Misfit::Type(format!("expected an array of objects, got {}", describe(&other))),
                )),
            },
            None => match value {
                Value::Object(map) => self.object(table, row, map, path),
                Value::Array(items) if items.is_empty() => Ok(()),
                Value::Array(items) if items.iter().all(Value::is_object) => {
                    let child = self
                        .shape
                        .add_child(table, path.clone())
                        .map_err(|e| self.refuse(reason::COLUMN_NAME, table, path, e))?;
                    self.items(child, row, items)
                }
                value => {
                    let ty = PgType::infer(&value).expect("null and empty arrays were handled");
                    let column = self
                        .shape
                        .add_column(table, path.clone(), ty)
                        .map_err(|e| self.refuse(reason::COLUMN_NAME, table, path, e))?;
                    self.cell(table, row, column, value, path)
                }
            },
        }
    }

    fn items(&mut self, child: usize, parent_row: usize, items: Vec<Value>) -> Result<(), Refusal> {
        let parent = self.rows[parent_row].id;
        let root = self.rows[parent_row].root;
        for (index, item) in items.into_iter().enumerate() {
            let Value::Object(map) = item else {
                if item.is_null() {
                    continue;
                }
                let detail = format!("expected an object in the array, got {}", describe(&item));
                let t = &self.shape.tables[child];
                return Err(Refusal {
                    reason: reason::at(reason::COLUMN_TYPE, &pointer::<&str>(&t.full_path, &[])),
                    detail: format!("{detail} (child table {:?})", t.name),
                });
            };
            let index = index as i64;
            let id = row_id(&[&parent, self.shape.tables[child].name.as_bytes(), &index.to_le_bytes()]);
            self.rows.push(Row {
                table: child,
                id,
                parent,
                root,
                index,
                cells: Vec::new(),
            });
            let row = self.rows.len() - 1;
            self.object(child, row, map, &mut Vec::new())?;
        }
        Ok(())
    }

    fn cell(&mut self, table: usize, row: usize, column: usize, value: Value, path: &[String]) -> Result<(), Refusal> {
        let ty = self.shape.tables[table].columns[column].ty;
        let cell = Cell::from_json(ty, value).map_err(|m| self.misfit(table, path, m))?;
        self.rows[row].cells.push((column, cell));
        Ok(())
    }

    fn misfit(&self, table: usize, path: &[String], misfit: Misfit) -> Refusal {
        let t = &self.shape.tables[table];
        let what = match t.slot(path) {
            Some(Slot::Column(c)) => format!("column {:?} of table {:?}", t.columns[c].name, t.name),
            _ => format!("table {:?}", t.name),
        };
        match misfit {
            Misfit::Type(m) => self.refuse(reason::COLUMN_TYPE, table, path, format!("{m} ({what})")),
            Misfit::Unstorable(m) => self.refuse(reason::UNSTORABLE_VALUE, table, path, format!("{m} ({what})")),
        }
    }

    fn refuse(&self, reason: &str, table: usize, path: &[String], detail: String) -> Refusal {
        Refusal {
            reason: reason::at(reason, &pointer(&self.shape.tables[table].full_path, path)),
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn column(shape: &Shape, table: usize, name: &str) -> usize {
        shape.tables[table].columns.iter().position(|c| c.name == name).unwrap()
    }

    #[test]
    fn nested_objects_flatten_and_arrays_of_objects_become_child_rows() {
        let mut shape = Shape::new("events");
        let rows = flatten(
            &mut shape,
            object(json!({
                "id": "a",
                "device": {"screen": {"w": 390}},
                "tags": ["x", "y"],
                "props": {"items": [{"sku": "s1", "qty": 2}, {"sku": "s2", "qty": 1, "parts": [{"n": 1}]}]},
                "gone": null,
                "empty": []
            })),
            row_id(&[b"a"]),
        )
        .unwrap();
        let names: Vec<&str> = shape.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["events", "events__props__items", "events__props__items__parts"]
        );
        let root_cols: Vec<&str> = shape.root().columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            root_cols,
            vec!["device__screen__w", "id", "tags"],
            "first seen, keys sorted"
        );
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].cells[0], (0, Cell::Int(390)));
        assert_eq!(rows[0].cells[2], (2, Cell::Json("[\"x\",\"y\"]".into())));
        let (first, second, part) = (&rows[1], &rows[2], &rows[3]);
        assert_eq!((first.table, first.parent, first.index), (1, rows[0].id, 0));
        assert_eq!(
            (second.index, part.table, part.parent, part.root),
            (1, 2, second.id, rows[0].id)
        );
        let sku = column(&shape, 1, "sku");
        assert_eq!(
            second.cells.iter().find(|(c, _)| *c == sku),
            Some(&(sku, Cell::Text("s2".into())))
        );
        assert_ne!(first.id, second.id);
    }

    #[test]
    fn the_same_event_gets_the_same_row_ids() {
        let event = json!({"items": [{"a": 1}, {"a": 2}]});
        let mut shape = Shape::new("t");
        let one = flatten(&mut shape, object(event.clone()), row_id(&[b"k"])).unwrap();
        let two = flatten(&mut shape, object(event), row_id(&[b"k"])).unwrap();
        assert_eq!(one, two);
    }

    #[test]
    fn a_misfit_refuses_the_event_and_undoes_its_new_columns() {
        let mut shape = Shape::new("t");
        flatten(&mut shape, object(json!({"n": 1, "p": {"c": "x"}})), row_id(&[b"1"])).unwrap();
        let before = shape.mark();
        let refusal = flatten(&mut shape, object(json!({"new": true, "p": {"c": 5}})), row_id(&[b"2"])).unwrap_err();
        assert_eq!(refusal.reason, "column_type:/p/c");
        assert_eq!(
            refusal.detail,
            "expected text, got number 5 (column \"p__c\" of table \"t\")"
        );
        assert_eq!(shape.mark(), before);
        let refusal = flatten(&mut shape, object(json!({"n": "1"})), row_id(&[b"3"])).unwrap_err();
        assert_eq!(refusal.reason, "column_type:/n");
        let refusal = flatten(&mut shape, object(json!({"n": 1, "s": "a\u{0}"})), row_id(&[b"4"])).unwrap_err();
        assert_eq!(refusal.reason, "unstorable_value:/s");
        let refusal = flatten(&mut shape, object(json!({"p__c": "clash"})), row_id(&[b"5"])).unwrap_err();
        assert_eq!(refusal.reason, "column_name:/p__c");
    }

    #[test]
    fn primary_keys_must_be_present_scalars() {
        let event = json!({"id": "a", "n": 1, "o": {}});
        let ptrs = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            key_id(&event, &ptrs(&["/id", "/n"])).unwrap(),
            key_id(&event, &ptrs(&["/id", "/n"])).unwrap()
        );
        assert_ne!(
            key_id(&event, &ptrs(&["/id"])).unwrap(),
            key_id(&event, &ptrs(&["/n"])).unwrap()
        );
        let err = key_id(&event, &ptrs(&["/o"])).unwrap_err();
        assert_eq!(err.reason, "missing_primary_key:/o");
        assert!(key_id(&event, &ptrs(&["/missing"])).is_err());
    }
}
