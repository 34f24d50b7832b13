//! The AWS sources end to end on moto, driven by boto3 as AWS users drive
//! their queues (`aws_client.py`), while `sluice run` is killed with
//! SIGKILL and restarted:
//!
//! * generator lines sent to an SQS queue as single-event messages (ten per
//!   call), NDJSON bodies, JSON arrays and SNS publishes (envelopes);
//! * generator files uploaded to a bucket whose object-created events go
//!   through SNS to SQS, read by the objects source from those
//!   notifications (every fifth upload is multipart: two records);
//! * generator change events put on a 3-shard Kinesis stream, read by two
//!   replicas sharing a JetStream queue, leases and checkpoints, merged
//!   into documents in PostgreSQL; one replica is killed and the other
//!   takes its shards over: the documents equal the generator's oracle;
//! * a DynamoDB table written, updated and deleted from by boto3 while the
//!   engine reading its stream is killed: the documents in PostgreSQL, the
//!   normalised mirror table (`postgres` sink, `delete_when`) and the Delta
//!   snapshot equal the table's final items.
//!
//! Checked as for the other kill tests (`faults::check_outcome`): the
//! table's distinct ids are the oracle's, the dead letters are exactly the
//! invalid lines; and the SQS source's queue ends empty (notifications a
//! killed engine held come back after their visibility timeout, when the
//! objects they announce are long done). SQS delivers a message again
//! when a kill falls between its enqueue and its delete; those copies are
//! producer duplicates, so the SQS test compacts the table before counting
//! rows against the lines sent.

use std::{path::Path, process::Command};

use serde_json::Value;
use sluice_testkit::services::Service;

use crate::{
    documents::{assert_matches_oracle, postgres_documents},
    faults::{check_outcome, kill_and_restart},
    objects::{each_line_once, objects_of, status},
    postgres::{connect, drop_schema, fresh_schema},
    support::{self, Running},
};

/// Redelivery soon after a kill; attempts as configured by default (a kill
/// spends none). The kills here come every few hundred milliseconds, so on
/// a loaded machine a batch run alone after a restart can be in flight at
/// three deaths in a row and be set aside as `crashed_engine` (the default
/// `max_crashes`, tested in `sluice-crash-test` and `faults`); these tests
/// are about the sources, so they allow more deaths.
const DELIVERY: &str = "visibility_timeout_secs = 5\nmax_crashes = 10";

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/aws_client.py")
}

/// Runs a command of `aws_client.py` (boto3 against moto); its JSON answer.
pub(crate) fn aws(args: &[&str]) -> Value {
    let out = support::run_ok(
        Command::new(support::python())
            .arg(script())
            .arg(Service::Aws.url())
            .args(args),
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("aws_client.py {args:?}: {e}: {out}"))
}

fn backlog(queue_url: &str) -> u64 {
    let counts = aws(&["backlog", queue_url]);
    counts.as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum()
}

/// Runs `sender` (a boto3 command) while killing and restarting the engine
/// `rounds` times, then stops it and finishes with `--until-idle`.
fn feed_while_killing(dir: &Path, api: u16, sender: Vec<String>, rounds: usize, seed: u64) -> Value {
    let mut sluice = support::start(&dir.join("pipeline.toml"), &[]);
    sluice.wait_ready(api);
    let feeder = std::thread::spawn(move || {
        let args: Vec<&str> = sender.iter().map(String::as_str).collect();
        aws(&args)
    });
    let mut rng = seed;
    for round in 0..rounds {
        let moment = kill_and_restart(&mut sluice, round, &mut rng, dir, api);
        eprintln!("round {}: killed {moment}", round + 1);
    }
    let fed = feeder.join().unwrap();
    crate::faults::stop_and_finish(sluice, dir);
    fed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_messages_through_kill_9_rounds_land_once() {
    if !support::services_up(&[Service::Aws]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, oracle) = support::generate(dir, 24_000, 47);
    std::fs::write(dir.join("lines.ndjson"), lines.join("\n") + "\n").unwrap();
    let name = format!("sluice-e2e-sqs-{}", std::process::id());
    let setup = aws(&["setup-sqs", &name]);
    let queue_url = setup["queue_url"].as_str().unwrap().to_string();

    let api = support::free_port();
    let source = format!(
        "[sources.input]\ntype = \"sqs\"\nqueue_url = \"{queue_url}\"\nwait_time_secs = 1\nvisibility_timeout_secs = 5\nunwrap_sns = true\nreceivers = 3\n"
    );
    std::fs::write(
        dir.join("pipeline.toml"),
        support::pipeline(api, DELIVERY, &source, &["input"], "clickstream"),
    )
    .unwrap();
    let sender = [
        "send",
        &queue_url,
        setup["topic_arn"].as_str().unwrap(),
        &dir.join("lines.ndjson").display().to_string(),
        "5",
    ]
    .map(str::to_string)
    .to_vec();
    let sent = tokio::task::block_in_place(|| feed_while_killing(dir, api, sender, 6, 0x5a5a_1234_8765_4321));
    eprintln!("sent {sent}");

    assert_eq!(backlog(&queue_url), 0, "every message deleted");
    let compacted = support::run_ok(
        Command::new(support::SLUICE)
            .args(["compact", "--all"])
            .arg(dir.join("pipeline.toml")),
    );
    eprintln!("{compacted}");
    check_outcome(dir, &lines, &oracle, &each_line_once(&lines)).await;
    let lake = support::read_lake(&dir.join("lake/clickstream")).await;
    assert_eq!(
        lake.rows,
        oracle["valid_unique"].as_u64().unwrap(),
        "after compaction, one row per event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_announced_through_s3_sns_and_sqs_land_once_through_kill_9_rounds() {
    if !support::services_up(&[Service::Aws, Service::S3]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, oracle) = support::generate(dir, 20_000, 53);
    let outgoing = dir.join("outgoing");
    std::fs::create_dir_all(&outgoing).unwrap();
    let objects = objects_of(&lines, 800);
    for (name, bytes) in &objects {
        std::fs::write(outgoing.join(name), bytes).unwrap();
    }
    let name = format!("sluice-e2e-notify-{}", std::process::id());
    let setup = aws(&["setup-bucket-notifications", &name]);
    let queue_url = setup["queue_url"].as_str().unwrap().to_string();

    let api = support::free_port();
    let source = format!(
        "[sources.input]\ntype = \"objects\"\nuri = \"s3://{name}/landing\"\npattern = \"*part-*\"\n\
         storage_options = {{ endpoint = \"{}\", access_key_id = \"test\", secret_access_key = \"test\", region = \"us-east-1\" }}\n\
         sweep_interval_secs = 3600\npull_interval_secs = 1\nobjects_per_pull = 2\nmax_batch_bytes = 8192\nsettle_secs = 0\n\
         notifications = {{ sqs = \"{queue_url}\" }}\n",
        support::s3_endpoint()
    );
    std::fs::write(
        dir.join("pipeline.toml"),
        support::pipeline(api, DELIVERY, &source, &["input"], "clickstream"),
    )
    .unwrap();
    let uploader = ["upload", &name, &outgoing.display().to_string(), "5"]
        .map(str::to_string)
        .to_vec();
    let uploaded = tokio::task::block_in_place(|| feed_while_killing(dir, api, uploader, 6, 0x0b1e_c7ed_5eed_0001));
    assert_eq!(uploaded["objects"], objects.len());

    let ledger = status(&dir.join("pipeline.toml"));
    assert_eq!(ledger["counts"]["done"], objects.len(), "{ledger}");
    assert_eq!(ledger["counts"]["failed"], 0, "{ledger}");
    let by_notification = ledger["recently_done"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["found_by"] == "notification")
        .count();
    eprintln!("{} objects, {by_notification} found by notification", objects.len());
    assert!(
        by_notification > 0,
        "the sweep runs at each start only; later uploads are found by their notifications: {ledger}"
    );
    let shown = support::run_ok(
        Command::new(support::SLUICE)
            .args(["dlq", "show"])
            .arg(dir.join("pipeline.toml"))
            .args(["--json", "--reason", "bad_notification"]),
    );
    assert!(
        shown.trim().is_empty(),
        "S3's test event is not a bad notification: {shown}"
    );
    check_outcome(dir, &lines, &oracle, &each_line_once(&lines)).await;
}

/// `sluice_source_shards_held` of the replica answering on `api`.
fn shards_held(api: u16) -> f64 {
    let (_, metrics) = support::http_get(api, "/metrics").expect("metrics answer");
    metrics
        .lines()
        .find(|l| l.starts_with("sluice_source_shards_held{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A replica of the Kinesis pipeline: its own data directory and API port.
fn start_replica(dir: &Path, n: usize, api: u16) -> Running {
    let data = dir.join(format!("replica-{n}")).display().to_string();
    let (api, replica) = (api.to_string(), format!("replica-{n}"));
    let mut env: Vec<(&str, &str)> = support::AWS_ENV.to_vec();
    env.extend([
        ("REPLICA_DIR", data.as_str()),
        ("API_PORT", api.as_str()),
        ("SLUICE_REPLICA", replica.as_str()),
    ]);
    let mut running = Running::start(support::SLUICE, &dir.join("pipeline.toml"), &[], &env);
    running.wait_ready(api.parse().unwrap());
    running
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_changes_read_by_two_replicas_with_one_killed_make_the_oracles_documents() {
    if !support::services_up(&[Service::Aws, Service::Nats, Service::Postgres]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, oracle) = sluice_testkit::data::cdc(&sluice_testkit::generator::CdcOptions {
        changes: 12_000,
        docs: 600,
        seed: 97,
        ..Default::default()
    });
    std::fs::write(dir.join("changes.ndjson"), lines.join("\n") + "\n").unwrap();
    let pid = std::process::id();
    let stream = format!("sluice-e2e-cdc-{pid}");
    assert_eq!(aws(&["setup-kinesis", &stream, "3"])["shards"], 3);
    let pg = connect().await;
    let store_schema = fresh_schema(&pg, "kinesis").await;
    let pipeline = format!(
        r#"
queue = "{nats}"
queue_name = "e2e-kinesis-{pid}"
data_dir = "${{REPLICA_DIR}}"

[api]
address = "127.0.0.1:${{API_PORT}}"

[delivery]
visibility_timeout_secs = 5
lease_secs = 3

[sources.changes]
type = "kinesis"
stream = "{stream}"
endpoint = "{endpoint}"
poll_interval_ms = 200
shard_discovery_secs = 1
max_records = 200

[transforms.doctors]
type = "documents"
inputs = ["changes"]
store = "{store}"
schema = "{store_schema}"
"#,
        nats = support::nats_url(),
        endpoint = Service::Aws.url(),
        store = crate::postgres::url(),
    );
    std::fs::write(dir.join("pipeline.toml"), pipeline).unwrap();
    let apis = [support::free_port(), support::free_port()];
    let mut replicas: Vec<Option<Running>> = (0..2).map(|n| Some(start_replica(dir, n, apis[n]))).collect();

    let putter = {
        let args = [
            "put-records",
            &stream,
            &dir.join("changes.ndjson").display().to_string(),
            "6",
        ]
        .map(str::to_string);
        std::thread::spawn(move || aws(&args.iter().map(String::as_str).collect::<Vec<_>>()))
    };
    // Both replicas hold shards by now; kill one while records flow.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let held = [shards_held(apis[0]), shards_held(apis[1])];
    assert_eq!(held[0] + held[1], 3.0, "every shard is read by one replica: {held:?}");
    assert!(held[0] > 0.0, "the replica to kill reads shards: {held:?}");
    let victim = replicas[0].take().unwrap();
    support::run_ok(Command::new("kill").arg("-KILL").arg(victim.child.id().to_string()));
    drop(victim);
    let put = tokio::task::block_in_place(|| putter.join().unwrap());
    eprintln!("put {put}");

    // The survivor takes the dead replica's shards once their leases
    // expire, from their checkpoints, and catches up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let stored = loop {
        let stored = postgres_documents(&pg, &store_schema).await;
        if stored == oracle.documents || std::time::Instant::now() > deadline {
            break stored;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert_eq!(
        shards_held(apis[1]),
        3.0,
        "the survivor took the dead replica's shards over"
    );
    replicas[1].take().unwrap().stop();
    assert_matches_oracle(&stored, &oracle.documents);
    drop_schema(&pg, &store_schema).await;
}

/// The snapshot at `table` as delta-rs's Python package reads it: (version, document) by id.
fn snapshot_rows(table: &Path) -> std::collections::BTreeMap<String, (String, Value)> {
    let script = "import json, os, sys\nfrom deltalake import DeltaTable\n\
                  rows = DeltaTable(sys.argv[1]).to_pyarrow_table(columns=['id', 'version', 'document']).to_pylist()\n\
                  print(json.dumps([[r['id'], str(r['version']), r['document']] for r in rows]), flush=True)\n\
                  os._exit(0)";
    let out = support::run_ok(Command::new(support::python()).args(["-c", script]).arg(table));
    let rows: Vec<(String, String, String)> = serde_json::from_str(&out).unwrap();
    rows.into_iter()
        .map(|(id, version, document)| (id, (version, serde_json::from_str(&document).unwrap())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamodb_table_changed_while_the_engine_is_killed_ends_equal_in_postgres_and_the_snapshot() {
    if !support::services_up(&[Service::Aws, Service::Postgres]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let table = format!("sluice-e2e-items-{}", std::process::id());
    aws(&["setup-dynamodb", &table]);
    let pg = connect().await;
    let store_schema = fresh_schema(&pg, "dynamodb").await;
    let api = support::free_port();
    let pipeline = format!(
        r#"
[api]
address = "127.0.0.1:{api}"

[sources.table]
type = "dynamodb_streams"
table = "{table}"
endpoint = "{endpoint}"
poll_interval_ms = 200
shard_discovery_secs = 1
max_records = 100

[transforms.items]
type = "documents"
inputs = ["table"]
store = "{store}"
schema = "{store_schema}"
snapshot.uri = "lake/items"

[sinks.mirror]
type = "postgres"
inputs = ["items"]
url = "{store}"
schema = "{store_schema}"
table = "mirror"
mode = "upsert"
primary_key = ["/id"]
delete_when = {{ pointer = "/op", equals = "delete" }}
"#,
        endpoint = Service::Aws.url(),
        store = crate::postgres::url(),
    );
    std::fs::write(dir.join("pipeline.toml"), pipeline).unwrap();
    let writer = ["write-items", &table, "1500", "11", "8"].map(str::to_string).to_vec();
    let written = tokio::task::block_in_place(|| feed_while_killing(dir, api, writer, 3, 0x0dd0_5eed));
    let items = written["items"].as_object().unwrap();
    assert!(items.len() > 40, "the writes leave items behind: {}", items.len());
    let oracle: std::collections::BTreeMap<String, Value> = items.iter().map(|(k, v)| (k.clone(), v.clone())).collect();

    let stored: std::collections::BTreeMap<String, Value> = pg
        .query(
            &format!("SELECT id, document::text FROM {store_schema}.items WHERE document IS NOT NULL"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), serde_json::from_str(r.get::<_, &str>(1)).unwrap()))
        .collect();
    assert_matches_oracle(&stored, &oracle);

    // The normalised mirror: one row per item, deleted items gone.
    let mirror: std::collections::BTreeMap<String, Value> = pg
        .query(
            &format!("SELECT id, document__name, document__count, document__address__city FROM {store_schema}.mirror"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let (id, name, count, city): (String, Option<String>, Option<i64>, Option<String>) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            (id, serde_json::json!([name, count, city]))
        })
        .collect();
    let expected: std::collections::BTreeMap<String, Value> = oracle
        .iter()
        .map(|(id, item)| {
            let at = |p: &str| item.pointer(p).cloned().unwrap_or(Value::Null);
            (
                id.clone(),
                serde_json::json!([at("/name"), at("/count"), at("/address/city")]),
            )
        })
        .collect();
    assert_matches_oracle(&mirror, &expected);

    support::run_ok(
        Command::new(support::SLUICE)
            .arg("snapshot")
            .arg(dir.join("pipeline.toml")),
    );
    let snapshot = snapshot_rows(&dir.join("lake/items"));
    let documents = snapshot.iter().map(|(id, (_, d))| (id.clone(), d.clone())).collect();
    assert_matches_oracle(&documents, &oracle);
    // Versions are the stream's sequence numbers (22 digits on moto), exact.
    for (id, (version, _)) in &snapshot {
        let stored: String = pg
            .query_one(
                &format!("SELECT version::text FROM {store_schema}.items WHERE id = $1"),
                &[id],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            version.len() > 20 && *version == stored,
            "{id}: {version} against {stored}"
        );
    }
    drop_schema(&pg, &store_schema).await;
}
