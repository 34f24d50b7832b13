//! Schemas: JSON Schema 2020-12 validation of events (the `validate`
//! transform), the mapping from a JSON Schema to the Arrow schema the lake
//! writes, and the schema registry (versioned schemas, compatibility).

pub mod arrow_types;
pub mod registry;
pub mod self_describing;
pub mod validate;

pub use arrow_types::{ArrowLayout, arrow_layout};
pub use self_describing::{Pointers, SelfDescribingTransform};
pub use validate::{SchemaError, ValidateTransform, load_schema};
