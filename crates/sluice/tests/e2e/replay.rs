//! `sluice replay` end to end: a jq bug (before validation) lands wrong
//! rows and dead-letters others; after the fix, a replay of the window the bug ran in lands the
//! corrected rows once (the lake replaces rows by event id), also when the
//! engine is killed during the replay, and a replay run again changes nothing.

use std::{
    collections::{BTreeSet, HashSet},
    path::Path,
    process::Command,
    time::Duration,
};

use chrono::{SecondsFormat, Utc};
use serde_json::Value;

use crate::support;

/// The string at top-level `name` of a generated line.
pub(crate) fn string_field(line: &str, name: &str) -> String {
    serde_json::from_str::<Value>(line).unwrap()[name]
        .as_str()
        .unwrap()
        .to_string()
}

/// The bug: searches refused, users upper-cased.
pub(crate) const BUGGY: &str =
    r#"if .event_type == "search" then error("no searches yet") else .user_id |= ascii_upcase end"#;
pub(crate) const FIXED: &str = r#".user_id |= ascii_downcase"#;

fn pipeline(program: &str, extra_sink: &str) -> String {
    let source = r#"
[sources.input]
type = "file"
path = "incoming/*.ndjson"
settle_secs = 0
max_batch_bytes = 65536
"#;
    format!("{source}{}{extra_sink}", fixed_by(program, "input"))
}

/// `program` (jq) on `input`, then `validate` and a lake table at `lake/events`.
pub(crate) fn fixed_by(program: &str, input: &str) -> String {
    format!(
        r#"
[transforms.fix]
type = "jq"
inputs = ["{input}"]
program = '{program}'

[transforms.standardize]
type = "validate"
inputs = ["fix"]
schema = "{schema}"
event_id = "/event_id"
event_time = "/ts"

[sinks.lake]
type = "lake"
inputs = ["standardize"]
uri = "lake/events"
flush_interval_secs = 1
"#,
        schema = support::schema_path().display()
    )
}

/// `sluice ARGS` in `dir` (with the AWS test environment), which must succeed.
pub(crate) fn sluice_ok(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(support::SLUICE)
        .args(args)
        .current_dir(dir)
        .envs(support::AWS_ENV)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn sluice(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(support::SLUICE)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn replay(dir: &Path, args: &[&str]) -> Value {
    let out = sluice(
        dir,
        &[&["replay", "pipeline.toml", "--source", "input", "--json"], args].concat(),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn run_until_idle(dir: &Path) {
    let out = sluice(dir, &["run", "pipeline.toml", "--until-idle"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Writes `lines` to `incoming/<name>` whole (the source never sees half a file).
fn put(dir: &Path, name: &str, lines: &[String]) {
    let tmp = dir.join(format!("{name}.part"));
    std::fs::write(&tmp, lines.join("\n") + "\n").unwrap();
    std::fs::rename(tmp, dir.join("incoming").join(name)).unwrap();
}

/// Asserts that the table holds each of `ids` once and nothing else, with
/// `user_id` as the fixed program writes it.
pub(crate) async fn assert_corrected_once(dir: &Path, ids: &HashSet<String>, users: &BTreeSet<String>) {
    let table = dir.join("lake/events");
    let lake = support::read_lake(&table).await;
    assert_eq!(&lake.ids, ids, "every event, none other");
    assert!(
        lake.rows_per_id.values().all(|n| *n == 1),
        "each event once: {} rows for {} ids",
        lake.rows,
        lake.ids.len()
    );
    let url: sluice_lake::StoreLocation = url::Url::from_directory_path(&table).unwrap().into();
    let landed: BTreeSet<String> = sluice_lake::distinct_strings(&url, "user_id")
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(&landed, users, "only corrected rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_a_jq_fix_lands_the_corrected_rows_once() {
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, 24_000, 31);
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    let (first, later) = lines.split_at(16_000);
    let users: BTreeSet<String> = lines.iter().map(|l| string_field(l, "user_id")).collect();
    let searches = first
        .iter()
        .filter(|l| string_field(l, "event_type") == "search")
        .count();
    assert!(searches > 0);

    // The bug runs: upper-cased users, searches dead-lettered.
    std::fs::write(dir.join("pipeline.toml"), pipeline(BUGGY, "")).unwrap();
    let since = now();
    put(dir, "a.ndjson", &first[..8_000]);
    put(dir, "b.ndjson", &first[8_000..]);
    run_until_idle(dir);
    let lake = support::read_lake(&dir.join("lake/events")).await;
    assert_eq!(lake.rows as usize, first.len() - searches);
    let until = now();
    std::thread::sleep(Duration::from_millis(50));

    // The fix ships; a new file arrives; the window the bug ran in is replayed.
    std::fs::write(dir.join("pipeline.toml"), pipeline(FIXED, "")).unwrap();
    put(dir, "c.ndjson", later);
    let asked = replay(dir, &["--since", &since, "--until", &until]);
    let files: Vec<&str> = asked["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 2, "{asked}");
    assert!(
        files.iter().all(|f| f.ends_with("a.ndjson") || f.ends_with("b.ndjson")),
        "{asked}"
    );
    run_until_idle(dir);
    let all = support::event_ids(&lines);
    assert_corrected_once(dir, &all, &users).await;

    // Replayed again while the engine runs, and the engine killed on the way:
    // the run after it finishes the replay, and the table stays the same.
    let asked = replay(dir, &["--since", &since]);
    assert_eq!(asked["files"].as_array().unwrap().len(), 3, "{asked}");
    let running = support::start(&dir.join("pipeline.toml"), &[]);
    std::thread::sleep(Duration::from_millis(1500));
    running.kill();
    run_until_idle(dir);
    assert_corrected_once(dir, &all, &users).await;

    // `--wait` follows a replay the running engine reads.
    let running = support::start(&dir.join("pipeline.toml"), &[]);
    let out = sluice(
        dir,
        &[
            "replay",
            "pipeline.toml",
            "--source",
            "input",
            "--since",
            &since,
            "--wait",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("3 files source input read between"), "{stdout}");
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(progress.contains("replaying: 3/3 files"), "{progress}");
    running.stop();
    assert_corrected_once(dir, &all, &users).await;

    // A sink that would keep both copies refuses the replay, by name.
    let appending = r#"
[sinks.warehouse]
type = "postgres"
inputs = ["standardize"]
url = "postgres://127.0.0.1/postgres"
table = "events"
"#;
    std::fs::write(dir.join("pipeline.toml"), pipeline(FIXED, appending)).unwrap();
    let refused = sluice(
        dir,
        &["replay", "pipeline.toml", "--source", "input", "--since", &since],
    );
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("sink warehouse (postgres, mode = \"append\") would keep both copies"),
        "{message}"
    );
}
