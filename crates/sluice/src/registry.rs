//! Transform types registered by a program that runs Sluice as a library
//! ([`crate::Sluice::transform`]). The registry is filled once, before the
//! command runs, and read by config loading (is a `type` known?) and by
//! building (make the transform from its options).

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
};

use sluice_core::Transform;

/// Makes a transform from the options of its table (every key but `type`
/// and `inputs`); an error names the key and what is allowed.
pub type TransformFactory = Arc<dyn Fn(&toml::Table) -> Result<Arc<dyn Transform>, String> + Send + Sync>;

static REGISTRY: OnceLock<BTreeMap<String, TransformFactory>> = OnceLock::new();

/// Installs the registered types; only the first call counts.
pub(crate) fn install(factories: BTreeMap<String, TransformFactory>) {
    let _ = REGISTRY.set(factories);
}

pub(crate) fn factory(type_name: &str) -> Option<&'static TransformFactory> {
    REGISTRY.get()?.get(type_name)
}

pub(crate) fn registered() -> Vec<&'static str> {
    REGISTRY
        .get()
        .map(|r| r.keys().map(String::as_str).collect())
        .unwrap_or_default()
}
