//! Disk full: the lake lives on a 512 KiB tmpfs. Once writes fail with
//! ENOSPC the sink's errors are retried with backoff and nothing is
//! acknowledged; the table stays readable at its last commit; when the
//! filesystem grows (remount), every accepted event lands exactly once.
//! Needs root (it mounts a tmpfs), as the test machines run.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use crate::support;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(path.to_path_buf())
    }

    fn grow(&self, size: &str) {
        support::run_ok(
            Command::new("mount")
                .args(["-o", &format!("remount,size={size}")])
                .arg(&self.0),
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn lake_errors(api: u16) -> f64 {
    let (_, metrics) = support::http_get(api, "/metrics").unwrap();
    metrics
        .lines()
        .find(|l| l.starts_with("sluice_component_errors_total{component=\"lake\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_retried_and_nothing_is_lost_or_doubled() {
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let disk = Tmpfs::mount(&dir.join("lake"), "512k");
    let (lines, oracle) = support::generate_clean(dir, 20_000, 31);
    let (sluice, http, api) = support::start_http_pipeline(dir, "visibility_timeout_secs = 2\nmax_attempts = 1000", "");

    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{http}/v1/events");
    for batch in lines.chunks(1000) {
        let r = client.post(&url).body(batch.join("\n")).send().await.unwrap();
        assert_eq!(r.status(), 200, "the queue is on another disk and has room");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while lake_errors(api) < 2.0 {
        assert!(Instant::now() < deadline, "the lake never ran out of space");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Full, but consistent: the table reads at its last commit.
    let table = dir.join("lake/t");
    let while_full = support::read_lake(&table).await;
    assert!(
        (while_full.ids.len()) < lines.len(),
        "everything fit; the test needs a smaller disk"
    );

    disk.grow("256m");
    let deadline = Instant::now() + Duration::from_secs(90);
    while support::read_lake(&table).await.ids.len() < lines.len() {
        assert!(Instant::now() < deadline, "events did not land after the disk grew");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let errors = lake_errors(api);
    sluice.stop();
    let contents = support::read_lake(&table).await;
    eprintln!(
        "disk full: {} of {} ids readable while full; {errors} sink errors retried",
        while_full.ids.len(),
        lines.len()
    );
    assert_eq!(contents.ids_sha256, oracle["event_ids_sha256"].as_str().unwrap());
    assert_eq!(contents.rows as usize, lines.len(), "each event exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_disk_answers_503_and_recovers_without_loss() {
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let disk = Tmpfs::mount(&dir.join(".sluice"), "1m");
    let (lines, _) = support::generate_clean(dir, 20_000, 37);
    let (sluice, http, api) = support::start_http_pipeline(dir, "", "");
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{http}/v1/events");
    let mut accepted = 0;
    let mut refused = None;
    for batch in lines.chunks(1000) {
        let r = client.post(&url).body(batch.join("\n")).send().await.unwrap();
        match r.status().as_u16() {
            200 => accepted += batch.len(),
            503 => {
                assert_eq!(r.headers()["retry-after"], "1");
                refused = Some(batch);
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let refused = refused.expect("the queue's disk never filled up");
    assert_eq!(support::http_get(api, "/health").unwrap().0, 200, "still serving");

    disk.grow("256m");
    loop {
        let r = client.post(&url).body(refused.join("\n")).send().await.unwrap();
        if r.status() == 200 {
            accepted += refused.len();
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sluice.stop();
    let contents = support::read_lake(&dir.join("lake/t")).await;
    eprintln!(
        "queue disk full: refused after {} accepted lines",
        accepted - refused.len()
    );
    assert_eq!(contents.ids.len(), accepted, "every accepted event landed");
    assert_eq!(contents.rows as usize, accepted, "and only once");
}
