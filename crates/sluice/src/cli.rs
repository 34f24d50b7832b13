//! Command-line interface (clap derive).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Event-driven ETL into a Delta lake: exactly once, with dead letters and backpressure"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Worker threads of the async runtime (default: one per core).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// More log output (`RUST_LOG` overrides).
    #[arg(long, short, global = true)]
    pub verbose: bool,
    /// How log lines are written to stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Plain lines; coloured only when stderr is a terminal.
    Text,
    /// One JSON object per line (timestamp, level, target, fields).
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline until SIGINT/SIGTERM (or, with --until-idle, until drained).
    Run {
        pipeline: PathBuf,
        /// Exit once every source is drained and everything accepted is committed.
        #[arg(long)]
        until_idle: bool,
    },
    /// Check a pipeline file, its schemas and paths, without starting anything.
    Validate { pipeline: PathBuf },
    /// Compact a lake sink's table: merge each partition's files and drop duplicate event ids.
    Compact {
        pipeline: PathBuf,
        /// The lake sink (needed when the pipeline has several).
        #[arg(long)]
        sink: Option<String>,
        /// Partitions that received files within this many hours (default: the sink's `compaction.lookback_hours`).
        #[arg(long, conflicts_with = "all")]
        since: Option<u64>,
        /// Every partition with files not yet compacted, however old.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Delete data files no table version still uses, once older than the retention.
    Vacuum {
        pipeline: PathBuf,
        #[arg(long)]
        sink: Option<String>,
        #[arg(long, default_value_t = sluice_lake::vacuum::DEFAULT_RETENTION_HOURS)]
        retention_hours: u64,
        /// Allow a retention shorter than the table's (readers of older versions may fail).
        #[arg(long)]
        force: bool,
        /// List what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Write every current document of a `documents` stage to its snapshot table (incrementally).
    Snapshot {
        pipeline: PathBuf,
        /// The `documents` stage (needed when the pipeline has several).
        #[arg(long)]
        sink: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Rebuild a projection from every current document of the stage it reads.
    Rehydrate {
        pipeline: PathBuf,
        /// The `projection` sink.
        projection: String,
        #[arg(long)]
        json: bool,
    },
    /// Whether data flows: each source, the queue, each transform and sink,
    /// dead letters, and a verdict (from the running engine's API, else from
    /// what the pipeline left).
    Status {
        pipeline: PathBuf,
        /// One JSON object instead of the screen.
        #[arg(long)]
        json: bool,
        /// Redraw every 2 seconds until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// A live sample of what a source, transform or sink emits, as JSON
    /// lines, read from the running engine's API.
    Tail {
        pipeline: PathBuf,
        /// The source, transform or sink.
        stage: String,
        /// Stop after this many events.
        #[arg(long, default_value_t = 10, conflicts_with = "follow")]
        limit: usize,
        /// Keep printing until interrupted.
        #[arg(long)]
        follow: bool,
    },
    /// Read again what a file, objects or kafka source read in a time
    /// window (a backfill after a transform fix): those inputs are read
    /// anew and the lake replaces the rows the first reads left, by event id.
    Replay {
        pipeline: PathBuf,
        /// The `file`, `objects` or `kafka` source.
        #[arg(long)]
        source: String,
        /// Inputs read (kafka: records stamped) from this time on: RFC 3339,
        /// a date, or a duration ago (`2h`).
        #[arg(long)]
        since: String,
        /// ... up to this time (default: now).
        #[arg(long)]
        until: Option<String>,
        /// Follow the replay until every input asked for is read again (file
        /// and objects; a kafka replay reads before it returns).
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        json: bool,
    },
    /// Inspect and redrive dead letters.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Versioned schemas: register, check compatibility, list, show.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// What an `objects` source has found, read and failed to read.
    Objects {
        #[command(subcommand)]
        command: ObjectsCommand,
    },
    /// Run a complete demo pipeline on embedded defaults, fed by generated events.
    Demo {
        /// Folder for the demo's pipeline, schema, queue and lake.
        #[arg(long, default_value = "sluice-demo")]
        dir: PathBuf,
        /// Events to send (about 2% malformed, 1% duplicated).
        #[arg(long, default_value_t = 50_000)]
        events: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead letters held, by reason.
    List {
        pipeline: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Dead letters with their reason, source, time and original bytes.
    Show {
        pipeline: PathBuf,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back on the queue (after a fix); running it again moves nothing.
    Redrive {
        pipeline: PathBuf,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ObjectsCommand {
    /// Objects per state, and the pending and failed ones by key.
    Status {
        pipeline: PathBuf,
        /// The `objects` source (needed when the pipeline has several).
        #[arg(long)]
        source: Option<String>,
        /// How many objects of each state to list.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Read failed objects again (after a fix), with fresh attempts.
    Redrive {
        pipeline: PathBuf,
        #[arg(long)]
        source: Option<String>,
        /// Only this object key (default: every failed object).
        #[arg(long)]
        key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Store a schema version, after checking it against the earlier versions of its MODEL
    /// (SchemaVer: an ADDITION must suit all of its REVISION's, a REVISION may break some and
    /// says what).
    Register {
        pipeline: PathBuf,
        /// The JSON Schema file.
        file: PathBuf,
        /// `iglu:vendor/name/format/M-R-A` (default: the schema's `self` block).
        #[arg(long)]
        key: Option<String>,
    },
    /// Say what registering would do (compatible, or what breaks); store nothing.
    Check {
        pipeline: PathBuf,
        file: PathBuf,
        #[arg(long)]
        key: Option<String>,
    },
    /// Registered schemas with their fingerprints.
    List {
        pipeline: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// One registered schema.
    Show { pipeline: PathBuf, key: String },
    /// Register every schema of an Iglu static repository (`DIR/schemas/vendor/name/format/M-R-A`,
    /// e.g. a checkout of Iglu Central) in version order: prints what was registered, skipped
    /// (already there with the same content) and refused, with why; exit 1 if any was refused.
    Import {
        pipeline: PathBuf,
        /// The repository's folder (the one holding `schemas/`).
        dir: PathBuf,
        /// One JSON line per schema instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::Cli;

    /// `docs/reference/cli.md`: every command's help, as `--help` prints it.
    pub fn reference_markdown() -> String {
        use clap::CommandFactory;
        fn section(out: &mut String, path: &str, command: &mut clap::Command) {
            out.push_str(&format!("## `{path}`\n\n```text\n"));
            out.push_str(command.render_long_help().to_string().trim_end());
            out.push_str("\n```\n\n");
            let mut subcommands: Vec<clap::Command> = command.get_subcommands().cloned().collect();
            for sub in &mut subcommands {
                if sub.get_name() != "help" {
                    section(out, &format!("{path} {}", sub.get_name()), sub);
                }
            }
        }
        let mut out = String::from(
            "# Command-line reference\n\n\
             Generated from `crates/sluice/src/cli.rs` by\n\
             `SLUICE_BLESS=1 cargo test -p sluice --lib cli_reference`; do not edit by hand.\n\n",
        );
        let mut command = Cli::command().term_width(100);
        command.build();
        section(&mut out, "sluice", &mut command);
        out.trim_end().to_string() + "\n"
    }

    #[test]
    fn cli_reference_is_current() {
        sluice_testkit::docs::assert_current(
            "docs/reference/cli.md",
            &reference_markdown(),
            "cargo test -p sluice --lib cli_reference",
        );
    }
}
