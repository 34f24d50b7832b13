//! The Sluice engine, as a library: a pipeline file loaded, checked and
//! resolved ([`config`]), and run ([`engine::run`]): the queue, the
//! transforms and sinks built from the file, the consumer loop, tickets and
//! acknowledgements, leases and the compaction schedule. Types a program
//! registers ([`extensions`]) travel inside the loaded pipeline.
//!
//! The `sluice` crate is the command line around it (commands, demo, the
//! HTTP API); a program that only embeds the engine depends on this crate.

pub mod config;
pub mod documents;
pub mod engine;
pub mod extensions;
pub mod sinks;
pub mod tap;
pub mod telemetry;

pub use extensions::{Extensions, ProjectionFactory, TransformFactory};
