//! Sinks commit before their age bound when batches waiting for a commit
//! would otherwise stall the pipeline: batches are acknowledged only after
//! a commit, so with a one-hour `flush_interval_secs` nothing would land
//! for an hour once the in-flight limit is reached or in-flight batches
//! fill half the queue. Each case posts more than that and expects rows in
//! the table while the pipeline keeps running.

use std::time::{Duration, Instant};

use crate::support;

/// Starts an HTTP pipeline with a one-hour age bound and `delivery`, posts
/// `requests` bodies of `lines_each` generated events, and returns the rows
/// committed within 30 s (the pipeline still running), then all rows after a
/// graceful stop.
async fn rows_before_and_after_stop(delivery: &str, requests: usize, lines_each: usize) -> (u64, u64) {
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, requests * lines_each, 5);
    let (http, api) = (support::free_port(), support::free_port());
    let sources = format!("[sources.web]\ntype = \"http\"\naddress = \"127.0.0.1:{http}\"");
    let text = support::pipeline(api, delivery, &sources, &["web"], "t")
        .replace("flush_interval_secs = 1", "flush_interval_secs = 3600");
    std::fs::write(dir.join("pipeline.toml"), text).unwrap();
    let mut sluice = support::start(&dir.join("pipeline.toml"), &[]);
    sluice.wait_ready(api);

    let client = reqwest::Client::new();
    for chunk in lines.chunks(lines_each) {
        let response = client
            .post(format!("http://127.0.0.1:{http}/v1/events"))
            .body(chunk.join("\n"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let url: sluice_lake::StoreLocation = url::Url::from_directory_path(dir.join("lake/t")).unwrap().into();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut running_rows = 0;
    while Instant::now() < deadline && running_rows == 0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        running_rows = sluice_lake::summarize(&url).await.map_or(0, |s| s.rows);
    }
    sluice.stop();
    (running_rows, sluice_lake::summarize(&url).await.unwrap().rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_in_flight_limit_commits_before_the_age_bound() {
    let (running, total) = rows_before_and_after_stop("max_in_flight = 2", 3, 50).await;
    assert!(
        running >= 100,
        "the two batches in flight were committed early: {running} rows"
    );
    assert_eq!(total, 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_batches_filling_half_the_queue_commit_before_the_age_bound() {
    // About 700 KiB in flight against a 1 MiB queue, well under the in-flight limits.
    let (running, total) = rows_before_and_after_stop("max_queue_bytes = 1048576", 4, 400).await;
    assert!(
        running > 0,
        "nothing was committed while the queue was half full of in-flight batches"
    );
    assert_eq!(total, 1600);
}
