//! `sluice-gen`: writes a clickstream or change-event stream and, with
//! `--expect`, the oracle a correct pipeline must match (JSON).

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::PathBuf,
};

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use sluice_gen::{CdcOptions, ClickstreamOptions};

#[derive(Parser)]
#[command(about = "Deterministic test events for Sluice, with the oracle a correct pipeline must match")]
struct Cli {
    #[command(subcommand)]
    stream: Stream,
}

#[derive(Subcommand)]
enum Stream {
    /// Web events as NDJSON, with duplicates, malformed lines and late events.
    Clickstream(ClickstreamArgs),
    /// Document change events, reordered and repeated.
    Cdc(CdcArgs),
}

#[derive(clap::Args)]
struct ClickstreamArgs {
    /// Lines to write.
    #[arg(short = 'n', default_value_t = 100_000)]
    lines: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value = "2026-11-01T00:00:00Z")]
    start: DateTime<Utc>,
    /// Event-time span of the stream.
    #[arg(long, default_value_t = 24.0)]
    hours: f64,
    #[arg(long, default_value_t = 50_000)]
    users: u64,
    #[arg(long, default_value_t = 0.0)]
    dup_rate: f64,
    #[arg(long, default_value_t = 0.0)]
    bad_rate: f64,
    #[arg(long, default_value_t = 0.0)]
    late_rate: f64,
    #[command(flatten)]
    output: Output,
}

#[derive(clap::Args)]
struct CdcArgs {
    /// Source changes to generate.
    #[arg(short = 'n', default_value_t = 100_000)]
    changes: u64,
    #[arg(long, default_value_t = 5000)]
    docs: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value = "2026-11-01T00:00:00Z")]
    start: DateTime<Utc>,
    #[arg(long, default_value_t = 0.01)]
    delete_rate: f64,
    #[arg(long, default_value_t = 0.02)]
    dup_rate: f64,
    #[arg(long, default_value_t = 20)]
    reorder_window: usize,
    #[command(flatten)]
    output: Output,
}

#[derive(clap::Args)]
struct Output {
    /// Where the events go (`-`: standard output).
    #[arg(short = 'o', long, default_value = "-")]
    output: PathBuf,
    /// Write the oracle (JSON) here.
    #[arg(long)]
    expect: Option<PathBuf>,
}

impl Output {
    /// Writes the events with `generate`, then the oracle it returns.
    fn write<O: serde::Serialize>(&self, generate: impl FnOnce(&mut dyn Write) -> io::Result<O>) -> io::Result<()> {
        let mut events: Box<dyn Write> = if self.output.as_os_str() == "-" {
            Box::new(BufWriter::new(io::stdout().lock()))
        } else {
            Box::new(BufWriter::new(File::create(&self.output)?))
        };
        let oracle = generate(&mut events)?;
        events.flush()?;
        if let Some(path) = &self.expect {
            std::fs::write(path, serde_json::to_string(&oracle)? + "\n")?;
        }
        Ok(())
    }
}

fn main() -> io::Result<()> {
    match Cli::parse().stream {
        Stream::Clickstream(a) => {
            let options = ClickstreamOptions {
                lines: a.lines,
                seed: a.seed,
                start: a.start,
                hours: a.hours,
                users: a.users,
                dup_rate: a.dup_rate,
                bad_rate: a.bad_rate,
                late_rate: a.late_rate,
            };
            a.output.write(|out| sluice_gen::clickstream(&options, out))
        }
        Stream::Cdc(a) => {
            let options = CdcOptions {
                changes: a.changes,
                docs: a.docs,
                seed: a.seed,
                start: a.start,
                delete_rate: a.delete_rate,
                dup_rate: a.dup_rate,
                reorder_window: a.reorder_window,
            };
            a.output.write(|out| sluice_gen::cdc(&options, out))
        }
    }
}
