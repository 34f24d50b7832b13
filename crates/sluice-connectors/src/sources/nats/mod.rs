//! The NATS source (`type = "nats"`): events other systems publish to a
//! JetStream stream, read through a durable pull consumer that replicas
//! share, acknowledged upstream only once they are durable in Sluice's queue.

mod config;
mod source;

pub use config::NatsSourceConfig;
pub(crate) use config::check_endpoint;
pub use source::NatsSource;
pub(crate) use source::{Durable, durable_consumer, pull, wait_for_consumer};
