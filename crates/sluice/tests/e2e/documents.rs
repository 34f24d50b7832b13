//! The `documents` stage end to end: the generator's change events (out of
//! order, duplicated, with deletes) through `sluice run` into each document
//! store, compared document by document and field by field with the
//! generator's oracle; snapshots (one after part of the changes, one
//! incremental after the rest) read back with delta-rs's Python package equal
//! it too; a replay of the same files changes nothing.

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
    let all = dir.join("all.ndjson");
    let expect = dir.join("expect.json");
    support::run_ok(
        Command::new(support::python())
            .arg(support::bench_dir().join("gen_events.py"))
            .args(["cdc", "-n", &CHANGES.to_string(), "--docs", &DOCUMENTS.to_string()])
            .args(["--seed", &seed.to_string(), "-o"])
            .arg(&all)
            .arg("--expect")
            .arg(&expect),
    );
    std::fs::create_dir_all(dir.join("parts")).unwrap();
    std::fs::create_dir_all(dir.join("changes")).unwrap();
    let text = std::fs::read_to_string(&all).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (i, chunk) in lines.chunks(lines.len().div_ceil(5)).enumerate() {
        std::fs::write(dir.join(format!("parts/part-{i}.ndjson")), chunk.join("\n") + "\n").unwrap();
    }
    let oracle: Value = serde_json::from_str(&std::fs::read_to_string(&expect).unwrap()).unwrap();
    let documents: BTreeMap<String, Value> = serde_json::from_value(oracle["documents"].clone()).unwrap();
    assert!(
        documents.len() >= 2_000,
        "the oracle holds {} documents",
        documents.len()
    );
    documents
}

fn pipeline(store: &str) -> String {
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
"#
    )
}

/// Moves parts `range` into the watched folder.
fn deliver(dir: &Path, range: std::ops::Range<usize>) {
    for i in range {
        let name = format!("part-{i}.ndjson");
        std::fs::rename(dir.join("parts").join(&name), dir.join("changes").join(&name)).unwrap();
    }
}

/// The snapshot table as delta-rs's Python package reads it: documents by id.
fn snapshot_documents(dir: &Path) -> BTreeMap<String, Value> {
    let script = "import json, sys\nfrom deltalake import DeltaTable\n\
                  rows = DeltaTable(sys.argv[1]).to_pyarrow_table(columns=['entity', 'id', 'document']).to_pylist()\n\
                  print(json.dumps([[r['entity'], r['id'], r['document']] for r in rows]))";
    let out = support::run_ok(
        Command::new(support::python())
            .args(["-c", script])
            .arg(dir.join("lake/doctors")),
    );
    let rows: Vec<(String, String, String)> = serde_json::from_str(&out).unwrap();
    let mut documents = BTreeMap::new();
    for (entity, id, document) in rows {
        assert_eq!(entity, "doctor");
        let previous = documents.insert(id.clone(), serde_json::from_str(&document).unwrap());
        assert!(previous.is_none(), "document {id} has two rows in the snapshot");
    }
    documents
}

fn sluice_snapshot(dir: &Path) -> String {
    support::run_ok(
        Command::new(support::SLUICE)
            .arg("snapshot")
            .arg(dir.join("pipeline.toml")),
    )
}

fn assert_matches_oracle(stored: &BTreeMap<String, Value>, oracle: &BTreeMap<String, Value>) {
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
    let tmp = tempfile::tempdir().unwrap();
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
    assert!(sluice_snapshot(dir).contains("up to date"), "a second run commits nothing");

    // The same files again (a replay): nothing changes.
    for entry in std::fs::read_dir(dir.join("changes")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read(&path).unwrap();
        std::fs::write(path.with_extension("again.ndjson"), text).unwrap();
    }
    run_until_idle(dir, &[]);
    assert_eq!(embedded_documents(dir), stored);
    assert!(sluice_snapshot(dir).contains("up to date"), "a replay writes nothing new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_events_merge_into_postgres_as_the_oracle_says() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let oracle = generate(dir, 72);
    let client = connect().await;
    let schema = fresh_schema(&client, "documents").await;
    let store = format!("{}\"\nschema = \"{schema}", url());
    std::fs::write(dir.join("pipeline.toml"), pipeline(&store)).unwrap();
    deliver(dir, 0..5);
    run_until_idle(dir, &[]);
    let stored: BTreeMap<String, Value> = client
        .query(
            &format!("SELECT id, document::text FROM {schema}.doctors WHERE document IS NOT NULL"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), serde_json::from_str(r.get::<_, &str>(1)).unwrap()))
        .collect();
    assert_matches_oracle(&stored, &oracle);
    sluice_snapshot(dir);
    assert_matches_oracle(&snapshot_documents(dir), &oracle);
    drop_schema(&client, &schema).await;
}
