use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use bytes::Bytes;
use chrono::DateTime;
use sluice_core::{Accepted, Event, Sink};
use url::Url;

use super::*;
use crate::{
    StoreLocation,
    inspect::{distinct_strings, summarize},
    partition::PartitionKey,
};

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
        uri: uri.into(),
        table_template: None,
        partition_by: vec![PartitionKey::Dt, PartitionKey::Hour],
        flush_interval_secs: 5,
        max_file_bytes: 8 * 1024 * 1024,
        dedupe_window_secs: 0,
        dedupe_max_ids: 1000,
        storage_options: Default::default(),
        compression: crate::ParquetCompression::Snappy,
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

async fn open(dir: &sluice_testkit::TempDir) -> (LakeSink, StoreLocation) {
    open_with(dir, |_| {}).await
}

/// A sink on `dir/t` with the test config, changed by `adjust`.
pub(crate) async fn open_with(
    dir: &sluice_testkit::TempDir,
    adjust: impl FnOnce(&mut LakeSinkConfig),
) -> (LakeSink, StoreLocation) {
    let url = StoreLocation::from(Url::from_directory_path(dir.path().join("t")).unwrap());
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
    let dir = sluice_testkit::tempdir().unwrap();
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

/// One event `id` in a batch under `key`, at 00:10 on 2026-11-01.
fn one(id: &str) -> Vec<Event> {
    vec![event(0, id, "2026-11-01T00:10:00Z", "1")]
}

/// Offers batch `key` (one event `id`) flagged `maybe_committed`: whether
/// the sink found it committed (otherwise it is buffered).
async fn found_committed(sink: &mut LakeSink, key: &str, id: &str) -> bool {
    matches!(
        sink.accept(key, true, one(id)).await.unwrap(),
        Accepted::AlreadyCommitted
    )
}

/// Two writers on one table (two replicas): a batch the other committed
/// after this sink first asked is seen from the commits that came since,
/// and one committed before it asked from the table it kept.
#[tokio::test]
async fn batches_another_writer_commits_are_recognised_as_they_come() {
    let dir = sluice_testkit::tempdir().unwrap();
    let (mut first, url) = open(&dir).await;
    let (mut second, _) = open(&dir).await;
    second.accept("before", false, one("a")).await.unwrap();
    second.flush().await.unwrap();
    assert!(found_committed(&mut first, "before", "a").await);
    assert!(!found_committed(&mut first, "mine", "b").await);
    for key in ["later-1", "later-2"] {
        second.accept(key, false, one(key)).await.unwrap();
        second.flush().await.unwrap();
    }
    first.flush().await.unwrap();
    for key in ["later-1", "later-2", "mine", "before"] {
        assert!(found_committed(&mut first, key, key).await, "{key}");
    }
    assert!(!found_committed(&mut first, "never", "c").await);
    first.flush().await.unwrap();
    assert_eq!(summarize(&url).await.unwrap().rows, 5);
}

/// A table whose early commit files are gone (cleaned up after a
/// checkpoint): a batch committed before the sink first asked is found by
/// the kernel, from the checkpoint.
#[tokio::test]
async fn batches_committed_before_a_checkpoint_are_recognised() {
    let dir = sluice_testkit::tempdir().unwrap();
    let (mut writer, url) = open(&dir).await;
    writer.accept("old", false, one("a")).await.unwrap();
    writer.flush().await.unwrap();
    deltalake::checkpoints::create_checkpoint(&writer.state.lock().await.table, None)
        .await
        .unwrap();
    let log = dir.path().join("t/_delta_log");
    std::fs::remove_file(log.join(format!("{:020}.json", 0))).unwrap();
    let (mut sink, _) = open(&dir).await;
    assert!(found_committed(&mut sink, "old", "a").await);
    assert!(!found_committed(&mut sink, "new", "b").await);
    sink.flush().await.unwrap();
    assert_eq!(summarize(&url).await.unwrap().rows, 2);
}

#[tokio::test]
async fn undecodable_rows_are_rejected_and_the_rest_written() {
    let dir = sluice_testkit::tempdir().unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_partition_decoded_in_two_halves_keeps_every_row_and_rejects_only_its_bad_lines() {
    let dir = sluice_testkit::tempdir().unwrap();
    let (mut sink, url) = open(&dir).await;
    let count = 2 * SPLIT_DECODE_EVENTS as u32 + 1;
    let bad_lines = [7, count - 3];
    let events: Vec<Event> = (0..count)
        .map(|line| {
            let n = if bad_lines.contains(&line) {
                "\"NaN\"".to_string()
            } else {
                line.to_string()
            };
            event(line, &format!("e{line}"), "2026-11-01T00:10:00Z", &n)
        })
        .collect();
    let Accepted::Buffered { rejected } = sink.accept("k", false, events).await.unwrap() else {
        panic!("buffered expected")
    };
    let mut rejected_lines: Vec<u32> = rejected.iter().map(|r| r.event.line).collect();
    rejected_lines.sort_unstable();
    assert_eq!(rejected_lines, bad_lines, "one bad line in each half");
    let report = sink.flush().await.unwrap();
    assert_eq!(report.rows, u64::from(count) - 2);
    let ids = distinct_strings(&url, "id").await.unwrap();
    let expected: std::collections::HashSet<String> = (0..count)
        .filter(|line| !bad_lines.contains(line))
        .map(|line| format!("e{line}"))
        .collect();
    assert_eq!(ids, expected);
    let summary = summarize(&url).await.unwrap();
    assert_eq!(summary.rows, u64::from(count) - 2);
    // The halves reach the file in order: its rows run in line order.
    let [file] = summary.file_paths.as_slice() else {
        panic!("one file expected, got {:?}", summary.file_paths)
    };
    let bytes = Bytes::from(std::fs::read(dir.path().join("t").join(file)).unwrap());
    let mut written = Vec::new();
    for batch in deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes, 8192).unwrap() {
        let batch = batch.unwrap();
        let n = batch.column_by_name("n").unwrap();
        let n = n.as_any().downcast_ref::<arrow_array::Int64Array>().unwrap();
        written.extend(n.values().iter().copied());
    }
    let in_line_order: Vec<i64> = (0..count)
        .filter(|line| !bad_lines.contains(line))
        .map(i64::from)
        .collect();
    assert_eq!(written, in_line_order);
}

#[tokio::test]
async fn reopening_with_other_columns_is_refused() {
    let dir = sluice_testkit::tempdir().unwrap();
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
    let dir = sluice_testkit::tempdir().unwrap();
    let (mut sink, url) = open_with(&dir, |c| c.dedupe_window_secs = 600).await;
    let a = event(0, "a", "2026-11-01T00:10:00Z", "1");
    flush_one(&mut sink, "k1", vec![a.clone()]).await;
    let report = flush_one(&mut sink, "k2", vec![a, event(1, "b", "2026-11-01T00:10:00Z", "2")]).await;
    assert_eq!((report.rows, report.duplicates_dropped), (1, 1));
    assert_eq!(summarize(&url).await.unwrap().rows, 2);
}

#[tokio::test]
async fn without_a_window_repeats_in_later_flushes_are_written() {
    let dir = sluice_testkit::tempdir().unwrap();
    let (mut sink, url) = open(&dir).await;
    let a = event(0, "a", "2026-11-01T00:10:00Z", "1");
    flush_one(&mut sink, "k1", vec![a.clone()]).await;
    flush_one(&mut sink, "k2", vec![a]).await;
    assert_eq!(summarize(&url).await.unwrap().rows, 2, "left for compaction");
}

#[tokio::test]
async fn a_reset_forgets_the_ids_of_discarded_batches() {
    let dir = sluice_testkit::tempdir().unwrap();
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
    let dir = sluice_testkit::tempdir().unwrap();
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

    let dir = sluice_testkit::tempdir().unwrap();
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

/// Routes of a test registry: `page` 1-0-0, 1-0-1 (adds `ref`) and 1-0-2
/// (changes `n`'s type) to one table, `click` 1-0-0 to another.
struct TestRoutes {
    dir: std::path::PathBuf,
}

#[async_trait::async_trait]
impl routed::Routes for TestRoutes {
    async fn route(&self, key: &str) -> Result<routed::Route, routed::RouteError> {
        let mut fields = schema().fields().iter().map(|f| f.as_ref().clone()).collect::<Vec<_>>();
        let table = match key {
            "iglu:t/page/jsonschema/1-0-0" => "page_1",
            "iglu:t/page/jsonschema/1-0-1" => {
                fields.push(Field::new("ref", DataType::Utf8, true));
                "page_1"
            }
            "iglu:t/page/jsonschema/1-0-2" => {
                fields[2] = Field::new("n", DataType::Utf8, true);
                "page_1"
            }
            "iglu:t/click/jsonschema/1-0-0" => "click_1",
            other => return Err(routed::RouteError::Unknown(format!("{other} is not registered"))),
        };
        Ok(routed::Route {
            location: StoreLocation::from(Url::from_directory_path(self.dir.join(table)).unwrap()),
            data_schema: Arc::new(Schema::new(fields)),
            json_text_paths: vec![vec!["extra".into()]],
        })
    }
}

fn described(id: &str, key: Option<&str>, extra: &str) -> Event {
    let text = format!(r#"{{"id":"{id}","ts":"2026-11-01T00:10:00Z","n":1{extra}}}"#);
    let mut e = Event::from_line(id.as_bytes()[0] as u32, Bytes::from(text));
    e.id = Some(Arc::from(id));
    e.time_us = Some(
        DateTime::parse_from_rfc3339("2026-11-01T00:10:00Z")
            .unwrap()
            .timestamp_micros(),
    );
    e.schema = key.map(Arc::from);
    e
}

#[tokio::test]
async fn routed_events_go_to_their_models_table_which_gains_columns_in_the_data_commit() {
    let dir = sluice_testkit::tempdir().unwrap();
    let routes = Arc::new(TestRoutes {
        dir: dir.path().to_path_buf(),
    });
    let open = || routed::RoutedLakeSink::new(config(""), "/id", routes.clone());
    let table = |name: &str| StoreLocation::from(Url::from_directory_path(dir.path().join(name)).unwrap());
    let (v100, v101, v102) = (
        Some("iglu:t/page/jsonschema/1-0-0"),
        Some("iglu:t/page/jsonschema/1-0-1"),
        Some("iglu:t/page/jsonschema/1-0-2"),
    );
    let click = Some("iglu:t/click/jsonschema/1-0-0");
    let mut sink = open();
    let first = vec![
        described("a", v100, ""),
        described("b", v100, ""),
        described("c", click, r#","extra":{"k":1}"#),
    ];
    assert_eq!(rejected_count(&sink.accept("batch-1", false, first).await.unwrap()), 0);
    assert_eq!(sink.flush().await.unwrap().rows, 3);

    let second = vec![
        described("d", v101, r#","ref":"x""#),
        described("e", v100, ""),
        described("f", v102, ""),
        described("g", Some("iglu:t/other/jsonschema/1-0-0"), ""),
        described("h", None, ""),
    ];
    let reasons = |accepted: &Accepted| -> Vec<String> {
        match accepted {
            Accepted::Buffered { rejected } => rejected.iter().map(|r| r.reason.clone()).collect(),
            Accepted::AlreadyCommitted => panic!("unexpected AlreadyCommitted"),
        }
    };
    let accepted = sink.accept("batch-2", false, second.clone()).await.unwrap();
    let mut got = reasons(&accepted);
    got.sort();
    assert_eq!(got, ["incompatible_schema", "unknown_schema", "unknown_schema"]);
    assert_eq!(sink.flush().await.unwrap().rows, 2);

    assert_eq!(summarize(&table("page_1")).await.unwrap().rows, 4);
    assert_eq!(summarize(&table("click_1")).await.unwrap().rows, 1);
    let refs = distinct_strings(&table("page_1"), "ref").await.unwrap();
    assert_eq!(refs, ["x".to_string()].into(), "old files read without the new column");
    // The commit that brought the column is the one with its first rows.
    let log = std::fs::read_to_string(dir.path().join("page_1/_delta_log/00000000000000000002.json")).unwrap();
    assert!(
        log.contains("\"metaData\"") && log.contains("\"add\"") && log.contains("ref"),
        "{log}"
    );
    let loaded = table("page_1").builder().unwrap().load().await.unwrap();
    let columns: Vec<String> = loaded
        .snapshot()
        .unwrap()
        .schema()
        .fields()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(columns, ["id", "ts", "n", "extra", "ref", "dt", "hour"]);

    // A fresh process given batch 2 again writes nothing twice.
    let mut again = open();
    let accepted = again.accept("batch-2", true, second).await.unwrap();
    assert_eq!(reasons(&accepted).len(), 3);
    assert_eq!(again.flush().await.unwrap().rows, 0);
    assert_eq!(summarize(&table("page_1")).await.unwrap().rows, 4);

    // A process whose first event for a table conflicts with its columns
    // dead-letters it instead of failing the batch.
    let mut third = open();
    let accepted = third
        .accept("batch-3", false, vec![described("i", v102, "")])
        .await
        .unwrap();
    assert_eq!(reasons(&accepted), ["incompatible_schema"]);
}

/// An event whose `extra` column holds `mark` (as JSON text).
fn marked(line: u32, id: Option<&str>, ts: &str, mark: &str) -> Event {
    let id_member = id.map_or(String::new(), |id| format!(r#""id":"{id}","#));
    let mut e = Event::from_line(
        line,
        Bytes::from(format!(r#"{{{id_member}"ts":"{ts}","extra":"{mark}"}}"#)),
    );
    e.id = id.map(Arc::from);
    e.time_us = Some(DateTime::parse_from_rfc3339(ts).unwrap().timestamp_micros());
    e
}

#[tokio::test]
async fn replayed_events_replace_their_earlier_rows_in_one_commit() {
    let dir = sluice_testkit::tempdir().unwrap();
    let (mut sink, url) = open(&dir).await;
    let first = vec![
        marked(0, Some("a"), "2026-11-01T00:10:00Z", "v1"),
        marked(1, Some("b"), "2026-11-01T00:20:00Z", "v1"),
        marked(2, Some("c"), "2026-11-01T01:10:00Z", "v1"),
    ];
    sink.accept("file:in#0", false, first).await.unwrap();
    sink.flush().await.unwrap();
    let untouched: Vec<String> = summarize(&url)
        .await
        .unwrap()
        .file_paths
        .into_iter()
        .filter(|p| p.contains("hour=01"))
        .collect();

    let replay = vec![
        marked(0, Some("a"), "2026-11-01T00:10:00Z", "v2"),
        marked(1, Some("b"), "2026-11-01T00:20:00Z", "v2"),
        marked(2, Some("b"), "2026-11-01T00:20:00Z", "v2"),
        marked(3, Some("d"), "2026-11-01T00:30:00Z", "v2"),
        marked(4, None, "2026-11-01T00:40:00Z", "v2"),
    ];
    let accepted = sink.accept("replay/r1/file:in#0", false, replay).await.unwrap();
    let Accepted::Buffered { rejected } = accepted else {
        panic!("a replay key is new")
    };
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].reason, reason::REPLAY_WITHOUT_ID);
    let report = sink.flush().await.unwrap();
    assert_eq!((report.rows, report.duplicates_dropped), (3, 1));

    let summary = summarize(&url).await.unwrap();
    assert_eq!(summary.rows, 4, "a and b replaced, c kept, d added");
    assert_eq!(
        distinct_strings(&url, "id").await.unwrap(),
        ["a", "b", "c", "d"].map(String::from).into()
    );
    assert_eq!(
        distinct_strings(&url, "extra").await.unwrap(),
        ["v1", "v2"].map(String::from).into()
    );
    for path in &untouched {
        assert!(summary.file_paths.contains(path), "{path} holds no replayed id");
    }

    // The same replay again (a new sink after a crash) is already committed;
    // a second replay replaces again.
    drop(sink);
    let (mut again, _) = open(&dir).await;
    assert!(matches!(
        again
            .accept(
                "replay/r1/file:in#0",
                true,
                vec![marked(0, Some("a"), "2026-11-01T00:10:00Z", "v2")]
            )
            .await
            .unwrap(),
        Accepted::AlreadyCommitted
    ));
    again
        .accept(
            "replay/r2/file:in#0",
            false,
            vec![marked(0, Some("c"), "2026-11-01T01:10:00Z", "v3")],
        )
        .await
        .unwrap();
    again.flush().await.unwrap();
    assert_eq!(summarize(&url).await.unwrap().rows, 4);
    assert_eq!(
        distinct_strings(&url, "extra").await.unwrap(),
        ["v2", "v3"].map(String::from).into()
    );
}

/// A commit whose table cannot be read back right after still counts: the
/// flush succeeds, its ids stay seen (a copy under another key, such as a
/// redriven dead letter, is dropped as a duplicate), and the next flush
/// reads the table before committing.
#[tokio::test]
async fn a_table_unreadable_after_its_commit_keeps_the_commit_and_its_ids() {
    let dir = sluice_testkit::tempdir().unwrap();
    let (mut sink, url) = open_with(&dir, |c| c.dedupe_window_secs = 3600).await;
    sink.accept("first", false, one("a")).await.unwrap();
    sink.state.lock().await.fail_next_read_back = true;
    let report = sink.flush().await.unwrap();
    assert_eq!((report.rows, report.batches), (1, 1));
    assert!(sink.state.lock().await.stale, "the table could not be read back");

    sink.accept("copy", false, one("a")).await.unwrap();
    sink.accept("second", false, one("b")).await.unwrap();
    let report = sink.flush().await.unwrap();
    assert_eq!((report.rows, report.duplicates_dropped), (1, 1));
    assert!(!sink.state.lock().await.stale);
    let summary = summarize(&url).await.unwrap();
    assert_eq!(summary.rows, 2);
}
