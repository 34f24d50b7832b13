use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use bytes::Bytes;
use chrono::DateTime;
use sluice_core::{Accepted, Event, Sink};
use url::Url;

use super::*;
use crate::{TableLocation, inspect::summarize, partition::PartitionKey};

pub(crate) fn schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::Utf8, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("n", DataType::Int64, true),
        Field::new("extra", DataType::Utf8, true),
    ])
}

pub(crate) fn config(uri: &str) -> LakeSinkConfig {
    LakeSinkConfig {
        inputs: vec![],
        uri: uri.into(),
        partition_by: vec![PartitionKey::Dt, PartitionKey::Hour],
        flush_interval_secs: 5,
        max_file_bytes: 8 * 1024 * 1024,
        dedupe_window_secs: 0,
        dedupe_max_ids: 1000,
        storage_options: Default::default(),
        compaction: Default::default(),
    }
}

pub(crate) fn event(line: u32, id: &str, ts: &str, n: &str) -> Event {
    let text = format!(r#"{{"id":"{id}","ts":"{ts}","n":{n},"extra":{{"k":[1,2]}}}}"#);
    let mut e = Event::from_line(line, Bytes::from(text));
    e.id = Some(Arc::from(id));
    e.time_us = Some(DateTime::parse_from_rfc3339(ts).unwrap().timestamp_micros());
    e
}

async fn open(dir: &tempfile::TempDir) -> (LakeSink, TableLocation) {
    open_with(dir, |_| {}).await
}

/// A sink on `dir/t` with the test config, changed by `adjust`.
pub(crate) async fn open_with(
    dir: &tempfile::TempDir,
    adjust: impl FnOnce(&mut LakeSinkConfig),
) -> (LakeSink, TableLocation) {
    let url = TableLocation::from(Url::from_directory_path(dir.path().join("t")).unwrap());
    let mut config = config(url.url().as_str());
    adjust(&mut config);
    let sink = LakeSink::open(url.clone(), &config, &schema(), vec![vec!["extra".into()]], "/id")
        .await
        .unwrap();
    (sink, url)
}

fn rejected_count(a: &Accepted) -> usize {
    match a {
        Accepted::Buffered { rejected } => rejected.len(),
        Accepted::AlreadyCommitted => panic!("unexpected AlreadyCommitted"),
    }
}

#[tokio::test]
async fn commits_partitioned_rows_and_skips_committed_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sink, url) = open(&dir).await;
    let a = vec![
        event(0, "a", "2026-11-01T00:10:00Z", "1"),
        event(1, "b", "2026-11-01T01:10:00Z", "2"),
    ];
    let b = vec![
        event(0, "c", "2026-11-01T01:20:00Z", "3"),
        event(1, "a", "2026-11-01T00:10:00Z", "1"),
    ];
    assert_eq!(
        rejected_count(&sink.accept("batch-a", false, a.clone()).await.unwrap()),
        0
    );
    assert_eq!(rejected_count(&sink.accept("batch-b", false, b).await.unwrap()), 0);
    let report = sink.flush().await.unwrap();
    assert_eq!((report.rows, report.batches, report.duplicates_dropped), (3, 2, 1));

    let summary = summarize(&url).await.unwrap();
    assert_eq!(summary.rows, 3);
    assert_eq!(
        summary.partitions.keys().cloned().collect::<Vec<_>>(),
        vec!["dt=2026-11-01/hour=00".to_string(), "dt=2026-11-01/hour=01".to_string()]
    );
    for path in &summary.file_paths {
        assert!(
            path.starts_with("dt=2026-11-01/hour=0") && !path.contains(".."),
            "{path}"
        );
        assert!(dir.path().join("t").join(path).is_file(), "{path} missing");
    }

    // A fresh process (new sink) recognises the committed batch.
    drop(sink);
    let (mut again, _) = open(&dir).await;
    assert!(matches!(
        again.accept("batch-a", true, a).await.unwrap(),
        Accepted::AlreadyCommitted
    ));
    assert_eq!(again.flush().await.unwrap(), FlushReport::default());
    assert_eq!(summarize(&url).await.unwrap().rows, 3);
}

#[tokio::test]
async fn undecodable_rows_are_rejected_and_the_rest_written() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sink, url) = open(&dir).await;
    let good = event(0, "a", "2026-11-01T00:10:00Z", "1");
    let bad = event(1, "b", "2026-11-01T00:10:00Z", "\"not a number\"");
    let accepted = sink.accept("k", false, vec![good, bad]).await.unwrap();
    let Accepted::Buffered { rejected } = accepted else {
        panic!()
    };
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].event.line, 1);
    assert!(rejected[0].reason.starts_with("encode"));
    sink.flush().await.unwrap();
    assert_eq!(summarize(&url).await.unwrap().rows, 1);
}

#[tokio::test]
async fn reopening_with_other_columns_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, url) = open(&dir).await;
    drop(sink);
    let other = Schema::new(vec![Field::new("id", DataType::Int64, true)]);
    let err = LakeSink::open(url.clone(), &config(url.url().as_str()), &other, vec![], "/id")
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("id:Int64"), "{err}");
}

async fn flush_one(sink: &mut LakeSink, key: &str, events: Vec<Event>) -> FlushReport {
    assert_eq!(rejected_count(&sink.accept(key, false, events).await.unwrap()), 0);
    sink.flush().await.unwrap()
}

#[tokio::test]
async fn the_dedupe_window_drops_repeats_across_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sink, url) = open_with(&dir, |c| c.dedupe_window_secs = 600).await;
    let a = event(0, "a", "2026-11-01T00:10:00Z", "1");
    flush_one(&mut sink, "k1", vec![a.clone()]).await;
    let report = flush_one(&mut sink, "k2", vec![a, event(1, "b", "2026-11-01T00:10:00Z", "2")]).await;
    assert_eq!((report.rows, report.duplicates_dropped), (1, 1));
    assert_eq!(summarize(&url).await.unwrap().rows, 2);
}

#[tokio::test]
async fn without_a_window_repeats_in_later_flushes_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sink, url) = open(&dir).await;
    let a = event(0, "a", "2026-11-01T00:10:00Z", "1");
    flush_one(&mut sink, "k1", vec![a.clone()]).await;
    flush_one(&mut sink, "k2", vec![a]).await;
    assert_eq!(summarize(&url).await.unwrap().rows, 2, "left for compaction");
}

#[tokio::test]
async fn a_reset_forgets_the_ids_of_discarded_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sink, url) = open_with(&dir, |c| c.dedupe_window_secs = 600).await;
    let a = event(0, "a", "2026-11-01T00:10:00Z", "1");
    sink.accept("k1", false, vec![a.clone()]).await.unwrap();
    sink.reset();
    let report = flush_one(&mut sink, "k1", vec![a]).await;
    assert_eq!(
        report.rows, 1,
        "the redelivered event is not a duplicate of its lost copy"
    );
    assert_eq!(summarize(&url).await.unwrap().rows, 1);
}

#[tokio::test]
async fn bucket_partitions_hash_the_event_id_or_a_field() {
    let dir = tempfile::tempdir().unwrap();
    let by_id: PartitionKey = "bucket(4, /id)".parse().unwrap();
    let (mut sink, url) = open_with(&dir, |c| c.partition_by.push(by_id)).await;
    let events: Vec<Event> = (0..40)
        .map(|i| event(i, &format!("id-{i}"), "2026-11-01T00:10:00Z", "1"))
        .collect();
    flush_one(&mut sink, "k", events).await;
    let summary = summarize(&url).await.unwrap();
    assert_eq!(summary.rows, 40);
    assert_eq!(summary.partitions.len(), 4, "{:?}", summary.partitions);
    let expected = crate::partition::bucket_of("id-7", 4);
    assert!(
        summary
            .partitions
            .contains_key(&format!("bucket={expected}/dt=2026-11-01/hour=00"))
    );

    let dir = tempfile::tempdir().unwrap();
    let by_n: PartitionKey = "bucket(8, /n)".parse().unwrap();
    let (mut sink, url) = open_with(&dir, |c| c.partition_by.push(by_n)).await;
    let mut no_n = event(1, "b", "2026-11-01T00:10:00Z", "null");
    no_n.payload = Bytes::from_static(br#"{"id":"b","ts":"2026-11-01T00:10:00Z"}"#);
    let Accepted::Buffered { rejected } = sink
        .accept("k", false, vec![event(0, "a", "2026-11-01T00:10:00Z", "5"), no_n])
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].reason, reason::MISSING_PARTITION_VALUE);
    sink.flush().await.unwrap();
    let summary = summarize(&url).await.unwrap();
    assert_eq!(summary.rows, 1);
    assert!(summary.partitions.contains_key(&format!(
        "bucket={}/dt=2026-11-01/hour=00",
        crate::partition::bucket_of("5", 8)
    )));
}
