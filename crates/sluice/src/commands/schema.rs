//! `sluice schema register|check|list|show|import`: the pipeline's schema
//! registry (`[registry] uri`: a folder, default `registry/` beside the
//! file; an S3 prefix; or PostgreSQL).

use std::{path::Path, sync::Arc};

use anyhow::{Context, Result, bail};
use sluice_core::JsonDoc;
use sluice_schema::registry::{Outcome, Registry, SchemaKey, self_key};

use crate::{cli::SchemaCommand, config, extensions::Extensions, progress::Progress};

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
        SchemaCommand::Import { pipeline, dir, json } => import(&pipeline, extensions, &dir, json).await,
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
            warnings,
        } => {
            if warnings.is_empty() {
                println!("{key} {verb}: compatible with {previous}");
            } else {
                println!("{key} {verb}: a REVISION, which breaks some data of {previous}:");
                for w in &warnings {
                    println!("  warning: {w}");
                }
            }
            for a in additions {
                println!("  {a}");
            }
        }
    }
    Ok(())
}

/// What importing did with one schema file.
enum Imported {
    Registered { warnings: Vec<String> },
    Skipped,
    Refused(String),
}

/// Registers every schema under `dir/schemas` in version order.
async fn import(pipeline: &Path, extensions: &Arc<Extensions>, dir: &Path, json: bool) -> Result<()> {
    let registry = registry(pipeline, extensions)?;
    let root = dir.join("schemas");
    let mut found = Vec::new();
    for entry in walk(&root).with_context(|| format!("reading {}", root.display()))? {
        let relative = entry.strip_prefix(&root).unwrap_or(&entry);
        let parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let [vendor, name, format, version] = parts.as_slice() else {
            continue;
        };
        match format!("iglu:{vendor}/{name}/{format}/{version}").parse::<SchemaKey>() {
            Ok(key) => found.push((key, entry)),
            Err(e) => report(json, &relative.display().to_string(), &Imported::Refused(e)),
        }
    }
    found.sort_by_key(|(a, _)| (a.family_path(), a.version));
    // A schema may refer to one of a family that sorts after it: those
    // waiting for a reference are tried again while a pass registers more.
    let mut outcomes: Vec<(SchemaKey, Imported)> = Vec::new();
    let mut progress = Progress::new("importing", "schemas", found.len() as u64, json);
    let mut pending = found;
    loop {
        let mut waiting = Vec::new();
        let before = outcomes.len();
        for (key, path) in pending {
            let outcome = import_one(&registry, &key, &path).await;
            if !matches!(&outcome, Imported::Refused(why) if why.contains("register it first")) {
                progress.advance(&key.to_string());
            }
            match outcome {
                Imported::Refused(why) if why.contains("register it first") => waiting.push((key, path, why)),
                outcome => outcomes.push((key, outcome)),
            }
        }
        let registered_more = outcomes.len() > before;
        if waiting.is_empty() || !registered_more {
            for (key, _, why) in waiting {
                progress.advance(&key.to_string());
                outcomes.push((key, Imported::Refused(why)));
            }
            break;
        }
        pending = waiting.into_iter().map(|(key, path, _)| (key, path)).collect();
    }
    progress.finish();
    outcomes.sort_by_key(|(a, _)| (a.family_path(), a.version));
    let (mut registered, mut skipped, mut refused) = (0, 0, 0);
    for (key, outcome) in &outcomes {
        match outcome {
            Imported::Registered { .. } => registered += 1,
            Imported::Skipped => skipped += 1,
            Imported::Refused(_) => refused += 1,
        }
        report(json, &key.to_string(), outcome);
    }
    if !json {
        println!("{registered} registered, {skipped} skipped (already there), {refused} refused");
    }
    if refused > 0 {
        bail!("{refused} schemas were refused");
    }
    Ok(())
}

async fn import_one(registry: &Registry, key: &SchemaKey, path: &Path) -> Imported {
    let schema: JsonDoc = match std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_slice(&text).map_err(|e| format!("not JSON: {e}")))
    {
        Ok(schema) => schema,
        Err(e) => return Imported::Refused(e),
    };
    match self_key(&schema) {
        Some(Ok(own)) if own != *key => {
            return Imported::Refused(format!("its self block names {own}, its path {key}"));
        }
        Some(Err(e)) => return Imported::Refused(format!("self: {e}")),
        _ => {}
    }
    match registry.register(key, &schema).await {
        Ok(Outcome::AlreadyRegistered) => Imported::Skipped,
        Ok(Outcome::Accepted { warnings, .. }) => Imported::Registered { warnings },
        Err(e) => Imported::Refused(e.to_string()),
    }
}

fn report(json: bool, key: &str, outcome: &Imported) {
    let (status, detail): (&str, Vec<String>) = match outcome {
        Imported::Registered { warnings } => ("registered", warnings.iter().map(|w| format!("warning: {w}")).collect()),
        Imported::Skipped => ("skipped", Vec::new()),
        Imported::Refused(why) => ("refused", vec![why.clone()]),
    };
    if json {
        println!(
            "{}",
            serde_json::json!({"key": key, "status": status, "detail": detail})
        );
        return;
    }
    println!("{status:<10} {key}");
    for line in detail.iter().flat_map(|d| d.lines()) {
        println!("           {line}");
    }
}

/// Every file below `dir`.
fn walk(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(walk(&path)?);
        } else {
            files.push(path);
        }
    }
    Ok(files)
}
