//! A transform's backend going away mid-run (the PostgreSQL schema
//! registry of a `self_describing` stage, a PostgreSQL `lookup` table),
//! through the same TCP proxy and checks as `outages`: nothing spends an
//! attempt, `/ready` says which transform while it lasts, and everything
//! lands once after.

use std::process::Command;

use sluice_testkit::{
    process::{Running, http_get},
    proxy::Proxy,
    services::{Service, host_port},
};

use crate::{
    outages::{
        TRANSFORM_LOST, assert_recovered, dead_letters, outage, put_whole, start_logged, wait_for, write_file_pipeline,
    },
    postgres::{connect, drop_schema, fresh_schema},
    support,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_schema_registry_going_away_mid_run_costs_no_attempts_and_everything_lands_once() {
    if !support::services_up(&[Service::Postgres]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, 3_000, 16);
    let pg = connect().await;
    let schema = fresh_schema(&pg, "outage_registry").await;
    pg.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
    let real = crate::postgres::url();
    let mut proxy = Proxy::start(host_port(&real).unwrap()).await;
    let api = support::free_port();
    write_file_pipeline(
        dir,
        api,
        &format!(
            "[transforms.described]\ntype = \"self_describing\"\ninputs = [\"input\"]\n\
             event_id = \"/event_id\"\nevent_time = \"/ts\"\n\n\
             [sinks.table]\ntype = \"postgres\"\ninputs = [\"described\"]\nurl = \"{real}\"\n\
             schema = \"{schema}\"\ntable = \"events\"\nflush_interval_secs = 1\n\n\
             [registry]\nuri = \"{registry}\"\ntable = \"{schema}.schemas\"\n",
            registry = proxy.url_for(&real)
        ),
    );
    // Two versions of one schema: the events after the cut name the one
    // no batch has needed yet, so the transform must ask the registry.
    let body = std::fs::read_to_string(support::schema_path()).unwrap();
    for version in ["1-0-0", "1-0-1"] {
        let file = dir.join(format!("{version}.json"));
        std::fs::write(&file, &body).unwrap();
        support::run_ok(
            Command::new(support::SLUICE)
                .args(["schema", "register"])
                .arg(dir.join("pipeline.toml"))
                .arg(&file)
                .args(["--key", &format!("iglu:com.acme/click/jsonschema/{version}")]),
        );
    }
    let wrap = |part: &[String], version: &str| {
        part.iter()
            .map(|l| format!("{{\"schema\":\"iglu:com.acme/click/jsonschema/{version}\",\"data\":{l}}}\n"))
            .collect::<String>()
    };
    let sluice = start_logged(dir, api);
    let rows = || async {
        pg.query_one(&format!("SELECT count(*) FROM {schema}.events"), &[])
            .await
            .map_or(0, |r| r.get::<_, i64>(0))
    };
    put_whole(&dir.join("incoming/a.ndjson"), &wrap(&lines[..1_000], "1-0-0"));
    wait_for("rows before the outage", 60, 1_000, rows).await;
    // Cut before the new version's events arrive, so none is checked yet.
    proxy.cut();
    put_whole(&dir.join("incoming/b.ndjson"), &wrap(&lines[1_000..], "1-0-1"));
    let cut = outage(&mut proxy, api, "transforms", 8).await;
    let landed = wait_for("rows after the outage", 120, lines.len() as i64, rows).await;
    assert_recovered(dir, api, sluice, TRANSFORM_LOST).await;
    let versions = crate::postgres::one_i64(&pg, &format!("SELECT count(DISTINCT _schema) FROM {schema}.events")).await;
    assert_eq!(
        (landed as usize, versions),
        (lines.len(), 2),
        "every line once, both versions"
    );
    eprintln!("the schema registry cut for {cut:?}; {landed} rows, 0 dead letters");
    drop_schema(&pg, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_lookup_going_away_mid_run_keeps_its_table_and_takes_the_new_one_after() {
    if !support::services_up(&[Service::Postgres]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, 3_000, 17);
    let pg = connect().await;
    let schema = fresh_schema(&pg, "outage_lookup").await;
    let countries: std::collections::BTreeSet<String> = lines
        .iter()
        .filter_map(|l| {
            serde_json::from_str::<serde_json::Value>(l).ok()?["geo"]["country"]
                .as_str()
                .map(String::from)
        })
        .collect();
    let values: Vec<String> = countries.iter().map(|c| format!("('{c}', 'v1')")).collect();
    pg.batch_execute(&format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.countries (code text PRIMARY KEY, version text);
         INSERT INTO {schema}.countries VALUES {};",
        values.join(", ")
    ))
    .await
    .unwrap();
    let real = crate::postgres::url();
    let mut proxy = Proxy::start(host_port(&real).unwrap()).await;
    let api = support::free_port();
    write_file_pipeline(
        dir,
        api,
        &format!(
            "[transforms.countries]\ntype = \"lookup\"\ninputs = [\"input\"]\nkey = \"/geo/country\"\n\
             target = \"/geo/info\"\nkey_column = \"code\"\nrefresh_secs = 1\n\
             postgres = {{ url = \"{lookup}\", query = \"SELECT code, version FROM {schema}.countries\" }}\n\n\
             [sinks.table]\ntype = \"postgres\"\ninputs = [\"countries\"]\nurl = \"{real}\"\n\
             schema = \"{schema}\"\ntable = \"events\"\nflush_interval_secs = 1\n",
            lookup = proxy.url_for(&real)
        ),
    );
    let sluice = start_logged(dir, api);
    let rows = || async {
        pg.query_one(&format!("SELECT count(*) FROM {schema}.events"), &[])
            .await
            .map_or(0, |r| r.get::<_, i64>(0))
    };
    let age = "sluice_lookup_age_seconds{component=\"countries\"}";
    put_whole(&dir.join("incoming/a.ndjson"), &(lines[..1_000].join("\n") + "\n"));
    wait_for("rows before the outage", 60, 1_000, rows).await;

    proxy.cut();
    pg.batch_execute(&format!("UPDATE {schema}.countries SET version = 'v2'"))
        .await
        .unwrap();
    put_whole(&dir.join("incoming/b.ndjson"), &(lines[1_000..2_000].join("\n") + "\n"));
    wait_for("rows landed during the outage", 60, 2_000, rows).await;
    let stale = wait_for("table age during the outage", 30, 5, || async {
        support::metric(api, age).unwrap_or(0.0) as i64
    })
    .await;
    let failures = support::metric(api, "sluice_lookup_refresh_failures_total{component=\"countries\"}").unwrap_or(0.0);
    assert!(failures >= 1.0, "failed refreshes are counted: {failures}");
    assert_eq!(
        http_get(api, "/ready").map(|(s, _)| s),
        Some(200),
        "the old table serves"
    );
    proxy.restore().await;
    wait_for("a fresh table after the outage", 30, 1, || async {
        i64::from(support::metric(api, age).is_some_and(|a| a < 2.0))
    })
    .await;
    put_whole(&dir.join("incoming/c.ndjson"), &(lines[2_000..].join("\n") + "\n"));
    wait_for("rows after the outage", 60, 3_000, rows).await;
    Running::stop(sluice);
    assert!(dead_letters(dir).is_empty());
    let by_version = |version: &'static str| {
        let (pg, schema) = (&pg, &schema);
        async move {
            crate::postgres::one_i64(
                pg,
                &format!("SELECT count(*) FROM {schema}.events WHERE geo__info__version = '{version}'"),
            )
            .await
        }
    };
    let with_country = |part: &[String]| {
        part.iter()
            .filter(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["geo"]["country"].is_string())
            .count() as i64
    };
    assert_eq!(
        (by_version("v1").await, by_version("v2").await),
        (with_country(&lines[..2_000]), with_country(&lines[2_000..])),
        "the old table while PostgreSQL was away, the new one after"
    );
    eprintln!(
        "the lookup's PostgreSQL cut (table {stale} s old, {failures} failed refreshes): 2 000 rows with the old table, 1 000 with the new"
    );
    drop_schema(&pg, &schema).await;
}
