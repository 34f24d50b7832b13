//! Transform and projection types registered by a program that runs
//! Sluice as a library ([`crate::Sluice::transform`],
//! [`crate::Sluice::projection`]). The registry is filled once, before the
//! command runs, and read by config loading (is a `type` known?) and by
//! building (make it from its options).

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
};

use sluice_core::Transform;
use sluice_documents::projection::Projection;

/// Makes a transform from the options of its table (every key but `type`
/// and `inputs`); an error names the key and what is allowed.
pub type TransformFactory = Arc<dyn Fn(&toml::Table) -> Result<Arc<dyn Transform>, String> + Send + Sync>;

/// Makes a projection from the options of a projection sink's `custom`
/// table (every key but `type`); an error names the key and what is allowed.
pub type ProjectionFactory = Arc<dyn Fn(&toml::Table) -> Result<Arc<dyn Projection>, String> + Send + Sync>;

/// What a program registered.
#[derive(Default)]
pub(crate) struct Registered {
    pub transforms: BTreeMap<String, TransformFactory>,
    pub projections: BTreeMap<String, ProjectionFactory>,
}

static REGISTRY: OnceLock<Registered> = OnceLock::new();

/// Installs the registered types; only the first call counts.
pub(crate) fn install(registered: Registered) {
    let _ = REGISTRY.set(registered);
}

pub(crate) fn factory(type_name: &str) -> Option<&'static TransformFactory> {
    REGISTRY.get()?.transforms.get(type_name)
}

pub(crate) fn registered() -> Vec<&'static str> {
    REGISTRY
        .get()
        .map(|r| r.transforms.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

pub(crate) fn projection_factory(type_name: &str) -> Option<&'static ProjectionFactory> {
    REGISTRY.get()?.projections.get(type_name)
}

pub(crate) fn registered_projections() -> Vec<&'static str> {
    REGISTRY
        .get()
        .map(|r| r.projections.keys().map(String::as_str).collect())
        .unwrap_or_default()
}
