//! Scale-out end to end: three `sluice run` replicas of one pipeline file
//! (its ports and data directory from the environment) share a JetStream
//! queue, a lake on the local S3 server, a PostgreSQL document store and the
//! compaction lease. Clickstream events and document changes are posted to
//! all three collectors; one replica is killed with SIGKILL while it works
//! and restarted; scheduled compaction runs every second on every replica.
//!
//! Then: the lake, read by delta-rs's Python package from S3, holds exactly
//! the oracle's events (after a final compaction); the shared dead-letter
//! store holds exactly the invalid lines, once each; the documents in PostgreSQL equal
//! the oracle's; and the compaction runs recorded in the Delta log never
//! interleave (one replica compacts at a time).

use sluice_testkit::services::Service;
use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    documents::{assert_matches_oracle, postgres_documents},
    postgres::{connect, drop_schema, fresh_schema},
    support::{self, Running},
};

const CLICKS: usize = 40_000;
const CHANGES: usize = 20_000;
const DOCUMENTS: usize = 1_000;
const LINES_PER_POST: usize = 400;

/// The AWS settings every process (replicas, the Python reader) gets.
fn aws_env() -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", support::s3_endpoint()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ALLOW_HTTP", "true".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

struct Replica {
    env: Vec<(String, String)>,
    api: u16,
    clicks: u16,
    changes: u16,
    process: Option<Running>,
}

impl Replica {
    fn new(dir: &Path, n: usize) -> Replica {
        let (api, clicks, changes) = (support::free_port(), support::free_port(), support::free_port());
        let mut env = aws_env();
        env.extend([
            (
                "REPLICA_DIR".to_string(),
                dir.join(format!("replica-{n}")).display().to_string(),
            ),
            ("API_PORT".to_string(), api.to_string()),
            ("CLICKS_PORT".to_string(), clicks.to_string()),
            ("CHANGES_PORT".to_string(), changes.to_string()),
            ("SLUICE_REPLICA".to_string(), format!("replica-{n}")),
        ]);
        Replica {
            env,
            api,
            clicks,
            changes,
            process: None,
        }
    }

    fn start(&mut self, pipeline: &Path) {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut process = Running::start(support::SLUICE, pipeline, &[], &env);
        process.wait_ready(self.api);
        self.process = Some(process);
    }

    fn command(&self, args: &[&str], pipeline: &Path) -> String {
        support::run_ok(
            Command::new(support::SLUICE)
                .args(args)
                .arg(pipeline)
                .envs(self.env.iter().map(|(k, v)| (k, v))),
        )
    }
}

fn pipeline(bucket: &str, queue_name: &str, store_schema: &str) -> String {
    format!(
        r#"
queue = "{nats}"
queue_name = "{queue_name}"
data_dir = "${{REPLICA_DIR}}"

[api]
address = "127.0.0.1:${{API_PORT}}"

[delivery]
visibility_timeout_secs = 5
lease_secs = 3

[sources.clicks]
type = "http"
address = "127.0.0.1:${{CLICKS_PORT}}"

[sources.changes]
type = "http"
address = "127.0.0.1:${{CHANGES_PORT}}"

[transforms.standardize]
type = "validate"
inputs = ["clicks"]
schema = "{schema}"
event_id = "/event_id"
event_time = "/ts"

[sinks.lake]
type = "lake"
inputs = ["standardize"]
uri = "s3://{bucket}/clickstream"
flush_interval_secs = 1
compaction = {{ interval_secs = 1 }}

[transforms.doctors]
type = "documents"
inputs = ["changes"]
store = "{store}"
schema = "{store_schema}"
"#,
        nats = support::nats_url(),
        schema = support::schema_path().display(),
        store = crate::postgres::url(),
    )
}

/// Generated document changes and the oracle's documents.
fn generate_changes() -> (Vec<String>, BTreeMap<String, Value>) {
    let (lines, oracle) = sluice_testkit::data::cdc(&sluice_testkit::generator::CdcOptions {
        changes: CHANGES as u64,
        docs: DOCUMENTS as u64,
        seed: 93,
        ..Default::default()
    });
    (lines, oracle.documents)
}

/// Posts `bodies` to `replicas`' collectors (clicks or changes), round robin,
/// a few at a time; a refused or failed post is retried on the next one.
async fn post_all(client: &reqwest::Client, bodies: Vec<(bool, String)>, replicas: &[&Replica]) -> usize {
    use futures::StreamExt;
    let targets: Vec<(u16, u16)> = replicas.iter().map(|r| (r.clicks, r.changes)).collect();
    let retries: Vec<usize> = futures::stream::iter(bodies.into_iter().enumerate())
        .map(|(i, (is_change, body))| {
            let (client, targets) = (client.clone(), targets.clone());
            async move {
                for attempt in 0.. {
                    let (clicks, changes) = targets[(i + attempt) % targets.len()];
                    let port = if is_change { changes } else { clicks };
                    let sent = client
                        .post(format!("http://127.0.0.1:{port}/v1/events"))
                        .body(body.clone())
                        .send()
                        .await;
                    if sent.is_ok_and(|r| r.status().is_success()) {
                        return attempt;
                    }
                    assert!(attempt < 50, "post {i} was never accepted");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                unreachable!()
            }
        })
        .buffer_unordered(6)
        .collect()
        .await;
    retries.into_iter().sum()
}

/// Waits until the JetStream queue holds nothing (every batch committed and
/// acked), at most 300 s (alone, the whole test takes under a minute: the
/// killed replica's batches run again one at a time, each its own commit);
/// if it never drains, the failure shows how the queue's counts moved.
async fn wait_drained(queue_name: &str) {
    let names = sluice_queue::jetstream::JetStreamNames::for_pipeline(queue_name);
    let js = async_nats::jetstream::new(async_nats::connect(support::nats_url()).await.unwrap());
    let started = Instant::now();
    // What the queue held every 30 s, printed if it never drains.
    let mut progress = Vec::new();
    loop {
        let mut stream = js.get_stream(&names.stream).await.unwrap();
        let messages = stream.info().await.unwrap().state.messages;
        if messages == 0 {
            return;
        }
        if progress.len() as u64 <= started.elapsed().as_secs() / 30 {
            let mut consumer: async_nats::jetstream::consumer::PullConsumer =
                stream.get_consumer(&names.consumer).await.unwrap();
            let c = consumer.info().await.unwrap();
            progress.push(format!(
                "{:>4} s: {messages} messages, {} ack pending, {} redelivered",
                started.elapsed().as_secs(),
                c.num_ack_pending,
                c.num_redelivered
            ));
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the queue did not drain:\n{}",
            progress.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Ticks on which a replica found the compaction lease held by another.
/// A scrape that fails (a loaded machine: one failed in a full run) is
/// tried again, for up to 30 s.
fn compaction_skips(api: u16) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        match support::http_get(api, "/metrics") {
            Some((200, body)) => break body,
            _ => {
                assert!(Instant::now() < deadline, "the replica's /metrics");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    };
    metrics
        .lines()
        .filter(|l| l.starts_with("sluice_compaction_skipped_total{") && l.contains("lease_held"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Runs a Python snippet with the AWS settings; returns its JSON output.
fn python_json(script: &str, args: &[&str]) -> Value {
    let out = support::run_ok(
        Command::new(support::python())
            .args(["-c", script])
            .args(args)
            .envs(aws_env()),
    );
    serde_json::from_str(&out).unwrap()
}

/// The compaction run of each commit that has one: (version, run id).
fn compaction_commits(table: &str) -> Vec<(i64, String)> {
    let script = "import json, os, sys\nfrom deltalake import DeltaTable\n\
                  runs = [[h['version'], h['sluice.compaction.run']] for h in DeltaTable(sys.argv[1]).history()\n\
                          if 'sluice.compaction.run' in h]\n\
                  print(json.dumps(sorted(runs)), flush=True)\n\
                  os._exit(0)";
    serde_json::from_value(python_json(script, &[table])).unwrap()
}

/// Each run's commits form a version range no other run's commit falls in.
fn assert_runs_do_not_interleave(commits: &[(i64, String)]) {
    let mut ranges: HashMap<&str, (i64, i64)> = HashMap::new();
    for (version, run) in commits {
        let range = ranges.entry(run).or_insert((*version, *version));
        range.0 = range.0.min(*version);
        range.1 = range.1.max(*version);
    }
    for (version, run) in commits {
        for (other, (first, last)) in &ranges {
            assert!(
                other == run || !(first < version && version < last),
                "compaction runs {run} and {other} interleave at version {version}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_with_one_killed_land_everything_once() {
    if !support::services_up(&[Service::S3, Service::Nats, Service::Postgres]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (clicks, oracle) = support::generate(dir, CLICKS, 91);
    let (changes, documents) = generate_changes();

    let pid = std::process::id();
    let bucket = format!("sluice-replicas-{pid}");
    support::create_bucket(&bucket).await;
    let queue_name = format!("e2e-replicas-{pid}");
    let pg = connect().await;
    let store_schema = fresh_schema(&pg, "replicas").await;
    let pipeline_path: PathBuf = dir.join("pipeline.toml");
    std::fs::write(&pipeline_path, pipeline(&bucket, &queue_name, &store_schema)).unwrap();

    let mut replicas: Vec<Replica> = (0..3).map(|n| Replica::new(dir, n)).collect();
    for replica in &mut replicas {
        replica.start(&pipeline_path);
    }

    // Posts in three parts: to all, to two while the third is down, to all.
    // Clicks and changes interleaved, so both flow the whole time.
    let click_posts: Vec<String> = clicks.chunks(LINES_PER_POST).map(|c| c.join("\n")).collect();
    let change_posts: Vec<String> = changes.chunks(LINES_PER_POST).map(|c| c.join("\n")).collect();
    let mut bodies: Vec<(bool, String)> = Vec::new();
    for i in 0..click_posts.len().max(change_posts.len()) {
        bodies.extend(click_posts.get(i).map(|b| (false, b.clone())));
        bodies.extend(change_posts.get(i).map(|b| (true, b.clone())));
    }
    let third = bodies.len() / 3;
    let last: Vec<(bool, String)> = bodies.split_off(2 * third);
    let middle: Vec<(bool, String)> = bodies.split_off(third);
    let client = reqwest::Client::new();
    let mut retries = post_all(&client, bodies, &replicas.iter().collect::<Vec<_>>()).await;

    // Replica 2 is busy with the queue's backlog: kill it mid-work.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let victim = replicas[2].process.take().unwrap();
    support::run_ok(Command::new("kill").arg("-KILL").arg(victim.child.id().to_string()));
    drop(victim);
    retries += post_all(&client, middle, &[&replicas[0], &replicas[1]]).await;
    replicas[2].start(&pipeline_path);
    retries += post_all(&client, last, &replicas.iter().collect::<Vec<_>>()).await;

    wait_drained(&queue_name).await;
    // While one replica held the compaction lease, the others skipped.
    let skipped: f64 = replicas.iter().map(|r| compaction_skips(r.api)).sum();
    for replica in &mut replicas {
        replica.process.take().unwrap().stop();
    }

    // The documents: exactly the oracle's.
    assert_matches_oracle(&postgres_documents(&pg, &store_schema).await, &documents);

    // Dead letters: one store in JetStream, whichever replica asks. A
    // replica killed after storing a batch's invalid lines but before its
    // ack makes another replica store them again: JetStream keeps one copy.
    let letters: Vec<Value> = replicas[1]
        .command(&["dlq", "show", "--json", "--limit", "100000000"], &pipeline_path)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let distinct: std::collections::HashSet<(&str, u64)> = letters
        .iter()
        .map(|l| (l["batch_key"].as_str().unwrap(), l["line"].as_u64().unwrap()))
        .collect();
    assert_eq!(distinct.len(), letters.len(), "a dead letter stored twice");
    let invalid = oracle["invalid"].as_u64().unwrap() as usize;
    if retries == 0 {
        assert_eq!(letters.len(), invalid);
    } else {
        assert!(
            letters.len() >= invalid,
            "{} dead letters, {invalid} invalid lines",
            letters.len()
        );
    }

    // Compaction never ran on two replicas at once.
    let table = format!("s3://{bucket}/clickstream");
    let commits = compaction_commits(&table);
    assert!(!commits.is_empty(), "scheduled compaction ran");
    assert!(skipped > 0.0, "no replica ever found the lease held");
    assert_runs_do_not_interleave(&commits);

    // A final compaction folds the duplicates replicas wrote apart; then the
    // table holds exactly the oracle's events.
    replicas[0].command(&["compact", "--all"], &pipeline_path);
    let read = python_json(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/read_delta.py")).unwrap(),
        &[&table, "event_id", "ts"],
    );
    assert_eq!(read["rows"], oracle["valid_unique"]);
    assert_eq!(read["ids_sha256"], oracle["event_ids_sha256"]);
    assert_eq!(read["per_hour"], oracle["valid_unique_per_hour"]);
    assert_eq!(read["partition_mismatches"], 0);

    drop_schema(&pg, &store_schema).await;
    let js = async_nats::jetstream::new(async_nats::connect(support::nats_url()).await.unwrap());
    let names = sluice_queue::jetstream::JetStreamNames::for_pipeline(&queue_name);
    js.delete_stream(&names.stream).await.unwrap();
    js.delete_stream(&names.dead_stream).await.unwrap();
    let _ = js.delete_key_value(&names.leases).await;
}
