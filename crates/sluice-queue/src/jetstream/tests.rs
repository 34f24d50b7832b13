//! The conformance suite against the machine's NATS server with JetStream
//! (`SLUICE_TEST_NATS`, default `nats://127.0.0.1:4222`); each test has a
//! stream of its own, deleted afterwards.

use super::*;
use crate::{
    conformance::{self, suite_settings},
    embedded::EmbeddedQueue,
};

fn url() -> String {
    std::env::var("SLUICE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A fresh queue for test `name`, its dead-letter store, and the folder that store lives in.
async fn open(name: &str) -> (JetStreamQueue, Arc<EmbeddedQueue>, tempfile::TempDir) {
    open_with(name, suite_settings()).await
}

async fn open_with(name: &str, settings: QueueSettings) -> (JetStreamQueue, Arc<EmbeddedQueue>, tempfile::TempDir) {
    let names = JetStreamNames::for_pipeline(&format!("test-{name}-{}", std::process::id()));
    let client = async_nats::connect(url())
        .await
        .expect("NATS is reachable (scripts/test starts it)");
    let _ = jetstream::new(client).delete_stream(&names.stream).await;
    let dir = tempfile::tempdir().unwrap();
    let dead = Arc::new(EmbeddedQueue::open(dir.path(), suite_settings()).unwrap());
    let queue = JetStreamQueue::open(&url(), names, settings, dead.clone())
        .await
        .unwrap();
    (queue, dead, dir)
}

async fn close(queue: JetStreamQueue) {
    queue.js.delete_stream(&queue.names.stream).await.unwrap();
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let (queue, _dead, _dir) = open(stringify!($name)).await;
            conformance::$name(&queue).await;
            close(queue).await;
        }
    )*};
}

conformance_tests!(
    delivers_in_order_and_ack_removes,
    redelivers_after_visibility_timeout,
    extend_keeps_batch_hidden,
    full_queue_refuses_then_recovers,
);

#[tokio::test]
async fn max_attempts_dead_letters_with_last_error() {
    let (queue, dead, _dir) = open("max_attempts").await;
    conformance::max_attempts_dead_letters_with_last_error(&queue, dead.as_ref()).await;
    close(queue).await;
}

#[test]
fn names_are_safe_for_nats() {
    let names = JetStreamNames::for_pipeline("click.stream 2");
    assert_eq!(
        names,
        JetStreamNames {
            stream: "SLUICE_CLICK_STREAM_2".into(),
            subject: "sluice.click_stream_2.batches".into(),
            consumer: "sluice-click_stream_2".into(),
        }
    );
}

/// JetStream counts a message's subject and headers against `max_bytes`
/// too (about 100 bytes here), so 50 tiny batches need more room than the
/// suite's 1000 bytes of payload.
#[tokio::test]
async fn concurrent_enqueues_all_delivered() {
    let settings = QueueSettings {
        max_bytes: 64 * 1024,
        ..suite_settings()
    };
    let (queue, _dead, _dir) = open_with("concurrent", settings).await;
    let queue = Arc::new(queue);
    conformance::concurrent_enqueues_all_delivered(&queue).await;
    close(Arc::into_inner(queue).expect("the suite's tasks are done")).await;
}
