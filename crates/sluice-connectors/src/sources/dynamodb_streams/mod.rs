//! The DynamoDB Streams source (`type = "dynamodb_streams"`): the change
//! records of a table's stream as change events for the `documents` stage
//! ([`change`]), every shard shared by the replicas through leases and
//! checkpointed around the enqueue of the records it covers
//! (`sources::shards`, as for Kinesis).

mod change;
mod config;
mod source;

pub use config::{DynamoDbStartingPosition, DynamoDbStreamsSourceConfig};
pub use source::DynamoDbStreamsSource;
