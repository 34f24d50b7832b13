//! `sluice-bench`: the bench command. In one run, on generated input, it
//! measures and prints Sluice beside the DuckDB reference (lake ingest on
//! one thread, compaction), PostgreSQL loading beside row-by-row inserts,
//! the per-event cost of validate, jq and hash, change events merged per
//! second into each document store and change -> projection latency, HTTP
//! durable ingest at several concurrency levels and at a paced half rate,
//! event -> queryable latency, lake ingest with 1, 2 and 3 replicas on a
//! shared JetStream queue, Kafka source and sink throughput on a local
//! tansu broker, and the engine's peak RSS in each run. `scripts/bench` builds it and runs it.

mod documents;
mod http;
mod ingest;
mod kafka;
mod pg;
mod process;
mod replicas;
mod transforms;

use std::{
    fs::File,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use clap::Parser;
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(about = "Measure Sluice beside the DuckDB reference; print the figures")]
struct Args {
    /// Generator lines for the lake ingest run.
    #[arg(long, default_value_t = 1_000_000)]
    lines: u64,
    /// Rounds of the lake ingest comparison (Sluice, then DuckDB, each
    /// round); the median round is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Working folder (inputs, tables, logs, results.json).
    #[arg(long, default_value = "target/bench")]
    work: PathBuf,
    /// Seconds per HTTP load level.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrency levels of the closed-loop HTTP runs.
    #[arg(long, value_delimiter = ',', default_value = "4,16,64")]
    concurrency: Vec<usize>,
    /// Events/s of the paced HTTP run (half the 200k events/s target).
    #[arg(long, default_value_t = 100_000.0)]
    paced_rate: f64,
    /// Skip the HTTP and latency runs.
    #[arg(long)]
    no_http: bool,
    /// Generator lines for the PostgreSQL load.
    #[arg(long, default_value_t = 200_000)]
    postgres_lines: u64,
    /// The PostgreSQL server for the load (schemas `sluice_bench_*` are replaced).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
    /// Skip the PostgreSQL load.
    #[arg(long)]
    no_postgres: bool,
    /// Change events for the documents runs (per store).
    #[arg(long, default_value_t = 200_000)]
    document_changes: u64,
    /// Redis for the projection latency run.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Skip the documents runs.
    #[arg(long)]
    no_documents: bool,
    /// Replica counts of the scale-out runs (the lake ingest input, split).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    replicas: Vec<usize>,
    /// NATS with JetStream, the scale-out runs' shared queue.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Skip the scale-out runs.
    #[arg(long)]
    no_replicas: bool,
    /// Objects the lake ingest's input is cut into for the objects-source run.
    #[arg(long, default_value_t = 20)]
    objects: usize,
    /// Skip the objects-source run.
    #[arg(long)]
    no_objects: bool,
    /// Generator lines for the Kafka source and sink runs (on a local
    /// tansu broker; skipped when it is not installed).
    #[arg(long, default_value_t = 200_000)]
    kafka_lines: u64,
    /// Skip the Kafka runs.
    #[arg(long)]
    no_kafka: bool,
}

/// Where things are.
pub struct Env {
    pub sluice: PathBuf,
    pub python: PathBuf,
    /// This crate's folder (`ingest_duckdb.py`, `compact_duckdb.py`).
    pub scripts: PathBuf,
    pub work: PathBuf,
}

impl Env {
    fn discover(work: &Path) -> Result<Env> {
        let exe = std::env::current_exe()?;
        let sluice = exe.with_file_name("sluice");
        if !sluice.exists() {
            bail!(
                "{} not found; build it with `cargo build --release -p sluice`",
                sluice.display()
            );
        }
        std::fs::create_dir_all(work)?;
        Ok(Env {
            sluice,
            python: std::env::var_os("SLUICE_PYTHON").map_or_else(|| "python3".into(), PathBuf::from),
            scripts: Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf(),
            work: std::fs::canonicalize(work)?,
        })
    }

    /// Writes the generator's noisy clickstream (2 % duplicates, 1 %
    /// malformed, 5 % late) to `<name>.ndjson`; returns its path.
    fn generate(&self, name: &str, lines: u64) -> Result<PathBuf> {
        let out = self.work.join(format!("{name}.ndjson"));
        let mut file = std::io::BufWriter::new(File::create(&out)?);
        let oracle = sluice_gen::clickstream(&sluice_gen::ClickstreamOptions::noisy(lines, 7), &mut file)?;
        std::io::Write::flush(&mut file)?;
        std::fs::write(
            self.work.join(format!("{name}.expect.json")),
            serde_json::to_string(&oracle)?,
        )?;
        Ok(out)
    }
}

#[derive(Serialize)]
struct Results {
    lines: u64,
    /// One worker thread each.
    lake_ingest: ingest::Comparison,
    /// The whole machine each.
    lake_ingest_all_cores: ingest::Comparison,
    lake_ingest_by_reference: ingest::Comparison,
    lake_ingest_all_cores_by_reference: ingest::Comparison,
    objects_ingest: Option<ingest::Side>,
    compaction: ingest::Comparison,
    postgres: Option<pg::PgComparison>,
    transform_costs: Vec<transforms::Cost>,
    http: Option<HttpResults>,
    documents: Option<DocumentResults>,
    replicas: Option<Vec<replicas::ReplicaRun>>,
    kafka: Option<kafka::KafkaRuns>,
}

#[derive(Serialize)]
struct DocumentResults {
    throughput: Vec<documents::Throughput>,
    projection_lag: documents::ProjectionLag,
}

#[derive(Serialize)]
struct HttpResults {
    /// Every line posted once while the sink writes, until all is committed.
    into_lake: ingest::Side,
    /// Requests refused (and posted again) during `into_lake`.
    into_lake_refused: u64,
    closed_loop: Vec<http::Load>,
    paced: http::Load,
    queryable: http::Queryable,
    peak_rss_mib: f64,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A fresh folder `name` under the work folder holding the HTTP bench
/// pipeline (HTTP source on `port`, API on `api`).
fn http_pipeline(env: &Env, name: &str, port: u16, api: u16, flush_interval_secs: u64) -> Result<std::path::PathBuf> {
    let dir = env.work.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let head = format!(
        "[api]\naddress = \"127.0.0.1:{api}\"\n\n[delivery]\nmax_queue_bytes = 2147483648\n\n[sources.input]\ntype = \"http\"\naddress = \"127.0.0.1:{port}\""
    );
    std::fs::write(
        dir.join("pipeline.toml"),
        ingest::pipeline(&head, &format!("flush_interval_secs = {flush_interval_secs}")),
    )?;
    Ok(dir)
}

/// Posts every line once, 16 requests in flight, to an engine on all
/// threads with the client in this process, and stops the engine once all
/// are accepted: it commits what it holds and exits. Measured from the
/// first post to the engine's exit.
async fn http_into_lake(env: &Env, bodies: Arc<Vec<bytes::Bytes>>, lines: u64) -> Result<(ingest::Side, u64)> {
    let (port, api) = (free_port()?, free_port()?);
    let dir = http_pipeline(env, "http-into-lake", port, api, 1)?;
    let child = process::start_pipeline(&env.sluice, &dir, api).await?;
    let started = Instant::now();
    let refused = http::post_all(Arc::new(http::Client::new(port)), bodies, 16).await?;
    process::terminate(&child);
    let (ok, measured) = tokio::task::spawn_blocking(move || process::wait(child, started)).await??;
    if !ok {
        bail!("sluice failed; see {}", dir.join("sluice.log").display());
    }
    let rows = sluice_lake::summarize(&ingest::local_table(&dir.join("lake")))
        .await?
        .rows;
    let engine = "sluice, HTTP -> lake (all threads)".to_string();
    Ok((ingest::Side::new(engine, lines, rows, measured), refused))
}

async fn http_runs(env: &Env, args: &Args) -> Result<HttpResults> {
    let input = env.generate("http", 300_000)?;
    let lines: Vec<String> = std::fs::read_to_string(&input)?.lines().map(str::to_string).collect();
    let bodies = Arc::new(http::bodies(&lines));
    eprintln!("  HTTP -> lake: every line posted once, 16 requests in flight");
    let (into_lake, into_lake_refused) = http_into_lake(env, bodies.clone(), lines.len() as u64).await?;
    let (port, api) = (free_port()?, free_port()?);
    let flush_interval_secs = 1;
    let dir = http_pipeline(env, "http", port, api, flush_interval_secs)?;
    let started = Instant::now();
    let child = process::start_pipeline(&env.sluice, &dir, api).await?;
    let client = Arc::new(http::Client::new(port));
    eprintln!("  event -> queryable at 2000 events/s for 15 s");
    let queryable = http::queryable(
        client.clone(),
        bodies.clone(),
        &dir.join("lake"),
        2000.0,
        Duration::from_secs(15),
        flush_interval_secs,
    )
    .await?;
    // Paced before the closed loops, so it does not start behind their backlog.
    eprintln!("  HTTP paced at {:.0} events/s, {} s", args.paced_rate, args.seconds);
    let paced = http::paced(
        client.clone(),
        bodies.clone(),
        args.paced_rate,
        Duration::from_secs(args.seconds),
    )
    .await?;
    let mut closed_loop = Vec::new();
    for &c in &args.concurrency {
        eprintln!("  HTTP closed loop, {c} requests in flight, {} s", args.seconds);
        closed_loop
            .push(http::closed_loop(client.clone(), bodies.clone(), c, Duration::from_secs(args.seconds)).await?);
    }
    process::terminate(&child);
    let (_, measured) = tokio::task::spawn_blocking(move || process::wait(child, started)).await??;
    Ok(HttpResults {
        into_lake,
        into_lake_refused,
        closed_loop,
        paced,
        queryable,
        peak_rss_mib: measured.peak_rss_mib,
    })
}

fn print_comparison(title: &str, c: &ingest::Comparison) {
    println!("\n{title}");
    for side in [&c.sluice, &c.duckdb] {
        print_side(side);
    }
    if c.round_ratios.len() > 1 {
        let rounds: Vec<String> = c.round_ratios.iter().map(|r| format!("{r:.2}x")).collect();
        println!(
            "  ratio sluice / duckdb: {:.2}x (the median round shown; rounds: {})",
            c.ratio,
            rounds.join(", ")
        );
    } else {
        println!("  ratio sluice / duckdb: {:.2}x", c.ratio);
    }
    println!("  ratio per CPU-second: {:.2}x", c.cpu_ratio);
}

fn print_side(side: &ingest::Side) {
    println!(
        "  {:<40} {:>9.0} rows/s  {:>7.2} s  cpu {:>6.2} s ({:>7.0} rows/cpu-s)  peak RSS {:>6.0} MiB  ({} rows in, {} out)",
        side.engine,
        side.rows_per_s,
        side.measured.seconds,
        side.measured.cpu_seconds,
        side.rows_per_cpu_s,
        side.measured.peak_rss_mib,
        side.rows_in,
        side.rows_out
    );
}

fn main() -> Result<()> {
    sluice_transform::jq::serve_or_enable_workers();
    bench()
}

#[tokio::main]
async fn bench() -> Result<()> {
    let args = Args::parse();
    let env = Env::discover(&args.work)?;
    eprintln!("generating {} lines", args.lines);
    let events = env.generate("events", args.lines)?;
    eprintln!(
        "lake ingest: {} rounds of sluice by reference, sluice, then duckdb",
        args.rounds.max(1)
    );
    let ingest = ingest::lake_ingest(&env, &events, args.lines, args.rounds).await?;
    let objects_ingest = if args.no_objects {
        None
    } else {
        eprintln!("lake ingest from {} objects in a folder", args.objects);
        Some(ingest::objects_ingest(&env, &events, args.lines, args.objects).await?)
    };
    eprintln!("compaction: duckdb, then sluice");
    let compaction = ingest::compaction(&env, &ingest.table).await?;
    let postgres = if args.no_postgres {
        None
    } else {
        eprintln!("postgres load: sluice, then row-by-row inserts");
        let input = env.generate("postgres", args.postgres_lines)?;
        Some(pg::load(&env, &args.postgres_url, &input, args.postgres_lines).await?)
    };
    eprintln!("transform costs");
    let transform_costs = transforms::costs(&env, &events).await?;
    let http = if args.no_http {
        None
    } else {
        eprintln!("HTTP ingest");
        Some(http_runs(&env, &args).await?)
    };
    let documents = if args.no_documents {
        None
    } else {
        eprintln!("documents: changes/s per store, then change -> projection latency");
        let throughput = documents::throughput(&env, &args.postgres_url, args.document_changes).await?;
        let projection_lag = documents::projection_lag(&env, &args.redis_url, 20.0, Duration::from_secs(15)).await?;
        Some(DocumentResults {
            throughput,
            projection_lag,
        })
    };
    let replica_runs = if args.no_replicas {
        None
    } else {
        eprintln!("scale-out: lake ingest over {:?} replicas", args.replicas);
        Some(replicas::throughput(&env, &events, args.lines, &args.nats_url, &args.replicas).await?)
    };
    let kafka_runs = match (args.no_kafka, kafka::tansu()) {
        (true, _) => None,
        (false, None) => {
            eprintln!("kafka: skipped, no tansu (scripts/test unpacks it; SLUICE_TANSU names another)");
            None
        }
        (false, Some(tansu)) => {
            eprintln!(
                "kafka: {} lines through a kafka source and a kafka sink on tansu",
                args.kafka_lines
            );
            let input = env.generate("kafka", args.kafka_lines)?;
            Some(kafka::throughput(&env, &tansu, &input, args.kafka_lines).await?)
        }
    };
    let results = Results {
        lines: args.lines,
        lake_ingest: ingest.one_thread,
        lake_ingest_all_cores: ingest.all_cores,
        lake_ingest_by_reference: ingest.one_thread_by_reference,
        lake_ingest_all_cores_by_reference: ingest.all_cores_by_reference,
        objects_ingest,
        compaction,
        postgres,
        transform_costs,
        http,
        documents,
        replicas: replica_runs,
        kafka: kafka_runs,
    };
    print_comparison(
        &format!("lake ingest, {} generator lines, one thread each", args.lines),
        &results.lake_ingest,
    );
    print_comparison(
        &format!("lake ingest, {} generator lines, the whole machine each", args.lines),
        &results.lake_ingest_all_cores,
    );
    print_comparison(
        &format!(
            "lake ingest, {} generator lines, one thread each, the queue keeping places in the file (queue_payloads = \"reference\")",
            args.lines
        ),
        &results.lake_ingest_by_reference,
    );
    print_comparison(
        &format!(
            "lake ingest, {} generator lines, the whole machine each, by reference",
            args.lines
        ),
        &results.lake_ingest_all_cores_by_reference,
    );
    if let Some(side) = &results.objects_ingest {
        println!("\nlake ingest of the same lines as objects in a folder (every other one gzip)");
        print_side(side);
    }
    print_comparison("compaction of the ingested table, one thread each", &results.compaction);
    if let Some(p) = &results.postgres {
        println!(
            "\nPostgreSQL load, {} generator lines (purchases' items in a child table)",
            args.postgres_lines
        );
        for side in [&p.sluice, &p.baseline] {
            println!(
                "  {:<62} {:>8.0} events/s  {:>7.2} s  ({} rows + {} item rows){}",
                side.engine,
                side.events_per_s,
                side.seconds,
                side.root_rows,
                side.child_rows,
                side.measured
                    .map_or(String::new(), |m| format!("  peak RSS {:.0} MiB", m.peak_rss_mib))
            );
        }
        println!("  ratio sluice / naive inserts: {:.2}x", p.ratio);
    }
    println!(
        "\nper-event cost, in process, one thread (jq program: {})",
        sluice_bench::JQ_PROGRAM
    );
    for c in &results.transform_costs {
        println!(
            "  {:<40} {:>8.2} µs/event  ({:.0} events/s over {} events)",
            c.stage,
            c.ns_per_event / 1000.0,
            1e9 / c.ns_per_event,
            c.events
        );
    }
    if let Some(h) = &results.http {
        println!(
            "\nHTTP durable ingest, {} events per request (fsync'd before 200)",
            http::EVENTS_PER_REQUEST
        );
        for l in [&h.paced].into_iter().chain(&h.closed_loop) {
            let how = match (l.concurrency, l.target_events_per_s) {
                (Some(c), _) => format!("{c} in flight"),
                (None, Some(t)) => format!("paced at {t:.0}/s"),
                _ => String::new(),
            };
            println!(
                "  {how:<22} {:>9.0} events/s  p50 {:>7.2} ms  p99 {:>7.2} ms  refused {}",
                l.events_per_s, l.p50_ms, l.p99_ms, l.refused
            );
        }
        let q = &h.queryable;
        println!(
            "\nevent -> queryable at {:.0} events/s (flush_interval_secs = {}): p50 {:.0} ms, p99 {:.0} ms over {} requests ({} never seen)",
            q.events_per_s, q.flush_interval_secs, q.p50_ms, q.p99_ms, q.markers, q.never_seen
        );
        println!("engine peak RSS in the HTTP runs: {:.0} MiB", h.peak_rss_mib);
        println!(
            "\nHTTP -> lake on the whole machine (the load client in this process; each line posted once, then a graceful stop; {} requests refused and posted again)",
            h.into_lake_refused
        );
        print_side(&h.into_lake);
    }
    if let Some(d) = &results.documents {
        println!("\ndocuments: generator changes merged into each store (file source, one worker thread)");
        for t in &d.throughput {
            println!(
                "  {:<10} {:>9.0} changes/s  {:>7.2} s  peak RSS {:>5.0} MiB  ({} changes, {} documents = oracle)",
                t.store, t.changes_per_s, t.measured.seconds, t.measured.peak_rss_mib, t.changes, t.documents
            );
        }
        let l = &d.projection_lag;
        println!(
            "change -> projection (HTTP -> documents -> Redis, flush_interval_secs = {}) at {:.0} changes/s: p50 {:.0} ms, p99 {:.0} ms over {} changes ({} never seen)",
            l.flush_interval_secs, l.changes_per_s, l.p50_ms, l.p99_ms, l.samples, l.never_seen
        );
    }
    if let Some(runs) = &results.replicas {
        println!("\nlake ingest over replicas (JetStream queue, one lake table, input split, one worker thread each)");
        let base = runs.first().map_or(1.0, |r| r.rows_per_s);
        for r in runs {
            println!(
                "  {} replica{:<2} {:>9.0} rows/s  {:>7.2} s  {:.2}x  cpu {:>6.2} s  peak RSS {:>5.0} MiB  ({} rows out)",
                r.replicas,
                if r.replicas == 1 { "" } else { "s" },
                r.rows_per_s,
                r.seconds,
                r.rows_per_s / base,
                r.cpu_seconds,
                r.max_peak_rss_mib,
                r.rows_out
            );
        }
    }
    if let Some(k) = &results.kafka {
        println!(
            "\nKafka on a local tansu broker, {} generator lines on 3 partitions (librdkafka produced them at {:.0} lines/s)",
            k.lines, k.produce_lines_per_s
        );
        for (what, run) in [
            ("kafka source -> validate -> lake", &k.source),
            ("file -> validate -> kafka sink", &k.sink),
        ] {
            println!(
                "  {what:<34} {:>9.0} lines/s  {:>7.2} s  cpu {:>6.2} s  peak RSS {:>5.0} MiB{}",
                run.lines_per_s,
                run.measured.seconds,
                run.measured.cpu_seconds,
                run.measured.peak_rss_mib,
                run.rows.map_or(String::new(), |r| format!("  ({r} rows)"))
            );
        }
    }
    let out = env.work.join("results.json");
    std::fs::write(&out, serde_json::to_string_pretty(&results)?)?;
    println!("\nresults: {}", out.display());
    Ok(())
}
