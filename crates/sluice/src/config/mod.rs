//! Pipeline files: environment references (`interpolate`), parsing (`model`),
//! checking and resolving paths (`load`),
//! building transforms from them (`build`).
//!
//! Loading is pure apart from reading the pipeline file and the schema files
//! it names, so `sluice validate` has no side effects.

mod build;
mod interpolate;
mod load;
mod model;
mod registry;

pub use build::build_transforms;
pub use load::{ConfigError, Pipeline, RoutedLake, load};
pub use model::{BUILT_IN_TRANSFORMS, QueueBackend, SinkConfig, SourceConfig, TransformConfig};
pub use registry::RegistryLocation;
