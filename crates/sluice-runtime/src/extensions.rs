//! Transform and projection types a program running Sluice as a library
//! registered (`sluice::Sluice::transform` and `::projection` fill one).
//! The set is made once, before the command runs, handed to
//! [`crate::config::load`] (is a `type` known?) and kept in the loaded
//! pipeline, from which building makes each component. Nothing global.

use std::{collections::BTreeMap, fmt, sync::Arc};

use sluice_core::Transform;
use sluice_documents::projection::Projection;

/// Makes a transform from the options of its table (every key but `type`
/// and `inputs`); an error names the key and what is allowed.
pub type TransformFactory = Arc<dyn Fn(&toml::Table) -> Result<Arc<dyn Transform>, String> + Send + Sync>;

/// Makes a projection from the options of a projection sink's `custom`
/// table (every key but `type`); an error names the key and what is allowed.
pub type ProjectionFactory = Arc<dyn Fn(&toml::Table) -> Result<Arc<dyn Projection>, String> + Send + Sync>;

/// The registered types, by name.
#[derive(Default, Clone)]
pub struct Extensions {
    pub(crate) transforms: BTreeMap<String, TransformFactory>,
    pub(crate) projections: BTreeMap<String, ProjectionFactory>,
}

impl Extensions {
    /// Registers a transform type under `type_name`.
    pub fn add_transform(&mut self, type_name: &str, factory: TransformFactory) {
        self.transforms.insert(type_name.to_string(), factory);
    }

    /// Registers a projection type under `type_name`.
    pub fn add_projection(&mut self, type_name: &str, factory: ProjectionFactory) {
        self.projections.insert(type_name.to_string(), factory);
    }

    pub(crate) fn transform(&self, type_name: &str) -> Option<&TransformFactory> {
        self.transforms.get(type_name)
    }

    /// The registered transform types.
    pub fn transform_types(&self) -> Vec<&str> {
        self.transforms.keys().map(String::as_str).collect()
    }

    pub(crate) fn projection(&self, type_name: &str) -> Option<&ProjectionFactory> {
        self.projections.get(type_name)
    }

    pub(crate) fn projection_types(&self) -> Vec<&str> {
        self.projections.keys().map(String::as_str).collect()
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("transforms", &self.transform_types())
            .field("projections", &self.projection_types())
            .finish()
    }
}
