//! PostgreSQL load beside a naive baseline on the same input: the
//! generator's NDJSON through `sluice run --until-idle` (file source ->
//! validate -> postgres sink in upsert mode, one worker thread: binary COPY
//! into a staging table and one set-based merge per commit) against
//! row-by-row `INSERT ... ON CONFLICT DO NOTHING` with prepared statements,
//! one transaction per 1000 events, of the same flattened rows.

use std::{
    fs::File,
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;
use sluice_core::JsonDoc;
use sluice_postgres::{
    PostgresSink, PostgresSinkConfig,
    cell::Cell,
    db,
    flatten::{self, Row},
    ident::{qualified, quote},
    shape::{ID_COLUMN, INDEX_COLUMN, PARENT_COLUMN, ROOT_COLUMN, Shape},
};
use tokio_postgres::Client;

use crate::{
    Env,
    process::{Measured, run},
};

/// Events per transaction of the baseline.
const BASELINE_TX_EVENTS: usize = 1000;

#[derive(Debug, Serialize)]
pub struct PgSide {
    pub engine: String,
    pub lines: u64,
    pub events_per_s: f64,
    pub root_rows: i64,
    pub child_rows: i64,
    pub seconds: f64,
    /// The engine process (none for the in-process baseline).
    pub measured: Option<Measured>,
}

#[derive(Debug, Serialize)]
pub struct PgComparison {
    pub sluice: PgSide,
    pub baseline: PgSide,
    pub ratio: f64,
}

async fn connect(url: &str) -> Result<Client> {
    db::connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to {url}: {e}"))
}

async fn fresh_schema(client: &Client, schema: &str) -> Result<()> {
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(schema)))
        .await?;
    Ok(())
}

async fn count(client: &Client, schema: &str, table: &str) -> Result<i64> {
    let row = client
        .query_one(&format!("SELECT count(*) FROM {}", qualified(schema, table)), &[])
        .await?;
    Ok(row.get(0))
}

pub async fn load(env: &Env, url: &str, events: &Path, lines: u64) -> Result<PgComparison> {
    let client = connect(url).await?;
    let dir = env.work.join("postgres");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(dir.join("incoming"))?;
    std::fs::copy(events, dir.join("incoming/events.ndjson"))?;
    let schema_path = sluice_gen::clickstream_schema_path();

    let sluice_schema = "sluice_bench_copy";
    fresh_schema(&client, sluice_schema).await?;
    std::fs::write(
        dir.join("pipeline.toml"),
        format!(
            r#"data_dir = ".sluice"

[sources.input]
type = "file"
path = "incoming/*.ndjson"
settle_secs = 0

[transforms.standardize]
type = "validate"
inputs = ["input"]
schema = "{schema}"
event_id = "/event_id"
event_time = "/ts"

[sinks.warehouse]
type = "postgres"
inputs = ["standardize"]
url = "{url}"
schema = "{sluice_schema}"
table = "events"
mode = "upsert"
primary_key = ["/event_id"]
"#,
            schema = schema_path.display()
        ),
    )?;
    let measured = run(Command::new(&env.sluice)
        .args(["--threads", "1", "run", "pipeline.toml", "--until-idle"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("sluice.log"))?))?;
    let sluice = PgSide {
        engine: "sluice: COPY + merge, upsert (1 worker thread)".into(),
        lines,
        events_per_s: lines as f64 / measured.seconds,
        root_rows: count(&client, sluice_schema, "events").await?,
        child_rows: count(&client, sluice_schema, "events__props__items").await?,
        seconds: measured.seconds,
        measured: Some(measured),
    };

    let json_schema: JsonDoc = serde_json::from_slice(&std::fs::read(&schema_path)?)?;
    let baseline = naive_inserts(url, events, lines, json_schema).await?;
    let ratio = sluice.events_per_s / baseline.events_per_s;
    Ok(PgComparison {
        sluice,
        baseline,
        ratio,
    })
}

/// The baseline: the same tables (made by the sink from the schema), the
/// same flattened rows, one prepared INSERT per row.
async fn naive_inserts(url: &str, events: &Path, lines: u64, json_schema: JsonDoc) -> Result<PgSide> {
    let schema = "sluice_bench_insert";
    let mut client = connect(url).await?;
    fresh_schema(&client, schema).await?;
    let config: PostgresSinkConfig = baseline_config(url, schema)?;
    PostgresSink::open(&config, Some(json_schema))
        .await
        .map_err(|e| anyhow::anyhow!("creating the baseline's tables: {e}"))?;
    let mut shape = db::load_shape(&client, schema, "events")
        .await
        .map_err(|e| anyhow::anyhow!("reading the baseline's tables: {e}"))?;
    let text = std::fs::read_to_string(events).context("reading the events")?;

    let started = Instant::now();
    let mut statements = Vec::new();
    for table in &shape.tables {
        let mut columns = vec![quote(ID_COLUMN)];
        if table.parent.is_some() {
            columns.extend([quote(PARENT_COLUMN), quote(ROOT_COLUMN), quote(INDEX_COLUMN)]);
        }
        columns.extend(table.columns.iter().map(|c| quote(&c.name)));
        let params: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING",
            qualified(schema, &table.name),
            columns.join(", "),
            params.join(", ")
        );
        statements.push(client.prepare(&sql).await?);
    }
    let mut pending: Vec<Vec<Row>> = Vec::with_capacity(BASELINE_TX_EVENTS);
    for line in text.lines() {
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Ok(id) = flatten::key_id(&Value::Object(event.clone()), &["/event_id".to_string()]) else {
            continue;
        };
        if let Ok(rows) = flatten::flatten(&mut shape, event, id) {
            pending.push(rows);
        }
        if pending.len() == BASELINE_TX_EVENTS {
            insert_rows(&mut client, &shape, &statements, &pending).await?;
            pending.clear();
        }
    }
    insert_rows(&mut client, &shape, &statements, &pending).await?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(PgSide {
        engine: "naive: INSERT per row, prepared, 1000 events per transaction".into(),
        lines,
        events_per_s: lines as f64 / seconds,
        root_rows: count(&client, schema, "events").await?,
        child_rows: count(&client, schema, "events__props__items").await?,
        seconds,
        measured: None,
    })
}

fn baseline_config(url: &str, schema: &str) -> Result<PostgresSinkConfig> {
    let config: PostgresSinkConfig = serde_json::from_value(serde_json::json!({
        "url": url, "schema": schema, "table": "events"
    }))?;
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(config)
}

async fn insert_rows(
    client: &mut Client,
    shape: &Shape,
    statements: &[tokio_postgres::Statement],
    events: &[Vec<Row>],
) -> Result<()> {
    let tx = client.transaction().await?;
    for row in events.iter().flatten() {
        let table = &shape.tables[row.table];
        let system = [
            Cell::Uuid(row.id),
            Cell::Uuid(row.parent),
            Cell::Uuid(row.root),
            Cell::Int(row.index),
        ];
        let system = if table.parent.is_some() {
            &system[..]
        } else {
            &system[..1]
        };
        let mut values: Vec<Option<&Cell>> = system.iter().map(Some).collect();
        values.resize(system.len() + table.columns.len(), None);
        for (column, cell) in &row.cells {
            values[system.len() + column] = Some(cell);
        }
        tx.execute_raw(&statements[row.table], values).await?;
    }
    tx.commit().await?;
    Ok(())
}
