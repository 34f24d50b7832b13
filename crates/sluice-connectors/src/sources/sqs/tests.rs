//! The SQS source against moto's SQS (`SLUICE_TEST_AWS`), with the AWS
//! SDK's own client sending what producers send.

use std::{sync::Arc, time::Duration};

use aws_sdk_sqs::{Client, types::SendMessageBatchRequestEntry};
use sluice_core::{Delivery, NewBatch, split_lines};
use sluice_queue::{Queue, QueueSettings, embedded::EmbeddedQueue};
use tokio::sync::watch;

use super::*;
use crate::{
    aws::sqs::SqsQueue,
    sources::{Source, SourceContext},
};

fn client(endpoint: &str) -> Client {
    Client::new(&crate::aws::test_sdk_config(endpoint))
}

/// A new queue on moto; returns its URL.
async fn new_queue(client: &Client, tag: &str) -> String {
    let name = format!("sluice-sqs-{tag}-{}", uuid::Uuid::new_v4().simple());
    let created = client.create_queue().queue_name(name).send().await.unwrap();
    created.queue_url().unwrap().to_string()
}

fn config(url: &str) -> SqsSourceConfig {
    toml::from_str(&format!(
        "queue_url = \"{url}\"\nwait_time_secs = 1\nvisibility_timeout_secs = 30\nunwrap_sns = true"
    ))
    .unwrap()
}

fn context(
    queue: &Arc<EmbeddedQueue>,
    until_idle: bool,
    shutdown: watch::Receiver<bool>,
    state: &std::path::Path,
) -> SourceContext {
    crate::sources::test_context("sqs", queue, shutdown, until_idle, state)
}

fn lines(batches: &[Delivery]) -> Vec<String> {
    let mut all: Vec<String> = batches
        .iter()
        .flat_map(|d| {
            split_lines(&d.payload)
                .map(|(_, l)| String::from_utf8(l.to_vec()).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    all.sort();
    all
}

async fn send_batch(client: &Client, url: &str, bodies: &[String]) {
    for chunk in bodies.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .unwrap()
            })
            .collect();
        let sent = client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
        assert!(sent.failed().is_empty(), "{:?}", sent.failed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_of_every_shape_land_as_lines_and_sqs_ends_empty() {
    let Some(endpoint) = sluice_testkit::services::aws() else {
        return;
    };
    let client = client(&endpoint);
    let url = new_queue(&client, "shapes").await;
    let singles: Vec<String> = (0..25).map(|i| format!("{{\"n\":{i}}}")).collect();
    send_batch(&client, &url, &singles).await;
    let inner = "{\"n\":100}\n{\"n\":101}";
    let others = [
        "{\n  \"n\": 30,\n  \"note\": \"pretty\"\n}".to_string(),
        "[{\"n\":40},\n {\"n\":41}, {\"n\":42}]".to_string(),
        "{\"n\":50}\n{\"n\":51}\nnot json\n".to_string(),
        serde_json::json!({"Type": "Notification", "MessageId": "m1", "TopicArn": "arn:aws:sns:us-east-1:123456789012:t", "Message": inner}).to_string(),
    ];
    send_batch(&client, &url, &others).await;

    let dir = sluice_testkit::tempdir().unwrap();
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("q"), QueueSettings::default()).unwrap());
    let (_stop, shutdown) = watch::channel(false);
    let sqs = SqsQueue::from_client(client.clone(), &url);
    let source = SqsSource::on(config(&url), sqs.clone());
    Box::new(source)
        .run(context(&queue, true, shutdown, dir.path()))
        .await
        .unwrap();

    // SQS delivers at least once: a message received again (moto does so
    // now and then under load) comes back alone under the same batch key,
    // which the sinks' markers absorb, or beside other messages in a batch
    // flagged `maybe_committed`, whose events the sinks' dedupe absorbs.
    let mut got = queue.receive(10_000).await.unwrap();
    let mut keys = std::collections::HashSet::new();
    got.retain(|d| keys.insert(d.key.clone()));
    let mut want: Vec<String> = singles.clone();
    want.extend(
        [
            "{   \"n\": 30,   \"note\": \"pretty\" }",
            "{\"n\":40}",
            "{\"n\":41}",
            "{\"n\":42}",
            "{\"n\":50}",
            "{\"n\":51}",
            "not json",
            "{\"n\":100}",
            "{\"n\":101}",
        ]
        .map(str::to_string),
    );
    want.sort();
    let mut distinct = lines(&got);
    let copies = distinct.len();
    distinct.dedup();
    assert_eq!(distinct, want);
    let flagged = got.iter().filter(|d| d.maybe_committed).count();
    assert!(
        copies == want.len() || flagged > 0,
        "a line landed twice, but no batch says it may hold a message received before"
    );
    let name = url.rsplit('/').next().unwrap();
    assert!(got.iter().all(|d| d.key.starts_with(&format!("sqs:{name}:"))));
    assert_eq!(sqs.backlog().await.unwrap().total(), 0, "every message deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_message_is_flagged() {
    let Some(endpoint) = sluice_testkit::services::aws() else {
        return;
    };
    let client = client(&endpoint);
    let url = new_queue(&client, "again").await;
    send_batch(&client, &url, &["{\"n\":1}".to_string()]).await;
    let sqs = SqsQueue::from_client(client.clone(), &url);
    // Someone took it and never deleted it (a crash): it comes back.
    assert_eq!(sqs.receive(10, 0, 1).await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let dir = sluice_testkit::tempdir().unwrap();
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("q"), QueueSettings::default()).unwrap());
    let (_stop, shutdown) = watch::channel(false);
    Box::new(SqsSource::on(config(&url), sqs.clone()))
        .run(context(&queue, true, shutdown, dir.path()))
        .await
        .unwrap();
    let got = queue.receive(10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].maybe_committed,
        "received twice: the sinks check their commit records"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_held_for_a_full_queue_stay_invisible_and_are_deleted_after_enqueue() {
    let Some(endpoint) = sluice_testkit::services::aws() else {
        return;
    };
    let client = client(&endpoint);
    let url = new_queue(&client, "held").await;
    let bodies: Vec<String> = (0..3).map(|i| format!("{{\"n\":{i}}}")).collect();
    send_batch(&client, &url, &bodies).await;

    // A queue that is full: one batch held, and room for nothing more.
    let dir = sluice_testkit::tempdir().unwrap();
    let settings = QueueSettings {
        max_bytes: 16,
        ..QueueSettings::default()
    };
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("q"), settings).unwrap());
    queue
        .enqueue(NewBatch {
            key: "blocker".into(),
            source: "test".into(),
            payload: "{\"blocking\":true}\n".into(),
            maybe_committed: false,
            in_file: None,
        })
        .await
        .unwrap();

    let (stop, shutdown) = watch::channel(false);
    let sqs = SqsQueue::from_client(client.clone(), &url);
    let mut held = config(&url);
    held.visibility_timeout_secs = 3;
    held.receivers = 1;
    let running =
        tokio::spawn(Box::new(SqsSource::on(held, sqs.clone())).run(context(&queue, false, shutdown, dir.path())));

    // Past twice the visibility timeout, the messages are still the source's.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(
        sqs.receive(10, 0, 1).await.unwrap().is_empty(),
        "the source keeps extending what it holds"
    );
    let backlog = sqs.backlog().await.unwrap();
    assert_eq!((backlog.visible, backlog.in_flight), (0, 3));

    // Room again: the messages are enqueued, then deleted.
    let blocker = queue.receive(10).await.unwrap();
    queue.ack(blocker.iter().map(|d| d.id).collect()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sqs.backlog().await.unwrap().total() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "messages not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    let got = queue.receive(10).await.unwrap();
    assert_eq!(lines(&got), bodies);
    assert!(!got[0].maybe_committed, "nobody else received them");
}
