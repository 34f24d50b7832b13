//! Everything the sink says to PostgreSQL: connecting, Sluice's two
//! bookkeeping tables, reading a table family's shape back, DDL for new
//! tables and columns, binary COPY, the upsert merge and the
//! processed-batch markers.
//!
//! Invariants:
//! * Identifiers are always quoted ([`crate::ident`]); values only ever
//!   travel as bind parameters or in binary COPY, never as SQL text.
//! * DDL runs inside the commit's transaction after taking a transaction
//!   advisory lock on the table family, so concurrent writers add tables
//!   and columns one at a time and a failed commit leaves no DDL behind.
//! * `_sluice_columns` maps each column Sluice made to its field path; a
//!   table without it was not made by Sluice and is never written.

use std::{collections::HashMap, hash::Hasher, pin::pin};

use tokio_postgres::{Client, GenericClient, NoTls, Transaction, binary_copy::BinaryCopyInWriter, types::Type};

use crate::{
    cell::Cell,
    flatten::Row,
    ident::{path_name, qualified, quote},
    shape::{ID_COLUMN, INDEX_COLUMN, LOADED_AT_COLUMN, PARENT_COLUMN, PgType, ROOT_COLUMN, Shape, Table},
};

/// Processed-batch markers: `(table_name, batch_key)`.
pub const BATCHES_TABLE: &str = "_sluice_batches";
/// Field paths of the tables and columns Sluice made.
pub const COLUMNS_TABLE: &str = "_sluice_columns";

pub type DbError = tokio_postgres::Error;

/// The server's message for a database error (tokio-postgres's `Display`
/// says only "db error"), else the client's.
pub fn describe(e: &DbError) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut out = format!("{} ({})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                out.push_str(": ");
                out.push_str(detail);
            }
            out
        }
        None => {
            let mut out = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                out.push_str(": ");
                out.push_str(&s.to_string());
                source = s.source();
            }
            out
        }
    }
}

/// Whether the server could not be reached or the connection was lost
/// (closed, reset, refused, SQLSTATE class 08, or the server shutting
/// down: 57P01-57P03), rather than the statement being refused.
pub fn unreachable(e: &DbError) -> bool {
    match e.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
        }
        None => e.is_closed() || sluice_core::is_connection_error(e),
    }
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL's TLS settings cannot be used (named key, what is wrong).
    #[error("{0}")]
    Settings(String),
    #[error("{}", describe(.0))]
    Db(#[from] DbError),
}

impl ConnectError {
    /// The server could not be reached (worth waiting for).
    pub fn unreachable(&self) -> bool {
        matches!(self, ConnectError::Db(e) if unreachable(e))
    }

    /// The TLS handshake failed: the server's certificate is not trusted as
    /// configured, or it does not speak TLS where TLS is required.
    pub fn tls_refused(&self) -> bool {
        matches!(self, ConnectError::Db(e) if e.to_string().contains("TLS"))
    }
}

/// Opens a connection (TLS as the URL's `sslmode` says, [`crate::tls`]);
/// its driver runs as a task until the client is dropped.
pub async fn connect(url: &str) -> Result<Client, ConnectError> {
    let settings = crate::tls::parse(url).map_err(ConnectError::Settings)?;
    let client = match crate::tls::client_config(&settings).map_err(ConnectError::Settings)? {
        None => {
            let (client, connection) = settings.config.connect(NoTls).await?;
            spawn_driver(connection);
            client
        }
        Some(tls) => {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
            let (client, connection) = settings.config.connect(tls).await?;
            spawn_driver(connection);
            client
        }
    };
    Ok(client)
}

fn spawn_driver<F>(connection: F)
where
    F: std::future::Future<Output = Result<(), DbError>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection closed");
        }
    });
}

/// Serialises DDL on one table family across every writer.
pub async fn lock_family(tx: &Transaction<'_>, schema: &str, root: &str) -> Result<(), DbError> {
    let mut hasher = twox_hash::XxHash64::with_seed(0);
    hasher.write(format!("sluice-ddl\0{schema}\0{root}").as_bytes());
    let key = hasher.finish() as i64;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key]).await?;
    Ok(())
}

/// Creates the schema and Sluice's bookkeeping tables if they are missing.
pub async fn ensure_bookkeeping(tx: &Transaction<'_>, schema: &str) -> Result<(), DbError> {
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {batches} (
             table_name text NOT NULL,
             batch_key text NOT NULL,
             rows bigint NOT NULL,
             committed_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (table_name, batch_key));
         CREATE TABLE IF NOT EXISTS {columns} (
             table_name text NOT NULL,
             column_name text NOT NULL,
             parent_table text,
             path text[] NOT NULL,
             PRIMARY KEY (table_name, column_name));",
        s = quote(schema),
        batches = qualified(schema, BATCHES_TABLE),
        columns = qualified(schema, COLUMNS_TABLE),
    ))
    .await
}

/// The catalog's columns of every table in `schema`: table -> [(column, type)] in column order.
async fn catalog(client: &impl GenericClient, schema: &str) -> Result<HashMap<String, Vec<(String, String)>>, DbError> {
    let rows = client
        .query(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod)
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY c.relname, a.attnum",
            &[&schema],
        )
        .await?;
    let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for row in rows {
        out.entry(row.get(0)).or_default().push((row.get(1), row.get(2)));
    }
    Ok(out)
}

/// Why a shape could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Conflict(String),
}

/// Reads the shape of the table family rooted at `root` from the database
/// (an empty shape when the root table does not exist yet).
pub async fn load_shape(client: &impl GenericClient, schema: &str, root: &str) -> Result<Shape, LoadError> {
    let catalog = catalog(client, schema).await?;
    let mut shape = Shape::new(root);
    let Some(root_columns) = catalog.get(root) else {
        return Ok(shape);
    };
    let rows = client
        .query(
            &format!(
                "SELECT table_name, column_name, parent_table, path FROM {}",
                qualified(schema, COLUMNS_TABLE)
            ),
            &[],
        )
        .await?;
    let mut tables: HashMap<String, (Option<String>, Vec<String>)> = HashMap::new();
    let mut columns: HashMap<(String, String), Vec<String>> = HashMap::new();
    for row in rows {
        let (table, column): (String, String) = (row.get(0), row.get(1));
        let path: Vec<String> = row.get(3);
        if column.is_empty() {
            tables.insert(table, (row.get(2), path));
        } else {
            columns.insert((table, column), path);
        }
    }
    if !tables.contains_key(root) {
        return Err(LoadError::Conflict(format!(
            "table {} exists but was not made by Sluice (no entry in {}); choose another table name",
            qualified(schema, root),
            qualified(schema, COLUMNS_TABLE)
        )));
    }
    add_catalog_columns(&mut shape, 0, root_columns, &columns)?;
    // Children after their parents: walk the tables breadth first.
    let mut next = 0;
    while next < shape.tables.len() {
        let parent = shape.tables[next].name.clone();
        let mut children: Vec<(&String, &Vec<String>)> = tables
            .iter()
            .filter(|(name, (p, _))| p.as_deref() == Some(parent.as_str()) && catalog.contains_key(*name))
            .map(|(name, (_, path))| (name, path))
            .collect();
        children.sort();
        for (name, path) in children {
            let child = shape.add_child(next, path.clone()).map_err(LoadError::Conflict)?;
            if &shape.tables[child].name != name {
                return Err(LoadError::Conflict(format!(
                    "child table {name:?} is recorded for path {path:?}, which names table {:?}",
                    shape.tables[child].name
                )));
            }
            add_catalog_columns(&mut shape, child, &catalog[name], &columns)?;
        }
        next += 1;
    }
    shape.set_synced();
    Ok(shape)
}

fn add_catalog_columns(
    shape: &mut Shape,
    table: usize,
    catalog_columns: &[(String, String)],
    paths: &HashMap<(String, String), Vec<String>>,
) -> Result<(), LoadError> {
    let table_name = shape.tables[table].name.clone();
    for (column, type_name) in catalog_columns {
        let Some(path) = paths.get(&(table_name.clone(), column.clone())) else {
            continue;
        };
        let ty = PgType::from_sql(type_name).ok_or_else(|| {
            LoadError::Conflict(format!(
                "column {column:?} of table {table_name:?} is {type_name}; Sluice writes only {}; change it back",
                PgType::ALL.map(PgType::sql).join(", ")
            ))
        })?;
        shape.add_column(table, path.clone(), ty).map_err(LoadError::Conflict)?;
    }
    Ok(())
}

/// Creates the tables and columns the database lacks, records their paths,
/// and checks that every column has the type the shape expects (another
/// writer may have added it first).
pub async fn sync_ddl(tx: &Transaction<'_>, schema: &str, shape: &Shape) -> Result<(), LoadError> {
    let unsynced: Vec<(usize, usize)> = shape.unsynced().collect();
    if unsynced.is_empty() {
        return Ok(());
    }
    lock_family(tx, schema, &shape.root().name).await?;
    let record = format!(
        "INSERT INTO {} (table_name, column_name, parent_table, path) VALUES ($1, $2, $3, $4)
         ON CONFLICT (table_name, column_name) DO UPDATE SET parent_table = EXCLUDED.parent_table, path = EXCLUDED.path",
        qualified(schema, COLUMNS_TABLE)
    );
    for &(t, first_new) in &unsynced {
        let table = &shape.tables[t];
        let name = qualified(schema, &table.name);
        if shape.is_new_table(t) {
            tx.batch_execute(&create_table(schema, table)).await?;
            let parent = table.parent.map(|p| shape.tables[p].name.clone());
            tx.execute(&record, &[&table.name, &"", &parent, &table.path]).await?;
        }
        for column in &table.columns[first_new..] {
            tx.batch_execute(&format!(
                "ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {} {}",
                quote(&column.name),
                column.ty.sql()
            ))
            .await?;
            tx.execute(&record, &[&table.name, &column.name, &None::<String>, &column.path])
                .await?;
        }
    }
    let catalog = catalog(tx, schema).await?;
    for &(t, first_new) in &unsynced {
        let table = &shape.tables[t];
        let have: HashMap<&str, &str> = catalog
            .get(&table.name)
            .map(|cols| cols.iter().map(|(n, ty)| (n.as_str(), ty.as_str())).collect())
            .unwrap_or_default();
        for column in &table.columns[first_new..] {
            if have.get(column.name.as_str()) != Some(&column.ty.sql()) {
                return Err(LoadError::Conflict(format!(
                    "column {:?} of table {:?} is {} in the database, not {} (another writer added it first)",
                    column.name,
                    table.name,
                    have.get(column.name.as_str()).unwrap_or(&"missing"),
                    column.ty.sql()
                )));
            }
        }
    }
    Ok(())
}

fn create_table(schema: &str, table: &Table) -> String {
    let name = qualified(schema, &table.name);
    if table.parent.is_none() {
        return format!(
            "CREATE TABLE IF NOT EXISTS {name} ({id} uuid PRIMARY KEY, {loaded} timestamptz NOT NULL DEFAULT now())",
            id = quote(ID_COLUMN),
            loaded = quote(LOADED_AT_COLUMN),
        );
    }
    let index = path_name(Some(&table.name), &["root".to_string()]).expect("plain segment");
    format!(
        "CREATE TABLE IF NOT EXISTS {name} ({id} uuid PRIMARY KEY, {parent} uuid NOT NULL, {root} uuid NOT NULL, {idx} bigint NOT NULL);
         CREATE INDEX IF NOT EXISTS {index} ON {name} ({root})",
        id = quote(ID_COLUMN),
        parent = quote(PARENT_COLUMN),
        root = quote(ROOT_COLUMN),
        idx = quote(INDEX_COLUMN),
        index = quote(&index),
    )
}

/// Whether `key` is recorded as committed into `table`.
pub async fn is_committed(client: &Client, schema: &str, table: &str, key: &str) -> Result<bool, DbError> {
    let sql = format!(
        "SELECT 1 FROM {} WHERE table_name = $1 AND batch_key = $2",
        qualified(schema, BATCHES_TABLE)
    );
    Ok(client.query_opt(&sql, &[&table, &key]).await?.is_some())
}

/// Records the batches a commit holds; a batch another writer recorded
/// first makes the commit fail (unique violation), never commit twice.
pub async fn record_batches(
    tx: &Transaction<'_>,
    schema: &str,
    table: &str,
    keys: &[String],
    rows: &[i64],
) -> Result<(), DbError> {
    let sql = format!(
        "INSERT INTO {} (table_name, batch_key, rows) SELECT $1, k, r FROM unnest($2::text[], $3::int8[]) AS u(k, r)",
        qualified(schema, BATCHES_TABLE)
    );
    tx.execute(&sql, &[&table, &keys, &rows]).await?;
    Ok(())
}

/// Deletes markers older than `hours`.
pub async fn expire_batches(tx: &Transaction<'_>, schema: &str, table: &str, hours: i32) -> Result<u64, DbError> {
    let sql = format!(
        "DELETE FROM {} WHERE table_name = $1 AND committed_at < now() - make_interval(hours => $2)",
        qualified(schema, BATCHES_TABLE)
    );
    tx.execute(&sql, &[&table, &hours]).await
}

/// Deletes the root rows with ids `ids` and every child row under them.
pub async fn delete_rows(
    tx: &Transaction<'_>,
    schema: &str,
    shape: &Shape,
    ids: &std::collections::HashSet<[u8; 16]>,
) -> Result<(), DbError> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = ids.iter().map(uuid_text).collect();
    for (t, table) in shape.tables.iter().enumerate() {
        let column = if t == 0 { ID_COLUMN } else { ROOT_COLUMN };
        tx.execute(
            &format!(
                "DELETE FROM {} WHERE {} = ANY($1::text[]::uuid[])",
                qualified(schema, &table.name),
                quote(column)
            ),
            &[&ids],
        )
        .await?;
    }
    Ok(())
}

/// A row id as PostgreSQL writes a uuid.
fn uuid_text(id: &[u8; 16]) -> String {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// How the rows of one commit reach their tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// COPY straight into each table.
    Append,
    /// Root rows through a staging table and `ON CONFLICT` on the row id;
    /// the replaced rows' children are deleted before the new ones are copied.
    Upsert,
}

const STAGE_TABLE: &str = "_sluice_stage";

/// Writes `rows` (all tables mixed) in `tx`.
pub async fn write_rows<'r>(
    tx: &Transaction<'_>,
    schema: &str,
    shape: &Shape,
    rows: impl Iterator<Item = &'r Row> + Clone,
    write: Write,
) -> Result<(), DbError> {
    for (t, table) in shape.tables.iter().enumerate() {
        let target = qualified(schema, &table.name);
        let is_root = t == 0;
        if is_root && write == Write::Upsert {
            tx.batch_execute(&format!(
                "CREATE TEMP TABLE {stage} (LIKE {target} INCLUDING DEFAULTS) ON COMMIT DROP",
                stage = quote(STAGE_TABLE)
            ))
            .await?;
            copy_rows(tx, &quote(STAGE_TABLE), table, rows.clone().filter(|r| r.table == 0)).await?;
            let columns = column_list(table);
            let mut updates: Vec<String> = table
                .columns
                .iter()
                .map(|c| format!("{0} = EXCLUDED.{0}", quote(&c.name)))
                .collect();
            updates.push(format!("{0} = EXCLUDED.{0}", quote(LOADED_AT_COLUMN)));
            tx.batch_execute(&format!(
                "INSERT INTO {target} ({columns}, {loaded}) SELECT {columns}, {loaded} FROM {stage}
                 ON CONFLICT ({id}) DO UPDATE SET {updates}",
                loaded = quote(LOADED_AT_COLUMN),
                stage = quote(STAGE_TABLE),
                id = quote(ID_COLUMN),
                updates = updates.join(", "),
            ))
            .await?;
            continue;
        }
        if write == Write::Upsert {
            tx.batch_execute(&format!(
                "DELETE FROM {target} AS c USING {stage} AS s WHERE c.{root} = s.{id}",
                stage = quote(STAGE_TABLE),
                root = quote(ROOT_COLUMN),
                id = quote(ID_COLUMN),
            ))
            .await?;
        }
        copy_rows(tx, &target, table, rows.clone().filter(|r| r.table == t)).await?;
    }
    Ok(())
}

/// The columns a COPY of `table` sends, system columns first.
fn column_list(table: &Table) -> String {
    let system: &[&str] = if table.parent.is_none() {
        &[ID_COLUMN]
    } else {
        &[ID_COLUMN, PARENT_COLUMN, ROOT_COLUMN, INDEX_COLUMN]
    };
    system
        .iter()
        .map(|c| quote(c))
        .chain(table.columns.iter().map(|c| quote(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn copy_rows<'r>(
    tx: &Transaction<'_>,
    target: &str,
    table: &Table,
    mut rows: impl Iterator<Item = &'r Row>,
) -> Result<(), DbError> {
    let Some(first) = rows.next() else {
        return Ok(());
    };
    let is_root = table.parent.is_none();
    let mut types = vec![Type::UUID];
    if !is_root {
        types.extend([Type::UUID, Type::UUID, Type::INT8]);
    }
    let system = types.len();
    types.extend(table.columns.iter().map(|c| c.ty.wire()));
    let sink = tx
        .copy_in(&format!(
            "COPY {target} ({}) FROM STDIN (FORMAT binary)",
            column_list(table)
        ))
        .await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
    let mut values: Vec<Option<Value<'_>>> = Vec::with_capacity(types.len());
    for row in std::iter::once(first).chain(rows) {
        values.clear();
        values.push(Some(Value::Owned(Cell::Uuid(row.id))));
        if !is_root {
            values.extend([
                Some(Value::Owned(Cell::Uuid(row.parent))),
                Some(Value::Owned(Cell::Uuid(row.root))),
                Some(Value::Owned(Cell::Int(row.index))),
            ]);
        }
        values.resize_with(types.len(), || None);
        for (column, cell) in &row.cells {
            values[system + column] = Some(Value::Ref(cell));
        }
        writer.as_mut().write_raw(values.iter()).await?;
    }
    writer.as_mut().finish().await?;
    Ok(())
}

/// A value of one COPY row: a system column's, or a borrowed cell.
#[derive(Debug)]
enum Value<'a> {
    Owned(Cell),
    Ref(&'a Cell),
}

impl tokio_postgres::types::ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Owned(c) => c.to_sql(ty, out),
            Value::Ref(c) => c.to_sql(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}
