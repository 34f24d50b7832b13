//! The conformance suite every queue backend must pass: the same assertions
//! against each backend (embedded, JetStream), so they keep one semantics.
//! Each check takes a fresh queue opened with [`suite_settings`]; checks of
//! dead letters also take the store the queue puts them in.

use std::time::Duration;

use bytes::Bytes;
use sluice_core::{DeadLetter, NewBatch, now_ms};

use crate::{DeadLetterFilter, DeadLetterStore, Queue, QueueError, QueueSettings};

/// Settings the suite expects its queues to be opened with.
pub fn suite_settings() -> QueueSettings {
    QueueSettings {
        visibility_timeout: Duration::from_millis(300),
        max_attempts: 3,
        max_crashes: 2,
        max_bytes: 1000,
    }
}

fn batch(key: &str, payload: &str) -> NewBatch {
    NewBatch {
        key: key.into(),
        source: "src".into(),
        payload: Bytes::from(payload.to_string()),
        maybe_committed: false,
        in_file: None,
    }
}

/// Enqueued batches come back in order, and an ack removes them for good.
pub async fn delivers_in_order_and_ack_removes<Q: Queue>(q: &Q) {
    q.enqueue(batch("a", "{\"n\":1}\n")).await.unwrap();
    q.enqueue(batch("b", "{\"n\":2}\n")).await.unwrap();
    let got = q.receive(10).await.unwrap();
    assert_eq!(got.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert!(got.iter().all(|d| d.attempts == 1 && !d.maybe_committed));
    assert_eq!(got[0].payload, Bytes::from_static(b"{\"n\":1}\n"));
    q.ack(got.iter().map(|d| d.id).collect()).await.unwrap();
    tokio::time::sleep(suite_settings().visibility_timeout * 2).await;
    assert!(q.receive(10).await.unwrap().is_empty());
    assert_eq!(q.stats().await.unwrap().batches, 0);
}

/// A batch not acknowledged within the visibility timeout is delivered again,
/// marked so sinks check their commit log.
pub async fn redelivers_after_visibility_timeout<Q: Queue>(q: &Q) {
    q.enqueue(batch("a", "{}\n")).await.unwrap();
    let first = q.receive(10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(q.receive(10).await.unwrap().is_empty(), "hidden while in flight");
    assert_eq!(q.stats().await.unwrap().in_flight, 1);
    tokio::time::sleep(suite_settings().visibility_timeout + Duration::from_millis(100)).await;
    let again = q.receive(10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].key, "a");
    assert_eq!(again[0].attempts, 2);
    assert!(again[0].maybe_committed);
}

/// `extend` keeps a batch hidden past its visibility timeout.
pub async fn extend_keeps_batch_hidden<Q: Queue>(q: &Q) {
    q.enqueue(batch("a", "{}\n")).await.unwrap();
    let got = q.receive(1).await.unwrap();
    for _ in 0..4 {
        tokio::time::sleep(suite_settings().visibility_timeout / 2).await;
        q.extend(vec![got[0].id]).await.unwrap();
    }
    assert!(q.receive(1).await.unwrap().is_empty());
}

/// After `max_attempts` deliveries the batch's lines become dead letters with
/// reason `max_attempts` and the last error.
pub async fn max_attempts_dead_letters_with_last_error<Q: Queue, D: DeadLetterStore>(q: &Q, dead: &D) {
    q.enqueue(batch("poison", "{\"a\":1}\n{\"a\":2}\n")).await.unwrap();
    for attempt in 1..=suite_settings().max_attempts {
        let got = q.receive(1).await.unwrap();
        assert_eq!(got.len(), 1, "attempt {attempt}");
        q.nack(got[0].id, format!("sink down #{attempt}"), Duration::ZERO)
            .await
            .unwrap();
    }
    assert!(q.receive(1).await.unwrap().is_empty());
    let counts = dead.counts().await.unwrap();
    assert_eq!(counts.total, 2);
    assert_eq!(counts.by_reason.get("max_attempts"), Some(&2));
    let letters = dead.list(DeadLetterFilter::default(), 10).await.unwrap();
    assert!(letters[0].detail.contains("sink down #3"), "{}", letters[0].detail);
    assert_eq!(letters[1].bytes, Bytes::from_static(b"{\"a\":2}"));
    let newest = letters.iter().map(|l| l.at_ms).max();
    assert_eq!(
        counts.newest_ms.get("max_attempts").copied(),
        newest,
        "the newest letter's time"
    );
    assert_eq!(q.stats().await.unwrap().batches, 0);
}

/// A released batch comes back without an attempt spent, however often,
/// flagged maybe-committed; a later nack still counts.
pub async fn release_spends_no_attempt<Q: Queue>(q: &Q) {
    q.enqueue(batch("a", "{}\n")).await.unwrap();
    for _ in 0..suite_settings().max_attempts + 2 {
        let got = q.receive(1).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].attempts, 1);
        q.release(got[0].id, Duration::ZERO).await.unwrap();
    }
    let got = q.receive(1).await.unwrap();
    assert!(got[0].maybe_committed);
    q.nack(got[0].id, "sink refused".into(), Duration::ZERO).await.unwrap();
    let got = q.receive(1).await.unwrap();
    assert_eq!(got[0].attempts, 2);
    q.ack(vec![got[0].id]).await.unwrap();
}

/// A full queue refuses loudly and accepts again once space is freed.
pub async fn full_queue_refuses_then_recovers<Q: Queue>(q: &Q) {
    let big = "x".repeat(600);
    q.enqueue(batch("a", &big)).await.unwrap();
    let err = q.enqueue(batch("b", &big)).await.unwrap_err();
    assert!(matches!(err, QueueError::Full { .. }), "{err}");
    let got = q.receive(1).await.unwrap();
    q.ack(vec![got[0].id]).await.unwrap();
    q.enqueue(batch("b", &big)).await.unwrap();
}

/// Dead letters are stored once per (batch, line) and redrive moves them
/// back to the queue exactly once.
pub async fn dead_letters_idempotent_and_redrive_once<Q: Queue + DeadLetterStore>(q: &Q) {
    let letter = |line: u32, reason: &str| DeadLetter {
        batch_key: "k".into(),
        line,
        source: "web".into(),
        component: "standardize".into(),
        reason: reason.into(),
        detail: "d".into(),
        bytes: Bytes::from(format!("{{\"line\":{line}}}")),
        at_ms: now_ms(),
    };
    q.put(vec![letter(0, "invalid_json"), letter(1, "schema:/a:type")])
        .await
        .unwrap();
    q.put(vec![letter(0, "invalid_json")]).await.unwrap();
    let counts = q.counts().await.unwrap();
    assert_eq!(counts.total, 2);
    let only = DeadLetterFilter {
        reason: Some("schema:/a:type".into()),
    };
    assert_eq!(q.redrive(only.clone()).await.unwrap(), 1);
    assert_eq!(q.redrive(only).await.unwrap(), 0);
    assert_eq!(q.counts().await.unwrap().total, 1);
    let got = q.receive(10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].source, "web");
    assert_eq!(got[0].payload, Bytes::from_static(b"{\"line\":1}\n"));
}

/// Many concurrent enqueues all succeed and all are delivered.
pub async fn concurrent_enqueues_all_delivered<Q: Queue + Clone + 'static>(q: &Q) {
    let mut tasks = Vec::new();
    for i in 0..50 {
        let q = q.clone();
        tasks.push(tokio::spawn(
            async move { q.enqueue(batch(&format!("k{i}"), "{}\n")).await },
        ));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let mut keys: Vec<String> = q.receive(100).await.unwrap().into_iter().map(|d| d.key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 50);
}
