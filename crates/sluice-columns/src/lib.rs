//! Arrow columns of a lake table built from events' JSON as arrow-json
//! would decode them, in the same pass as a parse of each payload.
//!
//! * [`builders`]: the typed builders of a schema's columns, and what each
//!   JSON value becomes in them (or why it is left to arrow-json).
//! * [`text`]: record batches built by parsing payloads' text (the lake
//!   sink's own walk, ADR 0088).
//! * [`rows`]: rows appended by another stage's parse (`validate`'s, ADR
//!   0097), tied to their payloads and gathered by the sink.
//!
//! Invariant: a batch from either path equals arrow-json's decoding of the
//! same payloads; a value the builders cannot make as arrow-json does is
//! refused, never guessed.

pub mod builders;
pub mod rows;
pub mod text;

pub use builders::{Columns, ListColumn, Payload, Refused, Slot, StructColumn};
pub use rows::{BuiltRows, RowBuilder, gather};
