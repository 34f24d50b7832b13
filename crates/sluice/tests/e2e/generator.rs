//! The `generator` source end to end: `sluice run --until-idle` twice on
//! a pipeline generator -> validate -> lake. The table holds the
//! generator's oracle (distinct ids, per-hour counts), the malformed lines
//! are dead letters, and the second run (the same batches again, as after
//! a restart) adds nothing.

use crate::{
    postgres::{dead_letter_count, run_until_idle},
    support,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generator_source_lands_its_oracle_once_across_runs() {
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let options = sluice_testkit::generator::ClickstreamOptions {
        bad_rate: 0.01,
        dup_rate: 0.02,
        ..sluice_testkit::generator::ClickstreamOptions::clean(20_000, 61)
    };
    let (_, oracle) = sluice_testkit::data::clickstream(dir, &options);
    let source = "[sources.fake]\ntype = \"generator\"\nevents = 20000\nseed = 61\nbad_rate = 0.01\ndup_rate = 0.02\nbatch_events = 500";
    let pipeline = support::pipeline(support::free_port(), "", source, &["fake"], "t");
    std::fs::write(dir.join("pipeline.toml"), pipeline).unwrap();

    run_until_idle(dir, &[]);
    let first = support::read_lake(&dir.join("lake/t")).await;
    assert_eq!(first.ids_sha256, oracle["event_ids_sha256"].as_str().unwrap());
    assert_eq!(first.ids.len() as u64, oracle["valid_unique"].as_u64().unwrap());
    let per_hour: serde_json::Value = serde_json::to_value(&first.per_hour).unwrap();
    assert_eq!(per_hour, oracle["valid_unique_per_hour"]);
    assert_eq!(dead_letter_count(dir) as u64, oracle["invalid"].as_u64().unwrap());

    run_until_idle(dir, &[]);
    let second = support::read_lake(&dir.join("lake/t")).await;
    assert_eq!(second, first, "the same batches again land nothing");
    assert_eq!(dead_letter_count(dir) as u64, oracle["invalid"].as_u64().unwrap());
}
