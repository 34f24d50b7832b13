//! Commands on `documents` stages and projections: `snapshot`, `rehydrate`.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use anyhow::{Result, bail};

use crate::{
    config::{self, SinkConfig},
    documents::{documents_stage, open_projection_parts, open_store},
    extensions::Extensions,
    progress::{Progress, reporter},
};

pub async fn snapshot(path: &Path, extensions: &Arc<Extensions>, stage: Option<&str>, json: bool) -> Result<()> {
    let pipeline = config::load(path, extensions)?;
    let (name, stage) = documents_stage(&pipeline, stage)?;
    let Some(target) = &stage.snapshot else {
        bail!(
            "{}: transforms.{name} has no snapshot table; add snapshot.uri = \"lake/{name}\"",
            pipeline.file.display()
        );
    };
    let location = target
        .location()
        .map_err(|e| anyhow::anyhow!("{}: transforms.{name}.snapshot.{e}", pipeline.file.display()))?;
    let store = open_store(&pipeline, name, stage).await?;
    let progress = Mutex::new(Progress::new("snapshotting", "documents", 0, json));
    let report =
        sluice_documents::snapshot::snapshot(store.as_ref(), &location, name, target, &reporter(&progress, name))
            .await
            .map_err(anyhow::Error::msg)?;
    progress.into_inner().unwrap_or_else(|e| e.into_inner()).finish();
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else if report.commits == 0 {
        println!("snapshot of {name} is up to date (store sequence {})", report.watermark);
    } else {
        println!(
            "snapshot of {name}: {} documents written, {} removed, in {} commits; up to date with store sequence {}",
            report.documents_written, report.documents_removed, report.commits, report.watermark
        );
    }
    Ok(())
}

pub async fn rehydrate(path: &Path, extensions: &Arc<Extensions>, projection: &str, json: bool) -> Result<()> {
    let pipeline = config::load(path, extensions)?;
    let (inputs, config) = match pipeline.config.sinks.get(projection).map(|s| (&s.inputs, &s.config)) {
        Some((inputs, SinkConfig::Projection(p))) => (inputs, p),
        _ => {
            let names: Vec<&String> = pipeline
                .config
                .sinks
                .iter()
                .filter(|(_, s)| matches!(s.config, SinkConfig::Projection(_)))
                .map(|(n, _)| n)
                .collect();
            bail!(
                "{}: no projection {projection:?}; allowed: {names:?}",
                pipeline.file.display()
            );
        }
    };
    let (projector, store, writer) = open_projection_parts(&pipeline, inputs, config).await?;
    let progress = Mutex::new(Progress::new("rehydrating", "documents", 0, json));
    let written = sluice_documents::projection::redis::rehydrate(
        &projector,
        store.as_ref(),
        &writer,
        &reporter(&progress, projection),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    progress.into_inner().unwrap_or_else(|e| e.into_inner()).finish();
    if json {
        println!(
            "{}",
            serde_json::json!({ "projection": projection, "written": written })
        );
    } else {
        println!("rehydrated {projection}: {written} hashes written or deleted from every current document");
    }
    Ok(())
}
