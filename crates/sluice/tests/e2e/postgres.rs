//! The `postgres` sink end to end against the machine's real PostgreSQL
//! (`SLUICE_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432/test`):
//! generator files -> validate -> normalised tables, checked against the
//! generator's oracle with SQL; then kill -9 rounds in append mode, where
//! any engine duplicate would show as an extra row.

use sluice_testkit::services::Service;
use std::{
    collections::{HashMap, HashSet},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, NoTls};

use crate::support;

pub(crate) fn url() -> String {
    Service::Postgres.url()
}

pub(crate) async fn connect() -> Client {
    let (client, connection) = tokio_postgres::connect(&url(), NoTls)
        .await
        .expect("the test PostgreSQL is reachable (scripts/test starts it)");
    tokio::spawn(connection);
    client
}

/// A schema name of this test run, dropped first if a failed run left it.
pub(crate) async fn fresh_schema(client: &Client, name: &str) -> String {
    let schema = format!("sluice_e2e_{name}_{}", std::process::id());
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
    schema
}

/// file source `incoming/*.ndjson` -> validate (clickstream) -> postgres.
fn pipeline(api: u16, schema: &str, sink_keys: &str) -> String {
    format!(
        r#"
[api]
address = "127.0.0.1:{api}"

[delivery]
visibility_timeout_secs = 5

[sources.input]
type = "file"
path = "incoming/*.ndjson"
settle_secs = 0
max_batch_bytes = 16384

[transforms.standardize]
type = "validate"
inputs = ["input"]
schema = "{json_schema}"
event_id = "/event_id"
event_time = "/ts"

[sinks.warehouse]
type = "postgres"
inputs = ["standardize"]
url = "{url}"
schema = "{schema}"
table = "events"
flush_interval_secs = 1
{sink_keys}
"#,
        json_schema = support::schema_path().display(),
        url = url(),
    )
}

fn event_id(line: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    v.get("event_id")?.as_str().map(str::to_string)
}

pub(crate) async fn one_i64(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get::<_, Option<i64>>(0)
        .unwrap_or(0)
}

/// Checks what every run must end with: the distinct ids are the oracle's,
/// purchases' items are linked to their purchase and add up to its revenue,
/// and the revenue adds up to the oracle's. Returns rows per event id.
async fn check_tables(client: &Client, schema: &str, oracle: &Value) -> HashMap<String, i64> {
    let rows = client
        .query(
            &format!("SELECT event_id, count(*) FROM {schema}.events GROUP BY event_id"),
            &[],
        )
        .await
        .unwrap();
    let per_id: HashMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut ids: Vec<&String> = per_id.keys().collect();
    ids.sort();
    let joined = ids.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n");
    assert_eq!(
        format!("{:x}", Sha256::digest(joined.as_bytes())),
        oracle["event_ids_sha256"].as_str().unwrap(),
        "lost or foreign events"
    );
    let items = format!("{schema}.events__props__items");
    let orphans = one_i64(
        client,
        &format!(
            "SELECT count(*) FROM {items} i WHERE NOT EXISTS
               (SELECT 1 FROM {schema}.events e WHERE e._sluice_id = i._sluice_parent_id AND e.event_type = 'purchase')"
        ),
    )
    .await;
    assert_eq!(orphans, 0, "items whose parent is not a purchase row");
    let mismatched = one_i64(
        client,
        &format!(
            "SELECT count(*) FROM {schema}.events e
             LEFT JOIN (SELECT _sluice_parent_id AS id, sum(qty * price) AS total, count(*) AS n,
                               max(_sluice_list_idx) AS last FROM {items} GROUP BY 1) i ON i.id = e._sluice_id
             WHERE e.event_type = 'purchase'
               AND (i.id IS NULL OR round(i.total::numeric, 2) <> round(e.props__revenue::numeric, 2) OR i.last <> i.n - 1)"
        ),
    )
    .await;
    assert_eq!(mismatched, 0, "purchases whose items do not add up to their revenue");
    let revenue_cents = one_i64(
        client,
        &format!(
            "SELECT sum(round(props__revenue::numeric * 100))::int8 FROM
               (SELECT DISTINCT ON (event_id) props__revenue FROM {schema}.events WHERE event_type = 'purchase') p"
        ),
    )
    .await;
    assert_eq!(revenue_cents, oracle["purchase_revenue_cents"].as_i64().unwrap());
    per_id
}

/// `sluice run dir/pipeline.toml --until-idle` with extra environment variables.
pub(crate) fn run_until_idle(dir: &Path, env: &[(&str, &str)]) {
    support::run_ok(
        Command::new(support::SLUICE)
            .arg("run")
            .arg(dir.join("pipeline.toml"))
            .arg("--until-idle")
            .envs(env.iter().copied()),
    );
}

pub(crate) async fn drop_schema(client: &Client, schema: &str) {
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

pub(crate) fn dead_letter_count(dir: &Path) -> usize {
    support::run_ok(
        Command::new(support::SLUICE)
            .args(["dlq", "show"])
            .arg(dir.join("pipeline.toml"))
            .args(["--json", "--limit", "100000000"]),
    )
    .lines()
    .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickstream_upserts_into_normalised_tables_and_a_new_field_adds_a_column() {
    if !support::services_up(&[Service::Postgres]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, oracle) = support::generate(dir, 20_000, 41);
    let client = connect().await;
    let schema = fresh_schema(&client, "upsert").await;

    // The second half brings a field the schema does not declare, on events
    // whose id the first half does not have (so the last copy is unambiguous).
    let (first, second) = lines.split_at(lines.len() / 2);
    let first_ids: HashSet<String> = first.iter().filter_map(|l| event_id(l)).collect();
    let mut with_campaign = HashSet::new();
    let second: Vec<String> = second
        .iter()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(mut event)) => match event.get("event_id").and_then(Value::as_str) {
                Some(id) if !first_ids.contains(id) && id.len() == 36 => {
                    with_campaign.insert(id.to_string());
                    event.insert("campaign".into(), serde_json::json!({"id": "c-42", "medium": "email"}));
                    Value::Object(event).to_string()
                }
                _ => line.clone(),
            },
            _ => line.clone(),
        })
        .collect();
    let incoming = dir.join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    std::fs::write(incoming.join("part-1.ndjson"), first.join("\n") + "\n").unwrap();
    std::fs::write(incoming.join("part-2.ndjson"), second.join("\n") + "\n").unwrap();
    let api = support::free_port();
    std::fs::write(
        dir.join("pipeline.toml"),
        pipeline(api, &schema, "mode = \"upsert\"\nprimary_key = [\"/event_id\"]"),
    )
    .unwrap();
    run_until_idle(dir, &[]);

    let per_id = check_tables(&client, &schema, &oracle).await;
    assert!(per_id.values().all(|n| *n == 1), "upsert keeps one row per event id");
    assert_eq!(per_id.len() as u64, oracle["valid_unique"].as_u64().unwrap());
    let per_type = client
        .query(
            &format!("SELECT event_type, count(*) FROM {schema}.events GROUP BY 1"),
            &[],
        )
        .await
        .unwrap();
    for row in per_type {
        let (t, n): (String, i64) = (row.get(0), row.get(1));
        assert_eq!(n as u64, oracle["valid_unique_per_type"][&t].as_u64().unwrap(), "{t}");
    }
    let typed = client
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns
             WHERE table_schema = $1 AND table_name = 'events' AND column_name IN ('ts', 'device__screen__w', 'campaign__medium')
             ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap();
    let typed: Vec<(String, String)> = typed.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        typed,
        vec![
            ("campaign__medium".into(), "text".into()),
            ("device__screen__w".into(), "bigint".into()),
            ("ts".into(), "timestamp with time zone".into()),
        ]
    );
    let campaigns = one_i64(
        &client,
        &format!("SELECT count(*) FROM {schema}.events WHERE campaign__id = 'c-42'"),
    )
    .await;
    // Lines of the second half that the schema refuses carry it too, but never land.
    let landed_with_campaign = with_campaign.iter().filter(|id| per_id.contains_key(*id)).count();
    assert!(landed_with_campaign > 0);
    assert_eq!(campaigns as usize, landed_with_campaign);
    assert_eq!(dead_letter_count(dir) as u64, oracle["invalid"].as_u64().unwrap());
    drop_schema(&client, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_rounds_into_postgres_append_lose_nothing_and_duplicate_nothing() {
    if !support::services_up(&[Service::Postgres]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, oracle) = support::generate(dir, 20_000, 43);
    let client = connect().await;
    let schema = fresh_schema(&client, "kill").await;
    let api = support::free_port();
    std::fs::write(dir.join("pipeline.toml"), pipeline(api, &schema, "")).unwrap();
    let incoming = dir.join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let mut sluice = support::start(&dir.join("pipeline.toml"), &[]);
    sluice.wait_ready(api);

    let rounds = 6;
    let files: Vec<String> = lines.chunks(2000).map(|c| c.join("\n") + "\n").collect();
    let pause = Duration::from_millis(700 * rounds as u64) / files.len() as u32;
    let dropper = {
        let incoming = incoming.clone();
        std::thread::spawn(move || {
            for (i, text) in files.iter().enumerate() {
                let tmp = incoming.join(format!(".part-{i:03}.tmp"));
                std::fs::write(&tmp, text).unwrap();
                std::fs::rename(tmp, incoming.join(format!("part-{i:03}.ndjson"))).unwrap();
                std::thread::sleep(pause);
            }
        })
    };
    // Even rounds kill at a random moment; odd ones right after a commit
    // lands, before the queue has acknowledged its batches.
    let committed_rows = format!("SELECT count(*) FROM {schema}.events");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..rounds {
        let moment = if round % 2 == 0 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let wait = 150 + state % 650;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            format!("after {wait} ms")
        } else {
            let before = one_i64(&client, &committed_rows).await;
            let deadline = Instant::now() + Duration::from_secs(5);
            while one_i64(&client, &committed_rows).await == before && Instant::now() < deadline {}
            "right after a commit".to_string()
        };
        sluice.child.kill().unwrap();
        sluice.child.wait().unwrap();
        eprintln!("round {}: killed {moment}", round + 1);
        sluice = support::start(&dir.join("pipeline.toml"), &[]);
        tokio::task::block_in_place(|| sluice.wait_ready(api));
    }
    dropper.join().unwrap();
    sluice.stop();
    run_until_idle(dir, &[]);

    let per_id = check_tables(&client, &schema, &oracle).await;
    let mut offered: HashMap<String, i64> = HashMap::new();
    for id in lines.iter().filter_map(|l| event_id(l)) {
        *offered.entry(id).or_insert(0) += 1;
    }
    for (id, rows) in &per_id {
        assert_eq!(
            *rows, offered[id],
            "{id}: rows vs valid copies sent (append keeps producer duplicates)"
        );
    }
    let total: i64 = per_id.values().sum();
    let valid_lines = oracle["valid_unique"].as_i64().unwrap() + oracle["duplicates"].as_i64().unwrap();
    assert_eq!(total, valid_lines);
    assert_eq!(dead_letter_count(dir) as u64, oracle["invalid"].as_u64().unwrap());
    drop_schema(&client, &schema).await;
}
