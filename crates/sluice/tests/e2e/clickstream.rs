//! The foundation end to end: 200k generated clickstream lines (duplicates,
//! malformed and late events), half dropped as files (plain and gzip) and
//! half posted to the collector (NDJSON, JSON arrays, gzip), checked against
//! the generator's oracle, with our reader and an independent one.

use std::{collections::BTreeMap, path::Path, process::Command, time::Duration};

use futures::{StreamExt, stream};
use serde_json::Value;

use crate::support;

const LINES: usize = 200_000;

/// Writes a file under a name the pattern ignores, then renames it in.
fn drop_file(dir: &Path, name: &str, contents: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}

/// Posts one request body; retries on 503 and connection errors. Returns the accepted count.
async fn post(client: &reqwest::Client, url: &str, content_type: &str, gz: bool, body: Vec<u8>) -> u64 {
    for _ in 0..200 {
        let mut req = client.post(url).header("content-type", content_type).body(body.clone());
        if gz {
            req = req.header("content-encoding", "gzip");
        }
        match req.send().await {
            Ok(r) if r.status() == 200 => {
                let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
                return v["accepted"].as_u64().unwrap();
            }
            Ok(r) if r.status() == 503 || r.status() == 429 => {}
            Ok(r) => panic!("unexpected status {}", r.status()),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("collector kept refusing");
}

fn count(by_reason: &BTreeMap<String, u64>, matches: impl Fn(&str) -> bool) -> u64 {
    by_reason.iter().filter(|(r, _)| matches(r)).map(|(_, n)| n).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickstream_through_files_and_http_matches_the_oracle() {
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, oracle) = support::generate(dir, LINES, 11);
    assert_eq!(lines.len(), LINES);
    let (http, api) = (support::free_port(), support::free_port());
    let pipeline_path = dir.join("pipeline.toml");
    std::fs::write(&pipeline_path, support::pipeline(
            api,
            "",
            &format!(
                "[sources.web]\ntype = \"http\"\naddress = \"127.0.0.1:{http}\"\nmax_body_bytes = 2097152\nmax_decompressed_bytes = 8388608\n\n[sources.files]\ntype = \"file\"\npath = \"incoming/*.ndjson*\"\nmax_batch_bytes = 1048576"
            ),
            &["web", "files"],
            "clickstream",
        )).unwrap();
    let incoming = dir.join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    support::run_ok(Command::new(support::SLUICE).arg("validate").arg(&pipeline_path));

    let (file_lines, http_lines) = lines.split_at(LINES / 2);
    let (plain, gz) = file_lines.split_at(file_lines.len() / 2);
    drop_file(&incoming, "part-0.ndjson", (plain.join("\n") + "\n").as_bytes());

    let mut sluice = support::start(&pipeline_path, &[]);
    sluice.wait_ready(api);
    drop_file(
        &incoming,
        "part-1.ndjson.gz",
        &support::gzip((gz.join("\n") + "\n").as_bytes()),
    );

    // Bodies that cannot be read at all are refused; nothing of them is kept.
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{http}/v1/events");
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(
            client
                .post(&url)
                .header("content-encoding", "gzip")
                .body("not gzip")
                .send()
                .await
                .unwrap()
        ),
        400
    );
    assert_eq!(
        status(
            client
                .post(&url)
                .header("content-type", "image/png")
                .body("{}")
                .send()
                .await
                .unwrap()
        ),
        400
    );
    assert_eq!(
        status(client.post(&url).body(vec![b' '; 3 << 20]).send().await.unwrap()),
        413
    );
    let bomb = support::gzip(&vec![b' '; 64 << 20]);
    assert_eq!(
        status(
            client
                .post(&url)
                .header("content-encoding", "gzip")
                .body(bomb)
                .send()
                .await
                .unwrap()
        ),
        413
    );

    // The rest goes through the collector in 1000-line requests of three kinds.
    let accepted: u64 = stream::iter(http_lines.chunks(1000).enumerate())
        .map(|(i, chunk)| {
            let (client, url) = (client.clone(), url.clone());
            let all_json = chunk.iter().all(|l| serde_json::from_str::<Value>(l).is_ok());
            async move {
                match i % 3 {
                    0 if all_json => {
                        post(
                            &client,
                            &url,
                            "application/json",
                            false,
                            format!("[{}]", chunk.join(",\n")).into_bytes(),
                        )
                        .await
                    }
                    1 => {
                        post(
                            &client,
                            &url,
                            "application/x-ndjson",
                            true,
                            support::gzip(chunk.join("\n").as_bytes()),
                        )
                        .await
                    }
                    _ => {
                        post(
                            &client,
                            &url,
                            "application/x-ndjson",
                            false,
                            chunk.join("\n").into_bytes(),
                        )
                        .await
                    }
                }
            }
        })
        .buffer_unordered(4)
        .fold(0, |sum, n| async move { sum + n })
        .await;
    assert_eq!(
        accepted,
        http_lines.len() as u64,
        "every posted line is accepted (bad ones go to dead letters)"
    );

    let (code, metrics) = support::http_get(api, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("sluice_component_received_events_total{component=\"web\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("sluice_queue_depth_batches"), "{metrics}");
    support::assert_metrics_catalogued(&metrics);
    sluice.stop();

    // A batch run picks up whatever the stopped run had not read yet, then exits.
    let mut finish = support::start(&pipeline_path, &["--until-idle"]);
    let status = finish.child.wait().unwrap();
    assert!(status.success(), "sluice run --until-idle exited with {status}");

    let table = dir.join("lake/clickstream");
    let ours = support::read_lake(&table).await;
    assert_eq!(
        ours.ids_sha256,
        oracle["event_ids_sha256"].as_str().unwrap(),
        "distinct event ids differ from the oracle"
    );
    assert_eq!(ours.ids.len() as u64, oracle["valid_unique"].as_u64().unwrap());
    let expected_hours: BTreeMap<String, u64> =
        serde_json::from_value(oracle["valid_unique_per_hour"].clone()).unwrap();
    assert_eq!(ours.per_hour, expected_hours);
    // No engine duplicates: an event id has at most as many rows as lines the producer sent with it.
    let mut sent: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for line in &lines {
        if let Some(id) = serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| v["event_id"].as_str().map(str::to_string))
        {
            *sent.entry(id).or_insert(0) += 1;
        }
    }
    for (id, rows) in &ours.rows_per_id {
        let times = sent.get(id).copied().unwrap_or(0);
        assert!(
            *rows <= times,
            "{id}: {rows} rows but the producer sent it {times} times"
        );
    }

    // An independent reader (delta-rs's Python package) sees the same table.
    let theirs = support::read_with_delta_rs(&table);
    assert_eq!(theirs["rows"].as_u64().unwrap(), ours.rows);
    assert_eq!(theirs["ids_sha256"], oracle["event_ids_sha256"]);
    assert_eq!(theirs["per_hour"], oracle["valid_unique_per_hour"]);
    assert_eq!(theirs["partition_mismatches"], 0);
    assert_eq!(theirs["purchase_revenue_cents"], oracle["purchase_revenue_cents"]);
    let mut schema_order: Vec<Value> = theirs["schema_properties"].as_array().unwrap().clone();
    schema_order.extend([Value::from("dt"), Value::from("hour")]);
    assert_eq!(
        theirs["columns"].as_array().unwrap(),
        &schema_order,
        "the table's columns follow the schema file's properties, then the partition columns"
    );

    // Dead letters: every invalid line, with the right reason class.
    let dlq: Value = serde_json::from_str(&support::run_ok(
        Command::new(support::SLUICE)
            .args(["dlq", "list"])
            .arg(&pipeline_path)
            .arg("--json"),
    ))
    .unwrap();
    let by_reason: BTreeMap<String, u64> = serde_json::from_value(dlq["by_reason"].clone()).unwrap();
    let expected: BTreeMap<String, u64> = serde_json::from_value(oracle["invalid_reasons"].clone()).unwrap();
    let e = |k: &str| expected.get(k).copied().unwrap_or(0);
    assert_eq!(
        dlq["total"].as_u64().unwrap(),
        oracle["invalid"].as_u64().unwrap(),
        "{by_reason:?}"
    );
    assert_eq!(
        count(&by_reason, |r| r == "invalid_json" || r == "not_an_object"),
        e("truncated_json") + e("not_an_object"),
        "{by_reason:?}"
    );
    assert_eq!(
        count(&by_reason, |r| r == "schema:/event_id:required"),
        e("missing_event_id"),
        "{by_reason:?}"
    );
    assert_eq!(
        count(&by_reason, |r| r.starts_with("schema:/ts:")),
        e("bad_timestamp"),
        "{by_reason:?}"
    );
    assert_eq!(
        count(&by_reason, |r| r.ends_with(":type")),
        e("wrong_type"),
        "{by_reason:?}"
    );
    assert_eq!(
        count(&by_reason, |r| r == "schema:/event_type:enum"),
        e("hostile_event_type") + e("unknown_event_type"),
        "{by_reason:?}"
    );

    // No event is both in the table and a dead letter.
    let shown = support::run_ok(
        Command::new(support::SLUICE)
            .args(["dlq", "show"])
            .arg(&pipeline_path)
            .args(["--json", "--limit", "1000000"]),
    );
    let mut hostile_seen = false;
    for line in shown.lines() {
        let letter: Value = serde_json::from_str(line).unwrap();
        let bytes = letter["bytes"].as_str().unwrap();
        hostile_seen |= bytes.contains("../../etc/passwd");
        if let Some(id) = serde_json::from_str::<Value>(bytes)
            .ok()
            .and_then(|v| v["event_id"].as_str().map(str::to_string))
        {
            assert!(!ours.ids.contains(&id), "{id} is both in the table and a dead letter");
        }
    }
    assert!(
        hostile_seen,
        "the generator's ../../etc/passwd event types are dead-lettered with their bytes"
    );

    // Nothing was written outside the table's partition folders.
    for file in support::all_files(dir) {
        let rel = file.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        let ok = rel.starts_with(".sluice/")
            || rel.starts_with("incoming/")
            || ["pipeline.toml", "events.ndjson", "expect.json"].contains(&rel.as_str())
            || rel.starts_with("lake/clickstream/_delta_log/")
            || is_partition_file(&rel);
        assert!(ok, "unexpected file {rel}");
    }
}

fn is_partition_file(rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    parts.len() == 5
        && parts[..2] == ["lake", "clickstream"]
        && parts[2].len() == 13
        && parts[2].starts_with("dt=")
        && chrono::NaiveDate::parse_from_str(&parts[2][3..], "%Y-%m-%d").is_ok()
        && parts[3].len() == 7
        && parts[3].starts_with("hour=")
        && parts[3][5..].parse::<u8>().is_ok_and(|h| h < 24)
        && parts[4].ends_with(".parquet")
}
