//! The JetStream queue end to end: generator files -> validate -> lake with
//! `queue = "nats://..."` (the machine's NATS; `SLUICE_TEST_NATS` overrides
//! it). The table holds exactly the oracle's events, the dead letters are
//! its invalid lines, and dead letters redriven into the data directory
//! travel through JetStream again.

use std::process::Command;

use crate::{
    postgres::{dead_letter_count, run_until_idle},
    support,
};

fn nats_url() -> String {
    std::env::var("SLUICE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_through_a_jetstream_queue_land_as_the_oracle_says() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, oracle) = support::generate(dir, 20_000, 81);
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    std::fs::rename(dir.join("events.ndjson"), dir.join("incoming/events.ndjson")).unwrap();
    let queue_name = format!("e2e-{}", std::process::id());
    let head = format!("queue = \"{}\"\nqueue_name = \"{queue_name}\"\n", nats_url());
    let sources =
        "[sources.files]\ntype = \"file\"\npath = \"incoming/*.ndjson\"\nsettle_secs = 0\nmax_batch_bytes = 65536";
    let body = support::pipeline(support::free_port(), "", sources, &["files"], "t");
    std::fs::write(dir.join("pipeline.toml"), head + &body).unwrap();

    run_until_idle(dir, &[]);
    let lake = support::read_lake(&dir.join("lake/t")).await;
    assert_eq!(lake.ids_sha256, oracle["event_ids_sha256"].as_str().unwrap());
    assert_eq!(lake.rows, oracle["valid_unique"].as_u64().unwrap());
    let invalid = oracle["invalid"].as_u64().unwrap() as usize;
    assert_eq!(dead_letter_count(dir), invalid);

    // Redriven, the invalid lines go through JetStream again and come back.
    support::run_ok(
        Command::new(support::SLUICE)
            .args(["dlq", "redrive"])
            .arg(dir.join("pipeline.toml")),
    );
    assert_eq!(dead_letter_count(dir), 0);
    run_until_idle(dir, &[]);
    assert_eq!(dead_letter_count(dir), invalid);
    assert_eq!(support::read_lake(&dir.join("lake/t")).await.rows, lake.rows);

    let client = async_nats::connect(nats_url()).await.unwrap();
    let stream = sluice_queue::jetstream::JetStreamNames::for_pipeline(&queue_name).stream;
    async_nats::jetstream::new(client).delete_stream(&stream).await.unwrap();
}
