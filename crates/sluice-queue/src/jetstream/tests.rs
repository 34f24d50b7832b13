//! The conformance suite against the machine's NATS server with JetStream
//! (`SLUICE_TEST_NATS`, default `nats://127.0.0.1:4222`); each test has a
//! stream of its own, deleted afterwards.

use std::sync::Arc;

use super::*;
use crate::conformance::{self, suite_settings};

fn url() -> String {
    sluice_testkit::services::Service::Nats.url()
}

/// A fresh queue (and dead-letter stream) for test `name`.
async fn open(name: &str) -> JetStreamQueue {
    open_with(name, suite_settings()).await
}

async fn open_with(name: &str, settings: QueueSettings) -> JetStreamQueue {
    let names = JetStreamNames::for_pipeline(&format!("test-{name}-{}", std::process::id()));
    let client = async_nats::connect(url())
        .await
        .expect("NATS is reachable (scripts/test starts it)");
    let js = jetstream::new(client);
    let _ = js.delete_stream(&names.stream).await;
    let _ = js.delete_stream(&names.dead_stream).await;
    let _ = js.delete_key_value(&names.deliveries).await;
    reopen(names, settings).await
}

/// The queue as a new process opens it (after the last one died).
async fn reopen(names: JetStreamNames, settings: QueueSettings) -> JetStreamQueue {
    JetStreamQueue::open(&sluice_core::Secret::new(url()), names, settings)
        .await
        .unwrap()
}

/// Receives until something comes (a dead process's batches return after
/// the visibility timeout), at most 10 s.
async fn receive_some(queue: &JetStreamQueue) -> Vec<Delivery> {
    let started = std::time::Instant::now();
    loop {
        let got = queue.receive(10).await.unwrap();
        if !got.is_empty() || started.elapsed() > Duration::from_secs(10) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn batch(key: &str, payload: &str) -> NewBatch {
    NewBatch {
        key: key.into(),
        source: "src".into(),
        payload: bytes::Bytes::from(payload.to_string()),
        maybe_committed: false,
        in_file: None,
    }
}

async fn close(queue: JetStreamQueue) {
    queue.js.delete_stream(&queue.names.stream).await.unwrap();
    queue.js.delete_stream(&queue.names.dead_stream).await.unwrap();
    let _ = queue.js.delete_key_value(&queue.names.leases).await;
    let _ = queue.js.delete_key_value(&queue.names.deliveries).await;
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            if sluice_testkit::services::nats().is_none() {
                return;
            }
            let queue = open(stringify!($name)).await;
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
    release_spends_no_attempt,
    dead_letters_idempotent_and_redrive_once,
);

#[tokio::test]
async fn leases_have_one_holder_and_expire_unless_renewed() {
    if sluice_testkit::services::nats().is_none() {
        return;
    }
    use crate::lease::Leases;
    const NAME: &str = "compaction.lake";
    let queue = open("leases").await;
    let ttl = Duration::from_secs(1);
    let a = queue.leases("replica-a", ttl).await.unwrap();
    let b = queue.leases("replica-b", ttl).await.unwrap();

    let mut held = a.try_acquire(NAME).await.unwrap().expect("a free lease is taken");
    assert!(b.try_acquire(NAME).await.unwrap().is_none(), "a held lease is refused");
    held.renew().await.unwrap();
    held.release().await;
    let mut by_b = b.try_acquire(NAME).await.unwrap().expect("a released lease is taken");

    // b stops renewing (killed): past the time to live, a takes it over.
    let started = std::time::Instant::now();
    let by_a = loop {
        if let Some(lease) = a.try_acquire(NAME).await.unwrap() {
            break lease;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "the lease never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "taken before it expired"
    );
    assert!(by_b.renew().await.is_err(), "the old holder learns it lost the lease");
    by_b.release().await;
    assert!(
        b.try_acquire(NAME).await.unwrap().is_none(),
        "a stale release frees nothing"
    );
    by_a.release().await;
    close(queue).await;
}

#[tokio::test]
async fn max_attempts_dead_letters_with_last_error() {
    if sluice_testkit::services::nats().is_none() {
        return;
    }
    let queue = open("max_attempts").await;
    conformance::max_attempts_dead_letters_with_last_error(&queue, &queue).await;
    close(queue).await;
}

#[tokio::test]
async fn batches_in_flight_when_a_process_dies_run_alone_without_spending_attempts() {
    if sluice_testkit::services::nats().is_none() {
        return;
    }
    let first = open("crash_suspects").await;
    let names = first.names.clone();
    for key in ["a", "b", "c"] {
        first.enqueue(batch(key, "{}\n")).await.unwrap();
    }
    assert_eq!(first.receive(10).await.unwrap().len(), 3);
    drop(first); // the process dies with all three in flight

    let second = reopen(names, suite_settings()).await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let got = receive_some(&second).await;
        assert_eq!(got.len(), 1, "a suspect runs alone (seen {seen:?})");
        assert_eq!((got[0].attempts, got[0].maybe_committed), (1, true));
        assert!(second.isolating());
        assert!(second.receive(10).await.unwrap().is_empty(), "nothing beside a suspect");
        // Nothing to hand out until the suspect finishes: a consumer loop
        // waiting for batches waits for that instead of spinning.
        let waited = tokio::time::timeout(
            Duration::from_millis(300),
            second.wait_for_batches(Duration::from_secs(60)),
        );
        assert!(
            waited.await.is_err(),
            "waiting for batches returned while a suspect ran alone"
        );
        seen.push(got[0].key.clone());
        second.ack(vec![got[0].id]).await.unwrap();
        let waited = tokio::time::timeout(
            Duration::from_secs(10),
            second.wait_for_batches(Duration::from_secs(60)),
        );
        assert!(waited.await.is_ok(), "the suspect finished and the wait went on");
    }
    seen.sort();
    assert_eq!(seen, ["a", "b", "c"]);
    assert!(!second.isolating());
    assert_eq!(second.counts().await.unwrap().total, 0);
    assert_eq!(second.stats().await.unwrap().batches, 0);
    close(second).await;
}

#[tokio::test]
async fn a_batch_alone_in_flight_at_every_crash_becomes_crashed_engine_dead_letters() {
    if sluice_testkit::services::nats().is_none() {
        return;
    }
    let queue = open("crash_loop").await;
    let names = queue.names.clone();
    queue.enqueue(batch("poison", "{\"a\":1}\n{\"a\":2}\n")).await.unwrap();
    queue.enqueue(batch("fine", "{}\n")).await.unwrap();
    assert_eq!(queue.receive(10).await.unwrap().len(), 2);
    drop(queue);
    // Two processes die, each with the poison batch alone in flight (after
    // the first, "fine" is delivered and acknowledged beside it).
    let mut queue = reopen(names.clone(), suite_settings()).await;
    let mut crashes = 0;
    while crashes < suite_settings().max_crashes {
        let got = receive_some(&queue).await;
        assert_eq!(got.len(), 1);
        if got[0].key == "fine" {
            queue.ack(vec![got[0].id]).await.unwrap();
            continue;
        }
        assert_eq!(got[0].attempts, 1, "a crash spends no attempt");
        drop(queue);
        crashes += 1;
        queue = reopen(names.clone(), suite_settings()).await;
    }
    tokio::time::sleep(suite_settings().visibility_timeout * 2).await;
    let rest = queue.receive(10).await.unwrap();
    assert!(rest.iter().all(|d| d.key == "fine"), "{rest:?}");
    queue.ack(rest.iter().map(|d| d.id).collect()).await.unwrap();
    let counts = queue.counts().await.unwrap();
    assert_eq!(counts.by_reason.get("crashed_engine"), Some(&2), "{counts:?}");
    assert_eq!(counts.total, 2);
    assert_eq!(queue.stats().await.unwrap().batches, 0);
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
            leases: "SLUICE_CLICK_STREAM_2_LEASES".into(),
            checkpoints: "SLUICE_CLICK_STREAM_2_CHECKPOINTS".into(),
            deliveries: "SLUICE_CLICK_STREAM_2_DELIVERIES".into(),
            dead_stream: "SLUICE_CLICK_STREAM_2_DLQ".into(),
            dead_subject: "sluice.click_stream_2.dead".into(),
        }
    );
}

#[test]
fn reasons_round_trip_through_one_subject_token() {
    for reason in [
        "invalid_json",
        "schema:/props/revenue:type",
        "lookup_missing:/a.b c",
        "",
        "ü~",
    ] {
        let token = dead_letters::encode_reason(reason);
        assert!(
            !token.is_empty() && !token.contains(['.', '*', '>', ' ']),
            "{reason:?} -> {token:?}"
        );
        assert_eq!(dead_letters::decode_reason(&token), reason);
    }
}

/// Two replicas dead-letter the same batch (one was killed after storing
/// its letters): the shared store keeps one copy, and both see it.
#[tokio::test]
async fn replicas_share_one_dead_letter_store() {
    if sluice_testkit::services::nats().is_none() {
        return;
    }
    let a = open("shared_dlq").await;
    let b = JetStreamQueue::open(&sluice_core::Secret::new(url()), a.names.clone(), suite_settings())
        .await
        .unwrap();
    let letter = DeadLetter {
        batch_key: "file:/in/x.ndjson@10:1#0".into(),
        line: 3,
        source: "files".into(),
        component: "standardize".into(),
        reason: "schema:/ts:format".into(),
        detail: "not a date-time\non two lines".into(),
        bytes: bytes::Bytes::from_static(b"{\"ts\":\"x\"}"),
        at_ms: 1,
    };
    a.put(vec![letter.clone()]).await.unwrap();
    b.put(vec![letter.clone()]).await.unwrap();
    assert_eq!(
        b.counts().await.unwrap().by_reason,
        [("schema:/ts:format".to_string(), 1)].into()
    );
    let listed = a.list(DeadLetterFilter::default(), 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].batch_key.as_str(), listed[0].line, listed[0].bytes.as_ref()),
        (letter.batch_key.as_str(), 3, letter.bytes.as_ref())
    );
    assert_eq!(listed[0].detail, "not a date-time on two lines");
    close(a).await;
}

/// JetStream counts a message's subject and headers against `max_bytes`
/// too (about 100 bytes here), so 50 tiny batches need more room than the
/// suite's 1000 bytes of payload.
#[tokio::test]
async fn concurrent_enqueues_all_delivered() {
    if sluice_testkit::services::nats().is_none() {
        return;
    }
    let settings = QueueSettings {
        max_bytes: 64 * 1024,
        ..suite_settings()
    };
    let queue = open_with("concurrent", settings).await;
    let queue = Arc::new(queue);
    conformance::concurrent_enqueues_all_delivered(&queue).await;
    close(Arc::into_inner(queue).expect("the suite's tasks are done")).await;
}
