//! Commands on `documents` stages: `snapshot`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use sluice_documents::config::DocumentsConfig;
use url::Url;

use crate::config::{self, Pipeline, TransformConfig};

/// The `documents` stage `name`, or the only one.
fn documents_stage<'a>(pipeline: &'a Pipeline, name: Option<&str>) -> Result<(&'a str, &'a DocumentsConfig)> {
    let stages: Vec<(&str, &DocumentsConfig)> = pipeline
        .config
        .transforms
        .iter()
        .filter_map(|(n, t)| match t {
            TransformConfig::Documents(d) => Some((n.as_str(), d)),
            _ => None,
        })
        .collect();
    let names: Vec<&str> = stages.iter().map(|(n, _)| *n).collect();
    match (name, stages.as_slice()) {
        (None, [one]) => Ok(*one),
        (None, []) => bail!("{}: the pipeline has no `documents` stage", pipeline.file.display()),
        (None, _) => bail!(
            "{}: the pipeline has several `documents` stages; pick one with --sink (one of {names:?})",
            pipeline.file.display()
        ),
        (Some(name), _) => stages.iter().find(|(n, _)| *n == name).copied().with_context(|| {
            format!(
                "{}: no `documents` stage {name:?}; allowed: {names:?}",
                pipeline.file.display()
            )
        }),
    }
}

pub async fn snapshot(path: &Path, stage: Option<&str>, json: bool) -> Result<()> {
    let pipeline = config::load(path)?;
    let (name, stage) = documents_stage(&pipeline, stage)?;
    let Some(target) = &stage.snapshot else {
        bail!(
            "{}: transforms.{name} has no snapshot table; add snapshot.uri = \"lake/{name}\"",
            pipeline.file.display()
        );
    };
    let url = Url::parse(&target.uri).context("the snapshot URI")?;
    let spec = stage.store_spec(name, &pipeline.data_dir).map_err(anyhow::Error::msg)?;
    let store = spec
        .open()
        .await
        .with_context(|| format!("opening the document store of {name}"))?;
    let report = sluice_documents::snapshot::snapshot(store.as_ref(), &url, name)
        .await
        .map_err(anyhow::Error::msg)?;
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
