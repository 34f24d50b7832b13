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
//! The same for the file source, with files dropped into the folder while the
//! process is being killed: a file cut off by a kill is read again, and the
//! chunks the table already holds are skipped.
//!
//! Size: `SLUICE_FAULT_ROUNDS` (default 8) kills over `SLUICE_FAULT_EVENTS`
//! (default 30 000) lines; the long run is documented in the README.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::Path,
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{self, Running};

/// Redelivery soon after a kill; attempts as configured by default (a kill
/// spends none: batches in flight at a crash run again as suspects).
const DELIVERY: &str = "visibility_timeout_secs = 5";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
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
        if let Ok(r) = sent
            && r.status() == 200
            && r.bytes().await.is_ok()
        {
            log.lock().unwrap().acked.extend(batch.iter().cloned());
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts `count` clients that take the next batch of `batches` and post
/// it until a 200, pausing `pause` between batches; `next` counts the
/// batches handed out.
fn spawn_clients(
    count: usize,
    url: &str,
    batches: &Arc<Vec<Vec<String>>>,
    next: &Arc<Mutex<usize>>,
    log: &Arc<Mutex<ClientLog>>,
    pause: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..count)
        .map(|_| {
            let (log, batches, next, url) = (log.clone(), batches.clone(), next.clone(), url.to_string());
            tokio::spawn(async move {
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
            })
        })
        .collect()
}

/// Stops the engine gracefully, then reads whatever is left with `--until-idle`.
pub(crate) fn stop_and_finish(sluice: Running, dir: &Path) {
    sluice.stop();
    let mut finish = support::start(&dir.join("pipeline.toml"), &["--until-idle"]);
    assert!(finish.child.wait().unwrap().success());
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

/// Kills the engine once (at a random moment, or on odd rounds right after a
/// Delta commit lands, before the queue acknowledged its batches) and
/// restarts it. Returns when the new process is ready.
pub(crate) fn kill_and_restart(sluice: &mut Running, round: usize, rng: &mut u64, dir: &Path, api: u16) -> String {
    let moment = if round.is_multiple_of(2) {
        let wait = 100 + next_rand(rng) % 700;
        std::thread::sleep(Duration::from_millis(wait));
        format!("after {wait} ms")
    } else {
        let log_dir = dir.join("lake/clickstream/_delta_log");
        let before = commits(&log_dir);
        let deadline = Instant::now() + Duration::from_secs(5);
        while commits(&log_dir) == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        "right after a commit".to_string()
    };
    sluice.child.kill().unwrap();
    sluice.child.wait().unwrap();
    *sluice = support::start(&dir.join("pipeline.toml"), &[]);
    sluice.wait_ready(api);
    moment
}

/// Starts the engine on `dir/pipeline.toml` and drops `files` (name,
/// bytes) into `folder` one by one (each written aside as `.incoming.tmp`,
/// which no test pattern matches, and renamed in) while killing and
/// restarting it `rounds` times (moments from `seed`); then stops it and
/// reads whatever is left with `--until-idle`.
pub(crate) fn drop_files_while_killing(
    dir: &Path,
    api: u16,
    folder: &Path,
    files: Vec<(String, Vec<u8>)>,
    rounds: usize,
    seed: u64,
) {
    let mut sluice = support::start(&dir.join("pipeline.toml"), &[]);
    sluice.wait_ready(api);
    let pause = Duration::from_millis(800 * rounds as u64) / files.len().max(1) as u32;
    let dropper = {
        let folder = folder.to_path_buf();
        std::thread::spawn(move || {
            for (name, bytes) in &files {
                let aside = folder.join(".incoming.tmp");
                std::fs::write(&aside, bytes).unwrap();
                std::fs::rename(aside, folder.join(name)).unwrap();
                std::thread::sleep(pause);
            }
        })
    };
    let mut rng = seed;
    for round in 0..rounds {
        let moment = kill_and_restart(&mut sluice, round, &mut rng, dir, api);
        eprintln!("round {}: killed {moment}", round + 1);
    }
    dropper.join().unwrap();
    stop_and_finish(sluice, dir);
}

/// The end state after the faults: the table's distinct ids are exactly the
/// oracle's; no id has more rows than times it was offered to the engine;
/// the dead letters are exactly the invalid lines.
pub(crate) async fn check_outcome(dir: &Path, lines: &[String], oracle: &Value, offered: &HashMap<String, u64>) {
    let contents = support::read_lake(&dir.join("lake/clickstream")).await;
    eprintln!(
        "{} lines -> {} rows, {} distinct ids",
        lines.len(),
        contents.rows,
        contents.ids.len()
    );
    let shown = support::run_ok(
        Command::new(support::SLUICE)
            .args(["dlq", "show"])
            .arg(dir.join("pipeline.toml"))
            .args(["--json", "--limit", "100000000"]),
    );
    // Letters about input lines (an objects source may also hold a
    // notification that was not one; it is checked where it is made).
    let letters: Vec<Value> = shown
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|letter| letter["reason"] != "bad_notification")
        .collect();
    let dead: HashSet<String> = letters
        .iter()
        .map(|letter| letter["bytes"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        contents.ids_sha256,
        oracle["event_ids_sha256"].as_str().unwrap(),
        "lost or foreign events; {}",
        where_missing_went(lines, &contents.ids, &letters)
    );
    assert_eq!(contents.ids.len() as u64, oracle["valid_unique"].as_u64().unwrap());
    let mut offered_per_id: HashMap<String, u64> = HashMap::new();
    for (line, times) in offered {
        if let Some(id) = event_id(line) {
            *offered_per_id.entry(id).or_insert(0) += times;
        }
    }
    for (id, rows) in &contents.rows_per_id {
        let sent = offered_per_id.get(id).copied().unwrap_or(0);
        assert!(
            *rows <= sent,
            "engine duplicate: {id} has {rows} rows but was sent {sent} times"
        );
    }
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

/// For a failed check: how many lines with an event id the table lacks,
/// and, of those, how many are dead letters under which reasons (a batch
/// set aside for crashing the engine is counted, not lost) and how many
/// are nowhere, with a few of their ids.
fn where_missing_went(lines: &[String], in_table: &HashSet<String>, letters: &[Value]) -> String {
    let reasons: HashMap<&str, &str> = letters
        .iter()
        .map(|l| (l["bytes"].as_str().unwrap(), l["reason"].as_str().unwrap_or("?")))
        .collect();
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    let mut nowhere = Vec::new();
    for line in lines {
        let Some(id) = event_id(line) else { continue };
        if in_table.contains(&id) {
            continue;
        }
        match reasons.get(line.as_str()) {
            Some(reason) => *by_reason.entry(reason).or_insert(0) += 1,
            None => nowhere.push(id),
        }
    }
    nowhere.sort();
    nowhere.dedup();
    format!(
        "lines whose id the table lacks: dead letters by reason {by_reason:?}; {} in neither (first: {:?})",
        nowhere.len(),
        &nowhere[..nowhere.len().min(5)]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_rounds_lose_nothing_and_duplicate_nothing() {
    let rounds = env_or("SLUICE_FAULT_ROUNDS", 8);
    let n = env_or("SLUICE_FAULT_EVENTS", 30_000);
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, oracle) = support::generate(dir, n, 23);
    let (http, api) = (support::free_port(), support::free_port());
    let source = format!("type = \"http\"\naddress = \"127.0.0.1:{http}\"");
    std::fs::write(
        dir.join("pipeline.toml"),
        support::pipeline(
            api,
            DELIVERY,
            &format!("[sources.input]\n{source}"),
            &["input"],
            "clickstream",
        ),
    )
    .unwrap();
    let mut sluice = support::start(&dir.join("pipeline.toml"), &[]);
    sluice.wait_ready(api);

    let log = Arc::new(Mutex::new(ClientLog::default()));
    let batches: Arc<Vec<Vec<String>>> = Arc::new(lines.chunks(100).map(<[String]>::to_vec).collect());
    let next = Arc::new(Mutex::new(0usize));
    let url = format!("http://127.0.0.1:{http}/v1/events");
    // Pace the clients so that sending spans all the kill rounds (about 0.8 s each).
    const CLIENTS: usize = 4;
    let pause = Duration::from_millis(800 * rounds as u64 * CLIENTS as u64) / batches.len().max(1) as u32;
    let clients = spawn_clients(CLIENTS, &url, &batches, &next, &log, pause);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..rounds {
        let moment = tokio::task::block_in_place(|| kill_and_restart(&mut sluice, round, &mut rng, dir, api));
        let progress = *next.lock().unwrap();
        eprintln!(
            "round {}: killed {moment} ({progress}/{} batches handed out)",
            round + 1,
            batches.len()
        );
    }
    for c in clients {
        c.await.unwrap();
    }
    sluice.stop();

    let log = Arc::try_unwrap(log).ok().unwrap().into_inner().unwrap();
    eprintln!(
        "{rounds} kills; {} requests for {} batches",
        log.requests,
        batches.len()
    );
    assert_eq!(log.acked.len(), lines.len(), "every batch was acknowledged in the end");
    check_outcome(dir, &lines, &oracle, &log.sends).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_rounds_while_files_arrive_lose_nothing_and_duplicate_nothing() {
    files_arrive_while_killing("copy", 0x2545_f491_4f6c_dd1d).await;
}

/// The same with the queue keeping places in the files (the gzipped third
/// of them still copied): a batch read back after a kill is the same lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_rounds_while_files_are_read_in_place_lose_nothing_and_duplicate_nothing() {
    files_arrive_while_killing("reference", 0x9e37_79b9_7f4a_7c15).await;
}

/// Files dropped in while the engine is killed and restarted, the file
/// source's `queue_payloads` as given; then the outcome checked.
async fn files_arrive_while_killing(queue_payloads: &str, seed: u64) {
    let rounds = env_or("SLUICE_FAULT_ROUNDS", 8);
    let n = env_or("SLUICE_FAULT_EVENTS", 30_000);
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, oracle) = support::generate(dir, n, 29);
    let api = support::free_port();
    let source = format!(
        "type = \"file\"\npath = \"incoming/*.ndjson*\"\nsettle_secs = 0\nmax_batch_bytes = 8192\nqueue_payloads = \"{queue_payloads}\""
    );
    std::fs::write(
        dir.join("pipeline.toml"),
        support::pipeline(
            api,
            DELIVERY,
            &format!("[sources.input]\n{source}"),
            &["input"],
            "clickstream",
        ),
    )
    .unwrap();
    let incoming = dir.join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let files: Vec<(String, Vec<u8>)> = lines
        .chunks(3000)
        .enumerate()
        .map(|(i, file)| {
            let text = file.join("\n") + "\n";
            if i % 3 == 0 {
                (format!("part-{i:05}.ndjson.gz"), support::gzip(text.as_bytes()))
            } else {
                (format!("part-{i:05}.ndjson"), text.into_bytes())
            }
        })
        .collect();
    tokio::task::block_in_place(|| drop_files_while_killing(dir, api, &incoming, files, rounds, seed));

    let mut offered: HashMap<String, u64> = HashMap::new();
    for line in &lines {
        *offered.entry(line.clone()).or_insert(0) += 1;
    }
    check_outcome(dir, &lines, &oracle, &offered).await;
}

/// A crash loop: four clients post as fast as the collector takes them, so
/// a backlog is in flight at every kill, and the engine is killed about
/// every 0.7 s, eight times; then it is stopped and finished with
/// `--until-idle`. Each kill used to spend an attempt of every batch in
/// flight, so a batch in flight across five kills became `max_attempts`
/// dead letters. Now batches in flight at a kill run again as suspects:
/// the dead letters are exactly the invalid lines, with the default
/// `max_attempts`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_sets_no_good_batch_aside() {
    let n = env_or("SLUICE_FAULT_EVENTS", 40_000);
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, oracle) = support::generate(dir, n, 29);
    let (http, api) = (support::free_port(), support::free_port());
    let source = format!("[sources.input]\ntype = \"http\"\naddress = \"127.0.0.1:{http}\"");
    std::fs::write(
        dir.join("pipeline.toml"),
        support::pipeline(api, DELIVERY, &source, &["input"], "clickstream"),
    )
    .unwrap();
    let mut sluice = support::start(&dir.join("pipeline.toml"), &[]);
    sluice.wait_ready(api);

    let log = Arc::new(Mutex::new(ClientLog::default()));
    let batches: Arc<Vec<Vec<String>>> = Arc::new(lines.chunks(100).map(<[String]>::to_vec).collect());
    let next = Arc::new(Mutex::new(0usize));
    let url = format!("http://127.0.0.1:{http}/v1/events");
    let clients = spawn_clients(4, &url, &batches, &next, &log, Duration::ZERO);
    for round in 0..8 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        tokio::task::block_in_place(|| {
            sluice.child.kill().unwrap();
            sluice.child.wait().unwrap();
            sluice = support::start(&dir.join("pipeline.toml"), &[]);
            sluice.wait_ready(api);
        });
        let progress = *next.lock().unwrap();
        eprintln!(
            "round {}: killed ({progress}/{} batches handed out)",
            round + 1,
            batches.len()
        );
    }
    for c in clients {
        c.await.unwrap();
    }
    stop_and_finish(sluice, dir);

    let log = Arc::try_unwrap(log).ok().unwrap().into_inner().unwrap();
    assert_eq!(log.acked.len(), lines.len(), "every batch was acknowledged in the end");
    check_outcome(dir, &lines, &oracle, &log.sends).await;
}
