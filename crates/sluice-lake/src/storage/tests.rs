//! Location checks, and tables on the local S3-compatible server
//! (`SLUICE_TEST_S3`, moto's server started by `scripts/test`).

use std::sync::atomic::{AtomicU32, Ordering};

use sluice_core::{Accepted, Sink};

use super::*;
use crate::{
    LakeSink,
    compaction::{CompactionOptions, Scope, compact},
    distinct_strings,
    sink::tests::{config, event, schema},
    summarize,
};

fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn s3_locations_take_s3_options_and_name_a_bad_key() {
    let url = Url::parse("s3://lake/events").unwrap();
    StoreLocation::new(
        url.clone(),
        options(&[("endpoint", "http://127.0.0.1:9000"), ("region", "eu-west-1")]),
    )
    .unwrap();
    let err = StoreLocation::new(url, options(&[("endpont", "x")])).unwrap_err();
    assert!(err.starts_with("storage_options.endpont: not an S3 option"), "{err}");
}

#[test]
fn retry_bounds_are_read_and_bad_ones_named() {
    let retry = super::retry_config(&options(&[("max_retries", "2"), ("retry_timeout", "5s")])).unwrap();
    assert_eq!((retry.max_retries, retry.retry_timeout.as_secs()), (2, 5));
    let url = Url::parse("s3://lake/events").unwrap();
    StoreLocation::new(url.clone(), options(&[("retry_timeout", "30")])).unwrap();
    let err = StoreLocation::new(url, options(&[("retry_timeout", "soon")])).unwrap_err();
    assert!(
        err.starts_with("storage_options.retry_timeout: \"soon\" is not a number"),
        "{err}"
    );
}

#[test]
fn other_schemes_and_bucketless_urls_are_refused() {
    let err = StoreLocation::new(Url::parse("gs://lake/events").unwrap(), BTreeMap::new()).unwrap_err();
    assert!(err.contains("scheme \"gs\" is not supported; allowed"), "{err}");
    let err = StoreLocation::new(Url::parse("s3:///events").unwrap(), BTreeMap::new()).unwrap_err();
    assert!(err.contains("names a bucket"), "{err}");
    let err = StoreLocation::new(Url::parse("file:///tmp/t/").unwrap(), options(&[("region", "x")])).unwrap_err();
    assert!(err.contains("only apply to s3://"), "{err}");
}

/// A table in a new bucket of the test S3 server.
async fn s3_table(name: &str) -> StoreLocation {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let endpoint = sluice_testkit::services::Service::S3.url();
    let bucket = format!(
        "sluice-lake-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("the test S3 server at {endpoint} (run scripts/test): {e}"));
    assert!(
        created.status().is_success(),
        "creating bucket {bucket}: {}",
        created.status()
    );
    StoreLocation::new(
        Url::parse(&format!("s3://{bucket}/{name}")).unwrap(),
        options(&[
            ("endpoint", &endpoint),
            ("region", "us-east-1"),
            ("access_key_id", "test"),
            ("secret_access_key", "test"),
        ]),
    )
    .unwrap()
}

async fn open(location: &StoreLocation) -> LakeSink {
    LakeSink::open(
        location.clone(),
        &config(location.url().as_str()),
        &schema(),
        vec![vec!["extra".into()]],
        "/id",
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn an_s3_table_is_written_read_back_and_knows_its_batches() {
    if sluice_testkit::services::s3().is_none() {
        return;
    }
    let location = s3_table("events").await;
    let mut sink = open(&location).await;
    let events = vec![
        event(0, "a", "2026-11-01T00:10:00Z", "1"),
        event(1, "b", "2026-11-01T01:10:00Z", "2"),
    ];
    sink.accept("batch-a", false, events.clone()).await.unwrap();
    assert_eq!(sink.flush().await.unwrap().rows, 2);

    let summary = summarize(&location).await.unwrap();
    assert_eq!((summary.rows, summary.partitions.len()), (2, 2));
    let ids = distinct_strings(&location, "id").await.unwrap();
    assert_eq!(ids, ["a".to_string(), "b".to_string()].into());

    drop(sink);
    let mut again = open(&location).await;
    assert!(matches!(
        again.accept("batch-a", true, events).await.unwrap(),
        Accepted::AlreadyCommitted
    ));
}

/// Writers on several "machines" (here: sinks that share nothing but the
/// bucket) commit at once, with a compaction running among them. Every
/// commit is a put-if-absent of the next log version, so a lost race is
/// retried, never overwritten: all rows are there exactly once.
#[tokio::test]
async fn concurrent_writers_and_a_compaction_on_s3_lose_no_commit() {
    if sluice_testkit::services::s3().is_none() {
        return;
    }
    const WRITERS: usize = 4;
    const BATCHES: usize = 8;
    let location = s3_table("events").await;
    // Every writer opens the table at once; one creates it, the others load it.
    let sinks = futures::future::join_all((0..WRITERS).map(|_| open(&location))).await;
    let mut tasks = tokio::task::JoinSet::new();
    for (w, mut sink) in sinks.into_iter().enumerate() {
        tasks.spawn(async move {
            for b in 0..BATCHES {
                let events = (0..3)
                    .map(|i| {
                        let id = format!("w{w}-b{b}-{i}");
                        event(i, &id, &format!("2026-11-01T0{}:10:00Z", i), "1")
                    })
                    .collect();
                sink.accept(&format!("w{w}-b{b}"), false, events).await.unwrap();
                sink.flush().await.unwrap();
            }
        });
    }
    let compaction = {
        let location = location.clone();
        tokio::spawn(async move {
            let options = CompactionOptions {
                scope: Scope::All,
                target_file_bytes: 1 << 20,
                compression: crate::ParquetCompression::Zstd,
                id_column: vec!["id".into()],
                run_id: None,
            };
            for _ in 0..3 {
                compact(&location, &options, &|_, _| true).await.unwrap();
            }
        })
    };
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    compaction.await.unwrap();

    let summary = summarize(&location).await.unwrap();
    assert_eq!(summary.rows as usize, WRITERS * BATCHES * 3);
    assert_eq!(
        distinct_strings(&location, "id").await.unwrap().len(),
        WRITERS * BATCHES * 3
    );
    assert!(
        summary.version as usize >= WRITERS * BATCHES,
        "one log version per commit at least: {}",
        summary.version
    );
}
