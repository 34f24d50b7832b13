//! The `documents` stage end to end: the generator's change events (out of
//! order, duplicated, with deletes) through `sluice run` into each document
//! store, compared document by document and field by field with the
//! generator's oracle; a second run over the same files changes nothing.

use std::{collections::BTreeMap, path::Path, process::Command};

use serde_json::Value;

use crate::{
    postgres::{connect, drop_schema, fresh_schema, run_until_idle, url},
    support,
};

const CHANGES: usize = 100_000;
const DOCUMENTS: usize = 2_500;

/// Generates `cdc` changes into `dir/changes/` (split into files) and returns the oracle's documents.
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
    std::fs::create_dir_all(dir.join("changes")).unwrap();
    let text = std::fs::read_to_string(&all).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (i, chunk) in lines.chunks(20_000).enumerate() {
        std::fs::write(dir.join(format!("changes/part-{i:02}.ndjson")), chunk.join("\n") + "\n").unwrap();
    }
    let oracle: Value = serde_json::from_str(&std::fs::read_to_string(&expect).unwrap()).unwrap();
    let documents: BTreeMap<String, Value> = serde_json::from_value(oracle["documents"].clone()).unwrap();
    assert!(documents.len() >= 2_000, "the oracle holds {} documents", documents.len());
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

fn assert_matches_oracle(stored: &BTreeMap<String, Value>, oracle: &BTreeMap<String, Value>) {
    let missing: Vec<&String> = oracle.keys().filter(|id| !stored.contains_key(*id)).take(5).collect();
    let extra: Vec<&String> = stored.keys().filter(|id| !oracle.contains_key(*id)).take(5).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, extra {extra:?}");
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
fn change_events_merge_into_the_embedded_store_as_the_oracle_says() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let oracle = generate(dir, 71);
    std::fs::write(dir.join("pipeline.toml"), pipeline("embedded")).unwrap();
    run_until_idle(dir, &[]);
    let stored = embedded_documents(dir);
    assert_matches_oracle(&stored, &oracle);

    // The same files again (a replay): nothing changes.
    for entry in std::fs::read_dir(dir.join("changes")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read(&path).unwrap();
        std::fs::write(path.with_extension("again.ndjson"), text).unwrap();
    }
    run_until_idle(dir, &[]);
    assert_eq!(embedded_documents(dir), stored);
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
    drop_schema(&client, &schema).await;
}
