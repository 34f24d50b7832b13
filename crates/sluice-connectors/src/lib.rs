//! Sources: components that take events from the outside world and put them,
//! as batches, on the durable queue. A source acknowledges upstream (HTTP 200,
//! marking a file read) only after the queue said the batch is durable.
//! Also the sinks that hand events to other systems ([`sinks`]).

pub mod aws;
pub mod http_server;
pub mod kafka;
pub mod sinks;
pub mod sources;

pub use sources::{Source, SourceContext, SourceError};
