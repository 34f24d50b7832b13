//! Backpressure: with the lake unable to commit (its log folder replaced by a
//! plain file), accepted batches stay in the bounded queue; once it is full
//! the collector answers 503 with `Retry-After` instead of taking more, the
//! engine's memory stays bounded, and after the fix every accepted event
//! lands exactly once while the refused batch is accepted on retry.

use std::{path::Path, time::Duration};

use crate::support;

/// Peak resident memory the engine may use in this scenario.
const RSS_BOUND_KIB: u64 = 256 * 1024;

/// Peak resident set size of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn distinct_ids(table: &Path) -> usize {
    support::read_lake(table).await.ids.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_503_and_everything_accepted_lands_after_recovery() {
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, 20_000, 9);
    let table = dir.join("lake/t");
    let (sluice, http, api) = support::start_http_pipeline(
        dir,
        "visibility_timeout_secs = 2\nmax_attempts = 1000\nmax_queue_bytes = 1048576",
        "",
    );
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{http}/v1/events");
    let mut batches = lines.chunks(1000);

    let first = batches.next().unwrap();
    assert_eq!(
        client.post(&url).body(first.join("\n")).send().await.unwrap().status(),
        200
    );
    while !table.join("_delta_log").is_dir() || distinct_ids(&table).await < first.len() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Block the sink; post until the queue is full.
    let log = table.join("_delta_log");
    std::fs::rename(&log, table.join("_delta_log.saved")).unwrap();
    std::fs::write(&log, "not a folder").unwrap();
    let mut accepted = first.len();
    let refused = loop {
        let batch = batches.next().expect("the queue never filled up");
        let r = client.post(&url).body(batch.join("\n")).send().await.unwrap();
        match r.status().as_u16() {
            200 => accepted += batch.len(),
            503 => {
                assert_eq!(r.headers()["retry-after"], "1");
                break batch;
            }
            other => panic!("unexpected status {other}"),
        }
    };
    assert!(accepted < lines.len() / 2, "a 1 MiB queue took {accepted} lines");
    let (_, metrics) = support::http_get(api, "/metrics").unwrap();
    assert!(
        metrics.contains("sluice_http_throttled_total{component=\"web\"}"),
        "{metrics}"
    );

    // The engine keeps retrying the blocked sink without growing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let blocked_rss = peak_rss_kib(sluice.child.id());
    assert!(blocked_rss < RSS_BOUND_KIB, "peak RSS {blocked_rss} KiB while blocked");
    eprintln!(
        "backpressure: queue full after {accepted} lines; peak RSS {} MiB while blocked",
        blocked_rss / 1024
    );

    // Recover: the refused batch is accepted on retry and everything lands once.
    std::fs::remove_file(&log).unwrap();
    std::fs::rename(table.join("_delta_log.saved"), &log).unwrap();
    loop {
        let r = client.post(&url).body(refused.join("\n")).send().await.unwrap();
        if r.status() == 200 {
            accepted += refused.len();
            break;
        }
        assert_eq!(r.status(), 503);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sluice.stop();
    let contents = support::read_lake(&table).await;
    assert_eq!(contents.ids.len(), accepted, "every accepted event landed");
    assert_eq!(contents.rows as usize, accepted, "and only once");
}
