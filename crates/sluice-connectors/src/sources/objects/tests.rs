use std::{collections::BTreeMap, io::Write, path::Path as FsPath, sync::Arc};

use object_store::{local::LocalFileSystem, path::Path};
use sluice_core::{Delivery, split_lines};
use sluice_queue::{
    DeadLetterFilter, DeadLetterStore, Queue, QueueSettings, embedded::EmbeddedQueue, lease::LocalLeases,
};
use tokio::sync::watch;

use super::*;
use crate::sources::{Source, SourceContext};

fn config(pattern: &str, format: ObjectFormat) -> ObjectsSourceConfig {
    ObjectsSourceConfig {
        uri: "file:///unused".into(),
        storage_options: Default::default(),
        pattern: pattern.into(),
        format,
        sweep_interval_secs: 60,
        pull_interval_secs: 1,
        objects_per_pull: 2,
        visibility_timeout_secs: 60,
        max_attempts: 3,
        max_batch_bytes: Some(1024),
        settle_secs: 1,
        notifications: None,
    }
}

/// Runs the source once in `--until-idle` mode over `folder` and returns what it enqueued.
async fn read_once(
    folder: &FsPath,
    state: &FsPath,
    queue: &Arc<EmbeddedQueue>,
    config: ObjectsSourceConfig,
) -> Vec<Delivery> {
    let (_stop, shutdown) = watch::channel(false);
    let ctx = SourceContext {
        name: "drops".into(),
        queue: queue.clone(),
        dead_letters: queue.clone(),
        shutdown,
        until_idle: true,
        state_dir: state.to_path_buf(),
        checkpoints: crate::sources::local_checkpoints(state),
        leases: Arc::new(LocalLeases::default()),
        telemetry: sluice_core::telemetry::SourceTelemetry::new("test"),
    };
    let store = Arc::new(LocalFileSystem::new_with_prefix(folder).unwrap());
    let source = ObjectsSource::new(config, store, Path::default(), None).unwrap();
    Box::new(source).run(ctx).await.unwrap();
    let got = queue.receive(10_000).await.unwrap();
    queue.ack(got.iter().map(|d| d.id).collect()).await.unwrap();
    got
}

fn events(batches: &[Delivery]) -> Vec<serde_json::Value> {
    let mut all: Vec<serde_json::Value> = batches
        .iter()
        .flat_map(|d| {
            split_lines(&d.payload)
                .map(|(_, l)| serde_json::from_slice(&l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    all.sort_by_key(|v| {
        v["n"]
            .as_str()
            .map_or_else(|| v["n"].as_u64().unwrap(), |s| s.parse().unwrap())
    });
    all
}

fn ndjson(from: u64, n: u64) -> String {
    (from..from + n).map(|i| format!("{{\"n\":{i}}}\n")).collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn ledger_counts(state: &FsPath) -> BTreeMap<String, u64> {
    Ledger::open(&Ledger::path(state, "drops")).unwrap().counts().unwrap()
}

#[tokio::test]
async fn every_format_is_read_once_and_a_changed_object_is_new_data() {
    let dir = sluice_testkit::tempdir().unwrap();
    let folder = dir.path().join("landing");
    std::fs::create_dir_all(folder.join("day=1")).unwrap();
    std::fs::write(folder.join("day=1/a.ndjson"), ndjson(0, 100)).unwrap();
    std::fs::write(folder.join("day=1/b.ndjson.gz"), gzip(ndjson(100, 100).as_bytes())).unwrap();
    let array: Vec<String> = (200..300).map(|i| format!("{{\"n\": {i}}}")).collect();
    std::fs::write(folder.join("c.json"), format!("[\n{}\n]", array.join(",\n"))).unwrap();
    let csv: String = std::iter::once("n,extra\n".to_string())
        .chain((300..400).map(|i| format!("{i},\n")))
        .collect();
    std::fs::write(folder.join("d.csv"), csv).unwrap();
    std::fs::write(folder.join("notes.txt"), "not matched").unwrap();
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("q"), QueueSettings::default()).unwrap());
    let state = dir.path().join("state");
    let pattern = || config("*[nvz]", ObjectFormat::Auto);

    let first = read_once(&folder, &state, &queue, pattern()).await;
    let got = events(&first);
    assert_eq!(got.len(), 400, "every line, element and row once");
    assert_eq!(
        got[350],
        serde_json::json!({"n": "350"}),
        "CSV cells are strings, empty ones left out"
    );
    assert!(
        first
            .iter()
            .all(|d| d.maybe_committed && d.key.starts_with("object:drops:"))
    );
    assert!(first.iter().any(|d| d.key.starts_with("object:drops:day=1/a.ndjson@")));
    assert_eq!(ledger_counts(&state)["done"], 4);

    assert!(
        read_once(&folder, &state, &queue, pattern()).await.is_empty(),
        "a second run reads nothing"
    );

    // A rewritten object is a new version: new data, under new keys.
    std::fs::write(folder.join("day=1/a.ndjson"), ndjson(1000, 10)).unwrap();
    let changed = read_once(&folder, &state, &queue, pattern()).await;
    assert_eq!(events(&changed).len(), 10);
    assert!(changed.iter().all(|d| first.iter().all(|f| f.key != d.key)));

    // With the ledger gone, the same versions are read under the same keys
    // (flagged, so the sinks find them in their commit records).
    let again = read_once(&folder, &dir.path().join("fresh-state"), &queue, pattern()).await;
    let keys = |b: &[Delivery]| {
        b.iter()
            .map(|d| d.key.clone())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert!(
        keys(&first)
            .iter()
            .filter(|k| !k.contains("a.ndjson"))
            .all(|k| keys(&again).contains(k))
    );
}

/// A version cut off by a crash is read again in the batches it was first
/// cut into, under the same keys, even when `max_batch_bytes` changed in
/// between: otherwise a sink that committed the first key would skip a
/// larger first batch and lose the lines beyond what it holds.
#[tokio::test]
async fn a_version_read_again_is_cut_as_it_was_first_whatever_the_size_now() {
    let dir = sluice_testkit::tempdir().unwrap();
    let folder = dir.path().join("landing");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("a.ndjson"), ndjson(0, 1000)).unwrap();
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("q"), QueueSettings::default()).unwrap());
    let state = dir.path().join("state");
    let sized = |bytes: usize| ObjectsSourceConfig {
        max_batch_bytes: Some(bytes),
        ..config("*", ObjectFormat::Auto)
    };
    let batches = |got: &[Delivery]| {
        let mut b: Vec<(String, bytes::Bytes)> = got.iter().map(|d| (d.key.clone(), d.payload.clone())).collect();
        b.sort();
        b
    };

    let first = read_once(&folder, &state, &queue, sized(1024)).await;
    assert!(first.len() > 5, "{} batches", first.len());
    // As a killed run leaves it: claimed, its batches maybe committed.
    rusqlite::Connection::open(Ledger::path(&state, "drops"))
        .unwrap()
        .execute("UPDATE objects SET state = 'reading'", [])
        .unwrap();
    let again = read_once(&folder, &state, &queue, sized(8192)).await;
    assert!(
        batches(&again) == batches(&first),
        "read again as {} batches, first as {}",
        again.len(),
        first.len()
    );

    std::fs::write(folder.join("b.ndjson"), ndjson(1000, 1000)).unwrap();
    let new = read_once(&folder, &state, &queue, sized(8192)).await;
    assert_eq!(events(&new).len(), 1000);
    assert!(
        new.len() < first.len() && new.iter().any(|d| d.payload.len() > 1024 + 16),
        "a version found now is cut with the size in force"
    );
}

#[tokio::test]
async fn an_unreadable_object_is_a_dead_letter_naming_it_and_can_be_redriven() {
    let dir = sluice_testkit::tempdir().unwrap();
    let folder = dir.path().join("landing");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("broken.json"), "[{\"n\": 1}, {\"n\": 2}, {\"n\"").unwrap();
    // NDJSON under a name that says JSON array: fails until the format is set.
    std::fs::write(folder.join("misnamed.json"), ndjson(10, 5)).unwrap();
    std::fs::write(folder.join("rows.csv"), "n,m\n1,2\n3\n4,5\n").unwrap();
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("q"), QueueSettings::default()).unwrap());
    let state = dir.path().join("state");

    let got = read_once(&folder, &state, &queue, config("*", ObjectFormat::Auto)).await;
    assert_eq!(events(&got).len(), 4, "the elements before the break and the good rows");
    let letters = queue.list(DeadLetterFilter::default(), 10).await.unwrap();
    let unreadable: Vec<_> = letters.iter().filter(|l| l.reason == "unreadable_input").collect();
    assert_eq!(unreadable.len(), 2);
    assert!(
        unreadable[0].detail.starts_with("broken.json (version "),
        "{}",
        unreadable[0].detail
    );
    assert!(
        unreadable[0].detail.contains("not a JSON array"),
        "{}",
        unreadable[0].detail
    );
    assert!(unreadable[0].batch_key.starts_with("object:drops:broken.json@"));
    let bad_rows: Vec<_> = letters.iter().filter(|l| l.reason == "bad_record").collect();
    assert_eq!((bad_rows.len(), &bad_rows[0].bytes[..]), (1, &b"3"[..]));
    assert!(bad_rows[0].detail.contains("record 2"), "{}", bad_rows[0].detail);
    assert_eq!(ledger_counts(&state)["failed"], 2);

    // Redriven with the format fixed, the misnamed object is read whole.
    let ledger = Ledger::open(&Ledger::path(&state, "drops")).unwrap();
    assert_eq!(ledger.redrive(Some("misnamed.json")).unwrap(), 1);
    drop(ledger);
    let fixed = read_once(&folder, &state, &queue, config("misnamed.json", ObjectFormat::Ndjson)).await;
    assert_eq!(events(&fixed).len(), 5);

    // A broken object fixed in place is a new version, read whole; redriving
    // the broken version then fails it again, saying why.
    std::fs::write(folder.join("broken.json"), "[{\"n\": 1}, {\"n\": 2}, {\"n\": 3}]").unwrap();
    Ledger::open(&Ledger::path(&state, "drops"))
        .unwrap()
        .redrive(None)
        .unwrap();
    let rewritten = read_once(&folder, &state, &queue, config("broken.json", ObjectFormat::Auto)).await;
    assert_eq!(events(&rewritten).len(), 3);
    let failed = Ledger::open(&Ledger::path(&state, "drops"))
        .unwrap()
        .list(Some("failed"), 10)
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]
            .error
            .as_deref()
            .unwrap()
            .contains("replaced before this version was read")
    );
    assert_eq!(ledger_counts(&state)["done"], 3);
}

#[tokio::test]
async fn one_holder_of_the_lease_reads_and_another_takes_over_when_it_stops() {
    let dir = sluice_testkit::tempdir().unwrap();
    let folder = dir.path().join("landing");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("a.ndjson"), ndjson(0, 50)).unwrap();
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("q"), QueueSettings::default()).unwrap());
    let leases: Arc<LocalLeases> = Arc::new(LocalLeases::default());
    let start = |state: &str| {
        let (stop, shutdown) = watch::channel(false);
        let ctx = SourceContext {
            name: "drops".into(),
            queue: queue.clone(),
            dead_letters: queue.clone(),
            shutdown,
            until_idle: false,
            state_dir: dir.path().join(state),
            checkpoints: crate::sources::local_checkpoints(&dir.path().join(state)),
            leases: leases.clone(),
            telemetry: sluice_core::telemetry::SourceTelemetry::new("test"),
        };
        let store = Arc::new(LocalFileSystem::new_with_prefix(&folder).unwrap());
        let mut settled = config("*", ObjectFormat::Auto);
        settled.settle_secs = 0;
        let source = ObjectsSource::new(settled, store, Path::default(), None).unwrap();
        (stop, tokio::spawn(Box::new(source).run(ctx)))
    };
    let (stop_first, first) = start("first");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (stop_second, second) = start("second");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(ledger_counts(&dir.path().join("first"))["done"], 1);
    assert!(
        !Ledger::path(&dir.path().join("second"), "drops").exists()
            || ledger_counts(&dir.path().join("second"))["done"] == 0,
        "the second replica stands by while the first holds the lease"
    );
    stop_first.send(true).unwrap();
    first.await.unwrap().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ledger_counts(&dir.path().join("second"))["done"] == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ledger_counts(&dir.path().join("second"))["done"], 1, "it took over");
    stop_second.send(true).unwrap();
    second.await.unwrap().unwrap();
    let got = queue.receive(10_000).await.unwrap();
    assert!(
        got.iter().all(|d| d.maybe_committed),
        "a takeover's batches are checked by the sinks"
    );
}
