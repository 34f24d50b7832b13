//! Sinks that hand processed events to other systems: [`stream`] publishes
//! them to a NATS JetStream subject.

pub mod stream;
