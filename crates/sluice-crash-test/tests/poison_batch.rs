//! A batch that kills the engine every time it runs: `crashing-sluice`
//! aborts on an event marked `"poison": true`. Run under a supervisor that
//! restarts it whenever it dies (as systemd or Kubernetes would), with the
//! default `delivery` settings, a file source reading 20 files into
//! PostgreSQL must end: the poison batch (the file holding the marked
//! line) set aside as `crashed_engine` dead letters after `max_crashes`
//! deaths with it alone in flight (the run that sets it aside says so, and
//! `sluice status` names it in its verdict), every other line in the table
//! once.

use std::{collections::BTreeSet, path::Path, process::Command};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_crashing-sluice");
const FILES: usize = 20;
const LINES: usize = 50;
const POISONED_FILE: usize = 7;

fn write_input(dir: &Path) {
    let incoming = dir.join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    for file in 0..FILES {
        let lines: Vec<String> = (0..LINES)
            .map(|i| {
                let mut line = json!({"id": format!("e-{file}-{i}"), "n": i});
                if file == POISONED_FILE && i == 3 {
                    line["poison"] = json!(true);
                }
                line.to_string()
            })
            .collect();
        std::fs::write(incoming.join(format!("part-{file:02}.ndjson")), lines.join("\n") + "\n").unwrap();
    }
}

#[tokio::test]
async fn a_batch_that_crashes_the_engine_every_time_is_set_aside_and_the_rest_lands() {
    let Some(url) = sluice_testkit::services::postgres() else {
        return;
    };
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    write_input(dir);
    let schema = format!("sluice_poison_{}", std::process::id());
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
    std::fs::write(
        dir.join("pipeline.toml"),
        format!(
            r#"
[sources.input]
type = "file"
path = "incoming/*.ndjson"
settle_secs = 0

[transforms.poison]
type = "abort_on"
inputs = ["input"]
pointer = "/poison"

[sinks.table]
type = "postgres"
inputs = ["poison"]
url = "{url}"
schema = "{schema}"
table = "events"
"#
        ),
    )
    .unwrap();

    // The supervisor: run until the input is drained, restarting after each death.
    let mut deaths = 0;
    loop {
        let run = Command::new(BIN)
            .arg("run")
            .arg(dir.join("pipeline.toml"))
            .arg("--until-idle")
            .output()
            .unwrap();
        if run.status.success() {
            let said = String::from_utf8_lossy(&run.stderr);
            assert!(
                said.contains("its lines are set aside as crashed_engine dead letters"),
                "the run that sets the batch aside says so: {said}"
            );
            break;
        }
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(stderr.contains("abort_on: an event holds /poison = true"), "{stderr}");
        deaths += 1;
        assert!(deaths <= 6, "the engine kept dying: {deaths} times");
    }
    // Once among others (not counted), then max_crashes (3) times alone.
    assert!((3..=4).contains(&deaths), "died {deaths} times");

    let first_page = Command::new(BIN)
        .args(["dlq", "show"])
        .arg(dir.join("pipeline.toml"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&first_page.stderr).contains(&format!("showing 20 of {LINES} dead letters")),
        "the default page says there is more"
    );
    let shown = sluice_testkit::process::run_ok(
        Command::new(BIN)
            .args(["dlq", "show"])
            .arg(dir.join("pipeline.toml"))
            .args(["--json", "--limit", "100000"]),
    );
    let letters: Vec<Value> = shown.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let set_aside: BTreeSet<String> = letters
        .iter()
        .map(|l| {
            assert_eq!(l["reason"], "crashed_engine", "{l}");
            assert!(
                l["detail"]
                    .as_str()
                    .unwrap()
                    .starts_with("the engine died 3 times while this batch was the only one in flight"),
                "{l}"
            );
            let line: Value = serde_json::from_str(l["bytes"].as_str().unwrap()).unwrap();
            line["id"].as_str().unwrap().to_string()
        })
        .collect();
    let batches: BTreeSet<&str> = letters.iter().map(|l| l["batch_key"].as_str().unwrap()).collect();
    assert_eq!(batches.len(), 1, "one batch is set aside: {batches:?}");
    let poisoned: BTreeSet<String> = (0..LINES).map(|i| format!("e-{POISONED_FILE}-{i}")).collect();
    assert_eq!(set_aside, poisoned, "the poisoned file (one batch) is set aside whole");

    let status: Value = serde_json::from_str(&sluice_testkit::process::run_ok(
        Command::new(BIN)
            .args(["status", "--json"])
            .arg(dir.join("pipeline.toml")),
    ))
    .unwrap();
    assert_eq!(status["verdict"]["healthy"], false, "{status}");
    assert!(
        status["verdict"]["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with(&format!("{LINES} lines were set aside for crashing the engine")),
        "{status}"
    );

    let landed: BTreeSet<String> = client
        .query(&format!("SELECT id FROM {schema}.events"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: BTreeSet<String> = (0..FILES)
        .flat_map(|f| (0..LINES).map(move |i| format!("e-{f}-{i}")))
        .filter(|id| !set_aside.contains(id))
        .collect();
    assert_eq!(landed, expected, "every other line landed once");
    let rows: i64 = client
        .query_one(&format!("SELECT count(*) FROM {schema}.events"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows as usize, expected.len(), "no line landed twice");
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
