//! `sluice schema`: versions of the shared clickstream schema registered
//! through the command line into a pipeline's registry folder; a
//! compatible addition is accepted, a rename is refused with what breaks
//! (exit code 1), and lands as a new MODEL.

use std::process::Command;

use serde_json::{Value, json};

use crate::support;

fn sluice(args: &[&str]) -> std::process::Output {
    Command::new(support::SLUICE).args(args).output().unwrap()
}

#[test]
fn schema_versions_are_registered_checked_and_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pipeline = dir.join("pipeline.toml");
    std::fs::write(
        &pipeline,
        "[registry]\nuri = \"schemas-registry\"\n[sources.web]\ntype = \"http\"\naddress = \"127.0.0.1:0\"\n[sinks.out]\ntype = \"stream\"\ninputs = [\"web\"]\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"x\"\n",
    )
    .unwrap();
    let p = pipeline.to_str().unwrap();
    let base: Value =
        serde_json::from_slice(&std::fs::read(support::bench_dir().join("schemas/clickstream.schema.json")).unwrap())
            .unwrap();
    let write = |name: &str, schema: &Value| {
        let path = dir.join(name);
        std::fs::write(&path, serde_json::to_vec_pretty(schema).unwrap()).unwrap();
        path.to_str().unwrap().to_string()
    };

    let v1 = write("v1.json", &base);
    let out = support::run_ok(Command::new(support::SLUICE).args([
        "schema",
        "register",
        p,
        &v1,
        "--key",
        "iglu:com.acme/click/jsonschema/1-0-0",
    ]));
    assert!(out.contains("registered (the first version of its MODEL)"), "{out}");

    let mut added = base.clone();
    added["properties"]["campaign_id"] = json!({"type": ["string", "null"]});
    added["self"] = json!({"vendor": "com.acme", "name": "click", "format": "jsonschema", "version": "1-0-1"});
    let v2 = write("v2.json", &added);
    let out = support::run_ok(Command::new(support::SLUICE).args(["schema", "check", p, &v2]));
    assert!(
        out.contains("can be registered: compatible with iglu:com.acme/click/jsonschema/1-0-0"),
        "{out}"
    );
    assert!(out.contains("/campaign_id: new optional field"), "{out}");
    support::run_ok(Command::new(support::SLUICE).args(["schema", "register", p, &v2]));

    // The first property, renamed: refused within MODEL 1, saying what breaks.
    let mut renamed = added.clone();
    let props = renamed["properties"].as_object_mut().unwrap();
    let (first, value) = props.iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap();
    props.remove(&first);
    props.insert(format!("{first}_v2"), value);
    renamed["self"]["version"] = json!("1-0-2");
    let v3 = write("v3.json", &renamed);
    let refused = sluice(&["schema", "register", p, &v3]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains(&format!("/{first}: removed")), "{message}");
    assert!(
        message.contains("register it as iglu:com.acme/click/jsonschema/2-0-0"),
        "{message}"
    );
    renamed["self"]["version"] = json!("2-0-0");
    let v4 = write("v4.json", &renamed);
    support::run_ok(Command::new(support::SLUICE).args(["schema", "register", p, &v4]));

    let listed = support::run_ok(Command::new(support::SLUICE).args(["schema", "list", p, "--json"]));
    let keys: Vec<String> = listed
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["key"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        keys,
        ["1-0-0", "1-0-1", "2-0-0"].map(|v| format!("iglu:com.acme/click/jsonschema/{v}"))
    );
    assert!(
        dir.join("schemas-registry/schemas/com.acme/click/jsonschema/1-0-1")
            .exists()
    );
    let shown = support::run_ok(Command::new(support::SLUICE).args([
        "schema",
        "show",
        p,
        "iglu:com.acme/click/jsonschema/1-0-1",
    ]));
    assert_eq!(serde_json::from_str::<Value>(&shown).unwrap(), added);
}

/// Generator lines wrapped as self-describing events of two registered
/// versions, plus events naming a version nobody registered, through
/// `self_describing` into PostgreSQL: rows = the oracle's valid unique
/// events, each row says which version it came from, the unknown ones are
/// `unknown_schema` dead letters and the rest of the dead letters are
/// exactly the generator's invalid lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_describing_events_are_checked_against_their_version_and_unknown_ones_dead_lettered() {
    use crate::postgres::{connect, drop_schema, fresh_schema, one_i64, run_until_idle, url};

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, oracle) = support::generate(dir, 6_000, 71);
    let client = connect().await;
    let schema = fresh_schema(&client, "described").await;
    std::fs::write(
        dir.join("pipeline.toml"),
        format!(
            "[sources.input]\ntype = \"file\"\npath = \"incoming/*.ndjson\"\nsettle_secs = 0\n\n\
             [transforms.described]\ntype = \"self_describing\"\ninputs = [\"input\"]\nevent_id = \"/event_id\"\nevent_time = \"/ts\"\n\n\
             [sinks.warehouse]\ntype = \"postgres\"\ninputs = [\"described\"]\nurl = \"{}\"\nschema = \"{schema}\"\ntable = \"events\"\n\
             mode = \"upsert\"\nprimary_key = [\"/event_id\"]\nflush_interval_secs = 1\n",
            url()
        ),
    )
    .unwrap();
    let p = dir.join("pipeline.toml");
    let p = p.to_str().unwrap();
    let base: Value =
        serde_json::from_slice(&std::fs::read(support::bench_dir().join("schemas/clickstream.schema.json")).unwrap())
            .unwrap();
    let mut v101 = base.clone();
    v101["properties"]["campaign_id"] = json!({"type": ["string", "null"]});
    for (version, body) in [("1-0-0", &base), ("1-0-1", &v101)] {
        let file = dir.join(format!("{version}.json"));
        std::fs::write(&file, serde_json::to_vec(body).unwrap()).unwrap();
        let key = format!("iglu:com.acme/click/jsonschema/{version}");
        support::run_ok(Command::new(support::SLUICE).args([
            "schema",
            "register",
            p,
            file.to_str().unwrap(),
            "--key",
            &key,
        ]));
    }

    let wrapped: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let version = if i % 2 == 0 { "1-0-0" } else { "1-0-1" };
            format!("{{\"schema\":\"iglu:com.acme/click/jsonschema/{version}\",\"data\":{line}}}")
        })
        .collect();
    let unknown: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "{{\"schema\":\"iglu:com.acme/click/jsonschema/9-0-0\",\"data\":{{\"event_id\":\"unknown-{i}\",\"ts\":\"2026-11-23T10:00:00Z\"}}}}"
            )
        })
        .collect();
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    std::fs::write(dir.join("incoming/a.ndjson"), wrapped.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("incoming/b.ndjson"), unknown.join("\n") + "\n").unwrap();
    run_until_idle(dir, &[]);

    let rows = one_i64(&client, &format!("SELECT count(*) FROM {schema}.events")).await;
    assert_eq!(rows, oracle["valid_unique"].as_i64().unwrap());
    let unknown_rows = one_i64(
        &client,
        &format!("SELECT count(*) FROM {schema}.events WHERE event_id LIKE 'unknown-%'"),
    )
    .await;
    assert_eq!(unknown_rows, 0);
    let versions = one_i64(&client, &format!("SELECT count(DISTINCT _schema) FROM {schema}.events")).await;
    assert_eq!(versions, 2, "rows keep the version they were checked against");

    let shown = support::run_ok(Command::new(support::SLUICE).args(["dlq", "show", p, "--json", "--limit", "100000"]));
    let letters: Vec<Value> = shown.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let unknown_letters = letters.iter().filter(|l| l["reason"] == "unknown_schema").count();
    assert_eq!(unknown_letters, unknown.len());
    let others = letters.len() - unknown_letters;
    assert_eq!(
        others as u64,
        oracle["invalid"].as_u64().unwrap(),
        "the other dead letters are the generator's invalid lines"
    );
    drop_schema(&client, &schema).await;
}
