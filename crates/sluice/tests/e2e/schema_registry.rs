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
