//! The `lookup` transform end to end: clickstream files -> validate ->
//! lookup (a countries CSV, refreshed every second) -> PostgreSQL. The CSV
//! is replaced while `sluice run` keeps going: events read before carry the
//! old rows, events read after the refresh carry the new ones (a country
//! the old table lacked appears), and every valid event lands once.

use sluice_testkit::services::Service;
use std::{
    collections::HashSet,
    path::Path,
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio_postgres::Client;

use crate::{
    postgres::{connect, dead_letter_count, drop_schema, fresh_schema, url},
    support::{self, Running},
};

const LINES_PER_CHUNK: usize = 4_000;

fn pipeline(api: u16, schema: &str) -> String {
    format!(
        r#"
[api]
address = "127.0.0.1:{api}"

{input}
[transforms.countries]
type = "lookup"
inputs = ["standardize"]
key = "/geo/country"
target = "/geo/info"
file = "countries.csv"
key_column = "code"
refresh_secs = 1

[sinks.warehouse]
type = "postgres"
inputs = ["countries"]
url = "{url}"
schema = "{schema}"
table = "events"
mode = "upsert"
primary_key = ["/event_id"]
flush_interval_secs = 1
"#,
        input = support::validated_input(),
        url = url(),
    )
}

/// The reference table as a job would publish it: written aside, renamed into place.
fn publish_countries(dir: &Path, version: &str, codes: &[(&str, &str)]) {
    let mut csv = String::from("code,name,version\n");
    for (code, name) in codes {
        csv.push_str(&format!("{code},{name} ({version}),{version}\n"));
    }
    std::fs::write(dir.join("countries.csv.tmp"), csv).unwrap();
    std::fs::rename(dir.join("countries.csv.tmp"), dir.join("countries.csv")).unwrap();
}

/// Drops one generated chunk into the watched folder; returns the event ids it holds.
fn drop_chunk(dir: &Path, chunk: usize, lines: &[String]) -> Vec<String> {
    let staged = dir.join(format!("chunk-{chunk}.part"));
    std::fs::write(&staged, lines.join("\n") + "\n").unwrap();
    std::fs::rename(&staged, dir.join(format!("incoming/chunk-{chunk}.ndjson"))).unwrap();
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["event_id"].as_str().map(str::to_string))
        .collect()
}

async fn count(client: &Client, sql: &str, ids: &[String]) -> i64 {
    client.query_one(sql, &[&ids]).await.unwrap().get(0)
}

/// Waits until the table holds `rows` rows (it does not exist before the first commit).
async fn wait_for_rows(client: &Client, schema: &str, rows: u64, sluice: &mut Running) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let landed = client
            .query_one(&format!("SELECT count(*) FROM {schema}.events"), &[])
            .await
            .map_or(0, |r| r.get::<_, i64>(0));
        if landed as u64 >= rows {
            assert_eq!(landed as u64, rows, "more rows than the oracle's valid events");
            return;
        }
        assert!(sluice.child.try_wait().unwrap().is_none(), "sluice exited");
        assert!(Instant::now() < deadline, "{landed} of {rows} rows after 180 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_table_replaced_mid_run_enriches_later_events_and_loses_none() {
    if !support::services_up(&[Service::Postgres]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let mut chunks = Vec::new();
    for seed in [61, 62, 63] {
        let gen_dir = dir.join(format!("gen-{seed}"));
        std::fs::create_dir_all(&gen_dir).unwrap();
        chunks.push(support::generate(&gen_dir, LINES_PER_CHUNK, seed));
    }
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    let old = [
        ("BR", "Brazil"),
        ("DE", "Germany"),
        ("FR", "France"),
        ("GB", "United Kingdom"),
        ("IN", "India"),
        ("US", "United States"),
    ];
    publish_countries(dir, "v1", &old);
    let client = connect().await;
    let schema = fresh_schema(&client, "lookup").await;
    let api = support::free_port();
    std::fs::write(dir.join("pipeline.toml"), pipeline(api, &schema)).unwrap();
    let mut sluice = support::start(&dir.join("pipeline.toml"), &[]);
    sluice.wait_ready(api);

    let valid = |i: usize| chunks[i].1["valid_unique"].as_u64().unwrap();
    let first = drop_chunk(dir, 1, &chunks[0].0);
    wait_for_rows(&client, &schema, valid(0), &mut sluice).await;

    // The new table renames every country and adds Japan, which v1 lacked;
    // the second chunk flows while it is picked up.
    publish_countries(dir, "v2", &[old.as_slice(), &[("JP", "Japan")]].concat());
    let swapped = Instant::now();
    let second = drop_chunk(dir, 2, &chunks[1].0);
    wait_for_rows(&client, &schema, valid(0) + valid(1), &mut sluice).await;
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(swapped.elapsed())).await;
    let third = drop_chunk(dir, 3, &chunks[2].0);
    wait_for_rows(&client, &schema, valid(0) + valid(1) + valid(2), &mut sluice).await;

    let (_, metrics) = support::http_get(api, "/metrics").expect("metrics answer");
    assert!(
        metrics.contains("sluice_lookup_rows{component=\"countries\"} 7"),
        "{metrics}"
    );
    assert!(!metrics.contains("sluice_lookup_refresh_failures_total"), "{metrics}");
    sluice.stop();

    let ids: [HashSet<&String>; 3] = [&first, &second, &third].map(|c| c.iter().collect());
    assert!(ids[0].is_disjoint(&ids[1]) && ids[1].is_disjoint(&ids[2]) && ids[0].is_disjoint(&ids[2]));
    let rows_of =
        |filter: &str| format!("SELECT count(*) FROM {schema}.events WHERE event_id::text = ANY($1) AND {filter}");
    // Read before the swap: the old rows, and nothing for Japan.
    assert_eq!(count(&client, &rows_of("true"), &first).await as u64, valid(0));
    let not_v1 = "geo__country <> 'JP' AND geo__info__version IS DISTINCT FROM 'v1'";
    assert_eq!(count(&client, &rows_of(not_v1), &first).await, 0);
    let japan_enriched = "geo__country = 'JP' AND geo__info__code IS NOT NULL";
    assert_eq!(count(&client, &rows_of(japan_enriched), &first).await, 0);
    assert!(count(&client, &rows_of("geo__country = 'JP'"), &first).await > 0);
    // Read while the table was swapped: whole rows of either table, never a mix.
    assert_eq!(count(&client, &rows_of("true"), &second).await as u64, valid(1));
    let torn = "geo__info__code IS NOT NULL AND (geo__info__code <> geo__country \
                OR geo__info__name NOT LIKE '%(' || geo__info__version || ')')";
    assert_eq!(count(&client, &rows_of(torn), &second).await, 0);
    // Read after the refresh: the new rows, Japan included.
    assert_eq!(count(&client, &rows_of("true"), &third).await as u64, valid(2));
    let not_v2 = "geo__info__version IS DISTINCT FROM 'v2'";
    assert_eq!(count(&client, &rows_of(not_v2), &third).await, 0);
    let japan = "geo__country = 'JP' AND geo__info__name = 'Japan (v2)'";
    assert!(count(&client, &rows_of(japan), &third).await > 0);

    let invalid: u64 = chunks.iter().map(|(_, o)| o["invalid"].as_u64().unwrap()).sum();
    assert_eq!(dead_letter_count(dir) as u64, invalid);
    drop_schema(&client, &schema).await;
}
