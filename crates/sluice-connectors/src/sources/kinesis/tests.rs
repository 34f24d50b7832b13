//! The Kinesis source against moto's Kinesis (`SLUICE_TEST_AWS`), with the
//! AWS SDK's own client putting records as producers do.

use std::{collections::BTreeMap, sync::Arc};

use aws_sdk_kinesis::{Client, primitives::Blob, types::PutRecordsRequestEntry};
use sluice_core::{Delivery, split_lines};
use sluice_queue::{Queue, QueueSettings, checkpoint::Checkpoints, embedded::EmbeddedQueue, lease::LocalLeases};
use tokio::sync::watch;

use super::*;
use crate::sources::{Source, SourceContext, shards::ShardCheckpoint};

fn client(endpoint: &str) -> Client {
    Client::new(&crate::aws::test_sdk_config(endpoint))
}

/// A new stream of `shards` shards on moto; returns its name.
async fn new_stream(client: &Client, shards: i32) -> String {
    let name = format!("sluice-kinesis-{}", uuid::Uuid::new_v4().simple());
    client
        .create_stream()
        .stream_name(&name)
        .shard_count(shards)
        .send()
        .await
        .unwrap();
    name
}

/// Puts `{"n": i}` for each `i`, keyed so they spread over the shards;
/// returns each record's (n, shard, sequence).
async fn put(client: &Client, stream: &str, ns: std::ops::Range<u32>) -> Vec<(u32, String, String)> {
    let mut placed = Vec::new();
    let all: Vec<u32> = ns.collect();
    for chunk in all.chunks(100) {
        let entries = chunk
            .iter()
            .map(|n| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(format!("{{\"n\":{n}}}")))
                    .partition_key(format!("user-{n}"))
                    .build()
                    .unwrap()
            })
            .collect();
        let out = client
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_record_count(), Some(0));
        for (n, r) in chunk.iter().zip(out.records()) {
            placed.push((
                *n,
                r.shard_id().unwrap().to_string(),
                r.sequence_number().unwrap().to_string(),
            ));
        }
    }
    placed
}

fn config(stream: &str) -> KinesisSourceConfig {
    toml::from_str(&format!(
        "stream = \"{stream}\"\npoll_interval_ms = 200\nmax_records = 50"
    ))
    .unwrap()
}

struct Harness {
    _dir: sluice_testkit::TempDir,
    queue: Arc<EmbeddedQueue>,
    checkpoints: Arc<dyn Checkpoints>,
    state: std::path::PathBuf,
}

impl Harness {
    fn new() -> Harness {
        let dir = sluice_testkit::tempdir().unwrap();
        let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("q"), QueueSettings::default()).unwrap());
        let state = dir.path().join("state");
        Harness {
            checkpoints: crate::sources::local_checkpoints(&state),
            queue,
            state,
            _dir: dir,
        }
    }

    /// Runs the source in batch mode; returns the batches it enqueued.
    async fn read(&self, client: &Client, config: KinesisSourceConfig) -> Vec<Delivery> {
        let (_stop, shutdown) = watch::channel(false);
        let ctx = SourceContext {
            name: "changes".into(),
            queue: self.queue.clone(),
            dead_letters: self.queue.clone(),
            shutdown,
            until_idle: true,
            state_dir: self.state.clone(),
            leases: Arc::new(LocalLeases::default()),
            checkpoints: self.checkpoints.clone(),
            telemetry: sluice_core::telemetry::SourceTelemetry::new("changes"),
        };
        Box::new(KinesisSource::with_client(config, client.clone()))
            .run(ctx)
            .await
            .unwrap();
        let got = self.queue.receive(100_000).await.unwrap();
        self.queue.ack(got.iter().map(|d| d.id).collect()).await.unwrap();
        got
    }
}

fn numbers(batches: &[Delivery]) -> Vec<u64> {
    let mut all: Vec<u64> = batches
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
    all.sort_unstable();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shard_is_read_once_and_a_restart_resumes_at_the_checkpoints() {
    let Some(endpoint) = sluice_testkit::services::aws() else {
        return;
    };
    let client = client(&endpoint);
    let stream = new_stream(&client, 3).await;
    let placed = put(&client, &stream, 0..300).await;
    let shards: BTreeMap<&str, usize> = placed.iter().fold(BTreeMap::new(), |mut m, (_, s, _)| {
        *m.entry(s.as_str()).or_default() += 1;
        m
    });
    assert_eq!(shards.len(), 3, "records on every shard: {shards:?}");

    let harness = Harness::new();
    let mut small = config(&stream);
    small.max_batch_bytes = 300;
    let first = harness.read(&client, small).await;
    assert_eq!(numbers(&first), (0..300).collect::<Vec<_>>());
    assert!(
        first.iter().all(|d| d.payload.len() <= 300),
        "batches fit max_batch_bytes"
    );
    assert!(first.iter().any(|d| d.payload.len() > 250), "and are filled up to it");
    assert!(
        first
            .iter()
            .all(|d| d.key.starts_with(&format!("kinesis:{stream}:shardId-")) && !d.maybe_committed)
    );

    put(&client, &stream, 300..350).await;
    let second = harness.read(&client, config(&stream)).await;
    assert_eq!(numbers(&second), (300..350).collect::<Vec<_>>(), "only what came since");
    assert!(harness.read(&client, config(&stream)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_cut_short_by_a_crash_is_enqueued_again_whole_under_its_key() {
    let Some(endpoint) = sluice_testkit::services::aws() else {
        return;
    };
    let client = client(&endpoint);
    let stream = new_stream(&client, 1).await;
    let placed = put(&client, &stream, 0..120).await;
    let (shard, end) = (&placed[0].1, &placed[7].2);

    // The last holder recorded a batch ending at the 8th record, then died
    // before it knew the batch was enqueued.
    let harness = Harness::new();
    let name = format!("kinesis.changes.{shard}");
    let checkpoint = ShardCheckpoint {
        pending_end: Some(end.clone()),
        ..ShardCheckpoint::default()
    };
    checkpoint.save(harness.checkpoints.as_ref(), &name).await.unwrap();

    let got = harness.read(&client, config(&stream)).await;
    assert_eq!(numbers(&got), (0..120).collect::<Vec<_>>());
    let again = got
        .iter()
        .find(|d| d.maybe_committed)
        .expect("the recorded batch, flagged");
    assert_eq!(again.key, format!("kinesis:{stream}:{shard}:{}-{end}", placed[0].2));
    assert_eq!(numbers(std::slice::from_ref(again)), (0..8).collect::<Vec<_>>());
    assert_eq!(got.iter().filter(|d| d.maybe_committed).count(), 1);
    let saved = ShardCheckpoint::load(harness.checkpoints.as_ref(), &name)
        .await
        .unwrap();
    assert_eq!(saved.sequence.as_deref(), Some(placed[119].2.as_str()));
    assert_eq!(saved.pending_end, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_kpl_aggregated_are_unpacked() {
    let Some(endpoint) = sluice_testkit::services::aws() else {
        return;
    };
    let client = client(&endpoint);
    let stream = new_stream(&client, 1).await;
    put(&client, &stream, 0..2).await;
    let users: Vec<String> = (10..13).map(|n| format!("{{\"n\":{n}}}")).collect();
    let refs: Vec<&[u8]> = users.iter().map(|u| u.as_bytes()).collect();
    client
        .put_record()
        .stream_name(&stream)
        .partition_key("k")
        .data(Blob::new(super::kpl::aggregate(&refs)))
        .send()
        .await
        .unwrap();
    let harness = Harness::new();
    let got = harness.read(&client, config(&stream)).await;
    assert_eq!(numbers(&got), vec![0, 1, 10, 11, 12]);
}

/// Waits until `stream` is ACTIVE again (after a create or a split).
async fn active(client: &Client, stream: &str) {
    for _ in 0..100 {
        let summary = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .unwrap();
        let status = summary.stream_description_summary().map(|s| s.stream_status().clone());
        if status == Some(aws_sdk_kinesis::types::StreamStatus::Active) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("stream {stream} did not become active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_shard_is_read_to_its_end_before_its_children() {
    // moto never ends a closed shard's iterator; kinesalite does, as AWS.
    let Some(endpoint) = sluice_testkit::services::Service::Kinesalite.available() else {
        return;
    };
    let client = client(&endpoint);
    let stream = new_stream(&client, 1).await;
    active(&client, &stream).await;
    let before = put(&client, &stream, 0..20).await;
    let parent = before[0].1.clone();
    client
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(&parent)
        .new_starting_hash_key((1u128 << 127).to_string())
        .send()
        .await
        .unwrap();
    active(&client, &stream).await;
    let after = put(&client, &stream, 20..60).await;
    assert!(
        after.iter().all(|(_, shard, _)| *shard != parent),
        "new records go to the children"
    );

    let harness = Harness::new();
    let got = harness.read(&client, config(&stream)).await;
    assert_eq!(numbers(&got), (0..60).collect::<Vec<_>>());
    let last_parent_batch = got
        .iter()
        .rposition(|d| d.key.contains(&format!(":{parent}:")))
        .unwrap();
    let first_child_batch = got
        .iter()
        .position(|d| !d.key.contains(&format!(":{parent}:")))
        .unwrap();
    assert!(
        last_parent_batch < first_child_batch,
        "the parent is read before its children"
    );
    let name = format!("kinesis.changes.{parent}");
    let checkpoint = ShardCheckpoint::load(harness.checkpoints.as_ref(), &name)
        .await
        .unwrap();
    assert!(checkpoint.finished, "{checkpoint:?}");
    // kinesalite counts open shards against a limit: give them back.
    client.delete_stream().stream_name(&stream).send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_reads_the_records_the_stream_took_in_its_window() {
    let Some(endpoint) = sluice_testkit::services::aws() else {
        return;
    };
    let client = client(&endpoint);
    let stream = new_stream(&client, 2).await;
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(1200));
    put(&client, &stream, 0..30).await;
    pause().await;
    let since = sluice_core::now_ms();
    put(&client, &stream, 30..70).await;
    let until = sluice_core::now_ms();
    pause().await;
    put(&client, &stream, 70..90).await;

    let harness = Harness::new();
    let shards_seen = std::sync::Mutex::new(Vec::new());
    let report = super::source::replay_through(
        client.clone(),
        &config(&stream),
        ("changes", "r1"),
        (since, until),
        harness.queue.as_ref(),
        &|done, total| shards_seen.lock().unwrap().push((done, total)),
    )
    .await
    .unwrap();
    let got = harness.queue.receive(100_000).await.unwrap();
    assert_eq!(
        numbers(&got),
        (30..70).collect::<Vec<_>>(),
        "the window's records, once"
    );
    assert!(
        got.iter()
            .all(|d| d.key.starts_with(&format!("replay/r1/kinesis:{stream}:")) && d.maybe_committed)
    );
    assert_eq!((report.shards, report.events), (2, 40));
    assert_eq!(shards_seen.lock().unwrap().last(), Some(&(2, 2)));
}
