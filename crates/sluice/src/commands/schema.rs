//! `sluice schema register|check|list|show`: the pipeline's schema
//! registry (`[registry] uri`: a folder, default `registry/` beside the
//! file; an S3 prefix; or PostgreSQL).

use std::{path::Path, sync::Arc};

use anyhow::{Context, Result, bail};
use sluice_core::JsonDoc;
use sluice_schema::registry::{Outcome, Registry, SchemaKey, self_key};

use crate::{cli::SchemaCommand, config, extensions::Extensions};

pub async fn execute(command: SchemaCommand, extensions: &Arc<Extensions>) -> Result<()> {
    match command {
        SchemaCommand::Register { pipeline, file, key } => {
            submit(&pipeline, extensions, &file, key.as_deref(), true).await
        }
        SchemaCommand::Check { pipeline, file, key } => {
            submit(&pipeline, extensions, &file, key.as_deref(), false).await
        }
        SchemaCommand::List { pipeline, json } => {
            let registry = registry(&pipeline, extensions)?;
            let all = registry.list().await?;
            if json {
                for r in &all {
                    println!(
                        "{}",
                        serde_json::json!({"key": r.key.to_string(), "fingerprint": r.fingerprint})
                    );
                }
            } else {
                println!("{} schemas in {}", all.len(), registry.location());
                for r in &all {
                    println!("  {}  {}", r.key, r.fingerprint);
                }
            }
            Ok(())
        }
        SchemaCommand::Show { pipeline, key } => {
            let key: SchemaKey = key.parse().map_err(anyhow::Error::msg)?;
            let Some(found) = registry(&pipeline, extensions)?.get(&key).await? else {
                bail!("{key} is not registered");
            };
            println!("{}", serde_json::to_string_pretty(&found.schema)?);
            Ok(())
        }
    }
}

fn registry(pipeline: &Path, extensions: &Arc<Extensions>) -> Result<Registry> {
    config::load(pipeline, extensions)?
        .registry
        .open()
        .map_err(anyhow::Error::msg)
}

/// Registers (or, with `store` false, checks) the schema in `file`.
async fn submit(
    pipeline: &Path,
    extensions: &Arc<Extensions>,
    file: &Path,
    key: Option<&str>,
    store: bool,
) -> Result<()> {
    let registry = registry(pipeline, extensions)?;
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let schema: JsonDoc = serde_json::from_slice(&text).with_context(|| format!("{}: not JSON", file.display()))?;
    let named = self_key(&schema)
        .transpose()
        .map_err(|e| anyhow::anyhow!("{}: self: {e}", file.display()))?;
    let key: SchemaKey = match (key, named) {
        (Some(k), Some(own)) => {
            let k: SchemaKey = k.parse().map_err(anyhow::Error::msg)?;
            if k != own {
                bail!(
                    "{}: --key {k} differs from the schema's self block ({own})",
                    file.display()
                );
            }
            k
        }
        (Some(k), None) => k.parse().map_err(anyhow::Error::msg)?,
        (None, Some(own)) => own,
        (None, None) => bail!(
            "{}: no self block; name the schema with --key iglu:vendor/name/format/1-0-0",
            file.display()
        ),
    };
    let outcome = if store {
        registry.register(&key, &schema).await?
    } else {
        registry.check(&key, &schema).await?
    };
    let verb = if store { "registered" } else { "can be registered" };
    match outcome {
        Outcome::AlreadyRegistered => println!("{key} is already registered with this content"),
        Outcome::Accepted { against: None, .. } => println!("{key} {verb} (the first version of its MODEL)"),
        Outcome::Accepted {
            against: Some(previous),
            additions,
        } => {
            println!("{key} {verb}: compatible with {previous}");
            for a in additions {
                println!("  {a}");
            }
        }
    }
    Ok(())
}
