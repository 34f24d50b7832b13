//! The objects source end to end: generator files dropped into a folder
//! and into a bucket on the local S3 server, read while the engine is
//! killed with SIGKILL, with S3 event notifications lost, duplicated,
//! reordered and wrapped in SNS envelopes on purpose.
//!
//! Checked at the end, as for the other kill tests: the table's distinct
//! ids are the oracle's, no id has more rows than times it was in the
//! input, the dead letters are exactly the invalid lines; and the source's
//! ledger (`sluice objects status --json`) has every object done.

use sluice_testkit::services::Service;
use std::{
    collections::HashMap,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    faults::{check_outcome, drop_files_while_killing, kill_and_restart},
    support,
};

/// Redelivery soon after a kill; attempts as configured by default.
const DELIVERY: &str = "visibility_timeout_secs = 5";

/// Generator lines cut into objects: every third a JSON array (its lines
/// that are not JSON go to a companion NDJSON object, so the array stays
/// well formed), every third gzip, the rest NDJSON. Returns (name, bytes).
pub(crate) fn objects_of(lines: &[String], per_object: usize) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, part) in lines.chunks(per_object).enumerate() {
        match i % 3 {
            0 => {
                let (json, rest): (Vec<&String>, Vec<&String>) =
                    part.iter().partition(|l| serde_json::from_str::<Value>(l).is_ok());
                let elements: Vec<&str> = json.iter().map(|l| l.as_str()).collect();
                out.push((
                    format!("part-{i:04}.json"),
                    format!("[\n{}\n]\n", elements.join(",\n")).into_bytes(),
                ));
                if !rest.is_empty() {
                    let text: Vec<&str> = rest.iter().map(|l| l.as_str()).collect();
                    out.push((
                        format!("part-{i:04}-rest.ndjson"),
                        (text.join("\n") + "\n").into_bytes(),
                    ));
                }
            }
            1 => out.push((
                format!("part-{i:04}.ndjson.gz"),
                support::gzip((part.join("\n") + "\n").as_bytes()),
            )),
            _ => out.push((format!("part-{i:04}.ndjson"), (part.join("\n") + "\n").into_bytes())),
        }
    }
    out
}

fn objects_source(uri: &str, extra: &str) -> String {
    format!(
        "[sources.input]\ntype = \"objects\"\nuri = \"{uri}\"\npattern = \"*part-*\"\nsweep_interval_secs = 1\npull_interval_secs = 1\nobjects_per_pull = 2\nmax_batch_bytes = 8192\nsettle_secs = 0\n{extra}"
    )
}

/// The source's ledger as `sluice objects status --json` shows it.
pub(crate) fn status(pipeline: &Path) -> Value {
    let out = support::run_ok(
        Command::new(support::SLUICE)
            .args(["objects", "status"])
            .arg(pipeline)
            .args(["--json", "--limit", "100000"]),
    );
    serde_json::from_str(&out).unwrap()
}

pub(crate) fn each_line_once(lines: &[String]) -> HashMap<String, u64> {
    let mut offered = HashMap::new();
    for line in lines {
        *offered.entry(line.clone()).or_insert(0) += 1;
    }
    offered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_dropped_into_a_folder_through_kill_9_rounds_land_once() {
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, oracle) = support::generate(dir, 24_000, 41);
    let api = support::free_port();
    std::fs::write(
        dir.join("pipeline.toml"),
        support::pipeline(api, DELIVERY, &objects_source("landing", ""), &["input"], "clickstream"),
    )
    .unwrap();
    let landing = dir.join("landing");
    std::fs::create_dir_all(&landing).unwrap();
    let objects = objects_of(&lines, 2000);
    let count = objects.len();
    tokio::task::block_in_place(|| drop_files_while_killing(dir, api, &landing, objects, 6, 0x51ce_7a3b_0d2e_9f41));

    let ledger = status(&dir.join("pipeline.toml"));
    assert_eq!(ledger["counts"]["done"], count, "{ledger}");
    assert_eq!(ledger["counts"]["failed"], 0, "{ledger}");
    check_outcome(dir, &lines, &oracle, &each_line_once(&lines)).await;
}

/// An S3 event notification for `key` (form-encoded, as S3 sends it).
fn s3_event(bucket: &str, key: &str, size: usize, etag: &str) -> Value {
    serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": key.replace(' ', "+"), "size": size, "eTag": etag.trim_matches('"')}}
    }]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_on_s3_with_lost_duplicated_and_reordered_notifications_land_once() {
    if !support::services_up(&[Service::S3, Service::Nats]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, oracle) = support::generate(dir, 16_000, 43);
    let pid = std::process::id();
    let http = reqwest::Client::new();
    let bucket = format!("sluice-objects-{pid}");
    support::create_bucket(&bucket).await;
    let (stream, subject) = (format!("S3_EVENTS_{pid}"), format!("s3events.{pid}"));
    let js = support::fresh_stream(&stream, &subject).await;

    let api = support::free_port();
    let notifications = format!(
        "storage_options = {{ endpoint = \"{}\", access_key_id = \"test\", secret_access_key = \"test\", region = \"us-east-1\" }}\n\
         sweep_interval_secs = 30\n\
         [sources.input.notifications]\nurl = \"{}\"\nstream = \"{stream}\"\nsubject = \"{subject}.>\"\n",
        support::s3_endpoint(),
        support::nats_url()
    );
    let source =
        objects_source(&format!("s3://{bucket}/landing"), &notifications).replace("sweep_interval_secs = 1\n", "");
    std::fs::write(
        dir.join("pipeline.toml"),
        support::pipeline(api, DELIVERY, &source, &["input"], "clickstream"),
    )
    .unwrap();
    let mut sluice = support::start(&dir.join("pipeline.toml"), &[]);
    sluice.wait_ready(api);

    // Upload every object; keep the ETag S3 gave it. One key has a space,
    // which S3 events encode as '+'.
    let objects = objects_of(&lines, 1000);
    let mut uploaded = Vec::new();
    for (i, (name, bytes)) in objects.iter().enumerate() {
        let key = if i == 1 {
            format!("landing/day 1/{name}")
        } else {
            format!("landing/{name}")
        };
        let put = http
            .put(format!(
                "{}/{bucket}/{}",
                support::s3_endpoint(),
                key.replace(' ', "%20")
            ))
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success(), "{}", put.status());
        let etag = put.headers()["etag"].to_str().unwrap().to_string();
        uploaded.push((key, bytes.len(), etag));
    }
    // Notifications: one in four lost, one in three sent twice, every other
    // one in an SNS envelope, all in reverse order, plus one that is not a
    // notification at all.
    let mut published = 0;
    for (i, (key, size, etag)) in uploaded.iter().enumerate().rev() {
        if i % 4 == 3 {
            continue;
        }
        let event = s3_event(&bucket, key, *size, etag);
        let payload = if i % 2 == 0 {
            serde_json::json!({"Type": "Notification", "MessageId": format!("m{i}"), "Message": event.to_string()})
        } else {
            event
        };
        for _ in 0..if i % 3 == 0 { 2 } else { 1 } {
            js.publish(format!("{subject}.put"), payload.to_string().into())
                .await
                .unwrap()
                .await
                .unwrap();
            published += 1;
        }
    }
    js.publish(format!("{subject}.put"), "{\"not\": \"a notification\"}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    eprintln!("{} objects, {published} notifications", uploaded.len());

    // The first sweep ran before the uploads and the next is 30 s away:
    // the objects recorded now were announced by the notifications that
    // arrived. Kill the engine as soon as they are all recorded (objects are
    // being read then); the restarted one's first sweep finds the rest.
    let notified = uploaded.iter().enumerate().filter(|(i, _)| i % 4 != 3).count();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ledger = status(&dir.join("pipeline.toml"));
        let counts = &ledger["counts"];
        let recorded: u64 = ["pending", "reading", "done", "failed"]
            .iter()
            .map(|s| counts[*s].as_u64().unwrap())
            .sum();
        if recorded as usize >= notified || Instant::now() > deadline {
            assert_eq!(
                recorded as usize, notified,
                "only the notified objects are known: {ledger}"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut rng = 0x0bad_cafe_f00d_d00du64;
    tokio::task::block_in_place(|| kill_and_restart(&mut sluice, 0, &mut rng, dir, api));
    let deadline = Instant::now() + Duration::from_secs(90);
    let ledger = loop {
        let ledger = status(&dir.join("pipeline.toml"));
        if ledger["counts"]["done"] == uploaded.len() || Instant::now() > deadline {
            break ledger;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(ledger["counts"]["done"], uploaded.len(), "{ledger}");
    let recorded: Vec<&Value> = ledger["recently_done"].as_array().unwrap().iter().collect();
    let by = |how: &str| recorded.iter().filter(|r| r["found_by"] == how).count();
    assert_eq!(by("notification"), notified, "{ledger}");
    for (i, (key, _, _)) in uploaded.iter().enumerate() {
        let r = recorded.iter().find(|r| r["key"] == key.as_str()).unwrap();
        let want = if i % 4 == 3 { "sweep" } else { "notification" };
        assert_eq!(r["found_by"], want, "{key}");
    }

    // Every notification again, after the fact: nothing new to read.
    for (key, size, etag) in &uploaded {
        let event = s3_event(&bucket, key, *size, etag);
        js.publish(format!("{subject}.put"), event.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = status(&dir.join("pipeline.toml"));
    assert_eq!(again["counts"], ledger["counts"], "repeated notifications are no-ops");
    sluice.stop();

    let shown = support::run_ok(
        Command::new(support::SLUICE)
            .args(["dlq", "show"])
            .arg(dir.join("pipeline.toml"))
            .args(["--json", "--reason", "bad_notification"]),
    );
    let _ = js.delete_stream(&stream).await;
    let letters: Vec<Value> = shown.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(letters.len(), 1, "the stray message is a dead letter: {shown}");
    assert_eq!(letters[0]["bytes"], "{\"not\": \"a notification\"}");
    check_outcome(dir, &lines, &oracle, &each_line_once(&lines)).await;
}
