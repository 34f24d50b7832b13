//! The generator source (`type = "generator"`): the test generator's
//! clickstream or change events as input, for trying a pipeline and for
//! load tests without an outside system (as Vector's `demo_logs` and
//! Redpanda Connect's `generate`).

mod config;
mod source;

pub use config::{GeneratedStream, GeneratorSourceConfig};
pub use source::GeneratorSource;

#[cfg(test)]
mod tests;
