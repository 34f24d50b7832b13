//! The Kafka source (`type = "kafka"`): a consumer group on topics whose
//! offsets follow Sluice's queue, not the other way round.

mod config;
mod ranges;
mod replay;
mod source;

pub use config::KafkaSourceConfig;
pub use replay::{KafkaReplayReport, replay_window};
pub use source::KafkaSource;

#[cfg(test)]
mod tests;
