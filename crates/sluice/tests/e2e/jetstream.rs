//! NATS JetStream end to end (the machine's NATS; `SLUICE_TEST_NATS`
//! overrides it). As the queue: generator files -> validate -> lake with
//! `queue = "nats://..."`; the table holds exactly the oracle's events, the
//! dead letters (in JetStream) are its invalid lines, and redriven dead
//! letters travel through the queue again. As a sink: the `stream`
//! sink publishes every valid event once, and a re-read of the same input
//! publishes nothing new. As a source: events published to a JetStream
//! stream (many per message and one per message, beside messages on a
//! subject the filter leaves out) land as the oracle says, every message is
//! acknowledged, and a second run reads nothing again.

use sluice_testkit::services::Service;
use std::process::Command;

use crate::{
    postgres::{dead_letter_count, run_until_idle},
    support,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_through_a_jetstream_queue_land_as_the_oracle_says() {
    if !support::services_up(&[Service::Nats]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (_, oracle) = support::generate(dir, 20_000, 81);
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    std::fs::rename(dir.join("events.ndjson"), dir.join("incoming/events.ndjson")).unwrap();
    let queue_name = format!("e2e-{}", std::process::id());
    let head = format!("queue = \"{}\"\nqueue_name = \"{queue_name}\"\n", support::nats_url());
    let sources =
        "[sources.files]\ntype = \"file\"\npath = \"incoming/*.ndjson\"\nsettle_secs = 0\nmax_batch_bytes = 65536";
    let body = support::pipeline(support::free_port(), "", sources, &["files"], "t");
    std::fs::write(dir.join("pipeline.toml"), head + &body).unwrap();

    run_until_idle(dir, &[]);
    let lake = support::read_lake(&dir.join("lake/t")).await;
    assert_eq!(lake.ids_sha256, oracle["event_ids_sha256"].as_str().unwrap());
    assert_eq!(lake.rows, oracle["valid_unique"].as_u64().unwrap());
    let invalid = oracle["invalid"].as_u64().unwrap() as usize;
    assert_eq!(dead_letter_count(dir), invalid);

    // Redriven, the invalid lines go through JetStream again and come back.
    support::run_ok(
        Command::new(support::SLUICE)
            .args(["dlq", "redrive"])
            .arg(dir.join("pipeline.toml")),
    );
    assert_eq!(dead_letter_count(dir), 0);
    run_until_idle(dir, &[]);
    assert_eq!(dead_letter_count(dir), invalid);
    assert_eq!(support::read_lake(&dir.join("lake/t")).await.rows, lake.rows);

    let js = async_nats::jetstream::new(async_nats::connect(support::nats_url()).await.unwrap());
    let names = sluice_queue::jetstream::JetStreamNames::for_pipeline(&queue_name);
    js.delete_stream(&names.stream).await.unwrap();
    js.delete_stream(&names.dead_stream).await.unwrap();
}

/// Every message of JetStream stream `name`: (message id, payload).
pub(crate) async fn read_stream(name: &str) -> Vec<(String, serde_json::Value)> {
    use futures::StreamExt;
    let js = async_nats::jetstream::new(async_nats::connect(support::nats_url()).await.unwrap());
    let mut stream = js.get_stream(name).await.unwrap();
    let count = stream.info().await.unwrap().state.messages;
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    // A fetch hands out at most one server-side batch; ask until all arrived.
    while (out.len() as u64) < count {
        let mut messages = consumer.fetch().max_messages(1000).messages().await.unwrap();
        while let Some(message) = messages.next().await {
            let message = message.unwrap();
            let id = message
                .headers
                .as_ref()
                .unwrap()
                .get("Nats-Msg-Id")
                .unwrap()
                .as_str()
                .to_string();
            out.push((id, serde_json::from_slice(&message.payload).unwrap()));
        }
    }
    assert_eq!(out.len() as u64, count);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_sink_publishes_each_valid_event_once() {
    if !support::services_up(&[Service::Nats]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, oracle) = support::generate(dir, 5_000, 83);
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    std::fs::rename(dir.join("events.ndjson"), dir.join("incoming/events.ndjson")).unwrap();
    let stream = format!("SLUICE_E2E_PROCESSED_{}", std::process::id());
    let pipeline = format!(
        r#"
{input}
[sinks.processed]
type = "stream"
inputs = ["standardize"]
url = "{url}"
subject = "sluice.e2e.{pid}.processed"
stream = "{stream}"
"#,
        input = support::validated_input(),
        url = support::nats_url(),
        pid = std::process::id(),
    );
    std::fs::write(dir.join("pipeline.toml"), pipeline).unwrap();
    run_until_idle(dir, &[]);
    let published = read_stream(&stream).await;
    let valid_lines = lines.len() as u64 - oracle["invalid"].as_u64().unwrap();
    assert_eq!(
        published.len() as u64,
        valid_lines,
        "every valid line, producer duplicates included"
    );
    let ids: std::collections::BTreeSet<&str> = published.iter().filter_map(|(_, e)| e["event_id"].as_str()).collect();
    assert_eq!(ids.len() as u64, oracle["valid_unique"].as_u64().unwrap());

    // Forget that the file was read: the same batches are published again,
    // with the same message ids, and JetStream keeps one copy.
    std::fs::remove_dir_all(dir.join(".sluice")).unwrap();
    run_until_idle(dir, &[]);
    assert_eq!(read_stream(&stream).await.len(), published.len());

    let js = async_nats::jetstream::new(async_nats::connect(support::nats_url()).await.unwrap());
    js.delete_stream(&stream).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_source_lands_a_published_stream_as_the_oracle_says() {
    if !support::services_up(&[Service::Nats]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, oracle) = support::generate(dir, 10_000, 85);
    let pid = std::process::id();
    let (stream, subject) = (format!("SLUICE_E2E_IN_{pid}"), format!("e2e.{pid}.events"));
    let js = support::fresh_stream(&stream, &subject).await;
    // The first half 25 lines per message, the rest one per message; lines
    // on another subject are outside the source's filter.
    let (many, single) = lines.split_at(lines.len() / 2);
    let mut messages: Vec<String> = many.chunks(25).map(|c| c.join("\n")).collect();
    messages.extend(single.iter().cloned());
    for (i, message) in messages.into_iter().enumerate() {
        js.publish(format!("{subject}.clicks"), message.into())
            .await
            .unwrap()
            .await
            .unwrap();
        if i % 100 == 0 {
            js.publish(format!("{subject}.other"), "not for us".into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    }

    let sources = format!(
        "[sources.events]\ntype = \"nats\"\nurl = \"{}\"\nstream = \"{stream}\"\nsubject = \"{subject}.clicks\"\nmax_wait_ms = 300",
        support::nats_url()
    );
    let body = support::pipeline(support::free_port(), "", &sources, &["events"], "t");
    std::fs::write(dir.join("pipeline.toml"), body).unwrap();
    run_until_idle(dir, &[]);
    let lake = support::read_lake(&dir.join("lake/t")).await;
    assert_eq!(lake.ids_sha256, oracle["event_ids_sha256"].as_str().unwrap());
    assert_eq!(lake.rows, oracle["valid_unique"].as_u64().unwrap());
    assert_eq!(dead_letter_count(dir), oracle["invalid"].as_u64().unwrap() as usize);

    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream(&stream)
        .await
        .unwrap()
        .get_consumer("sluice-events")
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(
        (info.num_pending, info.num_ack_pending),
        (0, 0),
        "every message acknowledged"
    );

    // Acknowledged messages are not read again.
    run_until_idle(dir, &[]);
    assert_eq!(support::read_lake(&dir.join("lake/t")).await.rows, lake.rows);
    js.delete_stream(&stream).await.unwrap();
}
