//! The `lookup` transform: enriches each event with the row of a reference
//! table whose key column matches a field of the event. The table is loaded
//! on the first batch and reloaded every `refresh_secs` in the background;
//! a reload replaces the whole table at once (readers see the old or the
//! new one, never a mix), and a failed reload keeps the last good table
//! and counts `sluice_lookup_refresh_failures_total`.
//!
//! Until a first load succeeds, batches fail with a retriable error (they
//! are delivered again later) rather than being enriched with nothing.

mod source;

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;
use sluice_core::{
    BatchInfo, Event, Rejected, StageError, Transform, TransformOutput, json_kind, parse_object,
    telemetry::LookupTelemetry,
};

pub use source::{Format, Source, Table, key_text};

use crate::pointer::Pointer;

/// What happens to an event whose key has no row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnMissing {
    /// `target` is set to null and the event goes on.
    #[default]
    Null,
    Drop,
    DeadLetter,
}

/// Everything about a lookup but its table.
#[derive(Debug, Clone)]
pub struct LookupSpec {
    /// The component name, for metrics.
    pub name: String,
    pub key: Pointer,
    pub target: Pointer,
    pub on_missing: OnMissing,
    pub source: Source,
    pub key_column: String,
    pub refresh: Duration,
}

struct Loaded {
    table: Arc<Table>,
    at: Instant,
}

struct Shared {
    spec: LookupSpec,
    current: RwLock<Option<Loaded>>,
}

impl Shared {
    /// Loads the table and swaps it in; on failure the last good one stays.
    async fn reload(&self) -> Result<Arc<Table>, String> {
        let telemetry = LookupTelemetry::new(&self.spec.name);
        match source::load(&self.spec.source, &self.spec.key_column).await {
            Ok(table) => {
                let table = Arc::new(table);
                telemetry.loaded(table.len());
                telemetry.age(Duration::ZERO);
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Loaded {
                    table: table.clone(),
                    at: Instant::now(),
                });
                Ok(table)
            }
            Err(e) => {
                telemetry.reload_failed(&e);
                // The table kept grows older while reloads fail.
                let _ = self.table();
                Err(e)
            }
        }
    }

    fn table(&self) -> Option<Arc<Table>> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current.as_ref().map(|loaded| {
            LookupTelemetry::new(&self.spec.name).age(loaded.at.elapsed());
            loaded.table.clone()
        })
    }
}

pub struct LookupTransform {
    shared: Arc<Shared>,
    refreshing: AtomicBool,
}

impl LookupTransform {
    pub fn new(spec: LookupSpec) -> Self {
        LookupTransform {
            shared: Arc::new(Shared {
                spec,
                current: RwLock::new(None),
            }),
            refreshing: AtomicBool::new(false),
        }
    }

    /// Starts the background reloads once (on the first batch, inside the runtime).
    fn start_refreshing(&self) {
        if self.refreshing.swap(true, Ordering::Relaxed) {
            return;
        }
        let shared = Arc::downgrade(&self.shared);
        let every = self.shared.spec.refresh;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(shared) = shared.upgrade() else { return };
                let _ = shared.reload().await;
            }
        });
    }

    fn enrich(&self, table: &Table, event: &mut Value) -> Result<bool, (String, String)> {
        let spec = &self.shared.spec;
        let key = spec.key.get(event).and_then(key_text);
        let row = key.as_ref().and_then(|k| table.get(k));
        let value = match (row, spec.on_missing) {
            (Some(row), _) => row.clone(),
            (None, OnMissing::Null) => Value::Null,
            (None, OnMissing::Drop) => return Ok(false),
            (None, OnMissing::DeadLetter) => {
                let detail = match (&key, spec.key.get(event)) {
                    (Some(k), _) => format!("no row with {} = {k:?} in the reference table", spec.key_column),
                    (None, Some(v)) => format!("the key is {}, not a string or number", json_kind(v)),
                    (None, None) => "the event has no key".to_string(),
                };
                return Err((
                    sluice_core::reason::at(sluice_core::reason::LOOKUP_MISSING, spec.key.as_str()),
                    detail,
                ));
            }
        };
        spec.target.set(event, value).map_err(|e| {
            (
                sluice_core::reason::at(sluice_core::reason::FIELD_CONFLICT, spec.target.as_str()),
                e,
            )
        })?;
        Ok(true)
    }
}

#[async_trait]
impl Transform for LookupTransform {
    async fn process(&self, _batch: BatchInfo<'_>, events: Vec<Event>) -> Result<TransformOutput, StageError> {
        self.start_refreshing();
        let table = match self.shared.table() {
            Some(t) => t,
            None => self
                .shared
                .reload()
                .await
                .map_err(|e| StageError::unavailable(format!("the reference table is not loaded yet: {e}")))?,
        };
        let mut output = TransformOutput::default();
        for mut event in events {
            let mut value = match parse_object(&event.payload) {
                Ok(v) => v,
                Err((why, detail)) => {
                    output.rejected.push(Rejected::new(event, why, detail));
                    continue;
                }
            };
            match self.enrich(&table, &mut value) {
                Ok(true) => {
                    event.payload = Bytes::from(value.to_string());
                    output.events.push(event);
                }
                Ok(false) => output.dropped += 1,
                Err((why, detail)) => output.rejected.push(Rejected::new(event, why, detail)),
            }
        }
        Ok(output)
    }
}

#[cfg(test)]
mod tests;
