//! The `documents` stage end to end: the generator's change events (out of
//! order, duplicated, with deletes) through `sluice run` into each document
//! store, compared document by document and field by field with the
//! generator's oracle; snapshots (one after part of the changes, one
//! incremental after the rest) read back with delta-rs's Python package equal
//! it too; a replay of the same files changes nothing.

use sluice_testkit::services::Service;
use std::{collections::BTreeMap, path::Path, process::Command};

use serde_json::Value;

use crate::{
    postgres::{connect, drop_schema, fresh_schema, run_until_idle, url},
    support,
};

const CHANGES: usize = 100_000;
const DOCUMENTS: usize = 2_500;

/// Generates `cdc` changes into `dir/parts/` (five files, in delivery
/// order) and returns the oracle's documents.
fn generate(dir: &Path, seed: u64) -> BTreeMap<String, Value> {
    generate_sized(dir, seed, CHANGES, DOCUMENTS)
}

pub(crate) fn generate_sized(dir: &Path, seed: u64, changes: usize, docs: usize) -> BTreeMap<String, Value> {
    let (lines, oracle) = sluice_testkit::data::cdc(&sluice_testkit::generator::CdcOptions {
        changes: changes as u64,
        docs: docs as u64,
        seed,
        ..Default::default()
    });
    std::fs::create_dir_all(dir.join("parts")).unwrap();
    std::fs::create_dir_all(dir.join("changes")).unwrap();
    for (i, chunk) in lines.chunks(lines.len().div_ceil(5)).enumerate() {
        std::fs::write(dir.join(format!("parts/part-{i}.ndjson")), chunk.join("\n") + "\n").unwrap();
    }
    let documents = oracle.documents;
    assert!(
        documents.len() * 5 >= docs * 4,
        "the oracle holds {} documents",
        documents.len()
    );
    documents
}

pub(crate) fn pipeline(store: &str) -> String {
    format!(
        r#"
[sources.changes]
type = "file"
path = "changes/*.ndjson"
settle_secs = 0
max_batch_bytes = 262144

[transforms.doctors]
type = "documents"
inputs = ["changes"]
store = "{store}"
snapshot.uri = "lake/doctors"
snapshot.columns.rating = {{ pointer = "/rating", type = "double" }}
snapshot.columns.specialty = {{ pointer = "/specialty", type = "string" }}
"#
    )
}

/// Moves parts `range` into the watched folder.
pub(crate) fn deliver(dir: &Path, range: std::ops::Range<usize>) {
    for i in range {
        let name = format!("part-{i}.ndjson");
        std::fs::rename(dir.join("parts").join(&name), dir.join("changes").join(&name)).unwrap();
    }
}

/// The snapshot table as delta-rs's Python package reads it: documents by id.
fn snapshot_documents(dir: &Path) -> BTreeMap<String, Value> {
    // `os._exit`: pyarrow's threads sometimes abort the interpreter's teardown
    // ("terminate called without an active exception") after the answer is out.
    let script = "import json, os, sys\nfrom deltalake import DeltaTable\n\
                  columns = ['entity', 'id', 'document', 'rating', 'specialty']\n\
                  rows = DeltaTable(sys.argv[1]).to_pyarrow_table(columns=columns).to_pylist()\n\
                  print(json.dumps([[r[c] for c in columns] for r in rows]), flush=True)\n\
                  os._exit(0)";
    let out = support::run_ok(
        Command::new(support::python())
            .args(["-c", script])
            .arg(dir.join("lake/doctors")),
    );
    let rows: Vec<(String, String, String, Value, Value)> = serde_json::from_str(&out).unwrap();
    let mut documents = BTreeMap::new();
    for (entity, id, document, rating, specialty) in rows {
        assert_eq!(entity, "doctor");
        let document: Value = serde_json::from_str(&document).unwrap();
        // The typed columns hold the document's fields, null where absent.
        assert_eq!(rating, document.get("rating").cloned().unwrap_or(Value::Null), "{id}");
        assert_eq!(
            specialty,
            document.get("specialty").cloned().unwrap_or(Value::Null),
            "{id}"
        );
        let previous = documents.insert(id.clone(), document);
        assert!(previous.is_none(), "document {id} has two rows in the snapshot");
    }
    documents
}

fn sluice_snapshot(dir: &Path) -> String {
    let (out, progress) = support::run_with_progress(
        Command::new(support::SLUICE)
            .arg("snapshot")
            .arg(dir.join("pipeline.toml")),
        "snapshotting",
    );
    match progress {
        Some((done, total)) => assert!(done == total && total > 0, "documents: {done}/{total}"),
        None => assert!(
            out.contains("is up to date"),
            "a snapshot that wrote shows progress: {out}"
        ),
    }
    out
}

/// Current `doctors` documents in the PostgreSQL store under `schema`.
pub(crate) async fn postgres_documents(client: &tokio_postgres::Client, schema: &str) -> BTreeMap<String, Value> {
    client
        .query(
            &format!("SELECT id, document::text FROM {schema}.doctors WHERE document IS NOT NULL"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), serde_json::from_str(r.get::<_, &str>(1)).unwrap()))
        .collect()
}

pub(crate) fn assert_matches_oracle(stored: &BTreeMap<String, Value>, oracle: &BTreeMap<String, Value>) {
    let missing: Vec<&String> = oracle.keys().filter(|id| !stored.contains_key(*id)).take(5).collect();
    let extra: Vec<&String> = stored.keys().filter(|id| !oracle.contains_key(*id)).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    for (id, document) in oracle {
        assert_eq!(&stored[id], document, "document {id}");
    }
}

/// Current documents in the embedded store, read straight from its SQLite file.
fn embedded_documents(dir: &Path) -> BTreeMap<String, Value> {
    let db = rusqlite::Connection::open(dir.join(".sluice/pipeline/documents/doctors.sqlite3")).unwrap();
    let mut stmt = db
        .prepare("SELECT id, document FROM documents WHERE entity = 'doctor' AND document IS NOT NULL")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|row| {
            let (id, document) = row.unwrap();
            (id, serde_json::from_str(&document).unwrap())
        })
        .collect()
}

#[test]
fn change_events_merge_into_the_embedded_store_and_snapshots_follow_incrementally() {
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let oracle = generate(dir, 71);
    std::fs::write(dir.join("pipeline.toml"), pipeline("embedded")).unwrap();

    // Three fifths, a snapshot of them; the rest, a snapshot of what changed since.
    deliver(dir, 0..3);
    run_until_idle(dir, &[]);
    let first = sluice_snapshot(dir);
    assert!(first.contains("documents written"), "{first}");
    assert_eq!(snapshot_documents(dir), embedded_documents(dir));
    deliver(dir, 3..5);
    run_until_idle(dir, &[]);
    let second = sluice_snapshot(dir);
    assert!(second.contains("removed"), "{second}");
    let stored = embedded_documents(dir);
    assert_matches_oracle(&stored, &oracle);
    assert_matches_oracle(&snapshot_documents(dir), &oracle);
    assert!(
        sluice_snapshot(dir).contains("up to date"),
        "a second run commits nothing"
    );

    // The same files again (a replay): nothing changes.
    for entry in std::fs::read_dir(dir.join("changes")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read(&path).unwrap();
        std::fs::write(path.with_extension("again.ndjson"), text).unwrap();
    }
    run_until_idle(dir, &[]);
    assert_eq!(embedded_documents(dir), stored);
    assert!(
        sluice_snapshot(dir).contains("up to date"),
        "a replay writes nothing new"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_events_merge_into_postgres_as_the_oracle_says() {
    if !support::services_up(&[Service::Postgres]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let oracle = generate(dir, 72);
    let client = connect().await;
    let schema = fresh_schema(&client, "documents").await;
    let store = format!("{}\"\nschema = \"{schema}", url());
    std::fs::write(dir.join("pipeline.toml"), pipeline(&store)).unwrap();
    deliver(dir, 0..5);
    run_until_idle(dir, &[]);
    assert_matches_oracle(&postgres_documents(&client, &schema).await, &oracle);
    sluice_snapshot(dir);
    assert_matches_oracle(&snapshot_documents(dir), &oracle);
    drop_schema(&client, &schema).await;
}

/// The hashes a projection with `fields = { name = "/name", specialty =
/// "/specialty" }` and `key = "<prefix>{entity}:{id}"` writes for `oracle`.
pub(crate) fn card_hashes(
    oracle: &BTreeMap<String, Value>,
    prefix: &str,
) -> BTreeMap<String, BTreeMap<String, String>> {
    oracle
        .iter()
        .map(|(id, doc)| {
            let hash = [("name", "/name"), ("specialty", "/specialty")]
                .into_iter()
                .filter_map(|(field, pointer)| {
                    let value = doc.pointer(pointer)?.as_str()?;
                    Some((field.to_string(), value.to_string()))
                })
                .collect();
            (format!("{prefix}doctor:{id}"), hash)
        })
        .collect()
}

/// Every hash under `prefix`, by key.
pub(crate) async fn redis_hashes(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(conn)
        .await
        .unwrap();
    let mut hashes = BTreeMap::new();
    for key in keys {
        let mut hash: BTreeMap<String, String> = redis::cmd("HGETALL").arg(&key).query_async(conn).await.unwrap();
        if hash.is_empty() {
            // Deleted since KEYS listed it (Redis keeps no empty hash).
            continue;
        }
        assert!(hash.remove("_revision").is_some(), "{key} has no revision");
        hashes.insert(key, hash);
    }
    hashes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_in_redis_follow_the_documents_and_rehydrate_the_same() {
    if !support::services_up(&[Service::Redis]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let oracle = generate_sized(dir, 73, 20_000, 1_000);
    // Hospitals are documents too: the cards embed their city.
    let hospitals: std::collections::BTreeSet<String> = std::fs::read_dir(dir.join("parts"))
        .unwrap()
        .flat_map(|f| {
            std::fs::read_to_string(f.unwrap().path())
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter_map(|l| {
            serde_json::from_str::<Value>(&l).unwrap()["patch"]["hospital"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    let hospital_changes: Vec<String> = hospitals
        .iter()
        .map(|h| {
            serde_json::json!({"entity": "hospital", "id": h, "version": 1, "op": "upsert", "patch": {"city": format!("City of {h}")}})
                .to_string()
        })
        .collect();
    std::fs::write(dir.join("changes/hospitals.ndjson"), hospital_changes.join("\n") + "\n").unwrap();
    let redis_url = Service::Redis.url();
    let prefix = format!("sluice-e2e-{}:", std::process::id());
    let projection = format!(
        r#"
[sinks.cards]
type = "projection"
inputs = ["doctors.changes"]
redis = "{redis_url}"
key = "{prefix}{{entity}}:{{id}}"
entity = "doctor"
fields = {{ name = "/name", specialty = "/specialty", city = "/address/city" }}
lookups.hospital = {{ entity = "hospital", id = "/hospital", fields = {{ hospital_city = "/city" }} }}
"#
    );
    std::fs::write(dir.join("pipeline.toml"), pipeline("embedded") + &projection).unwrap();
    run_until_idle(dir, &[]);
    deliver(dir, 0..5);
    run_until_idle(dir, &[]);

    let expected: BTreeMap<String, BTreeMap<String, String>> = oracle
        .iter()
        .map(|(id, doc)| {
            let mut hash = BTreeMap::new();
            for (field, pointer) in [
                ("name", "/name"),
                ("specialty", "/specialty"),
                ("city", "/address/city"),
            ] {
                if let Some(v) = doc.pointer(pointer).and_then(Value::as_str) {
                    hash.insert(field.to_string(), v.to_string());
                }
            }
            let hospital = doc["hospital"].as_str().unwrap();
            hash.insert("hospital_city".into(), format!("City of {hospital}"));
            (format!("{prefix}doctor:{id}"), hash)
        })
        .collect();
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    assert_eq!(
        redis_hashes(&mut conn, &prefix).await,
        expected,
        "deleted documents have no card"
    );

    // Lose the read model, rebuild it from the store, twice.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.unwrap();
    for _ in 0..2 {
        let (out, progress) = support::run_with_progress(
            Command::new(support::SLUICE)
                .arg("rehydrate")
                .arg(dir.join("pipeline.toml"))
                .arg("cards"),
            "rehydrating",
        );
        assert!(out.contains("hashes written or deleted"), "{out}");
        let (done, total) = progress.expect("rehydrating shows progress");
        assert!(done == total && total > 0, "documents read: {done}/{total}");
        assert_eq!(redis_hashes(&mut conn, &prefix).await, expected);
    }
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.unwrap();
}
