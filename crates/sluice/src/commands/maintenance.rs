//! `sluice compact` and `sluice vacuum`: maintenance of a lake sink's table,
//! safe to run beside `sluice run`.

use std::{path::Path, time::Duration};

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use sluice_lake::{
    LakeSinkConfig,
    compaction::{self, Scope},
    vacuum,
};

use crate::config::{self, LakeTable, Pipeline, SinkConfig};

/// The lake sink `name`, or the only one.
fn lake<'a>(pipeline: &'a Pipeline, name: Option<&str>) -> Result<(&'a LakeSinkConfig, &'a LakeTable)> {
    let lakes: Vec<&String> = pipeline.lakes.keys().collect();
    let name = match (name, lakes.as_slice()) {
        (Some(n), _) => n,
        (None, [only]) => only.as_str(),
        (None, _) => bail!(
            "{} has several lake sinks; choose one with --sink ({lakes:?})",
            pipeline.file.display()
        ),
    };
    match (pipeline.config.sinks.get(name), pipeline.lakes.get(name)) {
        (Some(SinkConfig::Lake(config)), Some(table)) => Ok((config, table)),
        _ => bail!(
            "--sink {name:?}: not a lake sink of {}; allowed: {lakes:?}",
            pipeline.file.display()
        ),
    }
}

pub async fn compact(path: &Path, sink: Option<&str>, since: Option<u64>, all: bool, json: bool) -> Result<()> {
    let pipeline = config::load(path)?;
    let (config, table) = lake(&pipeline, sink)?;
    let scope = if all {
        Scope::All
    } else {
        Scope::lookback_hours(since.unwrap_or(config.compaction.lookback_hours))
    };
    let options = config.compaction.options(scope, table.id_column.clone());
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0).with_style(
            ProgressStyle::with_template("  compacting [{bar:30}] {pos}/{len} partitions  {msg}")
                .expect("valid template"),
        )
    };
    let report = compaction::compact(&table.location, &options, &|done, planned| {
        bar.set_length(planned as u64);
        bar.set_message(done.partition.clone());
        bar.inc(1);
        true
    })
    .await?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    if report.partitions.is_empty() && report.skipped.is_empty() {
        println!("nothing to compact: every partition in scope is already compacted");
        return Ok(());
    }
    for p in &report.partitions {
        println!(
            "{:<32} {:>4} -> {:<3} files  {:>10} -> {:<10} bytes  {:>9} rows  {:>6} duplicates removed",
            p.partition, p.files_in, p.files_out, p.bytes_in, p.bytes_out, p.rows_out, p.duplicates_removed
        );
    }
    for name in &report.skipped {
        println!("{name:<32} left for the next run (replaced concurrently)");
    }
    println!(
        "compacted {} partitions in {:.1}s: {} files -> {}, {} duplicates removed, {} commit conflicts",
        report.partitions.len(),
        report.seconds,
        report.sum(|p| p.files_in),
        report.sum(|p| p.files_out),
        report.sum(|p| p.duplicates_removed),
        report.conflicts
    );
    Ok(())
}

pub async fn vacuum(
    path: &Path,
    sink: Option<&str>,
    retention_hours: u64,
    force: bool,
    dry_run: bool,
    json: bool,
) -> Result<()> {
    let pipeline = config::load(path)?;
    let (_, table) = lake(&pipeline, sink)?;
    let retention = Duration::from_secs(retention_hours.saturating_mul(3600));
    let report = vacuum::vacuum(&table.location, retention, force, dry_run).await?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        for file in &report.files_deleted {
            println!("{file}");
        }
        let verb = if dry_run { "would delete" } else { "deleted" };
        println!(
            "{verb} {} files older than {retention_hours} h that no table version uses",
            report.files_deleted.len()
        );
    }
    Ok(())
}
