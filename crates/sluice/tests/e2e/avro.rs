//! Avro in flight: generator events encoded by fastavro as base64 lines of
//! Avro single-object datums (the header built from the specification in
//! `avro_events.py`, not by Sluice's Avro library), of two registered
//! versions of one schema, one unregistered schema and some lines that are
//! not Avro, through the `avro` transform into a table per MODEL. Read
//! back by delta-rs's Python package.

use std::process::Command;

use serde_json::{Value, json};

use crate::support;

fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/avro_events.py")
}

#[test]
fn avro_datums_are_decoded_by_fingerprint_into_a_table_that_gains_the_new_field() {
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    support::generate(dir, 6_000, 79);
    std::fs::write(
        dir.join("pipeline.toml"),
        "[sources.input]\ntype = \"file\"\npath = \"incoming/*.lines\"\nsettle_secs = 0\n\n\
         [transforms.decoded]\ntype = \"avro\"\ninputs = [\"input\"]\nevent_id = \"/event_id\"\nevent_time = \"/ts\"\n\n\
         [sinks.lake]\ntype = \"lake\"\ninputs = [\"decoded\"]\ntable_template = \"lake/{vendor}/{name}_{format}_{model}\"\nflush_interval_secs = 1\n",
    )
    .unwrap();
    let p = dir.join("pipeline.toml");
    let p = p.to_str().unwrap();
    let fields = json!([
        {"name": "event_id", "type": "string"},
        {"name": "event_type", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "user_id", "type": ["null", "string"], "default": null}
    ]);
    let mut with_campaign = fields.clone();
    with_campaign
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "campaign", "type": ["null", "string"], "default": null}));
    let schemas = [
        (
            "v1.avsc",
            json!({"type": "record", "name": "Click", "namespace": "com.acme", "fields": fields}),
        ),
        (
            "v2.avsc",
            json!({"type": "record", "name": "Click", "namespace": "com.acme", "fields": with_campaign}),
        ),
        (
            "stray.avsc",
            json!({"type": "record", "name": "Stray", "namespace": "com.acme", "fields": [
                {"name": "event_id", "type": "string"},
                {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}}
            ]}),
        ),
    ];
    for (name, schema) in &schemas {
        std::fs::write(dir.join(name), serde_json::to_vec_pretty(schema).unwrap()).unwrap();
    }
    for (file, version) in [("v1.avsc", "1-0-0"), ("v2.avsc", "1-0-1")] {
        let key = format!("iglu:com.acme/click/avro/{version}");
        let out = support::run_ok(Command::new(support::SLUICE).args([
            "schema",
            "register",
            p,
            dir.join(file).to_str().unwrap(),
            "--key",
            &key,
        ]));
        assert!(out.contains("registered"), "{out}");
    }
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    support::run_ok(
        Command::new(support::python())
            .arg(script())
            .arg("write")
            .args([
                "events.ndjson",
                "v1.avsc",
                "v2.avsc",
                "stray.avsc",
                "incoming/a.lines",
                "expect-avro.json",
            ])
            .current_dir(dir),
    );
    let expected: Value = serde_json::from_slice(&std::fs::read(dir.join("expect-avro.json")).unwrap()).unwrap();
    crate::postgres::run_until_idle(dir, &[]);

    let table = dir.join("lake/com.acme/click_avro_1");
    let read: Value = serde_json::from_str(&support::run_ok(
        Command::new(support::python()).arg(script()).arg("read").arg(&table),
    ))
    .unwrap();
    assert_eq!(read["distinct"], expected["distinct"], "{read} {expected}");
    assert_eq!(read["ids_sha256"], expected["ids_sha256"]);
    assert_eq!(
        read["rows"], read["distinct"],
        "producer duplicates dropped within the run"
    );
    assert!(read["with_campaign"].as_u64().unwrap() > 100, "{read}");
    assert_eq!(read["wrong_campaign"], 0, "{read}");

    let shown = support::run_ok(Command::new(support::SLUICE).args(["dlq", "show", p, "--json", "--limit", "1000"]));
    let letters: Vec<Value> = shown.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let count = |reason: &str| letters.iter().filter(|l| l["reason"] == reason).count() as u64;
    assert_eq!(count("unknown_schema"), expected["stray"].as_u64().unwrap());
    assert_eq!(count("invalid_avro"), expected["garbage"].as_u64().unwrap());
    assert_eq!(
        letters.len() as u64,
        expected["stray"].as_u64().unwrap() + expected["garbage"].as_u64().unwrap()
    );
}
