//! User transforms end to end: the generator's clickstream through validate
//! -> jq (revenue in cents) -> hash -> rename -> drop -> set -> cast ->
//! filter into PostgreSQL (upsert, columns inferred from what the chain
//! emits), checked against the oracle with SQL.

use sluice_testkit::services::Service;
use std::collections::HashSet;

use serde_json::Value;

use crate::{
    postgres::{connect, dead_letter_count, drop_schema, fresh_schema, one_i64, run_until_idle, url},
    support,
};

const KEY_ENV: &str = "SLUICE_E2E_PII_KEY";

fn pipeline(schema: &str) -> String {
    format!(
        r#"
{input}
[transforms.cents]
type = "jq"
inputs = ["standardize"]
program = 'if .event_type == "purchase" then .props.revenue_cents = (.props.revenue * 100 | round) else . end'

[transforms.pseudonymise]
type = "hash"
inputs = ["cents"]
fields = ["/user_id", "/session_id"]
key_env = "{KEY_ENV}"

[transforms.tidy]
type = "rename"
inputs = ["pseudonymise"]
fields = {{ "/geo/country" = "/geo/country_code" }}

[transforms.no_referrer]
type = "drop"
inputs = ["tidy"]
fields = ["/page/referrer"]

[transforms.stamp]
type = "set"
inputs = ["no_referrer"]
fields = {{ "/pipeline" = "sluice-e2e", "/kind" = {{ from = "/event_type" }} }}

[transforms.widths]
type = "cast"
inputs = ["stamp"]
fields = {{ "/device/screen/w" = "string" }}

[transforms.no_clicks]
type = "filter"
inputs = ["widths"]
drop_if = {{ field = "/event_type", equals = "click" }}

[sinks.warehouse]
type = "postgres"
inputs = ["no_clicks"]
url = "{url}"
schema = "{schema}"
table = "events"
mode = "upsert"
primary_key = ["/event_id"]
"#,
        input = support::validated_input(),
        url = url(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_user_transforms_lands_what_the_oracle_predicts() {
    if !support::services_up(&[Service::Postgres]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, oracle) = support::generate(dir, 20_000, 47);
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    std::fs::rename(dir.join("events.ndjson"), dir.join("incoming/events.ndjson")).unwrap();
    let client = connect().await;
    let schema = fresh_schema(&client, "transforms").await;
    std::fs::write(dir.join("pipeline.toml"), pipeline(&schema)).unwrap();

    // `sluice validate` names the missing key's variable, and never shows a key.
    let refused = std::process::Command::new(support::SLUICE)
        .arg("validate")
        .arg(dir.join("pipeline.toml"))
        .env_remove(KEY_ENV)
        .output()
        .unwrap();
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        message.contains("transforms.pseudonymise.key_env") && message.contains(KEY_ENV),
        "{message}"
    );
    let secret = "e2e-secret-key-7f3a";
    let checked = support::run_ok(
        std::process::Command::new(support::SLUICE)
            .arg("validate")
            .arg(dir.join("pipeline.toml"))
            .env(KEY_ENV, secret),
    );
    assert!(!checked.contains(secret));

    run_until_idle(dir, &[(KEY_ENV, secret)]);

    let count = |sql: String| {
        let client = &client;
        async move { one_i64(client, &sql).await }
    };
    let per_type = &oracle["valid_unique_per_type"];
    for t in ["page_view", "search", "add_to_cart", "purchase"] {
        let n = count(format!("SELECT count(*) FROM {schema}.events WHERE event_type = '{t}'")).await;
        assert_eq!(n as u64, per_type[t].as_u64().unwrap(), "{t}");
        let kind = count(format!("SELECT count(*) FROM {schema}.events WHERE kind = '{t}'")).await;
        assert_eq!(kind, n, "set copied event_type into kind");
    }
    assert_eq!(
        count(format!(
            "SELECT count(*) FROM {schema}.events WHERE event_type = 'click'"
        ))
        .await,
        0
    );
    assert_eq!(
        count(format!("SELECT sum(props__revenue_cents)::int8 FROM {schema}.events")).await,
        oracle["purchase_revenue_cents"].as_i64().unwrap(),
        "jq's revenue in cents adds up to the oracle's"
    );
    assert_eq!(
        count(format!(
            "SELECT count(*) FROM {schema}.events WHERE pipeline IS DISTINCT FROM 'sluice-e2e'"
        ))
        .await,
        0
    );

    // Hashed ids: 64 hex digits, exactly one per original user of the landed events.
    let landed_ids: HashSet<String> = client
        .query(&format!("SELECT event_id FROM {schema}.events"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let users: HashSet<String> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event_id"].as_str().is_some_and(|id| landed_ids.contains(id)))
        .filter_map(|v| v["user_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        count(format!(
            "SELECT count(*) FROM {schema}.events WHERE user_id !~ '^[0-9a-f]{{64}}$'"
        ))
        .await,
        0
    );
    let hashed = count(format!("SELECT count(DISTINCT user_id) FROM {schema}.events")).await;
    assert_eq!(hashed as usize, users.len());
    assert!(!users.iter().any(|u| landed_ids.contains(u)));

    let columns: HashSet<String> = client
        .query(
            "SELECT column_name::text || ' ' || data_type::text FROM information_schema.columns
             WHERE table_schema = $1 AND table_name = 'events'",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for present in [
        "geo__country_code text",
        "device__screen__w text",
        "props__revenue_cents bigint",
    ] {
        assert!(columns.contains(present), "{present} missing from {columns:?}");
    }
    for absent in ["geo__country text", "page__referrer text"] {
        assert!(!columns.contains(absent), "{absent} should be gone");
    }
    assert_eq!(dead_letter_count(dir) as u64, oracle["invalid"].as_u64().unwrap());
    drop_schema(&client, &schema).await;
}
