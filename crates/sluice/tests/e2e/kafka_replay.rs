//! `sluice replay` of a `kafka` source, against tansu: a jq bug (before
//! validation) lands wrong rows from a topic and dead-letters others; after
//! the fix, the replay reads the window's records again onto the queue and
//! the next run lands the corrected rows once; replaying again changes
//! nothing.
//!
//! Records are produced one at a time: tansu answers a partition's end
//! offset as its last batch's first offset + 1, which is right only for
//! batches of one record.

use std::{collections::BTreeSet, process::Command, time::Duration};

use chrono::{SecondsFormat, Utc};
use rdkafka::{
    ClientConfig,
    producer::{FutureProducer, FutureRecord},
};
use serde_json::Value;

use crate::{
    kafka::{Broker, tansu},
    replay::{BUGGY, FIXED, assert_corrected_once, fixed_by, sluice_ok, string_field},
    support,
};

const TOPIC: &str = "replayed";

fn pipeline(brokers: &str, program: &str) -> String {
    let source = format!(
        r#"
[sources.clicks]
type = "kafka"
brokers = "{brokers}"
topics = ["{TOPIC}"]
group_id = "sluice-replay-e2e"
session_timeout_ms = 6000
idle_secs = 3
"#
    );
    source + &fixed_by(program, "clicks")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_replay_after_a_jq_fix_lands_the_corrected_rows_once() {
    let Some(tansu) = tansu() else { return };
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let port = support::free_port();
    let _broker = Broker::start(&tansu, port, port, &dir.join("tansu.log"));
    support::run_ok(
        Command::new(&tansu)
            .args(["topic", "create", TOPIC, "--partitions", "2"])
            .args(["--broker", &format!("tcp://127.0.0.1:{port}")]),
    );
    let brokers = format!("127.0.0.1:{port}");
    let (lines, _) = support::generate_clean(dir, 3_000, 77);
    let users: BTreeSet<String> = lines.iter().map(|l| string_field(l, "user_id")).collect();
    let searches = lines
        .iter()
        .filter(|l| string_field(l, "event_type") == "search")
        .count();

    let since = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "0")
        .create()
        .unwrap();
    for line in &lines {
        producer
            .send(FutureRecord::<(), _>::to(TOPIC).payload(line), Duration::from_secs(10))
            .await
            .unwrap();
    }

    std::fs::write(dir.join("pipeline.toml"), pipeline(&brokers, BUGGY)).unwrap();
    sluice_ok(dir, &["run", "pipeline.toml", "--until-idle"]);
    let lake = support::read_lake(&dir.join("lake/events")).await;
    assert_eq!(lake.rows as usize, lines.len() - searches, "the bug ran");

    std::fs::write(dir.join("pipeline.toml"), pipeline(&brokers, FIXED)).unwrap();
    let ids = support::event_ids(&lines);
    for round in 0..2 {
        let out = sluice_ok(
            dir,
            &[
                "replay",
                "pipeline.toml",
                "--source",
                "clicks",
                "--since",
                &since,
                "--json",
            ],
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["events"], lines.len() as u64, "round {round}: {report}");
        assert_eq!(report["records_read"], lines.len() as u64, "{report}");
        sluice_ok(dir, &["run", "pipeline.toml", "--until-idle"]);
        assert_corrected_once(dir, &ids, &users).await;
    }
}
