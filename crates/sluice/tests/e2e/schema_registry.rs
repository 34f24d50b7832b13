//! `sluice schema`: versions of the shared clickstream schema registered
//! through the command line into a pipeline's registry (a folder, an S3
//! prefix, PostgreSQL); a compatible addition is accepted, a rename is
//! refused with what breaks (exit code 1), and lands as a new MODEL.
//! Self-describing events checked against their version, and routed to a
//! table per MODEL that gains the columns later versions add.

use sluice_testkit::services::Service;
use std::process::Command;

use serde_json::{Value, json};

use crate::support;

fn sluice(args: &[&str]) -> std::process::Output {
    Command::new(support::SLUICE).args(args).output().unwrap()
}

#[test]
fn schema_versions_are_registered_checked_and_listed_in_a_folder() {
    let tmp = sluice_testkit::tempdir().unwrap();
    register_check_and_list(tmp.path(), "uri = \"schemas-registry\"");
    assert!(
        tmp.path()
            .join("schemas-registry/schemas/com.acme/click/jsonschema/1-0-1")
            .exists()
    );
}

/// The same in a registry on the local S3 server and in one in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_versions_are_registered_checked_and_listed_on_s3_and_in_postgres() {
    if !support::services_up(&[Service::S3, Service::Postgres]) {
        return;
    }
    use crate::postgres::{connect, drop_schema, fresh_schema, url};

    let bucket = format!("sluice-registry-{}", std::process::id());
    support::create_bucket(&bucket).await;
    let tmp = sluice_testkit::tempdir().unwrap();
    let s3 = format!(
        "uri = \"s3://{bucket}/registry\"\nstorage_options = {{ endpoint = \"{}\", access_key_id = \"test\", secret_access_key = \"test\", region = \"us-east-1\" }}",
        support::s3_endpoint()
    );
    register_check_and_list(tmp.path(), &s3);
    let listed = reqwest::Client::new()
        .get(format!(
            "{}/{bucket}?list-type=2&prefix=registry/schemas/",
            support::s3_endpoint()
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listed.contains("registry/schemas/com.acme/click/jsonschema/1-0-1"),
        "{listed}"
    );

    let client = connect().await;
    let schema = fresh_schema(&client, "registry").await;
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
    let tmp = sluice_testkit::tempdir().unwrap();
    register_check_and_list(
        tmp.path(),
        &format!("uri = \"{}\"\ntable = \"{schema}.schemas\"", url()),
    );
    let rows = client
        .query_one(&format!("SELECT count(*) FROM {schema}.schemas"), &[])
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(rows, 3);
    drop_schema(&client, &schema).await;
}

/// Through the command line, in the registry `[registry]` names: 1-0-0 of
/// the shared clickstream schema and a compatible 1-0-1 are registered, a
/// rename is refused with what breaks (exit code 1) and lands as 2-0-0;
/// list and show give them back.
fn register_check_and_list(dir: &std::path::Path, registry: &str) {
    let pipeline = dir.join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!("[sources.web]\ntype = \"http\"\naddress = \"127.0.0.1:0\"\n[sinks.out]\ntype = \"stream\"\ninputs = [\"web\"]\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"x\"\n[registry]\n{registry}\n"),
    )
    .unwrap();
    let p = pipeline.to_str().unwrap();
    let base: Value = serde_json::from_slice(&std::fs::read(support::schema_path()).unwrap()).unwrap();
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
    let shown = support::run_ok(Command::new(support::SLUICE).args([
        "schema",
        "show",
        p,
        "iglu:com.acme/click/jsonschema/1-0-1",
    ]));
    assert_eq!(serde_json::from_str::<Value>(&shown).unwrap(), added);
}

/// Registers `body` as `iglu:com.acme/click/jsonschema/<version>` in the
/// registry of `dir/pipeline.toml`, through the command line.
fn register_click(dir: &std::path::Path, version: &str, body: &Value) {
    let file = dir.join(format!("{version}.json"));
    std::fs::write(&file, serde_json::to_vec(body).unwrap()).unwrap();
    let key = format!("iglu:com.acme/click/jsonschema/{version}");
    support::run_ok(Command::new(support::SLUICE).args([
        "schema",
        "register",
        dir.join("pipeline.toml").to_str().unwrap(),
        file.to_str().unwrap(),
        "--key",
        &key,
    ]));
}

/// Generator lines wrapped as self-describing events of two registered
/// versions, plus events naming a version nobody registered, through
/// `self_describing` into PostgreSQL: rows = the oracle's valid unique
/// events, each row says which version it came from, the unknown ones are
/// `unknown_schema` dead letters and the rest of the dead letters are
/// exactly the generator's invalid lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_describing_events_are_checked_against_their_version_and_unknown_ones_dead_lettered() {
    if !support::services_up(&[Service::Postgres]) {
        return;
    }
    use crate::postgres::{connect, drop_schema, fresh_schema, one_i64, run_until_idle, url};

    let tmp = sluice_testkit::tempdir().unwrap();
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
    let base: Value = serde_json::from_slice(&std::fs::read(support::schema_path()).unwrap()).unwrap();
    let mut v101 = base.clone();
    v101["properties"]["campaign_id"] = json!({"type": ["string", "null"]});
    for (version, body) in [("1-0-0", &base), ("1-0-1", &v101)] {
        register_click(dir, version, body);
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

/// What delta-rs's Python package reads of a routed table's new column:
/// the table's columns, rows with `campaign_id`, and rows whose
/// `campaign_id` is not the one their event was sent with.
fn campaign_column(table: &std::path::Path) -> Value {
    // `os._exit`: pyarrow's threads sometimes abort the interpreter's teardown.
    let script = r#"
import json, os, sys
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1])
names = [f.name for f in t.schema().fields]
rows = t.to_pyarrow_table(columns=["event_id", "campaign_id"]).to_pylist()
with_campaign = [r for r in rows if r["campaign_id"] is not None]
wrong = [r for r in with_campaign if r["campaign_id"] != "c-" + r["event_id"]]
print(json.dumps({"columns": names, "with_campaign": len(with_campaign), "wrong": len(wrong), "rows": len(rows)}), flush=True)
os._exit(0)
"#;
    let out = support::run_ok(Command::new(support::python()).args(["-c", script]).arg(table));
    serde_json::from_str(&out).unwrap()
}

/// Generator lines as self-describing events of two MODELs of one family,
/// routed by `table_template` to a table per MODEL. The first run writes
/// MODEL 1 events of version 1-0-0 only; then 1-0-1 (adds `campaign_id`)
/// and 2-0-0 (renames `session_id`) are registered and a second run gets
/// 1-0-0 and 1-0-1 events mixed, plus every MODEL 2 event. Read with
/// delta-rs's Python package: the two tables' distinct events are the
/// oracle's, per hour and in revenue; the MODEL 1 table gained the column
/// in the second run, its older rows read it as null and every newer row
/// has the value it was sent with; the dead letters are the invalid lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_describing_events_are_routed_to_a_table_per_model_which_gains_new_columns() {
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, oracle) = support::generate(dir, 8_000, 73);
    std::fs::write(
        dir.join("pipeline.toml"),
        "[sources.input]\ntype = \"file\"\npath = \"incoming/*.ndjson\"\nsettle_secs = 0\n\n\
         [transforms.described]\ntype = \"self_describing\"\ninputs = [\"input\"]\nevent_id = \"/event_id\"\nevent_time = \"/ts\"\n\n\
         [sinks.lake]\ntype = \"lake\"\ninputs = [\"described\"]\ntable_template = \"lake/{vendor}/{name}_{model}\"\nflush_interval_secs = 1\n",
    )
    .unwrap();
    let p = dir.join("pipeline.toml");
    let p = p.to_str().unwrap();
    let register = |version: &str, body: &Value| register_click(dir, version, body);
    let base: Value = serde_json::from_slice(&std::fs::read(support::schema_path()).unwrap()).unwrap();
    let mut v101 = base.clone();
    v101["properties"]["campaign_id"] = json!({"type": ["string", "null"]});
    let mut v200 = base.clone();
    let session = v200["properties"]
        .as_object_mut()
        .unwrap()
        .remove("session_id")
        .unwrap();
    v200["properties"]["session"] = session;
    for required in v200["required"].as_array_mut().unwrap() {
        if required == "session_id" {
            *required = json!("session");
        }
    }
    register("1-0-0", &base);

    // Every copy of an event goes to one MODEL (by its id); lines that are
    // not JSON objects go to MODEL 1 as they are.
    let wrap = |version: &str, data: &str| {
        format!("{{\"schema\":\"iglu:com.acme/click/jsonschema/{version}\",\"data\":{data}}}")
    };
    let (mut first, mut second) = (Vec::new(), Vec::new());
    let half = lines.len() / 2;
    for (i, line) in lines.iter().enumerate() {
        let Ok(Value::Object(mut data)) = serde_json::from_str::<Value>(line) else {
            (if i < half { &mut first } else { &mut second }).push(wrap("1-0-0", line));
            continue;
        };
        let id = data
            .get("event_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if id.bytes().last().is_some_and(|b| b % 3 == 0) {
            if let Some(s) = data.remove("session_id") {
                data.insert("session".into(), s);
            }
            second.push(wrap("2-0-0", &Value::Object(data).to_string()));
        } else if i < half {
            first.push(wrap("1-0-0", line));
        } else if i % 2 == 0 {
            data.insert("campaign_id".into(), json!(format!("c-{id}")));
            second.push(wrap("1-0-1", &Value::Object(data).to_string()));
        } else {
            second.push(wrap("1-0-0", line));
        }
    }
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    std::fs::write(dir.join("incoming/a.ndjson"), first.join("\n") + "\n").unwrap();
    crate::postgres::run_until_idle(dir, &[]);
    let model_1 = dir.join("lake/com.acme/click_1");
    let columns_before = column_names(&model_1);
    let rows_before = support::read_with_delta_rs(&model_1)["rows"].as_u64().unwrap();
    assert!(
        !dir.join("lake/com.acme/click_2").exists(),
        "no MODEL 2 event was sent yet"
    );

    register("1-0-1", &v101);
    register("2-0-0", &v200);
    std::fs::write(dir.join("incoming/b.ndjson"), second.join("\n") + "\n").unwrap();
    crate::postgres::run_until_idle(dir, &[]);

    let model_2 = dir.join("lake/com.acme/click_2");
    let (one, two) = (
        support::read_with_delta_rs(&model_1),
        support::read_with_delta_rs(&model_2),
    );
    let count = |v: &Value, k: &str| v[k].as_u64().unwrap();
    assert_eq!(
        count(&one, "distinct") + count(&two, "distinct"),
        oracle["valid_unique"].as_u64().unwrap()
    );
    assert!(count(&two, "distinct") > 0 && count(&one, "distinct") > count(&two, "distinct"));
    assert_eq!(
        count(&one, "partition_mismatches") + count(&two, "partition_mismatches"),
        0
    );
    assert_eq!(
        count(&one, "purchase_revenue_cents") + count(&two, "purchase_revenue_cents"),
        oracle["purchase_revenue_cents"].as_u64().unwrap()
    );
    let mut per_hour: std::collections::BTreeMap<String, u64> = Default::default();
    for table in [&one, &two] {
        for (hour, n) in table["per_hour"].as_object().unwrap() {
            *per_hour.entry(hour.clone()).or_default() += n.as_u64().unwrap();
        }
    }
    assert_eq!(json!(per_hour), oracle["valid_unique_per_hour"]);
    // The ids themselves, read with Sluice's own reader.
    let mut ids = support::read_lake(&model_1).await.ids;
    ids.extend(support::read_lake(&model_2).await.ids);
    let mut sorted: Vec<&String> = ids.iter().collect();
    sorted.sort();
    let joined = sorted.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n");
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(joined.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(digest, oracle["event_ids_sha256"].as_str().unwrap());

    let after = campaign_column(&model_1);
    assert!(
        !columns_before.contains(&"campaign_id".to_string()),
        "{columns_before:?}"
    );
    assert!(
        after["columns"].as_array().unwrap().contains(&json!("campaign_id")),
        "{after}"
    );
    assert!(after["with_campaign"].as_u64().unwrap() > 100, "{after}");
    assert_eq!(after["wrong"], 0, "{after}");
    assert!(
        after["rows"].as_u64().unwrap() > rows_before + after["with_campaign"].as_u64().unwrap(),
        "1-0-0 rows kept coming after the table gained the column: {rows_before} {after}"
    );
    let two_columns = column_names(&model_2);
    assert!(two_columns.contains(&"session".to_string()) && !two_columns.contains(&"session_id".to_string()));

    let shown = support::run_ok(Command::new(support::SLUICE).args(["dlq", "show", p, "--json", "--limit", "100000"]));
    assert_eq!(shown.lines().count() as u64, oracle["invalid"].as_u64().unwrap());

    // Copies of an event sent in both runs are two rows until compaction,
    // which works on every table of the sink.
    let compacted = support::run_ok(Command::new(support::SLUICE).args(["compact", p, "--all", "--json"]));
    let tables: Vec<String> = compacted
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["table"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(tables.len(), 2, "{compacted}");
    for table in [&model_1, &model_2] {
        let read = support::read_with_delta_rs(table);
        assert_eq!(read["rows"], read["distinct"], "{}: {read}", table.display());
    }
}

fn column_names(table: &std::path::Path) -> Vec<String> {
    // `os._exit`: pyarrow's threads sometimes abort the interpreter's teardown.
    let script = "import json, os, sys\nfrom deltalake import DeltaTable\n\
                  print(json.dumps([f.name for f in DeltaTable(sys.argv[1]).schema().fields]), flush=True)\n\
                  os._exit(0)";
    let out = support::run_ok(Command::new(support::python()).args(["-c", script]).arg(table));
    serde_json::from_str(&out).unwrap()
}

/// An Iglu static repository written the way Iglu Central publishes
/// schemas (Iglu's meta-schema in `$schema`, a `self` block, draft-04
/// keywords): `sluice schema import` registers it in version order, a
/// second import skips everything, and a breaking ADDITION and a file
/// whose `self` block disagrees with its path are refused with why;
/// progress goes to stderr as plain lines (not a terminal), none with `--json`.
#[test]
fn an_iglu_repository_is_imported_in_version_order() {
    let tmp = sluice_testkit::tempdir().unwrap();
    let pipeline = tmp.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        "[sources.web]\ntype = \"http\"\naddress = \"127.0.0.1:0\"\n[sinks.out]\ntype = \"stream\"\ninputs = [\"web\"]\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"x\"\n",
    )
    .unwrap();
    let repo = tmp.path().join("iglu");
    let put = |vendor: &str, name: &str, version: &str, properties: Value| {
        let dir = repo.join("schemas").join(vendor).join(name).join("jsonschema");
        std::fs::create_dir_all(&dir).unwrap();
        let schema = json!({
            "$schema": "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#",
            "description": format!("{name} {version}"),
            "self": {"vendor": vendor, "name": name, "format": "jsonschema", "version": version},
            "type": "object",
            "properties": properties,
            "additionalProperties": false
        });
        std::fs::write(dir.join(version), serde_json::to_vec_pretty(&schema).unwrap()).unwrap();
    };
    let reading =
        json!({"kind": {"enum": ["a", "b"]}, "level": {"type": "number", "maximum": 10, "exclusiveMaximum": true}});
    let mut typed = reading.clone();
    typed["kind"]["type"] = json!("string");
    let mut dropped = typed.clone();
    dropped.as_object_mut().unwrap().remove("level");
    // Written out of order: the import sorts by version.
    put("com.acme", "reading", "1-1-0", dropped.clone());
    put("com.acme", "reading", "1-0-1", typed);
    put("com.acme", "reading", "1-0-0", reading);
    put("com.acme", "reading", "1-0-2", dropped);
    put("com.acme", "alert", "1-0-0", json!({"text": {"type": "string"}}));
    let misnamed = repo.join("schemas/com.acme/alert/jsonschema/1-0-1");
    let mut body: Value =
        serde_json::from_slice(&std::fs::read(repo.join("schemas/com.acme/alert/jsonschema/1-0-0")).unwrap()).unwrap();
    body["self"]["version"] = json!("1-0-0");
    std::fs::write(&misnamed, serde_json::to_vec(&body).unwrap()).unwrap();

    let p = pipeline.to_str().unwrap();
    let r = repo.to_str().unwrap();
    let first = sluice(&["schema", "import", p, r, "--json"]);
    assert_eq!(first.status.code(), Some(1), "two refusals: exit 1");
    let lines: Vec<Value> = String::from_utf8(first.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let status: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["key"].as_str().unwrap().to_string(),
                l["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let key = |name: &str, version: &str| format!("iglu:com.acme/{name}/jsonschema/{version}");
    assert_eq!(
        status,
        vec![
            (key("alert", "1-0-0"), "registered".to_string()),
            (key("alert", "1-0-1"), "refused".to_string()),
            (key("reading", "1-0-0"), "registered".to_string()),
            (key("reading", "1-0-1"), "registered".to_string()),
            (key("reading", "1-0-2"), "refused".to_string()),
            (key("reading", "1-1-0"), "registered".to_string()),
        ]
    );
    let detail = |i: usize| lines[i]["detail"].to_string();
    assert!(detail(1).contains("its self block names"), "{}", detail(1));
    assert!(detail(4).contains("/level: removed"), "{}", detail(4));
    assert!(
        detail(5).contains("/level: removed"),
        "the REVISION's break is a warning: {}",
        detail(5)
    );

    let said = String::from_utf8(first.stderr).unwrap();
    assert!(!said.contains("importing:"), "no progress lines with --json: {said}");

    let again = sluice(&["schema", "import", p, r]);
    let text = String::from_utf8(again.stdout).unwrap();
    assert!(
        text.contains("0 registered, 4 skipped (already there), 2 refused"),
        "{text}"
    );
    // Not a terminal: plain progress lines, the first and the last.
    let progress = String::from_utf8(again.stderr).unwrap();
    assert!(
        progress.starts_with("importing: 1/6 schemas (") && progress.contains("importing: 6/6 schemas ("),
        "{progress}"
    );
}
