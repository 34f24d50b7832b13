//! `sluice demo`: a complete pipeline on embedded defaults (HTTP collector ->
//! validate -> Delta lake), fed by generated events through real HTTP
//! requests, stopped gracefully, then checked: the summary compares what the
//! table holds with what the generator says it must.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, stream};
use indicatif::{ProgressBar, ProgressStyle};
use sluice_lake::compaction;
use tokio::sync::watch;

use crate::{api, config, extensions::Extensions, runtime, sinks::ResolvedSink};

const LINES_PER_REQUEST: usize = 500;
const CONCURRENT_REQUESTS: usize = 4;

/// Six hours of events from the test generator: 1 % producer duplicates,
/// 2 % malformed lines of every kind, 3 % late.
fn demo_events(lines: u64) -> sluice_gen::ClickstreamOptions {
    sluice_gen::ClickstreamOptions {
        lines,
        seed: 2026,
        hours: 6.0,
        dup_rate: 0.01,
        bad_rate: 0.02,
        late_rate: 0.03,
        ..sluice_gen::ClickstreamOptions::default()
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn pipeline_text(http_port: u16, api_port: u16) -> String {
    format!(
        r#"# Written by `sluice demo`. Run it again with: sluice run {{this file}}
data_dir = ".sluice/demo"

[api]
address = "127.0.0.1:{api_port}"

[sources.web]
type = "http"
address = "127.0.0.1:{http_port}"
path = "/v1/events"

[transforms.standardize]
type = "validate"
inputs = ["web"]
schema = "schemas/clickstream.schema.json"
event_id = "/event_id"
event_time = "/ts"

[sinks.lake]
type = "lake"
inputs = ["standardize"]
uri = "lake/clickstream"
partition_by = ["dt", "hour"]
flush_interval_secs = 2
"#
    )
}

pub async fn run(dir: &Path, extensions: &Arc<Extensions>, n: usize) -> Result<()> {
    std::fs::create_dir_all(dir.join("schemas")).with_context(|| format!("creating {}", dir.display()))?;
    for old in [dir.join("lake"), dir.join(".sluice")] {
        if old.exists() {
            std::fs::remove_dir_all(&old).with_context(|| format!("removing the previous demo's {}", old.display()))?;
        }
    }
    std::fs::write(
        dir.join("schemas/clickstream.schema.json"),
        sluice_gen::CLICKSTREAM_SCHEMA,
    )?;
    let (http_port, api_port) = (free_port()?, free_port()?);
    let pipeline_path = dir.join("pipeline.toml");
    std::fs::write(&pipeline_path, pipeline_text(http_port, api_port))?;
    let pipeline = config::load(&pipeline_path, extensions)?;
    let Some((config::SinkConfig::Lake(lake), ResolvedSink::Lake(resolved))) =
        pipeline.config.sinks.get("lake").map(|s| (&s.config, &s.resolved))
    else {
        bail!("the demo pipeline has no lake sink named \"lake\" with a uri");
    };
    let table = resolved.location.clone();
    let compact_all = lake
        .compaction
        .options(compaction::Scope::All, resolved.id_column.clone());

    println!(
        "sluice demo: {} events -> http://127.0.0.1:{http_port}/v1/events -> validate -> Delta table",
        n
    );
    println!("  pipeline  {}", pipeline_path.display());
    println!("  metrics   http://127.0.0.1:{api_port}/metrics\n");

    let mut ndjson = Vec::new();
    let generated = sluice_gen::clickstream(&demo_events(n as u64), &mut ndjson)?;
    let lines: Vec<&str> = std::str::from_utf8(&ndjson)?.lines().collect();
    let (stop_tx, stop_rx) = watch::channel(false);
    let ready = api::start(&pipeline).await?;
    let engine = {
        let pipeline = pipeline.clone();
        tokio::spawn(async move { runtime::run(&pipeline, runtime::RunOptions::default(), stop_rx, ready).await })
    };
    let client = reqwest::Client::new();
    wait_ready(&client, api_port, &engine).await?;

    let started = Instant::now();
    let bar = ProgressBar::new(n as u64).with_style(
        ProgressStyle::with_template("  sending   [{bar:30}] {pos}/{len} events  {per_sec}").expect("valid template"),
    );
    let accepted = Arc::new(AtomicU64::new(0));
    let url = format!("http://127.0.0.1:{http_port}/v1/events");
    let results: Vec<Result<()>> = stream::iter(lines.chunks(LINES_PER_REQUEST))
        .map(|chunk| {
            let (client, url, bar, accepted) = (client.clone(), url.clone(), bar.clone(), accepted.clone());
            let body = chunk.join("\n");
            async move {
                let n = post_with_retry(&client, &url, body).await?;
                accepted.fetch_add(n, Ordering::Relaxed);
                bar.inc(chunk.len() as u64);
                Ok(())
            }
        })
        .buffer_unordered(CONCURRENT_REQUESTS)
        .collect()
        .await;
    bar.finish();
    results.into_iter().collect::<Result<Vec<()>>>()?;
    let sent_in = started.elapsed();

    let spinner =
        ProgressBar::new_spinner().with_message("committing: stopping input, draining the queue, flushing the lake");
    spinner.enable_steady_tick(Duration::from_millis(100));
    let _ = stop_tx.send(true);
    engine.await.context("pipeline task")??;
    spinner.finish_and_clear();
    let total = started.elapsed();

    let summary = sluice_lake::summarize(&table).await?;
    let compaction = compaction::compact(&table, &compact_all, &|_, _| true).await?;
    let compacted = sluice_lake::summarize(&table).await?;
    let distinct = sluice_lake::distinct_strings(&table, "event_id").await?.len() as u64;
    let dead = runtime::open_dead_letters(&pipeline).await?.counts().await?;
    let accepted = accepted.load(Ordering::Relaxed);
    println!(
        "\n  accepted      {accepted} events (HTTP 200) in {:.1}s, {:.0} events/s",
        sent_in.as_secs_f64(),
        accepted as f64 / sent_in.as_secs_f64()
    );
    println!(
        "  landed        {} rows in {} files, {} partitions (committed {:.1}s after the first request)",
        summary.rows,
        summary.files,
        summary.partitions.len(),
        total.as_secs_f64()
    );
    println!(
        "  event ids     {distinct} distinct; the producer sent {} lines twice:",
        generated.duplicates
    );
    println!(
        "      {:>6}  dropped at write time (dedupe window)",
        accepted.saturating_sub(summary.rows + dead.total)
    );
    println!(
        "      {:>6}  removed by compaction",
        compaction.sum(|p| p.duplicates_removed)
    );
    println!(
        "  compaction    {} partitions, {} files -> {} files in {:.1}s; table: {} rows",
        compaction.partitions.len(),
        compaction.sum(|p| p.files_in),
        compaction.sum(|p| p.files_out),
        compaction.seconds,
        compacted.rows
    );
    println!("  dead letters  {}", dead.total);
    for (reason, count) in &dead.by_reason {
        println!("      {count:>6}  {reason}");
    }
    let expected_ok =
        distinct == generated.valid_unique && compacted.rows == distinct && dead.total == generated.invalid;
    println!(
        "  check         generator says {} valid unique, {} malformed: {}",
        generated.valid_unique,
        generated.invalid,
        if expected_ok {
            "rows, distinct ids and dead letters match"
        } else {
            "MISMATCH"
        }
    );
    let table_path = table
        .url()
        .to_file_path()
        .map_err(|()| anyhow::anyhow!("table is not local"))?;
    println!("\nTry it:");
    let exe = std::env::current_exe().map_or_else(|_| "sluice".into(), |p| p.display().to_string());
    println!("  {exe} dlq show {} --limit 3", pipeline_path.display());
    println!(
        "  {exe} compact {} --all   # already compacted: commits nothing",
        pipeline_path.display()
    );
    println!(
        "  {exe} run {}   # the same pipeline, until Ctrl-C",
        pipeline_path.display()
    );
    println!(
        "  duckdb -c \"INSTALL delta; LOAD delta; SELECT dt, hour, event_type, count(*) AS events FROM delta_scan('{}') GROUP BY ALL ORDER BY ALL\"",
        table_path.display().to_string().trim_end_matches('/')
    );
    if !expected_ok {
        bail!("the table does not hold what the generator sent");
    }
    Ok(())
}

async fn wait_ready(
    client: &reqwest::Client,
    api_port: u16,
    engine: &tokio::task::JoinHandle<Result<()>>,
) -> Result<()> {
    let url = format!("http://127.0.0.1:{api_port}/ready");
    for _ in 0..300 {
        if engine.is_finished() {
            bail!("the pipeline stopped during start-up");
        }
        if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the pipeline did not become ready within 30 s")
}

/// Posts one batch, retrying on 429/503 and connection errors as a real client would.
async fn post_with_retry(client: &reqwest::Client, url: &str, body: String) -> Result<u64> {
    for _ in 0..100 {
        match client
            .post(url)
            .header("content-type", "application/x-ndjson")
            .body(body.clone())
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                let v: serde_json::Value = serde_json::from_slice(&r.bytes().await?)?;
                return v["accepted"].as_u64().context("response without an accepted count");
            }
            Ok(r) if r.status().as_u16() == 429 || r.status().as_u16() == 503 => {}
            Ok(r) => bail!("collector answered {}", r.status()),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("collector kept refusing a batch")
}
