//! Test-only: the full `sluice` command line with one more transform type,
//! `abort_on`, which aborts the whole process when an event of its batch
//! holds `true` at `pointer`. It stands for whatever kills an engine on
//! one input (a native library's crash, a runaway allocation), so the test
//! beside it can check that such a batch is set aside as `crashed_engine`
//! while the rest of the pipeline lands.
//!
//! ```toml
//! [transforms.poison]
//! type = "abort_on"
//! inputs = ["input"]
//! pointer = "/poison"
//! ```

use std::{process::ExitCode, sync::Arc};

use async_trait::async_trait;
use serde::Deserialize;
use sluice::{BatchInfo, Event, Sluice, StageError, Transform, TransformOutput, parse_object, toml};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// JSON pointer to the marker.
    pointer: String,
}

struct AbortOn {
    pointer: String,
}

impl AbortOn {
    fn from_options(options: &toml::Table) -> Result<Arc<dyn Transform>, String> {
        let options = Options::deserialize(options.clone()).map_err(|e| e.message().to_string())?;
        Ok(Arc::new(AbortOn {
            pointer: options.pointer,
        }))
    }
}

#[async_trait]
impl Transform for AbortOn {
    async fn process(&self, _batch: BatchInfo<'_>, events: Vec<Event>) -> Result<TransformOutput, StageError> {
        let poisoned = events
            .iter()
            .any(|e| parse_object(&e.payload).is_ok_and(|v| v.pointer(&self.pointer) == Some(&true.into())));
        if poisoned {
            eprintln!("abort_on: an event holds {} = true; aborting", self.pointer);
            std::process::abort();
        }
        Ok(TransformOutput {
            events,
            ..TransformOutput::default()
        })
    }
}

fn main() -> ExitCode {
    Sluice::new().transform("abort_on", AbortOn::from_options).run()
}
