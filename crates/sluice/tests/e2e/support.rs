//! Helpers for end-to-end tests: running the binary, talking to it over
//! HTTP, reading the lake back. What every crate's tests share (services,
//! process harness, generated data) is `sluice-testkit`.

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    process::Command,
};

use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::TimestampMicrosecondType;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::{Digest, Sha256};
pub use sluice_testkit::process::{Running, free_port, http_get, python, run_ok};
use sluice_testkit::services::Service;

pub const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// The generator's clickstream schema.
pub fn schema_path() -> PathBuf {
    sluice_testkit::generator::clickstream_schema_path()
}

/// Whether every service is up; when one is not, the test skips (or fails
/// under `SLUICE_TEST_REQUIRE_SERVICES`, as in `scripts/test`).
pub fn services_up(services: &[Service]) -> bool {
    services.iter().all(|s| s.available().is_some())
}

/// The NATS server with JetStream (`SLUICE_TEST_NATS`, default the machine's).
pub fn nats_url() -> String {
    Service::Nats.url()
}

/// The local S3 server `scripts/test` starts (`SLUICE_TEST_S3`).
pub fn s3_endpoint() -> String {
    Service::S3.url()
}

/// Creates the bucket `name` on the local S3 server.
pub async fn create_bucket(name: &str) {
    let created = reqwest::Client::new()
        .put(format!("{}/{name}", s3_endpoint()))
        .send()
        .await
        .expect("the test S3 server (scripts/test starts it)");
    assert!(
        created.status().is_success(),
        "creating bucket {name}: {}",
        created.status()
    );
}

/// Every metric family in a `/metrics` scrape is one of the catalogue's
/// (`sluice_core::telemetry`), and each carries its help text.
pub fn assert_metrics_catalogued(scrape: &str) {
    let mut seen = 0;
    for line in scrape.lines().filter(|l| l.starts_with("sluice_")) {
        let sample = line.split(['{', ' ']).next().unwrap_or_default();
        let metric = sluice_core::telemetry::catalogue::find(sample)
            .unwrap_or_else(|| panic!("{sample} is exported but not in the metric catalogue"));
        assert!(
            scrape.contains(&format!("# HELP {} {}", metric.name, metric.help)),
            "{} has no help text in the scrape",
            metric.name
        );
        seen += 1;
    }
    assert!(seen > 0, "no Sluice metric in the scrape: {scrape}");
}

/// A new JetStream stream `name` taking `<subject>.>` (an old one of the
/// same name is deleted first), and the JetStream context it lives in.
pub async fn fresh_stream(name: &str, subject: &str) -> async_nats::jetstream::Context {
    let js = async_nats::jetstream::new(async_nats::connect(nats_url()).await.unwrap());
    let _ = js.delete_stream(name).await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.to_string(),
        subjects: vec![format!("{subject}.>")],
        ..Default::default()
    })
    .await
    .unwrap();
    js
}

/// Runs a long command (stderr not a terminal) and returns its stdout and
/// the `done/total` of its last progress line (`<verb>: 3/10 units (...)`),
/// if it printed one.
pub fn run_with_progress(cmd: &mut Command, verb: &str) -> (String, Option<(u64, u64)>) {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed: {stderr}");
    let prefix = format!("{verb}: ");
    let last = stderr.lines().rev().find_map(|l| l.strip_prefix(&prefix)).map(|l| {
        let (done, total) = l.split_whitespace().next().unwrap().split_once('/').unwrap();
        (done.parse().unwrap(), total.parse().unwrap())
    });
    (String::from_utf8(out.stdout).unwrap(), last)
}

/// Generates noisy clickstream NDJSON (2 % duplicates, 1 % malformed, 5 %
/// late) into `dir/events.ndjson`; returns (lines, oracle).
pub fn generate(dir: &Path, n: usize, seed: u64) -> (Vec<String>, serde_json::Value) {
    sluice_testkit::data::noisy_clickstream(dir, n as u64, seed)
}

/// Generates valid, unique clickstream events; returns (lines, oracle).
pub fn generate_clean(dir: &Path, n: usize, seed: u64) -> (Vec<String>, serde_json::Value) {
    sluice_testkit::data::clean_clickstream(dir, n as u64, seed)
}

/// The AWS environment the engine under test runs with: moto takes any
/// credentials, and the AWS sources find them where a deployed engine
/// finds its own (the SDK's default chain).
pub const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
];

/// `sluice run PIPELINE EXTRA...`.
pub fn start(pipeline: &Path, extra: &[&str]) -> Running {
    Running::start(SLUICE, pipeline, extra, &AWS_ENV)
}

/// What the lake holds, read with this crate's own Parquet reader.
#[derive(Debug, PartialEq)]
pub struct LakeContents {
    pub rows: u64,
    /// Rows per event id.
    pub rows_per_id: std::collections::HashMap<String, u64>,
    pub ids: HashSet<String>,
    pub ids_sha256: String,
    pub per_hour: BTreeMap<String, u64>,
}

pub async fn read_lake(table: &Path) -> LakeContents {
    let url: sluice_lake::StoreLocation = url::Url::from_directory_path(table).unwrap().into();
    let summary = sluice_lake::summarize(&url).await.unwrap();
    let mut rows = 0;
    let mut rows_per_id = std::collections::HashMap::new();
    let mut first_hour: BTreeMap<String, String> = BTreeMap::new();
    for relative in &summary.file_paths {
        let path = table.join(relative);
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let ids = batch.column_by_name("event_id").unwrap().as_string::<i32>().clone();
            let ts = batch
                .column_by_name("ts")
                .unwrap()
                .as_primitive::<TimestampMicrosecondType>()
                .clone();
            for i in 0..batch.num_rows() {
                rows += 1;
                let hour = chrono::DateTime::from_timestamp_micros(ts.value(i))
                    .unwrap()
                    .format("%Y-%m-%dT%H")
                    .to_string();
                assert!(!ids.is_null(i));
                *rows_per_id.entry(ids.value(i).to_string()).or_insert(0) += 1;
                first_hour.entry(ids.value(i).to_string()).or_insert(hour);
            }
        }
    }
    assert_eq!(rows, summary.rows, "numRecords in the log disagrees with the files");
    let mut per_hour = BTreeMap::new();
    for hour in first_hour.values() {
        *per_hour.entry(hour.clone()).or_insert(0) += 1;
    }
    let sorted: Vec<&str> = first_hour.keys().map(String::as_str).collect();
    let ids_sha256 = hex(&Sha256::digest(sorted.join("\n").as_bytes()));
    LakeContents {
        rows,
        rows_per_id,
        ids: first_hour.into_keys().collect(),
        ids_sha256,
        per_hour,
    }
}

/// What delta-rs's Python package reads from a clickstream table (`read_delta.py`).
pub fn read_with_delta_rs(table: &Path) -> serde_json::Value {
    let out = run_ok(
        Command::new(python())
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/read_delta.py"))
            .arg(table)
            .args(["event_id", "ts"])
            .arg(schema_path()),
    );
    serde_json::from_str(&out).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every file under `root`, recursively.
pub fn all_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// A clickstream pipeline for tests: `sources` (TOML tables) -> `validate`
/// with the shared schema -> a lake table at `lake/<table>`, flushed every
/// second, with `[api]` on `api` and optional `[delivery]` settings.
pub fn pipeline(api: u16, delivery: &str, sources: &str, inputs: &[&str], table: &str) -> String {
    format!(
        r#"
[api]
address = "127.0.0.1:{api}"

[delivery]
{delivery}

{sources}

[transforms.standardize]
type = "validate"
inputs = {inputs:?}
schema = "{schema}"
event_id = "/event_id"
event_time = "/ts"

[sinks.lake]
type = "lake"
inputs = ["standardize"]
uri = "lake/{table}"
flush_interval_secs = 1
"#,
        schema = schema_path().display()
    )
}

/// TOML of a file source `input` (`incoming/*.ndjson`, 64 KiB batches) and
/// a `validate` transform `standardize` with the shared clickstream schema.
pub fn validated_input() -> String {
    format!(
        r#"[sources.input]
type = "file"
path = "incoming/*.ndjson"
settle_secs = 0
max_batch_bytes = 65536

[transforms.standardize]
type = "validate"
inputs = ["input"]
schema = "{}"
event_id = "/event_id"
event_time = "/ts"
"#,
        schema_path().display()
    )
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Writes `dir/pipeline.toml` with one HTTP source `web` (plus `http_keys`)
/// -> validate -> `lake/t`, starts it and waits until it is ready. Returns
/// the process and its HTTP and API ports.
pub fn start_http_pipeline(dir: &Path, delivery: &str, http_keys: &str) -> (Running, u16, u16) {
    let (http, api) = (free_port(), free_port());
    let sources = format!("[sources.web]\ntype = \"http\"\naddress = \"127.0.0.1:{http}\"\n{http_keys}");
    std::fs::write(
        dir.join("pipeline.toml"),
        pipeline(api, delivery, &sources, &["web"], "t"),
    )
    .unwrap();
    let mut sluice = start(&dir.join("pipeline.toml"), &[]);
    sluice.wait_ready(api);
    (sluice, http, api)
}

/// `sluice dlq list PIPELINE --json`'s count of dead letters per reason.
pub fn dead_letters_by_reason(pipeline: &Path) -> BTreeMap<String, u64> {
    let dlq: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new(SLUICE).args(["dlq", "list"]).arg(pipeline).arg("--json"),
    ))
    .unwrap();
    serde_json::from_value(dlq["by_reason"].clone()).unwrap()
}

/// The `event_id` of each of `lines` (JSON objects that have one).
pub fn event_ids<L: AsRef<str>>(lines: impl IntoIterator<Item = L>) -> HashSet<String> {
    lines
        .into_iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l.as_ref()).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// The value of one series (`name{labels}` as exported) on the API's
/// `/metrics`; `None` when the API or the series is not there.
pub fn metric(api: u16, series: &str) -> Option<f64> {
    let (_, body) = sluice_testkit::process::http_get(api, "/metrics")?;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Writes `dir/pipeline.toml`: the API on `api`, a file source `input` on
/// `dir/incoming/*.ndjson` (created) and a postgres sink `table` writing
/// `schema.events` at `url`, flushed every second.
pub fn file_to_postgres(dir: &Path, api: u16, url: &str, schema: &str) {
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    std::fs::write(
        dir.join("pipeline.toml"),
        format!(
            "[api]\naddress = \"127.0.0.1:{api}\"\n\n\
             [sources.input]\ntype = \"file\"\npath = \"incoming/*.ndjson\"\nsettle_secs = 0\n\n\
             [sinks.table]\ntype = \"postgres\"\ninputs = [\"input\"]\nurl = \"{url}\"\n\
             schema = \"{schema}\"\ntable = \"events\"\nflush_interval_secs = 1\n"
        ),
    )
    .unwrap();
}

/// Writes `dir/pipeline.toml` as `pipeline` does with one HTTP collector
/// source `web` on a free port; returns the API's port and the collector's.
pub fn collector_pipeline(dir: &Path) -> (u16, u16) {
    let (api, web) = (free_port(), free_port());
    let source = format!("[sources.web]\ntype = \"http\"\naddress = \"127.0.0.1:{web}\"\n");
    std::fs::write(
        dir.join("pipeline.toml"),
        pipeline(api, "visibility_timeout_secs = 5", &source, &["web"], "clickstream"),
    )
    .unwrap();
    (api, web)
}

/// `node_modules` of `package` (`name@version`), installed from npm into
/// `~/.cache/sluice/<folder>` on first use; `None` without a home.
pub fn npm_modules(folder: &str, package: &str) -> Option<PathBuf> {
    let root = PathBuf::from(std::env::var("HOME").ok()?)
        .join(".cache/sluice")
        .join(folder);
    let modules = root.join("node_modules");
    let name = package.rsplit_once('@').map_or(package, |(name, _)| name);
    if !modules.join(name).exists() {
        std::fs::create_dir_all(&root).ok()?;
        let installed = Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", package])
            .current_dir(&root)
            .status()
            .ok()?;
        assert!(installed.success(), "npm install {package}");
    }
    Some(modules)
}

/// A tool from a Debian package (`scripts/test` installs them); `None`
/// skips the test, unless every service is required.
pub fn tool(path: &str, package: &str) -> Option<std::path::PathBuf> {
    let path = std::path::PathBuf::from(path);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("SLUICE_TEST_REQUIRE_SERVICES").is_none(),
        "{} is missing (Debian package {package})",
        path.display()
    );
    eprintln!("skipped: no {}", path.display());
    None
}
