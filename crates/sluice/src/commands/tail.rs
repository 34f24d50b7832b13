//! `sluice tail PIPELINE STAGE [--limit N] [--follow]`: prints what a
//! source, transform or sink of a running pipeline emits from now on, one
//! JSON line per event, read from the engine's `/tail/STAGE`. The engine
//! publishes a stage's events only while someone tails it.

use std::{io::Write, path::Path, sync::Arc};

use anyhow::{Context, Result, bail};

use super::engine_api::Api;
use crate::{config, extensions::Extensions};

pub async fn tail(path: &Path, extensions: &Arc<Extensions>, stage: &str, limit: usize, follow: bool) -> Result<()> {
    let pipeline = config::load(path, extensions)?;
    let Some(api) = Api::of(&pipeline)? else {
        bail!(
            "{}: tail reads the running engine's API, and the pipeline has no [api] address",
            path.display()
        );
    };
    let query = if follow {
        String::new()
    } else {
        format!("?limit={limit}")
    };
    let mut response = api
        .request(&format!("/tail/{stage}{query}"))
        .send()
        .await
        .with_context(|| format!("{}: is the pipeline running?", api.base))?;
    if !response.status().is_success() {
        bail!("{}", response.text().await.unwrap_or_default().trim());
    }
    let mut out = std::io::stdout().lock();
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(chunk) = chunk else { return Ok(()) };
        out.write_all(&chunk)?;
        out.flush()?;
    }
}
