//! Helpers for end-to-end tests: locating the shared generator, running the
//! binary, talking to it over HTTP, reading the lake back.

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::TimestampMicrosecondType;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::{Digest, Sha256};

pub const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// `../shared/bench` (the generator and its schema): `SLUICE_BENCH_DIR`, or
/// beside the repository, or the workplace default.
pub fn bench_dir() -> PathBuf {
    let candidates = [
        std::env::var_os("SLUICE_BENCH_DIR").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/bench")),
        Some(PathBuf::from("/work/shared/bench")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("gen_events.py").exists())
        .expect("shared/bench/gen_events.py not found; set SLUICE_BENCH_DIR")
}

/// Python with `deltalake` and `pyarrow` (the test script sets `SLUICE_PYTHON`).
pub fn python() -> String {
    std::env::var("SLUICE_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The NATS server with JetStream (`SLUICE_TEST_NATS`, default the machine's).
pub fn nats_url() -> String {
    std::env::var("SLUICE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// The local S3 server `scripts/test` starts (`SLUICE_TEST_S3`).
pub fn s3_endpoint() -> String {
    std::env::var("SLUICE_TEST_S3").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Generates clickstream NDJSON; returns (lines, oracle).
pub fn generate(dir: &Path, n: usize, seed: u64) -> (Vec<String>, serde_json::Value) {
    generate_with(
        dir,
        n,
        seed,
        ["--dup-rate", "0.02", "--bad-rate", "0.01", "--late-rate", "0.05"],
    )
}

/// Generates clickstream NDJSON with the given generator flags; returns (lines, oracle).
pub fn generate_with<const N: usize>(
    dir: &Path,
    n: usize,
    seed: u64,
    flags: [&str; N],
) -> (Vec<String>, serde_json::Value) {
    let out = dir.join("events.ndjson");
    let expect = dir.join("expect.json");
    run_ok(
        Command::new(python())
            .arg(bench_dir().join("gen_events.py"))
            .args(["clickstream", "-n", &n.to_string(), "--seed", &seed.to_string()])
            .args(flags)
            .arg("-o")
            .arg(&out)
            .arg("--expect")
            .arg(&expect),
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let lines = text.lines().map(str::to_string).collect();
    (
        lines,
        serde_json::from_str(&std::fs::read_to_string(&expect).unwrap()).unwrap(),
    )
}

pub struct Running {
    pub child: Child,
}

impl Running {
    pub fn start(pipeline: &Path, extra: &[&str]) -> Running {
        Running::start_with_env(pipeline, extra, &[])
    }

    /// `sluice run` with extra environment variables.
    pub fn start_with_env(pipeline: &Path, extra: &[&str], env: &[(&str, &str)]) -> Running {
        let child = Command::new(SLUICE)
            .arg("run")
            .arg(pipeline)
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Running { child }
    }

    pub fn wait_ready(&mut self, api_port: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "sluice exited during start-up"
            );
            if http_get(api_port, "/ready").is_some_and(|(status, _)| status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sluice did not become ready");
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        run_ok(Command::new("kill").arg("-TERM").arg(self.child.id().to_string()));
        let status = self.child.wait().unwrap();
        assert!(status.success(), "sluice exited with {status}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal blocking HTTP/1.1 GET; returns (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
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
    let url: sluice_lake::TableLocation = url::Url::from_directory_path(table).unwrap().into();
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
            .arg(bench_dir().join("schemas/clickstream.schema.json")),
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
        schema = bench_dir().join("schemas/clickstream.schema.json").display()
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
        bench_dir().join("schemas/clickstream.schema.json").display()
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
    let mut sluice = Running::start(&dir.join("pipeline.toml"), &[]);
    sluice.wait_ready(api);
    (sluice, http, api)
}
