//! Loading a reference table: a local file (CSV with a header row, NDJSON,
//! Parquet) or a PostgreSQL query, into rows keyed by one column. CSV values
//! are strings; NDJSON, Parquet and PostgreSQL keep their types.

use std::{collections::HashMap, fs::File, path::Path};

use serde_json::{Map, Value};
use sluice_core::Secret;
use tokio_postgres::types::Type;

/// Reference rows by the text of their key column.
pub type Table = HashMap<String, Value>;

/// Where a reference table comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File {
        path: String,
        format: Format,
    },
    /// `url` may hold a password: it never prints.
    Postgres {
        url: Secret,
        query: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Csv,
    Ndjson,
    Parquet,
}

impl Format {
    /// The format a file name's extension names.
    pub fn from_path(path: &str) -> Option<Format> {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            Some(Format::Csv)
        } else if lower.ends_with(".ndjson") || lower.ends_with(".jsonl") {
            Some(Format::Ndjson)
        } else if lower.ends_with(".parquet") {
            Some(Format::Parquet)
        } else {
            None
        }
    }
}

/// The text a key value is matched by: a string's text, a number's or
/// boolean's JSON text; no key for null, objects and arrays.
pub fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
        _ => None,
    }
}

/// Loads the table; rows without a usable key are an error (a reference
/// table with holes is a mistake to hear about, not to guess around).
pub async fn load(source: &Source, key_column: &str) -> Result<Table, String> {
    let rows = match source {
        Source::File { path, format } => {
            let (path, format) = (path.clone(), *format);
            tokio::task::spawn_blocking(move || read_file(Path::new(&path), format))
                .await
                .map_err(|e| format!("reading the file: {e}"))??
        }
        Source::Postgres { url, query } => query_rows(url.expose(), query).await?,
    };
    let mut table = Table::with_capacity(rows.len());
    for (i, row) in rows.into_iter().enumerate() {
        let key = row
            .get(key_column)
            .and_then(key_text)
            .ok_or_else(|| format!("row {}: no string or number in key column {key_column:?}", i + 1))?;
        table.insert(key, Value::Object(row));
    }
    Ok(table)
}

fn read_file(path: &Path, format: Format) -> Result<Vec<Map<String, Value>>, String> {
    let shown = path.display();
    let file = File::open(path).map_err(|e| format!("cannot open {shown}: {e}"))?;
    match format {
        Format::Csv => {
            let mut reader = csv::Reader::from_reader(file);
            let headers = reader.headers().map_err(|e| format!("{shown}: {e}"))?.clone();
            reader
                .records()
                .map(|record| {
                    let record = record.map_err(|e| format!("{shown}: {e}"))?;
                    Ok(headers
                        .iter()
                        .zip(record.iter())
                        .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
                        .collect())
                })
                .collect()
        }
        Format::Ndjson => {
            use std::io::BufRead;
            let mut rows = Vec::new();
            for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
                let line = line.map_err(|e| format!("{shown}: {e}"))?;
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str(&line) {
                    Ok(Value::Object(row)) => rows.push(row),
                    Ok(_) => return Err(format!("{shown}, line {}: not a JSON object", i + 1)),
                    Err(e) => return Err(format!("{shown}, line {}: {e}", i + 1)),
                }
            }
            Ok(rows)
        }
        Format::Parquet => {
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.build())
                .map_err(|e| format!("{shown}: {e}"))?;
            let mut writer = arrow_json::ArrayWriter::new(Vec::new());
            for batch in reader {
                let batch = batch.map_err(|e| format!("{shown}: {e}"))?;
                writer.write(&batch).map_err(|e| format!("{shown}: {e}"))?;
            }
            writer.finish().map_err(|e| format!("{shown}: {e}"))?;
            let json = writer.into_inner();
            if json.is_empty() {
                return Ok(Vec::new());
            }
            serde_json::from_slice(&json).map_err(|e| format!("{shown}: {e}"))
        }
    }
}

async fn query_rows(url: &str, query: &str) -> Result<Vec<Map<String, Value>>, String> {
    let client = sluice_postgres::db::connect(url)
        .await
        .map_err(|e| format!("connecting to PostgreSQL: {e}"))?;
    let rows = client.query(query, &[]).await.map_err(|e| {
        let message = e
            .as_db_error()
            .map_or_else(|| e.to_string(), |db| db.message().to_string());
        format!("the query failed: {message}")
    });
    drop(client);
    let mut out = Vec::new();
    for row in rows? {
        let mut map = Map::new();
        for (i, column) in row.columns().iter().enumerate() {
            let value = match *column.type_() {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                    row.get::<_, Option<String>>(i).map(Value::String)
                }
                Type::INT2 => row.get::<_, Option<i16>>(i).map(Value::from),
                Type::INT4 => row.get::<_, Option<i32>>(i).map(Value::from),
                Type::INT8 => row.get::<_, Option<i64>>(i).map(Value::from),
                Type::FLOAT4 => row.get::<_, Option<f32>>(i).map(|f| Value::from(f64::from(f))),
                Type::FLOAT8 => row.get::<_, Option<f64>>(i).map(Value::from),
                Type::BOOL => row.get::<_, Option<bool>>(i).map(Value::from),
                ref other => {
                    return Err(format!(
                        "column {:?} is {other}; cast it in the query to text, bigint, double precision or boolean",
                        column.name()
                    ));
                }
            };
            map.insert(column.name().to_string(), value.unwrap_or(Value::Null));
        }
        out.push(map);
    }
    Ok(out)
}
