//! Sluice as a library: the `sluice` command line, with transform types of
//! your own registered beside the built-in ones. Implement
//! [`Transform`] (a batch of events in; events, dead letters and a dropped
//! count out) in your crate, register a factory under a `type` name, and
//! your binary runs pipeline files that use it:
//!
//! ```no_run
//! use std::sync::Arc;
//! use sluice::{Sluice, Transform, toml};
//!
//! fn main() -> std::process::ExitCode {
//!     Sluice::new()
//!         .transform("my_enrich", |options: &toml::Table| -> Result<Arc<dyn Transform>, String> {
//!             let _ = options; // the table's keys other than `type` and `inputs`
//!             todo!("build the transform")
//!         })
//!         .run()
//! }
//! ```
//!
//! `examples/custom-transform` is a complete crate doing this.

mod api;
mod cli;
mod commands;
mod demo;
mod logging;
mod progress;

use std::{process::ExitCode, sync::Arc};

use clap::Parser;
pub use sluice_core::{
    BatchInfo, Event, Rejected, StageError, Transform, TransformOutput, json_kind, parse_object, reason,
};
pub use sluice_documents::{apply::StoredDocument, change::DocKey, projection::Projection};
pub use sluice_runtime::{ProjectionFactory, TransformFactory};
use sluice_runtime::{config, documents, engine as runtime, extensions, sinks};
pub use toml;

/// The `sluice` command line, with the transform and projection types
/// registered on it.
#[derive(Default)]
pub struct Sluice {
    extensions: extensions::Extensions,
}

impl Sluice {
    pub fn new() -> Self {
        Sluice::default()
    }

    /// Registers a transform type: tables with `type = "<type_name>"` are
    /// built by `factory` from their options (every key but `type` and
    /// `inputs`). Built-in names cannot be taken.
    pub fn transform(
        mut self,
        type_name: &str,
        factory: impl Fn(&toml::Table) -> Result<Arc<dyn Transform>, String> + Send + Sync + 'static,
    ) -> Self {
        self.extensions.add_transform(type_name, Arc::new(factory));
        self
    }

    /// Registers a projection type: a projection sink with
    /// `custom = { type = "<type_name>", ... }` adds the fields `factory`'s
    /// [`Projection`] computes (from the `custom` table's other keys).
    pub fn projection(
        mut self,
        type_name: &str,
        factory: impl Fn(&toml::Table) -> Result<Arc<dyn Projection>, String> + Send + Sync + 'static,
    ) -> Self {
        self.extensions.add_projection(type_name, Arc::new(factory));
        self
    }

    /// Parses the command line and runs the command; the exit code is 2 for
    /// configuration errors, 1 for other failures.
    pub fn run(self) -> ExitCode {
        sluice_transform::jq::serve_or_enable_workers();
        if let Some(taken) = self
            .extensions
            .transform_types()
            .into_iter()
            .find(|t| config::BUILT_IN_TRANSFORMS.contains(t))
        {
            eprintln!("error: the transform type {taken:?} is built in; register it under another name");
            return ExitCode::from(2);
        }
        run_cli(Arc::new(self.extensions))
    }
}

fn run_cli(extensions: Arc<extensions::Extensions>) -> ExitCode {
    // Clients that take rustls's process default (async-nats's TLS) get the
    // provider the rest of the binary uses; both are built (ADR 0051).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = cli::Cli::parse();
    let quiet = matches!(
        cli.command,
        cli::Command::Demo { .. } | cli::Command::Dlq { .. } | cli::Command::Validate { .. }
    );
    logging::init(
        match (cli.verbose, quiet) {
            (true, _) => "info,sluice=debug",
            (false, true) => "warn",
            (false, false) => "warn,sluice=info",
        },
        cli.log_format,
    );
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(threads) = cli.threads {
        builder.worker_threads(threads.max(1));
    }
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command {
        // On a worker thread, not the main one: `--threads N` bounds the
        // threads doing the pipeline's work, its consumer loop included.
        cli::Command::Run { pipeline, until_idle } => rt
            .block_on(rt.spawn(async move { commands::run(&pipeline, &extensions, until_idle).await }))
            .unwrap_or_else(|e| Err(anyhow::anyhow!("the pipeline's task failed: {e}"))),
        command => rt.block_on(commands::execute(command, &extensions)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<config::ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
