//! The engine's process-wide telemetry: the Prometheus recorder (which the
//! API renders) and the poller that turns queue and dead-letter state into
//! gauges.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sluice_core::telemetry::{QueueState, QueueTelemetry};
use sluice_queue::{DeadLetterStore, Queue};

/// The installed Prometheus recorder (installed on first use).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .install_recorder()
                .expect("the metrics recorder is installed once, here");
            sluice_core::telemetry::describe_all();
            handle
        })
        .clone()
}

/// Every second: queue depth, bytes, in-flight batches and the age of the
/// oldest batch; every five: dead letters held, by reason.
pub async fn poll_queue(queue: Arc<dyn Queue>, dlq: Arc<dyn DeadLetterStore>) {
    let handle = prometheus();
    let mut tick = 0u64;
    loop {
        if let Ok(s) = queue.stats().await {
            QueueTelemetry::state(&QueueState {
                batches: s.batches,
                bytes: s.bytes,
                in_flight: s.in_flight,
                oldest_age: Duration::from_millis(s.oldest_age_ms.max(0) as u64),
            });
        }
        if tick.is_multiple_of(5) {
            if let Ok(c) = dlq.counts().await {
                QueueTelemetry::dead_letters_held(c.total, c.by_reason.iter().map(|(r, n)| (r.as_str(), *n)));
            }
            handle.run_upkeep();
        }
        tick += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
