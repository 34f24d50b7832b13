//! The example's binary runs pipelines that use its custom types: generator
//! events -> validate -> big_spender -> PostgreSQL (the machine's server;
//! `SLUICE_TEST_POSTGRES` overrides the URL), and change events ->
//! documents -> a projection with doctor_card -> Redis (`SLUICE_TEST_REDIS`).

use std::{path::Path, process::Command};

use tokio_postgres::NoTls;

const BIN: &str = env!("CARGO_BIN_EXE_custom-sluice");

/// Runs the example's binary on `file` until its input is drained.
fn run_until_idle(file: &Path) {
    let run = Command::new(BIN)
        .arg("run")
        .arg(file)
        .arg("--until-idle")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
}

fn pipeline(url: &str, schema: &str, threshold: &str) -> String {
    format!(
        r#"
[sources.input]
type = "file"
path = "incoming/*.ndjson"
settle_secs = 0

[transforms.standardize]
type = "validate"
inputs = ["input"]
schema = "{json_schema}"
event_id = "/event_id"
event_time = "/ts"

[transforms.vip]
type = "big_spender"
inputs = ["standardize"]
threshold = {threshold}

[sinks.warehouse]
type = "postgres"
inputs = ["vip"]
url = "{url}"
schema = "{schema}"
table = "events"
mode = "upsert"
primary_key = ["/event_id"]
"#,
        json_schema = sluice_testkit::generator::clickstream_schema_path().display(),
    )
}

#[tokio::test]
async fn the_custom_transform_runs_end_to_end() {
    let Some(url) = sluice_testkit::services::postgres() else {
        return;
    };
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    let options = sluice_testkit::generator::ClickstreamOptions {
        dup_rate: 0.02,
        bad_rate: 0.01,
        ..sluice_testkit::generator::ClickstreamOptions::clean(5000, 53)
    };
    let (_, oracle) = sluice_testkit::data::clickstream(&dir.join("incoming"), &options);

    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let schema = format!("sluice_example_{}", std::process::id());
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();

    // A bad option is a config error naming the key.
    let file = dir.join("pipeline.toml");
    std::fs::write(&file, pipeline(&url, &schema, "-1.0")).unwrap();
    let refused = Command::new(BIN).arg("validate").arg(&file).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("transforms.vip.threshold: -1 is not allowed"),
        "{message}"
    );

    std::fs::write(&file, pipeline(&url, &schema, "500.0")).unwrap();
    run_until_idle(&file);

    let row = client
        .query_one(
            &format!(
                "SELECT count(*),
                        count(*) FILTER (WHERE props__big_spender),
                        count(*) FILTER (WHERE event_type = 'purchase' AND props__revenue >= 500)
                 FROM {schema}.events"
            ),
            &[],
        )
        .await
        .unwrap();
    let (rows, marked, expected): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(rows as u64, oracle["valid_unique"].as_u64().unwrap());
    assert!(expected > 0);
    assert_eq!(
        marked, expected,
        "every purchase of 500 or more is marked, nothing else"
    );
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_custom_projection_writes_headlines_to_redis() {
    let Some(redis_url) = sluice_testkit::services::redis() else {
        return;
    };
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("changes")).unwrap();
    let changes = [
        r#"{"entity":"hospital","id":"General","version":1,"op":"upsert","patch":{"city":"Oslo"}}"#,
        r#"{"entity":"doctor","id":"d1","version":2,"op":"upsert","patch":{"specialty":"Dentist"}}"#,
        r#"{"entity":"doctor","id":"d1","version":1,"op":"upsert","patch":{"name":"Dr. Ann","specialty":"Surgeon","hospital":"General"}}"#,
        r#"{"entity":"doctor","id":"d2","version":1,"op":"upsert","patch":{"name":"Dr. Bo","hospital":"Nowhere"}}"#,
    ];
    std::fs::write(dir.join("changes/changes.ndjson"), changes.join("\n") + "\n").unwrap();
    let prefix = format!("sluice-example-{}:", std::process::id());
    let pipeline = format!(
        r#"
[sources.changes]
type = "file"
path = "changes/*.ndjson"
settle_secs = 0

[transforms.doctors]
type = "documents"
inputs = ["changes"]

[sinks.cards]
type = "projection"
inputs = ["doctors.changes"]
redis = "{redis_url}"
key = "{prefix}{{id}}"
entity = "doctor"
lookups.hospital = {{ entity = "hospital", id = "/hospital", fields = {{}} }}
custom = {{ type = "doctor_card", unknown_specialty = "general practice" }}
"#
    );
    let file = dir.join("pipeline.toml");
    std::fs::write(&file, pipeline.replace("unknown_specialty", "unknown_speciality")).unwrap();
    let refused = Command::new(BIN).arg("validate").arg(&file).output().unwrap();
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("sinks.cards.custom.unknown field `unknown_speciality`"),
        "{message}"
    );

    std::fs::write(&file, &pipeline).unwrap();
    run_until_idle(&file);
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let headline = |id: &str| {
        let key = format!("{prefix}{id}");
        let mut conn = conn.clone();
        async move {
            let value: Option<String> = redis::cmd("HGET")
                .arg(&key)
                .arg("headline")
                .query_async(&mut conn)
                .await
                .unwrap();
            let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await.unwrap();
            value
        }
    };
    assert_eq!(
        headline("d1").await.as_deref(),
        Some("Dr. Ann, Dentist at General (Oslo)")
    );
    assert_eq!(
        headline("d2").await.as_deref(),
        Some("Dr. Bo, general practice at Nowhere")
    );
}
