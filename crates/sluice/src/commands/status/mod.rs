//! `sluice status PIPELINE [--json] [--watch]`: one screen saying whether
//! data flows. With the pipeline running, it reads the engine's API (two
//! scrapes of `/metrics` a second apart, for rates, and `/ready`); with
//! nothing answering there, it reads what the pipeline left: the queue,
//! the dead letters and the lake tables' last commits. A verdict line
//! names what is wrong, in the terms of the shipped alerts
//! (`deploy/prometheus/alerts.yaml`), and any batch set aside for
//! crashing the engine.

mod report;
mod scrape;
mod view;

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Result;
use sluice_lake::StoreLocation;

use super::engine_api::Api;
use crate::{
    config::{self, Pipeline},
    extensions::Extensions,
    sinks::ResolvedSink,
};
use report::{DeadLetterRow, QueueRow, Report, SinkRow, SourceRow, TransformRow, Verdict};
use scrape::Scrape;

/// How long apart the two scrapes that give rates are.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// How often `--watch` redraws.
const REDRAW_EVERY: Duration = Duration::from_secs(2);

pub async fn status(path: &Path, extensions: &Arc<Extensions>, json: bool, watch: bool) -> Result<()> {
    let pipeline = config::load(path, extensions)?;
    loop {
        let report = gather(&pipeline).await?;
        if json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            if watch {
                // Clear the terminal and go home, as `watch` does.
                print!("\x1b[2J\x1b[H");
            }
            print!("{}", view::render(&report));
        }
        if !watch {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(REDRAW_EVERY) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn gather(pipeline: &Pipeline) -> Result<Report> {
    let dead_letters = dead_letters(pipeline).await;
    let lake_commits = lake_commits(pipeline).await;
    let mut report = match Api::of(pipeline)? {
        Some(api) => match read(&api).await {
            Some(read) => running(pipeline, &api, read),
            None => stopped(pipeline).await,
        },
        None => stopped(pipeline).await,
    };
    for sink in &mut report.sinks {
        if let Some(commit) = lake_commits.iter().find(|(name, _)| *name == sink.name) {
            sink.table_version = Some(commit.1.version);
            if report.state == "stopped" {
                sink.last_commit_secs_ago = commit.1.at_ms.map(|at| secs_since(at as f64 / 1000.0));
            }
        }
    }
    match dead_letters {
        Ok((total, rows)) => {
            if let Some(crashed) = rows.iter().find(|r| r.reason == sluice_core::reason::CRASHED_ENGINE) {
                report.verdict.reasons.push(format!(
                    "{} lines were set aside for crashing the engine (crashed_engine); redrive them after a fix",
                    crashed.count
                ));
            }
            report.dead_letters.total = Some(total);
            report.dead_letters.by_reason = rows;
        }
        Err(e) => report.verdict.reasons.push(format!("dead letters: {e:#}")),
    }
    report.verdict.healthy = report.verdict.reasons.is_empty();
    Ok(report)
}

/// What the API answered: `/ready`, and two scrapes `RATE_WINDOW` apart.
struct Read {
    ready: (u16, String),
    before: Scrape,
    after: Scrape,
    seconds: f64,
}

/// Reads `api`; `None` when nothing answers (the pipeline is not running).
async fn read(api: &Api) -> Option<Read> {
    let started = std::time::Instant::now();
    let (_, before) = api.get("/metrics").await?;
    tokio::time::sleep(RATE_WINDOW).await;
    let (_, after) = api.get("/metrics").await?;
    let seconds = started.elapsed().as_secs_f64();
    let ready = api.get("/ready").await?;
    Some(Read {
        ready,
        before: Scrape::parse(&before),
        after: Scrape::parse(&after),
        seconds,
    })
}

fn now_secs() -> f64 {
    sluice_core::now_ms() as f64 / 1000.0
}

fn secs_since(unix_secs: f64) -> f64 {
    (now_secs() - unix_secs).max(0.0)
}

/// The report of a running pipeline, from its API.
fn running(pipeline: &Pipeline, api: &Api, read: Read) -> Report {
    let Read {
        ready,
        before,
        after,
        seconds,
    } = read;
    fn of(name: &str) -> [(&'static str, &str); 1] {
        [("component", name)]
    }
    let count = |metric: &str, name: &str| after.value(metric, &of(name)).map(|v| v as u64);
    let rate = |metric: &str, name: &str| {
        let (a, b) = (before.value(metric, &of(name))?, after.value(metric, &of(name))?);
        Some(((b - a) / seconds).max(0.0))
    };
    let flag = |metric: &str, name: &str| after.value(metric, &of(name)).map(|v| v > 0.5);
    let mut verdict = Verdict::default();
    if ready.0 != 200 {
        verdict.reasons.push(ready.1.trim().to_string());
    }

    let sources: Vec<SourceRow> = pipeline
        .config
        .sources
        .keys()
        .map(|name| SourceRow {
            name: name.clone(),
            events: count("sluice_component_received_events_total", name),
            events_per_sec: rate("sluice_component_received_events_total", name),
            last_input_secs_ago: after
                .value("sluice_source_last_event_timestamp_seconds", &of(name))
                .filter(|t| *t > 0.0)
                .map(secs_since),
            errors: count("sluice_source_errors_total", name),
            backpressure_waits: count("sluice_source_backpressure_waits_total", name),
            upstream_up: flag("sluice_source_upstream_up", name),
            lease_held: flag("sluice_source_lease_held", name),
        })
        .collect();
    for s in &sources {
        if rate("sluice_source_backpressure_waits_total", &s.name).is_some_and(|r| r > 0.0) {
            verdict
                .reasons
                .push(format!("source {}: waits on a full queue", s.name));
        }
    }
    let input_arrives = sources.iter().any(|s| s.last_input_secs_ago.is_some_and(|a| a < 300.0));

    let queue = QueueRow {
        batches: after.value("sluice_queue_depth_batches", &[]).map(|v| v as u64),
        bytes: after.value("sluice_queue_bytes", &[]).map(|v| v as u64),
        in_flight: after.value("sluice_queue_in_flight_batches", &[]).map(|v| v as u64),
        oldest_age_secs: after.value("sluice_queue_oldest_batch_age_seconds", &[]),
        acked: after.value("sluice_queue_acked_batches_total", &[]).map(|v| v as u64),
        redelivered: after
            .value("sluice_queue_redelivered_batches_total", &[])
            .map(|v| v as u64),
    };
    if let Some(age) = queue.oldest_age_secs.filter(|a| *a > 300.0) {
        verdict
            .reasons
            .push(format!("queue: the oldest batch is {age:.0} s old"));
    }

    let transforms = pipeline
        .config
        .transforms
        .keys()
        .map(|name| TransformRow {
            name: name.clone(),
            events_in: count("sluice_component_received_events_total", name),
            events_out: count("sluice_component_sent_events_total", name),
            dropped: count("sluice_transform_dropped_events_total", name),
            dead_letters: count("sluice_dead_letters_total", name),
        })
        .collect();

    let sinks = pipeline
        .config
        .sinks
        .keys()
        .map(|name| {
            let last_commit = after
                .value("sluice_sink_last_commit_timestamp_seconds", &of(name))
                .map(secs_since);
            let interval = after.value("sluice_sink_flush_interval_seconds", &of(name));
            if let (Some(age), Some(interval)) = (last_commit, interval)
                && input_arrives
                && age > 10.0 * interval
            {
                verdict.reasons.push(format!(
                    "sink {name}: no commit for {age:.0} s while input arrives (data stopped)"
                ));
            }
            SinkRow {
                name: name.clone(),
                rows: count("sluice_component_sent_events_total", name),
                rows_per_sec: rate("sluice_component_sent_events_total", name),
                commits: count("sluice_sink_commits_total", name),
                last_commit_secs_ago: last_commit,
                flush_p99_secs: after
                    .value(
                        "sluice_sink_flush_seconds",
                        &[("component", name), ("quantile", "0.99")],
                    )
                    .filter(|v| v.is_finite()),
                backend_up: flag("sluice_sink_backend_up", name),
                table_version: None,
            }
        })
        .collect();

    let events: f64 = sources
        .iter()
        .filter_map(|s| after.value("sluice_component_received_events_total", &of(&s.name)))
        .sum();
    let dead = after.value("sluice_dead_letters_total", &[]).unwrap_or(0.0);
    if events > 0.0 && dead / events > 0.05 {
        verdict.reasons.push(format!(
            "{:.1} % of the input became dead letters since the start",
            100.0 * dead / events
        ));
    }
    Report {
        pipeline: pipeline.name.clone(),
        file: pipeline.file.display().to_string(),
        state: "running",
        api: Some(api.base.clone()),
        verdict,
        sources,
        queue,
        transforms,
        sinks,
        dead_letters: Default::default(),
    }
}

/// The report of a pipeline nothing runs: its queue as it was left.
async fn stopped(pipeline: &Pipeline) -> Report {
    let mut verdict = Verdict::default();
    let queue = match queue_stats(pipeline).await {
        Ok(stats) => {
            if stats.batches > 0 {
                verdict
                    .reasons
                    .push(format!("not running: {} batches wait in the queue", stats.batches));
            }
            QueueRow {
                batches: Some(stats.batches),
                bytes: Some(stats.bytes),
                in_flight: Some(stats.in_flight),
                oldest_age_secs: Some(stats.oldest_age_ms as f64 / 1000.0),
                acked: None,
                redelivered: None,
            }
        }
        Err(e) => {
            verdict.reasons.push(format!("queue: {e:#}"));
            QueueRow::default()
        }
    };
    let c = &pipeline.config;
    Report {
        pipeline: pipeline.name.clone(),
        file: pipeline.file.display().to_string(),
        state: "stopped",
        api: None,
        verdict,
        sources: c.sources.keys().cloned().map(SourceRow::named).collect(),
        queue,
        transforms: c.transforms.keys().cloned().map(TransformRow::named).collect(),
        sinks: c.sinks.keys().cloned().map(SinkRow::named).collect(),
        dead_letters: Default::default(),
    }
}

async fn queue_stats(pipeline: &Pipeline) -> Result<sluice_queue::QueueStats> {
    Ok(sluice_runtime::engine::open_queue_beside(pipeline)
        .await?
        .stats()
        .await?)
}

/// Dead letters held, and per reason how many and the newest one's time.
async fn dead_letters(pipeline: &Pipeline) -> Result<(u64, Vec<DeadLetterRow>)> {
    let counts = sluice_runtime::engine::open_dead_letters(pipeline)
        .await?
        .counts()
        .await?;
    let mut rows: Vec<DeadLetterRow> = counts
        .by_reason
        .iter()
        .map(|(reason, n)| DeadLetterRow {
            reason: reason.clone(),
            count: *n,
            newest: counts
                .newest_ms
                .get(reason)
                .and_then(|ms| chrono::DateTime::from_timestamp_millis(*ms))
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        })
        .collect();
    rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    Ok((counts.total, rows))
}

/// The last commit of each lake sink with one table.
async fn lake_commits(pipeline: &Pipeline) -> Vec<(String, sluice_lake::LastCommit)> {
    let mut commits = Vec::new();
    for (name, sink) in &pipeline.config.sinks {
        let ResolvedSink::Lake(table) = &sink.resolved else {
            continue;
        };
        let location: &StoreLocation = &table.location;
        if let Ok(commit) = sluice_lake::last_commit(location).await {
            commits.push((name.clone(), commit));
        }
    }
    commits
}
