//! `sluice status` as an operator runs it:
//!
//! * on a running pipeline (HTTP collector -> validate -> lake), after
//!   generated events with malformed ones were posted: `--json` counts
//!   equal the generator's oracle, `/metrics` and the lake table (events
//!   in, dead letters by reason with their newest time, rows committed,
//!   the table's version), the verdict is healthy, and the screen shows
//!   each stage;
//! * on the same pipeline stopped: what it left (queue empty, the same
//!   dead letters and table version, the last commit's age);
//! * on a running pipeline whose PostgreSQL sink's server is cut while
//!   input arrives: the verdict is degraded, naming the sink as not ready
//!   and then as data stopped.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use sluice_testkit::{
    proxy::Proxy,
    services::{Service, host_port},
};

use crate::{
    outages::{start_logged, wait_for},
    postgres::{connect, drop_schema, fresh_schema},
    support,
};

fn status(dir: &std::path::Path, json: bool) -> String {
    let mut command = Command::new(support::SLUICE);
    command.arg("status").arg(dir.join("pipeline.toml"));
    if json {
        command.arg("--json");
    }
    support::run_ok(&mut command)
}

fn status_json(dir: &std::path::Path) -> Value {
    serde_json::from_str(status(dir, true).trim()).unwrap()
}

fn row<'a>(report: &'a Value, stage: &str, name: &str) -> &'a Value {
    report[stage]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{stage} {name} in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_a_running_and_a_stopped_pipeline_agrees_with_metrics_oracle_and_table() {
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, oracle) = support::generate(dir, 4_000, 31);
    let (api, web) = support::collector_pipeline(dir);
    let sluice = start_logged(dir, api);
    let posted = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{web}/v1/events"))
        .body(lines.join("\n") + "\n")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let valid = oracle["valid_unique"].as_i64().unwrap();
    let sent = "sluice_component_sent_events_total{component=\"lake\"}";
    wait_for("rows committed", 60, valid, || async {
        support::metric(api, sent).unwrap_or(0.0) as i64
    })
    .await;
    let held = "sluice_dead_letter_depth";
    let invalid = oracle["invalid"].as_i64().unwrap();
    wait_for("dead letters held", 30, invalid, || async {
        support::metric(api, held).unwrap_or(0.0) as i64
    })
    .await;

    let report = status_json(dir);
    assert_eq!(report["state"], "running", "{report}");
    assert_eq!(report["verdict"]["healthy"], true, "{report}");
    let web_row = row(&report, "sources", "web");
    assert_eq!(web_row["events"].as_u64(), Some(lines.len() as u64), "{web_row}");
    assert!(web_row["last_input_secs_ago"].as_f64().unwrap() < 60.0);
    let standardize = row(&report, "transforms", "standardize");
    assert_eq!(standardize["dead_letters"].as_i64(), Some(invalid), "{standardize}");
    let lake = row(&report, "sinks", "lake");
    assert_eq!(lake["rows"].as_i64(), Some(valid), "{lake}");
    assert_eq!(lake["backend_up"], true);
    let summary = sluice_lake::summarize(
        &url::Url::from_directory_path(dir.join("lake/clickstream"))
            .unwrap()
            .into(),
    )
    .await
    .unwrap();
    assert_eq!(lake["table_version"].as_i64(), Some(summary.version));
    assert_eq!(report["dead_letters"]["total"].as_i64(), Some(invalid));
    let reasons = report["dead_letters"]["by_reason"].as_array().unwrap();
    let by_reason: i64 = reasons.iter().map(|r| r["count"].as_i64().unwrap()).sum();
    assert_eq!(by_reason, invalid);
    for reason in reasons {
        let newest = reason["newest"].as_str().unwrap();
        let at = chrono::DateTime::parse_from_rfc3339(newest).unwrap();
        assert!((chrono::Utc::now() - at.to_utc()).num_seconds() < 120, "{reason}");
    }
    let screen = status(dir, false);
    for part in [
        "verdict: healthy",
        "SOURCES",
        "QUEUE",
        "TRANSFORMS",
        "SINKS",
        "DEAD LETTERS",
        "standardize",
    ] {
        assert!(screen.contains(part), "{part} in:\n{screen}");
    }
    eprintln!("{screen}");
    sluice.stop();

    let left = status_json(dir);
    assert_eq!(left["state"], "stopped", "{left}");
    assert_eq!(left["verdict"]["healthy"], true, "{left}");
    assert_eq!(left["queue"]["batches"].as_u64(), Some(0));
    assert_eq!(left["dead_letters"]["total"].as_i64(), Some(invalid));
    let lake = row(&left, "sinks", "lake");
    assert_eq!(lake["table_version"].as_i64(), Some(summary.version));
    assert!(lake["last_commit_secs_ago"].as_f64().unwrap() < 120.0, "{lake}");
    assert!(lake["rows"].is_null(), "rows since start are not known when stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_a_down_sink_then_data_stopped() {
    if !support::services_up(&[Service::Postgres]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, 1_000, 32);
    let pg = connect().await;
    let schema = fresh_schema(&pg, "status").await;
    let real = crate::postgres::url();
    let mut proxy = Proxy::start(host_port(&real).unwrap()).await;
    let api = support::free_port();
    support::file_to_postgres(dir, api, &proxy.url_for(&real), &schema);
    let sluice = start_logged(dir, api);
    std::fs::write(dir.join("incoming/0.ndjson"), lines[..100].join("\n") + "\n").unwrap();
    let sent = "sluice_component_sent_events_total{component=\"table\"}";
    wait_for("rows before the cut", 60, 100, || async {
        support::metric(api, sent).unwrap_or(0.0) as i64
    })
    .await;
    assert_eq!(status_json(dir)["verdict"]["healthy"], true);

    proxy.cut();
    let started = Instant::now();
    let mut seen = (false, false);
    let mut part = 1;
    while started.elapsed() < Duration::from_secs(40) && !(seen.0 && seen.1) {
        // Input keeps arriving while the sink cannot commit.
        if let Some(chunk) = lines.get(part * 30..(part + 1) * 30) {
            std::fs::write(dir.join(format!("incoming/{part}.ndjson")), chunk.join("\n") + "\n").unwrap();
            part += 1;
        }
        let report = status_json(dir);
        assert_eq!(
            report["verdict"]["healthy"],
            report["verdict"]["reasons"].as_array().unwrap().is_empty()
        );
        let reasons = report["verdict"]["reasons"].to_string();
        seen.0 |= reasons.contains("not ready: backend unavailable for sink table");
        seen.1 |= reasons.contains("sink table: no commit for") && reasons.contains("(data stopped)");
        if seen.1 {
            eprintln!("{}", status(dir, false));
        }
    }
    assert!(
        seen.0 && seen.1,
        "degraded as not ready {} and data stopped {}",
        seen.0,
        seen.1
    );
    proxy.restore().await;
    sluice.stop();
    drop_schema(&pg, &schema).await;
}
