//! `sluice objects status|redrive`: the ledger of an `objects` source
//! (`data_dir/sources/<name>.objects.sqlite3`), read beside a running
//! pipeline.

use std::{path::Path, sync::Arc};

use anyhow::{Result, bail};
use chrono::DateTime;
use sluice_connectors::sources::objects::{Ledger, ObjectRecord};

use crate::{
    cli::ObjectsCommand,
    config::{self, Pipeline, SourceConfig},
    extensions::Extensions,
};

pub fn execute(command: ObjectsCommand, extensions: &Arc<Extensions>) -> Result<()> {
    match command {
        ObjectsCommand::Status {
            pipeline,
            source,
            limit,
            json,
        } => status(&pipeline, extensions, source.as_deref(), limit, json),
        ObjectsCommand::Redrive { pipeline, source, key } => {
            let p = config::load(&pipeline, extensions)?;
            let name = objects_source(&p, source.as_deref())?;
            let moved = open_ledger(&p, &name)?
                .redrive(key.as_deref())
                .map_err(anyhow::Error::msg)?;
            println!("{moved} failed objects of source {name} will be read again");
            Ok(())
        }
    }
}

/// The `objects` source named, or the only one.
fn objects_source(p: &Pipeline, wanted: Option<&str>) -> Result<String> {
    let names: Vec<&String> = p
        .config
        .sources
        .iter()
        .filter(|(_, s)| matches!(s, SourceConfig::Objects(_)))
        .map(|(n, _)| n)
        .collect();
    match (wanted, names.as_slice()) {
        (Some(w), _) if names.iter().any(|n| *n == w) => Ok(w.to_string()),
        (Some(w), _) => bail!(
            "{}: no objects source {w:?}; objects sources: {names:?}",
            p.file.display()
        ),
        (None, [one]) => Ok((*one).clone()),
        (None, []) => bail!("{}: the pipeline has no objects source", p.file.display()),
        (None, _) => bail!(
            "{}: several objects sources {names:?}; choose one with --source",
            p.file.display()
        ),
    }
}

fn open_ledger(p: &Pipeline, name: &str) -> Result<Ledger> {
    let path = Ledger::path(&p.data_dir.join("sources"), name);
    if !path.exists() {
        bail!(
            "{}: source {name} has not run yet (no ledger at {})",
            p.file.display(),
            path.display()
        );
    }
    Ledger::open(&path).map_err(anyhow::Error::msg)
}

fn status(pipeline: &Path, extensions: &Arc<Extensions>, source: Option<&str>, limit: usize, json: bool) -> Result<()> {
    let p = config::load(pipeline, extensions)?;
    let name = objects_source(&p, source)?;
    let ledger = open_ledger(&p, &name)?;
    let counts = ledger.counts().map_err(anyhow::Error::msg)?;
    let listed = |state: &str| ledger.list(Some(state), limit).map_err(anyhow::Error::msg);
    let (pending, reading, failed, done) = (
        listed("pending")?,
        listed("reading")?,
        listed("failed")?,
        listed("done")?,
    );
    if json {
        let v = serde_json::json!({
            "source": name, "counts": counts,
            "pending": pending, "reading": reading, "failed": failed, "recently_done": done,
        });
        println!("{v}");
        return Ok(());
    }
    println!(
        "source {name}: {} pending, {} reading, {} done, {} failed",
        counts["pending"], counts["reading"], counts["done"], counts["failed"]
    );
    for (title, rows) in [
        ("pending", &pending),
        ("reading", &reading),
        ("failed", &failed),
        ("recently done", &done),
    ] {
        if rows.is_empty() {
            continue;
        }
        println!("{title}:");
        for r in rows {
            println!("  {}", line(r));
        }
    }
    Ok(())
}

fn line(r: &ObjectRecord) -> String {
    let time = |ms: i64| DateTime::from_timestamp_millis(ms).map_or_else(String::new, |t| t.to_rfc3339());
    let mut out = format!(
        "{}  version {}  {} bytes  found by {} at {}",
        r.key,
        r.version,
        r.size,
        r.found_by,
        time(r.found_at_ms)
    );
    if r.attempts > 0 {
        out.push_str(&format!("  attempts {}", r.attempts));
    }
    if let Some(at) = r.finished_at_ms {
        out.push_str(&format!("  finished {}", time(at)));
    }
    if let Some(e) = &r.error {
        out.push_str(&format!("\n      {e}"));
    }
    out
}
