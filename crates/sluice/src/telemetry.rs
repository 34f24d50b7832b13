//! Process-wide telemetry: the Prometheus recorder, logging set-up, and the
//! poller that turns queue and dead-letter state into gauges.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sluice_queue::{DeadLetterStore, Queue};

/// The installed Prometheus recorder (installed on first use).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("the metrics recorder is installed once, here")
        })
        .clone()
}

/// Logs to stderr; `RUST_LOG` overrides the default level.
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Every second: queue depth, bytes, in-flight batches and the age of the
/// oldest batch; every five: dead letters held, by reason.
pub async fn poll_queue(queue: Arc<dyn Queue>, dlq: Arc<dyn DeadLetterStore>) {
    let handle = prometheus();
    let mut tick = 0u64;
    loop {
        if let Ok(s) = queue.stats().await {
            metrics::gauge!("sluice_queue_depth_batches").set(s.batches as f64);
            metrics::gauge!("sluice_queue_bytes").set(s.bytes as f64);
            metrics::gauge!("sluice_queue_in_flight_batches").set(s.in_flight as f64);
            metrics::gauge!("sluice_queue_oldest_batch_age_seconds").set(s.oldest_age_ms as f64 / 1000.0);
        }
        if tick.is_multiple_of(5) {
            if let Ok(c) = dlq.counts().await {
                metrics::gauge!("sluice_dead_letter_depth").set(c.total as f64);
                for (reason, n) in c.by_reason {
                    metrics::gauge!("sluice_dead_letter_depth_by_reason", "reason" => reason).set(n as f64);
                }
            }
            handle.run_upkeep();
        }
        tick += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
