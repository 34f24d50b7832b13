//! Secrets never reach the logs: a pipeline whose JetStream queue URL, S3
//! secret key and document-store URL carry secrets (the services here
//! ignore them: NATS and PostgreSQL run without authentication, moto takes
//! any key) runs to the end with debug logging, is checked by `sluice
//! validate`, and a broken copy of it fails to load; none of the output
//! holds a secret.

use std::process::Command;

use sluice_testkit::services::Service;

use crate::{
    postgres::{connect, drop_schema, fresh_schema},
    support,
};

const SECRETS: [&str; 3] = ["nats-pass-8c1f", "s3-secret-5e2a", "pg-pass-b7d4"];

/// `url` with `password` for its user (`user` when it names none).
fn with_password(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    match rest.split_once('@') {
        Some((named, host)) => format!("{scheme}://{named}:{password}@{host}"),
        None => format!("{scheme}://{user}:{password}@{rest}"),
    }
}

fn output_of(cmd: &mut Command) -> String {
    let out = cmd.env("RUST_LOG", "debug").output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_secrets_in_urls_and_keys_logs_none_of_them() {
    if !support::services_up(&[Service::Nats, Service::S3, Service::Postgres]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, 500, 71);
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    std::fs::write(dir.join("incoming/a.ndjson"), lines.join("\n") + "\n").unwrap();
    let bucket = format!("sluice-secrets-{}", std::process::id());
    support::create_bucket(&bucket).await;
    let pg = connect().await;
    let store_schema = fresh_schema(&pg, "secrets").await;
    let pid = std::process::id();
    let pipeline = format!(
        r#"
queue = "{queue}"
queue_name = "e2e-secrets-{pid}"

[sources.input]
type = "file"
path = "incoming/*.ndjson"
settle_secs = 0
max_batch_bytes = 65536

[transforms.standardize]
type = "validate"
inputs = ["input"]
schema = "{schema}"
event_id = "/event_id"
event_time = "/ts"

[sinks.lake]
type = "lake"
inputs = ["standardize"]
uri = "s3://{bucket}/clickstream"
flush_interval_secs = 1
storage_options = {{ endpoint = "{s3}", allow_http = "true", region = "us-east-1", access_key_id = "test", secret_access_key = "{s3_secret}" }}

[sources.changes]
type = "file"
path = "changes/*.ndjson"
settle_secs = 0
max_batch_bytes = 65536

[transforms.doctors]
type = "documents"
inputs = ["changes"]
store = "{store}"
schema = "{store_schema}"
"#,
        queue = with_password(&support::nats_url(), "sluice", SECRETS[0]),
        schema = support::schema_path().display(),
        s3 = support::s3_endpoint(),
        s3_secret = SECRETS[1],
        store = with_password(&crate::postgres::url(), "postgres", SECRETS[2]),
    );
    std::fs::write(dir.join("pipeline.toml"), &pipeline).unwrap();
    std::fs::create_dir_all(dir.join("changes")).unwrap();
    std::fs::write(
        dir.join("changes/c.ndjson"),
        "{\"entity\": \"doctor\", \"id\": \"d1\", \"version\": 1, \"op\": \"upsert\", \"patch\": {\"name\": \"Ann\"}}\n",
    )
    .unwrap();

    let mut printed = output_of(
        Command::new(support::SLUICE)
            .arg("validate")
            .arg(dir.join("pipeline.toml")),
    );
    let run = output_of(
        Command::new(support::SLUICE)
            .arg("run")
            .arg(dir.join("pipeline.toml"))
            .arg("--until-idle"),
    );
    assert!(run.contains("pipeline stopped"), "{run}");
    printed.push_str(&run);
    let documents: i64 = match pg
        .query_one(&format!("SELECT count(*) FROM {store_schema}.doctors"), &[])
        .await
    {
        Ok(row) => row.get(0),
        Err(e) => panic!("{e}: {run}"),
    };
    assert_eq!(documents, 1, "the document store was reached through its URL: {run}");

    // A broken copy: the errors name the keys and the URLs without their passwords.
    std::fs::write(
        dir.join("broken.toml"),
        pipeline
            .replace("store = \"postgres://", "store = \"mysql://")
            .replace("endpoint = ", "no_such_option = \"x\", endpoint = "),
    )
    .unwrap();
    let broken = output_of(
        Command::new(support::SLUICE)
            .arg("validate")
            .arg(dir.join("broken.toml")),
    );
    assert!(
        broken.contains("no_such_option") || broken.contains("mysql://***@"),
        "{broken}"
    );
    printed.push_str(&broken);

    for secret in SECRETS {
        assert!(!printed.contains(secret), "{secret} was printed:\n{printed}");
    }
    drop_schema(&pg, &store_schema).await;
}
