//! Lake maintenance end to end: 200k generated lines with producer
//! duplicates and late events reach the table with no write-time dedupe,
//! while compactions run beside the writer (scheduled inside `sluice run`
//! every second, and `sluice compact` from the command line at the same
//! time). After a final compaction the table holds each event once, per
//! hour as the oracle says, in at most ceil(bytes / target) files per
//! partition; a second compaction commits nothing; vacuum then deletes the
//! replaced files and readers see the same table.

use std::{
    collections::BTreeMap,
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::Value;

use crate::support;

const LINES: usize = 200_000;
const PARTS: usize = 8;
const TARGET_FILE_BYTES: u64 = 1 << 20;

fn sluice(args: &[&str], pipeline: &Path) -> Command {
    let mut cmd = Command::new(support::SLUICE);
    cmd.arg(args[0]).arg(pipeline).args(&args[1..]);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_beside_ingest_folds_in_late_data_and_duplicates() {
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, oracle) = support::generate(dir, LINES, 23);
    let api = support::free_port();
    let pipeline_path = dir.join("pipeline.toml");
    let sources = "[sources.files]\ntype = \"file\"\npath = \"incoming/*.ndjson\"\nmax_batch_bytes = 262144";
    let lake_keys = format!(
        "dedupe_window_secs = 0\ncompaction.interval_secs = 1\ncompaction.lookback_hours = 1\ncompaction.target_file_bytes = {TARGET_FILE_BYTES}\n"
    );
    std::fs::write(
        &pipeline_path,
        support::pipeline(api, "", sources, &["files"], "clickstream") + &lake_keys,
    )
    .unwrap();
    let incoming = dir.join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();

    let mut running = support::start(&pipeline_path, &[]);
    running.wait_ready(api);

    // Meanwhile, compactions from the command line race the scheduled ones.
    let ingesting = Arc::new(AtomicBool::new(true));
    let cli_compactions = {
        let (ingesting, pipeline_path) = (ingesting.clone(), pipeline_path.clone());
        std::thread::spawn(move || {
            let mut runs = 0;
            while ingesting.load(Ordering::Relaxed) {
                support::run_ok(&mut sluice(&["compact", "--all", "--json"], &pipeline_path));
                runs += 1;
            }
            runs
        })
    };
    for (i, part) in lines.chunks(LINES.div_ceil(PARTS)).enumerate() {
        let tmp = incoming.join(format!(".part-{i}.tmp"));
        std::fs::write(&tmp, part.join("\n") + "\n").unwrap();
        std::fs::rename(&tmp, incoming.join(format!("part-{i}.ndjson"))).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let (_, metrics) = support::http_get(api, "/metrics").unwrap();
    assert!(
        metrics.contains("sluice_compaction_runs_total{component=\"lake\"}"),
        "the scheduled compaction ran: {metrics}"
    );
    support::assert_metrics_catalogued(&metrics);
    running.stop();
    let mut finish = support::start(&pipeline_path, &["--until-idle"]);
    assert!(finish.child.wait().unwrap().success());
    ingesting.store(false, Ordering::Relaxed);
    assert!(cli_compactions.join().unwrap() > 0);

    let report: Value = serde_json::from_str(&support::run_ok(&mut sluice(
        &["compact", "--all", "--json"],
        &pipeline_path,
    )))
    .unwrap();
    assert!(report["skipped"].as_array().unwrap().is_empty(), "{report}");

    let table = dir.join("lake/clickstream");
    let url: sluice_lake::StoreLocation = url::Url::from_directory_path(&table).unwrap().into();
    let compacted = sluice_lake::summarize(&url).await.unwrap();
    let ours = support::read_lake(&table).await;
    let valid_unique = oracle["valid_unique"].as_u64().unwrap();
    assert_eq!(ours.rows, valid_unique, "one row per event after compaction");
    assert_eq!(ours.ids_sha256, oracle["event_ids_sha256"].as_str().unwrap());
    let expected_hours: BTreeMap<String, u64> =
        serde_json::from_value(oracle["valid_unique_per_hour"].clone()).unwrap();
    assert_eq!(ours.per_hour, expected_hours);
    assert_eq!(
        compacted.partitions.len(),
        expected_hours.len(),
        "late events land in their own (older) partitions"
    );
    for (name, p) in &compacted.partitions {
        assert!(
            p.files <= p.bytes.div_ceil(TARGET_FILE_BYTES),
            "{name}: {} files for {} bytes",
            p.files,
            p.bytes
        );
    }

    // Compacting a compacted table commits nothing.
    let again = support::run_ok(&mut sluice(&["compact", "--all"], &pipeline_path));
    assert!(again.contains("nothing to compact"), "{again}");
    assert_eq!(sluice_lake::summarize(&url).await.unwrap().version, compacted.version);

    // Vacuum refuses a short retention without --force, then deletes every replaced file.
    let refused = sluice(&["vacuum", "--retention-hours", "0"], &pipeline_path)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    let parquet_files = || {
        support::all_files(&table)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet") && !p.starts_with(table.join("_delta_log")))
            .collect::<Vec<_>>()
    };
    assert!(parquet_files().len() > compacted.files as usize);
    let vacuumed: Value = serde_json::from_str(&support::run_ok(&mut sluice(
        &["vacuum", "--retention-hours", "0", "--force", "--json"],
        &pipeline_path,
    )))
    .unwrap();
    assert!(!vacuumed["files_deleted"].as_array().unwrap().is_empty());
    let left: Vec<String> = parquet_files()
        .iter()
        .map(|p| p.strip_prefix(&table).unwrap().to_string_lossy().into_owned())
        .filter(|p| !compacted.file_paths.contains(p))
        .collect();
    assert!(left.is_empty(), "only the active files are left: {left:?} {vacuumed}");

    // delta-rs's Python reader agrees, down to the revenue of the purchases.
    let theirs = support::read_with_delta_rs(&table);
    assert_eq!(theirs["rows"].as_u64().unwrap(), valid_unique);
    assert_eq!(theirs["distinct"].as_u64().unwrap(), valid_unique);
    assert_eq!(theirs["per_hour"], oracle["valid_unique_per_hour"]);
    assert_eq!(theirs["partition_mismatches"], 0);
    assert_eq!(theirs["purchase_revenue_cents"], oracle["purchase_revenue_cents"]);
}
