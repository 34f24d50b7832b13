//! The Kafka source (`type = "kafka"`): a consumer group on topics whose
//! offsets follow Sluice's queue, not the other way round.

mod config;
mod ranges;
mod source;

pub use config::KafkaSourceConfig;
pub use source::KafkaSource;

#[cfg(test)]
mod tests;
