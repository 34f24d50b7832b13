//! Validators of registered schema versions, looked up by key text
//! (`iglu:vendor/name/format/M-R-A`) and cached once compiled: a version
//! never changes, so a cached one is never stale. A key the registry does
//! not have is remembered as missing for `recheck`, after which a newly
//! registered version is found. Shared by the transforms that check events
//! against the version they name (`self_describing`, `snowplow`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use jsonschema::Validator;
use sluice_core::StageError;

use crate::{
    registry::{Registry, SchemaKey},
    validate::compile_with,
};

/// What a lookup found for one key.
pub(crate) enum Lookup {
    Found(Arc<Validator>),
    /// Malformed, or not registered: why, for a dead letter.
    Unknown(String),
}

pub(crate) struct RegisteredValidators {
    registry: Registry,
    recheck: Duration,
    known: RwLock<HashMap<String, Arc<Validator>>>,
    missing: Mutex<HashMap<String, Instant>>,
}

impl RegisteredValidators {
    pub(crate) fn new(registry: Registry, recheck: Duration) -> Self {
        RegisteredValidators {
            registry,
            recheck,
            known: RwLock::new(HashMap::new()),
            missing: Mutex::new(HashMap::new()),
        }
    }

    /// The validator of the version `text` names; an error only when the
    /// registry cannot be read (retriable) or holds a schema that no longer
    /// compiles.
    pub(crate) async fn lookup(&self, text: &str) -> Result<Lookup, StageError> {
        if let Some(v) = self.known.read().unwrap_or_else(|e| e.into_inner()).get(text) {
            return Ok(Lookup::Found(v.clone()));
        }
        let key: SchemaKey = match text.parse() {
            Ok(key) => key,
            Err(e) => return Ok(Lookup::Unknown(e)),
        };
        {
            let missing = self.missing.lock().unwrap_or_else(|e| e.into_inner());
            if missing.get(text).is_some_and(|at| at.elapsed() < self.recheck) {
                return Ok(Lookup::Unknown(format!("{key} is not registered")));
            }
        }
        match self.registry.get(&key).await {
            Ok(Some(found)) => {
                let schema = found.schema.to_value();
                let referenced = self
                    .registry
                    .referenced(&schema)
                    .await
                    .map_err(|e| StageError::from_backend(format!("schema registry: {e}"), &e))?;
                let validator = Arc::new(
                    compile_with(&schema, referenced)
                        .map_err(|e| StageError::fatal(format!("registered {key}: {e}")))?,
                );
                self.known
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(text.to_string(), validator.clone());
                Ok(Lookup::Found(validator))
            }
            Ok(None) => {
                self.missing
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(text.to_string(), Instant::now());
                Ok(Lookup::Unknown(format!("{key} is not registered")))
            }
            Err(e) => Err(StageError::from_backend(format!("schema registry: {e}"), &e)),
        }
    }
}
