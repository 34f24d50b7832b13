//! Segment's own Node library (`@segment/analytics-node` 3.1, from npm,
//! installed into `~/.cache/sluice/segment` on first use) tracking events against a
//! collector with `protocol = "segment"`, unchanged but for its host and
//! write key, while the engine is SIGKILLed twice and restarted: every
//! call lands once in the lake (deduplicated by `messageId`, since the
//! library sends again what a killed engine never answered), with its
//! `type` and `userId` and a `timestamp` completed as Segment does; a
//! wrong write key gets 401 and stores nothing.

use std::{
    collections::BTreeSet,
    path::Path,
    process::{Command, Stdio},
};

use serde_json::Value;

use crate::{
    outages::{start_logged, through_two_kills},
    support,
};

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["messageId", "type", "timestamp"],
  "properties": {
    "messageId": {"type": "string"},
    "type": {"enum": ["track", "identify", "page", "screen", "group", "alias"]},
    "userId": {"type": "string"},
    "event": {"type": "string"},
    "timestamp": {"type": "string", "format": "date-time"},
    "originalTimestamp": {"type": "string"},
    "receivedAt": {"type": "string"},
    "sentAt": {"type": "string"}
  }
}"#;

/// `(type, userId, timestamp)` of every row, read by delta-rs's Python package.
fn rows(table: &Path) -> Vec<(String, String, String)> {
    // `os._exit`: pyarrow's threads sometimes abort the interpreter's teardown.
    let script = "import os, sys, json\nfrom deltalake import DeltaTable\n\
                  t = DeltaTable(sys.argv[1]).to_pyarrow_table(columns=['type', 'userId', 'timestamp']).to_pylist()\n\
                  print(json.dumps([[r['type'], r['userId'], str(r['timestamp'])] for r in t]), flush=True)\n\
                  os._exit(0)";
    let out = support::run_ok(Command::new(support::python()).args(["-c", script]).arg(table));
    serde_json::from_str(out.trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_node_library_delivers_every_call_once_through_kill_9() {
    let Some(module) = support::npm_modules("segment", "@segment/analytics-node@3.1.0") else {
        return;
    };
    let module = module.join("@segment/analytics-node");
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("segment.schema.json"), SCHEMA).unwrap();
    std::fs::write(dir.join("write-keys"), "wk-test-1\n").unwrap();
    let (api, web) = (support::free_port(), support::free_port());
    std::fs::write(
        dir.join("pipeline.toml"),
        format!(
            "[api]\naddress = \"127.0.0.1:{api}\"\n\n[delivery]\nvisibility_timeout_secs = 5\n\n\
             [sources.segment]\ntype = \"http\"\naddress = \"127.0.0.1:{web}\"\nprotocol = \"segment\"\n\
             auth = {{ bearer_tokens_file = \"write-keys\" }}\n\n\
             [transforms.standardize]\ntype = \"validate\"\ninputs = [\"segment\"]\nschema = \"segment.schema.json\"\n\
             event_id = \"/messageId\"\nevent_time = \"/timestamp\"\n\n\
             [sinks.lake]\ntype = \"lake\"\ninputs = [\"standardize\"]\nuri = \"lake/segment\"\nflush_interval_secs = 1\n"
        ),
    )
    .unwrap();
    let sluice = start_logged(dir, api);

    let wrong = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{web}/v1/track"))
        .basic_auth("wk-wrong", Some(""))
        .header("content-type", "application/json")
        .body(r#"{"userId": "intruder", "event": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/segment_client.js");
    let client = Command::new("node")
        .arg(script)
        .args([&format!("http://127.0.0.1:{web}"), "wk-test-1", "1200"])
        .env("SEGMENT_MODULE", &module)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (sluice, printed) = through_two_kills(client, sluice, dir, api).await;
    let summary = printed.last().unwrap();
    assert_eq!(summary["done"], 1200, "{summary}");
    assert_eq!(summary["errors"], 0, "no call given up: {summary}");
    assert!(
        summary["requests"].as_u64().unwrap() > 1200 / 25,
        "the kills made the library send some batches again: {summary}"
    );
    sluice.stop();
    let status = Command::new(support::SLUICE)
        .args(["run", "--until-idle"])
        .arg(dir.join("pipeline.toml"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    let landed = rows(&dir.join("lake/segment"));
    let sent: BTreeSet<(String, String)> = printed[..printed.len() - 1]
        .iter()
        .map(|m| (m["type"].as_str().unwrap().into(), m["userId"].as_str().unwrap().into()))
        .collect();
    let got: BTreeSet<(String, String)> = landed.iter().map(|(t, u, _)| (t.clone(), u.clone())).collect();
    assert_eq!(
        landed.len(),
        sent.len(),
        "each call once ({} retried requests)",
        summary["errors"]
    );
    assert_eq!(got, sent, "every call, with its type and user");
    assert!(
        landed.iter().all(|(_, _, ts)| ts.starts_with("2026-12-03")),
        "timestamps kept"
    );
    eprintln!(
        "{} Segment calls through 2 kills ({} HTTP requests for {} batches): {} rows, each once",
        sent.len(),
        summary["requests"],
        1200 / 25,
        landed.len()
    );
    let dead = Command::new(support::SLUICE)
        .args(["dlq", "list", "--json"])
        .arg(dir.join("pipeline.toml"))
        .output()
        .unwrap();
    let dead: Value = serde_json::from_slice(&dead.stdout).unwrap();
    assert_eq!(dead["total"], 0, "{dead}");
}
