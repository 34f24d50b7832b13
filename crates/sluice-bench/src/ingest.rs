//! Lake ingest and compaction, each beside the DuckDB reference on the same
//! input: the generator's NDJSON through `sluice run --until-idle` (file
//! source -> validate -> lake, one worker thread) against
//! `baseline_duckdb.py --threads 1`; then `sluice compact --all` on the
//! resulting table against DuckDB rewriting the same Parquet files. The same
//! input as objects in a folder (`objects` source) shows what finding,
//! claiming and reading objects costs over reading one file.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::{
    Env,
    process::{Measured, run},
};

#[derive(Debug, Serialize)]
pub struct Side {
    pub engine: String,
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_per_s: f64,
    #[serde(flatten)]
    pub measured: Measured,
}

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub sluice: Side,
    pub duckdb: Side,
    /// Sluice's rows/s over DuckDB's.
    pub ratio: f64,
}

impl Comparison {
    fn new(sluice: Side, duckdb: Side) -> Self {
        let ratio = sluice.rows_per_s / duckdb.rows_per_s;
        Comparison { sluice, duckdb, ratio }
    }
}

/// A bench pipeline: `head` (data dir, API, delivery and one source named
/// `input`'s table) -> validate with the shared schema -> a lake at
/// `lake/` without scheduled compaction, plus `lake_keys`.
pub fn pipeline(env: &Env, head: &str, lake_keys: &str) -> String {
    format!(
        r#"data_dir = ".sluice"
{head}

[transforms.standardize]
type = "validate"
inputs = ["input"]
schema = "{schema}"
event_id = "/event_id"
event_time = "/ts"

[sinks.lake]
type = "lake"
inputs = ["standardize"]
uri = "lake"
compaction.enabled = false
{lake_keys}
"#,
        schema = env.bench_dir.join("schemas/clickstream.schema.json").display()
    )
}

/// The lake table in folder `table` (an absolute path).
pub(crate) fn local_table(table: &Path) -> sluice_lake::TableLocation {
    url::Url::from_directory_path(table).expect("absolute path").into()
}

pub(crate) fn fresh_dir(path: &Path) -> Result<()> {
    if path.exists() {
        std::fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))?;
    }
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))
}

pub(crate) fn log_file(dir: &Path, name: &str) -> Result<File> {
    File::create(dir.join(name)).with_context(|| format!("creating {name}"))
}

/// Runs `python SCRIPT args...` and parses the JSON line it prints.
fn python_json(env: &Env, dir: &Path, script: &Path, args: &[&Path], extra: &[&str]) -> Result<(Value, Measured)> {
    let out = dir.join(format!(
        "{}.json",
        script.file_stem().unwrap_or_default().to_string_lossy()
    ));
    let measured = run(Command::new(&env.python)
        .arg(script)
        .args(args)
        .args(extra)
        .stdout(File::create(&out)?)
        .stderr(log_file(dir, "python.log")?))?;
    let text = std::fs::read_to_string(&out)?;
    Ok((
        serde_json::from_str(text.trim()).with_context(|| format!("{script:?} printed {text:?}"))?,
        measured,
    ))
}

fn duckdb_side(value: &Value, measured: Measured) -> Side {
    Side {
        engine: value["engine"].as_str().unwrap_or("duckdb").to_string(),
        rows_in: value["rows_in"].as_u64().unwrap_or(0),
        rows_out: value["rows_out"].as_u64().unwrap_or(0),
        // Process wall time, as for Sluice (DuckDB's own timer leaves out
        // the interpreter's start).
        rows_per_s: value["rows_in"].as_f64().unwrap_or(0.0) / measured.seconds,
        measured,
    }
}

pub struct IngestRun {
    pub comparison: Comparison,
    /// The table Sluice wrote, for the compaction comparison.
    pub table: PathBuf,
}

pub async fn lake_ingest(env: &Env, events: &Path, lines: u64) -> Result<IngestRun> {
    let dir = env.work.join("ingest");
    fresh_dir(&dir)?;
    std::fs::create_dir_all(dir.join("incoming"))?;
    std::fs::copy(events, dir.join("incoming/events.ndjson"))?;
    let source = "[sources.input]\ntype = \"file\"\npath = \"incoming/*.ndjson\"\nsettle_secs = 0";
    let sluice = one_thread_ingest(env, &dir, source, lines, "sluice (1 worker thread)".into()).await?;
    let table = dir.join("lake");
    let duck_dir = env.work.join("duckdb-ingest");
    fresh_dir(&duck_dir)?;
    let (value, measured) = python_json(
        env,
        &duck_dir,
        &env.bench_dir.join("baseline_duckdb.py"),
        &[events, &duck_dir.join("out")],
        &["--threads", "1"],
    )?;
    Ok(IngestRun {
        comparison: Comparison::new(sluice, duckdb_side(&value, measured)),
        table,
    })
}

/// The lake ingest's input cut into `objects` objects in a folder (every
/// other one gzip), read by an `objects` source with one worker thread.
pub async fn objects_ingest(env: &Env, events: &Path, lines: u64, objects: usize) -> Result<Side> {
    let dir = env.work.join("objects-ingest");
    fresh_dir(&dir)?;
    let landing = dir.join("landing");
    std::fs::create_dir_all(&landing)?;
    let names: Vec<PathBuf> = (0..objects)
        .map(|i| landing.join(format!("part-{i:03}.ndjson{}", if i % 2 == 1 { ".gz" } else { "" })))
        .collect();
    split_events(events, lines, &names)?;
    let source = "[sources.input]\ntype = \"objects\"\nuri = \"landing\"\nsettle_secs = 0";
    one_thread_ingest(
        env,
        &dir,
        source,
        lines,
        format!("sluice, {objects} objects (1 worker thread)"),
    )
    .await
}

/// Runs the bench pipeline with `source` in `dir` (`sluice --threads 1 run
/// --until-idle`) and measures it against the rows its table holds.
async fn one_thread_ingest(env: &Env, dir: &Path, source: &str, lines: u64, engine: String) -> Result<Side> {
    std::fs::write(dir.join("pipeline.toml"), pipeline(env, source, ""))?;
    let measured = run(Command::new(&env.sluice)
        .args(["--threads", "1", "run", "pipeline.toml", "--until-idle"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log_file(dir, "sluice.log")?))?;
    let summary = sluice_lake::summarize(&local_table(&dir.join("lake"))).await?;
    Ok(Side {
        engine,
        rows_in: lines,
        rows_out: summary.rows,
        rows_per_s: lines as f64 / measured.seconds,
        measured,
    })
}

/// Writes `events` (`lines` lines) into `files` as contiguous shares; a
/// name ending in `.gz` is gzip. Streamed, never read whole: the peak RSS
/// wait4 reports for a child starts from this process's at the spawn.
pub(crate) fn split_events(events: &Path, lines: u64, files: &[PathBuf]) -> Result<()> {
    use std::io::{BufRead, Write};
    let per_file = lines.div_ceil(files.len().max(1) as u64);
    let mut reader = std::io::BufReader::new(File::open(events)?);
    let mut line = Vec::new();
    for name in files {
        if let Some(dir) = name.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::io::BufWriter::new(File::create(name)?);
        let mut out: Box<dyn Write> = if name.extension().is_some_and(|e| e == "gz") {
            Box::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast()))
        } else {
            Box::new(file)
        };
        for _ in 0..per_file {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            out.write_all(&line)?;
        }
        out.flush()?;
    }
    Ok(())
}

/// Compacts `table` with DuckDB (into a separate folder) and then with Sluice.
pub async fn compaction(env: &Env, table: &Path) -> Result<Comparison> {
    let before = sluice_lake::summarize(&local_table(table)).await?;
    let duck_dir = env.work.join("duckdb-compact");
    fresh_dir(&duck_dir)?;
    let list = duck_dir.join("files.txt");
    let files: Vec<String> = before
        .file_paths
        .iter()
        .map(|p| table.join(p).display().to_string())
        .collect();
    std::fs::write(&list, files.join("\n"))?;
    let (value, measured) = python_json(
        env,
        &duck_dir,
        &env.scripts.join("compact_duckdb.py"),
        &[&list, &duck_dir.join("out")],
        &["--threads", "1"],
    )?;
    let duckdb = duckdb_side(&value, measured);

    let dir = table.parent().expect("the table is in the ingest folder");
    let out = dir.join("compact.json");
    let measured = run(Command::new(&env.sluice)
        .args(["--threads", "1", "compact", "pipeline.toml", "--all", "--json"])
        .current_dir(dir)
        .stdout(File::create(&out)?)
        .stderr(log_file(dir, "compact.log")?))?;
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&out)?)?;
    let sum = |key: &str| -> u64 {
        report["partitions"]
            .as_array()
            .map_or(0, |ps| ps.iter().map(|p| p[key].as_u64().unwrap_or(0)).sum())
    };
    let sluice = Side {
        engine: format!("sluice compact ({} -> {} files)", sum("files_in"), sum("files_out")),
        rows_in: sum("rows_in"),
        rows_out: sum("rows_out"),
        rows_per_s: sum("rows_in") as f64 / measured.seconds,
        measured,
    };
    Ok(Comparison::new(sluice, duckdb))
}
