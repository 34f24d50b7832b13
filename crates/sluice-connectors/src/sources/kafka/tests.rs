//! The Kafka source against librdkafka's mock cluster (in-process brokers
//! with failure injection), records produced by rdkafka's own producer.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    mocking::MockCluster,
    producer::{FutureProducer, FutureRecord},
    types::{RDKafkaApiKey, RDKafkaRespErr},
};
use sluice_core::{Delivery, split_lines};
use sluice_queue::{Queue, QueueSettings, embedded::EmbeddedQueue};
use tokio::sync::watch;

use super::*;
use crate::sources::{Source, SourceContext};

const TOPIC: &str = "events";

fn config(brokers: &str) -> KafkaSourceConfig {
    toml::from_str(&format!(
        "brokers = \"{brokers}\"\ntopics = [\"{TOPIC}\"]\ngroup_id = \"sluice\"\nmax_batch_wait_ms = 100\n\
         session_timeout_ms = 6000\nidle_secs = 3\nmetadata_field = \"_kafka\""
    ))
    .unwrap()
}

fn context(queue: &Arc<EmbeddedQueue>, shutdown: watch::Receiver<bool>, state: &std::path::Path) -> SourceContext {
    crate::sources::test_context("kafka", queue, shutdown, true, state)
}

/// Produces `records` JSON objects `{"n": i}` keyed by `i` (spread over
/// the partitions), with a header.
async fn produce(brokers: &str, range: std::ops::Range<u32>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for i in range {
        let (key, value) = (i.to_string(), format!("{{\"n\":{i}}}"));
        let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "origin",
            value: Some("test"),
        });
        producer
            .send(
                FutureRecord::to(TOPIC).key(&key).payload(&value).headers(headers),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
}

/// Every `n` the queue holds (with repeats), and the deliveries.
async fn drain(queue: &EmbeddedQueue) -> (Vec<u64>, Vec<Delivery>) {
    let mut all = Vec::new();
    let mut deliveries = Vec::new();
    loop {
        let got = queue.receive(100).await.unwrap();
        if got.is_empty() {
            break;
        }
        for d in got {
            for (_, line) in split_lines(&d.payload) {
                let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
                all.push(v["n"].as_u64().unwrap());
            }
            queue.ack(vec![d.id]).await.unwrap();
            deliveries.push(d);
        }
    }
    all.sort_unstable();
    (all, deliveries)
}

/// The group's committed offset of each partition.
fn committed(brokers: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sluice")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(TOPIC, p);
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap()
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            };
            (e.partition(), offset)
        })
        .collect()
}

async fn run_source(brokers: &str, queue: &Arc<EmbeddedQueue>, state: &std::path::Path) {
    let (_stop, shutdown) = watch::channel(false);
    Box::new(KafkaSource::new(config(brokers)).unwrap())
        .run(context(queue, shutdown, state))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_enqueued_per_partition_and_committed_only_after() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 3, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    produce(&brokers, 0..300).await;
    let dir = sluice_testkit::tempdir().unwrap();
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("q"), QueueSettings::default()).unwrap());
    run_source(&brokers, &queue, dir.path()).await;
    let (all, deliveries) = drain(&queue).await;
    assert_eq!(all, (0..300).collect::<Vec<_>>(), "every record once");
    assert!(deliveries.iter().all(|d| d.key.starts_with("kafka/sluice/events/")));
    let first: serde_json::Value =
        serde_json::from_slice(&split_lines(&deliveries[0].payload).next().unwrap().1).unwrap();
    assert_eq!(first["_kafka"]["topic"], TOPIC);
    assert_eq!(first["_kafka"]["headers"]["origin"], "test");
    assert!(first["_kafka"]["key"].is_string() && first["_kafka"]["offset"].is_i64());
    let offsets = committed(&brokers, 3);
    assert_eq!(
        offsets.values().sum::<i64>(),
        300,
        "committed to each partition's end: {offsets:?}"
    );

    produce(&brokers, 300..350).await;
    run_source(&brokers, &queue, dir.path()).await;
    let (again, _) = drain(&queue).await;
    assert_eq!(
        again,
        (300..350).collect::<Vec<_>>(),
        "resumed at the committed offsets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_commits_and_a_broker_outage_lose_nothing() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    produce(&brokers, 0..200).await;
    let dir = sluice_testkit::tempdir().unwrap();
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("q"), QueueSettings::default()).unwrap());
    // Every commit fails this run: the records are enqueued but stay
    // uncommitted, so the next run reads them again.
    let failures = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; 64];
    cluster.request_errors(RDKafkaApiKey::OffsetCommit, &failures);
    run_source(&brokers, &queue, dir.path()).await;
    cluster.clear_request_errors(RDKafkaApiKey::OffsetCommit);
    let (first, _) = drain(&queue).await;
    assert_eq!(first, (0..200).collect::<Vec<_>>());

    // A broker outage in the middle of a run.
    let (stop, shutdown) = watch::channel(false);
    let source = tokio::spawn({
        let (queue, state, brokers) = (queue.clone(), dir.path().to_path_buf(), brokers.clone());
        async move {
            Box::new(KafkaSource::new(config(&brokers)).unwrap())
                .run(SourceContext {
                    until_idle: false,
                    ..context(&queue, shutdown, &state)
                })
                .await
        }
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    cluster.broker_down(1).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.broker_up(1).unwrap();
    produce(&brokers, 200..260).await;
    // The consumer's reconnection takes its time on a loaded machine: wait
    // for the records and their commits, not for a fixed time.
    let mut second = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        second.extend(drain(&queue).await.0);
        let all_in = (200..260).all(|n| second.contains(&n));
        let offsets = tokio::task::spawn_blocking({
            let brokers = brokers.clone();
            move || committed(&brokers, 2)
        });
        if all_in && offsets.await.unwrap().values().sum::<i64>() == 260 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.send(true).unwrap();
    source.await.unwrap().unwrap();
    second.extend(drain(&queue).await.0);
    let distinct: std::collections::BTreeSet<u64> = second.iter().copied().collect();
    assert!(
        (200..260).all(|n| distinct.contains(&n)),
        "every record after the outage: {distinct:?}"
    );
    assert!(
        second.iter().filter(|n| **n < 200).count() <= 200,
        "at most the uncommitted records again"
    );
    let offsets = committed(&brokers, 2);
    assert_eq!(offsets.values().sum::<i64>(), 260, "{offsets:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_read_again_after_lost_commits_keep_their_keys() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = sluice_testkit::tempdir().unwrap();
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("q"), QueueSettings::default()).unwrap());
    let mut config = config(&brokers);
    config.max_batch_records = 30;
    let run = |config: KafkaSourceConfig| {
        let (queue, state) = (queue.clone(), dir.path().to_path_buf());
        async move {
            let (_stop, shutdown) = watch::channel(false);
            Box::new(KafkaSource::new(config).unwrap())
                .run(context(&queue, shutdown, &state))
                .await
                .unwrap();
        }
    };
    let keys = |batches: &[Delivery]| {
        batches
            .iter()
            .map(|d| d.key.clone())
            .collect::<std::collections::BTreeSet<_>>()
    };
    produce(&brokers, 0..100).await;
    run(config.clone()).await;
    drain(&queue).await;

    // Every commit of this run fails: its records are read again.
    produce(&brokers, 100..300).await;
    let failures = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; 64];
    cluster.request_errors(RDKafkaApiKey::OffsetCommit, &failures);
    run(config.clone()).await;
    cluster.clear_request_errors(RDKafkaApiKey::OffsetCommit);
    let (first, first_batches) = drain(&queue).await;
    assert_eq!(first, (100..300).collect::<Vec<_>>());
    assert!(first_batches.len() > 4 && first_batches.iter().all(|d| !d.maybe_committed));

    run(config.clone()).await;
    let (again, again_batches) = drain(&queue).await;
    assert_eq!(again, first, "the same records");
    assert_eq!(keys(&again_batches), keys(&first_batches), "formed as the same batches");
    assert!(
        again_batches.iter().all(|d| d.maybe_committed),
        "flagged for the sinks' check"
    );
    assert_eq!(committed(&brokers, 2).values().sum::<i64>(), 300);

    produce(&brokers, 300..330).await;
    run(config).await;
    let (last, last_batches) = drain(&queue).await;
    assert_eq!(last, (300..330).collect::<Vec<_>>(), "new records only, as new batches");
    assert!(last_batches.iter().all(|d| !d.maybe_committed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_max_record_bytes_is_a_dead_letter_and_the_rest_goes_on() {
    use sluice_queue::{DeadLetterFilter, DeadLetterStore};
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    produce(&brokers, 0..5).await;
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let big = format!("{{\"n\":5,\"pad\":\"{}\"}}", "x".repeat(3000));
    producer
        .send(FutureRecord::<(), _>::to(TOPIC).payload(&big), Duration::from_secs(10))
        .await
        .unwrap();
    produce(&brokers, 6..10).await;
    let dir = sluice_testkit::tempdir().unwrap();
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("q"), QueueSettings::default()).unwrap());
    let mut config = config(&brokers);
    config.max_record_bytes = 2048;
    let (_stop, shutdown) = watch::channel(false);
    Box::new(KafkaSource::new(config).unwrap())
        .run(context(&queue, shutdown, dir.path()))
        .await
        .unwrap();
    let (all, _) = drain(&queue).await;
    assert_eq!(all, vec![0, 1, 2, 3, 4, 6, 7, 8, 9]);
    let letters = queue.list(DeadLetterFilter::default(), 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, sluice_core::reason::RECORD_TOO_LARGE);
    assert!(
        letters[0].detail.starts_with("events partition 0 offset 5:")
            && letters[0].detail.contains("max_record_bytes (2048)"),
        "{}",
        letters[0].detail
    );
    assert_eq!(
        committed(&brokers, 1).values().sum::<i64>(),
        10,
        "its offset is committed with its batch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_reads_the_records_of_its_window_under_replay_keys() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let base = 1_790_000_000_000i64;
    for i in 0..40i64 {
        let (key, value) = (i.to_string(), format!("{{\"n\":{i}}}"));
        producer
            .send(
                FutureRecord::to(TOPIC)
                    .key(&key)
                    .payload(&value)
                    .timestamp(base + i * 1000),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let dir = sluice_testkit::tempdir().unwrap();
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("q"), QueueSettings::default()).unwrap());
    let mut config = config(&brokers);
    config.max_batch_records = 4;
    let seen = std::sync::Mutex::new(Vec::new());
    let report = replay_window(
        &config,
        "kafka",
        "r1",
        (base + 10_000, base + 24_999),
        queue.as_ref(),
        &|done, total| seen.lock().unwrap().push((done, total)),
    )
    .await
    .unwrap();
    let (records, batches) = drain(&queue).await;
    assert_eq!(records, (10..25).collect::<Vec<_>>(), "the window's records, each once");
    assert!(batches.len() >= 4, "cut at max_batch_records");
    assert!(
        batches
            .iter()
            .all(|d| d.key.starts_with("replay/r1/kafka/sluice/events/") && d.maybe_committed)
    );
    assert_eq!((report.partitions, report.records_read, report.events), (2, 40, 15));
    assert_eq!(seen.lock().unwrap().last(), Some(&(40, 40)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_pauses_the_partitions_and_drops_nothing() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    produce(&brokers, 0..400).await;
    let dir = sluice_testkit::tempdir().unwrap();
    let settings = QueueSettings {
        max_bytes: 4096,
        ..QueueSettings::default()
    };
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("q"), settings).unwrap());
    let mut config = config(&brokers);
    config.max_batch_records = 20;
    let (stop, shutdown) = watch::channel(false);
    let source = tokio::spawn({
        let (queue, state) = (queue.clone(), dir.path().to_path_buf());
        async move {
            Box::new(KafkaSource::new(config).unwrap())
                .run(SourceContext {
                    until_idle: false,
                    ..context(&queue, shutdown, &state)
                })
                .await
        }
    });
    // A slow consumer of the queue: the source must wait, not drop.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < 400 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (mut got, _) = drain(&queue).await;
        seen.append(&mut got);
    }
    stop.send(true).unwrap();
    source.await.unwrap().unwrap();
    seen.sort_unstable();
    seen.dedup();
    // 400 records of ~150 bytes through a queue that holds 4 KiB: the
    // source waited (paused) many times, and dropped nothing.
    assert_eq!(seen, (0..400).collect::<Vec<_>>());
}
