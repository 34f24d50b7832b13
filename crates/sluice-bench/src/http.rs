//! HTTP durable ingest and event -> queryable latency, against one
//! `sluice run` (HTTP source -> validate -> lake, all threads) and a load
//! client in this process on loopback. Bodies are 100 NDJSON events each;
//! a 200 means the events are fsync'd in the queue.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use deltalake::{
    DeltaTableBuilder, arrow::array::AsArray, parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder,
};
use serde::Serialize;
use tokio::task::JoinSet;

pub const EVENTS_PER_REQUEST: usize = 100;

/// One load level's outcome.
#[derive(Debug, Serialize)]
pub struct Load {
    /// Requests in flight at once (closed loop), or `None` for a paced run.
    pub concurrency: Option<usize>,
    /// Target events/s of a paced run.
    pub target_events_per_s: Option<f64>,
    pub events_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub refused: u64,
}

#[derive(Debug, Serialize)]
pub struct Queryable {
    pub events_per_s: f64,
    pub flush_interval_secs: u64,
    pub markers: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub never_seen: usize,
}

/// `q` (0..=1) quantile of `values` in ms.
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let index = ((values.len() as f64 - 1.0) * q).round() as usize;
    values[index]
}

pub struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    pub fn new(port: u16) -> Self {
        Client {
            http: reqwest::Client::new(),
            url: format!("http://127.0.0.1:{port}/v1/events"),
        }
    }

    /// Posts one body; `Ok(true)` on 200, `Ok(false)` on 503/429.
    pub async fn post(&self, body: Bytes) -> Result<bool> {
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await?;
        match response.status().as_u16() {
            200 => Ok(true),
            503 | 429 => Ok(false),
            other => bail!("the collector answered {other}"),
        }
    }
}

/// Request bodies of 100 lines each.
pub fn bodies(lines: &[String]) -> Vec<Bytes> {
    lines
        .chunks(EVENTS_PER_REQUEST)
        .map(|c| Bytes::from(c.join("\n") + "\n"))
        .collect()
}

/// `concurrency` tasks post bodies back to back for `duration`.
pub async fn closed_loop(
    client: Arc<Client>,
    bodies: Arc<Vec<Bytes>>,
    concurrency: usize,
    duration: Duration,
) -> Result<Load> {
    let next = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency {
        let (client, bodies, next, refused) = (client.clone(), bodies.clone(), next.clone(), refused.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut events = 0u64;
            while started.elapsed() < duration {
                let body = bodies[next.fetch_add(1, Ordering::Relaxed) % bodies.len()].clone();
                let sent = Instant::now();
                if client.post(body).await? {
                    latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                    events += EVENTS_PER_REQUEST as u64;
                } else {
                    refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            anyhow::Ok((latencies, events))
        });
    }
    let (mut latencies, mut events) = (Vec::new(), 0);
    while let Some(done) = tasks.join_next().await {
        let (l, e) = done??;
        latencies.extend(l);
        events += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Load {
        concurrency: Some(concurrency),
        target_events_per_s: None,
        events_per_s: events as f64 / elapsed,
        p50_ms: quantile(&mut latencies, 0.5),
        p99_ms: quantile(&mut latencies, 0.99),
        refused: refused.load(Ordering::Relaxed),
    })
}

/// `concurrency` tasks post every body once, back to back (a refused one
/// again after 50 ms); returns the requests refused on the way.
pub async fn post_all(client: Arc<Client>, bodies: Arc<Vec<Bytes>>, concurrency: usize) -> Result<u64> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency {
        let (client, bodies, next) = (client.clone(), bodies.clone(), next.clone());
        tasks.spawn(async move {
            let mut refused = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return anyhow::Ok(refused);
                };
                while !client.post(body.clone()).await? {
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
    }
    let mut refused = 0;
    while let Some(done) = tasks.join_next().await {
        refused += done??;
    }
    Ok(refused)
}

/// Requests start on a fixed schedule (open loop) at `events_per_s`;
/// latency counts from the scheduled start, so a stalled server is not hidden.
pub async fn paced(
    client: Arc<Client>,
    bodies: Arc<Vec<Bytes>>,
    events_per_s: f64,
    duration: Duration,
) -> Result<Load> {
    let (latencies, refused, elapsed) = paced_requests(client, bodies, events_per_s, duration, |_, _| {}).await?;
    let mut latencies: Vec<f64> = latencies.into_iter().map(|(_, ms)| ms).collect();
    let accepted = latencies.len();
    Ok(Load {
        concurrency: None,
        target_events_per_s: Some(events_per_s),
        events_per_s: (accepted * EVENTS_PER_REQUEST) as f64 / elapsed,
        p50_ms: quantile(&mut latencies, 0.5),
        p99_ms: quantile(&mut latencies, 0.99),
        refused,
    })
}

type Acked = Vec<(usize, f64)>;

/// Posts body `i` at `i / rate`; calls `on_ack(i, ack time)` for each 200.
/// Returns (body index, latency ms) of accepted requests, refusals, seconds.
async fn paced_requests(
    client: Arc<Client>,
    bodies: Arc<Vec<Bytes>>,
    events_per_s: f64,
    duration: Duration,
    on_ack: impl Fn(usize, Instant) + Send + Sync + 'static,
) -> Result<(Acked, u64, f64)> {
    let per_request = Duration::from_secs_f64(EVENTS_PER_REQUEST as f64 / events_per_s);
    let count = ((duration.as_secs_f64() / per_request.as_secs_f64()) as usize).min(bodies.len());
    let on_ack = Arc::new(on_ack);
    let started = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..count {
        let due = started + per_request * i as u32;
        tokio::time::sleep_until(due).await;
        let (client, body, on_ack) = (client.clone(), bodies[i].clone(), on_ack.clone());
        tasks.spawn(async move {
            let ok = client.post(body).await?;
            let now = Instant::now();
            if ok {
                on_ack(i, now);
            }
            anyhow::Ok((i, ok, (tokio::time::Instant::now() - due).as_secs_f64() * 1000.0))
        });
    }
    let (mut acked, mut refused) = (Vec::new(), 0);
    while let Some(done) = tasks.join_next().await {
        let (i, ok, ms) = done??;
        if ok {
            acked.push((i, ms));
        } else {
            refused += 1;
        }
    }
    Ok((acked, refused, started.elapsed().as_secs_f64()))
}

/// Posts at a steady `events_per_s` and watches the Delta table: for the
/// first event of each request, the time from the 200 to the first table
/// version whose files hold it.
pub async fn queryable(
    client: Arc<Client>,
    bodies: Arc<Vec<Bytes>>,
    table: &Path,
    events_per_s: f64,
    duration: Duration,
    flush_interval_secs: u64,
) -> Result<Queryable> {
    let markers: Vec<String> = bodies
        .iter()
        .map(|b| {
            let first = b.split(|&c| c == b'\n').next().unwrap_or_default();
            let v: serde_json::Value = serde_json::from_slice(first).unwrap_or_default();
            v["event_id"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    let acked_at: Arc<Mutex<HashMap<usize, Instant>>> = Arc::default();
    let seen_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = tokio::spawn(watch_table(table.to_path_buf(), seen_at.clone(), stop.clone()));
    let recorder = acked_at.clone();
    let (acked, _, _) = paced_requests(client, bodies, events_per_s, duration, move |i, at| {
        recorder.lock().expect("ack map").insert(i, at);
    })
    .await?;
    // Give the last requests time to become visible.
    let deadline = Instant::now() + Duration::from_secs(flush_interval_secs + 10);
    loop {
        let all_seen = {
            let seen = seen_at.lock().expect("seen map");
            acked.iter().all(|(i, _)| seen.contains_key(&markers[*i]))
        };
        if all_seen || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    watcher.await.context("table watcher")??;
    let acked_at = acked_at.lock().expect("ack map");
    let seen_at = seen_at.lock().expect("seen map");
    let mut latencies = Vec::new();
    let mut never_seen = 0;
    for (i, _) in &acked {
        match (acked_at.get(i), seen_at.get(&markers[*i])) {
            (Some(ack), Some(seen)) => latencies.push(seen.saturating_duration_since(*ack).as_secs_f64() * 1000.0),
            _ => never_seen += 1,
        }
    }
    Ok(Queryable {
        events_per_s,
        flush_interval_secs,
        markers: acked.len(),
        p50_ms: quantile(&mut latencies, 0.5),
        p99_ms: quantile(&mut latencies, 0.99),
        never_seen,
    })
}

/// Polls the table every 50 ms; records when each event id first appears
/// in a committed file.
async fn watch_table(
    table: std::path::PathBuf,
    seen_at: Arc<Mutex<HashMap<String, Instant>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<()> {
    let url = url::Url::from_directory_path(&table).expect("absolute path");
    let mut loaded = None;
    let mut read_files: HashSet<String> = HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let table_handle = match &mut loaded {
            Some(t) => t,
            None => match DeltaTableBuilder::from_url(url.clone())?.load().await {
                Ok(t) => loaded.insert(t),
                Err(_) => continue,
            },
        };
        let before = table_handle.version();
        table_handle.update_incremental(None).await?;
        if table_handle.version() == before && !read_files.is_empty() {
            continue;
        }
        let now = Instant::now();
        let paths: Vec<String> = table_handle
            .snapshot()?
            .log_data()
            .iter()
            .map(|f| f.path().into_owned())
            .filter(|p| !read_files.contains(p))
            .collect();
        for path in paths {
            let file = std::fs::File::open(table.join(&path))?;
            for batch in ParquetRecordBatchReaderBuilder::try_new(file)?.build()? {
                let batch = batch?;
                let ids = batch
                    .column_by_name("event_id")
                    .context("no event_id column")?
                    .as_string::<i32>();
                let mut seen = seen_at.lock().expect("seen map");
                for id in ids.iter().flatten() {
                    seen.entry(id.to_string()).or_insert(now);
                }
            }
            read_files.insert(path);
        }
    }
    Ok(())
}
