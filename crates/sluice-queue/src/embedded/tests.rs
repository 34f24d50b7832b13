use super::*;
use crate::conformance::{self, suite_settings};

fn open(dir: &sluice_testkit::TempDir) -> EmbeddedQueue {
    EmbeddedQueue::open(dir.path(), suite_settings()).unwrap()
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let dir = sluice_testkit::tempdir().unwrap();
            conformance::$name(&open(&dir)).await;
        }
    )*};
}

#[tokio::test]
async fn max_attempts_dead_letters_with_last_error() {
    let dir = sluice_testkit::tempdir().unwrap();
    let q = open(&dir);
    conformance::max_attempts_dead_letters_with_last_error(&q, &q).await;
}

conformance_tests!(
    delivers_in_order_and_ack_removes,
    redelivers_after_visibility_timeout,
    extend_keeps_batch_hidden,
    full_queue_refuses_then_recovers,
    release_spends_no_attempt,
    dead_letters_idempotent_and_redrive_once,
    concurrent_enqueues_all_delivered,
);

#[tokio::test]
async fn enqueued_batches_survive_reopen() {
    let dir = sluice_testkit::tempdir().unwrap();
    {
        let q = open(&dir);
        q.enqueue(NewBatch {
            key: "a".into(),
            source: "s".into(),
            payload: Bytes::from_static(b"{}\n"),
            maybe_committed: true,
            in_file: None,
        })
        .await
        .unwrap();
    }
    let q = open(&dir);
    let got = q.receive(10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(got[0].maybe_committed);
    assert_eq!(q.stats().await.unwrap().bytes, 3);
}

#[tokio::test]
async fn second_process_sees_redriven_batches() {
    let dir = sluice_testkit::tempdir().unwrap();
    let running = open(&dir);
    let cli = open(&dir);
    cli.put(vec![DeadLetter {
        batch_key: "k".into(),
        line: 0,
        source: "files".into(),
        component: "v".into(),
        reason: "invalid_json".into(),
        detail: String::new(),
        bytes: Bytes::from_static(b"{"),
        at_ms: 0,
    }])
    .await
    .unwrap();
    assert_eq!(cli.redrive(DeadLetterFilter::default()).await.unwrap(), 1);
    assert_eq!(running.receive(10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn one_consumer_at_a_time_and_restart_releases_in_flight_batches() {
    let dir = sluice_testkit::tempdir().unwrap();
    let first = EmbeddedQueue::open_consumer(dir.path(), suite_settings()).unwrap();
    let err = EmbeddedQueue::open_consumer(dir.path(), suite_settings())
        .err()
        .unwrap();
    assert!(err.to_string().contains("locked"), "{err}");
    first
        .enqueue(NewBatch {
            key: "a".into(),
            source: "s".into(),
            payload: Bytes::from_static(b"{}\n"),
            maybe_committed: false,
            in_file: None,
        })
        .await
        .unwrap();
    assert_eq!(first.receive(1).await.unwrap().len(), 1);
    drop(first);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = EmbeddedQueue::open_consumer(dir.path(), suite_settings()).unwrap();
    let again = second.receive(1).await.unwrap();
    assert_eq!(again.len(), 1, "released without waiting for the visibility timeout");
    assert!(again[0].maybe_committed);
}

#[test]
fn a_new_queue_file_has_64_kib_pages_and_an_old_one_keeps_its_own() {
    let page_size = |path: &Path| -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap()
    };
    let dir = sluice_testkit::tempdir().unwrap();
    let q = open(&dir);
    assert_eq!(page_size(q.path()), 65536);

    let old = sluice_testkit::tempdir().unwrap();
    let path = old.path().join("queue.sqlite3");
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    drop(conn);
    let q = open(&old);
    assert_eq!(page_size(q.path()), 4096, "a WAL database's page size cannot change");
}

/// `batches` as files made before payloads had a table of their own.
const OLD_BATCHES: &str = "
CREATE TABLE batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    source TEXT NOT NULL,
    payload BLOB NOT NULL,
    maybe_committed INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    visible_at INTEGER NOT NULL,
    enqueued_at INTEGER NOT NULL,
    last_error TEXT
);
CREATE INDEX batches_visible ON batches(visible_at);";

#[tokio::test]
async fn a_file_with_payloads_in_batches_is_migrated_and_nothing_is_lost() {
    let dir = sluice_testkit::tempdir().unwrap();
    let path = dir.path().join("queue.sqlite3");
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(OLD_BATCHES).unwrap();
        let far = now_ms() + 3_600_000;
        conn.execute(
            "INSERT INTO batches (key, source, payload, maybe_committed, attempts, visible_at, enqueued_at)
             VALUES ('in-flight', 's', x'7b7d0a', 0, 1, ?1, 1), ('waiting', 's', x'7b2261223a317d0a', 1, 0, 0, 2)",
            params![far],
        )
        .unwrap();
    }
    let q = EmbeddedQueue::open_consumer(dir.path(), suite_settings()).unwrap();
    assert_eq!(q.stats().await.unwrap().bytes, 3 + 8);
    let got = q.receive(10).await.unwrap();
    let seen: Vec<(&str, &[u8], u32, bool)> = got
        .iter()
        .map(|d| (d.key.as_str(), &d.payload[..], d.attempts, d.maybe_committed))
        .collect();
    assert_eq!(
        seen,
        [
            ("in-flight", &b"{}\n"[..], 2, true),
            ("waiting", &b"{\"a\":1}\n"[..], 1, true)
        ],
        "the killed consumer's batch is released at once (a second delivery: maybe committed), both keep their payloads"
    );
    q.ack(got.iter().map(|d| d.id).collect()).await.unwrap();
    assert_eq!(q.stats().await.unwrap().bytes, 0);
    drop(q);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let conn = Connection::open(&path).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT count(*) FROM pragma_table_info('batches') WHERE name = 'payload'"),
        0
    );
    assert_eq!(count("SELECT count(*) FROM batches"), 0);
    assert_eq!(
        count("SELECT count(*) FROM batch_payloads"),
        0,
        "ack deletes the payload too"
    );
    drop(conn);
    let q = open(&dir);
    q.enqueue(NewBatch {
        key: "after".into(),
        source: "s".into(),
        payload: Bytes::from_static(b"{}\n"),
        maybe_committed: false,
        in_file: None,
    })
    .await
    .unwrap();
    assert_eq!(
        q.receive(10).await.unwrap()[0].key,
        "after",
        "a migrated file opens again"
    );
}

/// Drops `q` as a killed process would leave it, and opens the queue again
/// as the next consumer.
async fn crash_and_restart(q: EmbeddedQueue, dir: &sluice_testkit::TempDir) -> EmbeddedQueue {
    drop(q);
    for _ in 0..100 {
        match EmbeddedQueue::open_consumer(dir.path(), suite_settings()) {
            Ok(q) => return q,
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    panic!("the queue's lock was never released");
}

fn keys(deliveries: &[Delivery]) -> Vec<(&str, u32, bool)> {
    deliveries
        .iter()
        .map(|d| (d.key.as_str(), d.attempts, d.maybe_committed))
        .collect()
}

#[tokio::test]
async fn batches_in_flight_at_a_crash_run_alone_without_spending_attempts_and_a_repeat_crasher_is_set_aside() {
    let dir = sluice_testkit::tempdir().unwrap();
    let settings = suite_settings();
    assert_eq!((settings.max_attempts, settings.max_crashes), (3, 2));
    let mut q = EmbeddedQueue::open_consumer(dir.path(), settings).unwrap();
    for (key, payload) in [("a", "{}\n"), ("b", "{\"p\":1}\n{\"p\":2}\n"), ("c", "{}\n")] {
        q.enqueue(NewBatch {
            key: key.into(),
            source: "s".into(),
            payload: Bytes::from(payload),
            maybe_committed: false,
            in_file: None,
        })
        .await
        .unwrap();
    }
    assert_eq!(q.receive(10).await.unwrap().len(), 3);
    q = crash_and_restart(q, &dir).await;
    // The three were in flight together: suspects, their attempt given back.
    let alone = q.receive(10).await.unwrap();
    assert_eq!(keys(&alone), [("a", 1, true)], "suspects run one at a time");
    assert!(q.isolating());
    assert!(q.receive(10).await.unwrap().is_empty(), "nothing beside a suspect");
    q.nack(alone[0].id, "sink down".into(), Duration::ZERO).await.unwrap();
    assert_eq!(keys(&q.receive(10).await.unwrap()), [("b", 1, true)]);
    q = crash_and_restart(q, &dir).await;
    // b was alone: one crash against it, none against c; b goes first again.
    assert_eq!(keys(&q.receive(10).await.unwrap()), [("b", 1, true)]);
    q = crash_and_restart(q, &dir).await;
    // b died alone twice (max_crashes): its lines become dead letters; then
    // c, still a suspect, runs alone.
    let next = q.receive(10).await.unwrap();
    assert_eq!(keys(&next), [("c", 1, true)]);
    assert!(q.isolating());
    q.ack(vec![next[0].id]).await.unwrap();
    // a (nacked: a reported error, which spends its attempt) goes on normally.
    let rest = q.receive(10).await.unwrap();
    assert_eq!(keys(&rest), [("a", 2, true)]);
    assert!(!q.isolating());
    let counts = q.counts().await.unwrap();
    assert_eq!(counts.by_reason.get("crashed_engine"), Some(&2), "{counts:?}");
    let letters = q.list(DeadLetterFilter::default(), 10).await.unwrap();
    assert!(
        letters[0]
            .detail
            .starts_with("the engine died 2 times while this batch was the only one in flight")
    );
    q.ack(vec![rest[0].id]).await.unwrap();
    assert_eq!(q.stats().await.unwrap().batches, 0);
    // A source that reads b's input again enqueues a copy with its key: set
    // aside at once, never run.
    q.enqueue(NewBatch {
        key: "b".into(),
        source: "s".into(),
        payload: Bytes::from("{\"p\":1}\n{\"p\":2}\n"),
        maybe_committed: false,
        in_file: None,
    })
    .await
    .unwrap();
    assert!(q.receive(10).await.unwrap().is_empty());
    assert_eq!(q.stats().await.unwrap().batches, 0);
    assert_eq!(q.counts().await.unwrap().by_reason.get("crashed_engine"), Some(&2));
}
