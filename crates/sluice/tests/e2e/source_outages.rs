//! Upstream services that go away under a source, behind the same TCP
//! proxy as `outages`: SQS, Kinesis and S3 (moto) and NATS JetStream.
//! Events sent while the upstream is cut wait upstream; the source retries
//! with backoff, `/ready` names `source NAME` and the
//! `sluice_source_upstream_up` gauge drops to 0, the log says so once and
//! says when it is back; afterwards the lake holds every event once and
//! nothing is dead-lettered (`max_attempts = 1`). The NATS source is also
//! started while NATS cannot be reached: it waits for it.

use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;
use sluice_testkit::{
    process::Running,
    proxy::Proxy,
    services::{Service, host_port},
};

use crate::{
    aws_sources::aws,
    outages::{SOURCE_LOST, assert_recovered, outage, start_logged, wait_for},
    support,
};

/// A visibility timeout shorter than every outage, and one attempt.
const DELIVERY: &str = "visibility_timeout_secs = 2\nmax_attempts = 1";

/// Runs a boto3 command of `aws_client.py` on a blocking thread.
fn aws_in_background(args: Vec<String>) -> tokio::task::JoinHandle<Value> {
    tokio::task::spawn_blocking(move || aws(&args.iter().map(String::as_str).collect::<Vec<_>>()))
}

/// Distinct event ids in the pipeline's lake table (0 before its first commit).
async fn lake_ids(dir: &Path) -> i64 {
    let table = dir.join("lake/clickstream");
    if !table.join("_delta_log").exists() {
        return 0;
    }
    support::read_lake(&table).await.ids.len() as i64
}

/// Writes a pipeline `source` -> validate -> local lake, the source in
/// front of a proxy, starts it and returns it.
fn start_pipeline(dir: &Path, api: u16, source: &str) -> Running {
    std::fs::write(
        dir.join("pipeline.toml"),
        support::pipeline(api, DELIVERY, source, &["input"], "clickstream"),
    )
    .unwrap();
    start_logged(dir, api)
}

/// Feeds `first` lines, waits for them in the lake, feeds the rest with
/// `feed_rest` while the proxy is cut for `secs`, and checks every line
/// lands once with nothing dead-lettered. Returns how long it was cut.
async fn through_an_outage<F>(
    dir: &Path,
    api: u16,
    proxy: &mut Proxy,
    sluice: Running,
    lines: &[String],
    feed_rest: F,
) -> Duration
where
    F: FnOnce() -> tokio::task::JoinHandle<Value>,
{
    let before = wait_for("events before the outage", 90, 1_000, || lake_ids(dir)).await;
    assert_eq!(before, 1_000);
    let fed = feed_rest();
    let cut = outage(proxy, api, "source input", 8).await;
    eprintln!("fed during the outage: {}", fed.await.unwrap());
    wait_for("events after the outage", 120, lines.len() as i64, || lake_ids(dir)).await;
    assert_recovered(dir, api, sluice, SOURCE_LOST).await;
    let lake = support::read_lake(&dir.join("lake/clickstream")).await;
    assert_eq!(lake.ids, support::event_ids(lines), "every event, none other");
    cut
}

/// Writes `lines` to `dir/NAME`, returning its path as text.
fn lines_file(dir: &Path, name: &str, lines: &[String]) -> String {
    std::fs::write(dir.join(name), lines.join("\n") + "\n").unwrap();
    dir.join(name).display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_going_away_under_its_source_loses_nothing_and_is_reported() {
    if !support::services_up(&[Service::Aws]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, 3_000, 12);
    let (first, rest) = (
        lines_file(dir, "a.ndjson", &lines[..1_000]),
        lines_file(dir, "b.ndjson", &lines[1_000..]),
    );
    let setup = aws(&["setup-sqs", &format!("sluice-e2e-sqs-outage-{}", std::process::id())]);
    let (queue_url, topic) = (
        setup["queue_url"].as_str().unwrap(),
        setup["topic_arn"].as_str().unwrap(),
    );
    let real = Service::Aws.url();
    let mut proxy = Proxy::start(host_port(&real).unwrap()).await;
    let api = support::free_port();
    let source = format!(
        "[sources.input]\ntype = \"sqs\"\nqueue_url = \"{queue_url}\"\nendpoint = \"{}\"\n\
         wait_time_secs = 1\nvisibility_timeout_secs = 5\nunwrap_sns = true\n",
        proxy.url_for(&real)
    );
    let sluice = start_pipeline(dir, api, &source);
    aws(&["send", queue_url, topic, &first, "0"]);
    let args = ["send", queue_url, topic, &rest, "0"].map(str::to_string).to_vec();
    let cut = through_an_outage(dir, api, &mut proxy, sluice, &lines, || aws_in_background(args)).await;
    // Deletes that failed during the cut leave their messages in flight
    // until their visibility ends; a batch run reads them again (their
    // events are already in the lake) and deletes them.
    let finished = Command::new(support::SLUICE)
        .args(["run", "--until-idle"])
        .arg(dir.join("pipeline.toml"))
        .envs(support::AWS_ENV)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(finished.success());
    let lake = support::read_lake(&dir.join("lake/clickstream")).await;
    assert_eq!(lake.ids, support::event_ids(&lines), "still every event, none other");
    let backlog = aws(&["backlog", queue_url]);
    let left: u64 = backlog.as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(left, 0, "every message deleted once its events were durable");
    eprintln!("SQS cut for {cut:?} under the source; 3 000 events once, 0 dead letters");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_going_away_under_its_source_loses_nothing_and_is_reported() {
    if !support::services_up(&[Service::Aws]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, 3_000, 13);
    let (first, rest) = (
        lines_file(dir, "a.ndjson", &lines[..1_000]),
        lines_file(dir, "b.ndjson", &lines[1_000..]),
    );
    let stream = format!("sluice-e2e-kinesis-outage-{}", std::process::id());
    aws(&["setup-kinesis", &stream, "2"]);
    let real = Service::Aws.url();
    let mut proxy = Proxy::start(host_port(&real).unwrap()).await;
    let api = support::free_port();
    let source = format!(
        "[sources.input]\ntype = \"kinesis\"\nstream = \"{stream}\"\nendpoint = \"{}\"\n\
         poll_interval_ms = 200\nshard_discovery_secs = 1\nmax_records = 200\n",
        proxy.url_for(&real)
    );
    let sluice = start_pipeline(dir, api, &source);
    aws(&["put-records", &stream, &first, "0"]);
    let args = ["put-records", &stream, &rest, "0"].map(str::to_string).to_vec();
    let cut = through_an_outage(dir, api, &mut proxy, sluice, &lines, || aws_in_background(args)).await;
    eprintln!("Kinesis cut for {cut:?} under the source; 3 000 events once, 0 dead letters");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_going_away_under_an_objects_source_spends_no_attempt_and_loses_nothing() {
    if !support::services_up(&[Service::S3, Service::Aws]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, 3_000, 14);
    let bucket = format!("sluice-e2e-objects-outage-{}", std::process::id());
    support::create_bucket(&bucket).await;
    let (first, rest) = (dir.join("first"), dir.join("rest"));
    for (folder, part) in [(&first, &lines[..1_000]), (&rest, &lines[1_000..])] {
        std::fs::create_dir_all(folder).unwrap();
        for (i, chunk) in part.chunks(100).enumerate() {
            let name = format!("{}-part-{i:03}.ndjson", folder.file_name().unwrap().to_string_lossy());
            std::fs::write(folder.join(name), chunk.join("\n") + "\n").unwrap();
        }
    }
    let real = support::s3_endpoint();
    let mut proxy = Proxy::start(host_port(&real).unwrap()).await;
    let api = support::free_port();
    // `max_attempts = 1`: an object read that failed for the outage and
    // spent its attempt would be given up at once.
    let source = format!(
        "[sources.input]\ntype = \"objects\"\nuri = \"s3://{bucket}/landing\"\npattern = \"*part-*\"\n\
         storage_options = {{ endpoint = \"{}\", access_key_id = \"test\", secret_access_key = \"test\", \
         region = \"us-east-1\", allow_http = \"true\", max_retries = \"1\", retry_timeout = \"1s\" }}\n\
         sweep_interval_secs = 1\npull_interval_secs = 1\nobjects_per_pull = 2\nmax_batch_bytes = 8192\n\
         settle_secs = 0\nmax_attempts = 1\n",
        proxy.url_for(&real)
    );
    let sluice = start_pipeline(dir, api, &source);
    aws(&["upload", &bucket, &first.display().to_string(), "0"]);
    let args = ["upload", &bucket, &rest.display().to_string(), "4"]
        .map(str::to_string)
        .to_vec();
    let cut = through_an_outage(dir, api, &mut proxy, sluice, &lines, || aws_in_background(args)).await;
    let ledger = crate::objects::status(&dir.join("pipeline.toml"));
    assert_eq!(ledger["counts"]["failed"].as_u64().unwrap_or(0), 0, "{ledger}");
    assert_eq!(ledger["counts"]["done"].as_u64(), Some(30), "{ledger}");
    eprintln!("S3 cut for {cut:?} under the objects source; 30 objects, 3 000 events once, none failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_source_waits_for_nats_at_start_and_through_an_outage_loses_nothing() {
    if !support::services_up(&[Service::Nats]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, 3_000, 15);
    let real = support::nats_url();
    let client = async_nats::connect(&real).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let pid = std::process::id();
    let (stream, subject) = (
        format!("SLUICE_E2E_SOURCE_OUTAGE_{pid}"),
        format!("sluice.e2e.{pid}.in"),
    );
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut proxy = Proxy::start(host_port(&real).unwrap()).await;
    proxy.cut();
    let api = support::free_port();
    let source = format!(
        "[sources.input]\ntype = \"nats\"\nurl = \"{}\"\nstream = \"{stream}\"\nmax_wait_ms = 300\n",
        proxy.url_for(&real)
    );
    std::fs::write(
        dir.join("pipeline.toml"),
        support::pipeline(api, DELIVERY, &source, &["input"], "clickstream"),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("waiting.log")).unwrap();
    let child = Command::new(support::SLUICE)
        .arg("run")
        .arg(dir.join("pipeline.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut waiting = Running { child };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        waiting.child.try_wait().unwrap().is_none(),
        "sluice waits instead of exiting"
    );
    let said = std::fs::read_to_string(dir.join("waiting.log")).unwrap();
    assert!(
        said.contains(SOURCE_LOST[0]) && said.contains("operation=\"connect\""),
        "{said}"
    );
    waiting.stop();
    proxy.restore().await;
    let sluice = start_logged(dir, api);

    let publish = |part: Vec<String>| {
        let (js, subject) = (js.clone(), subject.clone());
        tokio::spawn(async move {
            for chunk in part.chunks(50) {
                js.publish(subject.clone(), chunk.join("\n").into())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
            serde_json::json!({ "lines": part.len() })
        })
    };
    publish(lines[..1_000].to_vec()).await.unwrap();
    let rest = lines[1_000..].to_vec();
    let cut = through_an_outage(dir, api, &mut proxy, sluice, &lines, || publish(rest)).await;
    eprintln!("NATS cut at start and for {cut:?} under the source; 3 000 events once, 0 dead letters");
    js.delete_stream(&stream).await.unwrap();
}
