//! The conformance suite: every store must pass each check the same way.
//! PostgreSQL runs against `SLUICE_TEST_POSTGRES` (default: the machine's
//! server, database `test`).

use std::sync::Arc;

use serde_json::{Value, json};

use super::{DocumentStore, embedded::EmbeddedStore, postgres::PostgresStore};
use crate::{
    change::{Change, DocKey, Op},
    merge::{Node, Version},
};

fn key(id: &str) -> DocKey {
    DocKey {
        entity: "doctor".into(),
        id: id.into(),
    }
}

fn upsert(id: &str, version: Version, patch: Value) -> Change {
    Change {
        key: key(id),
        version,
        ts: Some(format!("2026-11-01T00:00:{version:02}Z")),
        op: Op::Upsert(patch.as_object().expect("patches are objects").clone()),
    }
}

fn delete(id: &str, version: Version) -> Change {
    Change {
        key: key(id),
        version,
        ts: None,
        op: Op::Delete,
    }
}

async fn document(store: &dyn DocumentStore, id: &str) -> Option<Value> {
    store.get(&key(id)).await.unwrap().and_then(|d| d.document)
}

async fn batches_merge_in_version_order_across_deliveries(store: &dyn DocumentStore) {
    let first = store
        .apply(
            "b1",
            false,
            &[upsert("a", 2, json!({"name": "Ann", "zip": null, "tags": ["x"]}))],
        )
        .await
        .unwrap();
    assert_eq!((first.emitted.len(), first.stored, first.replayed), (1, 1, false));
    let late = store
        .apply(
            "b2",
            false,
            &[upsert("a", 1, json!({"name": "Old", "zip": "0150", "city": "Oslo"}))],
        )
        .await
        .unwrap();
    assert_eq!(late.stats.applied, 1, "the late change still adds city");
    assert_eq!(late.stats.stale_parts, 2, "its name and zip lost to version 2");
    assert_eq!(
        document(store, "a").await,
        Some(json!({"city": "Oslo", "name": "Ann", "tags": ["x"]}))
    );
    let stored = store.get(&key("a")).await.unwrap().unwrap();
    assert_eq!(
        (stored.version, stored.revision, stored.updated_at.as_deref()),
        (2, 2, Some("2026-11-01T00:00:02Z"))
    );
}

async fn a_redelivered_batch_changes_nothing_and_emits_again(store: &dyn DocumentStore) {
    let changes = [upsert("r", 1, json!({"n": 1})), upsert("r", 2, json!({"n": 2}))];
    let applied = store.apply("redelivered", false, &changes).await.unwrap();
    assert_eq!(applied.emitted.len(), 2);
    store
        .apply("later", false, &[upsert("r", 3, json!({"m": 3}))])
        .await
        .unwrap();
    let again = store.apply("redelivered", true, &changes).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.stats, Default::default());
    let emitted: Vec<(usize, u64, Option<Value>)> = again
        .emitted
        .iter()
        .map(|e| (e.change, e.document.revision, e.document.document.clone()))
        .collect();
    assert_eq!(
        emitted,
        vec![
            (0, 3, Some(json!({"m": 3, "n": 2}))),
            (1, 3, Some(json!({"m": 3, "n": 2})))
        ],
        "the current document, once per emission of the first delivery"
    );
    let unseen = store
        .apply("never-seen", true, &[upsert("r", 4, json!({"o": 4}))])
        .await
        .unwrap();
    assert!(!unseen.replayed && unseen.stats.applied == 1);
}

async fn a_delete_seen_first_keeps_older_changes_out(store: &dyn DocumentStore) {
    let applied = store.apply("d1", false, &[delete("gone", 5)]).await.unwrap();
    assert_eq!((applied.emitted.len(), applied.stored, applied.stats.noops), (0, 1, 1));
    let late = store
        .apply("d2", false, &[upsert("gone", 4, json!({"a": 1}))])
        .await
        .unwrap();
    assert_eq!((late.emitted.len(), late.stats.stale_parts), (0, 1));
    assert_eq!(document(store, "gone").await, None);
    let back = store
        .apply("d3", false, &[upsert("gone", 6, json!({"b": 2}))])
        .await
        .unwrap();
    assert_eq!(back.emitted[0].document.document, Some(json!({"b": 2})));
    let deleted = store.apply("d4", false, &[delete("gone", 7)]).await.unwrap();
    assert_eq!(deleted.emitted[0].document.to_event_json()["op"], "delete");
}

async fn changed_since_reads_writes_in_order(store: &dyn DocumentStore) {
    let start = store
        .changed_since(0, 100_000)
        .await
        .unwrap()
        .last()
        .map_or(0, |s| s.seq);
    store
        .apply(
            "s1",
            false,
            &[upsert("s", 1, json!({"a": 1})), upsert("t", 1, json!({"a": 1}))],
        )
        .await
        .unwrap();
    store
        .apply("s2", false, &[upsert("s", 2, json!({"a": 2}))])
        .await
        .unwrap();
    store.apply("s3", false, &[delete("t", 2)]).await.unwrap();
    let changed = store.changed_since(start, 10).await.unwrap();
    let seen: Vec<(&str, Option<&Value>)> = changed
        .iter()
        .map(|s| (s.document.key.id.as_str(), s.document.document.as_ref()))
        .collect();
    assert_eq!(
        seen,
        vec![("s", Some(&json!({"a": 2}))), ("t", None)],
        "latest write per document, in order"
    );
    assert!(changed[0].seq < changed[1].seq);
    assert_eq!(store.count_changed_since(start).await.unwrap(), 2);
    let rest = store.changed_since(changed[0].seq, 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(store.count_changed_since(changed[0].seq).await.unwrap(), 1);
    assert_eq!(store.count_changed_since(changed[1].seq).await.unwrap(), 0);
}

/// Random changes to a few documents, split into batches delivered out of
/// order, with duplicates, by concurrent writers.
async fn concurrent_writers_reach_the_version_order_result(stores: Vec<Arc<dyn DocumentStore>>) {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut changes = Vec::new();
    for doc in 0..20 {
        for version in 1..=15 {
            let id = format!("c{doc}");
            let field = ["a", "b", "c"][next(3) as usize];
            changes.push(match next(10) {
                0 => delete(&id, version),
                1 => upsert(&id, version, json!({ field: null })),
                2 => upsert(&id, version, json!({ field: {"x": next(5), "y": [next(3)]} })),
                _ => upsert(&id, version, json!({ field: next(100) })),
            });
        }
    }
    let mut expected = std::collections::BTreeMap::new();
    for change in &changes {
        let node: &mut Node = expected.entry(change.key.id.clone()).or_default();
        match &change.op {
            Op::Upsert(patch) => node.upsert(change.version, patch),
            Op::Delete => node.delete(change.version),
        };
    }
    let mut delivery = changes.clone();
    delivery.extend(changes.iter().step_by(7).cloned());
    for i in (1..delivery.len()).rev() {
        delivery.swap(i, next(i as u64 + 1) as usize);
    }
    let batches: Vec<Vec<Change>> = delivery.chunks(9).map(<[Change]>::to_vec).collect();
    let mut writers = tokio::task::JoinSet::new();
    for (i, batch) in batches.into_iter().enumerate() {
        let store = stores[i % stores.len()].clone();
        writers.spawn(async move {
            loop {
                match store.apply(&format!("concurrent-{i}"), true, &batch).await {
                    Ok(_) => return,
                    Err(super::StoreError::Busy(_)) => tokio::task::yield_now().await,
                    Err(e) => panic!("{e}"),
                }
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    for (id, node) in expected {
        assert_eq!(
            document(stores[0].as_ref(), &id).await,
            node.document(),
            "document {id}"
        );
    }
}

/// Stream sequence numbers (DynamoDB's have 21 to 40 digits) as versions:
/// ordered, stored and read back exactly, past 64 bits and up to the maximum.
async fn versions_past_64_bits_are_kept_exactly(store: &dyn DocumentStore) {
    let sequence: Version = 4_421_584_500_000_000_017_450_439_091;
    let changes = [
        upsert("seq", sequence + 1, json!({"n": 2})),
        upsert("seq", sequence, json!({"n": 1, "kept": true})),
        upsert("max", crate::version::MAX, json!({"n": 1})),
    ];
    store.apply("sequence-numbers", false, &changes).await.unwrap();
    let stored = store.get(&key("seq")).await.unwrap().unwrap();
    assert_eq!(
        (stored.version, stored.document),
        (sequence + 1, Some(json!({"kept": true, "n": 2})))
    );
    let late = store
        .apply("late", false, &[upsert("seq", sequence - 1, json!({"n": 0}))])
        .await
        .unwrap();
    assert_eq!(late.stats.stale_parts, 1, "an older sequence number loses");
    let written = store.changed_since(0, 1_000).await.unwrap();
    let version_of = |id: &str| {
        written
            .iter()
            .find(|w| w.document.key.id == id)
            .map(|w| w.document.version)
    };
    assert_eq!(version_of("seq"), Some(sequence + 1));
    assert_eq!(version_of("max"), Some(crate::version::MAX));
}

async fn conformance(stores: Vec<Arc<dyn DocumentStore>>) {
    let store = stores[0].as_ref();
    versions_past_64_bits_are_kept_exactly(store).await;
    batches_merge_in_version_order_across_deliveries(store).await;
    a_redelivered_batch_changes_nothing_and_emits_again(store).await;
    a_delete_seen_first_keeps_older_changes_out(store).await;
    changed_since_reads_writes_in_order(store).await;
    concurrent_writers_reach_the_version_order_result(stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_conforms() {
    let dir = sluice_testkit::tempdir().unwrap();
    let store: Arc<dyn DocumentStore> = Arc::new(EmbeddedStore::open(&dir.path().join("docs.sqlite3")).unwrap());
    conformance(vec![store]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_conforms_with_several_writers() {
    let Some(url) = sluice_testkit::services::postgres() else {
        return;
    };
    let schema = format!("sluice_documents_{}", std::process::id());
    let admin = sluice_postgres::db::connect(&url).await.unwrap();
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
    let mut stores: Vec<Arc<dyn DocumentStore>> = Vec::new();
    for _ in 0..3 {
        stores.push(Arc::new(PostgresStore::open(&url, &schema, "doctors").await.unwrap()));
    }
    conformance(stores).await;
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_postgres_table_with_64_bit_versions_is_widened_on_open() {
    let Some(url) = sluice_testkit::services::postgres() else {
        return;
    };
    let schema = format!("sluice_documents_legacy_{}", std::process::id());
    let admin = sluice_postgres::db::connect(&url).await.unwrap();
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
    let store = PostgresStore::open(&url, &schema, "docs").await.unwrap();
    store
        .apply("old", false, &[upsert("a", 7, json!({"n": 1}))])
        .await
        .unwrap();
    admin
        .batch_execute(&format!("ALTER TABLE {schema}.docs ALTER COLUMN version TYPE bigint"))
        .await
        .unwrap();
    let reopened = PostgresStore::open(&url, &schema, "docs").await.unwrap();
    let big: Version = u64::MAX as Version * 10;
    reopened
        .apply("new", false, &[upsert("a", big, json!({"n": 2}))])
        .await
        .unwrap();
    let stored = reopened.get(&key("a")).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.document), (big, Some(json!({"n": 2}))));
    let column_type: String = admin
        .query_one(
            "SELECT data_type FROM information_schema.columns
             WHERE table_schema = $1 AND table_name = 'docs' AND column_name = 'version'",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(column_type, "numeric");
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
