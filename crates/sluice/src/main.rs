//! The `sluice` binary: parses the command line and hands off to a command.

mod api;
mod cli;
mod commands;
mod config;
mod demo;
mod runtime;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let quiet = matches!(
        cli.command,
        cli::Command::Demo { .. } | cli::Command::Dlq { .. } | cli::Command::Validate { .. }
    );
    telemetry::init_logging(match (cli.verbose, quiet) {
        (true, _) => "info,sluice=debug",
        (false, true) => "warn",
        (false, false) => "warn,sluice=info",
    });
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
    match rt.block_on(commands::execute(cli.command)) {
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
