//! Scale-out throughput: the lake-ingest input split over N replicas, each
//! `sluice --threads 1 run --until-idle` with its own file source and data
//! directory (as a load balancer splits a collector's traffic), all sharing
//! one JetStream queue and one lake table, replica i pinned to core i (modulo
//! the cores there are). Rows/s over the wall time until the last replica
//! exits; CPU is summed, peak RSS is the largest replica's.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::{
    Env,
    ingest::{fresh_dir, local_table, log_file, pipeline, split_events},
    process::{Measured, wait},
};

#[derive(Debug, Serialize)]
pub struct ReplicaRun {
    pub replicas: usize,
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_per_s: f64,
    pub seconds: f64,
    pub cpu_seconds: f64,
    pub max_peak_rss_mib: f64,
}

pub async fn throughput(
    env: &Env,
    events: &Path,
    lines: u64,
    nats_url: &str,
    counts: &[usize],
) -> Result<Vec<ReplicaRun>> {
    let mut runs = Vec::new();
    for &n in counts {
        let dir = env.work.join(format!("replicas-{n}"));
        fresh_dir(&dir)?;
        // Contiguous shares, cut by each file source into batches of the
        // size a JetStream queue takes by default (1044480 bytes).
        let shares: Vec<PathBuf> = (0..n)
            .map(|i| dir.join(format!("replica-{i}/incoming/events.ndjson")))
            .collect();
        split_events(events, lines, &shares)?;
        let queue_name = format!("bench-replicas-{n}-{}", std::process::id());
        let head = format!(
            "queue = \"{nats_url}\"\nqueue_name = \"{queue_name}\"\n\n\
             [sources.input]\ntype = \"file\"\npath = \"replica-${{REPLICA}}/incoming/*.ndjson\"\nsettle_secs = 0"
        );
        let text = pipeline(&head, "").replace("data_dir = \".sluice\"", "data_dir = \"replica-${REPLICA}/.sluice\"");
        std::fs::write(dir.join("pipeline.toml"), text)?;

        let started = Instant::now();
        let mut waiting = Vec::new();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        for i in 0..n {
            let mut command = Command::new(&env.sluice);
            command
                .args(["--threads", "1", "run", "pipeline.toml", "--until-idle"])
                .env("REPLICA", i.to_string())
                .current_dir(&dir)
                .stdout(Stdio::null())
                .stderr(log_file(&dir, &format!("sluice-{i}.log"))?);
            let core = i % cores;
            // SAFETY: only sched_setaffinity, async-signal-safe, runs
            // between fork and exec.
            unsafe {
                command.pre_exec(move || pin_to_core(core));
            }
            let child = command.spawn().context("starting a replica")?;
            waiting.push(std::thread::spawn(move || wait(child, started)));
        }
        let mut measured: Vec<Measured> = Vec::new();
        for handle in waiting {
            let (ok, m) = handle.join().expect("waiting thread")?;
            anyhow::ensure!(ok, "a replica failed; see {}", dir.display());
            measured.push(m);
        }
        let seconds = started.elapsed().as_secs_f64();
        let summary = sluice_lake::summarize(&local_table(&dir.join("lake"))).await?;
        runs.push(ReplicaRun {
            replicas: n,
            rows_in: lines,
            rows_out: summary.rows,
            rows_per_s: lines as f64 / seconds,
            seconds,
            cpu_seconds: measured.iter().map(|m| m.cpu_seconds).sum(),
            max_peak_rss_mib: measured.iter().map(|m| m.peak_rss_mib).fold(0.0, f64::max),
        });
        let js = async_nats::jetstream::new(async_nats::connect(nats_url).await?);
        let names = sluice_queue::jetstream::JetStreamNames::for_pipeline(&queue_name);
        js.delete_stream(&names.stream).await?;
        js.delete_stream(&names.dead_stream).await?;
        let _ = js.delete_key_value(&names.leases).await;
    }
    Ok(runs)
}

/// Lets the calling process run on core `core` only.
fn pin_to_core(core: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET stays within it
    // for core numbers below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
