//! One function per CLI command.

mod dlq;
mod run;

use anyhow::Result;

use crate::{cli::Command, config, demo};

pub async fn execute(command: Command) -> Result<()> {
    match command {
        Command::Run { pipeline, until_idle } => run::run(&pipeline, until_idle).await,
        Command::Validate { pipeline } => {
            let p = config::load(&pipeline)?;
            println!(
                "{}: ok ({} sources, {} transforms, {} sinks; data in {})",
                pipeline.display(),
                p.config.sources.len(),
                p.config.transforms.len(),
                p.config.sinks.len(),
                p.data_dir.display()
            );
            Ok(())
        }
        Command::Dlq { command } => dlq::execute(command).await,
        Command::Demo { dir, events } => demo::run(&dir, events).await,
    }
}
