//! `sluice dlq list|show|redrive`: the dead-letter store of a pipeline.

use std::sync::Arc;

use anyhow::Result;
use chrono::DateTime;
use sluice_queue::DeadLetterFilter;

use crate::{cli::DlqCommand, config, extensions::Extensions, progress::Progress, runtime::open_dead_letters};

pub async fn execute(command: DlqCommand, extensions: &Arc<Extensions>) -> Result<()> {
    match command {
        DlqCommand::List { pipeline, json } => {
            let counts = open_dead_letters(&config::load(&pipeline, extensions)?)
                .await?
                .counts()
                .await?;
            if json {
                println!("{}", serde_json::to_string(&counts)?);
            } else {
                println!("{} dead letters", counts.total);
                for (reason, n) in &counts.by_reason {
                    println!("{n:>10}  {reason}");
                }
            }
        }
        DlqCommand::Show {
            pipeline,
            reason,
            limit,
            json,
        } => {
            let store = open_dead_letters(&config::load(&pipeline, extensions)?).await?;
            let letters = store.list(DeadLetterFilter { reason: reason.clone() }, limit).await?;
            if letters.len() == limit {
                let counts = store.counts().await?;
                let matching = match &reason {
                    Some(reason) => counts.by_reason.get(reason).copied().unwrap_or_default(),
                    None => counts.total,
                };
                if matching > limit as u64 {
                    eprintln!("showing {limit} of {matching} dead letters; --limit N shows more");
                }
            }
            for l in letters {
                let time = DateTime::from_timestamp_millis(l.at_ms).map_or_else(String::new, |t| t.to_rfc3339());
                let bytes = String::from_utf8_lossy(&l.bytes);
                if json {
                    let v = serde_json::json!({
                        "reason": l.reason, "detail": l.detail, "source": l.source, "component": l.component,
                        "time": time, "batch_key": l.batch_key, "line": l.line, "bytes": bytes,
                    });
                    println!("{v}");
                } else {
                    let shown: String = bytes.chars().take(300).collect();
                    let more = if bytes.chars().count() > 300 { " …" } else { "" };
                    println!(
                        "{}  source={} component={} at {}\n  {}\n  {:?}{more}",
                        l.reason, l.source, l.component, time, l.detail, shown
                    );
                }
            }
        }
        DlqCommand::Redrive { pipeline, reason } => {
            let store = open_dead_letters(&config::load(&pipeline, extensions)?).await?;
            let counts = store.counts().await?;
            let matching = match &reason {
                Some(reason) => counts.by_reason.get(reason).copied().unwrap_or_default(),
                None => counts.total,
            };
            // One atomic step: the progress shows what it is moving until it is done.
            let mut progress = Progress::new("redriving", "dead letters", matching, false);
            let moved = store.redrive(DeadLetterFilter { reason }).await?;
            progress.advance_by(moved, "onto the queue");
            progress.finish();
            println!("redrove {moved} dead letters onto the queue");
        }
    }
    Ok(())
}
