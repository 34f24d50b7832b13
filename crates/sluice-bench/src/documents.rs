//! Documents: change events merged per second into each store (the
//! generator's `cdc` output through `sluice run --until-idle`, file source
//! -> documents stage, one worker thread), and change -> projection
//! latency: one change at a time posted to the HTTP collector at a steady
//! rate, timed until its Redis hash shows it.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use bytes::Bytes;
use serde::Serialize;

use crate::{
    Env, free_port, http,
    process::{self, Measured},
};

#[derive(Debug, Serialize)]
pub struct Throughput {
    pub store: String,
    pub changes: u64,
    pub documents: u64,
    pub changes_per_s: f64,
    pub measured: Measured,
}

#[derive(Debug, Serialize)]
pub struct ProjectionLag {
    pub changes_per_s: f64,
    pub samples: usize,
    pub flush_interval_secs: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub never_seen: usize,
}

fn fresh(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir.join("changes"))?;
    Ok(())
}

/// `changes` generator changes over `docs` documents into `dir/changes/`; the oracle's document count.
fn generate(dir: &Path, changes: u64, docs: u64) -> Result<u64> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(dir.join("changes/cdc.ndjson"))?);
    let options = sluice_gen::CdcOptions {
        changes,
        docs,
        ..Default::default()
    };
    let oracle = sluice_gen::cdc(&options, &mut file)?;
    std::io::Write::flush(&mut file)?;
    Ok(oracle.documents.len() as u64)
}

/// Changes/s into the embedded store and into PostgreSQL at `pg_url`.
pub async fn throughput(env: &Env, pg_url: &str, changes: u64) -> Result<Vec<Throughput>> {
    let schema = "sluice_bench_documents";
    let pg_store = format!("{pg_url}\"\nschema = \"{schema}");
    let client = sluice_postgres::db::connect(pg_url)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to {pg_url}: {e}"))?;
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await?;
    let mut results = Vec::new();
    for (name, store) in [("embedded", "embedded".to_string()), ("postgres", pg_store)] {
        let dir = env.work.join(format!("documents-{name}"));
        fresh(&dir)?;
        let expected = generate(&dir, changes, changes / 40)?;
        std::fs::write(
            dir.join("pipeline.toml"),
            format!(
                "[sources.changes]\ntype = \"file\"\npath = \"changes/*.ndjson\"\nsettle_secs = 0\n\n\
                 [transforms.doctors]\ntype = \"documents\"\ninputs = [\"changes\"]\nstore = \"{store}\"\n"
            ),
        )?;
        let measured = process::run(
            Command::new(&env.sluice)
                .args(["--threads", "1", "run", "pipeline.toml", "--until-idle"])
                .current_dir(&dir),
        )?;
        let documents = if name == "embedded" {
            let db = rusqlite::Connection::open(dir.join(".sluice/pipeline/documents/doctors.sqlite3"))?;
            db.query_row("SELECT count(*) FROM documents WHERE document IS NOT NULL", [], |r| {
                r.get::<_, i64>(0)
            })? as u64
        } else {
            let row = client
                .query_one(
                    &format!("SELECT count(*) FROM {schema}.doctors WHERE document IS NOT NULL"),
                    &[],
                )
                .await?;
            row.get::<_, i64>(0) as u64
        };
        if documents != expected {
            bail!("{name} store holds {documents} documents, the oracle {expected}");
        }
        results.push(Throughput {
            store: name.to_string(),
            changes,
            documents,
            changes_per_s: changes as f64 / measured.seconds,
            measured,
        });
    }
    Ok(results)
}

/// One change at a time, `rate` per second for `duration`, through HTTP ->
/// documents (embedded) -> projection (Redis at `redis_url`).
pub async fn projection_lag(env: &Env, redis_url: &str, rate: f64, duration: Duration) -> Result<ProjectionLag> {
    let dir = env.work.join("documents-projection");
    fresh(&dir)?;
    let (port, api) = (free_port()?, free_port()?);
    let prefix = format!("sluice-bench-{}:", std::process::id());
    let flush_interval_secs = 1;
    std::fs::write(
        dir.join("pipeline.toml"),
        format!(
            "[api]\naddress = \"127.0.0.1:{api}\"\n\n[sources.web]\ntype = \"http\"\naddress = \"127.0.0.1:{port}\"\n\n\
             [transforms.doctors]\ntype = \"documents\"\ninputs = [\"web\"]\n\n\
             [sinks.cards]\ntype = \"projection\"\ninputs = [\"doctors.changes\"]\nredis = \"{redis_url}\"\n\
             key = \"{prefix}{{id}}\"\nfields = {{ seq = \"/seq\" }}\nflush_interval_secs = {flush_interval_secs}\n"
        ),
    )?;
    let child = process::start_pipeline(&env.sluice, &dir, api).await?;
    let redis = redis::Client::open(redis_url)?;
    let mut conn = redis.get_multiplexed_async_connection().await?;
    let client = std::sync::Arc::new(http::Client::new(port));
    let samples = (rate * duration.as_secs_f64()) as u64;
    let started = Instant::now();
    let mut probes = tokio::task::JoinSet::new();
    for i in 0..samples {
        tokio::time::sleep_until((started + Duration::from_secs_f64(i as f64 / rate)).into()).await;
        let (client, mut conn) = (client.clone(), conn.clone());
        let key = format!("{prefix}lag-{}", i % 50);
        probes.spawn(async move {
            let id = key.rsplit(':').next().unwrap_or_default().to_string();
            let change = serde_json::json!({"entity": "doctor", "id": id, "version": i + 1, "op": "upsert", "patch": {"seq": i}});
            let sent = Instant::now();
            if !client.post(Bytes::from(change.to_string() + "\n")).await? {
                bail!("the collector refused a change at {rate} changes/s");
            }
            // A later change to the same document may land first: any seq >= i shows this one.
            while sent.elapsed() < Duration::from_secs(10) {
                let seen: Option<String> = redis::cmd("HGET").arg(&key).arg("seq").query_async(&mut conn).await?;
                if seen.and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s >= i) {
                    return Ok(Some(sent.elapsed().as_secs_f64() * 1000.0));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Ok(None)
        });
    }
    let (mut lags, mut never_seen) = (Vec::new(), 0);
    while let Some(probe) = probes.join_next().await {
        match probe?? {
            Some(lag) => lags.push(lag),
            None => never_seen += 1,
        }
    }
    process::terminate(&child);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await?;
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
    }
    let samples = lags.len();
    Ok(ProjectionLag {
        changes_per_s: rate,
        samples,
        flush_interval_secs,
        p50_ms: http::quantile(&mut lags, 0.5),
        p99_ms: http::quantile(&mut lags, 0.99),
        never_seen,
    })
}
