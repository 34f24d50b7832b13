//! `sluice run`: run a pipeline; the first SIGINT/SIGTERM stops input and
//! commits, a second one exits at once (accepted data stays in the queue).

use std::{path::Path, sync::Arc};

use anyhow::Result;
use tokio::sync::watch;

use crate::{
    api, config,
    extensions::Extensions,
    runtime::{self, RunOptions},
};

pub async fn run(path: &Path, extensions: &Arc<Extensions>, until_idle: bool) -> Result<()> {
    let pipeline = config::load(path, extensions)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut stops = 0;
        loop {
            wait_for_signal().await;
            stops += 1;
            if stops > 1 {
                eprintln!("second signal: exiting now; accepted events stay in the queue for the next run");
                std::process::exit(130);
            }
            let _ = stop_tx.send(true);
        }
    });
    let ready = api::start(&pipeline).await?;
    runtime::run(&pipeline, RunOptions { until_idle }, stop_rx, ready).await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
