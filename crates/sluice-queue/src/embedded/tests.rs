use super::*;
use crate::conformance::{self, suite_settings};

fn open(dir: &tempfile::TempDir) -> EmbeddedQueue {
    EmbeddedQueue::open(dir.path(), suite_settings()).unwrap()
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let dir = tempfile::tempdir().unwrap();
            conformance::$name(&open(&dir)).await;
        }
    )*};
}

#[tokio::test]
async fn max_attempts_dead_letters_with_last_error() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir);
    conformance::max_attempts_dead_letters_with_last_error(&q, &q).await;
}

conformance_tests!(
    delivers_in_order_and_ack_removes,
    redelivers_after_visibility_timeout,
    extend_keeps_batch_hidden,
    full_queue_refuses_then_recovers,
    dead_letters_idempotent_and_redrive_once,
    concurrent_enqueues_all_delivered,
);

#[tokio::test]
async fn enqueued_batches_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = open(&dir);
        q.enqueue(NewBatch {
            key: "a".into(),
            source: "s".into(),
            payload: Bytes::from_static(b"{}\n"),
            maybe_committed: true,
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
    let dir = tempfile::tempdir().unwrap();
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
    let dir = tempfile::tempdir().unwrap();
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
        })
        .await
        .unwrap();
    assert_eq!(first.receive(1).await.unwrap().len(), 1);
    drop(first);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = EmbeddedQueue::open_consumer(dir.path(), suite_settings()).unwrap();
    let again = second.receive(1).await.unwrap();
    assert_eq!(again.len(), 1, "released without waiting for the visibility timeout");
    assert!(again[0].needs_commit_check());
}

#[test]
fn a_new_queue_file_has_64_kib_pages_and_an_old_one_keeps_its_own() {
    let page_size = |path: &Path| -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir);
    assert_eq!(page_size(q.path()), 65536);

    let old = tempfile::tempdir().unwrap();
    let path = old.path().join("queue.sqlite3");
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    drop(conn);
    let q = open(&old);
    assert_eq!(page_size(q.path()), 4096, "a WAL database's page size cannot change");
}
