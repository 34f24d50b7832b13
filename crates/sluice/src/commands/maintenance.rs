//! `sluice compact` and `sluice vacuum`: maintenance of a lake sink's table,
//! safe to run beside `sluice run`.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Result, bail};
use sluice_lake::{
    LakeSinkConfig, StoreLocation,
    compaction::{self, Scope},
    table_exists, vacuum,
};

use crate::{
    config::{self, Pipeline, SinkConfig},
    extensions::Extensions,
    progress::Progress,
    sinks::ResolvedSink,
};

/// The lake sink `name`, or the only one: its config and its tables (one,
/// or for a `table_template` sink each existing table of a schema MODEL),
/// each with its event id column.
async fn lake<'a>(
    pipeline: &'a Pipeline,
    name: Option<&str>,
) -> Result<(&'a LakeSinkConfig, Vec<(StoreLocation, Vec<String>)>)> {
    let lakes: Vec<&String> = pipeline
        .config
        .sinks
        .iter()
        .filter(|(_, s)| matches!(s.config, SinkConfig::Lake(_)))
        .map(|(n, _)| n)
        .collect();
    let name = match (name, lakes.as_slice()) {
        (Some(n), _) => n,
        (None, [only]) => only.as_str(),
        (None, _) => bail!(
            "{} has several lake sinks; choose one with --sink ({lakes:?})",
            pipeline.file.display()
        ),
    };
    let Some((SinkConfig::Lake(config), resolved)) = pipeline.config.sinks.get(name).map(|s| (&s.config, &s.resolved))
    else {
        bail!(
            "--sink {name:?}: not a lake sink of {}; allowed: {lakes:?}",
            pipeline.file.display()
        );
    };
    let routed = match resolved {
        ResolvedSink::Lake(table) => return Ok((config, vec![(table.location.clone(), table.id_column.clone())])),
        ResolvedSink::RoutedLake(routed) => routed,
        other => bail!("--sink {name:?}: the lake sink was loaded as {other:?}"),
    };
    let mut existing = Vec::new();
    for (location, id_column) in routed.tables().await.map_err(anyhow::Error::msg)? {
        if table_exists(&location).await? {
            existing.push((location, id_column));
        }
    }
    Ok((config, existing))
}

pub async fn compact(
    path: &Path,
    extensions: &Arc<Extensions>,
    sink: Option<&str>,
    since: Option<u64>,
    all: bool,
    json: bool,
) -> Result<()> {
    let pipeline = config::load(path, extensions)?;
    let (config, tables) = lake(&pipeline, sink).await?;
    let scope = if all {
        Scope::All
    } else {
        Scope::lookback_hours(since.unwrap_or(config.compaction.lookback_hours))
    };
    let several = tables.len() > 1;
    for (location, id_column) in tables {
        let options = config.compaction.options(scope, id_column);
        if several && !json {
            println!("{location}:");
        }
        compact_table(&location, &options, json).await?;
    }
    Ok(())
}

async fn compact_table(location: &StoreLocation, options: &compaction::CompactionOptions, json: bool) -> Result<()> {
    let progress = Mutex::new(Progress::new("compacting", "partitions", 0, json));
    let report = compaction::compact(location, options, &|done, planned| {
        let mut progress = progress.lock().unwrap_or_else(|e| e.into_inner());
        progress.set_total(planned as u64);
        progress.advance(&done.partition);
        true
    })
    .await?;
    progress.into_inner().unwrap_or_else(|e| e.into_inner()).finish();
    if json {
        let mut line = serde_json::to_value(&report)?;
        line["table"] = location.to_string().into();
        println!("{line}");
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
    extensions: &Arc<Extensions>,
    sink: Option<&str>,
    retention_hours: u64,
    force: bool,
    dry_run: bool,
    json: bool,
) -> Result<()> {
    let pipeline = config::load(path, extensions)?;
    let (_, tables) = lake(&pipeline, sink).await?;
    let retention = Duration::from_secs(retention_hours.saturating_mul(3600));
    let mut progress = Progress::new("vacuuming", "tables", tables.len() as u64, json);
    for (location, _) in tables {
        let report = vacuum::vacuum(&location, retention, force, dry_run).await?;
        progress.advance(&location.to_string());
        if json {
            let mut line = serde_json::to_value(&report)?;
            line["table"] = location.to_string().into();
            println!("{line}");
            continue;
        }
        for file in &report.files_deleted {
            println!("{file}");
        }
        let verb = if dry_run { "would delete" } else { "deleted" };
        println!(
            "{location}: {verb} {} files older than {retention_hours} h that no table version uses",
            report.files_deleted.len()
        );
    }
    progress.finish();
    Ok(())
}
