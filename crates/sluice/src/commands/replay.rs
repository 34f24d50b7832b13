//! `sluice replay`: read again what a source read in a time window, for a
//! backfill after a transform fix.
//!
//! For a file or objects source the command writes the request into the
//! source's own state (the file source's checkpoints, the objects ledger)
//! under a new replay id; the running engine (or the next `sluice run`)
//! reads those inputs again under keys of that replay
//! (`replay/<id>/<first key>`), and sinks replace the rows the first reads
//! left (see `sluice_core::batch`). With `--wait` it follows the reads until
//! every input asked for is read. For a kafka source the command reads the
//! window's records itself and puts them on the pipeline's queue under the
//! replay's keys, with progress.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use sluice_connectors::sources::{
    file::{FileCheckpoints, ReplayCandidate},
    kafka::replay_window as kafka_replay,
    kinesis::replay_window as kinesis_replay,
    objects::Ledger,
};
use sluice_postgres::WriteMode;

use crate::{
    config::{self, Pipeline, SinkConfig, SourceConfig},
    extensions::Extensions,
    progress::{Progress, reporter},
};

/// What `sluice replay` asked for.
pub struct ReplayArgs<'a> {
    pub pipeline: &'a Path,
    pub source: &'a str,
    pub since: &'a str,
    pub until: Option<&'a str>,
    pub wait: bool,
    pub json: bool,
}

pub async fn replay(args: ReplayArgs<'_>, extensions: &Arc<Extensions>) -> Result<()> {
    let p = config::load(args.pipeline, extensions)?;
    let now = Utc::now();
    let since = parse_time(args.since, now).with_context(|| format!("--since {:?}", args.since))?;
    let until = match args.until {
        Some(u) => parse_time(u, now).with_context(|| format!("--until {u:?}"))?,
        None => now,
    };
    if until < since {
        bail!("--until ({until}) is before --since ({since})");
    }
    let notes = sinks_fed_by(&p, args.source)?;
    let replay_id = now.format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let state_dir = p.data_dir.join("sources");
    let window = format!(
        "{} and {}",
        since.to_rfc3339_opts(SecondsFormat::Secs, true),
        until.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    let (since_ms, until_ms) = (since.timestamp_millis(), until.timestamp_millis());
    // How many inputs were asked for, and (file, objects) how many are left.
    type Left = Box<dyn Fn(&str) -> Result<u64, String>>;
    let (asked, left): (u64, Option<(Left, &str)>) = match p.config.sources.get(args.source) {
        Some(SourceConfig::File(_)) => {
            let checkpoints = FileCheckpoints::open(&state_dir.join(format!("{}.sqlite3", args.source)))
                .map_err(anyhow::Error::msg)?;
            let (asked, gone) = ask_files(&checkpoints, since_ms, until_ms, &replay_id)?;
            if args.json {
                let v = serde_json::json!({
                    "replay": replay_id, "source": args.source, "since": since.to_rfc3339(), "until": until.to_rfc3339(),
                    "files": asked.iter().map(|f| &f.path).collect::<Vec<_>>(),
                    "gone": gone.iter().map(|f| &f.path).collect::<Vec<_>>(),
                    "notes": notes,
                });
                println!("{v}");
            } else {
                println!(
                    "replay {replay_id}: {} files source {} read between {window} will be read again",
                    asked.len(),
                    args.source
                );
                for f in &asked {
                    println!("  {}", f.path);
                }
                for f in &gone {
                    println!("  skipped {} (changed or gone since it was read)", f.path);
                }
            }
            let left: Left = Box::new(move |id| checkpoints.replay_left(id));
            (asked.len() as u64, Some((left, "files")))
        }
        Some(SourceConfig::Objects(_)) => {
            let path = Ledger::path(&state_dir, args.source);
            if !path.exists() {
                bail!(
                    "{}: source {} has not run yet (no ledger at {})",
                    p.file.display(),
                    args.source,
                    path.display()
                );
            }
            let ledger = Ledger::open(&path).map_err(anyhow::Error::msg)?;
            let asked = ledger
                .request_replay(since_ms, until_ms, &replay_id)
                .map_err(anyhow::Error::msg)?;
            if args.json {
                let v = serde_json::json!({
                    "replay": replay_id, "source": args.source, "since": since.to_rfc3339(), "until": until.to_rfc3339(),
                    "objects": asked, "notes": notes,
                });
                println!("{v}");
            } else {
                println!(
                    "replay {replay_id}: {asked} object versions source {} read between {window} will be read again",
                    args.source
                );
            }
            let left: Left = Box::new(move |id| ledger.replay_left(id));
            (asked, Some((left, "objects")))
        }
        Some(config @ (SourceConfig::Kafka(_) | SourceConfig::Kinesis(_))) => {
            read_stream(&p, config, &args, &replay_id, (since_ms, until_ms), &window, &notes).await?;
            (0, None)
        }
        Some(_) => bail!(
            "{}: source {} is not a `file`, `objects`, `kafka` or `kinesis` source; replay reads again what those \
             read (for other sources, replay from the system they read: an SQS redrive, a new stream iterator)",
            p.file.display(),
            args.source,
        ),
        None => bail!(
            "{}: no source {:?}; sources: {:?}",
            p.file.display(),
            args.source,
            p.config.sources.keys().collect::<Vec<_>>()
        ),
    };
    if !args.json {
        for note in &notes {
            println!("note: {note}");
        }
    }
    if args.wait
        && asked > 0
        && let Some((left, unit)) = left
    {
        wait_for(left.as_ref(), unit, &replay_id, asked, args.json).await?;
    }
    Ok(())
}

/// Reads a kafka or kinesis source's window itself onto the pipeline's
/// queue, with progress, and prints what it did.
async fn read_stream(
    p: &Pipeline,
    config: &SourceConfig,
    args: &ReplayArgs<'_>,
    replay_id: &str,
    window: (i64, i64),
    window_text: &str,
    notes: &[String],
) -> Result<()> {
    let queue = crate::runtime::open_queue_beside(p).await?;
    let unit = if matches!(config, SourceConfig::Kafka(_)) {
        "records"
    } else {
        "shards"
    };
    let progress = Mutex::new(Progress::new("replaying", unit, 0, args.json));
    let report = reporter(&progress, args.source);
    let failed = |e: String| anyhow::anyhow!("{}: sources.{}: {e}", p.file.display(), args.source);
    let (mut value, summary) = match config {
        SourceConfig::Kafka(kafka) => {
            let r = kafka_replay(kafka, args.source, replay_id, window, queue.as_ref(), &report)
                .await
                .map_err(failed)?;
            let summary = format!(
                "{} of {} records read from {} partitions were in the window between {window_text}",
                r.events, r.records_read, r.partitions
            );
            (serde_json::to_value(&r)?, (summary, r.batches))
        }
        SourceConfig::Kinesis(kinesis) => {
            let r = kinesis_replay(kinesis, (args.source, replay_id), window, queue.as_ref(), &report)
                .await
                .map_err(failed)?;
            let summary = format!(
                "{} events of {} records read from {} shards arrived between {window_text}",
                r.events, r.records_read, r.shards
            );
            (serde_json::to_value(&r)?, (summary, r.batches))
        }
        _ => bail!(
            "{}: source {} is not read by the command",
            p.file.display(),
            args.source
        ),
    };
    drop(report);
    progress.into_inner().unwrap_or_else(|e| e.into_inner()).finish();
    if args.json {
        value["replay"] = replay_id.into();
        value["source"] = args.source.into();
        value["notes"] = notes.into();
        println!("{value}");
    } else {
        println!(
            "replay {replay_id} of source {}: {}; {} batches are on the queue",
            args.source, summary.0, summary.1
        );
    }
    Ok(())
}

/// Marks each file done in the window to be replayed; returns those asked
/// for and those no longer as they were read (changed, moved or deleted).
fn ask_files(
    checkpoints: &FileCheckpoints,
    since_ms: i64,
    until_ms: i64,
    replay_id: &str,
) -> Result<(Vec<ReplayCandidate>, Vec<ReplayCandidate>)> {
    let (mut asked, mut gone) = (Vec::new(), Vec::new());
    for file in checkpoints
        .done_between(since_ms, until_ms)
        .map_err(anyhow::Error::msg)?
    {
        let unchanged = std::fs::metadata(&file.path)
            .is_ok_and(|m| m.len() == file.size && sluice_core::mtime_ns(&m) == file.mtime_ns);
        if !unchanged {
            gone.push(file);
        } else if checkpoints
            .request_replay(&file, replay_id)
            .map_err(anyhow::Error::msg)?
        {
            asked.push(file);
        }
    }
    Ok((asked, gone))
}

/// Follows the replay until `left` finds every input asked for read again.
async fn wait_for(
    left: &dyn Fn(&str) -> Result<u64, String>,
    unit: &'static str,
    replay_id: &str,
    asked: u64,
    quiet: bool,
) -> Result<()> {
    let mut progress = Progress::new("replaying", unit, asked, quiet);
    let mut shown = 0;
    loop {
        let left = left(replay_id).map_err(anyhow::Error::msg)?;
        let done = asked.saturating_sub(left);
        if done > shown {
            progress.advance_by(done - shown, replay_id);
            shown = done;
        }
        if left == 0 {
            progress.finish();
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Notes on the sinks the source feeds, or an error when one would keep
/// both copies of a replayed event.
fn sinks_fed_by(p: &Pipeline, source: &str) -> Result<Vec<String>> {
    let mut reached = vec![source.to_string()];
    loop {
        let more: Vec<String> = p
            .config
            .transforms
            .iter()
            .filter(|(name, t)| !reached.contains(name) && feeds(&t.inputs, &reached))
            .map(|(name, _)| name.clone())
            .collect();
        if more.is_empty() {
            break;
        }
        reached.extend(more);
    }
    let mut notes = Vec::new();
    for (name, sink) in p.config.sinks.iter().filter(|(_, s)| feeds(&s.inputs, &reached)) {
        match &sink.config {
            SinkConfig::Postgres(pg) if pg.mode == WriteMode::Append => bail!(
                "{}: sink {name} (postgres, mode = \"append\") would keep both copies of every replayed event; \
                 replay needs sinks that replace rows: lake (by event id), postgres with mode = \"upsert\", projections",
                p.file.display()
            ),
            SinkConfig::Stream(_) | SinkConfig::Kafka(_) => {
                notes.push(format!("sink {name} publishes the replayed events again"))
            }
            _ => {}
        }
    }
    Ok(notes)
}

fn feeds(inputs: &[String], reached: &[String]) -> bool {
    inputs.iter().any(|i| reached.contains(i))
}

/// An RFC 3339 time, a date (midnight UTC), or a duration before `now` (`2h`, `30m`, `1day`).
fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    match humantime::parse_duration(text) {
        Ok(ago) => Ok(now - chrono::Duration::from_std(ago).context("too long ago")?),
        Err(_) => {
            bail!("not a time: give RFC 3339 (2026-12-03T10:00:00Z), a date (2026-12-03) or a duration ago (2h, 30m)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_dates_or_durations_ago() {
        let now = DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s: &str| parse_time(s, now).unwrap().to_rfc3339();
        assert_eq!(at("2026-12-03T10:30:00+01:00"), "2026-12-03T09:30:00+00:00");
        assert_eq!(at("2026-12-01"), "2026-12-01T00:00:00+00:00");
        assert_eq!(at("2h"), "2026-12-03T10:00:00+00:00");
        assert_eq!(at("1day 30m"), "2026-12-02T11:30:00+00:00");
        let err = parse_time("yesterday", now).unwrap_err().to_string();
        assert!(err.starts_with("not a time: give RFC 3339"), "{err}");
    }
}
