//! Sinks that hand processed events to other systems: [`stream`] publishes
//! them to a NATS JetStream subject, [`kafka`] to a Kafka topic.

pub mod kafka;
pub mod stream;
