//! Schemas: JSON Schema 2020-12 validation of events (the `validate`
//! transform; Iglu's draft-04 schemas as published, [`iglu`]), the mapping from a JSON Schema to the Arrow schema the lake
//! writes, the schema registry (versioned schemas, compatibility), and the
//! transforms that check events against registered versions
//! (`self_describing`, `avro`, and `snowplow`, Snowplow's tracker events
//! made canonical events).

pub mod arrow_types;
pub mod avro;
pub mod event_json;
mod fast_accept;
pub mod iglu;
mod registered;
pub mod registry;
pub mod self_describing;
pub mod snowplow;
pub mod validate;

pub use arrow_types::{ArrowLayout, arrow_layout};
pub use avro::transform::AvroTransform;
pub use self_describing::{Pointers, SelfDescribingTransform};
pub use snowplow::SnowplowTransform;
pub use validate::{SchemaError, ValidateTransform, load_schema};

/// A schema from a `json!` value, for tests where member order does not matter.
#[cfg(test)]
pub(crate) fn doc(value: serde_json::Value) -> sluice_core::JsonDoc {
    serde_json::from_value(value).expect("any JSON value is a document")
}
