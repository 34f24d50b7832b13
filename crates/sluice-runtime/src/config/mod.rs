//! Pipeline files: environment references (`interpolate`), parsing (`model`),
//! checking and resolving paths (`load`),
//! building transforms from them (`build`), and the reference
//! documentation rendered from the types (`reference`).
//!
//! Loading is pure apart from reading the pipeline file and the schema files
//! it names, so `sluice validate` has no side effects.

mod build;
mod interpolate;
pub(crate) mod load;
pub(crate) mod model;
#[cfg(test)]
mod reference;
mod registry;

pub use build::build_transforms;
pub use load::{ConfigError, Pipeline, load};
pub use model::{
    BUILT_IN_TRANSFORMS, Component, PipelineFile, QueueBackend, SinkConfig, SourceConfig, TransformConfig,
};
pub use registry::RegistryLocation;
