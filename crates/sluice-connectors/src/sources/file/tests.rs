use std::{io::Write, path::Path, sync::Arc};

use sluice_core::{Delivery, mtime_ns, split_lines};
use sluice_queue::{
    DeadLetterFilter, DeadLetterStore, Queue, QueueSettings, embedded::EmbeddedQueue, lease::LocalLeases,
};
use tokio::sync::watch;

use super::*;
use crate::sources::{Source, SourceContext};

fn config(dir: &Path) -> FileSourceConfig {
    FileSourceConfig {
        path: dir.join("in/*.ndjson*").to_string_lossy().into_owned(),
        poll_interval_secs: 1,
        max_batch_bytes: Some(1024),
        settle_secs: 1,
        queue_payloads: QueuePayloads::Copy,
    }
}

fn lines(from: usize, n: usize) -> String {
    (from..from + n).map(|i| format!("{{\"n\":{i}}}\n")).collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A batch-mode (`--until-idle`) context over `queue`, with the sender that
/// would stop it (keep it alive while the source runs).
fn context(queue: &Arc<EmbeddedQueue>, state_dir: &Path) -> (SourceContext, watch::Sender<bool>) {
    let (stop, shutdown) = watch::channel(false);
    let ctx = SourceContext {
        name: "files".into(),
        queue: queue.clone(),
        dead_letters: queue.clone(),
        shutdown,
        until_idle: true,
        state_dir: state_dir.to_path_buf(),
        checkpoints: crate::sources::local_checkpoints(state_dir),
        leases: Arc::new(LocalLeases::default()),
        telemetry: sluice_core::telemetry::SourceTelemetry::new("test"),
    };
    (ctx, stop)
}

/// Runs the source once in `--until-idle` mode and returns what it enqueued.
async fn read_once(dir: &Path, state: &str, queue: &Arc<EmbeddedQueue>) -> Vec<Delivery> {
    read_once_with(config(dir), dir, state, queue).await
}

/// [`read_once`] with `config`.
async fn read_once_with(
    config: FileSourceConfig,
    dir: &Path,
    state: &str,
    queue: &Arc<EmbeddedQueue>,
) -> Vec<Delivery> {
    let (ctx, _stop) = context(queue, &dir.join(state));
    Box::new(FileSource::new(config)).run(ctx).await.unwrap();
    let got = queue.receive(10_000).await.unwrap();
    queue.ack(got.iter().map(|d| d.id).collect()).await.unwrap();
    got
}

fn line_count(batches: &[Delivery]) -> usize {
    batches.iter().map(|d| split_lines(&d.payload).count()).sum()
}

#[tokio::test]
async fn files_are_read_once_in_line_aligned_batches() {
    let dir = sluice_testkit::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/a.ndjson"), lines(0, 300)).unwrap();
    std::fs::write(dir.path().join("in/b.ndjson.gz"), gzip(lines(300, 300).as_bytes())).unwrap();
    std::fs::write(dir.path().join("in/ignored.txt"), "x").unwrap();
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("q"), QueueSettings::default()).unwrap());

    let first = read_once(dir.path(), "state", &queue).await;
    assert!(first.len() > 2, "batches are cut at max_batch_bytes");
    assert_eq!(line_count(&first), 600);
    assert!(first.iter().all(|d| d.payload.ends_with(b"\n") && !d.maybe_committed));
    let keys: std::collections::HashSet<_> = first.iter().map(|d| d.key.clone()).collect();
    assert_eq!(keys.len(), first.len());

    assert!(
        read_once(dir.path(), "state", &queue).await.is_empty(),
        "a second run reads nothing again"
    );

    // A file whose read was cut off by a crash is read again with the same
    // keys and lines, flagged, even with a new max_batch_bytes: a sink that
    // committed a first key would otherwise skip a larger first batch whole.
    let name = dir.path().join("in/a.ndjson");
    let meta = std::fs::metadata(&name).unwrap();
    let crashed = FileCheckpoints::open(&dir.path().join("crashed/files.sqlite3")).unwrap();
    let shown = name.display().to_string();
    crashed.start(&shown, meta.len(), mtime_ns(&meta), 1024).unwrap();
    drop(crashed);
    let larger = FileSourceConfig {
        max_batch_bytes: Some(8192),
        ..config(dir.path())
    };
    let again = read_once_with(larger, dir.path(), "crashed", &queue).await;
    let batches = |all: &[Delivery]| {
        all.iter()
            .filter(|d| d.key.contains("a.ndjson@"))
            .map(|d| (d.key.clone(), d.payload.clone()))
            .collect::<Vec<_>>()
    };
    assert!(
        batches(&again) == batches(&first),
        "read again as {} batches, first as {}",
        batches(&again).len(),
        batches(&first).len()
    );
    assert!(
        again
            .iter()
            .filter(|d| d.key.contains("a.ndjson@"))
            .all(|d| d.maybe_committed)
    );
}

#[tokio::test]
async fn corrupt_gzip_keeps_readable_lines_and_dead_letters_the_rest() {
    let dir = sluice_testkit::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    let mut data = gzip(lines(0, 50).as_bytes());
    data.extend_from_slice(b"\x1f\x8b\x08\x00garbage that is not deflate");
    std::fs::write(dir.path().join("in/bad.ndjson.gz"), data).unwrap();
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("q"), QueueSettings::default()).unwrap());

    let got = read_once(dir.path(), "state", &queue).await;
    assert_eq!(line_count(&got), 50);
    let letters = queue.list(DeadLetterFilter::default(), 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, "unreadable_input");
    assert!(letters[0].detail.contains("bad.ndjson.gz"), "{}", letters[0].detail);
    assert!(
        read_once(dir.path(), "state", &queue).await.is_empty(),
        "the broken file is not retried forever"
    );
}

#[tokio::test]
async fn a_full_queue_pauses_reading_until_batches_are_acknowledged() {
    let dir = sluice_testkit::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/a.ndjson"), lines(0, 2000)).unwrap();
    let settings = QueueSettings {
        max_bytes: 4096,
        ..QueueSettings::default()
    };
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("q"), settings).unwrap());
    let (ctx, _stop) = context(&queue, &dir.path().join("state"));
    let reader = tokio::spawn(Box::new(FileSource::new(config(dir.path()))).run(ctx));

    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!reader.is_finished(), "the source waits while the queue is full");
    let held = queue.stats().await.unwrap().bytes;
    assert!(held <= 4096 + 1024 + 64, "the queue holds {held} bytes");

    let mut delivered = Vec::new();
    while !reader.is_finished() || queue.stats().await.unwrap().batches > 0 {
        let got = queue.receive(100).await.unwrap();
        queue.ack(got.iter().map(|d| d.id).collect()).await.unwrap();
        delivered.extend(got);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    reader.await.unwrap().unwrap();
    let mut numbers: Vec<u64> = delivered
        .iter()
        .flat_map(|d| {
            split_lines(&d.payload)
                .map(|(_, l)| {
                    serde_json::from_slice::<serde_json::Value>(&l).unwrap()["n"]
                        .as_u64()
                        .unwrap()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (0..2000).collect::<Vec<u64>>(),
        "every line once, none lost while paused"
    );
}

#[tokio::test]
async fn a_replayed_file_is_read_again_once_under_the_replays_keys() {
    let dir = sluice_testkit::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/a.ndjson"), lines(0, 300)).unwrap();
    std::fs::write(dir.path().join("in/b.ndjson"), lines(300, 10)).unwrap();
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("q"), QueueSettings::default()).unwrap());
    let first = read_once(dir.path(), "state", &queue).await;

    let checkpoints = FileCheckpoints::open(&dir.path().join("state/files.sqlite3")).unwrap();
    let done = checkpoints.done_between(0, sluice_core::now_ms()).unwrap();
    assert_eq!(done.len(), 2);
    let a = done.iter().find(|f| f.path.ends_with("a.ndjson")).unwrap();
    assert!(checkpoints.request_replay(a, "r1").unwrap());
    drop(checkpoints);

    let replayed = read_once(dir.path(), "state", &queue).await;
    let originals: Vec<&Delivery> = first.iter().filter(|d| d.key.contains("a.ndjson@")).collect();
    assert_eq!(
        replayed.iter().map(|d| d.key.clone()).collect::<Vec<_>>(),
        originals
            .iter()
            .map(|d| sluice_core::replay_key("r1", &d.key))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        replayed.iter().map(|d| &d.payload).collect::<Vec<_>>(),
        originals.iter().map(|d| &d.payload).collect::<Vec<_>>()
    );
    assert!(
        read_once(dir.path(), "state", &queue).await.is_empty(),
        "a replay is read once"
    );
}

/// Rows of `table` in the embedded queue's file in `dir`.
fn queue_rows(dir: &Path, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(dir.join("queue.sqlite3")).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn referenced_batches_deliver_the_lines_a_copy_does_and_the_queue_keeps_only_places() {
    let dir = sluice_testkit::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    let mut plain = lines(0, 300);
    plain.push_str("{\"n\":300}");
    std::fs::write(dir.path().join("in/a.ndjson"), plain).unwrap();
    std::fs::write(dir.path().join("in/b.ndjson.gz"), gzip(lines(301, 300).as_bytes())).unwrap();
    let copied = Arc::new(EmbeddedQueue::open(&dir.path().join("copied"), QueueSettings::default()).unwrap());
    let referenced = Arc::new(EmbeddedQueue::open(&dir.path().join("referenced"), QueueSettings::default()).unwrap());
    let by_reference = FileSourceConfig {
        queue_payloads: QueuePayloads::Reference,
        ..config(dir.path())
    };

    let (ctx, _stop) = context(&copied, &dir.path().join("copy-state"));
    Box::new(FileSource::new(config(dir.path()))).run(ctx).await.unwrap();
    let (ctx, _stop) = context(&referenced, &dir.path().join("reference-state"));
    Box::new(FileSource::new(by_reference)).run(ctx).await.unwrap();

    let rows = |queue: &str| {
        let dir = dir.path().join(queue);
        (
            queue_rows(&dir, "batch_payloads"),
            queue_rows(&dir, "batch_file_ranges"),
        )
    };
    let (copies, copied_places) = rows("copied");
    let (payloads, places) = rows("referenced");
    let want = copied.receive(10_000).await.unwrap();
    let got = referenced.receive(10_000).await.unwrap();
    assert_eq!(
        (copies as usize, copied_places),
        (want.len(), 0),
        "a copy keeps every payload"
    );
    let plain_batches = want.iter().filter(|d| d.key.contains("a.ndjson@")).count();
    assert!(plain_batches > 2, "the plain file is cut into {plain_batches} batches");
    assert_eq!(
        places as usize, plain_batches,
        "each batch of the plain file is a place"
    );
    assert_eq!(
        payloads as usize,
        want.len() - plain_batches,
        "the gzipped file's batches are copied"
    );
    let summary = |all: &[Delivery]| {
        all.iter()
            .map(|d| (d.key.clone(), d.payload.clone(), d.maybe_committed))
            .collect::<Vec<_>>()
    };
    assert!(summary(&got) == summary(&want), "the same batches, keys and lines");
    assert_eq!(line_count(&got), 601);
}

#[tokio::test]
async fn a_referenced_batch_whose_file_changed_becomes_a_dead_letter_naming_it() {
    let dir = sluice_testkit::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/a.ndjson"), lines(0, 100)).unwrap();
    std::fs::write(dir.path().join("in/b.ndjson"), lines(100, 100)).unwrap();
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("q"), QueueSettings::default()).unwrap());
    let config = FileSourceConfig {
        queue_payloads: QueuePayloads::Reference,
        max_batch_bytes: Some(64 * 1024),
        ..config(dir.path())
    };
    let (ctx, _stop) = context(&queue, &dir.path().join("state"));
    Box::new(FileSource::new(config)).run(ctx).await.unwrap();

    // A first delivery set a's line 0 aside and failed: both come again.
    let first = queue.receive(10).await.unwrap();
    assert_eq!(first.len(), 2);
    let a = first.iter().find(|d| d.key.contains("a.ndjson")).unwrap();
    let invalid = sluice_core::DeadLetter::new(
        &a.key,
        0,
        "files",
        "validate",
        "invalid_json",
        "",
        bytes::Bytes::from_static(b"x"),
    );
    queue.put(vec![invalid]).await.unwrap();
    for d in &first {
        queue
            .nack(d.id, "sink down".into(), std::time::Duration::ZERO)
            .await
            .unwrap();
    }

    std::fs::write(dir.path().join("in/a.ndjson"), lines(0, 101)).unwrap();
    std::fs::remove_file(dir.path().join("in/b.ndjson")).unwrap();
    assert!(
        queue.receive(10).await.unwrap().is_empty(),
        "neither batch can be read back"
    );
    let mut letters = queue.list(DeadLetterFilter::default(), 10).await.unwrap();
    letters.retain(|l| l.reason == "unreadable_input");
    letters.sort_by(|x, y| x.batch_key.cmp(&y.batch_key));
    assert_eq!(letters.len(), 2, "{letters:?}");
    for (letter, file) in letters.iter().zip(["a.ndjson", "b.ndjson"]) {
        assert_eq!(letter.component, "queue");
        assert!(
            letter.batch_key.contains(file) && letter.batch_key.ends_with("#unreadable"),
            "{}",
            letter.batch_key
        );
        assert!(letter.detail.contains(file), "{}", letter.detail);
    }
    assert!(
        letters[0].detail.contains("changed since it was queued"),
        "{}",
        letters[0].detail
    );
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.batches, stats.bytes), (0, 0), "the batches left the queue");
    assert_eq!(queue_rows(&dir.path().join("q"), "batch_file_ranges"), 0);
}
