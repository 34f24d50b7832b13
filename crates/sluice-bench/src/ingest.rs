//! Lake ingest and compaction, each beside the DuckDB reference on the same
//! input: the generator's NDJSON through `sluice run --until-idle` (file
//! source -> validate -> lake) against `ingest_duckdb.py`, as two pairs:
//! one worker thread each, and the whole machine each (Sluice's default
//! runtime, DuckDB's default threads); then `sluice compact --all` on the
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

#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub engine: String,
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_per_s: f64,
    /// Rows per second of CPU the process used (user + system).
    pub rows_per_cpu_s: f64,
    #[serde(flatten)]
    pub measured: Measured,
}

impl Side {
    pub fn new(engine: String, rows_in: u64, rows_out: u64, measured: Measured) -> Side {
        Side {
            engine,
            rows_in,
            rows_out,
            rows_per_s: rows_in as f64 / measured.seconds,
            rows_per_cpu_s: rows_in as f64 / measured.cpu_seconds.max(1e-9),
            measured,
        }
    }
}

/// Sluice beside DuckDB: the round whose ratio is the median of the
/// rounds run (each round runs both, back to back, so the two share the
/// machine's state; DuckDB's own time has moved by a third between runs
/// here).
#[derive(Debug, Serialize)]
pub struct Comparison {
    pub sluice: Side,
    pub duckdb: Side,
    /// Sluice's rows/s over DuckDB's, in the median round.
    pub ratio: f64,
    /// Sluice's rows per CPU-second over DuckDB's, in the median round.
    pub cpu_ratio: f64,
    /// Every round's ratio, in the order run.
    pub round_ratios: Vec<f64>,
}

impl Comparison {
    /// The median round of `rounds` (at least one; of an even count, the
    /// lower middle one).
    fn median(rounds: Vec<(Side, Side)>) -> Self {
        let ratio = |(sluice, duckdb): &(Side, Side)| sluice.rows_per_s / duckdb.rows_per_s;
        let round_ratios: Vec<f64> = rounds.iter().map(ratio).collect();
        let mut order: Vec<usize> = (0..rounds.len()).collect();
        order.sort_by(|&a, &b| round_ratios[a].total_cmp(&round_ratios[b]));
        let middle = order[(rounds.len() - 1) / 2];
        let (sluice, duckdb) = rounds.into_iter().nth(middle).expect("at least one round");
        Comparison {
            ratio: round_ratios[middle],
            cpu_ratio: sluice.rows_per_cpu_s / duckdb.rows_per_cpu_s,
            sluice,
            duckdb,
            round_ratios,
        }
    }
}

/// A bench pipeline: `head` (data dir, API, delivery and one source named
/// `input`'s table) -> validate with the generator's schema -> a lake at
/// `lake/` without scheduled compaction, plus `lake_keys`.
pub fn pipeline(head: &str, lake_keys: &str) -> String {
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
        schema = sluice_gen::clickstream_schema_path().display()
    )
}

/// The lake table in folder `table` (an absolute path).
pub(crate) fn local_table(table: &Path) -> sluice_lake::StoreLocation {
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
    // Process wall and CPU time, as for Sluice (DuckDB's own timer leaves
    // out the interpreter's start).
    Side::new(
        format!(
            "{} ({} thread(s))",
            value["engine"].as_str().unwrap_or("duckdb"),
            value["threads"].as_u64().unwrap_or(0)
        ),
        value["rows_in"].as_u64().unwrap_or(0),
        value["rows_out"].as_u64().unwrap_or(0),
        measured,
    )
}

pub struct IngestRun {
    /// One worker thread each.
    pub one_thread: Comparison,
    /// The whole machine each.
    pub all_cores: Comparison,
    /// One worker thread each, the queue keeping places in the file
    /// (`queue_payloads = "reference"`), beside the same rounds' DuckDB.
    pub one_thread_by_reference: Comparison,
    /// The whole machine each, by reference.
    pub all_cores_by_reference: Comparison,
    /// The table Sluice wrote, for the compaction comparison.
    pub table: PathBuf,
}

/// The file source of the lake ingest (copying lines into the queue).
const FILE_SOURCE: &str = "[sources.input]\ntype = \"file\"\npath = \"incoming/*.ndjson\"\nsettle_secs = 0";

/// `rounds` rounds (at least one), each Sluice (its file source keeping
/// each batch's place in the file, then copying lines into the queue) then DuckDB on
/// `events` with one thread each, then all three again on the whole
/// machine. The copying run goes last, so its table is the one compacted.
pub async fn lake_ingest(env: &Env, events: &Path, lines: u64, rounds: usize) -> Result<IngestRun> {
    let dir = env.work.join("ingest");
    let duck_dir = env.work.join("duckdb-ingest");
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let (mut one_thread, mut all_cores) = (Vec::new(), Vec::new());
    let (mut one_by_reference, mut all_by_reference) = (Vec::new(), Vec::new());
    for round in 1..=rounds.max(1) {
        for threads in [1, cores] {
            eprintln!("  round {round}, {threads} thread(s): sluice by reference, sluice, then duckdb");
            let mut sides = Vec::new();
            for (setting, how) in [("\nqueue_payloads = \"reference\"", ", by reference"), ("", "")] {
                let source = format!("{FILE_SOURCE}{setting}");
                fresh_dir(&dir)?;
                std::fs::create_dir_all(dir.join("incoming"))?;
                std::fs::copy(events, dir.join("incoming/events.ndjson"))?;
                let engine = format!("sluice ({threads} worker thread(s){how})");
                sides.push(ingest_run(env, &dir, &source, lines, engine, threads).await?);
            }
            fresh_dir(&duck_dir)?;
            let (value, measured) = python_json(
                env,
                &duck_dir,
                &env.scripts.join("ingest_duckdb.py"),
                &[events, &duck_dir.join("out")],
                &["--threads", &threads.to_string()],
            )?;
            let duckdb = duckdb_side(&value, measured);
            let copied = sides.pop().expect("two runs");
            let referenced = sides.pop().expect("two runs");
            let (pairs, by_reference) = if threads == 1 {
                (&mut one_thread, &mut one_by_reference)
            } else {
                (&mut all_cores, &mut all_by_reference)
            };
            by_reference.push((referenced, duckdb.clone()));
            pairs.push((copied, duckdb));
        }
    }
    Ok(IngestRun {
        one_thread: Comparison::median(one_thread),
        all_cores: Comparison::median(all_cores),
        one_thread_by_reference: Comparison::median(one_by_reference),
        all_cores_by_reference: Comparison::median(all_by_reference),
        table: dir.join("lake"),
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
    ingest_run(
        env,
        &dir,
        source,
        lines,
        format!("sluice, {objects} objects (1 worker thread)"),
        1,
    )
    .await
}

/// Runs the bench pipeline with `source` in `dir` (`sluice --threads
/// THREADS run --until-idle`) and measures it against the rows its table
/// holds.
async fn ingest_run(env: &Env, dir: &Path, source: &str, lines: u64, engine: String, threads: usize) -> Result<Side> {
    std::fs::write(dir.join("pipeline.toml"), pipeline(source, ""))?;
    let measured = run(Command::new(&env.sluice)
        .args([
            "--threads",
            &threads.to_string(),
            "run",
            "pipeline.toml",
            "--until-idle",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log_file(dir, "sluice.log")?))?;
    let summary = sluice_lake::summarize(&local_table(&dir.join("lake"))).await?;
    Ok(Side::new(engine, lines, summary.rows, measured))
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
    let sluice = Side::new(
        format!("sluice compact ({} -> {} files)", sum("files_in"), sum("files_out")),
        sum("rows_in"),
        sum("rows_out"),
        measured,
    );
    Ok(Comparison::median(vec![(sluice, duckdb)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(engine: &str, rows_per_s: f64) -> Side {
        let measured = Measured {
            seconds: 100.0 / rows_per_s,
            cpu_seconds: 200.0 / rows_per_s,
            peak_rss_mib: 0.0,
        };
        Side::new(engine.into(), 100, 100, measured)
    }

    #[test]
    fn the_median_round_is_reported_with_its_own_two_sides() {
        let rounds = vec![
            (side("s1", 100.0), side("d1", 100.0)),
            (side("s2", 150.0), side("d2", 100.0)),
            (side("s3", 120.0), side("d3", 100.0)),
        ];
        let c = Comparison::median(rounds);
        assert_eq!(c.round_ratios, vec![1.0, 1.5, 1.2]);
        assert_eq!(c.ratio, 1.2);
        assert!((c.cpu_ratio - 1.2).abs() < 1e-9, "{}", c.cpu_ratio);
        assert_eq!((c.sluice.engine.as_str(), c.duckdb.engine.as_str()), ("s3", "d3"));
    }

    #[test]
    fn of_two_rounds_the_lower_one_is_reported() {
        let c = Comparison::median(vec![
            (side("s1", 300.0), side("d1", 100.0)),
            (side("s2", 200.0), side("d2", 100.0)),
        ]);
        assert_eq!((c.ratio, c.sluice.engine.as_str()), (2.0, "s2"));
    }
}
