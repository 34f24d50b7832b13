//! Redelivery with a real storage fault: while the table's `_delta_log` is
//! replaced by a plain file, every commit fails; the batch is retried, and
//! after `max_attempts` deliveries its events become dead letters with reason
//! `max_attempts` and the last error. Once the log is back, `sluice dlq
//! redrive` brings them back and they land once.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support;

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn dlq_counts(pipeline: &Path) -> Value {
    serde_json::from_str(&support::run_ok(
        Command::new(support::SLUICE)
            .args(["dlq", "list"])
            .arg(pipeline)
            .arg("--json"),
    ))
    .unwrap()
}

async fn rows(table: &Path) -> (u64, usize) {
    if !table.join("_delta_log").is_dir() {
        return (0, 0);
    }
    let c = support::read_lake(table).await;
    (c.rows, c.ids.len())
}

async fn post(http: u16, lines: &[String]) {
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{http}/v1/events"))
        .body(lines.join("\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn wait_for_ids(table: &Path, ids: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while rows(table).await.1 < ids {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {ids} distinct ids in the table"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_commits_dead_letter_after_max_attempts_and_redrive_lands_once() {
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, oracle) = support::generate_clean(dir, 200, 5);
    assert_eq!(oracle["valid_unique"], 200);
    let (first, second) = lines.split_at(100);
    let pipeline_path = dir.join("pipeline.toml");
    let table = dir.join("lake/t");
    let (sluice, http, _) = support::start_http_pipeline(dir, "visibility_timeout_secs = 2\nmax_attempts = 3", "");
    post(http, first).await;
    wait_for_ids(&table, 100).await;
    let (rows_before, ids_before) = rows(&table).await;

    // Break the table: its log folder becomes a plain file.
    let log = table.join("_delta_log");
    std::fs::rename(&log, table.join("_delta_log.saved")).unwrap();
    std::fs::write(&log, "not a folder").unwrap();
    post(http, second).await;
    wait_until("max_attempts dead letters", || {
        dlq_counts(&pipeline_path)["by_reason"]["max_attempts"].as_u64() == Some(100)
    });
    let shown = support::run_ok(
        Command::new(support::SLUICE)
            .args(["dlq", "show"])
            .arg(&pipeline_path)
            .args(["--reason", "max_attempts", "--json", "--limit", "1"]),
    );
    let letter: Value = serde_json::from_str(shown.lines().next().unwrap()).unwrap();
    assert!(
        letter["detail"].as_str().unwrap().contains("delivered 3 times"),
        "{letter}"
    );
    let detail = letter["detail"].as_str().unwrap();
    assert!(
        detail.contains("lake") && detail.contains("Not a directory"),
        "the last error is kept: {detail}"
    );

    // Fix it, redrive, and the events land exactly once.
    std::fs::remove_file(&log).unwrap();
    std::fs::rename(table.join("_delta_log.saved"), &log).unwrap();
    let (moved, progress) = support::run_with_progress(
        Command::new(support::SLUICE)
            .args(["dlq", "redrive"])
            .arg(&pipeline_path)
            .args(["--reason", "max_attempts"]),
        "redriving",
    );
    assert!(moved.contains("redrove 100"), "{moved}");
    assert_eq!(progress, Some((100, 100)));
    wait_for_ids(&table, ids_before + 100).await;
    let again = support::run_ok(
        Command::new(support::SLUICE)
            .args(["dlq", "redrive"])
            .arg(&pipeline_path),
    );
    assert!(again.contains("redrove 0"), "{again}");
    sluice.stop();
    let (rows_after, ids_after) = rows(&table).await;
    assert_eq!(ids_after, ids_before + 100);
    assert_eq!(rows_after - rows_before, 100, "each redriven event landed once");
    assert_eq!(dlq_counts(&pipeline_path)["total"], 0);
}
