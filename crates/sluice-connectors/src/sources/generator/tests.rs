use std::sync::Arc;

use sluice_core::{Delivery, split_lines};
use sluice_queue::{Queue, QueueSettings, embedded::EmbeddedQueue, lease::LocalLeases};
use tokio::sync::watch;

use super::*;
use crate::sources::{Source, SourceContext, SourceSpec};

fn config(toml_text: &str) -> GeneratorSourceConfig {
    toml::from_str(toml_text).unwrap()
}

/// Runs the source in `--until-idle` mode; returns what it enqueued.
async fn run_once(config: GeneratorSourceConfig, queue: &Arc<EmbeddedQueue>) -> Vec<Delivery> {
    let (_stop, shutdown) = watch::channel(false);
    let ctx = SourceContext {
        name: "fake".into(),
        queue: queue.clone(),
        dead_letters: queue.clone(),
        shutdown,
        until_idle: true,
        state_dir: std::env::temp_dir(),
        checkpoints: crate::sources::local_checkpoints(
            &std::env::temp_dir().join(format!("sluice-generator-test-{}", std::process::id())),
        ),
        leases: Arc::new(LocalLeases::default()),
        telemetry: sluice_core::telemetry::SourceTelemetry::new("fake"),
    };
    Box::new(GeneratorSource::new(config)).run(ctx).await.unwrap();
    let got = queue.receive(10_000).await.unwrap();
    queue.ack(got.iter().map(|d| d.id).collect()).await.unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_enqueues_the_same_batches_flagged_for_a_log_check() {
    let dir = sluice_testkit::tempdir().unwrap();
    let queue = Arc::new(EmbeddedQueue::open(dir.path(), QueueSettings::default()).unwrap());
    let c = config("events = 2500\nbatch_events = 1000\nbad_rate = 0.01\ndup_rate = 0.02\nseed = 4");
    let first = run_once(c.clone(), &queue).await;
    let mut expected = Vec::new();
    let oracle = sluice_gen::clickstream(
        &sluice_gen::ClickstreamOptions {
            bad_rate: 0.01,
            dup_rate: 0.02,
            ..sluice_gen::ClickstreamOptions::clean(2500, 4)
        },
        &mut expected,
    )
    .unwrap();
    let lines: Vec<u8> = first.iter().flat_map(|d| d.payload.to_vec()).collect();
    assert_eq!(lines, expected, "the generator's lines, in order");
    assert_eq!(
        first
            .iter()
            .map(|d| split_lines(&d.payload).count())
            .collect::<Vec<_>>(),
        [1000, 1000, 500]
    );
    assert_eq!(oracle.lines, 2500);
    assert!(first.iter().all(|d| d.maybe_committed));
    let again = run_once(c, &queue).await;
    let keys = |ds: &[Delivery]| ds.iter().map(|d| d.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&first), keys(&again));
    assert_eq!(keys(&first)[0], "generator:fake:clickstream:4:2500:0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_changes_are_the_generators() {
    let dir = sluice_testkit::tempdir().unwrap();
    let queue = Arc::new(EmbeddedQueue::open(dir.path(), QueueSettings::default()).unwrap());
    let got = run_once(config("stream = \"cdc\"\nevents = 400"), &queue).await;
    let (_, oracle) = sluice_testkit::data::cdc(&sluice_gen::CdcOptions {
        changes: 400,
        docs: 20,
        seed: 1,
        dup_rate: 0.0,
        ..Default::default()
    });
    let lines: usize = got.iter().map(|d| split_lines(&d.payload).count()).sum();
    assert_eq!(lines as u64, oracle.changes_delivered);
}

#[test]
fn bad_values_name_their_key() {
    let err = |text: &str| config(text).validate().unwrap_err();
    assert_eq!(err("events = 0"), "events: 0 is not allowed; from 1 to 5000000");
    assert_eq!(err("batch_events = 0"), "batch_events: must be at least 1");
    assert_eq!(
        err("dup_rate = 1.5"),
        "dup_rate: 1.5 is not allowed; a share from 0 to 1"
    );
    assert_eq!(
        err("stream = \"cdc\"\nbad_rate = 0.1"),
        "bad_rate: only a clickstream has malformed lines"
    );
    assert!(
        toml::from_str::<GeneratorSourceConfig>("stream = \"logs\"")
            .unwrap_err()
            .to_string()
            .contains("unknown variant `logs`, expected `clickstream` or `cdc`")
    );
}
