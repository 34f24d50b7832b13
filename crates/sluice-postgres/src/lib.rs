//! The `postgres` sink: JSON events normalised into relational tables.
//!
//! Each event becomes a row of the root table; nested objects flatten into
//! columns (`device__screen__w`); arrays of objects become child tables
//! (`events__props__items`) linked to their parent row with the list index;
//! scalar arrays and free-form objects are `jsonb`. Tables and columns come
//! from the JSON Schema and grow with new fields. Rows arrive by binary COPY
//! (through a staging table and `ON CONFLICT` for upserts), in one
//! transaction per commit that also records the batches it holds.
//!
//! * [`shape`]: tables, columns and the field paths they hold;
//! * [`flatten`]: one event into rows, refusing values that do not fit;
//! * [`cell`]: values checked against column types and encoded for COPY;
//! * [`db`]: the SQL; [`ident`]: names and quoting;
//! * [`sink`]: buffering and commits.

pub mod cell;
pub mod config;
pub mod db;
pub mod flatten;
pub mod ident;
pub mod shape;
pub mod sink;
pub mod tls;

pub use config::{DeleteWhen, PostgresSinkConfig, WriteMode};
pub use sink::PostgresSink;

#[cfg(test)]
mod tests;
