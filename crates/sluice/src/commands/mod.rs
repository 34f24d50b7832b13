//! One function per CLI command.

mod dlq;
mod documents;
mod engine_api;
mod maintenance;
mod objects;
mod replay;
mod run;

pub use run::run;
mod schema;
mod status;
mod tail;

use std::sync::Arc;

use anyhow::Result;

use crate::{cli::Command, config, demo, extensions::Extensions};

pub async fn execute(command: Command, extensions: &Arc<Extensions>) -> Result<()> {
    match command {
        Command::Run { pipeline, until_idle } => run(&pipeline, extensions, until_idle).await,
        Command::Validate { pipeline } => {
            let p = config::load(&pipeline, extensions)?;
            config::build_transforms(&p)?;
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
        Command::Compact {
            pipeline,
            sink,
            since,
            all,
            json,
        } => maintenance::compact(&pipeline, extensions, sink.as_deref(), since, all, json).await,
        Command::Snapshot { pipeline, sink, json } => {
            documents::snapshot(&pipeline, extensions, sink.as_deref(), json).await
        }
        Command::Rehydrate {
            pipeline,
            projection,
            json,
        } => documents::rehydrate(&pipeline, extensions, &projection, json).await,
        Command::Vacuum {
            pipeline,
            sink,
            retention_hours,
            force,
            dry_run,
            json,
        } => {
            maintenance::vacuum(
                &pipeline,
                extensions,
                sink.as_deref(),
                retention_hours,
                force,
                dry_run,
                json,
            )
            .await
        }
        Command::Status { pipeline, json, watch } => status::status(&pipeline, extensions, json, watch).await,
        Command::Tail {
            pipeline,
            stage,
            limit,
            follow,
        } => tail::tail(&pipeline, extensions, &stage, limit, follow).await,
        Command::Replay {
            pipeline,
            source,
            since,
            until,
            wait,
            json,
        } => {
            let args = replay::ReplayArgs {
                pipeline: &pipeline,
                source: &source,
                since: &since,
                until: until.as_deref(),
                wait,
                json,
            };
            replay::replay(args, extensions).await
        }
        Command::Dlq { command } => dlq::execute(command, extensions).await,
        Command::Objects { command } => objects::execute(command, extensions),
        Command::Schema { command } => schema::execute(command, extensions).await,
        Command::Demo { dir, events } => demo::run(&dir, extensions, events).await,
    }
}
