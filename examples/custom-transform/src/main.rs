//! A custom transform in its own crate: `big_spender` marks purchases whose
//! revenue reaches a threshold (`props.big_spender = true`). The binary is
//! the full `sluice` command line with this type registered:
//!
//! ```toml
//! [transforms.vip]
//! type = "big_spender"
//! inputs = ["standardize"]
//! threshold = 500.0
//! ```

use std::{process::ExitCode, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use sluice::{BatchInfo, Event, Rejected, Sluice, StageError, Transform, TransformOutput, parse_object, toml};

/// The options of a `big_spender` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// Purchases with `props.revenue` at or above this are marked.
    threshold: f64,
}

struct BigSpender {
    threshold: f64,
}

impl BigSpender {
    fn from_options(options: &toml::Table) -> Result<Arc<dyn Transform>, String> {
        let options = Options::deserialize(options.clone()).map_err(|e| e.message().to_string())?;
        if !options.threshold.is_finite() || options.threshold < 0.0 {
            return Err(format!(
                "threshold: {} is not allowed; give a revenue of 0 or more",
                options.threshold
            ));
        }
        Ok(Arc::new(BigSpender {
            threshold: options.threshold,
        }))
    }
}

#[async_trait]
impl Transform for BigSpender {
    async fn process(&self, _batch: BatchInfo<'_>, events: Vec<Event>) -> Result<TransformOutput, StageError> {
        let mut output = TransformOutput::default();
        for mut event in events {
            let mut value = match parse_object(&event.payload) {
                Ok(v) => v,
                Err((why, detail)) => {
                    output.rejected.push(Rejected::new(event, why, detail));
                    continue;
                }
            };
            let revenue = value.pointer("/props/revenue").and_then(Value::as_f64);
            if value["event_type"] == "purchase" && revenue.is_some_and(|r| r >= self.threshold) {
                value["props"]["big_spender"] = Value::Bool(true);
                event.payload = Bytes::from(value.to_string());
            }
            output.events.push(event);
        }
        Ok(output)
    }
}

fn main() -> ExitCode {
    Sluice::new().transform("big_spender", BigSpender::from_options).run()
}
