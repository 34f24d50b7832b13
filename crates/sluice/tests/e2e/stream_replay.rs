//! `sluice replay` of a `kinesis` source against moto, as boto3 producers
//! put the records: a jq bug lands wrong rows and dead-letters others;
//! after the fix, the replay reads what the stream took in the window
//! (AT_TIMESTAMP iterators) onto the queue and the next run lands the
//! corrected rows once.

use std::collections::BTreeSet;

use chrono::{SecondsFormat, Utc};
use serde_json::Value;
use sluice_testkit::services::Service;

use crate::{
    aws_sources::aws,
    replay::{BUGGY, FIXED, assert_corrected_once, fixed_by, sluice_ok, string_field},
    support,
};

fn pipeline(stream: &str, program: &str) -> String {
    let source = format!(
        r#"
[sources.changes]
type = "kinesis"
stream = "{stream}"
endpoint = "{endpoint}"
poll_interval_ms = 200
max_records = 500
"#,
        endpoint = Service::Aws.url()
    );
    source + &fixed_by(program, "changes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kinesis_replay_after_a_jq_fix_lands_the_corrected_rows_once() {
    if !support::services_up(&[Service::Aws]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let stream = format!("sluice-e2e-replay-{}", std::process::id());
    assert_eq!(aws(&["setup-kinesis", &stream, "2"])["shards"], 2);
    let (lines, _) = support::generate_clean(dir, 3_000, 91);
    let users: BTreeSet<String> = lines.iter().map(|l| string_field(l, "user_id")).collect();
    let searches = lines
        .iter()
        .filter(|l| string_field(l, "event_type") == "search")
        .count();
    let since = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let file = dir.join("events.ndjson").display().to_string();
    assert_eq!(
        aws(&["put-records", &stream, &file, "0"])["records"],
        lines.len() as u64
    );

    std::fs::write(dir.join("pipeline.toml"), pipeline(&stream, BUGGY)).unwrap();
    sluice_ok(dir, &["run", "pipeline.toml", "--until-idle"]);
    let lake = support::read_lake(&dir.join("lake/events")).await;
    assert_eq!(lake.rows as usize, lines.len() - searches, "the bug ran");

    std::fs::write(dir.join("pipeline.toml"), pipeline(&stream, FIXED)).unwrap();
    let out = sluice_ok(
        dir,
        &[
            "replay",
            "pipeline.toml",
            "--source",
            "changes",
            "--since",
            &since,
            "--json",
        ],
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["events"], lines.len() as u64, "{report}");
    assert_eq!(report["shards"], 2, "{report}");
    sluice_ok(dir, &["run", "pipeline.toml", "--until-idle"]);
    assert_corrected_once(dir, &support::event_ids(&lines), &users).await;
}
