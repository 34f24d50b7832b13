//! Guarantees under kill -9: a load client posts generator events to the
//! collector as a real client would (batches of 100; on a connection error,
//! timeout or 503 it retries the same batch), while the harness kills
//! `sluice run` with SIGKILL at random moments and restarts it.
//!
//! Checked at the end: every event that got a 200 is in the table; the
//! distinct ids equal the oracle's; no event id has more rows than the
//! number of times it was sent (so the engine added no duplicate); the dead
//! letters are exactly the invalid lines.
//!
//! Size: `SLUICE_FAULT_ROUNDS` (default 8) kills over `SLUICE_FAULT_EVENTS`
//! (default 30 000) lines; the long run is documented in the README.

use std::{
    collections::{HashMap, HashSet},
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;

use crate::support::{self, Running};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pipeline(http: u16, api: u16) -> String {
    format!(
        r#"
[api]
address = "127.0.0.1:{api}"

[delivery]
visibility_timeout_secs = 5
max_attempts = 100

[sources.web]
type = "http"
address = "127.0.0.1:{http}"

[transforms.standardize]
type = "validate"
inputs = ["web"]
schema = "{schema}"
event_id = "/event_id"
event_time = "/ts"

[sinks.lake]
type = "lake"
inputs = ["standardize"]
uri = "lake/clickstream"
flush_interval_secs = 1
"#,
        schema = support::bench_dir().join("schemas/clickstream.schema.json").display()
    )
}

/// What the client saw: sends per line, and lines acknowledged with a 200.
#[derive(Default)]
struct ClientLog {
    sends: HashMap<String, u64>,
    acked: Vec<String>,
    requests: u64,
}

/// Posts `batch` until a 200; every attempt counts as a send of its lines.
async fn post_until_ok(client: &reqwest::Client, url: &str, batch: &[String], log: &Mutex<ClientLog>) {
    let body = batch.join("\n");
    loop {
        {
            let mut log = log.lock().unwrap();
            log.requests += 1;
            for line in batch {
                *log.sends.entry(line.clone()).or_insert(0) += 1;
            }
        }
        let sent = client
            .post(url)
            .header("content-type", "application/x-ndjson")
            .timeout(Duration::from_secs(5))
            .body(body.clone())
            .send()
            .await;
        if let Ok(r) = sent {
            if r.status() == 200 && r.bytes().await.is_ok() {
                log.lock().unwrap().acked.extend(batch.iter().cloned());
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A small deterministic generator for kill moments.
fn next_rand(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Commit files in a Delta log folder.
fn commits(log_dir: &std::path::Path) -> usize {
    let is_commit = |e: &std::fs::DirEntry| e.file_name().to_string_lossy().ends_with(".json");
    std::fs::read_dir(log_dir).map_or(0, |d| d.filter_map(Result::ok).filter(is_commit).count())
}

fn event_id(line: &str) -> Option<String> {
    serde_json::from_str::<Value>(line)
        .ok()?
        .get("event_id")?
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_rounds_lose_nothing_and_duplicate_nothing() {
    let rounds = env_or("SLUICE_FAULT_ROUNDS", 8);
    let n = env_or("SLUICE_FAULT_EVENTS", 30_000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, oracle) = support::generate(dir, n, 23);
    let (http, api) = (support::free_port(), support::free_port());
    let pipeline_path = dir.join("pipeline.toml");
    std::fs::write(&pipeline_path, pipeline(http, api)).unwrap();

    let mut sluice = Running::start(&pipeline_path, &[]);
    sluice.wait_ready(api);

    let log = Arc::new(Mutex::new(ClientLog::default()));
    let batches: Arc<Vec<Vec<String>>> = Arc::new(lines.chunks(100).map(<[String]>::to_vec).collect());
    let next = Arc::new(Mutex::new(0usize));
    let url = format!("http://127.0.0.1:{http}/v1/events");
    // Pace the clients so that sending spans all the kill rounds (about 0.8 s each).
    const CLIENTS: usize = 4;
    let pause = Duration::from_millis(800 * rounds as u64 * CLIENTS as u64) / batches.len().max(1) as u32;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (log, batches, next, url) = (log.clone(), batches.clone(), next.clone(), url.clone());
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let i = {
                    let mut next = next.lock().unwrap();
                    *next += 1;
                    *next - 1
                };
                let Some(batch) = batches.get(i) else { return };
                post_until_ok(&client, &url, batch, &log).await;
                tokio::time::sleep(pause).await;
            }
        }));
    }

    // Kill at random moments while the client is sending, then restart.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let total = batches.len();
    let log_dir = dir.join("lake/clickstream/_delta_log");
    for round in 0..rounds {
        let moment = if round % 2 == 0 {
            let wait = 100 + next_rand(&mut rng) % 700;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            format!("after {wait} ms")
        } else {
            // Right after a Delta commit lands, before the queue has acknowledged its batches.
            let before = commits(&log_dir);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while commits(&log_dir) == before && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
            "right after a commit".to_string()
        };
        sluice.child.kill().unwrap();
        sluice.child.wait().unwrap();
        let progress = *next.lock().unwrap();
        eprintln!(
            "round {}: killed {moment} ({progress}/{total} batches handed out)",
            round + 1
        );
        sluice = Running::start(&pipeline_path, &[]);
        sluice.wait_ready(api);
    }
    for c in clients {
        c.await.unwrap();
    }
    sluice.stop();

    let log = Arc::try_unwrap(log).ok().unwrap().into_inner().unwrap();
    let table = dir.join("lake/clickstream");
    let contents = support::read_lake(&table).await;
    eprintln!(
        "{rounds} kills; {} lines, {} requests, {} rows, {} distinct ids",
        lines.len(),
        log.requests,
        contents.rows,
        contents.ids.len()
    );

    // Every batch was acknowledged in the end, and the table's distinct ids are
    // exactly the oracle's valid ids: nothing acknowledged was lost.
    assert_eq!(log.acked.len(), lines.len());
    assert_eq!(
        contents.ids_sha256,
        oracle["event_ids_sha256"].as_str().unwrap(),
        "lost or foreign events"
    );
    assert_eq!(contents.ids.len() as u64, oracle["valid_unique"].as_u64().unwrap());
    let mut sends_per_id: HashMap<String, u64> = HashMap::new();
    for (line, times) in &log.sends {
        if let Some(id) = event_id(line) {
            *sends_per_id.entry(id).or_insert(0) += times;
        }
    }
    for (id, rows) in &contents.rows_per_id {
        let sent = sends_per_id.get(id).copied().unwrap_or(0);
        assert!(
            *rows <= sent,
            "engine duplicate: {id} has {rows} rows but was sent {sent} times"
        );
    }

    // Dead letters hold exactly the invalid lines (each possibly more than once, if resent).
    let shown = support::run_ok(
        Command::new(support::SLUICE)
            .args(["dlq", "show"])
            .arg(&pipeline_path)
            .args(["--json", "--limit", "100000000"]),
    );
    let dead: HashSet<String> = shown
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["bytes"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let invalid: HashSet<String> = lines
        .iter()
        .filter(|l| event_id(l).is_none_or(|id| !contents.ids.contains(&id)))
        .cloned()
        .collect();
    assert_eq!(
        dead.len(),
        invalid.len(),
        "distinct dead letters vs distinct invalid lines"
    );
    assert_eq!(dead, invalid);
    assert!(invalid.len() as u64 <= oracle["invalid"].as_u64().unwrap());
}
