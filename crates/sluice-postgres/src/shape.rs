//! The relational shape of a stream of JSON events: a root table, child
//! tables for arrays of objects, and the column each field path lands in.
//!
//! * Nested objects flatten into columns named by their path
//!   (`device__screen__w`).
//! * An array of objects becomes a child table (`events__props__items`)
//!   whose rows point at their parent row and keep their list index; arrays
//!   inside those items become grandchild tables the same way.
//! * Scalar arrays, free-form objects (no `properties`) and values of mixed
//!   type are one `jsonb` column.
//!
//! The shape starts from the JSON Schema and from what the database already
//! has, and grows when events bring fields it has not seen. It only grows:
//! [`Shape::mark`] and [`Shape::rollback`] undo the growth of one event that
//! is refused, and the columns and tables past [`Shape::synced`] are the DDL
//! the next commit must run.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use sluice_core::{JsonDoc, json_doc::Members};
use tokio_postgres::types::Type;

use crate::ident::path_name;

/// The column types the sink writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgType {
    Text,
    BigInt,
    Double,
    Boolean,
    Timestamptz,
    Jsonb,
}

impl PgType {
    pub const ALL: [PgType; 6] = [
        PgType::Text,
        PgType::BigInt,
        PgType::Double,
        PgType::Boolean,
        PgType::Timestamptz,
        PgType::Jsonb,
    ];

    /// The name `format_type` gives it, and what DDL uses.
    pub fn sql(self) -> &'static str {
        match self {
            PgType::Text => "text",
            PgType::BigInt => "bigint",
            PgType::Double => "double precision",
            PgType::Boolean => "boolean",
            PgType::Timestamptz => "timestamp with time zone",
            PgType::Jsonb => "jsonb",
        }
    }

    pub fn from_sql(name: &str) -> Option<PgType> {
        PgType::ALL.into_iter().find(|t| t.sql() == name)
    }

    pub fn wire(self) -> Type {
        match self {
            PgType::Text => Type::TEXT,
            PgType::BigInt => Type::INT8,
            PgType::Double => Type::FLOAT8,
            PgType::Boolean => Type::BOOL,
            PgType::Timestamptz => Type::TIMESTAMPTZ,
            PgType::Jsonb => Type::JSONB,
        }
    }

    /// The type a value first seen in an event gets, if it needs a column.
    pub fn infer(value: &Value) -> Option<PgType> {
        match value {
            Value::Null => None,
            Value::Bool(_) => Some(PgType::Boolean),
            Value::Number(n) if n.is_i64() => Some(PgType::BigInt),
            Value::Number(_) => Some(PgType::Double),
            Value::String(_) => Some(PgType::Text),
            Value::Array(a) if a.is_empty() => None,
            Value::Array(_) | Value::Object(_) => Some(PgType::Jsonb),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    /// Field path relative to the table's row (the event, or an array item).
    pub path: Vec<String>,
    pub ty: PgType,
}

/// Where a path of field names lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Column(usize),
    Child(usize),
}

#[derive(Debug, Clone, Default)]
struct Node {
    children: HashMap<String, Node>,
    slot: Option<Slot>,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub parent: Option<usize>,
    /// Path of the array within the parent's row (empty for the root).
    pub path: Vec<String>,
    /// Path from the event's root, for messages.
    pub full_path: Vec<String>,
    pub columns: Vec<Column>,
    slots: Node,
    names: HashSet<String>,
}

/// System columns every table has; field paths may not take their names.
pub const ID_COLUMN: &str = "_sluice_id";
pub const PARENT_COLUMN: &str = "_sluice_parent_id";
pub const ROOT_COLUMN: &str = "_sluice_root_id";
pub const INDEX_COLUMN: &str = "_sluice_list_idx";
pub const LOADED_AT_COLUMN: &str = "_sluice_loaded_at";
const SYSTEM_COLUMNS: [&str; 5] = [ID_COLUMN, PARENT_COLUMN, ROOT_COLUMN, INDEX_COLUMN, LOADED_AT_COLUMN];

impl Table {
    fn new(name: String, parent: Option<usize>, path: Vec<String>, full_path: Vec<String>) -> Self {
        Table {
            name,
            parent,
            path,
            full_path,
            columns: Vec::new(),
            slots: Node::default(),
            names: SYSTEM_COLUMNS.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Where `path` lands in this table, if it is known.
    pub fn slot<S: AsRef<str>>(&self, path: &[S]) -> Option<Slot> {
        let mut node = &self.slots;
        for segment in path {
            node = node.children.get(segment.as_ref())?;
        }
        node.slot
    }

    /// Whether some known column or child table lies below `path`.
    pub fn has_below<S: AsRef<str>>(&self, path: &[S]) -> bool {
        let mut node = &self.slots;
        for segment in path {
            match node.children.get(segment.as_ref()) {
                Some(n) => node = n,
                None => return false,
            }
        }
        !node.children.is_empty()
    }

    fn set_slot(&mut self, path: &[String], slot: Option<Slot>) {
        let mut node = &mut self.slots;
        for segment in path {
            node = node.children.entry(segment.clone()).or_default();
        }
        node.slot = slot;
    }
}

/// How far the shape had grown at some point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    columns: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Shape {
    pub tables: Vec<Table>,
    table_names: HashSet<String>,
    synced: Mark,
}

impl Shape {
    /// A shape with only the root table, which has no columns yet.
    pub fn new(root: &str) -> Self {
        let mut shape = Shape {
            tables: Vec::new(),
            table_names: HashSet::new(),
            synced: Mark { columns: Vec::new() },
        };
        shape.table_names.insert(root.to_string());
        shape
            .tables
            .push(Table::new(root.to_string(), None, Vec::new(), Vec::new()));
        shape
    }

    pub fn root(&self) -> &Table {
        &self.tables[0]
    }

    /// Adds a column for `path` in `table`; errors name the clash.
    pub fn add_column(&mut self, table: usize, path: Vec<String>, ty: PgType) -> Result<usize, String> {
        let name = path_name(None, &path)?;
        let t = &mut self.tables[table];
        if !t.names.insert(name.clone()) {
            return Err(format!(
                "the column name {name:?} is taken by another field or by Sluice in table {:?}",
                t.name
            ));
        }
        let index = t.columns.len();
        t.set_slot(&path, Some(Slot::Column(index)));
        t.columns.push(Column { name, path, ty });
        Ok(index)
    }

    /// Adds a child table for the array at `path` in `table`'s rows.
    pub fn add_child(&mut self, table: usize, path: Vec<String>) -> Result<usize, String> {
        let parent = &self.tables[table];
        let name = path_name(Some(&parent.name), &path)?;
        if !self.table_names.insert(name.clone()) {
            return Err(format!("the table name {name:?} is taken by another array"));
        }
        let mut full_path = parent.full_path.clone();
        full_path.extend(path.iter().cloned());
        let index = self.tables.len();
        self.tables[table].set_slot(&path, Some(Slot::Child(index)));
        self.tables.push(Table::new(name, Some(table), path, full_path));
        Ok(index)
    }

    /// Adds what a JSON Schema declares (properties of objects, items of
    /// arrays), keeping what exists; a declared type that differs from an
    /// existing column's is an error.
    pub fn add_schema(&mut self, schema: &JsonDoc) -> Result<(), String> {
        let Some(props) = schema.get("properties").and_then(JsonDoc::as_object) else {
            return Err("the schema's root must be an object with \"properties\"".into());
        };
        self.add_properties(0, props, &mut Vec::new())
    }

    fn add_properties(&mut self, table: usize, props: &Members, path: &mut Vec<String>) -> Result<(), String> {
        for (name, node) in props {
            path.push(name.clone());
            self.add_schema_node(table, node, path)?;
            path.pop();
        }
        Ok(())
    }

    fn add_schema_node(&mut self, table: usize, node: &JsonDoc, path: &mut Vec<String>) -> Result<(), String> {
        let existing = self.tables[table].slot(path);
        let want = match schema_kind(node) {
            SchemaKind::Object(props) => return self.add_properties(table, props, path),
            SchemaKind::ArrayOfObjects(props) => {
                let child = match existing {
                    Some(Slot::Child(c)) => c,
                    None => self.add_child(table, path.clone())?,
                    Some(Slot::Column(_)) => {
                        return Err(format!(
                            "{} is an array of objects in the schema but a column in table {:?}",
                            pointer(&self.tables[table].full_path, path),
                            self.tables[table].name
                        ));
                    }
                };
                return self.add_properties(child, props, &mut Vec::new());
            }
            SchemaKind::Column(ty) => ty,
        };
        match existing {
            None => self.add_column(table, path.clone(), want).map(|_| ()),
            Some(Slot::Column(c)) => {
                let have = self.tables[table].columns[c].ty;
                if have == want {
                    Ok(())
                } else {
                    let t = &self.tables[table];
                    Err(format!(
                        "column {:?} of table {:?} is {} but the schema makes {} {}; alter or drop the column, or keep the schema's type",
                        t.columns[c].name,
                        t.name,
                        have.sql(),
                        pointer(&t.full_path, path),
                        want.sql()
                    ))
                }
            }
            Some(Slot::Child(_)) => Err(format!(
                "{} is a child table in the database but not an array of objects in the schema",
                pointer(&self.tables[table].full_path, path)
            )),
        }
    }

    /// The current extent, to undo to with [`Shape::rollback`].
    pub fn mark(&self) -> Mark {
        Mark {
            columns: self.tables.iter().map(|t| t.columns.len()).collect(),
        }
    }

    /// Forgets every column and table added since `mark`.
    pub fn rollback(&mut self, mark: &Mark) {
        while self.tables.len() > mark.columns.len() {
            let t = self.tables.pop().expect("longer than the mark");
            self.table_names.remove(&t.name);
            if let Some(parent) = t.parent.filter(|p| *p < mark.columns.len()) {
                self.tables[parent].set_slot(&t.path, None);
            }
        }
        for (t, &keep) in self.tables.iter_mut().zip(&mark.columns) {
            while t.columns.len() > keep {
                let c = t.columns.pop().expect("longer than the mark");
                t.names.remove(&c.name);
                t.set_slot(&c.path, None);
            }
        }
    }

    /// Records that the database now has everything in the shape.
    pub fn set_synced(&mut self) {
        self.synced = self.mark();
    }

    /// Tables and columns the database does not have yet: `(table, first new column)`.
    pub fn unsynced(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.tables.iter().enumerate().filter_map(|(i, t)| {
            let known = self.synced.columns.get(i).copied();
            match known {
                Some(n) if n == t.columns.len() => None,
                Some(n) => Some((i, n)),
                None => Some((i, 0)),
            }
        })
    }

    /// Whether table `i` is new since the last sync.
    pub fn is_new_table(&self, i: usize) -> bool {
        i >= self.synced.columns.len()
    }
}

/// Checks that each primary-key pointer names a scalar column of the root
/// table the schema declares (not a field inside an array or a `jsonb` value).
pub fn check_primary_key(schema: &JsonDoc, pointers: &[String]) -> Result<(), String> {
    let mut shape = Shape::new("root");
    shape.add_schema(schema)?;
    for p in pointers {
        match shape.root().slot(&sluice_core::pointer_tokens(p)) {
            Some(Slot::Column(c)) if shape.root().columns[c].ty != PgType::Jsonb => {}
            _ => {
                return Err(format!(
                    "{p:?} is not a string, number or boolean field of the schema (fields inside arrays cannot be keys)"
                ));
            }
        }
    }
    Ok(())
}

enum SchemaKind<'a> {
    Object(&'a Members),
    ArrayOfObjects(&'a Members),
    Column(PgType),
}

fn schema_kind(node: &JsonDoc) -> SchemaKind<'_> {
    match node.declared_types().as_slice() {
        ["string"] if node.get("format").and_then(JsonDoc::as_str) == Some("date-time") => {
            SchemaKind::Column(PgType::Timestamptz)
        }
        ["string"] => SchemaKind::Column(PgType::Text),
        ["integer"] => SchemaKind::Column(PgType::BigInt),
        ["number"] | ["integer", "number"] | ["number", "integer"] => SchemaKind::Column(PgType::Double),
        ["boolean"] => SchemaKind::Column(PgType::Boolean),
        ["object"] => match non_empty_properties(node) {
            Some(p) => SchemaKind::Object(p),
            None => SchemaKind::Column(PgType::Jsonb),
        },
        ["array"] => match node.get("items").and_then(non_empty_properties) {
            Some(p) if node["items"].get("type").and_then(JsonDoc::as_str) == Some("object") => {
                SchemaKind::ArrayOfObjects(p)
            }
            _ => SchemaKind::Column(PgType::Jsonb),
        },
        _ => SchemaKind::Column(PgType::Jsonb),
    }
}

fn non_empty_properties(node: &JsonDoc) -> Option<&Members> {
    node.get("properties")
        .and_then(JsonDoc::as_object)
        .filter(|p| !p.is_empty())
}

/// A JSON pointer from the event's root: `prefix` then `path`.
pub fn pointer<S: AsRef<str>>(prefix: &[String], path: &[S]) -> String {
    let mut out = String::new();
    for s in prefix.iter().map(String::as_str).chain(path.iter().map(AsRef::as_ref)) {
        out.push('/');
        out.push_str(&s.replace('~', "~0").replace('/', "~1"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    /// The generator's clickstream schema.
    fn clickstream() -> JsonDoc {
        sluice_testkit::generator::CLICKSTREAM_SCHEMA.parse().unwrap()
    }

    #[test]
    fn the_clickstream_schema_flattens_with_items_as_a_child_table() {
        let mut shape = Shape::new("events");
        shape.add_schema(&clickstream()).unwrap();
        let root = shape.root();
        let col = |t: &Table, p: &[&str]| match t.slot(&path(p)) {
            Some(Slot::Column(c)) => (t.columns[c].name.clone(), t.columns[c].ty),
            other => panic!("{p:?}: {other:?}"),
        };
        assert_eq!(col(root, &["ts"]), ("ts".into(), PgType::Timestamptz));
        assert_eq!(
            col(root, &["device", "screen", "w"]),
            ("device__screen__w".into(), PgType::BigInt)
        );
        assert_eq!(
            col(root, &["page", "referrer"]),
            ("page__referrer".into(), PgType::Text)
        );
        assert_eq!(col(root, &["event_type"]), ("event_type".into(), PgType::Text));
        assert_eq!(
            col(root, &["props", "revenue"]),
            ("props__revenue".into(), PgType::Double)
        );
        let Some(Slot::Child(items)) = root.slot(&path(&["props", "items"])) else {
            panic!("items is not a child table")
        };
        let items = &shape.tables[items];
        assert_eq!(items.name, "events__props__items");
        assert_eq!(col(items, &["price"]), ("price".into(), PgType::Double));
        assert_eq!(items.full_path, path(&["props", "items"]));
    }

    #[test]
    fn free_form_objects_scalar_arrays_and_mixed_types_are_jsonb() {
        let mut shape = Shape::new("t");
        shape
            .add_schema(
                &r#"{"properties": {
                    "extra": {"type": "object"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "any": {"oneOf": [{"type": "string"}, {"type": "integer"}]}
                }}"#
                .parse()
                .unwrap(),
            )
            .unwrap();
        let types: Vec<PgType> = shape.root().columns.iter().map(|c| c.ty).collect();
        assert_eq!(types, vec![PgType::Jsonb; 3]);
    }

    #[test]
    fn a_schema_type_that_differs_from_the_table_is_refused() {
        let mut shape = Shape::new("t");
        shape.add_column(0, path(&["n"]), PgType::Text).unwrap();
        let err = shape
            .add_schema(&r#"{"properties": {"n": {"type": "integer"}}}"#.parse().unwrap())
            .unwrap_err();
        assert!(
            err.contains("column \"n\" of table \"t\" is text but the schema makes /n bigint"),
            "{err}"
        );
    }

    #[test]
    fn names_that_clash_are_refused_and_rollback_forgets_growth() {
        let mut shape = Shape::new("t");
        shape.add_column(0, path(&["a", "b"]), PgType::Text).unwrap();
        shape.set_synced();
        let mark = shape.mark();
        assert!(shape.add_column(0, path(&["a__b"]), PgType::Text).is_err());
        assert!(shape.add_column(0, path(&["_sluice_id"]), PgType::Text).is_err());
        let child = shape.add_child(0, path(&["list"])).unwrap();
        shape.add_column(child, path(&["x"]), PgType::BigInt).unwrap();
        shape.add_column(0, path(&["c"]), PgType::Boolean).unwrap();
        assert_eq!(shape.unsynced().collect::<Vec<_>>(), vec![(0, 1), (1, 0)]);
        shape.rollback(&mark);
        assert_eq!(shape.tables.len(), 1);
        assert_eq!(shape.root().slot(&path(&["c"])), None);
        assert_eq!(shape.root().slot(&path(&["list"])), None);
        assert_eq!(shape.unsynced().count(), 0);
        shape.add_child(0, path(&["list"])).unwrap();
    }
}
