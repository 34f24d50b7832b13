//! The Kinesis source (`type = "kinesis"`): every shard of an Amazon
//! Kinesis data stream, shared by the replicas through leases, each
//! shard's place checkpointed around the enqueue of the records it covers
//! (`sources::shards`).

mod config;
mod kpl;
mod source;

pub use config::{KinesisSourceConfig, StartingPosition};
pub use source::{KinesisSource, replay_window};

pub use crate::sources::shards::replay::StreamReplayReport;

#[cfg(test)]
mod tests;
